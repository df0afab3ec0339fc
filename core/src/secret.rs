//! Signing secrets: parsed once, never printed.
//!
//! `WEBHOOK_SECRET_<SOURCE>` holds either one secret, used exactly as given (spaces and all), or a
//! JSON array of strings for rotation, every one of which is tried. How a secret becomes HMAC key
//! bytes is the provider's business: Stripe and GitHub use the text literally, Standard Webhooks
//! decodes the base64 after `whsec_`.

use base64::Engine;
use std::fmt;
use thiserror::Error;

/// Key material. Its `Debug` is redacted so that a secret cannot reach a log by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// Wraps key bytes; an empty key is refused (an empty HMAC key verifies forgeries made
    /// with an empty key, which anyone can make).
    pub fn new(bytes: Vec<u8>) -> Result<Self, SecretError> {
        if bytes.is_empty() {
            return Err(SecretError::Empty);
        }
        Ok(Secret(bytes))
    }

    /// The key bytes, for HMAC.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// How a secret's text becomes key bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretEncoding {
    /// The UTF-8 bytes of the text, exactly as given.
    Literal,
    /// Standard Webhooks: base64 after an optional `whsec_` prefix.
    StandardWebhooks,
}

/// Why a secret could not be used. Never carries the secret itself.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SecretError {
    #[error("the secret is empty")]
    Empty,
    #[error("the secret list is not a JSON array of strings")]
    BadList,
    #[error("the secret list is empty")]
    EmptyList,
    #[error("the secret is not valid base64 after whsec_")]
    BadBase64,
}

/// Every secret configured for one source, newest first as given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretSet(Vec<Secret>);

impl SecretSet {
    /// Parses the raw value of `WEBHOOK_SECRET_<SOURCE>`.
    ///
    /// A value starting with `[` is a JSON array of strings (a rotation list); anything else is one
    /// secret taken verbatim. No secret in either form may be empty.
    pub fn parse(raw: &str, encoding: SecretEncoding) -> Result<Self, SecretError> {
        let texts: Vec<String> = if raw.starts_with('[') {
            serde_json::from_str(raw).map_err(|_| SecretError::BadList)?
        } else {
            vec![raw.to_owned()]
        };
        if texts.is_empty() {
            return Err(SecretError::EmptyList);
        }
        let secrets = texts.iter().map(|t| decode(t, encoding)).collect::<Result<Vec<_>, _>>()?;
        Ok(SecretSet(secrets))
    }

    /// Builds a set from already decoded secrets (tests, the CLI).
    pub fn from_secrets(secrets: Vec<Secret>) -> Result<Self, SecretError> {
        if secrets.is_empty() {
            return Err(SecretError::EmptyList);
        }
        Ok(SecretSet(secrets))
    }

    pub fn iter(&self) -> impl Iterator<Item = &Secret> {
        self.0.iter()
    }
}

/// Decodes one secret's text into key bytes.
pub fn decode(text: &str, encoding: SecretEncoding) -> Result<Secret, SecretError> {
    match encoding {
        SecretEncoding::Literal => Secret::new(text.as_bytes().to_vec()),
        SecretEncoding::StandardWebhooks => {
            let b64 = text.strip_prefix("whsec_").unwrap_or(text);
            let bytes = base64::engine::general_purpose::STANDARD.decode(b64).map_err(|_| SecretError::BadBase64)?;
            Secret::new(bytes)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_secret() {
        let s = SecretSet::parse("whsec_topsecret", SecretEncoding::Literal).unwrap();
        let printed = format!("{s:?}");
        assert!(!printed.contains("topsecret"), "{printed}");
        assert!(printed.contains("redacted"));
    }

    #[test]
    fn plain_value_is_one_literal_secret_with_spaces_kept() {
        let s = SecretSet::parse(" a b ", SecretEncoding::Literal).unwrap();
        let keys: Vec<&[u8]> = s.iter().map(Secret::expose).collect();
        assert_eq!(keys, vec![b" a b ".as_slice()]);
    }

    #[test]
    fn json_array_is_a_rotation_list() {
        let s = SecretSet::parse(r#"["new","old"]"#, SecretEncoding::Literal).unwrap();
        let keys: Vec<&[u8]> = s.iter().map(Secret::expose).collect();
        assert_eq!(keys, vec![b"new".as_slice(), b"old".as_slice()]);
    }

    #[test]
    fn bad_lists_and_empty_secrets_are_refused() {
        assert_eq!(SecretSet::parse("", SecretEncoding::Literal), Err(SecretError::Empty));
        assert_eq!(SecretSet::parse("[]", SecretEncoding::Literal), Err(SecretError::EmptyList));
        assert_eq!(SecretSet::parse("[1]", SecretEncoding::Literal), Err(SecretError::BadList));
        assert_eq!(SecretSet::parse("[\"a\"", SecretEncoding::Literal), Err(SecretError::BadList));
        assert_eq!(SecretSet::parse(r#"["a",""]"#, SecretEncoding::Literal), Err(SecretError::Empty));
    }

    #[test]
    fn standard_webhooks_secrets_are_base64_with_optional_prefix() {
        let with = decode("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", SecretEncoding::StandardWebhooks).unwrap();
        let without = decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", SecretEncoding::StandardWebhooks).unwrap();
        assert_eq!(with, without);
        assert_eq!(with.expose().len(), 24);
        assert_eq!(decode("whsec_***", SecretEncoding::StandardWebhooks), Err(SecretError::BadBase64));
        assert_eq!(decode("whsec_", SecretEncoding::StandardWebhooks), Err(SecretError::Empty));
    }
}
