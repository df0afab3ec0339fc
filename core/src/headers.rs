//! Read-only access to request headers, so that the core never sees a platform type.

/// Headers of an incoming request. Names are matched ASCII case-insensitively; values are
/// returned exactly as received (never trimmed: a signature with stray whitespace is not the
/// signature the provider sent). A header sent several times reads as its values joined with
/// `", "`, which is what the Fetch API's `Headers.get` does.
pub trait Headers {
    fn get(&self, name: &str) -> Option<String>;

    /// Every header as a (name, value) pair, for capture. Views that cannot list their headers
    /// capture none.
    fn all(&self) -> Vec<(String, String)> {
        Vec::new()
    }
}

/// A plain list of headers: what tests, the CLI and the consumer use.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderList(pub Vec<(String, String)>);

impl HeaderList {
    pub fn new() -> Self {
        HeaderList(Vec::new())
    }

    /// Adds a header (builder style).
    pub fn with(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.0.push((name.into(), value.into()));
        self
    }

    pub fn push(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.0.push((name.into(), value.into()));
    }
}

impl<const N: usize> From<[(&str, &str); N]> for HeaderList {
    fn from(pairs: [(&str, &str); N]) -> Self {
        HeaderList(pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect())
    }
}

impl Headers for HeaderList {
    fn get(&self, name: &str) -> Option<String> {
        let mut values = self.0.iter().filter(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str());
        let first = values.next()?;
        Some(values.fold(first.to_owned(), |mut acc, v| {
            acc.push_str(", ");
            acc.push_str(v);
            acc
        }))
    }

    fn all(&self) -> Vec<(String, String)> {
        self.0.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_is_case_insensitive_and_keeps_values_verbatim() {
        let h = HeaderList::from([("Stripe-Signature", " t=1 ")]);
        assert_eq!(h.get("stripe-signature").as_deref(), Some(" t=1 "));
        assert_eq!(h.get("STRIPE-SIGNATURE").as_deref(), Some(" t=1 "));
        assert_eq!(h.get("x-other"), None);
    }

    #[test]
    fn repeated_headers_join_like_fetch() {
        let h = HeaderList::from([("a", "1"), ("A", "2")]);
        assert_eq!(h.get("a").as_deref(), Some("1, 2"));
    }
}
