//! HMACs by Web Crypto (`crypto.subtle`): native code in the runtime, several times faster than
//! Rust's HMAC compiled to wasm for large messages, but asynchronous and with a fixed cost per
//! call (BENCHMARKS.md, section 3). The core decides when it pays off
//! ([`ingest::prefers_web_crypto`](edgehook_core::ingest::prefers_web_crypto)) and which HMACs a
//! verification needs ([`ingest::mac_requests`](edgehook_core::ingest::mac_requests)); this
//! module only computes them.

use edgehook_core::signature::{HashFn, MacRequest};
use js_sys::{Array, Function, Object, Promise, Reflect, Uint8Array};
use std::cell::RefCell;
use wasm_bindgen::{JsCast, JsValue};
use worker::wasm_bindgen_futures::JsFuture;
use worker::{Error, Result};

thread_local! {
    /// Imported keys, by hash and key bytes: importing is a promise of its own, and the same
    /// few secrets sign every request this isolate sees. Bounded: cleared when full.
    static KEYS: RefCell<Vec<(HashFn, Vec<u8>, JsValue)>> = const { RefCell::new(Vec::new()) };
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

/// The `CryptoKey` for HMAC with `hash` under `key`, imported once per isolate.
async fn crypto_key(hash: HashFn, key: &[u8]) -> Result<JsValue> {
    if let Some(found) =
        KEYS.with(|k| k.borrow().iter().find(|(h, bytes, _)| *h == hash && bytes == key).map(|(_, _, c)| c.clone()))
    {
        return Ok(found);
    }
    let subtle = subtle()?;
    let algorithm = Object::new();
    Reflect::set(&algorithm, &"name".into(), &"HMAC".into()).map_err(js)?;
    Reflect::set(&algorithm, &"hash".into(), &hash.web_crypto_name().into()).map_err(js)?;
    let usages = Array::of1(&"sign".into());
    let args = Array::of5(&"raw".into(), &Uint8Array::from(key), &algorithm, &false.into(), &usages);
    let imported: Promise = method(&subtle, "importKey")?.apply(&subtle, &args).map_err(js)?.unchecked_into();
    let crypto_key = JsFuture::from(imported).await.map_err(js)?;
    KEYS.with(|k| {
        let mut keys = k.borrow_mut();
        if keys.len() >= MAX_KEYS {
            keys.clear();
        }
        keys.push((hash, key.to_vec(), crypto_key.clone()));
    });
    Ok(crypto_key)
}

/// Computes every requested HMAC with Web Crypto, all at once; `body` is the request's body
/// (the requests' [`Part::Body`](edgehook_core::signature::Part::Body)).
pub async fn hmacs(requests: Vec<MacRequest>, body: &[u8]) -> Result<Vec<(MacRequest, Vec<u8>)>> {
    let subtle = subtle()?;
    let sign = method(&subtle, "sign")?;
    let mut signing = Vec::with_capacity(requests.len());
    for request in &requests {
        let key = crypto_key(request.hash, &request.key).await?;
        // The message, assembled in JavaScript memory: one copy of the body, made here.
        let data = Uint8Array::new_with_length(request.pieces(body).map(|p| p.len() as u32).sum());
        let mut at = 0u32;
        for piece in request.pieces(body) {
            data.subarray(at, at + piece.len() as u32).copy_from(piece);
            at += piece.len() as u32;
        }
        signing.push(sign.call3(&subtle, &"HMAC".into(), &key, &data).map_err(js)?);
    }
    let all = JsFuture::from(Promise::all(&signing.into_iter().collect::<Array>())).await.map_err(js)?;
    let macs: Vec<Vec<u8>> = Array::from(&all).iter().map(|buffer| Uint8Array::new(&buffer).to_vec()).collect();
    Ok(requests.into_iter().zip(macs).collect())
}
