//! When to try a delivery again, and when to give up.
//!
//! The schedule is data (`RetryPolicy`, from each source's config) and the randomness is passed
//! in, so every decision is reproducible in a test.

/// Cloudflare Queues accept delays up to 12 hours; a longer wait is clamped to it.
pub const MAX_QUEUE_DELAY_SECS: u64 = 43_200;

/// Share of the backoff added as jitter at most, so that events that failed together do not
/// all come back in the same second.
const JITTER_SHARE: f64 = 0.2;

/// A source's retry schedule: attempt `n` (1-based) that fails waits
/// `min(base * 2^(n-1), max)` seconds plus up to 20% jitter before attempt `n+1`; attempt
/// `max_attempts` that fails is dead-lettered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub base_secs: u64,
    pub max_secs: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy { max_attempts: 8, base_secs: 10, max_secs: 21_600 }
    }
}

/// What happens after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterFailure {
    /// Try again as attempt `attempt` after `delay_secs`.
    Retry { attempt: u32, delay_secs: u32 },
    /// No attempts left.
    DeadLetter,
}

impl RetryPolicy {
    /// The backoff before the attempt after `failed_attempt`, without jitter.
    pub fn backoff_secs(&self, failed_attempt: u32) -> u64 {
        let doublings = failed_attempt.saturating_sub(1).min(63);
        self.base_secs.saturating_mul(1u64 << doublings).min(self.max_secs)
    }

    /// Decides what follows the failure of attempt `failed_attempt` (1-based).
    /// `jitter` is uniform in `[0, 1)`; `retry_after_secs` is the destination's `Retry-After`,
    /// which is honoured: the next attempt never comes sooner than it asks.
    pub fn after_failure(&self, failed_attempt: u32, jitter: f64, retry_after_secs: Option<u64>) -> AfterFailure {
        if failed_attempt >= self.max_attempts {
            return AfterFailure::DeadLetter;
        }
        let backoff = self.backoff_secs(failed_attempt);
        let jitter = (backoff as f64 * JITTER_SHARE * jitter.clamp(0.0, 1.0)) as u64;
        let delay = (backoff + jitter).max(retry_after_secs.unwrap_or(0)).min(MAX_QUEUE_DELAY_SECS);
        AfterFailure::Retry { attempt: failed_attempt + 1, delay_secs: delay as u32 }
    }
}

/// Parses a `Retry-After` value: delay-seconds, or an HTTP date (turned into seconds from `now`).
/// A date in the past means "now"; anything unparseable is ignored.
pub fn parse_retry_after(value: &str, now: i64) -> Option<u64> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(secs);
    }
    let when = httpdate::parse_http_date(value).ok()?;
    let when = when.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs() as i64;
    Some(when.saturating_sub(now).max(0) as u64)
}

/// How long a dead letter that could not be marked or stored yet waits before its next try,
/// after its `delivery`-th (1-based). The dead-letter queue has no dead-letter queue of its own,
/// and deletes a message retried `max_retries` (100) times: spaced out like this, those 100
/// tries span about three days, beyond any plausible outage of storage, where a minute apart
/// they span under two hours.
pub fn dead_letter_retry_secs(delivery: u32) -> u32 {
    const FIRST_SECS: u32 = 60;
    const MAX_SECS: u32 = 3_600;
    FIRST_SECS.saturating_mul(delivery.max(1)).min(MAX_SECS)
}

/// The dead-letter queue's `max_retries` (every dead-letter consumer in `wrangler.toml`; a test
/// holds them to it). The queue delivers a message at most this many times plus one, then
/// deletes it.
pub const DEAD_LETTER_MAX_RETRIES: u32 = 100;

/// Whether the dead-letter consumer, on the `delivery`-th try (1-based) of a letter, should give
/// up marking its event dead and store the letter all the same (unconfirmed, when the queue
/// moved it rather than the event consumer handing it over). Marking can
/// fail for as long as the event's idempotency shard cannot write (full, or broken by a bad
/// deploy); retrying it until the queue deletes the message would lose the event, where a
/// letter stored unconfirmed keeps it visible and replayable (the operator decides, since
/// another copy of the message may have completed the event). Given up one delivery before the
/// queue's last, so that a failure to store it still has the last one (and the letter then
/// goes back on the queue, marked, as every letter that cannot be stored does).
pub fn store_unmarked(delivery: u32, max_retries: u32) -> bool {
    delivery >= max_retries.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dead_letters_are_retried_for_days_not_hours() {
        assert_eq!(dead_letter_retry_secs(1), 60);
        assert_eq!(dead_letter_retry_secs(0), 60);
        assert_eq!(dead_letter_retry_secs(200), 3_600);
        let span: u64 = (1..=100).map(|d| u64::from(dead_letter_retry_secs(d))).sum();
        assert!(span > 2 * 24 * 3600 && span < 4 * 24 * 3600, "{span} s");
        assert!(u64::from(dead_letter_retry_secs(u32::MAX)) <= MAX_QUEUE_DELAY_SECS);
    }

    #[test]
    fn an_unmarkable_dead_letter_is_stored_before_the_queue_deletes_it() {
        // Tried to the queue's second-to-last delivery, stored on it; never on an earlier one.
        assert!(!store_unmarked(1, DEAD_LETTER_MAX_RETRIES));
        assert!(!store_unmarked(DEAD_LETTER_MAX_RETRIES - 1, DEAD_LETTER_MAX_RETRIES));
        assert!(store_unmarked(DEAD_LETTER_MAX_RETRIES, DEAD_LETTER_MAX_RETRIES));
        assert!(store_unmarked(DEAD_LETTER_MAX_RETRIES + 1, DEAD_LETTER_MAX_RETRIES), "the last delivery too");
        // A queue configured with no retries still stores it on its only delivery.
        assert!(store_unmarked(1, 0));
        assert!(store_unmarked(1, 1));
        // Those tries span days, as dead_letter_retry_secs promises.
        let span: u64 = (1..DEAD_LETTER_MAX_RETRIES).map(|d| u64::from(dead_letter_retry_secs(d))).sum();
        assert!(span > 2 * 24 * 3600, "{span} s");
    }

    const P: RetryPolicy = RetryPolicy { max_attempts: 8, base_secs: 10, max_secs: 21_600 };

    #[test]
    fn schedule_doubles_and_caps() {
        let delays: Vec<u64> = (1..=12).map(|n| P.backoff_secs(n)).collect();
        assert_eq!(delays, [10, 20, 40, 80, 160, 320, 640, 1280, 2560, 5120, 10240, 20480]);
        assert_eq!(P.backoff_secs(13), 21_600);
        assert_eq!(P.backoff_secs(u32::MAX), 21_600);
    }

    #[test]
    fn last_attempt_dead_letters() {
        assert_eq!(P.after_failure(7, 0.0, None), AfterFailure::Retry { attempt: 8, delay_secs: 640 });
        assert_eq!(P.after_failure(8, 0.0, None), AfterFailure::DeadLetter);
        let once = RetryPolicy { max_attempts: 1, ..P };
        assert_eq!(once.after_failure(1, 0.5, None), AfterFailure::DeadLetter);
    }

    #[test]
    fn jitter_adds_at_most_a_fifth() {
        assert_eq!(P.after_failure(3, 0.0, None), AfterFailure::Retry { attempt: 4, delay_secs: 40 });
        assert_eq!(P.after_failure(3, 0.5, None), AfterFailure::Retry { attempt: 4, delay_secs: 44 });
        assert_eq!(P.after_failure(3, 0.999, None), AfterFailure::Retry { attempt: 4, delay_secs: 47 });
        assert_eq!(P.after_failure(3, 7.0, None), AfterFailure::Retry { attempt: 4, delay_secs: 48 });
    }

    #[test]
    fn retry_after_is_a_floor_and_the_queue_limit_a_ceiling() {
        assert_eq!(P.after_failure(1, 0.0, Some(120)), AfterFailure::Retry { attempt: 2, delay_secs: 120 });
        assert_eq!(P.after_failure(1, 0.0, Some(1)), AfterFailure::Retry { attempt: 2, delay_secs: 10 });
        assert_eq!(P.after_failure(1, 0.0, Some(10_000_000)), AfterFailure::Retry { attempt: 2, delay_secs: 43_200 });
    }

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("120", 0), Some(120));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", 1_445_412_400), Some(80));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", 1_445_412_500), Some(0));
        assert_eq!(parse_retry_after("soon", 0), None);
        assert_eq!(parse_retry_after("-5", 0), None);
    }
}
