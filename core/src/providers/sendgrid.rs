//! SendGrid Event Webhook: `X-Twilio-Email-Event-Webhook-Signature` (base64 DER), an ECDSA P-256
//! / SHA-256 signature over `X-Twilio-Email-Event-Webhook-Timestamp` followed by the raw body,
//! verified with the verification key from SendGrid's settings (base64 DER, PEM accepted).
//!
//! SendGrid's libraries do not check the timestamp; edgehook applies the source's symmetric
//! tolerance. Each request is a batch (a JSON array of events, each with its own `sg_event_id`):
//! the SHA-256 of the body identifies the batch, and it is delivered as one event without a type.

use super::{header, Identity, Inbound, Scheme, Unsigned};
use crate::error::Rejection;
use crate::headers::HeaderList;
use crate::secret::{Secret, SecretEncoding, SigningKey};
use crate::signature::{check_tolerance, ecdsa_der_to_raw, parse_timestamp, sha256_hex, KeyAlgorithm};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;

pub const SIGNATURE_HEADER: &str = "x-twilio-email-event-webhook-signature";
pub const TIMESTAMP_HEADER: &str = "x-twilio-email-event-webhook-timestamp";
pub const SECRET_ENCODING: SecretEncoding = SecretEncoding::P256Public;

pub fn verify<'s>(req: Inbound<'_>, scheme: Scheme<'s>, now: i64) -> Result<&'s Secret, Rejection> {
    let (Some(signature), Some(timestamp_text)) = (header(req, SIGNATURE_HEADER), header(req, TIMESTAMP_HEADER)) else {
        return Err(Rejection::MissingSignature);
    };
    let timestamp = parse_timestamp(&timestamp_text).ok_or(Rejection::InvalidSignature)?;
    let der = STANDARD.decode(signature).map_err(|_| Rejection::InvalidSignature)?;
    let signature = ecdsa_der_to_raw(&der).ok_or(Rejection::InvalidSignature)?;
    let key = scheme
        .first_key_match(KeyAlgorithm::EcdsaP256, &[signature], &[timestamp_text.as_bytes(), req.body])
        .ok_or(Rejection::InvalidSignature)?;
    check_tolerance(timestamp, now, scheme.tolerance_secs)?;
    Ok(key)
}

pub fn identify(req: Inbound<'_>) -> Result<Identity, Rejection> {
    Ok(Identity { id: sha256_hex(req.body), event_type: None })
}

pub fn sign(key: &SigningKey, unsigned: Unsigned<'_>) -> HeaderList {
    let timestamp = unsigned.timestamp.to_string();
    let signature = match key {
        #[cfg(feature = "native-curves")]
        SigningKey::P256(signing) => {
            use p256::ecdsa::signature::Signer;
            let signature: p256::ecdsa::Signature = signing.sign(&[timestamp.as_bytes(), unsigned.body].concat());
            STANDARD.encode(signature.to_der().as_bytes())
        }
        _ => String::new(),
    };
    HeaderList::new()
        .with("X-Twilio-Email-Event-Webhook-Signature", signature)
        .with("X-Twilio-Email-Event-Webhook-Timestamp", timestamp)
}
