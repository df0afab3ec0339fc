//! Building responses and reading request headers.

use edgehook_core::headers::Headers as CoreHeaders;
use edgehook_core::providers::Handshake;
use edgehook_core::Rejection;
use serde::de::DeserializeOwned;
use serde::Serialize;
use worker::wasm_bindgen::JsValue;
use worker::web_sys;
use worker::{Headers, Request, Response, Result};

/// An operation or answer on its way to or from a Durable Object: its JSON text, written once.
/// A batch of them travels as one JSON array ([`array`]) and is parsed once on the other side,
/// where each item is read from its `serde_json::Value`. (`serde_json`'s `RawValue` would keep
/// each answer as text, but its reader needs `serde_json`'s typed parsing, which brings core's
/// float formatting into the bundle: `edgehook_core::json`.)
pub struct Json(String);

impl Json {
    pub fn into_text(self) -> String {
        self.0
    }
}

pub fn to_json<T: Serialize + ?Sized>(value: &T) -> Result<Json> {
    Ok(Json(serde_json::to_string(value)?))
}

/// Texts as one JSON array.
pub fn array(items: &[Json]) -> String {
    let mut text = String::with_capacity(2 + items.iter().map(|j| j.0.len() + 1).sum::<usize>());
    text.push('[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            text.push(',');
        }
        text.push_str(&item.0);
    }
    text.push(']');
    text
}

/// A JSON object of `members`, each value already JSON, written in the order given. Names are
/// literals that need no escaping. (An object built as a `serde_json::Value` would bring the
/// `Value` serializer into the bundle, and each value's serializer a second time.) Callers
/// list members in name order: the order these answers have had since they were built as
/// `Value`s, whose maps sort their keys.
pub fn object(members: &[(&str, Json)]) -> String {
    let mut text = String::with_capacity(2 + members.iter().map(|(n, v)| n.len() + v.0.len() + 4).sum::<usize>());
    text.push('{');
    for (i, (name, value)) in members.iter().enumerate() {
        if i > 0 {
            text.push(',');
        }
        text.push('"');
        text.push_str(name);
        text.push_str("\":");
        text.push_str(&value.0);
    }
    text.push('}');
    text
}

/// The items of a JSON array text: a batch's operations or answers (`what`, for the error).
pub fn items(text: &str, what: &str) -> Result<Vec<serde_json::Value>> {
    edgehook_core::json::items(text, what).map_err(worker::Error::RustError)
}

pub fn from_json<T: DeserializeOwned>(value: serde_json::Value) -> Result<T> {
    Ok(edgehook_core::json::from_value(value)?)
}

/// Whether a request follows redirects.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Redirects {
    Follow,
    /// A 3xx is the answer: for deliveries, which must never reach a URL nobody configured.
    Manual,
}

/// A POST of `body` to `url`, built on `web_sys` directly. workers-rs's `Request::new_with_init`
/// also converts Cloudflare's `cf` request properties (cache, image and minify options), which
/// edgehook never sets: about 12 KB of wasm (BENCHMARKS, section 4).
pub fn post(url: &str, headers: &Headers, body: &JsValue, redirects: Redirects) -> Result<Request> {
    let init = web_sys::RequestInit::new();
    init.set_method("POST");
    init.set_headers(headers.as_ref());
    init.set_body(body);
    if redirects == Redirects::Manual {
        init.set_redirect(web_sys::RequestRedirect::Manual);
    }
    let request = web_sys::Request::new_with_str_and_init(url, &init).map_err(|e| {
        worker::Error::JsError(e.as_string().unwrap_or_else(|| "invalid URL or options for Request".into()))
    })?;
    Ok(request.into())
}

/// Adapts a request's headers to the core's read-only view.
pub struct RequestHeaders<'a>(pub &'a Headers);

impl CoreHeaders for RequestHeaders<'_> {
    fn get(&self, name: &str) -> Option<String> {
        self.0.get(name).ok().flatten()
    }

    fn all(&self) -> Vec<(String, String)> {
        self.0.entries().collect()
    }
}

/// The path of a serialized URL (as the runtime gives a request's): from the first `/` after the
/// host to the query or fragment. Serialization never leaves `?` or `#` unescaped in a path.
pub fn path_of(url: &str) -> &str {
    let after_scheme = url.find("://").map_or(0, |at| at + 3);
    let Some(start) = url[after_scheme..].find('/').map(|at| after_scheme + at) else {
        return "/";
    };
    let path = &url[start..];
    &path[..path.find(['?', '#']).unwrap_or(path.len())]
}

/// The query of a serialized URL, without its `?`: up to the fragment, empty when there is
/// none. Read from the string rather than through workers-rs's `Request::url`, which parses it
/// again with the `url` crate (about 40 KB of the wasm, for a split at `?`).
pub fn query_of(url: &str) -> &str {
    let url = url.split_once('#').map_or(url, |(url, _)| url);
    url.split_once('?').map_or("", |(_, query)| query)
}

/// A JSON response with the given status and exact body.
pub fn json(status: u16, body: impl Into<String>) -> Result<Response> {
    json_with(status, body, &[])
}

fn json_with(status: u16, body: impl Into<String>, extra: &[(&str, &str)]) -> Result<Response> {
    let headers = Headers::new();
    headers.set("content-type", "application/json")?;
    for (name, value) in extra {
        headers.set(name, value)?;
    }
    Ok(Response::from_bytes(body.into().into_bytes())?.with_status(status).with_headers(headers))
}

/// The response for a rejection: its status and stable JSON body; a 503 says when to come back.
pub fn reject(rejection: &Rejection) -> Result<Response> {
    let extra: &[(&str, &str)] = match rejection {
        Rejection::Unavailable => &[("retry-after", "5")],
        _ => &[],
    };
    json_with(rejection.status(), rejection.body(), extra)
}

/// `{"status":"<status>","id":"<id>"}` with 200, keys in SPEC's order.
pub fn status(status: &str, id: &str) -> Result<Response> {
    json(200, format!(r#"{{"status":"{status}","id":{}}}"#, edgehook_core::json::quote(id)))
}

/// The answer to a provider's verification handshake, exactly as the provider expects it.
pub fn handshake(answer: &Handshake) -> Result<Response> {
    let headers = Headers::new();
    headers.set("content-type", answer.content_type)?;
    Ok(Response::from_bytes(answer.body.clone())?.with_status(answer.status).with_headers(headers))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_queries_of_serialized_urls() {
        let cases = [
            ("https://a.example/admin/events?source=s&id=1#top", "/admin/events", "source=s&id=1"),
            ("https://a.example/admin/events?", "/admin/events", ""),
            ("https://a.example/x#f?not=query", "/x", ""),
            ("https://a.example?q=1", "/", "q=1"),
            ("http://127.0.0.1:8787/health", "/health", ""),
            ("https://a.example/a/b?x=%3F%23&y=a/b?c", "/a/b", "x=%3F%23&y=a/b?c"),
        ];
        for (url, path, query) in cases {
            assert_eq!((path_of(url), query_of(url)), (path, query), "{url}");
        }
    }
}
