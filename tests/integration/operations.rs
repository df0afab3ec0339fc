//! SPEC section 4, through the running worker: capture and replay, dead-letter replay, kill
//! switches, metrics, in-worker handlers, retention, and health with its alerts.

use crate::harness::{
    ids_in_shard_of, now_secs, series, signed, stripe_body, unique, wait_status, wait_until, Action, Worker, WAIT,
};
use crate::{World, STANDARD_SECRET, STRIPE_SECRET};
use edgehook_core::providers::Provider;
use serde_json::{json, Value};
use std::thread;
use std::time::Duration;

pub const TESTS: &[crate::Test] = &[
    ("captured_events_keep_headers_body_and_attempts", captured_events_keep_headers_body_and_attempts),
    ("a_resumption_is_not_held_again_by_stale_switches", a_resumption_is_not_held_again_by_stale_switches),
    ("captured_headers_never_hold_secrets", captured_headers_never_hold_secrets),
    ("bodies_too_large_to_show_are_left_out_not_lost", bodies_too_large_to_show_are_left_out_not_lost),
    ("types_with_spaces_are_switched_off_by_name", types_with_spaces_are_switched_off_by_name),
    ("event_listing_filters_and_pages_newest_first", event_listing_filters_and_pages_newest_first),
    ("one_event_is_replayed_and_recorded_as_a_replay", one_event_is_replayed_and_recorded_as_a_replay),
    ("filtered_set_is_replayed", filtered_set_is_replayed),
    ("dead_letter_is_inspected_and_replayed_to_a_recovered_destination", dead_letter_is_inspected_and_replayed),
    ("replays_stop_at_their_limit_and_say_more_are_left", replays_stop_at_their_limit_and_say_more_are_left),
    ("paused_type_holds_events_and_releases_all_in_order", paused_type_holds_events_and_releases_all_in_order),
    ("a_resumed_event_makes_the_attempt_it_was_held_at", a_resumed_event_makes_the_attempt_it_was_held_at),
    ("dropped_type_is_recorded_not_delivered", dropped_type_is_recorded_not_delivered),
    ("filtered_and_duplicate_events_are_recorded_and_counted", filtered_and_duplicate_events_are_recorded_and_counted),
    ("metrics_count_outcomes_in_prometheus_and_json", metrics_count_outcomes_in_prometheus_and_json),
    ("in_worker_handler_processes_and_retries", in_worker_handler_processes_and_retries),
    ("admin_api_refuses_bad_input_clearly", admin_api_refuses_bad_input_clearly),
    ("captures_expire_after_retention_and_old_bodies_are_swept", captures_expire_and_old_bodies_are_swept),
];

/// Tests that must run alone on their instance (see `main`).
/// Alone: it uses the `chaos` instance, whose queue the crash test's killed batches share.
pub const SHARD_HEALTH: crate::Test =
    ("a_shard_past_its_storage_limit_degrades_health", a_shard_past_its_storage_limit_degrades_health);

pub const SOLO: &[crate::Test] = &[
    (
        "hanging_destination_degrades_health_alerts_once_and_recovers",
        hanging_destination_degrades_health_alerts_once_and_recovers,
    ),
    ("a_lost_heartbeat_probe_does_not_keep_health_degraded", a_lost_heartbeat_probe_does_not_keep_health_degraded),
    ("a_failed_measurement_degrades_health", a_failed_measurement_degrades_health),
    // Last of those on `ops`: its event waits there for good, and keeps health degraded.
    ("events_of_a_removed_source_degrade_health", events_of_a_removed_source_degrade_health),
];

fn send_stripe(worker: &Worker, source: &str, id: &str, event_type: &str) -> Vec<u8> {
    let body = stripe_body(id, event_type);
    let reply = worker.post(
        &format!("/webhooks/{source}"),
        &signed(Provider::Stripe, STRIPE_SECRET, "", now_secs(), &body),
        &body,
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    body
}

fn listed_ids(worker: &Worker, query: &str) -> Vec<String> {
    let list = worker.admin_json(&format!("/admin/events?{query}"));
    list["events"].as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap().to_owned()).collect()
}

fn set_flag(worker: &Worker, source: &str, pattern: &str, mode: &str) -> Value {
    let reply = worker.admin(
        "PUT",
        &format!("/admin/flags/{source}/{pattern}"),
        json!({ "mode": mode }).to_string().as_bytes(),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.json()
}

fn captured_events_keep_headers_body_and_attempts(w: &World) {
    let id = unique("evt");
    w.dest.plan("/captured", vec![Action::Status(500)]);
    let body = send_stripe(&w.main, "captured", &id, "invoice.paid");
    w.dest.wait_deliveries("/captured", &id, 2, WAIT);
    let event = wait_status(&w.main, "captured", &id, "delivered");
    assert_eq!(event["type"], "invoice.paid");
    assert_eq!(event["content_type"], "application/json");
    assert_eq!(event["body"].as_str().unwrap().as_bytes(), body.as_slice(), "the exact body");
    let headers = event["headers"].as_array().unwrap();
    let header = |name: &str| {
        headers.iter().find(|h| h["name"].as_str().unwrap().eq_ignore_ascii_case(name)).map(|h| h["value"].clone())
    };
    assert!(header("stripe-signature").is_some_and(|v| v.as_str().unwrap().contains("v1=")), "{headers:?}");
    let attempts = event["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2, "{attempts:?}");
    assert_eq!((attempts[0]["attempt"].clone(), attempts[0]["status"].clone()), (json!(1), json!(500)));
    assert_eq!(attempts[0]["error"], "destination answered 500");
    assert_eq!((attempts[1]["attempt"].clone(), attempts[1]["status"].clone()), (json!(2), json!(200)));
    assert_eq!(attempts[1]["error"], Value::Null);
    assert!(attempts[1]["latency_ms"].as_u64().is_some() && attempts[1]["at_ms"].as_i64().unwrap() > 0);
    assert_eq!(event["replays"], 0);
    assert_eq!(event["body_omitted"], false);
}

fn captured_headers_never_hold_secrets(w: &World) {
    // GitLab sends its secret itself as a header.
    let id = unique("gl");
    let body = format!(r#"{{"object_kind":"push","id":"{id}"}}"#).into_bytes();
    let secret = w.cli_vars.iter().find(|(k, _)| k == "WEBHOOK_SECRET_CLI_GITLAB").unwrap().1.clone();
    let headers = edgehook_core::headers::HeaderList::from([
        ("X-Gitlab-Token", secret.as_str()),
        ("X-Gitlab-Event", "Push Hook"),
        ("X-Gitlab-Event-UUID", id.as_str()),
        ("content-type", "application/json"),
        ("authorization", "Bearer not-for-capture"),
    ]);
    let reply = w.main.post("/webhooks/cli-gitlab", &headers, &body);
    assert_eq!(reply.status, 200, "{}", reply.body);
    let event = wait_status(&w.main, "cli-gitlab", &id, "delivered");
    let text = event["headers"].to_string();
    assert!(!text.contains(&secret) && !text.contains("not-for-capture"), "{text}");
    assert!(text.contains("<redacted>") && text.contains("Push Hook"), "{text}");
}

/// The admin API leaves out a body over 1 MiB (it would copy it several times over, in an
/// isolate of 128 MB) and says so; the event and its dead letter are still whole, and a replay
/// delivers every byte.
fn bodies_too_large_to_show_are_left_out_not_lost(w: &World) {
    let id = unique("delivery");
    let mut body = br#"{"action":"opened","padding":""#.to_vec();
    body.resize(2 * 1024 * 1024 - 2, b'x');
    body.extend_from_slice(br#""}"#);
    w.dest.always("/hugedoomed", 500);
    let headers = signed(Provider::Github, crate::GITHUB_SECRET, &id, now_secs(), &body);
    let reply = w.main.post("/webhooks/hugedoomed", &headers, &body);
    assert_eq!(reply.status, 200, "{}", reply.body);
    let event = wait_status(&w.main, "hugedoomed", &id, "dead");
    let fields = ["body", "body_available", "body_base64", "body_omitted"].map(|f| event[f].clone());
    assert_eq!(fields, [Value::Null, json!(true), Value::Null, json!(true)]);
    assert!(event["headers"].to_string().contains(&id), "headers are still shown: {}", event["headers"]);
    let mut letter = Value::Null;
    wait_until(WAIT, "the dead letter", || {
        let reply = w.main.admin("GET", &format!("/admin/dead-letters/hugedoomed/{id}"), b"");
        letter = if reply.status == 200 { reply.json() } else { Value::Null };
        letter["dead_letter"]["id"] == id.as_str()
    });
    let fields = ["body_base64", "body_omitted", "content_type"].map(|f| letter[f].clone());
    assert_eq!(fields, [Value::Null, json!(true), json!("application/json")], "{}", letter["dead_letter"]);
    // Nothing was lost by leaving it out: the letter's replay delivers every byte.
    w.dest.always("/hugedoomed", 200);
    let replay = w.main.admin("POST", &format!("/admin/dead-letters/replay?source=hugedoomed&id={id}"), b"");
    assert_eq!((replay.status, replay.json()["replayed"].clone()), (202, json!(1)), "{}", replay.body);
    let got = w.dest.wait_deliveries("/hugedoomed", &id, 2, WAIT);
    assert!(got[1].body == body, "the replay delivered {} bytes, not the body", got[1].body.len());
}

/// GitLab's types are `Push Hook`, `Note Hook` and the like: a kill switch names one as it is.
fn types_with_spaces_are_switched_off_by_name(w: &World) {
    let set = set_flag(&w.main, "cli-gitlab", "Note%20Hook", "dropped");
    assert_eq!(
        (set["flag"]["pattern"].clone(), set["flag"]["mode"].clone()),
        (json!("Note Hook"), json!("dropped")),
        "{set}"
    );
    thread::sleep(Duration::from_secs(2));
    let secret = w.cli_vars.iter().find(|(k, _)| k == "WEBHOOK_SECRET_CLI_GITLAB").unwrap().1.clone();
    let send = |event_type: &str| {
        let id = unique("gl");
        let body = format!(r#"{{"object_kind":"note","id":"{id}"}}"#).into_bytes();
        let headers = edgehook_core::headers::HeaderList::from([
            ("X-Gitlab-Token", secret.as_str()),
            ("X-Gitlab-Event", event_type),
            ("X-Gitlab-Event-UUID", id.as_str()),
            ("content-type", "application/json"),
        ]);
        let reply = w.main.post("/webhooks/cli-gitlab", &headers, &body);
        assert_eq!(reply.status, 200, "{}", reply.body);
        id
    };
    let (note, push) = (send("Note Hook"), send("Push Hook"));
    wait_status(&w.main, "cli-gitlab", &note, "dropped");
    wait_status(&w.main, "cli-gitlab", &push, "delivered");
    let flags = w.main.admin_json("/admin/flags");
    assert!(flags.to_string().contains(r#""Note Hook""#), "{flags}");
    set_flag(&w.main, "cli-gitlab", "Note%20Hook", "on");
}

fn event_listing_filters_and_pages_newest_first(w: &World) {
    let prefix = unique("list");
    let ids: Vec<String> = (0..5).map(|i| format!("{prefix}_{i}")).collect();
    for (i, id) in ids.iter().enumerate() {
        send_stripe(&w.main, "listing", id, if i % 2 == 0 { "invoice.paid" } else { "charge.failed" });
        // Distinct receive times, so newest-first has one answer.
        thread::sleep(Duration::from_millis(20));
    }
    for id in &ids {
        wait_status(&w.main, "listing", id, "delivered");
    }
    // Page through two at a time: every event once, newest first.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let query = match &cursor {
            Some(c) => format!("source=listing&limit=2&cursor={c}"),
            None => "source=listing&limit=2".to_owned(),
        };
        let page = w.main.admin_json(&format!("/admin/events?{query}"));
        let events = page["events"].as_array().unwrap();
        assert!(events.len() <= 2);
        for e in events {
            assert_eq!(e["source"], "listing");
            assert_eq!(e["status"], "delivered");
            seen.push(e["id"].as_str().unwrap().to_owned());
        }
        match page["cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    let mine: Vec<&String> = seen.iter().filter(|id| id.starts_with(&prefix)).collect();
    let newest_first: Vec<&String> = ids.iter().rev().collect();
    assert_eq!(mine, newest_first);
    // Filters: by type, and by a status none of them has.
    let charges = listed_ids(&w.main, "source=listing&type=charge.failed&limit=200");
    assert!(charges.contains(&ids[1]) && charges.contains(&ids[3]) && !charges.contains(&ids[0]));
    assert!(listed_ids(&w.main, "source=listing&status=dead").iter().all(|id| !id.starts_with(&prefix)));
}

fn one_event_is_replayed_and_recorded_as_a_replay(w: &World) {
    let id = unique("evt");
    let body = send_stripe(&w.main, "replayable", &id, "invoice.paid");
    w.dest.wait_deliveries("/replayable", &id, 1, WAIT);
    wait_status(&w.main, "replayable", &id, "delivered");
    let reply = w.main.admin("POST", &format!("/admin/events/replayable/{id}/replay"), b"");
    assert_eq!(reply.status, 202, "{}", reply.body);
    assert_eq!(reply.json()["replayed"], 1);
    let got = w.dest.wait_deliveries("/replayable", &id, 2, WAIT);
    assert_eq!(got[1].body, body, "a replay delivers the exact captured body");
    let mut event = Value::Null;
    wait_until(WAIT, "the replay's attempt", || {
        event = w.main.admin_json(&format!("/admin/events/replayable/{id}"));
        event["attempts"].as_array().unwrap().len() == 2
    });
    assert_eq!(event["replays"], 1);
    assert_eq!(event["attempts"][1]["replay"], true);
    assert_eq!(event["attempts"][0]["replay"], false);
    assert_eq!(event["status"], "delivered");
    // Unknown events are not found.
    assert_eq!(w.main.admin("POST", "/admin/events/replayable/evt_never_seen/replay", b"").status, 404);
}

fn filtered_set_is_replayed(w: &World) {
    let ids: Vec<String> = (0..3).map(|_| unique("set")).collect();
    for id in &ids {
        send_stripe(&w.main, "replayset", id, "customer.created");
    }
    for id in &ids {
        w.dest.wait_deliveries("/replayset", id, 1, WAIT);
        wait_status(&w.main, "replayset", id, "delivered");
    }
    // No filter at all is refused: replaying everything is never an accident.
    let refused = w.main.admin("POST", "/admin/events/replay", b"");
    assert_eq!((refused.status, refused.json()["error"].clone()), (400, json!("bad_request")));
    let reply = w.main.admin("POST", "/admin/events/replay?source=replayset&type=customer.created", b"");
    assert_eq!(reply.status, 202, "{}", reply.body);
    assert!(reply.json()["replayed"].as_u64().unwrap() >= 3);
    assert_eq!(reply.json()["more"], false, "{}", reply.body);
    for id in &ids {
        w.dest.wait_deliveries("/replayset", id, 2, WAIT);
    }
}

fn dead_letter_is_inspected_and_replayed(w: &World) {
    let id = unique("evt");
    w.dest.always("/recovering", 500);
    let body = send_stripe(&w.main, "recovering", &id, "invoice.payment_failed");
    w.dest.wait_deliveries("/recovering", &id, 2, WAIT);
    // Inspect: the dead letter, and the captured event with both failed attempts.
    let mut letters = Value::Null;
    wait_until(WAIT, "the dead letter", || {
        letters = w.main.admin_json("/admin/dead-letters?source=recovering");
        letters["dead_letters"].as_array().unwrap().iter().any(|d| d["id"] == id.as_str())
    });
    let event = wait_status(&w.main, "recovering", &id, "dead");
    let attempts = event["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2);
    assert!(attempts.iter().all(|a| a["status"] == 500));
    assert!(listed_ids(&w.main, "source=recovering&status=dead").contains(&id));

    // The destination recovers; replay every dead letter of the source.
    w.dest.always("/recovering", 200);
    let reply = w.main.admin("POST", "/admin/dead-letters/replay?source=recovering", b"");
    assert_eq!(reply.status, 202, "{}", reply.body);
    assert!(reply.json()["replayed"].as_u64().unwrap() >= 1, "{}", reply.body);
    assert_eq!(reply.json()["more"], false, "{}", reply.body);
    let got = w.dest.wait_deliveries("/recovering", &id, 3, WAIT);
    assert_eq!(got[2].body, body);
    assert_eq!(got[2].attempt(), 1, "a replay starts its attempts afresh");
    let event = wait_status(&w.main, "recovering", &id, "delivered");
    assert_eq!(event["replays"], 1);
    let letters = w.main.admin_json("/admin/dead-letters?source=recovering");
    assert!(letters["dead_letters"].as_array().unwrap().iter().all(|d| d["id"] != id.as_str()), "{letters}");

    // A dead letter replayed as an event (its own route) stops being a dead letter too: a later
    // replay of every dead letter does not deliver it again.
    let second = unique("evt");
    w.dest.always("/recovering", 500);
    send_stripe(&w.main, "recovering", &second, "invoice.payment_failed");
    wait_status(&w.main, "recovering", &second, "dead");
    wait_until(WAIT, "the second dead letter", || {
        let letters = w.main.admin_json("/admin/dead-letters?source=recovering");
        letters["dead_letters"].as_array().unwrap().iter().any(|d| d["id"] == second.as_str())
    });
    w.dest.always("/recovering", 200);
    let reply = w.main.admin("POST", &format!("/admin/events/recovering/{second}/replay"), b"");
    assert_eq!(reply.status, 202, "{}", reply.body);
    wait_status(&w.main, "recovering", &second, "delivered");
    let letters = w.main.admin_json("/admin/dead-letters?source=recovering");
    assert!(letters["dead_letters"].as_array().unwrap().iter().all(|d| d["id"] != second.as_str()), "{letters}");
    let reply = w.main.admin("POST", "/admin/dead-letters/replay?source=recovering", b"");
    assert_eq!((reply.status, reply.json()["replayed"].as_u64()), (202, Some(0)), "{}", reply.body);
    thread::sleep(Duration::from_secs(3));
    assert_eq!(w.dest.deliveries("/recovering", &second).len(), 3, "two failed attempts and the replay");
}

/// Each replay call stops at its limit (1,000; 2 here, set through the test build) and says
/// whether some are left; the next call takes the rest.
fn replays_stop_at_their_limit_and_say_more_are_left(w: &World) {
    let ids: Vec<String> = (0..3).map(|_| unique("evt")).collect();
    w.dest.always("/capped", 500);
    for id in &ids {
        send_stripe(&w.faults, "capped", id, "invoice.paid");
    }
    wait_until(WAIT, "three dead letters", || {
        let letters = w.faults.admin_json("/admin/dead-letters?source=capped");
        letters["dead_letters"].as_array().unwrap().len() == ids.len()
    });
    w.dest.always("/capped", 200);
    // `n` empty restores the limit of 1,000.
    let set_limit = |n: &str| {
        let reply = w.faults.post(&format!("/__faults/replay-limit?n={n}"), &Default::default(), b"");
        assert_eq!(reply.status, 200, "{}", reply.body);
    };
    set_limit("2");
    let replay = |path: &str| {
        let reply = w.faults.admin("POST", path, b"");
        assert_eq!(reply.status, 202, "{}", reply.body);
        (reply.json()["replayed"].as_u64().unwrap(), reply.json()["more"].as_bool().unwrap())
    };
    let letters = "/admin/dead-letters/replay?source=capped";
    assert_eq!(replay(letters), (2, true));
    assert_eq!(replay(letters), (1, false));
    assert_eq!(replay(letters), (0, false));
    for id in &ids {
        wait_status(&w.faults, "capped", id, "delivered");
    }
    // The same for a replay of events by filter (three match, two per call), which goes on from
    // the cursor its first call answered: each event is sent once (without the cursor, the second
    // call would start from the newest again).
    let events = "/admin/events/replay?source=capped";
    let first = w.faults.admin("POST", events, b"");
    assert_eq!(
        (first.status, first.json()["replayed"].clone(), first.json()["more"].clone()),
        (202, json!(2), json!(true))
    );
    let cursor = first.json()["cursor"].as_str().unwrap().to_owned();
    let second = w.faults.admin("POST", &format!("{events}&cursor={cursor}"), b"");
    assert_eq!(second.status, 202, "{}", second.body);
    assert_eq!((second.json()["replayed"].clone(), second.json()["more"].clone()), (json!(1), json!(false)));
    assert!(second.json()["cursor"].is_null(), "{}", second.body);
    set_limit("");
    for id in &ids {
        w.dest.wait_deliveries("/capped", id, 3, WAIT);
    }
    // `limit` takes fewer, newest first; a misspelt filter is refused, where ignoring it would
    // widen the replay to every event of the source.
    let reply = w.faults.admin("POST", &format!("{events}&limit=1"), b"");
    assert_eq!(
        (reply.json()["replayed"].clone(), reply.json()["more"].clone()),
        (json!(1), json!(true)),
        "{}",
        reply.body
    );
    let refused = w.faults.admin("POST", &format!("{events}&stauts=dead"), b"");
    assert_eq!((refused.status, refused.json()["field"].clone()), (400, json!("stauts")), "{}", refused.body);
    let counts = || {
        let mut counts: Vec<usize> = ids.iter().map(|id| w.dest.deliveries("/capped", id).len()).collect();
        counts.sort();
        counts
    };
    wait_until(WAIT, "the replay of one", || counts().iter().sum::<usize>() >= 10);
    thread::sleep(Duration::from_secs(2));
    assert_eq!(counts(), [3, 3, 4], "each event replayed once by filter, one once more by limit=1");
    // Resumptions, with the same limit: what is released is not hidden behind older events
    // still paused (of the same shard, past the limit), and what is left goes on a later call.
    set_limit("2");
    released_events_are_not_hidden_behind_paused_ones(w);
    set_limit("");
}

/// Runs with the replay limit at 2 (see above): each shard offers at most 2 held events.
fn released_events_are_not_hidden_behind_paused_ones(w: &World) {
    let released = unique("evt");
    // Three older events of the same shard, of a type that stays paused.
    let paused: Vec<String> = ids_in_shard_of("capped", &released).take(3).collect();
    set_flag(&w.faults, "capped", "held.stays", "paused");
    set_flag(&w.faults, "capped", "held.goes", "paused");
    // Effective within a second or so (each consumer isolate rereads the switches every second).
    thread::sleep(Duration::from_secs(2));
    for id in &paused {
        send_stripe(&w.faults, "capped", id, "held.stays");
        wait_status(&w.faults, "capped", id, "paused");
    }
    send_stripe(&w.faults, "capped", &released, "held.goes");
    wait_status(&w.faults, "capped", &released, "paused");

    let resumed = set_flag(&w.faults, "capped", "held.goes", "on");
    assert_eq!(resumed["resumed"], 1, "{resumed}");
    wait_status(&w.faults, "capped", &released, "delivered");
    assert!(paused.iter().all(|id| w.dest.deliveries("/capped", id).is_empty()), "still paused, not delivered");

    // Released two per call: the third on the next.
    let resumed = set_flag(&w.faults, "capped", "held.stays", "on");
    assert_eq!(resumed["resumed"], 2, "{resumed}");
    for id in &paused[..2] {
        wait_status(&w.faults, "capped", id, "delivered");
    }
    let resumed = set_flag(&w.faults, "capped", "held.stays", "on");
    assert_eq!(resumed["resumed"], 1, "{resumed}");
    wait_status(&w.faults, "capped", &paused[2], "delivered");
}

fn paused_type_holds_events_and_releases_all_in_order(w: &World) {
    let flag = set_flag(&w.main, "pausable", "invoice.*", "paused");
    assert_eq!(flag["flag"]["mode"], "paused");
    let flags = w.main.admin_json("/admin/flags");
    assert!(flags["flags"].as_array().unwrap().iter().any(|f| f["source"] == "pausable" && f["mode"] == "paused"));
    // Effective within a second or so (each consumer isolate rereads the switches every second).
    thread::sleep(Duration::from_secs(2));
    let held: Vec<String> = (0..6).map(|i| format!("{}_{i}", unique("held"))).collect();
    for id in &held {
        send_stripe(&w.main, "pausable", id, "invoice.paid");
        thread::sleep(Duration::from_millis(30));
    }
    let other = unique("evt");
    send_stripe(&w.main, "pausable", &other, "charge.succeeded");
    w.dest.wait_deliveries("/pausable", &other, 1, WAIT);
    for id in &held {
        wait_status(&w.main, "pausable", id, "paused");
    }
    thread::sleep(Duration::from_secs(2));
    assert!(held.iter().all(|id| w.dest.deliveries("/pausable", id).is_empty()), "nothing held is delivered");
    // Still held after a cron run: it only resumes what is no longer paused.
    w.main.scheduled();
    thread::sleep(Duration::from_secs(1));
    assert!(held.iter().all(|id| w.dest.deliveries("/pausable", id).is_empty()));

    let resumed = set_flag(&w.main, "pausable", "invoice.*", "on");
    assert_eq!(resumed["resumed"].as_u64().unwrap(), held.len() as u64, "{resumed}");
    for id in &held {
        w.dest.wait_deliveries("/pausable", id, 1, WAIT);
        wait_status(&w.main, "pausable", id, "delivered");
    }
    let order: Vec<String> = w
        .dest
        .received("/pausable", |r| held.contains(&r.header("webhook-id").unwrap_or_default()))
        .iter()
        .map(|r| r.header("webhook-id").unwrap())
        .collect();
    assert_eq!(order, held, "released in arrival order, each once");
}

/// A held event resumes with the attempt its holding message would have made, not one counted
/// from the attempts recorded before (some of which belong to an earlier life: here, a replay
/// of a dead event, held before its first attempt, resumes as attempt 1, not 3 of 2).
fn a_resumed_event_makes_the_attempt_it_was_held_at(w: &World) {
    let id = unique("evt");
    w.dest.always("/resumable", 500);
    send_stripe(&w.main, "resumable", &id, "resume.me");
    wait_status(&w.main, "resumable", &id, "dead");
    set_flag(&w.main, "resumable", "resume.*", "paused");
    // Effective within a second or so (each consumer isolate rereads the switches every second).
    thread::sleep(Duration::from_secs(2));
    let reply = w.main.admin("POST", &format!("/admin/events/resumable/{id}/replay"), b"");
    assert_eq!(reply.status, 202, "{}", reply.body);
    wait_status(&w.main, "resumable", &id, "paused");
    w.dest.always("/resumable", 200);
    let resumed = set_flag(&w.main, "resumable", "resume.*", "on");
    assert_eq!(resumed["resumed"], 1, "{resumed}");
    wait_status(&w.main, "resumable", &id, "delivered");
    let attempts: Vec<u32> = w.dest.deliveries("/resumable", &id).iter().map(|r| r.attempt()).collect();
    assert_eq!(attempts, [1, 2, 1], "two failed attempts, then the replay's first, once resumed");
}

fn dropped_type_is_recorded_not_delivered(w: &World) {
    set_flag(&w.main, "droppable", "customer.*", "dropped");
    thread::sleep(Duration::from_secs(2));
    let dropped = unique("evt");
    let kept = unique("evt");
    send_stripe(&w.main, "droppable", &dropped, "customer.deleted");
    send_stripe(&w.main, "droppable", &kept, "invoice.paid");
    w.dest.wait_deliveries("/droppable", &kept, 1, WAIT);
    wait_status(&w.main, "droppable", &dropped, "dropped");
    thread::sleep(Duration::from_secs(1));
    assert!(w.dest.deliveries("/droppable", &dropped).is_empty());
    assert!(listed_ids(&w.main, "source=droppable&status=dropped").contains(&dropped));
}

fn filtered_and_duplicate_events_are_recorded_and_counted(w: &World) {
    let id = unique("evt");
    // `filtered` admits only invoice.*.
    let body = send_stripe(&w.main, "filtered", &id, "charge.refunded");
    let event = wait_status(&w.main, "filtered", &id, "filtered");
    assert_eq!(event["body"].as_str().unwrap().as_bytes(), body.as_slice());
    assert!(event["attempts"].as_array().unwrap().is_empty());
    assert!(listed_ids(&w.main, "source=filtered&status=filtered").contains(&id));
}

fn metrics_count_outcomes_in_prometheus_and_json(w: &World) {
    // `counted` is used by this test alone, so its counts are exact.
    let ids: Vec<String> = (0..3).map(|_| unique("evt")).collect();
    for id in &ids {
        send_stripe(&w.main, "counted", id, "invoice.paid");
    }
    let body = stripe_body(&ids[0], "invoice.paid");
    let again =
        w.main.post("/webhooks/counted", &signed(Provider::Stripe, STRIPE_SECRET, "", now_secs(), &body), &body);
    assert_eq!(again.json()["status"], "duplicate");
    let forged =
        w.main.post("/webhooks/counted", &signed(Provider::Stripe, "whsec_wrong", "", now_secs(), &body), &body);
    assert_eq!(forged.status, 401);
    w.main.post("/webhooks/no-such-source", &edgehook_core::headers::HeaderList::new(), b"{}");
    let accepted = r#"source="counted",type="invoice.paid",outcome="accepted",reason="""#;
    let delivered = r#"source="counted",type="invoice.paid",outcome="delivered",reason="""#;
    let duplicate = r#"source="counted",type="invoice.paid",outcome="duplicate",reason="""#;
    let rejected = r#"source="counted",type="",outcome="rejected",reason="invalid_signature""#;
    let unknown = r#"source="_unknown",type="",outcome="rejected",reason="unknown_source""#;
    let mut text = String::new();
    wait_until(WAIT, "the counts", || {
        let reply = w.main.admin("GET", "/admin/metrics", b"");
        assert_eq!(reply.status, 200);
        assert!(reply.header("content-type").unwrap().starts_with("text/plain"));
        text = reply.body;
        // Receivers send their counts once a second, apart from the consumer's: every count is
        // waited for, then checked exactly.
        let at_least = |labels: &str, n: u64| series(&text, labels).is_some_and(|got| got >= n);
        at_least(accepted, 3)
            && at_least(delivered, 3)
            && at_least(duplicate, 1)
            && at_least(rejected, 1)
            && at_least(unknown, 1)
    });
    assert_eq!(series(&text, accepted), Some(3), "{text}");
    assert_eq!(series(&text, delivered), Some(3), "{text}");
    assert_eq!(series(&text, duplicate), Some(1), "{text}");
    assert_eq!(series(&text, rejected), Some(1), "{text}");
    assert!(series(&text, unknown).is_some_and(|n| n >= 1), "{text}");
    assert!(text.contains("# TYPE edgehook_events_total counter"));
    assert!(text.contains(r#"edgehook_delivery_latency_seconds_count{source="counted"} 3"#), "{text}");
    let json = w.main.admin_json("/admin/metrics?format=json");
    let delivered = json["counters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["source"] == "counted" && c["outcome"] == "delivered")
        .unwrap();
    assert_eq!(delivered["value"], 3);
    assert_eq!(json["latency"]["counted"]["count"], 3);
}

fn in_worker_handler_processes_and_retries(w: &World) {
    // `example-summary` has no destination; the README's example handler POSTs a summary of
    // each event to SUMMARY_URL. Its first answer fails, so the handler's error is retried.
    w.dest.plan("/summary", vec![Action::Status(503)]);
    let id = unique("msg");
    let body = format!(r#"{{"type":"order.paid","data":{{"id":"{id}"}}}}"#).into_bytes();
    let headers = signed(Provider::Standard, STANDARD_SECRET, &id, now_secs(), &body);
    let reply = w.main.post("/webhooks/example-summary", &headers, &body);
    assert_eq!(reply.status, 200, "{}", reply.body);
    let got = w.dest.wait_for("/summary", 2, WAIT, |r| String::from_utf8_lossy(&r.body).contains(&id));
    let summary: Value = serde_json::from_slice(&got[1].body).unwrap();
    assert_eq!(summary["id"], id.as_str());
    assert_eq!(summary["type"], "order.paid");
    assert_eq!(summary["bytes"], body.len());
    assert_eq!(summary["attempt"], 2);
    let event = wait_status(&w.main, "example-summary", &id, "delivered");
    let attempts = event["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2);
    assert_eq!(attempts[0]["error"], "handler: summary endpoint answered 503");
}

fn admin_api_refuses_bad_input_clearly(w: &World) {
    let none = w.main.get("/admin/events", &edgehook_core::headers::HeaderList::new());
    assert_eq!((none.status, none.json()), (401, json!({"error": "unauthorized"})));
    let wrong = w
        .main
        .get("/admin/flags", &edgehook_core::headers::HeaderList::from([("authorization", "Bearer not-the-token")]));
    assert_eq!(wrong.status, 401);
    let cases = [
        ("GET", "/admin/events?status=lost", "status"),
        ("GET", "/admin/events?limit=0", "limit"),
        ("GET", "/admin/events?cursor=zzz", "cursor"),
        ("POST", "/admin/dead-letters/replay?source=Not%20A%20Source", "source"),
    ];
    for (method, path, field) in cases {
        let reply = w.main.admin(method, path, b"");
        assert_eq!((reply.status, reply.json()), (400, json!({"error": "bad_request", "field": field})), "{path}");
    }
    // Parameters given empty, as SPEC writes the route (and as a form sends them), are not given.
    let all = w.main.admin("GET", "/admin/events?source=&status=&type=&limit=&cursor=", b"");
    assert_eq!(all.status, 200, "{}", all.body);
    assert!(all.json()["events"].is_array(), "{}", all.body);
    let letters = w.main.admin("GET", "/admin/dead-letters?source=&cursor=", b"");
    assert_eq!(letters.status, 200, "{}", letters.body);
    let bad_mode = w.main.admin("PUT", "/admin/flags/stripe/invoice.*", br#"{"mode":"off"}"#);
    assert_eq!(bad_mode.json(), json!({"error": "bad_request", "field": "mode"}));
    // A space inside a pattern is fine (GitLab's types have them); at an end, or a line break, not.
    for pattern in ["invoice%20", "invoice%0Apaid"] {
        let bad_pattern = w.main.admin("PUT", &format!("/admin/flags/stripe/{pattern}"), br#"{"mode":"paused"}"#);
        assert_eq!(bad_pattern.json(), json!({"error": "bad_request", "field": "pattern"}), "{pattern}");
    }
    let unknown = w.main.admin("PUT", "/admin/flags/nosuchsource/*", br#"{"mode":"paused"}"#);
    assert_eq!((unknown.status, unknown.json()), (404, json!({"error": "unknown_source"})));
    // A source named in SOURCES takes a switch even while its configuration is broken (its events
    // accepted before it broke may be waiting).
    let broken = w.main.admin("PUT", "/admin/flags/nosecret/*", br#"{"mode":"on"}"#);
    assert_eq!(broken.status, 200, "{}", broken.body);
    assert_eq!(w.main.admin("GET", "/admin/events/stripe/evt_never_seen", b"").status, 404);
    assert_eq!(w.main.admin("GET", "/admin/nothing-here", b"").status, 404);
}

fn captures_expire_and_old_bodies_are_swept(w: &World) {
    // The ops instance keeps captures for 4 seconds.
    let id = unique("evt");
    send_stripe(&w.ops, "kept", &id, "invoice.paid");
    wait_status(&w.ops, "kept", &id, "delivered");
    wait_until(Duration::from_secs(30), "the capture to expire", || {
        w.ops.admin("GET", &format!("/admin/events/kept/{id}"), b"").status == 404
    });
    assert!(!listed_ids(&w.ops, "source=kept").contains(&id));
    // Bodies are swept by the hour they were written in: one from two hours ago goes, one
    // from now stays. (Not in an hour's last minute: "now" must still be this hour at the sweep.)
    if now_secs() % 3600 > 3540 {
        thread::sleep(Duration::from_secs((3600 - now_secs() % 3600) as u64 + 1));
    }
    let hour = now_secs() / 3600;
    let old = format!("captures/{:08}/{}", hour - 2, unique("seg"));
    let recent = format!("captures/{:08}/{}", hour, unique("seg"));
    for key in [&old, &recent] {
        let made = w.ops.post(&format!("/__faults/object?key={key}"), &edgehook_core::headers::HeaderList::new(), b"");
        assert_eq!(made.json(), json!({"exists": true}));
    }
    w.ops.scheduled();
    let exists =
        |key: &str| w.ops.get(&format!("/__faults/object?key={key}"), &Default::default()).json()["exists"] == true;
    wait_until(Duration::from_secs(20), "the old segment to be swept", || !exists(&old));
    assert!(exists(&recent), "a body within retention is kept");
}

fn hanging_destination_degrades_health_alerts_once_and_recovers(w: &World) {
    let ops = &w.ops;
    let alerts = || {
        w.dest
            .received("/ops-alerts", |r| {
                serde_json::from_slice::<Value>(&r.body).is_ok_and(|a| a["health"].is_string())
            })
            .iter()
            .map(|r| serde_json::from_slice::<Value>(&r.body).unwrap()["health"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    let health = || {
        let reply = ops.get("/health", &Default::default());
        (reply.status, reply.json())
    };
    // Healthy first: a heartbeat, and its probe taken by the consumer.
    ops.scheduled();
    wait_until(WAIT, "a healthy start", || health().0 == 200);
    assert_eq!(health(), (200, json!({"status": "ok"})));

    // The destination hangs: every attempt times out (after 1 s) and is retried.
    w.dest.hang("/hanging", Some(Duration::from_secs(3)));
    let ids: Vec<String> = (0..4).map(|_| unique("evt")).collect();
    for id in &ids {
        send_stripe(ops, "hanging", id, "invoice.paid");
    }
    // Wait until the consumer has reported six failed attempts (each one a `retried`).
    let retried = r#"source="hanging",type="invoice.paid",outcome="retried",reason="""#;
    wait_until(WAIT, "several timed-out attempts", || {
        series(&ops.admin("GET", "/admin/metrics", b"").body, retried).is_some_and(|n| n >= 6)
    });
    // And the oldest of them has been waiting longer than HEALTH_MAX_LAG_SECS (5 s here).
    thread::sleep(Duration::from_secs(6));
    ops.scheduled();
    assert_eq!(health(), (503, json!({"status": "degraded"})));
    let report = ops.admin_json("/admin/health");
    assert_eq!(report["status"], "degraded");
    let reasons = report["reasons"].to_string();
    assert!(reasons.contains("deliveries failing"), "{report}");
    assert!(reasons.contains("oldest undelivered event"), "{report}");
    assert!(report["heartbeat_age_secs"].as_f64().unwrap() < 30.0);
    wait_until(WAIT, "the degraded alert", || alerts().len() == 1);
    // Still degraded at the next run: no second alert.
    let so_far = series(&ops.admin("GET", "/admin/metrics", b"").body, retried).unwrap();
    wait_until(WAIT, "more timed-out attempts", || {
        series(&ops.admin("GET", "/admin/metrics", b"").body, retried).is_some_and(|n| n >= so_far + 6)
    });
    ops.scheduled();
    assert_eq!(health().0, 503);
    thread::sleep(Duration::from_secs(1));
    assert_eq!(alerts(), ["degraded"]);

    // Recovery: the destination answers again and the waiting retries go through.
    w.dest.hang("/hanging", None);
    let recovered_at = std::time::Instant::now();
    // (Captures on this instance expire after 4 s, so delivery is watched at the destination.)
    for id in &ids {
        w.dest.wait_for("/hanging", 1, WAIT, |r| r.at > recovered_at && r.header("webhook-id").as_deref() == Some(id));
    }
    // The destination saw them before the consumer recorded them: wait for the records.
    let delivered = r#"source="hanging",type="invoice.paid",outcome="delivered",reason="""#;
    wait_until(WAIT, "the four deliveries recorded", || {
        series(&ops.admin("GET", "/admin/metrics", b"").body, delivered) == Some(4)
    });
    // A window with only successes, then another: recovered, announced once. (Checks run until
    // it is: on a loaded machine an answer can still miss the 1-second delivery timeout, and
    // that window is not yet clean.)
    wait_until(WAIT, "the recovery alert", || {
        ops.scheduled();
        thread::sleep(Duration::from_secs(1));
        alerts().len() == 2
    });
    assert_eq!(health(), (200, json!({"status": "ok"})));
    ops.scheduled();
    thread::sleep(Duration::from_secs(2));
    assert_eq!(alerts(), ["degraded", "recovered"], "one alert each way, never a storm");
    let last = w.dest.received("/ops-alerts", |_| true).pop().unwrap();
    let text = serde_json::from_slice::<Value>(&last.body).unwrap()["text"].as_str().unwrap().to_owned();
    assert!(text.contains("recovered"), "{text}");
}

/// A heartbeat probe can be lost without the consumer being at fault (its enqueue failed, or
/// the consumer's report of it): once a later probe is taken, health is ok again, though the
/// lost one is never seen. (It used to count as processing lag for a day.)
fn a_lost_heartbeat_probe_does_not_keep_health_degraded(w: &World) {
    let ops = &w.ops;
    let status = || ops.get("/health", &Default::default()).status;
    ops.scheduled();
    wait_until(WAIT, "a healthy start", || status() == 200);

    let armed = ops.post("/__faults/probe", &Default::default(), b"");
    assert_eq!(armed.status, 200, "{}", armed.body);
    ops.scheduled();
    let lost_at = std::time::Instant::now();
    wait_until(WAIT, "the probe to be lost", || ops.logs().contains("could not enqueue the heartbeat probe"));
    // The next run's probe goes through (HEALTH_MAX_LAG_SECS is 5 s here: this run is well
    // within it, so its own evaluation is healthy and sends no alert).
    thread::sleep(Duration::from_secs(1));
    ops.scheduled();
    // Past the lag limit, counted from the lost probe, health is ok once the later probe is
    // taken: the lost one no longer counts.
    thread::sleep(Duration::from_secs(6).saturating_sub(lost_at.elapsed()));
    wait_until(WAIT, "health to be ok", || status() == 200);
    let report = ops.admin_json("/admin/health");
    assert!(report["processing_lag_secs"].as_f64().unwrap() < 5.0, "{report}");
}

/// A heartbeat that cannot read what health needs (here a shard and the dead letters, by
/// injected faults) is degraded and names what it could not measure. It used to read as
/// "nothing open, no dead letters" and report healthy. Dead letters that could not be counted
/// keep the last count. Each fault fires once: the next heartbeats read again, health is ok,
/// and the recovery is announced (leaving the instance as the test found it).
fn a_failed_measurement_degrades_health(w: &World) {
    let ops = &w.ops;
    let status = || ops.get("/health", &Default::default()).status;
    ops.scheduled();
    wait_until(WAIT, "a healthy start", || status() == 200);
    let before = ops.admin_json("/admin/health");

    for what in ["shard", "dead-letters"] {
        let armed = ops.post(&format!("/__faults/measure?what={what}"), &Default::default(), b"");
        assert_eq!(armed.status, 200, "{}", armed.body);
    }
    ops.scheduled();
    wait_until(WAIT, "health to be degraded", || status() == 503);
    let report = ops.admin_json("/admin/health");
    assert_eq!(report["status"], "degraded", "{report}");
    let reasons = report["reasons"].to_string();
    assert!(reasons.contains("could not measure the open events"), "{report}");
    assert!(reasons.contains("could not measure the dead letters"), "{report}");
    assert_eq!(report["dead_letters"], before["dead_letters"], "{report}");
    assert_eq!(report["dead_letter_growth"], 0, "{report}");
    wait_until(WAIT, "the failed reads to be logged", || {
        let logs = ops.logs();
        logs.contains("could not read the oldest open and held events") && logs.contains("could not count dead letters")
    });

    ops.scheduled();
    wait_until(WAIT, "health to be ok again", || status() == 200);
    assert_eq!(ops.admin_json("/admin/health")["reasons"], serde_json::json!([]));
    let recovered = || {
        w.dest.received("/ops-alerts", |r| {
            serde_json::from_slice::<Value>(&r.body).is_ok_and(|a| a["health"] == "recovered")
        })
    };
    let recoveries = recovered().len();
    ops.scheduled();
    wait_until(WAIT, "the recovery alert", || recovered().len() > recoveries);
}

/// An event accepted for a source since removed from `SOURCES` is kept on the queue (put back
/// every five minutes) and named by health: nothing else shows it (it is never begun, so no lag
/// counts it). Health stays degraded while such events wait.
fn events_of_a_removed_source_degrade_health(w: &World) {
    let ops = &w.ops;
    let id = unique("evt");
    let sent =
        ops.post(&format!("/__faults/poison?kind=unconfigured&source=removed&id={id}"), &Default::default(), b"");
    assert_eq!(sent.status, 200, "{}", sent.body);
    wait_until(WAIT, "the consumer to hold it", || {
        ops.logs().contains(&format!("event removed/{id}: source is not configured; holding the event"))
    });
    let mut report = Value::Null;
    wait_until(WAIT, "health to name the source", || {
        ops.scheduled();
        thread::sleep(Duration::from_millis(500));
        report = ops.admin_json("/admin/health");
        report["reasons"].to_string().contains("events of source removed are waiting: it is not configured")
    });
    assert_eq!(report["status"], "degraded", "{report}");
    assert_eq!(ops.get("/health", &Default::default()).status, 503);
    // Still named at the next heartbeat, though the event is not held again for five minutes.
    ops.scheduled();
    thread::sleep(Duration::from_secs(1));
    assert!(ops.admin_json("/admin/health")["reasons"].to_string().contains("events of source removed"));
}

/// An idempotency shard whose storage is past `HEALTH_MAX_SHARD_BYTES` makes health degraded,
/// naming the size it measured: a shard that fills up (10 GB) refuses new records, so health
/// warns first (default 8 GB). On the `chaos` instance the limit is one byte, so the shard
/// holding one event's record is past it. (The `ops` instance, at the default, is shown healthy
/// by the health tests.)
fn a_shard_past_its_storage_limit_degrades_health(w: &World) {
    let chaos = &w.chaos;
    let id = unique("evt_sized");
    let body = stripe_body(&id, "invoice.paid");
    let reply = chaos.post("/webhooks/sized", &signed(Provider::Stripe, STRIPE_SECRET, "", now_secs(), &body), &body);
    assert_eq!(reply.status, 200, "{}", reply.body);
    wait_status(chaos, "sized", &id, "delivered");
    chaos.scheduled();
    wait_until(WAIT, "health to be degraded", || chaos.get("/health", &Default::default()).status == 503);
    let report = chaos.admin_json("/admin/health");
    let bytes = report["fullest_shard_bytes"].as_u64().unwrap_or(0);
    // Measured: a database that holds a record is at least a few pages.
    assert!(bytes >= 8192, "{report}");
    let reason = format!("an idempotency shard stores {bytes} bytes, over 1 (HEALTH_MAX_SHARD_BYTES)");
    assert!(report["reasons"].to_string().contains(&reason), "{report}");
}

/// A resumed event whose consumer still sees its switch `paused` (that isolate's cached
/// switches predate the change; here an injected fault makes them stale) asks the control
/// object, which has the change, and is delivered at once. It used to be held again and wait
/// five minutes for the next resumption.
fn a_resumption_is_not_held_again_by_stale_switches(w: &World) {
    let id = unique("evt");
    let event_type = unique("stale.switch");
    set_flag(&w.faults, "fragile", &event_type, "paused");
    // Effective within a second or so (each consumer isolate rereads the switches every second).
    thread::sleep(Duration::from_secs(2));
    send_stripe(&w.faults, "fragile", &id, &event_type);
    wait_status(&w.faults, "fragile", &id, "paused");
    let stale = format!("/__faults/stale-switch?source=fragile&type={event_type}&mode=paused");
    let armed = w.faults.post(&stale, &Default::default(), b"");
    assert_eq!(armed.status, 200, "{}", armed.body);
    let resumed = set_flag(&w.faults, "fragile", &event_type, "on");
    assert_eq!(resumed["resumed"], 1, "{resumed}");
    wait_status(&w.faults, "fragile", &id, "delivered");
    assert_eq!(w.dest.deliveries("/fragile", &id).len(), 1);
}
