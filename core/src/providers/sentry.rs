//! Sentry (integration platform): `Sentry-Hook-Signature`, the hex HMAC-SHA256 of the raw body
//! keyed with the integration's client secret. `Sentry-Hook-Timestamp` is not signed and is not
//! used. Event id: `Request-ID` (per send: a retry from Sentry may carry a new one). Event type:
//! `Sentry-Hook-Resource`, plus `.<action>` when the body has one (`issue.created`).

use super::{header, Identity, Inbound, Scheme, Unsigned};
use crate::error::Rejection;
use crate::headers::HeaderList;
use crate::json_path::scalar;
use crate::secret::{Secret, SecretEncoding, SigningKey};
use crate::signature::{from_hex, hmac_sha256, to_hex, HashFn};

pub const SIGNATURE_HEADER: &str = "sentry-hook-signature";
pub const SECRET_ENCODING: SecretEncoding = SecretEncoding::Literal;

pub fn verify<'s>(req: Inbound<'_>, scheme: Scheme<'s>) -> Result<&'s Secret, Rejection> {
    let signature = header(req, SIGNATURE_HEADER).ok_or(Rejection::MissingSignature)?;
    let candidate = from_hex::<32>(&signature).ok_or(Rejection::InvalidSignature)?;
    scheme.first_hmac_match(HashFn::Sha256, &[candidate], &[req.body]).ok_or(Rejection::InvalidSignature)
}

pub fn identify(req: Inbound<'_>) -> Result<Identity, Rejection> {
    let id = header(req, "request-id").ok_or(Rejection::MalformedRequest)?;
    let resource = header(req, "sentry-hook-resource");
    let action = scalar(req.body, "/action");
    let event_type = match (resource, action) {
        (Some(resource), Some(action)) => Some(format!("{resource}.{action}")),
        (resource, _) => resource,
    };
    Ok(Identity { id, event_type })
}

pub fn sign(key: &SigningKey, unsigned: Unsigned<'_>) -> HeaderList {
    let mac = hmac_sha256(key.hmac_key().unwrap_or_default(), &[unsigned.body]);
    HeaderList::new().with("Sentry-Hook-Signature", to_hex(&mac)).with("Request-ID", unsigned.id)
}
