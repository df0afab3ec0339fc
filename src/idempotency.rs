//! Idempotency records in SQLite-backed Durable Objects, and the batching client the consumer uses.
//!
//! Records are spread over `SHARDS` objects by key (see the core's `idempotency` module for
//! why, and for why the consumer, not the receiver, consults them). Each object applies the
//! core's pure transitions to its rows; its input gate makes read-then-write atomic, so two
//! messages for one event can never both take its lease. Expired records are ignored on read,
//! and the object's alarm drops whole time partitions once all they hold has expired (see
//! [`IdempotencyShard`]), never a sweep that could miss them.

use crate::batch::Batcher;
use crate::billing::{self, Op as Billed, Sql};
use crate::env::{bindings, now_ms};
use crate::http::{array, from_json, items, to_json, Json};
use crate::rows::{FromRow, Row, Rows};
use crate::rpc;
use edgehook_core::capture::{resumable, Attempt, Capture, EventStatus, EventSummary, Held, HeldEntry};
use edgehook_core::flags::Flags;
use edgehook_core::idempotency::{
    self as core, seal_key, shard_of, Begin, Clock, DeadMark, Message, Outcome, Record, SealClaim, State, Write, SHARDS,
};
use edgehook_core::ingest::idempotency_key;
use edgehook_core::json::Fields;
use edgehook_core::ordering::Version;
use edgehook_core::partition::Partitions;
use edgehook_core::sort;
use futures_util::future::join_all;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use wasm_bindgen::JsValue;
use worker::{
    durable_object, DurableObject, Env, ObjectNamespace, Request, Response, Result, ScheduledTime, SqlStorageValue,
    State as ObjectState,
};

/// One operation on one record.
#[derive(Debug, Serialize)]
#[serde(rename_all = "snake_case")]
enum Op {
    /// `capture` is stored when the record is new (or has no capture yet).
    Begin {
        key: String,
        message_id: String,
        attempts: u32,
        retry_token: Option<u64>,
        replay: bool,
        lease_ms: i64,
        capture: Option<Box<Capture>>,
        /// The outcome, when it is known before the event is taken: recorded in the same write.
        settle: Option<Outcome>,
    },
    /// `attempt` is appended to the event's captured attempts.
    Finish {
        key: String,
        message_id: String,
        outcome: Outcome,
        attempt: Option<Attempt>,
    },
    MarkDead {
        key: String,
        message_id: String,
        attempts: u32,
        retry_token: Option<u64>,
        replay: bool,
    },
    /// One captured event, with its attempts.
    Get {
        key: String,
    },
    /// Counts an explicit replay.
    Replayed {
        key: String,
    },
    /// Notes that resumptions were sent for these held events.
    Resumed {
        keys: Vec<String>,
    },
    /// Captured events matching a query, newest first (sent to every shard).
    List {
        query: ListQuery,
    },
    /// Events held by a `paused` kill switch, oldest first (sent to every shard).
    Held {
        source: Option<String>,
        /// The kill switches now: only events no longer `paused` are answered.
        flags: Flags,
        limit: u32,
    },
    /// When the oldest open and held events were accepted (every shard).
    Oldest,
    /// The newest delivered version of an entity (`key` from `ordering::entity_key`).
    Newest {
        key: String,
    },
    /// Records that `version` of an entity was delivered (kept if it is the newest).
    Delivered {
        key: String,
        version: Version,
    },
    /// Claims a signature's seal (`key` from `core::seal_key`) for the event `event`.
    Seal {
        key: String,
        event: String,
    },
    /// The shard's live partitions and how many events they hold (tests watch expiry with it).
    #[cfg(feature = "faults")]
    Storage,
}

impl Op {
    /// Reads the operations of one call, as serde writes them: `{"begin": {"key": ...}}`, or
    /// `"oldest"` for an operation without fields. Read by hand from a [`Value`] (see
    /// `edgehook_core::json::Fields`): serde's derive gave each operation, and each type of
    /// field, a deserialiser of its own (BENCHMARKS, section 4). Fields nobody reads are
    /// ignored, so an older release's operations (without `settle`, say) read as before.
    fn read_all(text: &str) -> Result<Vec<Op>> {
        let values = items(text, "operations")?;
        values.into_iter().map(Op::read).collect::<std::result::Result<_, String>>().map_err(worker::Error::RustError)
    }

    fn read(value: Value) -> std::result::Result<Op, String> {
        // Kill switches and attempts are read elsewhere by derived deserialisers the bundle has
        // anyway: these two are read by them too.
        fn reread<T: serde::de::DeserializeOwned>(value: Value) -> std::result::Result<T, String> {
            edgehook_core::json::from_value(value).map_err(|e| e.to_string())
        }
        let (name, mut f) = edgehook_core::json::variant(value)?;
        let op = match name.as_str() {
            "begin" => Op::Begin {
                key: f.need_string("key"),
                message_id: f.need_string("message_id"),
                attempts: f.need_u32("attempts"),
                retry_token: f.u64("retry_token"),
                replay: f.need_bool("replay"),
                lease_ms: f.need_i64("lease_ms"),
                capture: match f.take("capture") {
                    Some(c) => f.check(Capture::from_fields(Fields::of(c, "capture"))).map(Box::new),
                    None => None,
                },
                settle: match f.take("settle") {
                    Some(o) => f.check(Outcome::from_value(o)),
                    None => None,
                },
            },
            "finish" => Op::Finish {
                key: f.need_string("key"),
                message_id: f.need_string("message_id"),
                outcome: {
                    // An unreadable outcome is kept as the error, and `done` refuses the
                    // operation: the placeholder is never applied.
                    let outcome = Outcome::from_value(f.need("outcome"));
                    f.check(outcome).unwrap_or(Outcome::Dead)
                },
                attempt: match f.take("attempt") {
                    Some(a) => f.check(reread(a)),
                    None => None,
                },
            },
            "mark_dead" => Op::MarkDead {
                key: f.need_string("key"),
                message_id: f.need_string("message_id"),
                attempts: f.need_u32("attempts"),
                retry_token: f.u64("retry_token"),
                replay: f.need_bool("replay"),
            },
            "get" => Op::Get { key: f.need_string("key") },
            "replayed" => Op::Replayed { key: f.need_string("key") },
            "resumed" => Op::Resumed {
                keys: f.strings("keys").unwrap_or_else(|| {
                    f.fail(edgehook_core::json::missing("keys"));
                    Vec::new()
                }),
            },
            "list" => Op::List { query: ListQuery::from_fields(f.need_object("query"))? },
            "held" => Op::Held {
                source: f.string("source"),
                flags: {
                    let flags = reread(f.need("flags"));
                    f.check(flags).unwrap_or_default()
                },
                limit: f.need_u32("limit"),
            },
            "oldest" => Op::Oldest,
            "newest" => Op::Newest { key: f.need_string("key") },
            "delivered" => Op::Delivered { key: f.need_string("key"), version: Version::new(f.need_string("version")) },
            "seal" => Op::Seal { key: f.need_string("key"), event: f.need_string("event") },
            #[cfg(feature = "faults")]
            "storage" => Op::Storage,
            other => return Err(edgehook_core::json::unknown_variant(other)),
        };
        f.done(op)
    }

    /// The record the operation is about; `None` for the shard-wide queries.
    fn key(&self) -> Option<&str> {
        match self {
            Op::Begin { key, .. }
            | Op::Finish { key, .. }
            | Op::MarkDead { key, .. }
            | Op::Get { key }
            | Op::Replayed { key }
            | Op::Newest { key }
            | Op::Delivered { key, .. }
            | Op::Seal { key, .. } => Some(key),
            Op::Resumed { .. } | Op::List { .. } | Op::Held { .. } | Op::Oldest => None,
            #[cfg(feature = "faults")]
            Op::Storage => None,
        }
    }
}

/// `GET /admin/events` filters as a shard applies them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ListQuery {
    pub source: Option<String>,
    pub states: Option<Vec<String>>,
    pub event_type: Option<String>,
    pub limit: u32,
    /// Strictly before this `(received_at_ms, key)`.
    pub before: Option<(i64, String)>,
}

impl ListQuery {
    fn from_fields(mut f: Fields) -> std::result::Result<ListQuery, String> {
        let before = f.take("before").map(|pair| {
            let (at, key) = edgehook_core::json::pair(pair, "before")?;
            let at = at.as_i64().ok_or("invalid type for `before`: expected an integer")?;
            Ok((at, edgehook_core::json::string(key, "before")?))
        });
        let query = ListQuery {
            source: f.string("source"),
            states: f.strings("states"),
            event_type: f.string("event_type"),
            limit: f.need_u32("limit"),
            before: before.and_then(|b| f.check(b)),
        };
        f.done(query)
    }
}

/// When the oldest events in two states were received.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Oldest {
    /// Being delivered or waiting for a retry: what the processing lag measures.
    pub open: Option<i64>,
    /// Held by a `paused` kill switch: bodies this old must outlive the retention sweep.
    pub held: Option<i64>,
    /// The shard's database size (over all shards: the largest), which ends at 10 GB.
    #[serde(default)]
    pub stored_bytes: u64,
}

/// One captured event as the admin API shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredEvent {
    pub key: String,
    pub status: EventStatus,
    pub capture: Capture,
    pub attempts: Vec<Attempt>,
    pub attempt_count: u32,
    pub replays: u32,
    pub updated_ms: i64,
}

/// The consumer's handle on the idempotency store, shared by every message of a batch: the
/// operations its messages ask for in the same turn go out as one request per shard
/// (see [`crate::batch`]).
pub struct Idempotency {
    ns: ObjectNamespace,
    batcher: Batcher,
}

/// The name of shard `shard`'s Durable Object.
pub(crate) fn shard_name(shard: u32) -> String {
    format!("shard-{shard}")
}

impl Idempotency {
    pub fn new(env: &Env) -> Result<Self> {
        Ok(Idempotency { ns: env.durable_object(bindings::IDEMPOTENCY)?, batcher: Batcher::default() })
    }

    async fn submit(&self, op: Op) -> Result<Value> {
        let shard = shard_of(op.key().expect("only record operations are batched"));
        let op = to_json(&op)?;
        self.batcher
            .submit(shard.to_string(), op, |shard, ops| async move {
                let shard: u32 = shard.parse().expect("targets are shard numbers");
                self.call_values(shard, &ops).await
            })
            .await
    }

    async fn call(&self, shard: u32, ops: &[Op]) -> Result<Vec<Value>> {
        let ops = ops.iter().map(to_json).collect::<Result<Vec<_>>>()?;
        self.call_values(shard, &ops).await
    }

    async fn call_values(&self, shard: u32, ops: &[Json]) -> Result<Vec<Value>> {
        let (name, what) = (shard_name(shard), format!("shard {shard}"));
        rpc::ask_batch(&self.ns, &name, &what, ops).await
    }

    /// Asks to deliver `key` on behalf of `message`, holding the lease for `lease_ms`; a new
    /// record stores `capture`. With `settle`, a message let go is at once finished with that
    /// outcome (`core::begin_settled`).
    pub async fn begin(
        &self,
        key: &str,
        message: Message<'_>,
        lease_ms: i64,
        capture: Capture,
        settle: Option<Outcome>,
    ) -> Result<Begin> {
        let op = Op::Begin {
            key: key.to_owned(),
            message_id: message.id.to_owned(),
            attempts: message.attempts,
            retry_token: message.retry_token,
            replay: message.replay,
            lease_ms,
            capture: Some(Box::new(capture)),
            settle,
        };
        from_json(self.submit(op).await?)
    }

    /// Reports how the delivery `message_id` began ended, with the attempt it made (if any).
    pub async fn finish(&self, key: &str, message_id: &str, outcome: Outcome, attempt: Option<Attempt>) -> Result<()> {
        let op = Op::Finish { key: key.to_owned(), message_id: message_id.to_owned(), outcome, attempt };
        self.submit(op).await.map(drop)
    }

    /// One captured event, if it is still kept.
    pub async fn get(&self, key: &str) -> Result<Option<StoredEvent>> {
        from_json(self.submit(Op::Get { key: key.to_owned() }).await?)
    }

    /// The newest delivered version of the entity `key`, if one was delivered within the TTL.
    pub async fn newest(&self, key: &str) -> Result<Option<Version>> {
        from_json(self.submit(Op::Newest { key: key.to_owned() }).await?)
    }

    /// Records that `version` of the entity `key` was delivered.
    pub async fn delivered(&self, key: &str, version: &Version) -> Result<()> {
        self.submit(Op::Delivered { key: key.to_owned(), version: version.clone() }).await.map(drop)
    }

    /// Claims the seal `seal` (a signature's, `ingest::seal_of`) of `source` for the event
    /// `key`: granted to the first event to claim it, held by it for every other.
    pub async fn claim_seal(&self, source: &str, seal: &str, key: &str) -> Result<SealClaim> {
        let held: Option<String> =
            from_json(self.submit(Op::Seal { key: seal_key(source, seal), event: key.to_owned() }).await?)?;
        Ok(match held {
            None => SealClaim::Granted,
            Some(by) => SealClaim::Held { by },
        })
    }

    /// Counts an explicit replay of `key`.
    pub async fn replayed(&self, key: &str) -> Result<()> {
        self.submit(Op::Replayed { key: key.to_owned() }).await.map(drop)
    }

    /// Notes that resumptions went out for these held events.
    pub async fn resumed(&self, keys: &[String]) -> Result<()> {
        let mut by_shard: Vec<Vec<String>> = vec![Vec::new(); SHARDS as usize];
        for key in keys {
            by_shard[shard_of(key) as usize].push(key.clone());
        }
        let calls = (0..SHARDS)
            .zip(by_shard)
            .filter(|(_, keys)| !keys.is_empty())
            .map(|(shard, keys)| async move { self.call(shard, &[Op::Resumed { keys }]).await });
        join_all(calls).await.into_iter().collect::<Result<Vec<_>>>().map(drop)
    }

    /// Asks every shard the same question and returns each answer.
    async fn ask_all<T: serde::de::DeserializeOwned>(&self, op: &Op) -> Result<Vec<T>> {
        let ops = std::slice::from_ref(op);
        let replies = join_all((0..SHARDS).map(|shard| self.call(shard, ops))).await;
        let mut answers = Vec::with_capacity(SHARDS as usize);
        for reply in replies {
            let reply = reply?.into_iter().next();
            answers.push(from_json(reply.ok_or_else(|| worker::Error::RustError("a shard answered nothing".into()))?)?);
        }
        Ok(answers)
    }

    /// Captured events matching `query`, newest first, at most `query.limit`.
    pub async fn list(&self, query: ListQuery) -> Result<Vec<EventSummary>> {
        let limit = query.limit as usize;
        let mut all: Vec<EventSummary> =
            self.ask_all::<Vec<EventSummary>>(&Op::List { query }).await?.into_iter().flatten().collect();
        // Newest first, in the shards' own order (the key tells events received in the same
        // millisecond apart).
        sort::sort_by(&mut all, |a, b| {
            (b.received_at_ms, idempotency_key(&b.source, &b.id))
                .cmp(&(a.received_at_ms, idempotency_key(&a.source, &a.id)))
        });
        all.truncate(limit);
        Ok(all)
    }

    /// Events held by a `paused` kill switch (of `source`, or of all) that `flags` no longer
    /// pause, up to `limit` per shard.
    pub async fn held(&self, source: Option<&str>, flags: &Flags, limit: u32) -> Result<Vec<Held>> {
        let op = Op::Held { source: source.map(str::to_owned), flags: flags.clone(), limit };
        Ok(self.ask_all::<Vec<Held>>(&op).await?.into_iter().flatten().collect())
    }

    /// When the oldest events still open and held were accepted, over all shards.
    pub async fn oldest(&self) -> Result<Oldest> {
        let answers = self.ask_all::<Oldest>(&Op::Oldest).await?;
        Ok(Oldest {
            open: answers.iter().filter_map(|o| o.open).min(),
            held: answers.iter().filter_map(|o| o.held).min(),
            stored_bytes: answers.iter().map(|o| o.stored_bytes).max().unwrap_or(0),
        })
    }

    /// Live partitions, events stored and the bytes of the shards' databases, summed over the
    /// shards.
    #[cfg(feature = "faults")]
    pub async fn storage(&self) -> Result<(usize, u64, u64)> {
        let answers = self.ask_all::<(usize, u64, u64)>(&Op::Storage).await?;
        Ok(answers.iter().fold((0, 0, 0), |(p, n, b), (q, m, c)| (p + q, n + m, b + c)))
    }

    /// Records a dead letter that the queue moved to the dead-letter queue by itself, and says
    /// whether its event is dead (or still carried by another message, or already final).
    pub async fn mark_dead(&self, key: &str, message: Message<'_>) -> Result<DeadMark> {
        let op = Op::MarkDead {
            key: key.to_owned(),
            message_id: message.id.to_owned(),
            attempts: message.attempts,
            retry_token: message.retry_token,
            replay: message.replay,
        };
        from_json(self.submit(op).await?)
    }
}

/// An event's row: its idempotency record and, once the consumer has taken it, its capture.
/// Capture columns are empty for a record made without one (a dead letter the queue moved on
/// its own before any consumer took the event).
#[derive(Debug, Clone)]
struct EventRow {
    key: String,
    state: String,
    owner: String,
    owner_attempts: u32,
    token: i64,
    lease_until_ms: i64,
    updated_ms: i64,
    /// When the idempotency record expires (the TTL after its last change).
    expires_ms: i64,
    source: Option<String>,
    event_id: Option<String>,
    event_type: Option<String>,
    content_type: Option<String>,
    received_at_ms: Option<i64>,
    headers: Option<String>,
    body: Option<String>,
    attempts: String,
    attempt_count: u32,
    replays: u32,
    resumed_ms: Option<i64>,
    position: Option<String>,
    /// When the capture expires (the retention after the event was received).
    retained_until_ms: Option<i64>,
}

const COLUMNS: &str = "key, state, owner, owner_attempts, token, lease_until_ms, updated_ms, expires_ms, source, \
                       event_id, event_type, content_type, received_at_ms, headers, body, attempts, attempt_count, \
                       replays, resumed_ms, position, retained_until_ms";

impl FromRow for EventRow {
    fn from_row(row: &mut Row<'_>) -> Result<Self> {
        Ok(EventRow {
            key: row.text("key")?,
            state: row.text("state")?,
            owner: row.text("owner")?,
            owner_attempts: row.u32("owner_attempts")?,
            token: row.int("token")?,
            lease_until_ms: row.int("lease_until_ms")?,
            updated_ms: row.int("updated_ms")?,
            expires_ms: row.int("expires_ms")?,
            source: row.opt_text("source")?,
            event_id: row.opt_text("event_id")?,
            event_type: row.opt_text("event_type")?,
            content_type: row.opt_text("content_type")?,
            received_at_ms: row.opt_int("received_at_ms")?,
            headers: row.opt_text("headers")?,
            body: row.opt_text("body")?,
            attempts: row.text("attempts")?,
            attempt_count: row.u32("attempt_count")?,
            replays: row.u32("replays")?,
            resumed_ms: row.opt_int("resumed_ms")?,
            position: row.opt_text("position")?,
            retained_until_ms: row.opt_int("retained_until_ms")?,
        })
    }
}

impl EventRow {
    fn empty(key: &str) -> EventRow {
        EventRow {
            key: key.to_owned(),
            state: State::Delivering.as_str().to_owned(),
            owner: String::new(),
            owner_attempts: 0,
            token: 0,
            lease_until_ms: 0,
            updated_ms: 0,
            expires_ms: 0,
            source: None,
            event_id: None,
            event_type: None,
            content_type: None,
            received_at_ms: None,
            headers: None,
            body: None,
            attempts: "[]".into(),
            attempt_count: 0,
            replays: 0,
            resumed_ms: None,
            position: None,
            retained_until_ms: None,
        }
    }

    fn state(&self) -> Option<State> {
        State::parse(&self.state)
    }

    /// The idempotency record, unless it has expired (held events never do).
    fn record(&self, now_ms: i64) -> Result<Option<Record>> {
        let state =
            self.state().ok_or_else(|| worker::Error::RustError(format!("unknown stored state {:?}", self.state)))?;
        if self.expires_ms <= now_ms && state != State::Paused {
            return Ok(None);
        }
        Ok(Some(Record {
            state,
            owner: self.owner.clone(),
            owner_attempts: self.owner_attempts,
            token: self.token as u64,
            lease_until_ms: self.lease_until_ms,
            updated_ms: self.updated_ms,
            expires_ms: self.expires_ms,
        }))
    }

    fn set_record(&mut self, r: &Record) {
        self.state = r.state.as_str().to_owned();
        self.owner.clone_from(&r.owner);
        self.owner_attempts = r.owner_attempts;
        self.token = r.token as i64;
        self.lease_until_ms = r.lease_until_ms;
        self.updated_ms = r.updated_ms;
        self.expires_ms = r.expires_ms;
    }

    fn captured(&self) -> bool {
        self.source.is_some()
    }

    fn set_capture(&mut self, capture: &Capture, retention_ms: i64) -> Result<()> {
        self.source = Some(capture.source.clone());
        self.event_id = Some(capture.id.clone());
        self.event_type.clone_from(&capture.event_type);
        self.content_type.clone_from(&capture.content_type);
        self.received_at_ms = Some(capture.received_at_ms);
        self.headers = Some(edgehook_core::capture::record_headers(capture));
        self.body = Some(serde_json::to_string(&capture.body)?);
        self.position = capture.position.as_ref().map(serde_json::to_string).transpose()?;
        self.retained_until_ms = Some(capture.received_at_ms.saturating_add(retention_ms));
        Ok(())
    }

    /// Whether its capture can be shown: captured and within retention (held events always).
    fn visible(&self, now_ms: i64) -> bool {
        self.captured() && (self.retained_until_ms.unwrap_or(0) > now_ms || self.state() == Some(State::Paused))
    }

    fn status(&self) -> EventStatus {
        self.state().map_or(EventStatus::Accepted, EventStatus::of)
    }

    fn capture(&self) -> Result<Capture> {
        let text = |field: &Option<String>| field.clone().unwrap_or_default();
        let (headers, stored_headers) =
            edgehook_core::capture::parse_record_headers(self.headers.as_deref().unwrap_or("[]"))?;
        Ok(Capture {
            source: text(&self.source),
            id: text(&self.event_id),
            event_type: self.event_type.clone(),
            content_type: self.content_type.clone(),
            received_at_ms: self.received_at_ms.unwrap_or(0),
            headers,
            body: edgehook_core::json::from_str(self.body.as_deref().unwrap_or("null"))?,
            position: self.position.as_deref().map(edgehook_core::json::from_str).transpose()?,
            stored_headers,
            stored_count: 0,
        })
    }

    fn summary(&self) -> EventSummary {
        EventSummary {
            source: self.source.clone().unwrap_or_default(),
            id: self.event_id.clone().unwrap_or_default(),
            event_type: self.event_type.clone(),
            status: self.status(),
            received_at_ms: self.received_at_ms.unwrap_or(0),
            updated_ms: self.updated_ms,
            attempts: self.attempt_count,
            replays: self.replays,
        }
    }

    fn add_attempt(&mut self, attempt: Attempt) -> Result<()> {
        let mut attempts: Vec<Attempt> = edgehook_core::json::from_str(&self.attempts)?;
        attempts.push(attempt);
        if attempts.len() > MAX_KEPT_ATTEMPTS {
            attempts.drain(..attempts.len() - MAX_KEPT_ATTEMPTS);
        }
        self.attempts = serde_json::to_string(&attempts)?;
        self.attempt_count += 1;
        Ok(())
    }

    fn values(&self) -> Vec<SqlStorageValue> {
        vec![
            self.key.as_str().into(),
            self.state.as_str().into(),
            self.owner.as_str().into(),
            i64::from(self.owner_attempts).into(),
            self.token.into(),
            self.lease_until_ms.into(),
            self.updated_ms.into(),
            self.expires_ms.into(),
            self.source.as_deref().into(),
            self.event_id.as_deref().into(),
            self.event_type.as_deref().into(),
            self.content_type.as_deref().into(),
            self.received_at_ms.into(),
            self.headers.as_deref().into(),
            self.body.as_deref().into(),
            self.attempts.as_str().into(),
            i64::from(self.attempt_count).into(),
            i64::from(self.replays).into(),
            self.resumed_ms.into(),
            self.position.as_deref().into(),
            self.retained_until_ms.into(),
        ]
    }
}

/// Most attempts kept per captured event (the count goes on; the oldest entries make room).
const MAX_KEPT_ATTEMPTS: usize = 50;
/// Largest page of a listing, per shard.
const MAX_LIST: u32 = 1_000;
/// States whose events must outlive any expiry: in flight, or held by a kill switch.
const KEPT_STATES: &str = "'delivering', 'retrying', 'paused'";

/// Events that are open (being delivered or waiting for a retry) or held, with when they were
/// received: what health and resumption ask about every minute, answered from memory rather
/// than by scanning every row each time.
#[derive(Default)]
struct Tracked {
    open: BTreeMap<String, i64>,
    /// Held events: when each was received, its source and its type.
    held: BTreeMap<String, (i64, String, Option<String>)>,
}

impl Tracked {
    fn note(&mut self, row: &EventRow) {
        self.open.remove(&row.key);
        self.held.remove(&row.key);
        let (Some(received), Some(source)) = (row.received_at_ms, &row.source) else {
            return;
        };
        match row.state() {
            Some(State::Delivering | State::Retrying) => {
                self.open.insert(row.key.clone(), received);
            }
            Some(State::Paused) => {
                self.held.insert(row.key.clone(), (received, source.clone(), row.event_type.clone()));
            }
            _ => {}
        }
    }
}

/// One shard of the idempotency store: every event's record and capture in one row.
///
/// An event costs two rows written: one when the consumer takes it (record and capture
/// together), one when its outcome is known (state and attempt together); one in all when the
/// outcome is known as it is taken (`settle`). An event whose provider does not sign its id
/// costs one more, its signature's seal (`Op::Seal`). There is no
/// secondary index (each index entry is billed as a row too): rows live in time-partitioned
/// tables, and whole tables are dropped by the alarm once everything in them has outlived the
/// TTL and the retention (see the core's `partition` module). Expiry is still exact: reads
/// check each row's own expiry times. Looking a key up asks each live partition, newest first.
// Only the handlers the class uses are exported: see `rpc::answer_over_rpc`.
#[durable_object(alarm)]
pub struct IdempotencyShard {
    state: ObjectState,
    sql: Sql,
    ttl_ms: i64,
    retention_ms: i64,
    parts: Partitions,
    /// Live partitions, oldest first.
    live: RefCell<Vec<i64>>,
    /// The alarm as last read or set: `None` until read once.
    alarm: Cell<Option<Option<i64>>>,
    /// Open and held events, loaded on first use.
    tracked: RefCell<Option<Tracked>>,
}

/// A table's name, as `sqlite_master` lists it.
struct TableName(String);

impl FromRow for TableName {
    fn from_row(row: &mut Row<'_>) -> Result<Self> {
        row.text("name").map(TableName)
    }
}

impl DurableObject for IdempotencyShard {
    fn new(state: ObjectState, env: Env) -> Self {
        let sql = Sql::new(state.storage().sql());
        let settings = &crate::env::config(&env).settings;
        let ttl_ms = settings.idempotency_ttl_secs.saturating_mul(1000) as i64;
        let retention_ms = settings.capture_retention_secs.saturating_mul(1000) as i64;
        let mut live: Vec<i64> = match sql
            .exec("SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'events_%'", None)
            .and_then(|c| c.rows::<TableName>())
        {
            Ok(tables) => tables.iter().filter_map(|t| Partitions::of_table(&t.0)).collect(),
            Err(e) => {
                worker::console_error!("idempotency shard: cannot list its partitions: {e}");
                Vec::new()
            }
        };
        sort::sort_by(&mut live, i64::cmp);
        IdempotencyShard {
            state,
            sql,
            ttl_ms,
            retention_ms,
            parts: Partitions::new(ttl_ms, retention_ms),
            live: RefCell::new(live),
            alarm: Cell::new(None),
            tracked: RefCell::new(None),
        }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        Response::ok(rpc::Answer::answer(self, req.text().await?).await?)
    }

    /// Drops the partitions whose every row has outlived its lifetime, first moving the events
    /// that must outlive any expiry (open, or held by a kill switch) to the current partition.
    async fn alarm(&self) -> Result<Response> {
        billing::count(Billed::DoRequest, 1);
        let now = now_ms();
        self.alarm.set(Some(None));
        let current = self.parts.at(now);
        let due: Vec<i64> =
            self.live.borrow().iter().copied().filter(|&p| p != current && self.parts.drop_at(p) <= now).collect();
        for p in due {
            let kept: Vec<()> = self
                .sql
                .exec(
                    &format!("SELECT key FROM {} WHERE state IN ({KEPT_STATES}) LIMIT 1", Partitions::events_table(p)),
                    None,
                )?
                .rows()?;
            // The current partition is only created when something must move to it: an idle
            // shard's alarm ends with no partition left and no alarm set.
            if !kept.is_empty() {
                let current = self.current(now).await?;
                self.sql.exec(
                    &format!(
                        "INSERT OR REPLACE INTO {} ({COLUMNS}) SELECT {COLUMNS} FROM {} WHERE state IN ({KEPT_STATES})",
                        Partitions::events_table(current),
                        Partitions::events_table(p)
                    ),
                    None,
                )?;
            }
            self.sql.exec(
                &format!(
                    "DROP TABLE IF EXISTS {}; DROP TABLE IF EXISTS {}",
                    Partitions::events_table(p),
                    Partitions::versions_table(p)
                ),
                None,
            )?;
            self.live.borrow_mut().retain(|&q| q != p);
        }
        let next = self.live.borrow().first().map(|&p| self.parts.drop_at(p));
        if let Some(at) = next {
            self.arm(at).await?;
        }
        Response::ok("")
    }
}

rpc::answer_over_rpc!(IdempotencyShard);

impl rpc::Answer for IdempotencyShard {
    async fn answer(&self, text: String) -> Result<String> {
        let ops = Op::read_all(&text)?;
        let mut replies = Vec::with_capacity(ops.len());
        for op in ops {
            replies.push(self.apply(op).await?);
        }
        Ok(array(&replies))
    }
}

impl IdempotencyShard {
    /// The partition writes go to now, its tables created if they are new.
    async fn current(&self, now_ms: i64) -> Result<i64> {
        let p = self.parts.at(now_ms);
        if !self.live.borrow().contains(&p) {
            self.sql.exec(
                &format!(
                    "CREATE TABLE IF NOT EXISTS {} (
                       key TEXT PRIMARY KEY, state TEXT NOT NULL, owner TEXT NOT NULL,
                       owner_attempts INTEGER NOT NULL, token INTEGER NOT NULL,
                       lease_until_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL,
                       expires_ms INTEGER NOT NULL, source TEXT, event_id TEXT, event_type TEXT,
                       content_type TEXT, received_at_ms INTEGER, headers TEXT, body TEXT,
                       attempts TEXT NOT NULL, attempt_count INTEGER NOT NULL,
                       replays INTEGER NOT NULL, resumed_ms INTEGER, position TEXT,
                       retained_until_ms INTEGER) WITHOUT ROWID;
                     CREATE TABLE IF NOT EXISTS {} (
                       key TEXT PRIMARY KEY, version TEXT NOT NULL, expires_ms INTEGER NOT NULL)
                       WITHOUT ROWID;",
                    Partitions::events_table(p),
                    Partitions::versions_table(p)
                ),
                None,
            )?;
            {
                let mut live = self.live.borrow_mut();
                live.push(p);
                sort::sort_by(&mut live, i64::cmp);
            }
            self.arm(self.parts.drop_at(p)).await?;
        }
        Ok(p)
    }

    /// The live partitions, newest first.
    fn newest_first(&self) -> Vec<i64> {
        self.live.borrow().iter().rev().copied().collect()
    }

    /// The row of `key` and the partition it is in.
    fn find(&self, key: &str) -> Result<Option<(i64, EventRow)>> {
        self.lookup(Partitions::events_table, COLUMNS, key)
    }

    /// The first row of `key` in the live partitions' `table`, newest first, and its partition.
    fn lookup<T: FromRow>(&self, table: fn(i64) -> String, columns: &str, key: &str) -> Result<Option<(i64, T)>> {
        for p in self.newest_first() {
            let rows: Vec<T> = self
                .sql
                .exec(&format!("SELECT {columns} FROM {} WHERE key = ?", table(p)), vec![key.into()])?
                .rows()?;
            if let Some(row) = rows.into_iter().next() {
                return Ok(Some((p, row)));
            }
        }
        Ok(None)
    }

    /// Writes `row` into the current partition, moving it there from an older one: one row
    /// written, two when it moves.
    async fn put(&self, from: Option<i64>, row: &EventRow, now_ms: i64) -> Result<()> {
        let current = self.current(now_ms).await?;
        if let Some(p) = from.filter(|&p| p != current) {
            self.sql.exec(
                &format!("DELETE FROM {} WHERE key = ?", Partitions::events_table(p)),
                vec![row.key.as_str().into()],
            )?;
        }
        let updates: Vec<String> = COLUMNS.split(", ").skip(1).map(|c| format!("{c} = excluded.{c}")).collect();
        self.sql.exec(
            &format!(
                "INSERT INTO {} ({COLUMNS}) VALUES ({}) ON CONFLICT (key) DO UPDATE SET {}",
                Partitions::events_table(current),
                ["?"; 21].join(", "),
                updates.join(", ")
            ),
            row.values(),
        )?;
        if let Some(tracked) = self.tracked.borrow_mut().as_mut() {
            tracked.note(row);
        }
        Ok(())
    }

    /// Changes counter-like columns of a row where it is (not a change of the record, so the row
    /// does not move). `set` has a placeholder for each of `values`.
    fn touch(&self, key: &str, set: &str, mut values: Vec<SqlStorageValue>) -> Result<()> {
        if let Some((p, _)) = self.find(key)? {
            values.push(key.into());
            self.sql.exec(&format!("UPDATE {} SET {set} WHERE key = ?", Partitions::events_table(p)), values)?;
        }
        Ok(())
    }

    fn with_tracked<T>(&self, f: impl FnOnce(&Tracked) -> T) -> Result<T> {
        if self.tracked.borrow().is_none() {
            let mut tracked = Tracked::default();
            for p in self.newest_first() {
                let rows: Vec<EventRow> = self
                    .sql
                    .exec(
                        &format!(
                            "SELECT {COLUMNS} FROM {} WHERE state IN ({KEPT_STATES})",
                            Partitions::events_table(p)
                        ),
                        None,
                    )?
                    .rows()?;
                for row in &rows {
                    tracked.note(row);
                }
            }
            *self.tracked.borrow_mut() = Some(tracked);
        }
        Ok(f(self.tracked.borrow().as_ref().expect("loaded above")))
    }

    async fn apply(&self, op: Op) -> Result<Json> {
        let clock = Clock { now_ms: now_ms(), ttl_ms: self.ttl_ms };
        let now = clock.now_ms;
        match op {
            Op::Begin { key, message_id, attempts, retry_token, replay, lease_ms, capture, settle } => {
                let found = self.find(&key)?;
                let record = match &found {
                    Some((_, row)) => row.record(now)?,
                    None => None,
                };
                let message = Message { id: &message_id, attempts, retry_token, replay };
                let (write, begin) = match settle {
                    Some(outcome) => core::begin_settled(record.as_ref(), message, lease_ms, clock, outcome),
                    None => core::begin(record.as_ref(), message, lease_ms, clock),
                };
                // A new record is a new event (or one received again after its id expired): its
                // row starts afresh. Otherwise a capture is only filled in if missing.
                let fresh = record.is_none();
                let mut row = match (&found, fresh) {
                    (Some((_, row)), false) => row.clone(),
                    _ => EventRow::empty(&key),
                };
                let mut changed = false;
                if let Write::Put(r) = &write {
                    row.set_record(r);
                    changed = true;
                }
                if let (Begin::Go | Begin::Settled, Some(capture)) = (begin, capture) {
                    if !row.captured() {
                        row.set_capture(&capture, self.retention_ms)?;
                        changed = true;
                    }
                }
                if changed {
                    self.put(found.map(|(p, _)| p), &row, now).await?;
                }
                to_json(&begin)
            }
            Op::Finish { key, message_id, outcome, attempt } => {
                let found = self.find(&key)?;
                let record = match &found {
                    Some((_, row)) => row.record(now)?,
                    None => None,
                };
                let write = core::finish(record.as_ref(), &message_id, outcome, clock);
                let mut row = match &found {
                    Some((_, row)) if record.is_some() => row.clone(),
                    _ => EventRow::empty(&key),
                };
                let mut changed = false;
                if let Write::Put(r) = &write {
                    row.set_record(r);
                    changed = true;
                }
                if let Some(attempt) = attempt.filter(|_| row.captured()) {
                    row.add_attempt(attempt)?;
                    changed = true;
                }
                if changed {
                    self.put(found.map(|(p, _)| p), &row, now).await?;
                }
                to_json(&())
            }
            Op::MarkDead { key, message_id, attempts, retry_token, replay } => {
                let found = self.find(&key)?;
                let record = match &found {
                    Some((_, row)) => row.record(now)?,
                    None => None,
                };
                let message = Message { id: &message_id, attempts, retry_token, replay };
                let (write, mark) = core::mark_dead(record.as_ref(), message, clock);
                if let Write::Put(r) = &write {
                    let mut row = match &found {
                        Some((_, row)) if record.is_some() => row.clone(),
                        _ => EventRow::empty(&key),
                    };
                    row.set_record(r);
                    self.put(found.map(|(p, _)| p), &row, now).await?;
                }
                to_json(&mark)
            }
            Op::Get { key } => {
                let Some((_, row)) = self.find(&key)?.filter(|(_, row)| row.visible(now)) else {
                    return to_json(&());
                };
                let event = StoredEvent {
                    key: row.key.clone(),
                    status: row.status(),
                    capture: row.capture()?,
                    attempts: edgehook_core::json::from_str(&row.attempts)?,
                    attempt_count: row.attempt_count,
                    replays: row.replays,
                    updated_ms: row.updated_ms,
                };
                to_json(&event)
            }
            Op::Replayed { key } => {
                self.touch(&key, "replays = replays + 1", Vec::new())?;
                to_json(&())
            }
            Op::Resumed { keys } => {
                for key in keys {
                    self.touch(&key, "resumed_ms = ?", vec![now.into()])?;
                }
                to_json(&())
            }
            Op::List { query } => {
                let mut clauses = vec!["source IS NOT NULL AND (retained_until_ms > ? OR state = 'paused')".to_owned()];
                let mut params: Vec<SqlStorageValue> = vec![now.into()];
                if let Some(source) = query.source {
                    clauses.push("source = ?".into());
                    params.push(source.into());
                }
                if let Some(event_type) = query.event_type {
                    clauses.push("event_type = ?".into());
                    params.push(event_type.into());
                }
                if let Some(states) = query.states {
                    if states.is_empty() {
                        return to_json(&Vec::<EventSummary>::new());
                    }
                    clauses.push(format!("state IN ({})", vec!["?"; states.len()].join(", ")));
                    params.extend(states.into_iter().map(SqlStorageValue::from));
                }
                if let Some((at, key)) = query.before {
                    clauses.push("(received_at_ms < ? OR (received_at_ms = ? AND key < ?))".into());
                    params.extend([at.into(), at.into(), key.into()]);
                }
                let limit = query.limit.min(MAX_LIST) as usize;
                params.push((limit as i64).into());
                let filter = format!("WHERE {} ORDER BY received_at_ms DESC, key DESC LIMIT ?", clauses.join(" AND "));
                // Each partition's newest, merged: a partition holds rows by when they were last
                // written, not received, so every live one is asked.
                let mut rows: Vec<EventRow> = Vec::new();
                for p in self.newest_first() {
                    let found: Vec<EventRow> = self
                        .sql
                        .exec(
                            &format!("SELECT {COLUMNS} FROM {} {filter}", Partitions::events_table(p)),
                            params.clone(),
                        )?
                        .rows()?;
                    rows.extend(found);
                }
                sort::sort_by(&mut rows, |a, b| (b.received_at_ms, &b.key).cmp(&(a.received_at_ms, &a.key)));
                rows.truncate(limit);
                to_json(&rows.iter().map(EventRow::summary).collect::<Vec<_>>())
            }
            Op::Held { source, flags, limit } => {
                let keys: Vec<String> = self.with_tracked(|t| {
                    let entries = t.held.iter().map(|(key, (received, source, event_type))| HeldEntry {
                        key,
                        received_at_ms: *received,
                        source,
                        event_type: event_type.as_deref(),
                    });
                    resumable(entries, source.as_deref(), &flags, limit.min(MAX_LIST) as usize)
                        .into_iter()
                        .map(str::to_owned)
                        .collect()
                })?;
                let mut held = Vec::with_capacity(keys.len());
                for key in keys {
                    if let Some((_, row)) = self.find(&key)? {
                        if row.captured() && row.state() == Some(State::Paused) {
                            held.push(Held {
                                capture: row.capture()?,
                                // Rows held before the record kept it: one past the
                                // attempts recorded (right unless one of them used no attempt).
                                next_attempt: if row.owner_attempts > 0 {
                                    row.owner_attempts
                                } else {
                                    row.attempt_count + 1
                                },
                                resumed_ms: row.resumed_ms,
                            });
                        }
                    }
                }
                to_json(&held)
            }
            Op::Newest { key } => to_json(&self.newest(&key, now)?),
            Op::Delivered { key, version } => {
                // Only ever forward: a delivery of an older version (`stale = "deliver"`, or a
                // replay) does not move the newest back.
                let newer = match self.newest(&key, now)? {
                    Some(newest) => !version.is_older_than(&newest),
                    None => true,
                };
                if newer {
                    self.put_value(&key, &version.0, now + self.ttl_ms, now).await?;
                }
                to_json(&())
            }
            Op::Seal { key, event } => {
                let found = self.value(&key)?;
                let (write, answer) = core::claim_seal(found.as_ref().map(|(v, e)| (v.as_str(), *e)), &event, clock);
                if let Some((holder, expires_ms)) = write {
                    self.put_value(&key, &holder, expires_ms, now).await?;
                }
                let held = match answer {
                    SealClaim::Granted => None,
                    SealClaim::Held { by } => Some(by),
                };
                to_json(&held)
            }
            #[cfg(feature = "faults")]
            Op::Storage => {
                let mut events = 0;
                for p in self.newest_first() {
                    let counted: Vec<crate::rows::Count> = self
                        .sql
                        .exec(&format!("SELECT COUNT(*) AS n FROM {}", Partitions::events_table(p)), None)?
                        .rows()?;
                    events += counted.first().map_or(0, |c| c.0);
                }
                // The database's size is what Cloudflare bills as stored data (and caps at 10 GB
                // an object): the cost test divides its growth by the events it stored.
                to_json(&(self.live.borrow().len(), events, self.sql.database_size()))
            }
            Op::Oldest => {
                let answer = self.with_tracked(|t| Oldest {
                    open: t.open.values().min().copied(),
                    held: t.held.values().map(|(at, _, _)| *at).min(),
                    stored_bytes: self.sql.database_size(),
                })?;
                to_json(&answer)
            }
        }
    }

    /// The newest delivered version of an entity, within the TTL.
    fn newest(&self, key: &str, now_ms: i64) -> Result<Option<Version>> {
        let found = self.value(key)?;
        Ok(found.and_then(|(version, expires_ms)| (expires_ms > now_ms).then(|| Version::new(version))))
    }

    /// A small keyed value and when it expires: an entity's newest delivered version (`v:`
    /// keys) or who holds a seal (`s:` keys), in the partitions' `versions` tables (the column
    /// is named for the first). The newest partition holding the key has its latest write.
    fn value(&self, key: &str) -> Result<Option<(String, i64)>> {
        struct Versioned(String, i64);
        impl FromRow for Versioned {
            fn from_row(row: &mut Row<'_>) -> Result<Self> {
                Ok(Versioned(row.text("version")?, row.int("expires_ms")?))
            }
        }
        let found: Option<(i64, Versioned)> = self.lookup(Partitions::versions_table, "version, expires_ms", key)?;
        Ok(found.map(|(_, Versioned(version, expires_ms))| (version, expires_ms)))
    }

    /// Writes a small keyed value ([`Self::value`]) into the current partition: one row.
    async fn put_value(&self, key: &str, value: &str, expires_ms: i64, now_ms: i64) -> Result<()> {
        let current = self.current(now_ms).await?;
        self.sql.exec(
            &format!(
                "INSERT INTO {} (key, version, expires_ms) VALUES (?, ?, ?)
                 ON CONFLICT (key) DO UPDATE SET version = excluded.version, expires_ms = excluded.expires_ms",
                Partitions::versions_table(current)
            ),
            vec![key.into(), value.into(), expires_ms.into()],
        )?;
        Ok(())
    }

    /// Sets the alarm for `at`, unless one is already set no later.
    async fn arm(&self, at: i64) -> Result<()> {
        let storage = self.state.storage();
        let current = match self.alarm.get() {
            Some(known) => known,
            None => storage.get_alarm().await?,
        };
        match current {
            Some(set) if set <= at => self.alarm.set(Some(Some(set))),
            _ => {
                storage.set_alarm(ScheduledTime::new(js_sys::Date::new(&JsValue::from_f64(at as f64)))).await?;
                // Setting an alarm is billed as a row written.
                billing::count(Billed::DoRowWritten, 1);
                self.alarm.set(Some(Some(at)));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgehook_core::envelope::{BodyRef, EventMeta};
    use edgehook_core::flags::{Flag, Mode};

    fn read(text: &str) -> std::result::Result<Op, String> {
        Op::read(serde_json::from_str(text).map_err(|e| e.to_string())?)
    }

    fn every_op() -> Vec<Op> {
        let meta = EventMeta {
            event_type: Some("invoice.paid".into()),
            headers: vec![("content-type".into(), "application/json".into())],
            ..EventMeta::first_attempt("stripe", "evt_1", 1_700_000_000_000, BodyRef::Inline)
        };
        let capture = Capture::of(&meta, BodyRef::Segment { key: "captures/h1/x".into(), offset: 10, len: 20 });
        let attempt =
            Attempt { attempt: 2, at_ms: 5, status: Some(503), latency_ms: 7, error: Some("503".into()), replay: true };
        let flag = Flag { source: "stripe".into(), pattern: "invoice.*".into(), mode: Mode::Paused, updated_ms: 3 };
        let query = ListQuery {
            source: Some("stripe".into()),
            states: Some(vec!["dead".into()]),
            event_type: Some("invoice.*".into()),
            limit: 20,
            before: Some((9, "stripe:evt_0".into())),
        };
        vec![
            Op::Begin {
                key: "stripe:evt_1".into(),
                message_id: "m1".into(),
                attempts: 3,
                retry_token: Some(42),
                replay: true,
                lease_ms: 30_000,
                capture: Some(Box::new(capture)),
                settle: Some(Outcome::Paused { attempt: 3 }),
            },
            Op::Begin {
                key: "k".into(),
                message_id: "m".into(),
                attempts: 1,
                retry_token: None,
                replay: false,
                lease_ms: 1,
                capture: None,
                settle: None,
            },
            Op::Finish {
                key: "k".into(),
                message_id: "m".into(),
                outcome: Outcome::Retrying { token: 7 },
                attempt: Some(attempt),
            },
            Op::Finish { key: "k".into(), message_id: "m".into(), outcome: Outcome::Delivered, attempt: None },
            Op::MarkDead { key: "k".into(), message_id: "m".into(), attempts: 5, retry_token: Some(1), replay: true },
            Op::Get { key: "k".into() },
            Op::Replayed { key: "k".into() },
            Op::Resumed { keys: vec!["a".into(), "b".into()] },
            Op::List { query },
            Op::Held { source: Some("stripe".into()), flags: Flags(vec![flag]), limit: 100 },
            Op::Held { source: None, flags: Flags(Vec::new()), limit: 1 },
            Op::Oldest,
            Op::Newest { key: "v:k".into() },
            Op::Delivered { key: "v:k".into(), version: Version::new("2024-01-02T03:04:05Z".into()) },
            Op::Seal { key: "s:abc".into(), event: "stripe:evt_1".into() },
        ]
    }

    /// Every operation reads back as it was written: no field is lost or swapped on the way
    /// through the shared fields.
    #[test]
    fn every_operation_reads_back_as_written() {
        for op in every_op() {
            let text = serde_json::to_string(&op).unwrap();
            let back = read(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(format!("{back:?}"), format!("{op:?}"), "{text}");
        }
    }

    /// What a release from before `settle` sends during a deploy, fields it does not know, and
    /// what is missing.
    #[test]
    fn older_and_incomplete_operations() {
        let before_settle = r#"{"begin":{"key":"k","message_id":"m","attempts":1,"retry_token":null,"replay":false,"lease_ms":5,"capture":null}}"#;
        let op = read(before_settle).unwrap();
        assert!(matches!(op, Op::Begin { settle: None, attempts: 1, lease_ms: 5, .. }), "{op:?}");
        let unknown = read(r#"{"get":{"key":"k","later":[1]}}"#).unwrap();
        assert!(matches!(unknown, Op::Get { key } if key == "k"));
        let error = read(r#"{"finish":{"key":"k","outcome":"dead"}}"#).unwrap_err();
        assert!(error.to_string().contains("missing field `message_id`"), "{error}");
        assert!(read(r#"{"begin":{"key":"k"}}"#).is_err());
        assert!(read(r#"{"forget":{"key":"k"}}"#).is_err());
        assert!(matches!(read(r#""oldest""#).unwrap(), Op::Oldest));
    }
}
