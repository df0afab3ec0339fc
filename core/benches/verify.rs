//! Signature verification of every provider, next to the bare primitive it is built on, over the
//! same number of bytes: `verify/<size>/<provider>` against `bare/<size>/<primitive>`. The ratio
//! of the two is the cost of everything a provider does besides the MAC or signature check
//! (header parsing, decoding, copies, body parsing). `scripts/bench-verify` runs this and prints
//! the ratios.
//!
//! `lookup/<size>/{value,json_path}` reads two fields of a JSON body by pointer, by building a
//! `serde_json::Value` and with `json_path::scalars`.
//!
//! Every request is signed with `Provider::sign` and checked once, outside the timed loop, to
//! verify: a benchmark of a rejection would measure nothing.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use edgehook_core::headers::HeaderList;
use edgehook_core::providers::generic::{Encoding, GenericScheme, Locator};
use edgehook_core::providers::{Inbound, Provider, Scheme, Unsigned};
use edgehook_core::secret::{Secret, SecretEncoding, SecretSet, SigningKey};
use edgehook_core::signature::{hmac_sha1, hmac_sha256, hmac_sha512, HashFn};
use std::hint::black_box;
use std::time::Duration;

const NOW: i64 = 1_700_000_000;
const URL: &str = "https://hooks.example.com/webhooks/source?x=1";
const EVENT_ID: &str = "evt_bench_0001";
const HMAC_SECRET: &str = "bench_signing_secret_0123456789abcdef";
const SIZES: [(&str, usize); 3] = [("1KB", 1 << 10), ("64KB", 64 << 10), ("1MB", 1 << 20)];

/// The primitive a provider's verification is built on.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Bare {
    HmacSha256,
    HmacSha1,
    HmacSha512,
    Ed25519,
    P256,
}

impl Bare {
    const ALL: [Bare; 5] = [Bare::HmacSha256, Bare::HmacSha1, Bare::HmacSha512, Bare::Ed25519, Bare::P256];

    fn name(self) -> &'static str {
        match self {
            Bare::HmacSha256 => "hmac_sha256",
            Bare::HmacSha1 => "hmac_sha1",
            Bare::HmacSha512 => "hmac_sha512",
            Bare::Ed25519 => "ed25519_verify",
            Bare::P256 => "p256_verify",
        }
    }
}

/// A JSON object of exactly `size` bytes, shaped like an event: ids, a type, Linear's signed
/// `webhookTimestamp` (milliseconds, within tolerance) and an array of records, padded.
fn json_body(size: usize) -> Vec<u8> {
    let mut out = format!(
        r#"{{"id":"{EVENT_ID}","event_id":"{EVENT_ID}","type":"bench.event","webhookTimestamp":{},"data":{{"items":["#,
        NOW * 1000
    );
    let tail_open = r#"]},"pad":""#;
    let tail_close = r#""}"#;
    let mut i = 0;
    loop {
        let item = format!(
            r#"{}{{"n":{i},"name":"Customer {i}","email":"customer{i}@example.com","amount":{},"note":"lorem ipsum dolor sit amet"}}"#,
            if i == 0 { "" } else { "," },
            1000 + i * 7
        );
        if out.len() + item.len() + tail_open.len() + tail_close.len() > size {
            break;
        }
        out.push_str(&item);
        i += 1;
    }
    out.push_str(tail_open);
    let pad = size - out.len() - tail_close.len();
    out.extend(std::iter::repeat_n('x', pad));
    out.push_str(tail_close);
    assert_eq!(out.len(), size);
    debug_assert!(serde_json::from_str::<serde_json::Value>(&out).is_ok());
    out.into_bytes()
}

/// A form body of exactly `size` bytes as Twilio sends an SMS: its usual parameters, with the
/// bulk in the message text, encoded as Twilio encodes it (spaces as `+`, punctuation and
/// non-ASCII as escapes).
fn form_body(size: usize) -> Vec<u8> {
    let head = "ToCountry=US&ToState=CA&SmsMessageSid=SM0123456789abcdef0123456789abcdef&NumMedia=0\
        &ToCity=SAN+FRANCISCO&FromZip=94105&SmsSid=SM0123456789abcdef0123456789abcdef&FromState=CA\
        &SmsStatus=received&FromCity=SAN+FRANCISCO&FromCountry=US&To=%2B15550001111&ToZip=94105\
        &NumSegments=1&MessageSid=SM0123456789abcdef0123456789abcdef&AccountSid=AC0123456789abcdef0123456789abcdef\
        &From=%2B15550002222&ApiVersion=2010-04-01&Body=";
    let text = "Hi%2C+the+parcel+arrived+today+at+the+front+desk.+Can+you+pick+it+up+before+6pm%3F+\
        Thanks%21+%F0%9F%93%A6+";
    let mut out = String::with_capacity(size);
    out.push_str(head);
    while out.len() + text.len() <= size {
        out.push_str(text);
    }
    out.extend(std::iter::repeat_n('x', size - out.len()));
    assert_eq!(out.len(), size);
    out.into_bytes()
}

/// The worst case for Twilio's scheme: a form of exactly `size` bytes made of many short
/// parameters dense with escapes, every one of which must be decoded and sorted.
fn many_params_form_body(size: usize) -> Vec<u8> {
    let pad = "&Pad=";
    let mut out = String::with_capacity(size);
    let mut i = 0;
    loop {
        let pair = format!(
            "{}Param{i}=Hello%20world%2C%20item%20{i}%20%F0%9F%93%A6&From{i}=%2B1555000{i:04}",
            if i == 0 { "" } else { "&" }
        );
        if out.len() + pair.len() + pad.len() + 1 > size {
            break;
        }
        out.push_str(&pair);
        i += 1;
    }
    out.push_str(pad);
    out.extend(std::iter::repeat_n('x', size - out.len()));
    assert_eq!(out.len(), size);
    out.into_bytes()
}

/// The scheme a `generic` source is benchmarked with: the most demanding one (SHA-512, base64, a
/// prefix and a signed timestamp), as in the property tests.
fn generic_scheme() -> GenericScheme {
    GenericScheme {
        header: "x-signature".into(),
        algorithm: HashFn::Sha512,
        encoding: Encoding::Base64,
        prefix: "v=".into(),
        timestamp_header: Some("x-timestamp".into()),
        id: Some(Locator::Header("x-event-id".into())),
        event_type: None,
    }
}

fn ed25519_signing() -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[7u8; 32])
}

fn p256_signing() -> p256::ecdsa::SigningKey {
    p256::ecdsa::SigningKey::from_slice(&[9u8; 32]).expect("a valid P-256 scalar")
}

/// The key a provider signs with and the secrets that verify it, parsed as configuration is.
fn keys(provider: Provider, asymmetric: bool) -> (SigningKey, SecretSet) {
    let encoding = provider.secret_encoding();
    match encoding {
        SecretEncoding::StandardWebhooks if asymmetric => {
            let signing = ed25519_signing();
            let public = format!("whpk_{}", STANDARD.encode(signing.verifying_key().as_bytes()));
            (SigningKey::Ed25519(signing), SecretSet::parse(&public, encoding).unwrap())
        }
        SecretEncoding::Literal | SecretEncoding::StandardWebhooks => {
            let text = match encoding {
                SecretEncoding::Literal => HMAC_SECRET.to_owned(),
                _ => format!("whsec_{}", STANDARD.encode([42u8; 24])),
            };
            (SigningKey::parse(&text, encoding).unwrap(), SecretSet::parse(&text, encoding).unwrap())
        }
        SecretEncoding::Ed25519Hex => {
            let signing = ed25519_signing();
            let public = edgehook_core::signature::to_hex(signing.verifying_key().as_bytes());
            (SigningKey::Ed25519(signing), SecretSet::parse(&public, encoding).unwrap())
        }
        SecretEncoding::P256Public => {
            let signing = p256_signing();
            use p256::pkcs8::EncodePublicKey;
            let der = signing.verifying_key().to_public_key_der().expect("a DER public key");
            let secrets = SecretSet::from_secrets(vec![Secret::P256(der.as_bytes().to_vec())]).unwrap();
            (SigningKey::P256(signing), secrets)
        }
    }
}

/// One provider's correctly signed request at one size.
struct Case {
    name: &'static str,
    provider: Provider,
    secrets: SecretSet,
    generic: Option<GenericScheme>,
    headers: HeaderList,
    body: Vec<u8>,
}

impl Case {
    fn new(name: &'static str, provider: Provider, asymmetric: bool, size: usize) -> Case {
        let body = match provider {
            Provider::Twilio => form_body(size),
            _ => json_body(size),
        };
        Case::with_body(name, provider, asymmetric, body)
    }

    fn with_body(name: &'static str, provider: Provider, asymmetric: bool, body: Vec<u8>) -> Case {
        let size = body.len();
        let (key, secrets) = keys(provider, asymmetric);
        let generic = (provider == Provider::Generic).then(generic_scheme);
        let unsigned = Unsigned { method: "POST", url: URL, body: &body, id: EVENT_ID, timestamp: NOW };
        let signed = provider.sign(&key, unsigned, generic.as_ref());
        // Mailgun signs inside the body, so the signed body is what is sent.
        let case = Case { name, provider, secrets, generic, headers: signed.headers, body: signed.body };
        if let Err(rejection) = case.verify() {
            panic!("{name} at {size} bytes does not verify its own signature: {rejection:?}");
        }
        case
    }

    fn verify(&self) -> Result<&Secret, edgehook_core::Rejection> {
        let scheme = Scheme {
            generic: self.generic.as_ref(),
            ..Scheme::new(&self.secrets, self.provider.default_tolerance_secs())
        };
        let inbound = Inbound { method: "POST", url: URL, headers: &self.headers, body: black_box(&self.body) };
        self.provider.verify(inbound, scheme, NOW)
    }
}

/// Every provider, plus Standard Webhooks' asymmetric `v1a` variant.
fn cases(size: usize) -> Vec<Case> {
    let mut cases: Vec<Case> = Provider::ALL.iter().map(|&p| Case::new(p.name(), p, false, size)).collect();
    cases.push(Case::new("standard_v1a", Provider::Standard, true, size));
    cases.push(Case::with_body("twilio_many", Provider::Twilio, false, many_params_form_body(size)));
    cases
}

/// Benchmarks the bare primitive over `body` (prefixed with a timestamp for the signature
/// schemes, as Discord and SendGrid sign it; pre-concatenated, so no copy is timed).
fn bench_bare(group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>, bare: Bare, body: &[u8]) {
    let key = HMAC_SECRET.as_bytes();
    match bare {
        Bare::HmacSha256 => group.bench_function(bare.name(), |b| b.iter(|| hmac_sha256(key, &[black_box(body)]))),
        Bare::HmacSha1 => group.bench_function(bare.name(), |b| b.iter(|| hmac_sha1(key, &[black_box(body)]))),
        Bare::HmacSha512 => group.bench_function(bare.name(), |b| b.iter(|| hmac_sha512(key, &[black_box(body)]))),
        Bare::Ed25519 => {
            use ed25519_dalek::{Signer, Verifier};
            let message = [NOW.to_string().as_bytes(), body].concat();
            let signing = ed25519_signing();
            let signature = signing.sign(&message);
            let public = signing.verifying_key();
            assert!(public.verify(&message, &signature).is_ok());
            group.bench_function(bare.name(), |b| b.iter(|| public.verify(black_box(&message), &signature)))
        }
        Bare::P256 => {
            use p256::ecdsa::signature::{Signer, Verifier};
            let message = [NOW.to_string().as_bytes(), body].concat();
            let signing = p256_signing();
            let signature: p256::ecdsa::Signature = signing.sign(&message);
            let public = *signing.verifying_key();
            assert!(public.verify(&message, &signature).is_ok());
            group.bench_function(bare.name(), |b| b.iter(|| public.verify(black_box(&message), &signature)))
        }
    };
}

fn bench(c: &mut Criterion) {
    for (label, size) in SIZES {
        let cases = cases(size);
        let mut group = c.benchmark_group(format!("verify/{label}"));
        for case in &cases {
            group.throughput(Throughput::Bytes(case.body.len() as u64));
            group.bench_function(case.name, |b| b.iter(|| case.verify()));
        }
        group.finish();

        // Reading an event's fields out of its JSON body (ids, types, ordering), as a
        // `serde_json::Value` did before `json_path` and as `json_path` does now.
        let body = json_body(size);
        let pointers = ["/type", "/data/items/0/email"];
        let by_value = |body: &[u8]| {
            let value: serde_json::Value = serde_json::from_slice(body).ok()?;
            Some(pointers.map(|p| value.pointer(p).and_then(|v| v.as_str()).map(str::to_owned)))
        };
        assert_eq!(by_value(&body), edgehook_core::json_path::scalars(&body, pointers));
        let mut group = c.benchmark_group(format!("lookup/{label}"));
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_function("value", |b| b.iter(|| by_value(black_box(&body))));
        group.bench_function("json_path", |b| b.iter(|| edgehook_core::json_path::scalars(black_box(&body), pointers)));
        group.finish();

        let mut group = c.benchmark_group(format!("bare/{label}"));
        group.throughput(Throughput::Bytes(size as u64));
        for bare in Bare::ALL {
            bench_bare(&mut group, bare, &body);
        }
        group.finish();
    }
}

fn config() -> Criterion {
    Criterion::default()
        .measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500))
        .sample_size(20)
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench
}
criterion_main!(benches);
