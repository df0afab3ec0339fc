//! The primitives every signature scheme is built from: HMAC over several byte slices (so the
//! signed content is never copied into one buffer), constant-time comparison, and strict
//! timestamp handling.

use crate::error::Rejection;
use crate::secret::{Secret, SecretSet};
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Sha256, Sha512};
use subtle::ConstantTimeEq;

macro_rules! hmac_fn {
    ($name:ident, $hash:ty, $len:expr, $doc:literal) => {
        #[doc = $doc]
        pub fn $name(key: &[u8], parts: &[&[u8]]) -> [u8; $len] {
            // `new_from_slice` accepts keys of any length for HMAC; it cannot fail.
            let mut mac = Hmac::<$hash>::new_from_slice(key).expect("HMAC takes keys of any length");
            for part in parts {
                mac.update(part);
            }
            mac.finalize().into_bytes().into()
        }
    };
}

hmac_fn!(hmac_sha256, Sha256, 32, "HMAC-SHA256 of the concatenation of `parts`, keyed with `key`.");
hmac_fn!(hmac_sha1, Sha1, 20, "HMAC-SHA1 of the concatenation of `parts` (Twilio, Intercom, Vercel).");
hmac_fn!(hmac_sha512, Sha512, 64, "HMAC-SHA512 of the concatenation of `parts` (generic sources).");

/// The first HMAC key of `secrets` whose MAC (made by `mac`) equals one of `candidates`, each
/// compared in constant time after a length check. Every key is tried: rotation.
pub fn first_hmac_match<'s, M: AsRef<[u8]>>(
    secrets: &'s SecretSet,
    candidates: &[impl AsRef<[u8]>],
    mac: impl Fn(&[u8]) -> M,
) -> Option<&'s Secret> {
    secrets.iter().find(|secret| {
        secret.hmac_key().is_some_and(|key| {
            let expected = mac(key);
            candidates.iter().any(|c| matches(expected.as_ref(), c.as_ref()))
        })
    })
}

/// SHA-256 of `bytes` in lower-case hex: the event id of providers that send none.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    to_hex(&Sha256::digest(bytes))
}

/// Compares a computed MAC with a candidate taken from a request, in time that does not depend
/// on where they differ. A length mismatch is rejected first: lengths are public (the scheme
/// fixes them), contents are not.
pub fn matches(expected: &[u8], candidate: &[u8]) -> bool {
    expected.len() == candidate.len() && bool::from(expected.ct_eq(candidate))
}

/// Compares a presented bearer token with the configured one without revealing, through timing,
/// how much of it matched or how long it is: both are hashed first, then compared in constant
/// time. An empty configured token matches nothing.
pub fn token_matches(presented: &str, configured: &str) -> bool {
    token_matches_bytes(presented.as_bytes(), configured.as_bytes())
}

/// [`token_matches`] on bytes.
pub fn token_matches_bytes(presented: &[u8], configured: &[u8]) -> bool {
    use sha2::Digest;
    !configured.is_empty() && bool::from(Sha256::digest(presented).ct_eq(&Sha256::digest(configured)))
}

/// Parses a Unix timestamp in seconds: ASCII digits only (no sign, no spaces, no `+`), at most
/// 12 of them (year 33658), so that a hostile value can never overflow the arithmetic.
pub fn parse_timestamp(text: &str) -> Option<i64> {
    parse_digits(text, 12)
}

/// Parses a Unix timestamp in milliseconds, as strictly: digits only, at most 15 of them.
pub fn parse_timestamp_ms(text: &str) -> Option<i64> {
    parse_digits(text, 15)
}

fn parse_digits(text: &str, max_digits: usize) -> Option<i64> {
    if text.is_empty() || text.len() > max_digits || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// Accepts a signed timestamp within `tolerance_secs` of `now`, in either direction: an old one is
/// a replay, and a future one is a replay prepared in advance (or a clock far off).
pub fn check_tolerance(timestamp: i64, now: i64, tolerance_secs: u64) -> Result<(), Rejection> {
    if timestamp.abs_diff(now) > tolerance_secs {
        return Err(Rejection::TimestampOutOfTolerance);
    }
    Ok(())
}

/// Lower-case hex of a MAC, for schemes that send hex.
pub fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 0xf) as usize] as char);
    }
    out
}

/// Decodes hex of exactly `N` bytes (either case); anything else is `None`.
pub fn from_hex<const N: usize>(text: &str) -> Option<[u8; N]> {
    let bytes = text.as_bytes();
    if bytes.len() != N * 2 {
        return None;
    }
    let mut out = [0u8; N];
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        let hi = (pair[0] as char).to_digit(16)?;
        let lo = (pair[1] as char).to_digit(16)?;
        out[i] = (hi * 16 + lo) as u8;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc4231_case_2() {
        let mac = hmac_sha256(b"Jefe", &[b"what do ya want ", b"for nothing?"]);
        assert_eq!(to_hex(&mac), "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    }

    #[test]
    fn comparison_rejects_other_lengths_and_contents() {
        assert!(matches(b"abc", b"abc"));
        assert!(!matches(b"abc", b"abd"));
        assert!(!matches(b"abc", b"ab"));
        assert!(!matches(b"abc", b""));
    }

    #[test]
    fn bearer_tokens() {
        assert!(token_matches("s3cret", "s3cret"));
        assert!(!token_matches("s3cre", "s3cret"));
        assert!(!token_matches("s3cret ", "s3cret"));
        assert!(!token_matches("", ""));
    }

    #[test]
    fn timestamps_are_digits_only() {
        assert_eq!(parse_timestamp("1614265330"), Some(1614265330));
        for bad in ["", " 1", "1 ", "+1", "-1", "1e9", "0x10", "1234567890123", "１"] {
            assert_eq!(parse_timestamp(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn millisecond_timestamps() {
        assert_eq!(parse_timestamp_ms("1693657560000"), Some(1_693_657_560_000));
        assert_eq!(parse_timestamp("1693657560000"), None);
        assert_eq!(parse_timestamp_ms("1234567890123456"), None);
        assert_eq!(parse_timestamp_ms("-1"), None);
    }

    #[test]
    fn tolerance_is_symmetric_and_inclusive() {
        assert!(check_tolerance(1000, 1300, 300).is_ok());
        assert!(check_tolerance(1600, 1300, 300).is_ok());
        assert_eq!(check_tolerance(999, 1300, 300), Err(Rejection::TimestampOutOfTolerance));
        assert_eq!(check_tolerance(1601, 1300, 300), Err(Rejection::TimestampOutOfTolerance));
    }

    #[test]
    fn hex_round_trips_and_rejects_junk() {
        let bytes = [0u8, 1, 0xab, 0xff];
        assert_eq!(from_hex::<4>(&to_hex(&bytes)), Some(bytes));
        assert_eq!(from_hex::<4>("0001ABFF"), Some(bytes));
        assert_eq!(from_hex::<4>("0001abf"), None);
        assert_eq!(from_hex::<4>("0001abfg"), None);
        assert_eq!(from_hex::<4>("+001abff"), None);
    }
}
