//! Issue 5 through the running worker: large payloads, out-of-order events, downstream
//! protection (rate limits and circuit breakers), and a burst of thousands of events.

use crate::harness::{now_secs, signed, unique, wait_until};
use crate::{World, GITHUB_SECRET};
use edgehook_core::headers::HeaderList;
use edgehook_core::providers::Provider;
use std::time::{Duration, Instant};

/// Alone: after a 25 MB body, `wrangler dev` restarts the main instance's worker (seen in most
/// runs: requests in flight on it at that moment are answered 503 "Your worker restarted
/// mid-request"), and a consumer invocation it cuts short delays other tests' events past their
/// waits.
pub const SOLO: crate::Test = ("a_25_mb_body_round_trips_byte_identical", a_25_mb_body_round_trips);

pub const TESTS: &[crate::Test] = &[
    ("older_events_of_an_entity_are_stale", older_events_of_an_entity_are_stale),
    ("stale_events_can_be_delivered_marked", stale_events_can_be_delivered_marked),
    (
        "a_destination_down_for_a_while_loses_and_dead_letters_nothing",
        a_destination_down_for_a_while_loses_and_dead_letters_nothing,
    ),
];

fn a_25_mb_body_round_trips(w: &World) {
    // GitHub's largest payload: 25 MB. Varied bytes, so nothing compresses it away on the way.
    let id = unique("delivery");
    let mut body = Vec::with_capacity(25 * 1024 * 1024);
    body.extend_from_slice(br#"{"action":"opened","padding":""#);
    let mut x: u32 = 2_463_534_242;
    while body.len() < 25 * 1024 * 1024 - 2 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        body.push(b'a' + (x % 26) as u8);
    }
    body.extend_from_slice(br#""}"#);
    let headers: HeaderList = signed(Provider::Github, GITHUB_SECRET, &id, now_secs(), &body);
    let started = Instant::now();
    let reply = w.main.post("/webhooks/huge", &headers, &body);
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["status"], "accepted");
    let accepted = started.elapsed();
    let got = w.dest.wait_deliveries("/huge", &id, 1, Duration::from_secs(120));
    eprintln!("25 MB body: accepted in {accepted:?}, delivered after {:?}", started.elapsed());
    assert_eq!(got[0].body.len(), body.len());
    assert!(got[0].body == body, "the 25 MB body came back different");
}

const WAIT: Duration = Duration::from_secs(90);

/// A Stripe event about invoice `entity`, created at `created` (Unix seconds).
fn versioned(id: &str, entity: &str, created: i64) -> Vec<u8> {
    format!(r#"{{"id":"{id}","object":"event","type":"invoice.updated","created":{created},"data":{{"object":{{"id":"{entity}"}}}}}}"#)
        .into_bytes()
}

fn send(w: &World, source: &str, body: &[u8]) {
    let reply = w.main.post(
        &format!("/webhooks/{source}"),
        &signed(Provider::Stripe, crate::STRIPE_SECRET, "", now_secs(), body),
        body,
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
}

fn status(w: &World, source: &str, id: &str) -> String {
    let reply = w.main.admin("GET", &format!("/admin/events/{source}/{id}"), b"");
    if reply.status != 200 {
        return String::new();
    }
    reply.json()["status"].as_str().unwrap_or_default().to_owned()
}

#[track_caller]
fn wait_status(w: &World, source: &str, id: &str, want: &str) {
    wait_until(WAIT, &format!("{source}/{id} to be {want}"), || status(w, source, id) == want);
}

fn older_events_of_an_entity_are_stale(w: &World) {
    // Stripe orders by default, by the object (`/data/object/id`) and `created`. One invoice's
    // events arrive newest first, each after the previous one was dealt with.
    let entity = unique("in");
    let ids: Vec<String> = (0..4).map(|_| unique("evt")).collect();
    let created = [1_700_000_400, 1_700_000_300, 1_700_000_200, 1_700_000_100];
    for (id, created) in ids.iter().zip(created) {
        send(w, "ordered", &versioned(id, &entity, created));
        let first = id == &ids[0];
        wait_status(w, "ordered", id, if first { "delivered" } else { "stale" });
    }
    // An equal version from another event is not stale; a newer one neither.
    let same = unique("evt");
    send(w, "ordered", &versioned(&same, &entity, 1_700_000_400));
    wait_status(w, "ordered", &same, "delivered");
    let newer = unique("evt");
    send(w, "ordered", &versioned(&newer, &entity, 1_700_000_500));
    wait_status(w, "ordered", &newer, "delivered");
    std::thread::sleep(Duration::from_secs(1));
    let delivered: Vec<String> = w
        .dest
        .received("/ordered", |r| r.header("webhook-id").is_some_and(|id| id == ids[0] || ids[1..].contains(&id)))
        .iter()
        .map(|r| r.header("webhook-id").unwrap())
        .collect();
    assert_eq!(delivered, [ids[0].clone()], "stale events are not delivered");
    assert_eq!(w.dest.deliveries("/ordered", &same).len(), 1);
    assert_eq!(w.dest.deliveries("/ordered", &newer).len(), 1);
    // Counted and listed.
    let listed = w.main.admin_json("/admin/events?source=ordered&status=stale&limit=200");
    let stale: Vec<&str> = listed["events"].as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert!(ids[1..].iter().all(|id| stale.contains(&id.as_str())), "{stale:?}");
    let metrics = w.main.admin("GET", "/admin/metrics", b"").body;
    let line = r#"edgehook_events_total{source="ordered",type="invoice.updated",outcome="stale",reason=""} "#;
    let count: u64 = metrics.lines().find_map(|l| l.strip_prefix(line)?.parse().ok()).unwrap_or(0);
    assert!(count >= 3, "stale counted: {count}");
}

fn stale_events_can_be_delivered_marked(w: &World) {
    // `stale = "deliver"`: delivered anyway, with x-edgehook-stale: true.
    let entity = unique("in");
    let (newer, older) = (unique("evt"), unique("evt"));
    send(w, "ordered-deliver", &versioned(&newer, &entity, 1_700_000_200));
    wait_status(w, "ordered-deliver", &newer, "delivered");
    send(w, "ordered-deliver", &versioned(&older, &entity, 1_700_000_100));
    let got = w.dest.wait_deliveries("/ordered-deliver", &older, 1, WAIT);
    assert_eq!(got[0].header("x-edgehook-stale").as_deref(), Some("true"));
    let fresh = w.dest.wait_deliveries("/ordered-deliver", &newer, 1, WAIT);
    assert_eq!(fresh[0].header("x-edgehook-stale"), None);
    // Versions compare exactly: as f64s, 2^53 and 2^53 + 1 are equal, and equal is not stale.
    let entity = unique("in");
    let (newer, older) = (unique("evt"), unique("evt"));
    send(w, "ordered-deliver", &versioned(&newer, &entity, 9_007_199_254_740_993));
    wait_status(w, "ordered-deliver", &newer, "delivered");
    send(w, "ordered-deliver", &versioned(&older, &entity, 9_007_199_254_740_992));
    let got = w.dest.wait_deliveries("/ordered-deliver", &older, 1, WAIT);
    assert_eq!(got[0].header("x-edgehook-stale").as_deref(), Some("true"), "one less than 2^53 + 1 is older");
}

fn a_destination_down_for_a_while_loses_and_dead_letters_nothing(w: &World) {
    // Two attempts allowed, and the circuit opens on the second failure in a row: without the
    // breaker every event would be dead within seconds; with it, none can be, however slowly
    // the events arrive.
    w.dest.always("/flapping", 503);
    let ids: Vec<String> = (0..20).map(|_| unique("evt")).collect();
    for id in &ids {
        send(w, "flapping", &crate::harness::stripe_body(id, "invoice.paid"));
    }
    // The circuit opens; health shows it.
    wait_until(WAIT, "the circuit to show in health", || {
        w.main.scheduled();
        let report = w.main.admin_json("/admin/health");
        report["open_circuits"].as_array().is_some_and(|c| c.iter().any(|s| s == "flapping"))
    });
    let during = w.dest.received("/flapping", |_| true).len();
    // Down for a while longer: probes only, a handful of requests.
    std::thread::sleep(Duration::from_secs(10));
    let probes = w.dest.received("/flapping", |_| true).len() - during;
    assert!(probes <= 8, "{probes} requests while the circuit was open");
    w.dest.always("/flapping", 200);
    for id in &ids {
        wait_status(w, "flapping", id, "delivered");
    }
    let letters = w.main.admin_json("/admin/dead-letters?source=flapping");
    assert!(letters["dead_letters"].as_array().unwrap().is_empty(), "{letters}");
    for id in &ids {
        let got = w.dest.deliveries("/flapping", id);
        assert!(!got.is_empty());
    }
    wait_until(WAIT, "the circuit to close in health", || {
        w.main.scheduled();
        let report = w.main.admin_json("/admin/health");
        report["open_circuits"].as_array().is_some_and(|c| c.iter().all(|s| s != "flapping"))
    });
}

/// The burst: 5,000 distinct events as fast as this machine sends them, to a destination
/// limited to `BURST_RATE` deliveries a second.
pub const BURST_RATE: usize = 100;

pub fn a_burst_of_5000_is_delivered_once_within_the_rate_limit(w: &World) {
    const EVENTS: usize = 5_000;
    const SENDERS: usize = 32;
    let prefix = unique("burst");
    let started = Instant::now();
    std::thread::scope(|scope| {
        for sender in 0..SENDERS {
            let prefix = &prefix;
            scope.spawn(move || {
                for i in (sender..EVENTS).step_by(SENDERS) {
                    let id = format!("{prefix}_{i}");
                    let body = crate::harness::stripe_body(&id, "invoice.paid");
                    let reply = w.main.post(
                        "/webhooks/burst",
                        &signed(Provider::Stripe, crate::STRIPE_SECRET, "", now_secs(), &body),
                        &body,
                    );
                    assert_eq!((reply.status, reply.json()["status"].clone()), (200, "accepted".into()), "{id}");
                }
            });
        }
    });
    let ingest = started.elapsed();
    let mut last = 0;
    let mut stalled_since = Instant::now();
    loop {
        let got = w.dest.received("/burst", |r| r.header("webhook-id").is_some_and(|id| id.starts_with(&prefix)));
        if got.len() >= EVENTS {
            break;
        }
        if got.len() > last {
            (last, stalled_since) = (got.len(), Instant::now());
        }
        assert!(stalled_since.elapsed() < Duration::from_secs(60), "delivery stalled at {last} of {EVENTS}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let drained = started.elapsed();
    std::thread::sleep(Duration::from_secs(3));
    let got = w.dest.received("/burst", |r| r.header("webhook-id").is_some_and(|id| id.starts_with(&prefix)));
    let mut ids: Vec<String> = got.iter().map(|r| r.header("webhook-id").unwrap()).collect();
    ids.sort();
    let total = ids.len();
    ids.dedup();
    assert_eq!((ids.len(), total), (EVENTS, EVENTS), "every event delivered exactly once");
    // No second sees more than the rate plus one bucket (the bucket is one second's worth).
    let mut times: Vec<Instant> = got.iter().map(|r| r.at).collect();
    times.sort();
    let busiest = |window: Duration| {
        (0..times.len()).map(|i| times[i..].iter().take_while(|t| **t < times[i] + window).count()).max().unwrap_or(0)
    };
    let (worst, worst_5s) = (busiest(Duration::from_secs(1)), busiest(Duration::from_secs(5)));
    println!(
        "burst: {EVENTS} events accepted in {:.1}s ({:.0}/s); delivered at up to {BURST_RATE}/s, drained {:.1}s after the first; busiest second at the destination: {worst}, busiest five seconds: {worst_5s}",
        ingest.as_secs_f64(),
        EVENTS as f64 / ingest.as_secs_f64(),
        drained.as_secs_f64()
    );
    // Deliveries leave at their scheduled turns; arrival times here add the network's and the
    // machine's jitter, and a stall of the shared machine releases late turns together with the
    // next ones. So one second is allowed a quarter of the rate as slack; over five seconds,
    // where a stall weighs less, a limiter running even a fifth too fast would show.
    assert!(
        worst <= 2 * BURST_RATE + BURST_RATE / 4,
        "{worst} deliveries in one second, limit {BURST_RATE} plus a bucket"
    );
    assert!(
        worst_5s <= 6 * BURST_RATE + BURST_RATE / 2,
        "{worst_5s} deliveries in five seconds, limit 5 x {BURST_RATE} plus a bucket"
    );
}
