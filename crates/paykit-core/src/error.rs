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
    // Orders
    OutTradeNoReused = 409, "OUT_TRADE_NO_REUSED", "The out_trade_no was used before with a different body.";
    QrCodeInvalid = 400, "QR_CODE_INVALID", "The scanned code is not a paykit payment QR, or it was altered.";
    OrderExpired = 409, "ORDER_EXPIRED", "The order's payment window has passed.";
    OrderClosed = 409, "ORDER_CLOSED", "The order was closed and can no longer be paid.";
    OrderPaid = 409, "ORDER_PAID", "The order is already paid.";
    OrderStatusInvalid = 409, "ORDER_STATUS_INVALID", "The order's status does not allow this operation.";
    // Wallet accounts
    PhoneInvalid = 400, "PHONE_INVALID", "The phone number is not an 11-digit mainland mobile number.";
    PhoneAlreadyRegistered = 409, "PHONE_ALREADY_REGISTERED", "A wallet with this phone number exists.";
    PasswordInvalid = 400, "PASSWORD_INVALID", "The login password must be 8 to 64 characters.";
    LoginFailed = 401, "LOGIN_FAILED", "Wrong phone number or password.";
    SessionInvalid = 401, "SESSION_INVALID", "No bearer token, or it is unknown or expired: log in again.";
    IdNumberInvalid = 400, "ID_NUMBER_INVALID", "The resident ID number is malformed, has a wrong check character or an impossible birth date.";
    RealNameRequired = 403, "REAL_NAME_REQUIRED", "Complete real-name verification first.";
    RealNameAlreadyVerified = 409, "REAL_NAME_ALREADY_VERIFIED", "The wallet is already verified under other details.";
    PayPasswordInvalid = 400, "PAY_PASSWORD_INVALID", "A pay password is exactly 6 digits.";
    PayPasswordWeak = 400, "PAY_PASSWORD_WEAK", "The pay password is too easy to guess.";
    PayPasswordNotSet = 403, "PAY_PASSWORD_NOT_SET", "Set a pay password first.";
    PayPasswordWrong = 403, "PAY_PASSWORD_WRONG", "Wrong pay password.";
    PayPasswordLocked = 423, "PAY_PASSWORD_LOCKED", "Too many wrong pay passwords: paying is locked until unlock_at.";
    AccountFrozen = 403, "ACCOUNT_FROZEN", "The account is frozen.";
    // Cards and the bank
    CardNumberInvalid = 400, "CARD_NUMBER_INVALID", "The card number fails its check digit or has the wrong length.";
    CardHolderMismatch = 400, "CARD_HOLDER_MISMATCH", "The card holder's name differs from the verified real name.";
    CardAlreadyBound = 409, "CARD_ALREADY_BOUND", "This card is already bound to the wallet.";
    CardNotSupported = 400, "CARD_NOT_SUPPORTED", "This card cannot be used for this operation (e.g. a credit card for a top-up).";
    CardDeclined = 402, "CARD_DECLINED", "The bank declined the card.";
    CardExpired = 402, "CARD_EXPIRED", "The card has expired.";
    CardInsufficientFunds = 402, "CARD_INSUFFICIENT_FUNDS", "The bank reports insufficient funds on the card.";
    // Devices, payment codes and confirmations
    DeviceProofInvalid = 403, "DEVICE_PROOF_INVALID", "The device confirmation does not verify (wrong device, secret, order or amount).";
    DeviceProofExpired = 403, "DEVICE_PROOF_EXPIRED", "The device confirmation's device_ts is more than 300 seconds away.";
    DeviceProofReused = 409, "DEVICE_PROOF_REUSED", "This device already confirmed this order.";
    DeviceNotEnabled = 403, "DEVICE_NOT_ENABLED", "The device is not enabled to confirm payments.";
    DeviceSuspended = 403, "DEVICE_SUSPENDED", "The device is suspended after too many failed payment codes.";
    AuthCodeMalformed = 400, "AUTH_CODE_MALFORMED", "The payment code is not 18 digits starting with 13, or its check digit is wrong (a misread).";
    AuthCodeInvalid = 400, "AUTH_CODE_INVALID", "The payment code is unknown, wrong or older than 60 seconds.";
    AuthCodeUsed = 409, "AUTH_CODE_USED", "The payment code was already used.";
    ConfirmationNotPending = 409, "CONFIRMATION_NOT_PENDING", "The confirmation was already answered or has expired.";
    IdempotencyKeyInvalid = 400, "IDEMPOTENCY_KEY_INVALID", "The Idempotency-Key header must be 1 to 64 characters of [A-Za-z0-9_-].";
    // Refunds
    OutRefundNoReused = 409, "OUT_REFUND_NO_REUSED", "The out_refund_no was used before for a different refund.";
    RefundExceedsPaid = 409, "REFUND_EXCEEDS_PAID", "The refund would take the order's refunds above what was paid.";
    RefundLimitReached = 409, "REFUND_LIMIT_REACHED", "The order already has 50 refunds.";
    RefundWindowClosed = 409, "REFUND_WINDOW_CLOSED", "Refunds are accepted within 365 days of payment.";
    RefundRequestStatusInvalid = 409, "REFUND_REQUEST_STATUS_INVALID", "The refund request's status does not allow this step.";
    SandboxOnly = 403, "SANDBOX_ONLY", "This operation exists only in sandbox mode.";
    // Wallet money
    RedPacketAlreadyClaimed = 409, "RED_PACKET_ALREADY_CLAIMED", "You already claimed a share of this red packet.";
    RedPacketEmpty = 409, "RED_PACKET_EMPTY", "No share is left, or the red packet expired.";
    RedPacketInvalid = 400, "RED_PACKET_INVALID", "1 to 100 shares, at most 200.00, at least 0.01 each (fixed: equal to the cent).";
    TransferLimitExceeded = 409, "TRANSFER_LIMIT_EXCEEDED", "The transfer is above the per-transfer or daily limit.";
    TransferNotPending = 409, "TRANSFER_NOT_PENDING", "The transfer is no longer waiting to be accepted (accepted, returned, or not yours).";
    PayeeInvalid = 400, "PAYEE_INVALID", "Give exactly one payee: to_phone or to_merchant_id, not yourself.";
    MerchantFrozen = 403, "MERCHANT_FROZEN", "The merchant's account is frozen and cannot receive payments.";
    UnfreezeDenied = 403, "UNFREEZE_DENIED", "The login password, pay password or real-name details did not match.";
    RiskBlocked = 403, "RISK_BLOCKED", "A risk rule blocked this payment.";
    // Bill pay
    BillNoReused = 409, "BILL_NO_REUSED", "The bill_no was posted before with other details.";
    BillNotOpen = 409, "BILL_NOT_OPEN", "The bill is paid or cancelled.";
    BillAmountInvalid = 400, "BILL_AMOUNT_INVALID", "The amount is above what is due, or partial where the biller takes full payment only.";
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
