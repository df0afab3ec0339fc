//! The queue consumer: deliver each event once, retry with backoff, dead-letter what keeps failing.
//!
//! This is where "delivered once" is enforced: every message `begin`s in the event's Durable
//! Object record before anything is sent, and a copy of an event already in hand is acknowledged
//! without delivery.
//!
//! Every message is acknowledged or retried individually, and the handler never returns an error
//! (in workers-rs that would fail and retry the whole batch): one poison message goes to the
//! dead-letter queue alone. A delivery retry is a new message carrying `attempt + 1`, the last
//! error and a token that the record waits for, sent with the backoff as its delay.
//! `message.retry()` is kept for infrastructure failures (idempotency store, R2 or queue
//! unavailable), which do not use up an attempt and end in the dead-letter queue only through the
//! queue's own `max_retries`.

use crate::env::{self, bindings};
use crate::idempotency::Idempotency;
use crate::queue::{self, Batch, Decision, Delivery};
use edgehook_core::config::Config;
use edgehook_core::envelope::{self, BodyRef, EventMeta};
use edgehook_core::forward::{self, AttemptResult};
use edgehook_core::idempotency::{Begin, Message, Outcome};
use edgehook_core::ingest::idempotency_key;
use edgehook_core::retry::AfterFailure;
use edgehook_core::slots::Slots;
use futures_util::future::{select, Either};
use futures_util::lock::Mutex;
use js_sys::Uint8Array;
use std::time::Duration;
use worker::{
    console_error, AbortController, Delay, Env, Fetch, Headers, MessageExt, Method, Request, RequestInit,
    RequestRedirect, Result,
};

/// A lease lasts longer than any consumer invocation can (15 minutes of wall time): every message
/// of a batch takes its lease at the start, then may wait for a connection or for the large-body
/// turn, and a lease must not run out before its delivery is decided. A consumer that dies gives
/// its lease back through the queue's redelivery of its message, not through expiry.
const LEASE_MS: i64 = 16 * 60 * 1000;
/// Past this much of an invocation's wall time, events not yet sent are deferred to a new
/// message (without using an attempt) so the invocation ends well inside its limit.
const TIME_BUDGET_MS: i64 = 12 * 60 * 1000;
/// When storage or the queue fails, the message comes back after this long.
const INFRA_RETRY_SECS: u32 = 30;
/// A continuation waiting for another message's lease checks back at least this often.
const MAX_WAIT_SECS: i64 = 10;
/// Deliveries in flight at once per invocation: Workers allow six open connections per
/// invocation, and one is left for the storage and queue calls around them.
const DELIVERY_CONNECTIONS: usize = 5;
/// An event whose source is not configured (any more) is looked at again this often.
const UNCONFIGURED_RETRY_SECS: u32 = 300;
/// Recording an outcome is retried this often before the message itself is retried: a lost
/// `Delivered` would let the event be delivered a second time.
const FINISH_TRIES: u32 = 3;
/// Longest error text kept with an event.
const MAX_ERROR_LEN: usize = 300;

/// What every message of one batch shares.
struct BatchContext<'a> {
    env: &'a Env,
    config: &'a Config,
    store: &'a Idempotency,
    large_bodies: &'a Mutex<()>,
    connections: &'a Slots,
    /// When this invocation started (Unix ms), for its time budget.
    started_ms: i64,
}

pub async fn consume(batch: Batch, env: Env) {
    let config = env::config(&env);
    let store = match Idempotency::new(&env) {
        Ok(store) => store,
        Err(e) => {
            console_error!("idempotency binding unavailable, retrying the batch: {e}");
            return batch.retry_all(INFRA_RETRY_SECS);
        }
    };
    let large_bodies = Mutex::new(());
    let connections = Slots::new(DELIVERY_CONNECTIONS);
    let started_ms = env::now_ms();
    let context = BatchContext {
        env: &env,
        config: &config,
        store: &store,
        large_bodies: &large_bodies,
        connections: &connections,
        started_ms,
    };
    let context = &context;
    queue::settle_each(&batch, INFRA_RETRY_SECS, |delivery| handle(delivery, context)).await;
}

async fn handle(delivery: &Delivery, b: &BatchContext<'_>) -> Result<Decision> {
    let message = &delivery.message;
    let Some(bytes) = queue::message_bytes(message) else {
        return poison(b.env, &queue::describe_foreign_body(message)).await;
    };
    let Ok((meta, inline)) = envelope::decode(&bytes) else {
        return poison(b.env, &bytes).await;
    };
    let Ok(source) = b.config.source(&meta.source) else {
        // Removed or misconfigured since the event was accepted: keep the event, untouched and
        // without using an attempt, until the configuration is fixed.
        console_error!("event {}/{}: source is not configured; holding the event", meta.source, meta.id);
        return put_back(b.env, &bytes, UNCONFIGURED_RETRY_SECS).await;
    };
    let key = idempotency_key(&meta.source, &meta.id);
    let message_id = message.id();
    let asking =
        Message { id: &message_id, attempts: delivery.attempts, retry_token: meta.retry_token, replay: meta.replay };
    match b.store.begin(&key, asking, LEASE_MS).await? {
        Begin::Go => {}
        // A skipped copy's claim-checked body is left alone: the same key can be shared by the
        // copy's own retries and dead letter (if it began the event's chain before being
        // delivered again), so only the lifecycle rule in the README clears such orphans.
        Begin::Skip { .. } => return Ok(Decision::Ack),
        Begin::Later { retry_in_ms } => {
            let secs = ((retry_in_ms + 999) / 1000).clamp(1, MAX_WAIT_SECS) as u32;
            return put_back(b.env, &bytes, secs).await;
        }
    }
    let finish = |outcome| finish(b.store, &key, &message_id, outcome);

    // Claim-checked bodies can be megabytes each: hold one in memory at a time, not a batch's.
    let large_body_turn = match meta.body {
        BodyRef::Stored { .. } => Some(b.large_bodies.lock().await),
        BodyRef::Inline => None,
    };
    // The delivery timeout must start when the request can actually be sent.
    let connection = match source.destination {
        Some(_) => Some(b.connections.acquire().await),
        None => None,
    };
    if env::now_ms() - b.started_ms > TIME_BUDGET_MS {
        // Waited too long for a turn: a new message carries the event on, same attempt.
        drop((connection, large_body_turn));
        let attempt = meta.attempt;
        return hand_on(b, &key, &message_id, meta, inline, attempt, 1).await;
    }
    let body = match load_body(b.env, &meta, inline).await? {
        Some(body) => body,
        None => {
            let meta = with_error(meta, "body missing from storage (claim check)".into());
            dead_letter(b.env, &meta, &[]).await?;
            finish(Outcome::Dead).await?;
            return Ok(Decision::Ack);
        }
    };
    let result = match (&source.destination, &b.config.settings.destination_secret) {
        (Some(url), Some(key)) => {
            let headers = forward::delivery_headers(&meta, &body, key, env::now_ms() / 1000);
            deliver(url, headers, &body, source.delivery_timeout_secs).await
        }
        // Configuration refuses this combination; should it ever happen, never forward
        // unsigned and never call it delivered.
        (Some(_), None) => AttemptResult::Failed {
            error: "DESTINATION_SECRET is not set; events are never forwarded unsigned".into(),
            retry_after_secs: None,
        },
        // No destination: the event is complete once accepted (see the README).
        (None, _) => AttemptResult::Delivered,
    };
    drop((body, connection, large_body_turn));

    match result {
        AttemptResult::Delivered => {
            finish(Outcome::Delivered).await?;
            delete_body(b.env, &meta.body).await;
            Ok(Decision::Ack)
        }
        AttemptResult::Failed { error, retry_after_secs } => {
            let meta = with_error(meta, error);
            match source.retry.after_failure(meta.attempt, env::random_unit(), retry_after_secs) {
                AfterFailure::Retry { attempt, delay_secs } => {
                    hand_on(b, &key, &message_id, meta, inline, attempt, delay_secs).await
                }
                AfterFailure::DeadLetter => {
                    // Hand over first, then record: if the hand-over fails the message is
                    // retried, and a record marked dead first would make the retry skip it.
                    dead_letter(b.env, &meta, inline).await?;
                    finish(Outcome::Dead).await?;
                    Ok(Decision::Ack)
                }
            }
        }
    }
}

/// Carries the event on in a new message, as `attempt`, after `delay_secs`: the retry after a
/// failed attempt, or a deferral (same attempt) when this invocation ran out of time. The new
/// message carries a fresh token and the record is told to wait for it, in that order: a record
/// waiting for a token that no message carries would strand the event.
async fn hand_on(
    b: &BatchContext<'_>,
    key: &str,
    message_id: &str,
    meta: EventMeta,
    inline: &[u8],
    attempt: u32,
    delay_secs: u32,
) -> Result<Decision> {
    let token = env::random_token();
    let next = EventMeta { attempt, retry_token: Some(token), replay: false, ..meta };
    let queue = b.env.queue(bindings::EVENTS)?;
    if let Err(e) = queue::send(&queue, &envelope::encode(&next, inline), delay_secs).await {
        // This message comes back instead, with the same attempt number.
        console_error!("could not enqueue attempt {attempt} of {key}: {e}");
        return Ok(Decision::RetryIn(delay_secs));
    }
    finish(b.store, key, message_id, Outcome::Retrying { token }).await?;
    Ok(Decision::Ack)
}

/// A message that is not an edgehook envelope goes to the dead-letter queue alone, whose
/// consumer records why.
async fn poison(env: &Env, raw: &[u8]) -> Result<Decision> {
    queue::send(&env.queue(bindings::DEAD_LETTERS)?, raw, 0).await?;
    Ok(Decision::Ack)
}

/// Puts a message back on the queue unchanged, to come back after `delay_secs`, without using
/// one of the queue's own retries (those count towards `max_retries` and are kept for failures).
async fn put_back(env: &Env, bytes: &[u8], delay_secs: u32) -> Result<Decision> {
    match queue::send(&env.queue(bindings::EVENTS)?, bytes, delay_secs).await {
        Ok(()) => Ok(Decision::Ack),
        Err(e) => {
            console_error!("could not put a message back on the queue, retrying it instead: {e}");
            Ok(Decision::RetryIn(delay_secs))
        }
    }
}

/// Deletes a claim-checked body once nothing needs it (best effort: an orphan costs storage,
/// never correctness).
async fn delete_body(env: &Env, body: &BodyRef) {
    if let BodyRef::Stored { key, .. } = body {
        match env.bucket(bindings::BLOBS) {
            Ok(bucket) => {
                if let Err(e) = bucket.delete(key).await {
                    console_error!("could not delete body {key}: {e}");
                }
            }
            Err(e) => console_error!("could not delete body {key}: {e}"),
        }
    }
}

fn with_error(meta: EventMeta, error: String) -> EventMeta {
    let mut error = error;
    if error.len() > MAX_ERROR_LEN {
        let cut = (0..=MAX_ERROR_LEN).rev().find(|&i| error.is_char_boundary(i)).unwrap_or(0);
        error.truncate(cut);
    }
    EventMeta { last_error: Some(error), ..meta }
}

/// The event's body: inline, or from R2. `None` when the stored body is gone.
async fn load_body(env: &Env, meta: &EventMeta, inline: &[u8]) -> Result<Option<Vec<u8>>> {
    match &meta.body {
        BodyRef::Inline => Ok(Some(inline.to_vec())),
        BodyRef::Stored { key, .. } => match env.bucket(bindings::BLOBS)?.get(key).execute().await? {
            None => Ok(None),
            Some(object) => match object.body() {
                None => Ok(None),
                Some(body) => Ok(Some(body.bytes().await?)),
            },
        },
    }
}

/// Hands the event to the dead-letter queue, whose consumer stores it and alerts.
async fn dead_letter(env: &Env, meta: &EventMeta, inline: &[u8]) -> Result<()> {
    let letter = EventMeta { dead: true, ..meta.clone() };
    queue::send(&env.queue(bindings::DEAD_LETTERS)?, &envelope::encode(&letter, inline), 0).await
}

/// Records an outcome, trying a few times (with a pause) before giving up to the queue's own
/// retry: a lost `Delivered` would let the event be delivered a second time.
async fn finish(store: &Idempotency, key: &str, message_id: &str, outcome: Outcome) -> Result<()> {
    let mut pause = Duration::from_millis(200);
    let mut tries = 0;
    loop {
        tries += 1;
        match store.finish(key, message_id, outcome).await {
            Ok(()) => return Ok(()),
            Err(e) if tries >= FINISH_TRIES => return Err(e),
            Err(e) => console_error!("recording {outcome:?} for {key} failed (try {tries}): {e}"),
        }
        Delay::from(pause).await;
        pause *= 4;
    }
}

/// One delivery attempt: POST with a timeout. Redirects are not followed (a 3xx is a failure):
/// following them would let a destination send signed events somewhere nobody configured.
async fn deliver(
    url: &str,
    headers: edgehook_core::headers::HeaderList,
    body: &[u8],
    timeout_secs: u64,
) -> AttemptResult {
    let failed = |error: String| AttemptResult::Failed { error, retry_after_secs: None };
    let request = match build_request(url, headers, body) {
        Ok(r) => r,
        Err(e) => return failed(format!("could not build the request: {}", redact(&e.to_string(), url))),
    };
    let controller = AbortController::default();
    let signal = controller.signal();
    let fetch = Fetch::Request(request);
    let sending = fetch.send_with_signal(&signal);
    let timer = Delay::from(Duration::from_secs(timeout_secs));
    futures_util::pin_mut!(sending);
    match select(sending, timer).await {
        Either::Left((Ok(response), _)) => {
            let retry_after = response.headers().get("retry-after").ok().flatten();
            forward::judge_response(response.status_code(), retry_after.as_deref(), env::now_ms() / 1000)
        }
        Either::Left((Err(e), _)) => failed(format!("network error: {}", redact(&e.to_string(), url))),
        Either::Right(_) => {
            controller.abort();
            failed(format!("no answer within {timeout_secs}s"))
        }
    }
}

fn build_request(url: &str, headers: edgehook_core::headers::HeaderList, body: &[u8]) -> Result<Request> {
    let h = Headers::new();
    for (name, value) in &headers.0 {
        h.set(name, value)?;
    }
    let mut init = RequestInit::new();
    init.with_method(Method::Post)
        .with_headers(h)
        .with_redirect(RequestRedirect::Manual)
        .with_body(Some(Uint8Array::from(body).into()));
    Request::new_with_init(url, &init)
}

/// Destination URLs may carry credentials (a token in the query); errors never repeat them.
fn redact(message: &str, url: &str) -> String {
    message.replace(url, "<destination>")
}
