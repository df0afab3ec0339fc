//! SPEC section 2: every status and error body, for each provider.

use crate::harness::{now_secs, signed, stripe_body, unique, Reply, WAIT};
use crate::{World, GITHUB_SECRET, ROTATION_NEW, ROTATION_OLD, STANDARD_SECRET, STRIPE_SECRET};
use edgehook_core::headers::HeaderList;
use edgehook_core::providers::{Provider, Unsigned};
use edgehook_core::secret::SigningKey;
use serde_json::json;

pub const TESTS: &[crate::Test] = &[
    ("stripe_every_status", stripe_every_status),
    ("release_builds_have_no_fault_routes", release_builds_have_no_fault_routes),
    ("github_every_status", github_every_status),
    ("standard_every_status", standard_every_status),
    ("rotation_accepts_every_configured_secret", rotation_accepts_every_configured_secret),
    ("unknown_sources_and_methods", unknown_sources_and_methods),
    ("oversized_bodies_are_refused", oversized_bodies_are_refused),
    ("misconfigured_sources_name_the_field", misconfigured_sources_name_the_field),
    ("bodies_naming_a_member_twice_are_refused", bodies_naming_a_member_twice_are_refused),
];

fn errors(reply: &Reply, status: u16, code: &str) {
    reply.expect(status, json!({ "error": code }));
}

fn stripe_every_status(w: &World) {
    let id = unique("evt");
    let body = stripe_body(&id, "invoice.paid");
    let now = now_secs();
    let post = |h: &HeaderList, b: &[u8]| w.main.post("/webhooks/stripe", h, b);

    let good = signed(Provider::Stripe, STRIPE_SECRET, "", now, &body);
    // Exactly SPEC's bytes, keys in its order.
    assert_eq!(post(&good, &body).body, format!(r#"{{"status":"accepted","id":"{id}"}}"#));
    assert_eq!(post(&good, &body).body, format!(r#"{{"status":"duplicate","id":"{id}"}}"#));
    // A fresh signature over the same event is still the same event.
    let resent = signed(Provider::Stripe, STRIPE_SECRET, "", now + 1, &body);
    post(&resent, &body).expect(200, json!({"status": "duplicate", "id": id}));

    let other = stripe_body(&unique("evt"), "invoice.paid");
    errors(&post(&HeaderList::from([("content-type", "application/json")]), &other), 401, "missing_signature");
    errors(&post(&signed(Provider::Stripe, "whsec_wrong", "", now, &other), &other), 401, "invalid_signature");
    let mut tampered = other.clone();
    tampered.extend_from_slice(b" ");
    errors(&post(&signed(Provider::Stripe, STRIPE_SECRET, "", now, &other), &tampered), 401, "invalid_signature");
    errors(&post(&HeaderList::from([("stripe-signature", "t=abc,v1=zz")]), &other), 401, "invalid_signature");
    errors(
        &post(&signed(Provider::Stripe, STRIPE_SECRET, "", now - 3600, &other), &other),
        401,
        "timestamp_out_of_tolerance",
    );
    errors(
        &post(&signed(Provider::Stripe, STRIPE_SECRET, "", now + 3600, &other), &other),
        401,
        "timestamp_out_of_tolerance",
    );
    // The window is 300 s by default, in either direction, and `tolerance_secs` where a source
    // sets it (30 s for `narrow`). A few seconds of margin either side of each edge.
    for (source, tolerance) in [("stripe", 300), ("narrow", 30)] {
        for offset in [-(tolerance - 5), tolerance - 5, -(tolerance + 5), tolerance + 5] {
            let event = stripe_body(&unique("evt"), "invoice.paid");
            let headers = signed(Provider::Stripe, STRIPE_SECRET, "", now_secs() + offset, &event);
            let reply = w.main.post(&format!("/webhooks/{source}"), &headers, &event);
            let within = offset.abs() < tolerance;
            let expected = if within { 200 } else { 401 };
            assert_eq!(reply.status, expected, "{source}, signed {offset} s from now: {}", reply.body);
            if !within {
                assert_eq!(reply.json(), json!({"error": "timestamp_out_of_tolerance"}), "{source}, {offset} s");
            }
        }
    }

    let no_id = br#"{"object":"event","type":"invoice.paid"}"#;
    errors(&post(&signed(Provider::Stripe, STRIPE_SECRET, "", now, no_id), no_id), 400, "malformed_request");
    let bad_id = br#"{"id":"evt_1\r\nx-injected: 1","type":"invoice.paid"}"#;
    errors(&post(&signed(Provider::Stripe, STRIPE_SECRET, "", now, bad_id), bad_id), 400, "malformed_request");

    // None of the rejected events was accepted: the verified one is the only delivery.
    let got = w.dest.wait_deliveries("/stripe", &id, 1, WAIT);
    assert_eq!(got.len(), 1);
}

fn github_every_status(w: &World) {
    let delivery = unique("gh-delivery");
    let body = br#"{"action":"opened","issue":{"number":1}}"#;
    let with_event = |mut h: HeaderList| {
        h.push("X-GitHub-Event", "issues");
        h
    };
    let post = |h: &HeaderList| w.main.post("/webhooks/github", h, body);

    let good = with_event(signed(Provider::Github, GITHUB_SECRET, &delivery, 0, body));
    post(&good).expect(200, json!({"status": "accepted", "id": delivery}));
    post(&good).expect(200, json!({"status": "duplicate", "id": delivery}));

    errors(&post(&with_event(HeaderList::from([("X-GitHub-Delivery", "d1")]))), 401, "missing_signature");
    let sha1_only = with_event(HeaderList::from([
        ("X-GitHub-Delivery", "d1"),
        ("X-Hub-Signature", "sha1=0000000000000000000000000000000000000000"),
    ]));
    errors(&post(&sha1_only), 401, "missing_signature");
    errors(&post(&with_event(signed(Provider::Github, "wrong", "d2", 0, body))), 401, "invalid_signature");
    let no_delivery_id: HeaderList = HeaderList(
        signed(Provider::Github, GITHUB_SECRET, "x", 0, body)
            .0
            .into_iter()
            .filter(|(k, _)| k != "X-GitHub-Delivery")
            .collect(),
    );
    errors(&post(&with_event(no_delivery_id)), 400, "malformed_request");

    let got = w.dest.wait_deliveries("/github", &delivery, 1, WAIT);
    assert_eq!(got[0].header("x-edgehook-event-type").as_deref(), Some("issues.opened"));
}

fn standard_every_status(w: &World) {
    let id = unique("msg");
    let body = br#"{"type":"user.created","data":{"id":"u_1"}}"#;
    let now = now_secs();
    let post = |h: &HeaderList| w.main.post("/webhooks/standard", h, body);

    let good = signed(Provider::Standard, STANDARD_SECRET, &id, now, body);
    post(&good).expect(200, json!({"status": "accepted", "id": id}));
    post(&good).expect(200, json!({"status": "duplicate", "id": id}));

    let other = unique("msg");
    let mut no_sig = signed(Provider::Standard, STANDARD_SECRET, &other, now, body);
    no_sig.0.retain(|(k, _)| k != "webhook-signature");
    errors(&post(&no_sig), 401, "missing_signature");
    let mut empty_sig = no_sig.clone();
    empty_sig.push("webhook-signature", "v1,");
    errors(&post(&empty_sig), 401, "invalid_signature");
    errors(
        &post(&signed(Provider::Standard, "whsec_AAAAAAAAAAAAAAAAAAAAAAAA", &other, now, body)),
        401,
        "invalid_signature",
    );
    errors(
        &post(&signed(Provider::Standard, STANDARD_SECRET, &other, now - 400, body)),
        401,
        "timestamp_out_of_tolerance",
    );
    errors(
        &post(&signed(Provider::Standard, STANDARD_SECRET, &other, now + 400, body)),
        401,
        "timestamp_out_of_tolerance",
    );

    let got = w.dest.wait_deliveries("/standard", &id, 1, WAIT);
    assert_eq!(got[0].header("x-edgehook-event-type").as_deref(), Some("user.created"));

    // Svix sends the same scheme under its own header names.
    let svix_id = unique("msg");
    let svix = HeaderList(
        signed(Provider::Standard, STANDARD_SECRET, &svix_id, now, body)
            .0
            .into_iter()
            .map(|(k, v)| (k.replace("webhook-", "svix-"), v))
            .collect(),
    );
    assert!(svix.0.iter().any(|(k, _)| k == "svix-signature"));
    post(&svix).expect(200, json!({"status": "accepted", "id": svix_id}));
}

fn rotation_accepts_every_configured_secret(w: &World) {
    for secret in [ROTATION_NEW, ROTATION_OLD] {
        let id = unique("evt");
        let body = stripe_body(&id, "customer.created");
        let reply = w.main.post("/webhooks/rotating", &signed(Provider::Stripe, secret, "", now_secs(), &body), &body);
        reply.expect(200, json!({"status": "accepted", "id": id}));
    }
    let body = stripe_body(&unique("evt"), "customer.created");
    let reply =
        w.main.post("/webhooks/rotating", &signed(Provider::Stripe, STRIPE_SECRET, "", now_secs(), &body), &body);
    errors(&reply, 401, "invalid_signature");
    // SPEC: a plain value is one secret, used exactly as given, `[` and all, when it is no JSON
    // array of strings; the start-up log warns about it, naming the variable, not the value.
    let id = unique("evt");
    let body = stripe_body(&id, "customer.created");
    let headers = signed(Provider::Stripe, crate::BRACKETED_SECRET, "", now_secs(), &body);
    w.main.post("/webhooks/bracketed", &headers, &body).expect(200, json!({"status": "accepted", "id": id}));
    crate::harness::wait_until(std::time::Duration::from_secs(10), "the warning in the log", || {
        w.main.logs().contains("WEBHOOK_SECRET_BRACKETED starts with `[` but is not a JSON array of strings")
    });
}

fn unknown_sources_and_methods(w: &World) {
    let body = stripe_body(&unique("evt"), "x");
    let headers = signed(Provider::Stripe, STRIPE_SECRET, "", now_secs(), &body);
    errors(&w.main.post("/webhooks/nope", &headers, &body), 404, "unknown_source");
    errors(&w.main.post("/webhooks/Stripe", &headers, &body), 404, "unknown_source");
    errors(&w.main.post("/webhooks/stripe/extra", &headers, &body), 404, "unknown_source");
    errors(&w.main.post("/webhooks/", &headers, &body), 404, "unknown_source");
    errors(&w.main.get("/webhooks/stripe", &HeaderList::new()), 405, "method_not_allowed");
    let put = crate::harness::request("PUT", &w.main.url("/webhooks/stripe"), &headers, &body);
    errors(&put, 405, "method_not_allowed");
}

fn oversized_bodies_are_refused(w: &World) {
    // `small` allows 64 bytes; this body is bigger and validly signed, so only its size is wrong.
    let body = stripe_body(&unique("evt"), "invoice.paid");
    assert!(body.len() > 64);
    let reply = w.main.post("/webhooks/small", &signed(Provider::Stripe, STRIPE_SECRET, "", now_secs(), &body), &body);
    errors(&reply, 413, "payload_too_large");
    // No signature at all: the size is still checked first, before any HMAC work.
    errors(&w.main.post("/webhooks/small", &HeaderList::new(), &body), 413, "payload_too_large");
    let fits = br#"{"id":"evt_small_ok"}"#;
    let reply = w.main.post("/webhooks/small", &signed(Provider::Stripe, STRIPE_SECRET, "", now_secs(), fits), fits);
    assert_eq!(reply.status, 200, "{}", reply.body);
}

/// Runs alone: under `wrangler dev`, answering before a chunked body is fully read drops the
/// local proxy's connection, which fails whatever other request shares it (a local-only
/// artefact; Cloudflare's edge keeps client connections apart).
pub fn chunked_bodies_are_limited_while_read(w: &World) {
    let chunked = |body: &[u8]| {
        let headers = signed(Provider::Stripe, STRIPE_SECRET, "", now_secs(), body);
        let mut req = ureq::post(&w.main.url("/webhooks/small"));
        for (k, v) in &headers.0 {
            req = req.set(k, v);
        }
        // A reader of unknown length: ureq sends it chunked, with no Content-Length.
        match req.send(std::io::Cursor::new(body.to_vec())) {
            Ok(r) => r.status(),
            Err(ureq::Error::Status(code, _)) => code,
            Err(e) => panic!("{e}"),
        }
    };
    assert_eq!(chunked(&stripe_body(&unique("evt"), &"x".repeat(10_000))), 413);
    assert_eq!(chunked(br#"{"id":"evt_chunked_ok"}"#), 200);
    // Neither a length nor a body: read as empty, so verified and refused for what it is (no
    // event id), not failed as a body that could not be read.
    let headers = signed(Provider::Stripe, STRIPE_SECRET, "", now_secs(), b"");
    let mut req = ureq::post(&w.main.url("/webhooks/small"));
    for (k, v) in &headers.0 {
        req = req.set(k, v);
    }
    let (status, answer) = match req.call() {
        Ok(r) => (r.status(), r.into_string().unwrap_or_default()),
        Err(ureq::Error::Status(code, r)) => (code, r.into_string().unwrap_or_default()),
        Err(e) => panic!("{e}"),
    };
    assert_eq!((status, answer.as_str()), (400, r#"{"error":"malformed_request"}"#));
}

fn misconfigured_sources_name_the_field(w: &World) {
    let body = stripe_body(&unique("evt"), "x");
    let headers = signed(Provider::Stripe, STRIPE_SECRET, "", now_secs(), &body);
    let broken = w.main.post("/webhooks/broken", &headers, &body);
    assert_eq!(
        (broken.status, broken.body.as_str()),
        (500, r#"{"error":"misconfigured","source":"broken","field":"provider"}"#)
    );
    w.main
        .post("/webhooks/nosecret", &headers, &body)
        .expect(500, json!({"error": "misconfigured", "source": "nosecret", "field": "WEBHOOK_SECRET_NOSECRET"}));
    // The start-up log names the problems too.
    crate::harness::wait_until(std::time::Duration::from_secs(10), "configuration errors in the log", || {
        let logs = w.main.logs();
        logs.contains("source `broken`: field `provider`") && logs.contains("field `WEBHOOK_SECRET_NOSECRET`")
    });
}

/// The fault routes exist only in the test build: the release bundle neither serves nor
/// contains them (and `scripts/deploy` refuses a bundle that does).
fn release_builds_have_no_fault_routes(w: &World) {
    for path in ["/__faults/billing", "/__faults/storage", "/__faults/clock?now=1"] {
        let reply = w.main.post(path, &HeaderList::new(), b"");
        assert_eq!(reply.status, 404, "{path} on the release build: {}", reply.body);
        assert_eq!(w.faults.get("/__faults/storage", &HeaderList::new()).status, 200, "the test build has them");
    }
    let bundle = |dir: &str| std::fs::read(crate::harness::root().join(dir).join("index_bg.wasm")).unwrap();
    let has = |bytes: &[u8]| bytes.windows(9).any(|w| w == b"__faults/");
    assert!(!has(&bundle("build")), "the release bundle contains fault routes");
    assert!(has(&bundle("build-faults")), "the check would not see them");
}

/// A member verification or identity reads, named twice, is refused: which copy counts would
/// differ between edgehook and whatever reads the body after it (a JSON parser keeps the first,
/// or the last, or refuses), so the id deduplicated on, or the signature checked, could be the
/// other one. Members nobody reads may repeat.
fn bodies_naming_a_member_twice_are_refused(w: &World) {
    let stripe = |body: &str| {
        let headers = signed(Provider::Stripe, STRIPE_SECRET, "", now_secs(), body.as_bytes());
        w.main.post("/webhooks/stripe", &headers, body.as_bytes())
    };
    let (first, second) = (unique("evt"), unique("evt"));
    errors(&stripe(&format!(r#"{{"id":"{first}","type":"invoice.paid","id":"{second}"}}"#)), 400, "malformed_request");
    errors(&stripe(&format!(r#"{{"id":"{first}","type":"a","type":"b"}}"#)), 400, "malformed_request");
    errors(&stripe(&format!(r#"{{"id":"{first}","type":{{"k":1,"k":2}}}}"#)), 400, "malformed_request");
    // Neither id was taken: the same id alone is a new event.
    let repeats = format!(r#"{{"id":"{first}","type":"invoice.paid","data":{{"n":1,"n":2}}}}"#);
    stripe(&repeats).expect(200, json!({"status": "accepted", "id": first}));
    let got = w.dest.wait_deliveries("/stripe", &first, 1, WAIT);
    assert_eq!(got[0].body, repeats.as_bytes(), "forwarded as received");

    // Mailgun's signature is a member of the body: a second one, or a second field inside it,
    // next to a valid one.
    let source = crate::cli::cli_source(Provider::Mailgun);
    let key = SigningKey::parse("cli secret for mailgun", Provider::Mailgun.secret_encoding()).unwrap();
    let mailgun = |id: &str| {
        let body = format!(r#"{{"event-data":{{"id":"{id}","event":"delivered"}}}}"#);
        let token = unique("token");
        let unsigned = Unsigned { method: "POST", url: "", body: body.as_bytes(), id: &token, timestamp: now_secs() };
        let sent = Provider::Mailgun.sign(&key, unsigned, None);
        (sent.headers, String::from_utf8(sent.body).unwrap())
    };
    let post = |headers: &HeaderList, body: &str| w.main.post(&format!("/webhooks/{source}"), headers, body.as_bytes());
    let (headers, body) = mailgun(&unique("mg"));
    assert!(body.starts_with('{') && body.contains(r#""signature":{"#), "{body}");
    let outer = body.replacen('{', r#"{"signature":{"timestamp":"1","token":"t","signature":"00"},"#, 1);
    let inner = body.replacen(r#""signature":{"#, r#""signature":{"token":"other","#, 1);
    for twice in [outer, inner] {
        errors(&post(&headers, &twice), 401, "missing_signature");
    }
    let id = unique("mg");
    let (headers, body) = mailgun(&id);
    post(&headers, &body).expect(200, json!({"status": "accepted", "id": id}));
}
