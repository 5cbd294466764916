pub mod bills;
pub mod health;
pub mod merchant;
pub mod money;
pub mod orders;
pub mod refunds;
pub mod wallet;

use paykit_core::{Currency, ErrorCode, Money};
use sha2::{Digest, Sha256};

use crate::app::AppState;
use crate::error::ApiError;

/// Parses a positive CNY amount within the single-payment limit.
pub(crate) fn parse_amount(state: &AppState, field: &str, text: &str) -> Result<Money, ApiError> {
    let amount = Money::parse_positive(text, Currency::Cny).map_err(|e| ApiError::from(&e).with("field", field))?;
    if amount.minor_units() > state.single_payment_limit().minor_units() {
        return Err(ApiError::new(
            ErrorCode::AmountTooLarge,
            format!("{field} is above the single-payment limit of {}", state.single_payment_limit()),
        )
        .with("field", field));
    }
    Ok(amount)
}

/// Only CNY is settled today.
pub(crate) fn parse_currency(currency: Option<&str>) -> Result<Currency, ApiError> {
    match currency {
        None | Some("CNY") => Ok(Currency::Cny),
        Some(other) => Err(ApiError::new(
            ErrorCode::CurrencyUnsupported,
            format!("currency {other:?} is not settled here; use CNY"),
        )
        .with("field", "currency")),
    }
}

/// A text field of bounded length (in characters), trimmed of nothing: what was sent.
pub(crate) fn check_text(field: &str, value: &str, min: usize, max: usize) -> Result<(), ApiError> {
    let n = value.chars().count();
    if n < min || n > max || value.chars().any(char::is_control) {
        return Err(ApiError::invalid(field, format!("must be {min} to {max} characters without control characters")));
    }
    Ok(())
}

/// A digest of the request fields that identify an idempotent request.
pub(crate) fn request_digest(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p.as_bytes());
    }
    hex::encode(h.finalize())
}

/// `created_at_us:id` cursors for newest-first pages.
pub(crate) fn parse_cursor(cursor: Option<&str>) -> Result<Option<(paykit_core::time::Timestamp, String)>, ApiError> {
    let Some(c) = cursor else { return Ok(None) };
    let (t, id) =
        c.split_once(':').ok_or_else(|| ApiError::invalid("cursor", "use next_cursor from the previous page"))?;
    let t: i64 = t.parse().map_err(|_| ApiError::invalid("cursor", "use next_cursor from the previous page"))?;
    Ok(Some((paykit_core::time::Timestamp::from_unix_micros(t), id.to_owned())))
}

pub(crate) fn parse_time(field: &str, value: Option<&str>) -> Result<Option<paykit_core::time::Timestamp>, ApiError> {
    value.map(|v| paykit_core::time::Timestamp::parse_rfc3339(v).map_err(|e| ApiError::invalid(field, e))).transpose()
}

pub(crate) fn parse_limit(limit: Option<u32>) -> Result<i64, ApiError> {
    match limit {
        None => Ok(20),
        Some(n @ 1..=100) => Ok(i64::from(n)),
        Some(_) => Err(ApiError::invalid("limit", "must be 1 to 100")),
    }
}
