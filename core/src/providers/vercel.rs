//! Vercel: `x-vercel-signature`, the hex HMAC-SHA1 of the raw body keyed with the webhook's
//! secret (or the integration's client secret). No timestamp is signed.
//! Event id: body `id`. Event type: body `type` (`deployment.created`).

use super::{header, json_identity, Identity, Inbound, Scheme, Unsigned};
use crate::error::Rejection;
use crate::headers::HeaderList;
use crate::secret::{Secret, SecretEncoding, SigningKey};
use crate::signature::{from_hex, hmac_sha1, to_hex, HashFn};

pub const SIGNATURE_HEADER: &str = "x-vercel-signature";
pub const SECRET_ENCODING: SecretEncoding = SecretEncoding::Literal;

pub fn verify<'s>(req: Inbound<'_>, scheme: Scheme<'s>) -> Result<&'s Secret, Rejection> {
    let signature = header(req, SIGNATURE_HEADER).ok_or(Rejection::MissingSignature)?;
    let candidate = from_hex::<20>(&signature).ok_or(Rejection::InvalidSignature)?;
    scheme.first_hmac_match(HashFn::Sha1, &[candidate], &[req.body]).ok_or(Rejection::InvalidSignature)
}

pub fn identify(req: Inbound<'_>) -> Result<Identity, Rejection> {
    json_identity(req.body, "/id", "/type")
}

pub fn sign(key: &SigningKey, unsigned: Unsigned<'_>) -> HeaderList {
    let mac = hmac_sha1(key.hmac_key().unwrap_or_default(), &[unsigned.body]);
    HeaderList::new().with("x-vercel-signature", to_hex(&mac))
}
