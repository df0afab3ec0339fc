//! The README's first command: `scripts/dev` serves the demo sources, and `scripts/send-demo`
//! (the README's example) is accepted and forwarded to the demo destination; its cron ticker
//! makes `/health` report ok, and the dashboard is served.

use crate::harness::{free_port, root, unique, wait_until, Group, DEV_PROXY_LOST};
use crate::World;
use std::process::Command;
use std::time::Duration;

pub const TESTS: &[crate::Test] = &[("dev_command_serves_the_readme_example", dev_command_serves_the_readme_example)];

fn dev_command_serves_the_readme_example(_: &World) {
    let (port, demo_port) = (free_port(), free_port());
    let dir = std::env::temp_dir().join(unique("edgehook-dev"));
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("dev.log");
    let mut command = Command::new(root().join("scripts/dev"));
    command
        .env("PORT", port.to_string())
        .env("DEMO_PORT", demo_port.to_string())
        // The suite built the bundle already; everything else is exactly what a newcomer runs.
        .env("EDGEHOOK_SKIP_BUILD", "1")
        .args(["--persist-to", dir.join("state").to_str().unwrap(), "--inspector-port", &free_port().to_string()]);
    let dev = Group::spawn(command, &log);
    // `wrangler dev`'s proxy answers a request the worker never finished (it restarted) with
    // this text; such a request is sent again, as the CLI tests do.
    let send = |source: &str, id: &str| {
        for _ in 0..10 {
            let out = Command::new(root().join("scripts/send-demo"))
                .args([source, id])
                .env("PORT", port.to_string())
                .output()
                .unwrap();
            let out = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            if !out.starts_with(DEV_PROXY_LOST) {
                return out;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        panic!("scripts/send-demo {source} {id}: the worker kept restarting");
    };
    let get = |path: &str| {
        ureq::get(&format!("http://127.0.0.1:{port}{path}")).call().ok().map(|r| r.into_string().unwrap_or_default())
    };
    // Up once the worker answers anything (`/health` may still say the heartbeat is missing).
    wait_until(Duration::from_secs(120), "scripts/dev to answer", || {
        match ureq::get(&format!("http://127.0.0.1:{port}/health")).call() {
            Ok(_) | Err(ureq::Error::Status(..)) => true,
            Err(_) => false,
        }
    });
    let id = unique("evt_demo");
    assert_eq!(send("stripe", &id), format!(r#"{{"status":"accepted","id":"{id}"}}"#));
    assert_eq!(send("stripe", &id), format!(r#"{{"status":"duplicate","id":"{id}"}}"#));
    // Two GitHub demo events: each a signed request of its own (GitHub's delivery id is not
    // signed, and a resent request would be recorded as dropped), so both are delivered.
    let github = [unique("demo"), unique("demo")];
    for (source, other) in [("github", &github[0]), ("github", &github[1]), ("standard", &unique("demo"))] {
        assert_eq!(send(source, other), format!(r#"{{"status":"accepted","id":"{other}"}}"#));
    }
    wait_until(Duration::from_secs(60), "the demo destination to print the deliveries", || {
        let out = std::fs::read_to_string(&log).unwrap_or_default();
        out.contains(&format!("id={id} type=invoice.paid attempt=1 bytes="))
            && github.iter().all(|g| out.contains(&format!("id={g} ")))
            && out.contains("signature=valid")
    });
    let out = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(!out.contains("signature=INVALID"), "{out}");
    // The cron trigger is ticked by scripts/dev: the heartbeat makes /health answer ok.
    wait_until(Duration::from_secs(90), "a heartbeat from the dev ticker", || {
        get("/health").is_some_and(|body| body == r#"{"status":"ok"}"#)
    });
    let page = get("/dashboard").unwrap();
    assert!(page.contains("<title>edgehook</title>"), "the dashboard is served");
    drop(dev);
}
