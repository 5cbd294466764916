//! The router and the state every handler shares.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderValue, Method};
use axum::middleware;
use axum::routing::MethodRouter;
use metrics_exporter_prometheus::PrometheusHandle;
use paykit_core::{ErrorCode, Money};
use paykit_store::Store;

use crate::bank::{BankConnector, SandboxBank};
use crate::clock::{Clock, SystemClock};
use crate::config::GatewayConfig;
use crate::error::ApiError;
use crate::passwords::PasswordHashing;
use crate::{auth, observe, routes, wallet_auth};

#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    clock: Arc<SystemClock>,
    config: GatewayConfig,
    single_payment_limit: Money,
    micropay_confirm_above: Money,
    metrics: PrometheusHandle,
    bank: Arc<dyn BankConnector>,
    passwords: PasswordHashing,
    qr_key: Vec<u8>,
    /// Keys digests of card numbers and ID numbers, so equal ones can be matched without
    /// keeping them.
    fingerprint_key: Vec<u8>,
}

impl AppState {
    pub async fn new(store: Store, config: GatewayConfig) -> anyhow::Result<AppState> {
        config.validate()?;
        let clock = Arc::new(SystemClock::new());
        let now = clock.now();
        let qr_key = store.gateway_secret("qr_token_key", now).await?.into_bytes();
        let fingerprint_key = store.gateway_secret("fingerprint_key", now).await?.into_bytes();
        let cores = std::thread::available_parallelism().map_or(2, usize::from);
        Ok(AppState {
            inner: Arc::new(Inner {
                bank: Arc::new(SandboxBank { slow_card_secs: config.sandbox_slow_card_secs }),
                single_payment_limit: config.single_payment_limit_money()?,
                micropay_confirm_above: config.micropay_confirm_above_money()?,
                store,
                clock,
                config,
                metrics: observe::metrics_handle(),
                passwords: PasswordHashing::new(cores, 8 * cores),
                qr_key,
                fingerprint_key,
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

    pub fn micropay_confirm_above(&self) -> Money {
        self.inner.micropay_confirm_above
    }

    pub fn metrics(&self) -> &PrometheusHandle {
        &self.inner.metrics
    }

    pub fn bank(&self) -> &dyn BankConnector {
        &*self.inner.bank
    }

    pub fn passwords(&self) -> &PasswordHashing {
        &self.inner.passwords
    }

    pub fn qr_key(&self) -> &[u8] {
        &self.inner.qr_key
    }

    /// A keyed digest (hex) for matching sensitive numbers without storing them.
    pub fn fingerprint(&self, value: &str) -> String {
        paykit_core::wallet::hmac_sha256(&self.inner.fingerprint_key, value.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Public,
    /// Signed with a merchant's (or biller's) API key.
    Signed,
    /// A wallet user's bearer session.
    Wallet,
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
    use Access::{Public, Signed, Wallet};
    use axum::routing::{delete, get, post, put};
    use routes::{health, merchant, orders, wallet};
    let route = |method: Method, path, access, handler| Route { method, path, access, handler };
    vec![
        route(Method::GET, "/healthz", Public, get(health::healthz)),
        route(Method::GET, "/readyz", Public, get(health::readyz)),
        route(Method::GET, "/metrics", Public, get(health::metrics)),
        route(Method::GET, "/openapi.json", Public, get(health::openapi)),
        route(Method::GET, "/q/{token}", Public, get(orders::code_url_page)),
        route(Method::GET, "/v1/merchant", Signed, get(merchant::profile)),
        route(Method::POST, "/v1/orders", Signed, post(orders::create)),
        route(Method::GET, "/v1/orders", Signed, get(orders::list)),
        route(Method::GET, "/v1/orders/{order_id}", Signed, get(orders::get_by_id)),
        route(Method::GET, "/v1/orders/by-out-trade-no/{out_trade_no}", Signed, get(orders::get_by_out_trade_no)),
        route(Method::POST, "/v1/orders/{order_id}/close", Signed, post(orders::close)),
        route(Method::POST, "/v1/orders/{order_id}/reverse", Signed, post(orders::reverse)),
        route(Method::GET, "/v1/orders/{order_id}/qr.svg", Signed, get(orders::qr_svg)),
        route(Method::GET, "/v1/orders/{order_id}/qr.png", Signed, get(orders::qr_png)),
        route(Method::GET, "/v1/orders/{order_id}/qr.txt", Signed, get(orders::qr_txt)),
        route(Method::POST, "/v1/micropay", Signed, post(orders::micropay)),
        route(Method::POST, "/wallet/v1/users", Public, post(wallet::register)),
        route(Method::POST, "/wallet/v1/sessions", Public, post(wallet::log_in)),
        route(Method::GET, "/wallet/v1/profile", Wallet, get(wallet::profile)),
        route(Method::POST, "/wallet/v1/real-name", Wallet, post(wallet::real_name)),
        route(Method::PUT, "/wallet/v1/pay-password", Wallet, put(wallet::pay_password)),
        route(Method::POST, "/wallet/v1/cards", Wallet, post(wallet::bind_card)),
        route(Method::GET, "/wallet/v1/cards", Wallet, get(wallet::list_cards)),
        route(Method::DELETE, "/wallet/v1/cards/{card_id}", Wallet, delete(wallet::unbind_card)),
        route(Method::POST, "/wallet/v1/top-ups", Wallet, post(wallet::top_up)),
        route(Method::GET, "/wallet/v1/top-ups/{top_up_id}", Wallet, get(wallet::get_top_up)),
        route(Method::GET, "/wallet/v1/balance", Wallet, get(wallet::balance)),
        route(Method::GET, "/wallet/v1/records", Wallet, get(wallet::records)),
        route(Method::POST, "/wallet/v1/scans", Wallet, post(wallet::scan)),
        route(Method::POST, "/wallet/v1/payments", Wallet, post(wallet::pay)),
        route(Method::POST, "/wallet/v1/devices", Wallet, post(wallet::register_device)),
        route(Method::GET, "/wallet/v1/confirmations", Wallet, get(wallet::confirmations)),
        route(Method::POST, "/wallet/v1/confirmations/{confirmation_id}", Wallet, post(wallet::answer_confirmation)),
        route(Method::GET, "/wallet/v1/alerts", Wallet, get(wallet::alerts)),
    ]
}

pub fn router(state: AppState) -> Router {
    let (mut public, mut signed, mut wallet) = (Router::new(), Router::new(), Router::new());
    for r in route_table() {
        match r.access {
            Access::Public => public = public.route(r.path, r.handler),
            Access::Signed => signed = signed.route(r.path, r.handler),
            Access::Wallet => wallet = wallet.route(r.path, r.handler),
        }
    }
    let signed = signed.route_layer(middleware::from_fn_with_state(state.clone(), auth::require_signature));
    let wallet = wallet.route_layer(middleware::from_fn_with_state(state.clone(), wallet_auth::require_session));
    let mode = HeaderValue::from_static(state.config().mode.as_str());
    public
        .merge(signed)
        .merge(wallet)
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

/// Work the gateway does on its own: settling late bank answers, forgetting old nonces.
/// Every task is safe to run in several processes at once.
pub fn spawn_background_tasks(state: AppState) {
    let settle = state.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            match settle.store().settle_due_bank_operations(settle.clock().now()).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(settled = n, "settled late bank operations"),
                Err(e) => tracing::warn!(error = %e, "settling bank operations failed; will retry"),
            }
        }
    });
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tick.tick().await;
            if let Err(e) = state.store().prune_nonces(state.clock().now()).await {
                tracing::warn!(error = %e, "pruning nonces failed; will retry");
            }
        }
    });
}
