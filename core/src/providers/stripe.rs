//! Stripe: `Stripe-Signature: t=<unix secs>,v1=<hex>[,v1=<hex>...]`, HMAC-SHA256 keyed with the
//! endpoint secret (`whsec_...`, used literally) over `"<t>.<raw body>"`.
//!
//! Differences from Stripe's own SDKs, on purpose: the timestamp window is symmetric (a future
//! timestamp is refused too), exactly one `t` is allowed, and every `v1` is tried (Stripe sends
//! several while a secret is being rolled).
//! Event id: body `id`. Event type: body `type`.

use super::{BodyFields, Identity, Inbound, Scheme, Unsigned};
use crate::error::Rejection;
use crate::headers::HeaderList;
use crate::secret::{Secret, SecretEncoding, SigningKey};
use crate::signature::{check_tolerance, from_hex, hmac_sha256, parse_timestamp, to_hex, HashFn};

/// Ordering: the object the event is about, and the event's creation time (Unix seconds).
pub const ORDERING: (&str, &str) = ("/data/object/id", "/created");

pub const SIGNATURE_HEADER: &str = "stripe-signature";
pub const SECRET_ENCODING: SecretEncoding = SecretEncoding::Literal;

/// The parts of a `Stripe-Signature` header edgehook uses.
#[derive(Debug, PartialEq, Eq)]
struct SignatureHeader<'a> {
    timestamp_text: &'a str,
    timestamp: i64,
    v1: Vec<&'a str>,
}

/// Strict parse: every item is `key=value`; exactly one `t`, all digits; at least one `v1`.
/// Unknown schemes (`v0=`, future ones) are ignored rather than refused.
fn parse_header(header: &str) -> Result<SignatureHeader<'_>, Rejection> {
    let mut timestamp = None;
    let mut v1 = Vec::new();
    for item in header.split(',') {
        let (key, value) = item.split_once('=').ok_or(Rejection::InvalidSignature)?;
        match key {
            "t" => {
                if timestamp.is_some() {
                    return Err(Rejection::InvalidSignature);
                }
                let parsed = parse_timestamp(value).ok_or(Rejection::InvalidSignature)?;
                timestamp = Some((value, parsed));
            }
            "v1" => v1.push(value),
            _ => {}
        }
    }
    let (timestamp_text, timestamp) = timestamp.ok_or(Rejection::InvalidSignature)?;
    if v1.is_empty() {
        return Err(Rejection::InvalidSignature);
    }
    Ok(SignatureHeader { timestamp_text, timestamp, v1 })
}

pub fn verify<'s>(req: Inbound<'_>, scheme: Scheme<'s>, now: i64) -> Result<&'s Secret, Rejection> {
    let header = req.headers.get(SIGNATURE_HEADER).filter(|h| !h.is_empty());
    let header = header.ok_or(Rejection::MissingSignature)?;
    let parsed = parse_header(&header)?;
    // Candidates that are not 32 bytes of hex can never match; decoding them once up front keeps
    // the comparison loop to fixed-length constant-time compares.
    let candidates: Vec<[u8; 32]> = parsed.v1.iter().filter_map(|s| from_hex::<32>(s)).collect();
    let key = scheme
        .first_hmac_match(HashFn::Sha256, &candidates, &[parsed.timestamp_text.as_bytes(), b".", req.body])
        .ok_or(Rejection::InvalidSignature)?;
    check_tolerance(parsed.timestamp, now, scheme.tolerance_secs)?;
    Ok(key)
}

pub fn identify(req: Inbound<'_>) -> Result<Identity, Rejection> {
    let fields = BodyFields::parse(req.body).ok_or(Rejection::MalformedRequest)?;
    let id = BodyFields::string(&fields.id).ok_or(Rejection::MalformedRequest)?;
    Ok(Identity { id, event_type: BodyFields::string(&fields.kind) })
}

pub fn sign(key: &SigningKey, unsigned: Unsigned<'_>) -> HeaderList {
    let t = unsigned.timestamp.to_string();
    let mac = hmac_sha256(key.hmac_key().unwrap_or_default(), &[t.as_bytes(), b".", unsigned.body]);
    HeaderList::new().with("Stripe-Signature", format!("t={t},v1={}", to_hex(&mac)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::Provider;
    use crate::secret::SecretSet;

    const BODY: &[u8] = br#"{"id":"evt_1","type":"invoice.paid","data":{"object":{"id":"in_1","type":"x"}}}"#;
    const NOW: i64 = 1_700_000_000;

    fn secrets(list: &str) -> SecretSet {
        SecretSet::parse(list, SECRET_ENCODING).unwrap()
    }

    fn check(header: Option<&str>, body: &[u8], secrets: &SecretSet, now: i64) -> Result<(), Rejection> {
        let mut h = HeaderList::new();
        if let Some(v) = header {
            h.push("Stripe-Signature", v);
        }
        Provider::Stripe.verify(Inbound::post(&h, body), Scheme::new(secrets, 300), now).map(drop)
    }

    fn signature(secret: &str, t: i64, body: &[u8]) -> String {
        let key = SigningKey::parse(secret, SECRET_ENCODING).unwrap();
        let h = sign(&key, Unsigned { method: "POST", url: "", body, id: "", timestamp: t });
        crate::headers::Headers::get(&h, SIGNATURE_HEADER).unwrap()
    }

    /// Stripe's documented scheme, with the MAC computed outside edgehook:
    /// `printf '1700000000.{"id":"evt_1","object":"event"}' | openssl dgst -sha256 -hmac whsec_test`.
    #[test]
    fn known_answer_from_openssl() {
        let body = br#"{"id":"evt_1","object":"event"}"#;
        let mac = "4c15fb2a43f93ef61eaa3e0893866d57cad9cad4223242cfb96f362480cb4021";
        let header = format!("t=1700000000,v1={mac}");
        assert_eq!(check(Some(&header), body, &secrets("whsec_test"), NOW), Ok(()));
        assert_eq!(signature("whsec_test", NOW, body), header);
        let wrong = format!("t=1700000000,v1={}3", &mac[..63]);
        assert_eq!(check(Some(&wrong), body, &secrets("whsec_test"), NOW), Err(Rejection::InvalidSignature));
    }

    #[test]
    fn signed_request_verifies_and_identifies() {
        let s = secrets("whsec_abc");
        let header = signature("whsec_abc", NOW, BODY);
        assert_eq!(check(Some(&header), BODY, &s, NOW), Ok(()));
        let h = HeaderList::new();
        let id = Provider::Stripe.identify(Inbound::post(&h, BODY), crate::providers::any_scheme()).unwrap();
        assert_eq!(id, Identity { id: "evt_1".into(), event_type: Some("invoice.paid".into()) });
    }

    #[test]
    fn any_v1_and_any_secret_matches() {
        let good = signature("whsec_old", NOW, BODY);
        let v1 = good.split_once(",v1=").unwrap().1;
        let header = format!("t={NOW},v1={},v0=zzz,v1={v1},v2=abc", "0".repeat(64));
        assert_eq!(check(Some(&header), BODY, &secrets(r#"["whsec_new","whsec_old"]"#), NOW), Ok(()));
        assert_eq!(check(Some(&header), BODY, &secrets("whsec_new"), NOW), Err(Rejection::InvalidSignature));
    }

    #[test]
    fn tolerance_applies_in_both_directions_after_the_signature() {
        let s = secrets("whsec_abc");
        let old = signature("whsec_abc", NOW - 301, BODY);
        let future = signature("whsec_abc", NOW + 301, BODY);
        let edge = signature("whsec_abc", NOW + 300, BODY);
        assert_eq!(check(Some(&old), BODY, &s, NOW), Err(Rejection::TimestampOutOfTolerance));
        assert_eq!(check(Some(&future), BODY, &s, NOW), Err(Rejection::TimestampOutOfTolerance));
        assert_eq!(check(Some(&edge), BODY, &s, NOW), Ok(()));
        // A forged signature with a stale timestamp is a forgery first.
        let forged = old.replace("v1=", "v1=0");
        assert_eq!(check(Some(&forged), BODY, &s, NOW), Err(Rejection::InvalidSignature));
    }

    #[test]
    fn malformed_headers_are_invalid() {
        let s = secrets("whsec_abc");
        let good = signature("whsec_abc", NOW, BODY);
        let v1 = good.split_once(",v1=").unwrap().1.to_owned();
        let cases = [
            format!("v1={v1}"),
            format!("t={NOW}"),
            format!("t={NOW},t={NOW},v1={v1}"),
            format!("t= {NOW},v1={v1}"),
            format!("t=-{NOW},v1={v1}"),
            format!("t={NOW},v1={v1},junk"),
            format!("t={NOW},v1= {v1}"),
            format!("t={NOW},v1={}", &v1[..63]),
            format!("t={NOW},v1="),
            format!("t={NOW}, v1={v1}"),
            format!("{good} "),
        ];
        for header in cases {
            assert_eq!(check(Some(&header), BODY, &s, NOW), Err(Rejection::InvalidSignature), "{header}");
        }
        assert_eq!(check(None, BODY, &s, NOW), Err(Rejection::MissingSignature));
        assert_eq!(check(Some(""), BODY, &s, NOW), Err(Rejection::MissingSignature));
    }

    #[test]
    fn any_change_to_the_body_fails() {
        let s = secrets("whsec_abc");
        let header = signature("whsec_abc", NOW, BODY);
        let mut body = BODY.to_vec();
        body.push(b' ');
        assert_eq!(check(Some(&header), &body, &s, NOW), Err(Rejection::InvalidSignature));
    }

    #[test]
    fn identity_needs_a_string_id() {
        let h = HeaderList::new();
        for body in
            [&b"not json"[..], br#"{"type":"a"}"#, br#"{"id":5}"#, br#"{"id":""}"#, br#"{"id":"a","id":"b"}"#, b"[]"]
        {
            assert_eq!(
                Provider::Stripe.identify(Inbound::post(&h, body), crate::providers::any_scheme()),
                Err(Rejection::MalformedRequest),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        let no_type =
            Provider::Stripe.identify(Inbound::post(&h, br#"{"id":"evt_2"}"#), crate::providers::any_scheme()).unwrap();
        assert_eq!(no_type.event_type, None);
    }
}
