//! Signature schemes and event identity, one file per provider behind one exhaustive `match`.
//!
//! Every provider has the same small surface:
//! - `verify`: checks the request's signature over the raw body bytes (and, for some providers,
//!   the URL that was signed) against every configured key, with the clock passed in; returns
//!   the key that matched;
//! - `handshake`: the answer to a request the provider sends to prove the endpoint (Slack's
//!   `url_verification`, Zoom's `endpoint.url_validation`, Discord's `PING`, Twitch's
//!   `webhook_callback_verification`), when this request is one;
//! - `identify`: the event id and event type (one pass over the body);
//! - `sign`: the request the provider would send, so tests and tools make real signatures;
//! - `SECRET_ENCODING`: how the configured secret text becomes a key.
//!
//! Adding a provider is one new file and one line in each `match` below.

mod discord;
pub mod generic;
mod github;
mod gitlab;
mod hubspot;
mod intercom;
mod linear;
mod mailgun;
mod paddle;
mod pagerduty;
#[cfg(all(test, feature = "native-curves"))]
mod properties;
mod sendgrid;
mod sentry;
mod shopify;
mod slack;
mod square;
mod standard;
mod stripe;
mod twilio;
mod twitch;
mod typeform;
// Discord's, SendGrid's and Standard Webhooks' `v1a` vectors need the curves.
#[cfg(all(test, feature = "native-curves"))]
mod vectors;
mod vercel;
mod zoom;

use crate::error::Rejection;
use crate::headers::{HeaderList, Headers};
use crate::secret::{Secret, SecretEncoding, SecretSet, SigningKey};
use crate::signature::{self, HashFn, KeyAlgorithm, Macs, NativeMacs, SealBy};
use generic::GenericScheme;

pub use standard::sign as sign_standard_webhooks;
pub use standard::signature_value as standard_webhooks_signature;

/// A request as the provider sent it: method, the URL it was sent to (the public one, for
/// providers that sign it), headers and the exact body bytes.
#[derive(Clone, Copy)]
pub struct Inbound<'a> {
    pub method: &'a str,
    pub url: &'a str,
    pub headers: &'a dyn Headers,
    pub body: &'a [u8],
}

impl<'a> Inbound<'a> {
    /// A POST to an unknown URL: enough for every provider that does not sign the URL.
    pub fn post(headers: &'a dyn Headers, body: &'a [u8]) -> Self {
        Inbound { method: "POST", url: "", headers, body }
    }
}

/// What verification needs from a source's configuration.
#[derive(Debug, Clone, Copy)]
pub struct Scheme<'a> {
    pub secrets: &'a SecretSet,
    pub tolerance_secs: u64,
    /// The scheme of a `generic` source (`None` for every other provider).
    pub generic: Option<&'a GenericScheme>,
    /// Where HMACs come from ([`NativeMacs`] unless the worker computes them elsewhere).
    pub macs: &'a dyn Macs,
}

impl<'a> Scheme<'a> {
    /// A named provider's scheme: its secrets and tolerance.
    pub fn new(secrets: &'a SecretSet, tolerance_secs: u64) -> Self {
        Scheme { secrets, tolerance_secs, generic: None, macs: &NativeMacs }
    }

    /// The same scheme, with HMACs from `macs`.
    pub fn with_macs(self, macs: &'a dyn Macs) -> Self {
        Scheme { macs, ..self }
    }

    /// The first key whose HMAC of `signed` (the parts, run together) is one of `candidates`.
    fn first_hmac_match(&self, hash: HashFn, candidates: &[impl AsRef<[u8]>], signed: &[&[u8]]) -> Option<&'a Secret> {
        signature::first_hmac_match(self.secrets, self.macs, hash, candidates, signed)
    }

    /// The first public key for `algorithm` of which one of `signatures` signs `signed`.
    fn first_key_match(
        &self,
        algorithm: KeyAlgorithm,
        signatures: &[impl AsRef<[u8]>],
        signed: &[&[u8]],
    ) -> Option<&'a Secret> {
        signature::first_key_match(self.secrets, self.macs, algorithm, signatures, signed)
    }
}

/// What a verified request is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The provider's event id: the idempotency key.
    pub id: String,
    /// The event type, where the provider names one.
    pub event_type: Option<String>,
}

/// The answer to a verification handshake, sent instead of enqueueing anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handshake {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

/// A request to sign, for tests and tools.
#[derive(Debug, Clone, Copy)]
pub struct Unsigned<'a> {
    pub method: &'a str,
    pub url: &'a str,
    pub body: &'a [u8],
    /// The event or delivery id, for providers that carry it in a header.
    pub id: &'a str,
    /// Unix seconds.
    pub timestamp: i64,
}

/// A signed request: the headers to send, and the body (which some providers sign inside).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    pub headers: HeaderList,
    pub body: Vec<u8>,
}

/// The signature schemes edgehook understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Provider {
    Stripe,
    Github,
    Standard,
    Shopify,
    Slack,
    Twilio,
    Square,
    Paddle,
    Linear,
    Zoom,
    Discord,
    Sendgrid,
    Hubspot,
    Typeform,
    Twitch,
    Intercom,
    Pagerduty,
    Sentry,
    Vercel,
    Mailgun,
    Gitlab,
    Generic,
}

impl Provider {
    /// Every provider, for tests and documentation.
    pub const ALL: [Provider; 22] = [
        Provider::Stripe,
        Provider::Github,
        Provider::Standard,
        Provider::Shopify,
        Provider::Slack,
        Provider::Twilio,
        Provider::Square,
        Provider::Paddle,
        Provider::Linear,
        Provider::Zoom,
        Provider::Discord,
        Provider::Sendgrid,
        Provider::Hubspot,
        Provider::Typeform,
        Provider::Twitch,
        Provider::Intercom,
        Provider::Pagerduty,
        Provider::Sentry,
        Provider::Vercel,
        Provider::Mailgun,
        Provider::Gitlab,
        Provider::Generic,
    ];

    /// The provider named in config (`provider = "stripe"`). `svix` is another name for
    /// `standard`: Svix is where the Standard Webhooks scheme comes from.
    pub fn from_name(name: &str) -> Option<Provider> {
        match name {
            "svix" => Some(Provider::Standard),
            _ => Provider::ALL.into_iter().find(|p| p.name() == name),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Provider::Stripe => "stripe",
            Provider::Github => "github",
            Provider::Standard => "standard",
            Provider::Shopify => "shopify",
            Provider::Slack => "slack",
            Provider::Twilio => "twilio",
            Provider::Square => "square",
            Provider::Paddle => "paddle",
            Provider::Linear => "linear",
            Provider::Zoom => "zoom",
            Provider::Discord => "discord",
            Provider::Sendgrid => "sendgrid",
            Provider::Hubspot => "hubspot",
            Provider::Typeform => "typeform",
            Provider::Twitch => "twitch",
            Provider::Intercom => "intercom",
            Provider::Pagerduty => "pagerduty",
            Provider::Sentry => "sentry",
            Provider::Vercel => "vercel",
            Provider::Mailgun => "mailgun",
            Provider::Gitlab => "gitlab",
            Provider::Generic => "generic",
        }
    }

    pub fn secret_encoding(self) -> SecretEncoding {
        match self {
            Provider::Stripe => stripe::SECRET_ENCODING,
            Provider::Github => github::SECRET_ENCODING,
            Provider::Standard => standard::SECRET_ENCODING,
            Provider::Shopify => shopify::SECRET_ENCODING,
            Provider::Slack => slack::SECRET_ENCODING,
            Provider::Twilio => twilio::SECRET_ENCODING,
            Provider::Square => square::SECRET_ENCODING,
            Provider::Paddle => paddle::SECRET_ENCODING,
            Provider::Linear => linear::SECRET_ENCODING,
            Provider::Zoom => zoom::SECRET_ENCODING,
            Provider::Discord => discord::SECRET_ENCODING,
            Provider::Sendgrid => sendgrid::SECRET_ENCODING,
            Provider::Hubspot => hubspot::SECRET_ENCODING,
            Provider::Typeform => typeform::SECRET_ENCODING,
            Provider::Twitch => twitch::SECRET_ENCODING,
            Provider::Intercom => intercom::SECRET_ENCODING,
            Provider::Pagerduty => pagerduty::SECRET_ENCODING,
            Provider::Sentry => sentry::SECRET_ENCODING,
            Provider::Vercel => vercel::SECRET_ENCODING,
            Provider::Mailgun => mailgun::SECRET_ENCODING,
            Provider::Gitlab => gitlab::SECRET_ENCODING,
            Provider::Generic => generic::SECRET_ENCODING,
        }
    }

    /// The timestamp tolerance when the source sets none: 300 seconds, except where the
    /// provider documents another window.
    pub fn default_tolerance_secs(self) -> u64 {
        match self {
            Provider::Twitch => twitch::DEFAULT_TOLERANCE_SECS,
            _ => 300,
        }
    }

    /// Where this provider's events carry an entity id and a version, for `ordering`: a JSON
    /// pointer, and a JSON pointer or header name. `None` where payloads carry no version.
    pub fn default_ordering(self) -> Option<(&'static str, &'static str)> {
        match self {
            Provider::Stripe => Some(stripe::ORDERING),
            Provider::Shopify => Some(shopify::ORDERING),
            Provider::Paddle => Some(paddle::ORDERING),
            Provider::Linear => Some(linear::ORDERING),
            Provider::Square => Some(square::ORDERING),
            _ => None,
        }
    }

    /// Whether this provider signs the URL, so that the source may need a `public_url`.
    pub fn signs_url(self) -> bool {
        matches!(self, Provider::Twilio | Provider::Square | Provider::Hubspot)
    }

    /// The hash of this provider's HMAC, when it signs the body as received (with a few header
    /// values around it): what Web Crypto can compute faster for large bodies. `None` for
    /// Twilio (decoded, sorted form parameters), Mailgun (a timestamp and token), GitLab (a
    /// token), Discord and SendGrid (public keys). A `generic` source's is configured.
    pub fn body_hmac(self, generic: Option<&GenericScheme>) -> Option<HashFn> {
        match self {
            Provider::Twilio | Provider::Mailgun | Provider::Gitlab | Provider::Discord | Provider::Sendgrid => None,
            Provider::Intercom | Provider::Vercel => Some(HashFn::Sha1),
            Provider::Generic => generic.map(|g| g.algorithm),
            _ => Some(HashFn::Sha256),
        }
    }

    /// What a request's signature must be kept from authenticating a second time, where the
    /// event id travels outside it (an unsigned header, or Mailgun's unsigned `event-data`):
    /// whoever holds one signed request could otherwise resend it under fresh ids, each copy a
    /// new event. Twilio always: its id is the unsigned `I-Twilio-Idempotency-Token` when sent,
    /// and adding one to a request sent without gives it a new id. `None` where the signature
    /// covers the id, and for GitLab, whose token authenticates nothing about the request.
    pub fn seal_by(self, generic: Option<&GenericScheme>) -> Option<SealBy> {
        match self {
            Provider::Github | Provider::Shopify | Provider::Sentry | Provider::Linear | Provider::Twilio => {
                Some(SealBy::Mac)
            }
            Provider::Generic => match generic.and_then(|g| g.id.as_ref()) {
                Some(generic::Locator::Header(_)) => Some(SealBy::Mac),
                _ => None,
            },
            Provider::Mailgun => Some(SealBy::Message),
            _ => None,
        }
    }

    /// Checks the signature. `Ok` means some signature in the request was made with the
    /// returned key over exactly these bytes, and any signed timestamp is within tolerance.
    pub fn verify<'s>(self, req: Inbound<'_>, scheme: Scheme<'s>, now: i64) -> Result<&'s Secret, Rejection> {
        match self {
            Provider::Stripe => stripe::verify(req, scheme, now),
            Provider::Github => github::verify(req, scheme),
            Provider::Standard => standard::verify(req, scheme, now),
            Provider::Shopify => shopify::verify(req, scheme),
            Provider::Slack => slack::verify(req, scheme, now),
            Provider::Twilio => twilio::verify(req, scheme),
            Provider::Square => square::verify(req, scheme),
            Provider::Paddle => paddle::verify(req, scheme, now),
            Provider::Linear => linear::verify(req, scheme, now),
            Provider::Zoom => zoom::verify(req, scheme, now),
            Provider::Discord => discord::verify(req, scheme, now),
            Provider::Sendgrid => sendgrid::verify(req, scheme, now),
            Provider::Hubspot => hubspot::verify(req, scheme, now),
            Provider::Typeform => typeform::verify(req, scheme),
            Provider::Twitch => twitch::verify(req, scheme, now),
            Provider::Intercom => intercom::verify(req, scheme),
            Provider::Pagerduty => pagerduty::verify(req, scheme),
            Provider::Sentry => sentry::verify(req, scheme),
            Provider::Vercel => vercel::verify(req, scheme),
            Provider::Mailgun => mailgun::verify(req, scheme, now),
            Provider::Gitlab => gitlab::verify(req, scheme),
            Provider::Generic => match scheme.generic {
                Some(generic) => generic::verify(req, scheme, generic, now),
                // A generic source without its scheme is a configuration error caught earlier.
                None => Err(Rejection::InvalidSignature),
            },
        }
    }

    /// The answer to a verification handshake, if this (verified) request is one.
    pub fn handshake(self, req: Inbound<'_>, key: &Secret) -> Option<Handshake> {
        match self {
            Provider::Slack => slack::handshake(req),
            Provider::Zoom => zoom::handshake(req, key),
            Provider::Discord => discord::handshake(req),
            Provider::Twitch => twitch::handshake(req),
            _ => None,
        }
    }

    /// Extracts the event id and type. Only meaningful after `verify`: unsigned input is not
    /// worth identifying.
    pub fn identify(self, req: Inbound<'_>, scheme: Scheme<'_>) -> Result<Identity, Rejection> {
        let identity = match self {
            Provider::Stripe => stripe::identify(req),
            Provider::Github => github::identify(req),
            Provider::Standard => standard::identify(req),
            Provider::Shopify => shopify::identify(req),
            Provider::Slack => slack::identify(req),
            Provider::Twilio => twilio::identify(req),
            Provider::Square => square::identify(req),
            Provider::Paddle => paddle::identify(req),
            Provider::Linear => linear::identify(req),
            Provider::Zoom => zoom::identify(req),
            Provider::Discord => discord::identify(req),
            Provider::Sendgrid => sendgrid::identify(req),
            Provider::Hubspot => hubspot::identify(req),
            Provider::Typeform => typeform::identify(req),
            Provider::Twitch => twitch::identify(req),
            Provider::Intercom => intercom::identify(req),
            Provider::Pagerduty => pagerduty::identify(req),
            Provider::Sentry => sentry::identify(req),
            Provider::Vercel => vercel::identify(req),
            Provider::Mailgun => mailgun::identify(req),
            Provider::Gitlab => gitlab::identify(req),
            Provider::Generic => match scheme.generic {
                Some(generic) => generic::identify(req, generic),
                None => Err(Rejection::MalformedRequest),
            },
        }?;
        validate_token(&identity.id)?;
        if let Some(t) = &identity.event_type {
            validate_token(t)?;
        }
        Ok(identity)
    }

    /// The request this provider would send for `unsigned`, signed with `key` (a `generic`
    /// source's scheme describes how it signs).
    pub fn sign(self, key: &SigningKey, unsigned: Unsigned<'_>, generic: Option<&GenericScheme>) -> Signed {
        let headers = match self {
            Provider::Stripe => stripe::sign(key, unsigned),
            Provider::Github => github::sign(key, unsigned),
            Provider::Standard => standard::sign_headers(key, unsigned),
            Provider::Shopify => shopify::sign(key, unsigned),
            Provider::Slack => slack::sign(key, unsigned),
            Provider::Twilio => twilio::sign(key, unsigned),
            Provider::Square => square::sign(key, unsigned),
            Provider::Paddle => paddle::sign(key, unsigned),
            Provider::Linear => linear::sign(key, unsigned),
            Provider::Zoom => zoom::sign(key, unsigned),
            Provider::Discord => discord::sign(key, unsigned),
            Provider::Sendgrid => sendgrid::sign(key, unsigned),
            Provider::Hubspot => hubspot::sign(key, unsigned),
            Provider::Typeform => typeform::sign(key, unsigned),
            Provider::Twitch => twitch::sign(key, unsigned),
            Provider::Intercom => intercom::sign(key, unsigned),
            Provider::Pagerduty => pagerduty::sign(key, unsigned),
            Provider::Sentry => sentry::sign(key, unsigned),
            Provider::Vercel => vercel::sign(key, unsigned),
            Provider::Gitlab => gitlab::sign(key, unsigned),
            Provider::Generic => generic.map(|g| generic::sign(key, unsigned, g)).unwrap_or_default(),
            // Mailgun signs inside the body.
            Provider::Mailgun => {
                let (headers, body) = mailgun::sign(key, unsigned);
                return Signed { headers, body };
            }
        };
        Signed { headers, body: unsigned.body.to_vec() }
    }
}

/// A scheme for tests that only identify (identification needs no keys).
#[cfg(test)]
pub(crate) fn any_scheme() -> Scheme<'static> {
    static SECRETS: std::sync::LazyLock<SecretSet> =
        std::sync::LazyLock::new(|| SecretSet::from_secrets(vec![Secret::Hmac(vec![1])]).unwrap());
    Scheme::new(&SECRETS, 0)
}

/// A header's value, with an empty one counting as absent (a provider never sends an empty
/// signature on purpose).
fn header(req: Inbound<'_>, name: &str) -> Option<String> {
    req.headers.get(name).filter(|v| !v.is_empty())
}

/// The body as JSON, or `None` when it is not JSON.
fn json_body(body: &[u8]) -> Option<serde_json::Value> {
    serde_json::from_slice(body).ok()
}

/// The identity read from a JSON body: the id (required: without it the request is malformed)
/// and the type at two pointers, in one walk of the body (`json_path`).
fn json_identity(body: &[u8], id: &str, event_type: &str) -> Result<Identity, Rejection> {
    let [id, event_type] = crate::json_path::scalars(body, [id, event_type]).ok_or(Rejection::MalformedRequest)?;
    Ok(Identity { id: id.ok_or(Rejection::MalformedRequest)?, event_type })
}

/// A string, or a number as text.
fn scalar_text(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Longest event id or type accepted.
pub const MAX_TOKEN_LEN: usize = 255;

/// Ids and types travel on in HTTP headers (`webhook-id`, `x-edgehook-event-type`) and storage
/// keys, so they must be visible ASCII of bounded length: a CR/LF or a control byte in one would
/// be header injection downstream.
fn validate_token(token: &str) -> Result<(), Rejection> {
    if is_token(token) {
        Ok(())
    } else {
        Err(Rejection::MalformedRequest)
    }
}

/// Whether `text` is a valid event id or type: 1 to [`MAX_TOKEN_LEN`] bytes of visible ASCII and
/// spaces, none at either end (GitLab's types are `Push Hook` and the like).
pub fn is_token(text: &str) -> bool {
    let ok = !text.is_empty() && text.len() <= MAX_TOKEN_LEN && text.bytes().all(|b| b.is_ascii_graphic() || b == b' ');
    ok && !text.starts_with(' ') && !text.ends_with(' ')
}

/// The `payload` field of a form-encoded body: where GitHub (a hook set to
/// `application/x-www-form-urlencoded`) and Slack (interactivity) put their JSON.
fn form_payload(body: &[u8]) -> Option<String> {
    form_urlencoded::parse(body).find(|(name, _)| name == "payload").map(|(_, value)| value.into_owned())
}

/// Fields read from a JSON body. Unknown fields are skipped without being built; a duplicate of
/// a field that is read is an error, so a body cannot carry two different ids.
#[derive(Default)]
struct BodyFields {
    id: Option<serde_json::Value>,
    /// `type`.
    kind: Option<serde_json::Value>,
    action: Option<serde_json::Value>,
}

impl BodyFields {
    /// Parses a JSON object body; anything else (not JSON, not an object) has no fields.
    fn parse(body: &[u8]) -> Option<BodyFields> {
        let [id, kind, action] = crate::json::members(body, ["id", "type", "action"]).ok()??;
        Some(BodyFields { id, kind, action })
    }

    fn string(value: &Option<serde_json::Value>) -> Option<String> {
        match value {
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for p in Provider::ALL {
            assert_eq!(Provider::from_name(p.name()), Some(p));
        }
        assert_eq!(Provider::from_name("Stripe"), None);
        assert_eq!(Provider::from_name("paypal"), None);
    }

    #[test]
    fn tokens_must_be_visible_ascii() {
        assert!(validate_token("evt_1").is_ok());
        assert!(validate_token("issues.opened").is_ok());
        for bad in ["", " a", "a ", "a\r\nb", "a\tb", "é", &"x".repeat(256)] {
            assert_eq!(validate_token(bad), Err(Rejection::MalformedRequest), "{bad:?}");
        }
    }
}
