//! GitLab: `X-Gitlab-Token` carries the webhook's secret token itself, compared in constant time
//! (hashed first, so not even its length leaks). It covers neither the body nor a time: anyone who
//! learns the token can forge events, so keep the endpoint on HTTPS. (GitLab 19 also offers
//! signing tokens, which are Standard Webhooks: configure such a source as `standard`.)
//! Event id: `Idempotency-Key` (GitLab 17.4+, stable across retries), else `X-Gitlab-Event-UUID`.
//! Event type: `X-Gitlab-Event` (`Push Hook`).

use super::{header, Identity, Inbound, Scheme, Unsigned};
use crate::error::Rejection;
use crate::headers::HeaderList;
use crate::secret::{Secret, SecretEncoding, SigningKey};
use crate::signature::token_matches_bytes;

pub const TOKEN_HEADER: &str = "x-gitlab-token";
pub const SECRET_ENCODING: SecretEncoding = SecretEncoding::Literal;

pub fn verify<'s>(req: Inbound<'_>, scheme: Scheme<'s>) -> Result<&'s Secret, Rejection> {
    let token = header(req, TOKEN_HEADER).ok_or(Rejection::MissingSignature)?;
    scheme
        .secrets
        .iter()
        .find(|s| s.hmac_key().is_some_and(|key| token_matches_bytes(token.as_bytes(), key)))
        .ok_or(Rejection::InvalidSignature)
}

pub fn identify(req: Inbound<'_>) -> Result<Identity, Rejection> {
    let id = header(req, "idempotency-key")
        .or_else(|| header(req, "x-gitlab-event-uuid"))
        .ok_or(Rejection::MalformedRequest)?;
    Ok(Identity { id, event_type: header(req, "x-gitlab-event") })
}

pub fn sign(key: &SigningKey, unsigned: Unsigned<'_>) -> HeaderList {
    let token = String::from_utf8_lossy(key.hmac_key().unwrap_or_default()).into_owned();
    HeaderList::new().with("X-Gitlab-Token", token).with("Idempotency-Key", unsigned.id)
}
