//! Twitch EventSub: `Twitch-Eventsub-Message-Signature: sha256=<hex>`, HMAC-SHA256 keyed with the
//! subscription's secret over `Twitch-Eventsub-Message-Id` + `Twitch-Eventsub-Message-Timestamp`
//! (the header text exactly as sent, RFC 3339) + the raw body.
//!
//! Twitch asks receivers to reject messages older than 10 minutes; edgehook's default tolerance
//! for Twitch is 600 seconds, in both directions. A `webhook_callback_verification` message is
//! answered with its `challenge` as `text/plain`. Event id: `Twitch-Eventsub-Message-Id`. Event
//! type: `Twitch-Eventsub-Subscription-Type` (`channel.follow`); revocations arrive as events too.

use super::{header, Handshake, Identity, Inbound, Scheme, Unsigned};
use crate::error::Rejection;
use crate::headers::HeaderList;
use crate::json_path::scalar;
use crate::secret::{Secret, SecretEncoding, SigningKey};
use crate::signature::{check_tolerance, from_hex, hmac_sha256, to_hex, HashFn};

pub const SIGNATURE_HEADER: &str = "twitch-eventsub-message-signature";
pub const ID_HEADER: &str = "twitch-eventsub-message-id";
pub const TIMESTAMP_HEADER: &str = "twitch-eventsub-message-timestamp";
pub const TYPE_HEADER: &str = "twitch-eventsub-message-type";
pub const SECRET_ENCODING: SecretEncoding = SecretEncoding::Literal;
/// Twitch: "reject messages older than 10 minutes".
pub const DEFAULT_TOLERANCE_SECS: u64 = 600;

/// What is signed: the message id, the timestamp and the body, run together.
fn signed<'a>(id: &'a str, timestamp: &'a str, body: &'a [u8]) -> [&'a [u8]; 3] {
    [id.as_bytes(), timestamp.as_bytes(), body]
}

/// RFC 3339 to Unix seconds, strictly (`2019-11-16T10:11:12.634234626Z`).
fn parse_rfc3339(text: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(text).ok().map(|t| t.timestamp())
}

pub fn verify<'s>(req: Inbound<'_>, scheme: Scheme<'s>, now: i64) -> Result<&'s Secret, Rejection> {
    let (Some(signature), Some(id), Some(timestamp_text)) =
        (header(req, SIGNATURE_HEADER), header(req, ID_HEADER), header(req, TIMESTAMP_HEADER))
    else {
        return Err(Rejection::MissingSignature);
    };
    let timestamp = parse_rfc3339(&timestamp_text).ok_or(Rejection::InvalidSignature)?;
    let candidate = signature.strip_prefix("sha256=").and_then(from_hex::<32>).ok_or(Rejection::InvalidSignature)?;
    let key = scheme
        .first_hmac_match(HashFn::Sha256, &[candidate], &signed(&id, &timestamp_text, req.body))
        .ok_or(Rejection::InvalidSignature)?;
    check_tolerance(timestamp, now, scheme.tolerance_secs)?;
    Ok(key)
}

pub fn handshake(req: Inbound<'_>) -> Option<Handshake> {
    if header(req, TYPE_HEADER).as_deref() != Some("webhook_callback_verification") {
        return None;
    }
    let challenge = scalar(req.body, "/challenge")?;
    Some(Handshake { status: 200, content_type: "text/plain", body: challenge.into_bytes() })
}

pub fn identify(req: Inbound<'_>) -> Result<Identity, Rejection> {
    let id = header(req, ID_HEADER).ok_or(Rejection::MalformedRequest)?;
    Ok(Identity { id, event_type: header(req, "twitch-eventsub-subscription-type") })
}

pub fn sign(key: &SigningKey, unsigned: Unsigned<'_>) -> HeaderList {
    let timestamp = chrono::DateTime::from_timestamp(unsigned.timestamp, 0)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let mac = hmac_sha256(key.hmac_key().unwrap_or_default(), &signed(unsigned.id, &timestamp, unsigned.body));
    HeaderList::new()
        .with("Twitch-Eventsub-Message-Id", unsigned.id)
        .with("Twitch-Eventsub-Message-Timestamp", timestamp)
        .with("Twitch-Eventsub-Message-Type", "notification")
        .with("Twitch-Eventsub-Message-Signature", format!("sha256={}", to_hex(&mac)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339() {
        assert_eq!(parse_rfc3339("2019-11-16T10:11:12.634234626Z"), Some(1_573_899_072));
        assert_eq!(parse_rfc3339("2019-11-16T11:11:12+01:00"), Some(1_573_899_072));
        for bad in ["1573899072", "2019-11-16T10:11:12", "2019-11-16T25:11:12Z", ""] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }
}
