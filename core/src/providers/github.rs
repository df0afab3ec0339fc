//! GitHub: `X-Hub-Signature-256: sha256=<hex>`, HMAC-SHA256 of the raw body keyed with the
//! webhook secret (used literally).
//!
//! GitHub signs no timestamp, so there is no replay window to check: replays are stopped by the
//! idempotency record on `X-GitHub-Delivery`. The legacy SHA-1 `X-Hub-Signature` is never
//! accepted on its own. `X-GitHub-Event` is not covered by the signature; it only names the type.
//! Event id: `X-GitHub-Delivery`. Event type: `X-GitHub-Event`, plus `.<action>` when the body
//! has one (`issues.opened`), in JSON or in a form-encoded delivery's `payload` field.

use super::{form_payload, BodyFields, Identity, Inbound, Scheme, Unsigned};
use crate::error::Rejection;
use crate::headers::HeaderList;
use crate::secret::{Secret, SecretEncoding, SigningKey};
use crate::signature::{from_hex, hmac_sha256, to_hex, HashFn};

pub const SIGNATURE_HEADER: &str = "x-hub-signature-256";
pub const DELIVERY_HEADER: &str = "x-github-delivery";
pub const EVENT_HEADER: &str = "x-github-event";
pub const SECRET_ENCODING: SecretEncoding = SecretEncoding::Literal;

pub fn verify<'s>(req: Inbound<'_>, scheme: Scheme<'s>) -> Result<&'s Secret, Rejection> {
    let header = req.headers.get(SIGNATURE_HEADER).filter(|h| !h.is_empty());
    let header = header.ok_or(Rejection::MissingSignature)?;
    let hex = header.strip_prefix("sha256=").ok_or(Rejection::InvalidSignature)?;
    let candidate = from_hex::<32>(hex).ok_or(Rejection::InvalidSignature)?;
    scheme.first_hmac_match(HashFn::Sha256, &[candidate], &[req.body]).ok_or(Rejection::InvalidSignature)
}

pub fn identify(req: Inbound<'_>) -> Result<Identity, Rejection> {
    let id = req.headers.get(DELIVERY_HEADER).ok_or(Rejection::MalformedRequest)?;
    let event = req.headers.get(EVENT_HEADER).filter(|e| !e.is_empty());
    // A hook set to `application/x-www-form-urlencoded` sends the same JSON as its `payload`
    // field: its action counts the same (`issues.opened` either way).
    let fields = BodyFields::parse(req.body).or_else(|| BodyFields::parse(form_payload(req.body)?.as_bytes()));
    let action = fields.and_then(|f| BodyFields::string(&f.action));
    let event_type = match (event, action) {
        (Some(event), Some(action)) => Some(format!("{event}.{action}")),
        (event, _) => event,
    };
    Ok(Identity { id, event_type })
}

pub fn sign(key: &SigningKey, unsigned: Unsigned<'_>) -> HeaderList {
    let mac = hmac_sha256(key.hmac_key().unwrap_or_default(), &[unsigned.body]);
    HeaderList::new()
        .with("X-Hub-Signature-256", format!("sha256={}", to_hex(&mac)))
        .with("X-GitHub-Delivery", unsigned.id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::Provider;
    use crate::secret::SecretSet;

    #[derive(serde::Deserialize)]
    struct Vector {
        secret: String,
        body: String,
        valid: Vec<String>,
        invalid: Vec<String>,
    }

    fn check(header: Option<&str>, body: &[u8], secret: &str) -> Result<(), Rejection> {
        let mut h = HeaderList::new();
        if let Some(v) = header {
            h.push("X-Hub-Signature-256", v);
        }
        let secrets = SecretSet::parse(secret, SECRET_ENCODING).unwrap();
        Provider::Github.verify(Inbound::post(&h, body), Scheme::new(&secrets, 300), 0).map(drop)
    }

    #[test]
    fn published_vector() {
        let v: Vector = serde_json::from_str(include_str!("../../tests/vectors/github.json")).unwrap();
        for sig in &v.valid {
            assert_eq!(check(Some(sig), v.body.as_bytes(), &v.secret), Ok(()), "{sig}");
        }
        for sig in &v.invalid {
            assert_eq!(check(Some(sig), v.body.as_bytes(), &v.secret), Err(Rejection::InvalidSignature), "{sig}");
        }
        let key = SigningKey::parse(&v.secret, SECRET_ENCODING).unwrap();
        let signed = sign(&key, Unsigned { method: "POST", url: "", body: v.body.as_bytes(), id: "d1", timestamp: 0 });
        assert_eq!(crate::headers::Headers::get(&signed, SIGNATURE_HEADER).as_ref(), v.valid.first());
    }

    #[test]
    fn sha1_header_alone_is_missing_signature() {
        let h = HeaderList::from([("X-Hub-Signature", "sha1=0000000000000000000000000000000000000000")]);
        let secrets = SecretSet::parse("s", SECRET_ENCODING).unwrap();
        let r = Provider::Github.verify(Inbound::post(&h, b"{}"), Scheme::new(&secrets, 300), 0);
        assert_eq!(r, Err(Rejection::MissingSignature));
    }

    #[test]
    fn uppercase_hex_and_whitespace() {
        let sig = "sha256=757107EA0EB2509FC211221CCE984B8A37570B6D7586C22C46F4379C8B043E17";
        assert_eq!(check(Some(sig), b"Hello, World!", "It's a Secret to Everybody"), Ok(()));
        let spaced = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17 ";
        assert_eq!(
            check(Some(spaced), b"Hello, World!", "It's a Secret to Everybody"),
            Err(Rejection::InvalidSignature)
        );
    }

    #[test]
    fn identity_from_headers_and_action() {
        let h = HeaderList::from([
            ("X-GitHub-Delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"),
            ("X-GitHub-Event", "issues"),
        ]);
        let id = Provider::Github
            .identify(Inbound::post(&h, br#"{"action":"opened"}"#), crate::providers::any_scheme())
            .unwrap();
        assert_eq!(id.id, "72d3162e-cc78-11e3-81ab-4c9367dc0958");
        assert_eq!(id.event_type.as_deref(), Some("issues.opened"));
        // Form-encoded: the same JSON in `payload`, percent-encoded (spaces as `+`).
        let form = b"payload=%7B%22action%22%3A+%22opened%22%2C%22issue%22%3A%7B%7D%7D";
        let id = Provider::Github.identify(Inbound::post(&h, form), crate::providers::any_scheme()).unwrap();
        assert_eq!(id.event_type.as_deref(), Some("issues.opened"));
        let push =
            Provider::Github.identify(Inbound::post(&h, b"payload=%7B%7D"), crate::providers::any_scheme()).unwrap();
        assert_eq!(push.event_type.as_deref(), Some("issues"), "no action: the header alone");
        let not_json =
            Provider::Github.identify(Inbound::post(&h, b"payload=opened"), crate::providers::any_scheme()).unwrap();
        assert_eq!(not_json.event_type.as_deref(), Some("issues"));
        let no_id = HeaderList::from([("X-GitHub-Event", "ping")]);
        assert_eq!(
            Provider::Github.identify(Inbound::post(&no_id, b"{}"), crate::providers::any_scheme()),
            Err(Rejection::MalformedRequest)
        );
    }
}
