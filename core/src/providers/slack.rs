//! Slack: `X-Slack-Signature: v0=<hex>`, HMAC-SHA256 over `"v0:<X-Slack-Request-Timestamp>:<raw
//! body>"` keyed with the app's signing secret (used as text).
//!
//! The timestamp window is symmetric. A `url_verification` request is answered with its
//! challenge once its signature checks out. Event id: body `event_id` (Events API); requests
//! without one (slash commands, interactivity) use the SHA-256 of the body, so Slack's retries
//! (`X-Slack-Retry-Num`) of them still deduplicate. Event type: `event.type`, else `type`.

use super::{form_payload, header, Handshake, Identity, Inbound, Scheme, Unsigned};
use crate::error::Rejection;
use crate::headers::HeaderList;
use crate::json_path::scalars;
use crate::secret::{Secret, SecretEncoding, SigningKey};
use crate::signature::{check_tolerance, from_hex, hmac_sha256, parse_timestamp, sha256_hex, to_hex, HashFn};

pub const SIGNATURE_HEADER: &str = "x-slack-signature";
pub const TIMESTAMP_HEADER: &str = "x-slack-request-timestamp";
pub const SECRET_ENCODING: SecretEncoding = SecretEncoding::Literal;

/// What is signed: `v0:{timestamp}:{body}`.
fn signed<'a>(timestamp: &'a str, body: &'a [u8]) -> [&'a [u8]; 4] {
    [b"v0:", timestamp.as_bytes(), b":", body]
}

pub fn verify<'s>(req: Inbound<'_>, scheme: Scheme<'s>, now: i64) -> Result<&'s Secret, Rejection> {
    verify_v0(req, scheme, now, SIGNATURE_HEADER, TIMESTAMP_HEADER)
}

/// Slack's `v0` scheme under the given header names: Zoom signs exactly this way too.
pub(super) fn verify_v0<'s>(
    req: Inbound<'_>,
    scheme: Scheme<'s>,
    now: i64,
    signature_header: &str,
    timestamp_header: &str,
) -> Result<&'s Secret, Rejection> {
    let (Some(signature), Some(timestamp_text)) = (header(req, signature_header), header(req, timestamp_header)) else {
        return Err(Rejection::MissingSignature);
    };
    let timestamp = parse_timestamp(&timestamp_text).ok_or(Rejection::InvalidSignature)?;
    let hex = signature.strip_prefix("v0=").ok_or(Rejection::InvalidSignature)?;
    let candidate = from_hex::<32>(hex).ok_or(Rejection::InvalidSignature)?;
    let key = scheme
        .first_hmac_match(HashFn::Sha256, &[candidate], &signed(&timestamp_text, req.body))
        .ok_or(Rejection::InvalidSignature)?;
    check_tolerance(timestamp, now, scheme.tolerance_secs)?;
    Ok(key)
}

pub fn handshake(req: Inbound<'_>) -> Option<Handshake> {
    let [kind, challenge] = scalars(req.body, ["/type", "/challenge"])?;
    if kind.as_deref() != Some("url_verification") {
        return None;
    }
    let challenge = challenge?;
    Some(Handshake { status: 200, content_type: "text/plain", body: challenge.into_bytes() })
}

pub fn identify(req: Inbound<'_>) -> Result<Identity, Rejection> {
    const FIELDS: [&str; 3] = ["/event_id", "/event/type", "/type"];
    // Interactivity (buttons, modals) posts its JSON as a form's `payload` field.
    let [id, event_type, kind] =
        scalars(req.body, FIELDS).or_else(|| scalars(form_payload(req.body)?.as_bytes(), FIELDS)).unwrap_or_default();
    Ok(Identity { id: id.unwrap_or_else(|| sha256_hex(req.body)), event_type: event_type.or(kind) })
}

pub fn sign(key: &SigningKey, unsigned: Unsigned<'_>) -> HeaderList {
    sign_v0(key, unsigned, "X-Slack-Signature", "X-Slack-Request-Timestamp")
}

/// Signs with the `v0` scheme under the given header names.
pub(super) fn sign_v0(
    key: &SigningKey,
    unsigned: Unsigned<'_>,
    signature_header: &str,
    timestamp_header: &str,
) -> HeaderList {
    let timestamp = unsigned.timestamp.to_string();
    let mac = hmac_sha256(key.hmac_key().unwrap_or_default(), &signed(&timestamp, unsigned.body));
    HeaderList::new().with(timestamp_header, timestamp).with(signature_header, format!("v0={}", to_hex(&mac)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::Provider;

    fn identity(body: &[u8]) -> Identity {
        Provider::Slack.identify(Inbound::post(&HeaderList::new(), body), crate::providers::any_scheme()).unwrap()
    }

    #[test]
    fn identity_from_events_api_interactivity_and_commands() {
        let event = identity(br#"{"type":"event_callback","event_id":"Ev1","event":{"type":"app_mention"}}"#);
        assert_eq!((event.id.as_str(), event.event_type.as_deref()), ("Ev1", Some("app_mention")));
        // Interactivity: the JSON is a form's `payload` field; no event id, so the body's hash.
        let form = b"payload=%7B%22type%22%3A%22block_actions%22%2C%22user%22%3A%7B%7D%7D";
        let click = identity(form);
        assert_eq!(click.event_type.as_deref(), Some("block_actions"));
        assert_eq!(click.id, sha256_hex(form));
        // A slash command is a plain form: no type.
        let command = identity(b"command=%2Fdeploy&text=now");
        assert_eq!(command.event_type, None);
        assert_eq!(command.id, sha256_hex(b"command=%2Fdeploy&text=now"));
    }
}
