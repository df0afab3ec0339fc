//! Exactly-once intake: concurrent duplicates, failed enqueues, expiry by alarm, and what the
//! worker never reveals.

use crate::harness::{now_secs, signed, stripe_body, unique, Reply};
use crate::{World, ADMIN_TOKEN, ALL_SECRETS, STRIPE_SECRET, TTL_SECS};
use edgehook_core::headers::HeaderList;
use edgehook_core::providers::Provider;
use serde_json::json;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

pub const TESTS: &[crate::Test] = &[
    ("fifty_concurrent_copies_are_delivered_once", fifty_concurrent_copies_are_delivered_once),
    ("failed_enqueue_leaves_no_trace", failed_enqueue_leaves_no_trace),
    ("unavailable_store_answers_503", unavailable_store_answers_503),
    ("ids_expire_after_the_ttl", ids_expire_after_the_ttl),
    ("admin_api_requires_the_token", admin_api_requires_the_token),
];

const WAIT: Duration = Duration::from_secs(60);

fn fifty_concurrent_copies_are_delivered_once(w: &World) {
    let id = unique("evt");
    let body = stripe_body(&id, "invoice.paid");
    let headers = signed(Provider::Stripe, STRIPE_SECRET, "", now_secs(), &body);
    let start = Arc::new(Barrier::new(50));
    let replies: Vec<Reply> = thread::scope(|s| {
        let handles: Vec<_> = (0..50)
            .map(|_| {
                let (start, headers, body, url) =
                    (start.clone(), headers.clone(), body.clone(), w.main.url("/webhooks/concurrent"));
                s.spawn(move || {
                    start.wait();
                    crate::harness::request("POST", &url, &headers, &body)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let statuses: Vec<String> =
        replies.iter().map(|r| format!("{} {}", r.status, r.json()["status"].as_str().unwrap_or(&r.body))).collect();
    let accepted = statuses.iter().filter(|s| *s == "200 accepted").count();
    let duplicates = statuses.iter().filter(|s| *s == "200 duplicate").count();
    assert_eq!((accepted, duplicates), (1, 49), "{statuses:?}");

    w.dest.wait_deliveries("/concurrent", &id, 1, WAIT);
    thread::sleep(Duration::from_secs(3));
    assert_eq!(w.dest.deliveries("/concurrent", &id).len(), 1, "50 copies must lead to exactly one delivery");
}

fn fault(w: &World, what: &str) {
    let reply = w.faults.post(&format!("/__faults/{what}?fail=1"), &HeaderList::new(), b"");
    assert_eq!(reply.status, 200, "{}", reply.body);
}

fn failed_enqueue_leaves_no_trace(w: &World) {
    let id = unique("evt");
    let body = stripe_body(&id, "invoice.paid");
    let headers = signed(Provider::Stripe, STRIPE_SECRET, "", now_secs(), &body);
    fault(w, "enqueue");
    let reply = w.faults.post("/webhooks/fragile", &headers, &body);
    reply.expect(503, json!({"error": "unavailable"}));
    assert_eq!(reply.header("retry-after"), Some("5"));
    // The provider retries: accepted, because the failed attempt released its claim.
    w.faults.post("/webhooks/fragile", &headers, &body).expect(200, json!({"status": "accepted", "id": id}));
    w.faults.post("/webhooks/fragile", &headers, &body).expect(200, json!({"status": "duplicate", "id": id}));
    w.dest.wait_deliveries("/fragile", &id, 1, WAIT);
    thread::sleep(Duration::from_secs(2));
    assert_eq!(w.dest.deliveries("/fragile", &id).len(), 1);
}

fn unavailable_store_answers_503(w: &World) {
    let id = unique("evt");
    let body = stripe_body(&id, "invoice.paid");
    let headers = signed(Provider::Stripe, STRIPE_SECRET, "", now_secs(), &body);
    fault(w, "claim");
    w.faults.post("/webhooks/fragile", &headers, &body).expect(503, json!({"error": "unavailable"}));
    w.faults.post("/webhooks/fragile", &headers, &body).expect(200, json!({"status": "accepted", "id": id}));
}

fn ids_expire_after_the_ttl(w: &World) {
    let id = unique("evt");
    let body = stripe_body(&id, "invoice.paid");
    let send = || w.ttl.post("/webhooks/ttl", &signed(Provider::Stripe, STRIPE_SECRET, "", now_secs(), &body), &body);
    send().expect(200, json!({"status": "accepted", "id": id}));
    w.dest.wait_deliveries("/ttl", &id, 1, WAIT);
    send().expect(200, json!({"status": "duplicate", "id": id}));
    // The record's expiry moves with its last change (the delivery); the Durable Object's alarm
    // deletes it once expired. Records are never checked for expiry on read, so a new
    // acceptance proves the alarm ran.
    thread::sleep(Duration::from_secs(TTL_SECS + 2));
    send().expect(200, json!({"status": "accepted", "id": id}));
    let got = w.dest.wait_deliveries("/ttl", &id, 2, WAIT);
    assert_eq!(got.len(), 2);
}

fn admin_api_requires_the_token(w: &World) {
    let unauthorized = json!({"error": "unauthorized"});
    w.main.get("/admin/dead-letters", &HeaderList::new()).expect(401, unauthorized.clone());
    let wrong = HeaderList::from([("authorization", "Bearer not-the-token")]);
    w.main.get("/admin/dead-letters", &wrong).expect(401, unauthorized.clone());
    let bare = HeaderList::from([("authorization", ADMIN_TOKEN)]);
    w.main.get("/admin/dead-letters", &bare).expect(401, unauthorized.clone());
    let right = HeaderList::from([("authorization", &*format!("Bearer {ADMIN_TOKEN}"))]);
    let reply = w.main.get("/admin/dead-letters", &right);
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(reply.json()["dead_letters"].is_array());
    // The faults instance has no ADMIN_TOKEN: nobody gets in.
    w.faults.get("/admin/dead-letters", &right).expect(401, unauthorized);
}

/// Runs after every other test: no configured secret appears in anything any instance logged.
pub fn no_secret_in_any_log(w: &World) {
    for worker in [&w.main, &w.faults, &w.ttl] {
        let logs = worker.logs();
        assert!(!logs.is_empty(), "no log for {}", worker.name);
        for secret in ALL_SECRETS {
            assert!(!logs.contains(secret), "a secret appears in the {} worker's log", worker.name);
        }
    }
}
