//! Signed requests on the merchant and biller API (`/v1/*`): the signature, the timestamp
//! window and the nonce are checked before any handler runs, and the caller's identity is
//! put in the request's extensions for handlers to scope every query by. A write's nonce
//! is committed before its handler runs, except on routes whose handler commits it with
//! its own write ([`UnspentNonce`]); there a key read active before is taken from memory
//! and its status read by that write, or before any other answer ([`KeyToConfirm`]).

use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{OriginalUri, Request, State};
use axum::http::Method;
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::Response;
use paykit_core::ErrorCode;
use paykit_core::signing::{AuthError, AuthHeader, PartyKind, verify_request};
use paykit_store::nonces::{NonceUse, WriteNonce};

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

/// A signed write's nonce, claimed in flight but not yet stored, on a route whose handler
/// spends it in its own write's transaction (`Access::SignedNonceInWrite`): one commit for
/// both, and a replay writes nothing. Whatever the handler does not take (it refused the
/// request before writing), the middleware spends once the handler is done, so a replay of
/// a refused request is refused as one all the same; nothing was written in between.
#[derive(Clone)]
pub struct UnspentNonce(Arc<Mutex<Option<WriteNonce>>>);

impl UnspentNonce {
    /// The nonce, for the write that spends it; None once taken.
    pub fn take(&self) -> Option<WriteNonce> {
        self.0.lock().expect("nonce lock").take()
    }
}

/// Who spends a signed write's nonce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WriteNonceBy {
    /// This middleware, before the handler runs.
    Middleware,
    /// The handler's own write ([`UnspentNonce`]).
    Handler,
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
    signed(state, req, next, PartyKind::Merchant, WriteNonceBy::Middleware).await
}

/// Merchant routes whose handler spends the nonce with its write ([`UnspentNonce`]).
pub async fn require_signature_nonce_in_write(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    signed(state, req, next, PartyKind::Merchant, WriteNonceBy::Handler).await
}

/// Biller routes: only a biller's signature passes.
pub async fn require_biller_signature(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    signed(state, req, next, PartyKind::Biller, WriteNonceBy::Middleware).await
}

async fn signed(
    state: AppState,
    req: Request,
    next: Next,
    expected: PartyKind,
    write_nonce_by: WriteNonceBy,
) -> Result<Response, ApiError> {
    let (mut parts, body) = req.into_parts();
    let header = match parts.headers.get(AUTHORIZATION) {
        None => return Err(ApiError::from(AuthError::Missing)),
        Some(v) => v.to_str().map_err(|_| ApiError::from(AuthError::Malformed("not ASCII")))?,
    };
    let auth = AuthHeader::parse(header).map_err(ApiError::from)?;
    let body = whole_body(&state, body).await?;

    if auth.party_kind != expected {
        return Err(ApiError::from(AuthError::UnknownKey));
    }
    let party_kind = match auth.party_kind {
        PartyKind::Merchant => "merchant",
        PartyKind::Biller => "biller",
    };
    // A read's nonce is claimed in flight before the database is asked about it (see
    // nonces.rs), and that question rides along with the key's look-up. Anything else
    // waits for its nonce's commit, or leaves it to the handler's write (UnspentNonce).
    let read = parts.method == Method::GET || parts.method == Method::HEAD;
    let read_claim = read.then(|| state.store().claim_read_nonce(&auth.party_id, &auth.nonce));
    // A handler's write can read the key's status with everything else it writes (see
    // `KeyToConfirm`): then a key this process has read before needs no read of its own.
    let known = match write_nonce_by {
        WriteNonceBy::Handler if !read => state.store().known_signing_key(party_kind, &auth.party_id, &auth.key_id),
        _ => None,
    };
    let (key, stored, to_confirm) = match known {
        Some(key) => (key, false, Some(KeyToConfirm { party_kind, party_id: &auth.party_id, key_id: &auth.key_id })),
        None => if read {
            state.store().signing_key_and_nonce(party_kind, &auth.party_id, &auth.key_id, &auth.nonce).await?
        } else {
            state.store().active_signing_key(party_kind, &auth.party_id, &auth.key_id).await?.map(|key| (key, false))
        }
        .map(|(key, stored)| (key, stored, None))
        .ok_or_else(|| ApiError::from(AuthError::UnknownKey))?,
    };

    let uri = parts.extensions.get::<OriginalUri>().map_or(&parts.uri, |o| &o.0);
    let path_and_query = uri.path_and_query().map_or("/", |p| p.as_str());
    let now = state.wall_now();
    if let Err(e) =
        verify_request(&auth, key.secret.as_bytes(), parts.method.as_str(), path_and_query, &body, now.unix_secs())
    {
        KeyToConfirm::confirm(to_confirm, &state).await?;
        return Err(ApiError::from(e));
    }
    // Only a correctly signed request spends its nonce, so nobody can burn another
    // party's nonces (a claim that goes unspent is released when dropped).
    let (fresh, unspent) = match (read_claim, write_nonce_by) {
        (Some(Some(claim)), _) if !stored => {
            claim.spend(now)?;
            (true, None)
        }
        (Some(_), _) => (false, None),
        (None, WriteNonceBy::Middleware) => {
            (state.store().spend_nonce(&auth.party_id, &auth.nonce, now, NonceUse::Write).await?, None)
        }
        (None, WriteNonceBy::Handler) => match state.store().claim_write_nonce(&auth.party_id, &auth.nonce, now) {
            Some(claim) => {
                let claim = match &to_confirm {
                    Some(key) => claim.confirming_key(key.key_id),
                    None => claim,
                };
                (true, Some(UnspentNonce(Arc::new(Mutex::new(Some(claim))))))
            }
            None => (false, None),
        },
    };
    if !fresh {
        KeyToConfirm::confirm(to_confirm, &state).await?;
        return Err(ApiError::from(AuthError::NonceReplayed));
    }
    if let Some(unspent) = &unspent {
        parts.extensions.insert(unspent.clone());
    }

    match auth.party_kind {
        PartyKind::Merchant => {
            parts.extensions.insert(Caller::Merchant { merchant_id: auth.party_id, key_id: auth.key_id });
        }
        PartyKind::Biller => {
            parts.extensions.insert(BillerCaller { biller_id: auth.party_id });
        }
    }
    let response = next.run(Request::from_parts(parts, Body::from(body))).await;
    if let Some(claim) = unspent.and_then(|unspent| unspent.take()) {
        // The handler answered without its write (it refused the request first): the nonce
        // is spent on its own, the key's status read first (a revoked key: 401).
        if !state.store().spend_write_nonce(claim).await? {
            return Err(ApiError::from(AuthError::NonceReplayed));
        }
    }
    Ok(response)
}

/// A signing key taken from memory ([`paykit_store::Store::known_signing_key`]), whose
/// status nobody has read for this request yet. Its write reads it in its transaction
/// ([`paykit_store::nonces::WriteNonce::confirming_key`]), as does the nonce's spend on its
/// own after a handler that refused first ([`paykit_store::Store::spend_write_nonce`]); an
/// answer given before either reads it here, so a revoked key never gets more than 401.
struct KeyToConfirm<'a> {
    party_kind: &'a str,
    party_id: &'a str,
    key_id: &'a str,
}

impl KeyToConfirm<'_> {
    /// `AUTH_UNKNOWN_KEY` if the key is no longer active; nothing to do for `None`.
    async fn confirm(key: Option<KeyToConfirm<'_>>, state: &AppState) -> Result<(), ApiError> {
        let Some(key) = key else { return Ok(()) };
        match state.store().active_signing_key(key.party_kind, key.party_id, key.key_id).await? {
            Some(_) => Ok(()),
            None => Err(ApiError::from(AuthError::UnknownKey)),
        }
    }
}
