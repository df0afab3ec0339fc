//! The cron trigger (every minute): heartbeat and health, alerts, retention, resumption.
//!
//! Each run:
//! 1. measures what health needs: the oldest open event and the fullest storage (all shards),
//!    the stored dead letters;
//! 2. records the heartbeat in the control object, which evaluates health and says whether the
//!    state changed enough to alert (one alert on degrading, one on recovering);
//! 3. puts a probe on the event queue: the consumer reports it, and a probe nobody reports is
//!    processing lag even when no record changes (a consumer that stopped taking messages);
//! 4. deletes captured bodies past retention (never those of events still held or still being
//!    delivered, so not at all in a run that could not read which those are);
//! 5. resumes held events whose kill switch is no longer `paused` (the admin API resumes them
//!    at once; this catches resumptions that were lost).
//!
//! Every step is independent: one failing is logged and the others still run.

use crate::alerts;
use crate::blobs;
use crate::consumer::PROBE_SOURCE;
use crate::control::{AlertKind, Control, Measured};
use crate::dead_letters;
use crate::env::{self, bindings};
use crate::gate::Gates;
use crate::http::to_json;
use crate::idempotency::Idempotency;
use crate::queue;
use crate::replay;
use edgehook_core::capture::retention_cutoff;
use edgehook_core::config::Config;
use edgehook_core::envelope::{self, BodyRef, EventMeta};
use worker::{console_error, console_log, Env, Result};

/// Dead letters are counted a page at a time, up to this many pages (100,000 letters).
const MAX_COUNT_PAGES: usize = 100;

pub async fn tick(env: &Env) {
    let config = env::config(env);
    let (store, control) = match (Idempotency::new(env), Control::new(env)) {
        (Ok(store), Ok(control)) => (store, control),
        (Err(e), _) | (_, Err(e)) => return console_error!("cron: bindings unavailable: {e}"),
    };
    // What cannot be read is named in `unmeasured`, which keeps health degraded: a broken
    // shard or bucket must not read as "nothing open, no dead letters".
    let mut unmeasured = Vec::new();
    // Unknown when a shard cannot be read: this run then neither sweeps (it cannot tell which
    // bodies held events still need) nor resumes.
    let known = match oldest_events(&store).await {
        Ok(oldest) => Some(oldest),
        Err(e) => {
            console_error!("cron: could not read the oldest open and held events: {e}");
            unmeasured.push("the open events (an idempotency shard could not be read)".to_owned());
            None
        }
    };
    let oldest = known.unwrap_or_default();
    let dead_letters = match count_dead_letters(env).await {
        Ok(n) => Some(n),
        Err(e) => {
            console_error!("cron: could not count dead letters: {e}");
            unmeasured.push("the dead letters (the bucket could not be listed)".to_owned());
            None
        }
    };
    let open_circuits = open_circuits(env, &config, &mut unmeasured).await;
    let probe_id = env::random_id();
    let measured = Measured {
        probe_id: probe_id.clone(),
        dead_letters,
        oldest_open_ms: oldest.open,
        open_circuits,
        unmeasured,
        fullest_shard_bytes: oldest.stored_bytes,
    };
    match control.heartbeat(measured, &config.settings).await {
        Ok(beat) => {
            if let Some(kind) = beat.alert {
                let text = match kind {
                    AlertKind::Degraded => format!("edgehook is degraded: {}", beat.report.reasons.join("; ")),
                    AlertKind::Recovered => "edgehook has recovered: healthy again".to_owned(),
                };
                console_log!("{text}");
                let alert = alerts::alert(vec![
                    ("health", to_json(&kind)),
                    ("report", to_json(&beat.report)),
                    ("text", to_json(&text)),
                ]);
                alerts::send(config.settings.alert_url.as_deref(), alert).await;
            }
        }
        Err(e) => console_error!("cron: heartbeat failed: {e}"),
    }
    if let Err(e) = send_probe(env, &probe_id).await {
        console_error!("cron: could not enqueue the heartbeat probe: {e}");
    }
    let retention_ms = (config.settings.capture_retention_secs as i64).saturating_mul(1000);
    if known.is_some() {
        let needed = [oldest.open, oldest.held].into_iter().flatten().min();
        if let Err(e) = blobs::sweep(env, retention_cutoff(env::now_ms(), retention_ms, needed)).await {
            console_error!("cron: retention sweep failed: {e}");
        }
    }
    if oldest.held.is_some() {
        let resumed = match control.flags().await {
            Ok(flags) => replay::resume_held(env, &store, &flags, None).await,
            Err(e) => Err(e),
        };
        match resumed {
            Ok(0) => {}
            Ok(n) => console_log!("cron: resumed {n} held event(s)"),
            Err(e) => console_error!("cron: resuming held events failed: {e}"),
        }
    }
}

/// The oldest open and held events, from every shard. Test builds: fails once when a test
/// armed `POST /__faults/measure?what=shard`.
async fn oldest_events(store: &Idempotency) -> Result<crate::idempotency::Oldest> {
    #[cfg(feature = "faults")]
    if crate::faults::fails(crate::faults::Fault::Measure, "shard") {
        return Err(worker::Error::RustError("injected fault: a shard cannot be read".into()));
    }
    store.oldest().await
}

/// Sources whose destination's circuit breaker is open. A gate that cannot be read is logged
/// and named in `unmeasured`.
async fn open_circuits(env: &Env, config: &Config, unmeasured: &mut Vec<String>) -> Vec<String> {
    let gates = match Gates::new(env) {
        Ok(gates) => gates,
        Err(e) => {
            console_error!("cron: gates unavailable: {e}");
            unmeasured.push("the circuits (the gates are unavailable)".to_owned());
            return Vec::new();
        }
    };
    let gates = &gates;
    let checks = config.sources().filter_map(|source| {
        let (name, url) = (source.name.as_str(), source.destination.clone()?);
        Some(async move {
            match gates.state(&url).await {
                Ok(state) => Ok(state.is_open().then_some(name.to_owned())),
                Err(e) => {
                    console_error!("cron: could not read the gate of {name}: {e}");
                    Err(format!("the circuit of source {name}"))
                }
            }
        })
    });
    let mut open = Vec::new();
    for check in futures_util::future::join_all(checks).await {
        match check {
            Ok(name) => open.extend(name),
            Err(what) => unmeasured.push(what),
        }
    }
    open
}

async fn send_probe(env: &Env, probe_id: &str) -> Result<()> {
    #[cfg(feature = "faults")]
    if crate::faults::fails(crate::faults::Fault::Probe, "") {
        return Err(worker::Error::RustError("the probe was lost (test fault)".into()));
    }
    let probe = EventMeta::first_attempt(PROBE_SOURCE, probe_id, env::now_ms(), BodyRef::Inline);
    queue::send(&env.queue(bindings::EVENTS)?, &envelope::encode(&probe, &[]), 0).await
}

/// Stored dead letters (poison included: each one is something nobody has dealt with).
async fn count_dead_letters(env: &Env) -> Result<u64> {
    #[cfg(feature = "faults")]
    if crate::faults::fails(crate::faults::Fault::Measure, "dead-letters") {
        return Err(worker::Error::RustError("injected fault: the bucket cannot be listed".into()));
    }
    let mut count = 0;
    let mut cursor = None;
    for _ in 0..MAX_COUNT_PAGES {
        let listed = blobs::list(env, dead_letters::PREFIX, 1000, cursor.as_deref(), false).await?;
        count += listed.objects.len() as u64;
        cursor = listed.cursor;
        if cursor.is_none() {
            break;
        }
    }
    Ok(count)
}
