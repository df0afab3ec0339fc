//! `/admin/*`: the operator's API, behind `Authorization: Bearer <ADMIN_TOKEN>`.

use crate::dead_letters::{self, DeadLetter};
use crate::env::{self, bindings};
use crate::http;
use base64::Engine;
use edgehook_core::config::{valid_source_name, vars};
use edgehook_core::envelope::{self, BodyRef};
use edgehook_core::signature::token_matches;
use worker::{Env, Include, Method, Request, Response, Result};

/// Most dead letters one page lists.
const PAGE: u32 = 100;

pub async fn handle(req: Request, env: &Env, path: &str) -> Result<Response> {
    if !authorized(&req, env) {
        return http::json(401, r#"{"error":"unauthorized"}"#);
    }
    match (req.method(), path) {
        (Method::Get, "/admin/dead-letters") => list_dead_letters(&req, env).await,
        (Method::Get, _) if path.starts_with(DEAD_LETTER_PATH) => {
            get_dead_letter(env, &path[DEAD_LETTER_PATH.len()..]).await
        }
        _ => not_found(),
    }
}

const DEAD_LETTER_PATH: &str = "/admin/dead-letters/";

fn not_found() -> Result<Response> {
    http::json(404, r#"{"error":"not_found"}"#)
}

/// `GET /admin/dead-letters/{source}/{id}`: one stored dead letter with its body (base64; the
/// exact bytes the provider sent) and content type.
async fn get_dead_letter(env: &Env, rest: &str) -> Result<Response> {
    let Some((source, id)) = rest.split_once('/') else {
        return not_found();
    };
    let id = percent_encoding::percent_decode_str(id).decode_utf8_lossy();
    if !(valid_source_name(source) || source == dead_letters::POISON_DIR) || id.is_empty() {
        return not_found();
    }
    let Some(object) =
        env.bucket(bindings::BLOBS)?.get(format!("{}{source}/{id}", dead_letters::PREFIX)).execute().await?
    else {
        return not_found();
    };
    let letter = object.custom_metadata().ok().and_then(|m| DeadLetter::from_metadata(&m));
    let stored = match object.body() {
        Some(body) => body.bytes().await?,
        None => Vec::new(),
    };
    let (content_type, body) = match envelope::decode(&stored) {
        Ok((meta, inline)) if meta.body == BodyRef::Inline => (meta.content_type, Some(inline.to_vec())),
        // Its claim-checked body was already gone when it died.
        Ok((meta, _)) => (meta.content_type, None),
        // Poison: the bytes as they were on the queue.
        Err(_) => (None, Some(stored)),
    };
    let reply = serde_json::json!({
        "dead_letter": letter,
        "content_type": content_type,
        "body_base64": body.map(|b| base64::engine::general_purpose::STANDARD.encode(b)),
    });
    http::json(200, reply.to_string())
}

/// Unset `ADMIN_TOKEN` locks everyone out rather than letting everyone in.
fn authorized(req: &Request, env: &Env) -> bool {
    let configured = env::string_binding(env, vars::ADMIN_TOKEN).unwrap_or_default();
    let presented = req.headers().get("authorization").ok().flatten().unwrap_or_default();
    let token = presented.strip_prefix("Bearer ").unwrap_or("");
    token_matches(token, &configured)
}

/// `GET /admin/dead-letters?source=&cursor=`: stored dead letters, oldest key first, a page at a time.
async fn list_dead_letters(req: &Request, env: &Env) -> Result<Response> {
    let url = req.url()?;
    let param = |name: &str| url.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned());
    let prefix = match param("source") {
        None => dead_letters::PREFIX.to_owned(),
        Some(source) if valid_source_name(&source) => format!("{}{source}/", dead_letters::PREFIX),
        Some(_) => return http::json(400, r#"{"error":"bad_source"}"#),
    };
    let bucket = env.bucket(bindings::BLOBS)?;
    let mut list = bucket.list().prefix(prefix).limit(PAGE).include(vec![Include::CustomMetadata]);
    if let Some(cursor) = param("cursor") {
        list = list.cursor(cursor);
    }
    let objects = list.execute().await?;
    let letters: Vec<DeadLetter> = objects
        .objects()
        .iter()
        .filter_map(|o| o.custom_metadata().ok())
        .filter_map(|m| DeadLetter::from_metadata(&m))
        .collect();
    let body = serde_json::json!({
        "dead_letters": letters,
        "cursor": if objects.truncated() { objects.cursor() } else { None },
    });
    http::json(200, body.to_string())
}
