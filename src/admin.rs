//! `/admin/*`: the operator's API, behind `Authorization: Bearer <ADMIN_TOKEN>`.

use crate::dead_letters::{self, DeadLetter};
use crate::env::{self, bindings};
use crate::http;
use edgehook_core::config::{valid_source_name, vars};
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
        _ => http::json(404, r#"{"error":"not_found"}"#),
    }
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
