//! Gates: the rate limit and circuit breaker of each destination (see `edgehook_core::gate`),
//! one Durable Object per destination URL, so both hold across every consumer instance.
//!
//! The consumer asks for a pass before each delivery and reports the answer after it; the
//! requests of one consumer batch for one destination travel together (see [`crate::batch`]).

use crate::batch::Batcher;
use crate::billing::{self, Op as Billed};
use crate::env::{bindings, now_ms};
use crate::http::{array, from_json, items, to_json, Json};
use crate::rpc;
use edgehook_core::gate::{Answer, GateState, Limits, Pass};
use edgehook_core::json::Fields;
use edgehook_core::signature::sha256_hex;
use serde::Serialize;
use serde_json::Value;
use std::cell::RefCell;
use worker::wasm_bindgen::JsValue;
use worker::wasm_bindgen_futures::JsFuture;
use worker::worker_sys::{DurableObjectState, DurableObjectStorage};
use worker::{durable_object, DurableObject, Env, ObjectNamespace, Request, Response, Result, State as ObjectState};

/// How long a delivery waits in the consumer for a turn that is close; later turns are
/// deferred through the queue.
const MAX_WAIT_MS: i64 = 2_000;

#[derive(Debug, Serialize)]
enum Op {
    Acquire {
        limits: Limits,
        probe_timeout_ms: i64,
        jitter: f64,
    },
    Report {
        limits: Limits,
        answer: Answer,
        probe: bool,
    },
    State,
    /// Test builds only: the object forgets the state it holds in memory, as a restarted object
    /// would, and its next read of the stored state fails (`/__faults/ask`).
    #[cfg(feature = "faults")]
    RestartFailingRead,
}

impl Op {
    /// Reads the operations of one call, by hand from a [`Value`], as the idempotency shards
    /// read theirs (`edgehook_core::json::Fields`): serde's derived deserialisers cost more wasm.
    fn read_all(text: &str) -> Result<Vec<Op>> {
        let values = items(text, "operations")?;
        values
            .into_iter()
            .map(Op::from_value)
            .collect::<std::result::Result<_, String>>()
            .map_err(worker::Error::RustError)
    }

    fn from_value(value: Value) -> std::result::Result<Op, String> {
        let (name, mut f) = edgehook_core::json::variant(value)?;
        let limits = |f: &mut Fields| {
            let limits = Limits::from_fields(f.need_object("limits"));
            // An unreadable `limits` fails the operation (`done`); these are never used.
            f.check(limits).unwrap_or(Limits { rate_per_sec: None, failures: 0, cooldown_ms: 0, max_cooldown_ms: 0 })
        };
        let op = match name.as_str() {
            "Acquire" => Op::Acquire {
                limits: limits(&mut f),
                probe_timeout_ms: f.need_i64("probe_timeout_ms"),
                jitter: f.need_f64("jitter"),
            },
            "Report" => Op::Report {
                limits: limits(&mut f),
                answer: f.need_named("answer").unwrap_or(Answer::Failure),
                probe: f.need_bool("probe"),
            },
            "State" => Op::State,
            #[cfg(feature = "faults")]
            "RestartFailingRead" => Op::RestartFailingRead,
            other => return Err(edgehook_core::json::unknown_variant(other)),
        };
        f.done(op)
    }
}

/// The consumer's (and the cron trigger's) handle on the gates.
pub struct Gates {
    ns: ObjectNamespace,
    batcher: Batcher,
}

impl Gates {
    pub fn new(env: &Env) -> Result<Gates> {
        Ok(Gates { ns: env.durable_object(bindings::GATES)?, batcher: Batcher::default() })
    }

    async fn submit(&self, destination: &str, op: Op) -> Result<Value> {
        let op = to_json(&op)?;
        self.batcher.submit(gate_name(destination), op, |name, ops| async move { self.call(&name, &ops).await }).await
    }

    async fn call(&self, name: &str, ops: &[Json]) -> Result<Vec<Value>> {
        rpc::ask_batch(&self.ns, name, "gate", ops).await
    }

    /// A pass for one delivery to `destination`. A delivery whose turn comes within two
    /// seconds gets it; `timeout_secs` is how long the delivery may take (a probe that has not
    /// reported by then is replaced).
    pub async fn acquire(&self, destination: &str, limits: Limits, timeout_secs: u64, jitter: f64) -> Result<Pass> {
        let probe_timeout_ms = (timeout_secs as i64 * 1000).saturating_add(MAX_WAIT_MS + 5_000);
        let reply = self.submit(destination, Op::Acquire { limits, probe_timeout_ms, jitter }).await?;
        from_json(reply)
    }

    /// Reports how a delivery went; whether the circuit is open now (see `GateState::report`).
    pub async fn report(&self, destination: &str, limits: Limits, answer: Answer, probe: bool) -> Result<bool> {
        Ok(from_json(self.submit(destination, Op::Report { limits, answer, probe }).await?).unwrap_or(false))
    }

    pub async fn state(&self, destination: &str) -> Result<GateState> {
        from_json(self.submit(destination, Op::State).await?)
    }
}

/// Destinations are named by a hash of their URL (which may carry credentials).
pub(crate) fn gate_name(destination: &str) -> String {
    format!("gate-{}", sha256_hex(destination.as_bytes()))
}

/// The gate's stored state: `None` when there is none yet. A failed read is an error, not a
/// fresh gate: starting from the initial state would close an open circuit on a passing
/// storage fault, and the next write would store it closed (the caller's delivery is retried
/// instead). A stored state that reads as no `GateState` (none this release writes) is replaced
/// by a fresh one, and said in the log: kept, it would fail every delivery to the destination.
///
/// Stored as a JavaScript object with the fields `GateState` serialises to, as workers-rs's
/// typed `get` and `put` stored it, but read and written through JSON text, so that the bundle
/// needs only the JSON reader every other state already uses, not a second, `serde_wasm_bindgen`
/// one for this type (8 KB of wasm). The stored form is unchanged, so an object stored by an
/// older release reads as it did.
fn load(value: JsValue) -> Result<Option<GateState>> {
    let text = (!value.is_undefined()).then(|| js_sys::JSON::stringify(&value)).transpose()?;
    Ok(stored_state(text.map(String::from).as_deref()).unwrap_or_else(|e| {
        worker::console_error!("gate state unreadable ({e}): starting from a fresh one");
        None
    }))
}

/// The state stored as `text` (`None`: nothing stored), or why it could not be read.
fn stored_state(text: Option<&str>) -> std::result::Result<Option<GateState>, String> {
    text.map(edgehook_core::json::from_str::<GateState>).transpose().map_err(|e| e.to_string())
}

async fn store(storage: &DurableObjectStorage, gate: &GateState) -> Result<()> {
    let value: JsValue = js_sys::JSON::parse(&serde_json::to_string(gate)?)?;
    JsFuture::from(storage.put("gate", value)?).await?;
    Ok(())
}

/// One destination's gate.
// Only the handlers the class uses are exported: see `rpc::answer_over_rpc`.
#[durable_object(fetch)]
pub struct GateObject {
    state: DurableObjectState,
    /// The gate as last read or written: read from storage once per object lifetime.
    gate: RefCell<Option<GateState>>,
    /// Test builds: the next read of the stored state fails.
    #[cfg(feature = "faults")]
    fail_next_read: std::cell::Cell<bool>,
}

impl GateObject {
    async fn read_stored(&self, storage: &DurableObjectStorage) -> Result<JsValue> {
        #[cfg(feature = "faults")]
        if self.fail_next_read.replace(false) {
            return Err(worker::Error::RustError("injected fault: the gate's storage read failed".into()));
        }
        Ok(JsFuture::from(storage.get("gate")?).await?)
    }
}

impl DurableObject for GateObject {
    fn new(state: ObjectState, _env: Env) -> Self {
        GateObject {
            state: state._inner(),
            gate: RefCell::new(None),
            #[cfg(feature = "faults")]
            fail_next_read: Default::default(),
        }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        Response::ok(rpc::Answer::answer(self, req.text().await?).await?)
    }
}

rpc::answer_over_rpc!(GateObject);

impl rpc::Answer for GateObject {
    async fn answer(&self, text: String) -> Result<String> {
        let ops = Op::read_all(&text)?;
        let storage = self.state.storage()?;
        let cached = self.gate.borrow().as_ref().copied();
        let mut gate = match cached {
            Some(gate) => gate,
            None => load(self.read_stored(&storage).await?)?.unwrap_or_default(),
        };
        let before = gate;
        let now = now_ms();
        let mut replies = Vec::with_capacity(ops.len());
        for op in ops {
            let reply = match op {
                Op::Acquire { limits, probe_timeout_ms, jitter } => {
                    to_json(&gate.acquire(&limits, now, MAX_WAIT_MS, probe_timeout_ms, jitter))?
                }
                Op::Report { limits, answer, probe } => to_json(&gate.report(&limits, now, answer, probe))?,
                Op::State => to_json(&gate)?,
                #[cfg(feature = "faults")]
                Op::RestartFailingRead => {
                    self.fail_next_read.set(true);
                    to_json(&())?
                }
            };
            replies.push(reply);
        }
        if gate != before {
            store(&storage, &gate).await?;
            billing::count(Billed::DoRowWritten, 1);
        }
        *self.gate.borrow_mut() = Some(gate);
        #[cfg(feature = "faults")]
        if self.fail_next_read.get() {
            *self.gate.borrow_mut() = None;
        }
        Ok(array(&replies))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> std::result::Result<Op, String> {
        Op::from_value(serde_json::from_str(text).map_err(|e| e.to_string())?)
    }

    /// A stored gate reads back as it was written; nothing stored, or something that is no
    /// gate, starts a fresh one (the second said). Failed reads never get here: they are errors.
    #[test]
    fn stored_states_are_read_back() {
        let open = GateState { failures: 3, ..GateState::default() };
        let text = serde_json::to_string(&open).unwrap();
        assert_eq!(stored_state(Some(&text)), Ok(Some(open)));
        assert_eq!(stored_state(None), Ok(None));
        assert_eq!(
            stored_state(Some(r#"{"tat_ms":"soon"}"#)),
            Err(r#"invalid type: string "soon", expected f64"#.to_owned())
        );
    }

    /// Every operation reads back as it was written, and what is incomplete is refused.
    #[test]
    fn operations_read_back_as_written() {
        let limits = Limits { rate_per_sec: Some(2.5), failures: 5, cooldown_ms: 30_000, max_cooldown_ms: 1 << 40 };
        let unlimited = Limits { rate_per_sec: None, failures: 0, cooldown_ms: 1, max_cooldown_ms: 2 };
        let ops = [
            Op::Acquire { limits, probe_timeout_ms: 65_000, jitter: 0.25 },
            Op::Acquire { limits: unlimited, probe_timeout_ms: 1, jitter: 0.0 },
            Op::Report { limits, answer: Answer::Refused, probe: true },
            Op::Report { limits: unlimited, answer: Answer::Success, probe: false },
            Op::State,
        ];
        for op in ops {
            let text = serde_json::to_string(&op).unwrap();
            let back = read(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(format!("{back:?}"), format!("{op:?}"), "{text}");
        }
        let no_limits = r#"{"Report":{"answer":"Success","probe":false}}"#;
        assert_eq!(read(no_limits).unwrap_err(), "missing field `limits`");
        let partial = r#"{"Acquire":{"limits":{"failures":1},"probe_timeout_ms":1,"jitter":0.5}}"#;
        assert_eq!(read(partial).unwrap_err(), "missing field `cooldown_ms`");
        let unknown = r#"{"Report":{"limits":{"failures":1,"cooldown_ms":1,"max_cooldown_ms":1},"answer":"Maybe","probe":false}}"#;
        assert_eq!(read(unknown).unwrap_err(), "unknown variant `Maybe`");
        assert!(read(r#""Reset""#).is_err());
    }
}
