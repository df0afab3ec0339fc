//! The example handler: tells another service, in one short JSON line, what arrived.

use super::{Event, Handler, HandlerError};
use crate::http::{self, Redirects};
use futures_util::future::LocalBoxFuture;
use serde::Serialize;
use wasm_bindgen::JsValue;
use worker::{Env, Fetch, Headers};

/// POSTs `{"text": "...", "source", "id", "type", "bytes", "attempt"}` to `SUMMARY_URL`.
/// Fails (and is retried) while `SUMMARY_URL` is unset or does not answer 2xx.
pub struct Summary;

/// What is sent.
#[derive(Serialize)]
struct Line<'a> {
    attempt: u32,
    bytes: usize,
    id: &'a str,
    source: &'a str,
    text: String,
    #[serde(rename = "type")]
    event_type: Option<&'a str>,
}

impl Handler for Summary {
    fn handle<'a>(&'a self, event: Event<'a>, env: &'a Env) -> LocalBoxFuture<'a, Result<(), HandlerError>> {
        Box::pin(async move {
            let url = env
                .var("SUMMARY_URL")
                .map(|v| v.to_string())
                .map_err(|_| HandlerError::new("SUMMARY_URL is not set"))?;
            let text = format!(
                "{} event {} ({}), {} bytes",
                event.source,
                event.id,
                event.event_type.unwrap_or("no type"),
                event.body.len()
            );
            let summary = Line {
                attempt: event.attempt,
                bytes: event.body.len(),
                id: event.id,
                source: event.source,
                text,
                event_type: event.event_type,
            };
            let failed = |e: worker::Error| HandlerError::new(format!("could not send the summary: {e}"));
            let headers = Headers::new();
            headers.set("content-type", "application/json").map_err(failed)?;
            let summary = serde_json::to_string(&summary).map_err(|e| HandlerError::new(e.to_string()))?;
            let body = JsValue::from_str(&summary);
            let request = http::post(&url, &headers, &body, Redirects::Follow).map_err(failed)?;
            let response = Fetch::Request(request).send().await.map_err(failed)?;
            match response.status_code() {
                200..=299 => Ok(()),
                status => Err(HandlerError::new(format!("summary endpoint answered {status}"))),
            }
        })
    }
}
