//! Fault injection for the integration suite. Compiled only with `--features faults` (the test
//! build); a production bundle has neither this module nor its route.
//!
//! `POST /__faults/{claim|enqueue}?fail=N` makes the next N idempotency claims or enqueues fail
//! as if the store or queue were unavailable.

use crate::http;
use std::cell::Cell;
use worker::{Request, Response, Result};

thread_local! {
    static FAIL_CLAIMS: Cell<u32> = const { Cell::new(0) };
    static FAIL_ENQUEUES: Cell<u32> = const { Cell::new(0) };
}

fn take(counter: &'static std::thread::LocalKey<Cell<u32>>) -> bool {
    counter.with(|c| {
        let n = c.get();
        c.set(n.saturating_sub(1));
        n > 0
    })
}

/// Whether this claim should fail.
pub fn claim_fails() -> bool {
    take(&FAIL_CLAIMS)
}

/// Whether this enqueue should fail.
pub fn enqueue_fails() -> bool {
    take(&FAIL_ENQUEUES)
}

pub fn handle(req: &Request, path: &str) -> Result<Response> {
    let url = req.url()?;
    let fail: u32 = url.query_pairs().find(|(k, _)| k == "fail").and_then(|(_, v)| v.parse().ok()).unwrap_or(1);
    let counter = match path {
        "/__faults/claim" => &FAIL_CLAIMS,
        "/__faults/enqueue" => &FAIL_ENQUEUES,
        _ => return http::json(404, r#"{"error":"not_found"}"#),
    };
    counter.with(|c| c.set(fail));
    http::json(200, format!(r#"{{"fail":{fail}}}"#))
}
