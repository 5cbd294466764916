//! Bill pay (生活缴费): billers post bills (one, a JSON array, or CSV), consumers find and
//! pay them, billers are called back with `bill.paid` and read their statements.

use axum::Extension;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use paykit_core::{Currency, ErrorCode, Money};
use paykit_store::bills::{Bill, NewBill, Posted};
use serde::Deserialize;
use serde_json::json;

use super::wallet::{load_user, require_can_pay, verify_pay_password};
use super::{check_text, parse_amount, request_digest};
use crate::app::AppState;
use crate::auth::BillerCaller;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiQuery};
use crate::wallet_auth::WalletUser;

/// The most bills one request may carry.
pub const MAX_BILLS_PER_REQUEST: usize = 10_000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BillInput {
    bill_no: String,
    customer_account: String,
    amount: String,
    due_date: String,
    period: String,
    customer_name: Option<String>,
    description: Option<String>,
}

fn bill_view(b: &Bill) -> serde_json::Value {
    json!({
        "bill_id": b.id, "bill_no": b.bill_no, "customer_account": b.customer_account, "customer_name": b.customer_name,
        "amount": b.amount.to_string(), "paid": b.paid.to_string(), "currency": b.amount.currency().code(),
        "due_date": b.due_date, "period": b.period, "description": b.description, "status": b.status,
        "paid_at": b.paid_at.map(|t| t.to_rfc3339()),
    })
}

fn validate(state: &AppState, b: BillInput) -> Result<NewBill, ApiError> {
    let key_ok =
        |v: &str| (1..=64).contains(&v.len()) && v.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-');
    if !key_ok(&b.bill_no) {
        return Err(ApiError::invalid("bill_no", "must be 1 to 64 characters of [A-Za-z0-9_-]"));
    }
    check_text("customer_account", &b.customer_account, 1, 64)?;
    let amount = parse_amount(state, "amount", &b.amount)?;
    if time::Date::parse(&b.due_date, time::macros::format_description!("[year]-[month]-[day]")).is_err() {
        return Err(ApiError::invalid("due_date", "must be a date YYYY-MM-DD"));
    }
    check_text("period", &b.period, 1, 32)?;
    if let Some(n) = &b.customer_name {
        check_text("customer_name", n, 0, 64)?;
    }
    if let Some(d) = &b.description {
        check_text("description", d, 0, 127)?;
    }
    let digest = request_digest(&[
        &b.bill_no,
        &b.customer_account,
        &amount.minor_units().to_string(),
        &b.due_date,
        &b.period,
        b.customer_name.as_deref().unwrap_or(""),
        b.description.as_deref().unwrap_or(""),
    ]);
    Ok(NewBill {
        bill_no: b.bill_no,
        customer_account: b.customer_account,
        customer_name: b.customer_name.filter(|n| !n.is_empty()),
        amount,
        due_date: b.due_date,
        period: b.period,
        description: b.description.filter(|d| !d.is_empty()),
        request_digest: digest,
    })
}

/// Rows as sent: each either parsed or refused on its own. Public for the fuzz target.
pub fn parse_rows(headers: &HeaderMap, body: &[u8]) -> Result<Vec<Result<BillInput, ApiError>>, ApiError> {
    let mime =
        headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).and_then(|v| v.split(';').next()).unwrap_or("").trim();
    if mime.eq_ignore_ascii_case("text/csv") {
        let mut reader = csv::ReaderBuilder::new().trim(csv::Trim::All).from_reader(body);
        let header = reader.headers().map_err(|e| ApiError::invalid("csv", format!("the header row: {e}")))?.clone();
        let known = ["bill_no", "customer_account", "amount", "due_date", "period", "customer_name", "description"];
        if let Some(unknown) = header.iter().find(|h| !known.contains(h)) {
            return Err(ApiError::new(ErrorCode::UnknownField, format!("unknown CSV column {unknown:?}")));
        }
        return Ok(reader
            .records()
            .map(|record| {
                let record = record.map_err(|e| ApiError::invalid("csv", e))?;
                let get =
                    |name: &str| header.iter().position(|h| h == name).and_then(|i| record.get(i)).map(str::to_owned);
                let need = |name: &'static str| {
                    get(name)
                        .filter(|v| !v.is_empty())
                        .ok_or_else(|| ApiError::new(ErrorCode::MissingField, format!("{name} is empty")))
                };
                Ok(BillInput {
                    bill_no: need("bill_no")?,
                    customer_account: need("customer_account")?,
                    amount: need("amount")?,
                    due_date: need("due_date")?,
                    period: need("period")?,
                    customer_name: get("customer_name"),
                    description: get("description"),
                })
            })
            .collect());
    }
    if !mime.eq_ignore_ascii_case("application/json") {
        return Err(ApiError::new(
            ErrorCode::UnsupportedMediaType,
            "send application/json (one bill or an array) or text/csv",
        ));
    }
    let value: serde_json::Value = crate::extract::parse_json(body)?;
    let items = match value {
        serde_json::Value::Array(items) => items,
        other => vec![other],
    };
    Ok(items.into_iter().map(|v| crate::extract::parse_json(v.to_string().as_bytes())).collect())
}

pub async fn post_bills(
    State(state): State<AppState>,
    Extension(caller): Extension<BillerCaller>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    let rows = parse_rows(&headers, &body)?;
    if rows.len() > MAX_BILLS_PER_REQUEST {
        return Err(ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!("at most {MAX_BILLS_PER_REQUEST} bills a request"),
        ));
    }
    let mut rejected = Vec::new();
    let mut good = Vec::new();
    let mut good_rows = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (i, row) in rows.into_iter().enumerate() {
        let n = i + 1;
        match row.and_then(|b| validate(&state, b)) {
            Ok(bill) if !seen.insert(bill.bill_no.clone()) => {
                rejected.push(
                    json!({"row": n, "code": "INVALID_FIELD", "message": "bill_no appears twice in this request"}),
                );
            }
            Ok(bill) => {
                good.push(bill);
                good_rows.push(n);
            }
            Err(e) => rejected.push(json!({"row": n, "code": e.code.as_str(), "message": e.message})),
        }
    }
    let outcomes = state.store().post_bills(&caller.biller_id, &good, state.clock().now()).await?;
    let (mut created, mut duplicates) = (0, 0);
    for (outcome, n) in outcomes.iter().zip(good_rows) {
        match outcome {
            Posted::Created => created += 1,
            Posted::Duplicate => duplicates += 1,
            Posted::Conflict => rejected.push(json!({
                "row": n, "code": ErrorCode::BillNoReused.as_str(), "message": "this bill_no was posted before with other details",
            })),
        }
    }
    rejected.sort_by_key(|r| r["row"].as_u64());
    Ok(Json(json!({ "accepted": created, "duplicates": duplicates, "rejected": rejected })))
}

pub async fn get_bill(
    State(state): State<AppState>,
    Extension(caller): Extension<BillerCaller>,
    Path(bill_no): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let bill = state.store().bill(&caller.biller_id, &bill_no).await?.ok_or_else(|| ApiError::not_found("bill"))?;
    Ok(Json(bill_view(&bill)))
}

async fn change(
    state: &AppState,
    caller: &BillerCaller,
    bill_no: &str,
    cancel: bool,
    amount: Option<Money>,
    due: Option<&str>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let now = state.clock().now();
    match state.store().change_unpaid_bill(&caller.biller_id, bill_no, cancel, amount, due, now).await? {
        Some(bill) => Ok(Json(bill_view(&bill))),
        None => match state.store().bill(&caller.biller_id, bill_no).await? {
            None => Err(ApiError::not_found("bill")),
            Some(b) => Err(ApiError::new(
                ErrorCode::BillNotOpen,
                format!("the bill is {}; only an unpaid bill can change", b.status),
            )),
        },
    }
}

pub async fn cancel_bill(
    State(state): State<AppState>,
    Extension(caller): Extension<BillerCaller>,
    Path(bill_no): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    change(&state, &caller, &bill_no, true, None, None).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Amend {
    amount: Option<String>,
    due_date: Option<String>,
}

pub async fn amend_bill(
    State(state): State<AppState>,
    Extension(caller): Extension<BillerCaller>,
    Path(bill_no): Path<String>,
    ApiJson(req): ApiJson<Amend>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let amount = req.amount.as_deref().map(|a| parse_amount(&state, "amount", a)).transpose()?;
    if let Some(d) = &req.due_date
        && time::Date::parse(d, time::macros::format_description!("[year]-[month]-[day]")).is_err()
    {
        return Err(ApiError::invalid("due_date", "must be a date YYYY-MM-DD"));
    }
    change(&state, &caller, &bill_no, false, amount, req.due_date.as_deref()).await
}

pub async fn biller_statement(
    State(state): State<AppState>,
    Extension(caller): Extension<BillerCaller>,
    Path(file): Path<String>,
) -> Result<Response, ApiError> {
    super::refunds::statement_csv(&state, "biller", "biller_settlement", &caller.biller_id, &file).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CategoryQuery {
    category: Option<String>,
}

pub async fn list_billers(
    State(state): State<AppState>,
    Extension(_who): Extension<WalletUser>,
    ApiQuery(q): ApiQuery<CategoryQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let billers = state.store().billers(q.category.as_deref()).await?;
    let billers: Vec<_> = billers
        .iter()
        .map(|b| json!({"biller_id": b.id, "name": b.name, "category": b.category, "allows_partial_payment": b.allow_partial}))
        .collect();
    Ok(Json(json!({ "billers": billers })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FindBills {
    biller_id: String,
    customer_account: String,
}

pub async fn find_bills(
    State(state): State<AppState>,
    Extension(_who): Extension<WalletUser>,
    ApiQuery(q): ApiQuery<FindBills>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let bills = state.store().customer_bills(&q.biller_id, &q.customer_account).await?;
    Ok(Json(json!({ "bills": bills.iter().map(bill_view).collect::<Vec<_>>() })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PayBill {
    bill_id: String,
    amount: Option<String>,
    pay_password: String,
}

pub async fn pay_bill(
    State(state): State<AppState>,
    Extension(who): Extension<WalletUser>,
    crate::extract::IdempotencyKeyHeader(key): crate::extract::IdempotencyKeyHeader,
    ApiJson(req): ApiJson<PayBill>,
) -> Result<Response, ApiError> {
    let user = load_user(&who);
    require_can_pay(&user)?;
    let bill = state.store().bill_by_id(&req.bill_id).await?.ok_or_else(|| ApiError::not_found("bill"))?;
    let biller = state.store().biller(&bill.biller_id).await?.ok_or_else(|| ApiError::not_found("biller"))?;
    if biller.status == "FROZEN" {
        return Err(ApiError::new(
            ErrorCode::MerchantFrozen,
            "this biller's account is frozen and cannot receive payments",
        ));
    }
    if !matches!(bill.status.as_str(), "UNPAID" | "PARTIAL") {
        return Err(ApiError::new(ErrorCode::BillNotOpen, format!("the bill is {}", bill.status)));
    }
    let due = Money::from_minor(bill.amount.minor_units() - bill.paid.minor_units(), Currency::Cny)
        .map_err(|e| ApiError::from(&e))?;
    let amount = match req.amount.as_deref() {
        None => due,
        Some(a) => {
            let a = parse_amount(&state, "amount", a)?;
            if a.minor_units() > due.minor_units() || (!biller.allow_partial && a != due) {
                return Err(ApiError::new(
                    ErrorCode::BillAmountInvalid,
                    if biller.allow_partial {
                        format!("at most the {due} still due")
                    } else {
                        format!("this biller takes the full {due} only")
                    },
                ));
            }
            a
        }
    };
    verify_pay_password(&state, &user, &req.pay_password).await?;
    let bill = state
        .store()
        .pay_bill(
            &bill.id,
            &user.id,
            amount,
            biller.allow_partial,
            key.map(|key| paykit_store::payments::IdempotencyKey {
                scope: format!("bill_payment:{}", user.id),
                key,
                request_digest: request_digest(&[&req.bill_id, &amount.minor_units().to_string()]),
            })
            .as_ref(),
            state.clock().now(),
        )
        .await
        .map_err(|e| match e {
            paykit_store::payments::PayError::AlreadyPaid => {
                ApiError::new(ErrorCode::BillNotOpen, "the bill was paid meanwhile")
            }
            other => other.into(),
        })?;
    Ok(Json(bill_view(&bill)).into_response())
}
