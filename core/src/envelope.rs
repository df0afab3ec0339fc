//! The queue message format: one binary envelope per event.
//!
//! ```text
//! "EH" 0x01 | meta length (u32, big-endian) | meta (JSON) | body bytes (when inline)
//! ```
//!
//! Binary rather than JSON so the body travels as the exact bytes received, with no base64
//! inflation (a third more bytes against the 128 KB message limit) and no UTF-8 assumption. The
//! metadata is a versioned JSON object that carries the attempt count (Queues in workers-rs
//! 0.8.7 do not expose it) and, for dead letters, the last error.

use crate::json::Fields;
use crate::ordering::Position;
use serde::{Deserialize, Serialize};
use thiserror::Error;

const MAGIC: &[u8; 3] = b"EH\x01";
const HEADER_LEN: usize = MAGIC.len() + 4;

/// Cloudflare Queues take messages up to 128 KB including their own metadata; envelopes up to
/// this size travel inline, larger bodies go to R2 (a claim check) and only their key travels.
pub const MAX_INLINE_ENVELOPE: usize = 120 * 1024;

/// Where the body of an event is. Its JSON is an object tagged by `kind` (in queue messages and
/// stored rows, so it does not change); it is read through [`BodyRefFields`] rather than serde's
/// internally tagged enums, which buffer every field through a generic content type (tens of KB
/// of the wasm bundle).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum BodyRef {
    /// After the metadata, in the envelope itself.
    Inline,
    /// In R2 under `key` (claim check); `len` bytes.
    Stored { key: String, len: u64 },
    /// `len` bytes at `offset` of the R2 capture segment `key`: how resumed and replayed events
    /// refer to a body that the consumer captured.
    Segment { key: String, offset: u64, len: u64 },
}

/// A [`BodyRef`] as read: the tag and every field any kind has.
#[derive(Deserialize)]
struct BodyRefFields {
    kind: String,
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    offset: Option<u64>,
    #[serde(default)]
    len: Option<u64>,
}

impl<'de> Deserialize<'de> for BodyRef {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let f = BodyRefFields::deserialize(d)?;
        BodyRef::from_parts(&f.kind, f.key, f.offset, f.len).map_err(serde::de::Error::custom)
    }
}

impl BodyRef {
    fn from_parts(kind: &str, key: Option<String>, offset: Option<u64>, len: Option<u64>) -> Result<BodyRef, String> {
        match (kind, key, offset, len) {
            ("inline", ..) => Ok(BodyRef::Inline),
            ("stored", Some(key), _, Some(len)) => Ok(BodyRef::Stored { key, len }),
            ("segment", Some(key), Some(offset), Some(len)) => Ok(BodyRef::Segment { key, offset, len }),
            (kind, ..) => Err(format!("a body reference of kind {kind:?} without its fields")),
        }
    }

    /// Read by hand, as [`Deserialize`] reads it (see [`Fields`]).
    pub fn from_fields(mut f: Fields) -> Result<BodyRef, String> {
        let kind = f.need_string("kind");
        let body = BodyRef::from_parts(&kind, f.string("key"), f.u64("offset"), f.u64("len"));
        f.done(body)?
    }

    /// The body's length, when it is not inline.
    pub fn stored_len(&self) -> Option<u64> {
        match self {
            BodyRef::Inline => None,
            BodyRef::Stored { len, .. } | BodyRef::Segment { len, .. } => Some(*len),
        }
    }
}

/// Everything about an event except its body bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventMeta {
    pub source: String,
    pub id: String,
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub event_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// When edgehook accepted the event (Unix milliseconds).
    pub received_at_ms: i64,
    /// The delivery attempt this message is for, 1-based.
    pub attempt: u32,
    pub body: BodyRef,
    /// Why the previous attempt failed, when one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// On retry messages: the token the failed attempt recorded, which lets this message (and no
    /// other copy) carry the event on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_token: Option<u64>,
    /// An explicit replay: delivered even if the event was delivered before.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub replay: bool,
    /// Set by the consumer on what it hands to the dead-letter queue itself (the event used up
    /// its attempts, or its body is gone). Anything else found there was moved by the queue.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dead: bool,
    /// Set with `dead` by the dead-letter consumer on a letter the queue moved whose event it
    /// could not mark dead (its shard could not write), stored so as not to be lost: another
    /// copy of the message may have completed the event.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unconfirmed: bool,
    /// Set with `dead` by the event consumer: the queue message that held the event's lease when
    /// it handed the event over. Once it stored the letter, the dead-letter consumer records the
    /// event dead as that message would have, so that the record says `dead` even when the
    /// consumer's own recording failed after the hand-over (it does not retry then: a retry
    /// would deliver the event again).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handed_over_by: Option<String>,
    /// Set with `dead` by the dead-letter consumer on a letter it alerted on but could not store,
    /// and put back on its queue: when it is stored, it is not alerted on a second time.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub alerted: bool,
    /// Its type is not in the source's `events` allow-list: the consumer records it as
    /// `filtered` (captured, never delivered).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub filtered: bool,
    /// Sent to resume an event held by a `paused` kill switch: the consumer delivers the resumed
    /// events of a batch one at a time, in the order they were sent (their arrival order).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub resumed: bool,
    /// The request's headers, credentials redacted, for capture (first attempt only; later
    /// messages leave them out, the capture has them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<(String, String)>,
    /// The entity and version it carries, for sources with `ordering`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<Position>,
    /// The seal of its signature, where the event id travels outside the signature (see
    /// `ingest::seal_of`): the consumer lets one event id, and no other, be taken under it.
    /// First attempts only; what carries an event on after it was taken has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seal: Option<String>,
}

impl EventMeta {
    /// The metadata of an event's first attempt, with no type, content type or history yet.
    pub fn first_attempt(source: impl Into<String>, id: impl Into<String>, received_at_ms: i64, body: BodyRef) -> Self {
        EventMeta {
            source: source.into(),
            id: id.into(),
            event_type: None,
            content_type: None,
            received_at_ms,
            attempt: 1,
            body,
            last_error: None,
            retry_token: None,
            replay: false,
            dead: false,
            unconfirmed: false,
            handed_over_by: None,
            alerted: false,
            filtered: false,
            resumed: false,
            headers: Vec::new(),
            position: None,
            seal: None,
        }
    }
}

/// Why bytes taken from a queue are not an envelope: a poison message.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EnvelopeError {
    #[error("not an edgehook envelope")]
    BadMagic,
    #[error("envelope truncated")]
    Truncated,
    #[error("envelope metadata unreadable: {0}")]
    BadMeta(String),
    #[error("inline body present on a stored-body envelope")]
    UnexpectedBody,
}

/// Encodes metadata and (for inline envelopes) the body.
pub fn encode(meta: &EventMeta, body: &[u8]) -> Vec<u8> {
    let meta_json = serde_json::to_vec(meta).expect("metadata always serialises");
    let inline = if meta.body == BodyRef::Inline { body } else { &[] };
    let mut out = Vec::with_capacity(HEADER_LEN + meta_json.len() + inline.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(meta_json.len() as u32).to_be_bytes());
    out.extend_from_slice(&meta_json);
    out.extend_from_slice(inline);
    out
}

/// The encoded size of an inline envelope, without building it.
pub fn inline_size(meta: &EventMeta, body_len: usize) -> usize {
    HEADER_LEN + serde_json::to_vec(meta).map(|m| m.len()).unwrap_or(usize::MAX / 2) + body_len
}

/// Decodes an envelope: metadata and the inline body (empty for stored bodies).
pub fn decode(bytes: &[u8]) -> Result<(EventMeta, &[u8]), EnvelopeError> {
    let rest = bytes.strip_prefix(MAGIC.as_slice()).ok_or(EnvelopeError::BadMagic)?;
    let (len, rest) = rest.split_first_chunk::<4>().ok_or(EnvelopeError::Truncated)?;
    let len = u32::from_be_bytes(*len) as usize;
    if rest.len() < len {
        return Err(EnvelopeError::Truncated);
    }
    let (meta, body) = rest.split_at(len);
    let meta: EventMeta = crate::json::from_slice(meta).map_err(|e| EnvelopeError::BadMeta(e.to_string()))?;
    if meta.body != BodyRef::Inline && !body.is_empty() {
        return Err(EnvelopeError::UnexpectedBody);
    }
    Ok((meta, body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn body_references_keep_their_json() {
        let cases = [
            (BodyRef::Inline, r#"{"kind":"inline"}"#),
            (BodyRef::Stored { key: "bodies/k".into(), len: 3 }, r#"{"kind":"stored","key":"bodies/k","len":3}"#),
            (
                BodyRef::Segment { key: "captures/s".into(), offset: 5, len: 3 },
                r#"{"kind":"segment","key":"captures/s","offset":5,"len":3}"#,
            ),
        ];
        for (body, json) in cases {
            assert_eq!(serde_json::to_string(&body).unwrap(), json);
            assert_eq!(serde_json::from_str::<BodyRef>(json).unwrap(), body);
        }
        for bad in [
            r#"{"kind":"stored","key":"k"}"#,
            r#"{"kind":"segment","key":"k","len":1}"#,
            r#"{"kind":"x"}"#,
            r#"{"key":"k"}"#,
            "3",
        ] {
            assert!(serde_json::from_str::<BodyRef>(bad).is_err(), "{bad}");
        }
    }

    fn meta(body: BodyRef) -> EventMeta {
        EventMeta {
            event_type: Some("invoice.paid".into()),
            content_type: Some("application/json".into()),
            ..EventMeta::first_attempt("stripe", "evt_1", 1_700_000_000_123, body)
        }
    }

    #[test]
    fn inline_round_trip_keeps_bytes_exactly() {
        let body = b"\x00\xff{\"not\": utf8}\r\n";
        let m = meta(BodyRef::Inline);
        let bytes = encode(&m, body);
        assert_eq!(bytes.len(), inline_size(&m, body.len()));
        assert_eq!(decode(&bytes), Ok((m, &body[..])));
    }

    /// The dead-letter consumer's marks travel with the letter it puts back, and a message
    /// without them (any other, and every one from before `alerted` existed) reads them unset.
    #[test]
    fn dead_letter_marks_round_trip() {
        let plain = meta(BodyRef::Inline);
        let put_back = EventMeta { dead: true, handed_over_by: Some("m1".into()), alerted: true, ..plain.clone() };
        let bytes = encode(&put_back, b"{}");
        assert_eq!(decode(&bytes), Ok((put_back, &b"{}"[..])));
        let bytes = encode(&plain, b"{}");
        assert!(!String::from_utf8_lossy(&bytes).contains("alerted"), "an unset mark is left out");
        assert!(!decode(&bytes).unwrap().0.alerted);
    }

    #[test]
    fn stored_body_is_not_inlined() {
        let m = meta(BodyRef::Stored { key: "bodies/stripe/x".into(), len: 5 });
        let bytes = encode(&m, b"hello");
        let (decoded, body) = decode(&bytes).unwrap();
        assert_eq!(decoded, m);
        assert!(body.is_empty());
    }

    #[test]
    fn poison_is_reported_not_panicked() {
        let good = encode(&meta(BodyRef::Inline), b"x");
        assert_eq!(decode(b""), Err(EnvelopeError::BadMagic));
        assert_eq!(decode(b"{\"json\":1}"), Err(EnvelopeError::BadMagic));
        assert_eq!(decode(&good[..5]), Err(EnvelopeError::Truncated));
        assert_eq!(decode(&good[..20]), Err(EnvelopeError::Truncated));
        let mut bad_meta = good.clone();
        bad_meta[HEADER_LEN] = b'[';
        assert!(matches!(decode(&bad_meta), Err(EnvelopeError::BadMeta(_))));
        let mut stored = encode(&meta(BodyRef::Stored { key: "k".into(), len: 1 }), b"");
        stored.push(b'x');
        assert_eq!(decode(&stored), Err(EnvelopeError::UnexpectedBody));
    }

    proptest! {
        #[test]
        fn any_body_round_trips(body in proptest::collection::vec(any::<u8>(), 0..2048), attempt in 1u32..100) {
            let m = EventMeta { attempt, ..meta(BodyRef::Inline) };
            let bytes = encode(&m, &body);
            prop_assert_eq!(decode(&bytes), Ok((m, body.as_slice())));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode(&bytes);
        }
    }
}
