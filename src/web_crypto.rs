//! HMACs and public-key checks by Web Crypto (`crypto.subtle`): native code in the runtime.
//! HMACs there are several times faster than Rust's compiled to wasm for large messages, but
//! asynchronous and with a fixed cost per call (BENCHMARKS.md, section 3); Ed25519 and ECDSA
//! P-256 are checked there always: the worker is built without Rust's curves (the core's
//! `native-curves` feature), which are slower in wasm and were about 25 KB of the gzipped
//! bundle. The core decides what to compute
//! ([`ingest::web_crypto_requests`](edgehook_core::ingest::web_crypto_requests)); this module
//! only computes it.

use edgehook_core::signature::{Answers, HashFn, KeyAlgorithm, KeyCheck, MacRequest, Needed, Part};
use js_sys::{Array, Function, Object, Promise, Reflect, Uint8Array};
use std::cell::RefCell;
use wasm_bindgen::{JsCast, JsValue};
use worker::wasm_bindgen_futures::JsFuture;
use worker::{console_error, Error, Result};

/// What a key is imported for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum KeyUse {
    Hmac(HashFn),
    Verify(KeyAlgorithm),
}

thread_local! {
    /// Imported keys, by use and key bytes: importing is a promise of its own, and the same few
    /// keys verify every request this isolate sees. Bounded: cleared when full.
    static KEYS: RefCell<Vec<(KeyUse, Vec<u8>, JsValue)>> = const { RefCell::new(Vec::new()) };
}

/// Most imported keys kept (a few per source; more sources than this share the cache).
const MAX_KEYS: usize = 64;

fn js(e: JsValue) -> Error {
    Error::JsError(format!("Web Crypto: {}", e.as_string().unwrap_or_else(|| format!("{e:?}"))))
}

/// `crypto.subtle`.
fn subtle() -> Result<JsValue> {
    let crypto = Reflect::get(&js_sys::global(), &"crypto".into()).map_err(js)?;
    Reflect::get(&crypto, &"subtle".into()).map_err(js)
}

/// `subtle[name]`, to call with `subtle` as `this`.
fn method(subtle: &JsValue, name: &str) -> Result<Function> {
    Ok(Reflect::get(subtle, &name.into()).map_err(js)?.unchecked_into())
}

/// An object with these properties (strings).
fn object(properties: &[(&str, &str)]) -> Result<JsValue> {
    let object = Object::new();
    for (name, value) in properties {
        Reflect::set(&object, &(*name).into(), &(*value).into()).map_err(js)?;
    }
    Ok(object.into())
}

/// The algorithm Web Crypto imports a key for `usage` with.
fn import_algorithm(usage: KeyUse) -> Result<JsValue> {
    match usage {
        KeyUse::Hmac(hash) => object(&[("name", "HMAC"), ("hash", hash.web_crypto_name())]),
        KeyUse::Verify(KeyAlgorithm::Ed25519) => object(&[("name", "Ed25519")]),
        KeyUse::Verify(KeyAlgorithm::EcdsaP256) => object(&[("name", "ECDSA"), ("namedCurve", "P-256")]),
    }
}

/// The `CryptoKey` for `usage` of `key`, imported once per isolate; `Ok(None)` when Web Crypto
/// refuses the key's data (a configured public key that is not a point of its curve: it
/// verifies nothing, as in Rust).
async fn crypto_key(usage: KeyUse, key: &[u8]) -> Result<Option<JsValue>> {
    if let Some(found) =
        KEYS.with(|k| k.borrow().iter().find(|(u, bytes, _)| *u == usage && bytes == key).map(|(_, _, c)| c.clone()))
    {
        return Ok(Some(found));
    }
    let subtle = subtle()?;
    let (format, uses) = match usage {
        KeyUse::Hmac(_) => ("raw", "sign"),
        KeyUse::Verify(KeyAlgorithm::Ed25519) => ("raw", "verify"),
        KeyUse::Verify(KeyAlgorithm::EcdsaP256) => ("spki", "verify"),
    };
    let algorithm = import_algorithm(usage)?;
    let args = Array::of5(&format.into(), &Uint8Array::from(key), &algorithm, &false.into(), &Array::of1(&uses.into()));
    let imported: Promise = method(&subtle, "importKey")?.apply(&subtle, &args).map_err(js)?.unchecked_into();
    let crypto_key = match JsFuture::from(imported).await {
        Ok(crypto_key) => crypto_key,
        // The key's bytes are not a key of the algorithm; anything else is Web Crypto failing.
        Err(e) if matches!(usage, KeyUse::Verify(_)) && error_name(&e).as_deref() == Some("DataError") => {
            console_error!("Web Crypto refused a configured public key ({}): it verifies nothing", error_text(&e));
            return Ok(None);
        }
        Err(e) => return Err(js(e)),
    };
    KEYS.with(|k| {
        let mut keys = k.borrow_mut();
        if keys.len() >= MAX_KEYS {
            keys.clear();
        }
        keys.push((usage, key.to_vec(), crypto_key.clone()));
    });
    Ok(Some(crypto_key))
}

fn error_name(e: &JsValue) -> Option<String> {
    Reflect::get(e, &"name".into()).ok()?.as_string()
}

fn error_text(e: &JsValue) -> String {
    Reflect::get(e, &"message".into()).ok().and_then(|m| m.as_string()).unwrap_or_default()
}

/// The message of `parts`, assembled in JavaScript memory: one copy of the body, made here.
fn message(parts: &[Part], body: &[u8]) -> Uint8Array {
    let pieces = || {
        parts.iter().map(move |part| match part {
            Part::Body => body,
            Part::Bytes(bytes) => bytes.as_slice(),
        })
    };
    let data = Uint8Array::new_with_length(pieces().map(|p| p.len() as u32).sum());
    let mut at = 0u32;
    for piece in pieces() {
        data.subarray(at, at + piece.len() as u32).copy_from(piece);
        at += piece.len() as u32;
    }
    data
}

/// Computes everything `needed` asks for with Web Crypto, all at once; `body` is the request's
/// body (the requests' [`Part::Body`]). An error means an answer could not be had: the caller
/// decides what then (Rust's HMAC, or 503 for a public-key check).
pub async fn compute(needed: Needed, body: &[u8]) -> Result<Answers> {
    let subtle = subtle()?;
    let mut pending = Vec::with_capacity(needed.macs.len() + needed.checks.len());
    for request in &needed.macs {
        let key =
            crypto_key(KeyUse::Hmac(request.hash), &request.key).await?.ok_or_else(|| js("an HMAC key".into()))?;
        pending.push(
            method(&subtle, "sign")?
                .call3(&subtle, &"HMAC".into(), &key, &message(&request.parts, body))
                .map_err(js)?,
        );
    }
    for check in &needed.checks {
        let Some(key) = crypto_key(KeyUse::Verify(check.algorithm), &check.key).await? else {
            // `Promise.all` takes plain values alongside promises.
            pending.push(JsValue::FALSE);
            continue;
        };
        let algorithm = match check.algorithm {
            KeyAlgorithm::Ed25519 => object(&[("name", "Ed25519")])?,
            KeyAlgorithm::EcdsaP256 => object(&[("name", "ECDSA"), ("hash", "SHA-256")])?,
        };
        let args =
            Array::of4(&algorithm, &key, &Uint8Array::from(check.signature.as_slice()), &message(&check.parts, body));
        pending.push(method(&subtle, "verify")?.apply(&subtle, &args).map_err(js)?);
    }
    let all = JsFuture::from(Promise::all(&pending.into_iter().collect::<Array>())).await.map_err(js)?;
    let all = Array::from(&all);
    let mut results = all.iter();
    let macs: Vec<(MacRequest, Vec<u8>)> = needed
        .macs
        .into_iter()
        .zip(results.by_ref())
        .map(|(request, buffer)| (request, Uint8Array::new(&buffer).to_vec()))
        .collect();
    let checks: Vec<(KeyCheck, bool)> =
        needed.checks.into_iter().zip(results).map(|(check, valid)| (check, valid.as_bool() == Some(true))).collect();
    Ok(Answers { macs, checks })
}
