//! Properties every provider must have, checked on generated requests: what a provider signs,
//! edgehook verifies; and flipping any byte of the body, of a signed header (signature,
//! timestamp, signed id), or using another key, is rejected.
//!
//! Two providers sign less than the body, by design, and are checked for what they do sign:
//! GitLab's token covers nothing but itself, Mailgun's signature covers its timestamp and token.

use super::generic::{Encoding, GenericScheme, Locator};
use super::{Inbound, Provider, Scheme, Unsigned};
use crate::headers::HeaderList;
use crate::secret::{SecretEncoding, SecretSet, SigningKey};
use crate::signature::{HashFn, KnownMacs, RecordMacs};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use proptest::prelude::*;

const NOW: i64 = 1_700_000_000;
const URL: &str = "https://hooks.example.com/webhooks/source?x=1";

/// A signing key and the secret text that verifies it, derived from `seed`.
fn keys(provider: Provider, seed: u8) -> (SigningKey, String) {
    let encoding = provider.secret_encoding();
    let text = match encoding {
        SecretEncoding::Literal => format!("secret-{seed}-{}", "k".repeat(seed as usize % 40)),
        SecretEncoding::StandardWebhooks => format!("whsec_{}", STANDARD.encode([seed; 24])),
        SecretEncoding::Ed25519Hex => {
            let signing = ed25519_dalek::SigningKey::from_bytes(&[seed; 32]);
            return (
                SigningKey::Ed25519(signing.clone()),
                crate::signature::to_hex(signing.verifying_key().as_bytes()),
            );
        }
        SecretEncoding::P256Public => {
            use p256::pkcs8::EncodePublicKey;
            let signing = p256::ecdsa::SigningKey::from_slice(&[seed; 32]).unwrap();
            let der = signing.verifying_key().to_public_key_der().unwrap();
            return (SigningKey::P256(signing), STANDARD.encode(der.as_bytes()));
        }
    };
    (SigningKey::parse(&text, encoding).unwrap(), text)
}

/// Headers a provider sends that its signature does not cover (ids, content type).
const UNSIGNED_HEADERS: &[&str] = &[
    "content-type",
    "x-github-delivery",
    "x-shopify-event-id",
    "x-shopify-webhook-id",
    "linear-delivery",
    "request-id",
    "i-twilio-idempotency-token",
    "idempotency-key",
    "twitch-eventsub-message-type",
    "x-event-id",
];

/// A body the provider can sign: Twilio signs form parameters, Mailgun a JSON object.
fn shaped_body(provider: Provider, raw: &[u8]) -> Vec<u8> {
    match provider {
        Provider::Twilio => raw
            .chunks(6)
            .enumerate()
            .map(|(i, chunk)| {
                format!("P{i}={}", STANDARD.encode(chunk).replace('+', "%2B").replace('/', "%2F").replace('=', "%3D"))
            })
            .collect::<Vec<_>>()
            .join("&")
            .into_bytes(),
        Provider::Mailgun => {
            serde_json::json!({ "event-data": { "id": "e1", "data": STANDARD.encode(raw) } }).to_string().into_bytes()
        }
        _ => raw.to_vec(),
    }
}

/// The scheme the property test gives a `generic` source: the most demanding one (a timestamp, a
/// prefix, base64).
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

/// Whether the request verifies; asserts on the way that the worker's two-pass verification
/// (HMACs and public-key checks noted, computed elsewhere, then given back) says exactly the
/// same.
fn verifies(provider: Provider, secrets: &SecretSet, headers: &HeaderList, body: &[u8]) -> bool {
    let generic = generic_scheme();
    let scheme = Scheme { generic: (provider == Provider::Generic).then_some(&generic), ..Scheme::new(secrets, 300) };
    let req = Inbound { method: "POST", url: URL, headers, body };
    let native = provider.verify(req, scheme, NOW);
    let record = RecordMacs::new(body);
    let first_pass = provider.verify(req, scheme.with_macs(&record), NOW);
    assert!(!answers_decide(provider) || first_pass.is_err(), "{provider:?}: an unknown MAC or check matched");
    let known = KnownMacs::new(body, record.into_needed().answer_here(body));
    let two_pass = provider.verify(req, scheme.with_macs(&known), NOW);
    assert_eq!(
        native.as_ref().map(|k| *k as *const _),
        two_pass.as_ref().map(|k| *k as *const _),
        "{provider:?}: two-pass verification disagrees"
    );
    native.is_ok()
}

/// Whether the request verifies when every HMAC noted in the first pass is answered wrongly
/// (one bit off), and every public-key check the other way round: proves the second pass uses
/// the answers it is given (so the worker's Web Crypto results are what decide), and `false`
/// for a request that verifies natively.
fn verifies_with_wrong_answers(provider: Provider, secrets: &SecretSet, headers: &HeaderList, body: &[u8]) -> bool {
    let generic = generic_scheme();
    let scheme = Scheme { generic: (provider == Provider::Generic).then_some(&generic), ..Scheme::new(secrets, 300) };
    let req = Inbound { method: "POST", url: URL, headers, body };
    let record = RecordMacs::new(body);
    let _ = provider.verify(req, scheme.with_macs(&record), NOW);
    let mut wrong = record.into_needed().answer_here(body);
    for (_, mac) in &mut wrong.macs {
        mac[0] ^= 1;
    }
    for (_, valid) in &mut wrong.checks {
        *valid = !*valid;
    }
    provider.verify(req, scheme.with_macs(&KnownMacs::new(body, wrong)), NOW).is_ok()
}

/// Whether what the worker computes with Web Crypto decides: the provider signs the body with
/// HMAC, or with a public key.
fn answers_decide(provider: Provider) -> bool {
    provider.body_hmac(Some(&generic_scheme())).is_some()
        || matches!(provider.secret_encoding(), SecretEncoding::Ed25519Hex | SecretEncoding::P256Public)
}

/// A form body's parameters, decoded.
fn decoded(body: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(body).map(|(k, v)| (k.into_owned(), v.into_owned())).collect()
}

/// The same string with the byte at `at` changed (to another printable byte).
fn flip(text: &str, at: usize) -> String {
    let mut bytes = text.as_bytes().to_vec();
    let i = at % bytes.len();
    bytes[i] = match bytes[i] ^ 1 {
        b if b.is_ascii_graphic() => b,
        _ => b'!',
    };
    if bytes[i] == text.as_bytes()[i] {
        bytes[i] = b'#';
    }
    String::from_utf8(bytes).unwrap()
}

proptest! {
    // 48 cases of all 22 providers keep CI bounded; PROPTEST_CASES=N runs more.
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(48)
    ))]

    #[test]
    fn signed_requests_verify_and_every_change_is_rejected(
        raw in proptest::collection::vec(any::<u8>(), 0..300),
        seed in 1u8..=200,
        at in any::<usize>(),
    ) {
        for provider in Provider::ALL {
            check(provider, &raw, seed, at)?;
        }
    }
}

fn check(provider: Provider, raw: &[u8], seed: u8, at: usize) -> Result<(), TestCaseError> {
    {
        let (key, secret) = keys(provider, seed);
        let secrets = SecretSet::parse(&secret, provider.secret_encoding()).unwrap();
        let body = shaped_body(provider, raw);
        let unsigned = Unsigned { method: "POST", url: URL, body: &body, id: "evt_prop_1", timestamp: NOW };
        let signed = provider.sign(&key, unsigned, Some(&generic_scheme()));
        let mut headers = signed.headers.clone();
        if provider == Provider::Twilio || provider == Provider::Slack && body.is_empty() {
            headers.push("content-type", "application/x-www-form-urlencoded");
        }
        prop_assert!(
            verifies(provider, &secrets, &headers, &signed.body),
            "{provider:?} does not verify its own signature"
        );
        if answers_decide(provider) {
            prop_assert!(
                !verifies_with_wrong_answers(provider, &secrets, &headers, &signed.body),
                "{provider:?} verified with wrong HMACs or checks given for the second pass"
            );
        }

        // Another key.
        let (_, other) = keys(provider, seed.wrapping_add(1).max(1));
        let others = SecretSet::parse(&other, provider.secret_encoding()).unwrap();
        prop_assert!(!verifies(provider, &others, &headers, &signed.body), "{provider:?} verified with another key");

        // Any byte of the body, where the provider signs the body.
        if !signed.body.is_empty() && !matches!(provider, Provider::Gitlab | Provider::Mailgun) {
            let mut body = signed.body.clone();
            let i = at % body.len();
            body[i] ^= 1 << (at % 8);
            // Twilio signs the decoded parameters, so an escape's hex case (%2b for %2B) is not a
            // change to what was signed: those two bodies mean the same and share a signature.
            let same_parameters = provider == Provider::Twilio && decoded(&body) == decoded(&signed.body);
            if !same_parameters {
                prop_assert!(!verifies(provider, &secrets, &headers, &body), "{provider:?} accepted a changed body");
            }
        }

        // Any byte of any signed header.
        for (i, (name, value)) in signed.headers.0.iter().enumerate() {
            if value.is_empty() || UNSIGNED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
                continue;
            }
            let mut tampered = headers.clone();
            tampered.0[i].1 = flip(value, at);
            prop_assert!(
                !verifies(provider, &secrets, &tampered, &signed.body),
                "{provider:?} accepted a changed {name}"
            );
        }

        // Mailgun's signature lives in the body.
        if provider == Provider::Mailgun {
            let text = String::from_utf8(signed.body.clone()).unwrap();
            let sig_at = text.find("\"signature\":\"").unwrap() + 13;
            let tampered = format!("{}{}", &text[..sig_at], flip(&text[sig_at..], 0));
            prop_assert!(
                !verifies(provider, &secrets, &headers, tampered.as_bytes()),
                "mailgun accepted a changed signature"
            );
        }
    }
    Ok(())
}
