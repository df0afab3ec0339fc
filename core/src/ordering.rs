//! Out-of-order events: which entity an event is about, which version of it it carries, and
//! whether it is older than what was already delivered.
//!
//! Providers deliver out of order (a retry of `order.created` can land after `order.fulfilled`).
//! A source with `ordering` names where the entity id and the version are: a JSON pointer into the
//! body, or (for the version) a header name. The consumer keeps the newest *delivered* version per
//! entity (in the idempotency shards, for as long as idempotency records); an event whose version
//! is lower is `stale`: not delivered (or delivered marked `x-edgehook-stale: true`, with
//! `stale = "deliver"`). Equal versions are not stale: two different events of the same moment are
//! both delivered. Events without an entity or a version are never stale.
//!
//! Versions compare as numbers when both are numbers (JSON numbers, numeric strings, or RFC 3339
//! timestamps, which become milliseconds), and as text otherwise.

use crate::headers::Headers;
use crate::json_path;
use serde::{Deserialize, Serialize};
use std::cmp::Ordering as Cmp;

/// Where an event's entity id and version are found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ordering {
    /// A JSON pointer into the body.
    pub entity: String,
    pub version: Locator,
    pub stale: StalePolicy,
}

/// A JSON pointer into the body (starting with `/`), or a header name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Locator {
    Pointer(String),
    Header(String),
}

impl Locator {
    /// `"/a/b"` is a pointer; anything else a header name.
    pub fn parse(text: &str) -> Option<Locator> {
        if text.starts_with('/') {
            Some(Locator::Pointer(text.to_owned()))
        } else if !text.is_empty() && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            Some(Locator::Header(text.to_ascii_lowercase()))
        } else {
            None
        }
    }
}

/// What happens to a stale event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StalePolicy {
    /// Recorded as `stale`, not delivered (the default).
    #[default]
    Skip,
    /// Delivered with `x-edgehook-stale: true`, and counted as stale.
    Deliver,
}

impl StalePolicy {
    pub fn parse(text: &str) -> Option<StalePolicy> {
        match text {
            "skip" => Some(StalePolicy::Skip),
            "deliver" => Some(StalePolicy::Deliver),
            _ => None,
        }
    }
}

/// A version as found (numbers in their JSON form), comparable with others of its entity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Version(pub String);

impl Version {
    pub fn new(text: String) -> Version {
        Version(text)
    }

    /// The version as a number, when it is one (a timestamp counts, in milliseconds).
    pub fn num(&self) -> Option<f64> {
        self.0.parse::<f64>().ok().filter(|n| n.is_finite()).or_else(|| rfc3339_ms(&self.0).map(|ms| ms as f64))
    }

    pub fn compare(&self, other: &Version) -> Cmp {
        match (self.num(), other.num()) {
            (Some(a), Some(b)) => a.partial_cmp(&b).unwrap_or(Cmp::Equal),
            _ => self.0.cmp(&other.0),
        }
    }

    /// Whether this version is older than `newest`.
    pub fn is_older_than(&self, newest: &Version) -> bool {
        self.compare(newest) == Cmp::Less
    }
}

/// The entity and version an event carries, for ordering.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    pub entity: String,
    pub version: Version,
}

/// How far ahead of the clock a header's timestamp version may be (clock skew, with margin).
pub const MAX_HEADER_LEAD_MS: i64 = 5 * 60 * 1000;

/// Longest entity id kept (it becomes part of a storage key).
const MAX_ENTITY_LEN: usize = 255;

impl Ordering {
    /// The event's entity and version, when it has both.
    ///
    /// A version read from a header is not covered by most providers' signatures (Shopify's
    /// `X-Shopify-Triggered-At`): anyone holding one genuine signed request could resend it with
    /// a far-future time and make every later genuine event of the entity stale. So a header
    /// version that is a timestamp more than [`MAX_HEADER_LEAD_MS`] ahead of `now_ms` is not
    /// used (the event is then simply not ordered).
    pub fn position(&self, headers: &dyn Headers, body: &[u8], now_ms: i64) -> Option<Position> {
        // Both pointers in one walk of the body, which is not built (`json_path`).
        let version_pointer = match &self.version {
            Locator::Pointer(p) => p.as_str(),
            Locator::Header(_) => "",
        };
        let [entity, version_at] = json_path::scalars(body, [&self.entity, version_pointer])?;
        let entity = entity.filter(|e| !e.is_empty() && e.len() <= MAX_ENTITY_LEN)?;
        let version = match &self.version {
            Locator::Pointer(_) => version_at,
            Locator::Header(h) => headers
                .get(h)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
                .filter(|v| rfc3339_ms(v).is_none_or(|at| at <= now_ms.saturating_add(MAX_HEADER_LEAD_MS))),
        }?;
        Some(Position { entity, version: Version::new(version) })
    }
}

/// The storage key of an entity's newest delivered version.
pub fn entity_key(source: &str, entity: &str) -> String {
    format!("v:{source}:{entity}")
}

/// Milliseconds since the Unix epoch of an RFC 3339 timestamp (`2024-05-01T12:00:00.123Z`,
/// `2024-05-01T14:00:00+02:00`).
pub fn rfc3339_ms(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !(b[10] == b'T' || b[10] == b't' || b[10] == b' ') {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        let s = text.get(range)?;
        s.bytes().all(|c| c.is_ascii_digit()).then(|| s.parse().ok())?
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut rest = &text[19..];
    let mut millis = 0i64;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 {
            return None;
        }
        let padded = format!("{:0<3}", &frac[..digits.min(3)]);
        millis = padded.parse().ok()?;
        rest = &frac[digits..];
    }
    let offset_secs = match rest {
        "Z" | "z" => 0,
        _ if rest.len() == 6 && (rest.starts_with('+') || rest.starts_with('-')) && &rest[3..4] == ":" => {
            let h: i64 = rest[1..3].parse().ok()?;
            let m: i64 = rest[4..6].parse().ok()?;
            let sign = if rest.starts_with('-') { -1 } else { 1 };
            sign * (h * 3600 + m * 60)
        }
        _ => return None,
    };
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((days * 86_400 + hour * 3600 + minute * 60 + second - offset_secs) * 1000 + millis)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::headers::HeaderList;

    fn v(text: &str) -> Version {
        Version::new(text.to_owned())
    }

    #[test]
    fn versions_compare_as_numbers_timestamps_or_text() {
        assert!(v("9").is_older_than(&v("10")), "numerically, not as text");
        assert!(!v("10").is_older_than(&v("10")), "equal is not older");
        assert!(v("1700000000").is_older_than(&v("1700000001")));
        assert!(v("2024-05-01T12:00:00Z").is_older_than(&v("2024-05-01T12:00:00.001Z")));
        assert!(v("2024-05-01T13:00:00+02:00").is_older_than(&v("2024-05-01T12:00:00Z")), "offsets count");
        assert_eq!(v("2024-05-01T12:00:00Z").compare(&v("2024-05-01T14:00:00+02:00")), Cmp::Equal);
        assert!(v("a").is_older_than(&v("b")));
        assert!(v("rev-9").is_older_than(&v("rev-90")));
    }

    #[test]
    fn rfc3339_known_values() {
        assert_eq!(rfc3339_ms("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(rfc3339_ms("2023-11-14T22:13:20.123Z"), Some(1_700_000_000_123));
        assert_eq!(rfc3339_ms("2000-02-29T00:00:00Z"), Some(951_782_400_000));
        assert_eq!(rfc3339_ms("2023-11-14T23:13:20+01:00"), Some(1_700_000_000_000));
        for bad in ["2023-11-14", "2023-13-01T00:00:00Z", "2023-11-14T22:13:20", "2023-11-14T22:13:20.Z", "x"] {
            assert_eq!(rfc3339_ms(bad), None, "{bad}");
        }
    }

    /// 2024-05-01T12:00:00.5Z
    const NOW: i64 = 1_714_564_800_500;

    #[test]
    fn positions_from_body_and_headers() {
        let stripe = Ordering {
            entity: "/data/object/id".into(),
            version: Locator::parse("/created").unwrap(),
            stale: StalePolicy::Skip,
        };
        let body = br#"{"id":"evt_1","created":1700000000,"data":{"object":{"id":"in_9"}}}"#;
        let p = stripe.position(&HeaderList::new(), body, NOW).unwrap();
        assert_eq!((p.entity.as_str(), p.version.num()), ("in_9", Some(1_700_000_000.0)));
        assert_eq!(stripe.position(&HeaderList::new(), br#"{"data":{"object":{"id":"in_9"}}}"#, NOW), None);
        assert_eq!(stripe.position(&HeaderList::new(), b"not json", NOW), None);

        let shopify = Ordering {
            entity: "/id".into(),
            version: Locator::parse("X-Shopify-Triggered-At").unwrap(),
            stale: StalePolicy::Deliver,
        };
        let headers = HeaderList::from([("x-shopify-triggered-at", "2024-05-01T12:00:00.5Z")]);
        let p = shopify.position(&headers, br#"{"id":820982911946154500}"#, NOW).unwrap();
        assert_eq!(p.entity, "820982911946154500");
        assert_eq!(p.version.num(), Some(1_714_564_800_500.0));
        // A forged far-future time from the unsigned header is not used; a little skew is.
        let forged = HeaderList::from([("x-shopify-triggered-at", "2099-01-01T00:00:00Z")]);
        assert_eq!(shopify.position(&forged, br#"{"id":1}"#, NOW), None);
        let skewed = HeaderList::from([("x-shopify-triggered-at", "2024-05-01T12:04:00Z")]);
        assert!(shopify.position(&skewed, br#"{"id":1}"#, NOW).is_some());
        assert_eq!(Locator::parse("bad header"), None);
        assert_eq!(entity_key("shop", "820982911946154500"), "v:shop:820982911946154500");
    }
}
