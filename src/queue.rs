//! Sending envelopes to a queue: as a `Uint8Array` (V8 content type), so the bytes arrive
//! exactly as sent, with no JSON or base64 in between.

use futures_util::future::join_all;
use js_sys::Uint8Array;
use std::future::Future;
use wasm_bindgen::{JsCast, JsValue};
use worker::{console_error, MessageBatch, MessageExt, Queue, QueueContentType, RawMessage, RawMessageBuilder, Result};

/// What becomes of a message once handled.
pub enum Decision {
    Ack,
    RetryIn(u32),
}

/// Handles every message of a batch concurrently and settles each one on its own: acknowledged,
/// retried when its handler asks, or retried after `error_retry_secs` when its handler fails.
/// Never fails as a whole: in workers-rs an `Err` from a queue handler would retry the whole
/// batch and reset the instance.
pub async fn settle_each<F, Fut>(batch: &MessageBatch<()>, error_retry_secs: u32, handle: F)
where
    F: Fn(RawMessage) -> Fut,
    Fut: Future<Output = (RawMessage, Result<Decision>)>,
{
    let settled = batch.raw_iter().map(|message| async {
        match handle(message).await {
            (message, Ok(Decision::Ack)) => message.ack(),
            (message, Ok(Decision::RetryIn(secs))) => retry_later(&message, secs),
            (message, Err(e)) => {
                console_error!("queue {} message {}: failed, retrying: {e}", batch.queue(), message.id());
                retry_later(&message, error_retry_secs);
            }
        }
    });
    join_all(settled).await;
}

/// Sends `bytes`, to be delivered after `delay_secs` (0 for now).
pub async fn send(queue: &Queue, bytes: &[u8], delay_secs: u32) -> Result<()> {
    let mut message = RawMessageBuilder::new(Uint8Array::from(bytes).into());
    if delay_secs > 0 {
        message = message.delay_seconds(delay_secs);
    }
    queue.send_raw(message.build_with_content_type(QueueContentType::V8)).await
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

/// Marks a message for redelivery after `delay_secs`.
pub fn retry_later(message: &RawMessage, delay_secs: u32) {
    let options = worker::QueueRetryOptionsBuilder::new().with_delay_seconds(delay_secs).build();
    message.retry_with_options(&options);
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
