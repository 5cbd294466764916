//! The pages act through the same handlers as the JSON API, called in process: a form can
//! never do what the API would refuse, and every refusal keeps its stable error code.

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use paykit_core::ErrorCode;
use serde_json::Value;
use tower::ServiceExt;

use crate::app::{Access, AppState, route_table};
use crate::auth;
use crate::error::ApiError;
use crate::wallet_auth;

/// Who a page acts as.
#[derive(Debug, Clone, Copy)]
pub enum Actor<'a> {
    /// A console user, for its merchant (the merchant API without a signature: the console
    /// session was checked instead).
    Merchant {
        merchant_id: &'a str,
        username: &'a str,
    },
    /// A wallet user, by their wallet session token.
    Wallet {
        token: &'a str,
    },
    Anonymous,
}

/// What the API refused, as a page shows it.
#[derive(Debug, Clone)]
pub struct ApiFailure {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
    /// The request field the API blamed, when it named one.
    pub field: Option<String>,
    pub body: Value,
}

impl ApiFailure {
    /// A server-side fault (5xx), not something the person can correct.
    pub fn is_fault(&self) -> bool {
        self.status.is_server_error()
    }
}

/// The in-process API. Built once; never served on a socket.
#[derive(Clone)]
pub struct InternalApi {
    router: Router,
}

impl InternalApi {
    pub fn new(state: AppState) -> InternalApi {
        let (mut public, mut merchant, mut wallet, mut wallet_session_in_read) =
            (Router::new(), Router::new(), Router::new(), Router::new());
        for r in route_table() {
            match r.access {
                Access::Public => public = public.route(r.path, r.handler),
                Access::Signed | Access::SignedNonceInWrite => merchant = merchant.route(r.path, r.handler),
                Access::Wallet => wallet = wallet.route(r.path, r.handler),
                Access::WalletSessionInRead => {
                    wallet_session_in_read = wallet_session_in_read.route(r.path, r.handler);
                }
                Access::Ops | Access::Biller => {}
            }
        }
        let merchant = merchant.route_layer(middleware::from_fn(require_console_actor));
        let wallet = wallet.route_layer(middleware::from_fn_with_state(state.clone(), wallet_auth::require_session));
        let wallet_session_in_read = wallet_session_in_read
            .route_layer(middleware::from_fn_with_state(state.clone(), wallet_auth::require_session_token));
        let router = public
            .merge(merchant)
            .merge(wallet)
            .merge(wallet_session_in_read)
            .fallback(|| async { ApiError::new(ErrorCode::NotFound, "no such path") })
            .with_state(state);
        InternalApi { router }
    }

    /// Calls a JSON endpoint; `Ok` with the answer's JSON for a 2xx.
    pub async fn call(
        &self,
        actor: Actor<'_>,
        method: Method,
        path: &str,
        body: Option<&Value>,
        idempotency_key: Option<&str>,
    ) -> Result<Value, ApiFailure> {
        let (_, bytes) = self.send(actor, method, path, body, idempotency_key).await?;
        if bytes.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&bytes).map_err(|e| fault(format!("the API answered something that is not JSON: {e}")))
    }

    /// Calls an endpoint and keeps the raw answer (CSV statements, QR images).
    pub async fn call_raw(&self, actor: Actor<'_>, path: &str) -> Result<(HeaderMap, Bytes), ApiFailure> {
        self.send(actor, Method::GET, path, None, None).await
    }

    async fn send(
        &self,
        actor: Actor<'_>,
        method: Method,
        path: &str,
        body: Option<&Value>,
        idempotency_key: Option<&str>,
    ) -> Result<(HeaderMap, Bytes), ApiFailure> {
        let mut req = Request::builder().method(method).uri(path);
        if body.is_some() {
            req = req.header(header::CONTENT_TYPE, "application/json");
        }
        if let Some(key) = idempotency_key {
            req = req.header("idempotency-key", key);
        }
        match actor {
            Actor::Wallet { token } => req = req.header(header::AUTHORIZATION, format!("Bearer {token}")),
            Actor::Merchant { merchant_id, username } => {
                req = req.extension(auth::Caller::Merchant {
                    merchant_id: merchant_id.to_owned(),
                    key_id: format!("console:{username}"),
                });
            }
            Actor::Anonymous => {}
        }
        let body = body.map_or_else(Body::empty, |b| Body::from(b.to_string()));
        let req = req.body(body).map_err(|e| fault(format!("cannot build the request: {e}")))?;
        let res = self.router.clone().oneshot(req).await.unwrap_or_else(|never| match never {});
        let (parts, body) = res.into_parts();
        let bytes =
            axum::body::to_bytes(body, 64 << 20).await.map_err(|e| fault(format!("cannot read answer: {e}")))?;
        if parts.status.is_success() {
            return Ok((parts.headers, bytes));
        }
        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Err(ApiFailure {
            status: parts.status,
            code: body["code"].as_str().unwrap_or("INTERNAL_ERROR").to_owned(),
            message: body["message"].as_str().unwrap_or("something went wrong").to_owned(),
            field: body["field"].as_str().map(str::to_owned),
            body,
        })
    }
}

fn fault(message: String) -> ApiFailure {
    tracing::error!(%message, "in-process API call failed");
    ApiFailure {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        code: ErrorCode::InternalError.as_str().to_owned(),
        message: "something went wrong on our side; try again".to_owned(),
        field: None,
        body: Value::Null,
    }
}

/// Merchant routes inside the process only run for a console session's merchant.
async fn require_console_actor(req: Request, next: Next) -> Result<Response, ApiError> {
    if req.extensions().get::<auth::Caller>().is_none() {
        return Err(ApiError::new(ErrorCode::AuthMissing, "log in to the console"));
    }
    Ok(next.run(req).await)
}
