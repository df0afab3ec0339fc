//! Zoom: `x-zm-signature: v0=<hex>`, HMAC-SHA256 over `"v0:<x-zm-request-timestamp>:<raw body>"`
//! keyed with the app's webhook secret token (used as text). The timestamp window is symmetric.
//!
//! The `endpoint.url_validation` request (signed like any other) is answered with
//! `{"plainToken": <its plainToken>, "encryptedToken": <hex HMAC-SHA256 of plainToken>}`, keyed
//! with the secret that verified it.
//! Zoom's payload has no event id: the SHA-256 of the body stands for it (a redelivery carries the
//! same body, `event_ts` included). Event type: body `event`.

use super::{Handshake, Identity, Inbound, Scheme, Unsigned};
use crate::error::Rejection;
use crate::headers::HeaderList;
use crate::json_path::{scalar, scalars};
use crate::secret::{Secret, SecretEncoding, SigningKey};
use crate::signature::{hmac_sha256, sha256_hex, to_hex};

pub const SIGNATURE_HEADER: &str = "x-zm-signature";
pub const TIMESTAMP_HEADER: &str = "x-zm-request-timestamp";
pub const SECRET_ENCODING: SecretEncoding = SecretEncoding::Literal;

/// Slack's `v0` scheme, under Zoom's header names.
pub fn verify<'s>(req: Inbound<'_>, scheme: Scheme<'s>, now: i64) -> Result<&'s Secret, Rejection> {
    super::slack::verify_v0(req, scheme, now, SIGNATURE_HEADER, TIMESTAMP_HEADER)
}

pub fn handshake(req: Inbound<'_>, key: &Secret) -> Option<Handshake> {
    let [event, plain] = scalars(req.body, ["/event", "/payload/plainToken"])?;
    if event.as_deref() != Some("endpoint.url_validation") {
        return None;
    }
    let plain = plain?;
    let encrypted = to_hex(&hmac_sha256(key.hmac_key()?, &[plain.as_bytes()]));
    // Built by hand to keep Zoom's documented key order.
    let answer = format!(r#"{{"plainToken":{},"encryptedToken":"{encrypted}"}}"#, crate::json::quote(&plain));
    Some(Handshake { status: 200, content_type: "application/json", body: answer.into_bytes() })
}

pub fn identify(req: Inbound<'_>) -> Result<Identity, Rejection> {
    let event_type = scalar(req.body, "/event");
    Ok(Identity { id: sha256_hex(req.body), event_type })
}

pub fn sign(key: &SigningKey, unsigned: Unsigned<'_>) -> HeaderList {
    super::slack::sign_v0(key, unsigned, "x-zm-signature", "x-zm-request-timestamp")
}
