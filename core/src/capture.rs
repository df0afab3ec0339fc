//! Capture: what edgehook keeps of every event it accepted, for inspection and replay.
//!
//! Each event's record (in its idempotency shard) carries the request headers (secrets redacted),
//! where its exact body is in R2, its status and every delivery attempt. Bodies are written to R2
//! in segments, one object per consumer batch holding every new body of the batch, so capture
//! costs one R2 write per batch rather than per event; a body already claim-checked in R2 is
//! referenced where it is. Everything is kept for `CAPTURE_RETENTION_SECS` (default 30 days).

use crate::idempotency::State;
use serde::{Deserialize, Serialize};

/// What an operator sees as an event's status (SPEC section 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventStatus {
    Accepted,
    Delivered,
    Retrying,
    Dead,
    Filtered,
    Paused,
    Dropped,
    Stale,
}

impl EventStatus {
    pub const ALL: [EventStatus; 8] = [
        EventStatus::Accepted,
        EventStatus::Delivered,
        EventStatus::Retrying,
        EventStatus::Dead,
        EventStatus::Filtered,
        EventStatus::Paused,
        EventStatus::Dropped,
        EventStatus::Stale,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventStatus::Accepted => "accepted",
            EventStatus::Delivered => "delivered",
            EventStatus::Retrying => "retrying",
            EventStatus::Dead => "dead",
            EventStatus::Filtered => "filtered",
            EventStatus::Paused => "paused",
            EventStatus::Dropped => "dropped",
            EventStatus::Stale => "stale",
        }
    }

    pub fn parse(text: &str) -> Option<EventStatus> {
        EventStatus::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// The status of an event whose record is in `state`.
    pub fn of(state: State) -> EventStatus {
        match state {
            State::Delivering => EventStatus::Accepted,
            State::Retrying => EventStatus::Retrying,
            State::Completed => EventStatus::Delivered,
            State::Dead => EventStatus::Dead,
            State::Filtered => EventStatus::Filtered,
            State::Paused => EventStatus::Paused,
            State::Dropped => EventStatus::Dropped,
        }
    }

    /// The record states shown as this status.
    pub fn states(self) -> &'static [State] {
        match self {
            EventStatus::Accepted => &[State::Delivering],
            EventStatus::Delivered => &[State::Completed],
            EventStatus::Retrying => &[State::Retrying],
            EventStatus::Dead => &[State::Dead],
            EventStatus::Filtered => &[State::Filtered],
            EventStatus::Paused => &[State::Paused],
            EventStatus::Dropped => &[State::Dropped],
            EventStatus::Stale => &[],
        }
    }
}

/// Where an event's exact body is kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum BodyLocation {
    /// `len` bytes at `offset` in the R2 segment `key`.
    Segment { key: String, offset: u64, len: u64 },
    /// The whole R2 object `key` (a claim-checked body).
    Object { key: String, len: u64 },
}

/// What is captured of a request when its event is first taken by the consumer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capture {
    pub source: String,
    pub id: String,
    #[serde(rename = "type")]
    pub event_type: Option<String>,
    pub content_type: Option<String>,
    pub received_at_ms: i64,
    /// Request headers, secrets redacted.
    pub headers: Vec<(String, String)>,
    pub body: BodyLocation,
}

/// One delivery attempt, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    pub attempt: u32,
    pub at_ms: i64,
    /// The destination's status code, when it answered.
    pub status: Option<u16>,
    pub latency_ms: u64,
    pub error: Option<String>,
    /// Made for an explicit replay.
    #[serde(default)]
    pub replay: bool,
}

/// An event as the admin API lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventSummary {
    pub source: String,
    pub id: String,
    #[serde(rename = "type")]
    pub event_type: Option<String>,
    pub status: EventStatus,
    pub received_at_ms: i64,
    pub updated_ms: i64,
    pub attempts: u32,
    pub replays: u32,
}

/// Headers never captured as they came: they carry credentials, not event data. (GitLab's
/// `X-Gitlab-Token` is the source's secret itself.)
const SECRET_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-gitlab-token",
    "x-api-key",
    "api-key",
    "x-auth-token",
];

/// Headers as captured: the credentials above replaced by `<redacted>`, everything else as sent.
pub fn redact_headers(headers: impl IntoIterator<Item = (String, String)>) -> Vec<(String, String)> {
    headers
        .into_iter()
        .map(|(name, value)| {
            if SECRET_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
                (name, "<redacted>".to_owned())
            } else {
                (name, value)
            }
        })
        .collect()
}

/// Filters and page of `GET /admin/events`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EventQuery {
    pub source: Option<String>,
    pub status: Option<EventStatus>,
    pub event_type: Option<String>,
    pub limit: usize,
    /// Events received before this one (exclusive), for the next page.
    pub before: Option<Cursor>,
}

/// A position in the newest-first listing: the last event of the previous page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub received_at_ms: i64,
    pub key: String,
}

pub const DEFAULT_PAGE: usize = 50;
pub const MAX_PAGE: usize = 200;

impl Cursor {
    /// `<ms>.<hex of the key>`: opaque to clients, safe in a URL.
    pub fn encode(&self) -> String {
        format!("{}.{}", self.received_at_ms, crate::signature::to_hex(self.key.as_bytes()))
    }

    pub fn decode(text: &str) -> Option<Cursor> {
        let (ms, hex) = text.split_once('.')?;
        let received_at_ms = ms.parse().ok()?;
        if hex.len() % 2 != 0 {
            return None;
        }
        let bytes: Option<Vec<u8>> =
            (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok()).collect();
        Some(Cursor { received_at_ms, key: String::from_utf8(bytes?).ok()? })
    }
}

impl EventQuery {
    /// Parses the query string's pairs; an error names the bad parameter.
    pub fn parse<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<EventQuery, String> {
        let mut q = EventQuery { limit: DEFAULT_PAGE, ..EventQuery::default() };
        for (name, value) in pairs {
            match name {
                "source" if crate::config::valid_source_name(value) => q.source = Some(value.to_owned()),
                "status" => q.status = Some(EventStatus::parse(value).ok_or("status")?),
                "type" if !value.is_empty() && value.len() <= 255 => q.event_type = Some(value.to_owned()),
                "limit" => {
                    q.limit = value.parse().ok().filter(|n| (1..=MAX_PAGE).contains(n)).ok_or("limit")?;
                }
                "cursor" => q.before = Some(Cursor::decode(value).ok_or("cursor")?),
                "source" | "type" => return Err(name.to_owned()),
                _ => {}
            }
        }
        Ok(q)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_states() {
        assert_eq!(EventStatus::of(State::Completed), EventStatus::Delivered);
        assert_eq!(EventStatus::of(State::Delivering), EventStatus::Accepted);
        for status in EventStatus::ALL {
            assert_eq!(EventStatus::parse(status.as_str()), Some(status));
            for state in status.states() {
                assert_eq!(EventStatus::of(*state), status);
            }
        }
    }

    #[test]
    fn credentials_are_redacted() {
        let h = vec![
            ("X-Gitlab-Token".to_owned(), "s3cret".to_owned()),
            ("Authorization".to_owned(), "Bearer x".to_owned()),
            ("Stripe-Signature".to_owned(), "t=1,v1=ab".to_owned()),
        ];
        let r = redact_headers(h);
        assert_eq!(r[0].1, "<redacted>");
        assert_eq!(r[1].1, "<redacted>");
        assert_eq!(r[2].1, "t=1,v1=ab");
    }

    #[test]
    fn queries_and_cursors() {
        let c = Cursor { received_at_ms: 1_700_000_000_123, key: "stripe:evt_1/ü".into() };
        assert_eq!(Cursor::decode(&c.encode()), Some(c.clone()));
        assert_eq!(Cursor::decode("x.00"), None);
        assert_eq!(Cursor::decode("1.0"), None);
        let q = EventQuery::parse([
            ("source", "stripe"),
            ("status", "dead"),
            ("type", "invoice.paid"),
            ("limit", "10"),
            ("cursor", c.encode().as_str()),
        ])
        .unwrap();
        assert_eq!(
            q,
            EventQuery {
                source: Some("stripe".into()),
                status: Some(EventStatus::Dead),
                event_type: Some("invoice.paid".into()),
                limit: 10,
                before: Some(c)
            }
        );
        assert_eq!(EventQuery::parse([]).unwrap().limit, DEFAULT_PAGE);
        for (name, value) in
            [("status", "gone"), ("limit", "0"), ("limit", "1000"), ("cursor", "x"), ("source", "Bad Name")]
        {
            assert_eq!(EventQuery::parse([(name, value)]), Err(name.to_owned()), "{name}={value}");
        }
    }
}
