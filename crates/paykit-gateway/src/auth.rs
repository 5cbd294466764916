//! Signed requests on the merchant and biller API (`/v1/*`): the signature, the timestamp
//! window and the nonce are checked before any handler runs, and the caller's identity is
//! put in the request's extensions for handlers to scope every query by.

use axum::body::Body;
use axum::extract::{OriginalUri, Request, State};
use axum::http::Method;
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::Response;
use paykit_core::ErrorCode;
use paykit_core::signing::{AuthError, AuthHeader, PartyKind, verify_request};
use paykit_store::nonces::NonceUse;

use crate::app::AppState;
use crate::error::ApiError;

/// The merchant that signed the request. Merchant handlers take `Extension<Caller>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    Merchant { merchant_id: String, key_id: String },
}

impl Caller {
    pub fn merchant_id(&self) -> &str {
        match self {
            Caller::Merchant { merchant_id, .. } => merchant_id,
        }
    }
}

/// The biller that signed the request. Biller handlers take `Extension<BillerCaller>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BillerCaller {
    pub biller_id: String,
}

fn auth_error(e: AuthError) -> ApiError {
    ApiError::new(ErrorCode::from(&e), e.to_string())
}

/// Reads the whole body (a signature covers it; a wallet request is judged once it has
/// arrived), refusing one larger than `max_body_bytes`.
pub(crate) async fn whole_body(state: &AppState, body: Body) -> Result<axum::body::Bytes, ApiError> {
    axum::body::to_bytes(body, state.config().max_body_bytes).await.map_err(|_| {
        ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!("the body is larger than {} bytes", state.config().max_body_bytes),
        )
    })
}

/// Merchant routes: only a merchant's signature passes.
pub async fn require_signature(State(state): State<AppState>, req: Request, next: Next) -> Result<Response, ApiError> {
    signed(state, req, next, PartyKind::Merchant).await
}

/// Biller routes: only a biller's signature passes.
pub async fn require_biller_signature(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    signed(state, req, next, PartyKind::Biller).await
}

async fn signed(state: AppState, req: Request, next: Next, expected: PartyKind) -> Result<Response, ApiError> {
    let (mut parts, body) = req.into_parts();
    let header = match parts.headers.get(AUTHORIZATION) {
        None => return Err(auth_error(AuthError::Missing)),
        Some(v) => v.to_str().map_err(|_| auth_error(AuthError::Malformed("not ASCII")))?,
    };
    let auth = AuthHeader::parse(header).map_err(auth_error)?;
    let body = whole_body(&state, body).await?;

    if auth.party_kind != expected {
        return Err(auth_error(AuthError::UnknownKey));
    }
    let party_kind = match auth.party_kind {
        PartyKind::Merchant => "merchant",
        PartyKind::Biller => "biller",
    };
    // A read's nonce is claimed in flight before the database is asked about it (see
    // nonces.rs), and that question rides along with the key's look-up. Anything else
    // waits for its nonce's commit.
    let read = parts.method == Method::GET || parts.method == Method::HEAD;
    let read_claim = read.then(|| state.store().claim_read_nonce(&auth.party_id, &auth.nonce));
    let (key, stored) = if read {
        state.store().signing_key_and_nonce(party_kind, &auth.party_id, &auth.key_id, &auth.nonce).await?
    } else {
        state.store().active_signing_key(party_kind, &auth.party_id, &auth.key_id).await?.map(|key| (key, false))
    }
    .ok_or_else(|| auth_error(AuthError::UnknownKey))?;

    let uri = parts.extensions.get::<OriginalUri>().map_or(&parts.uri, |o| &o.0);
    let path_and_query = uri.path_and_query().map_or("/", |p| p.as_str());
    let now = state.wall_now();
    verify_request(&auth, key.secret.as_bytes(), parts.method.as_str(), path_and_query, &body, now.unix_secs())
        .map_err(auth_error)?;
    // Only a correctly signed request spends its nonce, so nobody can burn another
    // party's nonces (a claim that goes unspent is released when dropped).
    let fresh = match read_claim {
        Some(Some(claim)) if !stored => {
            claim.spend(now)?;
            true
        }
        Some(_) => false,
        None => state.store().spend_nonce(&auth.party_id, &auth.nonce, now, NonceUse::Write).await?,
    };
    if !fresh {
        return Err(auth_error(AuthError::NonceReplayed));
    }

    match auth.party_kind {
        PartyKind::Merchant => {
            parts.extensions.insert(Caller::Merchant { merchant_id: auth.party_id, key_id: auth.key_id });
        }
        PartyKind::Biller => {
            parts.extensions.insert(BillerCaller { biller_id: auth.party_id });
        }
    }
    Ok(next.run(Request::from_parts(parts, Body::from(body))).await)
}
