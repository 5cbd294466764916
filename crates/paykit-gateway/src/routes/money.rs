//! Wallet money beyond paying (the wallet-money features of the seed): freezing (挂失/冻结),
//! transfers (转账), red packets (红包), withdrawals and credit-card repayment (信用卡还款).

use axum::Extension;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use paykit_core::red_packet::{SplitError, split_fixed, split_lucky};
use paykit_core::time::Timestamp;
use paykit_core::{ErrorCode, Money};
use paykit_store::payments::IdempotencyKey;
use paykit_store::users::User;
use paykit_store::wallet_money::{Payee, Payout, RedPacket, RedPacketToMake, Transfer, TransferToMake};
use serde::Deserialize;
use serde_json::json;

use super::wallet::{load_user, require_can_pay, verify_pay_password};
use super::{check_text, parse_amount, request_digest};
use crate::app::AppState;
use crate::bank::{CreditPurpose, DebitPurpose};
use crate::error::ApiError;
use crate::extract::{ApiJson, IdempotencyKeyHeader};
use crate::ops_auth::Operator;
use crate::wallet_auth::WalletUser;

pub async fn freeze(
    State(state): State<AppState>,
    Extension(who): Extension<WalletUser>,
) -> Result<Json<serde_json::Value>, ApiError> {
    state
        .store()
        .set_frozen(
            "user",
            &who.user.id,
            true,
            &format!("consumer:{}", who.user.id),
            Some("reported lost"),
            state.clock().now(),
        )
        .await?;
    Ok(Json(json!({ "frozen": true })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Unfreeze {
    password: String,
    pay_password: String,
    name: String,
    id_number: String,
}

pub async fn unfreeze(
    State(state): State<AppState>,
    Extension(who): Extension<WalletUser>,
    ApiJson(req): ApiJson<Unfreeze>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let user = load_user(&who);
    let denied = || {
        ApiError::new(ErrorCode::UnfreezeDenied, "the login password, pay password or real-name details did not match")
    };
    let login_ok = state.passwords().verify(&req.password, &user.password_hash).await?;
    let pay_ok = match &user.pay_password_hash {
        Some(h) => state.passwords().verify(&req.pay_password, h).await?,
        None => false,
    };
    let id = req.id_number.trim().to_ascii_uppercase();
    let identity_ok = user.real_name.as_deref() == Some(req.name.trim())
        && user.id_number_digest.as_deref() == Some(&state.fingerprint(&id));
    if !(login_ok && pay_ok && identity_ok) {
        return Err(denied());
    }
    state
        .store()
        .set_frozen(
            "user",
            &user.id,
            false,
            &format!("consumer:{}", user.id),
            Some("unfrozen by the owner"),
            state.clock().now(),
        )
        .await?;
    Ok(Json(json!({ "frozen": false })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpsFreeze {
    party_kind: String,
    party_id: String,
    frozen: bool,
    reason: String,
}

pub async fn ops_freeze(
    State(state): State<AppState>,
    Extension(op): Extension<Operator>,
    ApiJson(req): ApiJson<OpsFreeze>,
) -> Result<Json<serde_json::Value>, ApiError> {
    check_text("reason", &req.reason, 1, 200)?;
    if !["user", "merchant", "biller"].contains(&req.party_kind.as_str()) {
        return Err(ApiError::invalid("party_kind", "user, merchant or biller"));
    }
    let actor = format!("operator:{}", op.name);
    if !state
        .store()
        .set_frozen(&req.party_kind, &req.party_id, req.frozen, &actor, Some(&req.reason), state.clock().now())
        .await?
    {
        return Err(ApiError::not_found(&req.party_kind));
    }
    Ok(Json(json!({ "party_kind": req.party_kind, "party_id": req.party_id, "frozen": req.frozen })))
}

pub async fn ops_freeze_audit(
    State(state): State<AppState>,
    Extension(_op): Extension<Operator>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let rows = state.store().freeze_audit(None).await?;
    let rows: Vec<_> = rows
        .into_iter()
        .map(|(kind, id, frozen, actor, reason, at)| {
            json!({ "party_kind": kind, "party_id": id, "frozen": frozen, "actor": actor, "reason": reason, "at": at.to_rfc3339() })
        })
        .collect();
    Ok(Json(json!({ "freezes": rows })))
}

fn transfer_view(t: &Transfer) -> serde_json::Value {
    json!({
        "transfer_id": t.id, "payee_kind": t.payee_kind, "amount": t.amount.to_string(), "currency": t.amount.currency().code(),
        "memo": t.memo, "status": t.status, "expires_at": t.expires_at.to_rfc3339(), "created_at": t.created_at.to_rfc3339(),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewTransfer {
    to_phone: Option<String>,
    to_merchant_id: Option<String>,
    amount: String,
    memo: Option<String>,
    pay_password: String,
}

/// Midnight (Beijing) at the start of `now`'s day: daily limits count from there.
fn day_start(now: Timestamp) -> Timestamp {
    let offset = 8 * 3600;
    Timestamp::from_unix_secs((now.unix_secs() + offset).div_euclid(86_400) * 86_400 - offset)
}

/// An `Idempotency-Key` scoped to one consumer and operation, with the request's digest.
fn idempotency(key: Option<String>, operation: &str, user_id: &str, parts: &[&str]) -> Option<IdempotencyKey> {
    key.map(|key| IdempotencyKey {
        scope: format!("{operation}:{user_id}"),
        key,
        request_digest: request_digest(parts),
    })
}

pub async fn create_transfer(
    State(state): State<AppState>,
    Extension(who): Extension<WalletUser>,
    IdempotencyKeyHeader(key): IdempotencyKeyHeader,
    ApiJson(req): ApiJson<NewTransfer>,
) -> Result<Response, ApiError> {
    let user = load_user(&who);
    require_can_pay(&user)?;
    let amount = parse_amount(&state, "amount", &req.amount)?;
    let memo = req.memo.unwrap_or_default();
    check_text("memo", &memo, 0, 50)?;
    let now = state.clock().now();
    let cfg = state.config();
    let daily = state.store().transferred_since(&user.id, day_start(now)).await?;
    if amount.minor_units() > cfg.amount(&cfg.transfer_single_limit).minor_units()
        || daily + amount.minor_units() > cfg.amount(&cfg.transfer_daily_limit).minor_units()
    {
        return Err(ApiError::new(ErrorCode::TransferLimitExceeded, "above the per-transfer or daily transfer limit"));
    }
    let payee_user;
    let payee = match (req.to_phone.as_deref(), req.to_merchant_id.as_deref()) {
        (Some(phone), None) if phone != user.phone => {
            if !paykit_core::wallet::is_valid_phone(phone) {
                return Err(ApiError::new(
                    ErrorCode::PhoneInvalid,
                    "to_phone is not an 11-digit mainland mobile number",
                ));
            }
            payee_user = state.store().user_by_phone(phone).await?;
            match &payee_user {
                Some(u) => Payee::User(&u.id),
                None => Payee::Phone(phone),
            }
        }
        (None, Some(merchant_id)) => {
            let merchant = state.store().merchant(merchant_id).await?.ok_or_else(|| ApiError::not_found("merchant"))?;
            if merchant.status == "FROZEN" {
                return Err(ApiError::new(ErrorCode::MerchantFrozen, "this merchant cannot receive money now"));
            }
            Payee::Merchant(merchant_id)
        }
        _ => {
            return Err(ApiError::new(
                ErrorCode::PayeeInvalid,
                "give exactly one of to_phone and to_merchant_id, not yourself",
            ));
        }
    };
    verify_pay_password(&state, &user, &req.pay_password).await?;
    let idem = idempotency(
        key,
        "transfer",
        &user.id,
        &[req.to_phone.as_deref().unwrap_or(""), req.to_merchant_id.as_deref().unwrap_or(""), &req.amount, &memo],
    );
    let t = state
        .store()
        .create_transfer(
            TransferToMake {
                payer: &user.id,
                payee,
                amount,
                memo: &memo,
                expires_at: now.plus_secs(cfg.claim_ttl_secs),
            },
            idem.as_ref(),
            now,
        )
        .await?;
    Ok((StatusCode::CREATED, Json(transfer_view(&t))).into_response())
}

pub async fn list_transfers(
    State(state): State<AppState>,
    Extension(who): Extension<WalletUser>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let user = load_user(&who);
    // Money sent to a phone number becomes claimable only after real-name verification.
    let phone = if user.real_name.is_some() { user.phone.as_str() } else { "" };
    let (outgoing, incoming) = state.store().transfers_for(&user.id, phone).await?;
    Ok(Json(json!({
        "outgoing": outgoing.iter().map(transfer_view).collect::<Vec<_>>(),
        "incoming": incoming.iter().map(transfer_view).collect::<Vec<_>>(),
    })))
}

pub async fn accept_transfer(
    State(state): State<AppState>,
    Extension(who): Extension<WalletUser>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let user = load_user(&who);
    if user.real_name.is_none() {
        return Err(ApiError::new(ErrorCode::RealNameRequired, "complete real-name verification to receive transfers"));
    }
    let t =
        state.store().accept_transfer(&id, &user.id, &user.phone, state.clock().now()).await.map_err(|e| match e {
            paykit_store::payments::PayError::ConfirmationNotPending => ApiError::new(
                ErrorCode::TransferNotPending,
                "this transfer is not waiting for you (accepted, returned, or someone else's)",
            ),
            other => other.into(),
        })?;
    Ok(Json(transfer_view(&t)))
}

fn packet_view(p: &RedPacket, viewer: &str) -> serde_json::Value {
    let mine = p.claimed.iter().find(|(u, _, _)| u == viewer).map(|(_, m, _)| m.to_string());
    json!({
        "red_packet_id": p.id, "kind": p.kind, "total": p.total.to_string(), "currency": p.total.currency().code(),
        "shares": p.share_count, "claimed": p.claimed.len(), "status": p.status, "memo": p.memo,
        "expires_at": p.expires_at.to_rfc3339(), "my_share": mine,
        "claimed_amounts": if p.sender_user_id == viewer { json!(p.claimed.iter().map(|(_, m, _)| m.to_string()).collect::<Vec<_>>()) } else { json!(null) },
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewPacket {
    kind: String,
    total: String,
    shares: i64,
    memo: Option<String>,
    pay_password: String,
}

pub async fn create_red_packet(
    State(state): State<AppState>,
    Extension(who): Extension<WalletUser>,
    IdempotencyKeyHeader(key): IdempotencyKeyHeader,
    ApiJson(req): ApiJson<NewPacket>,
) -> Result<Response, ApiError> {
    let user = load_user(&who);
    require_can_pay(&user)?;
    let total = Money::parse_positive(&req.total, paykit_core::Currency::Cny)
        .map_err(|e| ApiError::from(&e).with("field", "total"))?;
    let memo = req.memo.unwrap_or_else(|| "恭喜发财".to_owned());
    check_text("memo", &memo, 1, 30)?;
    let shares = match req.kind.as_str() {
        "fixed" => split_fixed(total.minor_units(), req.shares),
        "lucky" => split_lucky(total.minor_units(), req.shares, random_u64),
        _ => return Err(ApiError::invalid("kind", "fixed or lucky")),
    }
    .map_err(|e: SplitError| {
        let field = if e == SplitError::ShareCount { "shares" } else { "total" };
        ApiError::new(ErrorCode::RedPacketInvalid, e.to_string()).with("field", field)
    })?;
    verify_pay_password(&state, &user, &req.pay_password).await?;
    let now = state.clock().now();
    let packet = state
        .store()
        .create_red_packet(
            RedPacketToMake {
                sender: &user.id,
                kind: &req.kind,
                shares: &shares,
                memo: &memo,
                expires_at: now.plus_secs(state.config().claim_ttl_secs),
            },
            idempotency(key, "red_packet", &user.id, &[&req.kind, &req.total, &req.shares.to_string(), &memo]).as_ref(),
            now,
        )
        .await?;
    Ok((StatusCode::CREATED, Json(packet_view(&packet, &user.id))).into_response())
}

fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).expect("the operating system's random generator is available");
    u64::from_le_bytes(b)
}

pub async fn get_red_packet(
    State(state): State<AppState>,
    Extension(who): Extension<WalletUser>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let p = state.store().red_packet(&id).await?.ok_or_else(|| ApiError::not_found("red packet"))?;
    Ok(Json(packet_view(&p, &who.user.id)))
}

pub async fn claim_red_packet(
    State(state): State<AppState>,
    Extension(who): Extension<WalletUser>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let user = load_user(&who);
    if user.real_name.is_none() {
        return Err(ApiError::new(ErrorCode::RealNameRequired, "complete real-name verification to receive money"));
    }
    state.store().red_packet(&id).await?.ok_or_else(|| ApiError::not_found("red packet"))?;
    let amount = state
        .store()
        .claim_red_packet(&id, &user.id, state.clock().now())
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::RedPacketEmpty, "no share is left, or the red packet expired"))?;
    Ok(Json(json!({ "red_packet_id": id, "amount": amount.to_string(), "currency": amount.currency().code() })))
}

fn payout_view(p: &Payout) -> serde_json::Value {
    json!({
        "id": p.id, "type": p.kind, "card_id": p.card_id, "funding": p.funding, "amount": p.amount.to_string(), "fee": p.fee.to_string(),
        "currency": p.amount.currency().code(), "status": p.status, "created_at": p.created_at.to_rfc3339(),
        "settled_at": p.settled_at.map(Timestamp::to_rfc3339),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Withdraw {
    card_id: String,
    amount: String,
    pay_password: String,
}

async fn payout_card(state: &AppState, user: &User, card_id: &str) -> Result<paykit_store::users::Card, ApiError> {
    state.store().card(&user.id, card_id).await?.ok_or_else(|| ApiError::not_found("card"))
}

pub async fn withdraw(
    State(state): State<AppState>,
    Extension(who): Extension<WalletUser>,
    IdempotencyKeyHeader(key): IdempotencyKeyHeader,
    ApiJson(req): ApiJson<Withdraw>,
) -> Result<Response, ApiError> {
    let user = load_user(&who);
    require_can_pay(&user)?;
    let amount = parse_amount(&state, "amount", &req.amount)?;
    let card = payout_card(&state, &user, &req.card_id).await?;
    state
        .bank()
        .credit(&card.bank_token, amount, CreditPurpose::Withdrawal)
        .map_err(|r| ApiError::new(ErrorCode::from(r), r.to_string()))?;
    verify_pay_password(&state, &user, &req.pay_password).await?;
    let cfg = state.config();
    let quota_left =
        cfg.amount(&cfg.withdrawal_free_quota).minor_units() - state.store().withdrawn_total(&user.id).await?;
    let fee =
        Money::from_minor(paykit_core::fees::withdrawal_fee_minor(amount.minor_units(), quota_left), amount.currency())
            .map_err(|e| ApiError::from(&e))?;
    let now = state.clock().now();
    let p = state
        .store()
        .create_payout(
            "withdrawal",
            &user.id,
            &card.id,
            "balance",
            amount,
            fee,
            now.plus_secs(cfg.sandbox_payout_secs),
            idempotency(key, "withdrawal", &user.id, &[&req.card_id, &req.amount]).as_ref(),
            now,
        )
        .await?;
    Ok((StatusCode::ACCEPTED, Json(payout_view(&p))).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Repay {
    card_id: String,
    amount: String,
    funding: String,
    pay_password: String,
}

pub async fn repay(
    State(state): State<AppState>,
    Extension(who): Extension<WalletUser>,
    IdempotencyKeyHeader(key): IdempotencyKeyHeader,
    ApiJson(req): ApiJson<Repay>,
) -> Result<Response, ApiError> {
    let user = load_user(&who);
    require_can_pay(&user)?;
    let amount = parse_amount(&state, "amount", &req.amount)?;
    let card = payout_card(&state, &user, &req.card_id).await?;
    let bank_error = |r: crate::bank::BankRefusal| ApiError::new(ErrorCode::from(r), r.to_string());
    state.bank().credit(&card.bank_token, amount, CreditPurpose::Repayment).map_err(bank_error)?;
    let now = state.clock().now();
    if req.funding != "balance" {
        let debit = payout_card(&state, &user, &req.funding).await?;
        if debit.kind != "debit" {
            return Err(ApiError::new(ErrorCode::CardNotSupported, "repay from the balance or a debit card"));
        }
        verify_pay_password(&state, &user, &req.pay_password).await?;
        state.bank().debit(&debit.bank_token, amount, DebitPurpose::Payment, now).map_err(bank_error)?;
    } else {
        verify_pay_password(&state, &user, &req.pay_password).await?;
    }
    let zero = Money::zero(amount.currency());
    let settle_at = now.plus_secs(state.config().sandbox_payout_secs);
    let p = state
        .store()
        .create_payout(
            "repayment",
            &user.id,
            &card.id,
            &req.funding,
            amount,
            zero,
            settle_at,
            idempotency(key, "repayment", &user.id, &[&req.card_id, &req.amount, &req.funding]).as_ref(),
            now,
        )
        .await?;
    Ok((StatusCode::ACCEPTED, Json(payout_view(&p))).into_response())
}

pub async fn get_payout(
    State(state): State<AppState>,
    Extension(who): Extension<WalletUser>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let p =
        state.store().payout(&who.user.id, &id).await?.ok_or_else(|| ApiError::not_found("withdrawal or repayment"))?;
    Ok(Json(payout_view(&p)))
}

pub async fn ops_risk_alerts(
    State(state): State<AppState>,
    Extension(_op): Extension<Operator>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let alerts = state.store().risk_alerts(200).await?;
    let alerts: Vec<_> = alerts
        .into_iter()
        .map(|(user, kind, message, at)| json!({ "user_id": user, "kind": kind, "message": message, "at": at.to_rfc3339() }))
        .collect();
    Ok(Json(json!({ "alerts": alerts })))
}
