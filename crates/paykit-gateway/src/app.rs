//! The router and the state every handler shares.

use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderValue, Method};
use axum::middleware;
use axum::routing::MethodRouter;
use metrics_exporter_prometheus::PrometheusHandle;
use paykit_core::{ErrorCode, Money};
use paykit_store::Store;

use crate::clock::{Clock, SystemClock};
use crate::config::GatewayConfig;
use crate::error::ApiError;
use crate::{auth, observe, routes};

#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    clock: Arc<SystemClock>,
    config: GatewayConfig,
    single_payment_limit: Money,
    metrics: PrometheusHandle,
}

impl AppState {
    pub fn new(store: Store, config: GatewayConfig) -> anyhow::Result<AppState> {
        config.validate()?;
        let single_payment_limit = config.single_payment_limit_money()?;
        Ok(AppState {
            inner: Arc::new(Inner {
                store,
                clock: Arc::new(SystemClock::new()),
                config,
                single_payment_limit,
                metrics: observe::metrics_handle(),
            }),
        })
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn clock(&self) -> &dyn Clock {
        &*self.inner.clock
    }

    pub fn config(&self) -> &GatewayConfig {
        &self.inner.config
    }

    pub fn single_payment_limit(&self) -> Money {
        self.inner.single_payment_limit
    }

    pub fn metrics(&self) -> &PrometheusHandle {
        &self.inner.metrics
    }
}

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Public,
    /// Signed with a merchant's (or biller's) API key.
    Signed,
}

/// One routed path and method. The OpenAPI test checks this table against
/// `openapi.json` both ways.
pub struct Route {
    pub method: Method,
    pub path: &'static str,
    pub access: Access,
    pub handler: MethodRouter<AppState>,
}

pub fn route_table() -> Vec<Route> {
    use axum::routing::get;
    let route = |method: Method, path, access, handler| Route { method, path, access, handler };
    vec![
        route(Method::GET, "/healthz", Access::Public, get(routes::health::healthz)),
        route(Method::GET, "/readyz", Access::Public, get(routes::health::readyz)),
        route(Method::GET, "/metrics", Access::Public, get(routes::health::metrics)),
        route(Method::GET, "/openapi.json", Access::Public, get(routes::health::openapi)),
        route(Method::GET, "/v1/merchant", Access::Signed, get(routes::merchant::profile)),
    ]
}

pub fn router(state: AppState) -> Router {
    let mut public = Router::new();
    let mut signed = Router::new();
    for r in route_table() {
        match r.access {
            Access::Public => public = public.route(r.path, r.handler),
            Access::Signed => signed = signed.route(r.path, r.handler),
        }
    }
    let signed = signed.route_layer(middleware::from_fn_with_state(state.clone(), auth::require_signature));
    let mode = HeaderValue::from_static(state.config().mode.as_str());
    public
        .merge(signed)
        .fallback(|| async { ApiError::new(ErrorCode::NotFound, "no such path") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(ErrorCode::MethodNotAllowed, "this path does not take that method")
        })
        .layer(middleware::map_response(move |mut res: axum::response::Response| {
            let mode = mode.clone();
            async move {
                res.headers_mut().insert("paykit-mode", mode);
                res
            }
        }))
        .layer(middleware::from_fn(observe::observe))
        .with_state(state)
}
