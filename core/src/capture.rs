//! Capture: what edgehook keeps of every event it accepted, for inspection and replay.
//!
//! Each event's record (in its idempotency shard) carries where its exact body is in R2, its
//! status and every delivery attempt. Bodies are written to R2 in segments, one object per
//! consumer batch holding every new body of the batch, so capture costs one R2 write per batch
//! rather than per event; a body already claim-checked in R2 is referenced where it is. The
//! request headers (secrets redacted) go into the segment too, right before the body: they are
//! most of what a record would otherwise hold, and a Durable Object's storage costs over ten
//! times R2's and ends at 10 GB an object ([`record_headers`]). Everything is kept for
//! `CAPTURE_RETENTION_SECS` (default 30 days).

use crate::envelope::{BodyRef, EventMeta};
use crate::flags::{Flags, Mode};
use crate::idempotency::State;
use crate::json::{self, Fields};
use crate::ordering::Position;
use serde::{Deserialize, Serialize};

/// What an operator sees as an event's status (SPEC section 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

crate::names::by_name!(EventStatus: Accepted, Delivered, Retrying, Dead, Filtered, Paused, Dropped, Stale);

impl EventStatus {
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
        crate::names::Named::from_name(text)
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
            State::Stale => EventStatus::Stale,
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
            EventStatus::Stale => &[State::Stale],
        }
    }
}

/// What is captured of a request when a consumer first takes its event. `body` says where the
/// exact bytes are in R2: a capture segment ([`BodyRef::Segment`]) or a claim-checked object
/// ([`BodyRef::Stored`]); never inline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capture {
    pub source: String,
    pub id: String,
    #[serde(rename = "type")]
    pub event_type: Option<String>,
    pub content_type: Option<String>,
    pub received_at_ms: i64,
    /// Request headers, credentials redacted. As the consumer sends a capture to its shard:
    /// every header, the first `stored_count` (those received) also in the segment, so that a
    /// shard still running code from before segments held headers keeps them all, as it did.
    /// As read back from a record that keeps only their length: just the headers the record
    /// holds itself (those edgehook added once it took the event, `x-edgehook-replay-of`), and
    /// `stored_count` is 0.
    pub headers: HeaderPairs,
    pub body: BodyRef,
    /// Its entity and version, for sources with `ordering`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<Position>,
    /// How many bytes of the segment, right before the body, hold the received headers (their
    /// JSON, as [`headers_json`] writes it); 0 when the record holds them all.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub stored_headers: u64,
    /// How many of `headers` are the ones in the segment (see `headers`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub stored_count: u64,
}

impl Capture {
    /// Read by hand, as `Deserialize` reads it (see [`Fields`]).
    pub fn from_fields(mut f: Fields) -> Result<Capture, String> {
        let headers = json::array(f.need("headers"), "headers").and_then(|pairs| {
            pairs
                .into_iter()
                .map(|pair| {
                    let (name, value) = json::pair(pair, "headers")?;
                    Ok((json::string(name, "headers")?, json::string(value, "headers")?))
                })
                .collect::<Result<HeaderPairs, String>>()
        });
        let body = BodyRef::from_fields(f.need_object("body"));
        let position = f.take("position").map(|p| Position::from_fields(Fields::of(p, "position")));
        let capture = Capture {
            source: f.need_string("source"),
            id: f.need_string("id"),
            event_type: f.string("type"),
            content_type: f.string("content_type"),
            received_at_ms: f.need_i64("received_at_ms"),
            headers: f.check(headers).unwrap_or_default(),
            body: f.check(body).unwrap_or(BodyRef::Inline),
            position: position.and_then(|p| f.check(p)),
            stored_headers: f.u64("stored_headers").unwrap_or(0),
            stored_count: f.u64("stored_count").unwrap_or(0),
        };
        f.done(capture)
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Captured headers: names and values, in the order received.
pub type HeaderPairs = Vec<(String, String)>;

/// Headers as stored in a capture segment: a JSON array of `[name, value]` pairs.
pub fn headers_json(headers: &[(String, String)]) -> Vec<u8> {
    serde_json::to_vec(headers).unwrap_or_else(|_| b"[]".to_vec())
}

/// A capture's headers as its record's `headers` column holds them: the JSON array of the
/// headers themselves when the record holds them all (as every record did before segments held
/// them, so older rows read as they are); otherwise the number of bytes the segment holds them
/// in, followed by the JSON array of those edgehook added, if any (`412` or
/// `412[["x-edgehook-replay-of","..."]]`).
pub fn record_headers(capture: &Capture) -> String {
    let skip = usize::try_from(capture.stored_count).unwrap_or(usize::MAX);
    let held = capture.headers.get(skip..).unwrap_or_default();
    match (capture.stored_headers, held.is_empty()) {
        (0, _) => String::from_utf8(headers_json(&capture.headers)).unwrap_or_else(|_| "[]".to_owned()),
        (stored, true) => stored.to_string(),
        (stored, false) => format!("{stored}{}", String::from_utf8_lossy(&headers_json(held))),
    }
}

/// A record's `headers` column read back ([`record_headers`]): the headers it holds, and how many
/// bytes of the segment hold the others.
pub fn parse_record_headers(column: &str) -> serde_json::Result<(HeaderPairs, u64)> {
    let digits = column.bytes().take_while(u8::is_ascii_digit).count();
    let (stored, listed) = column.split_at(digits);
    let stored = if digits == 0 { 0 } else { crate::json::from_str(stored)? };
    let listed = if listed.is_empty() && digits > 0 { Vec::new() } else { crate::json::from_str(listed)? };
    Ok((listed, stored))
}

/// Shown in place of a capture's stored headers when they do not read back (the segment is not
/// what was written): the body and the rest of the capture are still shown.
pub const UNREADABLE_HEADERS: &str = "x-edgehook-headers-unreadable";

/// What a segment holds for a capture with `stored` bytes of headers, read from the start of
/// its headers to the end of its body: the headers and the body. Headers that do not parse are
/// replaced by an [`UNREADABLE_HEADERS`] entry.
pub fn split_stored(bytes: &[u8], stored: u64) -> (HeaderPairs, &[u8]) {
    let at = usize::try_from(stored).map_or(bytes.len(), |at| at.min(bytes.len()));
    let (headers, body) = bytes.split_at(at);
    let headers = crate::json::from_slice(headers).unwrap_or_else(|_| vec![(UNREADABLE_HEADERS.into(), "true".into())]);
    (headers, body)
}

impl Capture {
    /// The capture of the event `meta` describes, its body at `body`.
    pub fn of(meta: &EventMeta, body: BodyRef) -> Capture {
        Capture {
            source: meta.source.clone(),
            id: meta.id.clone(),
            event_type: meta.event_type.clone(),
            content_type: meta.content_type.clone(),
            received_at_ms: meta.received_at_ms,
            headers: meta.headers.clone(),
            body,
            position: meta.position.clone(),
            stored_headers: 0,
            stored_count: 0,
        }
    }

    /// The same capture with its received headers also in the segment, the `len` bytes before
    /// its body, so that its record need not hold them.
    pub fn with_stored_headers(mut self, len: u64) -> Capture {
        if len > 0 {
            self.stored_headers = len;
            self.stored_count = self.headers.len() as u64;
        }
        self
    }

    /// A message that carries the captured event on: a `replay` (delivered whatever its record
    /// says) or the resumption of a held event (recognised as a continuation by its token), as
    /// delivery attempt `attempt`.
    pub fn continuation(&self, attempt: u32, token: u64, replay: bool) -> EventMeta {
        EventMeta {
            event_type: self.event_type.clone(),
            content_type: self.content_type.clone(),
            attempt,
            retry_token: (!replay).then_some(token),
            replay,
            resumed: !replay,
            position: self.position.clone(),
            ..EventMeta::first_attempt(self.source.clone(), self.id.clone(), self.received_at_ms, self.body.clone())
        }
    }
}

/// R2 prefixes of everything kept for retention: capture segments and claim-checked bodies.
/// Keys continue with the hour they were written in (hours since the Unix epoch, zero-padded so
/// that keys sort by time) and a random part: `captures/00492345/<random>`.
pub const SEGMENT_PREFIX: &str = "captures/";
pub const BODY_PREFIX: &str = "bodies/";

fn hour_of(ms: i64) -> i64 {
    ms.div_euclid(3_600_000)
}

/// The key of a new object under `prefix`, written at `now_ms`.
pub fn timed_key(prefix: &str, now_ms: i64, random: &str) -> String {
    format!("{prefix}{:08}/{random}", hour_of(now_ms))
}

/// Whether the object `key` (under `prefix`) was written in an hour that ended before
/// `cutoff_ms`: then everything in it is past retention. Keys of another form are never expired.
pub fn expired_key(prefix: &str, key: &str, cutoff_ms: i64) -> bool {
    key.strip_prefix(prefix)
        .and_then(|rest| rest.split_once('/'))
        .and_then(|(hour, _)| hour.parse::<i64>().ok())
        .is_some_and(|hour| hour < hour_of(cutoff_ms))
}

/// Objects written before this are deleted: `retention` ago, but never anything an event still
/// held by a kill switch, or still being delivered or retried, may need (the oldest of them
/// received at `oldest_needed_ms`): its next attempt reads its body from there.
pub fn retention_cutoff(now_ms: i64, retention_ms: i64, oldest_needed_ms: Option<i64>) -> i64 {
    let cutoff = now_ms - retention_ms;
    oldest_needed_ms.map_or(cutoff, |needed| cutoff.min(needed))
}

/// An event held by a `paused` kill switch, as its shard lists it for resumption.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Held {
    pub capture: Capture,
    /// The attempt it resumes with: the one the message that was held would have made.
    pub next_attempt: u32,
    /// When a resumption was last sent for it.
    pub resumed_ms: Option<i64>,
}

/// An event a shard holds for a `paused` kill switch, as it tracks them in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeldEntry<'a> {
    pub key: &'a str,
    pub received_at_ms: i64,
    pub source: &'a str,
    pub event_type: Option<&'a str>,
}

/// The held events a shard offers for resumption, oldest first, at most `limit`: of `source`
/// (or of every source), and only those whose kill switch is no longer `paused`. The switch is
/// checked before the limit: checked after, a shard's oldest `limit` events, all still paused
/// (a long pause of one type), would hide every event of another type released behind them.
pub fn resumable<'a>(
    held: impl IntoIterator<Item = HeldEntry<'a>>,
    source: Option<&str>,
    flags: &Flags,
    limit: usize,
) -> Vec<&'a str> {
    let mut due: Vec<HeldEntry<'a>> = held
        .into_iter()
        .filter(|h| source.is_none_or(|want| want == h.source))
        .filter(|h| flags.mode_for(h.source, h.event_type) != Mode::Paused)
        .collect();
    crate::sort::sort_by_key(&mut due, |h| (h.received_at_ms, h.key));
    due.truncate(limit);
    due.into_iter().map(|h| h.key).collect()
}

/// A resumption not acted on (lost, or the flag was paused again) is sent again after this long.
pub const RESUME_AGAIN_MS: i64 = 5 * 60 * 1000;

/// Which held events to resume now, oldest first: those whose kill switch is no longer
/// `paused`, unless a resumption went out for them lately.
pub fn to_resume(held: Vec<Held>, flags: &Flags, now_ms: i64) -> Vec<Held> {
    let mut due: Vec<Held> = held
        .into_iter()
        .filter(|h| flags.mode_for(&h.capture.source, h.capture.event_type.as_deref()) != Mode::Paused)
        .filter(|h| h.resumed_ms.is_none_or(|at| now_ms - at >= RESUME_AGAIN_MS))
        .collect();
    crate::sort::sort_by(&mut due, |a, b| {
        (a.capture.received_at_ms, &a.capture.source, &a.capture.id).cmp(&(
            b.capture.received_at_ms,
            &b.capture.source,
            &b.capture.id,
        ))
    });
    due
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
/// Most events one replay by filter sends (the rest: call again from the cursor it answers), and
/// most dead letters or held events one call replays or resumes (the worker's `MAX_PER_CALL`).
pub const MAX_REPLAY: usize = 1_000;

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

    /// Parses the query of a replay by filter: the listing's filters (at least one of `source`,
    /// `status` and `type`) and `cursor`, and a `limit` of up to [`MAX_REPLAY`] events (the
    /// default). Any other parameter is refused, not ignored as the listing ignores it: this call
    /// sends events again, and a misspelt filter ignored would widen it to every event.
    pub fn parse_replay<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<EventQuery, String> {
        let mut limit = MAX_REPLAY;
        let mut listing = Vec::new();
        for (name, value) in pairs {
            match name {
                "limit" => limit = value.parse().ok().filter(|n| (1..=MAX_REPLAY).contains(n)).ok_or("limit")?,
                "source" | "status" | "type" | "cursor" => listing.push((name, value)),
                _ => return Err(name.to_owned()),
            }
        }
        let q = EventQuery { limit, ..EventQuery::parse(listing)? };
        if q.source.is_none() && q.status.is_none() && q.event_type.is_none() {
            // Replaying everything is never an accident.
            return Err("source".to_owned());
        }
        Ok(q)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flags::Flag;

    fn held(id: &str, event_type: &str, received_at_ms: i64, resumed_ms: Option<i64>) -> Held {
        let meta = EventMeta {
            event_type: Some(event_type.into()),
            headers: vec![("content-type".into(), "application/json".into())],
            ..EventMeta::first_attempt("stripe", id, received_at_ms, BodyRef::Inline)
        };
        let body = BodyRef::Segment { key: "captures/h1/x".into(), offset: 10, len: 20 };
        Held { capture: Capture::of(&meta, body), next_attempt: 3, resumed_ms }
    }

    #[test]
    fn resumes_what_is_no_longer_paused_oldest_first() {
        let flags = Flags(vec![
            Flag { source: "stripe".into(), pattern: "invoice.*".into(), mode: Mode::On, updated_ms: 2 },
            Flag { source: "stripe".into(), pattern: "invoice.upcoming".into(), mode: Mode::Paused, updated_ms: 3 },
        ]);
        let now = 10 * RESUME_AGAIN_MS;
        let rows = vec![
            held("c", "invoice.paid", 300, None),
            held("a", "invoice.paid", 100, None),
            held("held", "invoice.upcoming", 50, None),
            held("lately", "invoice.paid", 10, Some(now - 1000)),
            held("long-ago", "invoice.paid", 200, Some(now - RESUME_AGAIN_MS)),
        ];
        let ids: Vec<String> = to_resume(rows, &flags, now).into_iter().map(|h| h.capture.id).collect();
        assert_eq!(ids, ["a", "long-ago", "c"]);
    }

    #[test]
    fn headers_stored_in_the_segment_leave_the_record_a_length() {
        let received =
            vec![("content-type".to_owned(), "application/json".to_owned()), ("x-a".to_owned(), "1".to_owned())];
        let meta = EventMeta { headers: received.clone(), ..EventMeta::first_attempt("s", "e", 1, BodyRef::Inline) };
        let body = BodyRef::Segment { key: "captures/h1/x".into(), offset: 40, len: 3 };
        let stored = headers_json(&received);

        // Held in the record: the column is the list, as rows written before segments held
        // headers are, and reads back as it was.
        let kept = Capture::of(&meta, body.clone());
        assert_eq!(record_headers(&kept), String::from_utf8(stored.clone()).unwrap());
        assert_eq!(parse_record_headers(&record_headers(&kept)).unwrap(), (received.clone(), 0));
        assert_eq!(Capture::of(&meta, body.clone()).with_stored_headers(0), kept, "0: nothing stored elsewhere");

        // In the segment: the record keeps a length, and what was added later beside it.
        let mut moved = Capture::of(&meta, body).with_stored_headers(stored.len() as u64);
        assert_eq!(moved.headers, received, "still sent to the shard");
        assert_eq!(record_headers(&moved), stored.len().to_string());
        assert_eq!(parse_record_headers(&record_headers(&moved)).unwrap(), (vec![], stored.len() as u64));
        let added = ("x-edgehook-replay-of".to_owned(), "s:first".to_owned());
        moved.headers.push(added.clone());
        let column = record_headers(&moved);
        assert_eq!(column, format!(r#"{}[["x-edgehook-replay-of","s:first"]]"#, stored.len()));
        assert_eq!(parse_record_headers(&column).unwrap(), (vec![added.clone()], stored.len() as u64));
        // A capture travels to its shard as JSON: the lengths go with it, and a shard running
        // code from before (which knows only `headers`) still gets every header.
        let sent = serde_json::to_string(&moved).unwrap();
        assert_eq!(serde_json::from_str::<Capture>(&sent).unwrap(), moved);
        #[derive(Deserialize)]
        struct Before {
            headers: HeaderPairs,
        }
        let mut everything = received.clone();
        everything.push(added);
        assert_eq!(serde_json::from_str::<Before>(&sent).unwrap().headers, everything);

        // Read back from the segment: the headers, then the body.
        let mut segment = stored.clone();
        segment.extend_from_slice(b"abc");
        assert_eq!(split_stored(&segment, stored.len() as u64), (received, &b"abc"[..]));
        let unreadable = vec![(UNREADABLE_HEADERS.to_owned(), "true".to_owned())];
        assert_eq!(split_stored(&segment, segment.len() as u64 + 1), (unreadable.clone(), &b""[..]), "too short");
        assert_eq!(split_stored(&segment, 5), (unreadable, &segment[5..]), "not where the headers end");
        assert!(parse_record_headers("{").is_err() && parse_record_headers("x").is_err());
        assert!(parse_record_headers("12x").is_err() && parse_record_headers("").is_err());
    }

    /// Captures travel to their shards as JSON, which the shards read by hand
    /// (`Capture::from_fields`): they read what serde wrote, and refuse what serde refuses.
    #[test]
    fn captures_read_by_hand_as_serde_reads_them() {
        use crate::json::Fields;
        use crate::ordering::Version;
        let meta = EventMeta {
            event_type: Some("invoice.paid".into()),
            headers: vec![("content-type".into(), "application/json".into()), ("x-\"q\"".into(), "é\n".into())],
            position: Some(Position { entity: "in_1".into(), version: Version::new("1700000000".into()) }),
            ..EventMeta::first_attempt("stripe", "evt_1", 1_700_000_000_123, BodyRef::Inline)
        };
        let bodies = [
            BodyRef::Segment { key: "captures/h1/x".into(), offset: 40, len: 3 },
            BodyRef::Stored { key: "bodies/stripe/evt_1".into(), len: 200_000 },
            BodyRef::Inline,
        ];
        let plain = EventMeta::first_attempt("s", "e", 1, BodyRef::Inline);
        for (meta, body) in bodies.iter().flat_map(|b| [(&meta, b.clone()), (&plain, b.clone())]) {
            for capture in [Capture::of(meta, body.clone()), Capture::of(meta, body).with_stored_headers(57)] {
                let value = serde_json::to_value(&capture).unwrap();
                let by_hand = Capture::from_fields(Fields::of(value.clone(), "capture"));
                assert_eq!(by_hand.as_ref(), Ok(&capture), "{value}");
                assert_eq!(serde_json::from_value::<Capture>(value).unwrap(), capture);
            }
        }
        let good = serde_json::to_value(Capture::of(&meta, bodies[0].clone())).unwrap();
        for (field, bad) in [
            ("source", serde_json::Value::Null),
            ("received_at_ms", "1".into()),
            ("headers", serde_json::json!([["a"]])),
            ("headers", serde_json::json!([["a", 1]])),
            ("body", serde_json::json!({"kind": "stored", "key": "k"})),
            ("body", serde_json::json!({"kind": "segment", "key": "k", "offset": -1, "len": 1})),
            ("position", serde_json::json!({"entity": "in_1"})),
        ] {
            let mut broken = good.clone();
            broken[field] = bad;
            let by_hand = Capture::from_fields(Fields::of(broken.clone(), "capture"));
            assert!(by_hand.is_err(), "{broken}");
            assert!(serde_json::from_value::<Capture>(broken).is_err());
        }
    }

    #[test]
    fn retention_by_hour_keys() {
        let hour = 3_600_000;
        let key = timed_key(SEGMENT_PREFIX, 100 * hour + 5, "abc");
        assert_eq!(key, "captures/00000100/abc");
        assert!(!expired_key(SEGMENT_PREFIX, &key, 100 * hour + 10), "same hour: not over yet");
        assert!(!expired_key(SEGMENT_PREFIX, &key, 100 * hour));
        assert!(expired_key(SEGMENT_PREFIX, &key, 101 * hour));
        assert!(!expired_key(BODY_PREFIX, &key, 200 * hour), "another prefix");
        assert!(!expired_key(SEGMENT_PREFIX, "captures/x/abc", 200 * hour));
        assert!(!expired_key(SEGMENT_PREFIX, "captures/00000001", 200 * hour));
        // Keys sort by time, as the sweep relies on.
        assert!(timed_key(BODY_PREFIX, 99 * hour, "z") < timed_key(BODY_PREFIX, 100 * hour, "a"));
        assert_eq!(retention_cutoff(1000, 100, None), 900);
        assert_eq!(retention_cutoff(1000, 100, Some(500)), 500);
        assert_eq!(retention_cutoff(1000, 100, Some(950)), 900);
    }

    #[test]
    fn resumable_events_are_not_hidden_behind_paused_ones() {
        let flags = Flags(vec![crate::flags::Flag {
            source: "stripe".into(),
            pattern: "invoice.*".into(),
            mode: Mode::Paused,
            updated_ms: 1,
        }]);
        let keys: Vec<String> = (0..5).map(|i| format!("stripe:evt_{i}")).collect();
        let mut held: Vec<HeldEntry> = keys
            .iter()
            .enumerate()
            .map(|(i, key)| HeldEntry {
                key,
                received_at_ms: i as i64,
                source: "stripe",
                event_type: Some("invoice.paid"),
            })
            .collect();
        // Newer than every still-paused one, of a type released since, and of another source.
        held.push(HeldEntry {
            key: "stripe:evt_c",
            received_at_ms: 10,
            source: "stripe",
            event_type: Some("charge.x"),
        });
        held.push(HeldEntry { key: "github:d_1", received_at_ms: 9, source: "github", event_type: None });
        assert_eq!(resumable(held.clone(), Some("stripe"), &flags, 2), ["stripe:evt_c"]);
        assert_eq!(resumable(held.clone(), None, &flags, 2), ["github:d_1", "stripe:evt_c"], "oldest first");
        assert_eq!(resumable(held.clone(), None, &flags, 1), ["github:d_1"]);
        assert_eq!(resumable(held, None, &Flags::default(), 2), ["stripe:evt_0", "stripe:evt_1"]);
    }

    #[test]
    fn continuations_point_at_the_captured_body() {
        let h = held("evt_1", "invoice.paid", 5, None);
        let resume = h.capture.continuation(3, 77, false);
        assert_eq!((resume.attempt, resume.retry_token, resume.replay, resume.resumed), (3, Some(77), false, true));
        assert_eq!(resume.body, h.capture.body);
        assert!(resume.headers.is_empty(), "the capture keeps the headers; messages need not");
        let replay = h.capture.continuation(1, 77, true);
        assert_eq!((replay.retry_token, replay.replay, replay.resumed), (None, true, false));
        assert_eq!((replay.received_at_ms, replay.event_type.as_deref()), (5, Some("invoice.paid")));
    }

    #[test]
    fn statuses_follow_states() {
        assert_eq!(EventStatus::of(State::Completed), EventStatus::Delivered);
        assert_eq!(EventStatus::of(State::Delivering), EventStatus::Accepted);
        for &status in <EventStatus as crate::names::Named>::VARIANTS {
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

    #[test]
    fn replay_queries_take_a_larger_limit_and_nothing_unknown() {
        let c = Cursor { received_at_ms: 5, key: "s:e".into() };
        let q = EventQuery::parse_replay([("status", "dead"), ("cursor", c.encode().as_str())]).unwrap();
        assert_eq!((q.status, q.limit, q.before), (Some(EventStatus::Dead), MAX_REPLAY, Some(c.clone())));
        assert_eq!(EventQuery::parse_replay([("source", "s"), ("limit", "1000")]).unwrap().limit, 1000);
        assert_eq!(EventQuery::parse_replay([("type", "a.b"), ("limit", "1")]).unwrap().limit, 1);
        for (pairs, refused) in [
            (&[("source", "s"), ("limit", "1001")][..], "limit"),
            (&[("source", "s"), ("limit", "0")][..], "limit"),
            // A misspelt filter would otherwise replay every event of the source.
            (&[("source", "s"), ("stauts", "dead")][..], "stauts"),
            (&[("source", "s"), ("status", "gone")][..], "status"),
            // No filter, or only a position: refused.
            (&[][..], "source"),
            (&[("cursor", c.encode().as_str()), ("limit", "5")][..], "source"),
        ] {
            assert_eq!(EventQuery::parse_replay(pairs.iter().copied()), Err(refused.to_owned()), "{pairs:?}");
        }
    }
}
