//! # edgehook-core
//!
//! Everything edgehook decides, with no platform in sight: this crate has no `worker`
//! dependency, runs its tests natively with `cargo test`, and builds for
//! `wasm32-unknown-unknown` where the worker crate maps Cloudflare's HTTP, Durable Objects,
//! Queues and R2 onto it.
//!
//! The path of an event, and the module that decides each step:
//!
//! 1. [`config`]: which source a request is for, with its provider, secrets and policies.
//!    A broken source is reported by name and field and never served with defaults.
//! 2. [`ingest::verify`]: the provider's signature over the exact body bytes ([`providers`], one
//!    file each, built on the constant-time primitives in [`signature`]), then the event id and
//!    type. The result, [`ingest::Verified`], can only be made here, so nothing unverified
//!    reaches the queue.
//! 3. [`recent`] lets the receiver answer `duplicate` for ids it accepted lately; [`idempotency`]
//!    is the authority: a pure state machine over one record per `(source, event id)` that the
//!    consumer applies in a Durable Object (a lease per delivery, one retry chain per event,
//!    skip what is already in hand).
//! 4. [`envelope`]: the binary queue message, with the body inline up to the queue's limit and
//!    in R2 beyond it.
//! 5. [`forward`] and [`retry`]: the signed delivery, how its answer is judged, and the backoff
//!    schedule up to the dead letter.
//!
//! Time and randomness are always passed in (`now_ms`, `jitter`), and every error is an enum
//! with a stable code ([`error::Rejection`]).

pub mod admin;
pub mod capture;
pub mod config;
pub mod envelope;
pub mod error;
pub mod flags;
pub mod forward;
pub mod gate;
pub mod headers;
pub mod health;
pub mod idempotency;
pub mod ingest;
pub mod json;
mod json_de;
pub mod json_path;
pub mod json_scan;
pub mod metrics;
pub mod names;
pub mod ordering;
pub mod partition;
pub mod pattern;
pub mod providers;
pub mod recent;
pub mod retry;
pub mod secret;
pub mod signature;
pub mod slots;
pub mod sort;
pub mod turns;

pub use error::Rejection;
