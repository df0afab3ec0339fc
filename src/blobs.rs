//! Bodies in R2: claim checks, capture segments, reading them back, and the retention sweep.
//!
//! A consumer batch writes the bodies it captures into one object (a segment), so capture costs
//! one R2 write per batch, not per event; each event's capture points at its bytes in it.
//! Claim-checked bodies (too large for a queue message) are captured where they already are.
//! Both are written under hour-stamped keys (`edgehook_core::capture::timed_key`) so the cron
//! trigger deletes whole hours past retention by listing the oldest keys first.

use crate::billing::{self, Op as Billed};
use crate::env::{self, bindings};
use edgehook_core::capture::{self, expired_key, timed_key, Capture, HeaderPairs, BODY_PREFIX, SEGMENT_PREFIX};
use edgehook_core::envelope::BodyRef;
use js_sys::{Function, Object, Promise, Reflect, Uint8Array};
use std::borrow::Cow;
use std::collections::HashMap;
use wasm_bindgen::{JsCast, JsValue};
use worker::wasm_bindgen_futures::JsFuture;
use worker::{console_error, Env, Result};

/// Most objects one sweep deletes per prefix (one list call, one bulk delete).
const SWEEP_BATCH: u32 = 1_000;

/// Writes a body (or a segment) to R2 at `key` (one billed write). See [`put`].
pub async fn put_body(env: &Env, key: &str, body: &[u8]) -> Result<()> {
    put(env, key, body, None).await
}

/// Writes `body` to R2 at `key` (one billed write), with `metadata` as the object's custom
/// metadata, through the binding's own `put`: the body is copied once, straight from wasm memory
/// into the buffer the write sends. (workers-rs's `Bucket::put` takes a `Vec`, so a borrowed body
/// would first be copied within wasm: for a 25 MB body, 25 MB more linear memory, which wasm
/// never gives back, under the isolate's 128 MB. And its options builder, HTTP metadata and
/// checksums included, was 4.7 KB of wasm that edgehook does not use.)
pub async fn put(env: &Env, key: &str, body: &[u8], metadata: Option<&HashMap<String, String>>) -> Result<()> {
    billing::count(Billed::R2ClassA, 1);
    billing::count(Billed::R2BytesStored, body.len() as u64);
    let options = Object::new();
    if let Some(metadata) = metadata {
        let custom = Object::new();
        for (name, value) in metadata {
            Reflect::set(&custom, &name.into(), &value.into())?;
        }
        Reflect::set(&options, &"customMetadata".into(), &custom)?;
    }
    bucket_call(env, "put", &[&key.into(), &Uint8Array::from(body), &options]).await?;
    Ok(())
}

/// Calls the bucket binding's method `name` with `args`, and awaits its answer. A missing
/// binding is an error here, as workers-rs's `env.bucket` makes it.
async fn bucket_call(env: &Env, name: &str, args: &[&JsValue]) -> Result<JsValue> {
    let bucket = Reflect::get(env, &bindings::BLOBS.into())?;
    if bucket.is_undefined() {
        return Err(worker::Error::RustError(format!("no R2 binding {}", bindings::BLOBS)));
    }
    call_awaited(&bucket, name, args).await
}

/// Calls `this[name](...args)` and awaits the promise it returns.
async fn call_awaited(this: &JsValue, name: &str, args: &[&JsValue]) -> Result<JsValue> {
    let method: Function = Reflect::get(this, &name.into())?.dyn_into()?;
    let promise = method.apply(this, &args.iter().copied().collect::<js_sys::Array>())?;
    Ok(JsFuture::from(promise.dyn_into::<Promise>()?).await?)
}

/// An object R2 answered, or `None` for its "no such object" (`null`).
fn found(object: JsValue) -> Option<JsValue> {
    (!object.is_null() && !object.is_undefined()).then_some(object)
}

/// Whether an object is stored at `key` (a `head`: one billed read, no body).
pub async fn exists(env: &Env, key: &str) -> Result<bool> {
    Ok(head(env, key).await?.is_some())
}

/// The custom metadata and size of the object stored at `key`, if there is one (a `head`: one
/// billed read, no body).
pub async fn head(env: &Env, key: &str) -> Result<Option<(HashMap<String, String>, u64)>> {
    billing::count(Billed::R2ClassB, 1);
    let Some(object) = found(bucket_call(env, "head", &[&key.into()]).await?) else {
        return Ok(None);
    };
    let size = Reflect::get(&object, &"size".into())?.as_f64().unwrap_or(0.0) as u64;
    Ok(Some((custom_metadata(&object)?, size)))
}

/// The object at `key` (one billed read): its custom metadata and its bytes, or `None`.
pub async fn get_with_metadata(env: &Env, key: &str) -> Result<Option<(HashMap<String, String>, Vec<u8>)>> {
    billing::count(Billed::R2ClassB, 1);
    let Some(object) = found(bucket_call(env, "get", &[&key.into()]).await?) else {
        return Ok(None);
    };
    Ok(Some((custom_metadata(&object)?, array_buffer(&object).await?.to_vec())))
}

/// One page of an R2 listing.
pub struct Listed {
    /// Keys in order, each with its custom metadata (empty unless asked for).
    pub objects: Vec<(String, HashMap<String, String>)>,
    /// Where the next page starts, when there is one.
    pub cursor: Option<String>,
}

/// Lists up to `limit` keys under `prefix` from `cursor` (one billed list operation), with their
/// custom metadata when `with_metadata`. Through the binding's own `list`: workers-rs's wraps
/// every field of every object (HTTP metadata, checksums, dates), none of which edgehook reads.
pub async fn list(env: &Env, prefix: &str, limit: u32, cursor: Option<&str>, with_metadata: bool) -> Result<Listed> {
    billing::count(Billed::R2ClassA, 1);
    #[cfg(feature = "faults")]
    let limit = crate::faults::list_page().unwrap_or(limit);
    let options = Object::new();
    Reflect::set(&options, &"prefix".into(), &prefix.into())?;
    Reflect::set(&options, &"limit".into(), &limit.into())?;
    if let Some(cursor) = cursor {
        Reflect::set(&options, &"cursor".into(), &cursor.into())?;
    }
    if with_metadata {
        Reflect::set(&options, &"include".into(), &js_sys::Array::of1(&"customMetadata".into()))?;
    }
    let page = bucket_call(env, "list", &[&options]).await?;
    let objects: js_sys::Array = Reflect::get(&page, &"objects".into())?.dyn_into()?;
    let objects = objects
        .iter()
        .map(|object| {
            let key = Reflect::get(&object, &"key".into())?.as_string().unwrap_or_default();
            Ok((key, custom_metadata(&object)?))
        })
        .collect::<Result<Vec<_>>>()?;
    let truncated = Reflect::get(&page, &"truncated".into())?.is_truthy();
    let cursor = if truncated { Reflect::get(&page, &"cursor".into())?.as_string() } else { None };
    Ok(Listed { objects, cursor })
}

/// An R2 object's custom metadata (text values only, as edgehook writes it).
fn custom_metadata(object: &JsValue) -> Result<HashMap<String, String>> {
    let mut metadata = HashMap::new();
    let custom = Reflect::get(object, &"customMetadata".into())?;
    if custom.is_object() {
        for entry in Object::entries(custom.unchecked_ref::<Object>()) {
            let entry: js_sys::Array = entry.unchecked_into();
            if let (Some(name), Some(value)) = (entry.get(0).as_string(), entry.get(1).as_string()) {
                metadata.insert(name, value);
            }
        }
    }
    Ok(metadata)
}

/// An R2 object body's bytes, left in JavaScript memory.
async fn array_buffer(object: &JsValue) -> Result<Uint8Array> {
    Ok(Uint8Array::new(&call_awaited(object, "arrayBuffer", &[]).await?))
}

/// A new key for a claim-checked body of `source`.
pub fn body_key(source: &str) -> String {
    timed_key(BODY_PREFIX, env::now_ms(), &format!("{source}/{}", env::random_id()))
}

/// Bodies gathered into one R2 object, written once.
pub struct Segment {
    key: String,
    bytes: Vec<u8>,
    bodies: usize,
}

impl Segment {
    pub fn new() -> Segment {
        Segment { key: timed_key(SEGMENT_PREFIX, env::now_ms(), &env::random_id()), bytes: Vec::new(), bodies: 0 }
    }

    /// Appends `headers` (unless there are none) and then `body`; returns where the body will
    /// be once the segment is stored, and how many bytes right before it hold the headers.
    pub fn push(&mut self, headers: &[(String, String)], body: &[u8]) -> (BodyRef, u64) {
        let stored_headers = if headers.is_empty() { Vec::new() } else { capture::headers_json(headers) };
        self.bytes.extend_from_slice(&stored_headers);
        let offset = self.bytes.len() as u64;
        self.bytes.extend_from_slice(body);
        self.bodies += 1;
        (BodyRef::Segment { key: self.key.clone(), offset, len: body.len() as u64 }, stored_headers.len() as u64)
    }

    pub fn is_empty(&self) -> bool {
        self.bodies == 0
    }

    pub async fn store(self, env: &Env) -> Result<()> {
        put_body(env, &self.key, &self.bytes).await
    }
}

/// Bytes in wasm memory or in JavaScript's. A body read back from R2 stays in JavaScript: `fetch`
/// and Web Crypto read it there, and only what must read it in Rust (a handler, the Rust HMAC)
/// copies it into wasm. Wasm memory grows to the largest body it ever held and never shrinks,
/// under the isolate's 128 MB; a delivery of a claim-checked body used to copy it in and out.
pub enum Bytes<'a> {
    Wasm(&'a [u8]),
    Js(Uint8Array),
}

impl Bytes<'_> {
    pub fn len(&self) -> usize {
        match self {
            Bytes::Wasm(bytes) => bytes.len(),
            Bytes::Js(array) => array.length() as usize,
        }
    }

    /// The bytes in wasm memory: borrowed there, or copied in.
    pub fn in_wasm(&self) -> Cow<'_, [u8]> {
        match self {
            Bytes::Wasm(bytes) => Cow::Borrowed(bytes),
            Bytes::Js(array) => Cow::Owned(array.to_vec()),
        }
    }

    /// The bytes as a JavaScript array: the same array, or a copy out of wasm memory.
    pub fn to_js(&self) -> Uint8Array {
        match self {
            Bytes::Wasm(bytes) => Uint8Array::from(*bytes),
            Bytes::Js(array) => array.clone(),
        }
    }
}

/// The body `body` refers to: `inline` for inline bodies, else read from R2 into JavaScript
/// memory (see [`Bytes`]). `None` when the stored body is gone.
pub async fn load_bytes<'a>(env: &Env, body: &BodyRef, inline: &'a [u8]) -> Result<Option<Bytes<'a>>> {
    let (key, range) = match body {
        BodyRef::Inline => return Ok(Some(Bytes::Wasm(inline))),
        // An empty body has no bytes to range over.
        BodyRef::Segment { len: 0, .. } => return Ok(Some(Bytes::Wasm(&[]))),
        BodyRef::Stored { key, .. } => (key, None),
        BodyRef::Segment { key, offset, len } => (key, Some((*offset, *len))),
    };
    billing::count(Billed::R2ClassB, 1);
    // The binding's own `get` and the object's `arrayBuffer`: workers-rs's `ObjectBody::bytes`
    // copies the body into wasm memory.
    let options = Object::new();
    if let Some((offset, length)) = range {
        let range = Object::new();
        Reflect::set(&range, &"offset".into(), &(offset as f64).into())?;
        Reflect::set(&range, &"length".into(), &(length as f64).into())?;
        Reflect::set(&options, &"range".into(), &range)?;
    }
    let Some(object) = found(bucket_call(env, "get", &[&key.into(), &options]).await?) else {
        return Ok(None);
    };
    Ok(Some(Bytes::Js(array_buffer(&object).await?)))
}

/// The body `body` refers to, in wasm memory: `inline` for inline bodies, else read from R2.
/// `None` when the stored body is gone.
pub async fn load(env: &Env, body: &BodyRef, inline: &[u8]) -> Result<Option<Vec<u8>>> {
    Ok(load_bytes(env, body, inline).await?.map(|bytes| bytes.in_wasm().into_owned()))
}

/// A captured event's body, as the admin API reads it.
pub enum CapturedBody {
    Bytes(Vec<u8>),
    /// Stored, but longer than the reader takes: not read.
    Omitted,
    /// Gone from storage.
    Gone,
}

/// A captured event's headers and body: when the segment holds its received headers right
/// before the body, those (read with the body in one request) and then the ones its record
/// holds; otherwise the record's. A body longer than `max_body` is not read (only the headers
/// stored before it are): the admin API copies a body it answers with several times over, as
/// text and as base64, and a large one would take the isolate past its 128 MB.
pub async fn load_capture(env: &Env, capture: &Capture, max_body: u64) -> Result<(HeaderPairs, CapturedBody)> {
    // Headers stored right before the body: only in segments.
    let stored = if matches!(capture.body, BodyRef::Segment { .. }) { capture.stored_headers } else { 0 };
    let (read, omitted) = match &capture.body {
        BodyRef::Segment { key, offset, len } if *len > max_body => {
            (BodyRef::Segment { key: key.clone(), offset: offset.saturating_sub(stored), len: stored }, true)
        }
        BodyRef::Stored { len, .. } if *len > max_body => (capture.body.clone(), true),
        BodyRef::Segment { key, offset, len } => {
            (BodyRef::Segment { key: key.clone(), offset: offset.saturating_sub(stored), len: len + stored }, false)
        }
        body => (body.clone(), false),
    };
    let found = match &read {
        // Omitted, with no headers before it to read: whether it is there is all to ask (an
        // empty range would read nothing).
        BodyRef::Stored { key, .. } | BodyRef::Segment { key, len: 0, .. } if omitted => {
            exists(env, key).await?.then(Vec::new)
        }
        _ => load(env, &read, &[]).await?,
    };
    let Some(bytes) = found else {
        return Ok((capture.headers.clone(), CapturedBody::Gone));
    };
    let (mut headers, body) = if stored > 0 { capture::split_stored(&bytes, stored) } else { (Vec::new(), &bytes[..]) };
    let skip = if stored > 0 { usize::try_from(capture.stored_count).unwrap_or(usize::MAX) } else { 0 };
    headers.extend(capture.headers.iter().skip(skip).cloned());
    let body = if omitted { CapturedBody::Omitted } else { CapturedBody::Bytes(body.to_vec()) };
    Ok((headers, body))
}

/// Deletes segments and claim-checked bodies written in hours before `cutoff_ms`, a bounded
/// number per run (the cron trigger runs every minute). Returns how many were deleted.
pub async fn sweep(env: &Env, cutoff_ms: i64) -> Result<usize> {
    let bucket = env.bucket(bindings::BLOBS)?;
    let mut deleted = 0;
    for prefix in [SEGMENT_PREFIX, BODY_PREFIX] {
        let listed = list(env, prefix, SWEEP_BATCH, None, false).await?;
        // Keys sort by hour: the expired ones come first.
        let old: Vec<String> = listed
            .objects
            .into_iter()
            .map(|(key, _)| key)
            .take_while(|key| expired_key(prefix, key, cutoff_ms))
            .collect();
        if old.is_empty() {
            continue;
        }
        deleted += old.len();
        if let Err(e) = bucket.delete_multiple(old).await {
            console_error!("retention sweep: could not delete under {prefix}: {e}");
        }
    }
    Ok(deleted)
}
