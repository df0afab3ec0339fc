//! Alerts: JSON POSTed to `ALERT_URL`, with a human-readable `text` (Slack-compatible) and the
//! details beside it. Tried a few times, then only logged: an alert endpoint that is down must
//! not hold up (or retry) the work that raised the alert.

use crate::http::{self, object, Json, Redirects};
use wasm_bindgen::JsValue;
use worker::{console_error, Fetch, Headers, Result};

/// How often an alert is tried before it is only logged.
const TRIES: u32 = 3;

/// An alert's JSON object, of `members` (one of them `text`) in name order. A member that could
/// not be written is left out and logged: the alert still goes. (Nothing edgehook alerts with
/// fails to serialize.)
pub fn alert(members: Vec<(&str, Result<Json>)>) -> String {
    let mut written = Vec::with_capacity(members.len());
    for (name, value) in members {
        match value {
            Ok(value) => written.push((name, value)),
            Err(e) => console_error!("alert: `{name}` could not be written: {e}"),
        }
    }
    object(&written)
}

/// Sends `alert` (the JSON object [`alert`] wrote) to `url`, if alerts are configured.
pub async fn send(url: Option<&str>, alert: String) {
    let Some(url) = url else {
        return;
    };
    for tries in 1..=TRIES {
        match post(url, &alert).await {
            Ok(()) => return,
            // The URL is configuration, not a secret, but it may carry a token: never logged.
            Err(e) => console_error!("alert failed (try {tries} of {TRIES}): {e}"),
        }
    }
}

async fn post(url: &str, body: &str) -> Result<()> {
    let headers = Headers::new();
    headers.set("content-type", "application/json")?;
    let request = http::post(url, &headers, &JsValue::from_str(body), Redirects::Follow)?;
    let response = Fetch::Request(request).send().await?;
    if !(200..300).contains(&response.status_code()) {
        return Err(worker::Error::RustError(format!("alert endpoint answered {}", response.status_code())));
    }
    Ok(())
}
