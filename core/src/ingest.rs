//! From raw request to [`Verified`] event: the only way to make one.
//!
//! `Verified` has private fields and a single constructor, [`verify`], so unverified bytes can
//! never reach the queue: everything downstream takes a `Verified` or an envelope built from it.

use crate::config::SourceConfig;
use crate::envelope::{self, BodyRef, EventMeta, MAX_INLINE_ENVELOPE};
use crate::error::Rejection;
use crate::headers::Headers;
use crate::ordering::Position;
use crate::pattern;
use crate::providers::{Handshake, Identity, Inbound};
use crate::secret::Secret;
use crate::signature::{Answers, HashFn, KnownMacs, Macs, NativeMacs, Needed, RecordMacs, Sealing};

/// Refuses a body by its declared `Content-Length` before reading it. An absent or unparseable
/// length is checked after reading instead (chunked bodies have none).
pub fn check_declared_length(source: &SourceConfig, content_length: Option<&str>) -> Result<(), Rejection> {
    match content_length.and_then(|v| v.trim().parse::<u64>().ok()) {
        Some(n) if n > source.max_body_bytes => Err(Rejection::PayloadTooLarge),
        _ => Ok(()),
    }
}

/// An authentic event: its signature checked over exactly these bytes, its id and type known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    source: String,
    identity: Identity,
    content_type: Option<String>,
    received_at_ms: i64,
    /// The request's headers as captured: credentials redacted, size bounded.
    headers: Vec<(String, String)>,
    /// Its entity and version, when the source orders events and the event carries both.
    position: Option<Position>,
    /// Its signature's seal, where the id is not signed ([`seal_of`]).
    seal: Option<String>,
    body: Vec<u8>,
}

/// Most header bytes (names and values) captured with an event; headers past it are left out
/// and a `x-edgehook-headers-truncated` entry says so. Keeps every queue message well inside
/// its size limit whatever a sender puts in its headers.
pub const MAX_CAPTURED_HEADER_BYTES: usize = 16 * 1024;

/// The headers kept of a request: credentials redacted, at most [`MAX_CAPTURED_HEADER_BYTES`].
pub fn captured_headers(headers: &dyn Headers) -> Vec<(String, String)> {
    let mut kept = Vec::new();
    let mut size = 0;
    for (name, value) in crate::capture::redact_headers(headers.all()) {
        size += name.len() + value.len();
        if size > MAX_CAPTURED_HEADER_BYTES {
            kept.push(("x-edgehook-headers-truncated".to_owned(), "true".to_owned()));
            break;
        }
        kept.push((name, value));
    }
    kept
}

/// The URL a provider signed: the source's `public_url` (its public address, behind a proxy or a
/// custom domain) followed by the query string the request arrived with; or, without a
/// `public_url`, the URL as received.
pub fn signed_url(public_url: Option<&str>, received: &str) -> String {
    match public_url {
        None => received.to_owned(),
        Some(public) => match received.split_once('?') {
            Some((_, query)) => format!("{public}?{query}"),
            None => public.to_owned(),
        },
    }
}

/// A request as it reached edgehook.
#[derive(Clone, Copy)]
pub struct Request<'a> {
    pub method: &'a str,
    /// The URL the request was sent to; a source's `public_url` replaces it for signatures.
    pub url: &'a str,
    pub headers: &'a dyn Headers,
}

/// What an authentic request turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Intake {
    /// An event, to enqueue.
    Event(Verified),
    /// The provider proving the endpoint: answer this, enqueue nothing.
    Handshake(Handshake),
}

/// Verifies a request for `source`. `now_ms` is the clock (Unix milliseconds).
pub fn verify(source: &SourceConfig, request: Request<'_>, body: Vec<u8>, now_ms: i64) -> Result<Intake, Rejection> {
    verify_with(source, request, body, now_ms, None)
}

/// The smallest body whose HMAC-SHA256 (or SHA-512) the worker has Web Crypto compute, and the
/// same for HMAC-SHA1 (Rust's SHA-1 in wasm is faster than its SHA-256). Measured in workerd,
/// verification by verification (BENCHMARKS.md, section 3): Rust's HMAC compiled to wasm is
/// faster for small bodies (Web Crypto pays a promise per call, and verification runs twice),
/// Web Crypto from these sizes on, by 1.2x to 2x here and up to 4x at 1 MB.
pub const WEB_CRYPTO_FROM_BYTES: usize = 8 * 1024;
pub const WEB_CRYPTO_SHA1_FROM_BYTES: usize = 16 * 1024;

/// Whether Web Crypto computes an HMAC with `hash` of a body this long faster than Rust in wasm.
pub fn web_crypto_pays_off(hash: HashFn, body_len: usize) -> bool {
    // A hash this build does not compute (SHA-512 in the worker) can only be computed there.
    !hash.native() || body_len >= if hash == HashFn::Sha1 { WEB_CRYPTO_SHA1_FROM_BYTES } else { WEB_CRYPTO_FROM_BYTES }
}

/// Whether this request is better verified with Web Crypto's help: the source has public keys
/// (Web Crypto's curves are native code, and the worker has no others), or it signs the body as
/// it is with HMAC and the body is large enough. Not Twilio's HMAC (it signs its form parameters
/// decoded and sorted: that work would be done twice), not the providers that sign a few bytes.
pub fn prefers_web_crypto(source: &SourceConfig, body_len: usize) -> bool {
    source.secrets.iter().any(Secret::is_public_key)
        || (source.provider.body_hmac(source.generic.as_ref()).is_some_and(|hash| web_crypto_pays_off(hash, body_len))
            && source.secrets.iter().any(|secret| secret.hmac_key().is_some()))
}

/// What Web Crypto should compute to verify this request: every public-key check, and the HMACs
/// for which it is faster than Rust ([`web_crypto_pays_off`]). The worker has them computed,
/// then calls [`verify_with`] with the results.
pub fn web_crypto_requests(source: &SourceConfig, request: Request<'_>, body: &[u8], now_ms: i64) -> Needed {
    let mut needed = needed(source, request, body, now_ms);
    needed.macs.retain(|mac| web_crypto_pays_off(mac.hash, body.len()));
    needed
}

/// Every HMAC and public-key check verifying this request needs, found by running the
/// verification without them (its answer, always a rejection, is thrown away).
pub fn needed(source: &SourceConfig, request: Request<'_>, body: &[u8], now_ms: i64) -> Needed {
    if body.len() as u64 > source.max_body_bytes {
        return Needed::default();
    }
    let url = signed_url(source.public_url.as_deref(), request.url);
    let req = Inbound { method: request.method, url: &url, headers: request.headers, body };
    let record = RecordMacs::new(body);
    let _ = source.provider.verify(req, source.scheme().with_macs(&record), now_ms.div_euclid(1000));
    record.into_needed()
}

/// [`verify`], with the HMACs and checks `computed` elsewhere for what [`web_crypto_requests`]
/// returned. Provided each computed answer is right, the result is that of [`verify`] in a build
/// with the curves, whichever requests `computed` covers: an answer is taken from it only for
/// exactly the request it was computed for (see [`KnownMacs`]), and the rest are computed here.
pub fn verify_with(
    source: &SourceConfig,
    request: Request<'_>,
    body: Vec<u8>,
    now_ms: i64,
    computed: Option<Answers>,
) -> Result<Intake, Rejection> {
    if body.len() as u64 > source.max_body_bytes {
        return Err(Rejection::PayloadTooLarge);
    }
    let url = signed_url(source.public_url.as_deref(), request.url);
    let req = Inbound { method: request.method, url: &url, headers: request.headers, body: &body };
    let known = computed.map(|computed| KnownMacs::new(&body, computed));
    let macs: &dyn Macs = match &known {
        Some(known) => known,
        None => &NativeMacs,
    };
    let seal_by = source.provider.seal_by(source.generic.as_ref()).filter(|_| source.one_event_per_signature);
    let sealing = Sealing::new(macs, seal_by);
    let scheme = source.scheme().with_macs(&sealing);
    let key = source.provider.verify(req, scheme, now_ms.div_euclid(1000))?;
    if let Some(handshake) = source.provider.handshake(req, key) {
        return Ok(Intake::Handshake(handshake));
    }
    let identity = source.provider.identify(req, scheme)?;
    let position = source.ordering.as_ref().and_then(|o| o.position(request.headers, &body, now_ms));
    let seal = sealing.into_matched().map(|signature| seal_of(&source.name, &signature));
    // A sealed provider whose verification did not go through `first_hmac_match` would skip
    // the check without a word: caught in tests, should a provider ever change.
    debug_assert!(seal_by.is_none() || seal.is_some(), "{} verified without a seal", source.provider.name());
    Ok(Intake::Event(Verified {
        source: source.name.clone(),
        identity,
        content_type: request.headers.get("content-type"),
        received_at_ms: now_ms,
        headers: captured_headers(request.headers),
        position,
        seal,
        body,
    }))
}

/// The seal of a request's signature, for a provider whose event id travels outside it
/// ([`Provider::seal_by`](crate::providers::Provider::seal_by)): what identifies the signature
/// that verified it ([`SealBy`](crate::signature::SealBy)), hashed with the source's name. The
/// consumer lets the first event id taken under a seal have it, and drops any other id
/// presenting it as a duplicate: a signed request resent under a fresh id is a replay (or the
/// provider sending the same signed content again). The event type is left out: it travels
/// unsigned too, and would let each resend under a new type pass as new. A hash: one length
/// for every kind of signature, and Mailgun's signed token is never stored.
pub fn seal_of(source: &str, signature: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    let mut hash = Sha256::new();
    hash.update(b"edgehook seal\0");
    hash.update(source.as_bytes());
    hash.update(b"\0");
    hash.update(signature);
    crate::signature::to_hex(&hash.finalize())
}

impl Verified {
    pub fn source(&self) -> &str {
        &self.source
    }

    pub fn id(&self) -> &str {
        &self.identity.id
    }

    pub fn event_type(&self) -> Option<&str> {
        self.identity.event_type.as_deref()
    }

    /// Its signature's seal, where its id is not signed ([`seal_of`]).
    pub fn seal(&self) -> Option<&str> {
        self.seal.as_deref()
    }

    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// Whether the source's `events` allow-list admits this event; if not, it is acknowledged
    /// and recorded as `filtered` instead of being delivered.
    pub fn admitted_by(&self, source: &SourceConfig) -> bool {
        pattern::admits(source.events.as_deref(), self.event_type())
    }

    /// The idempotency key of this event.
    pub fn key(&self) -> String {
        idempotency_key(&self.source, &self.identity.id)
    }

    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }

    /// The metadata of the first delivery attempt.
    fn meta(&self, body: BodyRef, filtered: bool) -> EventMeta {
        EventMeta {
            event_type: self.identity.event_type.clone(),
            content_type: self.content_type.clone(),
            headers: self.headers.clone(),
            position: self.position.clone(),
            seal: self.seal.clone(),
            filtered,
            ..EventMeta::first_attempt(self.source.clone(), self.identity.id.clone(), self.received_at_ms, body)
        }
    }

    /// Whether the body fits inside a queue message; if not, it needs a claim check in R2.
    pub fn fits_inline(&self) -> bool {
        envelope::inline_size(&self.meta(BodyRef::Inline, false), self.body.len()) <= MAX_INLINE_ENVELOPE
    }

    /// The queue message for this event: inline when it fits, else pointing at `stored_key`
    /// (where the caller has put the body). A `filtered` event travels only to be recorded.
    pub fn envelope(&self, stored_key: Option<&str>, filtered: bool) -> Vec<u8> {
        let body = match stored_key {
            None => BodyRef::Inline,
            Some(key) => BodyRef::Stored { key: key.to_owned(), len: self.body.len() as u64 },
        };
        envelope::encode(&self.meta(body, filtered), &self.body)
    }
}

/// The key an event's idempotency record lives under. Source names cannot contain `:`, so the
/// first `:` separates the two unambiguously.
pub fn idempotency_key(source: &str, id: &str) -> String {
    format!("{source}:{id}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::headers::HeaderList;
    use crate::providers::{Provider, Unsigned};
    use crate::secret::SigningKey;

    fn config(extra: &str) -> Config {
        let sources = format!(r#"{{"s":{{"provider":"stripe"{extra}}}}}"#);
        Config::load(Some(&sources), &|k| (k == "WEBHOOK_SECRET_S").then(|| "whsec_k".to_string()))
    }

    fn signed(body: &[u8], now: i64) -> HeaderList {
        let key = SigningKey::parse("whsec_k", Provider::Stripe.secret_encoding()).unwrap();
        let unsigned = Unsigned { method: "POST", url: "", body, id: "", timestamp: now };
        Provider::Stripe.sign(&key, unsigned, None).headers.with("Content-Type", "application/json")
    }

    fn event(source: &SourceConfig, headers: &HeaderList, body: Vec<u8>, now_ms: i64) -> Result<Verified, Rejection> {
        let request = Request { method: "POST", url: "https://example.com/webhooks/s", headers };
        match verify(source, request, body, now_ms)? {
            Intake::Event(v) => Ok(v),
            Intake::Handshake(h) => panic!("unexpected handshake {h:?}"),
        }
    }

    /// A build without HMAC-SHA512 (the worker) asks Web Crypto for it whatever the body's size,
    /// and cannot verify without its answer; a native build computes it itself. Run both ways:
    /// `cargo test -p edgehook-core` and with `--no-default-features`.
    #[test]
    fn sha512_is_left_to_web_crypto_where_the_build_has_none() {
        let sources = r#"{"g":{"provider":"generic","header":"X-Sig","algorithm":"sha512","encoding":"hex"}}"#;
        let c = Config::load(Some(sources), &|k| (k == "WEBHOOK_SECRET_G").then(|| "k".to_string()));
        let source = c.source("g").unwrap();
        let body = br#"{"id":"e1"}"#.to_vec();
        let mac = crate::signature::hmac_sha512(b"k", &[&body]);
        let headers = HeaderList::new().with("X-Sig", crate::signature::to_hex(&mac));
        let request = Request { method: "POST", url: "https://example.com/webhooks/g", headers: &headers };
        let elsewhere = usize::from(!crate::signature::NATIVE_SHA512);
        assert_eq!(prefers_web_crypto(source, body.len()), elsewhere == 1, "a small body");
        let needed = web_crypto_requests(source, request, &body, 0);
        assert_eq!((needed.macs.len(), needed.not_computable_here()), (elsewhere, elsewhere));
        assert_eq!(
            verify(source, request, body.clone(), 0).map(|_| ()),
            if elsewhere == 1 { Err(Rejection::InvalidSignature) } else { Ok(()) }
        );
        assert_eq!(needed.clone().answer_here(&body).macs.len(), 0, "not computed here, or not needed");
        let answers = Answers { macs: needed.macs.into_iter().map(|m| (m, mac.to_vec())).collect(), checks: vec![] };
        assert!(verify_with(source, request, body, 0, Some(answers)).is_ok(), "with Web Crypto's answer");
    }

    #[test]
    fn verified_events_carry_identity_and_exact_bytes() {
        let c = config("");
        let body = br#"{"id":"evt_9","type":"charge.succeeded"}"#.to_vec();
        let v = event(c.source("s").unwrap(), &signed(&body, 1000), body.clone(), 1_000_500).unwrap();
        assert_eq!((v.source(), v.id(), v.event_type()), ("s", "evt_9", Some("charge.succeeded")));
        assert_eq!(v.body(), body.as_slice());
        assert_eq!(v.key(), "s:evt_9");
        assert!(v.fits_inline());
        let (meta, inline) = envelope::decode(&v.envelope(None, false)).map(|(m, b)| (m, b.to_vec())).unwrap();
        assert_eq!(inline, body);
        assert_eq!(meta.content_type.as_deref(), Some("application/json"));
        assert_eq!((meta.attempt, meta.received_at_ms), (1, 1_000_500));
        assert!(!meta.filtered);
        // Headers travel for capture, exactly as sent.
        assert!(meta.headers.iter().any(|(k, v)| k == "Content-Type" && v == "application/json"));
        assert!(meta.headers.iter().any(|(k, _)| k == "Stripe-Signature"));
        assert_eq!(meta.position, None, "this body has no version");
        // Stripe orders by default: the object and the event's creation time travel along.
        let body =
            br#"{"id":"evt_10","type":"invoice.paid","created":1700000000,"data":{"object":{"id":"in_1"}}}"#.to_vec();
        let v = event(c.source("s").unwrap(), &signed(&body, 1000), body, 1_000_500).unwrap();
        let (meta, _) = envelope::decode(&v.envelope(None, false)).unwrap();
        let position = meta.position.unwrap();
        assert_eq!((position.entity.as_str(), position.version.0.as_str()), ("in_1", "1700000000"));
    }

    #[test]
    fn captured_headers_are_redacted_and_bounded() {
        let mut h = HeaderList::from([("X-Gitlab-Token", "s3cret"), ("Authorization", "Bearer t")]);
        for i in 0..40 {
            h.push(format!("x-pad-{i}"), "v".repeat(1000));
        }
        let kept = captured_headers(&h);
        assert!(kept.iter().all(|(_, v)| !v.contains("s3cret") && !v.contains("Bearer")));
        let size: usize = kept.iter().map(|(k, v)| k.len() + v.len()).sum();
        assert!(size <= MAX_CAPTURED_HEADER_BYTES + 64, "{size}");
        assert_eq!(kept.last().unwrap().0, "x-edgehook-headers-truncated");
        assert!(kept.len() > 10 && kept.len() < 20);
    }

    #[test]
    fn size_limits_apply_before_verification() {
        let c = config(r#","max_body_bytes":10"#);
        let s = c.source("s").unwrap();
        assert_eq!(check_declared_length(s, Some("11")), Err(Rejection::PayloadTooLarge));
        assert_eq!(check_declared_length(s, Some("10")), Ok(()));
        assert_eq!(check_declared_length(s, None), Ok(()));
        let body = br#"{"id":"evt_123456"}"#.to_vec();
        assert_eq!(event(s, &HeaderList::new(), body, 0), Err(Rejection::PayloadTooLarge));
    }

    #[test]
    fn large_bodies_need_a_claim_check() {
        let c = config("");
        let body = format!(r#"{{"id":"evt_big","pad":"{}"}}"#, "x".repeat(MAX_INLINE_ENVELOPE));
        let v = event(c.source("s").unwrap(), &signed(body.as_bytes(), 5), body.into_bytes(), 5_000).unwrap();
        assert!(!v.fits_inline());
        let bytes = v.envelope(Some("bodies/s/abc"), false);
        assert!(bytes.len() < 1024);
        let (meta, inline) = envelope::decode(&bytes).unwrap();
        assert!(inline.is_empty());
        assert_eq!(meta.body, BodyRef::Stored { key: "bodies/s/abc".into(), len: v.body().len() as u64 });
    }

    #[test]
    fn public_url_replaces_everything_but_the_query() {
        assert_eq!(signed_url(None, "http://127.0.0.1:8787/webhooks/t?a=1"), "http://127.0.0.1:8787/webhooks/t?a=1");
        assert_eq!(
            signed_url(Some("https://hooks.example.com/twilio"), "http://127.0.0.1/webhooks/t?a=1&b=2"),
            "https://hooks.example.com/twilio?a=1&b=2"
        );
        assert_eq!(
            signed_url(Some("https://hooks.example.com/twilio"), "http://127.0.0.1/webhooks/t"),
            "https://hooks.example.com/twilio"
        );
    }

    #[test]
    fn allow_list_filters_by_type() {
        let c = config(r#","events":["invoice.*"]"#);
        let s = c.source("s").unwrap();
        let paid = br#"{"id":"evt_1","type":"invoice.paid"}"#.to_vec();
        let other = br#"{"id":"evt_2","type":"charge.failed"}"#.to_vec();
        assert!(event(s, &signed(&paid, 1), paid, 1000).unwrap().admitted_by(s));
        assert!(!event(s, &signed(&other, 1), other, 1000).unwrap().admitted_by(s));
    }

    /// Sources of providers whose event ids are not signed (one with the check turned off), and
    /// Stripe, whose are. The Mailgun source knows a subaccount's key and the primary account's.
    fn sealing_config() -> Config {
        let sources = r#"{"gh":{"provider":"github"},"mg":{"provider":"mailgun"},"gl":{"provider":"gitlab"},
                          "st":{"provider":"stripe"},"tw":{"provider":"twilio"},"gh2":{"provider":"github"},
                          "off":{"provider":"github","one_event_per_signature":false}}"#;
        Config::load(Some(sources), &|k| match k {
            "WEBHOOK_SECRET_ST" => Some("whsec_k".into()),
            "WEBHOOK_SECRET_MG" => Some(r#"["sub-key","primary-key"]"#.into()),
            k if k.starts_with("WEBHOOK_SECRET_") => Some("k3y".into()),
            _ => None,
        })
    }

    /// The seal of a request to `source` signed with `k3y` (Stripe: its own key).
    fn sealed(c: &Config, source: &str, headers: &HeaderList, body: &[u8], computed: bool) -> Option<String> {
        let s = c.source(source).unwrap();
        let request = Request { method: "POST", url: "https://example.com/webhooks/x", headers };
        // The two-pass verification (HMACs computed elsewhere) seals alike.
        let computed = computed.then(|| needed(s, request, body, 1_000_000).answer_here(body));
        match verify_with(s, request, body.to_vec(), 1_000_000, computed).unwrap() {
            Intake::Event(v) => {
                let (meta, _) = envelope::decode(&v.envelope(None, false)).unwrap();
                assert_eq!(meta.seal.as_deref(), v.seal(), "the seal travels with the first attempt");
                v.seal().map(str::to_owned)
            }
            Intake::Handshake(h) => panic!("unexpected handshake {h:?}"),
        }
    }

    fn signed_as(provider: Provider, key: &str, id: &str, body: &[u8]) -> crate::providers::Signed {
        let key = SigningKey::parse(key, provider.secret_encoding()).unwrap();
        let url = "https://example.com/webhooks/x";
        provider.sign(&key, Unsigned { method: "POST", url, body, id, timestamp: 1_000 }, None)
    }

    #[test]
    fn a_signature_is_sealed_where_the_id_is_not_signed() {
        let c = sealing_config();
        let body = br#"{"ref":"refs/heads/main"}"#;
        let github = |source: &str, id: &str, event: &str, body: &[u8], computed: bool| {
            let headers = signed_as(Provider::Github, "k3y", id, body).headers.with("X-GitHub-Event", event);
            sealed(&c, source, &headers, body, computed)
        };
        let first = github("gh", "d-1", "push", body, false).expect("github's delivery id is unsigned");
        assert_eq!(first.len(), 64);
        // The same signed request under a fresh delivery id, or as another type (both unsigned
        // headers): the same seal, however its HMAC was computed.
        assert_eq!(github("gh", "d-2", "push", body, false).as_ref(), Some(&first));
        assert_eq!(github("gh", "d-2", "push", body, true).as_ref(), Some(&first));
        assert_eq!(github("gh", "d-3", "create", body, false).as_ref(), Some(&first));
        // Another body: another seal. The same request to another source: another seal.
        assert_ne!(github("gh", "d-4", "push", br#"{"ref":"refs/heads/dev"}"#, false).as_ref(), Some(&first));
        assert_ne!(github("gh2", "d-1", "push", body, false).as_ref(), Some(&first));
        // A source that turned the check off: none.
        assert_eq!(github("off", "d-5", "push", body, false), None);

        // Mailgun signs a token, not the content: any `event-data` under the same signature
        // object has the same seal, whichever of the source's keys is made to match it.
        let genuine = br#"{"event-data":{"id":"m-1","event":"delivered"}}"#;
        let sub = signed_as(Provider::Mailgun, "sub-key", "tok-1", genuine);
        let parent = signed_as(Provider::Mailgun, "primary-key", "tok-1", genuine);
        let parent_mac: serde_json::Value = serde_json::from_slice(&parent.body).unwrap();
        let parent_mac = parent_mac["signature"]["signature"].clone();
        let mut original: serde_json::Value = serde_json::from_slice(&sub.body).unwrap();
        original["signature"]["parent-signature"] = parent_mac.clone();
        let mut forged = original.clone();
        forged["event-data"] = serde_json::json!({"id": "m-2", "event": "failed"});
        let mut swapped = forged.clone();
        swapped["signature"]["signature"] = parent_mac;
        swapped["event-data"]["id"] = "m-3".into();
        let mailgun = |body: &serde_json::Value| {
            let bytes = body.to_string().into_bytes();
            let request = Request { method: "POST", url: "https://example.com/", headers: &sub.headers };
            match verify(c.source("mg").unwrap(), request, bytes, 1_000_000).unwrap() {
                Intake::Event(v) => (v.id().to_owned(), v.seal().map(str::to_owned)),
                Intake::Handshake(_) => unreachable!(),
            }
        };
        let (genuine_id, genuine_seal) = mailgun(&original);
        assert_eq!(genuine_id, "m-1");
        assert!(genuine_seal.is_some());
        assert_eq!(mailgun(&forged), ("m-2".to_owned(), genuine_seal.clone()));
        assert_eq!(mailgun(&swapped), ("m-3".to_owned(), genuine_seal), "matched by the other key");

        // Twilio, with and without its (unsigned) idempotency token: adding one to a request sent
        // without changes its id, not its seal.
        let form = b"MessageSid=SM1&MessageStatus=delivered";
        let twilio = signed_as(Provider::Twilio, "k3y", "", form);
        let without = sealed(&c, "tw", &twilio.headers, form, false).expect("twilio is always sealed");
        let with_token = twilio.headers.clone().with("I-Twilio-Idempotency-Token", "tok-9");
        assert_eq!(sealed(&c, "tw", &with_token, form, false), Some(without));

        // GitLab's token authenticates nothing about the request; Stripe signs its ids.
        let gitlab = signed_as(Provider::Gitlab, "k3y", "g-1", body).headers.with("X-Gitlab-Event", "Push Hook");
        assert_eq!(sealed(&c, "gl", &gitlab, body, false), None);
        let stripe_body = br#"{"id":"evt_1","type":"a.b"}"#;
        assert_eq!(
            sealed(&c, "st", &signed_as(Provider::Stripe, "whsec_k", "", stripe_body).headers, stripe_body, false),
            None
        );
    }
}
