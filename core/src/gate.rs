//! Downstream protection: a rate limit and a circuit breaker per destination.
//!
//! The worker keeps one [`GateState`] per destination URL in a Durable Object, so both hold
//! globally, across every consumer instance, not per isolate. Before each delivery the consumer
//! `acquire`s a pass; after it, it `report`s how the destination answered.
//!
//! **Rate limit.** A token bucket in its GCRA form: one delivery per `1/rate` seconds, with a
//! bucket of one second's worth (`rate`, at least 1) for bursts, so no window of one second sees
//! more than `rate` plus one bucket. A delivery whose turn comes within `max_wait_ms` gets that
//! turn (the consumer waits for it); a later one is deferred, and deferred deliveries are spread
//! over the future at the rate, so they do not all come back at once.
//!
//! **Circuit breaker.** `failures` consecutive failed deliveries (no answer, a network error, 5xx,
//! 408 or 429) open the circuit: deliveries wait, for `cooldown`, then one probe is let through.
//! The probe succeeding closes the circuit; failing reopens it for twice as long (up to
//! `max_cooldown`). Any answer that is not a failure means the destination is up and resets the
//! count. A probe whose report never comes (its consumer died) is replaced after its timeout.
//!
//! Waiting never uses up an attempt, and neither does a failed probe: a destination that is down
//! for hours makes its events wait, not die.

use crate::config::BreakerConfig;
use crate::json::Fields;
use serde::{Deserialize, Serialize};

/// What one destination is allowed.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Limits {
    pub rate_per_sec: Option<f64>,
    pub failures: u32,
    pub cooldown_ms: i64,
    pub max_cooldown_ms: i64,
}

impl Limits {
    /// Read by hand, as `Deserialize` reads it (see [`Fields`]).
    pub fn from_fields(mut f: Fields) -> Result<Limits, String> {
        let limits = Limits {
            rate_per_sec: f.f64("rate_per_sec"),
            failures: f.need_u32("failures"),
            cooldown_ms: f.need_i64("cooldown_ms"),
            max_cooldown_ms: f.need_i64("max_cooldown_ms"),
        };
        f.done(limits)
    }

    pub fn new(rate_per_sec: Option<f64>, breaker: BreakerConfig) -> Limits {
        Limits {
            rate_per_sec,
            failures: breaker.failures,
            cooldown_ms: (breaker.cooldown_secs * 1000) as i64,
            max_cooldown_ms: (breaker.max_cooldown_secs * 1000) as i64,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Circuit {
    #[default]
    Closed,
    /// Deliveries wait until `until_ms`.
    Open { until_ms: i64, cooldown_ms: i64 },
    /// One probe is out; others wait until it reports (or until `deadline_ms`).
    Probing { deadline_ms: i64, cooldown_ms: i64 },
}

/// A destination's gate.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct GateState {
    /// The rate limit's theoretical arrival time (ms).
    pub tat_ms: f64,
    /// Where the next deferred delivery is placed (ms).
    pub defer_ms: f64,
    /// Consecutive failures while closed.
    pub failures: u32,
    pub circuit: Circuit,
}

/// The answer to `acquire`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pass {
    /// Deliver at `at_ms` (now, or a moment later). A `probe` tests an open circuit.
    Go { at_ms: i64, probe: bool },
    /// Not now: come back after this long (without using an attempt).
    Wait { retry_after_ms: i64 },
}

/// How a delivery went, as far as the breaker is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// 2xx.
    Success,
    /// Answered, but not 2xx and not a sign of trouble (a 4xx about this event): the
    /// destination is up.
    Refused,
    /// No answer, a network error, 5xx, 408 or 429.
    Failure,
}

crate::names::by_name!(Answer: Success, Refused, Failure);

impl Answer {
    pub fn as_str(self) -> &'static str {
        match self {
            Answer::Success => "success",
            Answer::Refused => "refused",
            Answer::Failure => "failure",
        }
    }

    /// From the status code of an answer (`None`: no answer at all).
    pub fn of(status: Option<u16>) -> Answer {
        match status {
            Some(200..=299) => Answer::Success,
            None | Some(408) | Some(429) | Some(500..=599) => Answer::Failure,
            Some(_) => Answer::Refused,
        }
    }
}

/// Longest a waiting delivery is told to stay away while the circuit is probed.
const PROBE_POLL_MS: i64 = 5_000;

impl GateState {
    pub fn is_open(&self) -> bool {
        !matches!(self.circuit, Circuit::Closed)
    }

    /// A pass for one delivery at `now_ms`. `max_wait_ms`: how long the caller is willing to
    /// wait in place for its turn. `probe_timeout_ms`: how long a probe may take before another
    /// one is let through. `jitter` in `[0, 1)` spreads the deliveries that wait for a circuit.
    pub fn acquire(
        &mut self,
        limits: &Limits,
        now_ms: i64,
        max_wait_ms: i64,
        probe_timeout_ms: i64,
        jitter: f64,
    ) -> Pass {
        let spread = |span: i64| (jitter * span as f64) as i64;
        let probe = match self.circuit {
            Circuit::Closed => false,
            Circuit::Open { until_ms, cooldown_ms } if now_ms < until_ms => {
                return Pass::Wait { retry_after_ms: until_ms - now_ms + spread(cooldown_ms / 2) };
            }
            Circuit::Probing { deadline_ms, .. } if now_ms < deadline_ms => {
                return Pass::Wait {
                    retry_after_ms: (deadline_ms - now_ms).min(PROBE_POLL_MS) + spread(PROBE_POLL_MS),
                };
            }
            // Cooled down, or the last probe never reported: this delivery is the probe.
            Circuit::Open { cooldown_ms, .. } | Circuit::Probing { cooldown_ms, .. } => {
                self.circuit = Circuit::Probing { deadline_ms: now_ms + probe_timeout_ms, cooldown_ms };
                true
            }
        };
        let Some(rate) = limits.rate_per_sec else {
            return Pass::Go { at_ms: now_ms, probe };
        };
        let interval = 1000.0 / rate;
        let tolerance = (rate.max(1.0) - 1.0) * interval;
        let now = now_ms as f64;
        let tat = self.tat_ms.max(now);
        let earliest = tat - tolerance;
        if earliest - now <= max_wait_ms as f64 {
            self.tat_ms = tat + interval;
            return Pass::Go { at_ms: earliest.max(now).ceil() as i64, probe };
        }
        if probe {
            // A probe that cannot go now is no probe: let the next caller try.
            self.circuit = Circuit::Open { until_ms: now_ms, cooldown_ms: self.cooldown_or(limits) };
        }
        let at = self.defer_ms.max(earliest);
        self.defer_ms = at + interval;
        Pass::Wait { retry_after_ms: (at - now).ceil() as i64 }
    }

    fn cooldown_or(&self, limits: &Limits) -> i64 {
        match self.circuit {
            Circuit::Open { cooldown_ms, .. } | Circuit::Probing { cooldown_ms, .. } => cooldown_ms,
            Circuit::Closed => limits.cooldown_ms,
        }
    }

    /// Records how a delivery went. `probe`: it was the pass's probe.
    ///
    /// Returns whether the circuit is open (or probing) afterwards. A failed delivery that
    /// finds it so, because it opened the circuit or was under way when it opened, must not
    /// use up its event's attempt: attempts are only spent on failures while the destination
    /// still counts as up, at most `failures - 1` in a row. So a destination that is down
    /// never dead-letters an event allowed at least `failures` attempts.
    pub fn report(&mut self, limits: &Limits, now_ms: i64, answer: Answer, probe: bool) -> bool {
        self.apply(limits, now_ms, answer, probe);
        self.is_open()
    }

    fn apply(&mut self, limits: &Limits, now_ms: i64, answer: Answer, probe: bool) {
        match answer {
            Answer::Success | Answer::Refused => {
                // The destination answers: whatever the circuit was, it is closed now.
                self.failures = 0;
                self.circuit = Circuit::Closed;
            }
            Answer::Failure => match self.circuit {
                Circuit::Probing { cooldown_ms, .. } if probe => {
                    let cooldown_ms = (cooldown_ms * 2).min(limits.max_cooldown_ms).max(limits.cooldown_ms);
                    self.circuit = Circuit::Open { until_ms: now_ms + cooldown_ms, cooldown_ms };
                }
                Circuit::Closed => {
                    self.failures += 1;
                    if limits.failures > 0 && self.failures >= limits.failures {
                        self.circuit =
                            Circuit::Open { until_ms: now_ms + limits.cooldown_ms, cooldown_ms: limits.cooldown_ms };
                        self.failures = 0;
                    }
                }
                // A delivery that was already under way when the circuit opened: nothing new.
                _ => {}
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Gate objects store their state as the JavaScript object of this JSON (read and written
    /// as JSON text since 2026-12-01; written by workers-rs's `serde_wasm_bindgen` before, which
    /// gives structs and enums the same shape). What they stored must still read.
    #[test]
    fn the_stored_form_is_stable() {
        let open = GateState {
            tat_ms: 1_764_600_000_000.5,
            defer_ms: 0.0,
            failures: 2,
            circuit: Circuit::Open { until_ms: 1_764_600_030_000, cooldown_ms: 30_000 },
        };
        let text = r#"{"tat_ms":1764600000000.5,"defer_ms":0.0,"failures":2,"circuit":{"open":{"until_ms":1764600030000,"cooldown_ms":30000}}}"#;
        assert_eq!(serde_json::to_string(&open).unwrap(), text);
        assert_eq!(crate::json::from_str::<GateState>(text).unwrap(), open);
        // As `JSON.stringify` writes an object stored by any release: whole numbers without a
        // fraction, a closed circuit by its name.
        let stringified = r#"{"tat_ms":1764600000000,"defer_ms":0,"failures":0,"circuit":"closed"}"#;
        let closed = GateState { tat_ms: 1_764_600_000_000.0, ..GateState::default() };
        assert_eq!(crate::json::from_str::<GateState>(stringified).unwrap(), closed);
        let probing =
            r#"{"tat_ms":0,"defer_ms":0,"failures":0,"circuit":{"probing":{"deadline_ms":5,"cooldown_ms":6}}}"#;
        let state = crate::json::from_str::<GateState>(probing).unwrap();
        assert_eq!(state.circuit, Circuit::Probing { deadline_ms: 5, cooldown_ms: 6 });
    }

    fn limits(rate: Option<f64>, failures: u32) -> Limits {
        Limits { rate_per_sec: rate, failures, cooldown_ms: 1_000, max_cooldown_ms: 4_000 }
    }

    #[test]
    fn no_window_of_a_second_exceeds_rate_plus_a_bucket() {
        // 5,000 requests arriving in a tight loop over 3 s, at 50/s.
        let l = limits(Some(50.0), 0);
        let mut g = GateState::default();
        let mut sent = Vec::new();
        let mut deferred = 0;
        for i in 0..5_000i64 {
            let now = i * 3_000 / 5_000;
            match g.acquire(&l, now, 1_000, 30_000, 0.0) {
                Pass::Go { at_ms, .. } => {
                    assert!(at_ms >= now && at_ms - now <= 1_000);
                    sent.push(at_ms);
                }
                Pass::Wait { retry_after_ms } => {
                    assert!(retry_after_ms > 1_000);
                    deferred += 1;
                }
            }
        }
        sent.sort();
        for (i, &start) in sent.iter().enumerate() {
            let in_window = sent[i..].iter().take_while(|&&t| t < start + 1_000).count();
            assert!(in_window <= 100, "{in_window} in the second from {start}");
        }
        // A bucket at once, then the rate: about 50 + 50 × (3 s + 1 s of waiting).
        assert!((240..=260).contains(&sent.len()), "{}", sent.len());
        assert_eq!(sent.len() + deferred, 5_000);
    }

    #[test]
    fn deferrals_are_spread_at_the_rate() {
        let l = limits(Some(10.0), 0);
        let mut g = GateState::default();
        let waits: Vec<i64> = (0..100)
            .filter_map(|_| match g.acquire(&l, 0, 0, 30_000, 0.0) {
                Pass::Wait { retry_after_ms } => Some(retry_after_ms),
                Pass::Go { .. } => None,
            })
            .collect();
        assert_eq!(waits.len(), 90, "a bucket of 10 goes at once");
        assert!(waits.windows(2).all(|w| w[1] - w[0] == 100), "one every 100 ms: {waits:?}");
    }

    #[test]
    fn breaker_opens_probes_and_closes() {
        let l = limits(None, 3);
        let mut g = GateState::default();
        for t in 0..2 {
            assert_eq!(g.acquire(&l, t, 0, 500, 0.0), Pass::Go { at_ms: t, probe: false });
            g.report(&l, t, Answer::Failure, false);
        }
        // A 4xx about one event means the destination is up: the count starts over.
        g.report(&l, 2, Answer::Refused, false);
        // Failures that leave the circuit closed use attempts; the one that opens it does not.
        assert!(!g.report(&l, 3, Answer::Failure, false));
        assert!(!g.report(&l, 4, Answer::Failure, false));
        assert!(g.report(&l, 5, Answer::Failure, false));
        assert!(g.is_open());
        // Nor does one that was under way when it opened.
        assert!(g.report(&l, 6, Answer::Failure, false));
        assert_eq!(g.acquire(&l, 100, 0, 500, 0.0), Pass::Wait { retry_after_ms: 905 });
        // Cooled down: one probe, the rest wait for it.
        assert_eq!(g.acquire(&l, 1_005, 0, 500, 0.0), Pass::Go { at_ms: 1_005, probe: true });
        assert!(matches!(g.acquire(&l, 1_010, 0, 500, 0.0), Pass::Wait { .. }));
        // The probe fails: open twice as long.
        g.report(&l, 1_020, Answer::Failure, true);
        assert_eq!(g.circuit, Circuit::Open { until_ms: 3_020, cooldown_ms: 2_000 });
        // A probe that never reports is replaced after its timeout.
        assert!(matches!(g.acquire(&l, 3_020, 0, 500, 0.0), Pass::Go { probe: true, .. }));
        assert!(matches!(g.acquire(&l, 3_519, 0, 500, 0.0), Pass::Wait { .. }));
        assert!(matches!(g.acquire(&l, 3_520, 0, 500, 0.0), Pass::Go { probe: true, .. }));
        // Capped cooldown.
        g.report(&l, 3_600, Answer::Failure, true);
        assert_eq!(g.circuit, Circuit::Open { until_ms: 7_600, cooldown_ms: 4_000 });
        g.acquire(&l, 7_600, 0, 500, 0.0);
        g.report(&l, 7_650, Answer::Failure, true);
        assert_eq!(g.circuit, Circuit::Open { until_ms: 11_650, cooldown_ms: 4_000 });
        // The probe succeeds: closed, and everyone goes.
        assert!(matches!(g.acquire(&l, 11_650, 0, 500, 0.0), Pass::Go { probe: true, .. }));
        g.report(&l, 11_700, Answer::Success, true);
        assert!(!g.is_open());
        assert_eq!(g.acquire(&l, 11_701, 0, 500, 0.0), Pass::Go { at_ms: 11_701, probe: false });
    }

    #[test]
    fn waiting_for_a_circuit_is_spread() {
        let l = limits(None, 1);
        let mut g = GateState::default();
        g.report(&l, 0, Answer::Failure, false);
        let early = g.acquire(&l, 0, 0, 500, 0.0);
        let late = g.acquire(&l, 0, 0, 500, 0.99);
        assert_eq!(early, Pass::Wait { retry_after_ms: 1_000 });
        assert_eq!(late, Pass::Wait { retry_after_ms: 1_495 });
    }

    #[test]
    fn breaker_off_never_opens() {
        let l = limits(None, 0);
        let mut g = GateState::default();
        for t in 0..100 {
            g.report(&l, t, Answer::Failure, false);
        }
        assert!(!g.is_open());
    }

    #[test]
    fn answers_from_status_codes() {
        assert_eq!(Answer::of(Some(204)), Answer::Success);
        assert_eq!(Answer::of(Some(404)), Answer::Refused);
        assert_eq!(Answer::of(Some(301)), Answer::Refused);
        for failing in [None, Some(408), Some(429), Some(500), Some(503)] {
            assert_eq!(Answer::of(failing), Answer::Failure);
        }
    }
}
