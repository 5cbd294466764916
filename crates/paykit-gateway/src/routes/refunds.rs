//! Refunds, consumers' refund requests (merchant, consumer and operator sides),
//! callback notifications, and statements.

use axum::Extension;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use paykit_core::ErrorCode;
use paykit_core::time::Timestamp;
use paykit_store::refunds::{NewRefund, Refund, RefundError, RefundRequest, RequestAction, RequestError};
use serde::Deserialize;
use serde_json::json;

use super::{check_text, parse_amount, request_digest};
use crate::app::AppState;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiQuery};
use crate::ops_auth::Operator;
use crate::wallet_auth::WalletUser;

impl From<RefundError> for ApiError {
    fn from(e: RefundError) -> Self {
        let code = match &e {
            RefundError::OrderNotFound => return ApiError::not_found("order"),
            RefundError::NotRefundable(_) => ErrorCode::OrderStatusInvalid,
            RefundError::ExceedsPaid { .. } => ErrorCode::RefundExceedsPaid,
            RefundError::TooMany => ErrorCode::RefundLimitReached,
            RefundError::WindowClosed => ErrorCode::RefundWindowClosed,
            RefundError::OutRefundNoReused => ErrorCode::OutRefundNoReused,
            RefundError::Store(_) => {
                let RefundError::Store(inner) = e else { unreachable!() };
                return inner.into();
            }
        };
        ApiError::new(code, e.to_string())
    }
}

impl From<RequestError> for ApiError {
    fn from(e: RequestError) -> Self {
        match e {
            RequestError::NotFound => ApiError::not_found("refund request"),
            RequestError::WrongStatus(s) => ApiError::new(
                ErrorCode::RefundRequestStatusInvalid,
                format!("the refund request is {s}; that step is not open"),
            ),
            RequestError::AlreadyOpen => ApiError::new(
                ErrorCode::RefundRequestStatusInvalid,
                "an open refund request already exists for this order",
            ),
            RequestError::Refund(r) => r.into(),
            RequestError::Store(s) => s.into(),
        }
    }
}

pub(crate) fn refund_view(r: &Refund) -> serde_json::Value {
    json!({
        "refund_id": r.id, "out_refund_no": r.out_refund_no, "order_id": r.order_id, "out_trade_no": r.out_trade_no,
        "amount": r.amount.to_string(), "currency": r.amount.currency().code(), "reason": r.reason, "status": r.status,
        "channel": if r.funding == "balance" { "balance" } else { "card" },
        "created_at": r.created_at.to_rfc3339(), "succeeded_at": r.succeeded_at.map(Timestamp::to_rfc3339),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateRefund {
    order_id: Option<String>,
    out_trade_no: Option<String>,
    out_refund_no: String,
    amount: String,
    reason: Option<String>,
}

pub async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiJson(req): ApiJson<CreateRefund>,
) -> Result<Response, ApiError> {
    let merchant_id = caller.merchant_id();
    if req.out_refund_no.is_empty()
        || req.out_refund_no.len() > 64
        || !req.out_refund_no.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'|' | b'*'))
    {
        return Err(ApiError::invalid("out_refund_no", "must be 1 to 64 characters of [A-Za-z0-9_-|*]"));
    }
    let amount = parse_amount(&state, "amount", &req.amount)?;
    let reason = req.reason.unwrap_or_default();
    check_text("reason", &reason, 0, 80)?;
    let order = match (&req.order_id, &req.out_trade_no) {
        (Some(id), None) => state.store().merchant_order(merchant_id, id).await?,
        (None, Some(otn)) => state.store().order_by_out_trade_no(merchant_id, otn).await?,
        _ => return Err(ApiError::new(ErrorCode::MissingField, "give exactly one of order_id and out_trade_no")),
    }
    .ok_or_else(|| ApiError::not_found("order"))?;
    let now = state.clock().now();
    let digest = request_digest(&[&order.id, &amount.minor_units().to_string()]);
    let (refund, new) = state
        .store()
        .create_refund(&NewRefund {
            merchant_id,
            order_id: &order.id,
            out_refund_no: &req.out_refund_no,
            amount,
            reason: &reason,
            request_digest: &digest,
            card_settle_at: now.plus_secs(state.config().sandbox_refund_secs),
            now,
        })
        .await?;
    let status = if new { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(refund_view(&refund))).into_response())
}

pub async fn get(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(refund_id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let refund = state
        .store()
        .merchant_refund(caller.merchant_id(), &refund_id)
        .await?
        .ok_or_else(|| ApiError::not_found("refund"))?;
    Ok(Json(refund_view(&refund)))
}

fn request_view(r: &RefundRequest) -> serde_json::Value {
    json!({
        "refund_request_id": r.id, "order_id": r.order_id, "amount": r.amount.to_string(), "currency": r.amount.currency().code(),
        "reason": r.reason, "status": r.status, "refund_id": r.refund_id, "created_at": r.created_at.to_rfc3339(),
        "steps": r.steps.iter().map(|(actor, action, note, at)| json!({
            "actor": actor, "action": action, "note": note, "at": at.to_rfc3339(),
        })).collect::<Vec<_>>(),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusQuery {
    status: Option<String>,
}

const REQUEST_STATUSES: [&str; 6] = ["PENDING", "APPROVED", "REFUSED", "ESCALATED", "FORCED", "UPHELD"];

fn status_filter(q: &StatusQuery) -> Result<Option<&str>, ApiError> {
    match q.status.as_deref() {
        Some(s) if !REQUEST_STATUSES.contains(&s) => {
            Err(ApiError::invalid("status", format!("one of {}", REQUEST_STATUSES.join(", "))))
        }
        other => Ok(other),
    }
}

pub async fn merchant_requests(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiQuery(q): ApiQuery<StatusQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let list = state.store().refund_requests(Some(("merchant_id", caller.merchant_id())), status_filter(&q)?).await?;
    Ok(Json(json!({ "refund_requests": list.iter().map(request_view).collect::<Vec<_>>() })))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Note {
    reason: Option<String>,
}

/// An optional JSON body `{"reason": "…"}`; an empty body is no note.
fn optional_note(body: &[u8]) -> Result<Note, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) { Ok(Note::default()) } else { crate::extract::parse_json(body) }
}

async fn owned_request(
    state: &AppState,
    id: &str,
    owner: impl Fn(&RefundRequest) -> bool,
) -> Result<RefundRequest, ApiError> {
    state.store().refund_request(id).await?.filter(|r| owner(r)).ok_or_else(|| ApiError::not_found("refund request"))
}

async fn act(
    state: &AppState,
    id: &str,
    action: RequestAction,
    actor: String,
    note: Option<&str>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let now = state.clock().now();
    let settle_at = now.plus_secs(state.config().sandbox_refund_secs);
    let r = state.store().act_on_refund_request(id, action, &actor, note, settle_at, now).await?;
    Ok(Json(request_view(&r)))
}

pub async fn approve(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    owned_request(&state, &id, |r| r.merchant_id == caller.merchant_id()).await?;
    act(&state, &id, RequestAction::MerchantApprove, format!("merchant:{}", caller.merchant_id()), None).await
}

pub async fn refuse(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    let note = optional_note(&body)?;
    let reason = note.reason.unwrap_or_default();
    check_text("reason", &reason, 1, 200)?;
    owned_request(&state, &id, |r| r.merchant_id == caller.merchant_id()).await?;
    act(&state, &id, RequestAction::MerchantRefuse, format!("merchant:{}", caller.merchant_id()), Some(&reason)).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewRequest {
    order_id: String,
    amount: Option<String>,
    reason: String,
}

pub async fn wallet_create_request(
    State(state): State<AppState>,
    Extension(who): Extension<WalletUser>,
    ApiJson(req): ApiJson<NewRequest>,
) -> Result<Response, ApiError> {
    check_text("reason", &req.reason, 1, 200)?;
    let amount = req.amount.as_deref().map(|a| parse_amount(&state, "amount", a)).transpose()?;
    let r = state
        .store()
        .create_refund_request(&who.user.id, &req.order_id, amount, &req.reason, state.clock().now())
        .await?;
    Ok((StatusCode::CREATED, Json(request_view(&r))).into_response())
}

pub async fn wallet_requests(
    State(state): State<AppState>,
    Extension(who): Extension<WalletUser>,
    ApiQuery(q): ApiQuery<StatusQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let list = state.store().refund_requests(Some(("user_id", &who.user.id)), status_filter(&q)?).await?;
    Ok(Json(json!({ "refund_requests": list.iter().map(request_view).collect::<Vec<_>>() })))
}

pub async fn wallet_escalate(
    State(state): State<AppState>,
    Extension(who): Extension<WalletUser>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    let note = optional_note(&body)?.reason;
    owned_request(&state, &id, |r| r.user_id == who.user.id).await?;
    act(&state, &id, RequestAction::ConsumerEscalate, format!("consumer:{}", who.user.id), note.as_deref()).await
}

pub async fn ops_requests(
    State(state): State<AppState>,
    Extension(_op): Extension<Operator>,
    ApiQuery(q): ApiQuery<StatusQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let list = state.store().refund_requests(None, status_filter(&q)?).await?;
    Ok(Json(json!({ "refund_requests": list.iter().map(request_view).collect::<Vec<_>>() })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Decision {
    decision: String,
    note: Option<String>,
}

pub async fn ops_decide(
    State(state): State<AppState>,
    Extension(op): Extension<Operator>,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<Decision>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let action = match req.decision.as_str() {
        "force_refund" => RequestAction::OperatorForceRefund,
        "uphold" => RequestAction::OperatorUphold,
        _ => return Err(ApiError::invalid("decision", "must be force_refund or uphold")),
    };
    act(&state, &id, action, format!("operator:{}", op.name), req.note.as_deref()).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotificationQuery {
    status: Option<String>,
    limit: Option<u32>,
}

pub async fn notifications(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiQuery(q): ApiQuery<NotificationQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    if let Some(s) = q.status.as_deref().filter(|s| !["PENDING", "DELIVERED", "DEAD"].contains(s)) {
        return Err(ApiError::invalid("status", format!("{s:?} is not PENDING, DELIVERED or DEAD")));
    }
    let limit = super::parse_limit(q.limit)?;
    let list = state.store().notifications(caller.merchant_id(), q.status.as_deref(), limit).await?;
    let items: Vec<_> = list
        .iter()
        .map(|n| {
            json!({
                "event_id": n.event_id, "event_type": n.event_type, "created_at": n.created_at.to_rfc3339(),
                "payload": serde_json::from_str::<serde_json::Value>(&n.payload).unwrap_or(serde_json::Value::Null),
                "delivery_status": n.delivery_status, "next_attempt_at": n.next_attempt_at.filter(|_| n.delivery_status.as_deref() == Some("PENDING")).map(Timestamp::to_rfc3339),
                "attempts": n.attempts.iter().map(|a| json!({
                    "attempt": a.attempt_no, "at": a.started_at.to_rfc3339(), "http_status": a.http_status, "error": a.error,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    Ok(Json(json!({ "notifications": items })))
}

pub async fn resend(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(event_id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    if !state.store().resend_event(caller.merchant_id(), &event_id, state.clock().now()).await? {
        return Err(ApiError::not_found("notification with a notify_url"));
    }
    Ok(Json(json!({ "event_id": event_id, "delivery_status": "PENDING" })))
}

/// Statement days are Beijing days (UTC+8), as the merchants in the seed's market count them.
const DAY_OFFSET_SECS: i64 = 8 * 3600;

pub async fn statement(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(file): Path<String>,
) -> Result<Response, ApiError> {
    statement_csv(&state, "merchant", "merchant_settlement", caller.merchant_id(), &file).await
}

/// A settlement account's statement for one Beijing day, as CSV with a totals line.
pub(crate) async fn statement_csv(
    state: &AppState,
    owner_type: &str,
    kind: &str,
    owner_id: &str,
    file: &str,
) -> Result<Response, ApiError> {
    let date = file
        .strip_suffix(".csv")
        .and_then(|d| time::Date::parse(d, time::macros::format_description!("[year]-[month]-[day]")).ok())
        .ok_or_else(|| ApiError::invalid("date", "use YYYY-MM-DD.csv"))?;
    let start = date.midnight().assume_utc().unix_timestamp() - DAY_OFFSET_SECS;
    let (from, to) = (Timestamp::from_unix_secs(start), Timestamp::from_unix_secs(start + 86_400));
    let lines = state.store().statement(owner_type, kind, owner_id, from, to).await?;
    let mut csv = String::from("time,type,order_id,out_trade_no,refund_id,out_refund_no,amount,fee,net\n");
    let (mut trades, mut refunds, mut net) = (0i64, 0i64, 0i64);
    let (mut trade_count, mut refund_count) = (0, 0);
    for l in &lines {
        let kind = match l.entry_kind.as_str() {
            "payment" => "payment",
            "bill_payment" => "payment",
            "refund" => "refund",
            "reversal" => "reversal",
            "refund_settlement" => "refund_returned",
            other => other,
        };
        let minor = l.amount.minor_units();
        if minor > 0 && kind == "payment" {
            trades += minor;
            trade_count += 1;
        } else if minor < 0 {
            refunds += -minor;
            refund_count += 1;
        }
        net += minor;
        let field = |v: &Option<String>| v.clone().unwrap_or_default();
        csv += &format!(
            "{},{},{},{},{},{},{},0.00,{}\n",
            l.at.to_rfc3339(),
            kind,
            field(&l.order_id),
            field(&l.out_trade_no),
            field(&l.refund_id),
            field(&l.out_refund_no),
            l.amount,
            l.amount
        );
    }
    let money = |m: i64| {
        paykit_core::Money::from_minor(m, paykit_core::Currency::Cny).map(|m| m.to_string()).unwrap_or_default()
    };
    csv += &format!(
        "# totals,trades={trade_count},trade_amount={},refunds={refund_count},refund_amount={},fees=0.00,net={}\n",
        money(trades),
        money(refunds),
        money(net)
    );
    Ok((
        [
            (CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (CONTENT_DISPOSITION, format!("attachment; filename=\"{file}\"")),
        ],
        csv,
    )
        .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Advance {
    /// A duration such as "90s", "15m", "6h", "2d".
    by: String,
}

/// Parses "90s", "15m", "6h", "2d" (or plain seconds) into seconds.
pub fn parse_duration_secs(text: &str) -> Option<i64> {
    let text = text.trim();
    let (number, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len()));
    let n: i64 = number.parse().ok()?;
    let mult = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return None,
    };
    n.checked_mul(mult).filter(|&s| s > 0 && s <= 400 * 86_400)
}

pub async fn advance_clock(
    State(state): State<AppState>,
    Extension(_op): Extension<Operator>,
    ApiJson(req): ApiJson<Advance>,
) -> Result<Json<serde_json::Value>, ApiError> {
    if state.config().mode != crate::config::Mode::Sandbox {
        return Err(ApiError::new(ErrorCode::SandboxOnly, "the clock only moves in sandbox mode"));
    }
    let secs =
        parse_duration_secs(&req.by).ok_or_else(|| ApiError::invalid("by", "a duration such as 90s, 15m, 6h or 2d"))?;
    let offset = state.store().advance_sandbox_clock(secs).await?;
    state.set_clock_offset(offset);
    Ok(Json(json!({ "now": state.clock().now().to_rfc3339(), "offset_seconds": offset / 1_000_000 })))
}

#[cfg(test)]
mod tests {
    #[test]
    fn durations() {
        assert_eq!(super::parse_duration_secs("6h"), Some(21_600));
        assert_eq!(super::parse_duration_secs("90"), Some(90));
        assert_eq!(super::parse_duration_secs("2d"), Some(172_800));
        for bad in ["", "h", "-1h", "1.5h", "0s", "10y", "999999d"] {
            assert_eq!(super::parse_duration_secs(bad), None, "{bad}");
        }
    }
}
