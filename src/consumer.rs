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
use crate::queue;
use edgehook_core::config::{defaults, Config};
use edgehook_core::envelope::{self, BodyRef, EventMeta};
use edgehook_core::forward::{self, AttemptResult};
use edgehook_core::idempotency::{Begin, Message, Outcome};
use edgehook_core::ingest::idempotency_key;
use edgehook_core::retry::{AfterFailure, RetryPolicy};
use futures_util::future::{join_all, select, Either};
use js_sys::Uint8Array;
use std::time::Duration;
use worker::{
    console_error, AbortController, Delay, Env, Fetch, Headers, MessageBatch, MessageExt, Method,
    QueueRetryOptionsBuilder, RawMessage, Request, RequestInit, RequestRedirect, Result,
};

/// A lease outlives the delivery timeout by this much, so a slow but live delivery is never
/// taken over by a second consumer.
const LEASE_MARGIN_SECS: u64 = 30;
/// When storage or the queue fails, the message comes back after this long.
const INFRA_RETRY_SECS: u32 = 30;
/// A continuation waiting for another message's lease checks back at least this often.
const MAX_WAIT_SECS: i64 = 10;
/// Recording an outcome is retried this often before the message itself is retried: a lost
/// `Delivered` would let the event be delivered a second time.
const FINISH_TRIES: u32 = 3;
/// Longest error text kept with an event.
const MAX_ERROR_LEN: usize = 300;

/// What to do with a message once handled.
enum Decision {
    Ack,
    RetryIn(u32),
}

pub async fn consume(batch: MessageBatch<()>, env: Env) {
    let config = env::config(&env);
    let store = match Idempotency::new(&env) {
        Ok(store) => store,
        Err(e) => {
            console_error!("idempotency binding unavailable, retrying the batch: {e}");
            return batch
                .retry_all_with_options(&QueueRetryOptionsBuilder::new().with_delay_seconds(INFRA_RETRY_SECS).build());
        }
    };
    let handled = batch.raw_iter().map(|message| {
        let (env, config, store) = (&env, &config, &store);
        async move {
            match handle(&message, env, config, store).await {
                Ok(Decision::Ack) => message.ack(),
                Ok(Decision::RetryIn(secs)) => queue::retry_later(&message, secs),
                Err(e) => {
                    console_error!("message {}: infrastructure failure, retrying: {e}", message.id());
                    queue::retry_later(&message, INFRA_RETRY_SECS);
                }
            }
        }
    });
    join_all(handled).await;
}

async fn handle(message: &RawMessage, env: &Env, config: &Config, store: &Idempotency) -> Result<Decision> {
    let bytes = queue::message_bytes(message);
    let decoded = bytes.as_deref().map(envelope::decode);
    let Some(Ok((meta, inline))) = decoded else {
        // Poison: not an edgehook envelope. The dead-letter consumer records why.
        let raw = bytes.unwrap_or_else(|| queue::describe_foreign_body(message));
        queue::send(&env.queue(bindings::DEAD_LETTERS)?, &raw, 0).await?;
        return Ok(Decision::Ack);
    };
    let key = idempotency_key(&meta.source, &meta.id);
    let source = config.source(&meta.source).ok();
    let timeout_secs = source.map_or(defaults::DELIVERY_TIMEOUT_SECS, |s| s.delivery_timeout_secs);
    let message_id = message.id();
    let asking = Message { id: &message_id, retry_token: meta.retry_token, replay: meta.replay };
    match store.begin(&key, asking, ((timeout_secs + LEASE_MARGIN_SECS) * 1000) as i64).await? {
        Begin::Go => {}
        Begin::Skip { .. } => return Ok(Decision::Ack),
        Begin::Later { retry_in_ms } => {
            return Ok(Decision::RetryIn(((retry_in_ms + 999) / 1000).clamp(1, MAX_WAIT_SECS) as u32))
        }
    }
    let finish = |outcome| finish(store, &key, &message_id, outcome);

    let body = match load_body(env, &meta, inline).await? {
        Some(body) => body,
        None => {
            let meta = with_error(meta, "body missing from storage (claim check)".into());
            dead_letter(env, &meta, &[]).await?;
            finish(Outcome::Dead).await?;
            return Ok(Decision::Ack);
        }
    };
    let result = match source {
        None => AttemptResult::Failed {
            error: format!("source `{}` is not configured (or is misconfigured)", meta.source),
            retry_after_secs: None,
        },
        Some(source) => match (&source.destination, &config.settings.destination_secret) {
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
        },
    };

    match result {
        AttemptResult::Delivered => {
            finish(Outcome::Delivered).await?;
            if let BodyRef::Stored { key: body_key, .. } = &meta.body {
                if let Err(e) = env.bucket(bindings::BLOBS)?.delete(body_key).await {
                    console_error!("could not delete delivered body {body_key}: {e}");
                }
            }
            Ok(Decision::Ack)
        }
        AttemptResult::Failed { error, retry_after_secs } => {
            let policy = source.map_or_else(RetryPolicy::default, |s| s.retry);
            let meta = with_error(meta, error);
            match policy.after_failure(meta.attempt, env::random_unit(), retry_after_secs) {
                AfterFailure::Retry { attempt, delay_secs } => {
                    // Send the retry first, then record its token: a record that waited for a
                    // token no message carries would strand the event.
                    let token = env::random_token();
                    let next = EventMeta { attempt, retry_token: Some(token), replay: false, ..meta };
                    let queue = env.queue(bindings::EVENTS)?;
                    if let Err(e) = queue::send(&queue, &envelope::encode(&next, inline), delay_secs).await {
                        // This message comes back instead, with the same attempt number.
                        console_error!("could not enqueue attempt {attempt} of {key}: {e}");
                        return Ok(Decision::RetryIn(delay_secs));
                    }
                    finish(Outcome::Retrying { token }).await?;
                    Ok(Decision::Ack)
                }
                AfterFailure::DeadLetter => {
                    // Hand over first, then record: if the hand-over fails the message is
                    // retried, and a record marked dead first would make the retry skip it.
                    dead_letter(env, &meta, inline).await?;
                    finish(Outcome::Dead).await?;
                    Ok(Decision::Ack)
                }
            }
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
    queue::send(&env.queue(bindings::DEAD_LETTERS)?, &envelope::encode(meta, inline), 0).await
}

/// Records an outcome, trying a few times before giving up to the queue's own retry.
async fn finish(store: &Idempotency, key: &str, message_id: &str, outcome: Outcome) -> Result<()> {
    let mut tries = 0;
    loop {
        tries += 1;
        match store.finish(key, message_id, outcome).await {
            Ok(()) => return Ok(()),
            Err(e) if tries >= FINISH_TRIES => return Err(e),
            Err(e) => console_error!("recording {outcome:?} for {key} failed (try {tries}): {e}"),
        }
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
