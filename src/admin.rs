//! `/admin/*`: the operator's API, every route behind `Authorization: Bearer <ADMIN_TOKEN>`;
//! and `/dashboard`, the page that asks for the token and sends it with its own API calls. The
//! page is not under `/admin/` so that everything there is JSON and answers 401 without the
//! token, as SPEC says.
//!
//! Every answer is JSON (metrics also as Prometheus text). Errors are `{"error": code}` with a
//! stable code: `unauthorized`, `not_found`, `bad_request` (with the bad `field`),
//! `unknown_source`, `body_unavailable`, `unavailable`.

use crate::blobs::{self, CapturedBody};
use crate::control::Control;
use crate::dead_letters::{self, DeadLetter};
use crate::env::{self, bindings};
use crate::http::{self, object, to_json};
use crate::idempotency::{Idempotency, ListQuery};
use crate::replay::{self, Letters};
use base64::Engine;
use edgehook_core::admin::{self, FlagPathError};
use edgehook_core::capture::{Cursor, EventQuery};
use edgehook_core::config::{valid_source_name, vars};
use edgehook_core::envelope::{self, BodyRef};
use edgehook_core::flags::Mode;
use edgehook_core::ingest::idempotency_key;
use edgehook_core::signature::token_matches;
use serde::{Deserialize, Serialize};
use worker::{console_error, console_log, Env, Method, Request, Response, Result};

/// How much of a dead letter too large to show is read for its envelope's fields.
const ENVELOPE_ROOM: u64 = 256 * 1024;

/// Most dead letters one page lists.
const PAGE: u32 = 100;
/// The dashboard: one self-contained page (no external scripts, styles or fonts).
const DASHBOARD: &str = include_str!("dashboard.html");

const EVENTS: &str = "/admin/events";
const DEAD_LETTERS: &str = "/admin/dead-letters";
const FLAGS: &str = "/admin/flags";

pub async fn handle(mut req: Request, env: &Env, path: &str, query: &str) -> Result<Response> {
    if !authorized(&req, env) {
        return http::json(401, r#"{"error":"unauthorized"}"#);
    }
    let pairs = admin::query_pairs(query);
    let param = |name: &str| admin::param(&pairs, name);
    let method = req.method();
    let deleting = method == Method::Delete;
    let answer = match (method, path) {
        (Method::Get, EVENTS) => list_events(env, &pairs).await,
        (Method::Post, "/admin/events/replay") => replay_events(env, &pairs).await,
        (Method::Get, _) if path.starts_with("/admin/events/") => {
            match admin::event_path(&path["/admin/events/".len()..], false) {
                Some((source, id)) => get_event(env, &source, &id).await,
                None => not_found(),
            }
        }
        (Method::Post, _) if path.starts_with("/admin/events/") && path.ends_with("/replay") => {
            match admin::event_path(&path["/admin/events/".len()..], true) {
                Some((source, id)) => replay_one(env, &source, &id).await,
                None => not_found(),
            }
        }
        (Method::Get, DEAD_LETTERS) => list_dead_letters(env, param("source"), param("cursor")).await,
        (Method::Post, "/admin/dead-letters/replay") => replay_dead_letters(env, param("source"), param("id")).await,
        (Method::Get | Method::Delete, _) if path.starts_with("/admin/dead-letters/") => {
            dead_letter(env, &path["/admin/dead-letters/".len()..], deleting).await
        }
        (Method::Get, FLAGS) => get_flags(env).await,
        (Method::Put, _) if path.starts_with("/admin/flags/") => {
            let body = req.text().await.unwrap_or_default();
            set_flag(env, &path["/admin/flags/".len()..], &body).await
        }
        (Method::Get, "/admin/metrics") => metrics(env, param("format").as_deref() == Some("json")).await,
        (Method::Get, "/admin/health") => health(env).await,
        _ => not_found(),
    };
    let mut response = match answer {
        Ok(response) => response,
        // Storage trouble: said plainly, details only in the log.
        Err(e) => {
            console_error!("admin {path}: {e}");
            http::json(503, r#"{"error":"unavailable"}"#)?
        }
    };
    // Captured bodies and headers are in these answers: no cache may keep them.
    response.headers_mut().set("cache-control", "no-store")?;
    Ok(response)
}

/// `GET /dashboard`: the page, no token needed to load it.
pub fn dashboard() -> Result<Response> {
    let headers = worker::Headers::new();
    headers.set("content-type", "text/html; charset=utf-8")?;
    // The page only talks to this origin and embeds nothing from elsewhere.
    headers.set(
        "content-security-policy",
        "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; \
         img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    )?;
    headers.set("cache-control", "no-store")?;
    Ok(Response::ok(DASHBOARD)?.with_headers(headers))
}

/// `GET /health`: no token, no details.
pub async fn public_health(env: &Env) -> Result<Response> {
    let config = env::config(env);
    let report = match Control::new(env) {
        Ok(control) => control.health(&config.settings).await,
        Err(e) => Err(e),
    };
    match report {
        Ok(r) if r.status == edgehook_core::health::Status::Ok => http::json(200, r#"{"status":"ok"}"#),
        Ok(_) => http::json(503, r#"{"status":"degraded"}"#),
        Err(e) => {
            console_error!("health: {e}");
            http::json(503, r#"{"status":"degraded"}"#)
        }
    }
}

fn not_found() -> Result<Response> {
    http::json(404, r#"{"error":"not_found"}"#)
}

fn bad_request(field: &str) -> Result<Response> {
    http::json(400, format!(r#"{{"error":"bad_request","field":{}}}"#, edgehook_core::json::quote(field)))
}

/// Unset `ADMIN_TOKEN` locks everyone out rather than letting everyone in.
fn authorized(req: &Request, env: &Env) -> bool {
    let configured = env::string_binding(env, vars::ADMIN_TOKEN).unwrap_or_default();
    let presented = req.headers().get("authorization").ok().flatten().unwrap_or_default();
    let token = presented.strip_prefix("Bearer ").unwrap_or("");
    token_matches(token, &configured)
}

fn store(env: &Env) -> Result<Idempotency> {
    Idempotency::new(env)
}

fn query(pairs: &[(String, String)]) -> std::result::Result<EventQuery, String> {
    EventQuery::parse(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
}

/// `GET /admin/events?source=&status=&type=&limit=&cursor=`: newest first.
async fn list_events(env: &Env, pairs: &[(String, String)]) -> Result<Response> {
    let q = match query(pairs) {
        Ok(q) => q,
        Err(field) => return bad_request(&field),
    };
    let events = store(env)?
        .list(ListQuery {
            source: q.source.clone(),
            states: q.status.map(|s| s.states().iter().map(|st| st.as_str().to_owned()).collect()),
            event_type: q.event_type.clone(),
            limit: q.limit as u32,
            before: q.before.map(|c| (c.received_at_ms, c.key)),
        })
        .await?;
    let cursor = (events.len() == q.limit)
        .then(|| events.last())
        .flatten()
        .map(|e| Cursor { received_at_ms: e.received_at_ms, key: idempotency_key(&e.source, &e.id) }.encode());
    http::json(200, object(&[("cursor", to_json(&cursor)?), ("events", to_json(&events)?)]))
}

/// `GET /admin/events/{source}/{id}`: headers, the exact body, every attempt.
async fn get_event(env: &Env, source: &str, id: &str) -> Result<Response> {
    let Some(event) = store(env)?.get(&idempotency_key(source, id)).await? else {
        return not_found();
    };
    let (headers, captured) = blobs::load_capture(env, &event.capture, admin::MAX_BODY_SHOWN).await?;
    let c = &event.capture;
    let headers: Vec<Header> = headers.iter().map(|(name, value)| Header { name, value }).collect();
    let body = match &captured {
        CapturedBody::Bytes(bytes) => Some(bytes),
        CapturedBody::Omitted | CapturedBody::Gone => None,
    };
    let reply = object(&[
        ("attempt_count", to_json(&event.attempt_count)?),
        ("attempts", to_json(&event.attempts)?),
        // The body as text when it is UTF-8, and as base64 (the exact bytes), unless it is gone
        // or too large to show.
        ("body", to_json(&body.and_then(|b| std::str::from_utf8(b).ok()))?),
        ("body_available", to_json(&!matches!(captured, CapturedBody::Gone))?),
        ("body_base64", to_json(&body.map(|b| base64::engine::general_purpose::STANDARD.encode(b)))?),
        ("body_omitted", to_json(&matches!(captured, CapturedBody::Omitted))?),
        ("content_type", to_json(&c.content_type)?),
        ("headers", to_json(&headers)?),
        ("id", to_json(&c.id)?),
        ("received_at_ms", to_json(&c.received_at_ms)?),
        ("replays", to_json(&event.replays)?),
        ("source", to_json(&c.source)?),
        ("status", to_json(&event.status)?),
        ("type", to_json(&c.event_type)?),
        ("updated_ms", to_json(&event.updated_ms)?),
    ]);
    http::json(200, reply)
}

/// A captured header, as an event's answer lists it.
#[derive(Serialize)]
struct Header<'a> {
    name: &'a str,
    value: &'a str,
}

/// `POST /admin/events/{source}/{id}/replay`.
async fn replay_one(env: &Env, source: &str, id: &str) -> Result<Response> {
    if !replay::replay_event(env, &store(env)?, source, id).await? {
        return not_found();
    }
    http::json(202, object(&[("id", to_json(id)?), ("replayed", to_json(&1)?), ("source", to_json(source)?)]))
}

/// `POST /admin/events/replay?source=&status=&type=&limit=&cursor=`: the events a listing with
/// the same filters shows, newest first (at least one filter; up to `limit`, at most 1,000 per
/// call). When more are left, `cursor` says where the next call goes on from.
async fn replay_events(env: &Env, pairs: &[(String, String)]) -> Result<Response> {
    let q = match EventQuery::parse_replay(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))) {
        Ok(q) => q,
        Err(field) => return bad_request(&field),
    };
    let (replayed, next) = replay::replay_matching(env, &store(env)?, &q).await?;
    let reply = object(&[
        ("cursor", to_json(&next.as_ref().map(Cursor::encode))?),
        ("more", to_json(&next.is_some())?),
        ("replayed", to_json(&replayed)?),
    ]);
    http::json(202, reply)
}

/// `GET /admin/dead-letters?source=&cursor=`: stored dead letters, a page at a time.
async fn list_dead_letters(env: &Env, source: Option<String>, cursor: Option<String>) -> Result<Response> {
    let prefix = match source {
        None => dead_letters::PREFIX.to_owned(),
        // Poison messages (no source of their own) are listed under `_poison`.
        Some(source) if valid_source_name(&source) || source == dead_letters::POISON_DIR => {
            format!("{}{source}/", dead_letters::PREFIX)
        }
        Some(_) => return bad_request("source"),
    };
    let listed = blobs::list(env, &prefix, PAGE, cursor.as_deref(), true).await?;
    let letters: Vec<DeadLetter> = listed.objects.iter().filter_map(|(_, m)| DeadLetter::from_metadata(m)).collect();
    http::json(200, object(&[("cursor", to_json(&listed.cursor)?), ("dead_letters", to_json(&letters)?)]))
}

/// `GET /admin/dead-letters/{source}/{id}`: one stored dead letter with its body (base64; the
/// exact bytes the provider sent) and content type.
///
/// `DELETE` (`delete`): removes a letter an operator has dealt with. The only way out of the list
/// for the letters a replay cannot take (poison, a body that was gone), which would otherwise
/// stay in the health report's count for good. The event's record is left as it is (`dead`).
/// One handler for both, so the bundle carries one copy of the path's reading.
async fn dead_letter(env: &Env, rest: &str, delete: bool) -> Result<Response> {
    let Some((source, id)) = admin::dead_letter_path(rest, dead_letters::POISON_DIR) else {
        return not_found();
    };
    let key = dead_letters::letter_key(&source, &id);
    if delete {
        // Asked with a `head`: a letter holds its event's whole body, however large.
        if !blobs::exists(env, &key).await? {
            return not_found();
        }
        env.bucket(bindings::BLOBS)?.delete(&key).await?;
        console_log!("admin: dead letter {key} deleted");
        let (id, source) = (edgehook_core::json::quote(&id), edgehook_core::json::quote(&source));
        return http::json(200, format!(r#"{{"deleted":1,"id":{id},"source":{source}}}"#));
    }
    let Some((metadata, size)) = blobs::head(env, &key).await? else {
        return not_found();
    };
    let letter = DeadLetter::from_metadata(&metadata);
    // A letter holds its event's whole body: one too large to show (`MAX_BODY_SHOWN`; the
    // envelope's own fields are a few kilobytes at most) is not read, only its envelope's fields.
    let omitted = size > admin::MAX_BODY_SHOWN + ENVELOPE_ROOM;
    let read = if omitted { ENVELOPE_ROOM.min(size) } else { size };
    let range = BodyRef::Segment { key: key.clone(), offset: 0, len: read };
    let Some(stored) = blobs::load(env, &range, &[]).await? else {
        return not_found();
    };
    let (content_type, body) = match envelope::decode(&stored) {
        // Read in part, too large to show: its fields only (they come first).
        Ok((meta, _)) if omitted => (meta.content_type, None),
        Ok((meta, inline)) if meta.body == BodyRef::Inline => (meta.content_type, Some(inline.to_vec())),
        // Its stored body was already gone when it died.
        Ok((meta, _)) => (meta.content_type, None),
        // Poison: the bytes as they were on the queue (unless too large to show).
        Err(_) => (None, Some(stored).filter(|_| !omitted)),
    };
    let reply = object(&[
        ("body_base64", to_json(&body.map(|b| base64::engine::general_purpose::STANDARD.encode(b)))?),
        ("body_omitted", to_json(&omitted)?),
        ("content_type", to_json(&content_type)?),
        ("dead_letter", to_json(&letter)?),
    ]);
    http::json(200, reply)
}

/// `POST /admin/dead-letters/replay?source=&id=`: every dead letter (of a source, or the one
/// with that id) back on the queue.
async fn replay_dead_letters(env: &Env, source: Option<String>, id: Option<String>) -> Result<Response> {
    if source.as_deref().is_some_and(|s| !valid_source_name(s)) {
        return bad_request("source");
    }
    let which = match (source.as_deref(), id.as_deref()) {
        (None, None) => Letters::All,
        (Some(source), None) => Letters::Source(source),
        (Some(source), Some(id)) if !id.is_empty() => Letters::One(source, id),
        _ => return bad_request("id"),
    };
    let (replayed, more) = replay::replay_dead_letters(env, &store(env)?, which).await?;
    http::json(202, object(&[("more", to_json(&more)?), ("replayed", to_json(&replayed)?)]))
}

async fn get_flags(env: &Env) -> Result<Response> {
    let flags = Control::new(env)?.flags_now().await?;
    http::json(200, object(&[("flags", to_json(&flags.0)?)]))
}

#[derive(Deserialize)]
struct SetFlag {
    mode: String,
}

/// `PUT /admin/flags/{source}/{event type pattern}` with `{"mode": "on"|"paused"|"dropped"}`.
/// Held events that the change releases are resumed at once.
async fn set_flag(env: &Env, rest: &str, body: &str) -> Result<Response> {
    let (source, pattern) = match admin::flag_path(rest) {
        Ok(parsed) => parsed,
        Err(FlagPathError::NotFound) => return not_found(),
        Err(FlagPathError::Bad(part)) => return bad_request(part),
    };
    let (source, pattern) = (source.as_str(), pattern.as_str());
    // Named in SOURCES is enough: a source whose configuration is broken may still have events
    // accepted before it broke, held on the queue, which an operator may want to drop or pause.
    if !env::config(env).names(source) {
        return http::json(404, r#"{"error":"unknown_source"}"#);
    }
    let Some(mode) = edgehook_core::json::from_str::<SetFlag>(body).ok().and_then(|b| Mode::parse(&b.mode)) else {
        return bad_request("mode");
    };
    let flags = Control::new(env)?.set_flag(source, pattern, mode).await?;
    let resumed =
        if mode == Mode::Paused { 0 } else { replay::resume_held(env, &store(env)?, &flags, Some(source)).await? };
    let flag = flags.0.iter().find(|f| f.source == source && f.pattern == pattern);
    http::json(200, object(&[("flag", to_json(&flag)?), ("resumed", to_json(&resumed)?)]))
}

/// `GET /admin/metrics`: Prometheus text, or JSON with `?format=json`.
async fn metrics(env: &Env, json: bool) -> Result<Response> {
    let metrics = Control::new(env)?.metrics().await?;
    if json {
        return http::json(200, serde_json::to_string(&metrics)?);
    }
    let headers = worker::Headers::new();
    headers.set("content-type", "text/plain; version=0.0.4; charset=utf-8")?;
    Ok(Response::ok(metrics.prometheus())?.with_headers(headers))
}

/// `GET /admin/health`: the full report.
async fn health(env: &Env) -> Result<Response> {
    let config = env::config(env);
    let report = Control::new(env)?.health(&config.settings).await?;
    http::json(200, serde_json::to_string(&report)?)
}
