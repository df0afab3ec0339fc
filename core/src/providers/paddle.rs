//! Paddle Billing: `Paddle-Signature: ts=<unix secs>;h1=<hex>[;h1=<hex>...]`, HMAC-SHA256 over
//! `"<ts>:<raw body>"` keyed with the notification destination's secret key (the whole
//! `pdl_ntfset_...` text).
//!
//! Strict parsing: every item is `key=value`, exactly one `ts`, digits only; every `h1` is tried
//! (Paddle sends several while a secret is rotated); unknown keys are ignored. Paddle's SDKs allow
//! 5 seconds and only in the past; edgehook uses the source's symmetric `tolerance_secs`.
//! Event id: body `event_id`. Event type: body `event_type`.

use super::{header, json_identity, Identity, Inbound, Scheme, Unsigned};
use crate::error::Rejection;
use crate::headers::HeaderList;
use crate::secret::{Secret, SecretEncoding, SigningKey};
use crate::signature::{check_tolerance, from_hex, hmac_sha256, parse_timestamp, to_hex, HashFn};

/// Ordering: the entity in `data`, and when the event occurred (RFC 3339).
pub const ORDERING: (&str, &str) = ("/data/id", "/occurred_at");

pub const SIGNATURE_HEADER: &str = "paddle-signature";
pub const SECRET_ENCODING: SecretEncoding = SecretEncoding::Literal;

pub fn verify<'s>(req: Inbound<'_>, scheme: Scheme<'s>, now: i64) -> Result<&'s Secret, Rejection> {
    let signature = header(req, SIGNATURE_HEADER).ok_or(Rejection::MissingSignature)?;
    let mut timestamp = None;
    let mut h1 = Vec::new();
    for item in signature.split(';') {
        let (key, value) = item.split_once('=').ok_or(Rejection::InvalidSignature)?;
        match key {
            "ts" if timestamp.is_none() => {
                timestamp = Some((value, parse_timestamp(value).ok_or(Rejection::InvalidSignature)?));
            }
            "ts" => return Err(Rejection::InvalidSignature),
            "h1" => h1.push(value),
            _ => {}
        }
    }
    let (timestamp_text, timestamp) = timestamp.ok_or(Rejection::InvalidSignature)?;
    let candidates: Vec<[u8; 32]> = h1.iter().filter_map(|h| from_hex::<32>(h)).collect();
    let key = scheme
        .first_hmac_match(HashFn::Sha256, &candidates, &[timestamp_text.as_bytes(), b":", req.body])
        .ok_or(Rejection::InvalidSignature)?;
    check_tolerance(timestamp, now, scheme.tolerance_secs)?;
    Ok(key)
}

pub fn identify(req: Inbound<'_>) -> Result<Identity, Rejection> {
    json_identity(req.body, "/event_id", "/event_type")
}

pub fn sign(key: &SigningKey, unsigned: Unsigned<'_>) -> HeaderList {
    let ts = unsigned.timestamp.to_string();
    let mac = hmac_sha256(key.hmac_key().unwrap_or_default(), &[ts.as_bytes(), b":", unsigned.body]);
    HeaderList::new().with("Paddle-Signature", format!("ts={ts};h1={}", to_hex(&mac)))
}
