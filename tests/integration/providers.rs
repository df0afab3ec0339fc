//! Every provider's documented examples and their tampered variants, through the running worker.
//!
//! The vector files in `core/tests/vectors/` are replayed against an instance of the `faults`
//! build whose sources are made from them (one per provider and signed URL, with the file's
//! secrets and the URL as `public_url`), with the verification clock set to each case's `now`.

use crate::harness::{request, root};
use crate::World;
use edgehook_core::headers::HeaderList;
use serde::Deserialize;
use std::collections::BTreeMap;

pub const TESTS: &[crate::Test] = &[("provider_vectors_through_the_worker", provider_vectors_through_the_worker)];

#[derive(Deserialize, Clone)]
pub struct File {
    provider: String,
    secrets: Vec<String>,
    cases: Vec<Case>,
}

#[derive(Deserialize, Clone)]
pub struct Case {
    name: String,
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    url: Option<String>,
    headers: BTreeMap<String, String>,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    body_base64: Option<String>,
    now: i64,
    expect: String,
    #[serde(default)]
    handshake: Option<Handshake>,
}

#[derive(Deserialize, Clone)]
pub struct Handshake {
    status: u16,
    content_type: String,
    body: String,
}

/// One source of the vectors instance: a vector file's provider and secrets, at one public URL.
pub struct VectorSource {
    pub name: String,
    pub provider: String,
    pub public_url: String,
    pub secrets: Vec<String>,
    pub cases: Vec<(String, Case)>,
}

fn split_url(url: &str) -> (String, Option<String>) {
    match url.split_once('?') {
        Some((base, query)) => (base.to_owned(), Some(query.to_owned())),
        None => (url.to_owned(), None),
    }
}

/// The sources made from every vector file.
pub fn vector_sources() -> Vec<VectorSource> {
    let dir = root().join("core/tests/vectors");
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    let mut sources: Vec<VectorSource> = Vec::new();
    for path in files {
        let Ok(file) = serde_json::from_str::<File>(&std::fs::read_to_string(&path).unwrap_or_default()) else {
            continue;
        };
        let file_name = path.file_name().unwrap().to_string_lossy().into_owned();
        for case in &file.cases {
            let url = case.url.clone().unwrap_or_else(|| "https://example.com/webhooks/x".into());
            let (base, _) = split_url(&url);
            let existing = sources
                .iter_mut()
                .find(|s| s.provider == file.provider && s.public_url == base && s.secrets == file.secrets);
            let source = match existing {
                Some(s) => s,
                None => {
                    sources.push(VectorSource {
                        name: format!("v{}", sources.len()),
                        provider: file.provider.clone(),
                        public_url: base,
                        secrets: file.secrets.clone(),
                        cases: Vec::new(),
                    });
                    sources.last_mut().unwrap()
                }
            };
            source.cases.push((file_name.clone(), case.clone()));
        }
    }
    sources
}

/// `.dev.vars` entries configuring the vectors instance.
pub fn vector_config(sources: &[VectorSource]) -> Vec<(String, String)> {
    let table: serde_json::Map<String, serde_json::Value> = sources
        .iter()
        .map(|s| (s.name.clone(), serde_json::json!({ "provider": s.provider, "public_url": s.public_url })))
        .collect();
    let mut vars = vec![("SOURCES".to_owned(), serde_json::Value::Object(table).to_string())];
    for s in sources {
        vars.push((edgehook_core::config::secret_var(&s.name), serde_json::to_string(&s.secrets).unwrap()));
    }
    vars
}

fn provider_vectors_through_the_worker(w: &World) {
    use base64::Engine;
    let mut failures = Vec::new();
    let mut ran = 0;
    for source in &w.vector_sources {
        for (file, case) in &source.cases {
            ran += 1;
            let clock = w.vectors.post(&format!("/__faults/clock?now={}", case.now), &HeaderList::new(), b"");
            assert_eq!(clock.status, 200, "{}", clock.body);
            let (_, query) = split_url(case.url.as_deref().unwrap_or_default());
            let path = match query {
                Some(q) => format!("/webhooks/{}?{q}", source.name),
                None => format!("/webhooks/{}", source.name),
            };
            let body = match (&case.body, &case.body_base64) {
                (Some(text), _) => text.clone().into_bytes(),
                (None, Some(b64)) => base64::engine::general_purpose::STANDARD.decode(b64).unwrap(),
                (None, None) => Vec::new(),
            };
            let headers = HeaderList(case.headers.iter().map(|(k, v)| (k.clone(), v.clone())).collect());
            let method = case.method.as_deref().unwrap_or("POST");
            let reply = request(method, &w.vectors.url(&path), &headers, &body);
            let ok = match (case.expect.as_str(), &case.handshake) {
                ("ok", Some(h)) => {
                    reply.status == h.status
                        && reply.header("content-type").is_some_and(|ct| ct.starts_with(&h.content_type))
                        && reply.body == h.body
                }
                ("ok", None) => {
                    reply.status == 200 && matches!(reply.json()["status"].as_str(), Some("accepted" | "duplicate"))
                }
                (code, _) => {
                    let status = if code == "malformed_request" { 400 } else { 401 };
                    reply.status == status && reply.body == format!(r#"{{"error":"{code}"}}"#)
                }
            };
            if !ok {
                failures.push(format!(
                    "{file}: {}: expected {}, got {} {}",
                    case.name, case.expect, reply.status, reply.body
                ));
            }
        }
    }
    let reset = w.vectors.post("/__faults/clock?now=", &HeaderList::new(), b"");
    assert_eq!(reset.status, 200);
    assert!(
        failures.is_empty(),
        "{} of {ran} cases failed through the worker:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(ran >= 450, "only {ran} cases ran");
}
