//! The bridge's TOML configuration.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::scan::Framing;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub scanner: ScannerConfig,
    pub printer: PrinterConfig,
    pub gateway: GatewayConfig,
    pub counter: CounterConfig,
    /// Product barcodes the counter knows, for item sales.
    #[serde(default)]
    pub products: Vec<Product>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScannerConfig {
    pub port: String,
    #[serde(default = "default_baud")]
    pub baud: u32,
    #[serde(flatten)]
    pub framing: Framing,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrinterConfig {
    pub port: String,
    #[serde(default = "default_baud")]
    pub baud: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    pub url: String,
    pub merchant_id: String,
    pub key_id: String,
    /// The API secret, or `api_secret_file` naming a file that holds it.
    pub api_secret: Option<String>,
    pub api_secret_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CounterConfig {
    pub terminal_id: String,
    pub store_name: String,
    #[serde(default)]
    pub store_address: String,
    /// Where the receipt queue and the order sequence live.
    pub state_dir: PathBuf,
    /// How long to wait for a consumer to confirm a large payment before reversing it.
    #[serde(default = "default_userpaying_limit")]
    pub userpaying_limit_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Product {
    pub barcode: String,
    pub name: String,
    pub price: String,
}

fn default_baud() -> u32 {
    9600
}

fn default_userpaying_limit() -> u64 {
    60
}

impl Config {
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        let text = std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
        let config: Config = toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        if config.gateway.api_secret.is_none() == config.gateway.api_secret_file.is_none() {
            anyhow::bail!("[gateway] needs exactly one of api_secret and api_secret_file");
        }
        Ok(config)
    }

    pub fn api_secret(&self) -> anyhow::Result<String> {
        match (&self.gateway.api_secret, &self.gateway.api_secret_file) {
            (Some(s), _) => Ok(s.clone()),
            (None, Some(path)) => Ok(std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?
                .trim()
                .to_owned()),
            (None, None) => anyhow::bail!("no API secret configured"),
        }
    }
}
