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

/// An answer as RPC carries it back: its text, or an `Error` whose message the caller reports.
pub fn reply(answer: Result<String>) -> std::result::Result<JsValue, JsValue> {
    match answer {
        Ok(text) => Ok(JsValue::from_str(&text)),
        Err(e) => Err(js_sys::Error::new(&e.to_string()).into()),
    }
}

#[wasm_bindgen]
extern "C" {
    /// A Durable Object stub, seen through the one RPC method edgehook's objects have.
    type ObjectStub;

    #[wasm_bindgen(method, catch)]
    fn ask(this: &ObjectStub, text: &str) -> std::result::Result<js_sys::Promise, JsValue>;
}

/// Sends `body` as JSON to the Durable Object `name` of `ns` and reads its JSON answer. `what`
/// names the object in errors ("control", "shard 3"). One billed request.
pub async fn ask_object<B: serde::Serialize + ?Sized, T: serde::de::DeserializeOwned>(
    ns: &ObjectNamespace,
    name: &str,
    what: &str,
    body: &B,
) -> Result<T> {
    let stub: ObjectStub = ns.id_from_name(name)?.get_stub()?.into_rpc();
    let text = serde_json::to_string(body)?;
    crate::billing::count(crate::billing::Op::DoRequest, 1);
    let failed = |e: JsValue| worker::Error::RustError(format!("{what}: {}", worker::Error::from(e)));
    let answer = JsFuture::from(stub.ask(&text).map_err(failed)?).await.map_err(failed)?;
    let answer = answer
        .as_string()
        .ok_or_else(|| worker::Error::RustError(format!("{what} answered something other than text")))?;
    Ok(serde_json::from_str(&answer)?)
}
