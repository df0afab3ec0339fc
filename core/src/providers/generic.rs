//! `generic`: an HMAC signature in one header, for senders edgehook has no file for, described
//! entirely by the source's configuration:
//!
//! - `header`: the header carrying the signature (required);
//! - `algorithm`: `sha256` (default), `sha1` or `sha512`;
//! - `encoding`: `hex` (default) or `base64`;
//! - `prefix`: text before the signature in the header (`"sha256="`), required when set;
//! - `timestamp_header`: when set, the sender signs `"<timestamp>.<raw body>"` (the common
//!   pattern) and the timestamp (Unix seconds, or milliseconds when it has 13 digits or more)
//!   must be within `tolerance_secs`; without it, the raw body alone is signed;
//! - `id_header` or `id_pointer` (a JSON pointer into the body): the event id; with neither, the
//!   SHA-256 of the body;
//! - `type_header` or `type_pointer`: the event type, if any.

use super::{header, Identity, Inbound, Scheme, Unsigned};
use crate::error::Rejection;
use crate::headers::HeaderList;
use crate::json_path::scalar;
use crate::secret::{Secret, SecretEncoding, SigningKey};
use crate::signature::{check_tolerance, hex_byte, parse_timestamp, parse_timestamp_ms, sha256_hex, to_hex, HashFn};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;

pub const SECRET_ENCODING: SecretEncoding = SecretEncoding::Literal;

/// How the MAC is written in the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Hex,
    Base64,
}

/// Where a value is found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Locator {
    Header(String),
    Pointer(String),
}

/// A `generic` source's scheme, from its configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenericScheme {
    pub header: String,
    /// The HMAC's hash function.
    pub algorithm: HashFn,
    pub encoding: Encoding,
    pub prefix: String,
    pub timestamp_header: Option<String>,
    pub id: Option<Locator>,
    pub event_type: Option<Locator>,
}

impl Encoding {
    pub fn parse(name: &str) -> Option<Encoding> {
        match name {
            "hex" => Some(Encoding::Hex),
            "base64" => Some(Encoding::Base64),
            _ => None,
        }
    }

    fn decode(self, text: &str) -> Option<Vec<u8>> {
        match self {
            Encoding::Hex => hex_decode(text),
            Encoding::Base64 => STANDARD.decode(text).ok(),
        }
    }

    fn encode(self, bytes: &[u8]) -> String {
        match self {
            Encoding::Hex => to_hex(bytes),
            Encoding::Base64 => STANDARD.encode(bytes),
        }
    }
}

fn hex_decode(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 {
        return None;
    }
    text.as_bytes().chunks_exact(2).map(|pair| hex_byte(pair[0], pair[1])).collect()
}

/// A timestamp in seconds, or milliseconds when it has 13 digits or more.
fn parse_seconds(text: &str) -> Option<i64> {
    if text.len() >= 13 {
        parse_timestamp_ms(text).map(|ms| ms.div_euclid(1000))
    } else {
        parse_timestamp(text)
    }
}

fn locate(req: Inbound<'_>, locator: &Locator) -> Option<String> {
    match locator {
        Locator::Header(name) => header(req, name),
        Locator::Pointer(pointer) => scalar(req.body, pointer),
    }
}

pub fn verify<'s>(
    req: Inbound<'_>,
    scheme: Scheme<'s>,
    generic: &GenericScheme,
    now: i64,
) -> Result<&'s Secret, Rejection> {
    let signature = header(req, &generic.header).ok_or(Rejection::MissingSignature)?;
    let encoded = signature.strip_prefix(generic.prefix.as_str()).ok_or(Rejection::InvalidSignature)?;
    let candidate = generic.encoding.decode(encoded).ok_or(Rejection::InvalidSignature)?;
    let timestamp = match &generic.timestamp_header {
        None => None,
        Some(name) => {
            let text = header(req, name).ok_or(Rejection::MissingSignature)?;
            let seconds = parse_seconds(&text).ok_or(Rejection::InvalidSignature)?;
            Some((text, seconds))
        }
    };
    let signed: &[&[u8]] = match &timestamp {
        Some((text, _)) => &[text.as_bytes(), b".", req.body],
        None => &[req.body],
    };
    let key = scheme.first_hmac_match(generic.algorithm, &[candidate], signed).ok_or(Rejection::InvalidSignature)?;
    if let Some((_, seconds)) = timestamp {
        check_tolerance(seconds, now, scheme.tolerance_secs)?;
    }
    Ok(key)
}

pub fn identify(req: Inbound<'_>, generic: &GenericScheme) -> Result<Identity, Rejection> {
    let id = match &generic.id {
        None => sha256_hex(req.body),
        Some(locator) => locate(req, locator).ok_or(Rejection::MalformedRequest)?,
    };
    let event_type = generic.event_type.as_ref().and_then(|locator| locate(req, locator));
    Ok(Identity { id, event_type })
}

pub fn sign(key: &SigningKey, unsigned: Unsigned<'_>, generic: &GenericScheme) -> HeaderList {
    let key = key.hmac_key().unwrap_or_default();
    let mut headers = HeaderList::new();
    let mac = match &generic.timestamp_header {
        Some(name) => {
            let timestamp = unsigned.timestamp.to_string();
            headers.push(name.clone(), timestamp.clone());
            generic.algorithm.hmac(key, &[timestamp.as_bytes(), b".", unsigned.body])
        }
        None => generic.algorithm.hmac(key, &[unsigned.body]),
    };
    // A build without this hash (the worker, without SHA-512) signs nothing: no signature header,
    // rather than one that could pass for a signature.
    let Some(mac) = mac else { return headers };
    headers.push(generic.header.clone(), format!("{}{}", generic.prefix, generic.encoding.encode(&mac)));
    if let Some(Locator::Header(name)) = &generic.id {
        headers.push(name.clone(), unsigned.id);
    }
    headers
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::Provider;
    use crate::secret::SecretSet;

    /// SHA-512 where the build computes it; SHA-256 in the worker's (see `signed_nothing` below).
    fn scheme(timestamp: bool) -> GenericScheme {
        GenericScheme {
            header: "x-sig".into(),
            algorithm: if HashFn::Sha512.native() { HashFn::Sha512 } else { HashFn::Sha256 },
            encoding: Encoding::Base64,
            prefix: "sha512=".into(),
            timestamp_header: timestamp.then(|| "x-ts".into()),
            id: Some(Locator::Pointer("/meta/id".into())),
            event_type: Some(Locator::Header("x-kind".into())),
        }
    }

    #[test]
    fn known_answer_from_openssl() {
        // printf '%s' 'hello' | openssl dgst -sha1 -hmac key  => b34ceac4516ff23a143e61d79d0fa7a4fbe5f266
        let generic = GenericScheme {
            header: "x-sig".into(),
            algorithm: HashFn::Sha1,
            encoding: Encoding::Hex,
            prefix: String::new(),
            timestamp_header: None,
            id: None,
            event_type: None,
        };
        let h = HeaderList::from([("X-Sig", "b34ceac4516ff23a143e61d79d0fa7a4fbe5f266")]);
        let secrets = SecretSet::parse("key", SECRET_ENCODING).unwrap();
        let s = Scheme { generic: Some(&generic), ..Scheme::new(&secrets, 300) };
        assert!(Provider::Generic.verify(Inbound::post(&h, b"hello"), s, 0).is_ok());
        assert!(Provider::Generic.verify(Inbound::post(&h, b"hellO"), s, 0).is_err());
        let id = Provider::Generic.identify(Inbound::post(&h, b"hello"), s).unwrap();
        assert_eq!(id.id, sha256_hex(b"hello"));
    }

    #[test]
    fn round_trip_with_timestamp_pointer_and_header() {
        let generic = scheme(true);
        let secrets = SecretSet::parse("k", SECRET_ENCODING).unwrap();
        let s = Scheme { generic: Some(&generic), ..Scheme::new(&secrets, 300) };
        let body = br#"{"meta":{"id":"ev_9"}}"#;
        let key = SigningKey::parse("k", SECRET_ENCODING).unwrap();
        let unsigned = Unsigned { method: "POST", url: "", body, id: "ev_9", timestamp: 1000 };
        let mut h = Provider::Generic.sign(&key, unsigned, Some(&generic)).headers;
        h.push("x-kind", "thing.made");
        assert!(Provider::Generic.verify(Inbound::post(&h, body), s, 1000).is_ok());
        assert_eq!(Provider::Generic.verify(Inbound::post(&h, body), s, 2000), Err(Rejection::TimestampOutOfTolerance));
        let id = Provider::Generic.identify(Inbound::post(&h, body), s).unwrap();
        assert_eq!(id, Identity { id: "ev_9".into(), event_type: Some("thing.made".into()) });
        let no_ts = HeaderList(h.0.iter().filter(|(k, _)| k != "x-ts").cloned().collect());
        assert_eq!(Provider::Generic.verify(Inbound::post(&no_ts, body), s, 1000), Err(Rejection::MissingSignature));
        let no_prefix = HeaderList::from([("x-sig", "AAAA"), ("x-ts", "1000")]);
        assert_eq!(
            Provider::Generic.verify(Inbound::post(&no_prefix, body), s, 1000),
            Err(Rejection::InvalidSignature)
        );
        assert_eq!(Provider::Generic.identify(Inbound::post(&h, b"{}"), s), Err(Rejection::MalformedRequest));
    }

    /// Without HMAC-SHA512 (the worker's build) nothing is signed with it: no header, rather
    /// than one that could pass for a signature.
    #[test]
    fn signed_nothing_without_the_hash() {
        let generic = GenericScheme { algorithm: HashFn::Sha512, timestamp_header: None, ..scheme(false) };
        let key = SigningKey::parse("k", SECRET_ENCODING).unwrap();
        let unsigned = Unsigned { method: "POST", url: "", body: b"{}", id: "e", timestamp: 1000 };
        let signed = Provider::Generic.sign(&key, unsigned, Some(&generic)).headers;
        assert_eq!(crate::headers::Headers::get(&signed, "x-sig").is_some(), HashFn::Sha512.native());
    }

    #[test]
    fn millisecond_timestamps_are_understood() {
        assert_eq!(parse_seconds("1700000000123"), Some(1_700_000_000));
        assert_eq!(parse_seconds("1700000000"), Some(1_700_000_000));
        assert_eq!(parse_seconds("17e8"), None);
    }
}
