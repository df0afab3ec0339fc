//! Runs every provider vector file in `core/tests/vectors/` (format: FORMAT.md there): each
//! case's request, verified at its clock with the provider's default tolerance, must give its
//! expected outcome, id, type and handshake answer.

use super::{Inbound, Provider, Scheme};
use crate::headers::HeaderList;
use crate::secret::SecretSet;
use crate::Rejection;
use base64::Engine;
use serde::Deserialize;
use std::path::Path;

#[derive(Deserialize)]
struct File {
    provider: String,
    secrets: Vec<String>,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    url: Option<String>,
    headers: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    body_base64: Option<String>,
    now: i64,
    expect: String,
    #[serde(default)]
    id: Option<String>,
    #[serde(default, rename = "type")]
    event_type: Option<String>,
    #[serde(default)]
    handshake: Option<ExpectedHandshake>,
}

#[derive(Deserialize)]
struct ExpectedHandshake {
    status: u16,
    content_type: String,
    body: String,
}

fn outcome(r: &Rejection) -> &'static str {
    r.code()
}

/// Runs one case; `Err` describes the mismatch.
fn run(provider: Provider, secrets: &SecretSet, case: &Case) -> Result<(), String> {
    let headers =
        HeaderList(case.headers.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned())).collect());
    let body = match (&case.body, &case.body_base64) {
        (Some(text), _) => text.as_bytes().to_vec(),
        (None, Some(b64)) => base64::engine::general_purpose::STANDARD.decode(b64).map_err(|e| e.to_string())?,
        (None, None) => Vec::new(),
    };
    let req = Inbound {
        method: case.method.as_deref().unwrap_or("POST"),
        url: case.url.as_deref().unwrap_or(""),
        headers: &headers,
        body: &body,
    };
    let scheme = Scheme::new(secrets, provider.default_tolerance_secs());
    let key = match provider.verify(req, scheme, case.now) {
        Err(rejection) if outcome(&rejection) == case.expect => return Ok(()),
        Err(rejection) => return Err(format!("expected {}, got {}", case.expect, outcome(&rejection))),
        Ok(key) => key,
    };
    if let Some(expected) = &case.handshake {
        let got = provider.handshake(req, key).ok_or("expected a handshake, got none")?;
        let got = (got.status, got.content_type.to_owned(), String::from_utf8_lossy(&got.body).into_owned());
        let want = (expected.status, expected.content_type.clone(), expected.body.clone());
        return if got == want { Ok(()) } else { Err(format!("handshake {got:?}, expected {want:?}")) };
    }
    if let Some(h) = provider.handshake(req, key) {
        return Err(format!("unexpected handshake {h:?}"));
    }
    match provider.identify(req, scheme) {
        Err(rejection) if outcome(&rejection) == case.expect => Ok(()),
        Err(rejection) => Err(format!("expected {}, got {} from identify", case.expect, outcome(&rejection))),
        Ok(_) if case.expect != "ok" => Err(format!("expected {}, got ok", case.expect)),
        Ok(identity) => {
            if let Some(id) = &case.id {
                if &identity.id != id {
                    return Err(format!("id {:?}, expected {id:?}", identity.id));
                }
                if identity.event_type != case.event_type {
                    return Err(format!("type {:?}, expected {:?}", identity.event_type, case.event_type));
                }
            }
            Ok(())
        }
    }
}

#[test]
fn every_vector_file() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors");
    let mut failures = Vec::new();
    let mut ran = 0;
    let mut providers = std::collections::BTreeSet::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        // The shared files (github.json, slack.json, standard-webhooks.json) have their own format.
        let Ok(file) = serde_json::from_str::<File>(&text) else {
            continue;
        };
        let provider =
            Provider::from_name(&file.provider).unwrap_or_else(|| panic!("{}: unknown provider", path.display()));
        providers.insert(provider.name());
        let secrets = SecretSet::parse(&serde_json::to_string(&file.secrets).unwrap(), provider.secret_encoding())
            .unwrap_or_else(|e| panic!("{}: secrets: {e}", path.display()));
        for case in &file.cases {
            ran += 1;
            if let Err(why) = run(provider, &secrets, case) {
                failures.push(format!("{}: {}: {why}", path.file_name().unwrap().to_string_lossy(), case.name));
            }
        }
    }
    assert!(failures.is_empty(), "{} of {ran} vector cases failed:\n{}", failures.len(), failures.join("\n"));
    let missing: Vec<&str> = Provider::ALL
        .iter()
        .map(|p| p.name())
        .filter(|p| !providers.contains(p) && !["stripe", "github", "generic"].contains(p))
        .collect();
    assert!(missing.is_empty(), "providers without a vector file: {missing:?}");
    assert!(ran >= 450, "only {ran} cases ran");
}
