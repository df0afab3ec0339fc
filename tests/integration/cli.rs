//! The `edgehook` command line against the running worker: `send` signs each provider's sample
//! with the source's secret from a `.dev.vars` file and is accepted; `sign` prints headers the
//! core verifies.

use crate::harness::{root, unique};
use crate::World;
use edgehook_core::headers::{HeaderList, Headers};
use edgehook_core::providers::{Inbound, Provider, Scheme};
use edgehook_core::secret::SecretSet;
use std::path::{Path, PathBuf};
use std::process::Command;

pub const TESTS: &[crate::Test] = &[
    ("cli_send_signs_every_provider_the_worker_accepts", cli_send_signs_every_provider_the_worker_accepts),
    ("cli_sign_prints_verifiable_headers", cli_sign_prints_verifiable_headers),
    ("cli_operates_edgehook_through_the_admin_api", cli_operates_edgehook_through_the_admin_api),
    ("large_bodies_are_verified_by_web_crypto", large_bodies_are_verified_by_web_crypto),
    ("public_keys_are_checked_by_web_crypto", public_keys_are_checked_by_web_crypto),
];

/// RFC 8032 test 1: the Ed25519 seed and public key the Discord source uses.
pub const DISCORD_SEED: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
pub const DISCORD_PUBLIC: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
/// A fixed Standard Webhooks key pair for `v1a`: seed [7; 32].
pub const STANDARD_V1A_SIGNING: &str = "whsk_BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=";

/// Keys generated for the run: SendGrid's P-256 pair (private PKCS#8, public SPKI; base64 DER).
pub struct CliKeys {
    pub sendgrid_private: String,
    pub sendgrid_public: String,
    pub standard_v1a_public: String,
}

fn openssl(args: &[&str], input: Option<&[u8]>) -> Vec<u8> {
    use std::io::Write;
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("openssl runs");
    if let Some(input) = input {
        child.stdin.take().unwrap().write_all(input).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "openssl {args:?} failed");
    out.stdout
}

pub fn cli_keys() -> CliKeys {
    use base64::Engine;
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    let generated =
        openssl(&["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-outform", "DER"], None);
    // Some openssl versions write SEC1 here; SendGrid keys (and the CLI) are PKCS#8.
    let private = openssl(&["pkcs8", "-topk8", "-nocrypt", "-inform", "DER", "-outform", "DER"], Some(&generated));
    let public = openssl(&["pkey", "-inform", "DER", "-pubout", "-outform", "DER"], Some(&private));
    let seed = [7u8; 32];
    let v1a_public = ed25519_public(&seed);
    CliKeys {
        sendgrid_private: b64(&private),
        sendgrid_public: b64(&public),
        standard_v1a_public: format!("whpk_{}", b64(&v1a_public)),
    }
}

/// The Ed25519 public key of a seed, through openssl (PKCS#8 wrapping of the raw seed).
fn ed25519_public(seed: &[u8; 32]) -> Vec<u8> {
    let mut der = hex_bytes("302e020100300506032b657004220420");
    der.extend_from_slice(seed);
    let spki = openssl(&["pkey", "-inform", "DER", "-pubout", "-outform", "DER"], Some(&der));
    spki[spki.len() - 32..].to_vec()
}

fn hex_bytes(hex: &str) -> Vec<u8> {
    (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect()
}

/// The name of the CLI test source for a provider.
pub fn cli_source(provider: Provider) -> String {
    format!("cli-{}", provider.name())
}

/// Sources (a JSON object's entries) and secrets for one CLI source per provider.
pub fn cli_sources(keys: &CliKeys) -> (serde_json::Map<String, serde_json::Value>, Vec<(String, String)>) {
    let mut sources = serde_json::Map::new();
    let mut secrets = Vec::new();
    for provider in Provider::ALL {
        let name = cli_source(provider);
        let mut config = serde_json::json!({ "provider": provider.name() });
        if provider == Provider::Generic {
            config = serde_json::json!({
                "provider": "generic", "header": "X-Sample-Signature", "algorithm": "sha512", "encoding": "base64",
                "prefix": "v1=", "timestamp_header": "X-Sample-Timestamp", "id_pointer": "/id", "type_pointer": "/type"
            });
        }
        sources.insert(name.clone(), config);
        let secret = match provider {
            Provider::Discord => DISCORD_PUBLIC.to_owned(),
            Provider::Sendgrid => keys.sendgrid_public.clone(),
            // Both kinds at once: the HMAC secret signs, the v1a key is there too.
            Provider::Standard => format!(r#"["whsec_Y2xpLXN0YW5kYXJkLXNlY3JldA==","{}"]"#, keys.standard_v1a_public),
            other => format!("cli secret for {}", other.name()),
        };
        secrets.push((edgehook_core::config::secret_var(&name), secret));
    }
    // SendGrid sources whose key Web Crypto refuses (a point off the curve, in a well-formed
    // key): alone, and first in a rotation list before the real key.
    let off_curve = off_curve_p256_key();
    for (name, secret) in [
        (BAD_KEY_SOURCE, off_curve.clone()),
        (ROTATED_SOURCE, format!(r#"["{off_curve}","{}"]"#, keys.sendgrid_public)),
    ] {
        sources.insert(name.to_owned(), serde_json::json!({ "provider": "sendgrid" }));
        secrets.push((edgehook_core::config::secret_var(name), secret));
    }
    (sources, secrets)
}

/// A SendGrid source whose only key is not a point of P-256.
const BAD_KEY_SOURCE: &str = "cli-sendgrid-bad-key";
/// A SendGrid source with that key first and the real one second.
const ROTATED_SOURCE: &str = "cli-sendgrid-rotated";

/// A P-256 public key, well-formed DER, whose point (1, 1) is not on the curve (base64).
fn off_curve_p256_key() -> String {
    use base64::Engine;
    let mut der = hex_bytes("3059301306072a8648ce3d020106082a8648ce3d030107034200");
    der.push(0x04);
    for _ in 0..2 {
        der.extend_from_slice(&[0; 31]);
        der.push(1);
    }
    base64::engine::general_purpose::STANDARD.encode(der)
}

fn cli() -> PathBuf {
    root().join("target/debug/edgehook")
}

/// Builds the CLI (the integration test binary is not in its package, so cargo does not).
pub fn build_cli() {
    let status = Command::new(env!("CARGO"))
        .args(["build", "-p", "edgehook-cli", "--locked"])
        .current_dir(root())
        .status()
        .unwrap();
    assert!(status.success(), "building the CLI failed");
}

fn run(args: &[&str]) -> String {
    // As in `harness::request`: `wrangler dev`'s proxy, not edgehook, sometimes drops a request
    // under load. `edgehook send` prints that answer like any other (a provider would retry);
    // the admin commands fail with it. Either way the command is run again.
    let mut tries = 0;
    loop {
        tries += 1;
        let out = Command::new(cli()).args(args).output().unwrap();
        let (stdout, stderr) = (String::from_utf8(out.stdout).unwrap(), String::from_utf8_lossy(&out.stderr));
        let proxy_failed = if out.status.success() {
            stdout
                .split_once(' ')
                .is_some_and(|(status, body)| crate::harness::is_dev_proxy_failure(status.parse().unwrap_or(0), body))
        } else {
            stderr.contains(&format!(": 503 {}", crate::harness::DEV_PROXY_LOST))
        };
        if proxy_failed && tries < 4 {
            std::thread::sleep(std::time::Duration::from_millis(500));
            continue;
        }
        assert!(out.status.success(), "edgehook {args:?}: {stderr}");
        return stdout;
    }
}

fn write_dev_vars(dir: &Path, vars: &[(String, String)]) -> PathBuf {
    let path = dir.join(".dev.vars");
    let text: String = vars.iter().map(|(k, v)| format!("{k}='{v}'\n")).collect();
    std::fs::write(&path, text).unwrap();
    path
}

fn cli_send_signs_every_provider_the_worker_accepts(w: &World) {
    let dir = std::env::temp_dir().join(unique("edgehook-cli"));
    std::fs::create_dir_all(&dir).unwrap();
    let dev_vars = write_dev_vars(&dir, &w.cli_vars);
    let path = dev_vars.to_str().unwrap();
    let mut ids_differ = Vec::new();
    for provider in Provider::ALL {
        let source = cli_source(provider);
        let id = unique("evt_id");
        let mut args = vec!["send", source.as_str(), "--url", w.main.base.as_str(), "--dev-vars", path, "--id", &id];
        match provider {
            Provider::Discord => args.extend(["--signing-key", DISCORD_SEED]),
            Provider::Sendgrid => args.extend(["--signing-key", w.cli_keys.sendgrid_private.as_str()]),
            _ => {}
        }
        let out = run(&args);
        assert!(out.starts_with("200 {\"status\":\"accepted\""), "{}: {out}", provider.name());
        // The event id is the one the provider puts in its id header or field (SPEC's section 2
        // for the providers it names), which `send` fills with `--id`; except where the provider
        // sends no id for the whole request (Zoom) or batches events (SendGrid, HubSpot), which
        // are identified by a SHA-256.
        let answer: serde_json::Value = serde_json::from_str(out.trim().split_once(' ').unwrap().1).unwrap();
        let hashed = matches!(provider, Provider::Zoom | Provider::Sendgrid | Provider::Hubspot);
        let got = answer["id"].as_str().unwrap_or_default();
        let hash = got.len() == 64 && got.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if (hashed && !hash) || (!hashed && got != id) {
            ids_differ.push(format!("{} (sent with id {id}): {out}", provider.name()));
        }
    }
    assert!(ids_differ.is_empty(), "event ids not as each provider's documentation has them: {ids_differ:#?}");
    // v1a: the same Standard Webhooks source, signed with its Ed25519 key instead.
    let out = run(&[
        "send",
        "cli-standard",
        "--url",
        &w.main.base,
        "--dev-vars",
        path,
        "--signing-key",
        STANDARD_V1A_SIGNING,
    ]);
    assert!(out.starts_with("200 {\"status\":\"accepted\""), "standard v1a: {out}");
    // A wrong secret is refused by the worker, and the CLI shows its answer.
    let out = run(&["send", "cli-stripe", "--url", &w.main.base, "--dev-vars", path, "--secret", "whsec_wrong"]);
    assert_eq!(out.trim(), r#"401 {"error":"invalid_signature"}"#);
}

fn cli_sign_prints_verifiable_headers(_: &World) {
    let dir = std::env::temp_dir().join(unique("edgehook-cli-sign"));
    std::fs::create_dir_all(&dir).unwrap();
    let body_path = dir.join("body.json");
    let body = br#"{"id":"evt_cli_sign","type":"invoice.paid"}"#;
    std::fs::write(&body_path, body).unwrap();
    let out = run(&[
        "sign",
        "stripe",
        "--secret",
        "whsec_cli",
        "--body",
        body_path.to_str().unwrap(),
        "--timestamp",
        "1700000000",
    ]);
    let headers =
        HeaderList(out.lines().filter_map(|l| l.split_once(": ")).map(|(k, v)| (k.to_owned(), v.to_owned())).collect());
    let secrets = SecretSet::parse("whsec_cli", Provider::Stripe.secret_encoding()).unwrap();
    let scheme = Scheme::new(&secrets, 300);
    assert!(Provider::Stripe.verify(Inbound::post(&headers, body), scheme, 1_700_000_000).is_ok(), "{out}");
    let failed = Command::new(cli()).args(["sign", "nosuchprovider", "--secret", "x"]).output().unwrap();
    assert_eq!(failed.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&failed.stderr).contains("unknown provider"));
}

fn cli_operates_edgehook_through_the_admin_api(w: &World) {
    use crate::harness::{now_secs, signed, stripe_body, wait_until};
    use std::time::Duration;
    let wait = Duration::from_secs(60);
    let base = w.main.base.as_str();
    let admin = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--url", base, "--token", crate::ADMIN_TOKEN]);
        run(&all)
    };
    // One event delivered, one dead (the destination refuses it; one attempt allowed).
    let send = |id: &str, event_type: &str| {
        let body = stripe_body(id, event_type);
        let reply = w.main.post(
            "/webhooks/cliops",
            &signed(Provider::Stripe, crate::STRIPE_SECRET, "", now_secs(), &body),
            &body,
        );
        assert_eq!(reply.status, 200, "{}", reply.body);
    };
    let good = unique("evt");
    send(&good, "invoice.paid");
    w.dest.wait_deliveries("/cliops", &good, 1, wait);
    wait_until(wait, "the event listed as delivered", || {
        let listed: serde_json::Value =
            serde_json::from_str(&admin(&["events", "--source", "cliops", "--json"])).unwrap();
        listed["events"].as_array().unwrap().iter().any(|e| e["id"] == good.as_str() && e["status"] == "delivered")
    });
    let table = admin(&["events", "--source", "cliops", "--status", "delivered"]);
    assert!(table.starts_with("received") && table.contains(&good), "{table}");
    let shown = admin(&["events", "show", "cliops", &good]);
    assert!(shown.contains("delivered") && shown.contains("stripe-signature: t=") && shown.contains(&good), "{shown}");

    // Two dead letters: one replayed, one deleted (dealt with by hand).
    w.dest.plan("/cliops", vec![crate::harness::Action::Status(500), crate::harness::Action::Status(500)]);
    let (dead, handled) = (unique("evt"), unique("evt"));
    send(&dead, "invoice.payment_failed");
    send(&handled, "invoice.payment_failed");
    wait_until(wait, "the dead letters", || {
        let listed = admin(&["dead-letters", "--source", "cliops"]);
        listed.contains(&dead) && listed.contains(&handled)
    });
    let replayed = admin(&["dead-letters", "replay", "--source", "cliops", "--id", &dead]);
    assert_eq!(replayed.trim(), "replayed 1 dead letter(s)");
    w.dest.wait_deliveries("/cliops", &dead, 2, wait);
    let deleted = admin(&["dead-letters", "delete", "cliops", &handled]);
    assert_eq!(deleted.trim(), format!("deleted dead letter cliops/{handled}"));
    assert!(!admin(&["dead-letters", "--source", "cliops"]).contains(&handled));
    assert_eq!(w.dest.deliveries("/cliops", &handled).len(), 1, "a deleted letter is not delivered");

    let set = admin(&["flags", "set", "cliops", "customer.*", "dropped"]);
    assert_eq!(set.trim(), "cliops customer.*: dropped");
    let flags: serde_json::Value = serde_json::from_str(&admin(&["flags", "--json"])).unwrap();
    assert!(flags["flags"].as_array().unwrap().iter().any(|f| f["source"] == "cliops" && f["mode"] == "dropped"));
    admin(&["flags", "set", "cliops", "customer.*", "on"]);

    let metrics = admin(&["metrics"]);
    assert!(metrics.contains(r#"edgehook_events_total{source="cliops""#), "{metrics}");
    // `health` answers either way; its exit code says which (1 when degraded).
    let health =
        Command::new(cli()).args(["health", "--json", "--url", base, "--token", crate::ADMIN_TOKEN]).output().unwrap();
    let report: serde_json::Value = serde_json::from_slice(&health.stdout).unwrap();
    assert_eq!(health.status.code(), Some(if report["status"] == "ok" { 0 } else { 1 }), "{report}");

    // The token can come from .dev.vars; a wrong one is refused with the API's answer.
    let dir = std::env::temp_dir().join(unique("edgehook-cli-admin"));
    std::fs::create_dir_all(&dir).unwrap();
    let vars = write_dev_vars(&dir, &[("ADMIN_TOKEN".to_owned(), crate::ADMIN_TOKEN.to_owned())]);
    let out = run(&["flags", "--url", base, "--dev-vars", vars.to_str().unwrap()]);
    assert!(out.contains("cliops"), "{out}");
    let refused = Command::new(cli()).args(["flags", "--url", base, "--token", "wrong"]).output().unwrap();
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains(r#"401 {"error":"unauthorized"}"#));
}

/// The CLI's sample for `provider`, made about `size` bytes long with a padding field.
fn padded_sample(provider: Provider, id: &str, size: usize) -> Vec<u8> {
    let now_ms = crate::harness::now_secs() * 1000;
    let sample = crate::samples::sample(provider).0.replace("{{id}}", id).replace("{{now_ms}}", &now_ms.to_string());
    let end = sample.rfind('}').expect("a JSON sample");
    let padding = "p".repeat(size.saturating_sub(sample.len()));
    format!("{},\"padding\":\"{padding}\"{}", &sample[..end], &sample[end..]).into_bytes()
}

/// How many HMACs (`what` = "macs") or public-key checks ("checks") Web Crypto made for `source`
/// on a test-build worker.
pub fn web_crypto_count(worker: &crate::harness::Worker, source: &str, what: &str) -> u64 {
    let reply = worker.get(&format!("/__faults/web-crypto?source={source}"), &HeaderList::new());
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.json()[what].as_u64().unwrap()
}

fn web_crypto_macs(worker: &crate::harness::Worker, source: &str) -> u64 {
    web_crypto_count(worker, source, "macs")
}

/// For large bodies, the HMACs of providers signing the body are computed by Web Crypto, in two
/// passes: a 64 KB event of every such provider is accepted (by the test build, where the Web
/// Crypto HMACs are counted, and by the release build that ships), the same signed with another
/// secret is refused although Web Crypto computed its HMAC, and a small event stays on Rust's
/// HMAC, except with SHA-512 (the `generic` CLI source), which the worker is built without:
/// Web Crypto computes it for every body, and should it fail, the request is answered 503.
fn large_bodies_are_verified_by_web_crypto(w: &World) {
    let dir = std::env::temp_dir().join(unique("edgehook-web-crypto"));
    std::fs::create_dir_all(&dir).unwrap();
    let dev_vars = write_dev_vars(&dir, &w.cli_vars);
    let dev_vars = dev_vars.to_str().unwrap();
    let body_path = dir.join("body.json");
    let body_file = body_path.to_str().unwrap();
    let mut checked = 0;
    // The CLI sources' configuration, as the worker reads it (the generic one signs with SHA-512).
    let var = |name: &str| w.cli_vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let config = edgehook_core::config::Config::load(var("SOURCES").as_deref(), &var);
    let hash_of = |p: &Provider| {
        let source = config.source(&cli_source(*p)).expect("every provider has a CLI source");
        p.body_hmac(source.generic.as_ref())
    };
    let hmac_over_body = |p: &Provider| hash_of(p).is_some();
    let p_sha512 = |p: &Provider| hash_of(p) == Some(edgehook_core::signature::HashFn::Sha512);
    assert!(Provider::ALL.iter().any(p_sha512), "a CLI source signs with SHA-512");
    for provider in Provider::ALL.into_iter().filter(hmac_over_body) {
        let source = cli_source(provider);
        for (worker, counted) in [(&w.ops, true), (&w.main, false)] {
            let id = unique("evt_large");
            std::fs::write(&body_path, padded_sample(provider, &id, 64 * 1024)).unwrap();
            let before = counted.then(|| web_crypto_macs(worker, &source));
            let send = |extra: &[&str]| {
                let mut args = vec!["send", &source, "--url", &worker.base, "--dev-vars", dev_vars, "--id", &id];
                args.extend_from_slice(extra);
                run(&args)
            };
            let out = send(&["--body", body_file]);
            assert!(out.starts_with("200 {\"status\":\"accepted\""), "{} (64 KB): {out}", provider.name());
            let wrong = if provider == Provider::Standard { "whsec_d3Jvbmctc2VjcmV0" } else { "wrong secret" };
            let out = send(&["--body", body_file, "--secret", wrong]);
            assert_eq!(out.trim(), r#"401 {"error":"invalid_signature"}"#, "{} (64 KB, wrong secret)", provider.name());
            if let Some(before) = before {
                let after = web_crypto_macs(worker, &source);
                assert!(
                    after >= before + 2,
                    "{}: Web Crypto computed {} HMACs for two large requests",
                    provider.name(),
                    after - before
                );
                // A small body stays on Rust's HMAC, but for SHA-512, which the worker is built
                // without: Web Crypto computes it for every body.
                let sha512 = p_sha512(&provider);
                let out = run(&["send", &source, "--url", &worker.base, "--dev-vars", dev_vars]);
                assert!(out.starts_with("200 {\"status\":\"accepted\""), "{} (sample): {out}", provider.name());
                assert_eq!(
                    web_crypto_macs(worker, &source),
                    after + u64::from(sha512),
                    "{}: a small body went to Web Crypto: {}",
                    provider.name(),
                    if sha512 { "no, it has to" } else { "it should not" }
                );
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 2 * 17, "every provider signing the body with HMAC, on both builds");

    // Web Crypto failing for a SHA-512 source: the worker cannot compute that HMAC itself, so it
    // answers 503 (the provider retries), not 401, and keeps nothing of the attempt.
    let id = unique("evt_sha512_retry");
    let send = || run(&["send", "cli-generic", "--url", &w.ops.base, "--dev-vars", dev_vars, "--id", &id]);
    let armed = w.ops.get("/__faults/fail-web-crypto?id=cli-generic", &HeaderList::new());
    assert_eq!(armed.status, 200, "{}", armed.body);
    assert_eq!(send().trim(), r#"503 {"error":"unavailable"}"#, "Web Crypto failed");
    let out = send();
    assert!(out.starts_with("200 {\"status\":\"accepted\""), "sent again: {out}");
}

fn web_crypto_checks(worker: &crate::harness::Worker, source: &str) -> u64 {
    web_crypto_count(worker, source, "checks")
}

/// The worker is built without Rust's curves: Ed25519 (Discord, Standard Webhooks `v1a`) and
/// ECDSA P-256 (SendGrid) signatures are checked by Web Crypto, small bodies and large, on the
/// test build (where the checks are counted) and on the release build. Signed with another key,
/// refused. Should Web Crypto fail, the request is answered 503 and leaves no trace (the same
/// event is accepted when sent again); a configured key Web Crypto refuses verifies nothing,
/// and does not stop the next key of a rotation list from verifying.
fn public_keys_are_checked_by_web_crypto(w: &World) {
    let dir = std::env::temp_dir().join(unique("edgehook-public-keys"));
    std::fs::create_dir_all(&dir).unwrap();
    let dev_vars = write_dev_vars(&dir, &w.cli_vars);
    let dev_vars = dev_vars.to_str().unwrap();
    let body_path = dir.join("body.json");
    let body_file = body_path.to_str().unwrap();
    let other_sendgrid = cli_keys().sendgrid_private;
    // (source, the key it is signed with, another key, the provider whose sample is sent)
    let cases = [
        ("cli-discord", DISCORD_SEED, RFC8032_TEST_2_SEED, Provider::Discord),
        ("cli-sendgrid", w.cli_keys.sendgrid_private.as_str(), other_sendgrid.as_str(), Provider::Sendgrid),
        ("cli-standard", STANDARD_V1A_SIGNING, "whsk_CQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQk=", Provider::Standard),
        (ROTATED_SOURCE, w.cli_keys.sendgrid_private.as_str(), other_sendgrid.as_str(), Provider::Sendgrid),
    ];
    for (source, key, other_key, provider) in cases {
        for (worker, counted) in [(&w.ops, true), (&w.main, false)] {
            for size in [0, 64 * 1024] {
                let id = unique("evt_pk");
                let mut args = vec!["send", source, "--url", &worker.base, "--dev-vars", dev_vars, "--id", &id];
                if size > 0 {
                    std::fs::write(&body_path, padded_sample(provider, &id, size)).unwrap();
                    args.extend(["--body", body_file]);
                }
                let before = counted.then(|| web_crypto_checks(worker, source));
                let out = run(&[args.as_slice(), &["--signing-key", key]].concat());
                assert!(out.starts_with("200 {\"status\":\"accepted\""), "{source} ({size} bytes): {out}");
                let out = run(&[args.as_slice(), &["--signing-key", other_key]].concat());
                assert_eq!(out.trim(), r#"401 {"error":"invalid_signature"}"#, "{source} ({size} bytes, another key)");
                if let Some(before) = before {
                    let checked = web_crypto_checks(worker, source) - before;
                    assert!(checked >= 2, "{source} ({size} bytes): Web Crypto checked {checked} signatures");
                }
            }
        }
    }

    // A key Web Crypto refuses verifies nothing: 401, not an error.
    for worker in [&w.ops, &w.main] {
        let out = run(&[
            "send",
            BAD_KEY_SOURCE,
            "--url",
            &worker.base,
            "--dev-vars",
            dev_vars,
            "--signing-key",
            &w.cli_keys.sendgrid_private,
        ]);
        assert_eq!(out.trim(), r#"401 {"error":"invalid_signature"}"#, "a key off the curve");
    }

    // Web Crypto failing: 503, and nothing kept of the attempt.
    let id = unique("evt_pk_retry");
    let send = || {
        run(&[
            "send",
            "cli-discord",
            "--url",
            &w.ops.base,
            "--dev-vars",
            dev_vars,
            "--id",
            &id,
            "--signing-key",
            DISCORD_SEED,
        ])
    };
    let armed = w.ops.get("/__faults/fail-web-crypto?id=cli-discord", &HeaderList::new());
    assert_eq!(armed.status, 200, "{}", armed.body);
    assert_eq!(send().trim(), r#"503 {"error":"unavailable"}"#, "Web Crypto failed");
    let out = send();
    assert!(out.starts_with("200 {\"status\":\"accepted\""), "sent again: {out}");

    // Web Crypto failing again, for a Standard Webhooks request carrying both an HMAC (`v1`)
    // and an Ed25519 (`v1a`) signature: the HMAC, computed in Rust, verifies it.
    let now = crate::harness::now_secs();
    let id = unique("msg_both");
    let body = format!(r#"{{"type":"user.created","id":"{id}"}}"#).into_bytes();
    let hmac = crate::harness::signed(Provider::Standard, "whsec_Y2xpLXN0YW5kYXJkLXNlY3JldA==", &id, now, &body);
    let v1a = crate::harness::signed(Provider::Standard, STANDARD_V1A_SIGNING, &id, now, &body);
    let both = format!("{} {}", hmac.get("webhook-signature").unwrap(), v1a.get("webhook-signature").unwrap());
    let headers = replaced(&hmac, "webhook-signature", &both);
    let armed = w.ops.get("/__faults/fail-web-crypto?id=cli-standard", &HeaderList::new());
    assert_eq!(armed.status, 200, "{}", armed.body);
    let before = web_crypto_checks(&w.ops, "cli-standard");
    let reply = w.ops.post("/webhooks/cli-standard", &headers, &body);
    assert_eq!(reply.status, 200, "v1 and v1a, Web Crypto failing: {}", reply.body);
    assert!(web_crypto_checks(&w.ops, "cli-standard") > before, "the v1a signature went to Web Crypto");

    // Where Rust and Web Crypto could disagree, the worker answers as the native check does:
    // an Ed25519 signature whose `s` is not reduced (s + L) is refused; an ECDSA signature with
    // the other `s` (n - s, "high S") is accepted.
    for worker in [&w.ops, &w.main] {
        let id = unique("evt_s_plus_l");
        let body = format!(r#"{{"id":"{id}","type":2}}"#).into_bytes();
        let mut headers = crate::harness::signed(Provider::Discord, DISCORD_SEED, &id, now, &body);
        let reply = worker.post("/webhooks/cli-discord", &headers, &body);
        assert_eq!(reply.status, 200, "as signed: {}", reply.body);
        let signature = hex_bytes(&headers.get("x-signature-ed25519").unwrap());
        let unreduced = [&signature[..32], &add_order_ed25519(&signature[32..])].concat();
        headers = replaced(&headers, "x-signature-ed25519", &edgehook_core::signature::to_hex(&unreduced));
        let reply = worker.post("/webhooks/cli-discord", &headers, &body);
        assert_eq!((reply.status, reply.body.as_str()), (401, r#"{"error":"invalid_signature"}"#), "s + L");

        let body = format!(r#"[{{"sg_event_id":"{}","event":"delivered"}}]"#, unique("sg")).into_bytes();
        let headers = crate::harness::signed(Provider::Sendgrid, &w.cli_keys.sendgrid_private, "", now, &body);
        let name = "x-twilio-email-event-webhook-signature";
        let high_s = high_s_der(&headers.get(name).unwrap());
        let reply = worker.post("/webhooks/cli-sendgrid", &replaced(&headers, name, &high_s), &body);
        assert_eq!(reply.status, 200, "n - s: {}", reply.body);
    }
}

/// `headers` with `name`'s value replaced.
fn replaced(headers: &HeaderList, name: &str, value: &str) -> HeaderList {
    let mut others = HeaderList(headers.0.iter().filter(|(n, _)| !n.eq_ignore_ascii_case(name)).cloned().collect());
    others.push(name, value);
    others
}

/// `s + L` (little-endian), L the order of Ed25519's base point: the same scalar, not reduced.
fn add_order_ed25519(s: &[u8]) -> Vec<u8> {
    let order = hex_bytes("edd3f55c1a631258d69cf7a2def9de1400000000000000000000000000000010");
    let mut carry = 0u16;
    s.iter()
        .zip(&order)
        .map(|(a, b)| {
            let sum = u16::from(*a) + u16::from(*b) + carry;
            carry = sum >> 8;
            sum as u8
        })
        .collect()
}

/// A base64 DER ECDSA P-256 signature with `s` replaced by `n - s`: as valid, the other form.
fn high_s_der(signature: &str) -> String {
    use base64::Engine;
    let b64 = &base64::engine::general_purpose::STANDARD;
    let raw = edgehook_core::signature::ecdsa_der_to_raw(&b64.decode(signature).unwrap()).expect("DER");
    let order = hex_bytes("ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551");
    let mut other = vec![0u8; 32];
    let mut borrow = 0i16;
    for i in (0..32).rev() {
        let difference = i16::from(order[i]) - i16::from(raw[32 + i]) - borrow;
        borrow = i16::from(difference < 0);
        other[i] = difference.rem_euclid(256) as u8;
    }
    let integer = |value: &[u8]| {
        let start = value.iter().position(|b| *b != 0).unwrap_or(31);
        let value = &value[start..];
        let pad = value[0] & 0x80 != 0;
        [&[0x02, (value.len() + usize::from(pad)) as u8][..], if pad { &[0][..] } else { &[][..] }, value].concat()
    };
    let content = [integer(&raw[..32]), integer(&other)].concat();
    b64.encode([&[0x30, content.len() as u8][..], &content].concat())
}

/// RFC 8032 test 2's seed: a key the Discord source does not have.
const RFC8032_TEST_2_SEED: &str = "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb";
