//! edgehook's integration suite: the compiled worker under `wrangler dev` (real Durable Objects,
//! queues, R2 and alarms in miniflare), driven over real HTTP, delivering to a real local
//! destination server.
//!
//! It builds the worker twice (the release bundle, and a `faults` build whose `/__faults/*`
//! routes inject failures on demand), starts six instances (see [`World`]), configured the three
//! ways users can (`.dev.vars`, `[vars]` tables in `wrangler.toml`, and `--var` flags), runs every
//! test in parallel against them, then the `SOLO` tests one at a time.
//!
//! `cargo test --test integration [FILTER]` runs the tests whose name contains FILTER.

mod bursts;
mod cli;
mod cost;
mod dashboard;
mod delivery;
mod dev_command;
mod harness;
mod hostile;
mod idempotency;
mod jepsen;
mod operations;
mod providers;
mod receiving;
/// The CLI's sample bodies, shared rather than copied.
#[path = "../../cli/src/samples.rs"]
mod samples;
mod soak;

use edgehook_core::config::secret_var;
use harness::{build_worker, ConfigForm, Destination, Worker};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::thread;
use std::time::{Duration, Instant};

pub const STRIPE_SECRET: &str = "whsec_test_stripe_secret_4f9a";
pub const GITHUB_SECRET: &str = "github test secret with spaces";
pub const STANDARD_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
pub const ROTATION_NEW: &str = "whsec_rotated_new_77c1";
pub const ROTATION_OLD: &str = "whsec_rotated_old_19b3";
/// A plain secret that starts like a rotation list but is not one.
pub const BRACKETED_SECRET: &str = "[whsec_bracketed_5e1";
/// base64 of "edgehook-destination-key-for-tests".
pub const DESTINATION_SECRET: &str = "whsec_ZWRnZWhvb2stZGVzdGluYXRpb24ta2V5LWZvci10ZXN0cw==";
pub const ADMIN_TOKEN: &str = "test-admin-token-9c2e1d";
/// Every secret the suite configures: none may appear in a response or a log line.
pub const ALL_SECRETS: &[&str] = &[
    STRIPE_SECRET,
    GITHUB_SECRET,
    STANDARD_SECRET,
    ROTATION_NEW,
    ROTATION_OLD,
    BRACKETED_SECRET,
    DESTINATION_SECRET,
    ADMIN_TOKEN,
];

/// The instances and the destination every test shares. Tests use their own sources, paths
/// and event ids, so they run in parallel without seeing each other.
pub struct World {
    pub dest: Destination,
    /// Configured through `.dev.vars`; most tests run here.
    pub main: Worker,
    /// The `faults` build, with `SOURCES` as `[vars]` tables in `wrangler.toml`.
    pub faults: Worker,
    /// The `faults` build with `IDEMPOTENCY_TTL_SECS=3` and `CAPTURE_RETENTION_SECS=8` (so each
    /// idempotency shard's time partitions are 2 s wide) and no `ADMIN_TOKEN`, configured with
    /// `--var` flags.
    pub ttl: Worker,
    /// The `faults` build with a source per provider vector file (see `providers`).
    pub vectors: Worker,
    /// The `faults` build for health, alerts and retention (4-second captures), which watch the
    /// whole instance and so must not share it.
    pub ops: Worker,
    /// The `faults` build where consumer invocations are killed mid-batch (the crash test, and
    /// the soak after it): a crash cuts off every event of its batch, so no other test's events
    /// may share its queue.
    pub chaos: Worker,
    pub vector_sources: Vec<providers::VectorSource>,
    /// The hostile corpus sent through `vectors` (see `hostile`).
    pub hostile: hostile::Corpus,
    /// The `.dev.vars` entries of the CLI's sources (one per provider, on `main`), and their keys.
    pub cli_vars: Vec<(String, String)>,
    pub cli_keys: cli::CliKeys,
    /// Where the `jepsen-refused` source delivers: nothing listens there at first.
    pub refused_port: u16,
}

pub const TTL_SECS: u64 = 3;
pub const RETENTION_SECS: u64 = 8;

impl World {
    pub fn workers(&self) -> [&Worker; 6] {
        [&self.main, &self.faults, &self.ttl, &self.vectors, &self.ops, &self.chaos]
    }
}

fn main_sources(dest: &Destination, cli_sources: serde_json::Map<String, serde_json::Value>) -> String {
    let d = |path: &str| dest.url(path);
    let mut sources = serde_json::json!({
        "stripe": {"provider": "stripe", "destination": d("/stripe")},
        "github": {"provider": "github", "destination": d("/github")},
        "github-unsealed": {"provider": "github", "destination": d("/github-unsealed"), "one_event_per_signature": false},
        "standard": {"provider": "standard", "destination": d("/standard")},
        "rotating": {"provider": "stripe", "destination": d("/rotating")},
        "small": {"provider": "stripe", "max_body_bytes": 64},
        "flaky": {"provider": "stripe", "destination": d("/flaky"), "max_attempts": 5, "retry_base_secs": 1, "retry_max_secs": 2},
        "redirected": {"provider": "stripe", "destination": d("/redirected"), "max_attempts": 3, "retry_base_secs": 1, "retry_max_secs": 1},
        "doomed": {"provider": "stripe", "destination": d("/doomed"), "max_attempts": 3, "retry_base_secs": 1, "retry_max_secs": 1},
        "slow": {"provider": "stripe", "destination": d("/slow"), "delivery_timeout_secs": 2, "max_attempts": 4, "retry_base_secs": 1, "retry_max_secs": 1},
        "throttled": {"provider": "stripe", "destination": d("/throttled"), "max_attempts": 4, "retry_base_secs": 1, "retry_max_secs": 1},
        // Its first failure opens the circuit, for a second.
        "throttled-open": {"provider": "stripe", "destination": d("/throttled-open"), "max_attempts": 4, "retry_base_secs": 1,
                           "retry_max_secs": 1, "breaker_failures": 1, "breaker_cooldown_secs": 1, "breaker_max_cooldown_secs": 2},
        "unreachable": {"provider": "stripe", "destination": "http://127.0.0.1:9/nothing-listens-here", "max_attempts": 2, "retry_base_secs": 1, "retry_max_secs": 1},
        "nodest": {"provider": "stripe"},
        "filtered": {"provider": "stripe", "destination": d("/filtered"), "events": ["invoice.*"]},
        "big": {"provider": "stripe", "destination": d("/big"), "max_body_bytes": 1_048_576},
        "bigdoomed": {"provider": "stripe", "destination": d("/bigdoomed"), "max_body_bytes": 1_048_576, "max_attempts": 1},
        "concurrent": {"provider": "stripe", "destination": d("/concurrent")},
        "captured": {"provider": "stripe", "destination": d("/captured"), "max_attempts": 3, "retry_base_secs": 1, "retry_max_secs": 1},
        "listing": {"provider": "stripe"},
        "replayable": {"provider": "stripe", "destination": d("/replayable")},
        "replayset": {"provider": "stripe", "destination": d("/replayset")},
        "recovering": {"provider": "stripe", "destination": d("/recovering"), "max_attempts": 2, "retry_base_secs": 1, "retry_max_secs": 1},
        "pausable": {"provider": "stripe", "destination": d("/pausable")},
        "resumable": {"provider": "stripe", "destination": d("/resumable"), "max_attempts": 2, "retry_base_secs": 1, "retry_max_secs": 1},
        "droppable": {"provider": "stripe", "destination": d("/droppable")},
        "counted": {"provider": "stripe", "destination": d("/counted")},
        "browser": {"provider": "stripe", "destination": d("/browser"), "max_attempts": 1},
        "cliops": {"provider": "stripe", "destination": d("/cliops"), "max_attempts": 1},
        "huge": {"provider": "github", "destination": d("/huge"), "max_body_bytes": 26_214_400},
        "ordered": {"provider": "stripe", "destination": d("/ordered")},
        "ordered-deliver": {"provider": "stripe", "destination": d("/ordered-deliver"), "stale": "deliver"},
        "flapping": {"provider": "stripe", "destination": d("/flapping"), "max_attempts": 2, "retry_base_secs": 1,
                     "retry_max_secs": 1, "breaker_failures": 2, "breaker_cooldown_secs": 1, "breaker_max_cooldown_secs": 2},
        "burst": {"provider": "stripe", "destination": d("/burst"), "rate_limit_per_sec": bursts::BURST_RATE},
        "example-summary": {"provider": "standard", "max_attempts": 3, "retry_base_secs": 1, "retry_max_secs": 1},
        "broken": {"provider": "paypal"},
        "nosecret": {"provider": "stripe"},
    });
    // (Beside the table: more entries in it pass `json!`'s recursion limit.)
    let more = [
        ("narrow", serde_json::json!({"provider": "stripe", "tolerance_secs": 30})),
        ("bracketed", serde_json::json!({"provider": "stripe"})),
        (
            "hugedoomed",
            serde_json::json!({"provider": "github", "destination": d("/hugedoomed"), "max_body_bytes": 4_194_304, "max_attempts": 1}),
        ),
    ];
    sources.as_object_mut().unwrap().extend(more.map(|(name, source)| (name.to_owned(), source)));
    sources.as_object_mut().unwrap().extend(cli_sources);
    sources.to_string()
}

fn start_world() -> World {
    let dest = Destination::start();
    let common = |extra: Vec<(&str, String)>| {
        let mut vars: Vec<(String, String)> = vec![
            ("DESTINATION_SECRET".into(), DESTINATION_SECRET.into()),
            ("ADMIN_TOKEN".into(), ADMIN_TOKEN.into()),
            ("ALERT_URL".into(), dest.url("/alerts")),
        ];
        vars.extend(harness::vars(extra));
        vars
    };

    let cli_keys = cli::cli_keys();
    let (cli_sources, cli_secrets) = cli::cli_sources(&cli_keys);
    let mut main_vars = common(vec![("SOURCES", main_sources(&dest, cli_sources.clone()))]);
    main_vars.extend(cli_secrets.clone());
    let cli_vars = main_vars.clone();
    for name in [
        "stripe",
        "small",
        "flaky",
        "redirected",
        "doomed",
        "slow",
        "throttled",
        "unreachable",
        "nodest",
        "narrow",
        "filtered",
        "big",
        "bigdoomed",
        "concurrent",
        "captured",
        "listing",
        "replayable",
        "replayset",
        "recovering",
        "pausable",
        "throttled-open",
        "resumable",
        "droppable",
        "counted",
        "browser",
        "cliops",
        "ordered",
        "ordered-deliver",
        "flapping",
        "burst",
    ] {
        main_vars.push((secret_var(name), STRIPE_SECRET.into()));
    }
    main_vars.push(("WEBHOOK_SECRET_GITHUB".into(), GITHUB_SECRET.into()));
    main_vars.push(("WEBHOOK_SECRET_HUGE".into(), GITHUB_SECRET.into()));
    main_vars.push(("WEBHOOK_SECRET_HUGEDOOMED".into(), GITHUB_SECRET.into()));
    main_vars.push(("WEBHOOK_SECRET_GITHUB_UNSEALED".into(), GITHUB_SECRET.into()));
    main_vars.push(("WEBHOOK_SECRET_STANDARD".into(), STANDARD_SECRET.into()));
    main_vars.push(("WEBHOOK_SECRET_ROTATING".into(), format!(r#"["{ROTATION_NEW}","{ROTATION_OLD}"]"#)));
    main_vars.push(("WEBHOOK_SECRET_BRACKETED".into(), BRACKETED_SECRET.into()));
    main_vars.push(("WEBHOOK_SECRET_BROKEN".into(), STRIPE_SECRET.into()));
    main_vars.push(("WEBHOOK_SECRET_EXAMPLE_SUMMARY".into(), STANDARD_SECRET.into()));
    main_vars.push(("SUMMARY_URL".into(), dest.url("/summary")));

    // Sources as `wrangler.toml` tables; secrets, as they should be, outside it.
    // The fault suite's second destination: nothing listens on this port until the test starts
    // a server there, so its deliveries are refused until then.
    let refused_port = harness::free_port();
    let fault_suite = "max_attempts = 3\nretry_base_secs = 1\nretry_max_secs = 2\ndelivery_timeout_secs = 2\n\
                       breaker_failures = 3\nbreaker_cooldown_secs = 1\nbreaker_max_cooldown_secs = 2\n";
    let faults_toml = format!(
        "[vars.SOURCES.fragile]\nprovider = \"stripe\"\ndestination = {:?}\n\n\
         [vars.SOURCES.priced]\nprovider = \"stripe\"\ndestination = {:?}\n\n\
         [vars.SOURCES.priced-github]\nprovider = \"github\"\ndestination = {:?}\n\n\
         [vars.SOURCES.archived]\nprovider = \"stripe\"\nordering = false\n\n\
         [vars.SOURCES.capped]\nprovider = \"stripe\"\ndestination = {:?}\nmax_attempts = 1\n\n\
         [vars.SOURCES.handed]\nprovider = \"stripe\"\ndestination = {:?}\nmax_attempts = 1\n\n\
         [vars.SOURCES.signed]\nprovider = \"stripe\"\ndestination = {:?}\n\n\
         [vars.SOURCES.jepsen]\nprovider = \"stripe\"\ndestination = {:?}\n{fault_suite}\n\
         [vars.SOURCES.jepsen-refused]\nprovider = \"stripe\"\n\
         destination = \"http://127.0.0.1:{refused_port}/refused\"\n{fault_suite}",
        dest.url("/fragile"),
        dest.url("/priced"),
        dest.url("/priced-github"),
        dest.url("/capped"),
        dest.url("/handed"),
        dest.url("/signed"),
        dest.url("/jepsen")
    );
    let faults_secrets = common(vec![
        ("WEBHOOK_SECRET_FRAGILE", STRIPE_SECRET.into()),
        ("WEBHOOK_SECRET_PRICED", STRIPE_SECRET.into()),
        ("WEBHOOK_SECRET_PRICED_GITHUB", GITHUB_SECRET.into()),
        ("WEBHOOK_SECRET_ARCHIVED", STRIPE_SECRET.into()),
        ("WEBHOOK_SECRET_CAPPED", STRIPE_SECRET.into()),
        ("WEBHOOK_SECRET_HANDED", STRIPE_SECRET.into()),
        ("WEBHOOK_SECRET_SIGNED", STRIPE_SECRET.into()),
        ("WEBHOOK_SECRET_JEPSEN", STRIPE_SECRET.into()),
        ("WEBHOOK_SECRET_JEPSEN_REFUSED", STRIPE_SECRET.into()),
    ]);
    let ttl_sources = serde_json::json!({"ttl": {"provider": "stripe", "destination": dest.url("/ttl")}}).to_string();
    // No ADMIN_TOKEN here: this instance shows that the admin API is then closed to everyone.
    let ttl_vars = harness::vars([
        ("SOURCES", ttl_sources),
        ("WEBHOOK_SECRET_TTL", STRIPE_SECRET.into()),
        ("IDEMPOTENCY_TTL_SECS", TTL_SECS.to_string()),
        ("CAPTURE_RETENTION_SECS", RETENTION_SECS.to_string()),
        ("DESTINATION_SECRET", DESTINATION_SECRET.into()),
    ]);

    let mut main = Worker::start("main", "build", ConfigForm { dev_vars: main_vars, ..Default::default() });
    let mut faults = Worker::start(
        "faults",
        "build-faults",
        ConfigForm { toml: Some(faults_toml), dev_vars: faults_secrets, ..Default::default() },
    );
    let mut ttl = Worker::start("ttl", "build-faults", ConfigForm { flags: ttl_vars, ..Default::default() });
    let ops_sources = serde_json::json!({
        // No circuit breaker here: this source shows health reacting to failing deliveries.
        "hanging": {"provider": "stripe", "destination": dest.url("/hanging"), "delivery_timeout_secs": 1,
                    "max_attempts": 100, "retry_base_secs": 1, "retry_max_secs": 1, "breaker_failures": 0},
        "kept": {"provider": "stripe"},
    });
    // The CLI's sources too (a test build, unlike `main`): Web Crypto verification is counted.
    let mut ops_sources = ops_sources;
    ops_sources.as_object_mut().unwrap().extend(cli_sources);
    let mut ops_vars = harness::vars([
        ("SOURCES", ops_sources.to_string()),
        ("WEBHOOK_SECRET_HANGING", STRIPE_SECRET.into()),
        ("WEBHOOK_SECRET_KEPT", STRIPE_SECRET.into()),
        ("DESTINATION_SECRET", DESTINATION_SECRET.into()),
        ("ADMIN_TOKEN", ADMIN_TOKEN.into()),
        ("ALERT_URL", dest.url("/ops-alerts")),
    ]);
    ops_vars.extend(cli_secrets);
    // The durations as TOML numbers, as a user may write them in `[vars]` (the health and
    // retention tests need them read: the defaults are 300 s and 30 days).
    let ops_toml = "HEALTH_MAX_LAG_SECS = 5\nCAPTURE_RETENTION_SECS = 4".to_owned();
    let mut ops = Worker::start(
        "ops",
        "build-faults",
        ConfigForm { dev_vars: ops_vars, toml: Some(ops_toml), ..Default::default() },
    );
    let vector_sources = providers::vector_sources();
    let hostile = hostile::generate();
    let mut vector_vars = providers::vector_config(&vector_sources);
    hostile::add_sources(&hostile, &mut vector_vars);
    let mut vectors =
        Worker::start("vectors", "build-faults", ConfigForm { dev_vars: vector_vars, ..Default::default() });
    let mut chaos =
        Worker::start("chaos", "build-faults", ConfigForm { dev_vars: soak::config(&dest), ..Default::default() });
    for w in [&mut main, &mut faults, &mut ttl, &mut vectors, &mut ops, &mut chaos] {
        w.wait_ready(Duration::from_secs(180));
    }
    World { dest, main, faults, ttl, vectors, ops, chaos, vector_sources, hostile, cli_vars, cli_keys, refused_port }
}

type Test = (&'static str, fn(&World));

/// Tests that run one at a time after the parallel ones, in this order.
const SOLO: &[Test] = &[
    ("chunked_bodies_are_limited_while_read", receiving::chunked_bodies_are_limited_while_read),
    (operations::SOLO[0].0, operations::SOLO[0].1),
    (operations::SOLO[1].0, operations::SOLO[1].1),
    (operations::SOLO[2].0, operations::SOLO[2].1),
    (operations::SOLO[3].0, operations::SOLO[3].1),
    bursts::SOLO,
    (
        "a_burst_of_5000_is_delivered_once_within_the_rate_limit",
        bursts::a_burst_of_5000_is_delivered_once_within_the_rate_limit,
    ),
    cost::SOLO,
    cost::HEADERS,
    operations::SHARD_HEALTH,
    ("expired_events_leave_storage", idempotency::expired_events_leave_storage),
    // Alone, so that its crashes cut no other test's batches and its latencies are its own.
    soak::SOLO,
    ("no_secret_in_any_log", idempotency::no_secret_in_any_log),
    ("dead_letter_listings_follow_cursors", delivery::dead_letter_listings_follow_cursors),
    delivery::CRASH,
];

fn tests() -> Vec<Test> {
    let mut all = Vec::new();
    all.extend(receiving::TESTS);
    all.extend(delivery::TESTS);
    all.extend(idempotency::TESTS);
    all.extend(dev_command::TESTS);
    all.extend(providers::TESTS);
    all.extend(cli::TESTS);
    all.extend(operations::TESTS);
    all.extend(dashboard::TESTS);
    all.extend(bursts::TESTS);
    all.extend(jepsen::TESTS);
    all.extend(hostile::TESTS);
    all
}

fn main() {
    let filter: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let selected: Vec<Test> =
        tests().into_iter().filter(|(name, _)| filter.as_deref().is_none_or(|f| name.contains(f))).collect();
    let solo_selected = SOLO.iter().any(|(name, _)| filter.as_deref().is_none_or(|f| name.contains(f)));
    if selected.is_empty() && !solo_selected {
        println!("no integration test matches {filter:?}");
        return;
    }

    let started = Instant::now();
    build_worker("build", &[]);
    build_worker("build-faults", &["--features", "faults"]);
    cli::build_cli();
    let world = start_world();
    println!("worker instances ready in {:.1}s", started.elapsed().as_secs_f64());

    let results: Vec<(&str, Result<f64, String>)> = thread::scope(|scope| {
        let handles: Vec<_> = selected
            .iter()
            .map(|&(name, test)| {
                let world = &world;
                (name, scope.spawn(move || run_one(test, world)))
            })
            .collect();
        handles.into_iter().map(|(name, h)| (name, h.join().unwrap())).collect()
    });
    // Then, one at a time, the tests that must not overlap with others; the leak check last,
    // over everything the workers logged.
    let solo: Vec<(&str, Result<f64, String>)> = SOLO
        .iter()
        .filter(|(name, _)| filter.as_deref().is_none_or(|f| name.contains(f)) || *name == "no_secret_in_any_log")
        .map(|&(name, test)| (name, run_one(test, &world)))
        .collect();

    let mut failed = 0;
    for (name, result) in results.iter().chain(solo.iter()) {
        match result {
            Ok(secs) => println!("test {name} ... ok ({secs:.1}s)"),
            Err(message) => {
                failed += 1;
                println!("test {name} ... FAILED\n    {}", message.replace('\n', "\n    "));
            }
        }
    }
    if failed > 0 {
        for w in world.workers() {
            println!("--- {} log: {}", w.name, harness::show(&w.log));
            let logs = w.logs();
            let tail: Vec<&str> = logs.lines().rev().take(40).collect();
            for line in tail.into_iter().rev() {
                println!("    {line}");
            }
        }
    }
    println!(
        "\nintegration: {} passed, {failed} failed, in {:.1}s",
        results.len() + solo.len() - failed,
        started.elapsed().as_secs_f64()
    );
    drop(world);
    std::process::exit(if failed > 0 { 1 } else { 0 });
}

fn run_one(test: fn(&World), world: &World) -> Result<f64, String> {
    let started = Instant::now();
    catch_unwind(AssertUnwindSafe(|| test(world))).map(|_| started.elapsed().as_secs_f64()).map_err(|panic| {
        panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "panicked".into())
    })
}
