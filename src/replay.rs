//! Putting events back on the queue: replays (of one event, of a filtered set, of every dead
//! letter) and the resumption of events held by a `paused` kill switch.
//!
//! A replay is delivered whatever its record says (`replay` in the envelope), starting again at
//! attempt 1, and is recorded as a replay (a count on the event, and `replay: true` on its
//! attempts). A resumption is a continuation the held record accepts; the consumer checks the
//! kill switch again, so an event whose switch was paused again in the meantime is held again.

use crate::blobs;
use crate::dead_letters::{self, POISON_DIR};
use crate::env::{self, bindings};
use crate::idempotency::{Idempotency, ListQuery};
use crate::queue;
use edgehook_core::capture::{to_resume, Cursor, EventQuery, EventStatus};
use edgehook_core::envelope::{self, BodyRef, EventMeta, MAX_INLINE_ENVELOPE};
use edgehook_core::flags::Flags;
use edgehook_core::ingest::idempotency_key;
use worker::{console_error, console_log, Env, Result};

/// Most events one call replays or resumes (the rest: call again, or the next cron run).
/// (The same bound as a replay by filter's `limit`, which core checks.)
pub const MAX_PER_CALL: usize = edgehook_core::capture::MAX_REPLAY;

/// [`MAX_PER_CALL`], or in the test build the limit a test set.
fn max_per_call() -> usize {
    #[cfg(feature = "faults")]
    if let Some(limit) = crate::faults::replay_limit() {
        return limit;
    }
    MAX_PER_CALL
}

/// Messages per queue batch send (the platform's limit is 100 messages and 256 KB; resumptions
/// carry no body, so 100 of them stay far below it).
const SEND_BATCH: usize = 100;

/// Sends an event with its body: inline when it fits a message, else with a claim check.
async fn enqueue(env: &Env, meta: EventMeta, body: &[u8]) -> Result<()> {
    let meta = if envelope::inline_size(&meta, body.len()) <= MAX_INLINE_ENVELOPE {
        EventMeta { body: BodyRef::Inline, ..meta }
    } else {
        let key = blobs::body_key(&meta.source);
        blobs::put_body(env, &key, body).await?;
        EventMeta { body: BodyRef::Stored { key, len: body.len() as u64 }, ..meta }
    };
    queue::send(&env.queue(bindings::EVENTS)?, &envelope::encode(&meta, body), 0).await
}

/// Replays one captured event. `false` when it is not (or no longer) captured.
pub async fn replay_event(env: &Env, store: &Idempotency, source: &str, id: &str) -> Result<bool> {
    let key = idempotency_key(source, id);
    let Some(event) = store.get(&key).await? else {
        return Ok(false);
    };
    let meta = event.capture.continuation(1, 0, true);
    queue::send(&env.queue(bindings::EVENTS)?, &envelope::encode(&meta, &[]), 0).await?;
    // A dead-lettered event replayed this way is no longer a dead letter: left listed, it would
    // be counted by health and delivered once more by a replay of every dead letter. (If this
    // replay dies too, the consumer stores a new one.)
    env.bucket(bindings::BLOBS)?.delete(&dead_letters::letter_key(source, id)).await?;
    store.replayed(&key).await?;
    Ok(true)
}

/// Replays the captured events a query matches, newest first from its cursor, up to its limit
/// (and at most [`MAX_PER_CALL`]). Returns how many, and the cursor to go on from when the query
/// matches more: a second call without it would start from the newest again and send the same
/// events twice.
pub async fn replay_matching(env: &Env, store: &Idempotency, query: &EventQuery) -> Result<(usize, Option<Cursor>)> {
    let limit = query.limit.min(max_per_call());
    let (mut replayed, mut seen) = (0, 0);
    let mut before = query.before.clone().map(|c| (c.received_at_ms, c.key));
    let page = |n: usize, before: Option<(i64, String)>| {
        store.list(ListQuery {
            source: query.source.clone(),
            states: query.status.map(|s| s.states().iter().map(|st| st.as_str().to_owned()).collect()),
            event_type: query.event_type.clone(),
            limit: n as u32,
            before,
        })
    };
    while seen < limit {
        let page = page(100.min(limit - seen), before.clone()).await?;
        let Some(last) = page.last() else {
            return Ok((replayed, None));
        };
        before = Some((last.received_at_ms, idempotency_key(&last.source, &last.id)));
        for event in &page {
            seen += 1;
            if replay_event(env, store, &event.source, &event.id).await? {
                replayed += 1;
            }
        }
    }
    let more = !page(1, before.clone()).await?.is_empty();
    Ok((replayed, before.filter(|_| more).map(|(received_at_ms, key)| Cursor { received_at_ms, key })))
}

/// Which dead letters to replay: all, a source's, or one.
#[derive(Debug, Clone, Copy)]
pub enum Letters<'a> {
    All,
    Source(&'a str),
    One(&'a str, &'a str),
}

/// Replays stored dead letters, each with the exact body it was stored with; a replayed letter
/// is removed (it comes back if the replay dies too). Poison messages are not events and stay;
/// a letter whose event was delivered after all is removed, not replayed.
/// Returns how many, and whether more are left (past [`MAX_PER_CALL`]: call again).
pub async fn replay_dead_letters(env: &Env, store: &Idempotency, which: Letters<'_>) -> Result<(usize, bool)> {
    let bucket = env.bucket(bindings::BLOBS)?;
    let (prefix, exact) = match which {
        Letters::All => (dead_letters::PREFIX.to_owned(), None),
        Letters::Source(source) => (format!("{}{source}/", dead_letters::PREFIX), None),
        Letters::One(source, id) => {
            let key = dead_letters::letter_key(source, id);
            (key.clone(), Some(key))
        }
    };
    let poison = format!("{}{POISON_DIR}/", dead_letters::PREFIX);
    let limit = max_per_call();
    let mut replayed = 0;
    let mut more = false;
    let mut cursor: Option<String> = None;
    loop {
        let listed = blobs::list(env, &prefix, 100, cursor.as_deref(), false).await?;
        for (key, _) in listed.objects {
            if key.starts_with(&poison) || exact.as_ref().is_some_and(|k| *k != key) {
                continue;
            }
            if replayed >= limit {
                more = true;
                break;
            }
            let Some((_, bytes)) = blobs::get_with_metadata(env, &key).await? else {
                continue;
            };
            let Ok((meta, inline)) = envelope::decode(&bytes) else {
                console_error!("dead letter {key} is not an envelope; left where it is");
                continue;
            };
            if delivered(store, &meta).await? {
                console_log!("dead letter {key}: its event was delivered since, by another copy; removed");
                bucket.delete(&key).await?;
                continue;
            }
            let Some(body) = blobs::load(env, &meta.body, inline).await? else {
                console_error!("dead letter {key} has no body any more; left where it is");
                continue;
            };
            let replay = EventMeta {
                attempt: 1,
                last_error: None,
                retry_token: None,
                replay: true,
                dead: false,
                unconfirmed: false,
                handed_over_by: None,
                alerted: false,
                filtered: false,
                resumed: false,
                ..meta
            };
            let event_key = idempotency_key(&replay.source, &replay.id);
            enqueue(env, replay, &body).await?;
            bucket.delete(&key).await?;
            if let Err(e) = store.replayed(&event_key).await {
                console_error!("could not count the replay of {event_key}: {e}");
            }
            replayed += 1;
        }
        match listed.cursor {
            Some(next) if !more => cursor = Some(next),
            _ => break,
        }
    }
    Ok((replayed, more))
}

/// Whether the event's capture says it was delivered, as a letter's event can be after all:
/// another copy completed it while an unconfirmed letter's record could not be marked, or took
/// it over (its lease expired) while the recording of a handed-over one kept failing. Replaying
/// such a letter would deliver the event twice. Past the capture's retention the question goes
/// unanswered (the record is not shown), and the letter is replayed.
async fn delivered(store: &Idempotency, meta: &EventMeta) -> Result<bool> {
    let event = store.get(&idempotency_key(&meta.source, &meta.id)).await?;
    Ok(event.is_some_and(|e| e.status == EventStatus::Delivered))
}

/// Resumes held events (of `source`, or of all) whose kill switch is no longer `paused`,
/// oldest first, in order.
pub async fn resume_held(env: &Env, store: &Idempotency, flags: &Flags, source: Option<&str>) -> Result<usize> {
    let limit = max_per_call();
    let held = store.held(source, flags, limit as u32).await?;
    let mut due = to_resume(held, flags, env::now_ms());
    due.truncate(limit);
    let queue = env.queue(bindings::EVENTS)?;
    for chunk in due.chunks(SEND_BATCH) {
        let messages: Vec<Vec<u8>> = chunk
            .iter()
            .map(|h| envelope::encode(&h.capture.continuation(h.next_attempt, env::random_token(), false), &[]))
            .collect();
        queue::send_batch(&queue, &messages).await?;
        let keys: Vec<String> = chunk.iter().map(|h| idempotency_key(&h.capture.source, &h.capture.id)).collect();
        store.resumed(&keys).await?;
    }
    Ok(due.len())
}
