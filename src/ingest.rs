//! `POST /webhooks/{source}`: verify, store, enqueue, answer.
//!
//! The 200 comes only after the enqueue resolved (a resolved `send` is on disk). Nothing is
//! written before the enqueue, so a failed one leaves no trace and the provider's retry is
//! accepted. Deduplication is the consumer's job (see `edgehook_core::idempotency`); the
//! receiver answers `duplicate` for ids this isolate accepted lately, and lets concurrent copies
//! of one event wait (briefly) for the first copy's enqueue instead of enqueueing it again.

use crate::env::{self, bindings};
use crate::http::{self, RequestHeaders};
use crate::{blobs, queue, tally, web_crypto};
use edgehook_core::config::SourceConfig;
use edgehook_core::ingest::{self, Intake, Verified};
use edgehook_core::metrics::Outcome;
use edgehook_core::providers::Handshake;
use edgehook_core::recent::RecentIds;
use edgehook_core::Rejection;
use futures_util::StreamExt;
use js_sys::Uint8Array;
use std::cell::RefCell;
use std::collections::HashSet;
use std::time::Duration;
use worker::wasm_bindgen_futures::JsFuture;
use worker::worker_sys::web_sys;
use worker::{console_error, Context, Delay, Env, Headers, Request, Response, Result};

/// Ids remembered per isolate for `duplicate` answers: about 100 bytes each, so a few MB.
const RECENT_CAPACITY: usize = 50_000;
/// How often a copy waiting for another copy's enqueue looks again, and for how long at most.
const COPY_POLL: Duration = Duration::from_millis(5);
const MAX_COPY_WAIT_MS: i64 = 2_000;

thread_local! {
    static RECENT: RefCell<RecentIds> = RefCell::new(RecentIds::new(RECENT_CAPACITY));
    /// Keys whose enqueue is under way in this isolate.
    static IN_FLIGHT: RefCell<HashSet<String>> = RefCell::default();
}

/// What became of a request that was not rejected.
enum Answer {
    /// An event: answered with `status` (`accepted` or `duplicate`), and counted so.
    Event { status: Outcome, id: String, event_type: Option<String> },
    /// A provider's endpoint verification, answered as the provider expects.
    Handshake(Handshake),
}

pub async fn receive(
    req: web_sys::Request,
    url: &str,
    env: &Env,
    ctx: &Context,
    source_name: &str,
) -> Result<Response> {
    let answer = answer(req, url, env, source_name).await?;
    match &answer {
        Ok(Answer::Event { status, event_type, .. }) => {
            tally::count(ctx, env, source_name, event_type.as_deref(), *status, "");
        }
        Ok(Answer::Handshake(_)) => {}
        Err(rejection) => {
            // Only a configured source's name becomes a series of its own: names are the sender's
            // to choose, and with `SOURCES` unreadable every one of them is `misconfigured`.
            let label = if env::config(env).names(source_name) { source_name } else { tally::UNKNOWN_SOURCE };
            tally::count(ctx, env, label, None, Outcome::Rejected, rejection.code());
        }
    }
    match answer {
        Ok(Answer::Event { status, id, .. }) => http::status(status.as_str(), &id),
        Ok(Answer::Handshake(handshake)) => http::handshake(&handshake),
        Err(rejection) => http::reject(&rejection),
    }
}

async fn answer(
    req: web_sys::Request,
    url: &str,
    env: &Env,
    source_name: &str,
) -> Result<std::result::Result<Answer, Rejection>> {
    let config = env::config(env);
    let source = match config.source(source_name) {
        Ok(source) => source,
        Err(rejection) => return Ok(Err(rejection)),
    };
    let method = req.method();
    if method != "POST" {
        return Ok(Err(Rejection::MethodNotAllowed));
    }
    let headers = Headers(req.headers());
    let declared = headers.get("content-length")?;
    if let Err(rejection) = ingest::check_declared_length(source, declared.as_deref()) {
        return Ok(Err(rejection));
    }
    let body = match declared {
        // The declared length frames the body, and it is within the limit.
        Some(_) => Uint8Array::new(&JsFuture::from(req.array_buffer()?).await?).to_vec(),
        // Neither a length nor a body: an empty body (reading a stream that is not there fails).
        None if req.body().is_none() => Vec::new(),
        // No length (chunked): read no more than the limit allows.
        None => match read_at_most(&mut Request::from(req), source.max_body_bytes).await? {
            Some(body) => body,
            None => return Ok(Err(Rejection::PayloadTooLarge)),
        },
    };
    let request = ingest::Request { method: &method, url, headers: &RequestHeaders(&headers) };
    let now_ms = env::now_ms();
    #[cfg(feature = "faults")]
    let now_ms = crate::faults::verification_clock_ms(source_name).unwrap_or(now_ms);
    let verified = match verify(source, request, body, now_ms).await {
        Ok(Intake::Event(verified)) => verified,
        Ok(Intake::Handshake(answer)) => return Ok(Ok(Answer::Handshake(answer))),
        Err(rejection) => return Ok(Err(rejection)),
    };
    // An event outside the source's allow-list is still recorded (as `filtered`): it travels
    // the queue like any other, and the consumer captures it without delivering it.
    let filtered = !verified.admitted_by(source);
    let ttl_ms = (config.settings.idempotency_ttl_secs as i64).saturating_mul(1000);
    Ok(accept(env, &verified, ttl_ms, filtered).await.map(|status| Answer::Event {
        status,
        id: verified.id().to_owned(),
        event_type: verified.event_type().map(str::to_owned),
    }))
}

/// Verifies the request, with the HMACs of a large body computed by Web Crypto (faster than
/// Rust's in wasm for large messages; section 3 of BENCHMARKS.md), and public-key signatures
/// and HMAC-SHA512s checked there whatever the size. Should Web Crypto fail, HMACs are computed
/// here instead (the answer is the same either way); a public-key check or an HMAC-SHA512, which
/// this build cannot make, leaves the request unverified, and when nothing else verified it (an
/// HMAC beside it) it answers 503: the provider retries, where a 401 would turn a genuine event
/// away.
async fn verify(
    source: &SourceConfig,
    request: ingest::Request<'_>,
    body: Vec<u8>,
    now_ms: i64,
) -> std::result::Result<Intake, Rejection> {
    if !ingest::prefers_web_crypto(source, body.len()) {
        return ingest::verify(source, request, body, now_ms);
    }
    let needed = ingest::web_crypto_requests(source, request, &body, now_ms);
    if needed.is_empty() {
        return ingest::verify(source, request, body, now_ms);
    }
    let not_computable_here = needed.not_computable_here();
    #[cfg(feature = "faults")]
    crate::faults::count_web_crypto(&source.name, &needed);
    #[cfg(feature = "faults")]
    let failed = crate::faults::fails(crate::faults::Fault::WebCrypto, &source.name);
    #[cfg(not(feature = "faults"))]
    let failed = false;
    let computed = if failed {
        Err(worker::Error::RustError("armed fault".into()))
    } else {
        web_crypto::compute(needed, &blobs::Bytes::Wasm(&body)).await
    };
    let (answers, unanswered) = match computed {
        Ok(computed) => (Some(computed.answers), computed.unanswered),
        Err(e) => {
            console_error!("Web Crypto failed, verifying with Rust's HMAC instead: {e}");
            (None, not_computable_here)
        }
    };
    let verified = ingest::verify_with(source, request, body, now_ms, answers);
    // Unverified, but a check or HMAC this build cannot make went unanswered: it might have
    // verified the request. Verified another way (an HMAC), or refused for another reason, it
    // stands.
    if unanswered > 0 && matches!(verified, Err(Rejection::InvalidSignature)) {
        console_error!("Web Crypto could not check {unanswered} signature(s) of source {}: answering 503", source.name);
        return Err(Rejection::Unavailable);
    }
    verified
}

/// How much of an oversized chunked body is read and thrown away before answering 413, so that
/// the sender (or a proxy in front) is not cut off mid-send; a larger one is cut off.
const DRAIN_AT_MOST: u64 = 1024 * 1024;

/// Reads the body chunk by chunk; `None` as soon as it is longer than `limit` (after draining a
/// little more of it, see [`DRAIN_AT_MOST`]). Nothing past the limit is kept.
async fn read_at_most(req: &mut Request, limit: u64) -> Result<Option<Vec<u8>>> {
    let mut stream = req.stream()?;
    let mut body = Vec::new();
    let mut read = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        read += chunk.len() as u64;
        if read <= limit {
            body.extend_from_slice(&chunk);
        } else if read > limit + DRAIN_AT_MOST {
            break;
        }
    }
    Ok((read <= limit).then_some(body))
}

/// Enqueues the event unless this isolate knows it already. Returns the status to answer and
/// count: `accepted` or `duplicate`, as SPEC's table says, for a filtered event too (the provider
/// only needs its acknowledgement; the consumer records and counts the event as `filtered`).
async fn accept(env: &Env, event: &Verified, ttl_ms: i64, filtered: bool) -> std::result::Result<Outcome, Rejection> {
    let key = event.key();
    let give_up_waiting = env::now_ms() + MAX_COPY_WAIT_MS;
    let _in_flight = loop {
        if RECENT.with(|r| r.borrow().knows(&key, env::now_ms(), ttl_ms)) {
            return Ok(Outcome::Duplicate);
        }
        match InFlight::enter(&key) {
            Some(guard) => break guard,
            // Another copy is being enqueued: its success makes this one a duplicate. Polled on
            // this request's own timer: a wake-up from the other request would run this
            // request's code in that request's I/O context, which the runtime forbids.
            None if env::now_ms() < give_up_waiting => Delay::from(COPY_POLL).await,
            // Still undecided: enqueue this copy too; the consumer drops whichever comes second.
            None => break InFlight::shared(&key),
        }
    };
    match enqueue(env, event, filtered).await {
        Ok(()) => {
            RECENT.with(|r| r.borrow_mut().remember(&key, env::now_ms()));
            Ok(Outcome::Accepted)
        }
        Err(e) => {
            console_error!("enqueue of {key} failed: {e}");
            Err(Rejection::Unavailable)
        }
    }
}

/// Membership of [`IN_FLIGHT`] for one key, left when dropped (whatever the outcome, even if
/// the request is cancelled mid-enqueue).
struct InFlight(Option<String>);

impl InFlight {
    /// Enters the key, or `None` when another copy holds it.
    fn enter(key: &str) -> Option<InFlight> {
        IN_FLIGHT.with(|f| f.borrow_mut().insert(key.to_owned())).then(|| InFlight(Some(key.to_owned())))
    }

    /// Proceeds without holding the key (the holder will leave it).
    fn shared(_key: &str) -> InFlight {
        InFlight(None)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(key) = self.0.take() {
            IN_FLIGHT.with(|f| f.borrow_mut().remove(&key));
        }
    }
}

/// Forgets that this isolate accepted `key` (fault injection only).
#[cfg(feature = "faults")]
pub fn forget_recent_id(key: &str) {
    RECENT.with(|r| r.borrow_mut().forget(key));
}

/// Makes the event durable in the queue: inline when it fits a message, else with its body in
/// R2 first (a claim check).
async fn enqueue(env: &Env, event: &Verified, filtered: bool) -> Result<()> {
    #[cfg(feature = "faults")]
    if crate::faults::fails(crate::faults::Fault::Enqueue, event.id()) {
        return Err(worker::Error::RustError("injected fault: queue unavailable".into()));
    }
    let stored_key = if event.fits_inline() {
        None
    } else {
        #[cfg(feature = "faults")]
        if crate::faults::fails(crate::faults::Fault::Blob, event.id()) {
            return Err(worker::Error::RustError("injected fault: R2 unavailable".into()));
        }
        let key = blobs::body_key(event.source());
        blobs::put_body(env, &key, event.body()).await?;
        Some(key)
    };
    // When the send fails, the stored body stays: a send that failed by timing out may have
    // reached the queue after all, and its message would need the body. (An orphan costs only
    // storage until the retention sweep.)
    queue::send(&env.queue(bindings::EVENTS)?, &event.envelope(stored_key.as_deref(), filtered), 0).await
}
