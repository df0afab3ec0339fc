//! The dead-letter consumer: store every dead letter durably, mark it dead, and alert.
//!
//! Dead letters arrive two ways: sent by the event consumer after an event's last attempt (with
//! its last error), or moved here by Cloudflare Queues after the event consumer itself kept
//! failing on a message (`max_retries`). Both are stored in R2 under
//! `dead-letters/<source>/<event id>` as the envelope (metadata and body, or the body's R2 key)
//! with the facts an operator needs in the object's metadata. Bytes that are not an envelope at
//! all are stored under `dead-letters/_poison/`.

use crate::env::{self, bindings};
use crate::idempotency::Idempotency;
use crate::queue;
use edgehook_core::config::Config;
use edgehook_core::envelope::{self, EventMeta};
use edgehook_core::ingest::idempotency_key;
use futures_util::future::join_all;
use serde::Serialize;
use std::collections::HashMap;
use wasm_bindgen::JsValue;
use worker::{
    console_error, Env, Fetch, Headers, MessageBatch, MessageExt, Method, QueueRetryOptionsBuilder, RawMessage,
    Request, RequestInit, Result,
};

pub const PREFIX: &str = "dead-letters/";
const POISON_DIR: &str = "_poison";
/// A failed store or alert is retried after this long (up to the queue's `max_retries`).
const RETRY_SECS: u32 = 60;

/// What an operator sees of a dead letter (admin API, alerts).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DeadLetter {
    pub source: String,
    pub id: String,
    #[serde(rename = "type")]
    pub event_type: Option<String>,
    pub attempts: u32,
    pub error: String,
    pub received_at_ms: Option<i64>,
    pub dead_at_ms: i64,
}

impl DeadLetter {
    fn from_meta(meta: &EventMeta, now_ms: i64) -> Self {
        DeadLetter {
            source: meta.source.clone(),
            id: meta.id.clone(),
            event_type: meta.event_type.clone(),
            attempts: meta.attempt,
            error: meta
                .last_error
                .clone()
                .unwrap_or_else(|| "the event consumer kept failing on this message (queue retries exhausted)".into()),
            received_at_ms: Some(meta.received_at_ms),
            dead_at_ms: now_ms,
        }
    }

    fn poison(message_id: &str, error: String, now_ms: i64) -> Self {
        DeadLetter {
            source: POISON_DIR.into(),
            id: message_id.to_owned(),
            event_type: None,
            attempts: 0,
            error: format!("undecodable queue message: {error}"),
            received_at_ms: None,
            dead_at_ms: now_ms,
        }
    }

    fn storage_key(&self) -> String {
        format!("{PREFIX}{}/{}", self.source, self.id)
    }

    /// Stored as R2 custom metadata (string values only).
    fn to_metadata(&self) -> HashMap<String, String> {
        let mut m = HashMap::new();
        m.insert("source".into(), self.source.clone());
        m.insert("id".into(), self.id.clone());
        if let Some(t) = &self.event_type {
            m.insert("type".into(), t.clone());
        }
        m.insert("attempts".into(), self.attempts.to_string());
        m.insert("error".into(), self.error.clone());
        if let Some(at) = self.received_at_ms {
            m.insert("received_at_ms".into(), at.to_string());
        }
        m.insert("dead_at_ms".into(), self.dead_at_ms.to_string());
        m
    }

    pub fn from_metadata(m: &HashMap<String, String>) -> Option<Self> {
        Some(DeadLetter {
            source: m.get("source")?.clone(),
            id: m.get("id")?.clone(),
            event_type: m.get("type").cloned(),
            attempts: m.get("attempts")?.parse().ok()?,
            error: m.get("error")?.clone(),
            received_at_ms: m.get("received_at_ms").and_then(|v| v.parse().ok()),
            dead_at_ms: m.get("dead_at_ms")?.parse().ok()?,
        })
    }

    fn alert_text(&self) -> String {
        let kind = self.event_type.as_deref().map(|t| format!(" ({t})")).unwrap_or_default();
        format!(
            "edgehook: event {}/{}{kind} was dead-lettered after {} attempt(s): {}",
            self.source, self.id, self.attempts, self.error
        )
    }
}

pub async fn consume(batch: MessageBatch<()>, env: Env) {
    let config = env::config(&env);
    let records = match Idempotency::new(&env) {
        Ok(records) => records,
        Err(e) => {
            console_error!("idempotency binding unavailable, retrying the dead letters: {e}");
            return batch
                .retry_all_with_options(&QueueRetryOptionsBuilder::new().with_delay_seconds(RETRY_SECS).build());
        }
    };
    let handled = batch.raw_iter().map(|message| {
        let (env, config, records) = (&env, &config, &records);
        async move {
            match store(&message, env, config, records).await {
                Ok(()) => message.ack(),
                Err(e) => {
                    console_error!("dead letter {}: could not store or alert, retrying: {e}", message.id());
                    queue::retry_later(&message, RETRY_SECS);
                }
            }
        }
    });
    join_all(handled).await;
}

async fn store(message: &RawMessage, env: &Env, config: &Config, records: &Idempotency) -> Result<()> {
    let bytes = queue::message_bytes(message).unwrap_or_else(|| queue::describe_foreign_body(message));
    let now = env::now_ms();
    let letter = match envelope::decode(&bytes) {
        Ok((meta, _)) => {
            let letter = DeadLetter::from_meta(&meta, now);
            // Idempotent for letters the consumer already marked; needed for those the queue
            // moved here itself.
            records.mark_dead(&idempotency_key(&meta.source, &meta.id)).await?;
            letter
        }
        Err(e) => DeadLetter::poison(&message.id(), e.to_string(), now),
    };
    env.bucket(bindings::BLOBS)?
        .put(letter.storage_key(), bytes)
        .custom_metadata(letter.to_metadata())
        .execute()
        .await?;
    console_error!("{}", letter.alert_text());
    if let Some(url) = &config.settings.alert_url {
        alert(url, &letter).await?;
    }
    Ok(())
}

/// POSTs the alert as JSON with a human-readable `text` (Slack-compatible) and the details.
async fn alert(url: &str, letter: &DeadLetter) -> Result<()> {
    let body = serde_json::json!({ "text": letter.alert_text(), "dead_letter": letter }).to_string();
    let headers = Headers::new();
    headers.set("content-type", "application/json")?;
    let mut init = RequestInit::new();
    init.with_method(Method::Post).with_headers(headers).with_body(Some(JsValue::from_str(&body)));
    let response = Fetch::Request(Request::new_with_init(url, &init)?).send().await?;
    if !(200..300).contains(&response.status_code()) {
        return Err(worker::Error::RustError(format!("alert endpoint answered {}", response.status_code())));
    }
    Ok(())
}
