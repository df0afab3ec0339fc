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
//! timestamps, which become milliseconds), and as text otherwise. Numbers compare exactly, as
//! decimals: as `f64`s, two sequence numbers above 2^53 (or two timestamps in the same
//! millisecond, with the microseconds Paddle sends) could compare equal, and equal is not stale.

use crate::headers::Headers;
use crate::json::Fields;
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
    fn number(&self) -> Option<Decimal> {
        Decimal::parse(&self.0).or_else(|| {
            let (ms, finer) = rfc3339(&self.0)?;
            Decimal::parse(&millis_text(ms, finer))
        })
    }

    pub fn compare(&self, other: &Version) -> Cmp {
        match (self.number(), other.number()) {
            (Some(a), Some(b)) => a.cmp(&b),
            _ => self.0.cmp(&other.0),
        }
    }

    /// Whether this version is older than `newest`.
    pub fn is_older_than(&self, newest: &Version) -> bool {
        self.compare(newest) == Cmp::Less
    }
}

/// `ms` plus the fraction `0.finer` of a millisecond, as decimal text. Before 1970 `ms` is
/// negative, and the fraction takes it towards zero: -1 ms and `.25` is `-0.75`.
fn millis_text(ms: i64, finer: &str) -> String {
    let finer = finer.trim_end_matches('0');
    if ms >= 0 || finer.is_empty() {
        return format!("{ms}.{finer}");
    }
    // ms + 0.f = (ms + 1) - (1 - 0.f), and 1 - 0.f is f's ten's complement.
    let last = finer.len() - 1;
    let complement: String = finer
        .bytes()
        .enumerate()
        .map(|(i, d)| char::from(if i == last { b'0' + 10 - (d - b'0') } else { b'0' + 9 - (d - b'0') }))
        .collect();
    let whole = ms + 1;
    if whole == 0 {
        format!("-0.{complement}")
    } else {
        format!("{whole}.{complement}")
    }
}

/// A decimal number, exactly: `0.d1d2d3... x 10^point`, with no leading or trailing zeros in
/// `digits` (none at all for zero, whose sign does not count).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Decimal {
    negative: bool,
    digits: Vec<u8>,
    point: i64,
}

/// Exponents are capped here (far beyond any version), so that adding them cannot overflow.
const MAX_EXPONENT: i64 = 1 << 40;

impl Decimal {
    /// Reads what Rust's `f64` parser reads as a finite number (an optional sign, digits with
    /// at most one `.` and at least one digit, an optional exponent), so that the same texts
    /// count as numbers as when versions were compared as `f64`s; `inf` and `NaN` stay text.
    fn parse(text: &str) -> Option<Decimal> {
        let bytes = text.as_bytes();
        let (negative, unsigned) = match bytes.first() {
            Some(b'-') => (true, &bytes[1..]),
            Some(b'+') => (false, &bytes[1..]),
            _ => (false, bytes),
        };
        let (mantissa, exponent) = match unsigned.iter().position(|&c| c == b'e' || c == b'E') {
            Some(at) => (&unsigned[..at], Some(&unsigned[at + 1..])),
            None => (unsigned, None),
        };
        let exponent = match exponent {
            None => 0,
            Some(e) => {
                let (sign, digits) = match e.first() {
                    Some(b'-') => (-1, &e[1..]),
                    Some(b'+') => (1, &e[1..]),
                    _ => (1, e),
                };
                if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
                    return None;
                }
                sign * digits.iter().fold(0i64, |n, &d| (n * 10 + i64::from(d - b'0')).min(MAX_EXPONENT))
            }
        };
        let (whole, fraction) = match mantissa.iter().position(|&c| c == b'.') {
            Some(at) => (&mantissa[..at], &mantissa[at + 1..]),
            None => (mantissa, &mantissa[mantissa.len()..]),
        };
        let all_digits = |part: &[u8]| part.iter().all(u8::is_ascii_digit);
        if whole.len() + fraction.len() == 0 || !all_digits(whole) || !all_digits(fraction) {
            return None;
        }
        let leading = whole.iter().chain(fraction).take_while(|&&d| d == b'0').count();
        let mut digits: Vec<u8> = whole.iter().chain(fraction).skip(leading).copied().collect();
        while digits.last() == Some(&b'0') {
            digits.pop();
        }
        if digits.is_empty() {
            return Some(Decimal { negative: false, digits, point: 0 });
        }
        // Lengths are bounded by the text's, so these cannot overflow.
        let point = whole.len() as i64 - leading as i64 + exponent;
        Some(Decimal { negative, digits, point })
    }

    fn sign(&self) -> i8 {
        match (self.digits.is_empty(), self.negative) {
            (true, _) => 0,
            (false, true) => -1,
            (false, false) => 1,
        }
    }
}

impl Ord for Decimal {
    fn cmp(&self, other: &Decimal) -> Cmp {
        let sign = self.sign();
        sign.cmp(&other.sign()).then_with(|| {
            // Both non-zero with the same sign: the first digit is never zero, so the point
            // orders magnitudes, and then the digits do (a missing digit reads as a zero).
            let magnitude = self.point.cmp(&other.point).then_with(|| self.digits.cmp(&other.digits));
            if sign < 0 {
                magnitude.reverse()
            } else {
                magnitude
            }
        })
    }
}

impl PartialOrd for Decimal {
    fn partial_cmp(&self, other: &Decimal) -> Option<Cmp> {
        Some(self.cmp(other))
    }
}

/// The entity and version an event carries, for ordering.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    pub entity: String,
    pub version: Version,
}

impl Position {
    /// Read by hand, as `Deserialize` reads it (see [`Fields`]).
    pub fn from_fields(mut f: Fields) -> Result<Position, String> {
        let position = Position { entity: f.need_string("entity"), version: Version::new(f.need_string("version")) };
        f.done(position)
    }
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
    rfc3339(text).map(|(ms, _)| ms)
}

/// An RFC 3339 timestamp's milliseconds since the Unix epoch, and the digits of its fraction
/// finer than a millisecond (`"456"` of `.123456`).
fn rfc3339(text: &str) -> Option<(i64, &str)> {
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
    let mut finer = "";
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 {
            return None;
        }
        let padded = format!("{:0<3}", &frac[..digits.min(3)]);
        millis = padded.parse().ok()?;
        finer = &frac[digits.min(3)..digits];
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
    Some(((days * 86_400 + hour * 3600 + minute * 60 + second - offset_secs) * 1000 + millis, finer))
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
    fn numbers_compare_exactly() {
        // As f64s, both are 2^53, and equal is not stale.
        assert!(v("9007199254740992").is_older_than(&v("9007199254740993")));
        assert!(v("0.1").is_older_than(&v("0.10000000000000001")));
        // Paddle's occurred_at carries microseconds.
        assert!(v("2023-08-21T11:57:47.390027Z").is_older_than(&v("2023-08-21T11:57:47.390028Z")));
        assert_eq!(v("2023-08-21T11:57:47.390Z").compare(&v("2023-08-21T11:57:47.390000Z")), Cmp::Equal);
        assert_eq!(v("1692619067390.028").compare(&v("2023-08-21T11:57:47.390028Z")), Cmp::Equal);
        for same in ["1000", "1e3", "10E2", "+1000", "1000.000", "001000", "0.1e4", "10000e-1", "1000."] {
            assert_eq!(v(same).compare(&v("1000")), Cmp::Equal, "{same}");
        }
        for zero in ["0", "-0", "+0.0", ".0", "0e9", "-0.000e-3"] {
            assert_eq!(v(zero).compare(&v("0")), Cmp::Equal, "{zero}");
        }
        let ascending = ["-1e3", "-2", "-1.5", "-1.25", "-1", "-.5", "0", "5e-1", "0.55", "1", "9", "10", "1e400"];
        for pair in ascending.windows(2) {
            assert!(v(pair[0]).is_older_than(&v(pair[1])), "{} < {}", pair[0], pair[1]);
            assert!(!v(pair[1]).is_older_than(&v(pair[0])), "{} > {}", pair[1], pair[0]);
        }
        // Not numbers (as Rust's f64 parser would refuse them, or read them as not finite): text.
        for text in ["inf", "NaN", "1e", "e5", ".", "1.2.3", "--1", "0x10", " 1", "1 ", "1e+", ""] {
            assert_eq!(Decimal::parse(text), None, "{text:?}");
        }
        assert!(v("10").is_older_than(&v("9x")), "a number against text compares as text");
    }

    #[test]
    fn timestamps_before_1970_keep_their_fraction() {
        assert_eq!(millis_text(-1, "25"), "-0.75");
        assert_eq!(millis_text(-1001, "001"), "-1000.999");
        assert_eq!(millis_text(-5, "000"), "-5.");
        assert_eq!(millis_text(7, "250"), "7.25");
        let ascending = ["1969-12-31T23:59:59.999Z", "1969-12-31T23:59:59.99925Z", "1970-01-01T00:00:00Z"];
        for pair in ascending.windows(2) {
            assert!(v(pair[0]).is_older_than(&v(pair[1])), "{} < {}", pair[0], pair[1]);
        }
        assert_eq!(v("1969-12-31T23:59:59.99925Z").compare(&v("-0.75")), Cmp::Equal);
    }

    /// A number as text, and its exact value as `mantissa x 10^scale`.
    fn decimal_text() -> impl proptest::strategy::Strategy<Value = (String, i128, i32)> {
        use proptest::prelude::*;
        (
            "[0-9]{0,9}",
            "[0-9]{0,6}",
            any::<bool>(),
            proptest::option::of((-6i32..=6, any::<bool>(), any::<bool>())),
            any::<bool>(),
        )
            .prop_filter("at least one digit", |(w, f, ..)| !(w.is_empty() && f.is_empty()))
            .prop_map(|(whole, fraction, negative, exponent, dot)| {
                let mut text = String::from(if negative { "-" } else { "" });
                text.push_str(&whole);
                if dot || !fraction.is_empty() {
                    text.push('.');
                }
                text.push_str(&fraction);
                let mut scale = -(fraction.len() as i32);
                if let Some((e, upper, plus)) = exponent {
                    text.push(if upper { 'E' } else { 'e' });
                    if plus && e >= 0 {
                        text.push('+');
                    }
                    text.push_str(&e.to_string());
                    scale += e;
                }
                let digits = format!("{whole}{fraction}");
                let mantissa: i128 = digits.parse().unwrap();
                (text, if negative { -mantissa } else { mantissa }, scale)
            })
    }

    proptest::proptest! {
        /// Numbers compare as their exact values do, computed in integers.
        #[test]
        fn decimals_compare_as_exact_values((a, ma, sa) in decimal_text(), (b, mb, sb) in decimal_text()) {
            let k = sa.min(sb);
            let exact = (ma * 10i128.pow((sa - k) as u32)).cmp(&(mb * 10i128.pow((sb - k) as u32)));
            proptest::prop_assert_eq!(v(&a).compare(&v(&b)), exact, "{} against {}", a, b);
            proptest::prop_assert_eq!(Decimal::parse(&a).is_some(), a.parse::<f64>().is_ok());
        }
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
        assert_eq!((p.entity.as_str(), p.version.0.as_str()), ("in_9", "1700000000"));
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
        assert_eq!(p.version.number(), v("1714564800500").number());
        // A forged far-future time from the unsigned header is not used; a little skew is.
        let forged = HeaderList::from([("x-shopify-triggered-at", "2099-01-01T00:00:00Z")]);
        assert_eq!(shopify.position(&forged, br#"{"id":1}"#, NOW), None);
        let skewed = HeaderList::from([("x-shopify-triggered-at", "2024-05-01T12:04:00Z")]);
        assert!(shopify.position(&skewed, br#"{"id":1}"#, NOW).is_some());
        assert_eq!(Locator::parse("bad header"), None);
        assert_eq!(entity_key("shop", "820982911946154500"), "v:shop:820982911946154500");
    }
}
