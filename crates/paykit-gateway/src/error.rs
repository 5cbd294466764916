//! The one error type handlers return. It renders as
//! `{"code": "…", "message": "…", "request_id": "…"}` with the code's fixed HTTP status.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use paykit_core::ErrorCode;
use paykit_core::signing::AuthError;
use paykit_store::StoreError;

use crate::observe::current_request_id;

#[derive(Debug)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    /// Extra fields a client can act on (e.g. `unlock_at`), beside code and message.
    pub details: Vec<(&'static str, serde_json::Value)>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError { code, message: message.into(), details: Vec::new() }
    }

    pub fn with(mut self, key: &'static str, value: impl Into<serde_json::Value>) -> ApiError {
        self.details.push((key, value.into()));
        self
    }

    pub fn invalid(field: &str, why: impl std::fmt::Display) -> ApiError {
        ApiError::new(ErrorCode::InvalidField, format!("{field}: {why}")).with("field", field)
    }

    pub fn not_found(what: &str) -> ApiError {
        ApiError::new(ErrorCode::NotFound, format!("no such {what}"))
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        ApiError::new(ErrorCode::from(&e), e.to_string())
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NonceReplayed => AuthError::NonceReplayed.into(),
            StoreError::KeyRevoked => AuthError::UnknownKey.into(),
            StoreError::InsufficientFunds { .. } => {
                ApiError::new(ErrorCode::InsufficientBalance, "the balance does not cover the amount")
            }
            e if e.is_bad_text() => {
                ApiError::new(ErrorCode::InvalidField, "a field contains a character that is not allowed (NUL)")
            }
            e if e.is_transient() => {
                tracing::warn!(error = %e, "database unavailable");
                ApiError::new(ErrorCode::ServiceUnavailable, "the database is unavailable; retry the same request")
            }
            e => {
                tracing::error!(error = %e, "storage fault");
                ApiError::new(ErrorCode::InternalError, "internal error; retrying the same request is safe")
            }
        }
    }
}

impl From<paykit_store::payments::PayError> for ApiError {
    fn from(e: paykit_store::payments::PayError) -> Self {
        use paykit_store::payments::PayError as E;
        let code = match &e {
            E::NotFound => return ApiError::not_found("order"),
            E::Expired => ErrorCode::OrderExpired,
            E::Closed => ErrorCode::OrderClosed,
            E::AlreadyPaid => ErrorCode::OrderPaid,
            E::WrongStatus(_) => ErrorCode::OrderStatusInvalid,
            E::InsufficientBalance => ErrorCode::InsufficientBalance,
            E::DeviceProofReused => ErrorCode::DeviceProofReused,
            E::CodeUsed => ErrorCode::AuthCodeUsed,
            E::ConfirmationNotPending => ErrorCode::ConfirmationNotPending,
            E::IdempotencyKeyReused => ErrorCode::IdempotencyKeyReused,
            E::AlreadyClaimed => ErrorCode::RedPacketAlreadyClaimed,
            E::Store(_) => {
                let E::Store(inner) = e else { unreachable!() };
                return ApiError::from(inner);
            }
        };
        ApiError::new(code, e.to_string())
    }
}

impl From<&paykit_core::MoneyError> for ApiError {
    fn from(e: &paykit_core::MoneyError) -> Self {
        ApiError::new(ErrorCode::from(e), e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut body = serde_json::json!({
            "code": self.code.as_str(),
            "message": self.message,
            "request_id": current_request_id(),
        });
        for (key, value) in self.details {
            body[key] = value;
        }
        (status, axum::Json(body)).into_response()
    }
}
