//! The idempotency state machine: what happens to one `(source, event id)` record.
//!
//! The worker keeps records in Durable Objects (one strongly consistent writer per record) and
//! applies these pure transitions to them. Both sides consult it:
//!
//! - **The receiver** `claim`s an id before enqueueing. The claim is `Pending` until the
//!   enqueue is known to have succeeded (`confirm` → `Accepted`) or failed (`release` deletes
//!   it, so the provider's retry is accepted: a failed enqueue leaves no trace). A copy that
//!   arrives while a claim is pending is told `InFlight` and waits for the outcome, because
//!   answering it `duplicate` before the first copy's enqueue succeeded could acknowledge an
//!   event that is then lost.
//! - **The consumer** `begin`s a delivery (taking a lease) and `finish`es it. The queue delivers
//!   at least once, so the consumer is the authority on "delivered once": a message for a
//!   `Completed` record is skipped, and a live lease makes a concurrent copy wait. A lease that
//!   expires (the consumer died mid-delivery) can be taken over, so a crashed delivery is
//!   retried, not lost.
//!
//! ```text
//!            claim            confirm            begin              finish(Delivered)
//!   (none) ───────▶ Pending ─────────▶ Accepted ───────▶ Delivering ─────────────────▶ Completed
//!                     │ release             ▲ finish(Failed) │ finish(Dead)
//!                     ▼                     └────────────────┤
//!                   (none)                                   ▼
//!                                                           Dead
//! ```
//! `begin` also accepts `Pending` (the message exists, so the enqueue succeeded even if the
//! confirmation has not arrived). Filtered events are claimed straight into `Filtered`.
//! Every write moves the record's expiry to `now + ttl`; expired records are deleted by the
//! Durable Object's alarm.

use serde::{Deserialize, Serialize};

/// A claim that has been pending this long belongs to an ingest that died between claiming and
/// confirming; a new copy of the event may take it over (the queue's dedupe in the consumer
/// covers the case where the old ingest did enqueue after all).
pub const PENDING_STALE_MS: i64 = 60_000;

/// Records are spread over this many Durable Objects by a hash of their key.
///
/// One object per event id would create an object (and, locally, a SQLite file) per event and
/// leave nothing to batch; one object for everything would serialise all traffic through a single
/// thread. 64 shards keep each object's load far below its limits at Queue-scale rates
/// (5,000 events/s per queue is about 80/s per shard) while every key still has exactly one
/// strongly consistent owner. Changing it re-homes keys, so it is a constant, not a setting.
pub const SHARDS: u32 = 64;

/// The shard that owns `key`: the first 8 bytes of its SHA-256, modulo [`SHARDS`].
pub fn shard_of(key: &str) -> u32 {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(key.as_bytes());
    let prefix: [u8; 8] = digest[..8].try_into().expect("SHA-256 has 32 bytes");
    (u64::from_be_bytes(prefix) % u64::from(SHARDS)) as u32
}

/// The life of one event id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Claimed by a receiver whose enqueue has not finished.
    Pending,
    /// Enqueued; waiting for (or between) delivery attempts.
    Accepted,
    /// A consumer is delivering it under a lease.
    Delivering,
    /// Delivered (or completed without a destination).
    Completed,
    /// Dead-lettered after its last attempt.
    Dead,
    /// Acknowledged but not delivered: its type is not in the source's `events` list.
    Filtered,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Accepted => "accepted",
            State::Delivering => "delivering",
            State::Completed => "completed",
            State::Dead => "dead",
            State::Filtered => "filtered",
        }
    }

    pub fn parse(text: &str) -> Option<State> {
        [State::Pending, State::Accepted, State::Delivering, State::Completed, State::Dead, State::Filtered]
            .into_iter()
            .find(|s| s.as_str() == text)
    }
}

/// One stored record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub state: State,
    /// The claim token of the receiver that owns a `Pending` record.
    pub token: u64,
    /// Until when a `Delivering` record's lease holds (Unix ms).
    pub lease_until_ms: i64,
    pub updated_ms: i64,
    pub expires_ms: i64,
}

/// What to do to storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Write {
    Keep,
    Put(Record),
    Delete,
}

/// Clock and TTL for one transition.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    pub now_ms: i64,
    pub ttl_ms: i64,
}

impl Clock {
    fn record(self, state: State, token: u64, lease_until_ms: i64) -> Record {
        Record { state, token, lease_until_ms, updated_ms: self.now_ms, expires_ms: self.now_ms + self.ttl_ms }
    }
}

/// The receiver's answer from `claim`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "claim", rename_all = "snake_case")]
pub enum Claim {
    /// The id is new: the caller owns it and must `confirm` or `release` with its token.
    New,
    /// Known already, in this state: answer `duplicate`.
    Duplicate { state: State },
    /// Another receiver holds a fresh pending claim: wait for its outcome and claim again.
    InFlight,
}

/// `claim`: a receiver wants to accept this id. `initial` is `Pending` for events that will be
/// enqueued and `Filtered` for events acknowledged without delivery.
pub fn claim(record: Option<Record>, token: u64, initial: State, clock: Clock) -> (Write, Claim) {
    match record {
        None => (Write::Put(clock.record(initial, token, 0)), Claim::New),
        Some(r) if r.state == State::Pending => {
            if clock.now_ms - r.updated_ms < PENDING_STALE_MS {
                (Write::Keep, Claim::InFlight)
            } else {
                (Write::Put(clock.record(initial, token, 0)), Claim::New)
            }
        }
        Some(r) => (Write::Keep, Claim::Duplicate { state: r.state }),
    }
}

/// `confirm`: the owner's enqueue succeeded.
pub fn confirm(record: Option<Record>, token: u64, clock: Clock) -> Write {
    match record {
        Some(r) if r.state == State::Pending && r.token == token => Write::Put(clock.record(State::Accepted, 0, 0)),
        _ => Write::Keep,
    }
}

/// `release`: the owner's enqueue failed; forget the claim so the provider's retry is accepted.
/// Only the owner's own pending claim is released: anything else has moved on.
pub fn release(record: Option<Record>, token: u64) -> Write {
    match record {
        Some(r) if r.state == State::Pending && r.token == token => Write::Delete,
        _ => Write::Keep,
    }
}

/// The consumer's answer from `begin`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "begin", rename_all = "snake_case")]
pub enum Begin {
    /// Deliver it; the lease is held until `lease_until_ms`.
    Go,
    /// Already delivered (or dead, or filtered): acknowledge the message without delivering.
    Skip { state: State },
    /// Another consumer holds a live lease: try again in `retry_in_ms`.
    Busy { retry_in_ms: i64 },
}

/// `begin`: a consumer is about to deliver. `replay` delivers even a completed event.
pub fn begin(record: Option<Record>, lease_ms: i64, replay: bool, clock: Clock) -> (Write, Begin) {
    let take = Write::Put(clock.record(State::Delivering, 0, clock.now_ms + lease_ms));
    match record.map(|r| (r.state, r.lease_until_ms)) {
        None | Some((State::Pending | State::Accepted, _)) => (take, Begin::Go),
        Some((State::Delivering, until)) if until > clock.now_ms => {
            (Write::Keep, Begin::Busy { retry_in_ms: until - clock.now_ms })
        }
        Some((State::Delivering, _)) => (take, Begin::Go),
        Some((state @ (State::Completed | State::Dead | State::Filtered), _)) => {
            if replay {
                (take, Begin::Go)
            } else {
                (Write::Keep, Begin::Skip { state })
            }
        }
    }
}

/// How a delivery ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The destination answered 2xx (or there is no destination).
    Delivered,
    /// This attempt failed; another will follow.
    Failed,
    /// No attempts left; the event is in the dead-letter store.
    Dead,
}

/// `finish`: a consumer reports how its delivery ended.
pub fn finish(record: Option<Record>, outcome: Outcome, clock: Clock) -> Write {
    let state = record.map(|r| r.state);
    match outcome {
        // A success is final whatever happened meanwhile.
        Outcome::Delivered => Write::Put(clock.record(State::Completed, 0, 0)),
        Outcome::Dead if state != Some(State::Completed) => Write::Put(clock.record(State::Dead, 0, 0)),
        // Release the lease so the next attempt need not wait for it to run out.
        Outcome::Failed if state == Some(State::Delivering) => Write::Put(clock.record(State::Accepted, 0, 0)),
        _ => Write::Keep,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: i64 = 1_000_000;

    fn at(now_ms: i64) -> Clock {
        Clock { now_ms, ttl_ms: TTL }
    }

    fn put(w: Write) -> Record {
        match w {
            Write::Put(r) => r,
            other => panic!("expected a put, got {other:?}"),
        }
    }

    /// Applies a write to the record, as storage would.
    fn apply(record: Option<Record>, w: Write) -> Option<Record> {
        match w {
            Write::Keep => record,
            Write::Put(r) => Some(r),
            Write::Delete => None,
        }
    }

    #[test]
    fn happy_path() {
        let (w, c) = claim(None, 7, State::Pending, at(0));
        assert_eq!(c, Claim::New);
        let r = put(w);
        assert_eq!((r.state, r.token, r.expires_ms), (State::Pending, 7, TTL));
        let r = put(confirm(Some(r), 7, at(5)));
        assert_eq!((r.state, r.expires_ms), (State::Accepted, 5 + TTL));
        let (w, b) = begin(Some(r), 30_000, false, at(10));
        assert_eq!(b, Begin::Go);
        let r = put(w);
        assert_eq!((r.state, r.lease_until_ms), (State::Delivering, 30_010));
        let r = put(finish(Some(r), Outcome::Delivered, at(20)));
        assert_eq!(r.state, State::Completed);
        assert_eq!(
            claim(Some(r), 8, State::Pending, at(30)),
            (Write::Keep, Claim::Duplicate { state: State::Completed })
        );
        assert_eq!(begin(Some(r), 30_000, false, at(30)), (Write::Keep, Begin::Skip { state: State::Completed }));
    }

    #[test]
    fn concurrent_copy_waits_while_pending_and_then_sees_the_outcome() {
        let r = put(claim(None, 1, State::Pending, at(0)).0);
        assert_eq!(claim(Some(r), 2, State::Pending, at(10)), (Write::Keep, Claim::InFlight));
        let accepted = apply(Some(r), confirm(Some(r), 1, at(20)));
        assert_eq!(claim(accepted, 2, State::Pending, at(30)).1, Claim::Duplicate { state: State::Accepted });
        let released = apply(Some(r), release(Some(r), 1));
        assert_eq!(released, None);
        assert_eq!(claim(released, 2, State::Pending, at(30)).1, Claim::New);
    }

    #[test]
    fn only_the_owner_confirms_or_releases() {
        let r = put(claim(None, 1, State::Pending, at(0)).0);
        assert_eq!(confirm(Some(r), 2, at(1)), Write::Keep);
        assert_eq!(release(Some(r), 2), Write::Keep);
        let delivering = put(begin(Some(r), 1000, false, at(1)).0);
        assert_eq!(confirm(Some(delivering), 1, at(2)), Write::Keep, "a late confirm never regresses");
        assert_eq!(release(Some(delivering), 1), Write::Keep, "a late release never forgets a queued event");
        assert_eq!(release(None, 1), Write::Keep);
    }

    #[test]
    fn stale_pending_claim_is_taken_over() {
        let r = put(claim(None, 1, State::Pending, at(0)).0);
        assert_eq!(claim(Some(r), 2, State::Pending, at(PENDING_STALE_MS - 1)).1, Claim::InFlight);
        let (w, c) = claim(Some(r), 2, State::Pending, at(PENDING_STALE_MS));
        assert_eq!(c, Claim::New);
        assert_eq!(put(w).token, 2);
        assert_eq!(confirm(Some(put(w)), 1, at(PENDING_STALE_MS + 1)), Write::Keep);
    }

    #[test]
    fn leases_serialise_deliveries_and_expire_after_a_crash() {
        let r = put(claim(None, 1, State::Pending, at(0)).0);
        let held = put(begin(Some(r), 1000, false, at(0)).0);
        assert_eq!(begin(Some(held), 1000, false, at(400)), (Write::Keep, Begin::Busy { retry_in_ms: 600 }));
        let (w, b) = begin(Some(held), 1000, false, at(1000));
        assert_eq!(b, Begin::Go, "an expired lease belongs to a consumer that died");
        assert_eq!(put(w).lease_until_ms, 2000);
    }

    #[test]
    fn begin_without_record_or_confirmation_delivers() {
        assert_eq!(begin(None, 10, false, at(0)).1, Begin::Go);
        let pending = put(claim(None, 1, State::Pending, at(0)).0);
        assert_eq!(begin(Some(pending), 10, false, at(0)).1, Begin::Go);
    }

    #[test]
    fn failure_releases_the_lease_and_dead_is_final() {
        let r = put(begin(None, 1000, false, at(0)).0);
        let r = put(finish(Some(r), Outcome::Failed, at(1)));
        assert_eq!(r.state, State::Accepted);
        assert_eq!(begin(Some(r), 1000, false, at(2)).1, Begin::Go);
        let dead = put(finish(Some(r), Outcome::Dead, at(3)));
        assert_eq!(dead.state, State::Dead);
        assert_eq!(begin(Some(dead), 1000, false, at(4)).1, Begin::Skip { state: State::Dead });
        assert_eq!(claim(Some(dead), 9, State::Pending, at(4)).1, Claim::Duplicate { state: State::Dead });
        assert_eq!(finish(Some(dead), Outcome::Failed, at(5)), Write::Keep);
    }

    #[test]
    fn a_late_failure_never_undoes_a_success() {
        let done = put(finish(None, Outcome::Delivered, at(0)));
        assert_eq!(finish(Some(done), Outcome::Failed, at(1)), Write::Keep);
        assert_eq!(finish(Some(done), Outcome::Dead, at(1)), Write::Keep);
    }

    #[test]
    fn replay_delivers_finished_events() {
        for state in [State::Completed, State::Dead, State::Filtered] {
            let r = Record { state, token: 0, lease_until_ms: 0, updated_ms: 0, expires_ms: TTL };
            assert_eq!(begin(Some(r), 10, true, at(1)).1, Begin::Go);
        }
    }

    #[test]
    fn filtered_events_are_claimed_final() {
        let (w, c) = claim(None, 1, State::Filtered, at(0));
        assert_eq!(c, Claim::New);
        let r = put(w);
        assert_eq!(r.state, State::Filtered);
        assert_eq!(claim(Some(r), 2, State::Filtered, at(1)).1, Claim::Duplicate { state: State::Filtered });
    }

    #[test]
    fn shards_are_stable_and_spread() {
        assert_eq!(shard_of("stripe:evt_1"), shard_of("stripe:evt_1"));
        let mut counts = [0u32; SHARDS as usize];
        for i in 0..6400 {
            counts[shard_of(&format!("s:evt_{i}")) as usize] += 1;
        }
        assert!(counts.iter().all(|&c| (50..=150).contains(&c)), "{counts:?}");
    }

    #[test]
    fn state_names_round_trip() {
        for s in [State::Pending, State::Accepted, State::Delivering, State::Completed, State::Dead, State::Filtered] {
            assert_eq!(State::parse(s.as_str()), Some(s));
        }
        assert_eq!(State::parse("gone"), None);
    }
}
