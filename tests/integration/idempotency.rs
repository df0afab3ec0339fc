//! Exactly-once intake: concurrent duplicates, failed enqueues, expiry by alarm, and what the
//! worker never reveals.

use crate::harness::{ids_in_shard_of, now_secs, series, signed, stripe_body, unique, Reply, WAIT};
use crate::{World, ADMIN_TOKEN, ALL_SECRETS, GITHUB_SECRET, RETENTION_SECS, STRIPE_SECRET, TTL_SECS};
use edgehook_core::headers::HeaderList;
use edgehook_core::providers::{Provider, Unsigned};
use edgehook_core::secret::SigningKey;
use serde_json::json;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

pub const TESTS: &[crate::Test] = &[
    ("fifty_concurrent_copies_are_delivered_once", fifty_concurrent_copies_are_delivered_once),
    ("concurrent_copies_in_the_queue_are_delivered_once", concurrent_copies_in_the_queue_are_delivered_once),
    ("failed_enqueue_leaves_no_trace", failed_enqueue_leaves_no_trace),
    ("unavailable_storage_answers_503", unavailable_storage_answers_503),
    (
        "copies_the_receiver_does_not_know_are_dropped_by_the_consumer",
        copies_the_receiver_does_not_know_are_dropped_by_the_consumer,
    ),
    ("a_lost_answer_to_a_settling_begin_is_counted_once", a_lost_answer_to_a_settling_begin_is_counted_once),
    ("a_signed_request_resent_under_a_fresh_id_is_dropped", a_signed_request_resent_under_a_fresh_id_is_dropped),
    ("a_mailgun_signature_carries_one_event", a_mailgun_signature_carries_one_event),
    ("ids_expire_after_the_ttl", ids_expire_after_the_ttl),
    ("records_are_found_in_older_partitions", records_are_found_in_older_partitions),
    ("admin_api_requires_the_token", admin_api_requires_the_token),
    ("the_objects_answer_callers_of_either_release", the_objects_answer_callers_of_either_release),
    ("a_gate_that_cannot_read_its_state_keeps_its_circuit", a_gate_that_cannot_read_its_state_keeps_its_circuit),
];

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

fn concurrent_copies_in_the_queue_are_delivered_once(w: &World) {
    // Thirty messages for one event reach the consumer together, as if thirty receivers in
    // thirty places had each accepted a copy: the Durable Object record lets one through.
    let id = unique("evt");
    let reply = w.faults.post(&format!("/__faults/copies?source=fragile&id={id}&n=30"), &HeaderList::new(), b"");
    assert_eq!(reply.status, 200, "{}", reply.body);
    w.dest.wait_deliveries("/fragile", &id, 1, WAIT);
    thread::sleep(Duration::from_secs(4));
    assert_eq!(w.dest.deliveries("/fragile", &id).len(), 1, "30 queued copies must lead to one delivery");
}

/// Arms a fault on the faults instance for event `id` only.
fn fault(w: &World, what: &str, id: &str) {
    let reply = w.faults.post(&format!("/__faults/{what}?id={id}"), &HeaderList::new(), b"");
    assert_eq!(reply.status, 200, "{}", reply.body);
}

fn failed_enqueue_leaves_no_trace(w: &World) {
    let id = unique("evt");
    let body = stripe_body(&id, "invoice.paid");
    let headers = signed(Provider::Stripe, STRIPE_SECRET, "", now_secs(), &body);
    fault(w, "enqueue", &id);
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

fn unavailable_storage_answers_503(w: &World) {
    // A body over the queue's message limit goes to R2 first; R2 failing is a 503 too.
    let id = unique("evt");
    let body = format!(r#"{{"id":"{id}","type":"invoice.paid","padding":"{}"}}"#, "p".repeat(200_000)).into_bytes();
    let headers = signed(Provider::Stripe, STRIPE_SECRET, "", now_secs(), &body);
    fault(w, "blob", &id);
    w.faults.post("/webhooks/fragile", &headers, &body).expect(503, json!({"error": "unavailable"}));
    w.faults.post("/webhooks/fragile", &headers, &body).expect(200, json!({"status": "accepted", "id": id}));
    let got = w.dest.wait_deliveries("/fragile", &id, 1, WAIT);
    assert!(got[0].body == body);
}

fn copies_the_receiver_does_not_know_are_dropped_by_the_consumer(w: &World) {
    let id = unique("evt");
    // A type of its own, so that the consumer's duplicate count below is this event's alone.
    let event_type = unique("copy.dropped");
    let body = stripe_body(&id, &event_type);
    let send =
        || w.faults.post("/webhooks/fragile", &signed(Provider::Stripe, STRIPE_SECRET, "", now_secs(), &body), &body);
    send().expect(200, json!({"status": "accepted", "id": id}));
    w.dest.wait_deliveries("/fragile", &id, 1, WAIT);
    // As if the copy reached another isolate (or came weeks later): the receiver enqueues it...
    let reply = w.faults.post(&format!("/__faults/forget?key=fragile:{id}"), &HeaderList::new(), b"");
    assert_eq!(reply.status, 200, "{}", reply.body);
    send().expect(200, json!({"status": "accepted", "id": id}));
    // ...and the consumer, finding the event completed, drops it (counted as a duplicate)
    // instead of delivering it again.
    let duplicate = format!(r#"source="fragile",type="{event_type}",outcome="duplicate",reason="""#);
    crate::harness::wait_until(WAIT, "the consumer to catch the copy", || {
        series(&w.faults.admin("GET", "/admin/metrics", b"").body, &duplicate) == Some(1)
    });
    assert_eq!(w.dest.deliveries("/fragile", &id).len(), 1);
}

/// A source with nowhere to deliver: the object takes and settles the event (complete once
/// captured) in one write, and here its answer is lost (an injected fault), so the queue retries
/// the message. The retry is answered `Settled` again and the event is counted once, delivered.
/// It used to be counted as a duplicate of itself, and never as delivered.
fn a_lost_answer_to_a_settling_begin_is_counted_once(w: &World) {
    let id = unique("evt");
    // A type of its own, so that the counts below are this event's alone.
    let event_type = unique("answer.lost");
    let armed = w.faults.post(&format!("/__faults/lose-answer?id={id}"), &HeaderList::new(), b"");
    assert_eq!(armed.status, 200, "{}", armed.body);
    let body = stripe_body(&id, &event_type);
    let headers = signed(Provider::Stripe, STRIPE_SECRET, "", now_secs(), &body);
    w.faults.post("/webhooks/archived", &headers, &body).expect(200, json!({"status": "accepted", "id": id}));
    let count = |outcome: &str| {
        let labels = format!(r#"source="archived",type="{event_type}",outcome="{outcome}",reason="""#);
        series(&w.faults.admin("GET", "/admin/metrics", b"").body, &labels)
    };
    // The message comes back after the consumer's retry delay for a failed request (30 s).
    crate::harness::wait_until(Duration::from_secs(120), "the retried message to be counted", || {
        count("delivered") == Some(1)
    });
    assert!(w.faults.logs().contains(&format!("injected fault: the answer to {id}'s begin is lost")));
    let record = w.faults.get(&format!("/__faults/record?source=archived&id={id}"), &HeaderList::new()).json();
    assert_eq!(record["status"], "delivered", "{record}");
    thread::sleep(Duration::from_secs(2));
    assert_eq!((count("delivered"), count("duplicate")), (Some(1), None));
}

/// GitHub's delivery id and event type travel outside its signature: whoever holds one signed
/// request can send it again under fresh ids, and the receiver, which cannot tell, accepts each
/// copy. The consumer lets only the first id have the signature: a copy under another id, or
/// as another type, is recorded as `dropped` (captured, replayable), counted as a duplicate and
/// never delivered. A source that turns the check off delivers every copy.
fn a_signed_request_resent_under_a_fresh_id_is_dropped(w: &World) {
    let (first, replayed, retyped) = (unique("gh-first"), unique("gh-replayed"), unique("gh-retyped"));
    // Types of their own, so that the counts below are this test's alone.
    let (event, other_event) = (unique("sealed"), unique("resealed"));
    let body = format!(r#"{{"action":"opened","nonce":"{first}"}}"#).into_bytes();
    let headers = |id: &str, event: &str| {
        let mut h = signed(Provider::Github, GITHUB_SECRET, id, 0, &body);
        h.push("X-GitHub-Event", event);
        h
    };
    let post =
        |source: &str, id: &str, event: &str| w.main.post(&format!("/webhooks/{source}"), &headers(id, event), &body);
    post("github", &first, &event).expect(200, json!({"status": "accepted", "id": first}));
    w.dest.wait_deliveries("/github", &first, 1, WAIT);
    post("github", &replayed, &event).expect(200, json!({"status": "accepted", "id": replayed}));
    post("github", &retyped, &other_event).expect(200, json!({"status": "accepted", "id": retyped}));
    for (id, event) in [(&replayed, &event), (&retyped, &other_event)] {
        let duplicate = format!(r#"source="github",type="{event}.opened",outcome="duplicate",reason="""#);
        crate::harness::wait_until(WAIT, "the consumer to drop the resent request", || {
            series(&w.main.admin("GET", "/admin/metrics", b"").body, &duplicate) == Some(1)
        });
        let logged = format!("github/{id}: its signed request already authenticated github:{first}");
        // The count can be read before wrangler has written the warning to its log.
        crate::harness::wait_until(WAIT, "the drop to be logged with the event it replays", || {
            w.main.logs().contains(&logged)
        });
        let recorded = w.main.admin_json(&format!("/admin/events/github/{id}"));
        assert_eq!(recorded["status"], "dropped", "{recorded}");
        let why = json!({"name": "x-edgehook-replay-of", "value": format!("github:{first}")});
        let headers = recorded["headers"].as_array().unwrap();
        assert!(headers.contains(&why), "the capture says why: {recorded}");
        // Beside the headers it was received with (kept in R2, the added one in its record).
        let received = json!({"name": "x-github-delivery", "value": id});
        assert!(headers.contains(&received), "{recorded}");
        assert_eq!(w.dest.deliveries("/github", id).len(), 0);
    }
    assert_eq!(w.dest.deliveries("/github", &first).len(), 1);

    // With `one_event_per_signature = false`, the same request under two ids is two events.
    let (one, two) = (unique("gh-one"), unique("gh-two"));
    for id in [&one, &two] {
        post("github-unsealed", id, &event).expect(200, json!({"status": "accepted", "id": id}));
        w.dest.wait_deliveries("/github-unsealed", id, 1, WAIT);
    }
}

/// Mailgun signs a timestamp and a one-time token, not `event-data`: a captured signature
/// object could carry forged events of any id and type within the timestamp window. Each
/// signature carries the first event presented with it, and no other.
fn a_mailgun_signature_carries_one_event(w: &World) {
    let source = crate::cli::cli_source(Provider::Mailgun);
    let (genuine, forged) = (unique("mg-genuine"), unique("mg-forged"));
    let forged_type = unique("forged");
    let key = SigningKey::parse("cli secret for mailgun", Provider::Mailgun.secret_encoding()).unwrap();
    let body = format!(r#"{{"event-data":{{"id":"{genuine}","event":"delivered"}}}}"#);
    let token = unique("token");
    let unsigned = Unsigned { method: "POST", url: "", body: body.as_bytes(), id: &token, timestamp: now_secs() };
    let sent = Provider::Mailgun.sign(&key, unsigned, None);
    let mut other: serde_json::Value = serde_json::from_slice(&sent.body).unwrap();
    other["event-data"] = json!({"id": forged, "event": forged_type});
    let other = other.to_string().into_bytes();
    let path = format!("/webhooks/{source}");
    let event = |id: &str| w.main.admin("GET", &format!("/admin/events/{source}/{id}"), b"");
    w.main.post(&path, &sent.headers, &sent.body).expect(200, json!({"status": "accepted", "id": genuine}));
    // The forged copy comes later, as a replay would: the queue does not keep order.
    crate::harness::wait_until(WAIT, "the genuine event to be captured", || event(&genuine).status == 200);
    w.main.post(&path, &sent.headers, &other).expect(200, json!({"status": "accepted", "id": forged}));
    let duplicate = format!(r#"source="{source}",type="{forged_type}",outcome="duplicate",reason="""#);
    crate::harness::wait_until(WAIT, "the consumer to drop the forged event", || {
        series(&w.main.admin("GET", "/admin/metrics", b"").body, &duplicate) == Some(1)
    });
    assert_eq!(event(&genuine).json()["status"], "delivered", "captured: the source has no destination");
    assert_eq!(event(&forged).json()["status"], "dropped");
}

fn ids_expire_after_the_ttl(w: &World) {
    // The receiver remembers an id for the TTL from its acceptance, so the copy must arrive
    // within 3 s of the original; on a loaded machine that can fail, and then the pair is sent
    // again with a new id (only copies answered inside the window are judged).
    let mut judged = None;
    for _ in 0..5 {
        let id = unique("evt");
        let body = stripe_body(&id, "invoice.paid");
        let send =
            || w.ttl.post("/webhooks/ttl", &signed(Provider::Stripe, STRIPE_SECRET, "", now_secs(), &body), &body);
        let started = std::time::Instant::now();
        send().expect(200, json!({"status": "accepted", "id": id}));
        let copy = send();
        if started.elapsed() < Duration::from_millis(TTL_SECS * 1000 - 500) {
            copy.expect(200, json!({"status": "duplicate", "id": id}));
            judged = Some((id, body));
            break;
        }
        eprintln!("ids_expire_after_the_ttl: the copy took too long to be judged; again");
    }
    let (id, body) = judged.expect("a copy within the TTL, in five tries");
    let send = || w.ttl.post("/webhooks/ttl", &signed(Provider::Stripe, STRIPE_SECRET, "", now_secs(), &body), &body);
    w.dest.wait_deliveries("/ttl", &id, 1, WAIT);
    // The record's expiry moves with its last change (the delivery); once past it, the record
    // no longer counts (and the Durable Object's alarm drops its partition later). The delivery
    // is recorded a moment after the destination saw it, longer on a loaded machine: a copy
    // sent too soon is still a duplicate (dropped by the consumer, the record unchanged), so
    // the copy is sent again, up to three times.
    for _ in 0..3 {
        thread::sleep(Duration::from_secs(TTL_SECS + 2));
        send().expect(200, json!({"status": "accepted", "id": id}));
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        while std::time::Instant::now() < deadline {
            if w.dest.deliveries("/ttl", &id).len() >= 2 {
                return;
            }
            thread::sleep(Duration::from_millis(100));
        }
        eprintln!("ids_expire_after_the_ttl: the copy was still a duplicate; again");
    }
    panic!("the id never expired: no second delivery of {id} in three tries");
}

fn records_are_found_in_older_partitions(w: &World) {
    // On this instance each idempotency shard's time partitions are 2 s wide. A record last
    // written more than 2 s before another event of its shard is in an older partition than
    // that event, and a lookup must look past the newest one. Captures are kept 8 s from
    // receipt, so the read must come within that: on a loaded machine a round can miss it and
    // is run again with new events.
    let record = |id: &str| w.ttl.get(&format!("/__faults/record?source=ttl&id={id}"), &HeaderList::new()).json();
    let deliver = |id: &str| {
        let body = stripe_body(id, "invoice.paid");
        let reply = w.ttl.post("/webhooks/ttl", &signed(Provider::Stripe, STRIPE_SECRET, "", now_secs(), &body), &body);
        reply.expect(200, json!({"status": "accepted", "id": id}));
        w.dest.wait_deliveries("/ttl", id, 1, WAIT);
        crate::harness::wait_until(WAIT, "the delivery to be recorded", || record(id)["status"] == "delivered");
    };
    for round in 1..=5 {
        let id = unique("evt");
        let later = ids_in_shard_of("ttl", &id).next().expect("ids spread over the shards");
        let sent = Instant::now();
        deliver(&id);
        // Last written by now: an event of the same shard written 2.1 s on goes to a newer
        // partition.
        thread::sleep(Duration::from_millis(2_100));
        deliver(&later);
        let found = record(&id);
        if sent.elapsed() >= Duration::from_millis(RETENTION_SECS * 1000 - 100) {
            eprintln!("records_are_found_in_older_partitions: read too late to judge (round {round}); again");
            continue;
        }
        assert_eq!(found, json!({"status": "delivered"}), "a record in an older partition was not found");
        // And once its retention is over, it is not (whether its partition is dropped yet or not).
        crate::harness::wait_until(WAIT, "the record to expire", || record(&id) == json!({"status": null}));
        return;
    }
    panic!("no read within the capture's retention in five rounds");
}

/// Expired events are not just ignored but gone: the shards' alarms drop whole time partitions
/// (2 seconds wide on this instance), which writes far fewer rows than the events it removes.
/// Runs alone (see `main`): the billing count is the whole instance's, so another test's events
/// on `ttl` would be counted too.
pub fn expired_events_leave_storage(w: &World) {
    const EVENTS: usize = 50;
    // Events start leaving 8 s after their receipt (the retention; their ids expire 3 s after
    // delivery): on a slow machine many may be gone before the count below is taken. The
    // comparison is only meaningful with many events still stored, so a round with too few is
    // run again with new events.
    for round in 1..=4 {
        let prefix = unique("gone");
        for i in 0..EVENTS {
            let body = stripe_body(&format!("{prefix}_{i}"), "invoice.paid");
            let reply =
                w.ttl.post("/webhooks/ttl", &signed(Provider::Stripe, STRIPE_SECRET, "", now_secs(), &body), &body);
            assert_eq!(reply.status, 200, "{}", reply.body);
        }
        w.dest.wait_for("/ttl", EVENTS, WAIT, |r| r.header("webhook-id").is_some_and(|id| id.starts_with(&prefix)));
        let storage = || w.ttl.get("/__faults/storage", &HeaderList::new()).json();
        // Counting starts before the stored events are counted: whatever is dropped from here on
        // is billed, and the stored count can only be smaller than what is dropped.
        let reset = w.ttl.post("/__faults/billing", &HeaderList::new(), b"");
        assert_eq!(reset.status, 200);
        let stored = storage()["events"].as_u64().unwrap();
        // Everything on this instance expires within seconds of its last change.
        crate::harness::wait_until(Duration::from_secs(30), "every partition to be dropped", || {
            let now = storage();
            (now["partitions"].as_u64(), now["events"].as_u64()) == (Some(0), Some(0))
        });
        if stored < 20 {
            eprintln!("expired_events_leave_storage: only {stored} events were still stored (round {round}); again");
            continue;
        }
        let billed = w.ttl.get("/__faults/billing", &HeaderList::new()).json();
        let rows = billed["do_rows_written"].as_u64().unwrap();
        assert!(rows < stored, "dropping {stored} stored events wrote {rows} rows: {billed}");
        return;
    }
    panic!("in four rounds, the events always expired before they could be counted");
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
    // Everything under /admin wants it, unknown routes and the bare prefix too (the dashboard
    // page is outside, at /dashboard); with it, an unknown route is 404.
    for path in ["/admin", "/admin/", "/admin/nothing-here"] {
        w.main.get(path, &HeaderList::new()).expect(401, unauthorized.clone());
    }
    w.main.get("/admin/", &right).expect(404, json!({"error": "not_found"}));
    // The ttl instance has no ADMIN_TOKEN: nobody gets in.
    w.ttl.get("/admin/dead-letters", &right).expect(401, unauthorized);
}

/// Runs after every other test: no configured secret appears in anything any instance logged.
pub fn no_secret_in_any_log(w: &World) {
    for worker in w.workers() {
        let logs = worker.logs();
        assert!(!logs.is_empty(), "no log for {}", worker.name);
        for secret in ALL_SECRETS {
            assert!(!logs.contains(secret), "a secret appears in the {} worker's log", worker.name);
        }
    }
}

/// edgehook calls its Durable Objects over RPC (`src/rpc.rs`). During a deploy, a worker still
/// running a release from before RPC calls them by `fetch`, and a new worker may call an object
/// still running such a release, which has no `ask`: it then falls back to `fetch`. Each object
/// class gives the same answers every way, and its errors reach the caller every way.
fn the_objects_answer_callers_of_either_release(w: &World) {
    let ask = |object: &str, target: &str, via: &str, operation: &str| {
        let path = format!("/__faults/ask?object={object}&for={target}&via={via}");
        w.faults.post(&path, &HeaderList::new(), operation.as_bytes())
    };
    let every_way = |object: &str, target: &str, operation: &str| -> Vec<Reply> {
        ["fetch", "rpc", "old-rpc"].iter().map(|via| ask(object, target, via, operation)).collect()
    };

    // A shard: an event's record, as `/__faults/record` reads it.
    let id = unique("evt-asked");
    let body = stripe_body(&id, "invoice.paid");
    let headers = signed(Provider::Stripe, STRIPE_SECRET, "", now_secs(), &body);
    w.faults.post("/webhooks/archived", &headers, &body).expect(200, json!({"status": "accepted", "id": id}));
    let record =
        |id: &str| w.faults.get(&format!("/__faults/record?source=archived&id={id}"), &HeaderList::new()).json();
    crate::harness::wait_until(WAIT, "the event's record", || !record(&id)["status"].is_null());
    let key = edgehook_core::ingest::idempotency_key("archived", &id);
    let status = record(&id)["status"].clone();
    for answer in every_way("shard", &key, &json!([{"get": {"key": key}}]).to_string()) {
        assert_eq!(answer.status, 200, "{}", answer.body);
        assert_eq!(answer.json()[0]["status"], status, "{}", answer.body);
    }

    // The control object: the kill switches, one of them just set through the admin API.
    let pattern = unique("asked.switch");
    let set = |mode: &str| {
        let path = format!("/admin/flags/archived/{pattern}");
        let reply = w.faults.admin("PUT", &path, format!(r#"{{"mode":"{mode}"}}"#).as_bytes());
        assert_eq!(reply.status, 200, "{}", reply.body);
    };
    set("paused");
    for answer in every_way("control", "", r#""flags""#) {
        assert_eq!(answer.status, 200, "{}", answer.body);
        assert!(answer.body.contains(&format!(r#""pattern":"{pattern}""#)), "{}", answer.body);
    }
    set("on");
    assert!(w.faults.logs().contains("control does not answer RPC yet ("), "no fallback to fetch was logged");

    // A destination's gate, never used: its state is the initial one.
    let destination = format!("http://127.0.0.1:9/{}", unique("asked-gate"));
    for answer in every_way("gate", &destination, r#"["State"]"#) {
        assert_eq!(answer.status, 200, "{}", answer.body);
        assert_eq!(answer.json()[0]["failures"], 0, "{}", answer.body);
    }

    // An operation no release knows: the object's own error reaches the caller, every way.
    for answer in every_way("control", "", r#""no_such_operation""#) {
        assert_eq!(answer.status, 500, "{}", answer.body);
        assert!(answer.body.contains("unknown variant"), "{}", answer.body);
    }
}

/// A gate object restarted while its storage cannot be read answers an error (the delivery
/// that asked is retried), not a fresh gate: a fresh gate's circuit is closed, so a failing
/// destination would be sent deliveries again, and the next write would store the circuit
/// closed. Once the storage reads again, the open circuit is still there.
fn a_gate_that_cannot_read_its_state_keeps_its_circuit(w: &World) {
    let destination = format!("http://127.0.0.1:9/{}", unique("unreadable-gate"));
    let ask = |operations: &str| {
        let path = format!("/__faults/ask?object=gate&for={destination}&via=rpc");
        w.faults.post(&path, &HeaderList::new(), operations.as_bytes())
    };
    let limits = r#"{"rate_per_sec":null,"failures":1,"cooldown_ms":600000,"max_cooldown_ms":600000}"#;
    let failed = ask(&format!(r#"[{{"Report":{{"limits":{limits},"answer":"failure","probe":false}}}}]"#));
    assert_eq!((failed.status, failed.json()), (200, json!([true])), "the failure opens the circuit: {}", failed.body);
    let circuit = |reply: &Reply| reply.json()[0]["circuit"].clone();
    let open = circuit(&ask(r#"["State"]"#));
    assert!(open["open"]["until_ms"].as_i64().is_some(), "{open}");

    ask(r#"["RestartFailingRead"]"#).expect(200, json!([null]));
    let unread = ask(r#"["State"]"#);
    assert_eq!(unread.status, 500, "a gate that could not read its state answered: {}", unread.body);
    assert!(unread.body.contains("storage read failed"), "{}", unread.body);
    assert_eq!(circuit(&ask(r#"["State"]"#)), open, "the circuit as stored before the failed read");
}
