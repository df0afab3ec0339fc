//! # edgehook, the worker
//!
//! Thin Cloudflare glue around `edgehook-core`: it routes HTTP requests, talks to Durable
//! Objects, Queues and R2, and reads the clock and randomness. Every decision with a branch
//! worth testing lives in the core; what is here is tested against the real runtime by the
//! integration suite (`tests/integration`).
//!
//! Entry points:
//! - `fetch`: `POST /webhooks/{source}` ([`ingest`]), `/admin/*` and `/health` ([`admin`]);
//! - `scheduled`: the every-minute cron trigger ([`cron`]);
//! - `queue`: the event consumer ([`consumer`]) and the dead-letter consumer ([`dead_letters`]),
//!   told apart by queue name;
//! - the `IdempotencyShard` Durable Objects ([`idempotency`]): records and captures;
//! - the `ControlObject` Durable Object ([`control`]): kill switches, metrics, health;
//! - the `GateObject` Durable Objects ([`gate`]): a rate limit and circuit breaker per destination.
//!
//! In-worker handlers (Rust code that processes events instead of forwarding them) are
//! registered in [`handlers`].

mod admin;
mod alerts;
mod batch;
mod billing;
mod blobs;
mod consumer;
mod control;
mod cron;
mod dead_letters;
mod env;
#[cfg(feature = "faults")]
mod faults;
mod gate;
pub mod handlers;
mod http;
mod idempotency;
mod ingest;
mod queue;
mod replay;
mod rows;
mod rpc;
mod tally;
mod web_crypto;

pub use control::ControlObject;
pub use gate::GateObject;
pub use idempotency::IdempotencyShard;

use worker::worker_sys::web_sys;
use worker::{event, Context, Env, Request, Response, Result, ScheduleContext, ScheduledEvent};

/// Takes the request as the runtime hands it over. Ingest reads only its method, URL, headers
/// and body; workers-rs's `Request` would also read its `cf` object, which the runtime rebuilds
/// (a JSON parse and a deep copy) on every read: in a profile of the runtime under load, the
/// share of samples in `Request::getCf` went from 3.3% to 1.7% without it.
#[event(fetch)]
async fn fetch(raw: web_sys::Request, env: Env, ctx: Context) -> Result<Response> {
    billing::count(billing::Op::WorkerRequest, 1);
    let url = raw.url();
    let path = http::path_of(&url);
    if let Some(source) = path.strip_prefix("/webhooks/") {
        if !source.is_empty() && !source.contains('/') {
            return ingest::receive(raw, &url, &env, &ctx, source).await;
        }
        tally::count(
            &ctx,
            &env,
            tally::UNKNOWN_SOURCE,
            None,
            edgehook_core::metrics::Outcome::Rejected,
            "unknown_source",
        );
        return http::reject(&edgehook_core::Rejection::UnknownSource);
    }
    let req = Request::from(raw);
    if path == "/health" {
        return admin::public_health(&env).await;
    }
    if (path == "/dashboard" || path == "/dashboard/") && req.method() == worker::Method::Get {
        return admin::dashboard();
    }
    #[cfg(feature = "faults")]
    if path.starts_with("/__faults/") {
        return faults::handle(&req, &env, path, http::query_of(&url)).await;
    }
    if path == "/admin" || path.starts_with("/admin/") {
        return admin::handle(req, &env, path, http::query_of(&url)).await;
    }
    http::json(404, r#"{"error":"not_found"}"#)
}

/// The cron trigger (`wrangler.toml`: every minute): heartbeat, health, alerts, retention.
#[event(scheduled)]
async fn scheduled(_event: ScheduledEvent, env: Env, _ctx: ScheduleContext) {
    billing::count(billing::Op::WorkerInvocation, 1);
    cron::tick(&env).await;
}

/// The queue handler, exported by hand rather than with `#[event(queue)]`: the consumer needs
/// each message's delivery count (`attempts`), which workers-rs 0.8.7 does not expose. The
/// export has the signature the `#[event(queue)]` macro would generate, which is what
/// worker-build's JavaScript shim calls.
mod queue_export {
    use wasm_bindgen::prelude::wasm_bindgen;
    use wasm_bindgen::JsValue;
    use worker::worker_sys::{Context, MessageBatch};

    #[wasm_bindgen(wasm_bindgen_futures = ::worker::wasm_bindgen_futures, js_sys = ::worker::js_sys)]
    pub async fn queue(batch: MessageBatch, env: worker::Env, _ctx: Context) -> Result<JsValue, JsValue> {
        if std::panic::AssertUnwindSafe(super::on_queue(batch, env)).await {
            // Only an injected crash (test builds) gets here: the invocation fails, and the
            // queue delivers every message it left unsettled again.
            return Err(JsValue::from_str("injected fault: the consumer crashed mid-batch"));
        }
        Ok(JsValue::UNDEFINED)
    }
}

/// Fails only when a test build injects a crash (the return value): otherwise every message is
/// acknowledged or retried on its own (a failed queue handler would retry the whole batch).
async fn on_queue(batch: worker::worker_sys::MessageBatch, env: Env) -> bool {
    billing::count(billing::Op::WorkerInvocation, 1);
    let batch = queue::Batch::new(batch);
    if batch.queue.ends_with(env::DEAD_LETTER_QUEUE_SUFFIX) {
        dead_letters::consume(batch, env).await
    } else {
        consumer::consume(batch, env).await
    }
}
