//! Bindings, the per-isolate configuration, the clock and randomness: the only places the
//! worker touches its environment.

use edgehook_core::config::{vars, Config};
use std::cell::RefCell;
use std::rc::Rc;
use wasm_bindgen::JsValue;
use worker::{console_error, console_warn, Env};

/// Binding names, as declared in `wrangler.toml`.
pub mod bindings {
    /// Durable Object namespace holding the idempotency records.
    pub const IDEMPOTENCY: &str = "IDEMPOTENCY";
    /// Durable Object namespace of the control object (flags, metrics, health).
    pub const CONTROL: &str = "CONTROL";
    /// Durable Object namespace of the gates (rate limit and circuit breaker per destination).
    pub const GATES: &str = "GATES";
    /// Queue producer for accepted events.
    pub const EVENTS: &str = "EVENTS";
    /// Queue producer for dead letters.
    pub const DEAD_LETTERS: &str = "DEAD_LETTERS";
    /// R2 bucket for captured and claim-checked bodies and stored dead letters.
    pub const BLOBS: &str = "BLOBS";
}

/// A queue whose name ends with this is the dead-letter queue (`edgehook-dead-letters`, and
/// `edgehook-staging-dead-letters` in staging); every other queue carries events.
pub const DEAD_LETTER_QUEUE_SUFFIX: &str = "-dead-letters";

thread_local! {
    /// Bindings cannot change within an isolate (a new secret or var is a new deployment), so
    /// the configuration is parsed once per isolate, not once per request.
    static CONFIG: RefCell<Option<Rc<Config>>> = const { RefCell::new(None) };
}

/// The configuration, parsed on first use; its problems are logged once, at that moment.
pub fn config(env: &Env) -> Rc<Config> {
    if let Some(c) = CONFIG.with(|c| c.borrow().clone()) {
        return c;
    }
    let sources = string_binding(env, vars::SOURCES);
    let config = Rc::new(Config::load(sources.as_deref(), &|name| string_binding(env, name)));
    for problem in config.problems() {
        console_error!("edgehook configuration error: {problem}");
    }
    for warning in config.warnings() {
        console_warn!("edgehook configuration: {warning}");
    }
    CONFIG.with(|c| *c.borrow_mut() = Some(config.clone()));
    config
}

/// A var or secret as text, or `None` when unset. A `wrangler.toml` var that is not a string
/// arrives as its JSON value: `[vars.SOURCES]` tables as an object, a duration written as a
/// number (`HEALTH_MAX_LAG_SECS = 60`) as a number. It reads as its JSON text, as if it had been
/// quoted (read as `None`, a number would silently leave the setting at its default).
pub fn string_binding(env: &Env, name: &str) -> Option<String> {
    let value = js_sys::Reflect::get(env, &JsValue::from_str(name)).ok()?;
    if value.is_undefined() || value.is_null() {
        return None;
    }
    value.as_string().or_else(|| js_sys::JSON::stringify(&value).ok()?.as_string())
}

/// Wall-clock time in Unix milliseconds.
pub fn now_ms() -> i64 {
    js_sys::Date::now() as i64
}

/// Random bytes from the platform's CSPRNG.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    // Not `expect`: printing getrandom's error would link its table of every platform's error
    // texts (about 600 bytes), for a failure Workers cannot have.
    if getrandom::getrandom(&mut buf).is_err() {
        panic!("the platform CSPRNG is unavailable");
    }
    buf
}

/// A claim token: 53 random bits, so it survives JavaScript numbers and SQLite integers intact.
pub fn random_token() -> u64 {
    u64::from_le_bytes(random_bytes::<8>()) & ((1u64 << 53) - 1)
}

/// A uniform number in `[0, 1)` for retry jitter.
pub fn random_unit() -> f64 {
    (u64::from_le_bytes(random_bytes::<8>()) >> 11) as f64 / (1u64 << 53) as f64
}

/// A random lower-case hex id, for storage keys.
pub fn random_id() -> String {
    edgehook_core::signature::to_hex(&random_bytes::<16>())
}
