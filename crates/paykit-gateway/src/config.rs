//! Gateway settings: defaults, then an optional TOML file, then command-line flags and
//! environment (applied by the binary).

use std::net::SocketAddr;
use std::path::PathBuf;

use paykit_core::{Currency, Money};
use serde::Deserialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Sandbox bank, sandbox clock, open wallet sign-up. The default: everything a merchant
    /// needs to try the kit. Every response says so in a `Paykit-Mode` header.
    Sandbox,
    /// Real money: sandbox-only endpoints are off.
    Production,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Sandbox => "sandbox",
            Mode::Production => "production",
        }
    }
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "sandbox" => Ok(Mode::Sandbox),
            "production" => Ok(Mode::Production),
            _ => Err(format!("mode must be sandbox or production, not {s:?}")),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayConfig {
    pub listen: SocketAddr,
    pub database_url: String,
    pub mode: Mode,
    /// The URL clients reach this gateway at, used in `code_url`s. Defaults to
    /// `http(s)://LISTEN`.
    pub public_url: Option<String>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// The largest single payment, in CNY (`"50000.00"`).
    pub single_payment_limit: String,
    /// Largest request body accepted on the signed API, in bytes.
    pub max_body_bytes: usize,
    pub database_max_connections: u32,
    /// Payment-code payments above this wait for the consumer's confirmation.
    pub micropay_confirm_above: String,
    /// How long a consumer has to confirm such a payment.
    pub confirmation_ttl_secs: i64,
    /// How long a dynamic QR order stays payable when the merchant gives no expire_at.
    pub order_ttl_secs: i64,
    /// How long a wallet session lasts.
    pub session_ttl_secs: i64,
    /// Failed payment codes a merchant may send in `code_failure_window_secs` before
    /// further codes are refused with 429.
    pub merchant_code_failure_limit: i64,
    /// Failed codes of one device in the window before it is suspended.
    pub device_code_failure_limit: i64,
    pub code_failure_window_secs: i64,
    /// How long the sandbox bank's slow card (`6222000000001197`) takes to answer.
    pub sandbox_slow_card_secs: i64,
    /// How long a card refund takes at the sandbox bank.
    pub sandbox_refund_secs: i64,
    /// How long one callback attempt may take.
    pub callback_timeout_secs: i64,
    /// How long a gateway process holds a claimed delivery before another may take it.
    pub delivery_lease_secs: i64,
    /// Extra PEM CA certificates trusted for HTTPS callbacks (besides the system's).
    pub callback_ca_file: Option<PathBuf>,
    /// Largest single transfer, and the most one wallet may transfer in a day.
    pub transfer_single_limit: String,
    pub transfer_daily_limit: String,
    /// How long a transfer or red packet waits to be accepted or claimed before it returns.
    pub claim_ttl_secs: i64,
    /// Lifetime withdrawals free of fee.
    pub withdrawal_free_quota: String,
    /// How long the sandbox bank takes to settle a withdrawal or card repayment.
    pub sandbox_payout_secs: i64,
    /// Risk rules (`[risk]` table): each `{ threshold = N, action = "allow" | "hold" | "block" }`.
    pub risk: paykit_core::risk::RiskRules,
    /// Group concurrent payments into shared commits: on SQLite every write, where it
    /// multiplies throughput; on PostgreSQL the balance payments it settles together
    /// (ARCHITECTURE.md, "Settled together"). On unless set to false.
    pub group_commit: bool,
    /// The most writes one shared commit takes (at most [`MAX_GROUP_COMMIT_BATCH`]).
    pub group_commit_max_batch: usize,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            database_url: "sqlite://data/paykit.db".to_owned(),
            mode: Mode::Sandbox,
            public_url: None,
            tls_cert: None,
            tls_key: None,
            single_payment_limit: "50000.00".to_owned(),
            max_body_bytes: 16 * 1024 * 1024,
            database_max_connections: 16,
            micropay_confirm_above: "1000.00".to_owned(),
            confirmation_ttl_secs: 300,
            order_ttl_secs: 2 * 3600,
            session_ttl_secs: 12 * 3600,
            merchant_code_failure_limit: 20,
            device_code_failure_limit: 5,
            code_failure_window_secs: 600,
            sandbox_slow_card_secs: 30,
            sandbox_refund_secs: 60,
            callback_timeout_secs: 10,
            delivery_lease_secs: 60,
            callback_ca_file: None,
            transfer_single_limit: "50000.00".to_owned(),
            transfer_daily_limit: "200000.00".to_owned(),
            claim_ttl_secs: 24 * 3600,
            withdrawal_free_quota: "1000.00".to_owned(),
            sandbox_payout_secs: 30,
            risk: paykit_core::risk::RiskRules::default(),
            group_commit: true,
            group_commit_max_batch: 64,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("config file {path}: {source}")]
    Parse { path: String, source: toml::de::Error },
    #[error("single_payment_limit: {0}")]
    Limit(paykit_core::MoneyError),
    #[error("micropay_confirm_above: {0}")]
    Threshold(paykit_core::MoneyError),
    #[error("{0}: {1}")]
    Amount(&'static str, paykit_core::MoneyError),
    #[error("{0} must be positive")]
    NotPositive(&'static str),
    #[error("production mode needs a real bank connector, and this build has only the sandbox bank")]
    NoBankConnector,
    #[error("delivery_lease_secs must be longer than callback_timeout_secs")]
    LeaseTooShort,
    #[error("tls_cert and tls_key must be given together")]
    TlsPair,
    #[error("group_commit_max_batch must be at most {MAX_GROUP_COMMIT_BATCH}")]
    BatchTooLarge,
}

/// The most payments one shared commit may take: a batch's new rows go to PostgreSQL as one
/// statement of 39 values a payment, and a statement takes at most 65,535.
pub const MAX_GROUP_COMMIT_BATCH: usize = 1_000;

impl GatewayConfig {
    pub fn from_toml_file(path: &std::path::Path) -> Result<GatewayConfig, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.display().to_string(), source })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse { path: path.display().to_string(), source })
    }

    /// Checks what serde cannot: cross-field rules and parsable amounts.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.single_payment_limit_money()?;
        self.micropay_confirm_above_money()?;
        for (name, value) in [
            ("transfer_single_limit", &self.transfer_single_limit),
            ("transfer_daily_limit", &self.transfer_daily_limit),
            ("withdrawal_free_quota", &self.withdrawal_free_quota),
        ] {
            Money::parse(value, Currency::Cny).map_err(|e| ConfigError::Amount(name, e))?;
        }
        for (name, v) in [
            ("confirmation_ttl_secs", self.confirmation_ttl_secs),
            ("order_ttl_secs", self.order_ttl_secs),
            ("session_ttl_secs", self.session_ttl_secs),
            ("merchant_code_failure_limit", self.merchant_code_failure_limit),
            ("device_code_failure_limit", self.device_code_failure_limit),
            ("code_failure_window_secs", self.code_failure_window_secs),
            ("sandbox_slow_card_secs", self.sandbox_slow_card_secs),
            ("sandbox_refund_secs", self.sandbox_refund_secs),
            ("callback_timeout_secs", self.callback_timeout_secs),
            ("delivery_lease_secs", self.delivery_lease_secs),
            ("claim_ttl_secs", self.claim_ttl_secs),
            ("sandbox_payout_secs", self.sandbox_payout_secs),
            ("group_commit_max_batch", self.group_commit_max_batch as i64),
        ] {
            if v <= 0 {
                return Err(ConfigError::NotPositive(name));
            }
        }
        if self.group_commit_max_batch > MAX_GROUP_COMMIT_BATCH {
            return Err(ConfigError::BatchTooLarge);
        }
        if self.mode == Mode::Production {
            return Err(ConfigError::NoBankConnector);
        }
        if self.delivery_lease_secs <= self.callback_timeout_secs {
            return Err(ConfigError::LeaseTooShort);
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err(ConfigError::TlsPair);
        }
        Ok(())
    }

    pub fn single_payment_limit_money(&self) -> Result<Money, ConfigError> {
        Money::parse_positive(&self.single_payment_limit, Currency::Cny).map_err(ConfigError::Limit)
    }

    pub fn micropay_confirm_above_money(&self) -> Result<Money, ConfigError> {
        Money::parse_positive(&self.micropay_confirm_above, Currency::Cny).map_err(ConfigError::Threshold)
    }

    /// A validated amount setting (call after [`GatewayConfig::validate`]).
    pub fn amount(&self, value: &str) -> Money {
        Money::parse(value, Currency::Cny).unwrap_or_else(|_| Money::zero(Currency::Cny))
    }

    pub fn public_url(&self) -> String {
        self.public_url.clone().unwrap_or_else(|| {
            let scheme = if self.tls_cert.is_some() { "https" } else { "http" };
            format!("{scheme}://{}", self.listen)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::{ConfigError, GatewayConfig, MAX_GROUP_COMMIT_BATCH};

    #[test]
    fn a_batch_larger_than_one_statement_can_carry_is_refused() {
        let mut config = GatewayConfig { group_commit_max_batch: MAX_GROUP_COMMIT_BATCH, ..GatewayConfig::default() };
        assert!(config.validate().is_ok());
        config.group_commit_max_batch = MAX_GROUP_COMMIT_BATCH + 1;
        assert!(matches!(config.validate(), Err(ConfigError::BatchTooLarge)));
    }
}
