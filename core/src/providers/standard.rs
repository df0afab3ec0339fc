//! Standard Webhooks (and Svix, which it formalises): `webhook-id`, `webhook-timestamp` and
//! `webhook-signature: v1,<base64> [v1,<base64> ...]`, HMAC-SHA256 over
//! `"<webhook-id>.<webhook-timestamp>.<raw body>"`, keyed with the base64 decoding of the
//! `whsec_` secret; or `v1a,<base64>`, an Ed25519 signature over the same content, verified with
//! a `whpk_` public key (the asymmetric variant of the specification).
//!
//! Svix sends the same scheme under `svix-id`, `svix-timestamp` and `svix-signature` (unless the
//! sender pays for white-labelling); those names are read when the `webhook-*` ones are absent.
//! An empty `v1,` signature is rejected (the reference library once accepted it), other
//! versions are ignored, and the timestamp window is symmetric.
//! Event id: `webhook-id` (or `svix-id`). Event type: body `type`.
//! edgehook also signs what it forwards with this scheme (SPEC section 3): see [`sign`].

use super::{BodyFields, Identity, Inbound, Scheme, Unsigned};
use crate::error::Rejection;
use crate::headers::HeaderList;
use crate::secret::{Secret, SecretEncoding, SigningKey};
use crate::signature::{check_tolerance, hmac_sha256, parse_timestamp, HashFn, KeyAlgorithm};
use base64::Engine;

pub const ID_HEADER: &str = "webhook-id";
pub const TIMESTAMP_HEADER: &str = "webhook-timestamp";
pub const SIGNATURE_HEADER: &str = "webhook-signature";
pub const SECRET_ENCODING: SecretEncoding = SecretEncoding::StandardWebhooks;

/// Svix's names for the same three headers.
const SVIX_ID_HEADER: &str = "svix-id";
const SVIX_TIMESTAMP_HEADER: &str = "svix-timestamp";
const SVIX_SIGNATURE_HEADER: &str = "svix-signature";

/// Most `v1a` signatures tried for one request. Each is a full Ed25519 verification, a SHA-512
/// pass over the whole body: a request with hundreds of made-up entries (no signature is needed
/// to send one) would cost hundreds of passes over a body of up to `max_body_bytes` before it
/// is refused. A sender lists one signature per key it is signing with, so a few at most.
const MAX_ED25519_SIGNATURES: usize = 8;

/// A header under its Standard Webhooks name, else under its Svix name; empty counts as absent.
fn header(req: Inbound<'_>, standard: &str, svix: &str) -> Option<String> {
    let non_empty = |v: &String| !v.is_empty();
    req.headers.get(standard).filter(non_empty).or_else(|| req.headers.get(svix).filter(non_empty))
}

/// What is signed: `{id}.{timestamp}.{body}`.
fn signed<'a>(id: &'a str, timestamp: &'a str, body: &'a [u8]) -> [&'a [u8]; 5] {
    [id.as_bytes(), b".", timestamp.as_bytes(), b".", body]
}

pub fn verify<'s>(req: Inbound<'_>, scheme: Scheme<'s>, now: i64) -> Result<&'s Secret, Rejection> {
    let (Some(id), Some(timestamp_text), Some(signatures)) = (
        header(req, ID_HEADER, SVIX_ID_HEADER),
        header(req, TIMESTAMP_HEADER, SVIX_TIMESTAMP_HEADER),
        header(req, SIGNATURE_HEADER, SVIX_SIGNATURE_HEADER),
    ) else {
        return Err(Rejection::MissingSignature);
    };
    let timestamp = parse_timestamp(&timestamp_text).ok_or(Rejection::InvalidSignature)?;
    // Space-separated `<version>,<base64>`; a header sent twice reads as the two values joined
    // with ", ", so a trailing comma is dropped from each token.
    let decoded = |version: &'static str| -> Vec<Vec<u8>> {
        signatures
            .split(' ')
            .map(|sig| sig.strip_suffix(',').unwrap_or(sig))
            .filter_map(|sig| sig.split_once(','))
            .filter(|(v, _)| *v == version)
            .filter_map(|(_, b64)| base64::engine::general_purpose::STANDARD.decode(b64).ok())
            .collect()
    };
    let symmetric = decoded("v1");
    let key = scheme
        .first_hmac_match(HashFn::Sha256, &symmetric, &signed(&id, &timestamp_text, req.body))
        .or_else(|| first_ed25519_match(scheme, &decoded("v1a"), &id, &timestamp_text, req.body))
        .ok_or(Rejection::InvalidSignature)?;
    check_tolerance(timestamp, now, scheme.tolerance_secs)?;
    Ok(key)
}

/// `v1a`: an Ed25519 signature over the same content, verified with a `whpk_` public key.
fn first_ed25519_match<'s>(
    scheme: Scheme<'s>,
    candidates: &[Vec<u8>],
    id: &str,
    timestamp: &str,
    body: &[u8],
) -> Option<&'s Secret> {
    let signatures: Vec<&Vec<u8>> = candidates.iter().filter(|c| c.len() == 64).take(MAX_ED25519_SIGNATURES).collect();
    if signatures.is_empty() {
        return None;
    }
    scheme.first_key_match(KeyAlgorithm::Ed25519, &signatures, &signed(id, timestamp, body))
}

pub fn identify(req: Inbound<'_>) -> Result<Identity, Rejection> {
    let id = header(req, ID_HEADER, SVIX_ID_HEADER).ok_or(Rejection::MalformedRequest)?;
    let event_type = BodyFields::parse(req.body).and_then(|f| BodyFields::string(&f.kind));
    Ok(Identity { id, event_type })
}

/// The `webhook-signature` value for one message with an HMAC key: `v1,<base64 HMAC>`.
pub fn sign(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    signature_value(&hmac_sha256(key, &signed(id, &timestamp.to_string(), body)))
}

/// The `webhook-signature` value for an HMAC computed elsewhere: `v1,<base64 HMAC>`.
pub fn signature_value(mac: &[u8]) -> String {
    format!("v1,{}", base64::engine::general_purpose::STANDARD.encode(mac))
}

/// The three headers, signed `v1` (HMAC, `whsec_`) or `v1a` (Ed25519, `whsk_`).
pub fn sign_headers(key: &SigningKey, unsigned: Unsigned<'_>) -> HeaderList {
    let Unsigned { id, timestamp, body, .. } = unsigned;
    let signature = match key {
        #[cfg(feature = "native-curves")]
        SigningKey::Ed25519(signing) => {
            use ed25519_dalek::Signer;
            let signed = [id.as_bytes(), b".", timestamp.to_string().as_bytes(), b".", body].concat();
            let signature = signing.sign(&signed);
            format!("v1a,{}", base64::engine::general_purpose::STANDARD.encode(signature.to_bytes()))
        }
        _ => sign(key.hmac_key().unwrap_or_default(), id, timestamp, body),
    };
    HeaderList::new()
        .with(ID_HEADER, id)
        .with(TIMESTAMP_HEADER, timestamp.to_string())
        .with(SIGNATURE_HEADER, signature)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::Provider;
    use crate::secret::SecretSet;
    use std::collections::BTreeMap;

    fn scheme(secrets: &SecretSet) -> Scheme<'_> {
        Scheme::new(secrets, 300)
    }

    #[derive(serde::Deserialize)]
    struct Vector {
        secret: String,
        headers: BTreeMap<String, String>,
        body: String,
        now: i64,
        valid: Vec<String>,
        invalid: Vec<String>,
    }

    fn vector() -> Vector {
        serde_json::from_str(include_str!("../../tests/vectors/standard-webhooks.json")).unwrap()
    }

    fn check(v: &Vector, signature: &str, secret: &str, now: i64) -> Result<(), Rejection> {
        let mut h = HeaderList(v.headers.clone().into_iter().collect());
        h.push("webhook-signature", signature);
        let secrets = SecretSet::parse(secret, SECRET_ENCODING).unwrap();
        Provider::Standard.verify(Inbound::post(&h, v.body.as_bytes()), scheme(&secrets), now).map(drop)
    }

    #[test]
    fn published_vector() {
        let v = vector();
        for sig in &v.valid {
            assert_eq!(check(&v, sig, &v.secret, v.now), Ok(()), "{sig}");
            let bare = v.secret.strip_prefix("whsec_").unwrap();
            assert_eq!(check(&v, sig, bare, v.now), Ok(()), "{sig} without prefix");
        }
        for sig in &v.invalid {
            let expected = if sig.is_empty() { Rejection::MissingSignature } else { Rejection::InvalidSignature };
            assert_eq!(check(&v, sig, &v.secret, v.now), Err(expected), "{sig:?}");
        }
    }

    #[test]
    fn sign_reproduces_the_published_signature() {
        let v = vector();
        let secret = crate::secret::decode(&v.secret, SECRET_ENCODING).unwrap();
        let ts: i64 = v.headers["webhook-timestamp"].parse().unwrap();
        assert_eq!(sign(secret.hmac_key().unwrap(), &v.headers["webhook-id"], ts, v.body.as_bytes()), v.valid[0]);
    }

    #[test]
    fn timestamp_window_is_symmetric() {
        let v = vector();
        let sig = &v.valid[0];
        assert_eq!(check(&v, sig, &v.secret, v.now + 301), Err(Rejection::TimestampOutOfTolerance));
        assert_eq!(check(&v, sig, &v.secret, v.now - 301), Err(Rejection::TimestampOutOfTolerance));
        assert_eq!(check(&v, sig, &v.secret, v.now - 300), Ok(()));
    }

    #[test]
    fn rotation_tries_every_secret() {
        let v = vector();
        let list = format!(r#"["whsec_{}","{}"]"#, "AAAAAAAAAAAAAAAAAAAAAAAA", v.secret);
        assert_eq!(check(&v, &v.valid[0], &list, v.now), Ok(()));
    }

    #[cfg(feature = "native-curves")]
    #[test]
    fn only_the_first_few_ed25519_signatures_are_tried() {
        use crate::headers::Headers;
        let seed = base64::engine::general_purpose::STANDARD.encode([9u8; 32]);
        let signing = SigningKey::parse(&format!("whsk_{seed}"), SECRET_ENCODING).unwrap();
        let SigningKey::Ed25519(key) = &signing else { panic!("an Ed25519 key") };
        let public = base64::engine::general_purpose::STANDARD.encode(key.verifying_key().to_bytes());
        let secrets = SecretSet::parse(&format!("whpk_{public}"), SECRET_ENCODING).unwrap();
        let body = br#"{"type":"user.created"}"#;
        let unsigned = Unsigned { method: "POST", url: "", body, id: "msg_1", timestamp: 1_700_000_000 };
        let genuine = sign_headers(&signing, unsigned).get(SIGNATURE_HEADER).unwrap();
        let made_up = format!("v1a,{}", base64::engine::general_purpose::STANDARD.encode([7u8; 64]));
        let verify = |entries_before: usize| {
            let signatures = vec![made_up.as_str(); entries_before].into_iter().chain([genuine.as_str()]);
            let h = HeaderList::from([("webhook-id", "msg_1"), ("webhook-timestamp", "1700000000")])
                .with(SIGNATURE_HEADER, signatures.collect::<Vec<_>>().join(" "));
            Provider::Standard.verify(Inbound::post(&h, body), scheme(&secrets), 1_700_000_000).map(drop)
        };
        assert_eq!(verify(0), Ok(()));
        assert_eq!(verify(MAX_ED25519_SIGNATURES - 1), Ok(()), "the last one tried");
        assert_eq!(verify(MAX_ED25519_SIGNATURES), Err(Rejection::InvalidSignature), "past the limit");
    }

    #[test]
    fn missing_headers_and_bad_timestamps() {
        let secrets = SecretSet::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", SECRET_ENCODING).unwrap();
        let only_sig = HeaderList::from([("webhook-signature", "v1,abc")]);
        let r = Provider::Standard.verify(Inbound::post(&only_sig, b""), scheme(&secrets), 0);
        assert_eq!(r, Err(Rejection::MissingSignature));
        let bad_ts = HeaderList::from([
            ("webhook-id", "m"),
            ("webhook-timestamp", "16142653e0"),
            ("webhook-signature", "v1,abc"),
        ]);
        let r = Provider::Standard.verify(Inbound::post(&bad_ts, b""), scheme(&secrets), 0);
        assert_eq!(r, Err(Rejection::InvalidSignature));
    }

    #[test]
    fn svix_header_names_are_accepted() {
        let v = vector();
        let h = HeaderList::from([
            ("svix-id", v.headers["webhook-id"].as_str()),
            ("svix-timestamp", v.headers["webhook-timestamp"].as_str()),
            ("svix-signature", v.valid[0].as_str()),
        ]);
        let secrets = SecretSet::parse(&v.secret, SECRET_ENCODING).unwrap();
        let req = Inbound::post(&h, v.body.as_bytes());
        assert!(Provider::Standard.verify(req, scheme(&secrets), v.now).is_ok());
        assert_eq!(
            Provider::Standard.identify(req, crate::providers::any_scheme()).unwrap().id,
            "msg_p5jXN8AQM9LWM0D4loKWxJek"
        );
    }

    #[test]
    fn a_repeated_signature_header_still_verifies() {
        let v = vector();
        let joined = format!("{}, v1,{}", v.valid[0], "AAAA");
        assert_eq!(check(&v, &joined, &v.secret, v.now), Ok(()));
        let joined_first_bad = format!("v1,AAAA, {}", v.valid[0]);
        assert_eq!(check(&v, &joined_first_bad, &v.secret, v.now), Ok(()));
    }

    #[test]
    fn identity() {
        let h = HeaderList::from([("webhook-id", "msg_1")]);
        let id = Provider::Standard
            .identify(Inbound::post(&h, br#"{"type":"user.created"}"#), crate::providers::any_scheme())
            .unwrap();
        assert_eq!(id, Identity { id: "msg_1".into(), event_type: Some("user.created".into()) });
        let no_type =
            Provider::Standard.identify(Inbound::post(&h, b"plain text"), crate::providers::any_scheme()).unwrap();
        assert_eq!(no_type.event_type, None);
    }
}
