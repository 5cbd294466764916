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
    #[error("tls_cert and tls_key must be given together")]
    TlsPair,
}

impl GatewayConfig {
    pub fn from_toml_file(path: &std::path::Path) -> Result<GatewayConfig, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.display().to_string(), source })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse { path: path.display().to_string(), source })
    }

    /// Checks what serde cannot: cross-field rules and parsable amounts.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.single_payment_limit_money()?;
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err(ConfigError::TlsPair);
        }
        Ok(())
    }

    pub fn single_payment_limit_money(&self) -> Result<Money, ConfigError> {
        Money::parse_positive(&self.single_payment_limit, Currency::Cny).map_err(ConfigError::Limit)
    }

    pub fn public_url(&self) -> String {
        self.public_url.clone().unwrap_or_else(|| {
            let scheme = if self.tls_cert.is_some() { "https" } else { "http" };
            format!("{scheme}://{}", self.listen)
        })
    }
}
