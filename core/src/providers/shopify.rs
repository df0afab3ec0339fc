//! Shopify: `X-Shopify-Hmac-Sha256`, the base64 HMAC-SHA256 of the raw body keyed with the app's
//! client secret (used as text).
//!
//! Shopify signs no timestamp (`X-Shopify-Triggered-At` is not covered), so replays are stopped by
//! the idempotency record. Event id: `X-Shopify-Event-Id`, else `X-Shopify-Webhook-Id`. Event
//! type: `X-Shopify-Topic` (`orders/create`). `X-Shopify-Shop-Domain` is not signed: never trust
//! it to tell shops apart.

use super::{header, Identity, Inbound, Scheme, Unsigned};
use crate::error::Rejection;
use crate::headers::HeaderList;
use crate::secret::{Secret, SecretEncoding, SigningKey};
use crate::signature::{hmac_sha256, HashFn};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;

/// Ordering: the resource's id in the body, and when Shopify triggered the webhook (RFC 3339
/// header; Shopify's own advice for ordering).
pub const ORDERING: (&str, &str) = ("/id", "X-Shopify-Triggered-At");

pub const SIGNATURE_HEADER: &str = "x-shopify-hmac-sha256";
pub const SECRET_ENCODING: SecretEncoding = SecretEncoding::Literal;

pub fn verify<'s>(req: Inbound<'_>, scheme: Scheme<'s>) -> Result<&'s Secret, Rejection> {
    let signature = header(req, SIGNATURE_HEADER).ok_or(Rejection::MissingSignature)?;
    let candidate = STANDARD.decode(signature).map_err(|_| Rejection::InvalidSignature)?;
    scheme.first_hmac_match(HashFn::Sha256, &[candidate], &[req.body]).ok_or(Rejection::InvalidSignature)
}

pub fn identify(req: Inbound<'_>) -> Result<Identity, Rejection> {
    let id = header(req, "x-shopify-event-id")
        .or_else(|| header(req, "x-shopify-webhook-id"))
        .ok_or(Rejection::MalformedRequest)?;
    Ok(Identity { id, event_type: header(req, "x-shopify-topic") })
}

pub fn sign(key: &SigningKey, unsigned: Unsigned<'_>) -> HeaderList {
    let mac = hmac_sha256(key.hmac_key().unwrap_or_default(), &[unsigned.body]);
    HeaderList::new()
        .with("X-Shopify-Hmac-Sha256", STANDARD.encode(mac))
        .with("X-Shopify-Event-Id", unsigned.id)
        .with("X-Shopify-Webhook-Id", unsigned.id)
}
