//! edgehook's end-to-end benchmarks, against the compiled worker under `wrangler dev`, side by
//! side with the hand-written JavaScript reference receiver (`../shared/bench/reference-worker`).
//! Numbers are printed and written to `target/bench/`, never asserted: they depend on the machine.
//!
//! `cargo bench --bench edge [bundle|startup|ingest|crypto|drain|drain-large]...` (all of them by default);
//! `scripts/bench` runs these and the verification micro-benchmarks and draws the plot.
//!
//! - bundle: the built wasm and JavaScript, raw and gzipped;
//! - startup: from starting `wrangler dev` to the first accepted webhook, edgehook and reference;
//! - ingest: `wrk` (2 threads, 32 connections) sending distinct signed Stripe events of 1 KB,
//!   64 KB and 1 MB to edgehook, the reference, and the reference in `enqueue-only` mode (the
//!   ceiling of a durable ingest on this runtime); requests per second, p50, p99, and ratios;
//!   CPU per accepted event by process, and the runtime's memory after each run;
//! - crypto: HMAC-SHA256 inside the wasm runtime, edgehook's Rust code against Web Crypto, at the
//!   same sizes (through the test build's `/__faults/hmac`);
//! - drain: 5,000 queued events forwarded to a local destination, events per second.
//! - drain-large: 200 events of 1 MB (claim-checked: read back from R2) forwarded the same way.

#[path = "../tests/integration/harness.rs"]
#[allow(dead_code)]
mod harness;

use edgehook_core::providers::Provider;
use harness::{build_worker, free_port, now_secs, root, signed, ConfigForm, Destination, Group, Worker};
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The harness's admin helpers want a token; the benchmarks configure this one.
pub const ADMIN_TOKEN: &str = "bench-admin-token";
/// The reference worker's Stripe secret (its wrangler.toml).
const SECRET: &str = "whsec_benchmark_secret";
const DESTINATION_SECRET: &str = "whsec_ZWRnZWhvb2stYmVuY2htYXJrLWRlc3RpbmF0aW9uLWtleQ==";

/// Body sizes, with how many distinct requests to prepare and how long to send them: enough
/// that `wrk` never runs out and starts repeating (repeats would be cheap duplicates).
const SIZES: &[(&str, usize, usize, u64)] =
    &[("1KB", 1024, 40_000, 10), ("64KB", 64 * 1024, 8_000, 10), ("1MB", 1024 * 1024, 1_000, 6)];

fn shared() -> PathBuf {
    std::env::var_os("EDGEHOOK_SHARED").map_or_else(|| root().join("../shared"), PathBuf::from)
}

fn out_dir() -> PathBuf {
    let dir = root().join("target/bench");
    fs::create_dir_all(&dir).unwrap();
    dir
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let wants = |part: &str| args.is_empty() || args.iter().any(|a| a == part);
    println!("machine: {}", machine());
    if wants("bundle") || wants("startup") || wants("ingest") || wants("drain") || wants("drain-large") {
        build_worker("build", &[]);
    }
    if wants("crypto") {
        build_worker("build-faults", &["--features", "faults"]);
    }
    if wants("bundle") {
        bundle();
    }
    if wants("startup") {
        startup();
    }
    if wants("ingest") {
        ingest();
    }
    if wants("crypto") {
        crypto();
    }
    if wants("drain") {
        drain();
    }
    if wants("drain-large") {
        drain_large();
    }
}

fn machine() -> String {
    let cpu = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let wrangler = Command::new(root().join("node_modules/.bin/wrangler"))
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    format!("{cpu}, {cores} cores; wrangler {wrangler}")
}

fn gzipped_len(path: &Path) -> usize {
    let out = Command::new("gzip").args(["-9", "-c"]).arg(path).output().expect("gzip runs");
    out.stdout.len()
}

fn bundle() {
    let dir = root().join("build");
    let wasm = dir.join("index_bg.wasm");
    // The JavaScript is worker-build's shim.js and the entry that wraps it, js/index.js.
    let js = [dir.join("index.js"), dir.join("shim.js")];
    let wasm_raw = fs::metadata(&wasm).unwrap().len() as usize;
    let js_raw: usize = js.iter().map(|f| fs::metadata(f).unwrap().len() as usize).sum();
    let (wasm_gz, js_gz) = (gzipped_len(&wasm), js.iter().map(|f| gzipped_len(f)).sum::<usize>());
    println!("\n## bundle");
    println!("| file | raw | gzip -9 |\n| --- | --- | --- |");
    println!("| index_bg.wasm | {} KB | {} KB |", wasm_raw / 1024, wasm_gz / 1024);
    println!("| index.js and shim.js | {} KB | {} KB |", js_raw / 1024, js_gz / 1024);
    println!(
        "| total | {} KB | {} KB (target: at most 400 KB) |",
        (wasm_raw + js_raw) / 1024,
        (wasm_gz + js_gz) / 1024
    );
    record("bundle", &format!(r#"{{"wasm":{wasm_raw},"wasm_gz":{wasm_gz},"js":{js_raw},"js_gz":{js_gz}}}"#));
}

/// Which receiver a run targets.
#[derive(Clone, Copy, PartialEq)]
enum Target {
    Edgehook,
    Reference,
    Ceiling,
}

impl Target {
    fn name(self) -> &'static str {
        match self {
            Target::Edgehook => "edgehook",
            Target::Reference => "reference",
            Target::Ceiling => "enqueue-only ceiling",
        }
    }
}

/// A running receiver: its process, its base URL and its webhook path.
struct Receiver {
    _process: Option<Group>,
    _worker: Option<Worker>,
    base: String,
    path: &'static str,
}

fn start(target: Target, destination: Option<&str>) -> Receiver {
    match target {
        Target::Edgehook => {
            let mut source = serde_json::json!({"provider": "stripe"});
            if let Some(url) = destination {
                source["destination"] = url.into();
            }
            let vars = vec![
                ("SOURCES".to_owned(), serde_json::json!({ "stripe": source }).to_string()),
                ("WEBHOOK_SECRET_STRIPE".to_owned(), SECRET.to_owned()),
                ("DESTINATION_SECRET".to_owned(), DESTINATION_SECRET.to_owned()),
                ("ADMIN_TOKEN".to_owned(), ADMIN_TOKEN.to_owned()),
            ];
            let worker = Worker::start("bench", "build", ConfigForm { dev_vars: vars, ..Default::default() });
            Receiver { base: worker.base.clone(), _worker: Some(worker), _process: None, path: "/webhooks/stripe" }
        }
        Target::Reference | Target::Ceiling => {
            let dir = std::env::temp_dir().join(harness::unique("edgehook-bench-reference"));
            fs::create_dir_all(&dir).unwrap();
            let port = free_port();
            let mode = if target == Target::Ceiling { "enqueue-only" } else { "full" };
            let mut command = Command::new(root().join("node_modules/.bin/wrangler"));
            command
                .arg("dev")
                .arg("--config")
                .arg(shared().join("bench/reference-worker/wrangler.toml"))
                .args(["--ip", "127.0.0.1", "--port", &port.to_string()])
                .args(["--inspector-port", &free_port().to_string()])
                .arg("--persist-to")
                .arg(dir.join("state"))
                .args(["--show-interactive-dev-session=false", "--log-level", "log"])
                .args(["--var", &format!("MODE:{mode}")])
                .current_dir(&dir);
            let process = Group::spawn(command, &dir.join("wrangler.log"));
            Receiver {
                base: format!("http://127.0.0.1:{port}"),
                _process: Some(process),
                _worker: None,
                path: "/webhooks/stripe",
            }
        }
    }
}

impl Receiver {
    fn group_id(&self) -> Option<u32> {
        self._worker.as_ref().and_then(Worker::group_id).or_else(|| self._process.as_ref()?.group_id())
    }
}

/// CPU seconds used so far by the processes of one `wrangler dev`, by role, and the runtime's
/// memory.
#[derive(Debug, Default, Clone, Copy)]
struct Cpu {
    /// The runtime's resident memory (MB) when read, and its peak since it started (`VmRSS`
    /// and `VmHWM`): V8's heaps, the wasm memory (which only grows), SQLite's caches.
    runtime_rss_mb: f64,
    runtime_peak_mb: f64,
    /// The workerd that runs the receiver itself (its fetch and queue handlers, its Durable
    /// Objects, the simulated queue and storage): the one with an inspector.
    runtime: f64,
    /// The workerd that runs wrangler's proxy in front of it.
    proxy: f64,
    /// wrangler itself (Node.js): it logs every request, told by workerd over a loopback socket.
    wrangler: f64,
}

impl Cpu {
    /// Reads `/proc` for every process in `group` (Linux only; zeros elsewhere).
    fn of_group(group: Option<u32>) -> Cpu {
        let mut cpu = Cpu::default();
        let (Some(group), Ok(entries)) = (group, fs::read_dir("/proc")) else { return cpu };
        // SAFETY: sysconf has no memory effects.
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        for entry in entries.flatten() {
            let Ok(stat) = fs::read_to_string(entry.path().join("stat")) else { continue };
            // `pid (comm) state ppid pgrp ...`: the name may hold spaces, so split after it.
            let Some((head, rest)) = stat.rsplit_once(')') else { continue };
            let fields: Vec<&str> = rest.split_whitespace().collect();
            if fields.get(2).and_then(|g| g.parse::<u32>().ok()) != Some(group) {
                continue;
            }
            // utime and stime: fields 14 and 15 of stat, 12 and 13 after the name.
            let used = |i: usize| fields.get(i).and_then(|t| t.parse::<f64>().ok()).unwrap_or(0.0);
            let secs = (used(11) + used(12)) / ticks;
            let cmdline = fs::read(entry.path().join("cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline);
            if head.ends_with("(workerd") {
                if cmdline.contains("--inspector-addr") {
                    cpu.runtime += secs;
                    let status = fs::read_to_string(entry.path().join("status")).unwrap_or_default();
                    let kb = |key: &str| {
                        status.lines().find_map(|l| l.strip_prefix(key)?.trim().strip_suffix("kB")?.trim().parse().ok())
                    };
                    cpu.runtime_rss_mb += kb("VmRSS:").unwrap_or(0.0) / 1024.0;
                    cpu.runtime_peak_mb += kb("VmHWM:").unwrap_or(0.0) / 1024.0;
                } else {
                    cpu.proxy += secs;
                }
            } else if head.ends_with("(node") {
                cpu.wrangler += secs;
            }
        }
        cpu
    }

    /// The CPU used since `before`; memory as it is now.
    fn since(self, before: Cpu) -> Cpu {
        Cpu {
            runtime: self.runtime - before.runtime,
            proxy: self.proxy - before.proxy,
            wrangler: self.wrangler - before.wrangler,
            ..self
        }
    }
}

/// A distinct, signed Stripe event of about `size` bytes.
fn stripe_event(id: &str, size: usize) -> Vec<u8> {
    let mut body = format!(r#"{{"id":"{id}","object":"event","type":"invoice.paid","padding":""#).into_bytes();
    body.resize(size.saturating_sub(2).max(body.len()), b'x');
    body.extend_from_slice(b"\"}");
    body
}

/// Posts signed events until one is accepted; how long that took.
fn first_accepted(r: &Receiver, timeout: Duration) -> Duration {
    let started = Instant::now();
    let mut n = 0;
    loop {
        n += 1;
        let id = format!("evt_first_{}_{n}", now_secs());
        let body = stripe_event(&id, 1024);
        let headers = signed(Provider::Stripe, SECRET, "", now_secs(), &body);
        // Not listening yet is expected while wrangler starts.
        let mut request =
            ureq::AgentBuilder::new().timeout(Duration::from_secs(10)).build().post(&format!("{}{}", r.base, r.path));
        for (k, v) in &headers.0 {
            request = request.set(k, v);
        }
        if matches!(request.send_bytes(&body), Ok(reply) if reply.status() == 200) {
            return started.elapsed();
        }
        assert!(started.elapsed() < timeout, "no webhook accepted after {timeout:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn startup() {
    println!("\n## startup: `wrangler dev` started to the first accepted webhook (fresh state)");
    let mut json = String::from("{");
    for target in [Target::Edgehook, Target::Reference] {
        let started = Instant::now();
        let r = start(target, None);
        first_accepted(&r, Duration::from_secs(180));
        let secs = started.elapsed().as_secs_f64();
        println!("| {} | {secs:.2} s |", target.name());
        let _ = write!(json, r#""{}":{secs:.3},"#, target.name());
    }
    json.pop();
    json.push('}');
    record("startup", &json);
}

/// One `wrk` run's figures.
#[derive(Debug, Default, Clone)]
struct Run {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    ok: u64,
    other: u64,
    requests: u64,
}

fn wrk(r: &Receiver, requests_file: &Path, secs: u64) -> Run {
    let out = Command::new("wrk")
        .args(["-t2", "-c32", &format!("-d{secs}s"), "--timeout", "30s", "-s"])
        .arg(shared().join("bench/replay.lua"))
        .arg(&r.base)
        .env("REQUESTS_FILE", requests_file)
        .env("WEBHOOK_PATH", r.path)
        .env("THREADS", "2")
        .output()
        .expect("wrk runs (apt-get install wrk)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut run = Run::default();
    for line in text.lines() {
        let line = line.trim();
        if let Some(v) = line.strip_prefix("Requests/sec:") {
            run.rps = v.trim().parse().unwrap_or(0.0);
        } else if let Some(rest) = line.strip_prefix("p50 ") {
            // "p50 12.3 ms, p99 45.6 ms"
            let nums: Vec<f64> =
                rest.split(|c: char| !(c.is_ascii_digit() || c == '.')).filter_map(|s| s.parse().ok()).collect();
            if nums.len() >= 3 {
                (run.p50_ms, run.p99_ms) = (nums[0], nums[2]);
            }
        } else if let Some(rest) = line.strip_prefix("status ") {
            let (code, n) = rest.split_once(':').unwrap_or(("0", "0"));
            let n: u64 = n.trim().parse().unwrap_or(0);
            if code.trim() == "200" {
                run.ok += n;
            } else {
                run.other += n;
            }
        } else if line.contains("requests in") {
            run.requests = line.split_whitespace().next().and_then(|n| n.parse().ok()).unwrap_or(0);
        }
    }
    // Only what was accepted counts: a receiver that answers errors quickly is not fast.
    if run.ok + run.other > 0 {
        run.rps *= run.ok as f64 / (run.ok + run.other) as f64;
    }
    if run.rps == 0.0 && run.other == 0 {
        eprintln!("wrk output:\n{text}\n{}", String::from_utf8_lossy(&out.stderr));
    }
    run
}

fn requests_file(size: usize, count: usize) -> PathBuf {
    let path = out_dir().join(format!("requests-{size}.txt"));
    let status = Command::new("python3")
        .arg(shared().join("bench/stripe-requests.py"))
        .args([count.to_string(), SECRET.to_owned(), size.to_string()])
        .arg(&path)
        .status()
        .expect("python3 runs");
    assert!(status.success(), "stripe-requests.py failed");
    path
}

fn ingest() {
    println!("\n## ingest: wrk -t2 -c32, distinct signed Stripe events");
    let mut results: Vec<(Target, &str, Run, Cpu)> = Vec::new();
    for target in [Target::Edgehook, Target::Reference, Target::Ceiling] {
        let r = start(target, None);
        first_accepted(&r, Duration::from_secs(180));
        for &(label, size, count, secs) in SIZES {
            // Fresh timestamps (the window is 5 minutes) and ids for every run.
            let file = requests_file(size, count);
            let before = Cpu::of_group(r.group_id());
            let run = wrk(&r, &file, secs);
            let _ = fs::remove_file(&file);
            // Let the consumer catch up, so that one size's backlog does not weigh on the next
            // and the CPU an accepted event costs its consumer is counted with it.
            std::thread::sleep(Duration::from_secs(5));
            let cpu = Cpu::of_group(r.group_id()).since(before);
            if run.requests as usize > count {
                eprintln!(
                    "warning: {} {label}: {} requests for {count} distinct events; the rest were duplicates",
                    target.name(),
                    run.requests
                );
            }
            println!(
                "{} {label}: {:.0} accepted/s, p50 {:.1} ms, p99 {:.1} ms ({} answered 200, {} other)",
                target.name(),
                run.rps,
                run.p50_ms,
                run.p99_ms,
                run.ok,
                run.other
            );
            results.push((target, label, run, cpu));
        }
    }
    let find_both = |t: Target, label: &str| {
        results.iter().find(|(rt, l, ..)| *rt == t && *l == label).map(|(_, _, r, c)| (r.clone(), *c)).unwrap()
    };
    let find = |t: Target, label: &str| find_both(t, label).0;
    println!("\n| body | receiver | accepted/s | p50 | p99 | non-200 answers |\n| --- | --- | --- | --- | --- | --- |");
    for &(label, ..) in SIZES {
        for t in [Target::Edgehook, Target::Reference, Target::Ceiling] {
            let r = find(t, label);
            println!(
                "| {label} | {} | {:.0} | {:.1} ms | {:.1} ms | {} |",
                t.name(),
                r.rps,
                r.p50_ms,
                r.p99_ms,
                r.other
            );
        }
    }
    println!("\n| body | edgehook / reference (req/s) | edgehook / ceiling (req/s) | p99 edgehook / reference |\n| --- | --- | --- | --- |");
    let mut json = String::from("[");
    for &(label, ..) in SIZES {
        let (e, r, c) = (find(Target::Edgehook, label), find(Target::Reference, label), find(Target::Ceiling, label));
        let ratio = |a: f64, b: f64| if b > 0.0 { format!("{:.2}", a / b) } else { "n/a (it accepted none)".into() };
        let p99 = if r.ok > 0 { format!("{:.2}", e.p99_ms / r.p99_ms) } else { "n/a".into() };
        println!("| {label} | {} | {} | {p99} |", ratio(e.rps, r.rps), ratio(e.rps, c.rps));
        for (t, run) in [(Target::Edgehook, &e), (Target::Reference, &r), (Target::Ceiling, &c)] {
            let _ = write!(
                json,
                r#"{{"size":"{label}","receiver":"{}","rps":{:.1},"p50_ms":{:.2},"p99_ms":{:.2},"non_200":{}}},"#,
                t.name(),
                run.rps,
                run.p50_ms,
                run.p99_ms,
                run.other
            );
        }
    }
    json.pop();
    json.push(']');
    record("ingest", &json);

    // Where the two cores went: CPU per accepted event, from the start of each run to the end
    // of the consumer's catch-up after it. The runtime's share is the receiver's own work
    // (ingest, consumer, Durable Objects, simulated queue and storage); the proxy and wrangler
    // are `wrangler dev`'s, the same per request whichever receiver it serves.
    println!("\n## CPU per accepted event (ms), by process\n| body | receiver | runtime (workerd) | wrangler's proxy (workerd) | wrangler (Node.js) | runtime, ceiling / this |\n| --- | --- | --- | --- | --- | --- |");
    let mut json = String::from("[");
    for &(label, ..) in SIZES {
        let ceiling = find_both(Target::Ceiling, label);
        for t in [Target::Edgehook, Target::Reference, Target::Ceiling] {
            let (run, cpu) = find_both(t, label);
            if run.ok == 0 {
                continue;
            }
            let per = |secs: f64| secs * 1000.0 / run.ok as f64;
            let vs_ceiling = if ceiling.0.ok > 0 {
                let ceiling_ms = ceiling.1.runtime * 1000.0 / ceiling.0.ok as f64;
                format!("{:.2}", ceiling_ms / per(cpu.runtime))
            } else {
                "n/a".into()
            };
            println!(
                "| {label} | {} | {:.2} | {:.2} | {:.2} | {vs_ceiling} |",
                t.name(),
                per(cpu.runtime),
                per(cpu.proxy),
                per(cpu.wrangler)
            );
            let _ = write!(
                json,
                r#"{{"size":"{label}","receiver":"{}","runtime_ms":{:.3},"proxy_ms":{:.3},"wrangler_ms":{:.3}}},"#,
                t.name(),
                per(cpu.runtime),
                per(cpu.proxy),
                per(cpu.wrangler)
            );
        }
    }
    json.pop();
    json.push(']');
    record("ingest-cpu", &json);

    // Memory: the runtime's resident set after each run and its catch-up, and its peak so far
    // (the sizes run in order, 1 KB first, in one runtime per receiver).
    println!("\n## The runtime's memory (MB)\n| body | receiver | resident after the run | peak so far |\n| --- | --- | --- | --- |");
    let mut json = String::from("[");
    for &(label, ..) in SIZES {
        for t in [Target::Edgehook, Target::Reference, Target::Ceiling] {
            let (_, cpu) = find_both(t, label);
            println!("| {label} | {} | {:.0} | {:.0} |", t.name(), cpu.runtime_rss_mb, cpu.runtime_peak_mb);
            let _ = write!(
                json,
                r#"{{"size":"{label}","receiver":"{}","rss_mb":{:.1},"peak_mb":{:.1}}},"#,
                t.name(),
                cpu.runtime_rss_mb,
                cpu.runtime_peak_mb
            );
        }
    }
    json.pop();
    json.push(']');
    record("ingest-memory", &json);
}

fn crypto() {
    println!("\n## HMAC-SHA256 inside the wasm runtime (workerd): edgehook's Rust code against Web Crypto");
    let vars = vec![("SOURCES".to_owned(), "{}".to_owned())];
    let mut worker = Worker::start("bench-crypto", "build-faults", ConfigForm { dev_vars: vars, ..Default::default() });
    worker.wait_ready(Duration::from_secs(180));
    let time = |imp: &str, size: usize, n: usize| -> f64 {
        // The median of five requests, each computing `n` MACs in the worker.
        let mut samples: Vec<f64> = (0..5)
            .map(|_| {
                let started = Instant::now();
                let reply =
                    worker.post(&format!("/__faults/hmac?impl={imp}&size={size}&n={n}"), &Default::default(), b"");
                assert_eq!(reply.status, 200, "{}", reply.body);
                started.elapsed().as_secs_f64()
            })
            .collect();
        samples.sort_by(|a, b| a.total_cmp(b));
        samples[2]
    };
    println!("| body | Rust (wasm) | Web Crypto | Rust / Web Crypto |\n| --- | --- | --- | --- |");
    let mut json = String::from("[");
    for (label, size) in
        [("1KB", 1024), ("16KB", 16 * 1024), ("32KB", 32 * 1024), ("64KB", 64 * 1024), ("1MB", 1024 * 1024)]
    {
        let n = (64 * 1024 * 1024 / size).clamp(20, 2000);
        let per = |imp: &str| (time(imp, size, n) - time(imp, size, 0)).max(0.0) / n as f64 * 1e6;
        let (rust, web) = (per("rust"), per("webcrypto"));
        println!("| {label} | {rust:.1} µs | {web:.1} µs | {:.2} |", rust / web);
        let _ = write!(json, r#"{{"size":"{label}","rust_us":{rust:.2},"webcrypto_us":{web:.2}}},"#);
    }
    json.pop();
    json.push(']');
    record("crypto", &json);

    // Whole verifications, the way ingest runs them: edgehook switches to the two-pass Web
    // Crypto path for the providers that sign the body as it is, from the sizes these rows show
    // it pays off (`ingest::web_crypto_pays_off`).
    println!("\n## Verification inside the wasm runtime, per provider: Rust HMAC against two passes with Web Crypto");
    println!("| provider | body | Rust | two passes + Web Crypto | Rust / Web Crypto | edgehook uses |");
    println!("| --- | --- | --- | --- | --- | --- |");
    let time_verify = |provider: &str, imp: &str, size: usize, n: usize| -> f64 {
        let mut samples: Vec<f64> = (0..3)
            .map(|_| {
                let started = Instant::now();
                let path = format!("/__faults/verify?provider={provider}&impl={imp}&size={size}&n={n}");
                let reply = worker.post(&path, &Default::default(), b"");
                assert_eq!(reply.status, 200, "{path}: {}", reply.body);
                started.elapsed().as_secs_f64()
            })
            .collect();
        samples.sort_by(|a, b| a.total_cmp(b));
        samples[1]
    };
    // Naming providers among the arguments (`-- crypto twilio`) times only those.
    let named: Vec<String> = std::env::args().filter(|a| VERIFY_PROVIDERS.contains(&a.as_str())).collect();
    let mut json = String::from("[");
    for provider in VERIFY_PROVIDERS.into_iter().filter(|p| named.is_empty() || named.iter().any(|n| n == p)) {
        for (label, size) in [
            ("1KB", 1024),
            ("4KB", 4096),
            ("8KB", 8192),
            ("16KB", 16 * 1024),
            ("64KB", 64 * 1024),
            ("1MB", 1024 * 1024),
        ] {
            let n = (16 * 1024 * 1024 / size).clamp(10, 400);
            let per = |imp: &str| {
                (time_verify(provider, imp, size, n) - time_verify(provider, imp, size, 0)).max(0.0) / n as f64 * 1e6
            };
            let (rust, web) = (per("rust"), per("webcrypto"));
            let provider_of = Provider::from_name(provider).expect("a provider");
            let switches =
                provider_of.body_hmac(None).is_some_and(|h| edgehook_core::ingest::web_crypto_pays_off(h, size));
            let uses = if switches { "Web Crypto" } else { "Rust" };
            println!("| {provider} | {label} | {rust:.1} µs | {web:.1} µs | {:.2} | {uses} |", rust / web);
            let _ = write!(
                json,
                r#"{{"provider":"{provider}","size":"{label}","rust_us":{rust:.2},"webcrypto_us":{web:.2},"uses":"{uses}"}},"#
            );
        }
    }
    json.pop();
    json.push(']');
    record("verify-wasm", &json);
}

/// The providers whose whole verification `crypto` times in the worker: every HMAC provider but
/// `generic` (whose scheme is configured), Twilio to show why it stays on Rust's HMAC.
const VERIFY_PROVIDERS: [&str; 17] = [
    "stripe",
    "github",
    "standard",
    "shopify",
    "slack",
    "square",
    "paddle",
    "linear",
    "zoom",
    "hubspot",
    "typeform",
    "twitch",
    "intercom",
    "pagerduty",
    "sentry",
    "vercel",
    "twilio",
];

fn drain() {
    drain_of("drain", 5_000, 1024, 32);
}

/// Claim-checked bodies (over the queue's 120 KB, so read back from R2 and forwarded from there).
fn drain_large() {
    drain_of("drain-large", 200, 1024 * 1024, 8);
}

/// `events` events of `size` bytes, sent by `senders` connections, forwarded to a local destination.
fn drain_of(name: &str, events: usize, size: usize, senders: usize) {
    println!("\n## {name}: {events} events of {size} bytes forwarded to a local destination");
    let dest = Destination::start();
    let path = format!("/{name}");
    let r = start(Target::Edgehook, Some(&dest.url(&path)));
    first_accepted(&r, Duration::from_secs(180));
    std::thread::sleep(Duration::from_secs(3));
    let before = dest.received(&path, |_| true).len();
    let cpu_before = Cpu::of_group(r.group_id());
    let started = Instant::now();
    let prefix = format!("evt_{}_{}", name.replace('-', "_"), now_secs());
    std::thread::scope(|scope| {
        for sender in 0..senders {
            let (r, prefix) = (&r, &prefix);
            scope.spawn(move || {
                for i in (sender..events).step_by(senders) {
                    let body = stripe_event(&format!("{prefix}_{i}"), size);
                    let headers = signed(Provider::Stripe, SECRET, "", now_secs(), &body);
                    let reply = harness::request("POST", &format!("{}{}", r.base, r.path), &headers, &body);
                    assert_eq!(reply.status, 200, "{}", reply.body);
                }
            });
        }
    });
    let sent = started.elapsed();
    let got = dest.wait_for(&path, before + events, Duration::from_secs(600), |_| true);
    let drained = started.elapsed();
    let cpu = Cpu::of_group(r.group_id()).since(cpu_before);
    let mut times: Vec<Instant> = got[before..].iter().map(|r| r.at).collect();
    times.sort();
    let span = (*times.last().unwrap() - times[0]).as_secs_f64();
    // Receiving and delivering both run in the runtime under `wrangler dev`: its CPU per event
    // is the two together.
    println!(
        "runtime CPU per event (receiving and delivering) {:.2} ms; runtime memory {:.0} MB resident, {:.0} MB peak",
        cpu.runtime * 1000.0 / events as f64,
        cpu.runtime_rss_mb,
        cpu.runtime_peak_mb
    );
    println!(
        "{events} events sent in {:.1} s ({:.0}/s); all delivered {:.1} s after the first was sent; \
         first to last delivery {span:.1} s: {:.0} events/s, {:.1} MB/s",
        sent.as_secs_f64(),
        events as f64 / sent.as_secs_f64(),
        drained.as_secs_f64(),
        events as f64 / span,
        (events * size) as f64 / span / 1e6,
    );
    record(
        name,
        &format!(
            r#"{{"events":{events},"size":{size},"send_secs":{:.2},"drained_secs":{:.2},"delivery_span_secs":{span:.2},"runtime_cpu_ms_per_event":{:.3},"runtime_rss_mb":{:.1},"runtime_peak_mb":{:.1}}}"#,
            sent.as_secs_f64(),
            drained.as_secs_f64(),
            cpu.runtime * 1000.0 / events as f64,
            cpu.runtime_rss_mb,
            cpu.runtime_peak_mb
        ),
    );
}

fn record(name: &str, json: &str) {
    let path = out_dir().join(format!("{name}.json"));
    fs::write(&path, json).unwrap();
}
