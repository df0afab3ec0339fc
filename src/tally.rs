//! Counting what the receiver does without slowing it down.
//!
//! Each isolate adds to an in-memory [`Tally`]; the first count after a flush schedules the next
//! flush a second later, in the background of that request (`waitUntil`), which sends whatever
//! has been counted by then to the control object in one call. A provider's request never waits
//! for it, and a busy isolate costs the control object one write a second.

use crate::control::{Control, Tally};
use edgehook_core::metrics::Outcome;
use std::cell::{Cell, RefCell};
use std::time::Duration;
use worker::{console_error, Context, Delay, Env};

/// How long counts wait before they are sent (and gather company).
const FLUSH_AFTER: Duration = Duration::from_secs(1);
/// Source label for requests to sources that do not exist: their names are the sender's
/// choice, and must not become metric series.
pub const UNKNOWN_SOURCE: &str = "_unknown";

thread_local! {
    static PENDING: RefCell<Tally> = RefCell::default();
    static FLUSH_SCHEDULED: Cell<bool> = const { Cell::new(false) };
}

/// Counts one request's outcome (`reason` for rejections, else empty).
pub fn count(ctx: &Context, env: &Env, source: &str, event_type: Option<&str>, outcome: Outcome, reason: &str) {
    PENDING.with(|p| p.borrow_mut().metrics.count(source, event_type, outcome, reason, 1));
    if FLUSH_SCHEDULED.with(|f| f.replace(true)) {
        return;
    }
    let env = env.clone();
    ctx.wait_until(async move {
        Delay::from(FLUSH_AFTER).await;
        FLUSH_SCHEDULED.with(|f| f.set(false));
        let tally = PENDING.with(|p| std::mem::take(&mut *p.borrow_mut()));
        let sent = match Control::new(&env) {
            Ok(control) => control.report(tally).await,
            Err(e) => Err(e),
        };
        // Counts are not worth retrying against a control object that is down: losing a
        // second's worth is better than piling them up in every isolate.
        if let Err(e) = sent {
            console_error!("could not report receiver metrics: {e}");
        }
    });
}
