//! The dead-letter consumer: store every dead letter durably, and alert.
//!
//! Dead letters arrive three ways:
//! - handed over by the event consumer (marked `dead`), which has recorded the event dead itself:
//!   its last attempt failed, or its claim-checked body is gone (should that recording have
//!   failed after the hand-over, the event is recorded dead here once the letter is stored, as
//!   the message that held it would have); a letter whose event has since been delivered (the
//!   hand-over reported a failure although the queue took it) is not stored;
//! - moved here by Cloudflare Queues after the event consumer kept failing on a message
//!   (`max_retries`): the event's record decides whether that message was what carried the event
//!   (then the event is dead now) or a stray copy of an event still alive or already final (then
//!   nothing is stored);
//! - bytes that are not an envelope at all (poison).
//!
//! Letters are stored in R2 under `dead-letters/<source>/<event id>` (poison under
//! `dead-letters/_poison/<message id>`) as the envelope, with what an operator needs in the
//! object's metadata. A letter that cannot be stored once its event is marked dead goes back on
//! the dead-letter queue, marked, so it is never given up; one whose event cannot be marked yet
//! is retried, further and further apart (`dead_letter_retry_secs`), because the queue gives up
//! on a message after 100 retries; should marking still fail on the queue's second-to-last
//! delivery (its shard full, say), the letter is stored unconfirmed rather than lost
//! (`retry::store_unmarked`). The alert is tried three times and then only logged. It goes out
//! before the letter is stored: a letter delivered again and found stored is not alerted on
//! again, so a crash between the store and an alert after it would lose the alert; this way a
//! crash only repeats it. A letter put back after a failed store is marked as alerted on.

use crate::control::{Control, Tally};
use crate::env::{self, bindings};
use crate::http::to_json;
use crate::idempotency::Idempotency;
use crate::queue::{self, Batch, Decision, Delivery};
use crate::{alerts, blobs};
use edgehook_core::config::Config;
use edgehook_core::envelope::{self, BodyRef, EventMeta};
use edgehook_core::idempotency::{handed_over_letter_stands, DeadMark, Message, Outcome as Finished};
use edgehook_core::ingest::idempotency_key;
use edgehook_core::metrics::Outcome;
use edgehook_core::retry::{dead_letter_retry_secs, store_unmarked, DEAD_LETTER_MAX_RETRIES};
use serde::Serialize;
use std::collections::HashMap;
use worker::{console_error, console_log, Env, MessageExt, Result};

pub const PREFIX: &str = "dead-letters/";

/// Where the dead letter of an event is stored in the bucket.
pub fn letter_key(source: &str, id: &str) -> String {
    format!("{PREFIX}{source}/{id}")
}
/// Where undecodable messages are stored, beside the sources (whose names cannot start with `_`).
pub const POISON_DIR: &str = "_poison";
/// A letter that could not be stored comes back after this long.
const RETRY_SECS: u32 = 60;

/// What an operator sees of a dead letter (admin API, alerts).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DeadLetter {
    pub source: String,
    pub id: String,
    #[serde(rename = "type")]
    pub event_type: Option<String>,
    pub attempts: u32,
    pub error: String,
    pub received_at_ms: Option<i64>,
    pub dead_at_ms: i64,
    /// The queue moved this message and its event's record could not be marked dead: stored so
    /// as not to be lost, but another copy of the message may have completed the event (check
    /// the event before replaying it).
    pub unconfirmed: bool,
}

impl DeadLetter {
    fn from_meta(meta: &EventMeta, now_ms: i64) -> Self {
        DeadLetter {
            source: meta.source.clone(),
            id: meta.id.clone(),
            event_type: meta.event_type.clone(),
            attempts: meta.attempt,
            error: meta
                .last_error
                .clone()
                .unwrap_or_else(|| "the event consumer kept failing on this message (queue retries exhausted)".into()),
            received_at_ms: Some(meta.received_at_ms),
            dead_at_ms: now_ms,
            unconfirmed: meta.unconfirmed,
        }
    }

    fn poison(message_id: &str, error: String, now_ms: i64) -> Self {
        DeadLetter {
            source: POISON_DIR.into(),
            id: message_id.to_owned(),
            event_type: None,
            attempts: 0,
            error: format!("undecodable queue message: {error}"),
            received_at_ms: None,
            dead_at_ms: now_ms,
            unconfirmed: false,
        }
    }

    fn storage_key(&self) -> String {
        letter_key(&self.source, &self.id)
    }

    /// Stored as R2 custom metadata (string values only).
    fn to_metadata(&self) -> HashMap<String, String> {
        let mut m = HashMap::new();
        m.insert("source".into(), self.source.clone());
        m.insert("id".into(), self.id.clone());
        if let Some(t) = &self.event_type {
            m.insert("type".into(), t.clone());
        }
        m.insert("attempts".into(), self.attempts.to_string());
        m.insert("error".into(), self.error.clone());
        if let Some(at) = self.received_at_ms {
            m.insert("received_at_ms".into(), at.to_string());
        }
        m.insert("dead_at_ms".into(), self.dead_at_ms.to_string());
        if self.unconfirmed {
            m.insert("unconfirmed".into(), "true".into());
        }
        m
    }

    pub fn from_metadata(m: &HashMap<String, String>) -> Option<Self> {
        Some(DeadLetter {
            source: m.get("source")?.clone(),
            id: m.get("id")?.clone(),
            event_type: m.get("type").cloned(),
            attempts: m.get("attempts")?.parse().ok()?,
            error: m.get("error")?.clone(),
            received_at_ms: m.get("received_at_ms").and_then(|v| v.parse().ok()),
            dead_at_ms: m.get("dead_at_ms")?.parse().ok()?,
            unconfirmed: m.get("unconfirmed").is_some_and(|v| v == "true"),
        })
    }

    fn alert_text(&self) -> String {
        let kind = self.event_type.as_deref().map(|t| format!(" ({t})")).unwrap_or_default();
        let unconfirmed = if self.unconfirmed {
            " (unconfirmed: its record could not be marked dead, and another copy may have completed it)"
        } else {
            ""
        };
        format!(
            "edgehook: event {}/{}{kind} was dead-lettered after {} attempt(s): {}{unconfirmed}",
            self.source, self.id, self.attempts, self.error
        )
    }
}

/// Stores, alerts on and counts a batch of dead letters. Returns whether the invocation crashed
/// (an injected fault; never in a production build).
pub async fn consume(batch: Batch, env: Env) -> bool {
    let config = env::config(&env);
    // Without the binding (a bad deploy) every marking fails, and takes the same backoff and the
    // same last resort as a shard that cannot write: retrying the whole batch a minute apart
    // instead would have the queue delete every letter after 100 minutes.
    let records = Idempotency::new(&env).map_err(|e| e.to_string());
    if let Err(e) = &records {
        console_error!("idempotency binding unavailable for the dead letters: {e}");
    }
    let (env, config, records) = (&env, &config, records.as_ref());
    queue::settle_each(&batch, RETRY_SECS, |_, delivery| async move {
        store(delivery, env, config, records).await.or_else(|e| {
            let secs = dead_letter_retry_secs(delivery.attempts);
            console_error!("dead letter {} not settled yet, retrying in {secs} s: {e}", delivery.message.id());
            Ok(Decision::RetryIn(secs))
        })
    })
    .await
}

/// The idempotency store, or why its binding is unavailable.
type Records<'a> = std::result::Result<&'a Idempotency, &'a String>;

fn records(records: Records<'_>) -> Result<&Idempotency> {
    records.map_err(|e| worker::Error::RustError(format!("idempotency binding unavailable: {e}")))
}

async fn store(delivery: &Delivery, env: &Env, config: &Config, records: Records<'_>) -> Result<Decision> {
    let message = &delivery.message;
    let bytes = queue::message_bytes(message).unwrap_or_else(|| queue::describe_foreign_body(message));
    let now = env::now_ms();
    // `arrived_dead`: handed over by the event consumer (`carrier`, the message it took the
    // event from), or put back by this consumer after a failed store (`alerted`, if it alerted).
    let (letter, settled, arrived_dead, carrier, alerted) = match envelope::decode(&bytes) {
        Ok((meta, _)) if meta.dead => {
            let (carrier, alerted) = (meta.handed_over_by.clone(), meta.alerted);
            (DeadLetter::from_meta(&meta, now), bytes, true, carrier, alerted)
        }
        Ok((meta, inline)) => {
            let key = idempotency_key(&meta.source, &meta.id);
            let moved = Message {
                id: &message.id(),
                attempts: delivery.attempts,
                retry_token: meta.retry_token,
                replay: meta.replay,
            };
            let unconfirmed = match mark_dead(records, &key, moved).await {
                Ok(DeadMark::Marked) => false,
                Ok(DeadMark::Alive { state } | DeadMark::Final { state }) => {
                    console_log!(
                        "queue gave up on a copy of {key} while the event is {}: not a dead letter",
                        state.as_str()
                    );
                    return Ok(Decision::Ack);
                }
                Err(e) if store_unmarked(delivery.attempts, max_retries(&key)) => {
                    console_error!(
                        "could not mark {key} dead in {} tries ({e}): storing its letter unconfirmed before the \
                         queue deletes it",
                        delivery.attempts
                    );
                    true
                }
                Err(e) => return Err(e),
            };
            let marked = EventMeta { dead: true, unconfirmed, ..meta };
            (DeadLetter::from_meta(&marked, now), envelope::encode(&marked, inline), false, None, false)
        }
        Err(e) => (DeadLetter::poison(&message.id(), e.to_string(), now), bytes, false, None, false),
    };
    // A handed-over letter is tried again only to record its event dead (below): it was stored,
    // and alerted on, the first time.
    let stored_before = carrier.is_some() && delivery.attempts > 1 && stored(env, &letter).await?;
    if stored_before {
        console_log!("dead letter {} is stored already: recording its event dead", letter.storage_key());
    } else {
        if arrived_dead && !still_dead(records, &letter).await {
            return Ok(Decision::Ack);
        }
        // From here on the event is dead. It is alerted on before its letter is stored: should
        // this invocation die in between, the queue delivers the letter again, and a letter found
        // stored is not alerted on again (above), so an alert sent after the store would be lost.
        // This way a crash can only repeat it.
        if !alerted {
            alert(config, &letter).await;
        }
        // A letter that cannot be stored goes back on the queue as a new message (marked, so it
        // skips the marking of a moved message, and not alerted on again), never given up.
        if let Err(e) = keep(env, &letter, &settled).await {
            console_error!("could not store dead letter {}, putting it back: {e}", letter.storage_key());
            queue::send(&env.queue(bindings::DEAD_LETTERS)?, &alerted_copy(&settled), RETRY_SECS).await?;
            return Ok(Decision::Ack);
        }
        #[cfg(feature = "faults")]
        if crate::faults::fails(crate::faults::Fault::CrashStored, &letter.id) {
            console_error!("injected fault: the dead-letter consumer dies having stored {}", letter.storage_key());
            return Ok(Decision::Crash);
        }
        count(env, &letter, carrier.is_some()).await;
    }
    if let Some(carrier) = carrier {
        record_dead(records, &letter, &carrier, delivery).await?;
    }
    Ok(Decision::Ack)
}

/// Whether a letter the event consumer handed over is still a dead letter: not when its event
/// has since ended otherwise (`core::idempotency::handed_over_letter_stands`), as when the
/// hand-over reported a failure although the queue took it, and a retry delivered the event.
/// An event that cannot be read keeps its letter: this check only spares a false alert, and
/// must never cost a letter.
async fn still_dead(records: Records<'_>, letter: &DeadLetter) -> bool {
    let key = idempotency_key(&letter.source, &letter.id);
    match async { self::records(records)?.get(&key).await }.await {
        Ok(event) => {
            let status = event.map(|e| e.status);
            let stands = handed_over_letter_stands(status);
            if let (false, Some(status)) = (stands, status) {
                console_log!(
                    "{key} was handed over to the dead letters and is {} now: not a dead letter",
                    status.as_str()
                );
            }
            stands
        }
        Err(e) => {
            console_error!("could not read {key} before storing the letter it was handed over in ({e}): storing it");
            true
        }
    }
}

/// Logs a dead letter and alerts on it.
async fn alert(config: &Config, letter: &DeadLetter) {
    let text = letter.alert_text();
    console_error!("{text}");
    let alert = alerts::alert(vec![("dead_letter", to_json(&letter)), ("text", to_json(&text))]);
    alerts::send(config.settings.alert_url.as_deref(), alert).await;
}

/// The letter to put back on the queue after its store failed, marked as alerted on (a poison
/// message, which is no envelope, goes back as it came, and is alerted on again when stored).
fn alerted_copy(settled: &[u8]) -> Vec<u8> {
    match envelope::decode(settled) {
        Ok((meta, inline)) => envelope::encode(&EventMeta { alerted: true, ..meta }, inline),
        Err(_) => settled.to_vec(),
    }
}

/// Counts a stored letter. `counted`: the event consumer counted its event as dead-lettered
/// when it handed the letter over.
async fn count(env: &Env, letter: &DeadLetter, counted: bool) {
    // Counted for the health check's "dead letters growing" (best effort: a lost count only
    // hides this letter from one evaluation; the stored count still has it). Letters the event
    // consumer handed over were counted as dead-lettered there; the others are counted here,
    // including a moved letter that comes back marked dead because it could not be stored the
    // first time (nobody counted it then).
    let mut tally = Tally { dead_letters_added: 1, ..Tally::default() };
    if !counted {
        tally.count(&letter.source, letter.event_type.as_deref(), Outcome::DeadLettered);
    }
    let counted = match Control::new(env) {
        Ok(control) => control.report(tally).await,
        Err(e) => Err(e),
    };
    if let Err(e) = counted {
        console_error!("could not count dead letter {}: {e}", letter.storage_key());
    }
}

/// Whether the letter is in the bucket (asked only when recording a handed-over letter's event
/// failed before).
async fn stored(env: &Env, letter: &DeadLetter) -> Result<bool> {
    blobs::exists(env, &letter.storage_key()).await
}

/// Test builds: the dead-letter consumer's next write to the event's record fails, when a test
/// armed `POST /__faults/mark-dead?key=KEY`. Production builds: never.
fn unwritable(key: &str) -> Result<()> {
    #[cfg(feature = "faults")]
    if crate::faults::fails(crate::faults::Fault::MarkDead, key) {
        return Err(worker::Error::RustError("fault: the idempotency shard cannot write".into()));
    }
    let _ = key;
    Ok(())
}

/// Marks the event of a message the queue moved dead (see `core::idempotency::mark_dead`).
async fn mark_dead(records: Records<'_>, key: &str, moved: Message<'_>) -> Result<DeadMark> {
    unwritable(key)?;
    self::records(records)?.mark_dead(key, moved).await
}

/// Records the event of a letter the event consumer handed over dead, as the message that held
/// it then would have (`finish`): the consumer acknowledges that message even when its own
/// recording failed after the hand-over, since retrying it would deliver the event again.
/// Usually the record says `dead` already and nothing changes; one that says anything but that
/// message's lease is left as it is. A failure is retried up to the queue's second-to-last
/// delivery, and then left: the letter is stored, and the record still says `delivering`.
async fn record_dead(records: Records<'_>, letter: &DeadLetter, carrier: &str, delivery: &Delivery) -> Result<()> {
    let key = idempotency_key(&letter.source, &letter.id);
    let recorded = async {
        unwritable(&key)?;
        self::records(records)?.finish(&key, carrier, Finished::Dead, None).await
    };
    match recorded.await {
        Ok(()) => Ok(()),
        Err(e) if store_unmarked(delivery.attempts, max_retries(&key)) => {
            console_error!("could not record {key} dead in {} tries ({e}); its letter is stored", delivery.attempts);
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// The dead-letter queue's `max_retries`, or in the test build the number a test set for the
/// event `key`.
fn max_retries(key: &str) -> u32 {
    #[cfg(feature = "faults")]
    if let Some(n) = crate::faults::dead_letter_max_retries(key) {
        return n;
    }
    let _ = key;
    DEAD_LETTER_MAX_RETRIES
}

/// Stores the letter. It is self-contained: a body kept in R2 is copied into it, so that it
/// outlives the retention sweep. (A body already gone is recorded as such.)
async fn keep(env: &Env, letter: &DeadLetter, settled: &[u8]) -> Result<()> {
    #[cfg(feature = "faults")]
    if crate::faults::fails(crate::faults::Fault::StoreLetter, &idempotency_key(&letter.source, &letter.id)) {
        return Err(worker::Error::RustError("fault: the bucket cannot be written".into()));
    }
    let stored = self_contained(env, settled).await?;
    blobs::put(env, &letter.storage_key(), &stored, Some(&letter.to_metadata())).await
}

/// The letter with its body inline, when its body is in R2 and still there (so that the letter
/// outlives the retention sweep).
async fn self_contained(env: &Env, letter: &[u8]) -> Result<Vec<u8>> {
    let Ok((meta, inline)) = envelope::decode(letter) else {
        return Ok(letter.to_vec());
    };
    if meta.body == BodyRef::Inline {
        return Ok(letter.to_vec());
    }
    match blobs::load(env, &meta.body, inline).await? {
        Some(body) => Ok(envelope::encode(&EventMeta { body: BodyRef::Inline, ..meta }, &body)),
        None => Ok(letter.to_vec()),
    }
}
