//! HMACs and public-key checks by Web Crypto (`crypto.subtle`): native code in the runtime.
//! HMACs there are several times faster than Rust's compiled to wasm for large messages, but
//! asynchronous and with a fixed cost per call (BENCHMARKS.md, section 3); Ed25519 and ECDSA
//! P-256 are checked there always: the worker is built without Rust's curves (the core's
//! `native-curves` feature), which are slower in wasm and were about 25 KB of the gzipped
//! bundle. The core decides what to compute
//! ([`ingest::web_crypto_requests`](edgehook_core::ingest::web_crypto_requests)); this module
//! only computes it.

use crate::blobs::Bytes;
use edgehook_core::signature::{Answers, HashFn, KeyAlgorithm, KeyCheck, MacRequest, Needed, Part, NATIVE_CURVES};
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
    /// keys verify every request this isolate sees. A key Web Crypto refused is kept as `null`
    /// (refused once, logged once). Bounded: cleared when full.
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
        return Ok((!found.is_null()).then_some(found));
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
            JsValue::NULL
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
    Ok((!crypto_key.is_null()).then_some(crypto_key))
}

fn error_name(e: &JsValue) -> Option<String> {
    Reflect::get(e, &"name".into()).ok()?.as_string()
}

fn error_text(e: &JsValue) -> String {
    Reflect::get(e, &"message".into()).ok().and_then(|m| m.as_string()).unwrap_or_default()
}

/// The message of `parts`, assembled in JavaScript memory: one copy of the body, made here, and
/// shared by every call over the same parts (Web Crypto copies what it is given): a request
/// listing several signatures, or a source with several keys, costs one copy, not one each.
fn message<'p>(messages: &mut Vec<(&'p [Part], Uint8Array)>, parts: &'p [Part], body: &Bytes) -> Uint8Array {
    if let Some((_, data)) = messages.iter().find(|(p, _)| *p == parts) {
        return data.clone();
    }
    let len = |part: &Part| match part {
        Part::Body => body.len() as u32,
        Part::Bytes(bytes) => bytes.len() as u32,
    };
    let data = Uint8Array::new_with_length(parts.iter().map(len).sum());
    let mut at = 0u32;
    for part in parts {
        match (part, body) {
            // A body already in JavaScript is copied there, never through wasm.
            (Part::Body, Bytes::Js(array)) => data.set(array, at),
            (Part::Body, Bytes::Wasm(bytes)) => data.subarray(at, at + len(part)).copy_from(bytes),
            (Part::Bytes(bytes), _) => data.subarray(at, at + len(part)).copy_from(bytes),
        }
        at += len(part);
    }
    messages.push((parts, data.clone()));
    data
}

/// What Web Crypto computed for a [`Needed`]: the answers it had, and how many of those it could
/// not give this build cannot compute either ([`Needed::not_computable_here`]: public-key checks,
/// HMAC-SHA512); other HMACs it could not compute are left to Rust.
pub struct Computed {
    pub answers: Answers,
    pub unanswered: usize,
}

/// Computes everything `needed` asks for with Web Crypto, all at once; `body` is the request's
/// body (the requests' [`Part::Body`]). What could not be computed is left out: one failure
/// costs only its own answer. An error means Web Crypto could not be reached at all.
pub async fn compute(needed: Needed, body: &Bytes<'_>) -> Result<Computed> {
    let subtle = subtle()?;
    let (sign, verify) = (method(&subtle, "sign")?, method(&subtle, "verify")?);
    let mut messages = Vec::new();
    // Settled one by one (`Promise.allSettled`, which takes plain values too): a rejection, or
    // `undefined` in place of a promise, is no answer.
    let unanswered = || JsValue::UNDEFINED;
    let mut pending = Vec::with_capacity(needed.macs.len() + needed.checks.len());
    for request in &needed.macs {
        let data = message(&mut messages, &request.parts, body);
        pending.push(match crypto_key(KeyUse::Hmac(request.hash), &request.key).await {
            Ok(Some(key)) => sign.call3(&subtle, &"HMAC".into(), &key, &data).unwrap_or_else(|_| unanswered()),
            _ => unanswered(),
        });
    }
    for check in &needed.checks {
        let key = match crypto_key(KeyUse::Verify(check.algorithm), &check.key).await {
            Ok(Some(key)) => key,
            // Refused: the key verifies nothing.
            Ok(None) => {
                pending.push(JsValue::FALSE);
                continue;
            }
            Err(_) => {
                pending.push(unanswered());
                continue;
            }
        };
        let algorithm = match check.algorithm {
            KeyAlgorithm::Ed25519 => object(&[("name", "Ed25519")])?,
            KeyAlgorithm::EcdsaP256 => object(&[("name", "ECDSA"), ("hash", "SHA-256")])?,
        };
        let data = message(&mut messages, &check.parts, body);
        let args = Array::of4(&algorithm, &key, &Uint8Array::from(check.signature.as_slice()), &data);
        pending.push(verify.apply(&subtle, &args).unwrap_or_else(|_| unanswered()));
    }
    let settled = JsFuture::from(Promise::all_settled(&pending.into_iter().collect::<Array>())).await.map_err(js)?;
    let settled = Array::from(&settled);
    // Each outcome's value, if it was fulfilled.
    let mut results = settled.iter().map(|outcome| {
        let status = Reflect::get(&outcome, &"status".into()).ok().and_then(|s| s.as_string());
        let value = (status.as_deref() == Some("fulfilled")).then(|| Reflect::get(&outcome, &"value".into()).ok());
        value.flatten().filter(|value| !value.is_undefined())
    });
    let mut unanswered = 0;
    let mut macs: Vec<(MacRequest, Vec<u8>)> = Vec::with_capacity(needed.macs.len());
    for (request, buffer) in needed.macs.into_iter().zip(results.by_ref()) {
        match buffer {
            Some(buffer) => macs.push((request, Uint8Array::new(&buffer).to_vec())),
            None => unanswered += usize::from(!request.hash.native()),
        }
    }
    let mut checks: Vec<(KeyCheck, bool)> = Vec::with_capacity(needed.checks.len());
    for (check, valid) in needed.checks.into_iter().zip(results) {
        match valid.and_then(|v| v.as_bool()) {
            Some(valid) => checks.push((check, valid)),
            None => unanswered += usize::from(!NATIVE_CURVES),
        }
    }
    Ok(Computed { answers: Answers { macs, checks }, unanswered })
}
