//! A JSON body extractor whose failures are API errors with specific codes (axum's own
//! answers in plain text with 422).

use axum::extract::{FromRequest, Request};
use axum::http::header::CONTENT_TYPE;
use paykit_core::ErrorCode;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"));
        if !is_json {
            return Err(ApiError::new(
                ErrorCode::UnsupportedMediaType,
                "send the body as Content-Type: application/json",
            ));
        }
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|_| ApiError::new(ErrorCode::PayloadTooLarge, "the body is too large"))?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// Parses a JSON body, turning serde's error into the code that says what is wrong.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| {
        use serde_json::error::Category;
        let message = e.to_string();
        let code = match e.classify() {
            Category::Syntax | Category::Eof | Category::Io => ErrorCode::InvalidJson,
            Category::Data if message.starts_with("unknown field") => ErrorCode::UnknownField,
            Category::Data if message.starts_with("missing field") => ErrorCode::MissingField,
            Category::Data => ErrorCode::InvalidField,
        };
        ApiError::new(code, message)
    })
}

/// Query parameters whose failures are API errors.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> axum::extract::FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, _: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or("");
        serde_urlencoded::from_str(query)
            .map(ApiQuery)
            .map_err(|e| ApiError::new(ErrorCode::InvalidField, format!("query string: {e}")))
    }
}

/// The optional `Idempotency-Key` header of a money-moving POST.
pub struct IdempotencyKeyHeader(pub Option<String>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for IdempotencyKeyHeader {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, _: &S) -> Result<Self, Self::Rejection> {
        let Some(value) = parts.headers.get("idempotency-key") else { return Ok(IdempotencyKeyHeader(None)) };
        let key = value
            .to_str()
            .ok()
            .filter(|k| {
                (1..=64).contains(&k.len()) && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            })
            .ok_or_else(|| {
                ApiError::new(
                    ErrorCode::IdempotencyKeyInvalid,
                    "Idempotency-Key must be 1-64 characters of [A-Za-z0-9_-]",
                )
            })?;
        Ok(IdempotencyKeyHeader(Some(key.to_owned())))
    }
}
