//! Idempotency records in SQLite-backed Durable Objects, and the client the worker uses.
//!
//! Records are spread over `SHARDS` objects by key (see the core's `idempotency` module for
//! why). Each object applies the core's pure transitions to its rows; its input gate makes
//! read-then-write atomic, so two copies of one event can never both claim it. Rows are deleted
//! by the object's alarm once they expire, never by a sweep that could miss them.

use crate::env::{bindings, now_ms};
use edgehook_core::idempotency::{self as core, shard_of, Begin, Claim, Clock, Outcome, Record, State, Write};
use futures_channel::oneshot;
use futures_util::future::{select, Either};
use serde::{Deserialize, Serialize};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::time::Duration;
use wasm_bindgen::JsValue;
use worker::{
    durable_object, Delay, DurableObject, Env, Method, ObjectNamespace, Request, RequestInit, Response, Result,
    ScheduledTime, SqlStorage, SqlStorageValue, State as ObjectState,
};

/// How long a copy of an event waits for another copy's pending claim to resolve before it is
/// answered 503 (the provider retries it later).
const WAIT_FOR_PENDING_MS: i64 = 5_000;
/// Most rows one alarm run deletes; the alarm re-arms at once when more are due.
const EXPIRE_BATCH: i64 = 5_000;
/// Largest delay between an expiry and the alarm that deletes it; batching expiries keeps the
/// alarm from firing once per event under steady traffic.
const MAX_EXPIRY_SLACK_MS: i64 = 60_000;

/// One operation on one record.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Op {
    Claim { key: String, token: u64, filtered: bool },
    Confirm { key: String, token: u64 },
    Release { key: String, token: u64 },
    Begin { key: String, lease_ms: i64, replay: bool },
    Finish { key: String, outcome: Outcome },
}

impl Op {
    fn key(&self) -> &str {
        match self {
            Op::Claim { key, .. }
            | Op::Confirm { key, .. }
            | Op::Release { key, .. }
            | Op::Begin { key, .. }
            | Op::Finish { key, .. } => key,
        }
    }
}

/// The worker's handle on the idempotency store.
pub struct Idempotency {
    ns: ObjectNamespace,
}

impl Idempotency {
    pub fn new(env: &Env) -> Result<Self> {
        Ok(Idempotency { ns: env.durable_object(bindings::IDEMPOTENCY)? })
    }

    async fn call(&self, op: &Op) -> Result<Response> {
        let stub = self.ns.id_from_name(&format!("shard-{}", shard_of(op.key())))?.get_stub()?;
        let mut init = RequestInit::new();
        init.with_method(Method::Post).with_body(Some(JsValue::from_str(&serde_json::to_string(op)?)));
        let mut response =
            stub.fetch_with_request(Request::new_with_init("https://idempotency.edgehook/op", &init)?).await?;
        if response.status_code() != 200 {
            let detail = response.text().await.unwrap_or_default();
            return Err(worker::Error::RustError(format!(
                "idempotency store answered {}: {detail}",
                response.status_code()
            )));
        }
        Ok(response)
    }

    /// Claims `key` for a receiver holding `token`. `filtered` claims it straight into
    /// `Filtered` (acknowledged, never delivered).
    pub async fn claim(&self, key: &str, token: u64, filtered: bool) -> Result<Claim> {
        self.call(&Op::Claim { key: key.to_owned(), token, filtered }).await?.json().await
    }

    pub async fn confirm(&self, key: &str, token: u64) -> Result<()> {
        self.call(&Op::Confirm { key: key.to_owned(), token }).await.map(drop)
    }

    pub async fn release(&self, key: &str, token: u64) -> Result<()> {
        self.call(&Op::Release { key: key.to_owned(), token }).await.map(drop)
    }

    pub async fn begin(&self, key: &str, lease_ms: i64, replay: bool) -> Result<Begin> {
        self.call(&Op::Begin { key: key.to_owned(), lease_ms, replay }).await?.json().await
    }

    pub async fn finish(&self, key: &str, outcome: Outcome) -> Result<()> {
        self.call(&Op::Finish { key: key.to_owned(), outcome }).await.map(drop)
    }
}

/// A row as SQLite returns it.
#[derive(Deserialize)]
struct Row {
    state: String,
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
    /// Receivers waiting for a pending claim on a key to be confirmed or released.
    waiters: RefCell<HashMap<String, Vec<oneshot::Sender<()>>>>,
    /// The alarm as last read or set: `None` until read once.
    alarm: Cell<Option<Option<i64>>>,
}

impl DurableObject for IdempotencyShard {
    fn new(state: ObjectState, env: Env) -> Self {
        let sql = state.storage().sql();
        // Idempotent DDL, synchronous: it runs before any request reaches the object.
        let ddl = "CREATE TABLE IF NOT EXISTS records (
                       key TEXT PRIMARY KEY, state TEXT NOT NULL, token INTEGER NOT NULL,
                       lease_until_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL,
                       expires_ms INTEGER NOT NULL) WITHOUT ROWID;
                   CREATE INDEX IF NOT EXISTS records_by_expiry ON records (expires_ms);";
        if let Err(e) = sql.exec(ddl, None) {
            worker::console_error!("idempotency shard: schema creation failed: {e}");
        }
        let ttl_ms = crate::env::config(&env).settings.idempotency_ttl_secs.saturating_mul(1000) as i64;
        IdempotencyShard { state, sql, ttl_ms, waiters: RefCell::default(), alarm: Cell::new(None) }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        let op: Op = req.json().await?;
        let reply = match op {
            Op::Claim { key, token, filtered } => serde_json::to_string(&self.claim(key, token, filtered).await?)?,
            Op::Confirm { key, token } => {
                let write = core::confirm(self.read(&key)?, token, self.clock());
                self.write(&key, write).await?;
                self.wake(&key);
                "{}".to_owned()
            }
            Op::Release { key, token } => {
                self.write(&key, core::release(self.read(&key)?, token)).await?;
                self.wake(&key);
                "{}".to_owned()
            }
            Op::Begin { key, lease_ms, replay } => {
                let (write, begin) = core::begin(self.read(&key)?, lease_ms, replay, self.clock());
                self.write(&key, write).await?;
                serde_json::to_string(&begin)?
            }
            Op::Finish { key, outcome } => {
                self.write(&key, core::finish(self.read(&key)?, outcome, self.clock())).await?;
                "{}".to_owned()
            }
        };
        Response::ok(reply)
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
    fn clock(&self) -> Clock {
        Clock { now_ms: now_ms(), ttl_ms: self.ttl_ms }
    }

    /// Claims a key, waiting (up to [`WAIT_FOR_PENDING_MS`]) while another receiver's claim on it
    /// is pending: its outcome decides whether this copy is a duplicate or the new owner.
    async fn claim(&self, key: String, token: u64, filtered: bool) -> Result<Claim> {
        let initial = if filtered { State::Filtered } else { State::Pending };
        let deadline = now_ms() + WAIT_FOR_PENDING_MS;
        loop {
            let (write, claim) = core::claim(self.read(&key)?, token, initial, self.clock());
            self.write(&key, write).await?;
            let remaining = deadline - now_ms();
            if claim != Claim::InFlight || remaining <= 0 {
                return Ok(claim);
            }
            let (tx, rx) = oneshot::channel();
            self.waiters.borrow_mut().entry(key.clone()).or_default().push(tx);
            let timer = Delay::from(Duration::from_millis(remaining as u64));
            if let Either::Right(_) = select(rx, timer).await {
                self.prune_waiters(&key);
            }
        }
    }

    fn wake(&self, key: &str) {
        let waiting = self.waiters.borrow_mut().remove(key);
        for tx in waiting.into_iter().flatten() {
            let _ = tx.send(());
        }
    }

    fn prune_waiters(&self, key: &str) {
        let mut waiters = self.waiters.borrow_mut();
        if let Some(list) = waiters.get_mut(key) {
            list.retain(|tx| !tx.is_canceled());
            if list.is_empty() {
                waiters.remove(key);
            }
        }
    }

    fn read(&self, key: &str) -> Result<Option<Record>> {
        let rows: Vec<Row> = self
            .sql
            .exec(
                "SELECT state, token, lease_until_ms, updated_ms, expires_ms FROM records WHERE key = ?",
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
            token: row.token as u64,
            lease_until_ms: row.lease_until_ms,
            updated_ms: row.updated_ms,
            expires_ms: row.expires_ms,
        }))
    }

    async fn write(&self, key: &str, write: Write) -> Result<()> {
        match write {
            Write::Keep => {}
            Write::Delete => {
                self.sql.exec("DELETE FROM records WHERE key = ?", vec![SqlStorageValue::from(key)])?;
            }
            Write::Put(r) => {
                self.sql.exec(
                    "INSERT INTO records (key, state, token, lease_until_ms, updated_ms, expires_ms)
                     VALUES (?, ?, ?, ?, ?, ?)
                     ON CONFLICT (key) DO UPDATE SET state = excluded.state, token = excluded.token,
                       lease_until_ms = excluded.lease_until_ms, updated_ms = excluded.updated_ms,
                       expires_ms = excluded.expires_ms",
                    vec![
                        SqlStorageValue::from(key),
                        SqlStorageValue::from(r.state.as_str()),
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
