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
use crate::{auth, notify, observe, ops_auth, routes, wallet_auth};

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
                // Half the cores at most: a flood of guesses must leave CPU for payments
                // (one hash per core let a 400/s flood triple other requests' p99).
                passwords: PasswordHashing::new((cores / 2).max(1), 8 * cores),
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

    /// The real time, for checks that compare against other parties' clocks: request
    /// signatures, nonces, sessions, payment codes and device confirmations. Business
    /// schedules (expiry, retries, bank delays) use [`AppState::clock`], which the sandbox
    /// can move forward.
    pub fn wall_now(&self) -> paykit_core::time::Timestamp {
        SystemClock::new().now()
    }

    /// Applies the shared sandbox clock offset (only in sandbox mode does time move).
    pub fn set_clock_offset(&self, offset_us: i64) {
        if self.inner.config.mode == crate::config::Mode::Sandbox {
            self.inner.clock.set_offset_us(offset_us);
        }
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
        hex::encode(paykit_core::wallet::hmac_sha256(&self.inner.fingerprint_key, value.as_bytes()))
    }
}

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Public,
    /// Signed with a merchant's (or biller's) API key.
    Signed,
    /// Signed with a merchant's API key, by a handler that spends the request's nonce in
    /// its own write's transaction ([`crate::auth::UnspentNonce`]).
    SignedNonceInWrite,
    /// A wallet user's bearer session.
    Wallet,
    /// A wallet user's bearer session, read by the handler with its own first read
    /// ([`crate::wallet_auth::SessionToken`]).
    WalletSessionInRead,
    /// An operator's bearer token.
    Ops,
    /// Signed with a biller's API key.
    Biller,
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
    use Access::{Biller, Ops, Public, Signed, SignedNonceInWrite, Wallet, WalletSessionInRead};
    use axum::routing::{delete, get, post, put};
    use routes::{bills, health, merchant, money, orders, refunds, wallet};
    let route = |method: Method, path, access, handler| Route { method, path, access, handler };
    vec![
        route(Method::GET, "/healthz", Public, get(health::healthz)),
        route(Method::GET, "/readyz", Public, get(health::readyz)),
        route(Method::GET, "/metrics", Public, get(health::metrics)),
        route(Method::GET, "/openapi.json", Public, get(health::openapi)),
        route(Method::GET, "/q/{token}", Public, get(orders::code_url_page)),
        route(Method::GET, "/v1/merchant", Signed, get(merchant::profile)),
        route(Method::POST, "/v1/orders", SignedNonceInWrite, post(orders::create)),
        route(Method::GET, "/v1/orders", Signed, get(orders::list)),
        route(Method::GET, "/v1/orders/{order_id}", Signed, get(orders::get_by_id)),
        route(Method::GET, "/v1/orders/by-out-trade-no/{out_trade_no}", Signed, get(orders::get_by_out_trade_no)),
        route(Method::POST, "/v1/orders/{order_id}/close", Signed, post(orders::close)),
        route(Method::POST, "/v1/orders/{order_id}/reverse", Signed, post(orders::reverse)),
        route(Method::GET, "/v1/orders/{order_id}/qr.svg", Signed, get(orders::qr_svg)),
        route(Method::GET, "/v1/orders/{order_id}/qr.png", Signed, get(orders::qr_png)),
        route(Method::GET, "/v1/orders/{order_id}/qr.txt", Signed, get(orders::qr_txt)),
        route(Method::POST, "/v1/micropay", Signed, post(orders::micropay)),
        route(Method::POST, "/v1/orders/{order_id}/print", Signed, post(orders::request_print)),
        route(Method::POST, "/v1/print-requests/claim", Signed, post(orders::claim_print_requests)),
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
        route(Method::POST, "/wallet/v1/payments", WalletSessionInRead, post(wallet::pay)),
        route(Method::POST, "/wallet/v1/devices", Wallet, post(wallet::register_device)),
        route(Method::GET, "/wallet/v1/confirmations", Wallet, get(wallet::confirmations)),
        route(Method::POST, "/wallet/v1/confirmations/{confirmation_id}", Wallet, post(wallet::answer_confirmation)),
        route(Method::GET, "/wallet/v1/alerts", Wallet, get(wallet::alerts)),
        route(Method::POST, "/v1/refunds", Signed, post(refunds::create)),
        route(Method::GET, "/v1/refunds/{refund_id}", Signed, get(refunds::get)),
        route(Method::GET, "/v1/refund-requests", Signed, get(refunds::merchant_requests)),
        route(Method::POST, "/v1/refund-requests/{request_id}/approve", Signed, post(refunds::approve)),
        route(Method::POST, "/v1/refund-requests/{request_id}/refuse", Signed, post(refunds::refuse)),
        route(Method::GET, "/v1/notifications", Signed, get(refunds::notifications)),
        route(Method::POST, "/v1/notifications/{event_id}/resend", Signed, post(refunds::resend)),
        route(Method::GET, "/v1/statements/{file}", Signed, get(refunds::statement)),
        route(Method::POST, "/wallet/v1/refund-requests", Wallet, post(refunds::wallet_create_request)),
        route(Method::GET, "/wallet/v1/refund-requests", Wallet, get(refunds::wallet_requests)),
        route(Method::POST, "/wallet/v1/refund-requests/{request_id}/escalate", Wallet, post(refunds::wallet_escalate)),
        route(Method::GET, "/ops/v1/refund-requests", Ops, get(refunds::ops_requests)),
        route(Method::POST, "/ops/v1/refund-requests/{request_id}/decide", Ops, post(refunds::ops_decide)),
        route(Method::POST, "/ops/v1/sandbox/clock", Ops, post(refunds::advance_clock)),
        route(Method::POST, "/wallet/v1/freeze", Wallet, post(money::freeze)),
        route(Method::POST, "/wallet/v1/unfreeze", Wallet, post(money::unfreeze)),
        route(Method::POST, "/ops/v1/freezes", Ops, post(money::ops_freeze)),
        route(Method::GET, "/ops/v1/freezes", Ops, get(money::ops_freeze_audit)),
        route(Method::POST, "/wallet/v1/transfers", Wallet, post(money::create_transfer)),
        route(Method::GET, "/wallet/v1/transfers", Wallet, get(money::list_transfers)),
        route(Method::POST, "/wallet/v1/transfers/{transfer_id}/accept", Wallet, post(money::accept_transfer)),
        route(Method::POST, "/wallet/v1/red-packets", Wallet, post(money::create_red_packet)),
        route(Method::GET, "/wallet/v1/red-packets/{red_packet_id}", Wallet, get(money::get_red_packet)),
        route(Method::POST, "/wallet/v1/red-packets/{red_packet_id}/claim", Wallet, post(money::claim_red_packet)),
        route(Method::POST, "/wallet/v1/withdrawals", Wallet, post(money::withdraw)),
        route(Method::POST, "/wallet/v1/card-repayments", Wallet, post(money::repay)),
        route(Method::GET, "/wallet/v1/payouts/{payout_id}", Wallet, get(money::get_payout)),
        route(Method::POST, "/v1/bills", Biller, post(bills::post_bills)),
        route(Method::GET, "/v1/bills/{bill_no}", Biller, get(bills::get_bill)),
        route(Method::PUT, "/v1/bills/{bill_no}", Biller, put(bills::amend_bill)),
        route(Method::POST, "/v1/bills/{bill_no}/cancel", Biller, post(bills::cancel_bill)),
        route(Method::GET, "/v1/biller/statements/{file}", Biller, get(bills::biller_statement)),
        route(Method::GET, "/wallet/v1/billers", Wallet, get(bills::list_billers)),
        route(Method::GET, "/wallet/v1/bills", Wallet, get(bills::find_bills)),
        route(Method::POST, "/wallet/v1/bill-payments", Wallet, post(bills::pay_bill)),
        route(Method::GET, "/ops/v1/risk-alerts", Ops, get(money::ops_risk_alerts)),
    ]
}

pub fn router(state: AppState) -> Router {
    let (
        mut public,
        mut signed,
        mut signed_nonce_in_write,
        mut wallet,
        mut wallet_session_in_read,
        mut ops,
        mut biller,
    ) = (Router::new(), Router::new(), Router::new(), Router::new(), Router::new(), Router::new(), Router::new());
    for r in route_table() {
        match r.access {
            Access::Public => public = public.route(r.path, r.handler),
            Access::Signed => signed = signed.route(r.path, r.handler),
            Access::SignedNonceInWrite => signed_nonce_in_write = signed_nonce_in_write.route(r.path, r.handler),
            Access::Wallet => wallet = wallet.route(r.path, r.handler),
            Access::WalletSessionInRead => wallet_session_in_read = wallet_session_in_read.route(r.path, r.handler),
            Access::Ops => ops = ops.route(r.path, r.handler),
            Access::Biller => biller = biller.route(r.path, r.handler),
        }
    }
    let signed = signed.route_layer(middleware::from_fn_with_state(state.clone(), auth::require_signature));
    let signed_nonce_in_write = signed_nonce_in_write
        .route_layer(middleware::from_fn_with_state(state.clone(), auth::require_signature_nonce_in_write));
    let wallet = wallet.route_layer(middleware::from_fn_with_state(state.clone(), wallet_auth::require_session));
    let wallet_session_in_read = wallet_session_in_read
        .route_layer(middleware::from_fn_with_state(state.clone(), wallet_auth::require_session_token));
    let ops = ops.route_layer(middleware::from_fn_with_state(state.clone(), ops_auth::require_operator));
    let biller = biller.route_layer(middleware::from_fn_with_state(state.clone(), auth::require_biller_signature));
    let mode = HeaderValue::from_static(state.config().mode.as_str());
    public
        .merge(signed)
        .merge(signed_nonce_in_write)
        .merge(wallet)
        .merge(wallet_session_in_read)
        .merge(ops)
        .merge(biller)
        .merge(crate::web::router(state.clone()))
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

/// Work the gateway does on its own: the sandbox clock, expiring orders, settling late
/// bank answers and card refunds, delivering callbacks, forgetting old nonces. Every task is
/// driven by rows in the database, so it survives restarts and is safe to run in several
/// processes at once.
pub fn spawn_background_tasks(state: AppState) -> anyhow::Result<()> {
    let ca = match &state.config().callback_ca_file {
        Some(path) => {
            Some(std::fs::read(path).map_err(|e| anyhow::anyhow!("callback_ca_file {}: {e}", path.display()))?)
        }
        None => None,
    };
    let http = notify::client(ca.as_deref(), Duration::from_secs(state.config().callback_timeout_secs.unsigned_abs()))?;
    tokio::spawn(notify::run_dispatcher(state.clone(), http));
    every(state.clone(), Duration::from_millis(100), "reading the sandbox clock", |s| async move {
        if s.config().mode == crate::config::Mode::Sandbox {
            let offset = s.store().sandbox_clock_offset_us().await?;
            s.set_clock_offset(offset);
        }
        Ok(())
    });
    // Each sweep on its own, so one failing row cannot stall the others.
    every(state.clone(), Duration::from_millis(500), "expiring orders", |s| async move {
        s.store().expire_due_orders(s.clock().now()).await.map(|_| ())
    });
    every(state.clone(), Duration::from_millis(500), "settling bank operations", |s| async move {
        s.store().settle_due_bank_operations(s.clock().now()).await.map(|_| ())
    });
    every(state.clone(), Duration::from_millis(500), "settling card refunds", |s| async move {
        s.store().settle_due_refunds(s.clock().now()).await.map(|_| ())
    });
    every(state.clone(), Duration::from_millis(500), "returning transfers and red packets", |s| async move {
        s.store().expire_wallet_money(s.clock().now()).await.map(|_| ())
    });
    every(state, Duration::from_secs(60), "pruning nonces", |s| async move {
        s.store().prune_nonces(s.wall_now()).await?;
        Ok(())
    });
    Ok(())
}

/// Runs `work` every `period`, logging (not stopping on) failures.
fn every<F, Fut>(state: AppState, period: Duration, what: &'static str, work: F)
where
    F: Fn(AppState) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<(), paykit_store::StoreError>> + Send,
{
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = work(state.clone()).await {
                tracing::warn!(error = %e, "{what} failed; will retry");
            }
        }
    });
}
