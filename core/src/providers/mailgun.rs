//! Mailgun: the signature travels in the JSON body, `{"signature": {"timestamp", "token",
//! "signature"}, "event-data": {...}}`: hex HMAC-SHA256 of `timestamp + token`, keyed with the
//! account's webhook signing key.
//!
//! Mailgun signs only the timestamp and token, never `event-data`: the body itself is not
//! authenticated, only that Mailgun sent a request at that time. The timestamp must be within the
//! source's tolerance, and the idempotency record on `event-data.id` stops replays.
//! Event id: `event-data.id`. Event type: `event-data.event` (`delivered`).

use super::{json_identity, scalar_text, Identity, Inbound, Scheme, Unsigned};
use crate::error::Rejection;
use crate::headers::HeaderList;
use crate::secret::{Secret, SecretEncoding, SigningKey};
use crate::signature::{check_tolerance, from_hex, hmac_sha256, parse_timestamp, to_hex, HashFn};

pub const SECRET_ENCODING: SecretEncoding = SecretEncoding::Literal;

/// What verification reads of the body: the `signature` object. `event-data`, nearly all of
/// the body, is skipped rather than built into a tree.
#[derive(serde::Deserialize)]
struct Signed {
    signature: Option<SignatureFields>,
}

#[derive(serde::Deserialize)]
struct SignatureFields {
    timestamp: Option<serde_json::Value>,
    token: Option<serde_json::Value>,
    signature: Option<serde_json::Value>,
}

pub fn verify<'s>(req: Inbound<'_>, scheme: Scheme<'s>, now: i64) -> Result<&'s Secret, Rejection> {
    let body: Signed = serde_json::from_slice(req.body).map_err(|_| Rejection::MissingSignature)?;
    let part = |value: &Option<serde_json::Value>| value.as_ref().and_then(scalar_text).filter(|v| !v.is_empty());
    let parts = body.signature.as_ref().map(|s| (part(&s.timestamp), part(&s.token), part(&s.signature)));
    let Some((Some(timestamp_text), Some(token), Some(signature))) = parts else {
        return Err(Rejection::MissingSignature);
    };
    let timestamp = parse_timestamp(&timestamp_text).ok_or(Rejection::InvalidSignature)?;
    let candidate = from_hex::<32>(&signature).ok_or(Rejection::InvalidSignature)?;
    let key = scheme
        .first_hmac_match(HashFn::Sha256, &[candidate], &[timestamp_text.as_bytes(), token.as_bytes()])
        .ok_or(Rejection::InvalidSignature)?;
    check_tolerance(timestamp, now, scheme.tolerance_secs)?;
    Ok(key)
}

pub fn identify(req: Inbound<'_>) -> Result<Identity, Rejection> {
    json_identity(req.body, "/event-data/id", "/event-data/event")
}

/// Signs by writing the `signature` object into the body (which must be a JSON object); the
/// token is the request's `id`.
pub fn sign(key: &SigningKey, unsigned: Unsigned<'_>) -> (HeaderList, Vec<u8>) {
    let timestamp = unsigned.timestamp.to_string();
    let mac = hmac_sha256(key.hmac_key().unwrap_or_default(), &[timestamp.as_bytes(), unsigned.id.as_bytes()]);
    let mut body: serde_json::Value = serde_json::from_slice(unsigned.body).unwrap_or_else(|_| serde_json::json!({}));
    if let Some(object) = body.as_object_mut() {
        object.insert(
            "signature".into(),
            serde_json::json!({ "timestamp": timestamp, "token": unsigned.id, "signature": to_hex(&mac) }),
        );
    }
    (HeaderList::new().with("Content-Type", "application/json"), body.to_string().into_bytes())
}
