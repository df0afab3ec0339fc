//! Linear: `Linear-Signature`, the hex HMAC-SHA256 of the raw body keyed with the webhook's
//! signing secret (used as text).
//!
//! The signed body carries `webhookTimestamp` (Unix milliseconds); when present it must be within
//! the source's tolerance (Linear's SDK allows 60 seconds; edgehook's default is its usual 300,
//! symmetric). The unsigned `Linear-Timestamp` header is not used: a replayer can set it.
//! Event id: `Linear-Delivery`. Event type: `Linear-Event` (`Issue`, `Comment`).

use super::{header, Identity, Inbound, Scheme, Unsigned};
use crate::error::Rejection;
use crate::headers::HeaderList;
use crate::json_scan::{self, Member};
use crate::secret::{Secret, SecretEncoding, SigningKey};
use crate::signature::{check_tolerance, from_hex, hmac_sha256, to_hex, HashFn};

/// Ordering: the entity in `data`, and its last update time (RFC 3339).
pub const ORDERING: (&str, &str) = ("/data/id", "/data/updatedAt");

pub const SIGNATURE_HEADER: &str = "linear-signature";
pub const SECRET_ENCODING: SecretEncoding = SecretEncoding::Literal;

pub fn verify<'s>(req: Inbound<'_>, scheme: Scheme<'s>, now: i64) -> Result<&'s Secret, Rejection> {
    let signature = header(req, SIGNATURE_HEADER).ok_or(Rejection::MissingSignature)?;
    let candidate = from_hex::<32>(&signature).ok_or(Rejection::InvalidSignature)?;
    let key = scheme.first_hmac_match(HashFn::Sha256, &[candidate], &[req.body]).ok_or(Rejection::InvalidSignature)?;
    // The timestamp is read after the HMAC matched: the body is Linear's own JSON by then.
    let signed_ms = match json_scan::top_level_member(req.body, "webhookTimestamp") {
        Member::Found(raw) => crate::json::from_slice::<i64>(raw).ok(),
        Member::Absent => None,
        // The one member verification reads, when the fast scan cannot tell; the rest of the
        // body is skipped, not built into a tree.
        Member::Unsure => {
            crate::json::members(req.body, ["webhookTimestamp"]).ok().flatten().and_then(|[t]| t?.as_i64())
        }
    };
    if let Some(ms) = signed_ms {
        check_tolerance(ms.div_euclid(1000), now, scheme.tolerance_secs)?;
    }
    Ok(key)
}

pub fn identify(req: Inbound<'_>) -> Result<Identity, Rejection> {
    let id = header(req, "linear-delivery").ok_or(Rejection::MalformedRequest)?;
    Ok(Identity { id, event_type: header(req, "linear-event") })
}

pub fn sign(key: &SigningKey, unsigned: Unsigned<'_>) -> HeaderList {
    let mac = hmac_sha256(key.hmac_key().unwrap_or_default(), &[unsigned.body]);
    HeaderList::new().with("Linear-Signature", to_hex(&mac)).with("Linear-Delivery", unsigned.id)
}
