//! The stable API error codes. Each failure a client can see has exactly one code here,
//! and each code one HTTP status. Codes are part of the published contract: add, never
//! rename.

use serde::Serialize;

macro_rules! error_codes {
    ($( $variant:ident = $status:literal, $name:literal, $doc:literal; )*) => {
        /// A stable, SCREAMING_SNAKE API error code.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
        #[serde(rename_all = "SCREAMING_SNAKE_CASE")]
        pub enum ErrorCode {
            $( #[doc = $doc] $variant, )*
        }

        impl ErrorCode {
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)*];

            /// The HTTP status this code is always sent with.
            pub fn http_status(self) -> u16 {
                match self { $( ErrorCode::$variant => $status, )* }
            }

            /// The code as sent on the wire.
            pub fn as_str(self) -> &'static str {
                match self { $( ErrorCode::$variant => $name, )* }
            }

            /// One line describing when the code is returned (for the API docs).
            pub fn description(self) -> &'static str {
                match self { $( ErrorCode::$variant => $doc, )* }
            }
        }
    };
}

error_codes! {
    // Request shape
    InvalidJson = 400, "INVALID_JSON", "The body is not well-formed JSON.";
    InvalidField = 400, "INVALID_FIELD", "A field has the wrong type or an invalid value.";
    MissingField = 400, "MISSING_FIELD", "A required field is absent.";
    UnknownField = 400, "UNKNOWN_FIELD", "The body has a field this endpoint does not accept.";
    UnsupportedMediaType = 415, "UNSUPPORTED_MEDIA_TYPE", "The Content-Type is not one this endpoint accepts.";
    PayloadTooLarge = 413, "PAYLOAD_TOO_LARGE", "The body is larger than this endpoint accepts.";
    // Money
    AmountInvalid = 400, "AMOUNT_INVALID", "An amount is not a decimal string such as \"12.30\".";
    AmountTooPrecise = 400, "AMOUNT_TOO_PRECISE", "An amount has more decimal places than its currency.";
    AmountNegative = 400, "AMOUNT_NEGATIVE", "An amount is negative where only positive amounts make sense.";
    AmountZero = 400, "AMOUNT_ZERO", "An amount is zero where only positive amounts make sense.";
    AmountTooLarge = 400, "AMOUNT_TOO_LARGE", "An amount is above the configured single-payment limit.";
    CurrencyUnsupported = 400, "CURRENCY_UNSUPPORTED", "The currency is not one the gateway settles in.";
    // Signing (merchant and biller API)
    AuthMissing = 401, "AUTH_MISSING", "No Authorization header.";
    AuthMalformed = 401, "AUTH_MALFORMED", "The Authorization header is not PAYKIT-HMAC-SHA256 with all its fields.";
    AuthUnknownKey = 401, "AUTH_UNKNOWN_KEY", "The merchant or key id is unknown, or the key is revoked.";
    AuthBadSignature = 401, "AUTH_BAD_SIGNATURE", "The signature does not match the request.";
    AuthTimestampSkew = 401, "AUTH_TIMESTAMP_SKEW", "The timestamp is more than 300 seconds from the server's time.";
    AuthNonceReplayed = 401, "AUTH_NONCE_REPLAYED", "The nonce was already used within the timestamp window.";
    // Objects
    NotFound = 404, "NOT_FOUND", "No such object for this caller (another party's objects are not found either).";
    MethodNotAllowed = 405, "METHOD_NOT_ALLOWED", "The path exists but not with this method.";
    IdempotencyKeyReused = 409, "IDEMPOTENCY_KEY_REUSED", "The idempotency key was used before with a different body.";
    // Money movement
    InsufficientBalance = 409, "INSUFFICIENT_BALANCE", "The wallet balance does not cover the amount.";
    // Server side
    RateLimited = 429, "RATE_LIMITED", "Too many requests; retry later.";
    ServiceUnavailable = 503, "SERVICE_UNAVAILABLE", "A dependency (the database) is unavailable; retry later.";
    InternalError = 500, "INTERNAL_ERROR", "An unexpected fault on the server; retrying the same request is safe.";
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<&crate::money::MoneyError> for ErrorCode {
    fn from(e: &crate::money::MoneyError) -> Self {
        use crate::money::MoneyError as E;
        match e {
            E::Malformed => ErrorCode::AmountInvalid,
            E::TooPrecise { .. } => ErrorCode::AmountTooPrecise,
            E::Negative => ErrorCode::AmountNegative,
            E::Zero => ErrorCode::AmountZero,
            E::TooLarge { .. } | E::Overflow => ErrorCode::AmountTooLarge,
            E::UnknownCurrency(_) | E::CurrencyMismatch(..) => ErrorCode::CurrencyUnsupported,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn as_str_matches_serde() {
        for &code in ErrorCode::ALL {
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
        }
        assert_eq!(ErrorCode::InsufficientBalance.as_str(), "INSUFFICIENT_BALANCE");
    }
}
