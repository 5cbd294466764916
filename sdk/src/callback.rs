//! Verifying callbacks. The gateway signs each callback with the merchant's (or biller's)
//! API secret over `TIMESTAMP "\n" NONCE "\n" BODY "\n"`; verify before trusting it.
//!
//! ```
//! use paykit_sdk::callback::{self, Headers};
//!
//! let secret = "the api secret";
//! let body = br#"{"event_id":"evt_1","event_type":"payment.succeeded","created_at":"2026-01-01T00:00:00Z","data":{"order_id":"ord_1"}}"#;
//! let (ts, nonce) = (1_767_225_600, "abcdefghijklmnop");
//! let signature = paykit_core::signing::sign(secret.as_bytes(), &paykit_core::signing::canonical_callback(ts, nonce, body));
//! let headers = Headers { key_id: Some("key_1".into()), timestamp: Some(ts.to_string()), nonce: Some(nonce.into()), signature: Some(signature) };
//! let event = callback::verify(&headers, body, secret, ts + 5, 300).unwrap();
//! assert_eq!(event.event_type, "payment.succeeded");
//! let mut tampered = body.to_vec();
//! tampered[10] ^= 1;
//! assert_eq!(callback::verify(&headers, &tampered, secret, ts, 300), Err(callback::CallbackError::BadSignature));
//! ```

use paykit_core::signing::{canonical_callback, verify as verify_mac};
use serde::Deserialize;

/// The callback headers, as your web framework hands them over.
#[derive(Debug, Clone, Default)]
pub struct Headers {
    /// `Paykit-Key-Id`.
    pub key_id: Option<String>,
    /// `Paykit-Timestamp`.
    pub timestamp: Option<String>,
    /// `Paykit-Nonce`.
    pub nonce: Option<String>,
    /// `Paykit-Signature`.
    pub signature: Option<String>,
}

impl Headers {
    /// Reads the four headers with a lookup function (case-insensitive names).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Headers {
        Headers {
            key_id: get("paykit-key-id"),
            timestamp: get("paykit-timestamp"),
            nonce: get("paykit-nonce"),
            signature: get("paykit-signature"),
        }
    }
}

/// A verified callback.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Event {
    /// Stable across deliveries: drop duplicates by it.
    pub event_id: String,
    /// `payment.succeeded`, `payment.closed`, `refund.succeeded`, `refund.failed`,
    /// `refund_request.created` or `bill.paid`.
    pub event_type: String,
    /// When it happened.
    pub created_at: String,
    /// The object it is about (an order, a refund, a bill…).
    pub data: serde_json::Value,
}

/// Why a callback was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallbackError {
    /// A header is absent.
    #[error("missing header {0}")]
    MissingHeader(&'static str),
    /// The timestamp is not Unix seconds.
    #[error("malformed Paykit-Timestamp")]
    MalformedTimestamp,
    /// The timestamp is further from now than the tolerance.
    #[error("stale callback: {0} s from now")]
    Stale(i64),
    /// The signature does not match the body (or the secret is wrong).
    #[error("bad signature")]
    BadSignature,
    /// The body is not a paykit event.
    #[error("malformed event: {0}")]
    MalformedBody(String),
}

/// Checks `body` against the headers with `secret`, and that the timestamp is within
/// `tolerance_secs` of `now_unix_secs`; returns the event.
pub fn verify(
    headers: &Headers,
    body: &[u8],
    secret: &str,
    now_unix_secs: i64,
    tolerance_secs: i64,
) -> Result<Event, CallbackError> {
    let timestamp = headers.timestamp.as_deref().ok_or(CallbackError::MissingHeader("Paykit-Timestamp"))?;
    let nonce = headers.nonce.as_deref().ok_or(CallbackError::MissingHeader("Paykit-Nonce"))?;
    let signature = headers.signature.as_deref().ok_or(CallbackError::MissingHeader("Paykit-Signature"))?;
    headers.key_id.as_deref().ok_or(CallbackError::MissingHeader("Paykit-Key-Id"))?;
    let ts: i64 = timestamp.parse().map_err(|_| CallbackError::MalformedTimestamp)?;
    if (now_unix_secs - ts).abs() > tolerance_secs {
        return Err(CallbackError::Stale(now_unix_secs - ts));
    }
    if !verify_mac(secret.as_bytes(), &canonical_callback(ts, nonce, body), signature) {
        return Err(CallbackError::BadSignature);
    }
    serde_json::from_slice(body).map_err(|e| CallbackError::MalformedBody(e.to_string()))
}
