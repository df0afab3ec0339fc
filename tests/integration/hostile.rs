//! The hostile corpus through the running worker: a sample of the core's generated corpus
//! (`core/tests/hostile.rs`, which checks 10,000 requests per provider against the verifier)
//! sent byte for byte over raw HTTP to the `vectors` instance, where each provider has a
//! `hostile-<provider>` source with the corpus's secret, verifying at the corpus's clock.
//!
//! For every request: never a 2xx (nothing accepted, no handshake answered), never a 5xx, and no
//! secret or correct signature in the answer; afterwards, none in the worker's log either, and
//! every provider's authentic request is still accepted (the worker is healthy). Answers can
//! come from `wrangler dev`'s HTTP server rather than edgehook (431 for 64 KB headers, 400 for a
//! malformed request line, a closed connection); the summary counts them apart, and each provider
//! must have had requests reach its signature check.
//!
//! `HOSTILE_WORKER_CASES` sets the requests per provider (150 by default, to fit CI).

use crate::harness::{root, Worker};
use crate::World;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

pub const TESTS: &[crate::Test] = &[("hostile_corpus_through_the_worker", hostile_corpus_through_the_worker)];

#[derive(Deserialize, Clone)]
pub struct Request {
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    body: String,
}

/// A provider's line of the corpus.
#[derive(Deserialize)]
pub struct ProviderLine {
    provider: String,
    source: serde_json::Value,
    secret: String,
    now: i64,
    url_base: String,
    authentic: Request,
}

/// A hostile request, and what must never be shown of it.
#[derive(Deserialize)]
pub struct Case {
    provider: String,
    #[serde(flatten)]
    request: Request,
    needles: Vec<String>,
    /// What the generator did to the authentic request, for the diagnosis.
    mutations: Vec<String>,
}

pub struct Corpus {
    pub providers: Vec<ProviderLine>,
    pub cases: Vec<Case>,
}

fn source_name(provider: &str) -> String {
    format!("hostile-{provider}")
}

/// Builds the corpus with the core's generator (its test in dump mode).
pub fn generate() -> Corpus {
    let cases: usize = std::env::var("HOSTILE_WORKER_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(150);
    let path: PathBuf = std::env::temp_dir().join(crate::harness::unique("hostile-corpus")).with_extension("jsonl");
    let out = Command::new("cargo")
        .args(["test", "-p", "edgehook-core", "--test", "hostile", "--locked", "-q"])
        .env("HOSTILE_CASES", cases.to_string())
        .env("HOSTILE_DUMP", &path)
        .current_dir(root())
        .output()
        .expect("cargo runs");
    assert!(out.status.success(), "the corpus generator failed: {}", String::from_utf8_lossy(&out.stderr));
    let text = std::fs::read_to_string(&path).unwrap();
    let mut corpus = Corpus { providers: Vec::new(), cases: Vec::new() };
    for line in text.lines().filter(|l| !l.is_empty()) {
        let value: serde_json::Value = serde_json::from_str(line).unwrap();
        if value.get("authentic").is_some() {
            corpus.providers.push(serde_json::from_value(value).unwrap());
        } else {
            corpus.cases.push(serde_json::from_value(value).unwrap());
        }
    }
    // A few percent are left out: their breaker only exists off the wire (see the generator).
    assert!(corpus.providers.len() >= 20 && corpus.cases.len() * 10 >= corpus.providers.len() * cases * 9);
    corpus
}

/// Adds the `hostile-<provider>` sources (signed URLs as the corpus signed them) and their
/// secrets to an instance's variables.
pub fn add_sources(corpus: &Corpus, vars: &mut Vec<(String, String)>) {
    let sources = vars.iter_mut().find(|(k, _)| k == "SOURCES").expect("SOURCES");
    let mut table: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&sources.1).unwrap();
    let mut secrets = Vec::new();
    for p in &corpus.providers {
        let name = source_name(&p.provider);
        let mut source = p.source.clone();
        source["public_url"] = format!("{}{}", p.url_base, p.provider).into();
        table.insert(name.clone(), source);
        secrets.push((edgehook_core::config::secret_var(&name), p.secret.clone()));
    }
    sources.1 = serde_json::Value::Object(table).to_string();
    vars.extend(secrets);
}

/// Header text as it goes on the wire: characters up to U+00FF as one byte each (how the
/// corpus writes invalid UTF-8), anything above as UTF-8.
fn wire(text: &str, out: &mut Vec<u8>) {
    for c in text.chars() {
        if (c as u32) < 256 {
            out.push(c as u32 as u8);
        } else {
            let mut buf = [0; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
        }
    }
}

/// Where a request goes: its path under the provider's source, keeping what follows the signed
/// URL (query, extra path); a URL the corpus garbled goes to the source itself.
fn path_for(provider: &ProviderLine, url: &str) -> String {
    let signed = format!("{}{}", provider.url_base, provider.provider);
    let rest = url.strip_prefix(&signed).unwrap_or("");
    format!("/webhooks/{}{rest}", source_name(&provider.provider))
}

/// Sends one request over a fresh connection, exactly as given; `(status, whole answer)`, with
/// status 0 when the server closed the connection without answering. Sent again, as a provider
/// would, when `wrangler dev`'s own proxy lost it on the way to workerd (see
/// [`is_dev_proxy_failure`](crate::harness::is_dev_proxy_failure)): that answer is not edgehook's.
fn send_raw(worker: &Worker, provider: &ProviderLine, request: &Request) -> (u16, String) {
    let mut reply = send_once(worker, provider, request);
    for _ in 0..3 {
        let body = reply.1.split_once("\r\n\r\n").map_or("", |(_, body)| body);
        if !crate::harness::is_dev_proxy_failure(reply.0, body) {
            break;
        }
        eprintln!("hostile corpus: wrangler's proxy lost a request; sending it again");
        std::thread::sleep(Duration::from_millis(500));
        reply = send_once(worker, provider, request);
    }
    reply
}

fn send_once(worker: &Worker, provider: &ProviderLine, request: &Request) -> (u16, String) {
    use base64::Engine;
    let body = base64::engine::general_purpose::STANDARD.decode(&request.body).unwrap();
    let address = worker.base.trim_start_matches("http://");
    let mut bytes = Vec::new();
    wire(&request.method, &mut bytes);
    bytes.push(b' ');
    wire(&path_for(provider, &request.url), &mut bytes);
    bytes.extend_from_slice(
        format!(" HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\nContent-Length: {}\r\n", body.len()).as_bytes(),
    );
    for (name, value) in &request.headers {
        wire(name, &mut bytes);
        bytes.extend_from_slice(b": ");
        wire(value, &mut bytes);
        bytes.extend_from_slice(b"\r\n");
    }
    bytes.extend_from_slice(b"\r\n");
    bytes.extend_from_slice(&body);
    let mut stream = TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    // The server may answer (431, 413) and close before reading everything: keep what it said.
    let _ = stream.write_all(&bytes);
    let answer = String::from_utf8_lossy(&read_answer(&mut stream)).into_owned();
    let status =
        answer.strip_prefix("HTTP/1.1 ").and_then(|rest| rest.get(..3)).and_then(|code| code.parse().ok()).unwrap_or(0);
    (status, answer)
}

/// Reads one HTTP/1.1 answer: up to the end of its body (by `Content-Length`, or the last chunk),
/// or until the server closes. (Not waiting for the close: the dev server keeps connections
/// open for a while even when asked to close them.)
fn read_answer(stream: &mut TcpStream) -> Vec<u8> {
    let mut answer = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        if let Some(end) = answer.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&answer[..end]).to_ascii_lowercase();
            let body = &answer[end + 4..];
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok());
            let complete = match length {
                Some(n) => body.len() >= n,
                None if head.contains("transfer-encoding: chunked") => body.ends_with(b"0\r\n\r\n"),
                None => false,
            };
            if complete {
                return answer;
            }
        }
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return answer,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
        }
    }
}

fn set_clock(worker: &Worker, provider: &ProviderLine) {
    let path = format!("/__faults/clock?now={}&source={}", provider.now, source_name(&provider.provider));
    let reply = worker.post(&path, &edgehook_core::headers::HeaderList::new(), b"");
    assert_eq!(reply.status, 200, "{}", reply.body);
}

fn hostile_corpus_through_the_worker(w: &World) {
    let worker = &w.vectors;
    let corpus = &w.hostile;
    let providers: BTreeMap<&str, &ProviderLine> = corpus.providers.iter().map(|p| (p.provider.as_str(), p)).collect();
    for p in &corpus.providers {
        set_clock(worker, p);
    }
    // (provider, status or edgehook's error code) -> count
    let answers: Mutex<BTreeMap<(String, String), usize>> = Mutex::default();
    let failures: Mutex<Vec<String>> = Mutex::default();
    let next = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..8 {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(case) = corpus.cases.get(i) else { return };
                let provider = providers[case.provider.as_str()];
                let (status, answer) = send_raw(worker, provider, &case.request);
                let body = answer.split_once("\r\n\r\n").map_or("", |(_, body)| body);
                let json = serde_json::from_str::<serde_json::Value>(body).ok();
                let code = json.as_ref().and_then(|v| v["error"].as_str().or(v["status"].as_str())).map(str::to_owned);
                let label = match (status, code) {
                    (0, _) => "closed".to_owned(),
                    (s, Some(code)) => format!("{s} {code}"),
                    (s, None) => format!("{s} (dev server: {:?})", &body[..body.len().min(40)]),
                };
                *answers.lock().unwrap().entry((case.provider.clone(), label.clone())).or_default() += 1;
                let mut problems = Vec::new();
                // The dev server refuses unknown methods itself (501, before the worker).
                let refused_method = status == 501 && body.starts_with("ERROR: Unrecognized request method");
                if (200..300).contains(&status) || (status >= 500 && !refused_method) {
                    problems.push(format!("answered {label}"));
                }
                if let Some(needle) = case.needles.iter().find(|n| answer.contains(n.as_str())) {
                    problems.push(format!("shows {needle:?}"));
                }
                if !problems.is_empty() {
                    let mut failures = failures.lock().unwrap();
                    if failures.len() < 20 {
                        failures.push(format!(
                            "{} case #{i} {} {:?}: {}\n      mutations: {}",
                            case.provider,
                            case.request.method,
                            path_for(provider, &case.request.url),
                            problems.join(", "),
                            case.mutations.join("; ")
                        ));
                    }
                }
            });
        }
    });
    let answers = answers.into_inner().unwrap();
    let failures = failures.into_inner().unwrap();
    let mut totals: BTreeMap<&str, usize> = BTreeMap::new();
    for ((_, label), n) in &answers {
        *totals.entry(label).or_default() += n;
    }
    println!(
        "hostile corpus through the worker: {} requests, {} providers; answers: {}",
        corpus.cases.len(),
        corpus.providers.len(),
        totals.iter().map(|(k, v)| format!("{k}: {v}")).collect::<Vec<_>>().join(", ")
    );
    assert!(failures.is_empty(), "hostile requests mishandled:\n{}", failures.join("\n"));
    // Not a vacuous pass: every provider had requests reach its signature check.
    for p in &corpus.providers {
        let checked: usize = answers
            .iter()
            .filter(|((provider, label), _)| provider == &p.provider && label.starts_with("401"))
            .map(|(_, n)| n)
            .sum();
        assert!(checked > 0, "{}: no request reached the signature check", p.provider);
    }
    // Healthy afterwards: each provider's authentic request is accepted.
    for p in &corpus.providers {
        let (status, answer) = send_raw(worker, p, &p.authentic);
        assert_eq!(status, 200, "{}: the authentic request after the corpus: {answer}", p.provider);
        assert!(answer.contains(r#""status":"accepted""#), "{}: {answer}", p.provider);
    }
    // And nothing to hide in the log.
    let logs = worker.logs();
    let needles: std::collections::BTreeSet<&str> =
        corpus.cases.iter().flat_map(|c| c.needles.iter().map(String::as_str)).collect();
    if let Some(needle) = needles.iter().find(|n| logs.contains(*n)) {
        panic!("the worker's log shows {needle:?}");
    }
    for marker in ["panicked", "RuntimeError"] {
        assert!(!logs.contains(marker), "the worker's log shows {marker:?}");
    }
}
