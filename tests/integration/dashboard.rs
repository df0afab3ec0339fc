//! The dashboard in a real browser: Debian's Chromium, driven by playwright-core
//! (`tests/browser/dashboard.mjs`). The suite prepares an event and a dead letter, the browser
//! logs in, sees the event, replays the dead letter and pauses an event type; the suite checks
//! events are held, and the browser resumes them.

use crate::harness::{now_secs, root, signed, stripe_body, unique, wait_until, WAIT};
use crate::{World, ADMIN_TOKEN, STRIPE_SECRET};
use edgehook_core::headers::HeaderList;
use edgehook_core::providers::Provider;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

pub const TESTS: &[crate::Test] = &[
    ("dashboard_in_headless_chromium", dashboard_in_headless_chromium),
    ("dashboard_page_is_locked_down", dashboard_page_is_locked_down),
];

/// The page is served without a token (it asks for one), outside `/admin/` (where everything
/// wants the token), so what protects it is in its headers:
/// a CSP that loads nothing from elsewhere, sends data nowhere else and cannot be framed, and no
/// caching of a page an operator used.
fn dashboard_page_is_locked_down(w: &World) {
    let page = w.main.get("/dashboard", &HeaderList::new());
    assert_eq!(page.status, 200);
    assert_eq!(page.header("content-type"), Some("text/html; charset=utf-8"));
    assert_eq!(page.header("cache-control"), Some("no-store"));
    let csp = page.header("content-security-policy").expect("a CSP");
    for directive in
        ["default-src 'none'", "connect-src 'self'", "frame-ancestors 'none'", "form-action 'none'", "base-uri 'none'"]
    {
        assert!(csp.contains(directive), "CSP without {directive:?}: {csp}");
    }
    assert!(!csp.contains("http"), "the CSP names no other origin: {csp}");
    // Nothing in the page itself reaches another origin.
    for needle in ["http://", "https://", "//cdn", "<iframe"] {
        assert!(!page.body.contains(needle), "the page contains {needle:?}");
    }
    // And the API behind it still wants the token, and its answers (captured bodies and
    // headers) are not cached either.
    assert_eq!(w.main.get("/admin/events", &HeaderList::new()).status, 401);
    let events = w.main.admin("GET", "/admin/events?limit=1", b"");
    assert_eq!(events.status, 200);
    assert_eq!(events.header("cache-control"), Some("no-store"));
}

fn send(w: &World, id: &str, event_type: &str) {
    let body = stripe_body(id, event_type);
    let reply =
        w.main.post("/webhooks/browser", &signed(Provider::Stripe, STRIPE_SECRET, "", now_secs(), &body), &body);
    assert_eq!(reply.status, 200, "{}", reply.body);
}

fn status(w: &World, id: &str) -> String {
    let reply = w.main.admin("GET", &format!("/admin/events/browser/{id}"), b"");
    if reply.status != 200 {
        return String::new();
    }
    reply.json()["status"].as_str().unwrap_or_default().to_owned()
}

fn dashboard_in_headless_chromium(w: &World) {
    // An event that was delivered, and one that died (the source allows one attempt).
    let seen = unique("evt");
    send(w, &seen, "customer.created");
    w.dest.wait_deliveries("/browser", &seen, 1, WAIT);
    wait_until(WAIT, "the delivered event", || status(w, &seen) == "delivered");
    w.dest.always("/browser", 500);
    let dead = unique("evt");
    send(w, &dead, "charge.failed");
    wait_until(WAIT, "the dead letter", || {
        let letters = w.main.admin_json("/admin/dead-letters?source=browser");
        letters["dead_letters"].as_array().unwrap().iter().any(|d| d["id"] == dead.as_str())
    });
    w.dest.always("/browser", 200);

    let mut child = Command::new("node")
        .arg(root().join("tests/browser/dashboard.mjs"))
        .env("EDGEHOOK_URL", &w.main.base)
        .env("ADMIN_TOKEN", ADMIN_TOKEN)
        .env("EVENT_SOURCE", "browser")
        .env("EVENT_ID", &seen)
        .env("DEAD_ID", &dead)
        .env("PAUSE_SOURCE", "browser")
        .env("PAUSE_PATTERN", "invoice.*")
        .current_dir(root())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("node runs the browser script");
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut transcript = Vec::new();
    let mut expect = |want: &str| loop {
        let line = lines.next().map(|l| l.unwrap()).unwrap_or_else(|| {
            panic!("browser script ended before {want}:\n{}", transcript.join("\n"));
        });
        transcript.push(line.clone());
        if line == want {
            return;
        }
        if line.starts_with("FAILED") {
            transcript.extend(lines.by_ref().map_while(|l| l.ok()));
            panic!("browser script failed:\n{}", transcript.join("\n"));
        }
    };
    expect("STEP logged-in");
    expect("STEP event-seen");
    expect("STEP dead-letter-replayed");
    w.dest.wait_deliveries("/browser", &dead, 2, WAIT);
    wait_until(WAIT, "the replayed dead letter to be delivered", || status(w, &dead) == "delivered");

    expect("STEP paused");
    // The switch is read by consumers at most a second late.
    std::thread::sleep(Duration::from_secs(2));
    let held: Vec<String> = (0..3).map(|_| unique("evt")).collect();
    for id in &held {
        send(w, id, "invoice.paid");
    }
    for id in &held {
        wait_until(WAIT, "the event to be held", || status(w, id) == "paused");
    }
    assert!(held.iter().all(|id| w.dest.deliveries("/browser", id).is_empty()));
    writeln!(stdin, "GO").unwrap();

    expect("STEP resumed");
    expect("DONE");
    assert!(child.wait().unwrap().success());
    for id in &held {
        w.dest.wait_deliveries("/browser", id, 1, WAIT);
    }
}
