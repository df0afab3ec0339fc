//! Shared fuzzing harness: builds a request for a provider from fuzzer bytes. The header names
//! are those the provider really sends (taken from a request it signs), plus arbitrary ones, so
//! the fuzzer reaches the parsers instead of stopping at "missing signature".

use arbitrary::Unstructured;
use edgehook_core::headers::HeaderList;
use edgehook_core::providers::generic::{Encoding, GenericScheme, Locator};
use edgehook_core::signature::HashFn;
use edgehook_core::providers::{Inbound, Provider, Scheme, Unsigned};
use edgehook_core::secret::{SecretSet, SigningKey};

fn generic() -> GenericScheme {
    GenericScheme {
        header: "x-signature".into(),
        algorithm: HashFn::Sha256,
        encoding: Encoding::Base64,
        prefix: "v1=".into(),
        timestamp_header: Some("x-timestamp".into()),
        id: Some(Locator::Pointer("/id".into())),
        event_type: Some(Locator::Header("x-type".into())),
    }
}

/// Verifies, answers handshakes and identifies a fuzzed request: none of it may panic.
pub fn run(provider: Provider, data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(secret_text) = u.arbitrary::<String>() else { return };
    let secrets = SecretSet::parse(&secret_text, provider.secret_encoding())
        // A fixed, valid key still lets the request side be explored.
        .unwrap_or_else(|_| fallback_secrets(provider));
    run_with(provider, u, &secrets);
}

fn fallback_secrets(provider: Provider) -> SecretSet {
    let text = match provider.secret_encoding() {
        edgehook_core::secret::SecretEncoding::Ed25519Hex => {
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
        }
        edgehook_core::secret::SecretEncoding::P256Public => {
            "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEEDr2LjtURuePQzplybdC+u4CwrqDqBaWjcMMsTbhdbcwHBcepxo7yAQGhHPTnlvFYPAZFceEu/1FwCM/QmGUhA=="
        }
        _ => "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    };
    SecretSet::parse(text, provider.secret_encoding()).expect("the fallback keys are valid")
}

fn run_with(provider: Provider, mut u: Unstructured<'_>, secrets: &SecretSet) {
    let generic = generic();
    let key = SigningKey::Hmac(b"k".to_vec());
    let sample = Unsigned { method: "POST", url: "https://e.com/w", body: b"{}", id: "i", timestamp: 0 };
    let names: Vec<String> = provider.sign(&key, sample, Some(&generic)).headers.0.into_iter().map(|(n, _)| n).collect();
    let mut headers = HeaderList::new();
    let extra = ["content-type", "x-github-event", "webhook-id", "x-github-delivery"].map(String::from);
    for name in names.iter().chain(extra.iter()) {
        if let Ok(value) = u.arbitrary::<String>() {
            headers.push(name.clone(), value);
        }
    }
    while let Ok(true) = u.arbitrary::<bool>() {
        let (Ok(name), Ok(value)) = (u.arbitrary::<String>(), u.arbitrary::<String>()) else { break };
        headers.push(name, value);
    }
    let url: String = u.arbitrary().unwrap_or_default();
    let now: i64 = u.arbitrary().unwrap_or_default();
    let body = u.take_rest();
    let req = Inbound { method: "POST", url: &url, headers: &headers, body };
    let scheme = Scheme { generic: Some(&generic), ..Scheme::new(secrets, 300) };
    if let Ok(key) = provider.verify(req, scheme, now) {
        let _ = provider.handshake(req, key);
    }
    let _ = provider.identify(req, scheme);
}
