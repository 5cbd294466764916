//! Orders on the merchant API: dynamic-QR orders, payment-code (micropay) payments,
//! queries, close, reverse, and the QR renderings.

use axum::Extension;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::{Html, IntoResponse, Response};
use paykit_core::ErrorCode;
use paykit_core::order::OrderStatus;
use paykit_core::payment_code::{self, CodeError};
use paykit_core::qr_token::{self, QrClaims};
use paykit_core::time::Timestamp;
use paykit_store::orders::{Created, Order, OrderFilter};
use paykit_store::payments::{Micropay, MicropayOutcome};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{check_text, parse_amount, parse_currency, parse_cursor, parse_limit, parse_time, request_digest};
use crate::app::AppState;
use crate::auth::{Caller, UnspentNonce};
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiQuery};
use crate::qr;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateOrder {
    out_trade_no: String,
    amount: String,
    description: String,
    currency: Option<String>,
    notify_url: Option<String>,
    expire_at: Option<String>,
}

/// An order as its merchant sees it.
#[derive(Serialize)]
pub struct OrderView {
    order_id: String,
    out_trade_no: String,
    kind: String,
    status: &'static str,
    amount: String,
    currency: &'static str,
    description: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    code_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    notify_url: Option<String>,
    expire_at: String,
    created_at: String,
    paid_at: Option<String>,
    /// `balance` or `card` once paid.
    funding: Option<&'static str>,
}

pub(crate) fn code_url(state: &AppState, order: &Order) -> String {
    let token = qr_token::issue(
        state.qr_key(),
        &QrClaims { order_id: order.id.clone(), expires_at_unix_secs: order.expire_at.unix_secs() },
    );
    format!("{}/q/{token}", state.config().public_url().trim_end_matches('/'))
}

pub(crate) fn view(state: &AppState, order: &Order) -> OrderView {
    OrderView {
        order_id: order.id.clone(),
        out_trade_no: order.out_trade_no.clone(),
        kind: order.kind.clone(),
        status: order.status.as_str(),
        amount: order.amount.to_string(),
        currency: order.amount.currency().code(),
        description: order.description.clone(),
        code_url: (order.kind == "native").then(|| code_url(state, order)),
        notify_url: order.notify_url.clone(),
        expire_at: order.expire_at.to_rfc3339(),
        created_at: order.created_at.to_rfc3339(),
        paid_at: order.paid_at.map(Timestamp::to_rfc3339),
        funding: order.funding.as_deref().map(|f| if f == "balance" { "balance" } else { "card" }),
    }
}

fn check_out_trade_no(value: &str) -> Result<(), ApiError> {
    let ok = (1..=32).contains(&value.len())
        && value.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'|' | b'*'));
    if ok { Ok(()) } else { Err(ApiError::invalid("out_trade_no", "must be 1 to 32 characters of [A-Za-z0-9_-|*]")) }
}

fn check_notify_url(value: Option<&str>) -> Result<(), ApiError> {
    match value {
        Some(u)
            if !(u.starts_with("https://") || u.starts_with("http://"))
                || u.len() > 256
                || u.chars().any(char::is_control) =>
        {
            Err(ApiError::invalid(
                "notify_url",
                "must be an http(s) URL of at most 256 characters, without control characters",
            ))
        }
        _ => Ok(()),
    }
}

pub async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    nonce: Option<Extension<UnspentNonce>>,
    ApiJson(req): ApiJson<CreateOrder>,
) -> Result<Response, ApiError> {
    let now = state.clock().now();
    check_out_trade_no(&req.out_trade_no)?;
    let currency = parse_currency(req.currency.as_deref())?;
    let amount = parse_amount(&state, "amount", &req.amount)?;
    check_text("description", &req.description, 1, 127)?;
    check_notify_url(req.notify_url.as_deref())?;
    let expire_at = match parse_time("expire_at", req.expire_at.as_deref())? {
        None => now.plus_secs(state.config().order_ttl_secs),
        Some(t) if t <= now.plus_secs(60) => {
            return Err(ApiError::invalid("expire_at", "must be at least a minute from now"));
        }
        Some(t) if t > now.plus_secs(30 * 86_400) => {
            return Err(ApiError::invalid("expire_at", "must be within 30 days"));
        }
        Some(t) => t,
    };
    let digest = request_digest(&[
        "native",
        &req.out_trade_no,
        &amount.minor_units().to_string(),
        currency.code(),
        &req.description,
        req.notify_url.as_deref().unwrap_or(""),
        &req.expire_at.as_deref().map(|_| expire_at.unix_secs().to_string()).unwrap_or_default(),
    ]);
    let order = Order {
        id: paykit_store::ids::new_id("ord"),
        merchant_id: caller.merchant_id().to_owned(),
        out_trade_no: req.out_trade_no,
        kind: "native".to_owned(),
        amount,
        description: req.description,
        notify_url: req.notify_url,
        status: OrderStatus::NotPay,
        request_digest: digest.clone(),
        expire_at,
        created_at: now,
        updated_at: now,
        paid_at: None,
        payer_user_id: None,
        funding: None,
        device_id: None,
    };
    // A signed request's nonce commits with the order (the console's requests have none).
    let created = match nonce {
        Some(Extension(nonce)) => {
            // Taken twice would mean a write without it: refuse rather than write unguarded.
            let nonce = nonce.take().ok_or_else(|| {
                ApiError::new(ErrorCode::InternalError, "internal error; send the request again with a new nonce")
            })?;
            state.store().create_order_spending(&order, nonce).await?
        }
        None => state.store().create_order(&order).await?,
    };
    match created {
        Created::New(order) => Ok((StatusCode::CREATED, axum::Json(view(&state, &order))).into_response()),
        Created::Existing(existing) if existing.request_digest == digest => {
            Ok(axum::Json(view(&state, &existing)).into_response())
        }
        Created::Existing(_) => Err(ApiError::new(
            ErrorCode::OutTradeNoReused,
            "this out_trade_no was already used for a different order; use a new one or repeat the same body",
        )),
    }
}

async fn merchant_order(state: &AppState, caller: &Caller, order_id: &str) -> Result<Order, ApiError> {
    state.store().merchant_order(caller.merchant_id(), order_id).await?.ok_or_else(|| ApiError::not_found("order"))
}

pub async fn get_by_id(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(order_id): Path<String>,
) -> Result<axum::Json<OrderView>, ApiError> {
    Ok(axum::Json(view(&state, &merchant_order(&state, &caller, &order_id).await?)))
}

pub async fn get_by_out_trade_no(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(out_trade_no): Path<String>,
) -> Result<axum::Json<OrderView>, ApiError> {
    let order = state
        .store()
        .order_by_out_trade_no(caller.merchant_id(), &out_trade_no)
        .await?
        .ok_or_else(|| ApiError::not_found("order"))?;
    Ok(axum::Json(view(&state, &order)))
}

pub async fn close(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(order_id): Path<String>,
) -> Result<axum::Json<OrderView>, ApiError> {
    let order = state
        .store()
        .close_order(caller.merchant_id(), &order_id, state.clock().now())
        .await?
        .ok_or_else(|| ApiError::not_found("order"))?;
    match order.status {
        OrderStatus::Closed => Ok(axum::Json(view(&state, &order))),
        OrderStatus::Success => Err(ApiError::new(ErrorCode::OrderPaid, "the order is paid: refund it instead")),
        other => Err(ApiError::new(ErrorCode::OrderStatusInvalid, format!("an order in {other} cannot be closed"))),
    }
}

pub async fn reverse(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(order_id): Path<String>,
) -> Result<axum::Json<OrderView>, ApiError> {
    let order = state.store().reverse_order(caller.merchant_id(), &order_id, state.clock().now()).await?;
    Ok(axum::Json(view(&state, &order)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    status: Option<String>,
    from: Option<String>,
    to: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
}

#[derive(Serialize)]
pub struct OrderPage {
    orders: Vec<OrderView>,
    next_cursor: Option<String>,
}

pub async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<axum::Json<OrderPage>, ApiError> {
    let status = q
        .status
        .as_deref()
        .map(|s| s.parse::<OrderStatus>().map_err(|e| ApiError::invalid("status", e)))
        .transpose()?;
    let filter = OrderFilter {
        status,
        from: parse_time("from", q.from.as_deref())?,
        to: parse_time("to", q.to.as_deref())?,
        before: parse_cursor(q.cursor.as_deref())?,
        limit: parse_limit(q.limit)?,
    };
    let orders = state.store().list_orders(caller.merchant_id(), &filter).await?;
    let next_cursor = (orders.len() as i64 == filter.limit)
        .then(|| orders.last().map(|o| format!("{}:{}", o.created_at.unix_micros(), o.id)))
        .flatten();
    Ok(axum::Json(OrderPage { orders: orders.iter().map(|o| view(&state, o)).collect(), next_cursor }))
}

async fn native_code_url(state: &AppState, caller: &Caller, order_id: &str) -> Result<String, ApiError> {
    let order = merchant_order(state, caller, order_id).await?;
    if order.kind != "native" {
        return Err(ApiError::new(ErrorCode::OrderStatusInvalid, "payment-code orders have no QR code"));
    }
    Ok(code_url(state, &order))
}

pub async fn qr_svg(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(order_id): Path<String>,
) -> Result<Response, ApiError> {
    let url = native_code_url(&state, &caller, &order_id).await?;
    Ok(([(CONTENT_TYPE, "image/svg+xml")], qr::svg(&url)?).into_response())
}

pub async fn qr_png(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(order_id): Path<String>,
) -> Result<Response, ApiError> {
    let url = native_code_url(&state, &caller, &order_id).await?;
    Ok(([(CONTENT_TYPE, "image/png")], qr::png(&url)?).into_response())
}

pub async fn qr_txt(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(order_id): Path<String>,
) -> Result<Response, ApiError> {
    let url = native_code_url(&state, &caller, &order_id).await?;
    Ok(([(CONTENT_TYPE, "text/plain; charset=utf-8")], qr::text(&url)?).into_response())
}

/// What a phone's ordinary camera shows when it opens a `code_url`.
pub async fn code_url_page(Path(token): Path<String>) -> Html<String> {
    let token: String = token.chars().filter(char::is_ascii_alphanumeric).take(64).collect();
    Html(format!(
        "<!doctype html><html lang=en><meta charset=utf-8><meta name=viewport content=\"width=device-width\">\
         <title>paykit payment</title><body style=\"font-family:sans-serif;max-width:28em;margin:2em auto\">\
         <h1>paykit payment code</h1><p>Open this code with a paykit wallet to see the amount and pay.</p>\
         <p>Trying the sandbox? Paste this page's address into the sandbox wallet's scan box.</p>\
         <p style=\"color:#666;word-break:break-all\">{token}</p></body></html>"
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MicropayRequest {
    out_trade_no: String,
    amount: String,
    auth_code: String,
    description: String,
    currency: Option<String>,
}

pub async fn micropay(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiJson(req): ApiJson<MicropayRequest>,
) -> Result<Response, ApiError> {
    let now = state.clock().now();
    let store = state.store();
    let merchant_id = caller.merchant_id();
    check_out_trade_no(&req.out_trade_no)?;
    let currency = parse_currency(req.currency.as_deref())?;
    let amount = parse_amount(&state, "amount", &req.amount)?;
    check_text("description", &req.description, 1, 127)?;

    if store.merchant(merchant_id).await?.is_some_and(|m| m.status == "FROZEN") {
        return Err(ApiError::new(ErrorCode::MerchantFrozen, "this merchant's account is frozen"));
    }
    // A retry of a payment already made is answered from the order, before the (by then
    // perhaps expired) payment code or the risk rules are looked at again.
    let retry_digest = request_digest(&[
        "micropay",
        &req.out_trade_no,
        &amount.minor_units().to_string(),
        currency.code(),
        &req.description,
        &req.auth_code,
    ]);
    if let Some(existing) = store.order_by_out_trade_no(merchant_id, &req.out_trade_no).await? {
        if existing.request_digest == retry_digest {
            return Ok(axum::Json(view(&state, &existing)).into_response());
        }
        return Err(ApiError::new(
            ErrorCode::OutTradeNoReused,
            "this out_trade_no was already used for a different payment",
        ));
    }
    let window_start = now.plus_secs(-state.config().code_failure_window_secs);
    if store.code_failures_since(Some(merchant_id), None, window_start).await?
        >= state.config().merchant_code_failure_limit
    {
        return Err(ApiError::new(
            ErrorCode::RateLimited,
            "too many failed payment codes from this merchant; wait and retry",
        ));
    }
    let failed = |code: ErrorCode, message: &str, device: Option<&str>| {
        let (state, merchant_id, message, device) =
            (state.clone(), merchant_id.to_owned(), message.to_owned(), device.map(str::to_owned));
        async move {
            state.store().record_code_failure(&merchant_id, device.as_deref(), now).await?;
            if let Some(device_id) = &device {
                let limit = state.config().device_code_failure_limit;
                if state.store().code_failures_since(None, Some(device_id), window_start).await? >= limit {
                    state.store().suspend_device(device_id, now).await?;
                }
            }
            Err::<Response, ApiError>(ApiError::new(code, message))
        }
    };
    let scanned = match payment_code::parse(&req.auth_code) {
        Ok(s) => s,
        Err(e @ (CodeError::Malformed | CodeError::BadCheckDigit)) => {
            return failed(ErrorCode::AuthCodeMalformed, &e.to_string(), None).await;
        }
    };
    let device_id = format!("{:08}", scanned.device_number);
    let Some(device) = store.device(&device_id).await? else {
        return failed(ErrorCode::AuthCodeInvalid, "unknown or wrong payment code", None).await;
    };
    if device.status != "ACTIVE" {
        return failed(ErrorCode::DeviceSuspended, "this wallet device is suspended", Some(&device.id)).await;
    }
    let secret = crate::routes::wallet::device_secret(&device)?;
    let Some(time_step) = payment_code::matching_step(&scanned, &secret, state.wall_now().unix_secs()) else {
        return failed(
            ErrorCode::AuthCodeInvalid,
            "unknown or wrong payment code, or older than 60 seconds",
            Some(&device.id),
        )
        .await;
    };
    let payer = store.user(&device.user_id).await?.ok_or_else(|| ApiError::not_found("wallet"))?;
    if payer.real_name.is_none() {
        return Err(ApiError::new(ErrorCode::RealNameRequired, "the payer has not completed real-name verification"));
    }
    if payer.frozen {
        return Err(ApiError::new(ErrorCode::AccountFrozen, "the payer's account is frozen"));
    }

    let (window_start_risk, day_start) = super::wallet::risk_windows(&state, now);
    let history = store.payer_history(&payer.id, merchant_id, window_start_risk, day_start).await?;
    let facts = paykit_core::risk::RiskFacts {
        amount_minor: amount.minor_units(),
        recent_payments: history.recent_payments,
        spent_today_minor: history.spent_today_minor,
        paid_payee_before: history.paid_payee_before,
        pay_password_failures: payer.pay_failures,
        device_code_failures: store.code_failures_since(None, Some(&device.id), window_start).await?,
    };
    let risk = paykit_core::risk::evaluate(&state.config().risk, &facts);
    if risk.action == paykit_core::risk::RiskAction::Block {
        let reasons = risk.reasons.join(", ");
        store
            .risk_alert(&payer.id, &format!("A payment-code payment of {amount} was blocked ({reasons})."), now)
            .await?;
        return Err(ApiError::new(ErrorCode::RiskBlocked, format!("blocked by the payer's risk rules: {reasons}")));
    }
    let needs_confirmation = amount.minor_units() > state.micropay_confirm_above().minor_units()
        || risk.action == paykit_core::risk::RiskAction::Hold;
    let digest = request_digest(&[
        "micropay",
        &req.out_trade_no,
        &amount.minor_units().to_string(),
        currency.code(),
        &req.description,
        &req.auth_code,
    ]);
    let order = Order {
        id: paykit_store::ids::new_id("ord"),
        merchant_id: merchant_id.to_owned(),
        out_trade_no: req.out_trade_no,
        kind: "micropay".to_owned(),
        amount,
        description: req.description,
        notify_url: None,
        status: if needs_confirmation { OrderStatus::UserPaying } else { OrderStatus::Success },
        request_digest: digest.clone(),
        expire_at: now.plus_secs(state.config().confirmation_ttl_secs),
        created_at: now,
        updated_at: now,
        paid_at: (!needs_confirmation).then_some(now),
        payer_user_id: Some(payer.id.clone()),
        funding: Some("balance".to_owned()),
        device_id: Some(device.id.clone()),
    };
    let outcome = store
        .micropay(Micropay {
            order,
            user_id: &payer.id,
            device_id: &device.id,
            time_step,
            confirmation_expires_at: needs_confirmation.then(|| now.plus_secs(state.config().confirmation_ttl_secs)),
        })
        .await;
    match outcome {
        Ok(MicropayOutcome::Paid(order) | MicropayOutcome::AwaitingConfirmation(order)) => {
            Ok(axum::Json(view(&state, &order)).into_response())
        }
        Ok(MicropayOutcome::Existing(existing)) if existing.request_digest == digest => {
            Ok(axum::Json(view(&state, &existing)).into_response())
        }
        Ok(MicropayOutcome::Existing(_)) => Err(ApiError::new(
            ErrorCode::OutTradeNoReused,
            "this out_trade_no was already used for a different payment",
        )),
        Err(paykit_store::payments::PayError::CodeUsed) => {
            failed(ErrorCode::AuthCodeUsed, "this payment code was already used; ask for a fresh one", Some(&device.id))
                .await
        }
        Err(e) => Err(e.into()),
    }
}

/// `POST /v1/orders/{order_id}/print`: asks the merchant's counter bridge to print the
/// receipt of a paid order (the console's print button, when a bridge is polling).
pub async fn request_print(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(order_id): Path<String>,
) -> Result<Response, ApiError> {
    let order = state
        .store()
        .merchant_order(caller.merchant_id(), &order_id)
        .await?
        .ok_or_else(|| ApiError::not_found("order"))?;
    if order.status != OrderStatus::Success {
        return Err(ApiError::new(
            ErrorCode::OrderStatusInvalid,
            format!("only a paid order has a receipt to print; this one is {}", order.status),
        ));
    }
    let Caller::Merchant { key_id, .. } = &caller;
    let id = state.store().request_print(caller.merchant_id(), &order.id, key_id, state.clock().now()).await?;
    Ok((StatusCode::ACCEPTED, axum::Json(json!({ "print_request_id": id, "order_id": order.id }))).into_response())
}

/// `POST /v1/print-requests/claim`: the counter bridge takes the waiting print requests,
/// each once. Polling here is also how the console knows a bridge is connected.
pub async fn claim_print_requests(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    let claimed = state.store().claim_print_requests(caller.merchant_id(), 10, state.wall_now()).await?;
    let list: Vec<_> =
        claimed.into_iter().map(|(id, order_id)| json!({ "print_request_id": id, "order_id": order_id })).collect();
    Ok(axum::Json(json!({ "print_requests": list })))
}
