//! What one event costs on Cloudflare, counted rather than estimated: the test build counts
//! every billable operation the worker makes (`src/billing.rs`, served at `/__faults/billing`),
//! and this test sends realistic Stripe events through the `faults` instance (default TTL and
//! retention, so time partitions are as wide as in production), then divides. Expiry, which
//! drops whole partitions and writes no row per event, is checked on the `ttl` instance
//! (`expired_events_leave_storage` in `idempotency.rs`).

use crate::harness::{now_secs, signed, unique, wait_status};
use crate::{World, GITHUB_SECRET, STRIPE_SECRET};
use edgehook_core::headers::HeaderList;
use edgehook_core::idempotency::{shard_of, SHARDS};
use edgehook_core::ingest::idempotency_key;
use edgehook_core::providers::Provider;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// List prices, USD per operation (Workers Paid; BENCHMARKS.md cites the pages).
const PRICES: &[(&str, &str, f64)] = &[
    ("worker_requests", "Worker requests (ingest)", 0.30e-6),
    ("worker_invocations", "Worker requests (queue consumer invocations)", 0.30e-6),
    ("do_requests", "Durable Object requests (fetch and alarms)", 0.15e-6),
    ("do_rows_written", "Durable Object SQLite rows written (with index rows, alarms)", 1.00e-6),
    ("queue_writes", "Queue writes (per 64 KB)", 0.40e-6),
    ("queue_reads", "Queue reads (per 64 KB)", 0.40e-6),
    ("queue_deletes", "Queue deletes (per 64 KB)", 0.40e-6),
    ("r2_class_a", "R2 Class A (put, list)", 4.50e-6),
    ("r2_class_b", "R2 Class B (get, head)", 0.36e-6),
];

/// Stored data, USD per GB-month (10^9 bytes, 730 hours): a Durable Object's SQLite storage,
/// and R2's (standard class).
const DO_STORAGE_PRICE: f64 = 0.20;
const R2_STORAGE_PRICE: f64 = 0.015;
/// How long what an event stores is kept, in months, at the default TTL and retention (30
/// days): a record stays in its shard until its time partition is dropped, half a partition
/// (a week wide) later on average; captured bodies and headers stay in R2 for the retention.
const DO_MONTHS: f64 = (30.0 + 3.5) / (730.0 / 24.0);
const R2_MONTHS: f64 = 30.0 / (730.0 / 24.0);

/// The target: at most five dollars per million events.
const CEILING_PER_MILLION: f64 = 5.0;

pub const SOLO: crate::Test = ("what_one_event_costs", one_event_costs);
pub const HEADERS: crate::Test = ("captured_headers_are_kept_in_r2_not_in_records", headers_kept_in_r2);

/// Counts since the last reset, minus the requests this test made to read them.
struct Meter<'a> {
    w: &'a World,
    reads: u64,
}

impl Meter<'_> {
    fn reset(w: &World) -> Meter<'_> {
        let reply = w.faults.post("/__faults/billing", &HeaderList::new(), b"");
        assert_eq!(reply.status, 200, "{}", reply.body);
        Meter { w, reads: 0 }
    }

    fn read(&mut self) -> BTreeMap<String, u64> {
        let reply = self.w.faults.get("/__faults/billing", &HeaderList::new());
        assert_eq!(reply.status, 200, "{}", reply.body);
        self.reads += 1;
        let mut counts: BTreeMap<String, u64> = serde_json::from_str(&reply.body).unwrap();
        *counts.get_mut("worker_requests").unwrap() -= self.reads;
        counts
    }

    /// Waits until nothing has changed for three seconds; the counts then.
    fn settled(&mut self, timeout: Duration) -> BTreeMap<String, u64> {
        let deadline = Instant::now() + timeout;
        let mut last = self.read();
        let mut since = Instant::now();
        loop {
            std::thread::sleep(Duration::from_millis(500));
            let now = self.read();
            if now != last {
                (last, since) = (now, Instant::now());
            } else if since.elapsed() >= Duration::from_secs(3) {
                return now;
            }
            assert!(Instant::now() < deadline, "the worker did not settle: {last:?}");
        }
    }
}

/// A Stripe event of about 1 KB, shaped like Stripe's: an entity (`data.object.id`) and a
/// creation time, so the provider's default ordering applies as it would in production.
fn stripe_event(id: &str, i: usize) -> Vec<u8> {
    let head = format!(
        r#"{{"id":"{id}","object":"event","api_version":"2024-06-20","created":{},"type":"invoice.paid","livemode":false,"pending_webhooks":1,"request":{{"id":null,"idempotency_key":null}},"data":{{"object":{{"id":"in_{i}","object":"invoice","amount_due":2000,"amount_paid":2000,"currency":"usd","customer":"cus_{i}","status":"paid","lines":"#,
        now_secs()
    );
    let mut body = head.into_bytes();
    body.extend_from_slice(br#"{"object":"list","data":[],"has_more":false},"description":""#);
    body.resize(1000, b'x');
    body.extend_from_slice(br#""}}}"#);
    body
}

const EVENTS: usize = 200;

/// Sends `n` distinct events to `source` from 8 connections; the prefix of their ids. A
/// `github` source gets the same bodies, signed as GitHub signs them, ids in their headers.
fn send(w: &World, source: &str, provider: Provider, n: usize) -> String {
    const SENDERS: usize = 8;
    let prefix = unique(source);
    std::thread::scope(|scope| {
        for sender in 0..SENDERS {
            let prefix = &prefix;
            scope.spawn(move || {
                for i in (sender..n).step_by(SENDERS) {
                    let id = format!("{prefix}_{i}");
                    let body = stripe_event(&id, i);
                    let headers = match provider {
                        Provider::Github => {
                            signed(Provider::Github, GITHUB_SECRET, &id, 0, &body).with("X-GitHub-Event", "invoice")
                        }
                        _ => signed(Provider::Stripe, STRIPE_SECRET, "", now_secs(), &body),
                    };
                    let reply = w.faults.post(&format!("/webhooks/{source}"), &headers, &body);
                    assert_eq!((reply.status, reply.json()["status"].clone()), (200, "accepted".into()), "{id}");
                }
            });
        }
    });
    prefix
}

/// Sends `n` distinct events to `source` and waits until each was delivered once.
fn send_and_deliver(w: &World, source: &str, provider: Provider, n: usize) {
    let prefix = send(w, source, provider, n);
    let got = w.dest.wait_for(&format!("/{source}"), n, Duration::from_secs(60), |r| {
        r.header("webhook-id").is_some_and(|id| id.starts_with(&prefix))
    });
    assert_eq!(got.len(), n, "every event delivered once");
}

/// The billable operations `round` causes, counted until the worker settles, and the growth of
/// the shards' databases per event.
fn measured(w: &World, round: impl FnOnce()) -> (BTreeMap<String, u64>, f64) {
    let before = stored_bytes(w);
    let mut meter = Meter::reset(w);
    round();
    let counts = meter.settled(Duration::from_secs(60));
    (counts, (stored_bytes(w) - before) as f64 / EVENTS as f64)
}

/// The bytes of the idempotency shards' databases, summed.
fn stored_bytes(w: &World) -> i64 {
    let reply = w.faults.get("/__faults/storage", &HeaderList::new());
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.json()["bytes"].as_i64().unwrap()
}

/// Prints the counts per event as BENCHMARKS.md shows them, and what the event stores (the
/// growth of the shards' databases per event, `stored`, and the bytes put into R2) priced for
/// as long as it is kept; the total in USD per million.
fn price(what: &str, counts: &BTreeMap<String, u64>, stored: f64) -> f64 {
    println!("cost of {what}, averaged over {EVENTS}:");
    println!("| operation | per event | USD per million events |");
    println!("| --- | --- | --- |");
    let mut total = 0.0;
    for (key, label, price) in PRICES {
        let per_event = counts[*key] as f64 / EVENTS as f64;
        let dollars = per_event * price * 1e6;
        total += dollars;
        println!("| {label} | {per_event:.3} | {dollars:.3} |");
    }
    let r2_bytes = counts["r2_bytes_stored"] as f64 / EVENTS as f64;
    for (label, bytes, months, price) in [
        ("Durable Object SQLite storage (bytes for 1.1 months)", stored, DO_MONTHS, DO_STORAGE_PRICE),
        ("R2 storage (bytes for 1 month)", r2_bytes, R2_MONTHS, R2_STORAGE_PRICE),
    ] {
        // Bytes per event, so a million events' bytes are as many GB.
        let dollars = bytes * 1e-3 * months * price;
        total += dollars;
        println!("| {label} | {bytes:.0} | {dollars:.3} |");
    }
    println!("| total | | {total:.2} |");
    println!("raw counts: {counts:?}");
    total
}

fn one_event_costs(w: &World) {
    // Whatever earlier tests left in flight on this instance must be done first.
    Meter::reset(w).settled(Duration::from_secs(60));

    // A first round sets the steady state up: each shard's current partition (created once a
    // week in production), the destination's gate, the metrics rows. The second is measured.
    send_and_deliver(w, "priced", Provider::Stripe, EVENTS);
    Meter::reset(w).settled(Duration::from_secs(60));
    let (counts, stored) = measured(w, || send_and_deliver(w, "priced", Provider::Stripe, EVENTS));
    let total = price("one accepted and delivered 1 KB Stripe event", &counts, stored);

    // Sanity: the counting works (a broken counter would make any budget look met).
    let at_least =
        |key: &str, n: usize| assert!(counts[key] >= n as u64, "{key}: {} counted, at least {n} expected", counts[key]);
    at_least("worker_requests", EVENTS);
    at_least("queue_writes", EVENTS);
    at_least("queue_reads", EVENTS);
    at_least("queue_deletes", EVENTS);
    at_least("do_requests", 1);
    at_least("do_rows_written", EVENTS);
    at_least("r2_class_a", 1);
    at_least("r2_bytes_stored", EVENTS * 1000);
    // Two rows per event (taken, then its outcome), one more for its entity's version; expiry
    // drops whole tables, which is not billed per row.
    let rows = counts["do_rows_written"] as f64 / EVENTS as f64;
    assert!(rows < 3.5, "{rows:.2} rows written per event");
    assert!(total <= CEILING_PER_MILLION, "an event costs ${total:.2} per million, over ${CEILING_PER_MILLION}");

    // A source whose event ids are not signed (GitHub): each event's signature is sealed
    // (`ingest::seal_of`), one more row per event, and one more round of requests per batch.
    // A first, unmeasured round sets up this destination's gate and the source's metrics rows.
    send_and_deliver(w, "priced-github", Provider::Github, EVENTS / 4);
    Meter::reset(w).settled(Duration::from_secs(60));
    let (counts, stored) = measured(w, || send_and_deliver(w, "priced-github", Provider::Github, EVENTS));
    let total = price("one accepted and delivered 1 KB GitHub event, its signature sealed", &counts, stored);
    let rows = counts["do_rows_written"] as f64 / EVENTS as f64;
    // Taken, its outcome, its seal (GitHub's payloads carry no version to order by).
    assert!(rows > 2.5 && rows < 3.5, "{rows:.2} rows written per event");
    assert!(total <= CEILING_PER_MILLION, "a GitHub event costs ${total:.2} per million, over ${CEILING_PER_MILLION}");

    // A source with nowhere to deliver (capture only, ordering off): an event is complete once
    // captured, and the write that takes it says so. One row per event, not two.
    let mut prefix = String::new();
    let (counts, stored) = measured(w, || prefix = send(w, "archived", Provider::Stripe, EVENTS));
    price("one accepted 1 KB Stripe event captured without a destination", &counts, stored);
    let listed = w.faults.admin_json(&format!("/admin/events?source=archived&limit={EVENTS}"));
    let statuses: Vec<(&str, &str)> = listed["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["id"].as_str().unwrap(), e["status"].as_str().unwrap()))
        .filter(|(id, _)| id.starts_with(&prefix))
        .collect();
    assert_eq!(statuses.len(), EVENTS, "every event captured");
    assert!(statuses.iter().all(|(_, status)| *status == "delivered"), "{statuses:?}");
    let rows = counts["do_rows_written"] as f64 / EVENTS as f64;
    assert!(rows < 1.5, "{rows:.2} rows written per captured event");
}

/// Captured headers go into the batch's capture segment in R2, beside the body, not into the
/// event's record: a Durable Object's storage is billed at more than ten times R2's and ends at
/// 10 GB an object. Sent alone (the bytes measured are every shard's), with headers larger
/// than everything else a record holds; the admin API still shows them whole, for a body in a
/// segment and for a claim-checked one (whose record keeps its headers).
fn headers_kept_in_r2(w: &World) {
    const N: usize = 20;
    const PADDING: usize = 8 * 1024;
    Meter::reset(w).settled(Duration::from_secs(60));
    let prefix = unique("padded");
    let padding: String = (0..PADDING).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
    let send_one = |id: &str, body: &[u8]| {
        let headers = signed(Provider::Stripe, STRIPE_SECRET, "", now_secs(), body)
            .with("X-Padding", &padding)
            .with("X-Which", id);
        let reply = w.faults.post("/webhooks/archived", &headers, body);
        assert_eq!((reply.status, reply.json()["status"].clone()), (200, "accepted".into()), "{id}");
    };
    let shown = |id: &str| wait_status(&w.faults, "archived", id, "delivered");
    // An event in each shard first, so that every shard's partition tables (a few pages each)
    // exist before the measurement.
    let warm: Vec<String> = (0..SHARDS)
        .map(|shard| {
            std::iter::repeat_with(|| unique("padded"))
                .find(|id| shard_of(&idempotency_key("archived", id)) == shard)
                .unwrap()
        })
        .collect();
    for id in &warm {
        send_one(id, &stripe_event(id, 0));
    }
    for id in &warm {
        shown(id);
    }
    Meter::reset(w).settled(Duration::from_secs(60));

    let before = stored_bytes(w);
    for i in 0..N {
        let id = format!("{prefix}_{i}");
        send_one(&id, &stripe_event(&id, i));
    }
    for i in 0..N {
        shown(&format!("{prefix}_{i}"));
    }
    Meter::reset(w).settled(Duration::from_secs(60));
    let per_event = (stored_bytes(w) - before) as f64 / N as f64;
    println!(
        "{N} events with {PADDING} bytes of headers each grew the shards' databases by {per_event:.0} bytes an event"
    );
    assert!(per_event < 2048.0, "{per_event:.0} bytes stored per event: its headers are in its record");

    // Shown whole, in the order received, for a body in a segment...
    let event = shown(&format!("{prefix}_7"));
    let header = |event: &serde_json::Value, name: &str| {
        event["headers"].as_array().unwrap().iter().find(|h| h["name"] == name).map(|h| h["value"].clone())
    };
    assert_eq!(header(&event, "x-padding"), Some(padding.clone().into()), "{event}");
    assert_eq!(header(&event, "x-which"), Some(format!("{prefix}_7").into()));
    assert!(header(&event, "stripe-signature").is_some());
    assert!(event["body"].as_str().unwrap().contains(&format!("{prefix}_7")));
    // ...and for a claim-checked one (too large for a queue message).
    let big = format!("{prefix}_big");
    let mut body = stripe_event(&big, 1);
    body.truncate(body.len() - 4);
    body.resize(200 * 1024, b'y');
    body.extend_from_slice(br#""}}}"#);
    send_one(&big, &body);
    let event = shown(&big);
    assert_eq!(header(&event, "x-padding"), Some(padding.into()));
    assert_eq!(header(&event, "x-which"), Some(big.into()));
    assert_eq!(event["body"].as_str().map(str::len), Some(body.len()));
}
