//! Signature schemes and event identity, one file per provider behind one exhaustive `match`.
//!
//! Every provider has the same small surface:
//! - `verify`: checks the request's signature over the raw body bytes against every configured
//!   secret, with the clock passed in;
//! - `identify`: the event id and event type (one pass over the body, never two);
//! - `sign`: the headers the provider would send, so tests and tools make real signatures;
//! - `SECRET_ENCODING`: how the configured secret text becomes key bytes.
//!
//! Adding a provider is one new file and one line in each `match` below.

mod github;
mod standard;
mod stripe;

use crate::error::Rejection;
use crate::headers::{HeaderList, Headers};
use crate::secret::{Secret, SecretEncoding, SecretSet};

pub use standard::sign as sign_standard_webhooks;

/// A request as the provider sent it: headers and the exact body bytes.
#[derive(Clone, Copy)]
pub struct Inbound<'a> {
    pub headers: &'a dyn Headers,
    pub body: &'a [u8],
}

/// What a verified request is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The provider's event id: the idempotency key.
    pub id: String,
    /// The event type, where the provider names one.
    pub event_type: Option<String>,
}

/// The signature schemes edgehook understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Provider {
    Stripe,
    Github,
    Standard,
}

impl Provider {
    /// Every provider, for tests and documentation.
    pub const ALL: [Provider; 3] = [Provider::Stripe, Provider::Github, Provider::Standard];

    /// The provider named in config (`provider = "stripe"`).
    pub fn from_name(name: &str) -> Option<Provider> {
        Provider::ALL.into_iter().find(|p| p.name() == name)
    }

    pub fn name(self) -> &'static str {
        match self {
            Provider::Stripe => "stripe",
            Provider::Github => "github",
            Provider::Standard => "standard",
        }
    }

    pub fn secret_encoding(self) -> SecretEncoding {
        match self {
            Provider::Stripe => stripe::SECRET_ENCODING,
            Provider::Github => github::SECRET_ENCODING,
            Provider::Standard => standard::SECRET_ENCODING,
        }
    }

    /// Checks the signature. `Ok` means some signature in the request was made with one of
    /// `secrets` over exactly these bytes, and any signed timestamp is within tolerance.
    pub fn verify(self, req: Inbound<'_>, secrets: &SecretSet, now: i64, tolerance_secs: u64) -> Result<(), Rejection> {
        match self {
            Provider::Stripe => stripe::verify(req, secrets, now, tolerance_secs),
            Provider::Github => github::verify(req, secrets),
            Provider::Standard => standard::verify(req, secrets, now, tolerance_secs),
        }
    }

    /// Extracts the event id and type. Only meaningful after `verify`: unsigned input is not
    /// worth identifying.
    pub fn identify(self, req: Inbound<'_>) -> Result<Identity, Rejection> {
        let identity = match self {
            Provider::Stripe => stripe::identify(req),
            Provider::Github => github::identify(req),
            Provider::Standard => standard::identify(req),
        }?;
        validate_token(&identity.id)?;
        if let Some(t) = &identity.event_type {
            validate_token(t)?;
        }
        Ok(identity)
    }

    /// The signature headers this provider would send for `body`. `id` is used where the
    /// provider carries the event id in a header (GitHub, Standard Webhooks); Stripe carries it
    /// in the body.
    pub fn sign(self, secret: &Secret, id: &str, timestamp: i64, body: &[u8]) -> HeaderList {
        match self {
            Provider::Stripe => stripe::sign(secret, timestamp, body),
            Provider::Github => github::sign(secret, id, body),
            Provider::Standard => standard::sign_headers(secret, id, timestamp, body),
        }
    }
}

/// Longest event id or type accepted.
pub const MAX_TOKEN_LEN: usize = 255;

/// Ids and types travel on in HTTP headers (`webhook-id`, `x-edgehook-event-type`) and storage
/// keys, so they must be visible ASCII of bounded length: a CR/LF or a control byte in one would
/// be header injection downstream.
fn validate_token(token: &str) -> Result<(), Rejection> {
    let ok =
        !token.is_empty() && token.len() <= MAX_TOKEN_LEN && token.bytes().all(|b| b.is_ascii_graphic() || b == b' ');
    if ok && !token.starts_with(' ') && !token.ends_with(' ') {
        Ok(())
    } else {
        Err(Rejection::MalformedRequest)
    }
}

/// Fields read from a JSON body. Unknown fields are skipped without being built; a duplicate of
/// a field that is read is an error, so a body cannot carry two different ids.
#[derive(serde::Deserialize, Default)]
struct BodyFields {
    id: Option<serde_json::Value>,
    #[serde(rename = "type")]
    kind: Option<serde_json::Value>,
    action: Option<serde_json::Value>,
}

impl BodyFields {
    /// Parses a JSON object body; anything else (not JSON, not an object) has no fields.
    fn parse(body: &[u8]) -> Option<BodyFields> {
        serde_json::from_slice(body).ok()
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
