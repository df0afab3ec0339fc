//! Typeform: `Typeform-Signature: sha256=<base64>`, HMAC-SHA256 of the raw body keyed with the
//! webhook's secret (used as text). No timestamp is signed.
//! Event id: body `event_id`. Event type: body `event_type` (`form_response`).

use super::{header, json_identity, Identity, Inbound, Scheme, Unsigned};
use crate::error::Rejection;
use crate::headers::HeaderList;
use crate::secret::{Secret, SecretEncoding, SigningKey};
use crate::signature::{hmac_sha256, HashFn};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;

pub const SIGNATURE_HEADER: &str = "typeform-signature";
pub const SECRET_ENCODING: SecretEncoding = SecretEncoding::Literal;

pub fn verify<'s>(req: Inbound<'_>, scheme: Scheme<'s>) -> Result<&'s Secret, Rejection> {
    let signature = header(req, SIGNATURE_HEADER).ok_or(Rejection::MissingSignature)?;
    let b64 = signature.strip_prefix("sha256=").ok_or(Rejection::InvalidSignature)?;
    let candidate = STANDARD.decode(b64).map_err(|_| Rejection::InvalidSignature)?;
    scheme.first_hmac_match(HashFn::Sha256, &[candidate], &[req.body]).ok_or(Rejection::InvalidSignature)
}

pub fn identify(req: Inbound<'_>) -> Result<Identity, Rejection> {
    json_identity(req.body, "/event_id", "/event_type")
}

pub fn sign(key: &SigningKey, unsigned: Unsigned<'_>) -> HeaderList {
    let mac = hmac_sha256(key.hmac_key().unwrap_or_default(), &[unsigned.body]);
    HeaderList::new().with("Typeform-Signature", format!("sha256={}", STANDARD.encode(mac)))
}
