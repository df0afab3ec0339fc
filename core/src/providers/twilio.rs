//! Twilio: `X-Twilio-Signature`, the base64 HMAC-SHA1 keyed with the account's auth token over
//! the full URL Twilio requested, followed by every POST parameter (sorted by name, then value,
//! each name immediately followed by its value).
//!
//! For JSON bodies Twilio adds `bodySHA256=<hex SHA-256 of the body>` to the URL and signs the URL
//! alone; the body is then covered by that hash, which is checked too. Any other body that is
//! neither form-encoded nor covered by `bodySHA256` is refused: nothing would vouch for it.
//! Twilio's libraries accept the URL with or without the scheme's default port; so does edgehook.
//! Twilio signs the decoded parameters, so two encodings that decode alike (`%2b` and `%2B`) share a
//! signature; edgehook forwards the body exactly as received, and refuses encodings that could
//! alias a different body (raw spaces or bytes, escapes that are not UTF-8).
//! The URL must be the public one Twilio was given: set the source's `public_url` behind a proxy.
//! Twilio signs no timestamp.
//! Event id: `I-Twilio-Idempotency-Token`, else the SHA-256 of the body (a retry carries the same
//! body). Event type: `message.<MessageStatus>` or `call.<CallStatus>` when the form has one.

use super::{header, Identity, Inbound, Scheme, Unsigned};
use crate::error::Rejection;
use crate::headers::HeaderList;
use crate::secret::{Secret, SecretEncoding, SigningKey};
use crate::signature::{hex_byte, hmac_sha1, matches, sha256_hex, HashFn};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use std::ops::Range;

pub const SIGNATURE_HEADER: &str = "x-twilio-signature";
pub const SECRET_ENCODING: SecretEncoding = SecretEncoding::Literal;

fn is_form(req: Inbound<'_>) -> bool {
    req.headers
        .get("content-type")
        .is_some_and(|ct| ct.to_ascii_lowercase().starts_with("application/x-www-form-urlencoded"))
}

/// The query string's `bodySHA256`, if any.
fn body_sha256(url: &str) -> Option<String> {
    let query = url.split_once('?')?.1;
    let query = query.split('#').next().unwrap_or(query);
    form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == "bodySHA256").map(|(_, v)| v.into_owned())
}

/// The POST parameters as Twilio signs them: decoded, sorted by name then value, repeated
/// identical pairs once, each name followed by its value. `None` when the body is not encoded as
/// Twilio encodes a form: visible ASCII only (a raw space or byte reads the same as its encoded
/// form, so two different bodies would share a signature), and every name and value decoding to
/// valid UTF-8 (invalid bytes would all decode to U+FFFD).
///
/// Parameters are read as `form_urlencoded::parse` reads them (split on `&`, empty pieces
/// skipped, name and value split at the first `=`, `+` a space, an escape that is not two hex
/// digits left as it is), but in one pass into one buffer, eight bytes at a time, and sorted as
/// ranges of it: decoding and sorting an owned `(String, String)` per parameter cost 13 times
/// the HMAC of a large form (23 times with many short parameters). Eight bytes at a time by
/// hand because the worker is built at `opt-level = "s"`, which does not vectorise loops.
fn signed_params(body: &[u8]) -> Option<Vec<u8>> {
    if !all_visible_ascii(body) {
        return None;
    }
    // Decoding never lengthens, and words are written whole (eight bytes, however many of them
    // are kept), so the body's length plus one word is always room enough.
    let mut decoded = vec![0; body.len() + 8];
    let mut end = 0;
    let mut params = Vec::new();
    let mut rest = body;
    while !rest.is_empty() {
        let (pair, next) = match memchr::memchr(b'&', rest) {
            Some(at) => (&rest[..at], &rest[at + 1..]),
            None => (rest, &rest[rest.len()..]),
        };
        rest = next;
        if pair.is_empty() {
            continue;
        }
        let (name, value) = match memchr::memchr(b'=', pair) {
            Some(at) => (&pair[..at], &pair[at + 1..]),
            None => (pair, &pair[pair.len()..]),
        };
        let name = end..decode_utf8_into(name, &mut decoded, end)?;
        let value = name.end..decode_utf8_into(value, &mut decoded, name.end)?;
        end = value.end;
        params.push(Param { prefix: sort_prefix(&decoded[name.clone()]), name, value });
    }
    let field = |range: &Range<usize>| &decoded[range.clone()];
    // By the prefixes, then (only where they are equal) by the whole name and value: the same
    // order as comparing names and values, but mostly a sort of integers when parameters are
    // many. One sort, so one copy of the standard library's sorting code in the bundle.
    params.sort_unstable_by(|a, b| {
        a.prefix.cmp(&b.prefix).then_with(|| (field(&a.name), field(&a.value)).cmp(&(field(&b.name), field(&b.value))))
    });
    params.dedup_by(|a, b| field(&a.name) == field(&b.name) && field(&a.value) == field(&b.value));
    let mut signed = Vec::with_capacity(end);
    for param in &params {
        signed.extend_from_slice(field(&param.name));
        signed.extend_from_slice(field(&param.value));
    }
    Some(signed)
}

/// One parameter, as ranges of the decoded buffer.
struct Param {
    /// The name's first eight bytes, big-endian and zero-padded: comparing it orders names as
    /// comparing them does wherever it differs, so most of the sort compares integers instead of
    /// calling `memcmp`.
    prefix: u64,
    name: Range<usize>,
    value: Range<usize>,
}

fn sort_prefix(name: &[u8]) -> u64 {
    let mut bytes = [0; 8];
    let len = name.len().min(8);
    bytes[..len].copy_from_slice(&name[..len]);
    u64::from_be_bytes(bytes)
}

const ONES: u64 = u64::from_le_bytes([1; 8]);
const HIGHS: u64 = ONES << 7;

/// The high bit of each byte of `word` that equals `byte`, and no other bit (no carry or borrow
/// crosses bytes, unlike the shorter "has zero byte" test).
fn bytes_equal(word: u64, byte: u8) -> u64 {
    let t = word ^ (ONES * u64::from(byte));
    !(((t & !HIGHS) + !HIGHS) | t) & HIGHS
}

/// Whether every byte is visible ASCII (`!` to `~`), eight at a time.
fn all_visible_ascii(bytes: &[u8]) -> bool {
    let mut words = bytes.chunks_exact(8);
    let mut outside = 0;
    for word in &mut words {
        let w = u64::from_le_bytes(word.try_into().unwrap_or_default());
        // A high bit set; below '!' (among bytes without it); or DEL, 0x7f.
        outside |= (w & HIGHS) | (!((w | HIGHS) - ONES * u64::from(b'!')) & HIGHS) | (((w & !HIGHS) + ONES) & HIGHS);
    }
    outside == 0 && words.remainder().iter().all(u8::is_ascii_graphic)
}

/// Writes `encoded` decoded (`+` a space, `%XX` a byte) into `out` from `start`, and returns
/// where it ends, or `None` when the result is not valid UTF-8. `out` must have room for
/// `encoded` and one word more: whole words are written, and the bytes past the end overwritten
/// later.
///
/// `encoded` is visible ASCII, so only escapes can produce other bytes, and a multi-byte UTF-8
/// sequence can only come from consecutive escapes (an ASCII byte can be neither its start nor
/// its continuation). So the result is valid UTF-8 exactly when every run of consecutive escapes
/// decodes to valid UTF-8, and only those runs are checked, only when one produced a non-ASCII
/// byte.
fn decode_utf8_into(encoded: &[u8], out: &mut [u8], start: usize) -> Option<usize> {
    let mut at = start;
    let mut i = 0;
    while i < encoded.len() {
        // Up to the next '%', eight bytes at a time, each '+' turned into a space.
        while let Some(word) = encoded.get(i..i + 8) {
            let w = u64::from_le_bytes(word.try_into().unwrap_or_default());
            let percent = bytes_equal(w, b'%');
            let w = w ^ ((bytes_equal(w, b'+') >> 7) * u64::from(b'+' ^ b' '));
            out[at..at + 8].copy_from_slice(&w.to_le_bytes());
            let plain = if percent == 0 { 8 } else { percent.trailing_zeros() as usize / 8 };
            at += plain;
            i += plain;
            if plain < 8 {
                break;
            }
        }
        let Some(&byte) = encoded.get(i) else { break };
        if byte != b'%' {
            // The last few bytes, fewer than a word.
            out[at] = if byte == b'+' { b' ' } else { byte };
            at += 1;
            i += 1;
            continue;
        }
        // A run of escapes.
        let run = at;
        let mut high = 0;
        while let Some(&[b'%', h, l]) = encoded.get(i..i + 3) {
            let Some(byte) = hex_byte(h, l) else { break };
            out[at] = byte;
            high |= out[at];
            at += 1;
            i += 3;
        }
        if high >= 0x80 {
            std::str::from_utf8(&out[run..at]).ok()?;
        }
        if at == run {
            // A '%' that starts no escape stands for itself.
            out[at] = b'%';
            at += 1;
            i += 1;
        }
    }
    Some(at)
}

/// The URL as given, and the same URL with the scheme's default port added (or removed).
fn url_variants(url: &str) -> Vec<String> {
    let mut variants = vec![url.to_owned()];
    let (scheme, default_port) = if url.starts_with("https://") {
        ("https://", ":443")
    } else if url.starts_with("http://") {
        ("http://", ":80")
    } else {
        return variants;
    };
    let rest = &url[scheme.len()..];
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    if let Some(host) = authority.strip_suffix(default_port) {
        variants.push(format!("{scheme}{host}{tail}"));
    } else if !authority.contains(':') {
        variants.push(format!("{scheme}{authority}{default_port}{tail}"));
    }
    variants
}

/// What Twilio signs after the URL, or `None` when the body would not be covered.
fn signed_suffix(req: Inbound<'_>) -> Result<Vec<u8>, Rejection> {
    if let Some(expected) = body_sha256(req.url) {
        // The JSON scheme: the body is covered by its hash in the (signed) URL.
        if !matches(sha256_hex(req.body).as_bytes(), expected.to_ascii_lowercase().as_bytes()) {
            return Err(Rejection::InvalidSignature);
        }
        return Ok(Vec::new());
    }
    if is_form(req) {
        return signed_params(req.body).ok_or(Rejection::InvalidSignature);
    }
    if req.body.is_empty() {
        return Ok(Vec::new());
    }
    Err(Rejection::InvalidSignature)
}

pub fn verify<'s>(req: Inbound<'_>, scheme: Scheme<'s>) -> Result<&'s Secret, Rejection> {
    let signature = header(req, SIGNATURE_HEADER).ok_or(Rejection::MissingSignature)?;
    let candidate = STANDARD.decode(signature).map_err(|_| Rejection::InvalidSignature)?;
    let suffix = signed_suffix(req)?;
    url_variants(req.url)
        .iter()
        .find_map(|url| scheme.first_hmac_match(HashFn::Sha1, &[&candidate], &[url.as_bytes(), &suffix]))
        .ok_or(Rejection::InvalidSignature)
}

pub fn identify(req: Inbound<'_>) -> Result<Identity, Rejection> {
    let id = header(req, "i-twilio-idempotency-token").unwrap_or_else(|| sha256_hex(req.body));
    let event_type = if is_form(req) {
        form_urlencoded::parse(req.body).find_map(|(k, v)| match k.as_ref() {
            "MessageStatus" => Some(format!("message.{v}")),
            "CallStatus" => Some(format!("call.{v}")),
            _ => None,
        })
    } else {
        None
    };
    Ok(Identity { id, event_type })
}

/// Signs a form body (or, with `bodySHA256` in the URL, the URL alone).
pub fn sign(key: &SigningKey, unsigned: Unsigned<'_>) -> HeaderList {
    // A body Twilio would not send (raw spaces, bytes that are not UTF-8) gets a signature of
    // the URL alone, which verification refuses as it refuses the body.
    let suffix = match body_sha256(unsigned.url) {
        Some(_) => Vec::new(),
        None => signed_params(unsigned.body).unwrap_or_default(),
    };
    let mac = hmac_sha1(key.hmac_key().unwrap_or_default(), &[unsigned.url.as_bytes(), &suffix]);
    HeaderList::new()
        .with("X-Twilio-Signature", STANDARD.encode(mac))
        .with("Content-Type", "application/x-www-form-urlencoded")
        .with("I-Twilio-Idempotency-Token", unsigned.id)
}

#[cfg(test)]
#[path = "../../tests/support/twilio_form.rs"]
mod twilio_form;

#[cfg(test)]
mod tests {
    use super::twilio_form::twilio_signed;
    use super::*;

    #[test]
    fn default_ports_are_optional() {
        assert_eq!(url_variants("https://a.com/x?y=1"), ["https://a.com/x?y=1", "https://a.com:443/x?y=1"]);
        assert_eq!(url_variants("https://a.com:443/x"), ["https://a.com:443/x", "https://a.com/x"]);
        assert_eq!(url_variants("http://a.com"), ["http://a.com", "http://a.com:80"]);
        assert_eq!(url_variants("https://a.com:8443/x"), ["https://a.com:8443/x"]);
    }

    #[test]
    fn only_strictly_encoded_forms_are_signed() {
        assert!(signed_params(b"a=1+x&b=%C2%BD&c=").is_some());
        assert_eq!(signed_params(b"a=1 x"), None, "a raw space reads like '+'");
        assert_eq!(signed_params("a=\u{bd}".as_bytes()), None, "raw non-ASCII");
        assert_eq!(signed_params(b"a=%FF"), None, "an escape that is not UTF-8");
        assert_eq!(signed_params(b"a=%C2=%BD"), None, "an escape split by '='");
    }

    #[test]
    fn params_are_decoded_sorted_and_deduplicated() {
        let signed = signed_params(b"b=2&a=1+x&Digits=5&Digits=1&&Digits=1&c&%=%4&d=%41%2b=");
        assert_eq!(signed.unwrap(), b"%%4Digits1Digits5a1 xb2cdA+=".to_vec());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(20_000))]

        /// Bodies built mostly from the characters that matter (separators, `+`, escapes valid,
        /// invalid and multi-byte, a raw space, raw non-ASCII) decode, sort and refuse exactly
        /// as the reference does.
        #[test]
        fn signed_params_agree_with_form_urlencoded(pieces in proptest::collection::vec(
            proptest::prop_oneof![
                proptest::sample::select(vec![
                    "&", "=", "+", "%", "%2", "%2B", "%2b", "%41", "%00", "%C2", "%BD", "%C2%BD",
                    "%F0%9F%93%A6", "%FF", "%zz", " ", "\u{bd}", "a", "b", "B", "1", "Digits",
                ].into_iter().map(String::from).collect::<Vec<_>>()),
                "[a-zA-Z0-9%+=&]{0,4}",
                "[a-z0-9+]{6,20}",
            ],
            0..24,
        )) {
            let body = pieces.concat();
            proptest::prop_assert_eq!(signed_params(body.as_bytes()), twilio_signed(body.as_bytes()));
        }
    }
}
