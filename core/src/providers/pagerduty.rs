//! PagerDuty (webhooks v3): `X-PagerDuty-Signature: v1=<hex>[,v1=<hex>...]`, HMAC-SHA256 of the
//! raw body, one signature per active secret of the subscription; any may match, other versions
//! are ignored. No timestamp is signed.
//! Event id: body `event.id`. Event type: body `event.event_type` (`incident.triggered`).

use super::{header, json_identity, Identity, Inbound, Scheme, Unsigned};
use crate::error::Rejection;
use crate::headers::HeaderList;
use crate::secret::{Secret, SecretEncoding, SigningKey};
use crate::signature::{from_hex, hmac_sha256, to_hex, HashFn};

pub const SIGNATURE_HEADER: &str = "x-pagerduty-signature";
pub const SECRET_ENCODING: SecretEncoding = SecretEncoding::Literal;

pub fn verify<'s>(req: Inbound<'_>, scheme: Scheme<'s>) -> Result<&'s Secret, Rejection> {
    let signature = header(req, SIGNATURE_HEADER).ok_or(Rejection::MissingSignature)?;
    let candidates: Vec<[u8; 32]> =
        signature.split(',').filter_map(|s| s.strip_prefix("v1=")).filter_map(from_hex::<32>).collect();
    scheme.first_hmac_match(HashFn::Sha256, &candidates, &[req.body]).ok_or(Rejection::InvalidSignature)
}

pub fn identify(req: Inbound<'_>) -> Result<Identity, Rejection> {
    json_identity(req.body, "/event/id", "/event/event_type")
}

pub fn sign(key: &SigningKey, unsigned: Unsigned<'_>) -> HeaderList {
    let mac = hmac_sha256(key.hmac_key().unwrap_or_default(), &[unsigned.body]);
    HeaderList::new().with("X-PagerDuty-Signature", format!("v1={}", to_hex(&mac)))
}
