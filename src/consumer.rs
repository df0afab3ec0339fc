//! The queue consumer: capture each event, deliver it once, retry with backoff, dead-letter what
//! keeps failing, and hold or drop what a kill switch says.
//!
//! This is where "delivered once" is enforced: every message `begin`s in the event's Durable
//! Object record before anything is sent, and a copy of an event already in hand is acknowledged
//! without delivery. The same call captures the event (headers and where its body is) the
//! first time it is taken, and records its outcome when that is known before delivery
//! (filtered, switched off, or nowhere to deliver it).
//!
//! Every message is acknowledged or retried individually, and the handler never returns an error
//! (in workers-rs that would fail and retry the whole batch): one poison message goes to the
//! dead-letter queue alone. A delivery retry is a new message carrying `attempt + 1`, the last
//! error and a token that the record waits for, sent with the backoff as its delay.
//! `message.retry()` is kept for infrastructure failures (idempotency store, R2 or queue
//! unavailable), which do not use up an attempt and end in the dead-letter queue only through the
//! queue's own `max_retries`.

use crate::blobs::{self, Bytes, Segment};
use crate::control::{Control, Tally};
use crate::env::{self, bindings};
use crate::gate::Gates;
use crate::handlers::{self, Event, Handler};
use crate::http::{self, Redirects};
use crate::idempotency::Idempotency;
use crate::queue::{self, Batch, Decision, Delivery};
use edgehook_core::capture::{Attempt, Capture};
use edgehook_core::config::{Config, SourceConfig};
use edgehook_core::envelope::{self, BodyRef, EventMeta};
use edgehook_core::flags::{Flags, Mode};
use edgehook_core::forward::{self, AttemptResult};
use edgehook_core::gate::{Answer, Limits, Pass};
use edgehook_core::health::UNCONFIGURED_RETRY_SECS;
use edgehook_core::idempotency::{Begin, Message, Outcome, SealClaim};
use edgehook_core::ingest::idempotency_key;
use edgehook_core::metrics::Outcome as Counted;
use edgehook_core::ordering::{entity_key, StalePolicy};
use edgehook_core::retry::{AfterFailure, MAX_QUEUE_DELAY_SECS};
use edgehook_core::secret::Secret;
use edgehook_core::signature::{HashFn, Needed};
use edgehook_core::slots::Slots;
use edgehook_core::turns::Turns;
use futures_util::future::{join, select, Either};
use futures_util::lock::Mutex;
use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;
use worker::{console_error, console_warn, AbortController, Delay, Env, Fetch, Headers, MessageExt, Request, Result};

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
/// Recording an outcome is retried this often before the message itself is retried: a lost
/// `Delivered` would let the event be delivered a second time.
const FINISH_TRIES: u32 = 3;
/// Longest error text kept with an event.
const MAX_ERROR_LEN: usize = 300;
/// How often a resumed event waiting for its turn looks again.
const TURN_POLL: Duration = Duration::from_millis(5);

/// Added to the captured headers of a copy dropped as a resend of another event's signed
/// request: that event's idempotency key (`source:id`).
pub const REPLAY_OF_HEADER: &str = "x-edgehook-replay-of";

/// The source name of heartbeat probes (not a valid source name, so never a real event's).
pub const PROBE_SOURCE: &str = "_probe";

/// A message as the batch's first pass read it.
enum Parsed {
    /// Not an edgehook envelope: the bytes to dead-letter.
    Poison(Vec<u8>),
    /// An event; its inline body starts at `inline_at`. `captured` is where its body is kept
    /// for capture, and how many bytes before it in a segment hold its headers (0: none);
    /// `None` when that could not be written.
    Event { bytes: Vec<u8>, meta: Box<EventMeta>, inline_at: usize, captured: Option<(BodyRef, u64)> },
}

/// What every message of one batch shares.
struct BatchContext<'a> {
    env: &'a Env,
    config: &'a Config,
    store: &'a Idempotency,
    /// The kill switches, or why they could not be read.
    flags: std::result::Result<Rc<Flags>, String>,
    /// Where they are read without the isolate's cache.
    control: Option<&'a Control>,
    /// The switches as the control object had them after this batch arrived, once read (see
    /// `switch`): one read serves every resumed event of the batch.
    current_flags: RefCell<Option<Rc<Flags>>>,
    large_bodies: &'a Mutex<()>,
    connections: &'a Slots,
    gates: &'a Gates,
    /// Resumed events are delivered one at a time, in message order.
    resumed_lane: Lane,
    tally: RefCell<Tally>,
    /// When this invocation started (Unix ms), for its time budget.
    started_ms: i64,
}

/// Returns whether the invocation crashed (an injected fault; never in a production build).
pub async fn consume(batch: Batch, env: Env) -> bool {
    let config = env::config(&env);
    let store = match Idempotency::new(&env) {
        Ok(store) => store,
        Err(e) => {
            console_error!("idempotency binding unavailable, retrying the batch: {e}");
            batch.retry_all(INFRA_RETRY_SECS);
            return false;
        }
    };
    let control = Control::new(&env);
    let flags = match &control {
        Ok(control) => control.flags().await.map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    let parsed = parse_and_capture(&batch, &env).await;
    let gates = match Gates::new(&env) {
        Ok(gates) => gates,
        Err(e) => {
            console_error!("gates binding unavailable, retrying the batch: {e}");
            batch.retry_all(INFRA_RETRY_SECS);
            return false;
        }
    };
    let large_bodies = Mutex::new(());
    let connections = Slots::new(DELIVERY_CONNECTIONS);
    let resumed_lane = Lane::new(parsed.iter().map(|p| matches!(p, Parsed::Event { meta, .. } if meta.resumed)));
    let context = BatchContext {
        env: &env,
        config: &config,
        store: &store,
        flags,
        control: control.as_ref().ok(),
        current_flags: RefCell::default(),
        large_bodies: &large_bodies,
        connections: &connections,
        gates: &gates,
        resumed_lane,
        tally: RefCell::default(),
        started_ms: env::now_ms(),
    };
    let (context, parsed) = (&context, &parsed);
    let crashed =
        queue::settle_each(&batch, INFRA_RETRY_SECS, |i, delivery| handle(delivery, &parsed[i], i, context)).await;
    if crashed {
        return true;
    }
    if let Ok(control) = &control {
        if let Err(e) = control.report(context.tally.take()).await {
            console_error!("could not report consumer metrics: {e}");
        }
    }
    false
}

/// Test builds: the consumer dies at this point of event `$id`'s handling when a test armed
/// `POST /__faults/crash?id=ID&at=...` (see `crate::faults`). Production builds: nothing.
macro_rules! crash_point {
    ($at:ident, $id:expr) => {
        #[cfg(feature = "faults")]
        if crate::faults::fails(crate::faults::Fault::$at, $id) {
            console_error!("injected fault: the consumer dies at {} of {}", stringify!($at), $id);
            return Ok(Decision::Crash);
        }
    };
}

/// The kill switch for the event. A resumption is only sent once its switch has left `paused`,
/// but the switches this batch read are up to a second old (each isolate caches them) and can
/// predate that change: holding the event again would leave it until the next resumption, five
/// minutes later. So a resumed event meeting `paused` asks the control object itself (strongly
/// consistent: it sees the change the resumption followed), and is held again only if the
/// switch really is paused again. The resumption was sent before this batch arrived, so one
/// such read per batch serves all its resumed events.
async fn switch(b: &BatchContext<'_>, flags: &Flags, meta: &EventMeta) -> Mode {
    let event_type = meta.event_type.as_deref();
    let mode = flags.mode_for(&meta.source, event_type);
    #[cfg(feature = "faults")]
    let mode = crate::faults::stale_switch(&meta.source, event_type).unwrap_or(mode);
    if mode != Mode::Paused || !meta.resumed {
        return mode;
    }
    let known = b.current_flags.borrow().clone();
    let current = match (known, b.control) {
        (Some(current), _) => current,
        (None, None) => return mode,
        (None, Some(control)) => match control.flags_now().await {
            Ok(current) => b.current_flags.borrow_mut().insert(Rc::new(current)).clone(),
            Err(e) => {
                console_error!("kill switches unreadable ({e}): holding resumed {}/{} again", meta.source, meta.id);
                return mode;
            }
        },
    };
    current.mode_for(&meta.source, event_type)
}

/// Decodes every message and writes the batch's inline bodies to one capture segment.
async fn parse_and_capture(batch: &Batch, env: &Env) -> Vec<Parsed> {
    let mut segment = Segment::new();
    let mut parsed: Vec<Parsed> = batch
        .messages
        .iter()
        .map(|delivery| {
            let message = &delivery.message;
            let Some(bytes) = queue::message_bytes(message) else {
                return Parsed::Poison(queue::describe_foreign_body(message));
            };
            let Ok((meta, inline)) = envelope::decode(&bytes) else {
                return Parsed::Poison(bytes);
            };
            let inline_at = bytes.len() - inline.len();
            let captured = match &meta.body {
                _ if meta.source == PROBE_SOURCE => None,
                // Its headers go into the segment with it, right before it: R2 keeps them for
                // a fraction of what the record's storage would cost (`capture::record_headers`).
                BodyRef::Inline => Some(segment.push(&meta.headers, inline)),
                stored => Some((stored.clone(), 0)),
            };
            Parsed::Event { meta: Box::new(meta), inline_at, captured, bytes }
        })
        .collect();
    if !segment.is_empty() {
        if let Err(e) = segment.store(env).await {
            // Without their captured bodies these events wait (as an infrastructure failure):
            // an event is never taken without being captured.
            console_error!("could not write the capture segment, retrying its events: {e}");
            for p in &mut parsed {
                if let Parsed::Event { captured: captured @ Some((BodyRef::Segment { .. }, _)), .. } = p {
                    *captured = None;
                }
            }
        }
    }
    parsed
}

async fn handle(delivery: &Delivery, parsed: &Parsed, index: usize, b: &BatchContext<'_>) -> Result<Decision> {
    let _turn_released_on_return = b.resumed_lane.leave_on_drop(index);
    let (bytes, meta, inline_at, captured) = match parsed {
        Parsed::Poison(bytes) => return poison(b.env, bytes).await,
        Parsed::Event { bytes, meta, inline_at, captured } => (bytes, meta.as_ref(), *inline_at, captured),
    };
    if meta.source == PROBE_SOURCE {
        b.tally.borrow_mut().probes_seen.push(meta.id.clone());
        return Ok(Decision::Ack);
    }
    let inline = &bytes[inline_at..];
    let Ok(source) = b.config.source(&meta.source) else {
        // Removed or misconfigured since the event was accepted: keep the event, untouched and
        // without using an attempt, until the configuration is fixed.
        console_error!("event {}/{}: source is not configured; holding the event", meta.source, meta.id);
        // Health names the source: nothing else would show these events (see `health`).
        b.tally.borrow_mut().unconfigured.push(meta.source.clone());
        return put_back(b.env, bytes, UNCONFIGURED_RETRY_SECS).await;
    };
    let Some((captured, stored_headers)) = captured else {
        return Ok(Decision::RetryIn(INFRA_RETRY_SECS));
    };
    let flags = match &b.flags {
        Ok(flags) => flags,
        Err(e) => {
            console_error!("kill switches unavailable ({e}), retrying {}/{}", meta.source, meta.id);
            return Ok(Decision::RetryIn(INFRA_RETRY_SECS));
        }
    };
    let key = idempotency_key(&meta.source, &meta.id);
    let message_id = delivery.message.id();
    let asking =
        Message { id: &message_id, attempts: delivery.attempts, retry_token: meta.retry_token, replay: meta.replay };
    let mut capture = Capture::of(meta, captured.clone()).with_stored_headers(*stored_headers);
    let count = |outcome| b.tally.borrow_mut().count(&meta.source, meta.event_type.as_deref(), outcome);
    let handler = handlers::find(&meta.source, meta.event_type.as_deref());
    // Out of order: older than what was delivered for its entity (replays are not judged).
    let version_key = meta.position.as_ref().map(|p| entity_key(&meta.source, &p.entity));
    let ordered = match (&source.ordering, &meta.position, &version_key, meta.replay) {
        (Some(ordering), Some(position), Some(vkey), false) => Some((ordering, position, vkey)),
        _ => None,
    };

    // A signed request presented again under another id (for providers whose ids travel
    // outside the signature): the event it authenticated first keeps its seal, and this copy is
    // recorded as `dropped` (captured, so that it can be inspected, and replayed should it be
    // the genuine one that lost a race) and counted as a duplicate, never delivered. Only a
    // first attempt claims: whatever carries an event on was claimed before it was taken.
    let mut resent = false;
    if let Some(seal) = meta.seal.as_deref().filter(|_| meta.retry_token.is_none() && !meta.replay && !meta.resumed) {
        if let SealClaim::Held { by } = b.store.claim_seal(&meta.source, seal, &key).await? {
            console_warn!(
                "event {}/{}: its signed request already authenticated {by}; recorded as dropped, not delivered",
                meta.source,
                meta.id
            );
            // Shown with its captured headers (as `x-edgehook-headers-truncated` is): why it
            // was dropped, and for which event, without a look at the logs.
            capture.headers.push((REPLAY_OF_HEADER.to_owned(), by));
            resent = true;
        }
    }

    // What is known before the event is taken is recorded in the write that takes it: a resend
    // of another event's signed request, outside the allow-list, switched off, or (in a source
    // with nowhere to deliver and no handler, for an event without an entity version to judge
    // or record, arriving with its body inline) complete once captured. A body kept elsewhere
    // (claim-checked in R2, or a replayed or resumed event's captured segment) still takes the
    // long way, where it is loaded as for a delivery: a body missing from storage is
    // dead-lettered. If the object's answer is lost after it settled, the message's retry is
    // answered `Settled` again (the record keeps the settling message as its owner) and counted
    // with its outcome, once (see `begin_settled` for the rarer case this counts twice).
    let settled = if resent {
        Some((Outcome::Dropped, Counted::Duplicate))
    } else if meta.filtered {
        Some((Outcome::Filtered, Counted::Filtered))
    } else {
        match switch(b, flags, meta).await {
            Mode::On => None,
            Mode::Paused => Some((Outcome::Paused { attempt: meta.attempt }, Counted::Paused)),
            Mode::Dropped => Some((Outcome::Dropped, Counted::Dropped)),
        }
    };
    let settled = settled.or_else(|| {
        let complete = source.destination.is_none()
            && handler.is_none()
            && meta.position.is_none()
            && matches!(meta.body, BodyRef::Inline);
        complete.then_some((Outcome::Delivered, Counted::Delivered))
    });
    // The entity's newest version is asked in the same round of requests as the lease (it is
    // wasted if the event is not taken, one read).
    let newest = async {
        match ordered {
            Some((_, _, vkey)) if settled.is_none() => b.store.newest(vkey).await,
            _ => Ok(None),
        }
    };
    let (begun, newest) =
        join(b.store.begin(&key, asking, LEASE_MS, capture, settled.map(|(outcome, _)| outcome)), newest).await;
    let begun = begun?;
    #[cfg(feature = "faults")]
    if crate::faults::fails(crate::faults::Fault::LoseAnswer, &meta.id) {
        console_error!("injected fault: the answer to {}'s begin is lost", meta.id);
        return Err(worker::Error::RustError("injected fault: the answer was lost".into()));
    }
    match begun {
        Begin::Go | Begin::Settled => {}
        // A skipped copy's claim-checked body is left alone: it is the captured body of the
        // event (or of the copy's own retries), kept until the retention sweep.
        Begin::Skip { .. } => {
            if meta.retry_token.is_none() && !meta.replay {
                count(Counted::Duplicate);
            }
            return Ok(Decision::Ack);
        }
        Begin::Later { retry_in_ms } => {
            let secs = ((retry_in_ms + 999) / 1000).clamp(1, MAX_WAIT_SECS) as u32;
            return put_back(b.env, bytes, secs).await;
        }
    }
    crash_point!(CrashTaken, &meta.id);
    let finish = |outcome, attempt| finish(b.store, &key, &message_id, outcome, attempt);
    if let Some((outcome, counted)) = settled {
        if begun == Begin::Go {
            // An object still running the code from before `settle` existed (a deploy in
            // progress) took the event but did not settle it.
            finish(outcome, None).await?;
        }
        count(counted);
        return Ok(Decision::Ack);
    }

    let mut stale = false;
    if let (Some((ordering, position, _)), Some(newest)) = (ordered, newest?) {
        if position.version.is_older_than(&newest) {
            count(Counted::Stale);
            if ordering.stale == StalePolicy::Skip {
                finish(Outcome::Stale, None).await?;
                return Ok(Decision::Ack);
            }
            stale = true;
        }
    }

    // Resumed events go out one at a time, in the order they were sent.
    if meta.resumed {
        b.resumed_lane.wait_turn(index).await;
    }
    // The destination's rate limit and circuit breaker: wait for a turn that is close, defer
    // (without using an attempt) one that is not, or one the open circuit holds back.
    let gate = match (&source.destination, &handler) {
        (Some(url), None) => Some((url.as_str(), Limits::new(source.rate_limit_per_sec, source.breaker))),
        _ => None,
    };
    let mut probe = false;
    if let Some((url, limits)) = gate {
        match b.gates.acquire(url, limits, source.delivery_timeout_secs, env::random_unit()).await? {
            Pass::Go { at_ms, probe: is_probe } => {
                probe = is_probe;
                let wait = at_ms - env::now_ms();
                if wait > 0 {
                    Delay::from(Duration::from_millis(wait as u64)).await;
                }
            }
            Pass::Wait { retry_after_ms } => {
                count(Counted::Deferred);
                let secs = ((retry_after_ms + 999) / 1000).clamp(1, MAX_QUEUE_DELAY_SECS as i64) as u32;
                return hand_on(b, &key, &message_id, meta.clone(), inline, meta.attempt, secs, None).await;
            }
        }
    }
    // Claim-checked bodies can be megabytes each: hold one in memory at a time, not a batch's.
    let large_body_turn = match meta.body {
        BodyRef::Stored { .. } => Some(b.large_bodies.lock().await),
        BodyRef::Inline | BodyRef::Segment { .. } => None,
    };
    // The delivery timeout must start when the request can actually be sent.
    let connection = match (&source.destination, &handler) {
        (None, None) => None,
        _ => Some(b.connections.acquire().await),
    };
    if env::now_ms() - b.started_ms > TIME_BUDGET_MS {
        // Waited too long for a turn: a new message carries the event on, same attempt.
        drop((connection, large_body_turn));
        return hand_on(b, &key, &message_id, meta.clone(), inline, meta.attempt, 1, None).await;
    }
    let Some(body) = blobs::load_bytes(b.env, &meta.body, inline).await? else {
        let meta = with_error(meta.clone(), "body missing from storage".into());
        dead_letter(b.env, &meta, &[], &message_id).await?;
        record_dead(finish(Outcome::Dead, None).await, &key);
        count(Counted::DeadLettered);
        return Ok(Decision::Ack);
    };
    let started = env::now_ms();
    let tried = match handler {
        Some(handler) => Some(run_handler(handler.as_ref(), meta, &body.in_wasm(), b.env, source).await),
        None => match (&source.destination, &b.config.settings.destination_secret) {
            (Some(url), Some(secret)) => {
                let now_secs = env::now_ms() / 1000;
                let mac = match signature_by_web_crypto(meta, &body, secret, now_secs).await {
                    Some(mac) => mac,
                    // SHA-256, which every build computes: `None` cannot happen, and would never
                    // be sent unsigned.
                    None => forward::signature_request(meta, secret, now_secs)
                        .compute(&body.in_wasm())
                        .ok_or_else(|| worker::Error::RustError("HMAC-SHA256 unavailable".into()))?,
                };
                let headers = forward::delivery_headers(meta, now_secs, stale, &mac);
                Some(deliver(url, headers, &body, source.delivery_timeout_secs).await)
            }
            // Configuration refuses this combination; should it ever happen, never forward
            // unsigned and never call it delivered.
            (Some(_), None) => Some(Tried {
                result: AttemptResult::Failed {
                    error: "DESTINATION_SECRET is not set; events are never forwarded unsigned".into(),
                    retry_after_secs: None,
                },
                status: None,
            }),
            // No destination and no handler: the event is complete once accepted (README).
            (None, _) => None,
        },
    };
    let latency_ms = (env::now_ms() - started).max(0) as u64;
    drop((body, connection, large_body_turn));
    crash_point!(CrashDelivered, &meta.id);
    // Whether the circuit is open after this delivery: then a failure used no attempt.
    let mut circuit_open = probe;
    if let (Some((url, limits)), Some(tried)) = (gate, &tried) {
        // Best effort: a lost report only delays the breaker's view by one delivery.
        match b.gates.report(url, limits, Answer::of(tried.status), probe).await {
            Ok(open) => circuit_open |= open,
            Err(e) => console_error!("could not report a delivery to the gate of {}: {e}", meta.source),
        }
    }
    let record_version = || async {
        if let (Some(vkey), Some(position)) = (&version_key, &meta.position) {
            // Best effort, and asked in the same round of requests as the outcome: losing it
            // only lets a later, older event through. Should the outcome be lost instead, the
            // retried event finds its own version, which is not older than itself.
            if let Err(e) = b.store.delivered(vkey, &position.version).await {
                console_error!("could not record the delivered version of {vkey}: {e}");
            }
        }
    };
    let Some(Tried { result, status }) = tried else {
        let (finished, ()) = join(finish(Outcome::Delivered, None), record_version()).await;
        finished?;
        count(Counted::Delivered);
        return Ok(Decision::Ack);
    };
    let attempt = |error: Option<String>| Attempt {
        attempt: meta.attempt,
        at_ms: started,
        status,
        latency_ms,
        error,
        replay: meta.replay,
    };

    match result {
        AttemptResult::Delivered => {
            let (finished, ()) = join(finish(Outcome::Delivered, Some(attempt(None))), record_version()).await;
            finished?;
            crash_point!(CrashRecorded, &meta.id);
            let mut tally = b.tally.borrow_mut();
            tally.count(&meta.source, meta.event_type.as_deref(), Counted::Delivered);
            tally.metrics.observe_latency(&meta.source, latency_ms);
            tally.attempts_succeeded += 1;
            Ok(Decision::Ack)
        }
        AttemptResult::Failed { error, retry_after_secs } => {
            b.tally.borrow_mut().attempts_failed += 1;
            let meta = with_error(meta.clone(), error);
            let record = attempt(meta.last_error.clone());
            if circuit_open {
                // A failed probe keeps the circuit open, this failure opened it, or the circuit
                // opened while it was under way: the destination is down, and waiting for it
                // does not use up the event's attempt.
                count(Counted::Deferred);
                // No sooner than the destination asked, either.
                let secs =
                    source.breaker.cooldown_secs.max(retry_after_secs.unwrap_or(0)).min(MAX_QUEUE_DELAY_SECS) as u32;
                return hand_on(b, &key, &message_id, meta, inline, record.attempt, secs, Some(record)).await;
            }
            match source.retry.after_failure(meta.attempt, env::random_unit(), retry_after_secs) {
                AfterFailure::Retry { attempt, delay_secs } => {
                    count(Counted::Retried);
                    hand_on(b, &key, &message_id, meta, inline, attempt, delay_secs, Some(record)).await
                }
                AfterFailure::DeadLetter => {
                    // Hand over first, then record: if the hand-over fails the message is
                    // retried, and a record marked dead first would make the retry skip it.
                    dead_letter(b.env, &meta, inline, &message_id).await?;
                    record_dead(finish(Outcome::Dead, Some(record)).await, &key);
                    count(Counted::DeadLettered);
                    Ok(Decision::Ack)
                }
            }
        }
    }
}

/// One attempt's result, and the destination's status code when it answered.
struct Tried {
    result: AttemptResult,
    status: Option<u16>,
}

/// Runs an in-worker handler with the source's delivery timeout.
async fn run_handler(handler: &dyn Handler, meta: &EventMeta, body: &[u8], env: &Env, source: &SourceConfig) -> Tried {
    let event = Event {
        source: &meta.source,
        id: &meta.id,
        event_type: meta.event_type.as_deref(),
        content_type: meta.content_type.as_deref(),
        received_at_ms: meta.received_at_ms,
        attempt: meta.attempt,
        replay: meta.replay,
        body,
    };
    let timeout = source.delivery_timeout_secs;
    let running = handler.handle(event, env);
    let timer = Delay::from(Duration::from_secs(timeout));
    let result = match select(running, timer).await {
        Either::Left((Ok(()), _)) => AttemptResult::Delivered,
        Either::Left((Err(e), _)) => {
            AttemptResult::Failed { error: format!("handler: {}", e.message), retry_after_secs: e.retry_after_secs }
        }
        Either::Right(_) => {
            AttemptResult::Failed { error: format!("handler did not finish within {timeout}s"), retry_after_secs: None }
        }
    };
    Tried { result, status: None }
}

/// Carries the event on in a new message, as `attempt`, after `delay_secs`: the retry after a
/// failed attempt (`record` says how it went), or a deferral (same attempt) when this
/// invocation ran out of time. The new message carries a fresh token and the record is told to
/// wait for it, in that order: a record waiting for a token that no message carries would
/// strand the event.
#[allow(clippy::too_many_arguments)]
async fn hand_on(
    b: &BatchContext<'_>,
    key: &str,
    message_id: &str,
    meta: EventMeta,
    inline: &[u8],
    attempt: u32,
    delay_secs: u32,
    record: Option<Attempt>,
) -> Result<Decision> {
    let token = env::random_token();
    // Later messages need not carry the headers: the capture has them.
    let next = EventMeta {
        attempt,
        retry_token: Some(token),
        replay: false,
        resumed: false,
        headers: Vec::new(),
        seal: None,
        ..meta
    };
    let queue = b.env.queue(bindings::EVENTS)?;
    if let Err(e) = queue::send(&queue, &envelope::encode(&next, inline), delay_secs).await {
        // This message comes back instead, with the same attempt number.
        console_error!("could not enqueue attempt {attempt} of {key}: {e}");
        return Ok(Decision::RetryIn(delay_secs));
    }
    finish(b.store, key, message_id, Outcome::Retrying { token }, record).await?;
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

fn with_error(meta: EventMeta, error: String) -> EventMeta {
    let mut error = error;
    if error.len() > MAX_ERROR_LEN {
        let cut = (0..=MAX_ERROR_LEN).rev().find(|&i| error.is_char_boundary(i)).unwrap_or(0);
        error.truncate(cut);
    }
    EventMeta { last_error: Some(error), ..meta }
}

/// Hands the event to the dead-letter queue, whose consumer stores it and alerts.
async fn dead_letter(env: &Env, meta: &EventMeta, inline: &[u8], message_id: &str) -> Result<()> {
    let letter = EventMeta { dead: true, resumed: false, handed_over_by: Some(message_id.to_owned()), ..meta.clone() };
    queue::send(&env.queue(bindings::DEAD_LETTERS)?, &envelope::encode(&letter, inline), 0).await
}

/// After the hand-over to the dead-letter queue, a failure to record the event dead is only
/// logged: the message is acknowledged all the same, since retrying it would deliver the event
/// again (its record still says this message holds it), and the dead-letter consumer records the
/// event dead as this message would have (`EventMeta::handed_over_by`) once it stored the letter.
fn record_dead(recorded: Result<()>, key: &str) {
    if let Err(e) = recorded {
        console_error!("could not record {key} dead after handing it over; the dead-letter consumer will: {e}");
    }
}

/// Records an outcome, trying a few times (with a pause) before giving up to the queue's own
/// retry: a lost `Delivered` would let the event be delivered a second time.
async fn finish(
    store: &Idempotency,
    key: &str,
    message_id: &str,
    outcome: Outcome,
    attempt: Option<Attempt>,
) -> Result<()> {
    #[cfg(feature = "faults")]
    if matches!(outcome, Outcome::Dead) && crate::faults::fails(crate::faults::Fault::FinishDead, key) {
        return Err(worker::Error::RustError("fault: the idempotency shard cannot write".into()));
    }
    let mut pause = Duration::from_millis(200);
    let mut tries = 0;
    loop {
        tries += 1;
        match store.finish(key, message_id, outcome, attempt.clone()).await {
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
async fn deliver(url: &str, headers: edgehook_core::headers::HeaderList, body: &Bytes<'_>, timeout_secs: u64) -> Tried {
    let failed =
        |error: String| Tried { result: AttemptResult::Failed { error, retry_after_secs: None }, status: None };
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
            let status = response.status_code();
            Tried {
                result: forward::judge_response(status, retry_after.as_deref(), env::now_ms() / 1000),
                status: Some(status),
            }
        }
        Either::Left((Err(e), _)) => failed(format!("network error: {}", redact(&e.to_string(), url))),
        Either::Right(_) => {
            controller.abort();
            failed(format!("no answer within {timeout_secs}s"))
        }
    }
}

fn build_request(url: &str, headers: edgehook_core::headers::HeaderList, body: &Bytes<'_>) -> Result<Request> {
    let h = Headers::new();
    for (name, value) in &headers.0 {
        h.set(name, value)?;
    }
    http::post(url, &h, &body.to_js().into(), Redirects::Manual)
}

/// Destination URLs may carry credentials (a token in the query); errors never repeat them.
fn redact(message: &str, url: &str) -> String {
    message.replace(url, "<destination>")
}

/// Takes the resumed messages of a batch one at a time, in message order (see
/// [`edgehook_core::turns`]).
struct Lane(RefCell<Turns>);

impl Lane {
    fn new(resumed: impl Iterator<Item = bool>) -> Lane {
        Lane(RefCell::new(Turns::new(resumed)))
    }

    /// Polled on this message's own timer, like every cross-message wait in the consumer.
    async fn wait_turn(&self, index: usize) {
        while !self.0.borrow().is_turn(index) {
            Delay::from(TURN_POLL).await;
        }
    }

    fn leave_on_drop(&self, index: usize) -> LeaveLane<'_> {
        LeaveLane { lane: self, index }
    }
}

struct LeaveLane<'a> {
    lane: &'a Lane,
    index: usize,
}

impl Drop for LeaveLane<'_> {
    fn drop(&mut self) {
        self.lane.0.borrow_mut().leave(self.index);
    }
}

/// The delivery's HMAC from Web Crypto, for a body long enough that it is faster than Rust's in
/// wasm (`ingest::web_crypto_pays_off`, as in verification: 3x at 64 KB, BENCHMARKS.md section
/// 3); `None`, and Rust computes it, for a shorter body or should Web Crypto fail.
async fn signature_by_web_crypto(
    meta: &EventMeta,
    body: &Bytes<'_>,
    secret: &Secret,
    now_secs: i64,
) -> Option<Vec<u8>> {
    if !edgehook_core::ingest::web_crypto_pays_off(HashFn::Sha256, body.len()) {
        return None;
    }
    let needed = Needed { macs: vec![forward::signature_request(meta, secret, now_secs)], checks: vec![] };
    #[cfg(feature = "faults")]
    crate::faults::count_web_crypto(&format!("delivery:{}", meta.source), &needed);
    let computed = crate::web_crypto::compute(needed, body).await.ok()?;
    computed.answers.macs.into_iter().next().map(|(_, mac)| mac)
}
