//! `GET /v1/merchant`: the calling merchant's own profile.

use axum::Extension;
use axum::extract::State;
use serde::Serialize;

use crate::app::AppState;
use crate::auth::Caller;
use crate::error::ApiError;

#[derive(Serialize)]
pub struct MerchantProfile {
    merchant_id: String,
    name: String,
    notify_url: Option<String>,
    status: String,
    created_at: String,
    keys: Vec<KeyView>,
}

#[derive(Serialize)]
pub struct KeyView {
    key_id: String,
    status: String,
    created_at: String,
}

pub async fn profile(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<axum::Json<MerchantProfile>, ApiError> {
    let merchant_id = caller.merchant_id();
    let merchant = state.store().merchant(merchant_id).await?.ok_or_else(|| ApiError::not_found("merchant"))?;
    let keys = state.store().keys(merchant_id).await?;
    Ok(axum::Json(MerchantProfile {
        merchant_id: merchant.id,
        name: merchant.name,
        notify_url: merchant.notify_url,
        status: merchant.status,
        created_at: merchant.created_at.to_rfc3339(),
        keys: keys
            .into_iter()
            .map(|k| KeyView { key_id: k.key_id, status: k.status, created_at: k.created_at.to_rfc3339() })
            .collect(),
    }))
}
