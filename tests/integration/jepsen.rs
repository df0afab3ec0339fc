//! The fault suite: what goes in must come out (after Jepsen's queue checker). Every event
//! edgehook answered 200 for is recorded; faults are driven while events arrive; then, once
//! everything has drained, the multiset is checked: each acknowledged event was delivered or
//! dead-lettered, never lost, and delivered more than once only when a delivery's outcome was
//! lost in flight (the destination answered after the worker had given up on it).
//!
//! Faults, on the `faults` instance (the test build): a destination answering 500, hanging past
//! the delivery timeout, answering 429 with `Retry-After`, and then recovering; a second
//! destination refusing connections until a server starts on its port; the queue unavailable at
//! ingest for some events (503, then the provider's retry); poison messages mixed into the
//! batches; storms of concurrent duplicates; replays of captured events.

use crate::harness::{now_secs, signed, stripe_body, unique, wait_until, Action, Destination, Received, Worker};
use crate::{World, STRIPE_SECRET};
use edgehook_core::headers::HeaderList;
use edgehook_core::providers::Provider;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const TESTS: &[crate::Test] = &[
    ("what_goes_in_comes_out_under_faults", what_goes_in_comes_out),
    ("a_restart_keeps_records_captures_flags_held_events_and_open_circuits", a_restart_keeps_what_is_stored),
    ("a_consumer_crash_mid_batch_loses_nothing", a_consumer_crash_mid_batch_loses_nothing),
];

/// Events per source, sent over the fault phases.
const EVENTS: usize = 120;
const STORMS: usize = 8;
const STORM_COPIES: usize = 12;

pub fn send(worker: &Worker, source: &str, id: &str) -> u16 {
    let body = stripe_body(id, "invoice.paid");
    let reply = worker.post(
        &format!("/webhooks/{source}"),
        &signed(Provider::Stripe, STRIPE_SECRET, "", now_secs(), &body),
        &body,
    );
    assert!(reply.status == 200 || reply.status == 503, "{id}: {} {}", reply.status, reply.body);
    reply.status
}

/// Sends like a provider: until it is answered 200 (a 503 is retried after a moment).
pub fn send_until_acknowledged(
    worker: &Worker,
    source: &str,
    id: &str,
    acked: &Mutex<BTreeSet<(String, String)>>,
) -> u32 {
    let mut tries = 0;
    loop {
        tries += 1;
        if send(worker, source, id) == 200 {
            acked.lock().unwrap().insert((source.to_owned(), id.to_owned()));
            return tries;
        }
        assert!(tries < 20, "{source}/{id} never acknowledged");
        std::thread::sleep(Duration::from_millis(200));
    }
}

pub fn dead_letters(worker: &Worker, source: &str) -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/admin/dead-letters?source={source}&cursor={c}"),
            None => format!("/admin/dead-letters?source={source}"),
        };
        let page = worker.admin_json(&path);
        for letter in page["dead_letters"].as_array().unwrap() {
            ids.insert(letter["id"].as_str().unwrap().to_owned());
        }
        match page["cursor"].as_str() {
            Some(c) if !c.is_empty() => cursor = Some(c.to_owned()),
            _ => return ids,
        }
    }
}

/// What the multiset check found for one event.
#[derive(Debug, Default, Clone, Copy)]
pub struct Fate {
    /// Deliveries the destination answered 2xx at once.
    pub delivered: usize,
    /// Deliveries it held past the worker's timeout (their outcome was lost in flight).
    pub hung: usize,
    /// Deliveries it answered with an error (500, 429) or that never connected.
    pub failed: usize,
    pub dead: bool,
}

pub fn fates(
    received: &[Received],
    acked: &BTreeSet<(String, String)>,
    dead: &BTreeMap<String, BTreeSet<String>>,
) -> BTreeMap<(String, String), Fate> {
    let mut fates: BTreeMap<(String, String), Fate> = acked.iter().map(|k| (k.clone(), Fate::default())).collect();
    for r in received {
        let (Some(source), Some(id)) = (r.header("x-edgehook-source"), r.header("webhook-id")) else { continue };
        let Some(fate) = fates.get_mut(&(source, id)) else { continue };
        match r.answer {
            Some(code) if (200..300).contains(&code) => fate.delivered += 1,
            Some(_) => fate.failed += 1,
            None => fate.hung += 1,
        }
    }
    for ((source, id), fate) in fates.iter_mut() {
        fate.dead = dead.get(source).is_some_and(|ids| ids.contains(id));
    }
    fates
}

fn what_goes_in_comes_out(w: &World) {
    let started = Instant::now();
    let acked: Mutex<BTreeSet<(String, String)>> = Mutex::default();
    let prefix = unique("jepsen");
    // Phase 1: the destination answers 500; phase 2 it hangs past the 2-second timeout; phase 3
    // it answers 429 with Retry-After; phase 4 it has recovered.
    w.dest.always("/jepsen", 500);
    let mut retried_at_ingest = 0;
    std::thread::scope(|scope| {
        let acked = &acked;
        let prefix = &prefix;
        // Two providers' worth of traffic, paced over the phases.
        for (source, tag) in [("jepsen", "j"), ("jepsen-refused", "r")] {
            scope.spawn(move || {
                for i in 0..EVENTS {
                    send_until_acknowledged(&w.faults, source, &format!("{prefix}_{tag}{i}"), acked);
                    std::thread::sleep(Duration::from_millis(50));
                }
            });
        }
        // Storms of concurrent duplicates: each id sent many times at once.
        for storm in 0..STORMS {
            let id = format!("{prefix}_storm{storm}");
            for _ in 0..STORM_COPIES {
                let id = id.clone();
                scope.spawn(move || send_until_acknowledged(&w.faults, "jepsen", &id, acked));
            }
        }
        // The queue unavailable at ingest for some events: 503, then the retry goes through.
        let flaky: Vec<String> = (0..5).map(|i| format!("{prefix}_flaky{i}")).collect();
        for id in &flaky {
            let armed = w.faults.post(&format!("/__faults/enqueue?id={id}"), &HeaderList::new(), b"");
            assert_eq!(armed.status, 200);
            assert_eq!(send(&w.faults, "jepsen", id), 503, "the armed enqueue fault answers 503");
            retried_at_ingest += 1;
            send_until_acknowledged(&w.faults, "jepsen", id, acked);
        }
        // Poison messages mixed into the batches.
        for _ in 0..3 {
            let poison = w.faults.post("/__faults/poison?kind=garbage", &HeaderList::new(), b"");
            assert_eq!(poison.status, 200);
        }
        // Then the destination's other failures, and its recovery.
        std::thread::sleep(Duration::from_secs(2));
        w.dest.always("/jepsen", 200);
        w.dest.hang("/jepsen", Some(Duration::from_secs(4)));
        std::thread::sleep(Duration::from_secs(3));
        w.dest.hang("/jepsen", None);
        let throttled = (0..40).map(|_| Action::StatusWithHeader(429, "retry-after", "1".into())).collect();
        w.dest.plan("/jepsen", throttled);
    });
    // The refused destination starts listening.
    let refused = Destination::start_on(w.refused_port);

    // Drain: every acknowledged event delivered or dead-lettered.
    let acked = acked.into_inner().unwrap();
    let check = || {
        let mut received = w.dest.received("/jepsen", |_| true);
        received.extend(refused.received("/refused", |_| true));
        let dead: BTreeMap<String, BTreeSet<String>> =
            ["jepsen", "jepsen-refused"].iter().map(|s| (s.to_string(), dead_letters(&w.faults, s))).collect();
        fates(&received, &acked, &dead)
    };
    wait_until(Duration::from_secs(180), "every acknowledged event to be delivered or dead-lettered", || {
        check().values().all(|f| f.delivered > 0 || f.hung > 0 || f.dead)
    });
    // Anything still in flight settles.
    std::thread::sleep(Duration::from_secs(5));
    let fates = check();

    // Replays of captured events: each one is delivered once more, and only once.
    let replayed: Vec<(String, String)> = fates.keys().take(5).cloned().collect();
    for (source, id) in &replayed {
        let reply = w.faults.admin("POST", &format!("/admin/events/{source}/{id}/replay"), b"");
        assert_eq!(reply.status, 202, "{}", reply.body);
    }
    for (source, id) in &replayed {
        let path = if source == "jepsen" { "/jepsen" } else { "/refused" };
        let server = if source == "jepsen" { &w.dest } else { &refused };
        let before = fates[&(source.clone(), id.clone())].delivered;
        server.wait_for(path, before + 1, Duration::from_secs(60), |r| {
            r.header("webhook-id").as_deref() == Some(id.as_str()) && r.answer == Some(200)
        });
    }

    let lost: Vec<_> = fates.iter().filter(|(_, f)| f.delivered == 0 && f.hung == 0 && !f.dead).collect();
    // An event the destination took more than once: edgehook's own record of its attempts says
    // whether it knowingly delivered twice (a duplicate without cause), or gave up on an attempt
    // that reached the destination anyway, late (its outcome lost in flight).
    let successes_recorded = |(source, id): &(String, String)| successes_recorded(&w.faults, source, id);
    let more_than_once: Vec<_> = fates.iter().filter(|(_, f)| f.delivered + f.hung > 1).collect();
    let twice_without_cause: Vec<_> = more_than_once.iter().filter(|(key, _)| successes_recorded(key) > 1).collect();
    let twice_with_cause = more_than_once.len() - twice_without_cause.len();
    let recovered = fates.values().filter(|f| (f.failed > 0 || f.hung > 0) && f.delivered == 1).count();
    let dead = fates.values().filter(|f| f.dead).count();
    let delivered = fates.values().filter(|f| f.delivered > 0).count();
    println!(
        "fault suite: {} acknowledged ({} after a 503 at ingest, {STORMS} storms of {STORM_COPIES} copies), \
         {delivered} delivered, {dead} dead-lettered, {} lost, {} delivered twice without cause, \
         {twice_with_cause} delivered again after an outcome lost in flight, {recovered} recovered after failures, \
         in {:.0}s",
        fates.len(),
        retried_at_ingest,
        lost.len(),
        twice_without_cause.len(),
        started.elapsed().as_secs_f64()
    );
    assert_eq!(fates.len(), 2 * EVENTS + STORMS + 5, "every event was acknowledged");
    assert!(lost.is_empty(), "lost: {lost:?}");
    if !twice_without_cause.is_empty() {
        // Every request the destinations saw for those events, for the diagnosis.
        for ((source, id), _) in &twice_without_cause {
            let mut seen = w.dest.received("/jepsen", |r| r.header("webhook-id").as_deref() == Some(id.as_str()));
            seen.extend(refused.received("/refused", |r| r.header("webhook-id").as_deref() == Some(id.as_str())));
            for r in seen {
                println!(
                    "  {source}/{id}: attempt {} answered {:?} at +{:.2}s (webhook-timestamp {:?})",
                    r.attempt(),
                    r.answer,
                    (r.at - started).as_secs_f64(),
                    r.header("webhook-timestamp")
                );
            }
        }
    }
    assert!(twice_without_cause.is_empty(), "delivered twice without cause: {twice_without_cause:?}");
    assert!(recovered > 0, "the faults were felt");
    // The poison did not stop anything, and is kept as dead letters of its own.
    let letters = w.faults.admin_json("/admin/dead-letters");
    let poison = letters["dead_letters"].as_array().unwrap().iter().filter(|d| d["source"] == "_poison").count();
    assert!(poison >= 3, "{letters}");
}

/// Whether any event of `source` is still to be delivered (accepted but not finished, or
/// waiting for a retry): 0 or 1.
pub fn unsettled(worker: &Worker, source: &str) -> usize {
    ["accepted", "retrying"]
        .iter()
        .map(|status| {
            let page = worker.admin_json(&format!("/admin/events?source={source}&status={status}&limit=1"));
            page["events"].as_array().map_or(0, Vec::len)
        })
        .sum()
}

/// How many successful deliveries (replays aside) edgehook's record of an event holds: more than
/// one is a duplicate it made knowingly, without cause.
pub fn successes_recorded(worker: &Worker, source: &str, id: &str) -> usize {
    let event = worker.admin_json(&format!("/admin/events/{source}/{id}"));
    event["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["replay"] != true && a["status"].as_u64().is_some_and(|s| (200..300).contains(&s)))
        .count()
}

/// The consumer killed mid-batch (`/__faults/crash`, test build only): the invocation that
/// handles an armed event stops there, with every other message of its batch cut off wherever
/// it was, and the queue delivers the unsettled messages again. Nothing is lost; the only second
/// deliveries are of events whose outcome died with the invocation (the destination had answered,
/// the record did not say so yet).
fn a_consumer_crash_mid_batch_loses_nothing(w: &World) {
    let started = Instant::now();
    // One round per crash point, one after the other: a round's crash must be the only one its
    // events meet, or a second crash could cut off the first one's event after its delivery.
    // (point, the name the worker logs for it, deliveries the crashing event then gets)
    let rounds = [("taken", "CrashTaken", 1), ("delivered", "CrashDelivered", 2), ("recorded", "CrashRecorded", 1)];
    let (mut acknowledged, mut delivered, mut again, mut without_cause) = (0, 0, 0, Vec::new());
    for (at, name, expected) in rounds {
        let (ids, acked) = crash_a_batch(w, "crashy", at);
        let crashing = &ids[4];
        acknowledged += acked;
        let deliveries = |id: &str| w.dest.deliveries("/crashy", id).len();
        // The failed invocation's messages come back after the queue's retry delay (30 s); the
        // round is over when no event waits to be taken up again.
        wait_until(Duration::from_secs(120), "every event to be delivered after the crash", || {
            ids.iter().all(|id| deliveries(id) > 0) && unsettled(&w.chaos, "crashy") == 0
        });
        // The log reaches its file through wrangler a moment after the crash: at "recorded",
        // the round can look finished before it is written.
        let logged = format!("the consumer dies at {name} of {crashing}");
        wait_until(Duration::from_secs(10), &format!("the crash at {at} to be logged"), || {
            w.chaos.logs().contains(&logged)
        });
        // Died before delivering, or after recording the delivery: delivered once. Died between
        // the destination's 2xx and the record: that outcome was lost, so the event went out
        // again, and edgehook's record holds the one success it knows of.
        assert_eq!(deliveries(crashing), expected, "crash at {at}");
        assert_eq!(successes_recorded(&w.chaos, "crashy", crashing), 1, "crash at {at}");
        // The batch-mates, cut off wherever they were: again only where an outcome was lost.
        for id in &ids {
            match deliveries(id) {
                0 => {}
                1 => delivered += 1,
                _ => {
                    delivered += 1;
                    again += 1;
                    if successes_recorded(&w.chaos, "crashy", id) > 1 {
                        without_cause.push(id.clone());
                    }
                }
            }
        }
    }
    // A source with nowhere to deliver settles each event in the `begin` that takes it: the
    // consumer dying right after leaves the event settled, and the queue's redelivery of the
    // batch finds it so (a crash at "taken" is the only point this path has).
    let (ids, acked) = crash_a_batch(w, "crashy-kept", "taken");
    let crashing = &ids[4];
    acknowledged += acked;
    let status = |id: &str| {
        let reply = w.chaos.admin("GET", &format!("/admin/events/crashy-kept/{id}"), b"");
        if reply.status == 200 {
            reply.json()["status"].as_str().unwrap_or_default().to_owned()
        } else {
            String::new()
        }
    };
    wait_until(Duration::from_secs(120), "every captured event settled after the crash", || {
        ids.iter().all(|id| status(id) == "delivered") && unsettled(&w.chaos, "crashy-kept") == 0
    });
    let logged = format!("the consumer dies at CrashTaken of {crashing}");
    wait_until(Duration::from_secs(10), "the crash of a capture-only batch to be logged", || {
        w.chaos.logs().contains(&logged)
    });
    delivered += ids.len();
    println!(
        "consumer crashes: {acknowledged} acknowledged, 4 invocations killed mid-batch, {delivered} delivered or \
         captured, 0 lost, {again} delivered again after an outcome lost in flight, {} twice without cause, in {:.0}s",
        without_cause.len(),
        started.elapsed().as_secs_f64()
    );
    assert_eq!(delivered, acknowledged, "every acknowledged event delivered");
    assert!(without_cause.is_empty(), "delivered twice without cause: {without_cause:?}");
}

/// Ten events for `source` sent at once, so that they share a batch, with the consumer armed to
/// die at `at` of the fifth (`ids[4]`); their ids and how many were acknowledged.
fn crash_a_batch(w: &World, source: &str, at: &str) -> (Vec<String>, usize) {
    let prefix = unique(source);
    let ids: Vec<String> = (0..10).map(|i| format!("{prefix}_{i}")).collect();
    let reply = w.chaos.post(&format!("/__faults/crash?id={}&at={at}", ids[4]), &HeaderList::new(), b"");
    assert_eq!(reply.status, 200, "{}", reply.body);
    let acked: Mutex<BTreeSet<(String, String)>> = Mutex::default();
    std::thread::scope(|scope| {
        for id in &ids {
            let acked = &acked;
            scope.spawn(move || send_until_acknowledged(&w.chaos, source, id, acked));
        }
    });
    let acked = acked.lock().unwrap().len();
    (ids, acked)
}

/// `wrangler dev` stopped and started again with the same `--persist-to` folder. Locally, what
/// is in Durable Objects and R2 survives; the queue's backlog and pending alarms do not
/// (PLATFORM.md; production queues are durable). What edgehook keeps across it: idempotency
/// (a delivered event sent again is not delivered again), captures, kill switches, events
/// held by a paused switch, which are delivered once it is lifted, and open circuits.
fn a_restart_keeps_what_is_stored(w: &World) {
    use crate::harness::{ConfigForm, Worker};
    let sources = serde_json::json!({
        "kept": {"provider": "stripe", "destination": w.dest.url("/restart")},
        // One failure opens the circuit for an hour.
        "tripped": {"provider": "stripe", "destination": w.dest.url("/restart-down"), "max_attempts": 1,
                    "breaker_failures": 1, "breaker_cooldown_secs": 3600},
    });
    w.dest.always("/restart-down", 503);
    let vars = crate::harness::vars([
        ("SOURCES", sources.to_string()),
        ("WEBHOOK_SECRET_KEPT", STRIPE_SECRET.into()),
        ("WEBHOOK_SECRET_TRIPPED", STRIPE_SECRET.into()),
        ("DESTINATION_SECRET", crate::DESTINATION_SECRET.into()),
        ("ADMIN_TOKEN", crate::ADMIN_TOKEN.into()),
    ]);
    let mut worker = Worker::start("restart", "build", ConfigForm { dev_vars: vars, ..Default::default() });
    worker.wait_ready(Duration::from_secs(180));
    let post_to = |worker: &Worker, source: &str, id: &str, event_type: &str| {
        let body = stripe_body(id, event_type);
        let headers = signed(Provider::Stripe, STRIPE_SECRET, "", now_secs(), &body);
        worker.post(&format!("/webhooks/{source}"), &headers, &body)
    };
    let post = |worker: &Worker, id: &str, event_type: &str| post_to(worker, "kept", id, event_type);
    let open_circuits = |worker: &Worker| {
        worker.scheduled();
        worker.admin_json("/admin/health")["open_circuits"].clone()
    };
    assert_eq!(post_to(&worker, "tripped", &unique("evt"), "invoice.paid").status, 200);
    wait_until(Duration::from_secs(60), "the circuit to open", || {
        open_circuits(&worker) == serde_json::json!(["tripped"])
    });
    let delivered = unique("evt");
    assert_eq!(post(&worker, &delivered, "invoice.paid").status, 200);
    w.dest.wait_deliveries("/restart", &delivered, 1, Duration::from_secs(60));
    let paused = worker.admin("PUT", "/admin/flags/kept/invoice.held", br#"{"mode":"paused"}"#);
    assert_eq!(paused.status, 200, "{}", paused.body);
    let held = unique("evt");
    assert_eq!(post(&worker, &held, "invoice.held").status, 200);
    let status = |worker: &Worker, id: &str| worker.admin_json(&format!("/admin/events/kept/{id}"))["status"].clone();
    wait_until(Duration::from_secs(60), "the event to be held", || {
        worker.admin("GET", &format!("/admin/events/kept/{held}"), b"").status == 200
            && status(&worker, &held) == "paused"
    });

    worker.restart(Duration::from_secs(180));

    // The receiver's memory of recent ids is gone, so it accepts the copy; the consumer's record
    // is not, so it is not delivered again.
    assert_eq!(post(&worker, &delivered, "invoice.paid").status, 200);
    assert_eq!(status(&worker, &delivered), "delivered", "the capture survived");
    let flags = worker.admin_json("/admin/flags");
    assert!(flags.to_string().contains("paused"), "the kill switch survived: {flags}");
    assert_eq!(status(&worker, &held), "paused", "the held event survived");
    assert_eq!(open_circuits(&worker), serde_json::json!(["tripped"]), "the open circuit survived");
    let resumed = worker.admin("PUT", "/admin/flags/kept/invoice.held", br#"{"mode":"on"}"#);
    assert_eq!(resumed.status, 200, "{}", resumed.body);
    w.dest.wait_deliveries("/restart", &held, 1, Duration::from_secs(60));
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(w.dest.deliveries("/restart", &delivered).len(), 1, "delivered once, across the restart");
}
