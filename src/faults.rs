//! Fault injection for the integration suite. Compiled only with `--features faults` (the test
//! build); a production bundle has neither this module nor its route.
//!
//! Every fault names the event it hits, so tests running in parallel never trip each other's:
//! - `POST /__faults/enqueue?id=ID` makes the next enqueue of event ID fail, as if the queue
//!   were unavailable; `POST /__faults/blob?id=ID` does the same to its R2 write (large bodies);
//! - `POST /__faults/crash?id=ID&at=taken|delivered|recorded` kills the consumer invocation
//!   that handles event ID at that point: every other message of its batch stops wherever it
//!   is, nothing more is settled, the handler fails, and the queue redelivers what was left;
//!   `at=stored` does the same to the dead-letter consumer once it stored event ID's letter;
//! - `POST /__faults/clock?now=SECS[&source=S]` makes signature verification (of source S only,
//!   or of every source without one) run at that Unix time (empty `now` restores the real
//!   clock), so providers' documented examples and the hostile corpus, signed years ago, can be
//!   replayed through the worker;
//! - `POST /__faults/probe` makes the cron trigger's next heartbeat probe fail to enqueue, as if
//!   it were lost;
//! - `POST /__faults/lose-answer?id=ID` loses the answer to the consumer's `begin` for event
//!   ID, after the object acted on it, so that the message is retried;
//! - `POST /__faults/stale-switch?source=S&type=T&mode=M` makes the consumer's cached kill
//!   switches show mode M for S's events of type T, once, as a switch changed a moment ago in
//!   another isolate would;
//! - `POST /__faults/measure?what=shard|dead-letters` makes the cron trigger's next reading of
//!   the oldest open events (or its next count of dead letters) fail, as if an idempotency shard
//!   (or the bucket) could not be read;
//! - `POST /__faults/forget?key=SOURCE:ID` removes one id from this isolate's memory of accepted
//!   ids, so the next copy of that event is enqueued and must be caught by the consumer;
//! - `POST /__faults/copies?source=S&id=I&n=N` puts N copies of one event on the queue at once,
//!   as if N receivers had each accepted it;
//! - `POST /__faults/poison?kind=garbage[&text=T]` puts bytes that are no envelope (T, if
//!   given) on the event queue;
//! - `POST /__faults/poison?kind=unconfigured&source=S&id=I` puts an event of source S, which
//!   need not be configured (one removed after accepting it).
//! - `POST /__faults/poison?kind=missing-body&source=S&id=I` puts an envelope whose claim-checked
//!   body is not in R2;
//! - `GET /__faults/billing` counts the billable operations this isolate made (see
//!   [`crate::billing`]); `POST` reads and resets them;
//! - `GET /__faults/record?source=S&id=I` answers an event's status as the idempotency store
//!   reads it (`null` when it holds none), for the instance without an admin token;
//! - `POST /__faults/ask?object=control|gate|shard&for=X&via=fetch|rpc|old-rpc` sends the
//!   request's body, an operation's JSON text, to the control object, to destination X's gate or
//!   to the shard of idempotency key X, and answers with the object's text (or 500 and the
//!   error): by `fetch`, as a caller still running a release from before RPC asks; by RPC, as
//!   edgehook asks; or by RPC as if the object were still running such a release, so that the
//!   caller must fall back to `fetch`; a gate also takes `"RestartFailingRead"` there: it
//!   forgets the state it holds in memory, as a restarted object would, and its next read of
//!   the stored state fails;
//! - `GET /__faults/storage` says how many time partitions and stored events the idempotency
//!   shards hold, and the bytes of their databases, so tests can watch expiry drop them and
//!   measure what an event occupies;
//! - `GET /__faults/web-crypto?source=S` says how many HMACs Web Crypto computed to verify
//!   S's requests (large bodies only), so tests can tell which path verified them;
//! - `POST /__faults/verify?provider=P&impl=rust|webcrypto&size=BYTES&n=N` verifies a request
//!   signed by provider P N times, with Rust's HMAC or in two passes with Web Crypto's;
//! - `POST /__faults/hmac?impl=rust|webcrypto&size=BYTES&n=N` computes N HMAC-SHA256s of a
//!   SIZE-byte buffer with edgehook's Rust code or with Web Crypto, for the benchmarks;
//! - `POST /__faults/moved?source=S&id=I[&type=T]` puts an event's envelope on the dead-letter
//!   queue unmarked, as the queue moves a message after its `max_retries` (with
//!   `&handed-over-by=MESSAGE`: marked dead, as the event consumer hands one over);
//!   `POST /__faults/store-letter?key=SOURCE:ID` makes the dead-letter consumer's next write of
//!   that event's letter to R2 fail;
//!   `POST /__faults/mark-dead?key=SOURCE:ID` makes the dead-letter consumer's next write to
//!   that event's record (marking a moved letter's event dead, or recording a handed-over one's)
//!   fail, as with a full shard; `POST /__faults/dead-letter-retries?key=SOURCE:ID&n=N` makes
//!   the dead-letter consumer take the queue's `max_retries` to be N for that event's letters
//!   (empty `n` restores 100), so tests reach its last tries without waiting three days;
//! - `POST /__faults/finish-dead?key=SOURCE:ID` makes the event consumer's next recording of
//!   that event as dead (every try of it) fail;
//! - `POST /__faults/replay-limit?n=N` makes a replay call stop after N events or dead letters
//!   instead of 1,000 (empty `n` restores it), so tests can reach the limit;
//! - `POST /__faults/object?key=K` writes a small R2 object at K (say, a capture segment from
//!   an hour long past), and `GET /__faults/object?key=K` says whether it exists, so tests can
//!   watch the retention sweep.

use crate::env::bindings;
use crate::{http, queue};
use edgehook_core::envelope::{self, BodyRef, EventMeta};
use edgehook_core::flags::Mode;
use edgehook_core::providers::Provider;
use std::cell::RefCell;
use std::collections::HashSet;
use worker::{Env, Request, Response, Result};

/// Which operation a fault hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fault {
    Enqueue,
    Blob,
    /// The consumer dies once it holds the event's lease, before delivering it.
    CrashTaken,
    /// The consumer dies after the destination answered 2xx, before the outcome is recorded
    /// (the one place where a crash makes a second delivery: the outcome was lost).
    CrashDelivered,
    /// The consumer dies after recording the delivery, before acknowledging the message.
    CrashRecorded,
    /// The dead-letter consumer dies having stored the event's letter, before counting it and
    /// acknowledging the message.
    CrashStored,
    /// The cron trigger's next heartbeat probe is not enqueued (armed for no event: id "").
    Probe,
    /// The object's answer to the consumer's `begin` for the event is lost (after the object
    /// acted on it): the message is retried, as after any failed request.
    LoseAnswer,
    /// The cron trigger's next reading of the oldest open events (armed with id "shard") or its
    /// next count of dead letters (id "dead-letters") fails, as when storage cannot be read.
    Measure,
    /// Web Crypto fails the next computation for the source named as the id.
    WebCrypto,
    /// The dead-letter consumer's next write to the event's record (armed with its idempotency
    /// key) fails, as when its shard cannot write.
    MarkDead,
    /// The event consumer's next recording of the event (armed with its idempotency key) as
    /// dead fails, every try of it.
    FinishDead,
    /// The dead-letter consumer's next write of the event's letter to R2 (armed with its
    /// idempotency key) fails, as when the bucket cannot be written.
    StoreLetter,
    /// The next call over RPC to the Durable Object named as the id asks it for a method it
    /// does not have, as a caller asks an object still running a release from before RPC.
    OldObject,
}

thread_local! {
    static ARMED: RefCell<HashSet<(Fault, String)>> = RefCell::default();
    /// HMACs computed and public-key signatures checked by Web Crypto, per source.
    static WEB_CRYPTO: RefCell<std::collections::HashMap<String, (usize, usize)>> = RefCell::default();
    /// Verification clocks set by tests (Unix ms): per source, and for every other source.
    static CLOCKS: RefCell<(std::collections::HashMap<String, i64>, Option<i64>)> = RefCell::default();
    /// Kill switches the consumer reads as stale (source, event type) -> mode, once each.
    static STALE_SWITCHES: RefCell<std::collections::HashMap<(String, String), Mode>> = RefCell::default();
    /// A test's replay limit in place of `replay::MAX_PER_CALL`.
    static REPLAY_LIMIT: std::cell::Cell<Option<usize>> = const { std::cell::Cell::new(None) };
    /// Page size for every R2 listing, set by `/__faults/list-page?n=N` (unset without `n`),
    /// so that a test can page through cursors without storing hundreds of objects.
    static LIST_PAGE: std::cell::Cell<Option<u32>> = const { std::cell::Cell::new(None) };
    /// Tests' dead-letter `max_retries` in place of `retry::DEAD_LETTER_MAX_RETRIES`, per event.
    static DEAD_LETTER_MAX_RETRIES: RefCell<std::collections::HashMap<String, u32>> = RefCell::default();
}

/// The mode a test made the consumer's cached switches show for this event type, once.
pub fn stale_switch(source: &str, event_type: Option<&str>) -> Option<Mode> {
    let key = (source.to_owned(), event_type.unwrap_or_default().to_owned());
    STALE_SWITCHES.with(|s| s.borrow_mut().remove(&key))
}

/// The replay limit a test set, if any.
pub fn replay_limit() -> Option<usize> {
    REPLAY_LIMIT.with(|l| l.get())
}

/// The page size a test set for R2 listings, if any.
pub fn list_page() -> Option<u32> {
    LIST_PAGE.with(|l| l.get())
}

/// The dead-letter queue's `max_retries` as a test set it for the event `key`.
pub fn dead_letter_max_retries(key: &str) -> Option<u32> {
    DEAD_LETTER_MAX_RETRIES.with(|n| n.borrow().get(key).copied())
}

/// The clock signature verification runs at for `source`, when a test set one (Unix ms).
pub fn verification_clock_ms(source: &str) -> Option<i64> {
    CLOCKS.with(|c| {
        let clocks = c.borrow();
        clocks.0.get(source).copied().or(clocks.1)
    })
}

/// Counts what Web Crypto computes for `source`'s requests.
pub fn count_web_crypto(source: &str, needed: &edgehook_core::signature::Needed) {
    WEB_CRYPTO.with(|w| {
        let mut counts = w.borrow_mut();
        let (macs, checks) = counts.entry(source.to_owned()).or_default();
        *macs += needed.macs.len();
        *checks += needed.checks.len();
    });
}

/// Whether `fault` is armed for event `id`; disarms it.
pub fn fails(fault: Fault, id: &str) -> bool {
    ARMED.with(|a| a.borrow_mut().remove(&(fault, id.to_owned())))
}

pub async fn handle(req: &Request, env: &Env, path: &str, query: &str) -> Result<Response> {
    let pairs = edgehook_core::admin::query_pairs(query);
    let param = |name: &str| edgehook_core::admin::param(&pairs, name);
    // Armed for the event named by the parameter `name` (its id, or its idempotency key).
    let arm_by = |fault, name: &str| {
        ARMED.with(|a| a.borrow_mut().insert((fault, param(name).unwrap_or_default())));
        http::json(200, r#"{"armed":true}"#)
    };
    let arm = |fault| arm_by(fault, "id");
    match path {
        "/__faults/enqueue" => arm(Fault::Enqueue),
        "/__faults/blob" => arm(Fault::Blob),
        "/__faults/probe" => {
            ARMED.with(|a| a.borrow_mut().insert((Fault::Probe, String::new())));
            http::json(200, r#"{"armed":"probe"}"#)
        }
        "/__faults/lose-answer" => arm(Fault::LoseAnswer),
        "/__faults/fail-web-crypto" => arm(Fault::WebCrypto),
        "/__faults/stale-switch" => {
            let Some(mode) = param("mode").as_deref().and_then(Mode::parse) else {
                return http::json(400, r#"{"error":"mode must be on, paused or dropped"}"#);
            };
            let key = (param("source").unwrap_or_default(), param("type").unwrap_or_default());
            STALE_SWITCHES.with(|s| s.borrow_mut().insert(key, mode));
            http::json(200, r#"{"armed":"stale-switch"}"#)
        }
        "/__faults/measure" => match param("what").as_deref() {
            Some(what @ ("shard" | "dead-letters")) => {
                ARMED.with(|a| a.borrow_mut().insert((Fault::Measure, what.to_owned())));
                http::json(200, r#"{"armed":"measure"}"#)
            }
            _ => http::json(400, r#"{"error":"what must be shard or dead-letters"}"#),
        },
        "/__faults/crash" => match param("at").as_deref() {
            Some("taken") => arm(Fault::CrashTaken),
            Some("delivered") => arm(Fault::CrashDelivered),
            Some("recorded") => arm(Fault::CrashRecorded),
            Some("stored") => arm(Fault::CrashStored),
            _ => http::json(400, r#"{"error":"at must be taken, delivered, recorded or stored"}"#),
        },
        "/__faults/clock" => {
            let now_ms = param("now").and_then(|n| n.parse::<i64>().ok()).map(|secs| secs * 1000);
            CLOCKS.with(|c| {
                let mut clocks = c.borrow_mut();
                match (param("source"), now_ms) {
                    (Some(source), Some(ms)) => drop(clocks.0.insert(source, ms)),
                    (Some(source), None) => drop(clocks.0.remove(&source)),
                    (None, now_ms) => clocks.1 = now_ms,
                }
            });
            http::json(200, r#"{"clock":"set"}"#)
        }
        "/__faults/mark-dead" => arm_by(Fault::MarkDead, "key"),
        "/__faults/finish-dead" => arm_by(Fault::FinishDead, "key"),
        "/__faults/store-letter" => arm_by(Fault::StoreLetter, "key"),
        "/__faults/dead-letter-retries" => {
            let (key, n) = (param("key").unwrap_or_default(), param("n").and_then(|n| n.parse().ok()));
            DEAD_LETTER_MAX_RETRIES.with(|m| match n {
                Some(n) => drop(m.borrow_mut().insert(key, n)),
                None => drop(m.borrow_mut().remove(&key)),
            });
            http::json(200, r#"{"max_retries":"set"}"#)
        }
        "/__faults/moved" => {
            let meta =
                EventMeta { event_type: param("type"), ..event_meta(param("source"), param("id"), BodyRef::Inline) };
            let meta = match param("handed-over-by") {
                // As the event consumer hands an event over after its last attempt.
                Some(carrier) => EventMeta {
                    dead: true,
                    handed_over_by: Some(carrier),
                    last_error: Some("fault: handed over".into()),
                    ..meta
                },
                None => meta,
            };
            queue::send(&env.queue(bindings::DEAD_LETTERS)?, &small_envelope(meta), 0).await?;
            http::json(200, r#"{"sent":true}"#)
        }
        "/__faults/list-page" => {
            LIST_PAGE.with(|l| l.set(param("n").and_then(|n| n.parse().ok())));
            http::json(200, r#"{"list_page":"set"}"#)
        }
        "/__faults/replay-limit" => {
            REPLAY_LIMIT.with(|l| l.set(param("n").and_then(|n| n.parse().ok())));
            http::json(200, r#"{"limit":"set"}"#)
        }
        "/__faults/forget" => {
            crate::ingest::forget_recent_id(&param("key").unwrap_or_default());
            http::json(200, r#"{"forgotten":true}"#)
        }
        "/__faults/copies" => {
            let bytes = small_event(param("source"), param("id"));
            let n: usize = param("n").and_then(|n| n.parse().ok()).unwrap_or(2);
            let events = env.queue(bindings::EVENTS)?;
            futures_util::future::try_join_all((0..n).map(|_| queue::send(&events, &bytes, 0))).await?;
            http::json(200, format!(r#"{{"sent":{n}}}"#))
        }
        "/__faults/poison" => {
            let bytes = match param("kind").as_deref() {
                Some("garbage") => {
                    param("text").unwrap_or_else(|| "this is not an edgehook envelope".into()).into_bytes()
                }
                Some("missing-body") => {
                    let missing = BodyRef::Stored { key: "bodies/never-stored".into(), len: 1 };
                    envelope::encode(&event_meta(param("source"), param("id"), missing), b"")
                }
                // An event as a source accepted it before it was removed from SOURCES.
                Some("unconfigured") => small_event(param("source"), param("id")),
                _ => return http::json(400, r#"{"error":"unknown_kind"}"#),
            };
            queue::send(&env.queue(bindings::EVENTS)?, &bytes, 0).await?;
            http::json(200, r#"{"sent":true}"#)
        }
        "/__faults/hmac" => {
            let number = |name: &str| param(name).and_then(|v| v.parse::<usize>().ok()).unwrap_or(0);
            let macs =
                hmac_benchmark(param("impl").as_deref() == Some("webcrypto"), number("size"), number("n")).await?;
            http::json(200, format!(r#"{{"macs":{macs}}}"#))
        }
        "/__faults/verify" => {
            let number = |name: &str| param(name).and_then(|v| v.parse::<usize>().ok()).unwrap_or(0);
            let Some(provider) = param("provider").as_deref().and_then(Provider::from_name) else {
                return http::json(400, r#"{"error":"unknown provider"}"#);
            };
            let web_crypto = param("impl").as_deref() == Some("webcrypto");
            let verified = verify_benchmark(provider, web_crypto, number("size"), number("n")).await?;
            http::json(200, format!(r#"{{"verified":{verified}}}"#))
        }
        "/__faults/web-crypto" => {
            let (macs, checks) =
                WEB_CRYPTO.with(|w| w.borrow().get(&param("source").unwrap_or_default()).copied().unwrap_or_default());
            http::json(200, format!(r#"{{"macs":{macs},"checks":{checks}}}"#))
        }
        "/__faults/record" => {
            let key = edgehook_core::ingest::idempotency_key(
                &param("source").unwrap_or_default(),
                &param("id").unwrap_or_default(),
            );
            let found = crate::idempotency::Idempotency::new(env)?.get(&key).await?;
            let status = found.map(|event| event.status.as_str());
            http::json(200, http::object(&[("status", http::to_json(&status)?)]))
        }
        "/__faults/ask" => {
            let target = param("for").unwrap_or_default();
            let (binding, name, what) = match param("object").as_deref() {
                Some("control") => (bindings::CONTROL, "control".to_owned(), "control"),
                Some("gate") => (bindings::GATES, crate::gate::gate_name(&target), "gate"),
                Some("shard") => {
                    let shard = edgehook_core::idempotency::shard_of(&target);
                    (bindings::IDEMPOTENCY, crate::idempotency::shard_name(shard), "shard")
                }
                _ => return http::json(400, r#"{"error":"object must be control, gate or shard"}"#),
            };
            let operation = req.clone()?.text().await?;
            let ns = env.durable_object(binding)?;
            let answer = match param("via").as_deref() {
                // As a caller still running a release from before RPC asks.
                Some("fetch") => crate::rpc::by_fetch(ns.id_from_name(&name)?.get_stub()?, operation)
                    .await
                    .map_err(|e| e.to_string()),
                via @ (Some("rpc") | Some("old-rpc")) => {
                    if via == Some("old-rpc") {
                        ARMED.with(|a| a.borrow_mut().insert((Fault::OldObject, name.clone())));
                    }
                    crate::rpc::ask_object(&ns, &name, what, operation).await.map_err(|e| e.to_string())
                }
                _ => return http::json(400, r#"{"error":"via must be fetch, rpc or old-rpc"}"#),
            };
            match answer {
                Ok(answer) => http::json(200, answer),
                Err(e) => http::json(500, format!(r#"{{"error":{}}}"#, edgehook_core::json::quote(&e))),
            }
        }
        "/__faults/storage" => {
            let (partitions, events, bytes) = crate::idempotency::Idempotency::new(env)?.storage().await?;
            http::json(200, format!(r#"{{"partitions":{partitions},"events":{events},"bytes":{bytes}}}"#))
        }
        "/__faults/billing" => http::json(200, crate::billing::snapshot(req.method() == worker::Method::Post)),
        "/__faults/object" => {
            let key = param("key").unwrap_or_default();
            let bucket = env.bucket(bindings::BLOBS)?;
            if req.method() == worker::Method::Post {
                bucket.put(&key, b"test object".to_vec()).execute().await?;
            }
            let exists = bucket.head(&key).await?.is_some();
            http::json(200, format!(r#"{{"exists":{exists}}}"#))
        }
        _ => http::json(404, r#"{"error":"not_found"}"#),
    }
}

fn event_meta(source: Option<String>, id: Option<String>, body: BodyRef) -> EventMeta {
    let first =
        EventMeta::first_attempt(source.unwrap_or_default(), id.unwrap_or_default(), crate::env::now_ms(), body);
    EventMeta { content_type: Some("application/json".into()), ..first }
}

/// The envelope of a first attempt with a small inline body, `{"id":"<id>"}`.
fn small_event(source: Option<String>, id: Option<String>) -> Vec<u8> {
    small_envelope(event_meta(source, id, BodyRef::Inline))
}

/// The envelope of `meta` with the small inline body `{"id":"<id>"}`.
fn small_envelope(meta: EventMeta) -> Vec<u8> {
    envelope::encode(&meta, format!(r#"{{"id":"{}"}}"#, meta.id).as_bytes())
}

/// Verifies one request signed by `provider` (a body of about `size` bytes) `n` times, the way
/// ingest does: with Rust's HMACs, or in two passes with Web Crypto's in between. Returns how
/// many verified (all of them, or it fails). The caller times the request.
async fn verify_benchmark(provider: Provider, web_crypto: bool, size: usize, n: usize) -> Result<usize> {
    use edgehook_core::providers::{Inbound, Scheme, Unsigned};
    use edgehook_core::secret::{SecretEncoding, SecretSet, SigningKey};
    use edgehook_core::signature::{KnownMacs, RecordMacs};
    let encoding = provider.secret_encoding();
    let text = match encoding {
        SecretEncoding::StandardWebhooks => "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        SecretEncoding::Literal => "bench-secret-for-verification",
        _ => return Err(worker::Error::RustError(format!("{provider:?} is not an HMAC provider"))),
    };
    let bad = |e: String| worker::Error::RustError(e);
    let key = SigningKey::parse(text, encoding).map_err(|e| bad(format!("{e:?}")))?;
    let secrets = SecretSet::parse(text, encoding).map_err(|e| bad(format!("{e:?}")))?;
    let now = crate::env::now_ms() / 1000;
    let body = if provider == Provider::Twilio {
        format!("AccountSid=AC1&MessageSid=SM1&Body={}", "a".repeat(size.saturating_sub(40)))
    } else {
        let head =
            format!(r#"{{"id":"evt_bench","type":"bench.event","created":{now},"data":{{"object":{{"id":"o1"}}}},"#);
        format!(r#"{head}"padding":"{}"}}"#, "a".repeat(size.saturating_sub(head.len() + 14)))
    };
    let url = "https://hooks.example.com/webhooks/bench";
    let unsigned = Unsigned { method: "POST", url, body: body.as_bytes(), id: "evt_bench", timestamp: now };
    let signed = provider.sign(&key, unsigned, None);
    let scheme = Scheme::new(&secrets, provider.default_tolerance_secs());
    let req = Inbound { method: "POST", url, headers: &signed.headers, body: &signed.body };
    for _ in 0..n {
        let verified = if web_crypto {
            let record = RecordMacs::new(&signed.body);
            let _ = provider.verify(req, scheme.with_macs(&record), now);
            let computed = crate::web_crypto::compute(record.into_needed(), &crate::blobs::Bytes::Wasm(&signed.body))
                .await?
                .answers;
            provider.verify(req, scheme.with_macs(&KnownMacs::new(&signed.body, computed)), now).is_ok()
        } else {
            provider.verify(req, scheme, now).is_ok()
        };
        if !verified {
            return Err(bad(format!("{provider:?}'s request did not verify")));
        }
    }
    Ok(n)
}

/// Computes `n` HMAC-SHA256s of `size` bytes, in Rust (wasm) or with Web Crypto (native code
/// in the runtime, through the same glue ingest uses: the message copied out of wasm, the
/// imported key cached); returns how many. The caller times the request.
async fn hmac_benchmark(web_crypto: bool, size: usize, n: usize) -> Result<usize> {
    use edgehook_core::signature::{HashFn, MacRequest, Part};
    let data: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
    let key = b"whsec_benchmark_secret";
    if !web_crypto {
        let mut last = [0u8; 32];
        for _ in 0..n {
            last = edgehook_core::signature::hmac_sha256(key, &[&data]);
        }
        std::hint::black_box(last);
        return Ok(n);
    }
    let request = MacRequest { hash: HashFn::Sha256, key: key.to_vec(), parts: vec![Part::Body] };
    for _ in 0..n {
        let needed = edgehook_core::signature::Needed { macs: vec![request.clone()], checks: vec![] };
        std::hint::black_box(crate::web_crypto::compute(needed, &crate::blobs::Bytes::Wasm(&data)).await?);
    }
    Ok(n)
}
