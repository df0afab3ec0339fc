//! SPEC section 3: forwarding, retries with backoff, timeouts, `Retry-After`, dead letters.

use crate::harness::{now_secs, signed, stripe_body, unique, wait_status, wait_until, Action, WAIT};
use crate::{World, ADMIN_TOKEN, DESTINATION_SECRET, STANDARD_SECRET, STRIPE_SECRET};
use edgehook_core::headers::HeaderList;
use edgehook_core::providers::{Inbound, Provider, Scheme};
use edgehook_core::secret::{SecretEncoding, SecretSet};
use serde_json::json;
use std::thread;
use std::time::Duration;

pub const TESTS: &[crate::Test] = &[
    ("forwarded_body_is_byte_identical_and_signed", forwarded_body_is_byte_identical_and_signed),
    ("destination_failing_twice_gets_the_third_attempt", destination_failing_twice_gets_the_third_attempt),
    ("redirects_are_not_followed", redirects_are_not_followed),
    ("always_failing_destination_dead_letters_and_alerts", always_failing_destination_dead_letters_and_alerts),
    ("unreachable_destination_dead_letters", unreachable_destination_dead_letters),
    ("timeouts_are_retried", timeouts_are_retried),
    ("retry_after_is_honoured", retry_after_is_honoured),
    ("retry_after_is_honoured_when_the_circuit_opens", retry_after_is_honoured_when_the_circuit_opens),
    ("filtered_types_are_acknowledged_not_delivered", filtered_types_are_acknowledged_not_delivered),
    ("source_without_destination_completes", source_without_destination_completes),
    ("large_bodies_travel_through_r2", large_bodies_travel_through_r2),
    ("large_deliveries_are_signed_by_web_crypto", large_deliveries_are_signed_by_web_crypto),
    ("poison_messages_are_dead_lettered_alone", poison_messages_are_dead_lettered_alone),
    ("large_dead_letters_keep_their_body", large_dead_letters_keep_their_body),
    ("moved_messages_are_dead_lettered_marked_or_unconfirmed", moved_messages_are_dead_lettered_marked_or_unconfirmed),
    (
        "a_handed_over_letter_of_a_delivered_event_is_not_stored",
        a_handed_over_letter_of_a_delivered_event_is_not_stored,
    ),
    (
        "a_failed_recording_after_the_hand_over_delivers_nothing_again",
        a_failed_recording_after_the_hand_over_delivers_nothing_again,
    ),
    (
        "a_letter_that_cannot_be_stored_is_put_back_and_counted_once",
        a_letter_that_cannot_be_stored_is_put_back_and_counted_once,
    ),
];

/// Alone (`SOLO`): its crash cuts off every letter in the dead-letter consumer's batch, and
/// those of tests running beside it would come back a minute late.
pub const CRASH: crate::Test =
    ("a_crash_after_storing_a_letter_loses_no_alert", a_crash_after_storing_a_letter_loses_no_alert);

fn accept_stripe(w: &World, source: &str, id: &str, event_type: &str) -> Vec<u8> {
    accept_stripe_on(&w.main, source, id, event_type)
}

/// Sends a signed Stripe event of `event_type` to `source` on `worker`, and checks it is accepted.
fn accept_stripe_on(worker: &crate::harness::Worker, source: &str, id: &str, event_type: &str) -> Vec<u8> {
    let body = stripe_body(id, event_type);
    let reply = worker.post(
        &format!("/webhooks/{source}"),
        &signed(Provider::Stripe, STRIPE_SECRET, "", now_secs(), &body),
        &body,
    );
    reply.expect(200, json!({"status": "accepted", "id": id}));
    body
}

fn forwarded_body_is_byte_identical_and_signed(w: &World) {
    // Standard Webhooks carries the id in a header, so the body can be any bytes at all.
    let id = unique("msg");
    let mut body: Vec<u8> = (0u8..=255).collect();
    body.extend_from_slice(b"\r\n{\"type\": \"not really json\"}\x00");
    let mut headers = signed(Provider::Standard, STANDARD_SECRET, &id, now_secs(), &body);
    headers.0.retain(|(k, _)| k != "content-type");
    headers.push("Content-Type", "application/octet-stream; x=1");
    w.main.post("/webhooks/standard", &headers, &body).expect(200, json!({"status": "accepted", "id": id}));

    let got = w.dest.wait_deliveries("/standard", &id, 1, WAIT).remove(0);
    assert_eq!(got.body, body, "forwarded body differs from the received one");
    assert_eq!(got.header("content-type").as_deref(), Some("application/octet-stream; x=1"));
    assert_eq!(got.header("x-edgehook-source").as_deref(), Some("standard"));
    assert_eq!(got.header("x-edgehook-attempt").as_deref(), Some("1"));
    assert_eq!(got.header("x-edgehook-event-type"), None, "a body without a type has no type header");
    let ts: i64 = got.header("webhook-timestamp").unwrap().parse().unwrap();
    assert!((ts - now_secs()).abs() < 120);
    assert!(
        signed_by(&got, DESTINATION_SECRET),
        "the forwarded signature must verify under the Standard Webhooks scheme"
    );
    assert!(!signed_by(&got, STANDARD_SECRET));
}

/// Whether a delivery's Standard Webhooks signature verifies with `secret`.
fn signed_by(got: &crate::harness::Received, secret: &str) -> bool {
    let secrets = SecretSet::parse(secret, SecretEncoding::StandardWebhooks).unwrap();
    let scheme = Scheme::new(&secrets, 300);
    Provider::Standard.verify(Inbound::post(&got.headers, &got.body), scheme, now_secs()).is_ok()
}

/// The signature of a delivery with a large body (8 KB and up) is Web Crypto's HMAC, as in
/// verification (counted by the test build), and verifies as Rust's does; a small one's is
/// Rust's.
fn large_deliveries_are_signed_by_web_crypto(w: &World) {
    // The count is the source's: a source of its own (`fragile` also gets large bodies from
    // other tests, which made this fail when they overlapped).
    let counted = || crate::cli::web_crypto_count(&w.faults, "delivery:signed", "macs");
    for (size, by_web_crypto) in [(0, false), (64 * 1024, true)] {
        let id = unique("evt_signed");
        let body = format!(r#"{{"id":"{id}","type":"invoice.paid","padding":"{}"}}"#, "s".repeat(size)).into_bytes();
        let before = counted();
        let headers = signed(Provider::Stripe, STRIPE_SECRET, "", now_secs(), &body);
        w.faults.post("/webhooks/signed", &headers, &body).expect(200, json!({"status": "accepted", "id": id}));
        let got = w.dest.wait_deliveries("/signed", &id, 1, WAIT).remove(0);
        assert!(got.body == body, "{size} bytes: the body came back different");
        assert!(signed_by(&got, DESTINATION_SECRET), "{size} bytes: the signature does not verify");
        assert!(!signed_by(&got, STANDARD_SECRET));
        assert_eq!(counted() > before, by_web_crypto, "{size} bytes: signed by Web Crypto");
    }
}

fn destination_failing_twice_gets_the_third_attempt(w: &World) {
    let id = unique("evt");
    // The plan is per path, and this test owns /flaky.
    w.dest.plan("/flaky", vec![Action::Status(500), Action::Status(503)]);
    let body = accept_stripe(w, "flaky", &id, "invoice.paid");
    let got = w.dest.wait_deliveries("/flaky", &id, 3, WAIT);
    let attempts: Vec<u32> = got.iter().map(|r| r.attempt()).collect();
    assert_eq!(attempts, [1, 2, 3]);
    assert!(got.iter().all(|r| r.body == body));
    // Backoff: base 1 s, doubling (plus jitter), so the gaps are at least 1 s and 2 s.
    assert!(got[1].at - got[0].at >= Duration::from_millis(900), "{:?}", got[1].at - got[0].at);
    assert!(got[2].at - got[1].at >= Duration::from_millis(1900), "{:?}", got[2].at - got[1].at);
    // Completed: nothing more arrives, and the provider's retry is a duplicate.
    thread::sleep(Duration::from_secs(3));
    assert_eq!(w.dest.deliveries("/flaky", &id).len(), 3);
    let reply = w.main.post("/webhooks/flaky", &signed(Provider::Stripe, STRIPE_SECRET, "", now_secs(), &body), &body);
    reply.expect(200, json!({"status": "duplicate", "id": id}));
}

/// A 3xx is the destination's answer, not a way elsewhere (README, "Delivering"): the
/// attempt fails with that status and is retried, and the URL it points to is never asked, since
/// following it would send a signed event somewhere nobody configured.
fn redirects_are_not_followed(w: &World) {
    let id = unique("evt");
    let elsewhere = w.dest.url("/redirected-elsewhere");
    w.dest.plan("/redirected", vec![Action::StatusWithHeader(302, "Location", elsewhere)]);
    accept_stripe(w, "redirected", &id, "invoice.paid");
    let got = w.dest.wait_deliveries("/redirected", &id, 2, WAIT);
    assert_eq!(got.iter().map(|r| r.attempt()).collect::<Vec<_>>(), [1, 2]);
    let event = wait_status(&w.main, "redirected", &id, "delivered");
    assert_eq!(event["attempts"][0]["status"], 302, "{event}");
    assert!(w.dest.received("/redirected-elsewhere", |_| true).is_empty(), "the redirect was followed");
}

fn admin_get_from(worker: &crate::harness::Worker, path: &str) -> serde_json::Value {
    let reply = worker.get(path, &HeaderList::from([("authorization", &*format!("Bearer {ADMIN_TOKEN}"))]));
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.json()
}

/// The stored dead letter of `source`/`id` with its body.
fn dead_letter_detail(worker: &crate::harness::Worker, source: &str, id: &str) -> (serde_json::Value, Option<Vec<u8>>) {
    use base64::Engine;
    let detail = admin_get_from(worker, &format!("/admin/dead-letters/{source}/{id}"));
    assert_eq!(detail["body_omitted"], false, "small letters are shown whole");
    let body = detail["body_base64"].as_str().map(|b| base64::engine::general_purpose::STANDARD.decode(b).unwrap());
    (detail, body)
}

/// Waits until the dead-letter listing at `path` has an entry matching `pick`, and returns it.
fn wait_dead_letter(
    worker: &crate::harness::Worker,
    path: &str,
    pick: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let mut found = serde_json::Value::Null;
    wait_until(WAIT, &format!("a dead letter in {path}"), || {
        let list = admin_get_from(worker, path);
        found = list["dead_letters"].as_array().unwrap().iter().find(|d| pick(d)).cloned().unwrap_or_default();
        !found.is_null()
    });
    found
}

fn always_failing_destination_dead_letters_and_alerts(w: &World) {
    let id = unique("evt");
    w.dest.always("/doomed", 500);
    let body = accept_stripe(w, "doomed", &id, "charge.failed");
    let got = w.dest.wait_deliveries("/doomed", &id, 3, WAIT);
    assert_eq!(got.iter().map(|r| r.attempt()).collect::<Vec<_>>(), [1, 2, 3]);

    let alerts = w.dest.wait_for("/alerts", 1, WAIT, |r| String::from_utf8_lossy(&r.body).contains(&id));
    let alert: serde_json::Value = serde_json::from_slice(&alerts[0].body).unwrap();
    let text = alert["text"].as_str().unwrap();
    assert!(text.contains(&format!("doomed/{id}")) && text.contains("3 attempt") && text.contains("500"), "{text}");

    let stored = wait_dead_letter(&w.main, "/admin/dead-letters?source=doomed", |d| d["id"] == id.as_str());
    assert_eq!(stored["source"], "doomed");
    assert_eq!(stored["type"], "charge.failed");
    assert_eq!(stored["attempts"], 3);
    assert_eq!(stored["error"], "destination answered 500");
    let (detail, stored_body) = dead_letter_detail(&w.main, "doomed", &id);
    assert_eq!(detail["content_type"], "application/json");
    assert!(stored_body.as_deref() == Some(body.as_slice()), "the dead letter keeps the exact body");

    // No fourth attempt, and the event stays known: a provider retry is a duplicate.
    thread::sleep(Duration::from_secs(3));
    assert_eq!(w.dest.deliveries("/doomed", &id).len(), 3);
    let reply = w.main.post("/webhooks/doomed", &signed(Provider::Stripe, STRIPE_SECRET, "", now_secs(), &body), &body);
    reply.expect(200, json!({"status": "duplicate", "id": id}));
}

fn unreachable_destination_dead_letters(w: &World) {
    let id = unique("evt");
    accept_stripe(w, "unreachable", &id, "invoice.paid");
    let stored = wait_dead_letter(&w.main, "/admin/dead-letters?source=unreachable", |d| d["id"] == id.as_str());
    assert_eq!(stored["attempts"], 2);
    let error = stored["error"].as_str().unwrap();
    assert!(error.starts_with("network error"), "{error}");
    assert!(!error.contains("nothing-listens-here"), "destination URLs are never repeated in errors: {error}");
}

fn timeouts_are_retried(w: &World) {
    let id = unique("evt");
    // The first attempt hangs past `delivery_timeout_secs` (2 s); the second is answered.
    w.dest.plan("/slow", vec![Action::Hang(Duration::from_secs(6))]);
    accept_stripe(w, "slow", &id, "invoice.paid");
    let got = w.dest.wait_deliveries("/slow", &id, 2, WAIT);
    eprintln!(
        "timeouts_are_retried: attempts {:?} gap {:?}",
        got.iter().map(|r| r.attempt()).collect::<Vec<_>>(),
        got[1].at - got[0].at
    );
    assert_eq!(got[1].attempt(), 2);
    assert!(
        got[1].at - got[0].at >= Duration::from_secs(2),
        "the retry came before the timeout: {:?}",
        got[1].at - got[0].at
    );
    // Not retried once delivered: every request the destination saw is an attempt edgehook
    // recorded, one of them (the last) a success. (Counted against the record rather than as
    // "two": on a loaded machine the second answer, too, can miss the 2-second timeout.)
    let event = wait_status(&w.main, "slow", &id, "delivered");
    thread::sleep(Duration::from_secs(6));
    let attempts = event["attempts"].as_array().unwrap();
    let ok = |a: &serde_json::Value| a["status"].as_u64().is_some_and(|s| (200..300).contains(&s));
    assert_eq!(attempts.iter().filter(|a| ok(a)).count(), 1, "{event}");
    assert!(ok(attempts.last().unwrap()), "{event}");
    assert_eq!(w.dest.deliveries("/slow", &id).len(), attempts.len(), "a delivered event is not retried: {event}");
}

fn retry_after_is_honoured(w: &World) {
    // Backoff alone would be about 1 s; the destination asked for 4.
    attempts_after_retry_after(w, "throttled");
}

/// Also when the failure opens the circuit breaker: the event waits for the longer of the
/// breaker's cooldown (1 s here) and what the destination asked.
fn retry_after_is_honoured_when_the_circuit_opens(w: &World) {
    let attempts = attempts_after_retry_after(w, "throttled-open");
    assert_eq!(attempts, [1, 1], "the circuit's failure used no attempt");
}

/// Sends an event to `source`, whose destination answers its first request 429 with
/// `Retry-After: 4`; checks that the second request came no sooner, and answers the two
/// requests' attempt numbers.
fn attempts_after_retry_after(w: &World, source: &str) -> Vec<u32> {
    let (id, path) = (unique("evt"), format!("/{source}"));
    w.dest.plan(&path, vec![Action::StatusWithHeader(429, "Retry-After", "4".into())]);
    accept_stripe(w, source, &id, "invoice.paid");
    let got = w.dest.wait_deliveries(&path, &id, 2, WAIT);
    let gap = got[1].at - got[0].at;
    assert!(gap >= Duration::from_millis(3900), "Retry-After ignored: retried after {gap:?}");
    got.iter().map(|r| r.attempt()).collect()
}

fn filtered_types_are_acknowledged_not_delivered(w: &World) {
    let skipped = unique("evt");
    let body = stripe_body(&skipped, "charge.succeeded");
    let headers = signed(Provider::Stripe, STRIPE_SECRET, "", now_secs(), &body);
    // Acknowledged as SPEC's table says, like any event (the record says `filtered`).
    w.main.post("/webhooks/filtered", &headers, &body).expect(200, json!({"status": "accepted", "id": skipped}));
    w.main.post("/webhooks/filtered", &headers, &body).expect(200, json!({"status": "duplicate", "id": skipped}));
    let kept = unique("evt");
    accept_stripe(w, "filtered", &kept, "invoice.payment_failed");
    let got = w.dest.wait_deliveries("/filtered", &kept, 1, WAIT);
    assert_eq!(got[0].header("x-edgehook-event-type").as_deref(), Some("invoice.payment_failed"));
    // The consumer records its decision: once the record says `filtered`, it has been made.
    wait_status(&w.main, "filtered", &skipped, "filtered");
    assert!(w.dest.deliveries("/filtered", &skipped).is_empty(), "a filtered event was delivered");
}

fn source_without_destination_completes(w: &World) {
    let id = unique("evt");
    let body = accept_stripe(w, "nodest", &id, "invoice.paid");
    let reply = w.main.post("/webhooks/nodest", &signed(Provider::Stripe, STRIPE_SECRET, "", now_secs(), &body), &body);
    reply.expect(200, json!({"status": "duplicate", "id": id}));
}

fn large_bodies_travel_through_r2(w: &World) {
    // Over the 128 KB queue message limit, so the body goes through R2 (a claim check).
    let id = unique("evt");
    let padding: String = (0..300_000).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
    let body = format!(r#"{{"id":"{id}","type":"invoice.paid","padding":"{padding}"}}"#).into_bytes();
    let reply = w.main.post("/webhooks/big", &signed(Provider::Stripe, STRIPE_SECRET, "", now_secs(), &body), &body);
    reply.expect(200, json!({"status": "accepted", "id": id}));
    let got = w.dest.wait_deliveries("/big", &id, 1, WAIT);
    assert_eq!(got[0].body.len(), body.len());
    assert!(got[0].body == body, "the claim-checked body came back different");
}

fn poison_messages_are_dead_lettered_alone(w: &World) {
    // Two poison messages and a healthy event, in the same consumer batch as far as timing goes.
    let missing = unique("evt_missing_body");
    let poison = |query: &str| {
        let reply = w.faults.post(&format!("/__faults/poison?{query}"), &HeaderList::new(), b"");
        assert_eq!(reply.status, 200, "{}", reply.body);
    };
    // Told apart from other tests' poison by its text.
    let text = unique("not_an_envelope");
    poison(&format!("kind=garbage&text={text}"));
    poison(&format!("kind=missing-body&source=fragile&id={missing}"));
    let healthy = unique("evt");
    let body = stripe_body(&healthy, "invoice.paid");
    let reply =
        w.faults.post("/webhooks/fragile", &signed(Provider::Stripe, STRIPE_SECRET, "", now_secs(), &body), &body);
    reply.expect(200, json!({"status": "accepted", "id": healthy}));

    w.dest.wait_deliveries("/fragile", &healthy, 1, WAIT);
    let stored = wait_dead_letter(&w.faults, "/admin/dead-letters?source=fragile", |d| d["id"] == missing.as_str());
    assert_eq!(stored["error"], "body missing from storage");
    assert_eq!(stored["attempts"], 1);
    let garbage = wait_dead_letter(&w.faults, "/admin/dead-letters?source=_poison", |d| {
        d["source"] == "_poison"
            && dead_letter_detail(&w.faults, "_poison", d["id"].as_str().unwrap()).1 == Some(text.clone().into_bytes())
    });
    assert_eq!(garbage["error"], "undecodable queue message: not an edgehook envelope");
    let garbage_id = garbage["id"].as_str().unwrap();
    assert!(w.dest.deliveries("/fragile", &missing).is_empty());

    // No replay takes a poison letter; an operator who has read it deletes it.
    let path = format!("/admin/dead-letters/_poison/{garbage_id}");
    w.faults.admin("DELETE", &path, b"").expect(200, json!({"deleted": 1, "source": "_poison", "id": garbage_id}));
    assert_eq!(w.faults.admin("GET", &path, b"").status, 404);
    w.faults.admin("DELETE", &path, b"").expect(404, json!({"error": "not_found"}));
    let listed = w.faults.admin_json("/admin/dead-letters?source=_poison");
    assert!(!listed["dead_letters"].as_array().unwrap().iter().any(|d| d["id"] == garbage_id), "{listed}");
    w.faults.admin("DELETE", "/admin/dead-letters/Not%20A%20Source/x", b"").expect(404, json!({"error": "not_found"}));
}

/// Arms a fault on the test worker (or makes it act, for `moved` and `copies`).
fn arm(w: &World, path: &str) {
    let reply = w.faults.post(path, &HeaderList::new(), b"");
    assert_eq!(reply.status, 200, "{path}: {}", reply.body);
}

/// Every R2 listing follows its cursor: the admin API's dead letters page by page, the
/// heartbeat's count of them, and a replay of a source's letters. With pages of two (a test
/// knob), five letters take three pages. Alone (`SOLO`): the page size holds for every listing
/// in the test worker, and the replay takes every `fragile` letter left by earlier tests.
pub fn dead_letter_listings_follow_cursors(w: &World) {
    let ids: Vec<String> = (0..5).map(|_| unique("evt")).collect();
    for id in &ids {
        arm(w, &format!("/__faults/moved?source=fragile&id={id}"));
    }
    arm(w, "/__faults/list-page?n=2");
    let pages = || {
        let mut pages: Vec<serde_json::Value> = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let path = match &cursor {
                Some(c) => format!(
                    "/admin/dead-letters?source=fragile&cursor={}",
                    percent_encoding::utf8_percent_encode(c, percent_encoding::NON_ALPHANUMERIC)
                ),
                None => "/admin/dead-letters?source=fragile".to_owned(),
            };
            let page = admin_get_from(&w.faults, &path);
            cursor = page["cursor"].as_str().map(str::to_owned);
            pages.push(page);
            if cursor.is_none() || pages.len() > 100 {
                return pages;
            }
        }
    };
    let listed = |pages: &[serde_json::Value]| -> Vec<String> {
        let letters = pages.iter().flat_map(|p| p["dead_letters"].as_array().unwrap());
        letters.map(|d| d["id"].as_str().unwrap().to_owned()).collect()
    };
    let mut all = Vec::new();
    wait_until(WAIT, "the five letters to be stored", || {
        all = pages();
        let ids_listed = listed(&all);
        ids.iter().all(|id| ids_listed.contains(id))
    });
    assert!(all.len() >= 3, "five letters in pages of two: {all:?}");
    assert!(all.iter().all(|p| p["dead_letters"].as_array().unwrap().len() <= 2), "{all:?}");
    let mut seen = listed(&all);
    let before = seen.len();
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), before, "a letter listed twice: {all:?}");

    // The heartbeat counts every letter in the bucket, two at a time.
    w.faults.scheduled();
    wait_until(WAIT, "the heartbeat to count the letters", || {
        w.faults.admin_json("/admin/health")["dead_letters"].as_u64().is_some_and(|n| n >= ids.len() as u64)
    });

    // A replay of the source takes every letter, page after page.
    let reply = w.faults.admin("POST", "/admin/dead-letters/replay?source=fragile", b"");
    assert_eq!(reply.status, 202, "{}", reply.body);
    let answer = reply.json();
    assert!(answer["replayed"].as_u64().unwrap() >= ids.len() as u64, "{answer}");
    assert_eq!(answer["more"], false, "{answer}");
    for id in &ids {
        w.dest.wait_deliveries("/fragile", id, 1, WAIT);
    }
    let left = listed(&pages());
    assert!(ids.iter().all(|id| !left.contains(id)), "replayed letters still stored: {left:?}");
    arm(w, "/__faults/list-page");
}

/// The id of an event accepted by the test worker's `fragile` source and delivered.
fn delivered_on_fragile(w: &World) -> String {
    let id = unique("evt");
    accept_stripe_on(&w.faults, "fragile", &id, "invoice.paid");
    wait_status(&w.faults, "fragile", &id, "delivered");
    id
}

/// What the queue moves to the dead-letter queue on its own, after the event consumer failed on
/// a message `max_retries` times: a letter when that message carried its event (whose record is
/// then marked dead), nothing for a stray copy of an event already delivered, and, when the
/// record cannot be marked by the queue's second-to-last delivery (its shard full, say), a
/// letter stored unconfirmed rather than lost when the queue deletes the message.
fn moved_messages_are_dead_lettered_marked_or_unconfirmed(w: &World) {
    let fault = |path: &str| arm(w, path);
    let record =
        |id: &str| w.faults.get(&format!("/__faults/record?source=fragile&id={id}"), &HeaderList::new()).json();
    // The consumer's patience is the dead-letter queue's `max_retries`, as configured.
    let config = std::fs::read_to_string(crate::harness::root().join("wrangler.toml")).unwrap();
    // Each consumer's settings: the lines after its table header, up to the next table.
    let consumers: Vec<Vec<&str>> = config
        .split("queues.consumers]]")
        .skip(1)
        .map(|block| block.lines().skip(1).take_while(|l| !l.starts_with('[')).collect())
        .collect();
    let dead_letters: Vec<&Vec<&str>> = consumers
        .iter()
        .filter(|c| c.iter().any(|l| l.starts_with("queue = ") && l.ends_with("dead-letters\"")))
        .collect();
    assert_eq!(dead_letters.len(), 3, "a dead-letter consumer per environment");
    let want = format!("max_retries = {}", edgehook_core::retry::DEAD_LETTER_MAX_RETRIES);
    for settings in dead_letters {
        assert!(settings.contains(&want.as_str()), "{settings:?}");
    }

    // A stray copy of a delivered event, moved: not a dead letter.
    let delivered = delivered_on_fragile(w);
    fault(&format!("/__faults/moved?source=fragile&id={delivered}"));
    // An event's only message, moved before a consumer took it: dead, and marked so.
    let lost = unique("evt");
    fault(&format!("/__faults/moved?source=fragile&id={lost}"));
    let stored = wait_dead_letter(&w.faults, "/admin/dead-letters?source=fragile", |d| d["id"] == lost.as_str());
    assert_eq!(stored["error"], "the event consumer kept failing on this message (queue retries exhausted)");
    assert_eq!(stored["unconfirmed"], false, "{stored}");
    // Marked dead: a later copy of it is not delivered (checked once an event sent after it was).
    fault(&format!("/__faults/copies?source=fragile&id={lost}&n=1"));
    let after = unique("evt");
    accept_stripe_on(&w.faults, "fragile", &after, "invoice.paid");
    w.dest.wait_deliveries("/fragile", &after, 1, WAIT);
    thread::sleep(Duration::from_secs(2));
    assert!(w.dest.deliveries("/fragile", &lost).is_empty(), "a copy of a dead event was delivered");

    // Its record cannot be marked, on the queue's second-to-last delivery (the first, here):
    // stored unconfirmed, and alerted on as such; its record untouched.
    let unmarkable = unique("evt");
    fault(&format!("/__faults/dead-letter-retries?key=fragile:{unmarkable}&n=1"));
    fault(&format!("/__faults/mark-dead?key=fragile:{unmarkable}"));
    fault(&format!("/__faults/moved?source=fragile&id={unmarkable}"));
    let stored = wait_dead_letter(&w.faults, "/admin/dead-letters?source=fragile", |d| d["id"] == unmarkable.as_str());
    assert_eq!(stored["unconfirmed"], true, "{stored}");
    let alerts = w.dest.wait_for("/alerts", 1, WAIT, |r| String::from_utf8_lossy(&r.body).contains(&unmarkable));
    let alert: serde_json::Value = serde_json::from_slice(&alerts[0].body).unwrap();
    assert!(alert["text"].as_str().unwrap().contains("unconfirmed"), "{alert}");
    assert_eq!(alert["dead_letter"]["unconfirmed"], true, "{alert}");
    let (detail, body) = dead_letter_detail(&w.faults, "fragile", &unmarkable);
    assert_eq!(detail["dead_letter"]["unconfirmed"], true, "{detail}");
    assert_eq!(body.as_deref(), Some(format!(r#"{{"id":"{unmarkable}"}}"#).as_bytes()), "the letter keeps its body");

    // The stray copy, moved before both, left nothing.
    let listed = admin_get_from(&w.faults, "/admin/dead-letters?source=fragile");
    let ids: Vec<&str> = listed["dead_letters"].as_array().unwrap().iter().filter_map(|d| d["id"].as_str()).collect();
    assert!(!ids.contains(&delivered.as_str()), "a stray copy was stored as a dead letter: {ids:?}");
    assert_eq!(record(&delivered)["status"], "delivered");

    // Another stray copy of the delivered event, moved while its shard cannot write: stored
    // unconfirmed. Replaying it removes it and delivers nothing; the unmarkable one (no record
    // says it was delivered) is replayed.
    fault(&format!("/__faults/dead-letter-retries?key=fragile:{delivered}&n=1"));
    fault(&format!("/__faults/mark-dead?key=fragile:{delivered}"));
    fault(&format!("/__faults/moved?source=fragile&id={delivered}"));
    let stray = wait_dead_letter(&w.faults, "/admin/dead-letters?source=fragile", |d| d["id"] == delivered.as_str());
    assert_eq!(stray["unconfirmed"], true, "{stray}");
    let replay = |id: &str| {
        let reply = w.faults.admin("POST", &format!("/admin/dead-letters/replay?source=fragile&id={id}"), b"");
        assert_eq!(reply.status, 202, "{}", reply.body);
        reply.json()["replayed"].as_u64().unwrap()
    };
    assert_eq!(replay(&delivered), 0, "an unconfirmed letter of a delivered event was replayed");
    let gone = w.faults.admin("GET", &format!("/admin/dead-letters/fragile/{delivered}"), b"");
    assert_eq!(gone.status, 404, "{}", gone.body);
    assert_eq!(replay(&unmarkable), 1);
    w.dest.wait_deliveries("/fragile", &unmarkable, 1, WAIT);
    thread::sleep(Duration::from_secs(2));
    assert_eq!(w.dest.deliveries("/fragile", &delivered).len(), 1, "the delivered event was delivered again");
}

/// The dead-letter consumer dies having stored a letter the event consumer handed over, before
/// acknowledging it: the queue delivers it again a minute later, and the letter, found stored, is
/// not stored or alerted on again. Its one alert went out before the store. (It used to go out
/// after: a crash in between lost it, and nobody was told of the dead event.)
fn a_crash_after_storing_a_letter_loses_no_alert(w: &World) {
    let id = unique("evt");
    w.dest.always("/handed", 500);
    arm(w, &format!("/__faults/crash?at=stored&id={id}"));
    accept_stripe_on(&w.faults, "handed", &id, "invoice.paid");
    wait_dead_letter(&w.faults, "/admin/dead-letters?source=handed", |d| d["id"] == id.as_str());
    let key = format!("dead-letters/handed/{id}");
    wait_until(WAIT, "the dead-letter consumer's crash", || {
        w.faults.logs().contains(&format!("injected fault: the dead-letter consumer dies having stored {key}"))
    });
    wait_until(Duration::from_secs(150), "the letter's second delivery", || {
        w.faults.logs().contains(&format!("dead letter {key} is stored already"))
    });
    thread::sleep(Duration::from_secs(2));
    let alerts = w.dest.received("/alerts", |r| String::from_utf8_lossy(&r.body).contains(&id));
    assert_eq!(alerts.len(), 1, "alerts on the letter");
    wait_status(&w.faults, "handed", &id, "dead");
}

/// A letter the bucket will not take goes back on the dead-letter queue, to come back a minute
/// later (`RETRY_SECS`): then it is stored, alerted on once and counted as dead-lettered once.
/// A letter the queue moved is counted by the dead-letter consumer, which used to count it only
/// when stored at the first try: the copy it put back passed for a letter the event consumer had
/// handed over (and counted), and was never counted. A handed-over letter is counted where it was
/// handed over (here a fault stands in for the event consumer, so nowhere), not again.
fn a_letter_that_cannot_be_stored_is_put_back_and_counted_once(w: &World) {
    let fault = |path: &str| arm(w, path);
    // Types of their own, so that the counts below are these letters' alone.
    let moved = (unique("evt"), unique("letter.moved"));
    let handed_over = (unique("evt"), unique("letter.handed"));
    for (id, _) in [&moved, &handed_over] {
        fault(&format!("/__faults/store-letter?key=fragile:{id}"));
    }
    fault(&format!("/__faults/moved?source=fragile&id={}&type={}", moved.0, moved.1));
    fault(&format!(
        "/__faults/moved?source=fragile&id={0}&type={1}&handed-over-by=msg-{0}",
        handed_over.0, handed_over.1
    ));
    let count = |event_type: &str| {
        let labels = format!(r#"source="fragile",type="{event_type}",outcome="dead_lettered",reason="""#);
        crate::harness::series(&w.faults.admin("GET", "/admin/metrics", b"").body, &labels)
    };
    for (id, event_type) in [&moved, &handed_over] {
        let path = "/admin/dead-letters?source=fragile";
        wait_until(Duration::from_secs(150), &format!("the letter of {id}, put back"), || {
            admin_get_from(&w.faults, path)["dead_letters"].as_array().unwrap().iter().any(|d| d["id"] == id.as_str())
        });
        let (detail, body) = dead_letter_detail(&w.faults, "fragile", id);
        assert_eq!(detail["dead_letter"]["type"], event_type.as_str(), "{detail}");
        assert_eq!(detail["dead_letter"]["unconfirmed"], false, "{detail}");
        assert_eq!(body.as_deref(), Some(format!(r#"{{"id":"{id}"}}"#).as_bytes()), "the letter keeps its body");
        let put_back = format!("could not store dead letter dead-letters/fragile/{id}, putting it back");
        assert!(w.faults.logs().contains(&put_back), "the first store did not fail: {id}");
    }
    wait_until(WAIT, "the moved letter to be counted", || count(&moved.1).is_some());
    thread::sleep(Duration::from_secs(3));
    for (id, _) in [&moved, &handed_over] {
        let alerts = w.dest.received("/alerts", |r| String::from_utf8_lossy(&r.body).contains(id.as_str()));
        assert_eq!(alerts.len(), 1, "alerts on {id}");
    }
    assert_eq!(count(&moved.1), Some(1), "the moved letter is counted once");
    assert_eq!(count(&handed_over.1), None, "the handed-over letter was counted again");
}

/// The event consumer hands an event over to the dead-letter queue after its last attempt; should
/// the queue report a failure although it took the letter, the message is retried and may
/// deliver the event before the dead-letter consumer reads the letter. That letter is then not
/// stored, nor alerted on. A handed-over letter whose event has no record is stored as usual.
fn a_handed_over_letter_of_a_delivered_event_is_not_stored(w: &World) {
    let fault = |path: &str| arm(w, path);
    let delivered = delivered_on_fragile(w);
    fault(&format!("/__faults/moved?source=fragile&id={delivered}&handed-over-by=msg-{delivered}"));
    let dead = unique("evt");
    fault(&format!("/__faults/moved?source=fragile&id={dead}&handed-over-by=msg-{dead}"));

    wait_until(WAIT, "the letter of the delivered event to be turned away", || {
        w.faults
            .logs()
            .contains(&format!("fragile:{delivered} was handed over to the dead letters and is delivered now"))
    });
    let gone = w.faults.admin("GET", &format!("/admin/dead-letters/fragile/{delivered}"), b"");
    assert_eq!(gone.status, 404, "{}", gone.body);
    let stored = wait_dead_letter(&w.faults, "/admin/dead-letters?source=fragile", |d| d["id"] == dead.as_str());
    assert_eq!(stored["error"], "fault: handed over", "{stored}");
    w.dest.wait_for("/alerts", 1, WAIT, |r| String::from_utf8_lossy(&r.body).contains(&dead));
    let alerted = w.dest.received("/alerts", |r| String::from_utf8_lossy(&r.body).contains(&delivered));
    assert!(alerted.is_empty(), "an alert for a delivered event");
    assert_eq!(w.dest.deliveries("/fragile", &delivered).len(), 1);
}

/// The event consumer hands an event over to the dead-letter queue, then fails to record it dead
/// (its shard unavailable): the message is acknowledged all the same, since a retry would deliver
/// the event again, and the dead-letter consumer records the event dead once it stored the
/// letter, trying again (without storing or alerting again) until it can.
fn a_failed_recording_after_the_hand_over_delivers_nothing_again(w: &World) {
    let id = unique("evt");
    w.dest.always("/handed", 500);
    // Both recordings fail once: the event consumer's (every try) and the dead-letter consumer's
    // first, which it tries again a minute later.
    for fault in ["finish-dead", "mark-dead"] {
        let reply = w.faults.post(&format!("/__faults/{fault}?key=handed:{id}"), &HeaderList::new(), b"");
        assert_eq!(reply.status, 200, "{}", reply.body);
    }
    accept_stripe_on(&w.faults, "handed", &id, "invoice.paid");
    let stored = wait_dead_letter(&w.faults, "/admin/dead-letters?source=handed", |d| d["id"] == id.as_str());
    assert_eq!(stored["unconfirmed"], false, "{stored}");
    // Past the event consumer's retry of a failed message (30 s): still one delivery, though the
    // record, unrecorded, still names that message as its holder.
    thread::sleep(Duration::from_secs(40));
    assert_eq!(w.dest.deliveries("/handed", &id).len(), 1, "the event was delivered again");
    let status = admin_get_from(&w.faults, &format!("/admin/events/handed/{id}"))["status"].clone();
    assert_ne!(status, "dead", "neither recording failed");
    // Recorded dead by the dead-letter consumer's second try; one letter, one alert.
    wait_status(&w.faults, "handed", &id, "dead");
    let alerts = w.dest.wait_for("/alerts", 1, WAIT, |r| String::from_utf8_lossy(&r.body).contains(&id));
    assert_eq!(alerts.len(), 1, "alerted on twice");
    assert_eq!(w.dest.deliveries("/handed", &id).len(), 1, "the event was delivered again");
}

fn large_dead_letters_keep_their_body(w: &World) {
    // Claim-checked (over the queue's message limit), dead after its only attempt: the stored
    // dead letter carries the body itself, not a pointer that a lifecycle rule may expire.
    let id = unique("evt");
    w.dest.always("/bigdoomed", 500);
    let body = format!(r#"{{"id":"{id}","type":"invoice.paid","padding":"{}"}}"#, "z".repeat(200_000)).into_bytes();
    let reply =
        w.main.post("/webhooks/bigdoomed", &signed(Provider::Stripe, STRIPE_SECRET, "", now_secs(), &body), &body);
    reply.expect(200, json!({"status": "accepted", "id": id}));
    let stored = wait_dead_letter(&w.main, "/admin/dead-letters?source=bigdoomed", |d| d["id"] == id.as_str());
    assert_eq!(stored["attempts"], 1);
    let (_, stored_body) = dead_letter_detail(&w.main, "bigdoomed", &id);
    assert!(stored_body.as_deref() == Some(body.as_slice()), "the large dead letter lost its body");
}
