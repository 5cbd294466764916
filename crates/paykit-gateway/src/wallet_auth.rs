//! Bearer sessions for the wallet API (`/wallet/v1/*`). Tokens are random; only their
//! SHA-256 digest is stored, so a database leak does not leak sessions.

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::Response;
use paykit_core::ErrorCode;
use paykit_store::pay_context::SessionAt;
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
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The answer to a request without a live session.
pub fn session_invalid() -> ApiError {
    ApiError::new(ErrorCode::SessionInvalid, "send Authorization: Bearer TOKEN from POST /wallet/v1/sessions")
}

/// The bearer token, when the header carries one of a plausible shape, then the whole body.
/// The body comes before any read of the session: the handler decides on the user as it
/// is once the whole request has arrived (the pay-password lock, a freeze), not as it was
/// when the client started sending — a client holding bodies back must not get older
/// answers.
async fn token_and_body(state: &AppState, req: Request) -> Result<(Parts, Bytes, SessionToken), ApiError> {
    let token = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty() && t.len() <= 128)
        .ok_or_else(session_invalid)?;
    let token = SessionToken { digest: token_digest(token) };
    let (parts, body) = req.into_parts();
    Ok((parts, crate::auth::whole_body(state, body).await?, token))
}

pub async fn require_session(State(state): State<AppState>, req: Request, next: Next) -> Result<Response, ApiError> {
    let (mut parts, body, token) = token_and_body(&state, req).await?;
    parts.extensions.insert(WalletUser { user: token.user(&state).await? });
    Ok(next.run(Request::from_parts(parts, Body::from(body))).await)
}

/// A wallet request's bearer token, for a handler that reads the session itself in its
/// own first read (`Access::WalletSessionInRead`). The token's shape is checked and the
/// whole body has arrived; whether the session is live is not known yet.
#[derive(Debug, Clone)]
pub struct SessionToken {
    digest: String,
}

impl SessionToken {
    /// The session's user as it is now; `SESSION_INVALID` when the session is not live.
    pub async fn user(&self, state: &AppState) -> Result<User, ApiError> {
        state.store().session_user(&self.digest, state.wall_now()).await?.ok_or_else(session_invalid)
    }

    /// `refused`, the handler's answer before its read, unless the session is not live:
    /// then `SESSION_INVALID`, which comes first.
    pub async fn before(&self, state: &AppState, refused: ApiError) -> ApiError {
        self.user(state).await.err().unwrap_or(refused)
    }

    /// Where the handler's own read starts.
    pub fn at(&self, state: &AppState) -> SessionAt<'_> {
        SessionAt { token_digest: &self.digest, now: state.wall_now() }
    }
}

/// [`require_session`] without the read: the handler reads the session with what it reads
/// first anyway, and a handler that refuses the request before reading checks the session
/// first ([`SessionToken::before`]), so that an answer never tells a stranger more than 401.
pub async fn require_session_token(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let (mut parts, body, token) = token_and_body(&state, req).await?;
    parts.extensions.insert(token);
    Ok(next.run(Request::from_parts(parts, Body::from(body))).await)
}
