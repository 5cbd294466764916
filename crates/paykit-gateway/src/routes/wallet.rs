//! The wallet API (`/wallet/v1/*`): what a consumer's app calls.

use axum::Extension;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use paykit_core::order::OrderStatus;
use paykit_core::time::Timestamp;
use paykit_core::wallet::{PayPasswordError, check_pay_password, is_valid_phone, verify_device_proof};
use paykit_core::{ErrorCode, qr_token, resident_id};
use paykit_store::bank::RecordFilter;
use paykit_store::pay_context::{PayContext, SessionPayContext};
use paykit_store::payments::{Funding, IdempotencyKey, PayOrder};
use paykit_store::risk::PayerHistory;
use paykit_store::users::{Device, NewCard, User};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{check_text, parse_amount, parse_cursor, parse_limit, parse_time, request_digest};
use crate::app::AppState;
use crate::bank::DebitPurpose;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiQuery, IdempotencyKeyHeader};
use crate::wallet_auth::{SessionToken, WalletUser, session_invalid, token_digest};

use axum::Json;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    phone: String,
    password: String,
}

pub async fn register(State(state): State<AppState>, ApiJson(req): ApiJson<Credentials>) -> Result<Response, ApiError> {
    if !is_valid_phone(&req.phone) {
        return Err(ApiError::new(ErrorCode::PhoneInvalid, "phone must be an 11-digit mainland mobile number")
            .with("field", "phone"));
    }
    let n = req.password.chars().count();
    if !(8..=64).contains(&n) {
        return Err(
            ApiError::new(ErrorCode::PasswordInvalid, "password must be 8 to 64 characters").with("field", "password")
        );
    }
    let hash = state.passwords().hash(&req.password).await?;
    let user = state.store().create_user(&req.phone, &hash, state.clock().now()).await?.ok_or_else(|| {
        ApiError::new(ErrorCode::PhoneAlreadyRegistered, "a wallet with this phone number exists; log in")
    })?;
    Ok((StatusCode::CREATED, Json(json!({ "user_id": user.id }))).into_response())
}

pub async fn log_in(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<Credentials>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let failed = || ApiError::new(ErrorCode::LoginFailed, "wrong phone number or password");
    let Some(user) = state.store().user_by_phone(&req.phone).await? else {
        state.passwords().verify_unknown(&req.password).await?;
        return Err(failed());
    };
    if !state.passwords().verify(&req.password, &user.password_hash).await? {
        return Err(failed());
    }
    let now = state.wall_now();
    let token = paykit_store::ids::random_base32(40);
    let expires_at = now.plus_secs(state.config().session_ttl_secs);
    state.store().create_session(&token_digest(&token), &user.id, expires_at, now).await?;
    Ok(Json(json!({ "token": token, "expires_at": expires_at.to_rfc3339(), "user_id": user.id })))
}

/// The session's user, as read when the request arrived (see `wallet_auth`).
pub(crate) fn load_user(who: &WalletUser) -> User {
    who.user.clone()
}

pub async fn profile(
    State(state): State<AppState>,
    Extension(who): Extension<WalletUser>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let user = load_user(&who);
    Ok(Json(json!({
        "user_id": user.id,
        "phone": user.phone,
        "real_name": user.real_name,
        "id_number": user.id_number_masked,
        "real_name_verified": user.real_name.is_some(),
        "pay_password_set": user.pay_password_hash.is_some(),
        "frozen": user.frozen,
        "pay_locked_until": user.pay_locked_until.filter(|&t| t > state.clock().now()).map(Timestamp::to_rfc3339),
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RealName {
    name: String,
    id_number: String,
}

fn today(now: Timestamp) -> time::Date {
    time::OffsetDateTime::from_unix_timestamp(now.unix_secs()).map_or(time::Date::MIN, |t| t.date())
}

pub async fn real_name(
    State(state): State<AppState>,
    Extension(who): Extension<WalletUser>,
    ApiJson(req): ApiJson<RealName>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let now = state.clock().now();
    let name = req.name.trim();
    check_text("name", name, 2, 30)?;
    let id = resident_id::validate(req.id_number.trim(), today(now))
        .map_err(|e| ApiError::new(ErrorCode::IdNumberInvalid, e.to_string()).with("field", "id_number"))?;
    let masked = format!("{}{}{}", &id[..3], "*".repeat(11), &id[14..]);
    if !state.store().set_real_name(&who.user.id, name, &masked, &state.fingerprint(&id), now).await? {
        return Err(ApiError::new(
            ErrorCode::RealNameAlreadyVerified,
            "this wallet is already verified under other details",
        ));
    }
    Ok(Json(json!({ "real_name_verified": true, "name": name, "id_number": masked })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetPayPassword {
    pay_password: String,
    old_pay_password: Option<String>,
}

pub async fn pay_password(
    State(state): State<AppState>,
    Extension(who): Extension<WalletUser>,
    ApiJson(req): ApiJson<SetPayPassword>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let user = load_user(&who);
    check_pay_password(&req.pay_password).map_err(|e| {
        let code = match e {
            PayPasswordError::Malformed => ErrorCode::PayPasswordInvalid,
            PayPasswordError::Weak => ErrorCode::PayPasswordWeak,
        };
        ApiError::new(code, e.to_string()).with("field", "pay_password")
    })?;
    if user.pay_password_hash.is_some() {
        let old = req.old_pay_password.as_deref().ok_or_else(|| {
            ApiError::new(ErrorCode::MissingField, "old_pay_password is needed to change the pay password")
                .with("field", "old_pay_password")
        })?;
        verify_pay_password(&state, &user, old).await?;
    }
    let hash = state.passwords().hash(&req.pay_password).await?;
    state.store().set_pay_password(&user.id, &hash).await?;
    Ok(Json(json!({ "pay_password_set": true })))
}

/// Checks the pay password, counting failures: the fifth wrong one in a row locks paying
/// for three hours.
pub(crate) async fn verify_pay_password(state: &AppState, user: &User, given: &str) -> Result<(), ApiError> {
    let now = state.clock().now();
    let locked = |until: Timestamp| {
        ApiError::new(
            ErrorCode::PayPasswordLocked,
            format!("too many wrong pay passwords: paying is locked until {until}"),
        )
        .with("unlock_at", until.to_rfc3339())
    };
    if let Some(until) = user.pay_locked_until.filter(|&t| t > now) {
        return Err(locked(until));
    }
    let hash = user
        .pay_password_hash
        .as_deref()
        .ok_or_else(|| ApiError::new(ErrorCode::PayPasswordNotSet, "set a pay password first"))?;
    // The guess is counted before the hash is checked, so concurrent guesses cannot get
    // past the five-tries lock by all reading it open at once.
    let Some(guess) = state.store().take_pay_password_guess(&user.id, now).await? else {
        return Err(match state.store().pay_password_locked_until(&user.id, now).await? {
            Some(until) => locked(until),
            None => ApiError::new(ErrorCode::RateLimited, "other pay-password tries are in progress; retry shortly"),
        });
    };
    let right = match state.passwords().verify(given, hash).await {
        Ok(right) => right,
        Err(e) => {
            state.store().give_back_pay_password_guess(&user.id).await?;
            return Err(e);
        }
    };
    if right {
        state.store().reset_pay_password_failures(&user.id).await?;
        return Ok(());
    }
    match state.store().pay_password_guess_failed(&user.id, guess, now).await? {
        Some(until) => Err(locked(until)),
        None => {
            let left = paykit_store::users::PAY_PASSWORD_MAX_FAILURES - guess;
            Err(ApiError::new(
                ErrorCode::PayPasswordWrong,
                format!("wrong pay password; {left} tries left before paying locks"),
            )
            .with("tries_left", left))
        }
    }
}

/// What money may leave a wallet: a verified, unfrozen user.
pub(crate) fn require_can_pay(user: &User) -> Result<(), ApiError> {
    if user.real_name.is_none() {
        return Err(ApiError::new(ErrorCode::RealNameRequired, "complete real-name verification before paying"));
    }
    if user.frozen {
        return Err(ApiError::new(ErrorCode::AccountFrozen, "this account is frozen"));
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BindCard {
    card_number: String,
    holder_name: String,
}

#[derive(Serialize)]
pub struct CardView {
    card_id: String,
    bank_name: String,
    last4: String,
    card_type: String,
    bound_at: String,
}

fn card_view(c: &paykit_store::users::Card) -> CardView {
    CardView {
        card_id: c.id.clone(),
        bank_name: c.bank_name.clone(),
        last4: c.last4.clone(),
        card_type: c.kind.clone(),
        bound_at: c.created_at.to_rfc3339(),
    }
}

pub async fn bind_card(
    State(state): State<AppState>,
    Extension(who): Extension<WalletUser>,
    ApiJson(req): ApiJson<BindCard>,
) -> Result<Response, ApiError> {
    let user = load_user(&who);
    let Some(real_name) = &user.real_name else {
        return Err(ApiError::new(
            ErrorCode::RealNameRequired,
            "complete real-name verification before binding a card",
        ));
    };
    let number: String = req.card_number.chars().filter(|c| !c.is_whitespace()).collect();
    let binding = state
        .bank()
        .bind(&number)
        .map_err(|r| ApiError::new(ErrorCode::from(r), r.to_string()).with("field", "card_number"))?;
    if req.holder_name.trim() != real_name {
        return Err(ApiError::new(ErrorCode::CardHolderMismatch, "the card holder must be the verified real name")
            .with("field", "holder_name"));
    }
    let card = NewCard {
        user_id: &user.id,
        bank_token: &binding.token,
        bank_name: &binding.bank_name,
        last4: &binding.last4,
        kind: binding.kind.as_str(),
        fingerprint: &state.fingerprint(&number),
    };
    let card = state
        .store()
        .bind_card(card, state.clock().now())
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::CardAlreadyBound, "this card is already bound"))?;
    Ok((StatusCode::CREATED, Json(card_view(&card))).into_response())
}

pub async fn list_cards(
    State(state): State<AppState>,
    Extension(who): Extension<WalletUser>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let cards = state.store().cards(&who.user.id).await?;
    Ok(Json(json!({ "cards": cards.iter().map(card_view).collect::<Vec<_>>() })))
}

pub async fn unbind_card(
    State(state): State<AppState>,
    Extension(who): Extension<WalletUser>,
    Path(card_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    if state.store().remove_card(&who.user.id, &card_id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("card"))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopUp {
    card_id: String,
    amount: String,
    pay_password: String,
}

fn top_up_view(op: &paykit_store::bank::BankOperation) -> serde_json::Value {
    json!({
        "top_up_id": op.id, "card_id": op.card_id, "amount": op.amount.to_string(), "currency": op.amount.currency().code(),
        "status": op.status, "created_at": op.created_at.to_rfc3339(), "settled_at": op.settled_at.map(Timestamp::to_rfc3339),
    })
}

fn bank_error(r: crate::bank::BankRefusal) -> ApiError {
    ApiError::new(ErrorCode::from(r), r.to_string())
}

pub async fn top_up(
    State(state): State<AppState>,
    Extension(who): Extension<WalletUser>,
    IdempotencyKeyHeader(key): IdempotencyKeyHeader,
    ApiJson(req): ApiJson<TopUp>,
) -> Result<Response, ApiError> {
    let user = load_user(&who);
    let amount = parse_amount(&state, "amount", &req.amount)?;
    require_can_pay(&user)?;
    let card = state.store().card(&user.id, &req.card_id).await?.ok_or_else(|| ApiError::not_found("card"))?;
    verify_pay_password(&state, &user, &req.pay_password).await?;
    let now = state.clock().now();
    let idempotency = key.map(|key| IdempotencyKey {
        scope: format!("top_up:{}", user.id),
        key,
        request_digest: request_digest(&[&req.card_id, &amount.minor_units().to_string()]),
    });
    // A replay must not reach the bank again: answer it from what the first request made.
    if let Some(key) = &idempotency
        && let Some(previous) = state.store().idempotent_resource(key).await.map_err(ApiError::from)?
    {
        let op =
            state.store().bank_operation(&user.id, &previous).await?.ok_or_else(|| ApiError::not_found("top-up"))?;
        let status = if op.status == "SUCCESS" { StatusCode::OK } else { StatusCode::ACCEPTED };
        return Ok((status, Json(top_up_view(&op))).into_response());
    }
    let answer = state.bank().debit(&card.bank_token, amount, DebitPurpose::TopUp, now).map_err(bank_error)?;
    let op = state.store().top_up(&user.id, &card.id, amount, answer, idempotency, now).await?;
    let status = if op.status == "SUCCESS" { StatusCode::OK } else { StatusCode::ACCEPTED };
    Ok((status, Json(top_up_view(&op))).into_response())
}

pub async fn get_top_up(
    State(state): State<AppState>,
    Extension(who): Extension<WalletUser>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let op = state.store().bank_operation(&who.user.id, &id).await?.filter(|o| o.kind == "top_up");
    Ok(Json(top_up_view(&op.ok_or_else(|| ApiError::not_found("top-up"))?)))
}

pub async fn balance(
    State(state): State<AppState>,
    Extension(who): Extension<WalletUser>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let account = state.store().wallet_account(&who.user.id).await?;
    let balance = state.store().balance(&account).await?;
    Ok(Json(json!({ "balance": balance.to_string(), "currency": balance.currency().code() })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordsQuery {
    #[serde(rename = "type")]
    kind: Option<String>,
    from: Option<String>,
    to: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
}

pub async fn records(
    State(state): State<AppState>,
    Extension(who): Extension<WalletUser>,
    ApiQuery(q): ApiQuery<RecordsQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    const KINDS: [&str; 10] = [
        "payment",
        "top_up",
        "refund",
        "transfer",
        "transfer_in",
        "red_packet",
        "red_packet_in",
        "red_packet_refund",
        "withdrawal",
        "repayment",
    ];
    if let Some(kind) = q.kind.as_deref().filter(|k| !KINDS.contains(k)) {
        return Err(ApiError::invalid("type", format!("{kind:?} is not a record type ({})", KINDS.join(", "))));
    }
    let filter = RecordFilter {
        kind: q.kind,
        from: parse_time("from", q.from.as_deref())?,
        to: parse_time("to", q.to.as_deref())?,
        before: parse_cursor(q.cursor.as_deref())?,
        limit: parse_limit(q.limit)?,
    };
    let records = state.store().records(&who.user.id, &filter).await?;
    let next_cursor = (records.len() as i64 == filter.limit)
        .then(|| records.last().map(|r| format!("{}:{}", r.created_at.unix_micros(), r.id)))
        .flatten();
    let records: Vec<_> = records
        .iter()
        .map(|r| {
            json!({
                "record_id": r.id, "type": r.kind, "reference_id": r.reference_id, "title": r.title,
                "amount": r.amount.to_string(), "currency": r.amount.currency().code(),
                "funding": if r.funding == "balance" { "balance" } else { "card" }, "card_id": (r.funding != "balance").then_some(&r.funding),
                "status": r.status, "created_at": r.created_at.to_rfc3339(), "updated_at": r.updated_at.to_rfc3339(),
            })
        })
        .collect();
    Ok(Json(json!({ "records": records, "next_cursor": next_cursor })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scan {
    code_url: String,
}

pub async fn scan(
    State(state): State<AppState>,
    Extension(_who): Extension<WalletUser>,
    ApiJson(req): ApiJson<Scan>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let invalid = || ApiError::new(ErrorCode::QrCodeInvalid, "this is not a paykit payment code, or it was altered");
    let token = qr_token::token_from_code_url(&req.code_url).ok_or_else(invalid)?;
    let claims = qr_token::verify(state.qr_key(), token).map_err(|_| invalid())?;
    let now = state.clock().now();
    let order = state.store().order(&claims.order_id).await?.ok_or_else(invalid)?;
    if claims.expires_at_unix_secs <= now.unix_secs() && order.status != OrderStatus::Success {
        return Err(ApiError::new(ErrorCode::OrderExpired, "this payment code has expired"));
    }
    payable(&order, now)?;
    let merchant = state.store().merchant(&order.merchant_id).await?.ok_or_else(invalid)?;
    if merchant.status == "FROZEN" {
        return Err(ApiError::new(ErrorCode::MerchantFrozen, "this merchant cannot receive payments now"));
    }
    Ok(Json(json!({
        "order_id": order.id, "merchant_name": merchant.name, "amount": order.amount.to_string(),
        "currency": order.amount.currency().code(), "description": order.description, "expire_at": order.expire_at.to_rfc3339(),
    })))
}

/// Whether an order can be paid now, with the reason when not.
fn payable(order: &paykit_store::orders::Order, now: Timestamp) -> Result<(), ApiError> {
    match order.status {
        OrderStatus::NotPay if order.expire_at > now => Ok(()),
        OrderStatus::NotPay | OrderStatus::Closed if order.expire_at <= now => {
            Err(ApiError::new(ErrorCode::OrderExpired, "this order has expired"))
        }
        OrderStatus::Closed => Err(ApiError::new(ErrorCode::OrderClosed, "the merchant closed this order")),
        OrderStatus::Success | OrderStatus::UserPaying => {
            Err(ApiError::new(ErrorCode::OrderPaid, "this order is already paid"))
        }
        other => Err(ApiError::new(ErrorCode::OrderStatusInvalid, format!("this order is {other}"))),
    }
}

/// The biometric stand-in: a device's HMAC over the order, amount and time.
pub struct DeviceConfirmation {
    device_id: String,
    device_ts: i64,
    device_proof: String,
}

/// How a consumer authorises money leaving the wallet: pay password or device.
enum Authorisation {
    PayPassword(String),
    Device(DeviceConfirmation),
}

fn authorisation(
    pay_password: Option<String>,
    device_id: Option<String>,
    device_ts: Option<i64>,
    device_proof: Option<String>,
) -> Result<Authorisation, ApiError> {
    match (pay_password, device_id, device_ts, device_proof) {
        (Some(p), None, None, None) => Ok(Authorisation::PayPassword(p)),
        (None, Some(device_id), Some(device_ts), Some(device_proof)) => {
            Ok(Authorisation::Device(DeviceConfirmation { device_id, device_ts, device_proof }))
        }
        (None, None, None, None) => Err(ApiError::new(
            ErrorCode::MissingField,
            "confirm with pay_password, or device_id + device_ts + device_proof",
        )),
        (Some(_), ..) => {
            Err(ApiError::invalid("pay_password", "send either a pay password or a device confirmation, not both"))
        }
        _ => Err(ApiError::new(
            ErrorCode::MissingField,
            "a device confirmation needs device_id, device_ts and device_proof",
        )),
    }
}

pub(crate) fn device_secret(device: &Device) -> Result<Vec<u8>, ApiError> {
    BASE64.decode(&device.secret_b64).map_err(|_| ApiError::new(ErrorCode::InternalError, "internal error"))
}

/// Checks a device confirmation for `order` and returns the device id.
async fn verify_device(
    state: &AppState,
    user: &User,
    order: &paykit_store::orders::Order,
    c: &DeviceConfirmation,
) -> Result<String, ApiError> {
    let device = state.store().device(&c.device_id).await?;
    check_device(state, user, order, c, device)
}

/// [`verify_device`] with the device already read (None: there is no such device).
fn check_device(
    state: &AppState,
    user: &User,
    order: &paykit_store::orders::Order,
    c: &DeviceConfirmation,
    device: Option<Device>,
) -> Result<String, ApiError> {
    let invalid = || ApiError::new(ErrorCode::DeviceProofInvalid, "the device confirmation does not verify");
    let device = device.filter(|d| d.user_id == user.id && d.id == c.device_id).ok_or_else(invalid)?;
    if !device.confirm_payments || device.status != "ACTIVE" {
        return Err(ApiError::new(ErrorCode::DeviceNotEnabled, "this device is not enabled to confirm payments"));
    }
    if (state.wall_now().unix_secs() - c.device_ts).abs() > 300 {
        return Err(ApiError::new(
            ErrorCode::DeviceProofExpired,
            "device_ts is more than 300 seconds from the server's time",
        ));
    }
    if !verify_device_proof(
        &device_secret(&device)?,
        &order.id,
        &order.amount.to_string(),
        c.device_ts,
        &c.device_proof,
    ) {
        return Err(invalid());
    }
    Ok(device.id)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pay {
    order_id: String,
    funding: String,
    pay_password: Option<String>,
    device_id: Option<String>,
    device_ts: Option<i64>,
    device_proof: Option<String>,
}

/// The starts of the risk rules' velocity window and of the day (China Standard Time) that
/// `now` falls in.
pub(crate) fn risk_windows(state: &AppState, now: Timestamp) -> (Timestamp, Timestamp) {
    let day_start = Timestamp::from_unix_secs((now.unix_secs() + 8 * 3600).div_euclid(86_400) * 86_400 - 8 * 3600);
    (now.plus_secs(-state.config().risk.velocity_window_secs), day_start)
}

/// Applies the risk rules to a payment: `Ok(Some(answer))` when it is held (202, nothing
/// moved until the consumer confirms), an error when it is blocked, `Ok(None)` to go on.
/// `history` is the payer's as read with the order, or None to read it now.
async fn risk_check(
    state: &AppState,
    user: &User,
    order: &paykit_store::orders::Order,
    funding: &str,
    history: Option<PayerHistory>,
) -> Result<Option<Json<serde_json::Value>>, ApiError> {
    let now = state.clock().now();
    let rules = &state.config().risk;
    let history = match history {
        Some(history) => history,
        None => {
            let (window_start, day_start) = risk_windows(state, now);
            state.store().payer_history(&user.id, &order.merchant_id, window_start, day_start).await?
        }
    };
    let facts = paykit_core::risk::RiskFacts {
        amount_minor: order.amount.minor_units(),
        recent_payments: history.recent_payments,
        spent_today_minor: history.spent_today_minor,
        paid_payee_before: history.paid_payee_before,
        pay_password_failures: user.pay_failures,
        device_code_failures: 0,
    };
    let decision = paykit_core::risk::evaluate(rules, &facts);
    let reasons = decision.reasons.join(", ");
    match decision.action {
        paykit_core::risk::RiskAction::Allow => Ok(None),
        paykit_core::risk::RiskAction::Block => {
            state
                .store()
                .risk_alert(&user.id, &format!("A payment of {} was blocked ({reasons}).", order.amount), now)
                .await?;
            Err(ApiError::new(ErrorCode::RiskBlocked, format!("blocked by risk rules: {reasons}"))
                .with("reasons", reasons))
        }
        paykit_core::risk::RiskAction::Hold => {
            let expires_at = now.plus_secs(state.config().confirmation_ttl_secs);
            let id = state.store().hold_payment(&user.id, &order.id, funding, &reasons, expires_at, now).await?;
            Ok(Some(Json(json!({
                "order_id": order.id, "status": "HELD", "confirmation_id": id, "reasons": reasons,
                "expires_at": expires_at.to_rfc3339(),
                "message": "held for your confirmation: confirm it in /wallet/v1/confirmations with your pay password",
            }))))
        }
    }
}

pub async fn pay(
    State(state): State<AppState>,
    Extension(session): Extension<SessionToken>,
    key: Result<IdempotencyKeyHeader, ApiError>,
    req: Result<ApiJson<Pay>, ApiError>,
) -> Result<Response, ApiError> {
    let (key, req) = match (key, req) {
        (Ok(IdempotencyKeyHeader(key)), Ok(ApiJson(req))) => (key, req),
        // A stranger learns nothing about the request's shape: the session first.
        (Err(refused), _) | (_, Err(refused)) => return Err(session.before(&state, refused).await),
    };
    let now = state.clock().now();
    let (window_start, day_start) = risk_windows(&state, now);
    let read = state.store().session_pay_context(
        session.at(&state),
        &req.order_id,
        req.device_id.as_deref(),
        window_start,
        day_start,
    );
    let SessionPayContext { user, order } = match read.await {
        Ok(found) => found.ok_or_else(session_invalid)?,
        // Text the database refuses (PostgreSQL: a NUL) fails the read before the session
        // is known; a dead session still hears 401 first.
        Err(e) => return Err(session.before(&state, e.into()).await),
    };
    require_can_pay(&user)?;
    let PayContext { order, merchant_status, device, history } = order.ok_or_else(|| ApiError::not_found("order"))?;
    let already_mine = order.payer_user_id.as_deref() == Some(user.id.as_str());
    if !already_mine {
        payable(&order, now)?;
        if merchant_status == "FROZEN" {
            return Err(ApiError::new(ErrorCode::MerchantFrozen, "this merchant cannot receive payments now"));
        }
    }
    let (confirmed_by_device, history) =
        match authorisation(req.pay_password, req.device_id, req.device_ts, req.device_proof)? {
            Authorisation::PayPassword(p) => {
                verify_pay_password(&state, &user, &p).await?;
                // Read again after the password's hashing, which takes a while: payments
                // made meanwhile count.
                (None, None)
            }
            Authorisation::Device(c) => (Some(check_device(&state, &user, &order, &c, device)?), Some(history)),
        };
    if !already_mine && let Some(held) = risk_check(&state, &user, &order, &req.funding, history).await? {
        return Ok((StatusCode::ACCEPTED, held).into_response());
    }
    let funding = if req.funding == "balance" {
        Funding::Balance
    } else {
        let card = state.store().card(&user.id, &req.funding).await?.ok_or_else(|| ApiError::not_found("card"))?;
        let answer = if already_mine {
            // A retry of a payment already made: the store returns it without charging.
            paykit_store::payments::BankAnswer::Approved
        } else {
            state.bank().debit(&card.bank_token, order.amount, DebitPurpose::Payment, now).map_err(bank_error)?
        };
        Funding::Card { card_id: card.id, bank: answer }
    };
    let idempotency = key.map(|key| IdempotencyKey {
        scope: format!("payment:{}", user.id),
        key,
        request_digest: request_digest(&[&req.order_id, &req.funding]),
    });
    let paid = state
        .store()
        .pay_order(PayOrder {
            order_id: &order.id,
            user_id: &user.id,
            funding,
            confirmed_by_device: confirmed_by_device.as_deref(),
            idempotency,
            now,
        })
        .await?;
    Ok(payment_view(&state, &paid).await?.into_response())
}

async fn payment_view(
    state: &AppState,
    paid: &paykit_store::orders::Order,
) -> Result<Json<serde_json::Value>, ApiError> {
    let merchant = state.store().merchant_name(&paid.merchant_id).await?.unwrap_or_default();
    Ok(Json(json!({
        "order_id": paid.id, "status": paid.status.as_str(), "merchant_name": merchant, "amount": paid.amount.to_string(),
        "currency": paid.amount.currency().code(), "funding": if paid.funding.as_deref() == Some("balance") { "balance" } else { "card" },
        "paid_at": paid.paid_at.map(Timestamp::to_rfc3339),
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterDevice {
    name: String,
    confirm_payments: Option<bool>,
    pay_password: Option<String>,
}

pub async fn register_device(
    State(state): State<AppState>,
    Extension(who): Extension<WalletUser>,
    ApiJson(req): ApiJson<RegisterDevice>,
) -> Result<Response, ApiError> {
    let user = load_user(&who);
    check_text("name", &req.name, 1, 64)?;
    let confirm = req.confirm_payments.unwrap_or(false);
    if confirm {
        let p = req.pay_password.as_deref().ok_or_else(|| {
            ApiError::new(ErrorCode::MissingField, "pay_password is needed to enable device confirmation")
                .with("field", "pay_password")
        })?;
        verify_pay_password(&state, &user, p).await?;
    }
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).map_err(|_| ApiError::new(ErrorCode::InternalError, "no randomness"))?;
    let secret_b64 = BASE64.encode(secret);
    let device = state.store().create_device(&user.id, &req.name, &secret_b64, confirm, state.clock().now()).await?;
    Ok((
        StatusCode::CREATED,
        Json(
            json!({ "device_id": device.id, "device_secret": secret_b64, "confirm_payments": device.confirm_payments }),
        ),
    )
        .into_response())
}

pub async fn confirmations(
    State(state): State<AppState>,
    Extension(who): Extension<WalletUser>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let pending = state.store().pending_confirmations(&who.user.id, state.clock().now()).await?;
    let mut out = Vec::with_capacity(pending.len());
    for (id, order, expires_at) in pending {
        let merchant = state.store().merchant(&order.merchant_id).await?.map(|m| m.name).unwrap_or_default();
        out.push(json!({
            "confirmation_id": id, "order_id": order.id, "merchant_name": merchant, "amount": order.amount.to_string(),
            "currency": order.amount.currency().code(), "description": order.description, "expires_at": expires_at.to_rfc3339(),
        }));
    }
    Ok(Json(json!({ "confirmations": out })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Answer {
    action: String,
    pay_password: Option<String>,
    device_id: Option<String>,
    device_ts: Option<i64>,
    device_proof: Option<String>,
}

pub async fn answer_confirmation(
    State(state): State<AppState>,
    Extension(who): Extension<WalletUser>,
    Path(confirmation_id): Path<String>,
    ApiJson(req): ApiJson<Answer>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let user = load_user(&who);
    let accept = match req.action.as_str() {
        "confirm" => true,
        "decline" => false,
        _ => return Err(ApiError::invalid("action", "must be confirm or decline")),
    };
    if accept {
        require_can_pay(&user)?;
        let pending = state.store().pending_confirmations(&user.id, state.clock().now()).await?;
        let (_, order, _) = pending
            .into_iter()
            .find(|(id, _, _)| *id == confirmation_id)
            .ok_or_else(|| ApiError::new(ErrorCode::ConfirmationNotPending, "this confirmation is not pending"))?;
        match authorisation(req.pay_password, req.device_id, req.device_ts, req.device_proof)? {
            Authorisation::PayPassword(p) => verify_pay_password(&state, &user, &p).await?,
            Authorisation::Device(c) => {
                verify_device(&state, &user, &order, &c).await?;
            }
        }
    }
    let now = state.clock().now();
    let pending = state.store().pending_confirmation(&user.id, &confirmation_id, now).await?;
    if let Some(hold) = pending.filter(|p| p.kind == "risk_hold") {
        // A held payment: confirming makes the payment as first asked; nothing moved before.
        if !accept {
            state.store().close_hold(&hold.id, &user.id, false, now).await?;
            return Ok(Json(json!({ "confirmation_id": hold.id, "order_id": hold.order_id, "status": "DECLINED" })));
        }
        let held_order = state.store().order(&hold.order_id).await?.ok_or_else(|| ApiError::not_found("order"))?;
        if held_order.payer_user_id.as_deref() == Some(user.id.as_str()) {
            // Already paid (another hold, or a retry): close this one, charge nothing.
            state.store().close_hold(&hold.id, &user.id, true, now).await?;
            return Ok(Json(
                json!({ "confirmation_id": hold.id, "order_id": held_order.id, "status": held_order.status.as_str() }),
            ));
        }
        let funding_label = hold.funding.clone().unwrap_or_else(|| "balance".to_owned());
        let funding = if funding_label == "balance" {
            Funding::Balance
        } else {
            let card =
                state.store().card(&user.id, &funding_label).await?.ok_or_else(|| ApiError::not_found("card"))?;
            let order = state.store().order(&hold.order_id).await?.ok_or_else(|| ApiError::not_found("order"))?;
            let answer =
                state.bank().debit(&card.bank_token, order.amount, DebitPurpose::Payment, now).map_err(bank_error)?;
            Funding::Card { card_id: card.id, bank: answer }
        };
        let paid = state
            .store()
            .pay_order(PayOrder {
                order_id: &hold.order_id,
                user_id: &user.id,
                funding,
                confirmed_by_device: None,
                idempotency: None,
                now,
            })
            .await?;
        state.store().close_hold(&hold.id, &user.id, true, now).await?;
        return Ok(Json(json!({ "confirmation_id": hold.id, "order_id": paid.id, "status": paid.status.as_str() })));
    }
    let order = state.store().answer_confirmation(&confirmation_id, &user.id, accept, now).await?;
    Ok(Json(json!({ "confirmation_id": confirmation_id, "order_id": order.id, "status": order.status.as_str() })))
}

pub async fn alerts(
    State(state): State<AppState>,
    Extension(who): Extension<WalletUser>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let alerts = state.store().alerts(&who.user.id, 50).await?;
    let alerts: Vec<_> = alerts
        .into_iter()
        .map(|(kind, message, at)| json!({ "kind": kind, "message": message, "created_at": at.to_rfc3339() }))
        .collect();
    Ok(Json(json!({ "alerts": alerts })))
}
