//! Sandbox helpers: drive the wallet's core paths (`/wallet/v1/*`) the way a consumer's
//! phone would, so a merchant can test checkout end to end without one. Sandbox mode only.
//!
//! ```no_run
//! # async fn run() -> Result<(), paykit_sdk::Error> {
//! use paykit_sdk::sandbox::Wallet;
//!
//! let wallet = Wallet::sign_up("http://127.0.0.1:8080", "13900001111", "张三", "11010519491231002X").await?;
//! wallet.top_up("100.00").await?;
//! let preview = wallet.scan("http://127.0.0.1:8080/q/…").await?;
//! wallet.pay(preview["order_id"].as_str().unwrap()).await?;
//! # Ok(()) }
//! ```

use serde_json::{Value, json};

use crate::Error;

/// A sandbox consumer: registered, verified, with pay password `135790` and the always-good
/// test card `6222000000000009` bound.
#[derive(Debug, Clone)]
pub struct Wallet {
    base: String,
    token: String,
    card_id: String,
    http: reqwest::Client,
}

/// The pay password sandbox wallets use.
pub const PAY_PASSWORD: &str = "135790";

impl Wallet {
    /// Registers `phone`, verifies the real name and ID number, sets the pay password and
    /// binds the always-good test card.
    pub async fn sign_up(base_url: &str, phone: &str, name: &str, id_number: &str) -> Result<Wallet, Error> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::new();
        let base = base_url.trim_end_matches('/').to_owned();
        let creds = json!({ "phone": phone, "password": "sandbox-password" });
        call(&http, &base, "POST", "/wallet/v1/users", None, &creds).await?;
        let session = call(&http, &base, "POST", "/wallet/v1/sessions", None, &creds).await?;
        let token = session["token"].as_str().ok_or_else(|| Error::Decode("no token".into()))?.to_owned();
        let t = Some(token.as_str());
        call(&http, &base, "POST", "/wallet/v1/real-name", t, &json!({ "name": name, "id_number": id_number })).await?;
        call(&http, &base, "PUT", "/wallet/v1/pay-password", t, &json!({ "pay_password": PAY_PASSWORD })).await?;
        let card = call(
            &http,
            &base,
            "POST",
            "/wallet/v1/cards",
            t,
            &json!({ "card_number": "6222000000000009", "holder_name": name }),
        )
        .await?;
        let card_id = card["card_id"].as_str().ok_or_else(|| Error::Decode("no card_id".into()))?.to_owned();
        Ok(Wallet { base, token, card_id, http })
    }

    /// Tops up the balance from the test card.
    pub async fn top_up(&self, amount: &str) -> Result<Value, Error> {
        let body = json!({ "card_id": self.card_id, "amount": amount, "pay_password": PAY_PASSWORD });
        self.call("POST", "/wallet/v1/top-ups", &body).await
    }

    /// "Scans" a `code_url`: the preview (order id, merchant, amount, description).
    pub async fn scan(&self, code_url: &str) -> Result<Value, Error> {
        self.call("POST", "/wallet/v1/scans", &json!({ "code_url": code_url })).await
    }

    /// Pays an order from the balance with the pay password.
    pub async fn pay(&self, order_id: &str) -> Result<Value, Error> {
        let body = json!({ "order_id": order_id, "funding": "balance", "pay_password": PAY_PASSWORD });
        self.call("POST", "/wallet/v1/payments", &body).await
    }

    /// Asks the merchant for a refund of an order paid from this wallet.
    pub async fn request_refund(&self, order_id: &str, reason: &str) -> Result<Value, Error> {
        self.call("POST", "/wallet/v1/refund-requests", &json!({ "order_id": order_id, "reason": reason })).await
    }

    /// Registers a device that shows payment codes: `device_id` and `device_secret`.
    pub async fn register_device(&self, name: &str) -> Result<Value, Error> {
        self.call("POST", "/wallet/v1/devices", &json!({ "name": name })).await
    }

    /// The balance, e.g. `"87.70"`.
    pub async fn balance(&self) -> Result<String, Error> {
        let v = call(&self.http, &self.base, "GET", "/wallet/v1/balance", Some(&self.token), &Value::Null).await?;
        v["balance"].as_str().map(str::to_owned).ok_or_else(|| Error::Decode("no balance".into()))
    }

    async fn call(&self, method: &str, path: &str, body: &Value) -> Result<Value, Error> {
        call(&self.http, &self.base, method, path, Some(&self.token), body).await
    }
}

async fn call(
    http: &reqwest::Client,
    base: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &Value,
) -> Result<Value, Error> {
    let method = reqwest::Method::from_bytes(method.as_bytes()).map_err(|e| Error::Invalid(e.to_string()))?;
    let mut request = http.request(method.clone(), format!("{base}{path}"));
    if let Some(t) = token {
        request = request.bearer_auth(t);
    }
    if method != reqwest::Method::GET {
        request = request.json(body);
    }
    let response = request.send().await.map_err(|e| Error::Network(e.to_string()))?;
    let status = response.status().as_u16();
    let value: Value = response.json().await.map_err(|e| Error::Decode(e.to_string()))?;
    if status >= 400 {
        return Err(Error::Api {
            status,
            code: value["code"].as_str().unwrap_or("UNKNOWN").to_owned(),
            message: value["message"].as_str().unwrap_or("").to_owned(),
            request_id: value["request_id"].as_str().map(str::to_owned),
        });
    }
    Ok(value)
}
