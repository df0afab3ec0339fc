//! HubSpot (signature v3): `X-HubSpot-Signature-v3`, the base64 HMAC-SHA256 keyed with the app's
//! client secret over method + URI + raw body + `X-HubSpot-Request-Timestamp` (Unix
//! milliseconds), where the URI is the full public URL with only these escapes decoded:
//! `%3A %2F %3F %40 %21 %24 %27 %28 %29 %2A %2C %3B`.
//!
//! HubSpot rejects timestamps older than 5 minutes; edgehook applies the source's tolerance in both
//! directions. Set the source's `public_url` when the worker is reached through another name.
//! Each request is a JSON array of events: the batch's id is the SHA-256 of its events'
//! `subscriptionId:eventId` pairs (not of the body, which changes with `attemptNumber` on every
//! retry), and its type the first event's `subscriptionType`.

use super::{header, json_body, Identity, Inbound, Scheme, Unsigned};
use crate::error::Rejection;
use crate::headers::HeaderList;
use crate::json::text;
use crate::secret::{Secret, SecretEncoding, SigningKey};
use crate::signature::{check_tolerance, hmac_sha256, parse_timestamp_ms, sha256_hex, HashFn};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;

pub const SIGNATURE_HEADER: &str = "x-hubspot-signature-v3";
pub const TIMESTAMP_HEADER: &str = "x-hubspot-request-timestamp";
pub const SECRET_ENCODING: SecretEncoding = SecretEncoding::Literal;

/// The URI as HubSpot signs it: these escapes decoded (either case), every other byte as is.
fn signed_uri(url: &str) -> String {
    const DECODED: &[(&str, char)] = &[
        ("3A", ':'),
        ("2F", '/'),
        ("3F", '?'),
        ("40", '@'),
        ("21", '!'),
        ("24", '$'),
        ("27", '\''),
        ("28", '('),
        ("29", ')'),
        ("2A", '*'),
        ("2C", ','),
        ("3B", ';'),
    ];
    let mut out = String::with_capacity(url.len());
    let mut rest = url;
    while let Some(at) = rest.find('%') {
        out.push_str(&rest[..at]);
        let escape = rest.get(at + 1..at + 3).map(str::to_ascii_uppercase);
        match escape.and_then(|e| DECODED.iter().find(|(hex, _)| *hex == e)) {
            Some((_, c)) => {
                out.push(*c);
                rest = &rest[at + 3..];
            }
            None => {
                out.push('%');
                rest = &rest[at + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// What is signed: method, URI (see [`signed_uri`]), body and timestamp, run together.
fn signed<'a>(method: &'a str, uri: &'a str, body: &'a [u8], timestamp: &'a str) -> [&'a [u8]; 4] {
    [method.as_bytes(), uri.as_bytes(), body, timestamp.as_bytes()]
}

pub fn verify<'s>(req: Inbound<'_>, scheme: Scheme<'s>, now: i64) -> Result<&'s Secret, Rejection> {
    let (Some(signature), Some(timestamp_text)) = (header(req, SIGNATURE_HEADER), header(req, TIMESTAMP_HEADER)) else {
        return Err(Rejection::MissingSignature);
    };
    let timestamp_ms = parse_timestamp_ms(&timestamp_text).ok_or(Rejection::InvalidSignature)?;
    let candidate = STANDARD.decode(signature).map_err(|_| Rejection::InvalidSignature)?;
    let uri = signed_uri(req.url);
    let key = scheme
        .first_hmac_match(HashFn::Sha256, &[candidate], &signed(req.method, &uri, req.body, &timestamp_text))
        .ok_or(Rejection::InvalidSignature)?;
    check_tolerance(timestamp_ms.div_euclid(1000), now, scheme.tolerance_secs)?;
    Ok(key)
}

pub fn identify(req: Inbound<'_>) -> Result<Identity, Rejection> {
    let events = json_body(req.body).and_then(|b| b.as_array().cloned()).filter(|e| !e.is_empty());
    let Some(events) = events else {
        return Ok(Identity { id: sha256_hex(req.body), event_type: None });
    };
    // Each id as its JSON text (a number, a string quoted, whatever a sender put there).
    let pairs: String =
        events.iter().map(|e| format!("{}:{},", text(&e["subscriptionId"]), text(&e["eventId"]))).collect();
    let event_type = events[0]["subscriptionType"].as_str().map(str::to_owned);
    Ok(Identity { id: sha256_hex(pairs.as_bytes()), event_type })
}

pub fn sign(key: &SigningKey, unsigned: Unsigned<'_>) -> HeaderList {
    let timestamp = (unsigned.timestamp * 1000).to_string();
    let uri = signed_uri(unsigned.url);
    let mac =
        hmac_sha256(key.hmac_key().unwrap_or_default(), &signed(unsigned.method, &uri, unsigned.body, &timestamp));
    HeaderList::new()
        .with("X-HubSpot-Signature-v3", STANDARD.encode(mac))
        .with("X-HubSpot-Request-Timestamp", timestamp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_listed_escapes_are_decoded() {
        assert_eq!(
            signed_uri("https://a.com/x?next=https%3A%2F%2Fb.com%3Fu%3Dme%40c.com%2cteam%21"),
            "https://a.com/x?next=https://b.com?u%3Dme@c.com,team!"
        );
        assert_eq!(signed_uri("https://a.com/%"), "https://a.com/%");
        assert_eq!(signed_uri("https://a.com/%2"), "https://a.com/%2");
    }
}
