//! Event-type patterns for a source's `events` allow-list: `*` matches any run of characters
//! (dots included), everything else matches itself. `"invoice.*"` matches `invoice.paid` and
//! `invoice.payment.failed`; `"*"` matches every type, and also events that have no type.
//!
//! Only `*` is special: event types are dotted tokens, and `?` or `[` in a glob would surprise
//! more than help, so no general glob crate is pulled in for this.

/// One allow-list entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern(String);

impl Pattern {
    /// A pattern is written as the event types it matches are (see
    /// [`is_token`](crate::providers::is_token)): visible ASCII and spaces, not at either end, so
    /// that GitLab's `Push Hook` can be allowed or switched off by name.
    pub fn parse(text: &str) -> Option<Pattern> {
        crate::providers::is_token(text).then(|| Pattern(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `event_type` is matched. An event without a type is matched only by `*`.
    pub fn matches(&self, event_type: Option<&str>) -> bool {
        match event_type {
            None => self.0 == "*",
            Some(t) => glob(self.0.as_bytes(), t.as_bytes()),
        }
    }
}

/// Iterative wildcard match with one backtrack point: linear in practice, never exponential.
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if p < pattern.len() && pattern[p] == text[t] {
            p += 1;
            t += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&b| b == b'*')
}

/// Whether an allow-list admits `event_type`. No list means every type is admitted.
pub fn admits(allow: Option<&[Pattern]>, event_type: Option<&str>) -> bool {
    allow.is_none_or(|patterns| patterns.iter().any(|p| p.matches(event_type)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, t: &str) -> bool {
        Pattern::parse(p).unwrap().matches(Some(t))
    }

    #[test]
    fn wildcards() {
        assert!(m("*", "anything.at.all"));
        assert!(m("invoice.*", "invoice.paid"));
        assert!(m("invoice.*", "invoice.payment.failed"));
        assert!(!m("invoice.*", "invoice"));
        assert!(!m("invoice.*", "invoices.paid"));
        assert!(m("*.created", "customer.created"));
        assert!(!m("*.created", "customer.created.x"));
        assert!(m("a*b*c", "aXXbYYc"));
        assert!(!m("a*b*c", "aXXbYY"));
        assert!(m("issues.opened", "issues.opened"));
        assert!(!m("issues.opened", "issues.opened2"));
        assert!(m("**", ""));
    }

    #[test]
    fn untyped_events_only_match_star() {
        assert!(Pattern::parse("*").unwrap().matches(None));
        assert!(!Pattern::parse("a*").unwrap().matches(None));
    }

    #[test]
    fn allow_lists() {
        let list = vec![Pattern::parse("invoice.*").unwrap(), Pattern::parse("charge.succeeded").unwrap()];
        assert!(admits(None, Some("x")));
        assert!(admits(Some(&list), Some("charge.succeeded")));
        assert!(!admits(Some(&list), Some("charge.failed")));
        assert!(!admits(Some(&[]), Some("x")));
    }

    #[test]
    fn patterns_are_written_as_types_are() {
        assert!(m("Push Hook", "Push Hook"));
        assert!(m("* Hook", "Merge Request Hook"));
        assert!(!m("Push Hook", "Push  Hook"));
        for bad in ["", " a", "a ", "a\tb", "a\nb", "caf\u{e9}", &"a".repeat(256)] {
            assert_eq!(Pattern::parse(bad), None, "{bad:?}");
        }
        assert!(Pattern::parse(&"a".repeat(255)).is_some());
    }

    #[test]
    fn pathological_pattern_is_fast() {
        let p = Pattern::parse(&"*a".repeat(50)).unwrap();
        let t = "a".repeat(49) + "b";
        assert!(!p.matches(Some(&t)));
    }
}
