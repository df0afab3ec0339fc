//! The control Durable Object: kill switches, metrics and health, in one place for the whole
//! deployment, and the client the rest of the worker uses to reach it.
//!
//! One object (named `control`), because all three are small and global: flags are read once
//! per consumer batch (and cached for a second per isolate), metrics arrive merged (one write
//! per consumer batch, at most one per second per receiving isolate), and health is evaluated
//! once a minute. None of it is on the path that answers a provider.

use crate::billing::Sql;
use crate::env::{bindings, now_ms};
use crate::http::to_json;
use crate::rows::{Count, FromRow, Row, Rows};
use crate::rpc;
use edgehook_core::config::Settings;
use edgehook_core::flags::{Flag, Flags, Mode};
use edgehook_core::health::{self, Alert, AlertState, Inputs, Report, Thresholds};
use edgehook_core::json::Fields;
use edgehook_core::metrics::{Histogram, Metrics, Outcome, Series, MAX_SERIES};
use edgehook_core::names::Named;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::cell::RefCell;
use std::rc::Rc;
use worker::{
    durable_object, DurableObject, Env, ObjectNamespace, Request, Response, Result, SqlStorageValue,
    State as ObjectState,
};

/// How long one isolate trusts the kill switches it read.
const FLAGS_CACHE_MS: i64 = 1_000;
/// Probes older than this are forgotten (seen or not: one unseen for a day has made its point).
const PROBE_MEMORY_MS: i64 = 24 * 3600 * 1000;

/// What a consumer batch or a receiving isolate reports.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Tally {
    pub metrics: Metrics,
    /// Heartbeat probes taken from the queue.
    #[serde(default)]
    pub probes_seen: Vec<String>,
    #[serde(default)]
    pub attempts_succeeded: u64,
    #[serde(default)]
    pub attempts_failed: u64,
    /// Dead letters stored.
    #[serde(default)]
    pub dead_letters_added: u64,
    /// Sources not configured whose events the consumer held (put back on the queue).
    #[serde(default)]
    pub unconfigured: Vec<String>,
}

impl Tally {
    pub fn is_empty(&self) -> bool {
        self.metrics.is_empty()
            && self.probes_seen.is_empty()
            && self.attempts_succeeded == 0
            && self.attempts_failed == 0
            && self.dead_letters_added == 0
            && self.unconfigured.is_empty()
    }

    pub fn count(&mut self, source: &str, event_type: Option<&str>, outcome: Outcome) {
        self.metrics.count(source, event_type, outcome, "", 1);
    }
}

/// What the cron trigger measured for a heartbeat.
pub struct Measured {
    /// The probe it puts on the queue.
    pub probe_id: String,
    /// `None` when they could not be counted.
    pub dead_letters: Option<u64>,
    pub oldest_open_ms: Option<i64>,
    /// Sources whose destination's circuit is open.
    pub open_circuits: Vec<String>,
    /// What could not be read: health is degraded while anything is (see `health::Inputs`).
    pub unmeasured: Vec<String>,
    /// The storage of the fullest idempotency shard (0 when the shards could not be read).
    pub fullest_shard_bytes: u64,
}

/// The heartbeat's findings, and the alert they call for.
#[derive(Debug, Serialize, Deserialize)]
pub struct Beat {
    pub report: Report,
    pub alert: Option<AlertKind>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    Degraded,
    Recovered,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "snake_case")]
enum Op {
    Flags,
    SetFlag {
        source: String,
        pattern: String,
        mode: Mode,
    },
    Report {
        tally: Tally,
    },
    Metrics,
    Heartbeat {
        probe_id: String,
        dead_letters: Option<u64>,
        oldest_open_ms: Option<i64>,
        open_circuits: Vec<String>,
        #[serde(default)]
        unmeasured: Vec<String>,
        // Defaults for a worker isolate still running code from before these fields (during a
        // deploy): its heartbeat and health calls keep working.
        #[serde(default)]
        fullest_shard_bytes: u64,
        max_lag_ms: i64,
        #[serde(default = "default_max_shard_bytes")]
        max_shard_bytes: u64,
    },
    Health {
        max_lag_ms: i64,
        #[serde(default = "default_max_shard_bytes")]
        max_shard_bytes: u64,
    },
}

impl Op {
    /// Reads an operation as serde writes it, by hand from a [`Value`], as the idempotency
    /// shards read theirs (`edgehook_core::json::Fields`): serde's derived deserialisers cost
    /// more wasm. A worker still running code from before `unmeasured`, `fullest_shard_bytes`
    /// or `max_shard_bytes` (during a deploy) gets their defaults.
    fn read(text: &str) -> Result<Op> {
        let value = edgehook_core::json::value(text)?;
        Op::from_value(value).map_err(worker::Error::RustError)
    }

    fn from_value(value: Value) -> std::result::Result<Op, String> {
        let (name, mut f) = edgehook_core::json::variant(value)?;
        let max_shard_bytes = |f: &mut Fields| f.u64("max_shard_bytes").unwrap_or_else(default_max_shard_bytes);
        let op = match name.as_str() {
            "flags" => Op::Flags,
            "set_flag" => Op::SetFlag {
                source: f.need_string("source"),
                pattern: f.need_string("pattern"),
                mode: f.need_named("mode").unwrap_or(Mode::On),
            },
            "report" => {
                // The tally's metrics are read elsewhere too (the metrics answer), by the derived
                // deserialiser the bundle has anyway.
                let tally = edgehook_core::json::from_value(f.need("tally")).map_err(|e| e.to_string());
                Op::Report { tally: f.check(tally).unwrap_or_default() }
            }
            "metrics" => Op::Metrics,
            "heartbeat" => Op::Heartbeat {
                probe_id: f.need_string("probe_id"),
                dead_letters: f.u64("dead_letters"),
                oldest_open_ms: f.i64("oldest_open_ms"),
                open_circuits: f.need_strings("open_circuits"),
                unmeasured: f.strings("unmeasured").unwrap_or_default(),
                fullest_shard_bytes: f.u64("fullest_shard_bytes").unwrap_or(0),
                max_lag_ms: f.need_i64("max_lag_ms"),
                max_shard_bytes: max_shard_bytes(&mut f),
            },
            "health" => Op::Health { max_lag_ms: f.need_i64("max_lag_ms"), max_shard_bytes: max_shard_bytes(&mut f) },
            other => return Err(edgehook_core::json::unknown_variant(other)),
        };
        f.done(op)
    }
}

/// The worker's handle on the control object.
pub struct Control {
    ns: ObjectNamespace,
}

thread_local! {
    /// Kill switches as last read by this isolate, and when.
    static FLAGS: RefCell<Option<(i64, Rc<Flags>)>> = const { RefCell::new(None) };
}

impl Control {
    pub fn new(env: &Env) -> Result<Control> {
        Ok(Control { ns: env.durable_object(bindings::CONTROL)? })
    }

    async fn call<T: serde::de::DeserializeOwned>(&self, op: &Op) -> Result<T> {
        let answer = crate::rpc::ask_object(&self.ns, "control", "control", serde_json::to_string(op)?).await?;
        Ok(edgehook_core::json::from_str(&answer)?)
    }

    /// The kill switches: read at most once a second per isolate. When the object cannot be
    /// reached, the last switches read are used, however old; with none, the error.
    pub async fn flags(&self) -> Result<Rc<Flags>> {
        let now = now_ms();
        let cached = FLAGS.with(|f| f.borrow().clone());
        if let Some((at, flags)) = &cached {
            if now - at < FLAGS_CACHE_MS {
                return Ok(flags.clone());
            }
        }
        match self.call::<Flags>(&Op::Flags).await {
            Ok(flags) => {
                let flags = Rc::new(flags);
                FLAGS.with(|f| *f.borrow_mut() = Some((now, flags.clone())));
                Ok(flags)
            }
            Err(e) => match cached {
                Some((_, flags)) => {
                    worker::console_error!("kill switches unreadable, using the last ones read: {e}");
                    Ok(flags)
                }
                None => Err(e),
            },
        }
    }

    /// The kill switches as stored now (no cache).
    pub async fn flags_now(&self) -> Result<Flags> {
        self.call(&Op::Flags).await
    }

    /// Sets one kill switch and returns them all (this isolate sees the change at once).
    pub async fn set_flag(&self, source: &str, pattern: &str, mode: Mode) -> Result<Flags> {
        let op = Op::SetFlag { source: source.to_owned(), pattern: pattern.to_owned(), mode };
        let flags: Flags = self.call(&op).await?;
        FLAGS.with(|f| *f.borrow_mut() = Some((now_ms(), Rc::new(flags.clone()))));
        Ok(flags)
    }

    pub async fn report(&self, tally: Tally) -> Result<()> {
        if tally.is_empty() {
            return Ok(());
        }
        self.call::<serde_json::Value>(&Op::Report { tally }).await.map(drop)
    }

    pub async fn metrics(&self) -> Result<Metrics> {
        self.call(&Op::Metrics).await
    }

    /// Records a heartbeat with what the cron trigger measured, evaluates health, and says
    /// which alert to send.
    pub async fn heartbeat(&self, measured: Measured, settings: &Settings) -> Result<Beat> {
        let Measured { probe_id, dead_letters, oldest_open_ms, open_circuits, unmeasured, fullest_shard_bytes } =
            measured;
        let (max_lag_ms, max_shard_bytes) = limits(settings);
        let op = Op::Heartbeat {
            probe_id,
            dead_letters,
            oldest_open_ms,
            open_circuits,
            unmeasured,
            fullest_shard_bytes,
            max_lag_ms,
            max_shard_bytes,
        };
        self.call(&op).await
    }

    /// The health as of now (the last heartbeat's measurements, aged to now).
    pub async fn health(&self, settings: &Settings) -> Result<Report> {
        let (max_lag_ms, max_shard_bytes) = limits(settings);
        self.call(&Op::Health { max_lag_ms, max_shard_bytes }).await
    }
}

struct FlagRow {
    source: String,
    pattern: String,
    mode: String,
    updated_ms: i64,
}

impl FromRow for FlagRow {
    fn from_row(row: &mut Row<'_>) -> Result<Self> {
        Ok(FlagRow {
            source: row.text("source")?,
            pattern: row.text("pattern")?,
            mode: row.text("mode")?,
            updated_ms: row.int("updated_ms")?,
        })
    }
}

struct CounterRow {
    source: String,
    event_type: String,
    outcome: String,
    reason: String,
    n: i64,
}

impl FromRow for CounterRow {
    fn from_row(row: &mut Row<'_>) -> Result<Self> {
        Ok(CounterRow {
            source: row.text("source")?,
            event_type: row.text("event_type")?,
            outcome: row.text("outcome")?,
            reason: row.text("reason")?,
            n: row.int("n")?,
        })
    }
}

struct LatencyRow {
    source: String,
    buckets: String,
    sum_ms: i64,
    count: i64,
}

impl FromRow for LatencyRow {
    fn from_row(row: &mut Row<'_>) -> Result<Self> {
        Ok(LatencyRow {
            source: row.text("source")?,
            buckets: row.text("buckets")?,
            sum_ms: row.int("sum_ms")?,
            count: row.int("count")?,
        })
    }
}

/// A stored state's JSON text.
struct ValueRow(String);

impl FromRow for ValueRow {
    fn from_row(row: &mut Row<'_>) -> Result<Self> {
        row.text("value").map(ValueRow)
    }
}

/// When the oldest unseen probe was sent, if any is.
struct MinRow(Option<i64>);

impl FromRow for MinRow {
    fn from_row(row: &mut Row<'_>) -> Result<Self> {
        row.opt_int("sent").map(MinRow)
    }
}

/// Counts since the last heartbeat.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Window {
    attempts_succeeded: u64,
    attempts_failed: u64,
    dead_letters_added: u64,
    #[serde(default)]
    unconfigured: Vec<String>,
}

// Only the handlers the class uses are exported: see `rpc::answer_over_rpc`.
#[durable_object(fetch)]
pub struct ControlObject {
    sql: Sql,
}

impl DurableObject for ControlObject {
    fn new(state: ObjectState, _env: Env) -> Self {
        let sql = Sql::new(state.storage().sql());
        let ddl = "CREATE TABLE IF NOT EXISTS flags (source TEXT NOT NULL, pattern TEXT NOT NULL,
                       mode TEXT NOT NULL, updated_ms INTEGER NOT NULL, PRIMARY KEY (source, pattern));
                   CREATE TABLE IF NOT EXISTS counters (source TEXT NOT NULL, event_type TEXT NOT NULL,
                       outcome TEXT NOT NULL, reason TEXT NOT NULL, n INTEGER NOT NULL,
                       PRIMARY KEY (source, event_type, outcome, reason));
                   CREATE TABLE IF NOT EXISTS latency (source TEXT PRIMARY KEY, buckets TEXT NOT NULL,
                       sum_ms INTEGER NOT NULL, count INTEGER NOT NULL);
                   CREATE TABLE IF NOT EXISTS probes (id TEXT PRIMARY KEY, sent_ms INTEGER,
                       seen_ms INTEGER);
                   CREATE TABLE IF NOT EXISTS state (name TEXT PRIMARY KEY, value TEXT NOT NULL);";
        if let Err(e) = sql.exec(ddl, None) {
            worker::console_error!("control: schema creation failed: {e}");
        }
        ControlObject { sql }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        Response::ok(rpc::Answer::answer(self, req.text().await?).await?)
    }
}

rpc::answer_over_rpc!(ControlObject);

impl rpc::Answer for ControlObject {
    async fn answer(&self, text: String) -> Result<String> {
        let op = Op::read(&text)?;
        let now = now_ms();
        let reply = match op {
            Op::Flags => to_json(&self.flags()?)?,
            Op::SetFlag { source, pattern, mode } => {
                self.sql.exec(
                    "INSERT INTO flags (source, pattern, mode, updated_ms) VALUES (?, ?, ?, ?)
                     ON CONFLICT (source, pattern) DO UPDATE SET mode = excluded.mode,
                       updated_ms = excluded.updated_ms",
                    vec![source.into(), pattern.into(), mode.as_str().into(), now.into()],
                )?;
                to_json(&self.flags()?)?
            }
            Op::Report { tally } => {
                self.add(&tally.metrics)?;
                for id in &tally.probes_seen {
                    self.sql.exec(
                        "INSERT INTO probes (id, sent_ms, seen_ms) VALUES (?, NULL, ?)
                         ON CONFLICT (id) DO UPDATE SET seen_ms = excluded.seen_ms",
                        vec![id.as_str().into(), now.into()],
                    )?;
                }
                let mut window: Window = self.get_state("window")?.unwrap_or_default();
                window.attempts_succeeded += tally.attempts_succeeded;
                window.attempts_failed += tally.attempts_failed;
                window.dead_letters_added += tally.dead_letters_added;
                for source in tally.unconfigured {
                    if !window.unconfigured.contains(&source) {
                        window.unconfigured.push(source);
                    }
                }
                self.put_state("window", &window)?;
                to_json(&())?
            }
            Op::Metrics => to_json(&self.metrics()?)?,
            Op::Heartbeat {
                probe_id,
                dead_letters,
                oldest_open_ms,
                open_circuits,
                unmeasured,
                fullest_shard_bytes,
                max_lag_ms,
                max_shard_bytes,
            } => {
                let window: Window = self.get_state("window")?.unwrap_or_default();
                let previous: Inputs = self.get_state("inputs")?.unwrap_or_default();
                // Dead letters that could not be counted are the last count plus those the
                // consumer reported since: their growth still shows, and a failed count never
                // reads as every letter gone (the reasons say it was not measured).
                let dead_letters =
                    dead_letters.unwrap_or_else(|| previous.dead_letters.saturating_add(window.dead_letters_added));
                self.put_state("window", &Window::default())?;
                self.sql.exec(
                    "INSERT INTO probes (id, sent_ms, seen_ms) VALUES (?, ?, NULL)
                     ON CONFLICT (id) DO UPDATE SET sent_ms = excluded.sent_ms",
                    vec![probe_id.into(), now.into()],
                )?;
                self.sql.exec(
                    "DELETE FROM probes WHERE COALESCE(sent_ms, seen_ms) < ?",
                    vec![(now - PROBE_MEMORY_MS).into()],
                )?;
                let inputs = Inputs {
                    now_ms: now,
                    last_heartbeat_ms: Some(now),
                    oldest_unseen_probe_ms: self.oldest_unseen_probe()?,
                    oldest_open_event_ms: oldest_open_ms,
                    dead_letters,
                    dead_letters_before: dead_letters.saturating_sub(window.dead_letters_added),
                    attempts_succeeded: window.attempts_succeeded,
                    attempts_failed: window.attempts_failed,
                    open_circuits,
                    unmeasured,
                    fullest_shard_bytes,
                    unconfigured: health::waiting_for(&previous.unconfigured, &window.unconfigured, now),
                };
                self.put_state("inputs", &inputs)?;
                let report = health::evaluate(&inputs, &thresholds(max_lag_ms, max_shard_bytes));
                let alerts: AlertState = self.get_state("alerts")?.unwrap_or_default();
                let (alerts, alert) = health::next_alert(alerts, report.status);
                self.put_state("alerts", &alerts)?;
                let alert = alert.map(|a| match a {
                    Alert::Degraded => AlertKind::Degraded,
                    Alert::Recovered => AlertKind::Recovered,
                });
                to_json(&Beat { report, alert })?
            }
            Op::Health { max_lag_ms, max_shard_bytes } => {
                // The last heartbeat's measurements, aged to now: a stopped cron trigger or
                // consumer shows here even though nothing new was measured.
                let mut inputs: Inputs = self.get_state("inputs")?.unwrap_or_default();
                inputs.now_ms = now;
                inputs.oldest_unseen_probe_ms = self.oldest_unseen_probe()?;
                to_json(&health::evaluate(&inputs, &thresholds(max_lag_ms, max_shard_bytes)))?
            }
        };
        Ok(reply.into_text())
    }
}

fn thresholds(max_lag_ms: i64, max_shard_bytes: u64) -> Thresholds {
    Thresholds { max_lag_ms, max_shard_bytes, ..Thresholds::default() }
}

fn default_max_shard_bytes() -> u64 {
    edgehook_core::config::defaults::HEALTH_MAX_SHARD_BYTES
}

/// The configured health limits, as the control object's operations carry them.
fn limits(settings: &Settings) -> (i64, u64) {
    ((settings.health_max_lag_secs as i64).saturating_mul(1000), settings.health_max_shard_bytes)
}

impl ControlObject {
    fn flags(&self) -> Result<Flags> {
        let rows: Vec<FlagRow> = self
            .sql
            .exec("SELECT source, pattern, mode, updated_ms FROM flags ORDER BY source, pattern", None)?
            .rows()?;
        Ok(Flags(
            rows.into_iter()
                .filter_map(|r| {
                    Some(Flag {
                        source: r.source,
                        pattern: r.pattern,
                        mode: Mode::parse(&r.mode)?,
                        updated_ms: r.updated_ms,
                    })
                })
                .collect(),
        ))
    }

    /// Adds reported metrics to the stored ones. New series past the cap are folded into type
    /// `_other`, as in memory.
    fn add(&self, metrics: &Metrics) -> Result<()> {
        let mut series_count: Option<i64> = None;
        for (series, n) in &metrics.counters {
            let mut event_type = series.event_type.as_str();
            let exists: Vec<Count> = self
                .sql
                .exec(
                    "SELECT n FROM counters WHERE source = ? AND event_type = ? AND outcome = ? AND reason = ?",
                    vec![
                        series.source.as_str().into(),
                        event_type.into(),
                        series.outcome.as_str().into(),
                        series.reason.as_str().into(),
                    ],
                )?
                .rows()?;
            if exists.is_empty() {
                let count = match series_count {
                    Some(c) => c,
                    None => self
                        .sql
                        .exec("SELECT COUNT(*) AS n FROM counters", None)?
                        .rows::<Count>()?
                        .first()
                        .map_or(0, |c| c.0),
                };
                if count as usize >= MAX_SERIES {
                    event_type = "_other";
                }
                series_count = Some(count + 1);
            }
            self.sql.exec(
                "INSERT INTO counters (source, event_type, outcome, reason, n) VALUES (?, ?, ?, ?, ?)
                 ON CONFLICT (source, event_type, outcome, reason) DO UPDATE SET n = n + excluded.n",
                vec![
                    series.source.as_str().into(),
                    event_type.into(),
                    series.outcome.as_str().into(),
                    series.reason.as_str().into(),
                    (*n as i64).into(),
                ],
            )?;
        }
        for (source, histogram) in &metrics.latency {
            let mut h = self.histogram(source)?.unwrap_or_default();
            h.merge(histogram);
            self.sql.exec(
                "INSERT OR REPLACE INTO latency (source, buckets, sum_ms, count) VALUES (?, ?, ?, ?)",
                vec![
                    source.as_str().into(),
                    serde_json::to_string(&h.buckets)?.into(),
                    (h.sum_ms as i64).into(),
                    (h.count as i64).into(),
                ],
            )?;
        }
        Ok(())
    }

    fn histogram(&self, source: &str) -> Result<Option<Histogram>> {
        let rows: Vec<LatencyRow> = self
            .sql
            .exec("SELECT source, buckets, sum_ms, count FROM latency WHERE source = ?", vec![source.into()])?
            .rows()?;
        match rows.into_iter().next() {
            None => Ok(None),
            Some(r) => Ok(Some(Histogram {
                buckets: edgehook_core::json::from_str(&r.buckets)?,
                sum_ms: r.sum_ms as u64,
                count: r.count as u64,
            })),
        }
    }

    fn metrics(&self) -> Result<Metrics> {
        let mut metrics = Metrics::default();
        let rows: Vec<CounterRow> =
            self.sql.exec("SELECT source, event_type, outcome, reason, n FROM counters", None)?.rows()?;
        for r in rows {
            let Some(outcome) = Outcome::from_name(&r.outcome) else {
                continue;
            };
            let series = Series { source: r.source, event_type: r.event_type, outcome, reason: r.reason };
            metrics.counters.insert(series, r.n as u64);
        }
        let rows: Vec<LatencyRow> =
            self.sql.exec("SELECT source, buckets, sum_ms, count FROM latency", None)?.rows()?;
        for r in rows {
            let histogram = Histogram {
                buckets: edgehook_core::json::from_str(&r.buckets)?,
                sum_ms: r.sum_ms as u64,
                count: r.count as u64,
            };
            metrics.latency.insert(r.source, histogram);
        }
        Ok(metrics)
    }

    /// When the oldest probe still unseen was sent, of those sent after the newest one the
    /// consumer has seen. A probe can be lost without the consumer being at fault (its enqueue
    /// failed, or the report that the consumer saw it did): once a later probe is seen, the
    /// consumer is evidently taking messages, and the lost one no longer counts (it would
    /// otherwise count as lag until it is forgotten, a day later).
    fn oldest_unseen_probe(&self) -> Result<Option<i64>> {
        let rows: Vec<MinRow> = self
            .sql
            .exec(
                "SELECT MIN(sent_ms) AS sent FROM probes WHERE seen_ms IS NULL AND sent_ms IS NOT NULL
                   AND sent_ms > (SELECT COALESCE(MAX(sent_ms), 0) FROM probes
                                  WHERE seen_ms IS NOT NULL AND sent_ms IS NOT NULL)",
                None,
            )?
            .rows()?;
        Ok(rows.first().and_then(|r| r.0))
    }

    fn get_state<T: serde::de::DeserializeOwned>(&self, name: &str) -> Result<Option<T>> {
        let rows: Vec<ValueRow> = self.sql.exec("SELECT value FROM state WHERE name = ?", vec![name.into()])?.rows()?;
        match rows.into_iter().next() {
            None => Ok(None),
            Some(r) => Ok(Some(edgehook_core::json::from_str(&r.0)?)),
        }
    }

    fn put_state<T: Serialize>(&self, name: &str, value: &T) -> Result<()> {
        self.sql.exec(
            "INSERT OR REPLACE INTO state (name, value) VALUES (?, ?)",
            vec![SqlStorageValue::from(name), serde_json::to_string(value)?.into()],
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> std::result::Result<Op, String> {
        Op::from_value(serde_json::from_str(text).map_err(|e| e.to_string())?)
    }

    /// Every operation reads back as it was written.
    #[test]
    fn every_operation_reads_back_as_written() {
        let mut tally =
            Tally { probes_seen: vec!["p1".into()], attempts_succeeded: 3, dead_letters_added: 1, ..Tally::default() };
        tally.count("stripe", Some("invoice.paid"), Outcome::Delivered);
        tally.metrics.observe_latency("stripe", 120);
        let ops = [
            Op::Flags,
            Op::SetFlag { source: "stripe".into(), pattern: "invoice.*".into(), mode: Mode::Paused },
            Op::Report { tally },
            Op::Metrics,
            Op::Heartbeat {
                probe_id: "p2".into(),
                dead_letters: Some(4),
                oldest_open_ms: Some(-5),
                open_circuits: vec!["https://a.example".into()],
                unmeasured: vec!["dead letters".into()],
                fullest_shard_bytes: 1 << 33,
                max_lag_ms: 60_000,
                max_shard_bytes: 7,
            },
            Op::Heartbeat {
                probe_id: "p3".into(),
                dead_letters: None,
                oldest_open_ms: None,
                open_circuits: Vec::new(),
                unmeasured: Vec::new(),
                fullest_shard_bytes: 0,
                max_lag_ms: 1,
                max_shard_bytes: 2,
            },
            Op::Health { max_lag_ms: 9, max_shard_bytes: 10 },
        ];
        for op in ops {
            let text = serde_json::to_string(&op).unwrap();
            let back = read(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(format!("{back:?}"), format!("{op:?}"), "{text}");
        }
    }

    /// What a worker from before the newer fields sends during a deploy, and what is refused.
    #[test]
    fn older_and_incomplete_operations() {
        let before = r#"{"heartbeat":{"probe_id":"p","dead_letters":null,"oldest_open_ms":null,"open_circuits":[],"max_lag_ms":5}}"#;
        let op = read(before).unwrap();
        let default = default_max_shard_bytes();
        assert!(
            matches!(&op, Op::Heartbeat { unmeasured, fullest_shard_bytes: 0, max_shard_bytes, .. } if unmeasured.is_empty() && *max_shard_bytes == default),
            "{op:?}"
        );
        assert!(
            matches!(read(r#"{"health":{"max_lag_ms":5}}"#).unwrap(), Op::Health { max_lag_ms: 5, max_shard_bytes } if max_shard_bytes == default)
        );
        assert!(matches!(read(r#"{"flags":null}"#).unwrap(), Op::Flags));
        let error = read(r#"{"set_flag":{"source":"s","pattern":"p","mode":"sideways"}}"#).unwrap_err();
        assert_eq!(error, "unknown variant `sideways`");
        assert_eq!(read(r#"{"health":{}}"#).unwrap_err(), "missing field `max_lag_ms`");
        assert!(read(r#"{"report":{"tally":{"metrics":7}}}"#).is_err());
        assert_eq!(read(r#""reboot""#).unwrap_err(), "unknown variant `reboot`", "worded as serde words it");
    }
}
