//! Batching the operations of concurrent handlers into one Durable Object request per object.
//!
//! The consumer handles a batch's messages concurrently, and the operations they ask for in the
//! same turn of the event loop go out together: one request per target object, whatever number
//! of messages asked. A batch of 100 messages costs a handful of requests instead of hundreds.
//! All waiters live in one invocation, so waking one from another is allowed.

use crate::http::Json;
use futures_channel::oneshot;
use futures_util::future::join_all;
use serde_json::Value;
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::time::Duration;
use worker::{Delay, Result};

type Reply = Result<Value>;
/// Operations waiting for the next flush, with where to send each reply.
type Queued = Vec<(Json, oneshot::Sender<Reply>)>;

#[derive(Default)]
pub struct Batcher {
    /// By target: a few per turn (shards, destinations), so a list.
    queued: RefCell<Vec<(String, Queued)>>,
    flush_scheduled: Cell<bool>,
}

impl Batcher {
    /// Queues `op` for `target` and waits for its reply. The first caller of a turn flushes,
    /// after yielding once so that the other handlers can queue theirs; `send` makes one
    /// request to a target with all its operations, and answers one reply per operation.
    pub async fn submit<F, Fut>(&self, target: String, op: Json, send: F) -> Reply
    where
        F: Fn(String, Vec<Json>) -> Fut,
        Fut: Future<Output = Result<Vec<Value>>>,
    {
        let (tx, rx) = oneshot::channel();
        {
            let mut queued = self.queued.borrow_mut();
            match queued.iter_mut().find(|(t, _)| *t == target) {
                Some((_, ops)) => ops.push((op, tx)),
                None => queued.push((target, vec![(op, tx)])),
            }
        }
        if !self.flush_scheduled.replace(true) {
            Delay::from(Duration::ZERO).await;
            self.flush_scheduled.set(false);
            let queued = std::mem::take(&mut *self.queued.borrow_mut());
            join_all(queued.into_iter().map(|(target, ops)| flush(target, ops, &send))).await;
        }
        rx.await.map_err(|_| worker::Error::RustError("batched request dropped".into()))?
    }
}

async fn flush<F, Fut>(target: String, queued: Queued, send: &F)
where
    F: Fn(String, Vec<Json>) -> Fut,
    Fut: Future<Output = Result<Vec<Value>>>,
{
    let (ops, senders): (Vec<Json>, Vec<_>) = queued.into_iter().unzip();
    match send(target.clone(), ops).await {
        Ok(replies) if replies.len() == senders.len() => {
            for (tx, reply) in senders.into_iter().zip(replies) {
                let _ = tx.send(Ok(reply));
            }
        }
        outcome => {
            let why = match outcome {
                Err(e) => e.to_string(),
                Ok(replies) => format!("{} replies to {} operations", replies.len(), senders.len()),
            };
            for tx in senders {
                let _ = tx.send(Err(worker::Error::RustError(format!("{target}: {why}"))));
            }
        }
    }
}
