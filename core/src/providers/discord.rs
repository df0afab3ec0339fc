//! Discord interactions: `X-Signature-Ed25519` (hex), an Ed25519 signature over
//! `X-Signature-Timestamp` followed by the raw body, verified with the application's public key
//! (hex, from the developer portal).
//!
//! Discord's own libraries do not check the timestamp; edgehook applies the source's symmetric
//! tolerance, so a captured interaction cannot be replayed later. A `PING` (type 1) is answered
//! with `{"type":1}`. Event id: body `id`. Event type: body `type` (a number, as text).
//! Discord expects an answer to an interaction within 3 seconds; edgehook acknowledges it (200)
//! and forwards it, so interactions needing a reply must be answered through Discord's API.

use super::{header, json_body, json_identity, Handshake, Identity, Inbound, Scheme, Unsigned};
use crate::error::Rejection;
use crate::headers::HeaderList;
use crate::secret::{Secret, SecretEncoding, SigningKey};
use crate::signature::{check_tolerance, from_hex, parse_timestamp, KeyAlgorithm};

pub const SIGNATURE_HEADER: &str = "x-signature-ed25519";
pub const TIMESTAMP_HEADER: &str = "x-signature-timestamp";
pub const SECRET_ENCODING: SecretEncoding = SecretEncoding::Ed25519Hex;

pub fn verify<'s>(req: Inbound<'_>, scheme: Scheme<'s>, now: i64) -> Result<&'s Secret, Rejection> {
    let (Some(signature), Some(timestamp_text)) = (header(req, SIGNATURE_HEADER), header(req, TIMESTAMP_HEADER)) else {
        return Err(Rejection::MissingSignature);
    };
    let timestamp = parse_timestamp(&timestamp_text).ok_or(Rejection::InvalidSignature)?;
    let signature = from_hex::<64>(&signature).ok_or(Rejection::InvalidSignature)?;
    let key = scheme
        .first_key_match(KeyAlgorithm::Ed25519, &[signature], &[timestamp_text.as_bytes(), req.body])
        .ok_or(Rejection::InvalidSignature)?;
    check_tolerance(timestamp, now, scheme.tolerance_secs)?;
    Ok(key)
}

pub fn handshake(req: Inbound<'_>) -> Option<Handshake> {
    let body = json_body(req.body)?;
    (body.pointer("/type").and_then(|t| t.as_u64()) == Some(1)).then(|| Handshake {
        status: 200,
        content_type: "application/json",
        body: br#"{"type":1}"#.to_vec(),
    })
}

pub fn identify(req: Inbound<'_>) -> Result<Identity, Rejection> {
    json_identity(req.body, "/id", "/type")
}

pub fn sign(key: &SigningKey, unsigned: Unsigned<'_>) -> HeaderList {
    let timestamp = unsigned.timestamp.to_string();
    let signature = match key {
        #[cfg(feature = "native-curves")]
        SigningKey::Ed25519(signing) => {
            use ed25519_dalek::Signer;
            let signed = [timestamp.as_bytes(), unsigned.body].concat();
            crate::signature::to_hex(&signing.sign(&signed).to_bytes())
        }
        _ => String::new(),
    };
    HeaderList::new().with("X-Signature-Ed25519", signature).with("X-Signature-Timestamp", timestamp)
}
