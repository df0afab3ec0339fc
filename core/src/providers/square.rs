//! Square: `x-square-hmacsha256-signature`, the base64 HMAC-SHA256 keyed with the subscription's
//! signature key (used as text) over the notification URL followed by the raw body.
//!
//! The URL is the one configured in Square: set the source's `public_url` when the worker is
//! reached through another name. The legacy SHA-1 `x-square-signature` is never accepted on its
//! own. Square signs no timestamp. Event id: body `event_id`. Event type: body `type`.

use super::{header, json_identity, Identity, Inbound, Scheme, Unsigned};
use crate::error::Rejection;
use crate::headers::HeaderList;
use crate::secret::{Secret, SecretEncoding, SigningKey};
use crate::signature::{hmac_sha256, HashFn};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;

/// Ordering: the object in `data`, and when the event was created (RFC 3339).
pub const ORDERING: (&str, &str) = ("/data/id", "/created_at");

pub const SIGNATURE_HEADER: &str = "x-square-hmacsha256-signature";
pub const SECRET_ENCODING: SecretEncoding = SecretEncoding::Literal;

pub fn verify<'s>(req: Inbound<'_>, scheme: Scheme<'s>) -> Result<&'s Secret, Rejection> {
    let signature = header(req, SIGNATURE_HEADER).ok_or(Rejection::MissingSignature)?;
    let candidate = STANDARD.decode(signature).map_err(|_| Rejection::InvalidSignature)?;
    scheme
        .first_hmac_match(HashFn::Sha256, &[candidate], &[req.url.as_bytes(), req.body])
        .ok_or(Rejection::InvalidSignature)
}

pub fn identify(req: Inbound<'_>) -> Result<Identity, Rejection> {
    json_identity(req.body, "/event_id", "/type")
}

pub fn sign(key: &SigningKey, unsigned: Unsigned<'_>) -> HeaderList {
    let mac = hmac_sha256(key.hmac_key().unwrap_or_default(), &[unsigned.url.as_bytes(), unsigned.body]);
    HeaderList::new().with("x-square-hmacsha256-signature", STANDARD.encode(mac))
}
