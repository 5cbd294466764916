//! Bearer tokens for the operator API (`/ops/v1/*`), made with `paykit operator create`.

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::Response;
use paykit_core::ErrorCode;

use crate::app::AppState;
use crate::error::ApiError;
use crate::wallet_auth::token_digest;

#[derive(Debug, Clone)]
pub struct Operator {
    pub id: String,
    pub name: String,
}

pub async fn require_operator(
    State(state): State<AppState>,
    mut req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let invalid =
        || ApiError::new(ErrorCode::SessionInvalid, "send Authorization: Bearer TOKEN from `paykit operator create`");
    let token = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(invalid)?;
    let (id, name) = state.store().operator_by_token(&token_digest(token.trim())).await?.ok_or_else(invalid)?;
    req.extensions_mut().insert(Operator { id, name });
    Ok(next.run(req).await)
}
