//! In-worker handlers: Rust code that processes events inside the worker, instead of forwarding
//! them to a destination.
//!
//! Implement [`Handler`] and register it in [`registry`] for a source and an event-type
//! pattern. An event that a registration matches is given to that handler (the first match
//! wins) and is not forwarded; every other event is forwarded as usual. A handler gets exactly
//! what forwarding gets: the same lease, the same at-most-once-per-outcome guarantee, and the
//! same ending. `Ok(())` completes the event; an error is a failed attempt, retried with the
//! source's backoff (honouring `retry_after_secs`) up to `max_attempts`, then dead-lettered;
//! a handler that runs past `delivery_timeout_secs` is stopped and counts as failed. Like a
//! destination, a handler may see an event again if the outcome of its first run was lost
//! (the worker died before recording it), so it should be idempotent on `event.id`.

mod summary;

pub use summary::Summary;

use edgehook_core::pattern::Pattern;
use futures_util::future::LocalBoxFuture;
use std::rc::Rc;
use worker::Env;

/// An event, as a handler sees it.
#[derive(Debug, Clone, Copy)]
pub struct Event<'a> {
    pub source: &'a str,
    pub id: &'a str,
    pub event_type: Option<&'a str>,
    pub content_type: Option<&'a str>,
    /// When edgehook accepted it (Unix milliseconds).
    pub received_at_ms: i64,
    /// This attempt, 1-based.
    pub attempt: u32,
    /// Run for an explicit replay.
    pub replay: bool,
    /// The exact bytes the provider sent.
    pub body: &'a [u8],
}

impl Event<'_> {
    /// The body parsed as JSON.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, HandlerError> {
        edgehook_core::json::from_slice(self.body)
            .map_err(|e| HandlerError::new(format!("body is not the JSON expected: {e}")))
    }
}

/// Why a handler's attempt failed. The message is recorded with the attempt (and in the dead
/// letter): never put secrets in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandlerError {
    pub message: String,
    /// Try again no sooner than this (like a destination's `Retry-After`).
    pub retry_after_secs: Option<u64>,
}

impl HandlerError {
    pub fn new(message: impl Into<String>) -> Self {
        HandlerError { message: message.into(), retry_after_secs: None }
    }
}

/// Processes events inside the worker.
pub trait Handler {
    fn handle<'a>(&'a self, event: Event<'a>, env: &'a Env) -> LocalBoxFuture<'a, Result<(), HandlerError>>;
}

/// One handler, for the events of `source` whose type matches `events`.
pub struct Registration {
    pub source: &'static str,
    pub events: &'static str,
    pub handler: Rc<dyn Handler>,
}

/// Every handler, in the order they are tried. Add yours here:
///
/// ```ignore
/// Registration { source: "stripe", events: "invoice.paid", handler: Rc::new(MyHandler) },
/// ```
fn registry() -> Vec<Registration> {
    vec![
        // The example from the README: POSTs a one-line summary of each event of the source
        // `example-summary` to the URL in the `SUMMARY_URL` variable.
        Registration { source: "example-summary", events: "*", handler: Rc::new(Summary) },
    ]
}

thread_local! {
    static REGISTRY: Vec<Registration> = registry();
}

/// The handler registered for this event, if any.
pub fn find(source: &str, event_type: Option<&str>) -> Option<Rc<dyn Handler>> {
    REGISTRY.with(|registry| {
        registry
            .iter()
            .find(|r| r.source == source && Pattern::parse(r.events).is_some_and(|p| p.matches(event_type)))
            .map(|r| r.handler.clone())
    })
}
