//! The idempotency state machine: what happens to one `(source, event id)` record.
//!
//! ## Where the check lives, and why
//! The authoritative check is in the **queue consumer**, not the receiver. Measured under
//! `wrangler dev` with 1 KB Stripe events (README, "Design decisions"): verify + enqueue serves
//! about 7 times the requests per second of verify + Durable Object claim + enqueue, and in
//! production a claim is a round trip to wherever the object lives, possibly another continent,
//! on the provider's clock. The consumer pays that round trip off the request path instead.
//! The receiver still answers `duplicate` for ids it knows (see [`crate::recent`]), but a copy it
//! does not know is enqueued, and the consumer drops it here.
//!
//! ## States
//! The worker keeps records in Durable Objects (one strongly consistent writer per record) and
//! applies these pure transitions to them. A consumer `begin`s each message and `finish`es it:
//!
//! ```text
//!          begin                finish(Delivered)
//!  (none) ───────▶ Delivering ─────────────────────▶ Completed
//!                   │  ▲    │ finish(Dead)
//!  finish(Retrying) │  │    └──────────────▶ Dead
//!                   ▼  │ begin (the retry message, same token)
//!                 Retrying
//! ```
//!
//! - `Delivering` is a lease held by one queue message (its id is the owner) until
//!   `lease_until_ms`. A redelivery of that same message with a higher delivery count (its
//!   consumer died mid-delivery, or failed and retried it) takes the lease back, so a crashed
//!   delivery is retried, not lost; a second delivery of the same message with the same count
//!   (the queue's at-least-once duplicate) does not. A lease that runs out can be taken over by
//!   anyone.
//! - `Retrying` waits for the one retry message the failed attempt sent, recognised by its
//!   token, so exactly one chain of attempts exists per event.
//! - A *fresh copy* (a message from the receiver) that finds the event owned, retrying, completed
//!   or dead is a duplicate and is skipped: the event is already in hand. A *continuation* (a
//!   retry message or an explicit replay) that finds a live lease of another message waits.
//!
//! Every write moves the record's expiry to `now + ttl`; the Durable Object's alarm deletes
//! expired records.

use crate::capture::EventStatus;
use crate::json;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Records are spread over this many Durable Objects by a hash of their key.
///
/// One object per event id would cost one Durable Object request per record operation (and,
/// locally, a SQLite file per event); one object for everything would serialise all traffic
/// through a single thread. With 16 shards the consumer sends one request per shard for all the
/// operations of a batch (about 6 records per request for a batch of 100), and each object's
/// request load stays far below its limits at queue-scale rates (5,000 events/s per queue is
/// about 310 records/s per shard, in about 50 requests). Storage is what ends first: 10 GB an
/// object, about 500-700 bytes an event held for the TTL (or the retention, if longer) plus
/// half a time partition, which is a sustained average of roughly 80 events/s in all at the
/// 30-day defaults (README, "What the idempotency shards can hold"). Every key still has exactly
/// one strongly consistent owner. Changing it re-homes keys, so it is a constant, not a setting.
pub const SHARDS: u32 = 16;

/// The shard that owns `key`: the first 8 bytes of its SHA-256, modulo [`SHARDS`].
pub fn shard_of(key: &str) -> u32 {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(key.as_bytes());
    let prefix: [u8; 8] = digest[..8].try_into().expect("SHA-256 has 32 bytes");
    (u64::from_be_bytes(prefix) % u64::from(SHARDS)) as u32
}

/// Where an event is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// A consumer is delivering it under a lease.
    Delivering,
    /// An attempt failed; the retry message with `token` carries it on.
    Retrying,
    /// Delivered (or completed without a destination).
    Completed,
    /// Dead-lettered after its last attempt.
    Dead,
    /// Its type is not in the source's `events` allow-list: acknowledged, never delivered.
    Filtered,
    /// Held by a `paused` kill switch until it is resumed.
    Paused,
    /// Discarded by a `dropped` kill switch.
    Dropped,
    /// Older than the newest delivered version of its entity: not delivered.
    Stale,
}

crate::names::by_name!(State: Delivering, Retrying, Completed, Dead, Filtered, Paused, Dropped, Stale);

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Delivering => "delivering",
            State::Retrying => "retrying",
            State::Completed => "completed",
            State::Dead => "dead",
            State::Filtered => "filtered",
            State::Paused => "paused",
            State::Dropped => "dropped",
            State::Stale => "stale",
        }
    }

    pub fn parse(text: &str) -> Option<State> {
        crate::names::Named::from_name(text)
    }
}

/// One stored record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub state: State,
    /// The queue message holding a `Delivering` lease; for `Dead`: the message that the queue
    /// gave up on, if that is how the event died; for a record `begin_settled` wrote (except
    /// `Paused`): the message that settled it. Empty otherwise.
    pub owner: String,
    /// The owner's delivery count when it took the lease (or settled the event). For a `Paused`
    /// record (no owner): the attempt the event resumes with, the one its holding message would
    /// have made.
    pub owner_attempts: u32,
    /// The token of the retry message a `Retrying` record waits for.
    pub token: u64,
    pub lease_until_ms: i64,
    pub updated_ms: i64,
    pub expires_ms: i64,
}

/// What to do to storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    Keep,
    Put(Record),
}

/// Clock and TTL for one transition.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    pub now_ms: i64,
    pub ttl_ms: i64,
}

impl Clock {
    fn record(self, state: State, owner: &str, token: u64, lease_until_ms: i64) -> Record {
        Record {
            state,
            owner: owner.to_owned(),
            owner_attempts: 0,
            token,
            lease_until_ms,
            updated_ms: self.now_ms,
            expires_ms: self.now_ms + self.ttl_ms,
        }
    }
}

/// The queue message asking to deliver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message<'a> {
    /// The queue's id for the message; stable across redeliveries of the same message.
    pub id: &'a str,
    /// How many times the queue has delivered this message (1 the first time).
    pub attempts: u32,
    /// Set on retry messages: the token their failed predecessor recorded.
    pub retry_token: Option<u64>,
    /// An explicit replay: delivered even if the event was delivered before.
    pub replay: bool,
}

impl Message<'_> {
    /// A continuation carries an event on (a retry or a replay); anything else is a copy that
    /// the receiver enqueued.
    fn continuation(&self) -> bool {
        self.retry_token.is_some() || self.replay
    }
}

/// The consumer's answer from `begin`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Begin {
    /// Deliver it; this message holds the lease.
    Go,
    /// Taken and at once settled with the outcome the message brought (`begin_settled`).
    /// Distinct from `Go` so that a consumer can tell that an object still running code that
    /// predates settling (during a deploy) took the event without settling it.
    Settled,
    /// Acknowledge without delivering: a duplicate of an event already in hand (`state`).
    Skip { state: State },
    /// Another message holds a live lease on this continuation's event: come back later.
    Later { retry_in_ms: i64 },
}

/// `begin`: `message` is about to be delivered, under a lease of `lease_ms`.
pub fn begin(record: Option<&Record>, message: Message<'_>, lease_ms: i64, clock: Clock) -> (Write, Begin) {
    let take = || {
        let mut r = clock.record(State::Delivering, message.id, 0, clock.now_ms + lease_ms);
        r.owner_attempts = message.attempts;
        Write::Put(r)
    };
    let Some(r) = record else {
        return (take(), Begin::Go);
    };
    match r.state {
        // Our own lease, delivered again: the consumer that held it died or gave the message
        // back. (The same delivery twice is the queue's duplicate, and is not let through.)
        State::Delivering if r.owner == message.id && message.attempts > r.owner_attempts => (take(), Begin::Go),
        State::Delivering if r.lease_until_ms <= clock.now_ms => (take(), Begin::Go),
        State::Delivering if message.continuation() => {
            (Write::Keep, Begin::Later { retry_in_ms: r.lease_until_ms - clock.now_ms })
        }
        State::Retrying if message.retry_token == Some(r.token) || message.replay => (take(), Begin::Go),
        // Held events are carried on by the messages that resume them (any continuation: the
        // consumer checks the kill switch again and holds the event once more if still paused).
        State::Paused if message.continuation() => (take(), Begin::Go),
        State::Completed | State::Dead | State::Filtered | State::Dropped | State::Stale if message.replay => {
            (take(), Begin::Go)
        }
        state => (Write::Keep, Begin::Skip { state }),
    }
}

/// How a delivery attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The destination answered 2xx (or there is no destination).
    Delivered,
    /// This attempt failed; the retry message with `token` has been sent.
    Retrying { token: u64 },
    /// No attempts left; the event was handed to the dead-letter queue.
    Dead,
    /// Not delivered: filtered out by the source's `events`.
    Filtered,
    /// Held by a `paused` kill switch, before making `attempt` (it resumes with that attempt).
    Paused { attempt: u32 },
    /// Discarded by a `dropped` kill switch.
    Dropped,
    /// Not delivered: older than what was already delivered for its entity.
    Stale,
}

impl Outcome {
    /// Read by hand, as `Deserialize` reads it (see [`Fields`]): the name of a variant without
    /// fields, or `{"retrying": {"token": 7}}`.
    pub fn from_value(value: Value) -> Result<Outcome, String> {
        let (name, mut data) = json::variant(value)?;
        let outcome = match name.as_str() {
            "delivered" => Outcome::Delivered,
            "dead" => Outcome::Dead,
            "filtered" => Outcome::Filtered,
            "dropped" => Outcome::Dropped,
            "stale" => Outcome::Stale,
            "retrying" => Outcome::Retrying { token: data.need_u64("token") },
            "paused" => Outcome::Paused { attempt: data.need_u32("attempt") },
            other => return Err(json::unknown_variant(other)),
        };
        data.done(outcome)
    }
}

/// `finish`: the message that began a delivery reports how it ended.
pub fn finish(record: Option<&Record>, message_id: &str, outcome: Outcome, clock: Clock) -> Write {
    let owned = record.is_some_and(|r| r.state == State::Delivering && r.owner == message_id);
    match outcome {
        // A success is final, whoever holds the lease by now.
        Outcome::Delivered => Write::Put(clock.record(State::Completed, "", 0, 0)),
        // A failure only counts from the lease holder: if the lease ran out and another message
        // took over, that message decides what comes next.
        Outcome::Retrying { token } if owned => Write::Put(clock.record(State::Retrying, "", token, 0)),
        Outcome::Dead if owned => Write::Put(clock.record(State::Dead, "", 0, 0)),
        Outcome::Filtered if owned => Write::Put(clock.record(State::Filtered, "", 0, 0)),
        Outcome::Paused { attempt } if owned => {
            Write::Put(Record { owner_attempts: attempt, ..clock.record(State::Paused, "", 0, 0) })
        }
        Outcome::Dropped if owned => Write::Put(clock.record(State::Dropped, "", 0, 0)),
        Outcome::Stale if owned => Write::Put(clock.record(State::Stale, "", 0, 0)),
        _ => Write::Keep,
    }
}

/// The state an event is left in by `outcome`.
fn state_after(outcome: Outcome) -> State {
    match outcome {
        Outcome::Delivered => State::Completed,
        Outcome::Retrying { .. } => State::Retrying,
        Outcome::Dead => State::Dead,
        Outcome::Filtered => State::Filtered,
        Outcome::Paused { .. } => State::Paused,
        Outcome::Dropped => State::Dropped,
        Outcome::Stale => State::Stale,
    }
}

/// `begin`, and when it lets the message go, `finish` with `outcome` in the same write: for an
/// event whose outcome is known before it is taken (filtered, held or dropped by a kill switch,
/// or captured with nowhere to deliver it). One row written instead of two, one request to the
/// object instead of two, and no moment in between in which the event is taken but not settled.
///
/// The settled record keeps the settling message as its owner, with its delivery count (except
/// a `Paused` record, whose count is the attempt it resumes with). When the queue delivers that
/// same message again with a higher count, it gets the same answer again and is counted with
/// its outcome: that is right when the object's answer was lost (nothing was counted), and
/// counts the event twice when the consumer counted it but its acknowledgement was lost (the
/// invocation died after reporting its counts). The first is an ordinary failed request, the
/// second a crash at one exact point, so the answer favours the first; before, the first was
/// counted as a duplicate and never with its outcome. A duplicate the queue makes of one delivery
/// has the same count and stays a duplicate. Only metrics depend on this: the record is right
/// either way, and a settled event is never sent anywhere.
pub fn begin_settled(
    record: Option<&Record>,
    message: Message<'_>,
    lease_ms: i64,
    clock: Clock,
    outcome: Outcome,
) -> (Write, Begin) {
    if let Some(r) = record {
        let settled_before = r.state == state_after(outcome)
            && r.state != State::Paused
            && r.owner == message.id
            && message.attempts > r.owner_attempts;
        if settled_before {
            return (Write::Keep, Begin::Settled);
        }
    }
    match begin(record, message, lease_ms, clock) {
        (Write::Put(taken), Begin::Go) => match finish(Some(&taken), message.id, outcome, clock) {
            Write::Put(settled) if settled.state == State::Paused => (Write::Put(settled), Begin::Settled),
            Write::Put(settled) => (
                Write::Put(Record { owner: message.id.to_owned(), owner_attempts: message.attempts, ..settled }),
                Begin::Settled,
            ),
            // Every outcome counts from the lease holder, which this message now is.
            Write::Keep => (Write::Put(taken), Begin::Go),
        },
        other => other,
    }
}

/// What `mark_dead` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeadMark {
    /// The event is dead now: store the letter and alert.
    Marked,
    /// Another message carries the event on (a live lease, or a retry chain this message is not
    /// part of): this letter is a stray copy, not a dead event.
    Alive { state: State },
    /// Already completed or dead-lettered: nothing to store.
    Final { state: State },
}

/// `mark_dead`: the queue moved `message` to the dead-letter queue by itself (the event consumer
/// kept failing on it). The event is dead only if this message was what carried it.
pub fn mark_dead(record: Option<&Record>, message: Message<'_>, clock: Clock) -> (Write, DeadMark) {
    // The marking message is kept as the owner, so that marking again (the dead-letter consumer
    // failed before storing the letter and is retried) still answers `Marked`.
    let dead = || Write::Put(clock.record(State::Dead, message.id, 0, 0));
    let Some(r) = record else {
        return (dead(), DeadMark::Marked);
    };
    match r.state {
        State::Dead if r.owner == message.id => (Write::Keep, DeadMark::Marked),
        State::Completed | State::Dead | State::Filtered | State::Dropped | State::Stale => {
            (Write::Keep, DeadMark::Final { state: r.state })
        }
        State::Delivering if r.lease_until_ms <= clock.now_ms || r.owner == message.id => (dead(), DeadMark::Marked),
        State::Retrying if message.retry_token == Some(r.token) => (dead(), DeadMark::Marked),
        state => (Write::Keep, DeadMark::Alive { state }),
    }
}

/// Whether a letter the event consumer handed over is still a dead letter, given its event's
/// status when the dead-letter consumer reads it (`None`: no record). The consumer hands an event
/// over when its last attempt fails and then records it dead; should the hand-over report a
/// failure although the queue took it, the message is retried and may complete the event before
/// the letter is read. A record that ended any way but `dead` makes the letter a stray, not to be
/// stored or alerted on. Anything else keeps it: dead (the usual case), still open (the recording
/// after the hand-over failed, or a retry is under way), paused, or no record at all.
pub fn handed_over_letter_stands(status: Option<EventStatus>) -> bool {
    use EventStatus::*;
    !matches!(status, Some(Delivered | Filtered | Dropped | Stale))
}

/// Where a seal is kept (`ingest::seal_of`): beside entities' versions (`v:`), in the same
/// small keyed rows with an expiry.
pub fn seal_key(source: &str, seal: &str) -> String {
    format!("s:{source}:{seal}")
}

/// The answer to an event claiming its signature's seal. (Sent between the worker's objects as
/// the holder's key when it is another event's, `null` otherwise: `Option<String>`, whose serde
/// code the bundle already has.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SealClaim {
    /// The seal is this event's: claimed now, or by the same event before (a copy of it, or
    /// the message again).
    Granted,
    /// Another event took it first (its idempotency key): this one presents that event's
    /// signed request under another id.
    Held { by: String },
}

/// Decides a claim of a seal by the event `event_key`, given who holds it now and until when
/// (a claim lasts as long as an idempotency record: a resend after both expired is new again,
/// as the record alone would have it). Returns the holder to write, if it changes, and the answer.
pub fn claim_seal(holder: Option<(&str, i64)>, event_key: &str, clock: Clock) -> (Option<(String, i64)>, SealClaim) {
    match holder.filter(|&(_, expires_ms)| expires_ms > clock.now_ms) {
        Some((by, _)) if by == event_key => (None, SealClaim::Granted),
        Some((by, _)) => (None, SealClaim::Held { by: by.to_owned() }),
        None => (Some((event_key.to_owned(), clock.now_ms + clock.ttl_ms)), SealClaim::Granted),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Outcomes travel to the shards as JSON, which they read by hand: every one reads back.
    #[test]
    fn outcomes_read_by_hand_as_serde_wrote_them() {
        use Outcome::*;
        for outcome in [Delivered, Retrying { token: 1 << 40 }, Dead, Filtered, Paused { attempt: 3 }, Dropped, Stale] {
            let value = serde_json::to_value(outcome).unwrap();
            assert_eq!(Outcome::from_value(value.clone()), Ok(outcome), "{value}");
        }
        for bad in [r#""retrying""#, r#"{"paused":{}}"#, r#"{"paused":{"attempt":-1}}"#, r#""forgotten""#, "7"] {
            assert!(Outcome::from_value(serde_json::from_str(bad).unwrap()).is_err(), "{bad}");
        }
    }

    const TTL: i64 = 1_000_000;
    const LEASE: i64 = 1_000;

    fn at(now_ms: i64) -> Clock {
        Clock { now_ms, ttl_ms: TTL }
    }

    fn fresh(id: &str) -> Message<'_> {
        Message { id, attempts: 1, retry_token: None, replay: false }
    }

    /// `id` delivered by the queue for the `attempts`-th time.
    fn again(id: &str, attempts: u32) -> Message<'_> {
        Message { attempts, ..fresh(id) }
    }

    fn retry(id: &str, token: u64) -> Message<'_> {
        Message { id, attempts: 1, retry_token: Some(token), replay: false }
    }

    fn replay(id: &str) -> Message<'_> {
        Message { id, attempts: 1, retry_token: None, replay: true }
    }

    /// Runs `begin` and applies its write.
    fn start(record: &mut Option<Record>, m: Message<'_>, now: i64) -> Begin {
        let (w, b) = begin(record.as_ref(), m, LEASE, at(now));
        if let Write::Put(r) = w {
            *record = Some(r);
        }
        b
    }

    fn end(record: &mut Option<Record>, id: &str, outcome: Outcome, now: i64) {
        if let Write::Put(r) = finish(record.as_ref(), id, outcome, at(now)) {
            *record = Some(r);
        }
    }

    fn state(record: &Option<Record>) -> State {
        record.as_ref().unwrap().state
    }

    #[test]
    fn happy_path_then_duplicates_are_skipped() {
        let mut r = None;
        assert_eq!(start(&mut r, fresh("m1"), 0), Begin::Go);
        let held = r.clone().unwrap();
        assert_eq!(
            (held.state, held.owner.as_str(), held.lease_until_ms, held.expires_ms),
            (State::Delivering, "m1", LEASE, TTL)
        );
        end(&mut r, "m1", Outcome::Delivered, 10);
        assert_eq!(state(&r), State::Completed);
        assert_eq!(r.as_ref().unwrap().expires_ms, 10 + TTL, "expiry moves with the last change");
        assert_eq!(start(&mut r, fresh("m2"), 20), Begin::Skip { state: State::Completed });
    }

    #[test]
    fn settling_at_begin_writes_what_begin_then_finish_would() {
        let outcomes =
            [Outcome::Delivered, Outcome::Filtered, Outcome::Paused { attempt: 3 }, Outcome::Dropped, Outcome::Stale];
        let delivered = {
            let mut r = None;
            start(&mut r, fresh("m1"), 0);
            end(&mut r, "m1", Outcome::Delivered, 0);
            r
        };
        // Every state a record can be in, and none: where `begin` lets the message go, the
        // one write equals the two; elsewhere it is `begin`'s own answer, untouched.
        let records = [None, Some(clock_record(State::Delivering, "other", 5 * LEASE)), delivered];
        for record in &records {
            for message in [fresh("m2"), replay("m2"), again("other", 2)] {
                for outcome in outcomes {
                    let (write, answer) = begin_settled(record.as_ref(), message, LEASE, at(1), outcome);
                    let mut two = record.clone();
                    let expected = start(&mut two, message, 1);
                    if expected == Begin::Go {
                        assert_eq!(answer, Begin::Settled);
                        end(&mut two, message.id, outcome, 1);
                        let mut two = two.unwrap();
                        // The settling message is kept as the owner (a held event keeps the
                        // attempt it resumes with instead).
                        if two.state != State::Paused {
                            (two.owner, two.owner_attempts) = (message.id.to_owned(), message.attempts);
                        }
                        assert_eq!(write, Write::Put(two), "{record:?} {message:?} {outcome:?}");
                    } else {
                        assert_eq!(answer, expected);
                        assert_eq!(write, Write::Keep, "{record:?} {message:?} {outcome:?}");
                    }
                }
            }
        }
        // A duplicate of a settled event is skipped, as after two writes.
        let mut r = None;
        if let (Write::Put(settled), Begin::Settled) = begin_settled(None, fresh("m1"), LEASE, at(0), Outcome::Filtered)
        {
            r = Some(settled);
        }
        assert_eq!(state(&r), State::Filtered);
        assert_eq!(start(&mut r, fresh("m2"), 1), Begin::Skip { state: State::Filtered });
    }

    #[test]
    fn a_settling_message_delivered_again_is_answered_settled_again() {
        let settle = |r: &Option<Record>, m: Message<'_>, outcome| begin_settled(r.as_ref(), m, LEASE, at(5), outcome);
        for outcome in [Outcome::Delivered, Outcome::Filtered, Outcome::Dropped] {
            let (Write::Put(settled), Begin::Settled) = settle(&None, fresh("m1"), outcome) else {
                panic!("{outcome:?} settles a new event")
            };
            let r = Some(settled);
            // The queue delivers m1 again (its answer was lost): the same answer, nothing written.
            assert_eq!(settle(&r, again("m1", 2), outcome), (Write::Keep, Begin::Settled), "{outcome:?}");
            // The queue's duplicate of the first delivery, another message, or m1 again with
            // another outcome (a kill switch changed in between): duplicates, as before.
            let state = state_after(outcome);
            assert_eq!(settle(&r, fresh("m1"), outcome), (Write::Keep, Begin::Skip { state }), "{outcome:?}");
            assert_eq!(settle(&r, again("m2", 2), outcome), (Write::Keep, Begin::Skip { state }), "{outcome:?}");
            let other = if outcome == Outcome::Dropped { Outcome::Filtered } else { Outcome::Dropped };
            assert_eq!(settle(&r, again("m1", 2), other), (Write::Keep, Begin::Skip { state }), "{outcome:?}");
            // Plain `begin` (a consumer delivering) still finds a final event, a replay still
            // takes it, and the queue moving m1 to the dead letters finds it final.
            assert_eq!(begin(r.as_ref(), again("m1", 2), LEASE, at(6)).1, Begin::Skip { state });
            assert_eq!(begin(r.as_ref(), replay("r1"), LEASE, at(6)).1, Begin::Go);
            assert_eq!(mark_dead(r.as_ref(), again("m1", 3), at(6)), (Write::Keep, DeadMark::Final { state }));
        }
        // A held event keeps the attempt it resumes with: its redelivery is a duplicate, as before.
        let (Write::Put(held), Begin::Settled) = settle(&None, fresh("m1"), Outcome::Paused { attempt: 3 }) else {
            panic!("pausing settles a new event")
        };
        assert_eq!(held.owner_attempts, 3);
        let r = Some(held);
        let paused = Begin::Skip { state: State::Paused };
        assert_eq!(settle(&r, again("m1", 2), Outcome::Paused { attempt: 3 }), (Write::Keep, paused));
    }

    fn clock_record(state: State, owner: &str, lease_until_ms: i64) -> Record {
        at(0).record(state, owner, 0, lease_until_ms)
    }

    #[test]
    fn concurrent_copies_deliver_once() {
        let mut r = None;
        assert_eq!(start(&mut r, fresh("a"), 0), Begin::Go);
        for (i, id) in ["b", "c", "d"].into_iter().enumerate() {
            assert_eq!(start(&mut r, fresh(id), i as i64), Begin::Skip { state: State::Delivering });
        }
    }

    #[test]
    fn a_crashed_delivery_is_retried_by_its_own_redelivery() {
        let mut r = None;
        assert_eq!(start(&mut r, fresh("m1"), 0), Begin::Go);
        // The consumer died; the queue redelivers m1 while its lease still runs.
        assert_eq!(start(&mut r, again("m1", 2), 100), Begin::Go);
        assert_eq!(r.as_ref().unwrap().lease_until_ms, 100 + LEASE);
        assert_eq!(r.as_ref().unwrap().owner_attempts, 2);
        // ...and again, should that consumer die too.
        assert_eq!(start(&mut r, again("m1", 3), 200), Begin::Go);
    }

    #[test]
    fn the_queue_delivering_one_message_twice_at_once_delivers_once() {
        let mut r = None;
        assert_eq!(start(&mut r, fresh("m1"), 0), Begin::Go);
        assert_eq!(start(&mut r, fresh("m1"), 10), Begin::Skip { state: State::Delivering });
        // A continuation delivered twice waits for itself instead.
        let mut c = None;
        start(&mut c, fresh("m1"), 0);
        end(&mut c, "m1", Outcome::Retrying { token: 3 }, 5);
        assert_eq!(start(&mut c, retry("m2", 3), 10), Begin::Go);
        assert_eq!(start(&mut c, retry("m2", 3), 20), Begin::Later { retry_in_ms: LEASE - 10 });
    }

    #[test]
    fn an_expired_lease_can_be_taken_over() {
        let mut r = None;
        start(&mut r, fresh("m1"), 0);
        assert_eq!(start(&mut r, fresh("m2"), LEASE), Begin::Go);
        assert_eq!(r.as_ref().unwrap().owner, "m2");
        // The old holder's late failure no longer decides anything; a late success still counts.
        assert_eq!(finish(r.as_ref(), "m1", Outcome::Retrying { token: 9 }, at(LEASE + 1)), Write::Keep);
        assert_eq!(finish(r.as_ref(), "m1", Outcome::Dead, at(LEASE + 1)), Write::Keep);
        end(&mut r, "m1", Outcome::Delivered, LEASE + 2);
        assert_eq!(state(&r), State::Completed);
    }

    #[test]
    fn one_retry_chain_per_event() {
        let mut r = None;
        start(&mut r, fresh("m1"), 0);
        end(&mut r, "m1", Outcome::Retrying { token: 7 }, 10);
        assert_eq!(state(&r), State::Retrying);
        // A fresh copy from the provider while retrying is a duplicate, not a second chain.
        assert_eq!(start(&mut r, fresh("m9"), 20), Begin::Skip { state: State::Retrying });
        // An orphaned retry message (its successor was recorded instead) is skipped too.
        assert_eq!(start(&mut r, retry("m8", 6), 20), Begin::Skip { state: State::Retrying });
        // The retry message carries the event on.
        assert_eq!(start(&mut r, retry("m2", 7), 30), Begin::Go);
        end(&mut r, "m2", Outcome::Delivered, 40);
        assert_eq!(state(&r), State::Completed);
    }

    #[test]
    fn a_retry_message_that_overtakes_its_predecessor_waits() {
        let mut r = None;
        start(&mut r, fresh("m1"), 0);
        // m1 sent its retry before recording the failure; the retry arrives in between.
        assert_eq!(start(&mut r, retry("m2", 7), 100), Begin::Later { retry_in_ms: LEASE - 100 });
        end(&mut r, "m1", Outcome::Retrying { token: 7 }, 110);
        assert_eq!(start(&mut r, retry("m2", 7), 200), Begin::Go);
    }

    #[test]
    fn dead_is_final_except_for_replays() {
        let mut r = None;
        start(&mut r, fresh("m1"), 0);
        end(&mut r, "m1", Outcome::Dead, 10);
        assert_eq!(state(&r), State::Dead);
        assert_eq!(start(&mut r, fresh("m2"), 20), Begin::Skip { state: State::Dead });
        assert_eq!(start(&mut r, replay("m3"), 30), Begin::Go);
    }

    #[test]
    fn replays_deliver_finished_events_but_wait_for_a_live_lease() {
        let mut r = None;
        start(&mut r, fresh("m1"), 0);
        assert_eq!(start(&mut r, replay("r1"), 10), Begin::Later { retry_in_ms: LEASE - 10 });
        end(&mut r, "m1", Outcome::Delivered, 20);
        assert_eq!(start(&mut r, replay("r1"), 30), Begin::Go);
    }

    #[test]
    fn queue_moved_letters_kill_only_the_event_they_carried() {
        let marked = |r: &Option<Record>, m: Message<'_>, now: i64| mark_dead(r.as_ref(), m, at(now)).1;
        assert_eq!(marked(&None, fresh("m1"), 0), DeadMark::Marked);

        let mut r = None;
        start(&mut r, fresh("m1"), 0);
        // A stray copy while m1's lease is live: m1 carries the event.
        assert_eq!(marked(&r, fresh("m2"), 10), DeadMark::Alive { state: State::Delivering });
        assert_eq!(marked(&r, again("m1", 1), 10), DeadMark::Marked, "the lease holder itself is what carried it");
        // m1 itself, or anyone once the lease ran out.
        assert_eq!(marked(&r, fresh("m1"), 10), DeadMark::Marked);
        assert_eq!(marked(&r, fresh("m2"), LEASE), DeadMark::Marked);

        end(&mut r, "m1", Outcome::Retrying { token: 5 }, 20);
        assert_eq!(marked(&r, retry("m3", 4), 30), DeadMark::Alive { state: State::Retrying });
        assert_eq!(marked(&r, fresh("m4"), 30), DeadMark::Alive { state: State::Retrying });
        let (w, mark) = mark_dead(r.as_ref(), retry("m3", 5), at(30));
        assert_eq!(mark, DeadMark::Marked);
        assert!(matches!(w, Write::Put(Record { state: State::Dead, .. })));
        // Marking again (the letter could not be stored the first time) still says `Marked`;
        // another message finds it final.
        let Write::Put(dead) = w else { unreachable!() };
        assert_eq!(mark_dead(Some(&dead), retry("m3", 5), at(31)).1, DeadMark::Marked);
        assert_eq!(mark_dead(Some(&dead), fresh("m9"), at(31)).1, DeadMark::Final { state: State::Dead });

        end(&mut r, "m1", Outcome::Delivered, 40);
        assert_eq!(marked(&r, retry("m3", 5), 50), DeadMark::Final { state: State::Completed });
        assert_eq!(mark_dead(r.as_ref(), retry("m3", 5), at(50)).0, Write::Keep, "a success is never undone");
    }

    #[test]
    fn a_handed_over_letter_stands_unless_its_event_ended_otherwise() {
        use EventStatus::*;
        for status in [Delivered, Filtered, Dropped, Stale] {
            assert!(!handed_over_letter_stands(Some(status)), "{status:?}");
        }
        for status in [Dead, Accepted, Retrying, Paused] {
            assert!(handed_over_letter_stands(Some(status)), "{status:?}");
        }
        assert!(handed_over_letter_stands(None));
    }

    #[test]
    fn shards_are_stable_and_spread() {
        assert_eq!(shard_of("stripe:evt_1"), shard_of("stripe:evt_1"));
        let mut counts = [0u32; SHARDS as usize];
        for i in 0..16_000 {
            counts[shard_of(&format!("s:evt_{i}")) as usize] += 1;
        }
        assert!(counts.iter().all(|&c| (850..=1150).contains(&c)), "{counts:?}");
    }

    #[test]
    fn kill_switch_outcomes_and_resuming() {
        for (outcome, state) in [
            (Outcome::Filtered, State::Filtered),
            (Outcome::Dropped, State::Dropped),
            (Outcome::Paused { attempt: 1 }, State::Paused),
            (Outcome::Stale, State::Stale),
        ] {
            let mut r = None;
            start(&mut r, fresh("m1"), 0);
            end(&mut r, "m1", outcome, 10);
            assert_eq!(self::state(&r), state);
            assert_eq!(start(&mut r, fresh("m2"), 20), Begin::Skip { state }, "a copy of a {state:?} event");
        }
        // A held event is carried on by the message that resumes it, whatever its token.
        let mut r = None;
        start(&mut r, fresh("m1"), 0);
        end(&mut r, "m1", Outcome::Paused { attempt: 4 }, 10);
        assert_eq!(r.as_ref().unwrap().owner_attempts, 4, "the attempt it resumes with");
        assert_eq!(start(&mut r, retry("resume-1", 99), 20), Begin::Go);
        end(&mut r, "resume-1", Outcome::Delivered, 30);
        assert_eq!(self::state(&r), State::Completed);
        // Dropped and filtered events are delivered only by an explicit replay.
        let mut d = None;
        start(&mut d, fresh("m1"), 0);
        end(&mut d, "m1", Outcome::Dropped, 10);
        assert_eq!(start(&mut d, retry("x", 1), 20), Begin::Skip { state: State::Dropped });
        assert_eq!(start(&mut d, replay("r"), 30), Begin::Go);
        // So are stale ones; and a stale event is final for the dead-letter queue too.
        let mut st = None;
        start(&mut st, fresh("m1"), 0);
        end(&mut st, "m1", Outcome::Stale, 10);
        assert_eq!(start(&mut st, retry("x", 1), 20), Begin::Skip { state: State::Stale });
        let (_, mark) = mark_dead(st.as_ref(), fresh("m1"), at(30));
        assert_eq!(mark, DeadMark::Final { state: State::Stale });
        assert_eq!(start(&mut st, replay("r"), 40), Begin::Go);
    }

    #[test]
    fn state_names_round_trip() {
        for &s in <State as crate::names::Named>::VARIANTS {
            assert_eq!(State::parse(s.as_str()), Some(s));
        }
        assert_eq!(State::parse("gone"), None);
    }

    #[test]
    fn a_seal_is_granted_to_its_first_event_only_until_it_expires() {
        let clock = Clock { now_ms: 1_000, ttl_ms: 500 };
        let (write, answer) = claim_seal(None, "github:d1", clock);
        assert_eq!(answer, SealClaim::Granted);
        assert_eq!(write, Some(("github:d1".to_owned(), 1_500)));
        // The same event again (a copy, or its message redelivered): granted, nothing written.
        assert_eq!(claim_seal(Some(("github:d1", 1_500)), "github:d1", clock), (None, SealClaim::Granted));
        // Another id under the same seal: held by the first.
        assert_eq!(
            claim_seal(Some(("github:d1", 1_500)), "github:d2", clock),
            (None, SealClaim::Held { by: "github:d1".into() })
        );
        // Once the claim has expired (with the first event's record), the seal is free again.
        let later = Clock { now_ms: 1_500, ttl_ms: 500 };
        assert_eq!(
            claim_seal(Some(("github:d1", 1_500)), "github:d2", later),
            (Some(("github:d2".to_owned(), 2_000)), SealClaim::Granted)
        );
    }
}
