//! The soak: steady signed traffic with duplicates and injected faults, then the fault suite's
//! multiset check. Inside the suite (CI) it runs for 30 seconds; `scripts/soak [MINUTES]` runs
//! it for 10 minutes (or as asked) and prints the figures the README quotes.
//!
//! `SOAK_SECS` (default 30) and `SOAK_RATE` (new events per second, default 30) shape it. On the
//! `chaos` instance (the test build), over every 30-second cycle the destination answers 500,
//! then hangs past the delivery timeout, then answers 429 with `Retry-After`, then recovers; all
//! along, about 10% of events are sent twice at once, 5% again a few seconds later and 3% again
//! after the receiver forgot them (the consumer must catch those), 1% meet an unavailable queue
//! at ingest (503, then the retry), 2% go to a destination that always fails (they must end
//! dead-lettered), one consumer invocation in 300 events is killed mid-batch, and a poison
//! message joins the queue every 500 events.

use crate::harness::{now_secs, signed, stripe_body, unique, vars, Action, Destination, Reply, Worker};
use crate::jepsen::{dead_letters, fates, successes_recorded, unsettled};
use crate::{World, ADMIN_TOKEN, DESTINATION_SECRET, STRIPE_SECRET};
use edgehook_core::config::secret_var;
use edgehook_core::headers::HeaderList;
use edgehook_core::providers::Provider;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Runs alone, after the parallel tests (see `main`).
pub const SOLO: crate::Test = ("soak_steady_traffic_with_faults_loses_nothing", soak);

const SOURCE: &str = "soak";
const DOOMED: &str = "soak-doomed";
/// A consumer invocation is killed at the event with this index modulo it (half-way).
const CRASH_EVERY: usize = 300;
const POISON_EVERY: usize = 500;
/// The destination's failure cycle.
const CYCLE_SECS: u64 = 30;

/// The `chaos` instance's configuration: the crash test's source and the soak's two, and one
/// for the shard-storage health test, with a storage limit for health of one byte (any shard
/// that holds anything is past it; no other test reads this instance's health).
pub fn config(dest: &Destination) -> Vec<(String, String)> {
    let sources = serde_json::json!({
        "crashy": {"provider": "stripe", "destination": dest.url("/crashy")},
        // Capture only: each event is settled by the `begin` that takes it.
        "crashy-kept": {"provider": "stripe", "ordering": false},
        SOURCE: {"provider": "stripe", "destination": dest.url("/soak"), "max_attempts": 8,
                 "retry_base_secs": 1, "retry_max_secs": 4, "delivery_timeout_secs": 2,
                 "breaker_failures": 5, "breaker_cooldown_secs": 1, "breaker_max_cooldown_secs": 4},
        DOOMED: {"provider": "stripe", "destination": dest.url("/soak-doomed"), "max_attempts": 2,
                 "retry_base_secs": 1, "retry_max_secs": 1, "breaker_failures": 0},
        "sized": {"provider": "stripe", "ordering": false},
    });
    let mut config = vars([
        ("SOURCES", sources.to_string()),
        ("DESTINATION_SECRET", DESTINATION_SECRET.into()),
        ("ADMIN_TOKEN", ADMIN_TOKEN.into()),
        ("HEALTH_MAX_SHARD_BYTES", "1".into()),
    ]);
    config.extend(
        ["crashy", "crashy-kept", SOURCE, DOOMED, "sized"].map(|name| (secret_var(name), STRIPE_SECRET.to_owned())),
    );
    config
}

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Deterministic per-event dice in 0..1000, so a run can be repeated.
fn dice(i: usize) -> u64 {
    ((i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) % 1000
}

/// What the senders saw.
#[derive(Default)]
struct Seen {
    acked: BTreeSet<(String, String)>,
    /// Latency of every request answered 200, in microseconds.
    latencies_us: Vec<u64>,
    copies_duplicate: usize,
    copies_accepted: usize,
    unavailable_then_retried: usize,
    crashes: usize,
    poison: usize,
}

fn post(worker: &Worker, source: &str, id: &str) -> (Reply, Duration) {
    let body = stripe_body(id, "invoice.paid");
    let headers = signed(Provider::Stripe, STRIPE_SECRET, "", now_secs(), &body);
    let started = Instant::now();
    let reply = worker.post(&format!("/webhooks/{source}"), &headers, &body);
    (reply, started.elapsed())
}

/// Sends until answered 200, like a provider; returns the final answer's status field.
fn deliver_to_edgehook(worker: &Worker, source: &str, id: &str, seen: &Mutex<Seen>) -> String {
    for _ in 0..20 {
        let (reply, took) = post(worker, source, id);
        match reply.status {
            200 => {
                let mut seen = seen.lock().unwrap();
                seen.latencies_us.push(took.as_micros() as u64);
                seen.acked.insert((source.to_owned(), id.to_owned()));
                return reply.json()["status"].as_str().unwrap_or_default().to_owned();
            }
            503 => std::thread::sleep(Duration::from_millis(200)),
            other => panic!("{source}/{id}: {other} {}", reply.body),
        }
    }
    panic!("{source}/{id} never acknowledged");
}

fn arm(worker: &Worker, path: &str) {
    let reply = worker.post(path, &HeaderList::new(), b"");
    assert_eq!(reply.status, 200, "{path}: {}", reply.body);
}

/// One event of the traffic, with whatever the dice say happens to it.
fn one_event(w: &World, prefix: &str, i: usize, seen: &Mutex<Seen>) {
    let worker = &w.chaos;
    let roll = dice(i);
    let source = if roll < 20 { DOOMED } else { SOURCE };
    let id = format!("{prefix}_{i}");
    if i % POISON_EVERY == POISON_EVERY / 2 {
        arm(worker, "/__faults/poison?kind=garbage");
        seen.lock().unwrap().poison += 1;
    }
    if source == SOURCE && i % CRASH_EVERY == CRASH_EVERY / 2 {
        let at = ["taken", "delivered", "recorded"][(i / CRASH_EVERY) % 3];
        arm(worker, &format!("/__faults/crash?id={id}&at={at}"));
        seen.lock().unwrap().crashes += 1;
    }
    if (20..30).contains(&roll) {
        arm(worker, &format!("/__faults/enqueue?id={id}"));
        let (reply, _) = post(worker, source, &id);
        assert_eq!(reply.status, 503, "the armed enqueue fault answers 503: {}", reply.body);
        seen.lock().unwrap().unavailable_then_retried += 1;
    }
    let first = deliver_to_edgehook(worker, source, &id, seen);
    assert!(first == "accepted" || first == "duplicate", "{id}: {first}");
    let copy = |id: &str| {
        let status = deliver_to_edgehook(worker, source, id, seen);
        let mut seen = seen.lock().unwrap();
        match status.as_str() {
            "duplicate" => seen.copies_duplicate += 1,
            "accepted" => seen.copies_accepted += 1,
            other => panic!("{id}: a copy answered {other}"),
        }
    };
    if (100..200).contains(&roll) {
        copy(&id);
    }
    // A copy the receiver does not know (it reached another isolate, or came weeks later): it is
    // enqueued, and the consumer must drop it.
    if (250..280).contains(&roll) {
        arm(worker, &format!("/__faults/forget?key={source}:{id}"));
        copy(&id);
    }
    // A later copy of an earlier event (about 50 events, a second or two, ago).
    if (200..250).contains(&roll) && i >= 50 && dice(i - 50) >= 30 {
        let earlier = format!("{prefix}_{}", i - 50);
        let known = seen.lock().unwrap().acked.contains(&(SOURCE.to_owned(), earlier.clone()));
        if known {
            copy(&earlier);
        }
    }
}

/// The destination's failure cycle, until `end`.
fn drive_destination(dest: &Destination, started: Instant, end: Instant) {
    let mut phase = usize::MAX;
    while Instant::now() < end {
        let t = started.elapsed().as_secs() % CYCLE_SECS;
        let now = match t {
            0..=17 => 0,
            18..=20 => 1,
            21..=23 => 2,
            24..=26 => 3,
            _ => 4,
        };
        if now != phase {
            phase = now;
            match phase {
                1 => dest.always("/soak", 500),
                2 => {
                    dest.always("/soak", 200);
                    dest.hang("/soak", Some(Duration::from_secs(3)));
                }
                3 => {
                    dest.hang("/soak", None);
                    dest.plan(
                        "/soak",
                        (0..40).map(|_| Action::StatusWithHeader(429, "retry-after", "1".into())).collect(),
                    );
                }
                _ => {
                    // The throttling ends with its phase, however many 429s were used.
                    dest.clear_plan("/soak");
                    dest.always("/soak", 200);
                    dest.hang("/soak", None);
                }
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    dest.clear_plan("/soak");
    dest.always("/soak", 200);
    dest.hang("/soak", None);
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1] as f64 / 1000.0
}

fn soak(w: &World) {
    let secs = setting("SOAK_SECS", 30);
    let rate = setting("SOAK_RATE", 30).max(1);
    let prefix = unique("soak");
    w.dest.always("/soak-doomed", 500);
    let seen: Mutex<Seen> = Mutex::default();
    let next = AtomicUsize::new(0);
    let started = Instant::now();
    let end = started + Duration::from_secs(secs);
    std::thread::scope(|scope| {
        scope.spawn(|| drive_destination(&w.dest, started, end));
        // Enough senders that a slow answer never holds the pace back.
        for _ in 0..16 {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let at = started + Duration::from_micros(i as u64 * 1_000_000 / rate);
                if at >= end {
                    return;
                }
                std::thread::sleep(at.saturating_duration_since(Instant::now()));
                one_event(w, &prefix, i, &seen);
            });
        }
    });
    let sent_for = started.elapsed();
    let seen = seen.into_inner().unwrap();
    let acked = &seen.acked;

    // Drain: every acknowledged event delivered (or held past the timeout) or dead-lettered.
    let check = || {
        let mut received = w.dest.received("/soak", |_| true);
        received.extend(w.dest.received("/soak-doomed", |_| true));
        let dead: BTreeMap<String, BTreeSet<String>> =
            [SOURCE, DOOMED].iter().map(|s| (s.to_string(), dead_letters(&w.chaos, s))).collect();
        fates(&received, acked, &dead)
    };
    let drain_deadline = Instant::now() + Duration::from_secs(300 + secs / 2);
    let mut fates = check();
    let mut reported = Instant::now();
    while !fates.values().all(|f| f.delivered > 0 || f.hung > 0 || f.dead) {
        let waiting: Vec<_> = fates.iter().filter(|(_, f)| f.delivered == 0 && f.hung == 0 && !f.dead).collect();
        assert!(
            Instant::now() < drain_deadline,
            "{} acknowledged events neither delivered nor dead-lettered",
            waiting.len()
        );
        if reported.elapsed() > Duration::from_secs(15) {
            reported = Instant::now();
            let ((source, id), _) = waiting[0];
            let event = w.chaos.admin_json(&format!("/admin/events/{source}/{id}"));
            let (status, attempts) = (&event["status"], &event["attempt_count"]);
            eprintln!("soak: draining, {} to go; {source}/{id} is {status} after {attempts} attempts", waiting.len());
        }
        std::thread::sleep(Duration::from_secs(1));
        fates = check();
    }
    let drained_in = started.elapsed() - sent_for;
    // Events cut off by a crash after their delivery come back once more after the queue's
    // retry delay: the count is final when no event waits to be taken up again.
    while unsettled(&w.chaos, SOURCE) + unsettled(&w.chaos, DOOMED) > 0 {
        assert!(Instant::now() < drain_deadline, "events still unsettled");
        std::thread::sleep(Duration::from_secs(1));
    }
    let fates = check();

    let lost: Vec<_> = fates.iter().filter(|(_, f)| f.delivered == 0 && f.hung == 0 && !f.dead).collect();
    let dead = fates.values().filter(|f| f.dead).count();
    let delivered = fates.values().filter(|f| f.delivered > 0).count();
    let doomed_alive: Vec<_> = fates.iter().filter(|((s, _), f)| s == DOOMED && !f.dead).collect();
    let dead_elsewhere = fates.iter().filter(|((s, _), f)| s == SOURCE && f.dead).count();
    let more_than_once: Vec<_> = fates.iter().filter(|(_, f)| f.delivered + f.hung > 1).collect();
    let without_cause: Vec<_> =
        more_than_once.iter().filter(|((source, id), _)| successes_recorded(&w.chaos, source, id) > 1).collect();
    let mut latencies = seen.latencies_us;
    latencies.sort_unstable();
    println!(
        "soak: {:.0}s at {rate} new events/s: {} requests answered 200, {} events accepted ({} copies answered \
         duplicate, {} copies accepted and caught by the consumer, {} retried after a 503 at ingest), \
         {delivered} delivered, {dead} dead-lettered ({dead_elsewhere} of them not sent to the failing \
         destination), {} lost, {} delivered again after an outcome lost in \
         flight, {} duplicated without cause; {} consumer crashes, {} poison messages; ingest p50 {:.1} ms, \
         p99 {:.1} ms, max {:.1} ms; drained {:.0}s after the traffic stopped",
        sent_for.as_secs_f64(),
        latencies.len(),
        fates.len(),
        seen.copies_duplicate,
        seen.copies_accepted,
        seen.unavailable_then_retried,
        lost.len(),
        more_than_once.len() - without_cause.len(),
        without_cause.len(),
        seen.crashes,
        seen.poison,
        percentile(&latencies, 50.0),
        percentile(&latencies, 99.0),
        percentile(&latencies, 100.0),
        drained_in.as_secs_f64()
    );
    assert!(lost.is_empty(), "lost: {lost:?}");
    assert!(without_cause.is_empty(), "delivered twice without cause: {without_cause:?}");
    assert!(doomed_alive.is_empty(), "events to an always-failing destination not dead-lettered: {doomed_alive:?}");
    assert!(dead > 0 && delivered > 0, "the soak exercised both ends");
}
