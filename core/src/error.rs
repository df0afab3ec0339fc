//! The errors a caller of `POST /webhooks/{source}` can see.
//!
//! Each variant maps to exactly one HTTP status and one stable error code (SPEC section 2). The
//! code is what clients match on, so it never changes once published; anything more detailed
//! goes to the log, never to the caller.

use thiserror::Error;

/// Why a webhook was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Rejection {
    /// No source of that name is configured.
    #[error("unknown source")]
    UnknownSource,
    /// Webhooks are POSTed; anything else is refused before any work.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// The body is larger than the source's `max_body_bytes`; refused before any HMAC work.
    #[error("payload too large")]
    PayloadTooLarge,
    /// The header carrying the signature (or a header the signature covers) is absent.
    #[error("missing signature")]
    MissingSignature,
    /// No signature in the request matches any configured secret, or the signature header
    /// cannot be parsed. Deliberately one code: which part failed is not the caller's business.
    #[error("invalid signature")]
    InvalidSignature,
    /// The signature is authentic but its signed timestamp is too far from now, in either
    /// direction: a replay, or a clock far off.
    #[error("timestamp out of tolerance")]
    TimestampOutOfTolerance,
    /// The request is authentic but cannot be used: no event id where one is required, or an
    /// id that is not a printable token (it would end up in forwarded headers).
    #[error("malformed request")]
    MalformedRequest,
    /// The source exists but its configuration is broken. Names the source and the field,
    /// never a value.
    #[error("source {source_name} is misconfigured: {field}")]
    Misconfigured { source_name: String, field: String },
    /// Storage or the queue failed; nothing was acknowledged, so the provider retries.
    #[error("unavailable")]
    Unavailable,
}

impl Rejection {
    /// The HTTP status for this rejection.
    pub fn status(&self) -> u16 {
        match self {
            Rejection::UnknownSource => 404,
            Rejection::MethodNotAllowed => 405,
            Rejection::PayloadTooLarge => 413,
            Rejection::MissingSignature | Rejection::InvalidSignature | Rejection::TimestampOutOfTolerance => 401,
            Rejection::MalformedRequest => 400,
            Rejection::Misconfigured { .. } => 500,
            Rejection::Unavailable => 503,
        }
    }

    /// The stable error code sent as `{"error": code}`.
    pub fn code(&self) -> &'static str {
        match self {
            Rejection::UnknownSource => "unknown_source",
            Rejection::MethodNotAllowed => "method_not_allowed",
            Rejection::PayloadTooLarge => "payload_too_large",
            Rejection::MissingSignature => "missing_signature",
            Rejection::InvalidSignature => "invalid_signature",
            Rejection::TimestampOutOfTolerance => "timestamp_out_of_tolerance",
            Rejection::MalformedRequest => "malformed_request",
            Rejection::Misconfigured { .. } => "misconfigured",
            Rejection::Unavailable => "unavailable",
        }
    }

    /// The exact JSON body of the error response.
    pub fn body(&self) -> String {
        match self {
            // Built by hand to keep SPEC's key order: `error`, `source`, `field`.
            Rejection::Misconfigured { source_name, field } => format!(
                r#"{{"error":"misconfigured","source":{},"field":{}}}"#,
                crate::json::quote(source_name),
                crate::json::quote(field)
            ),
            _ => format!(r#"{{"error":"{}"}}"#, self.code()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rejection_has_its_spec_status_and_body() {
        let table = [
            (Rejection::UnknownSource, 404, r#"{"error":"unknown_source"}"#),
            (Rejection::MethodNotAllowed, 405, r#"{"error":"method_not_allowed"}"#),
            (Rejection::PayloadTooLarge, 413, r#"{"error":"payload_too_large"}"#),
            (Rejection::MissingSignature, 401, r#"{"error":"missing_signature"}"#),
            (Rejection::InvalidSignature, 401, r#"{"error":"invalid_signature"}"#),
            (Rejection::TimestampOutOfTolerance, 401, r#"{"error":"timestamp_out_of_tolerance"}"#),
            (Rejection::MalformedRequest, 400, r#"{"error":"malformed_request"}"#),
            (Rejection::Unavailable, 503, r#"{"error":"unavailable"}"#),
        ];
        for (rejection, status, body) in table {
            assert_eq!(rejection.status(), status, "{rejection:?}");
            assert_eq!(rejection.body(), body, "{rejection:?}");
        }
    }

    #[test]
    fn misconfigured_names_source_and_field() {
        let r = Rejection::Misconfigured { source_name: "stripe".into(), field: "provider".into() };
        assert_eq!(r.status(), 500);
        assert_eq!(r.body(), r#"{"error":"misconfigured","source":"stripe","field":"provider"}"#);
    }
}
