//! Sending envelopes to a queue: as a `Uint8Array` (V8 content type), so the bytes arrive
//! exactly as sent, with no JSON or base64 in between.

use crate::billing::{self, Op as Billed};
use futures_util::future::{join_all, AbortHandle, Abortable};
use js_sys::{Array, Object, Reflect, Uint8Array};
use std::future::Future;
use wasm_bindgen::{JsCast, JsValue};
use worker::wasm_bindgen_futures::JsFuture;
use worker::worker_sys::{Message as MessageSys, MessageBatch as MessageBatchSys, Queue as QueueSys};
use worker::{console_error, MessageExt, Queue, RawMessage, Result};

/// What becomes of a message once handled.
pub enum Decision {
    Ack,
    RetryIn(u32),
    /// Test builds only: the invocation dies here, as if its isolate were killed: nothing more
    /// of the batch runs or is settled, and the queue delivers its unsettled messages again.
    #[cfg(feature = "faults")]
    Crash,
}

/// One message of a batch, with how many times the queue has delivered it (1 the first time).
pub struct Delivery {
    pub message: RawMessage,
    /// The same message, as the runtime's object: marked for retry through it (see `retry_later`).
    sys: MessageSys,
    pub attempts: u32,
    /// The message's size in billing units (64 KB each), counted when read and deleted.
    units: u64,
}

/// A batch as the queue handler receives it.
pub struct Batch {
    pub queue: String,
    pub messages: Vec<Delivery>,
    sys: MessageBatchSys,
}

impl Batch {
    pub fn new(sys: MessageBatchSys) -> Batch {
        let queue = sys.queue().map(String::from).unwrap_or_default();
        let messages = sys
            .messages()
            .map(|array| {
                array
                    .iter()
                    .map(|value| {
                        let attempts = js_sys::Reflect::get(&value, &JsValue::from_str("attempts"))
                            .ok()
                            .and_then(|a| a.as_f64())
                            .map_or(1, |a| a as u32);
                        let units = billing_units(&value);
                        billing::count(Billed::QueueRead, units);
                        let sys = value.unchecked_into::<MessageSys>();
                        let message = RawMessage::from(sys.clone());
                        Delivery { message, sys, attempts, units }
                    })
                    .collect()
            })
            .unwrap_or_default();
        Batch { queue, messages, sys }
    }

    /// Retries every message after `delay_secs` (when nothing can be done for any of them).
    pub fn retry_all(&self, delay_secs: u32) {
        let _ = self.sys.retry_all(retry_options(delay_secs));
    }
}

/// Handles every message of a batch concurrently and settles each one on its own: acknowledged,
/// retried when its handler asks, or retried after `error_retry_secs` when its handler fails.
/// Returns whether the invocation crashed (an injected fault; never in a production build).
pub async fn settle_each<'a, F, Fut>(batch: &'a Batch, error_retry_secs: u32, handle: F) -> bool
where
    F: Fn(usize, &'a Delivery) -> Fut,
    Fut: Future<Output = Result<Decision>>,
{
    let (crash, crashed) = AbortHandle::new_pair();
    let crash = &crash;
    let settled = batch.messages.iter().enumerate().map(|(i, delivery)| {
        let handled = handle(i, delivery);
        async move {
            let message = &delivery.message;
            match handled.await {
                Ok(Decision::Ack) => {
                    billing::count(Billed::QueueDelete, delivery.units);
                    message.ack()
                }
                Ok(Decision::RetryIn(secs)) => retry_later(delivery, secs),
                #[cfg(feature = "faults")]
                Ok(Decision::Crash) => crash.abort(),
                Err(e) => {
                    console_error!("queue {} message {}: failed, retrying: {e}", batch.queue, message.id());
                    retry_later(delivery, error_retry_secs);
                }
            }
        }
    });
    // Aborting drops every handler still running at its current await, like a killed isolate.
    // Whether it crashed is asked of the handle, not of the result: when the crashing message
    // is the last one running, the batch completes in the same poll as the abort, unaborted.
    let _ = Abortable::new(join_all(settled), crashed).await;
    crash.is_aborted()
}

/// A received message's size in billing units; only the test build, which counts operations,
/// reads it.
fn billing_units(_message: &JsValue) -> u64 {
    #[cfg(feature = "faults")]
    if let Some(body) =
        js_sys::Reflect::get(_message, &JsValue::from_str("body")).ok().and_then(|b| b.dyn_into::<Uint8Array>().ok())
    {
        return billing::queue_units(body.length() as usize);
    }
    1
}

// The queue binding's own `send`, `sendBatch` and `retry` are called with option objects built
// here: workers-rs converts its option structs through `serde_wasm_bindgen`, and that
// serialiser (with its cache of interned field names) was all the bundle still used it for.

/// Sends `bytes`, to be delivered after `delay_secs` (0 for now).
pub async fn send(queue: &Queue, bytes: &[u8], delay_secs: u32) -> Result<()> {
    billing::count(Billed::QueueWrite, billing::queue_units(bytes.len()));
    let options = options(delay_secs)?;
    JsFuture::from(binding(queue).send(Uint8Array::from(bytes).into(), options.into())?).await?;
    Ok(())
}

/// Sends several envelopes at once (at most 100, 256 KB in all), in order.
pub async fn send_batch(queue: &Queue, messages: &[Vec<u8>]) -> Result<()> {
    let batch = Array::new();
    for bytes in messages {
        billing::count(Billed::QueueWrite, billing::queue_units(bytes.len()));
        let message = options(0)?;
        Reflect::set(&message, &"body".into(), &Uint8Array::from(bytes.as_slice()))?;
        batch.push(&message);
    }
    JsFuture::from(binding(queue).send_batch(batch, JsValue::UNDEFINED)?).await?;
    Ok(())
}

fn binding(queue: &Queue) -> &QueueSys {
    queue.as_ref().unchecked_ref()
}

/// A message's options: sent as V8 serialises a `Uint8Array` (the bytes arrive exactly as sent),
/// delayed by `delay_secs` when not 0.
fn options(delay_secs: u32) -> Result<Object> {
    let options = Object::new();
    Reflect::set(&options, &"contentType".into(), &"v8".into())?;
    if delay_secs > 0 {
        Reflect::set(&options, &"delaySeconds".into(), &delay_secs.into())?;
    }
    Ok(options)
}

/// The bytes of a received message, or `None` when it is not binary (a poison message that did
/// not come from edgehook).
pub fn message_bytes(message: &RawMessage) -> Option<Vec<u8>> {
    let body: JsValue = message.body();
    if body.is_instance_of::<Uint8Array>() || body.is_instance_of::<js_sys::ArrayBuffer>() {
        Some(Uint8Array::new(&body).to_vec())
    } else {
        None
    }
}

/// Marks a message for redelivery after `delay_secs`. A refusal panics, as workers-rs's `ack`
/// does: the invocation then fails and the queue delivers again every message not yet settled,
/// this one included, where a message left unmarked would be taken as acknowledged.
fn retry_later(delivery: &Delivery, delay_secs: u32) {
    delivery.sys.retry(retry_options(delay_secs)).expect("a message being handled can be marked for retry");
}

/// The options of a retry: redelivered after `delay_secs`.
fn retry_options(delay_secs: u32) -> JsValue {
    let options = Object::new();
    let _ = Reflect::set(&options, &"delaySeconds".into(), &delay_secs.into());
    options.into()
}

/// Bytes standing for a message body that is not binary (JSON or text sent by something other
/// than edgehook), so that it can be stored as a dead letter and inspected.
pub fn describe_foreign_body(message: &RawMessage) -> Vec<u8> {
    let body = message.body();
    let text = body
        .as_string()
        .or_else(|| js_sys::JSON::stringify(&body).ok().and_then(|s| s.as_string()))
        .unwrap_or_else(|| "<unreadable message body>".to_owned());
    text.into_bytes()
}
