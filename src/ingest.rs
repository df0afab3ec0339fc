//! `POST /webhooks/{source}`: verify, claim, store, enqueue, answer.
//!
//! The order is what makes a 200 trustworthy: the claim comes before the enqueue (so concurrent
//! copies cannot both be enqueued), the 200 only after the enqueue resolved (a resolved `send` is
//! on disk), and a failed enqueue releases the claim (so the provider's retry is accepted).

use crate::env::{self, bindings};
use crate::http::{self, RequestHeaders};
use crate::idempotency::Idempotency;
use crate::queue;
use edgehook_core::idempotency::Claim;
use edgehook_core::ingest::{self, Verified};
use edgehook_core::Rejection;
use worker::{console_error, Context, Env, Method, Request, Response, Result};

/// Where claim-checked bodies live in R2.
pub const BODY_PREFIX: &str = "bodies/";

pub async fn receive(mut req: Request, env: &Env, ctx: &Context, source_name: &str) -> Result<Response> {
    let config = env::config(env);
    let source = match config.source(source_name) {
        Ok(source) => source,
        Err(rejection) => return http::reject(&rejection),
    };
    if req.method() != Method::Post {
        return http::reject(&Rejection::MethodNotAllowed);
    }
    let headers = req.headers().clone();
    if let Err(rejection) = ingest::check_declared_length(source, headers.get("content-length")?.as_deref()) {
        return http::reject(&rejection);
    }
    let body = req.bytes().await?;
    let verified = match ingest::verify(source, &RequestHeaders(&headers), body, env::now_ms()) {
        Ok(verified) => verified,
        Err(rejection) => return http::reject(&rejection),
    };
    let filtered = !verified.admitted_by(source);
    match accept(env, ctx, &verified, filtered).await {
        Ok(status) => http::status(status, verified.id()),
        Err(rejection) => http::reject(&rejection),
    }
}

/// Claims the event and, unless it is filtered, enqueues it. Returns the `status` to answer.
async fn accept(
    env: &Env,
    ctx: &Context,
    event: &Verified,
    filtered: bool,
) -> std::result::Result<&'static str, Rejection> {
    let key = event.key();
    let store = Idempotency::new(env).map_err(unavailable("idempotency binding"))?;
    let token = env::random_token();
    #[cfg(feature = "faults")]
    if crate::faults::claim_fails() {
        return Err(unavailable("claim")(worker::Error::RustError("injected fault".into())));
    }
    match store.claim(&key, token, filtered).await.map_err(unavailable("claim"))? {
        Claim::Duplicate { .. } => return Ok("duplicate"),
        // Another copy's enqueue is still undecided after the wait: nothing is acknowledged,
        // so the provider retries and finds it decided.
        Claim::InFlight => return Err(Rejection::Unavailable),
        Claim::New if filtered => return Ok("filtered"),
        Claim::New => {}
    }
    if let Err(e) = enqueue(env, event).await {
        console_error!("enqueue of {key} failed, releasing its claim: {e}");
        if let Err(e) = store.release(&key, token).await {
            // The claim stays pending and is taken over after it goes stale; the provider's retry
            // within that window is answered 503 again, never `duplicate`.
            console_error!("release of {key} failed: {e}");
        }
        return Err(Rejection::Unavailable);
    }
    // The event is durable now; recording that is not worth making the provider wait for. If the
    // confirmation is lost, the consumer's `begin` moves the record on anyway.
    ctx.wait_until(async move {
        if let Err(e) = store.confirm(&key, token).await {
            console_error!("confirm of {key} failed (the consumer will move it on): {e}");
        }
    });
    Ok("accepted")
}

/// Makes the event durable in the queue: inline when it fits a message, else with its body in
/// R2 first (a claim check). Nothing is left behind when the enqueue fails.
async fn enqueue(env: &Env, event: &Verified) -> Result<()> {
    #[cfg(feature = "faults")]
    if crate::faults::enqueue_fails() {
        return Err(worker::Error::RustError("injected fault".into()));
    }
    let bucket = env.bucket(bindings::BLOBS)?;
    let stored_key = if event.fits_inline() {
        None
    } else {
        let key = format!("{BODY_PREFIX}{}/{}", event.source(), env::random_id());
        bucket.put(&key, event.body().to_vec()).execute().await?;
        Some(key)
    };
    let sent = queue::send(&env.queue(bindings::EVENTS)?, &event.envelope(stored_key.as_deref()), 0).await;
    if let (Err(_), Some(key)) = (&sent, stored_key) {
        if let Err(e) = bucket.delete(&key).await {
            console_error!("could not delete orphaned body {key}: {e}");
        }
    }
    sent
}

fn unavailable(what: &'static str) -> impl Fn(worker::Error) -> Rejection {
    move |e| {
        console_error!("{what} failed: {e}");
        Rejection::Unavailable
    }
}
