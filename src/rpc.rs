//! Calls into edgehook's own Durable Objects, over Workers RPC rather than `fetch`.
//!
//! Every call is one JSON text in and one JSON text out (`http::Json`), and each object class
//! answers it in [`Answer::answer`]. The call travels as an RPC method, `ask`, rather than as a
//! `fetch`: a `fetch` builds a `Request` and a `Response` on both sides, and under `wrangler
//! dev` each one is also reported to the inspector as a network request, which wrangler's proxy
//! relays and its Node.js process formats and logs. Measured with a minimal JavaScript worker
//! (`scripts/bench-rpc`; BENCHMARKS, section 1): about 4.5 ms of CPU per call across the three
//! processes by `fetch`, about 0.3 ms by RPC.
//!
//! workerd answers RPC only on classes that extend `DurableObject`, which the classes
//! worker-build generates do not. `js/index.js`, installed by `scripts/build` as the bundle's
//! entry, wraps each in one that does and forwards `ask`, `fetch` and `alarm` to it.
//!
//! The objects still answer `fetch` with the same texts: during a deploy, a caller still running
//! the previous version asks that way.

use crate::http::{array, items, Json};
use serde_json::Value;
use std::future::Future;
use wasm_bindgen::prelude::wasm_bindgen;
use wasm_bindgen::JsValue;
use worker::wasm_bindgen_futures::JsFuture;
use worker::{ObjectNamespace, Result};

/// A Durable Object class's answer to one call's JSON text.
pub(crate) trait Answer {
    fn answer(&self, text: String) -> impl Future<Output = Result<String>>;
}

/// Exports `ask(text)` on a Durable Object class: the RPC method [`ask_object`] calls.
///
/// The classes' other exports come from `#[durable_object(fetch)]` (the constructor and
/// `fetch`, for callers of the release before RPC) or `#[durable_object(alarm)]` (the same and
/// `alarm`: the idempotency shards). Without an argument the attribute also exports WebSocket
/// and socket handlers, which edgehook never uses: twelve exported futures across the three
/// classes, 4.6 KB of the gzipped bundle.
// rustfmt indents the attribute's arguments further on every run inside this macro.
#[rustfmt::skip]
macro_rules! answer_over_rpc {
    ($object:ident) => {
        const _: () = {
            use ::worker::wasm_bindgen::prelude::*;
            #[wasm_bindgen(
                wasm_bindgen = ::worker::wasm_bindgen,
                wasm_bindgen_futures = ::worker::wasm_bindgen_futures,
                js_sys = ::worker::js_sys
            )]
            impl $object {
                pub async fn ask(&self, text: String) -> ::std::result::Result<JsValue, JsValue> {
                    $crate::rpc::reply(<Self as $crate::rpc::Answer>::answer(self, text).await)
                }
            }
        };
    };
}
pub(crate) use answer_over_rpc;

/// An answer as RPC carries it back: its text, or the error as workers-rs hands it to JavaScript
/// (with its causes, as a `fetch` handler's error is thrown), which the caller reports.
pub fn reply(answer: Result<String>) -> std::result::Result<JsValue, JsValue> {
    answer.map(|text| JsValue::from_str(&text)).map_err(JsValue::from)
}

#[wasm_bindgen]
extern "C" {
    /// A Durable Object stub, seen through the one RPC method edgehook's objects have.
    type ObjectStub;

    #[wasm_bindgen(method, catch)]
    fn ask(this: &ObjectStub, text: &str) -> std::result::Result<js_sys::Promise, JsValue>;

    /// A method no object has, as `ask` is missing from an object of a release before RPC: its
    /// error is workerd's own (test builds only, `POST /__faults/ask?via=old-rpc`).
    #[cfg(feature = "faults")]
    #[wasm_bindgen(method, catch, js_name = askBeforeRpc)]
    fn ask_missing(this: &ObjectStub, text: &str) -> std::result::Result<js_sys::Promise, JsValue>;
}

/// Sends the JSON `text` to the Durable Object `name` of `ns` and answers its JSON text. `what`
/// names the object in errors ("control", "shard 3"). One billed request.
///
/// An object still running a release from before RPC (during a deploy; with gradual deployments,
/// for the whole rollout) cannot answer `ask`: it is asked by `fetch` instead, with the same text.
pub async fn ask_object(ns: &ObjectNamespace, name: &str, what: &str, text: String) -> Result<String> {
    let id = ns.id_from_name(name)?;
    crate::billing::count(crate::billing::Op::DoRequest, 1);
    let answer = match by_rpc(id.get_stub()?.into_rpc(), name, &text).await {
        Ok(answer) => answer,
        Err(e) if answers_no_rpc(&e) => {
            worker::console_log!("{what} does not answer RPC yet ({e}): asked by fetch");
            crate::billing::count(crate::billing::Op::DoRequest, 1);
            by_fetch(id.get_stub()?, text).await.map_err(|e| worker::Error::RustError(format!("{what}: {e}")))?
        }
        Err(e) => return Err(worker::Error::RustError(format!("{what}: {e}"))),
    };
    Ok(answer)
}

/// Sends a batch of operations to the object `name` of `ns` in one request ([`ask_object`]),
/// and answers their answers, one per operation.
pub async fn ask_batch(ns: &ObjectNamespace, name: &str, what: &str, ops: &[Json]) -> Result<Vec<Value>> {
    items(&ask_object(ns, name, what, array(ops)).await?, "answers")
}

/// Whether a call failed because the object runs a release from before RPC: its class does not
/// extend `DurableObject`, or has no `ask`. (workerd's messages: "The receiving Durable Object
/// does not support RPC, because its class was not declared with `extends DurableObject`...",
/// and "The RPC receiver does not implement the method \"ask\".")
fn answers_no_rpc(error: &worker::Error) -> bool {
    let message = error.to_string();
    message.contains("does not support RPC") || message.contains("does not implement the method")
}

async fn by_rpc(stub: ObjectStub, name: &str, text: &str) -> Result<String> {
    #[cfg(feature = "faults")]
    let promise = if crate::faults::fails(crate::faults::Fault::OldObject, name) {
        stub.ask_missing(text)
    } else {
        stub.ask(text)
    };
    #[cfg(not(feature = "faults"))]
    let promise = {
        let _ = name;
        stub.ask(text)
    };
    let answer = JsFuture::from(promise?).await?;
    answer.as_string().ok_or_else(|| worker::Error::RustError("answered something other than text".into()))
}

/// The same call as before RPC: the text posted, the answer read from a 200.
pub(crate) async fn by_fetch(stub: worker::Stub, text: String) -> Result<String> {
    let request = crate::http::post(
        "https://object.edgehook/",
        &worker::Headers::new(),
        &JsValue::from_str(&text),
        crate::http::Redirects::Follow,
    )?;
    let mut response = stub.fetch_with_request(request).await?;
    let answer = response.text().await?;
    match response.status_code() {
        200 => Ok(answer),
        status => Err(worker::Error::RustError(format!("answered {status}: {answer}"))),
    }
}
