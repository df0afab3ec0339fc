//! Forwarding an event to its destination (SPEC section 3): the headers it carries and how the
//! destination's answer is judged.

use crate::envelope::EventMeta;
use crate::headers::HeaderList;
use crate::providers::standard_webhooks_signature;
use crate::retry::parse_retry_after;
use crate::secret::Secret;
use crate::signature::{HashFn, MacRequest, Part};

pub const SOURCE_HEADER: &str = "x-edgehook-source";
pub const EVENT_TYPE_HEADER: &str = "x-edgehook-event-type";
pub const ATTEMPT_HEADER: &str = "x-edgehook-attempt";
/// Set on a stale event delivered because its source says `stale = "deliver"`.
pub const STALE_HEADER: &str = "x-edgehook-stale";

/// The HMAC a delivery's signature is: `"<id>.<now>.<body>"` keyed with `DESTINATION_SECRET`,
/// as a request Web Crypto can compute (the worker does, for a large body: faster than Rust's
/// HMAC in wasm, as in verification).
pub fn signature_request(meta: &EventMeta, key: &Secret, now_secs: i64) -> MacRequest {
    let prefix = format!("{}.{now_secs}.", meta.id).into_bytes();
    // `key` is `DESTINATION_SECRET`, which the configuration only accepts as an HMAC secret.
    let key = key.hmac_key().unwrap_or_default().to_vec();
    MacRequest { hash: HashFn::Sha256, key, parts: vec![Part::Bytes(prefix), Part::Body] }
}

/// The headers of one delivery attempt: the original content type, the Standard Webhooks
/// signature whose HMAC is `mac` (of [`signature_request`]: `"<id>.<now>.<body>"` keyed with
/// `DESTINATION_SECRET`, computed by Web Crypto or in Rust), and edgehook's own.
/// `x-edgehook-event-type` is left out for events whose provider names no type.
pub fn delivery_headers(meta: &EventMeta, now_secs: i64, stale: bool, mac: &[u8]) -> HeaderList {
    let mut h = HeaderList::new();
    if let Some(ct) = &meta.content_type {
        h.push("content-type", ct.clone());
    }
    h.push("webhook-id", meta.id.clone());
    h.push("webhook-timestamp", now_secs.to_string());
    h.push("webhook-signature", standard_webhooks_signature(mac));
    h.push(SOURCE_HEADER, meta.source.clone());
    if let Some(t) = &meta.event_type {
        h.push(EVENT_TYPE_HEADER, t.clone());
    }
    h.push(ATTEMPT_HEADER, meta.attempt.to_string());
    if stale {
        h.push(STALE_HEADER, "true");
    }
    h
}

/// How one attempt went, as far as retrying is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptResult {
    /// 2xx: the event is complete.
    Delivered,
    /// Anything else: retried, with the destination's `Retry-After` when it gave one.
    Failed { error: String, retry_after_secs: Option<u64> },
}

/// Judges the destination's answer.
pub fn judge_response(status: u16, retry_after: Option<&str>, now_secs: i64) -> AttemptResult {
    if (200..300).contains(&status) {
        AttemptResult::Delivered
    } else {
        AttemptResult::Failed {
            error: format!("destination answered {status}"),
            retry_after_secs: retry_after.and_then(|v| parse_retry_after(v, now_secs)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::BodyRef;
    use crate::headers::Headers;
    use crate::providers::{Inbound, Provider, Scheme};
    use crate::secret::{decode, SecretEncoding, SecretSet};

    #[test]
    fn forwarded_requests_verify_as_standard_webhooks() {
        let key_text = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let key = decode(key_text, SecretEncoding::StandardWebhooks).unwrap();
        let meta = EventMeta {
            event_type: Some("invoice.paid".into()),
            content_type: Some("application/json; charset=utf-8".into()),
            attempt: 3,
            ..EventMeta::first_attempt("stripe", "evt_1", 0, BodyRef::Inline)
        };
        let body = br#"{"id":"evt_1"}"#;
        let mac = signature_request(&meta, &key, 1_700_000_000).compute(body).unwrap();
        let h = delivery_headers(&meta, 1_700_000_000, false, &mac);
        // The same signature as Standard Webhooks' own signing.
        let signed = crate::providers::sign_standard_webhooks(key.hmac_key().unwrap(), "evt_1", 1_700_000_000, body);
        assert_eq!(h.get("webhook-signature"), Some(signed));
        let mut wrong = mac.clone();
        wrong[0] ^= 1;
        let other = delivery_headers(&meta, 1_700_000_000, false, &wrong);
        assert_ne!(other.get("webhook-signature"), h.get("webhook-signature"), "the MAC given is the one used");
        assert_eq!(h.get("content-type").as_deref(), Some("application/json; charset=utf-8"));
        assert_eq!(h.get("webhook-id").as_deref(), Some("evt_1"));
        assert_eq!(h.get("x-edgehook-source").as_deref(), Some("stripe"));
        assert_eq!(h.get("x-edgehook-event-type").as_deref(), Some("invoice.paid"));
        assert_eq!(h.get("x-edgehook-attempt").as_deref(), Some("3"));
        assert_eq!(h.get("x-edgehook-stale"), None);
        assert_eq!(delivery_headers(&meta, 1, true, &mac).get("x-edgehook-stale").as_deref(), Some("true"));
        let secrets = SecretSet::parse(key_text, SecretEncoding::StandardWebhooks).unwrap();
        let scheme = Scheme::new(&secrets, 300);
        assert!(Provider::Standard.verify(Inbound::post(&h, body), scheme, 1_700_000_000).is_ok());
        let untyped = EventMeta { event_type: None, content_type: None, ..meta };
        let h = delivery_headers(&untyped, 1, false, &mac);
        assert_eq!(h.get("x-edgehook-event-type"), None);
        assert_eq!(h.get("content-type"), None);
    }

    #[test]
    fn only_2xx_delivers() {
        assert_eq!(judge_response(200, None, 0), AttemptResult::Delivered);
        assert_eq!(judge_response(204, None, 0), AttemptResult::Delivered);
        for status in [199, 301, 400, 404, 429, 500, 503] {
            assert!(matches!(judge_response(status, None, 0), AttemptResult::Failed { .. }), "{status}");
        }
        assert_eq!(
            judge_response(429, Some("30"), 0),
            AttemptResult::Failed { error: "destination answered 429".into(), retry_after_secs: Some(30) }
        );
    }
}
