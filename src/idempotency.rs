//! Idempotency records in SQLite-backed Durable Objects, and the batching client the consumer uses.
//!
//! Records are spread over `SHARDS` objects by key (see the core's `idempotency` module for
//! why, and for why the consumer, not the receiver, consults them). Each object applies the
//! core's pure transitions to its rows; its input gate makes read-then-write atomic, so two
//! messages for one event can never both take its lease. Rows are deleted by the object's alarm
//! once they expire, never by a sweep that could miss them.

use crate::env::{bindings, now_ms};
use edgehook_core::idempotency::{
    self as core, shard_of, Begin, Clock, DeadMark, Message, Outcome, Record, State, Write,
};
use futures_channel::oneshot;
use futures_util::future::join_all;
use serde::{Deserialize, Serialize};
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::time::Duration;
use wasm_bindgen::JsValue;
use worker::{
    durable_object, Delay, DurableObject, Env, Method, ObjectNamespace, Request, RequestInit, Response, Result,
    ScheduledTime, SqlStorage, SqlStorageValue, State as ObjectState,
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
    Begin { key: String, message_id: String, attempts: u32, retry_token: Option<u64>, replay: bool, lease_ms: i64 },
    Finish { key: String, message_id: String, outcome: Outcome },
    MarkDead { key: String, message_id: String, attempts: u32, retry_token: Option<u64>, replay: bool },
}

impl Op {
    fn key(&self) -> &str {
        match self {
            Op::Begin { key, .. } | Op::Finish { key, .. } | Op::MarkDead { key, .. } => key,
        }
    }
}

type Reply = Result<serde_json::Value>;
/// Operations waiting for the next flush, with where to send each reply.
type Queued = Vec<(Op, oneshot::Sender<Reply>)>;

/// The consumer's handle on the idempotency store, shared by every message of a batch.
///
/// Operations are not sent one by one: the messages of a batch are handled concurrently, and
/// the operations they ask for in the same turn of the event loop go out as one request per
/// shard. A batch of 100 messages costs a handful of Durable Object requests instead of 200.
pub struct Idempotency {
    ns: ObjectNamespace,
    queued: RefCell<BTreeMap<u32, Queued>>,
    flush_scheduled: Cell<bool>,
}

impl Idempotency {
    pub fn new(env: &Env) -> Result<Self> {
        Ok(Idempotency {
            ns: env.durable_object(bindings::IDEMPOTENCY)?,
            queued: RefCell::default(),
            flush_scheduled: Cell::new(false),
        })
    }

    /// Queues `op` for its shard and waits for its reply. The first caller of a turn flushes,
    /// after yielding once so that the other handlers of the batch can queue theirs.
    async fn submit(&self, op: Op) -> Reply {
        let (tx, rx) = oneshot::channel();
        self.queued.borrow_mut().entry(shard_of(op.key())).or_default().push((op, tx));
        if !self.flush_scheduled.replace(true) {
            Delay::from(Duration::ZERO).await;
            self.flush_scheduled.set(false);
            let queued = std::mem::take(&mut *self.queued.borrow_mut());
            join_all(queued.into_iter().map(|(shard, ops)| self.send(shard, ops))).await;
        }
        rx.await.map_err(|_| worker::Error::RustError("idempotency request dropped".into()))?
    }

    async fn send(&self, shard: u32, queued: Queued) {
        let (ops, senders): (Vec<Op>, Vec<_>) = queued.into_iter().unzip();
        match self.call(shard, &ops).await {
            Ok(replies) if replies.len() == senders.len() => {
                for (tx, reply) in senders.into_iter().zip(replies) {
                    let _ = tx.send(Ok(reply));
                }
            }
            outcome => {
                let why = match outcome {
                    Err(e) => e.to_string(),
                    Ok(replies) => format!("{} replies to {} operations", replies.len(), senders.len()),
                };
                for tx in senders {
                    let _ = tx.send(Err(worker::Error::RustError(format!("idempotency shard {shard}: {why}"))));
                }
            }
        }
    }

    async fn call(&self, shard: u32, ops: &[Op]) -> Result<Vec<serde_json::Value>> {
        let stub = self.ns.id_from_name(&format!("shard-{shard}"))?.get_stub()?;
        let mut init = RequestInit::new();
        init.with_method(Method::Post).with_body(Some(JsValue::from_str(&serde_json::to_string(ops)?)));
        let mut response =
            stub.fetch_with_request(Request::new_with_init("https://idempotency.edgehook/ops", &init)?).await?;
        if response.status_code() != 200 {
            let detail = response.text().await.unwrap_or_default();
            return Err(worker::Error::RustError(format!("answered {}: {detail}", response.status_code())));
        }
        response.json().await
    }

    /// Asks to deliver `key` on behalf of `message`, holding the lease for `lease_ms`.
    pub async fn begin(&self, key: &str, message: Message<'_>, lease_ms: i64) -> Result<Begin> {
        let op = Op::Begin {
            key: key.to_owned(),
            message_id: message.id.to_owned(),
            attempts: message.attempts,
            retry_token: message.retry_token,
            replay: message.replay,
            lease_ms,
        };
        Ok(serde_json::from_value(self.submit(op).await?)?)
    }

    /// Reports how the delivery `message_id` began ended.
    pub async fn finish(&self, key: &str, message_id: &str, outcome: Outcome) -> Result<()> {
        self.submit(Op::Finish { key: key.to_owned(), message_id: message_id.to_owned(), outcome }).await.map(drop)
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

#[derive(Deserialize)]
struct NextExpiry {
    next: Option<i64>,
}

/// One shard of idempotency records.
#[durable_object]
pub struct IdempotencyShard {
    state: ObjectState,
    sql: SqlStorage,
    ttl_ms: i64,
    /// The alarm as last read or set: `None` until read once.
    alarm: Cell<Option<Option<i64>>>,
}

impl DurableObject for IdempotencyShard {
    fn new(state: ObjectState, env: Env) -> Self {
        let sql = state.storage().sql();
        // Idempotent DDL, synchronous: it runs before any request reaches the object.
        let ddl = "CREATE TABLE IF NOT EXISTS records (
                       key TEXT PRIMARY KEY, state TEXT NOT NULL, owner TEXT NOT NULL,
                       owner_attempts INTEGER NOT NULL, token INTEGER NOT NULL,
                       lease_until_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL,
                       expires_ms INTEGER NOT NULL) WITHOUT ROWID;
                   CREATE INDEX IF NOT EXISTS records_by_expiry ON records (expires_ms);";
        if let Err(e) = sql.exec(ddl, None) {
            worker::console_error!("idempotency shard: schema creation failed: {e}");
        }
        let ttl_ms = crate::env::config(&env).settings.idempotency_ttl_secs.saturating_mul(1000) as i64;
        IdempotencyShard { state, sql, ttl_ms, alarm: Cell::new(None) }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        let ops: Vec<Op> = req.json().await?;
        let mut replies = Vec::with_capacity(ops.len());
        for op in &ops {
            let record = self.read(op.key())?;
            let clock = Clock { now_ms: now_ms(), ttl_ms: self.ttl_ms };
            let (write, reply) = match op {
                Op::Begin { message_id, attempts, retry_token, replay, lease_ms, .. } => {
                    let message =
                        Message { id: message_id, attempts: *attempts, retry_token: *retry_token, replay: *replay };
                    let (write, begin) = core::begin(record.as_ref(), message, *lease_ms, clock);
                    (write, serde_json::to_value(begin)?)
                }
                Op::Finish { message_id, outcome, .. } => {
                    (core::finish(record.as_ref(), message_id, *outcome, clock), serde_json::Value::Null)
                }
                Op::MarkDead { message_id, attempts, retry_token, replay, .. } => {
                    let message =
                        Message { id: message_id, attempts: *attempts, retry_token: *retry_token, replay: *replay };
                    let (write, mark) = core::mark_dead(record.as_ref(), message, clock);
                    (write, serde_json::to_value(mark)?)
                }
            };
            self.write(op.key(), write).await?;
            replies.push(reply);
        }
        Response::ok(serde_json::to_string(&replies)?)
    }

    async fn alarm(&self) -> Result<Response> {
        let now = now_ms();
        self.sql.exec(
            "DELETE FROM records WHERE key IN (SELECT key FROM records WHERE expires_ms <= ? LIMIT ?)",
            vec![SqlStorageValue::from(now), SqlStorageValue::from(EXPIRE_BATCH)],
        )?;
        // The alarm that is running is consumed; arm the next one for whatever expires next.
        self.alarm.set(Some(None));
        let next: Vec<NextExpiry> = self.sql.exec("SELECT MIN(expires_ms) AS next FROM records", None)?.to_array()?;
        if let Some(next) = next.first().and_then(|n| n.next) {
            self.arm(next.max(now)).await?;
        }
        Response::ok("")
    }
}

impl IdempotencyShard {
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
        let due = expires_ms + (self.ttl_ms / 100).min(MAX_EXPIRY_SLACK_MS);
        match current {
            Some(at) if at <= due => self.alarm.set(Some(Some(at))),
            _ => {
                storage.set_alarm(ScheduledTime::new(js_sys::Date::new(&JsValue::from_f64(due as f64)))).await?;
                self.alarm.set(Some(Some(due)));
            }
        }
        Ok(())
    }
}
