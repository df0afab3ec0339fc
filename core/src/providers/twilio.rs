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
use crate::signature::{hmac_sha1, matches, sha256_hex, HashFn};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;

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

/// Whether a form body is as Twilio encodes one: visible ASCII (a raw space or byte would be
/// read the same as its encoded form, so two different bodies would share a signature), with
/// every percent escape decoding to valid UTF-8 (invalid bytes would all decode to U+FFFD).
fn strict_form(body: &[u8]) -> bool {
    body.iter().all(|b| b.is_ascii_graphic())
        && body
            .split(|&b| b == b'&')
            .flat_map(|pair| pair.split(|&b| b == b'='))
            .all(|part| percent_encoding::percent_decode(part).decode_utf8().is_ok())
}

/// The POST parameters as Twilio signs them: decoded, sorted by name then value, repeated
/// identical pairs once.
fn signed_params(body: &[u8]) -> Vec<u8> {
    let mut params: Vec<(String, String)> =
        form_urlencoded::parse(body).map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
    params.sort();
    params.dedup();
    let mut signed = Vec::with_capacity(body.len());
    for (k, v) in params {
        signed.extend_from_slice(k.as_bytes());
        signed.extend_from_slice(v.as_bytes());
    }
    signed
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
        if !strict_form(req.body) {
            return Err(Rejection::InvalidSignature);
        }
        return Ok(signed_params(req.body));
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
    let suffix = if body_sha256(unsigned.url).is_some() { Vec::new() } else { signed_params(unsigned.body) };
    let mac = hmac_sha1(key.hmac_key().unwrap_or_default(), &[unsigned.url.as_bytes(), &suffix]);
    HeaderList::new()
        .with("X-Twilio-Signature", STANDARD.encode(mac))
        .with("Content-Type", "application/x-www-form-urlencoded")
        .with("I-Twilio-Idempotency-Token", unsigned.id)
}

#[cfg(test)]
mod tests {
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
        assert!(strict_form(b"a=1+x&b=%C2%BD&c="));
        assert!(!strict_form(b"a=1 x"), "a raw space reads like '+'");
        assert!(!strict_form("a=\u{bd}".as_bytes()), "raw non-ASCII");
        assert!(!strict_form(b"a=%FF"), "an escape that is not UTF-8");
    }

    #[test]
    fn params_are_decoded_sorted_and_deduplicated() {
        assert_eq!(signed_params(b"b=2&a=1+x&Digits=5&Digits=1&Digits=1"), b"Digits1Digits5a1 xb2".to_vec());
    }
}
