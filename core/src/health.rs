//! Is edgehook working? The heartbeat's evaluation and when to alert.
//!
//! Every minute the cron trigger records a heartbeat and puts a probe on the event queue; the
//! consumer reports each probe it sees. Processing lag is the age of the oldest accepted event not
//! yet completed: the oldest event a consumer has taken but not finished (delivering, or waiting
//! for a retry), or the oldest probe not yet seen, which covers events still in the queue: if the
//! consumer stops, probes pile up and the lag grows even though no record changes. (Paused events
//! are held on purpose and do not count.) The state is degraded when:
//! - the heartbeat is old (the cron trigger is not running);
//! - the lag is over `HEALTH_MAX_LAG_SECS` (default 300);
//! - dead letters grew since the previous evaluation;
//! - deliveries are failing (most attempts of the last window failed);
//! - something could not be measured (a shard, the dead letters, a circuit): a state nobody can
//!   see is not a healthy one, and whatever broke the measurement is likely breaking deliveries;
//! - events wait for a source that is not configured (removed or broken since they were
//!   accepted): the consumer keeps them, putting them back on the queue every
//!   [`UNCONFIGURED_RETRY_SECS`], and nothing else would show them: they are never begun, so no
//!   lag counts them, and the probes pass them by;
//! - an idempotency shard's storage is past `HEALTH_MAX_SHARD_BYTES` (default 8 GB, 80% of the
//!   10 GB a Durable Object may store): a full shard refuses new records, and its events are
//!   then not delivered, so this warns while there is time to shorten the TTL and retention.
//!
//! Alerts go out on changes only: one when the state turns degraded, one when it has recovered
//! (two evaluations in a row healthy, so that a flapping state does not page twice a minute).

use serde::{Deserialize, Serialize};

/// How often the consumer puts back an event whose source is not configured.
pub const UNCONFIGURED_RETRY_SECS: u32 = 300;

/// How long a source stays named after the consumer last held an event of it: two of its put-back
/// intervals and a heartbeat's, so that the state does not turn ok (and alert a recovery)
/// between two put-backs of events still waiting.
pub const UNCONFIGURED_MEMORY_MS: i64 = 2 * UNCONFIGURED_RETRY_SECS as i64 * 1000 + 60_000;

/// The sources events wait for, each as `<ms> <source>`, the time the consumer last held one of
/// its events: those `held` now (at `now_ms`) first, in the order held, then those remembered
/// from `before` that were held recently enough. (Strings, and no sort: each type stored and
/// each sort brings kilobytes of code into the bundle, and these lists hold a source or two.)
pub fn waiting_for(before: &[String], held: &[String], now_ms: i64) -> Vec<String> {
    let remembered = before.iter().filter_map(|entry| {
        let (ms, source) = entry.split_once(' ')?;
        let seen_ms: i64 = ms.parse().ok()?;
        (now_ms - seen_ms <= UNCONFIGURED_MEMORY_MS).then_some((seen_ms, source))
    });
    let mut waiting: Vec<String> = Vec::new();
    for (seen_ms, source) in held.iter().map(|source| (now_ms, source.as_str())).chain(remembered) {
        if !waiting.iter().any(|entry| waiting_source(entry) == source) {
            waiting.push(format!("{seen_ms} {source}"));
        }
    }
    waiting
}

/// The source of a [`waiting_for`] entry.
fn waiting_source(entry: &str) -> &str {
    entry.split_once(' ').map_or(entry, |(_, source)| source)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    Degraded,
}

crate::names::by_name!(Status: Ok, Degraded);

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Degraded => "degraded",
        }
    }
}

/// What the evaluation looks at.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inputs {
    pub now_ms: i64,
    /// When the cron trigger last ran.
    pub last_heartbeat_ms: Option<i64>,
    /// When the oldest probe the consumer has not seen yet was sent.
    pub oldest_unseen_probe_ms: Option<i64>,
    /// When the oldest event that is being delivered or waiting for a retry was accepted.
    pub oldest_open_event_ms: Option<i64>,
    /// Dead letters stored now, and at the previous evaluation.
    pub dead_letters: u64,
    pub dead_letters_before: u64,
    /// Delivery attempts since the previous evaluation.
    pub attempts_succeeded: u64,
    pub attempts_failed: u64,
    /// Sources whose destination's circuit breaker is open.
    #[serde(default)]
    pub open_circuits: Vec<String>,
    /// What this heartbeat could not measure (read failures), each as a short description.
    #[serde(default)]
    pub unmeasured: Vec<String>,
    /// The storage of the fullest idempotency shard, in bytes (0 when none could be read).
    #[serde(default)]
    pub fullest_shard_bytes: u64,
    /// Sources that are not configured but have events waiting, each with when the consumer last
    /// held one (see [`waiting_for`]).
    #[serde(default)]
    pub unconfigured: Vec<String>,
}

/// When to call it degraded.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    pub max_lag_ms: i64,
    /// The cron trigger runs every minute; three missed runs mean it stopped.
    pub max_heartbeat_age_ms: i64,
    /// Deliveries are "failing" when at least this many attempts were made in the window...
    pub min_attempts: u64,
    /// ...and at most this share of them succeeded.
    pub max_success_share: f64,
    /// The storage an idempotency shard may reach before it is a reason.
    pub max_shard_bytes: u64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            max_lag_ms: 300_000,
            max_heartbeat_age_ms: 180_000,
            min_attempts: 5,
            max_success_share: 0.1,
            max_shard_bytes: crate::config::defaults::HEALTH_MAX_SHARD_BYTES,
        }
    }
}

/// The evaluation, as `/admin/health` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub status: Status,
    /// Why it is degraded (empty when ok).
    pub reasons: Vec<String>,
    pub heartbeat_age_secs: Option<f64>,
    pub processing_lag_secs: f64,
    pub dead_letters: u64,
    pub dead_letter_growth: u64,
    pub attempts_succeeded: u64,
    pub attempts_failed: u64,
    /// Sources whose destination's circuit is open: their deliveries wait.
    pub open_circuits: Vec<String>,
    /// The storage of the fullest idempotency shard, in bytes.
    #[serde(default)]
    pub fullest_shard_bytes: u64,
}

pub fn evaluate(inputs: &Inputs, thresholds: &Thresholds) -> Report {
    let mut reasons = Vec::new();
    let heartbeat_age = inputs.last_heartbeat_ms.map(|t| inputs.now_ms - t);
    match heartbeat_age {
        None => reasons.push("no heartbeat yet: the cron trigger has not run".to_owned()),
        Some(age) if age > thresholds.max_heartbeat_age_ms => {
            reasons.push(format!("no heartbeat for {}s: the cron trigger is not running", age / 1000))
        }
        Some(_) => {}
    }
    let age = |t: Option<i64>| t.map_or(0, |t| (inputs.now_ms - t).max(0));
    let (queue_lag, open_lag) = (age(inputs.oldest_unseen_probe_ms), age(inputs.oldest_open_event_ms));
    let lag = queue_lag.max(open_lag);
    if queue_lag > thresholds.max_lag_ms {
        reasons.push(format!(
            "processing lag {}s is over {}s: the consumer is not taking events from the queue",
            queue_lag / 1000,
            thresholds.max_lag_ms / 1000
        ));
    }
    if open_lag > thresholds.max_lag_ms {
        reasons.push(format!(
            "processing lag {}s is over {}s: the oldest undelivered event was accepted {}s ago",
            open_lag / 1000,
            thresholds.max_lag_ms / 1000,
            open_lag / 1000
        ));
    }
    let growth = inputs.dead_letters.saturating_sub(inputs.dead_letters_before);
    if growth > 0 {
        reasons.push(format!("{growth} new dead letter(s) since the last check"));
    }
    for source in &inputs.open_circuits {
        reasons.push(format!("circuit open: the destination of source {source} is failing; its deliveries wait"));
    }
    for source in inputs.unconfigured.iter().map(|entry| waiting_source(entry)) {
        reasons.push(format!(
            "events of source {source} are waiting: it is not configured (removed or broken since they were \
             accepted); fix SOURCES or its secret and they are delivered"
        ));
    }
    for what in &inputs.unmeasured {
        reasons.push(format!("could not measure {what}: the state is unknown"));
    }
    if inputs.fullest_shard_bytes > thresholds.max_shard_bytes {
        reasons.push(format!(
            "an idempotency shard stores {} bytes, over {} (HEALTH_MAX_SHARD_BYTES): at {} it refuses new \
             events; shorten IDEMPOTENCY_TTL_SECS and CAPTURE_RETENTION_SECS",
            inputs.fullest_shard_bytes,
            thresholds.max_shard_bytes,
            crate::config::limits::SHARD_STORAGE_BYTES
        ));
    }
    let attempts = inputs.attempts_succeeded + inputs.attempts_failed;
    if attempts >= thresholds.min_attempts
        && (inputs.attempts_succeeded as f64) <= thresholds.max_success_share * attempts as f64
    {
        reasons.push(format!("deliveries failing: {} of {attempts} attempts failed", inputs.attempts_failed));
    }
    Report {
        status: if reasons.is_empty() { Status::Ok } else { Status::Degraded },
        reasons,
        heartbeat_age_secs: heartbeat_age.map(|a| a as f64 / 1000.0),
        processing_lag_secs: lag as f64 / 1000.0,
        dead_letters: inputs.dead_letters,
        dead_letter_growth: growth,
        attempts_succeeded: inputs.attempts_succeeded,
        attempts_failed: inputs.attempts_failed,
        open_circuits: inputs.open_circuits.clone(),
        fullest_shard_bytes: inputs.fullest_shard_bytes,
    }
}

/// What has been alerted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertState {
    /// The state last alerted (or assumed at start: ok).
    pub alerted: Status,
    /// Healthy evaluations in a row since the last degraded one.
    pub healthy_streak: u32,
}

impl Default for AlertState {
    fn default() -> Self {
        AlertState { alerted: Status::Ok, healthy_streak: 0 }
    }
}

/// Healthy evaluations in a row before a recovery is announced.
pub const RECOVERY_STREAK: u32 = 2;

/// Which alert to send, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alert {
    Degraded,
    Recovered,
}

/// The next alert state after an evaluation, and the alert it calls for.
pub fn next_alert(state: AlertState, status: Status) -> (AlertState, Option<Alert>) {
    match (state.alerted, status) {
        (Status::Ok, Status::Ok) => (AlertState { healthy_streak: state.healthy_streak + 1, ..state }, None),
        (Status::Ok, Status::Degraded) => {
            (AlertState { alerted: Status::Degraded, healthy_streak: 0 }, Some(Alert::Degraded))
        }
        (Status::Degraded, Status::Degraded) => (AlertState { healthy_streak: 0, ..state }, None),
        (Status::Degraded, Status::Ok) if state.healthy_streak + 1 >= RECOVERY_STREAK => {
            (AlertState { alerted: Status::Ok, healthy_streak: 0 }, Some(Alert::Recovered))
        }
        (Status::Degraded, Status::Ok) => (AlertState { healthy_streak: state.healthy_streak + 1, ..state }, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn healthy() -> Inputs {
        Inputs { now_ms: 1_000_000, last_heartbeat_ms: Some(990_000), ..Inputs::default() }
    }

    #[test]
    fn healthy_when_nothing_is_wrong() {
        let r = evaluate(&healthy(), &Thresholds::default());
        assert_eq!((r.status, r.reasons.len()), (Status::Ok, 0));
        assert_eq!(r.heartbeat_age_secs, Some(10.0));
    }

    #[test]
    fn each_cause_degrades() {
        let t = Thresholds::default();
        let cases = [
            (Inputs { last_heartbeat_ms: None, ..healthy() }, "no heartbeat yet"),
            (Inputs { last_heartbeat_ms: Some(1_000_000 - 181_000), ..healthy() }, "cron trigger is not running"),
            (Inputs { oldest_unseen_probe_ms: Some(1_000_000 - 301_000), ..healthy() }, "not taking events"),
            (Inputs { oldest_open_event_ms: Some(1_000_000 - 302_000), ..healthy() }, "accepted 302s ago"),
            (Inputs { dead_letters: 3, dead_letters_before: 1, ..healthy() }, "2 new dead letter(s)"),
            (Inputs { attempts_failed: 9, attempts_succeeded: 1, ..healthy() }, "deliveries failing: 9 of 10"),
            (
                Inputs { open_circuits: vec!["stripe".into()], ..healthy() },
                "circuit open: the destination of source stripe",
            ),
            (
                Inputs { unmeasured: vec!["the open events".into()], ..healthy() },
                "could not measure the open events: the state is unknown",
            ),
            (
                Inputs { unconfigured: vec!["900000 gone".into()], ..healthy() },
                "events of source gone are waiting: it is not configured",
            ),
            (
                Inputs { fullest_shard_bytes: 8_000_000_001, ..healthy() },
                "an idempotency shard stores 8000000001 bytes, over 8000000000 (HEALTH_MAX_SHARD_BYTES)",
            ),
        ];
        for (inputs, reason) in cases {
            let r = evaluate(&inputs, &t);
            assert_eq!(r.status, Status::Degraded, "{reason}");
            assert!(r.reasons.iter().any(|x| x.contains(reason)), "{:?} lacks {reason}", r.reasons);
        }
        // A probe in flight, a few failures, a shrinking dead-letter count: all fine.
        let fine = Inputs {
            oldest_unseen_probe_ms: Some(1_000_000 - 5_000),
            oldest_open_event_ms: Some(1_000_000 - 200_000),
            attempts_failed: 3,
            dead_letters_before: 4,
            fullest_shard_bytes: 8_000_000_000,
            ..healthy()
        };
        assert_eq!(evaluate(&fine, &t).status, Status::Ok);
        assert_eq!(evaluate(&fine, &t).fullest_shard_bytes, 8_000_000_000, "shown whatever the status");
        let lower = Thresholds { max_shard_bytes: 5_000, ..t };
        assert_eq!(evaluate(&Inputs { fullest_shard_bytes: 5_001, ..healthy() }, &lower).status, Status::Degraded);
        assert_eq!(evaluate(&Inputs { fullest_shard_bytes: 5_000, ..healthy() }, &lower).status, Status::Ok);
    }

    /// A source is named from its first held event until two put-back intervals (and a minute)
    /// after its last, so a state with events still waiting does not turn ok between put-backs.
    #[test]
    fn sources_with_waiting_events_are_remembered_between_put_backs() {
        let named = |w: &[String]| w.iter().map(|e| waiting_source(e).to_owned()).collect::<Vec<_>>();
        let held = |names: &[&str]| names.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let first = waiting_for(&[], &held(&["b", "a", "b"]), 0);
        assert_eq!(first, ["0 b", "0 a"]);
        // A minute later only `a` is held again; `b` is remembered from its last hold.
        let later = waiting_for(&first, &held(&["a"]), 60_000);
        assert_eq!(later, ["60000 a", "0 b"]);
        assert_eq!(named(&waiting_for(&later, &[], UNCONFIGURED_MEMORY_MS)), ["a", "b"]);
        // Forgotten once nothing held it for longer than the memory.
        assert_eq!(named(&waiting_for(&later, &[], UNCONFIGURED_MEMORY_MS + 1)), ["a"]);
        assert!(waiting_for(&later, &[], UNCONFIGURED_MEMORY_MS + 60_001).is_empty());
        // An entry that does not read is dropped, not kept for good.
        assert!(waiting_for(&["x".into(), "1x a".into()], &[], 0).is_empty());
        assert!(UNCONFIGURED_MEMORY_MS > 2 * i64::from(UNCONFIGURED_RETRY_SECS) * 1000);
    }

    #[test]
    fn alerts_on_changes_only_with_a_recovery_streak() {
        let mut state = AlertState::default();
        let mut sent = Vec::new();
        for status in [
            Status::Ok,
            Status::Degraded,
            Status::Degraded,
            Status::Ok,
            Status::Degraded,
            Status::Ok,
            Status::Ok,
            Status::Ok,
        ] {
            let (next, alert) = next_alert(state, status);
            state = next;
            sent.extend(alert);
        }
        assert_eq!(sent, [Alert::Degraded, Alert::Recovered]);
    }
}
