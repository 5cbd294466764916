//! Bearer sessions for the wallet API (`/wallet/v1/*`). Tokens are random; only their
//! SHA-256 digest is stored, so a database leak does not leak sessions.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::Response;
use paykit_core::ErrorCode;
use paykit_store::users::User;
use sha2::{Digest, Sha256};

use crate::app::AppState;
use crate::error::ApiError;

/// The logged-in wallet user, as read with the session once the request had arrived.
/// Handlers take it with `Extension<WalletUser>`.
#[derive(Debug, Clone)]
pub struct WalletUser {
    pub user: User,
}

pub fn token_digest(token: &str) -> String {
    Sha256::digest(token.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

pub async fn require_session(State(state): State<AppState>, req: Request, next: Next) -> Result<Response, ApiError> {
    let invalid =
        || ApiError::new(ErrorCode::SessionInvalid, "send Authorization: Bearer TOKEN from POST /wallet/v1/sessions");
    let token = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty() && t.len() <= 128)
        .ok_or_else(invalid)?;
    let digest = token_digest(token);
    // The body first, then the user: the handler decides on the user as it is once the
    // whole request has arrived (the pay-password lock, a freeze), not as it was when the
    // client started sending — a client holding bodies back must not get older answers.
    let (mut parts, body) = req.into_parts();
    let body = crate::auth::whole_body(&state, body).await?;
    let user = state.store().session_user(&digest, state.wall_now()).await?.ok_or_else(invalid)?;
    parts.extensions.insert(WalletUser { user });
    Ok(next.run(Request::from_parts(parts, Body::from(body))).await)
}
