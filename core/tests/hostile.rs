//! Hostile input: a generated corpus of at least 10,000 malformed requests per provider, run
//! through `ingest::verify` exactly as the worker runs it.
//!
//! Every request starts as one the provider really sends (made by the provider's own `sign`, and
//! checked to verify before anything is changed), then gets one or two *breakers* (changes after
//! which no authentic request remains: another secret, a stale or future timestamp re-signed
//! correctly, a signature replayed over another body, a changed body, URL or method where they
//! are signed, a removed, emptied or garbled signature, a changed or missing signed timestamp or
//! id, an id or type that is not a token) and up to three pieces of *noise* (64 KB headers,
//! duplicated headers with conflicting values, invalid UTF-8 and control bytes in headers, wrong
//! content types, oversized bodies, and, where the provider signs no body, changed bodies).
//!
//! The generator only uses a change as a breaker where it really breaks authenticity for that
//! provider: a body change is a breaker only where the body is signed, and only if what is signed
//! changes (Twilio signs decoded, sorted parameters, so `%2b` for `%2B` is no change); a
//! signature change never merely re-cases hex; noise never touches a header a breaker changed
//! (noise could otherwise repair it, e.g. replace an invalid id with a valid one), and each
//! breaker family (body, signature, timestamp, id, ...) is used at most once per request so that
//! two changes cannot cancel out.
//!
//! For every request: the result is a rejection (never an event, never a handshake answer), with
//! a 4xx status, and what the caller would see of it (status, JSON body, `Display`, `Debug`)
//! contains no secret (as given, in hex or base64) and no correct signature of the request before
//! it was broken.
//!
//! The PRNG is a xorshift seeded by provider name, so every run builds the same corpus.
//! `HOSTILE_CASES=n` changes the number of requests per provider (10,000 by default);
//! `HOSTILE_PROVIDERS=stripe,github` runs only those providers. The per-provider table goes to
//! stderr directly, so it shows without `--nocapture`.
//!
//! `HOSTILE_DUMP=FILE` also writes the corpus as JSON lines, for the integration suite to send
//! through the running worker (`tests/integration/hostile.rs`): per provider, one line with the
//! source's configuration, its secret, the verification clock and one authentic request, then
//! one line per hostile request with everything that must never show in an answer or a log
//! (leaving out the few whose breaker HTTP itself would undo; see `breakers_survive_the_wire`).

// Its corpus signs as Discord and SendGrid do, with the curves.
#![cfg(feature = "native-curves")]

#[path = "support/twilio_form.rs"]
mod twilio_form;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use edgehook_core::config::{Config, SourceConfig};
use edgehook_core::headers::HeaderList;
use edgehook_core::ingest::{needed, verify, verify_with, Intake, Request};
use edgehook_core::providers::{Provider, Signed, Unsigned};
use edgehook_core::secret::SigningKey;
use edgehook_core::signature::to_hex;
use edgehook_core::Rejection;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::Write as _;
use std::sync::LazyLock;
use std::time::{Duration, Instant};
use twilio_form::twilio_signed;

const DEFAULT_CASES: usize = 10_000;
/// The clock every request is verified at (Unix seconds), and the same in milliseconds.
const NOW: i64 = 1_700_000_000;
const NOW_MS: i64 = NOW * 1000 + 250;
/// Every source's `max_body_bytes`: small, so that oversized bodies stay cheap to build.
const MAX_BODY_BYTES: usize = 16 * 1024;
const HUGE: usize = 64 * 1024;
const URL_BASE: &str = "https://hooks.example.com/webhooks/";
/// Signed requests per provider that the corpus is built from.
const POOL: usize = 32;
/// Fewer for the asymmetric schemes: Ed25519 and P-256 are slow in a debug build.
const SLOW_POOL: usize = 8;

const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const HEX: &[u8] = b"0123456789abcdef";
const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// xorshift64*, seeded by a label.
struct Rng(u64);

impl Rng {
    fn seeded(label: &str) -> Rng {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in label.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        Rng(h | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `0..n`.
    fn below(&mut self, n: usize) -> usize {
        assert!(n > 0);
        (self.next() % n as u64) as usize
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut out: Vec<u8> = (0..n.div_ceil(8)).flat_map(|_| self.next().to_le_bytes()).collect();
        out.truncate(n);
        out
    }

    fn from(&mut self, alphabet: &[u8], n: usize) -> String {
        (0..n).map(|_| alphabet[self.below(alphabet.len())] as char).collect()
    }

    fn alnum(&mut self, n: usize) -> String {
        self.from(ALNUM, n)
    }

    /// Visible ASCII.
    fn printable(&mut self, n: usize) -> String {
        (0..n).map(|_| (0x21 + self.below(94)) as u8 as char).collect()
    }

    /// Bytes with the high bit set, as a header value: `lossy` as the UTF-8 decoder would give
    /// them (U+FFFD), else byte for byte (Latin-1), as a Fetch `Headers` object gives them.
    fn non_utf8_header(&mut self, n: usize) -> String {
        let bytes: Vec<u8> = self.bytes(n).into_iter().map(|b| b | 0x80).collect();
        if self.chance(50) {
            String::from_utf8_lossy(&bytes).into_owned()
        } else {
            bytes.iter().map(|&b| b as char).collect()
        }
    }

    /// A body length: mostly small, sometimes a few KB.
    fn pad_len(&mut self) -> usize {
        match self.below(100) {
            0..=69 => self.below(128),
            70..=94 => self.range(128, 1024),
            _ => self.range(1024, 4000),
        }
    }

    /// Text for a JSON string: mostly ASCII, with quotes, escapes, control and non-ASCII characters.
    fn json_text(&mut self, n: usize) -> String {
        const ODD: &[char] = &['"', '\\', '\n', '\u{0}', 'é', '€', '\u{202e}', '😀', ' '];
        (0..n).map(|_| if self.chance(5) { self.pick(ODD) } else { (0x20 + self.below(95)) as u8 as char }).collect()
    }
}

/// 64 KB values, built once.
static HUGE_VALUE: LazyLock<String> = LazyLock::new(|| Rng::seeded("huge").printable(HUGE));
static HUGE_NAME: LazyLock<String> = LazyLock::new(|| format!("x-{}", Rng::seeded("name").alnum(HUGE)));

// ---------------------------------------------------------------------------------------------
// What each provider signs and where.

#[derive(Clone, Copy, PartialEq, Eq)]
enum SigAt {
    Header(&'static str),
    /// Mailgun: `signature.signature` inside the JSON body.
    MailgunBody,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum TsFormat {
    Secs,
    Millis,
    Rfc3339,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum TsAt {
    None,
    Header(&'static str, TsFormat),
    /// A `key=value` item of the signature header, items separated by the char.
    InSignature(&'static str, char),
    /// Linear: `webhookTimestamp` (ms) inside the signed body.
    LinearBody,
    /// Mailgun: `signature.timestamp` inside the body.
    MailgunBody,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Covers {
    /// The exact body bytes.
    Body,
    /// Twilio: the decoded, sorted, deduplicated form parameters.
    TwilioForm,
    /// GitLab: nothing but the token.
    Token,
    /// Mailgun: the timestamp and token in the body, not the rest of it.
    MailgunToken,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// JSON events (the id is in the body).
    Json,
    /// Any bytes: JSON, binary, text, empty.
    Any,
    /// Twilio's form bodies.
    Form,
}

struct Spec {
    provider: Provider,
    sig: SigAt,
    ts: TsAt,
    /// Id headers the signature covers.
    signed_ids: &'static [&'static str],
    /// Id headers without which the request cannot be used (all of them removed).
    required_ids: &'static [&'static str],
    /// Every header an id is read from.
    id_headers: &'static [&'static str],
    /// Headers an event type is read from.
    type_headers: &'static [&'static str],
    covers: Covers,
    shape: Shape,
    signs_url: bool,
    signs_method: bool,
    handshakes: bool,
    /// Percent of requests that get a breaker reaching the signature check itself (the rest fail
    /// while parsing); below 100 only where a debug-build check takes milliseconds.
    crypto_percent: u64,
}

fn spec(p: Provider) -> Spec {
    let s = Spec {
        provider: p,
        sig: SigAt::MailgunBody,
        ts: TsAt::None,
        signed_ids: &[],
        required_ids: &[],
        id_headers: &[],
        type_headers: &[],
        covers: Covers::Body,
        shape: Shape::Json,
        signs_url: false,
        signs_method: false,
        handshakes: false,
        crypto_percent: 100,
    };
    let secs = TsFormat::Secs;
    match p {
        Provider::Stripe => Spec { sig: SigAt::Header("stripe-signature"), ts: TsAt::InSignature("t", ','), ..s },
        Provider::Github => Spec {
            sig: SigAt::Header("x-hub-signature-256"),
            required_ids: &["x-github-delivery"],
            id_headers: &["x-github-delivery"],
            type_headers: &["x-github-event"],
            shape: Shape::Any,
            ..s
        },
        Provider::Standard => Spec {
            sig: SigAt::Header("webhook-signature"),
            ts: TsAt::Header("webhook-timestamp", secs),
            signed_ids: &["webhook-id"],
            required_ids: &["webhook-id"],
            id_headers: &["webhook-id"],
            shape: Shape::Any,
            ..s
        },
        Provider::Shopify => Spec {
            sig: SigAt::Header("x-shopify-hmac-sha256"),
            required_ids: &["x-shopify-event-id", "x-shopify-webhook-id"],
            id_headers: &["x-shopify-event-id", "x-shopify-webhook-id"],
            type_headers: &["x-shopify-topic"],
            shape: Shape::Any,
            ..s
        },
        Provider::Slack => Spec {
            sig: SigAt::Header("x-slack-signature"),
            ts: TsAt::Header("x-slack-request-timestamp", secs),
            shape: Shape::Any,
            handshakes: true,
            ..s
        },
        Provider::Twilio => Spec {
            sig: SigAt::Header("x-twilio-signature"),
            id_headers: &["i-twilio-idempotency-token"],
            covers: Covers::TwilioForm,
            shape: Shape::Form,
            signs_url: true,
            ..s
        },
        Provider::Square => Spec { sig: SigAt::Header("x-square-hmacsha256-signature"), signs_url: true, ..s },
        Provider::Paddle => Spec { sig: SigAt::Header("paddle-signature"), ts: TsAt::InSignature("ts", ';'), ..s },
        Provider::Linear => Spec {
            sig: SigAt::Header("linear-signature"),
            ts: TsAt::LinearBody,
            required_ids: &["linear-delivery"],
            id_headers: &["linear-delivery"],
            type_headers: &["linear-event"],
            ..s
        },
        Provider::Zoom => Spec {
            sig: SigAt::Header("x-zm-signature"),
            ts: TsAt::Header("x-zm-request-timestamp", secs),
            shape: Shape::Any,
            handshakes: true,
            ..s
        },
        Provider::Discord => Spec {
            sig: SigAt::Header("x-signature-ed25519"),
            ts: TsAt::Header("x-signature-timestamp", secs),
            handshakes: true,
            crypto_percent: 4,
            ..s
        },
        Provider::Sendgrid => Spec {
            sig: SigAt::Header("x-twilio-email-event-webhook-signature"),
            ts: TsAt::Header("x-twilio-email-event-webhook-timestamp", secs),
            shape: Shape::Any,
            crypto_percent: 8,
            ..s
        },
        Provider::Hubspot => Spec {
            sig: SigAt::Header("x-hubspot-signature-v3"),
            ts: TsAt::Header("x-hubspot-request-timestamp", TsFormat::Millis),
            shape: Shape::Any,
            signs_url: true,
            signs_method: true,
            ..s
        },
        Provider::Typeform => Spec { sig: SigAt::Header("typeform-signature"), ..s },
        Provider::Twitch => Spec {
            sig: SigAt::Header("twitch-eventsub-message-signature"),
            ts: TsAt::Header("twitch-eventsub-message-timestamp", TsFormat::Rfc3339),
            signed_ids: &["twitch-eventsub-message-id"],
            required_ids: &["twitch-eventsub-message-id"],
            id_headers: &["twitch-eventsub-message-id"],
            type_headers: &["twitch-eventsub-subscription-type"],
            shape: Shape::Any,
            handshakes: true,
            ..s
        },
        Provider::Intercom => Spec { sig: SigAt::Header("x-hub-signature"), ..s },
        Provider::Pagerduty => Spec { sig: SigAt::Header("x-pagerduty-signature"), ..s },
        Provider::Sentry => Spec {
            sig: SigAt::Header("sentry-hook-signature"),
            required_ids: &["request-id"],
            id_headers: &["request-id"],
            type_headers: &["sentry-hook-resource"],
            shape: Shape::Any,
            ..s
        },
        Provider::Vercel => Spec { sig: SigAt::Header("x-vercel-signature"), ..s },
        Provider::Mailgun => Spec { ts: TsAt::MailgunBody, covers: Covers::MailgunToken, ..s },
        Provider::Gitlab => Spec {
            sig: SigAt::Header("x-gitlab-token"),
            required_ids: &["idempotency-key"],
            id_headers: &["idempotency-key"],
            type_headers: &["x-gitlab-event"],
            covers: Covers::Token,
            shape: Shape::Any,
            ..s
        },
        Provider::Generic => Spec {
            sig: SigAt::Header("x-signature"),
            ts: TsAt::Header("x-timestamp", secs),
            required_ids: &["x-event-id"],
            id_headers: &["x-event-id"],
            type_headers: &["x-event-type"],
            shape: Shape::Any,
            ..s
        },
    }
}

/// The scheme of the `generic` source: a timestamp, a prefix, base64 of HMAC-SHA512.
fn source_json(p: Provider) -> Value {
    let mut source = json!({ "provider": p.name(), "max_body_bytes": MAX_BODY_BYTES });
    if p == Provider::Generic {
        let extra = json!({
            "header": "X-Signature", "algorithm": "sha512", "encoding": "base64", "prefix": "v=",
            "timestamp_header": "X-Timestamp", "id_header": "X-Event-Id", "type_header": "X-Event-Type"
        });
        source.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    }
    json!({ p.name(): source })
}

// ---------------------------------------------------------------------------------------------
// Keys.

struct Keys {
    /// The keys the source is configured with (a rotation list where verifying is cheap).
    signing: Vec<SigningKey>,
    /// A key of the right kind that the source does not know.
    other: SigningKey,
    /// `WEBHOOK_SECRET_<SOURCE>`.
    env_value: String,
    /// The secret material in every form an error could leak it in.
    needles: Vec<String>,
}

fn encodings(bytes: &[u8]) -> [String; 2] {
    [to_hex(bytes), STANDARD.encode(bytes)]
}

fn keys(p: Provider, rng: &mut Rng) -> Keys {
    let mut needles = Vec::new();
    match p {
        Provider::Discord => {
            let mut make = |rng: &mut Rng| {
                let seed: [u8; 32] = rng.bytes(32).try_into().unwrap();
                let key = ed25519_dalek::SigningKey::from_bytes(&seed);
                let public = to_hex(key.verifying_key().as_bytes());
                needles.extend(encodings(&seed));
                needles.push(public.clone());
                (SigningKey::Ed25519(key), public)
            };
            let (key, public) = make(rng);
            let (other, _) = make(rng);
            Keys { signing: vec![key], other, env_value: public, needles }
        }
        Provider::Sendgrid => {
            use p256::pkcs8::EncodePublicKey;
            let mut make = |rng: &mut Rng| loop {
                let scalar = rng.bytes(32);
                if let Ok(key) = p256::ecdsa::SigningKey::from_slice(&scalar) {
                    let der = key.verifying_key().to_public_key_der().unwrap();
                    let public = STANDARD.encode(der.as_bytes());
                    needles.extend(encodings(&scalar));
                    needles.push(public.clone());
                    return (SigningKey::P256(key), public);
                }
            };
            let (key, public) = make(rng);
            let (other, _) = make(rng);
            Keys { signing: vec![key], other, env_value: public, needles }
        }
        _ => {
            let encoding = p.secret_encoding();
            let mut make = |rng: &mut Rng, label: &str| {
                let text = if p == Provider::Standard {
                    let raw = rng.bytes(24);
                    needles.extend(encodings(&raw));
                    format!("whsec_{}", STANDARD.encode(&raw))
                } else {
                    format!("hostile-{}-{label}-{}", p.name(), rng.alnum(24))
                };
                needles.extend(encodings(text.as_bytes()));
                needles.push(text.clone());
                (SigningKey::parse(&text, encoding).unwrap(), text)
            };
            let (a, a_text) = make(rng, "a");
            let (b, b_text) = make(rng, "b");
            let (other, _) = make(rng, "other");
            Keys { signing: vec![a, b], other, env_value: serde_json::to_string(&[a_text, b_text]).unwrap(), needles }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Header helpers (names compared ASCII case-insensitively, as `HeaderList` does).

fn header(h: &HeaderList, name: &str) -> Option<String> {
    h.0.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.clone())
}

/// Sets a header: the first entry of that name gets the value, others go; added if absent.
fn set_header(h: &mut HeaderList, name: &str, value: String) {
    match h.0.iter().position(|(k, _)| k.eq_ignore_ascii_case(name)) {
        Some(at) => {
            h.0[at].1 = value;
            let mut seen = false;
            h.0.retain(|(k, _)| {
                let same = k.eq_ignore_ascii_case(name);
                let keep = !same || !seen;
                seen |= same;
                keep
            });
        }
        None => h.0.push((name.to_owned(), value)),
    }
}

fn remove_header(h: &mut HeaderList, name: &str) -> bool {
    let before = h.0.len();
    h.0.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
    h.0.len() != before
}

// ---------------------------------------------------------------------------------------------
// Signed requests to start from.

struct Base {
    kind: &'static str,
    handshake: bool,
    url: String,
    signed: Signed,
    other: Signed,
    stale: Option<(i64, Signed)>,
    future: Option<(i64, Signed)>,
    /// The correct signatures of this request (and of its stale and future versions).
    needles: Vec<String>,
}

/// A body of this provider's shape: (kind, handshake, body, headers the provider sends with it).
fn shape(spec: &Spec, rng: &mut Rng, id: &str, ts: i64) -> (&'static str, bool, Vec<u8>, Vec<(String, String)>) {
    let p = spec.provider;
    let mut extra: Vec<(String, String)> = Vec::new();
    let json_type = ("Content-Type".to_owned(), "application/json".to_owned());
    match p {
        Provider::Github => extra.push(("X-GitHub-Event".into(), "issues".into())),
        Provider::Shopify => extra.push(("X-Shopify-Topic".into(), "orders/create".into())),
        Provider::Linear => extra.push(("Linear-Event".into(), "Issue".into())),
        Provider::Sentry => extra.push(("Sentry-Hook-Resource".into(), "issue".into())),
        Provider::Gitlab => extra.push(("X-Gitlab-Event".into(), "Push Hook".into())),
        Provider::Twitch => extra.push(("Twitch-Eventsub-Subscription-Type".into(), "channel.follow".into())),
        Provider::Generic => extra.push(("X-Event-Type".into(), "thing.happened".into())),
        _ => {}
    }
    if rng.chance(30) {
        extra.push(("User-Agent".into(), format!("{}-Hookshot/{}", p.name(), rng.alnum(6))));
    }
    if spec.handshakes && rng.chance(20) {
        let n = rng.range(1, 64);
        let challenge = rng.alnum(n);
        let body = match p {
            Provider::Slack => json!({ "token": rng.alnum(24), "challenge": challenge, "type": "url_verification" }),
            Provider::Zoom => json!({ "event": "endpoint.url_validation", "payload": { "plainToken": challenge } }),
            Provider::Discord => json!({ "type": 1, "id": id, "application_id": rng.alnum(18) }),
            Provider::Twitch => {
                extra.push(("Twitch-Eventsub-Message-Type".into(), "webhook_callback_verification".into()));
                json!({ "challenge": challenge, "subscription": { "type": "channel.follow" } })
            }
            _ => unreachable!(),
        };
        extra.push(json_type);
        return ("handshake", true, body.to_string().into_bytes(), extra);
    }
    if spec.shape == Shape::Form {
        let mut form = form_urlencoded::Serializer::new(String::new());
        if rng.chance(10) {
            return ("empty form", false, Vec::new(), extra);
        }
        form.append_pair("MessageSid", &format!("SM{}", rng.alnum(32)));
        form.append_pair("MessageStatus", rng.pick(&["delivered", "sent", "failed"]));
        let len = rng.pad_len();
        form.append_pair("Body", &rng.json_text(len));
        if rng.chance(30) {
            form.append_pair("Digits", "1").append_pair("Digits", "5");
        }
        return ("form", false, form.finish().into_bytes(), extra);
    }
    if spec.shape == Shape::Any {
        match rng.below(100) {
            0..=11 => {
                let len = rng.range(1, 512);
                let mut bytes = rng.bytes(len);
                bytes[rng.below(len)] = 0xff;
                return ("binary", false, bytes, extra);
            }
            12..=19 => return ("empty", false, Vec::new(), extra),
            20..=27 => {
                let len = rng.range(1, 400);
                let text = rng.json_text(len);
                extra.push(("Content-Type".into(), "text/plain; charset=utf-8".into()));
                return ("text", false, text.into_bytes(), extra);
            }
            28..=32 if p == Provider::Slack => {
                let len = rng.pad_len();
                let payload = json!({ "type": "block_actions", "text": rng.json_text(len) }).to_string();
                let body = form_urlencoded::Serializer::new(String::new()).append_pair("payload", &payload).finish();
                extra.push(("Content-Type".into(), "application/x-www-form-urlencoded".into()));
                return ("form", false, body.into_bytes(), extra);
            }
            _ => {}
        }
    }
    let len = rng.pad_len();
    let pad = rng.json_text(len);
    let object_id = format!("obj_{}", rng.alnum(10));
    let body = match p {
        Provider::Stripe => json!({
            "id": id, "object": "event", "type": "charge.succeeded", "created": ts,
            "data": { "object": { "id": object_id } }, "pad": pad
        }),
        Provider::Square => json!({
            "event_id": id, "type": "payment.updated", "created_at": "2023-11-14T22:13:20Z",
            "data": { "id": object_id }, "pad": pad
        }),
        Provider::Paddle => json!({
            "event_id": id, "event_type": "transaction.completed", "occurred_at": "2023-11-14T22:13:20Z",
            "data": { "id": object_id }, "pad": pad
        }),
        Provider::Linear => json!({
            "action": "create", "type": "Issue", "webhookTimestamp": ts * 1000 + rng.below(1000) as i64,
            "data": { "id": object_id, "updatedAt": "2023-11-14T22:13:20.000Z" }, "pad": pad
        }),
        Provider::Typeform => json!({ "event_id": id, "event_type": "form_response", "pad": pad }),
        Provider::Discord => json!({ "id": id, "type": "APPLICATION_AUTHORIZED", "pad": pad }),
        Provider::Intercom => {
            json!({ "type": "notification_event", "id": id, "topic": "conversation.user.created", "pad": pad })
        }
        Provider::Pagerduty => json!({ "event": { "id": id, "event_type": "incident.triggered" }, "pad": pad }),
        Provider::Vercel => json!({ "id": id, "type": "deployment.created", "pad": pad }),
        Provider::Mailgun => json!({ "event-data": { "id": id, "event": "delivered", "pad": pad } }),
        Provider::Slack => {
            json!({ "type": "event_callback", "event_id": id, "event": { "type": "message", "text": pad } })
        }
        Provider::Zoom => {
            json!({ "event": "meeting.started", "event_ts": ts * 1000, "payload": { "id": object_id }, "pad": pad })
        }
        Provider::Hubspot => json!([{
            "eventId": rng.below(1 << 30), "subscriptionId": rng.below(1 << 20),
            "subscriptionType": "contact.creation", "pad": pad
        }]),
        Provider::Sendgrid => json!([{ "event": "delivered", "sg_event_id": id, "pad": pad }]),
        Provider::Github => json!({ "action": "opened", "issue": { "id": object_id }, "pad": pad }),
        _ => json!({ "id": id, "type": "thing.happened", "pad": pad }),
    };
    extra.push(json_type);
    (if len >= 1024 { "large json" } else { "json" }, false, body.to_string().into_bytes(), extra)
}

/// Linear signs its timestamp inside the body: the body as it would be sent at `ts`.
fn body_at(p: Provider, body: &[u8], ts: i64, rng: &mut Rng) -> Vec<u8> {
    if p != Provider::Linear {
        return body.to_vec();
    }
    let mut value: Value = serde_json::from_slice(body).unwrap();
    value["webhookTimestamp"] = json!(ts * 1000 + rng.below(1000) as i64);
    value.to_string().into_bytes()
}

/// The signature strings a request carries: whole header values and the MACs in them.
fn signature_strings(spec: &Spec, signed: &Signed) -> Vec<String> {
    let value = match spec.sig {
        SigAt::Header(name) => header(&signed.headers, name),
        SigAt::MailgunBody => serde_json::from_slice::<Value>(&signed.body)
            .ok()
            .and_then(|v| v.pointer("/signature/signature").and_then(Value::as_str).map(str::to_owned)),
    };
    let Some(value) = value else { return Vec::new() };
    let mut out: Vec<String> = value.split([',', ';', '=', ' ']).filter(|t| t.len() >= 16).map(str::to_owned).collect();
    out.push(value);
    out
}

fn make_base(spec: &Spec, keys: &Keys, source: &SourceConfig, rng: &mut Rng, i: usize) -> Base {
    let p = spec.provider;
    let id = format!("evt_{}_{i}_{}", p.name(), rng.alnum(8));
    let ts = NOW - rng.below(61) as i64;
    let (kind, handshake, body, extra) = shape(spec, rng, &id, ts);
    let url = format!("{URL_BASE}{}?x=1", p.name());
    let generic = source.generic.as_ref();
    let sign = |key: &SigningKey, body: &[u8], timestamp: i64| {
        let unsigned = Unsigned { method: "POST", url: &url, body, id: &id, timestamp };
        let mut signed = p.sign(key, unsigned, generic);
        for (name, value) in &extra {
            set_header(&mut signed.headers, name, value.clone());
        }
        signed
    };
    let key = &keys.signing[i % keys.signing.len()];
    let signed = sign(key, &body, ts);
    let other = sign(&keys.other, &body, ts);
    let tolerance = source.tolerance_secs as i64;
    let beyond = |rng: &mut Rng| match rng.below(4) {
        0 => 1,
        1 => rng.range(2, 120) as i64,
        2 => rng.range(121, 1_000_000) as i64,
        _ => 50_000_000,
    };
    let (stale, future) = if spec.ts == TsAt::None {
        (None, None)
    } else {
        let stale_at = NOW - tolerance - beyond(rng);
        let future_at = NOW + tolerance + beyond(rng);
        let stale_body = body_at(p, &body, stale_at, rng);
        let future_body = body_at(p, &body, future_at, rng);
        (Some((stale_at, sign(key, &stale_body, stale_at))), Some((future_at, sign(key, &future_body, future_at))))
    };
    let mut needles = signature_strings(spec, &signed);
    for (_, s) in stale.iter().chain(future.iter()) {
        needles.extend(signature_strings(spec, s));
    }
    Base { kind, handshake, url, signed, other, stale, future, needles }
}

// ---------------------------------------------------------------------------------------------
// Mutations.

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Breaker {
    OtherSecret,
    StaleTimestamp,
    FutureTimestamp,
    ReplayedSignature,
    BodyFlip,
    BodyTruncate,
    BodyExtend,
    BodyReplace,
    BodyInvalidUtf8,
    SignatureRemoved,
    SignatureEmpty,
    SignatureGarbage,
    SignatureBitFlip,
    SignatureTruncated,
    SignatureExtended,
    TimestampChanged,
    TimestampRemoved,
    IdChanged,
    IdRemoved,
    IdInvalid,
    TypeInvalid,
    UrlChanged,
    MethodChanged,
}

impl Breaker {
    const ALL: [Breaker; 23] = [
        Breaker::OtherSecret,
        Breaker::StaleTimestamp,
        Breaker::FutureTimestamp,
        Breaker::ReplayedSignature,
        Breaker::BodyFlip,
        Breaker::BodyTruncate,
        Breaker::BodyExtend,
        Breaker::BodyReplace,
        Breaker::BodyInvalidUtf8,
        Breaker::SignatureRemoved,
        Breaker::SignatureEmpty,
        Breaker::SignatureGarbage,
        Breaker::SignatureBitFlip,
        Breaker::SignatureTruncated,
        Breaker::SignatureExtended,
        Breaker::TimestampChanged,
        Breaker::TimestampRemoved,
        Breaker::IdChanged,
        Breaker::IdRemoved,
        Breaker::IdInvalid,
        Breaker::TypeInvalid,
        Breaker::UrlChanged,
        Breaker::MethodChanged,
    ];

    fn name(self) -> &'static str {
        match self {
            Breaker::OtherSecret => "other-secret",
            Breaker::StaleTimestamp => "stale-timestamp",
            Breaker::FutureTimestamp => "future-timestamp",
            Breaker::ReplayedSignature => "replayed-signature",
            Breaker::BodyFlip => "body-flip",
            Breaker::BodyTruncate => "body-truncate",
            Breaker::BodyExtend => "body-extend",
            Breaker::BodyReplace => "body-replace",
            Breaker::BodyInvalidUtf8 => "body-invalid-utf8",
            Breaker::SignatureRemoved => "signature-removed",
            Breaker::SignatureEmpty => "signature-empty",
            Breaker::SignatureGarbage => "signature-garbage",
            Breaker::SignatureBitFlip => "signature-bit-flip",
            Breaker::SignatureTruncated => "signature-truncated",
            Breaker::SignatureExtended => "signature-extended",
            Breaker::TimestampChanged => "timestamp-changed",
            Breaker::TimestampRemoved => "timestamp-removed",
            Breaker::IdChanged => "id-changed",
            Breaker::IdRemoved => "id-removed",
            Breaker::IdInvalid => "id-invalid",
            Breaker::TypeInvalid => "type-invalid",
            Breaker::UrlChanged => "url-changed",
            Breaker::MethodChanged => "method-changed",
        }
    }

    /// At most one breaker of a family per request, so that two cannot cancel out.
    fn family(self) -> &'static str {
        match self {
            Breaker::OtherSecret | Breaker::StaleTimestamp | Breaker::FutureTimestamp | Breaker::ReplayedSignature => {
                "start"
            }
            Breaker::BodyFlip
            | Breaker::BodyTruncate
            | Breaker::BodyExtend
            | Breaker::BodyReplace
            | Breaker::BodyInvalidUtf8 => "body",
            Breaker::SignatureRemoved
            | Breaker::SignatureEmpty
            | Breaker::SignatureGarbage
            | Breaker::SignatureBitFlip
            | Breaker::SignatureTruncated
            | Breaker::SignatureExtended => "signature",
            Breaker::TimestampChanged | Breaker::TimestampRemoved => "timestamp",
            Breaker::IdChanged | Breaker::IdRemoved | Breaker::IdInvalid => "id",
            Breaker::TypeInvalid => "type",
            Breaker::UrlChanged => "url",
            Breaker::MethodChanged => "method",
        }
    }

    /// Whether the request still reaches the signature check (a MAC or a public-key check).
    fn reaches_crypto(self) -> bool {
        !matches!(
            self,
            Breaker::SignatureRemoved
                | Breaker::SignatureEmpty
                | Breaker::SignatureGarbage
                | Breaker::SignatureTruncated
                | Breaker::SignatureExtended
                | Breaker::TimestampChanged
                | Breaker::TimestampRemoved
                | Breaker::IdRemoved
        )
    }

    /// Whether this is a breaker at all for this provider and request.
    fn applies(self, spec: &Spec, base: &Base) -> bool {
        let signs_body = matches!(spec.covers, Covers::Body | Covers::TwilioForm);
        match self {
            Breaker::OtherSecret => true,
            Breaker::StaleTimestamp | Breaker::FutureTimestamp => spec.ts != TsAt::None,
            Breaker::ReplayedSignature => signs_body,
            Breaker::BodyFlip
            | Breaker::BodyTruncate
            | Breaker::BodyExtend
            | Breaker::BodyReplace
            | Breaker::BodyInvalidUtf8 => signs_body,
            Breaker::SignatureRemoved
            | Breaker::SignatureEmpty
            | Breaker::SignatureGarbage
            | Breaker::SignatureBitFlip
            | Breaker::SignatureTruncated
            | Breaker::SignatureExtended => true,
            Breaker::TimestampChanged | Breaker::TimestampRemoved => {
                matches!(spec.ts, TsAt::Header(..) | TsAt::InSignature(..) | TsAt::MailgunBody)
            }
            Breaker::IdChanged => !spec.signed_ids.is_empty() || spec.covers == Covers::MailgunToken,
            Breaker::IdRemoved => !spec.required_ids.is_empty() || spec.covers == Covers::MailgunToken,
            // An invalid id in a header only matters once the request is identified, which a
            // handshake never is, unless the signature covers the id.
            Breaker::IdInvalid => !spec.id_headers.is_empty() && (!base.handshake || !spec.signed_ids.is_empty()),
            Breaker::TypeInvalid => !spec.type_headers.is_empty() && !base.handshake,
            Breaker::UrlChanged => spec.signs_url,
            Breaker::MethodChanged => spec.signs_method,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Noise {
    HugeHeader,
    ManyHeaders,
    DuplicateHeader,
    InvalidUtf8Header,
    ControlCharHeader,
    ContentType,
    HeaderCase,
    OversizedBody,
    Url,
    Method,
    Body,
}

impl Noise {
    /// With weights: oversized bodies are rare, since they hide everything else.
    const MENU: [(Noise, usize); 11] = [
        (Noise::HugeHeader, 12),
        (Noise::ManyHeaders, 8),
        (Noise::DuplicateHeader, 16),
        (Noise::InvalidUtf8Header, 14),
        (Noise::ControlCharHeader, 8),
        (Noise::ContentType, 12),
        (Noise::HeaderCase, 6),
        (Noise::OversizedBody, 2),
        (Noise::Url, 6),
        (Noise::Method, 4),
        (Noise::Body, 10),
    ];

    fn name(self) -> &'static str {
        match self {
            Noise::HugeHeader => "huge-header",
            Noise::ManyHeaders => "many-headers",
            Noise::DuplicateHeader => "duplicate-header",
            Noise::InvalidUtf8Header => "invalid-utf8-header",
            Noise::ControlCharHeader => "control-char-header",
            Noise::ContentType => "content-type",
            Noise::HeaderCase => "header-case",
            Noise::OversizedBody => "oversized-body",
            Noise::Url => "url-noise",
            Noise::Method => "method-noise",
            Noise::Body => "body-noise",
        }
    }

    /// Noise changes nothing the provider signs.
    fn applies(self, spec: &Spec) -> bool {
        match self {
            Noise::Url => !spec.signs_url,
            Noise::Method => !spec.signs_method,
            Noise::Body => matches!(spec.covers, Covers::Token | Covers::MailgunToken),
            _ => true,
        }
    }
}

/// A request being broken.
struct Case {
    method: String,
    url: String,
    headers: HeaderList,
    body: Vec<u8>,
    /// The body the present signature covers: body breakers must move away from it.
    signed_body: Vec<u8>,
    log: Vec<String>,
    /// Headers (lower case) a breaker changed: noise leaves them alone.
    touched: Vec<String>,
}

impl Case {
    fn from_signed(url: &str, signed: &Signed) -> Case {
        Case {
            method: "POST".into(),
            url: url.to_owned(),
            headers: signed.headers.clone(),
            body: signed.body.clone(),
            signed_body: signed.body.clone(),
            log: Vec::new(),
            touched: Vec::new(),
        }
    }

    fn touch(&mut self, name: &str) {
        self.touched.push(name.to_ascii_lowercase());
    }

    /// Indices of headers no breaker changed.
    fn untouched(&self) -> Vec<usize> {
        let touched = |name: &str| self.touched.iter().any(|t| t.eq_ignore_ascii_case(name));
        (0..self.headers.0.len()).filter(|&i| !touched(&self.headers.0[i].0)).collect()
    }
}

/// Whether two bodies are the same to the signature.
fn same_signed_body(spec: &Spec, a: &[u8], b: &[u8]) -> bool {
    match spec.covers {
        Covers::TwilioForm => match (twilio_signed(a), twilio_signed(b)) {
            (Some(x), Some(y)) => x == y,
            _ => false,
        },
        _ => a == b,
    }
}

/// The byte range of the MAC in a signature value: its longest token, if 16 bytes or more.
fn mac_span(value: &str) -> Option<(usize, usize)> {
    let mut best: Option<(usize, usize)> = None;
    let mut start = 0;
    for (i, c) in value.char_indices().chain([(value.len(), ',')]) {
        if matches!(c, ',' | ';' | '=' | ' ') {
            if i - start >= 16 && best.is_none_or(|(s, e)| i - start > e - s) {
                best = Some((start, i));
            }
            start = i + c.len_utf8();
        }
    }
    best
}

/// One MAC character changed so that the decoded MAC changes (never just its case).
fn flip_mac_char(rng: &mut Rng, value: &str) -> Option<String> {
    let (start, end) = mac_span(value)?;
    let token = &value.as_bytes()[start..end];
    if !token.is_ascii() {
        return None;
    }
    let at = start + rng.below(end - start);
    let old = value.as_bytes()[at];
    let is_hex = token.len() % 2 == 0 && token.iter().all(u8::is_ascii_hexdigit);
    let new = if is_hex {
        let v = (old as char).to_digit(16).unwrap() as usize;
        HEX[v ^ rng.range(1, 15)]
    } else if let Some(i) = B64.iter().position(|&b| b == old) {
        // The top bit of a base64 digit always carries data, even in the last digit.
        B64[i ^ 0x20]
    } else {
        loop {
            let c = rng.pick(ALNUM);
            if c != old {
                break c;
            }
        }
    };
    let mut bytes = value.as_bytes().to_vec();
    bytes[at] = new;
    Some(String::from_utf8(bytes).unwrap())
}

/// A value that is not the signature. `cheap` keeps to values that fail before any crypto.
fn garbage_signature(rng: &mut Rng, value: &str, cheap: bool) -> (String, String) {
    for _ in 0..32 {
        let choice: usize = if cheap { rng.below(5) } else { rng.below(7) };
        let mac = mac_span(value).map(|(s, e)| value[s..e].to_owned()).unwrap_or_else(|| rng.from(HEX, 64));
        let (garbage, what) = match choice {
            0 => {
                let n = rng.range(1, 150);
                (rng.printable(n), "random printable")
            }
            1 => {
                let n = rng.range(1, 80);
                (rng.non_utf8_header(n), "invalid UTF-8")
            }
            2 => {
                // Under another label: one that ends with the original label would still carry
                // the genuine item (PagerDuty, Stripe and Standard Webhooks take lists).
                let label = rng.pick(&["sha256=", "sha1=", "v0=", "v1=", "v1,", "v1a,", "h1=", "sha512=", "t=1,v1="]);
                let original = mac_span(value).map_or("", |(s, _)| &value[..s]);
                if !original.is_empty() && label.ends_with(original) {
                    continue;
                }
                (format!("{label}{mac}"), "its MAC under another label")
            }
            3 => (HUGE_VALUE.clone(), "64 KB of printable"),
            4 => (mac, "its MAC alone"),
            5 => {
                // Same format, random MAC.
                let (s, e) = mac_span(value).unwrap_or((0, value.len()));
                let class = if value[s..e].bytes().all(|b| b.is_ascii_hexdigit()) { HEX } else { B64 };
                (format!("{}{}{}", &value[..s], rng.from(class, e - s), &value[e..]), "same format, random MAC")
            }
            _ => {
                let n = rng.pick(&[20, 32, 64]);
                (STANDARD.encode(rng.bytes(n)), "base64 of random bytes")
            }
        };
        if garbage != value {
            return (garbage, what.to_owned());
        }
    }
    (format!("{value}!"), "one character appended".to_owned())
}

/// A different text for a signed timestamp. `cheap` keeps to texts that do not parse.
fn changed_timestamp(rng: &mut Rng, old: &str, format: TsFormat, cheap: bool) -> (String, &'static str) {
    let unparseable = [" ", "-", "+", "abc", "1e9", "١٧٠٠٠٠٠٠٠٠", "\u{b9}700000000"];
    for _ in 0..32 {
        let (new, what) = if cheap || rng.chance(40) {
            match rng.below(4) {
                0 => (format!("{old} "), "trailing space"),
                1 => (format!("{}{old}", rng.pick(&unparseable)), "prefixed"),
                2 => (rng.pick(&unparseable).to_owned(), "not a timestamp"),
                _ => ("9".repeat(20), "20 digits"),
            }
        } else {
            let delta = rng.range(1, 30) as i64 * if rng.chance(50) { 1 } else { -1 };
            match format {
                TsFormat::Secs | TsFormat::Millis => match (rng.below(3), old.parse::<i64>()) {
                    (0, _) => (format!("0{old}"), "leading zero (same instant)"),
                    (1, Ok(n)) if format == TsFormat::Secs => (format!("{}", n * 1000), "same instant in ms"),
                    (_, Ok(n)) => (format!("{}", n + delta), "moved within the window"),
                    (_, Err(_)) => (format!("{old}0"), "digit appended"),
                },
                TsFormat::Rfc3339 => {
                    let t = chrono::DateTime::parse_from_rfc3339(old).map(|t| t.timestamp()).unwrap_or(NOW);
                    let dt = chrono::DateTime::from_timestamp(t + delta, 0).unwrap();
                    match rng.below(3) {
                        0 => (old.replace('Z', "+00:00"), "same instant, +00:00"),
                        1 => (old.replace('Z', ".000000000Z"), "same instant, nanoseconds"),
                        _ => (dt.to_rfc3339_opts(chrono::SecondsFormat::Secs, true), "moved within the window"),
                    }
                }
            }
        };
        if new != old {
            return (new, what);
        }
    }
    (format!("{old}x"), "x appended")
}

/// Not an id or type token. A trailing space only where nothing is appended to the value (GitHub
/// and Sentry append `.<action>` to the type header, which would make it inner whitespace).
fn invalid_token(rng: &mut Rng, trailing_space: bool) -> String {
    match rng.below(9) {
        1 if !trailing_space => "evt\u{1b}[0m".into(),
        0 => " evt_leading".into(),
        1 => "evt_trailing ".into(),
        2 => "evt\t1".into(),
        3 => "evt_1\r\nX-Injected: 1".into(),
        4 => "evt\u{0}1".into(),
        5 => "évt_1".into(),
        6 => "x".repeat(256),
        7 => "evt\u{7f}".into(),
        _ => rng.non_utf8_header(8),
    }
}

/// Edits Mailgun's `signature` object in a JSON body; `None` if there is none or `edit` declines.
fn edit_mailgun(body: &[u8], edit: impl FnOnce(&mut serde_json::Map<String, Value>) -> bool) -> Option<Vec<u8>> {
    let mut value: Value = serde_json::from_slice(body).ok()?;
    let signature = value.get_mut("signature")?.as_object_mut()?;
    edit(signature).then(|| value.to_string().into_bytes())
}

fn mailgun_field(body: &[u8], field: &str) -> Option<String> {
    let value: Value = serde_json::from_slice(body).ok()?;
    value.pointer(&format!("/signature/{field}")).and_then(Value::as_str).map(str::to_owned)
}

/// Applies a breaker; `false` if it does not apply to this request as it stands.
fn apply_breaker(
    b: Breaker,
    spec: &Spec,
    pool: &[Base],
    i: usize,
    case: &mut Case,
    rng: &mut Rng,
    cheap: bool,
) -> bool {
    let base = &pool[i];
    match b {
        Breaker::OtherSecret => {
            *case = Case::from_signed(&base.url, &base.other);
            case.log.push("signed with a secret the source does not have".into());
        }
        Breaker::StaleTimestamp | Breaker::FutureTimestamp => {
            let variant = if b == Breaker::StaleTimestamp { &base.stale } else { &base.future };
            let Some((at, signed)) = variant else { return false };
            *case = Case::from_signed(&base.url, signed);
            case.log.push(format!("re-signed correctly at {at} ({:+}s from now)", at - NOW));
        }
        Breaker::ReplayedSignature => {
            let Some(j) = (0..8)
                .map(|_| rng.below(pool.len()))
                .find(|&j| j != i && !same_signed_body(spec, &pool[j].signed.body, &base.signed.body))
            else {
                return false;
            };
            *case = Case::from_signed(&base.url, &pool[j].signed);
            case.body = base.signed.body.clone();
            case.log.push(format!("signature headers of base #{j} replayed over the body of base #{i}"));
        }
        Breaker::BodyFlip
        | Breaker::BodyTruncate
        | Breaker::BodyExtend
        | Breaker::BodyReplace
        | Breaker::BodyInvalidUtf8 => {
            for _ in 0..16 {
                if let Some((body, what)) = changed_body(b, &case.body, rng) {
                    if !same_signed_body(spec, &case.signed_body, &body) {
                        case.body = body;
                        case.log.push(what);
                        return true;
                    }
                }
            }
            return false;
        }
        Breaker::SignatureRemoved
        | Breaker::SignatureEmpty
        | Breaker::SignatureGarbage
        | Breaker::SignatureBitFlip
        | Breaker::SignatureTruncated
        | Breaker::SignatureExtended => return break_signature(b, spec, case, rng, cheap),
        Breaker::TimestampChanged | Breaker::TimestampRemoved => return break_timestamp(b, spec, case, rng, cheap),
        Breaker::IdChanged => {
            let new = format!("evt_forged_{}", rng.alnum(8));
            if spec.covers == Covers::MailgunToken {
                let Some(body) = edit_mailgun(&case.body, |s| s.insert("token".into(), json!(new)).is_some()) else {
                    return false;
                };
                case.body = body;
                case.log.push(format!("signature.token in the body set to {new:?}"));
            } else {
                let name = spec.signed_ids[0];
                if header(&case.headers, name).is_none() {
                    return false;
                }
                set_header(&mut case.headers, name, new.clone());
                case.touch(name);
                case.log.push(format!("signed id header {name} set to {new:?}"));
            }
        }
        Breaker::IdRemoved => {
            if spec.covers == Covers::MailgunToken {
                let Some(body) = edit_mailgun(&case.body, |s| s.remove("token").is_some()) else { return false };
                case.body = body;
                case.log.push("signature.token removed from the body".into());
            } else {
                let mut removed = false;
                for name in spec.required_ids {
                    removed |= remove_header(&mut case.headers, name);
                    case.touch(name);
                }
                if !removed {
                    return false;
                }
                case.log.push(format!("id header(s) {} removed", spec.required_ids.join(", ")));
            }
        }
        Breaker::IdInvalid | Breaker::TypeInvalid => {
            let names = if b == Breaker::IdInvalid { spec.id_headers } else { spec.type_headers };
            let value = invalid_token(rng, b == Breaker::IdInvalid);
            for name in names {
                set_header(&mut case.headers, name, value.clone());
                case.touch(name);
            }
            case.log.push(format!("{} set to the non-token {:?}", names.join(", "), shorten(&value)));
        }
        Breaker::UrlChanged => {
            let url = case.url.clone();
            let (path, query) = url.split_once('?').unwrap_or((url.as_str(), ""));
            let new = match rng.below(8) {
                0 => format!("{path}x?{query}"),
                1 => format!("{path}/?{query}"),
                2 => format!("{path}?{}", query.replace("x=1", "x=2")),
                3 => path.to_owned(),
                4 => format!("{url}&y=2"),
                5 => url.replace("hooks.example.com", "evil.example.com"),
                6 => url.replace("https://", "http://"),
                _ => url.replace("example.com/", "example.com:8443/"),
            };
            if new == url {
                return false;
            }
            case.log.push(format!("URL changed to {new}"));
            case.url = new;
        }
        Breaker::MethodChanged => {
            let method = rng.pick(&["PUT", "GET", "post", "PATCH", "DELETE", ""]);
            case.log.push(format!("method changed to {method:?}"));
            case.method = method.to_owned();
        }
    }
    true
}

fn changed_body(b: Breaker, body: &[u8], rng: &mut Rng) -> Option<(Vec<u8>, String)> {
    let mut body = body.to_vec();
    let len = body.len();
    let what = match b {
        Breaker::BodyFlip => {
            if len == 0 {
                return None;
            }
            let (at, bit) = (rng.below(len), rng.below(8));
            body[at] ^= 1 << bit;
            format!("body: bit {bit} of byte {at} flipped ({len} bytes)")
        }
        Breaker::BodyTruncate => {
            if len == 0 {
                return None;
            }
            match rng.below(3) {
                0 => {
                    let k = rng.range(1, len.min(64));
                    body.truncate(len - k);
                    format!("body: last {k} of {len} bytes cut")
                }
                1 => {
                    body.truncate(len / 2);
                    format!("body: cut to half of {len} bytes")
                }
                _ => {
                    let at = rng.below(len);
                    body.remove(at);
                    format!("body: byte {at} of {len} removed")
                }
            }
        }
        Breaker::BodyExtend => {
            let (extra, what): (Vec<u8>, &str) = match rng.below(6) {
                0 => {
                    let n = rng.range(1, 32);
                    (rng.bytes(n), "random bytes")
                }
                1 => (b" ".to_vec(), "a space"),
                2 => (b"\r\n".to_vec(), "CRLF"),
                3 => (b"{}".to_vec(), "a second JSON object"),
                4 => (format!("&{}=1", rng.alnum(4)).into_bytes(), "a form parameter"),
                _ => (vec![0], "a NUL byte"),
            };
            if rng.chance(20) {
                body.splice(0..0, "\u{feff}".bytes());
                "body: byte-order mark prepended".to_owned()
            } else {
                body.extend_from_slice(&extra);
                format!("body: {what} appended ({len} bytes before)")
            }
        }
        Breaker::BodyReplace => {
            let (new, what) = match rng.below(5) {
                0 => (Vec::new(), "empty"),
                1 => {
                    let n = rng.range(1, 256);
                    (rng.bytes(n), "random bytes")
                }
                2 => (
                    br#"{"id":"evt_forged","type":"charge.succeeded","data":{"object":{"id":"ch_1"}}}"#.to_vec(),
                    "a forged event",
                ),
                3 => (
                    String::from_utf8_lossy(&body).encode_utf16().flat_map(u16::to_le_bytes).collect(),
                    "UTF-16LE of itself",
                ),
                _ => ([body.as_slice(), body.as_slice()].concat(), "itself twice"),
            };
            body = new;
            format!("body replaced by {what} ({} bytes)", body.len())
        }
        Breaker::BodyInvalidUtf8 => {
            let bad: &[u8] =
                rng.pick(&[&[0xff][..], &[0xc0, 0x80], &[0xed, 0xa0, 0x80], &[0x80], &[0xf8, 0x88, 0x80, 0x80]]);
            let at = rng.below(len + 1);
            if len > 0 && rng.chance(30) {
                body[at.min(len - 1)] = 0xfe;
                format!("body: byte {} replaced by 0xfe", at.min(len - 1))
            } else {
                body.splice(at..at, bad.iter().copied());
                format!("body: invalid UTF-8 {bad:02x?} inserted at {at}")
            }
        }
        _ => unreachable!(),
    };
    Some((body, what))
}

fn break_signature(b: Breaker, spec: &Spec, case: &mut Case, rng: &mut Rng, cheap: bool) -> bool {
    let current = match spec.sig {
        SigAt::Header(name) => header(&case.headers, name),
        SigAt::MailgunBody => mailgun_field(&case.body, "signature"),
    };
    let Some(current) = current else { return false };
    let new: Option<String> = match b {
        Breaker::SignatureRemoved => None,
        Breaker::SignatureEmpty => Some(String::new()),
        Breaker::SignatureGarbage => {
            let (garbage, what) = garbage_signature(rng, &current, cheap);
            case.log.push(format!("signature replaced by {what}"));
            Some(garbage)
        }
        Breaker::SignatureBitFlip => {
            let Some(flipped) = flip_mac_char(rng, &current) else { return false };
            Some(flipped)
        }
        Breaker::SignatureTruncated => {
            if current.len() < 2 || !current.is_ascii() {
                return false;
            }
            let k = rng.range(1, (current.len() - 1).min(12));
            Some(current[..current.len() - k].to_owned())
        }
        Breaker::SignatureExtended => {
            let n = rng.range(1, 4);
            Some(format!("{current}{}", rng.alnum(n)))
        }
        _ => unreachable!(),
    };
    let what = match (&new, b) {
        (None, _) => "removed".to_owned(),
        (Some(v), Breaker::SignatureEmpty) => format!("emptied ({} bytes)", v.len()),
        (Some(v), _) => format!("now {:?}", shorten(v)),
    };
    match spec.sig {
        SigAt::Header(name) => {
            match &new {
                None => {
                    remove_header(&mut case.headers, name);
                }
                Some(v) => set_header(&mut case.headers, name, v.clone()),
            }
            case.touch(name);
            case.log.push(format!("{}: signature header {name} {what}", b.name()));
        }
        SigAt::MailgunBody => {
            let whole_object = new.is_none() && rng.chance(50);
            let body = if whole_object {
                let mut value: Value = serde_json::from_slice(&case.body).unwrap();
                value.as_object_mut().unwrap().remove("signature");
                Some(value.to_string().into_bytes())
            } else {
                edit_mailgun(&case.body, |s| {
                    match &new {
                        None => s.remove("signature"),
                        Some(v) => s.insert("signature".into(), json!(v)),
                    };
                    true
                })
            };
            let Some(body) = body else { return false };
            case.body = body;
            let target = if whole_object { "signature object" } else { "signature.signature" };
            case.log.push(format!("{}: {target} in the body {what}", b.name()));
        }
    }
    true
}

fn break_timestamp(b: Breaker, spec: &Spec, case: &mut Case, rng: &mut Rng, cheap: bool) -> bool {
    let removing = b == Breaker::TimestampRemoved;
    match spec.ts {
        TsAt::Header(name, format) => {
            let Some(old) = header(&case.headers, name) else { return false };
            case.touch(name);
            if removing {
                remove_header(&mut case.headers, name);
                case.log.push(format!("timestamp header {name} removed"));
            } else {
                let (new, what) = changed_timestamp(rng, &old, format, cheap);
                case.log.push(format!("timestamp header {name} changed from {old:?} to {:?} ({what})", shorten(&new)));
                set_header(&mut case.headers, name, new);
            }
        }
        TsAt::InSignature(key, sep) => {
            let SigAt::Header(name) = spec.sig else { unreachable!() };
            let Some(value) = header(&case.headers, name) else { return false };
            let prefix = format!("{key}=");
            let items: Vec<&str> = value.split(sep).collect();
            let Some(at) = items.iter().position(|item| item.starts_with(&prefix)) else { return false };
            let mut items: Vec<String> = items.into_iter().map(str::to_owned).collect();
            let old = items[at][prefix.len()..].to_owned();
            if removing {
                items.remove(at);
                case.log.push(format!("{key}= removed from {name}"));
            } else {
                let (new, what) = changed_timestamp(rng, &old, TsFormat::Secs, cheap);
                case.log.push(format!("{key}= in {name} changed from {old:?} to {:?} ({what})", shorten(&new)));
                items[at] = format!("{prefix}{new}");
            }
            set_header(&mut case.headers, name, items.join(&sep.to_string()));
            case.touch(name);
        }
        TsAt::MailgunBody => {
            let Some(old) = mailgun_field(&case.body, "timestamp") else { return false };
            let new = (!removing).then(|| changed_timestamp(rng, &old, TsFormat::Secs, cheap));
            let Some(body) = edit_mailgun(&case.body, |s| {
                match &new {
                    None => s.remove("timestamp"),
                    Some((v, _)) => s.insert("timestamp".into(), json!(v)),
                };
                true
            }) else {
                return false;
            };
            case.body = body;
            match new {
                None => case.log.push("signature.timestamp removed from the body".into()),
                Some((v, what)) => case.log.push(format!(
                    "signature.timestamp in the body changed from {old:?} to {:?} ({what})",
                    shorten(&v)
                )),
            }
        }
        TsAt::None | TsAt::LinearBody => return false,
    }
    true
}

fn apply_noise(n: Noise, spec: &Spec, case: &mut Case, rng: &mut Rng) {
    let untouched = case.untouched();
    let what = match n {
        Noise::HugeHeader => match rng.below(3) {
            0 if !untouched.is_empty() => {
                let at = rng.pick(&untouched);
                case.headers.0[at].1.push_str(&HUGE_VALUE);
                format!("64 KB appended to header {}", case.headers.0[at].0)
            }
            1 => {
                case.headers.push(HUGE_NAME.clone(), "1");
                "a header with a 64 KB name".to_owned()
            }
            _ => {
                case.headers.push("X-Hostile-Pad", HUGE_VALUE.clone());
                "a 64 KB header X-Hostile-Pad".to_owned()
            }
        },
        Noise::ManyHeaders => {
            let count = rng.range(8, 64);
            for k in 0..count {
                let name = format!("x-noise-{}-{k}", rng.alnum(4));
                let len = rng.below(40);
                let value = rng.printable(len);
                case.headers.push(name, value);
            }
            format!("{count} extra headers")
        }
        Noise::DuplicateHeader => {
            let (name, original) = if untouched.is_empty() {
                ("X-Dup".to_owned(), "a".to_owned())
            } else {
                case.headers.0[rng.pick(&untouched)].clone()
            };
            let value = match rng.below(4) {
                0 => {
                    let n = rng.range(1, 80);
                    rng.printable(n)
                }
                1 => String::new(),
                2 => rng.non_utf8_header(16),
                _ => {
                    let n = original.len().clamp(1, 200);
                    rng.from(HEX, n)
                }
            };
            let recased = recase(rng, &name);
            case.headers.push(recased.clone(), value.clone());
            format!("header {recased} sent again with {:?}", shorten(&value))
        }
        Noise::InvalidUtf8Header => {
            let n = rng.range(1, 64);
            let value = rng.non_utf8_header(n);
            if !untouched.is_empty() && rng.chance(50) {
                let at = rng.pick(&untouched);
                case.headers.0[at].1 = value;
                format!("header {} replaced by invalid UTF-8", case.headers.0[at].0)
            } else {
                case.headers.push("X-Hostile-Bin", value);
                "header X-Hostile-Bin of invalid UTF-8".to_owned()
            }
        }
        Noise::ControlCharHeader => {
            if !untouched.is_empty() && rng.chance(40) {
                let at = rng.pick(&untouched);
                let v = &mut case.headers.0[at].1;
                *v = format!(" {v}\t");
                format!("header {} wrapped in whitespace", case.headers.0[at].0)
            } else {
                case.headers.push("X-Hostile-Ctl", "a\r\nX-Injected: 1\u{0}\t\u{7f}b");
                "header X-Hostile-Ctl with CR, LF, NUL, TAB, DEL".to_owned()
            }
        }
        Noise::ContentType => {
            let value = rng.pick(&[
                "text/plain",
                "application/xml",
                "",
                "multipart/form-data; boundary=x",
                "application/json; charset=utf-16",
                "application/x-www-form-urlencoded",
                "APPLICATION/JSON",
                "\u{0}",
                "application/octet-stream",
            ]);
            set_header(&mut case.headers, "content-type", value.to_owned());
            format!("content-type {value:?}")
        }
        Noise::HeaderCase => {
            for (name, _) in &mut case.headers.0 {
                *name = recase(rng, name);
            }
            "header names re-cased".to_owned()
        }
        Noise::OversizedBody => {
            let n = MAX_BODY_BYTES + rng.range(1, 4096);
            case.body = rng.bytes(n);
            format!("body replaced by {n} random bytes (max_body_bytes {MAX_BODY_BYTES})")
        }
        Noise::Url => {
            let url = match rng.below(5) {
                0 => format!("{}&utm_source={}", case.url, rng.alnum(6)),
                1 => case.url.replace('?', "/extra?"),
                2 => String::new(),
                3 => "not a url %zz".to_owned(),
                _ => format!("{}&pad={}", case.url, &HUGE_VALUE[..8192]),
            };
            case.url = url;
            format!("URL changed to {:?}", shorten(&case.url))
        }
        Noise::Method => {
            case.method = rng.pick(&["GET", "PUT", "", "post", "BREW"]).to_owned();
            format!("method {:?}", case.method)
        }
        Noise::Body => {
            if spec.covers == Covers::MailgunToken {
                let (body, what) = match rng.below(4) {
                    0 => (Vec::new(), "empty"),
                    1 => {
                        let n = rng.range(1, 256);
                        (rng.bytes(n), "random bytes")
                    }
                    2 => (b"null".to_vec(), "null"),
                    _ => (br#"{"event-data":{"id":"evt_forged","event":"delivered"}}"#.to_vec(), "an unsigned event"),
                };
                case.body = body;
                format!("body replaced by {what}")
            } else {
                let kind = rng.pick(&[
                    Breaker::BodyFlip,
                    Breaker::BodyTruncate,
                    Breaker::BodyExtend,
                    Breaker::BodyReplace,
                    Breaker::BodyInvalidUtf8,
                ]);
                match changed_body(kind, &case.body, rng) {
                    Some((body, what)) => {
                        case.body = body;
                        what
                    }
                    None => "body left alone (empty)".to_owned(),
                }
            }
        }
    };
    case.log.push(format!("noise {}: {what}", n.name()));
}

/// The same header name with its first 256 bytes in random case.
fn recase(rng: &mut Rng, name: &str) -> String {
    let mut bytes = name.as_bytes().to_vec();
    let mut bits = 0;
    for (i, b) in bytes.iter_mut().take(256).enumerate() {
        if i % 64 == 0 {
            bits = rng.next();
        }
        if bits >> (i % 64) & 1 == 1 {
            b.make_ascii_uppercase();
        } else {
            b.make_ascii_lowercase();
        }
    }
    String::from_utf8(bytes).expect("only ASCII letters change")
}

fn shorten(s: &str) -> String {
    if s.len() <= 80 {
        return s.to_owned();
    }
    let cut = (0..=80).rev().find(|&i| s.is_char_boundary(i)).unwrap_or(0);
    format!("{}... ({} bytes)", &s[..cut], s.len())
}

// ---------------------------------------------------------------------------------------------
// Running a provider's corpus.

#[derive(Default)]
struct Report {
    name: &'static str,
    cases: usize,
    bases: usize,
    handshakes: usize,
    codes: BTreeMap<&'static str, usize>,
    breakers: BTreeMap<&'static str, usize>,
    noise: BTreeMap<&'static str, usize>,
    failures: Vec<String>,
    failed: usize,
    elapsed: Duration,
    /// The corpus as JSON lines, when `HOSTILE_DUMP` asks for it.
    dump: Vec<String>,
}

/// Whether every header a breaker changed reaches a worker as it is here. HTTP trims a value's
/// leading and trailing whitespace and ends it at a line break (the rest becomes another header
/// or a 400), so a breaker like `" evt_leading"` or `"evt_1\r\nX-Injected: 1"` yields, on the
/// wire, the valid `evt_leading` or `evt_1`: a different request, which the worker may rightly
/// accept (the id and type headers involved are unsigned). Those stay in the native corpus but
/// are not sent through the worker.
fn breakers_survive_the_wire(case: &Case) -> bool {
    case.headers.0.iter().filter(|(name, _)| case.touched.iter().any(|t| t.eq_ignore_ascii_case(name))).all(
        |(_, value)| {
            let edge = |c: Option<char>| matches!(c, Some(' ' | '\t'));
            !edge(value.chars().next()) && !edge(value.chars().last()) && !value.contains(['\r', '\n'])
        },
    )
}

/// A request as the integration suite sends it: header values as they are (invalid UTF-8 comes
/// as Latin-1 characters, which go on the wire as single bytes), the body in base64.
fn dump_request(case: &Case, body: &[u8]) -> Value {
    json!({
        "method": case.method,
        "url": case.url,
        "headers": case.headers.0,
        "body": STANDARD.encode(body),
    })
}

fn describe(result: &Result<Intake, Rejection>) -> String {
    match result {
        Ok(Intake::Event(v)) => {
            format!("ACCEPTED as an event: id {:?}, type {:?}, {} body bytes", v.id(), v.event_type(), v.body().len())
        }
        Ok(Intake::Handshake(h)) => format!(
            "ANSWERED as a handshake: {} {} {:?}",
            h.status,
            h.content_type,
            shorten(&String::from_utf8_lossy(&h.body))
        ),
        Err(r) => format!("rejected {} {}", r.status(), r.code()),
    }
}

/// Verifies as the worker does, both ways: with Rust's HMACs and curves, and in two passes with
/// the HMACs and public-key checks computed in between (Web Crypto's, in the worker): the two
/// must agree on every case.
fn run(source: &SourceConfig, case: &Case, body: Vec<u8>) -> Result<Intake, Rejection> {
    let request = Request { method: &case.method, url: &case.url, headers: &case.headers };
    let computed = needed(source, request, &body, NOW_MS).answer_here(&body);
    let two_pass = verify_with(source, request, body.clone(), NOW_MS, Some(computed));
    let native = verify(source, request, body, NOW_MS);
    assert_eq!(native, two_pass, "{}: the two-pass verification disagrees", source.name);
    native
}

fn run_provider(p: Provider, cases: usize) -> Report {
    let started = Instant::now();
    let spec = spec(p);
    let mut rng = Rng::seeded(p.name());
    let keys = keys(p, &mut rng);
    let sources = source_json(p).to_string();
    let var = format!("WEBHOOK_SECRET_{}", p.name().to_ascii_uppercase());
    let config = Config::load(Some(&sources), &|k| (k == var).then(|| keys.env_value.clone()));
    let source = config.source(p.name()).unwrap_or_else(|e| panic!("{}: {e:?} {:?}", p.name(), config.problems()));
    assert_eq!(source.max_body_bytes, MAX_BODY_BYTES as u64);

    // The requests to break, each checked first: it verifies as it was signed; signed with
    // another key it does not; re-signed outside the window it fails on the window alone; and
    // noise that changes nothing signed leaves it authentic.
    let pool_size = if spec.crypto_percent < 100 { SLOW_POOL } else { POOL };
    let pool: Vec<Base> = (0..pool_size).map(|i| make_base(&spec, &keys, source, &mut rng, i)).collect();
    for (i, base) in pool.iter().enumerate() {
        let what = format!("{} base #{i} ({}, {} bytes)", p.name(), base.kind, base.signed.body.len());
        let case = Case::from_signed(&base.url, &base.signed);
        match run(source, &case, case.body.clone()) {
            Ok(Intake::Event(_)) if !base.handshake => {}
            Ok(Intake::Handshake(_)) if base.handshake => {}
            other => panic!("generator bug: {what} does not verify as sent: {}", describe(&other)),
        }
        let other = Case::from_signed(&base.url, &base.other);
        assert_eq!(
            run(source, &other, other.body.clone()).err(),
            Some(Rejection::InvalidSignature),
            "{what}: other key"
        );
        for (_, signed) in base.stale.iter().chain(base.future.iter()) {
            let case = Case::from_signed(&base.url, signed);
            let result = run(source, &case, case.body.clone());
            assert_eq!(result.err(), Some(Rejection::TimestampOutOfTolerance), "{what}: outside the window");
        }
        let mut noisy = Case::from_signed(&base.url, &base.signed);
        noisy.headers.push("X-Hostile-Pad", HUGE_VALUE.clone());
        apply_noise(Noise::ManyHeaders, &spec, &mut noisy, &mut rng);
        apply_noise(Noise::HeaderCase, &spec, &mut noisy, &mut rng);
        for n in [Noise::Url, Noise::Method] {
            if n.applies(&spec) {
                apply_noise(n, &spec, &mut noisy, &mut rng);
            }
        }
        let result = run(source, &noisy, noisy.body.clone());
        assert!(result.is_ok(), "{what}: unsigned noise alone {:?} gives {}", noisy.log, describe(&result));
    }

    let mut report = Report {
        name: p.name(),
        bases: pool.len(),
        handshakes: pool.iter().filter(|b| b.handshake).count(),
        ..Report::default()
    };
    let dumping = std::env::var_os("HOSTILE_DUMP").is_some();
    if dumping {
        let authentic = pool.iter().find(|b| !b.handshake).expect("an event base");
        let case = Case::from_signed(&authentic.url, &authentic.signed);
        report.dump.push(
            json!({
                "provider": p.name(),
                "source": source_json(p)[p.name()],
                "secret": keys.env_value,
                "now": NOW,
                "url_base": URL_BASE,
                "authentic": dump_request(&case, &case.body),
            })
            .to_string(),
        );
    }
    let noise_menu: Vec<(Noise, usize)> = Noise::MENU.iter().copied().filter(|(n, _)| n.applies(&spec)).collect();
    let noise_total: usize = noise_menu.iter().map(|(_, w)| w).sum();

    for number in 0..cases {
        let i = rng.below(pool.len());
        let base = &pool[i];
        let mut case = Case::from_signed(&base.url, &base.signed);
        let cheap = !rng.chance(spec.crypto_percent);
        let menu: Vec<Breaker> =
            Breaker::ALL.iter().copied().filter(|b| b.applies(&spec, base) && !(cheap && b.reaches_crypto())).collect();
        let wanted = if rng.chance(30) { 2 } else { 1 };
        let mut families: Vec<&'static str> = Vec::new();
        let mut applied: Vec<Breaker> = Vec::new();
        for _ in 0..64 {
            if applied.len() == wanted {
                break;
            }
            let b = rng.pick(&menu);
            // A fresh start (re-signing, replay) replaces the request, so it can only come first.
            if families.contains(&b.family()) || (b.family() == "start" && !applied.is_empty()) {
                continue;
            }
            if apply_breaker(b, &spec, &pool, i, &mut case, &mut rng, cheap) {
                families.push(b.family());
                if b == Breaker::ReplayedSignature {
                    families.push("body");
                }
                applied.push(b);
            }
        }
        assert!(!applied.is_empty(), "generator bug: no breaker applies to {} base #{i}", p.name());
        for b in &applied {
            *report.breakers.entry(b.name()).or_default() += 1;
        }
        let noise_count = rng.pick(&[0, 1, 1, 2, 2, 3]);
        for _ in 0..noise_count {
            let mut roll = rng.below(noise_total);
            let n = noise_menu
                .iter()
                .find(|(_, w)| {
                    let hit = roll < *w;
                    roll = roll.saturating_sub(*w);
                    hit
                })
                .unwrap()
                .0;
            apply_noise(n, &spec, &mut case, &mut rng);
            *report.noise.entry(n.name()).or_default() += 1;
        }

        let body = std::mem::take(&mut case.body);
        if dumping && breakers_survive_the_wire(&case) {
            let mut line = dump_request(&case, &body);
            let needles: Vec<&String> =
                base.needles.iter().chain(keys.needles.iter()).filter(|n| n.len() >= 8).collect();
            line["provider"] = json!(p.name());
            line["needles"] = json!(needles);
            line["mutations"] = json!(case.log);
            report.dump.push(line.to_string());
        }
        let result = run(source, &case, body);
        report.cases += 1;
        let problem = match &result {
            Ok(_) => Some(describe(&result)),
            Err(r) if !(400..500).contains(&r.status()) => Some(format!("{} (not a 4xx)", describe(&result))),
            Err(r) => {
                *report.codes.entry(r.code()).or_default() += 1;
                let rendered = [r.body(), r.to_string(), r.code().to_owned(), format!("{r:?}"), r.status().to_string()];
                base.needles
                    .iter()
                    .chain(keys.needles.iter())
                    .filter(|n| n.len() >= 8)
                    .find(|n| rendered.iter().any(|s| s.contains(n.as_str())))
                    .map(|n| format!("{} LEAKS {:?} in {:?}", describe(&result), shorten(n), rendered))
            }
        };
        if let Some(problem) = problem {
            report.failed += 1;
            if report.failures.len() < 10 {
                let mutations: String = case.log.iter().map(|m| format!("\n      - {m}")).collect();
                report.failures.push(format!(
                    "[{}] request #{number} from base #{i} ({}, {} signed body bytes): {problem}\n    mutations:{mutations}",
                    p.name(),
                    base.kind,
                    base.signed.body.len()
                ));
            }
        }
    }
    report.elapsed = started.elapsed();
    report
}

fn counts(map: &BTreeMap<&'static str, usize>) -> String {
    map.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ")
}

#[test]
fn hostile_requests_are_always_rejected() {
    let cases = std::env::var("HOSTILE_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(DEFAULT_CASES);
    let only = std::env::var("HOSTILE_PROVIDERS").ok();
    let started = Instant::now();
    let reports: Vec<Report> = std::thread::scope(|scope| {
        let handles: Vec<_> = Provider::ALL
            .into_iter()
            .filter(|p| only.as_ref().is_none_or(|names| names.split(',').any(|n| n.trim() == p.name())))
            .map(|p| scope.spawn(move || run_provider(p, cases)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))).collect()
    });

    let total: usize = reports.iter().map(|r| r.cases).sum();
    let mut summary = format!(
        "\nhostile corpus: {} providers, {total} requests in {:.1?}\n{:<10} {:>8} {:>6} {:>9} {:>8}  rejections by code\n",
        reports.len(),
        started.elapsed(),
        "provider",
        "requests",
        "bases",
        "handshake",
        "time"
    );
    let mut breakers: BTreeMap<&'static str, usize> = BTreeMap::new();
    let mut noise: BTreeMap<&'static str, usize> = BTreeMap::new();
    for r in &reports {
        summary += &format!(
            "{:<10} {:>8} {:>6} {:>9} {:>7.2}s  {}{}\n",
            r.name,
            r.cases,
            r.bases,
            r.handshakes,
            r.elapsed.as_secs_f64(),
            counts(&r.codes),
            if r.failed > 0 { format!("  FAILED {}", r.failed) } else { String::new() }
        );
        for (k, v) in &r.breakers {
            *breakers.entry(k).or_default() += v;
        }
        for (k, v) in &r.noise {
            *noise.entry(k).or_default() += v;
        }
    }
    summary += &format!("breakers: {}\nnoise: {}\n", counts(&breakers), counts(&noise));
    if let Some(path) = std::env::var_os("HOSTILE_DUMP") {
        let lines: Vec<&str> = reports.iter().flat_map(|r| r.dump.iter().map(String::as_str)).collect();
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
        summary += &format!("corpus written to {}\n", std::path::Path::new(&path).display());
    }
    // Straight to stderr, past the test harness's capture: the table is the point of the run.
    std::io::stderr().write_all(summary.as_bytes()).unwrap();

    for r in &reports {
        assert!(r.cases >= cases, "{}: only {} requests", r.name, r.cases);
    }
    let failed: usize = reports.iter().map(|r| r.failed).sum();
    let failures: Vec<&String> = reports.iter().flat_map(|r| r.failures.iter()).collect();
    assert!(
        failed == 0,
        "{failed} hostile requests were not rejected properly (first {} shown):\n{}",
        failures.len(),
        failures.iter().map(|f| f.as_str()).collect::<Vec<_>>().join("\n")
    );
}
