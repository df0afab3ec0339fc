//! Idempotency records in SQLite-backed Durable Objects, and the batching client the consumer uses.
//!
//! Records are spread over `SHARDS` objects by key (see the core's `idempotency` module for
//! why, and for why the consumer, not the receiver, consults them). Each object applies the
//! core's pure transitions to its rows; its input gate makes read-then-write atomic, so two
//! messages for one event can never both take its lease. Rows are deleted by the object's alarm
//! once they expire, never by a sweep that could miss them.

use crate::batch::Batcher;
use crate::billing::{self, Op as Billed, Sql};
use crate::env::{bindings, now_ms};
use edgehook_core::capture::{Attempt, Capture, EventStatus, EventSummary, Held};
use edgehook_core::idempotency::{
    self as core, shard_of, Begin, Clock, DeadMark, Message, Outcome, Record, State, Write, SHARDS,
};
use edgehook_core::ingest::idempotency_key;
use edgehook_core::ordering::Version;
use futures_util::future::join_all;
use serde::{Deserialize, Serialize};
use std::cell::Cell;
use std::collections::BTreeMap;
use wasm_bindgen::JsValue;
use worker::{
    durable_object, DurableObject, Env, Method, ObjectNamespace, Request, RequestInit, Response, Result, ScheduledTime,
    SqlStorageValue, State as ObjectState,
};

/// Most rows one alarm run deletes; the alarm re-arms at once when more are due.
const EXPIRE_BATCH: i64 = 5_000;
/// Largest delay between an expiry and the alarm that deletes it; batching expiries keeps the
/// alarm from firing once per event under steady traffic.
const MAX_EXPIRY_SLACK_MS: i64 = 60_000;

/// One operation on one record.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
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
}

impl Op {
    /// The record the operation is about; `None` for the shard-wide queries.
    fn key(&self) -> Option<&str> {
        match self {
            Op::Begin { key, .. }
            | Op::Finish { key, .. }
            | Op::MarkDead { key, .. }
            | Op::Get { key }
            | Op::Replayed { key }
            | Op::Newest { key }
            | Op::Delivered { key, .. } => Some(key),
            Op::Resumed { .. } | Op::List { .. } | Op::Held { .. } | Op::Oldest => None,
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

/// When the oldest events in two states were received.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Oldest {
    /// Being delivered or waiting for a retry: what the processing lag measures.
    pub open: Option<i64>,
    /// Held by a `paused` kill switch: bodies this old must outlive the retention sweep.
    pub held: Option<i64>,
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

impl Idempotency {
    pub fn new(env: &Env) -> Result<Self> {
        Ok(Idempotency { ns: env.durable_object(bindings::IDEMPOTENCY)?, batcher: Batcher::default() })
    }

    async fn submit(&self, op: Op) -> Result<serde_json::Value> {
        let shard = shard_of(op.key().expect("only record operations are batched"));
        let op = serde_json::to_value(&op)?;
        self.batcher
            .submit(shard.to_string(), op, |shard, ops| async move {
                let shard: u32 = shard.parse().expect("targets are shard numbers");
                self.call_values(shard, &ops).await
            })
            .await
    }

    async fn call(&self, shard: u32, ops: &[Op]) -> Result<Vec<serde_json::Value>> {
        let ops = ops.iter().map(serde_json::to_value).collect::<serde_json::Result<Vec<_>>>()?;
        self.call_values(shard, &ops).await
    }

    async fn call_values(&self, shard: u32, ops: &[serde_json::Value]) -> Result<Vec<serde_json::Value>> {
        let stub = self.ns.id_from_name(&format!("shard-{shard}"))?.get_stub()?;
        let mut init = RequestInit::new();
        init.with_method(Method::Post).with_body(Some(JsValue::from_str(&serde_json::to_string(ops)?)));
        billing::count(Billed::DoRequest, 1);
        let mut response =
            stub.fetch_with_request(Request::new_with_init("https://idempotency.edgehook/ops", &init)?).await?;
        if response.status_code() != 200 {
            let detail = response.text().await.unwrap_or_default();
            return Err(worker::Error::RustError(format!(
                "shard {shard} answered {}: {detail}",
                response.status_code()
            )));
        }
        response.json().await
    }

    /// Asks to deliver `key` on behalf of `message`, holding the lease for `lease_ms`; a new
    /// record stores `capture`.
    pub async fn begin(&self, key: &str, message: Message<'_>, lease_ms: i64, capture: Capture) -> Result<Begin> {
        let op = Op::Begin {
            key: key.to_owned(),
            message_id: message.id.to_owned(),
            attempts: message.attempts,
            retry_token: message.retry_token,
            replay: message.replay,
            lease_ms,
            capture: Some(Box::new(capture)),
        };
        Ok(serde_json::from_value(self.submit(op).await?)?)
    }

    /// Reports how the delivery `message_id` began ended, with the attempt it made (if any).
    pub async fn finish(&self, key: &str, message_id: &str, outcome: Outcome, attempt: Option<Attempt>) -> Result<()> {
        let op = Op::Finish { key: key.to_owned(), message_id: message_id.to_owned(), outcome, attempt };
        self.submit(op).await.map(drop)
    }

    /// One captured event, if it is still kept.
    pub async fn get(&self, key: &str) -> Result<Option<StoredEvent>> {
        Ok(serde_json::from_value(self.submit(Op::Get { key: key.to_owned() }).await?)?)
    }

    /// The newest delivered version of the entity `key`, if one was delivered within the TTL.
    pub async fn newest(&self, key: &str) -> Result<Option<Version>> {
        Ok(serde_json::from_value(self.submit(Op::Newest { key: key.to_owned() }).await?)?)
    }

    /// Records that `version` of the entity `key` was delivered.
    pub async fn delivered(&self, key: &str, version: &Version) -> Result<()> {
        self.submit(Op::Delivered { key: key.to_owned(), version: version.clone() }).await.map(drop)
    }

    /// Counts an explicit replay of `key`.
    pub async fn replayed(&self, key: &str) -> Result<()> {
        self.submit(Op::Replayed { key: key.to_owned() }).await.map(drop)
    }

    /// Notes that resumptions went out for these held events.
    pub async fn resumed(&self, keys: &[String]) -> Result<()> {
        let mut by_shard: BTreeMap<u32, Vec<String>> = BTreeMap::new();
        for key in keys {
            by_shard.entry(shard_of(key)).or_default().push(key.clone());
        }
        let calls =
            by_shard.into_iter().map(|(shard, keys)| async move { self.call(shard, &[Op::Resumed { keys }]).await });
        join_all(calls).await.into_iter().collect::<Result<Vec<_>>>().map(drop)
    }

    /// Asks every shard the same question and returns each answer.
    async fn ask_all<T: serde::de::DeserializeOwned>(&self, op: &Op) -> Result<Vec<T>> {
        let ops = std::slice::from_ref(op);
        let replies = join_all((0..SHARDS).map(|shard| self.call(shard, ops))).await;
        let mut answers = Vec::with_capacity(SHARDS as usize);
        for reply in replies {
            let value = reply?.into_iter().next().unwrap_or_default();
            answers.push(serde_json::from_value(value)?);
        }
        Ok(answers)
    }

    /// Captured events matching `query`, newest first, at most `query.limit`.
    pub async fn list(&self, query: ListQuery) -> Result<Vec<EventSummary>> {
        let limit = query.limit as usize;
        let mut all: Vec<EventSummary> =
            self.ask_all::<Vec<EventSummary>>(&Op::List { query }).await?.into_iter().flatten().collect();
        all.sort_by(|a, b| {
            (b.received_at_ms, idempotency_key(&b.source, &b.id))
                .cmp(&(a.received_at_ms, idempotency_key(&a.source, &a.id)))
        });
        all.truncate(limit);
        Ok(all)
    }

    /// Events held by a `paused` kill switch (of `source`, or of all), up to `limit` per shard.
    pub async fn held(&self, source: Option<&str>, limit: u32) -> Result<Vec<Held>> {
        let op = Op::Held { source: source.map(str::to_owned), limit };
        Ok(self.ask_all::<Vec<Held>>(&op).await?.into_iter().flatten().collect())
    }

    /// When the oldest events still open and held were accepted, over all shards.
    pub async fn oldest(&self) -> Result<Oldest> {
        let answers = self.ask_all::<Oldest>(&Op::Oldest).await?;
        Ok(Oldest {
            open: answers.iter().filter_map(|o| o.open).min(),
            held: answers.iter().filter_map(|o| o.held).min(),
        })
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
        Ok(serde_json::from_value(self.submit(op).await?)?)
    }
}

/// A row as SQLite returns it.
#[derive(Deserialize)]
struct Row {
    state: String,
    owner: String,
    owner_attempts: u32,
    token: i64,
    lease_until_ms: i64,
    updated_ms: i64,
    expires_ms: i64,
}

/// A captured event's row.
#[derive(Deserialize)]
struct CaptureRow {
    key: String,
    source: String,
    event_id: String,
    event_type: Option<String>,
    content_type: Option<String>,
    received_at_ms: i64,
    headers: String,
    body: String,
    state: String,
    updated_ms: i64,
    attempts: String,
    attempt_count: u32,
    replays: u32,
    resumed_ms: Option<i64>,
    position: Option<String>,
}

impl CaptureRow {
    fn status(&self) -> EventStatus {
        State::parse(&self.state).map_or(EventStatus::Accepted, EventStatus::of)
    }

    fn capture(&self) -> Result<Capture> {
        Ok(Capture {
            source: self.source.clone(),
            id: self.event_id.clone(),
            event_type: self.event_type.clone(),
            content_type: self.content_type.clone(),
            received_at_ms: self.received_at_ms,
            headers: serde_json::from_str(&self.headers)?,
            body: serde_json::from_str(&self.body)?,
            position: self.position.as_deref().map(serde_json::from_str).transpose()?,
        })
    }

    fn summary(&self) -> EventSummary {
        EventSummary {
            source: self.source.clone(),
            id: self.event_id.clone(),
            event_type: self.event_type.clone(),
            status: self.status(),
            received_at_ms: self.received_at_ms,
            updated_ms: self.updated_ms,
            attempts: self.attempt_count,
            replays: self.replays,
        }
    }
}

#[derive(Deserialize)]
struct NextExpiry {
    next: Option<i64>,
}

/// Most attempts kept per captured event (the count goes on; the oldest entries make room).
const MAX_KEPT_ATTEMPTS: usize = 50;
/// Largest page of a listing, per shard.
const MAX_LIST: u32 = 1_000;

const CAPTURE_COLUMNS: &str = "key, source, event_id, event_type, content_type, received_at_ms, headers, body, \
                               state, updated_ms, attempts, attempt_count, replays, resumed_ms, position";

/// One shard of idempotency records, and the capture of the same events.
///
/// Captures live beside the records, in the same object, so that taking an event and capturing
/// it is one write in one place, and an event's status is always its record's state. They have
/// their own table and expiry: idempotency is kept for `IDEMPOTENCY_TTL_SECS` after the last
/// write, captures for `CAPTURE_RETENTION_SECS` after the event was received.
#[durable_object]
pub struct IdempotencyShard {
    state: ObjectState,
    sql: Sql,
    ttl_ms: i64,
    retention_ms: i64,
    /// The alarm as last read or set: `None` until read once.
    alarm: Cell<Option<Option<i64>>>,
}

impl DurableObject for IdempotencyShard {
    fn new(state: ObjectState, env: Env) -> Self {
        let sql = Sql::new(state.storage().sql());
        // Idempotent DDL, synchronous: it runs before any request reaches the object.
        let ddl = "CREATE TABLE IF NOT EXISTS records (
                       key TEXT PRIMARY KEY, state TEXT NOT NULL, owner TEXT NOT NULL,
                       owner_attempts INTEGER NOT NULL, token INTEGER NOT NULL,
                       lease_until_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL,
                       expires_ms INTEGER NOT NULL) WITHOUT ROWID;
                   CREATE INDEX IF NOT EXISTS records_by_expiry ON records (expires_ms);
                   CREATE TABLE IF NOT EXISTS captures (
                       key TEXT PRIMARY KEY, source TEXT NOT NULL, event_id TEXT NOT NULL,
                       event_type TEXT, content_type TEXT, received_at_ms INTEGER NOT NULL,
                       headers TEXT NOT NULL, body TEXT NOT NULL, state TEXT NOT NULL,
                       updated_ms INTEGER NOT NULL, attempts TEXT NOT NULL,
                       attempt_count INTEGER NOT NULL, replays INTEGER NOT NULL,
                       resumed_ms INTEGER, expires_ms INTEGER NOT NULL, position TEXT) WITHOUT ROWID;
                   CREATE INDEX IF NOT EXISTS captures_by_time ON captures (received_at_ms, key);
                   CREATE INDEX IF NOT EXISTS captures_by_state ON captures (state, received_at_ms);
                   CREATE INDEX IF NOT EXISTS captures_by_expiry ON captures (expires_ms);
                   CREATE TABLE IF NOT EXISTS versions (
                       key TEXT PRIMARY KEY, version TEXT NOT NULL, expires_ms INTEGER NOT NULL)
                       WITHOUT ROWID;
                   CREATE INDEX IF NOT EXISTS versions_by_expiry ON versions (expires_ms);";
        if let Err(e) = sql.exec(ddl, None) {
            worker::console_error!("idempotency shard: schema creation failed: {e}");
        }
        let settings = &crate::env::config(&env).settings;
        let ttl_ms = settings.idempotency_ttl_secs.saturating_mul(1000) as i64;
        let retention_ms = settings.capture_retention_secs.saturating_mul(1000) as i64;
        IdempotencyShard { state, sql, ttl_ms, retention_ms, alarm: Cell::new(None) }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        let ops: Vec<Op> = req.json().await?;
        let mut replies = Vec::with_capacity(ops.len());
        for op in ops {
            replies.push(self.apply(op).await?);
        }
        Response::ok(serde_json::to_string(&replies)?)
    }

    async fn alarm(&self) -> Result<Response> {
        billing::count(Billed::DoRequest, 1);
        let now = now_ms();
        // Held events never expire while held: a paused kill switch may stay on for longer
        // than any retention, and its events must still be there when it is lifted. Nor do
        // the captures of events still in flight (they measure processing lag).
        for (table, kept) in [
            ("records", "state NOT IN ('paused')"),
            ("captures", "state NOT IN ('paused', 'delivering', 'retrying')"),
            ("versions", "1"),
        ] {
            self.sql.exec(
                &format!(
                    "DELETE FROM {table} WHERE key IN
                       (SELECT key FROM {table} WHERE expires_ms <= ? AND {kept} LIMIT ?)"
                ),
                vec![SqlStorageValue::from(now), SqlStorageValue::from(EXPIRE_BATCH)],
            )?;
        }
        // The alarm that is running is consumed; arm the next one for whatever expires next.
        self.alarm.set(Some(None));
        let next: Vec<NextExpiry> = self
            .sql
            .exec(
                "SELECT MIN(next) AS next FROM
                   (SELECT MIN(expires_ms) AS next FROM records WHERE state != 'paused'
                    UNION ALL SELECT MIN(expires_ms) FROM captures
                      WHERE state NOT IN ('paused', 'delivering', 'retrying')
                    UNION ALL SELECT MIN(expires_ms) FROM versions)",
                None,
            )?
            .to_array()?;
        if let Some(next) = next.first().and_then(|n| n.next) {
            self.arm(next.max(now)).await?;
        }
        Response::ok("")
    }
}

impl IdempotencyShard {
    async fn apply(&self, op: Op) -> Result<serde_json::Value> {
        let clock = Clock { now_ms: now_ms(), ttl_ms: self.ttl_ms };
        match op {
            Op::Begin { key, message_id, attempts, retry_token, replay, lease_ms, capture } => {
                let record = self.read(&key)?;
                let message = Message { id: &message_id, attempts, retry_token, replay };
                let (write, begin) = core::begin(record.as_ref(), message, lease_ms, clock);
                if let (Begin::Go, Some(capture)) = (begin, capture) {
                    // A new record is a new event (or one received again after its id expired):
                    // its capture starts afresh. Otherwise a capture is only filled in if missing.
                    self.capture(&key, &capture, record.is_none(), clock.now_ms)?;
                    self.arm(capture.received_at_ms.saturating_add(self.retention_ms)).await?;
                }
                self.write(&key, write).await?;
                Ok(serde_json::to_value(begin)?)
            }
            Op::Finish { key, message_id, outcome, attempt } => {
                let record = self.read(&key)?;
                self.write(&key, core::finish(record.as_ref(), &message_id, outcome, clock)).await?;
                if let Some(attempt) = attempt {
                    self.add_attempt(&key, attempt)?;
                }
                Ok(serde_json::Value::Null)
            }
            Op::MarkDead { key, message_id, attempts, retry_token, replay } => {
                let record = self.read(&key)?;
                let message = Message { id: &message_id, attempts, retry_token, replay };
                let (write, mark) = core::mark_dead(record.as_ref(), message, clock);
                self.write(&key, write).await?;
                Ok(serde_json::to_value(mark)?)
            }
            Op::Get { key } => {
                let found = self.capture_rows(
                    "WHERE key = ? AND (expires_ms > ? OR state = 'paused')",
                    vec![key.into(), clock.now_ms.into()],
                )?;
                let Some(row) = found.into_iter().next() else {
                    return Ok(serde_json::Value::Null);
                };
                let event = StoredEvent {
                    key: row.key.clone(),
                    status: row.status(),
                    capture: row.capture()?,
                    attempts: serde_json::from_str(&row.attempts)?,
                    attempt_count: row.attempt_count,
                    replays: row.replays,
                    updated_ms: row.updated_ms,
                };
                Ok(serde_json::to_value(event)?)
            }
            Op::Replayed { key } => {
                self.sql.exec("UPDATE captures SET replays = replays + 1 WHERE key = ?", vec![key.into()])?;
                Ok(serde_json::Value::Null)
            }
            Op::Resumed { keys } => {
                for key in keys {
                    self.sql.exec(
                        "UPDATE captures SET resumed_ms = ? WHERE key = ?",
                        vec![clock.now_ms.into(), key.into()],
                    )?;
                }
                Ok(serde_json::Value::Null)
            }
            Op::List { query } => {
                let mut clauses = vec!["(expires_ms > ? OR state = 'paused')".to_owned()];
                let mut params: Vec<SqlStorageValue> = vec![clock.now_ms.into()];
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
                        return Ok(serde_json::json!([]));
                    }
                    clauses.push(format!("state IN ({})", vec!["?"; states.len()].join(", ")));
                    params.extend(states.into_iter().map(SqlStorageValue::from));
                }
                if let Some((at, key)) = query.before {
                    clauses.push("(received_at_ms < ? OR (received_at_ms = ? AND key < ?))".into());
                    params.extend([at.into(), at.into(), key.into()]);
                }
                params.push(i64::from(query.limit.min(MAX_LIST)).into());
                let filter = format!("WHERE {} ORDER BY received_at_ms DESC, key DESC LIMIT ?", clauses.join(" AND "));
                let rows = self.capture_rows(&filter, params)?;
                Ok(serde_json::to_value(rows.iter().map(CaptureRow::summary).collect::<Vec<_>>())?)
            }
            Op::Held { source, limit } => {
                let limit = SqlStorageValue::from(i64::from(limit.min(MAX_LIST)));
                let rows = match source {
                    Some(source) => self.capture_rows(
                        "WHERE state = 'paused' AND source = ? ORDER BY received_at_ms LIMIT ?",
                        vec![source.into(), limit],
                    )?,
                    None => self.capture_rows("WHERE state = 'paused' ORDER BY received_at_ms LIMIT ?", vec![limit])?,
                };
                let mut held = Vec::with_capacity(rows.len());
                for row in rows {
                    held.push(Held {
                        capture: row.capture()?,
                        attempts: row.attempt_count,
                        resumed_ms: row.resumed_ms,
                    });
                }
                Ok(serde_json::to_value(held)?)
            }
            Op::Newest { key } => {
                #[derive(Deserialize)]
                struct Row {
                    version: String,
                }
                let rows: Vec<Row> = self
                    .sql
                    .exec(
                        "SELECT version FROM versions WHERE key = ? AND expires_ms > ?",
                        vec![key.into(), clock.now_ms.into()],
                    )?
                    .to_array()?;
                Ok(serde_json::to_value(rows.into_iter().next().map(|r| Version::new(r.version)))?)
            }
            Op::Delivered { key, version } => {
                #[derive(Deserialize)]
                struct Row {
                    version: String,
                    expires_ms: i64,
                }
                let rows: Vec<Row> = self
                    .sql
                    .exec("SELECT version, expires_ms FROM versions WHERE key = ?", vec![key.as_str().into()])?
                    .to_array()?;
                // Only ever forward: a delivery of an older version (`stale = "deliver"`, or a
                // replay) does not move the newest back.
                let newer = match rows.first() {
                    Some(row) if row.expires_ms > clock.now_ms => {
                        !version.is_older_than(&Version::new(row.version.clone()))
                    }
                    _ => true,
                };
                if newer {
                    let expires_ms = clock.now_ms + self.ttl_ms;
                    self.sql.exec(
                        "INSERT OR REPLACE INTO versions (key, version, expires_ms) VALUES (?, ?, ?)",
                        vec![key.into(), version.0.into(), expires_ms.into()],
                    )?;
                    self.arm(expires_ms).await?;
                }
                Ok(serde_json::Value::Null)
            }
            Op::Oldest => {
                let oldest = |states: &str| -> Result<Option<i64>> {
                    let rows: Vec<NextExpiry> = self
                        .sql
                        .exec(
                            &format!("SELECT MIN(received_at_ms) AS next FROM captures WHERE state IN ({states})"),
                            None,
                        )?
                        .to_array()?;
                    Ok(rows.first().and_then(|r| r.next))
                };
                let answer = Oldest { open: oldest("'delivering', 'retrying'")?, held: oldest("'paused'")? };
                Ok(serde_json::to_value(answer)?)
            }
        }
    }

    fn capture_rows(&self, filter: &str, params: Vec<SqlStorageValue>) -> Result<Vec<CaptureRow>> {
        self.sql.exec(&format!("SELECT {CAPTURE_COLUMNS} FROM captures {filter}"), params)?.to_array()
    }

    /// Stores `capture` for `key`: replacing what is there when `fresh`, else only if missing.
    fn capture(&self, key: &str, capture: &Capture, fresh: bool, now_ms: i64) -> Result<()> {
        let verb = if fresh { "INSERT OR REPLACE" } else { "INSERT OR IGNORE" };
        self.sql.exec(
            &format!(
                "{verb} INTO captures (key, source, event_id, event_type, content_type, received_at_ms, headers,
                   body, state, updated_ms, attempts, attempt_count, replays, resumed_ms, expires_ms, position)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'delivering', ?, '[]', 0, 0, NULL, ?, ?)"
            ),
            vec![
                key.into(),
                capture.source.as_str().into(),
                capture.id.as_str().into(),
                capture.event_type.as_deref().into(),
                capture.content_type.as_deref().into(),
                capture.received_at_ms.into(),
                serde_json::to_string(&capture.headers)?.into(),
                serde_json::to_string(&capture.body)?.into(),
                now_ms.into(),
                capture.received_at_ms.saturating_add(self.retention_ms).into(),
                capture.position.as_ref().map(serde_json::to_string).transpose()?.into(),
            ],
        )?;
        Ok(())
    }

    fn add_attempt(&self, key: &str, attempt: Attempt) -> Result<()> {
        #[derive(Deserialize)]
        struct Attempts {
            attempts: String,
        }
        let rows: Vec<Attempts> =
            self.sql.exec("SELECT attempts FROM captures WHERE key = ?", vec![key.into()])?.to_array()?;
        let Some(row) = rows.into_iter().next() else {
            return Ok(());
        };
        let mut attempts: Vec<Attempt> = serde_json::from_str(&row.attempts)?;
        attempts.push(attempt);
        if attempts.len() > MAX_KEPT_ATTEMPTS {
            attempts.drain(..attempts.len() - MAX_KEPT_ATTEMPTS);
        }
        self.sql.exec(
            "UPDATE captures SET attempts = ?, attempt_count = attempt_count + 1 WHERE key = ?",
            vec![serde_json::to_string(&attempts)?.into(), key.into()],
        )?;
        Ok(())
    }

    fn read(&self, key: &str) -> Result<Option<Record>> {
        let rows: Vec<Row> = self
            .sql
            .exec(
                "SELECT state, owner, owner_attempts, token, lease_until_ms, updated_ms, expires_ms
                 FROM records WHERE key = ?",
                vec![SqlStorageValue::from(key)],
            )?
            .to_array()?;
        let Some(row) = rows.into_iter().next() else {
            return Ok(None);
        };
        let state = State::parse(&row.state)
            .ok_or_else(|| worker::Error::RustError(format!("unknown stored state {:?}", row.state)))?;
        Ok(Some(Record {
            state,
            owner: row.owner,
            owner_attempts: row.owner_attempts,
            token: row.token as u64,
            lease_until_ms: row.lease_until_ms,
            updated_ms: row.updated_ms,
            expires_ms: row.expires_ms,
        }))
    }

    async fn write(&self, key: &str, write: Write) -> Result<()> {
        match write {
            Write::Keep => {}
            Write::Put(r) => {
                self.sql.exec(
                    "INSERT INTO records
                       (key, state, owner, owner_attempts, token, lease_until_ms, updated_ms, expires_ms)
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                     ON CONFLICT (key) DO UPDATE SET state = excluded.state, owner = excluded.owner,
                       owner_attempts = excluded.owner_attempts, token = excluded.token,
                       lease_until_ms = excluded.lease_until_ms, updated_ms = excluded.updated_ms,
                       expires_ms = excluded.expires_ms",
                    vec![
                        SqlStorageValue::from(key),
                        SqlStorageValue::from(r.state.as_str()),
                        SqlStorageValue::from(r.owner.as_str()),
                        SqlStorageValue::from(i64::from(r.owner_attempts)),
                        SqlStorageValue::from(r.token as i64),
                        SqlStorageValue::from(r.lease_until_ms),
                        SqlStorageValue::from(r.updated_ms),
                        SqlStorageValue::from(r.expires_ms),
                    ],
                )?;
                // Only when the state changes: every row (and index entry) written is billed, and
                // a capture inserted a moment ago already has this state.
                self.sql.exec(
                    "UPDATE captures SET state = ?, updated_ms = ? WHERE key = ? AND state != ?",
                    vec![r.state.as_str().into(), r.updated_ms.into(), key.into(), r.state.as_str().into()],
                )?;
                self.arm(r.expires_ms).await?;
            }
        }
        Ok(())
    }

    /// Makes sure an alarm fires by `expires_ms` plus a little slack. TTLs are the same for every
    /// record, so once an alarm is armed a later write almost never needs to touch it.
    async fn arm(&self, expires_ms: i64) -> Result<()> {
        let storage = self.state.storage();
        let current = match self.alarm.get() {
            // An alarm time well in the past means the alarm gave up (the runtime stops retrying
            // a failing alarm): look again rather than trust it.
            Some(Some(at)) if at < now_ms() - MAX_EXPIRY_SLACK_MS => storage.get_alarm().await?,
            Some(known) => known,
            None => storage.get_alarm().await?,
        };
        let due = expires_ms + (self.ttl_ms.min(self.retention_ms) / 100).min(MAX_EXPIRY_SLACK_MS);
        match current {
            Some(at) if at <= due => self.alarm.set(Some(Some(at))),
            _ => {
                storage.set_alarm(ScheduledTime::new(js_sys::Date::new(&JsValue::from_f64(due as f64)))).await?;
                // Setting an alarm is billed as a row written.
                billing::count(Billed::DoRowWritten, 1);
                self.alarm.set(Some(Some(due)));
            }
        }
        Ok(())
    }
}
