//! Keys: parsed once, never printed.
//!
//! `WEBHOOK_SECRET_<SOURCE>` holds either one secret, used exactly as given (spaces and all), or a
//! JSON array of strings for rotation, every one of which is tried. How a secret's text becomes a
//! key is the provider's business ([`SecretEncoding`]): most use the text literally as an HMAC
//! key, Standard Webhooks decodes the base64 after `whsec_` (or takes an Ed25519 public key after
//! `whpk_`), Discord publishes a hex Ed25519 public key, SendGrid a base64 P-256 public key.
//!
//! [`SigningKey`] is the other half, for tests and the CLI: what a provider signs with.

use crate::signature::{KeyAlgorithm, P256_SPKI_PREFIX};
use base64::Engine;
use std::fmt;
use thiserror::Error;

/// A key that verifies signatures. `Debug` is redacted so that a secret cannot reach a log.
#[derive(Clone, PartialEq, Eq)]
pub enum Secret {
    /// A shared HMAC key (or a token compared as is, for GitLab).
    Hmac(Vec<u8>),
    /// An Ed25519 public key: the 32 bytes of its point. Whether they are a point of the curve
    /// shows when a signature is checked (Web Crypto, in the worker, has no other way to tell):
    /// a key that is not matches nothing.
    Ed25519([u8; 32]),
    /// An ECDSA P-256 public key: its DER `SubjectPublicKeyInfo`, which has the structure of one
    /// ([`P256_SPKI_PREFIX`] and a point); whether the point is on the curve shows as for Ed25519.
    P256(Vec<u8>),
}

impl Secret {
    /// Wraps HMAC key bytes; an empty key is refused (an empty HMAC key verifies forgeries made
    /// with an empty key, which anyone can make).
    pub fn hmac(bytes: Vec<u8>) -> Result<Self, SecretError> {
        if bytes.is_empty() {
            return Err(SecretError::Empty);
        }
        Ok(Secret::Hmac(bytes))
    }

    /// The key's bytes, if this is a public key for `algorithm`.
    pub fn public_key(&self, algorithm: KeyAlgorithm) -> Option<&[u8]> {
        match (self, algorithm) {
            (Secret::Ed25519(point), KeyAlgorithm::Ed25519) => Some(point),
            (Secret::P256(der), KeyAlgorithm::EcdsaP256) => Some(der),
            _ => None,
        }
    }

    /// Whether this is a public key (checked by Web Crypto in the worker).
    pub fn is_public_key(&self) -> bool {
        matches!(self, Secret::Ed25519(_) | Secret::P256(_))
    }

    /// The HMAC key bytes, if this is an HMAC key.
    pub fn hmac_key(&self) -> Option<&[u8]> {
        match self {
            Secret::Hmac(bytes) => Some(bytes),
            _ => None,
        }
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Secret::Hmac(_) => f.write_str("Secret::Hmac(<redacted>)"),
            Secret::Ed25519(_) => f.write_str("Secret::Ed25519(<public key>)"),
            Secret::P256(_) => f.write_str("Secret::P256(<public key>)"),
        }
    }
}

/// How a secret's text becomes a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretEncoding {
    /// The UTF-8 bytes of the text, exactly as given, as an HMAC key.
    Literal,
    /// Standard Webhooks: `whsec_<base64>` (the prefix is optional) is an HMAC key;
    /// `whpk_<base64>` is an Ed25519 public key, for `v1a` signatures.
    StandardWebhooks,
    /// An Ed25519 public key in hex (Discord's "public key").
    Ed25519Hex,
    /// A P-256 public key: base64 of its DER `SubjectPublicKeyInfo`, with or without PEM armour
    /// (SendGrid's "verification key").
    P256Public,
}

/// Why a secret could not be used. Never carries the secret itself.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SecretError {
    #[error("the secret is empty")]
    Empty,
    #[error("the secret list is empty")]
    EmptyList,
    #[error("the secret is not valid base64")]
    BadBase64,
    #[error("the key is not a valid Ed25519 public key (32 bytes, not a point of small order)")]
    BadEd25519,
    #[error("the key is not a P-256 public key (base64 DER SubjectPublicKeyInfo, uncompressed point)")]
    BadP256,
    #[error("the signing key is not a valid private key for this provider")]
    BadPrivateKey,
}

/// The rotation list `raw` spells, if it is a JSON array of strings.
fn as_list(raw: &str) -> Option<Vec<String>> {
    raw.starts_with('[').then(|| crate::json::from_str(raw).ok()).flatten()
}

/// Whether `raw` looks like a rotation list but is not one (`["a","b"` or `[1]`): it is then taken
/// as one plain secret, which is likely not what was meant, so the configuration warns.
pub fn misses_a_list(raw: &str) -> bool {
    raw.trim_start().starts_with('[') && as_list(raw).is_none()
}

/// Every secret configured for one source, newest first as given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretSet(Vec<Secret>);

impl SecretSet {
    /// Parses the raw value of `WEBHOOK_SECRET_<SOURCE>`.
    ///
    /// A JSON array of strings is a rotation list; anything else is one secret taken verbatim, as
    /// SPEC has it, even one that starts with `[` (the configuration warns about those, see
    /// [`misses_a_list`]). No secret in either form may be empty.
    pub fn parse(raw: &str, encoding: SecretEncoding) -> Result<Self, SecretError> {
        let texts = as_list(raw).unwrap_or_else(|| vec![raw.to_owned()]);
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

    /// The HMAC keys of the set, in order.
    pub fn hmac_keys(&self) -> impl Iterator<Item = &[u8]> {
        self.0.iter().filter_map(Secret::hmac_key)
    }
}

fn base64_decode(text: &str) -> Result<Vec<u8>, SecretError> {
    base64::engine::general_purpose::STANDARD.decode(text).map_err(|_| SecretError::BadBase64)
}

/// Strips PEM armour and whitespace around base64 DER, if any.
fn unarmour(text: &str) -> String {
    text.lines().filter(|l| !l.starts_with("-----")).flat_map(|l| l.split_whitespace()).collect()
}

/// Decodes one secret's text into a key.
pub fn decode(text: &str, encoding: SecretEncoding) -> Result<Secret, SecretError> {
    match encoding {
        SecretEncoding::Literal => Secret::hmac(text.as_bytes().to_vec()),
        SecretEncoding::StandardWebhooks => match text.strip_prefix("whpk_") {
            Some(b64) => {
                let bytes: [u8; 32] = base64_decode(b64)?.try_into().map_err(|_| SecretError::BadEd25519)?;
                ed25519_key(bytes)
            }
            None => Secret::hmac(base64_decode(text.strip_prefix("whsec_").unwrap_or(text))?),
        },
        SecretEncoding::Ed25519Hex => {
            let bytes = crate::signature::from_hex::<32>(text.trim()).ok_or(SecretError::BadEd25519)?;
            ed25519_key(bytes)
        }
        SecretEncoding::P256Public => {
            let der = base64_decode(&unarmour(text))?;
            if der.len() != P256_SPKI_PREFIX.len() + 65 || !der.starts_with(&P256_SPKI_PREFIX) || der[26] != 0x04 {
                return Err(SecretError::BadP256);
            }
            Ok(Secret::P256(der))
        }
    }
}

/// An Ed25519 public key, unless it is one of the points of small order. Neither Web Crypto
/// (BoringSSL) nor the native check refuses those when verifying, and with one anyone can make a
/// signature that verifies in a few tries: a placeholder key of zeros is one. The encodings are
/// matched with the sign bit ignored, as libsodium does, non-canonical ones (`p`, `p + 1`)
/// included (`small_order_keys_are_every_point_of_small_order`).
fn ed25519_key(bytes: [u8; 32]) -> Result<Secret, SecretError> {
    let mut masked = bytes;
    masked[31] &= 0x7f;
    if SMALL_ORDER_ED25519.contains(&masked) {
        return Err(SecretError::BadEd25519);
    }
    Ok(Secret::Ed25519(bytes))
}

/// The y-coordinates (little-endian, sign bit clear) of the Ed25519 points of small order: 0 and
/// `p` (order 4), 1 and `p + 1` (the identity), the two of order 8, and `p - 1` (order 2).
const SMALL_ORDER_ED25519: [[u8; 32]; 7] = {
    let mut p_minus_1 = [0xff; 32];
    p_minus_1[0] = 0xec;
    p_minus_1[31] = 0x7f;
    let mut p = p_minus_1;
    p[0] = 0xed;
    let mut p_plus_1 = p_minus_1;
    p_plus_1[0] = 0xee;
    let mut one = [0; 32];
    one[0] = 1;
    [
        [0; 32],
        one,
        [
            0x26, 0xe8, 0x95, 0x8f, 0xc2, 0xb2, 0x27, 0xb0, 0x45, 0xc3, 0xf4, 0x89, 0xf2, 0xef, 0x98, 0xf0, 0xd5, 0xdf,
            0xac, 0x05, 0xd3, 0xc6, 0x33, 0x39, 0xb1, 0x38, 0x02, 0x88, 0x6d, 0x53, 0xfc, 0x05,
        ],
        [
            0xc7, 0x17, 0x6a, 0x70, 0x3d, 0x4d, 0xd8, 0x4f, 0xba, 0x3c, 0x0b, 0x76, 0x0d, 0x10, 0x67, 0x0f, 0x2a, 0x20,
            0x53, 0xfa, 0x2c, 0x39, 0xcc, 0xc6, 0x4e, 0xc7, 0xfd, 0x77, 0x92, 0xac, 0x03, 0x7a,
        ],
        p_minus_1,
        p,
        p_plus_1,
    ]
};

/// What a provider signs with: the same HMAC secret, or the private half of a key pair. Used by
/// tests and the CLI; the worker only verifies (and, built without the curves, signs with HMAC
/// keys only: its test build's benchmarks).
#[derive(Clone)]
pub enum SigningKey {
    Hmac(Vec<u8>),
    #[cfg(feature = "native-curves")]
    Ed25519(ed25519_dalek::SigningKey),
    #[cfg(feature = "native-curves")]
    P256(p256::ecdsa::SigningKey),
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningKey(<redacted>)")
    }
}

impl SigningKey {
    /// Parses a signing key for a provider whose secrets use `encoding`:
    /// - HMAC schemes: the same text as the secret;
    /// - Standard Webhooks `v1a`: `whsk_<base64 32-byte seed>`;
    /// - Ed25519 hex (Discord): the 32-byte seed in hex;
    /// - P-256 (SendGrid): base64 of the PKCS#8 DER private key, with or without PEM armour.
    pub fn parse(text: &str, encoding: SecretEncoding) -> Result<Self, SecretError> {
        match encoding {
            #[cfg(feature = "native-curves")]
            SecretEncoding::StandardWebhooks if text.starts_with("whsk_") => {
                let seed: [u8; 32] = base64_decode(&text[5..])?
                    .get(..32)
                    .and_then(|s| s.try_into().ok())
                    .ok_or(SecretError::BadPrivateKey)?;
                Ok(SigningKey::Ed25519(ed25519_dalek::SigningKey::from_bytes(&seed)))
            }
            SecretEncoding::Literal | SecretEncoding::StandardWebhooks => match decode(text, encoding)? {
                Secret::Hmac(bytes) => Ok(SigningKey::Hmac(bytes)),
                _ => Err(SecretError::BadPrivateKey),
            },
            #[cfg(feature = "native-curves")]
            SecretEncoding::Ed25519Hex => {
                let seed = crate::signature::from_hex::<32>(text.trim()).ok_or(SecretError::BadPrivateKey)?;
                Ok(SigningKey::Ed25519(ed25519_dalek::SigningKey::from_bytes(&seed)))
            }
            #[cfg(feature = "native-curves")]
            SecretEncoding::P256Public => {
                use p256::pkcs8::DecodePrivateKey;
                let der = base64_decode(&unarmour(text))?;
                let key = p256::ecdsa::SigningKey::from_pkcs8_der(&der).map_err(|_| SecretError::BadPrivateKey)?;
                Ok(SigningKey::P256(key))
            }
            #[cfg(not(feature = "native-curves"))]
            SecretEncoding::Ed25519Hex | SecretEncoding::P256Public => Err(SecretError::BadPrivateKey),
        }
    }

    /// The HMAC key, for HMAC schemes.
    pub fn hmac_key(&self) -> Option<&[u8]> {
        match self {
            SigningKey::Hmac(bytes) => Some(bytes),
            // Unreachable in a build without the curves, where HMAC keys are the only kind.
            #[allow(unreachable_patterns)]
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hmac(s: &Secret) -> &[u8] {
        s.hmac_key().unwrap()
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let s = SecretSet::parse("whsec_topsecret", SecretEncoding::Literal).unwrap();
        let printed = format!("{s:?}");
        assert!(!printed.contains("topsecret"), "{printed}");
        assert!(printed.contains("redacted"));
        let k = SigningKey::parse("topsecret", SecretEncoding::Literal).unwrap();
        assert!(!format!("{k:?}").contains("topsecret"));
    }

    #[test]
    fn plain_value_is_one_literal_secret_with_spaces_kept() {
        let s = SecretSet::parse(" a b ", SecretEncoding::Literal).unwrap();
        let keys: Vec<&[u8]> = s.hmac_keys().collect();
        assert_eq!(keys, vec![b" a b ".as_slice()]);
    }

    #[test]
    fn json_array_is_a_rotation_list() {
        let s = SecretSet::parse(r#"["new","old"]"#, SecretEncoding::Literal).unwrap();
        let keys: Vec<&[u8]> = s.hmac_keys().collect();
        assert_eq!(keys, vec![b"new".as_slice(), b"old".as_slice()]);
    }

    #[test]
    fn bad_lists_and_empty_secrets_are_refused() {
        assert_eq!(SecretSet::parse("", SecretEncoding::Literal), Err(SecretError::Empty));
        assert_eq!(SecretSet::parse("[]", SecretEncoding::Literal), Err(SecretError::EmptyList));
        assert_eq!(SecretSet::parse(r#"["a",""]"#, SecretEncoding::Literal), Err(SecretError::Empty));
    }

    /// SPEC: a plain value is one secret, used exactly as given. One that starts with `[` but is
    /// no JSON array of strings is such a value (and the configuration warns about it).
    #[test]
    fn values_that_only_look_like_lists_are_plain_secrets() {
        for raw in ["[1]", "[\"a\"", "[abc", "[ x ]"] {
            let set = SecretSet::parse(raw, SecretEncoding::Literal).unwrap();
            assert_eq!(set.hmac_keys().collect::<Vec<_>>(), [raw.as_bytes()], "{raw}");
            assert!(misses_a_list(raw), "{raw}");
        }
        for raw in [r#"["a","b"]"#, "whsec_x", "[]", " x"] {
            assert!(!misses_a_list(raw), "{raw}");
        }
    }

    #[test]
    fn standard_webhooks_secrets_are_base64_with_optional_prefix() {
        let with = decode("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", SecretEncoding::StandardWebhooks).unwrap();
        let without = decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", SecretEncoding::StandardWebhooks).unwrap();
        assert_eq!(with, without);
        assert_eq!(hmac(&with).len(), 24);
        assert_eq!(decode("whsec_***", SecretEncoding::StandardWebhooks), Err(SecretError::BadBase64));
        assert_eq!(decode("whsec_", SecretEncoding::StandardWebhooks), Err(SecretError::Empty));
    }

    #[cfg(feature = "native-curves")]
    #[test]
    fn public_keys() {
        let signing = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
        let public = signing.verifying_key().to_bytes();
        let b64 = base64::engine::general_purpose::STANDARD.encode(public);
        assert_eq!(decode(&format!("whpk_{b64}"), SecretEncoding::StandardWebhooks), Ok(Secret::Ed25519(public)));
        let hex = crate::signature::to_hex(&public);
        assert_eq!(decode(&hex, SecretEncoding::Ed25519Hex), Ok(Secret::Ed25519(public)));
        assert_eq!(decode("whpk_AAAA", SecretEncoding::StandardWebhooks), Err(SecretError::BadEd25519));
        assert_eq!(decode("abcd", SecretEncoding::Ed25519Hex), Err(SecretError::BadEd25519));
        assert_eq!(decode("MFkwEwYH", SecretEncoding::P256Public), Err(SecretError::BadP256));
    }

    /// Every encoding the list refuses (with either sign bit) that decodes at all is a point of
    /// small order, and among them are all eight such points: the list is right and complete.
    /// A key of zeros (a placeholder) is refused in both encodings providers use.
    #[cfg(feature = "native-curves")]
    #[test]
    fn small_order_keys_are_every_point_of_small_order() {
        let mut points = std::collections::BTreeSet::new();
        for y in SMALL_ORDER_ED25519 {
            for sign in [0, 0x80] {
                let mut bytes = y;
                bytes[31] |= sign;
                assert_eq!(ed25519_key(bytes), Err(SecretError::BadEd25519), "{bytes:02x?}");
                if let Ok(point) = ed25519_dalek::VerifyingKey::from_bytes(&bytes) {
                    assert!(point.is_weak(), "{bytes:02x?} is not of small order");
                    // Compressed anew: the canonical encoding of the point decoded.
                    points.insert(ed25519_dalek::VerifyingKey::from(point.to_edwards()).to_bytes());
                }
            }
        }
        assert_eq!(points.len(), 8, "the eight points of small order");
        // The only encodings above p - 1 are k + p for k < 19 (2^255 - 19 = p): those of the
        // points 0 and 1 are refused, and no other.
        for k in 0u8..19 {
            let mut bytes = SMALL_ORDER_ED25519[5];
            bytes[0] += k;
            let refused = ed25519_key(bytes).is_err();
            assert_eq!(refused, k < 2, "{k} + p");
        }
        let zeros = "0".repeat(64);
        assert_eq!(decode(&zeros, SecretEncoding::Ed25519Hex), Err(SecretError::BadEd25519));
        let zeros = format!("whpk_{}", base64::engine::general_purpose::STANDARD.encode([0; 32]));
        assert_eq!(decode(&zeros, SecretEncoding::StandardWebhooks), Err(SecretError::BadEd25519));
        let genuine = ed25519_dalek::SigningKey::from_bytes(&[7; 32]).verifying_key();
        assert!(!genuine.is_weak());
        assert_eq!(ed25519_key(genuine.to_bytes()), Ok(Secret::Ed25519(genuine.to_bytes())));
    }

    #[cfg(feature = "native-curves")]
    #[test]
    fn p256_keys_round_trip_through_der() {
        use p256::pkcs8::{EncodePrivateKey, EncodePublicKey};
        let signing = p256::ecdsa::SigningKey::from_slice(&[9u8; 32]).unwrap();
        let public_der = signing.verifying_key().to_public_key_der().unwrap();
        let public_b64 = base64::engine::general_purpose::STANDARD.encode(public_der.as_bytes());
        let expected = Ok(Secret::P256(public_der.as_bytes().to_vec()));
        assert_eq!(decode(&public_b64, SecretEncoding::P256Public), expected);
        let pem = format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n{}\n-----END PUBLIC KEY-----\n",
            &public_b64[..40],
            &public_b64[40..]
        );
        assert_eq!(decode(&pem, SecretEncoding::P256Public), expected);
        // Another curve's key, a compressed point, a key cut short: not P-256 keys as SendGrid
        // publishes them.
        let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
        let mut compressed = public_der.as_bytes().to_vec();
        compressed[26] = 0x02;
        let mut other_curve = public_der.as_bytes().to_vec();
        other_curve[22] = 0x22;
        for bad in [compressed, other_curve, public_der.as_bytes()[..90].to_vec()] {
            assert_eq!(decode(&b64(&bad), SecretEncoding::P256Public), Err(SecretError::BadP256));
        }
        let private_der = signing.to_pkcs8_der().unwrap();
        let private_b64 = base64::engine::general_purpose::STANDARD.encode(private_der.as_bytes());
        assert!(matches!(SigningKey::parse(&private_b64, SecretEncoding::P256Public), Ok(SigningKey::P256(_))));
    }
}
