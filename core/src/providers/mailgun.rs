//! Mailgun: the signature travels in the JSON body, `{"signature": {"timestamp", "token",
//! "signature"}, "event-data": {...}}`: hex HMAC-SHA256 of `timestamp + token`, keyed with the
//! account's webhook signing key. For a subaccount's domain Mailgun adds `parent-signature`, the
//! same MAC with the primary account's key, so one key verifies every subaccount: either
//! signature may match.
//!
//! Mailgun signs only the timestamp and token, never `event-data`: the body itself is not
//! authenticated, only that Mailgun sent a request at that time. The timestamp must be within the
//! source's tolerance, the idempotency record on `event-data.id` stops replays of that id, and
//! the signature's seal (`Provider::seal_by`) lets each signature carry one event id: a
//! captured signature object cannot carry forged `event-data` under another.
//! Event id: `event-data.id`. Event type: `event-data.event` (`delivered`).

use super::{json_identity, scalar_text, Identity, Inbound, Scheme, Unsigned};
use crate::error::Rejection;
use crate::headers::HeaderList;
use crate::secret::{Secret, SecretEncoding, SigningKey};
use crate::signature::{check_tolerance, from_hex, hmac_sha256, parse_timestamp, to_hex, HashFn};

pub const SECRET_ENCODING: SecretEncoding = SecretEncoding::Literal;

pub fn verify<'s>(req: Inbound<'_>, scheme: Scheme<'s>, now: i64) -> Result<&'s Secret, Rejection> {
    // What verification reads of the body: the `signature` object (no member of it named twice).
    // `event-data`, nearly all of the body, is skipped rather than built into a tree.
    let Ok(Some([Some(serde_json::Value::Object(fields))])) = crate::json::members(req.body, ["signature"]) else {
        return Err(Rejection::MissingSignature);
    };
    let part = |name: &str| fields.get(name).and_then(scalar_text).filter(|v| !v.is_empty());
    let (Some(timestamp_text), Some(token), Some(signature)) = (part("timestamp"), part("token"), part("signature"))
    else {
        return Err(Rejection::MissingSignature);
    };
    let timestamp = parse_timestamp(&timestamp_text).ok_or(Rejection::InvalidSignature)?;
    let candidates: Vec<[u8; 32]> =
        [Some(signature), part("parent-signature")].into_iter().flatten().filter_map(|s| from_hex::<32>(&s)).collect();
    let key = scheme
        .first_hmac_match(HashFn::Sha256, &candidates, &[timestamp_text.as_bytes(), token.as_bytes()])
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::Provider;
    use crate::secret::SecretSet;

    /// A subaccount's event: `signature` with the subaccount's key, `parent-signature` with the
    /// primary account's.
    fn subaccount_event(signature: &str, parent: &str) -> Vec<u8> {
        let mac = |key: &str| to_hex(&hmac_sha256(key.as_bytes(), &[b"1700000000", b"tok_1"]));
        serde_json::json!({
            "signature": {"timestamp": "1700000000", "token": "tok_1", "signature": mac(signature),
                          "parent-signature": mac(parent)},
            "event-data": {"id": "ev_1", "event": "delivered"},
        })
        .to_string()
        .into_bytes()
    }

    fn verify_with(secret: &str, body: &[u8]) -> Result<(), Rejection> {
        let secrets = SecretSet::parse(secret, SECRET_ENCODING).unwrap();
        let headers = HeaderList::new();
        Provider::Mailgun.verify(Inbound::post(&headers, body), Scheme::new(&secrets, 300), 1_700_000_000).map(drop)
    }

    #[test]
    fn the_primary_key_verifies_a_subaccount_event() {
        let body = subaccount_event("sub-key", "primary-key");
        assert_eq!(verify_with("primary-key", &body), Ok(()));
        assert_eq!(verify_with("sub-key", &body), Ok(()));
        assert_eq!(verify_with("another-key", &body), Err(Rejection::InvalidSignature));
    }

    /// A body naming its signature, or a field of it, twice is refused: which one counts would
    /// depend on the parser.
    #[test]
    fn a_signature_named_twice_is_refused() {
        let body = String::from_utf8(subaccount_event("key", "key")).unwrap();
        assert_eq!(verify_with("key", body.as_bytes()), Ok(()));
        let inner = body.replacen(r#""token":"tok_1""#, r#""token":"tok_1","token":"tok_2""#, 1);
        let outer = body.replacen(r#","signature":{"#, r#","signature":{},"signature":{"#, 1);
        for twice in [inner, outer] {
            assert_ne!(twice, body);
            assert_eq!(verify_with("key", twice.as_bytes()), Err(Rejection::MissingSignature), "{twice}");
        }
        assert_eq!(verify_with("key", br#"{"signature":["1700000000","tok_1"]}"#), Err(Rejection::MissingSignature));
    }
}
