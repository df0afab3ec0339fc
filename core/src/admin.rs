//! What the admin API reads from a request's path and query string. Parsed here rather than in
//! the worker so that it is unit-tested natively and fuzzed (`fuzz/fuzz_targets/admin_query.rs`)
//! with the rest of the parsers; the worker only dispatches on the results.

use crate::config::valid_source_name;
use crate::pattern::Pattern;
use percent_encoding::percent_decode_str;

/// A query string's pairs, decoded as `application/x-www-form-urlencoded` (what the URL
/// standard's `searchParams` gives: `+` is a space, `%xx` a byte, invalid UTF-8 replaced).
/// A parameter given empty (`?source=&status=`, as a form sends an unfilled field) is the same
/// as one not given.
pub fn query_pairs(query: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(query.as_bytes())
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// The first value of `name` among `pairs`.
pub fn param(pairs: &[(String, String)], name: &str) -> Option<String> {
    pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
}

/// The largest body the admin API puts in an answer (as text and as base64). It copies such a body
/// several times over, and wasm memory, which never shrinks, shares the isolate's 128 MB with the
/// requests being received: a larger body is left out, and said to be (`body_omitted`).
pub const MAX_BODY_SHOWN: u64 = 1 << 20;

/// `{source}/{id}` after `/admin/events/` (`{source}/{id}/replay` when `replay`): the source
/// must be a valid name and the id, percent-decoded, valid UTF-8 and not empty.
pub fn event_path(rest: &str, replay: bool) -> Option<(String, String)> {
    let rest = if replay { rest.strip_suffix("/replay")? } else { rest };
    let (source, id) = rest.split_once('/')?;
    let id = percent_decode_str(id).decode_utf8().ok()?.into_owned();
    (valid_source_name(source) && !id.is_empty()).then(|| (source.to_owned(), id))
}

/// `{source}/{id}` after `/admin/dead-letters/`: the source is a valid name or `extra_source`
/// (where poison messages are kept, not a valid source name); the id is percent-decoded.
pub fn dead_letter_path(rest: &str, extra_source: &str) -> Option<(String, String)> {
    let (source, id) = rest.split_once('/')?;
    let id = percent_decode_str(id).decode_utf8_lossy();
    ((valid_source_name(source) || source == extra_source) && !id.is_empty()).then(|| (source.to_owned(), id.into()))
}

/// Why a kill switch's path was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagPathError {
    /// Not `{source}/{pattern}` at all.
    NotFound,
    /// The named part is invalid (`source` or `pattern`).
    Bad(&'static str),
}

/// `{source}/{pattern}` after `/admin/flags/`, the pattern percent-decoded (`invoice.%2A` is
/// `invoice.*`).
pub fn flag_path(rest: &str) -> Result<(String, Pattern), FlagPathError> {
    let (source, pattern) = rest.split_once('/').ok_or(FlagPathError::NotFound)?;
    let pattern = percent_decode_str(pattern).decode_utf8().map_err(|_| FlagPathError::Bad("pattern"))?;
    if !valid_source_name(source) {
        return Err(FlagPathError::Bad("source"));
    }
    let pattern = Pattern::parse(&pattern).ok_or(FlagPathError::Bad("pattern"))?;
    Ok((source.to_owned(), pattern))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_pairs_decode_like_search_params() {
        let pairs = query_pairs("source=stripe&type=invoice.%2A&x=a+b&cursor=&bad=%ff");
        assert_eq!(param(&pairs, "source").as_deref(), Some("stripe"));
        assert_eq!(param(&pairs, "type").as_deref(), Some("invoice.*"));
        assert_eq!(param(&pairs, "x").as_deref(), Some("a b"));
        assert_eq!(param(&pairs, "cursor"), None, "empty is not given");
        assert_eq!(param(&pairs, "bad").as_deref(), Some("\u{fffd}"));
        assert_eq!(param(&pairs, "missing"), None);
    }

    #[test]
    fn event_paths() {
        assert_eq!(event_path("stripe/evt_1", false), Some(("stripe".into(), "evt_1".into())));
        assert_eq!(event_path("stripe/evt%2F1/replay", true), Some(("stripe".into(), "evt/1".into())));
        assert_eq!(event_path("stripe/evt_1", true), None, "a replay path ends in /replay");
        assert_eq!(event_path("stripe/", false), None);
        assert_eq!(event_path("Bad Source/evt_1", false), None);
        assert_eq!(event_path("stripe/%ff", false), None, "invalid UTF-8");
        assert_eq!(event_path("stripe", false), None);
    }

    #[test]
    fn dead_letter_paths() {
        assert_eq!(dead_letter_path("stripe/evt%201", "_poison"), Some(("stripe".into(), "evt 1".into())));
        assert_eq!(dead_letter_path("_poison/abc", "_poison"), Some(("_poison".into(), "abc".into())));
        assert_eq!(dead_letter_path("_other/abc", "_poison"), None);
        assert_eq!(dead_letter_path("stripe/", "_poison"), None);
    }

    #[test]
    fn flag_paths() {
        let (source, pattern) = flag_path("stripe/invoice.%2A").unwrap();
        assert_eq!((source.as_str(), pattern.as_str()), ("stripe", "invoice.*"));
        assert_eq!(flag_path("stripe").unwrap_err(), FlagPathError::NotFound);
        assert_eq!(flag_path("Bad Source/x").unwrap_err(), FlagPathError::Bad("source"));
        assert_eq!(flag_path("stripe/").unwrap_err(), FlagPathError::Bad("pattern"));
        let (_, pattern) = flag_path("gitlab/Push%20Hook").unwrap();
        assert_eq!(pattern.as_str(), "Push Hook", "GitLab's types have spaces");
        assert_eq!(flag_path("stripe/a%20").unwrap_err(), FlagPathError::Bad("pattern"));
        assert_eq!(flag_path("stripe/a%0Ab").unwrap_err(), FlagPathError::Bad("pattern"));
        assert_eq!(flag_path("stripe/%ff").unwrap_err(), FlagPathError::Bad("pattern"));
    }
}
