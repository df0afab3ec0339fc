//! Fault injection for the integration suite. Compiled only with `--features faults` (the test
//! build); a production bundle has neither this module nor its route.
//!
//! Every fault names the event it hits, so tests running in parallel never trip each other's:
//! - `POST /__faults/enqueue?id=ID` makes the next enqueue of event ID fail, as if the queue
//!   were unavailable; `POST /__faults/blob?id=ID` does the same to its R2 write (large bodies);
//! - `POST /__faults/clock?now=SECS` makes signature verification run at that Unix time (empty
//!   `now` restores the real clock), so providers' documented examples, signed years ago, can be
//!   replayed through the worker;
//! - `POST /__faults/forget?key=SOURCE:ID` removes one id from this isolate's memory of accepted
//!   ids, so the next copy of that event is enqueued and must be caught by the consumer;
//! - `POST /__faults/copies?source=S&id=I&n=N` puts N copies of one event on the queue at once,
//!   as if N receivers had each accepted it;
//! - `POST /__faults/poison?kind=garbage` puts bytes that are no envelope on the event queue;
//! - `POST /__faults/poison?kind=missing-body&source=S&id=I` puts an envelope whose claim-checked
//!   body is not in R2;
//! - `POST /__faults/object?key=K` writes a small R2 object at K (say, a capture segment from
//!   an hour long past), and `GET /__faults/object?key=K` says whether it exists, so tests can
//!   watch the retention sweep.

use crate::env::bindings;
use crate::{http, queue};
use edgehook_core::envelope::{self, BodyRef, EventMeta};
use std::cell::RefCell;
use std::collections::HashSet;
use worker::{Env, Request, Response, Result};

/// Which operation a fault hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fault {
    Enqueue,
    Blob,
}

thread_local! {
    static ARMED: RefCell<HashSet<(Fault, String)>> = RefCell::default();
    static CLOCK: std::cell::Cell<Option<i64>> = const { std::cell::Cell::new(None) };
}

/// The clock signature verification runs at, when a test set one (Unix milliseconds).
pub fn verification_clock_ms() -> Option<i64> {
    CLOCK.with(|c| c.get())
}

/// Whether `fault` is armed for event `id`; disarms it.
pub fn fails(fault: Fault, id: &str) -> bool {
    ARMED.with(|a| a.borrow_mut().remove(&(fault, id.to_owned())))
}

pub async fn handle(req: &Request, env: &Env, path: &str) -> Result<Response> {
    let url = req.url()?;
    let param = |name: &str| url.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned());
    let arm = |fault| {
        ARMED.with(|a| a.borrow_mut().insert((fault, param("id").unwrap_or_default())));
        http::json(200, r#"{"armed":true}"#)
    };
    match path {
        "/__faults/enqueue" => arm(Fault::Enqueue),
        "/__faults/blob" => arm(Fault::Blob),
        "/__faults/clock" => {
            let now = param("now").and_then(|n| n.parse::<i64>().ok());
            CLOCK.with(|c| c.set(now.map(|secs| secs * 1000)));
            http::json(200, r#"{"clock":"set"}"#)
        }
        "/__faults/forget" => {
            crate::ingest::forget_recent_id(&param("key").unwrap_or_default());
            http::json(200, r#"{"forgotten":true}"#)
        }
        "/__faults/copies" => {
            let meta = event_meta(param("source"), param("id"), BodyRef::Inline);
            let bytes = envelope::encode(&meta, format!(r#"{{"id":"{}"}}"#, meta.id).as_bytes());
            let n: usize = param("n").and_then(|n| n.parse().ok()).unwrap_or(2);
            let events = env.queue(bindings::EVENTS)?;
            futures_util::future::try_join_all((0..n).map(|_| queue::send(&events, &bytes, 0))).await?;
            http::json(200, format!(r#"{{"sent":{n}}}"#))
        }
        "/__faults/poison" => {
            let bytes = match param("kind").as_deref() {
                Some("garbage") => b"this is not an edgehook envelope".to_vec(),
                Some("missing-body") => {
                    let missing = BodyRef::Stored { key: "bodies/never-stored".into(), len: 1 };
                    envelope::encode(&event_meta(param("source"), param("id"), missing), b"")
                }
                _ => return http::json(400, r#"{"error":"unknown_kind"}"#),
            };
            queue::send(&env.queue(bindings::EVENTS)?, &bytes, 0).await?;
            http::json(200, r#"{"sent":true}"#)
        }
        "/__faults/object" => {
            let key = param("key").unwrap_or_default();
            let bucket = env.bucket(bindings::BLOBS)?;
            if req.method() == worker::Method::Post {
                bucket.put(&key, b"test object".to_vec()).execute().await?;
            }
            let exists = bucket.head(&key).await?.is_some();
            http::json(200, format!(r#"{{"exists":{exists}}}"#))
        }
        _ => http::json(404, r#"{"error":"not_found"}"#),
    }
}

fn event_meta(source: Option<String>, id: Option<String>, body: BodyRef) -> EventMeta {
    let first =
        EventMeta::first_attempt(source.unwrap_or_default(), id.unwrap_or_default(), crate::env::now_ms(), body);
    EventMeta { content_type: Some("application/json".into()), ..first }
}
