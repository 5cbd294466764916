use std::time::Duration;

use paykit_core::signing::{AuthHeader, PartyKind, canonical_request, sign};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Redacted};
use crate::types::*;

/// Who signs: a merchant or a biller, with one of its API keys.
#[derive(Clone)]
pub struct Credentials {
    kind: PartyKind,
    party_id: String,
    key_id: String,
    secret: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("party_id", &self.party_id)
            .field("key_id", &self.key_id)
            .field("secret", &Redacted(&self.secret))
            .finish()
    }
}

impl Credentials {
    /// A merchant's key, as `paykit merchant create` printed it.
    pub fn merchant(
        merchant_id: impl Into<String>,
        key_id: impl Into<String>,
        api_secret: impl Into<String>,
    ) -> Credentials {
        Credentials {
            kind: PartyKind::Merchant,
            party_id: merchant_id.into(),
            key_id: key_id.into(),
            secret: api_secret.into(),
        }
    }

    /// A biller's key, as `paykit biller create` printed it.
    pub fn biller(
        biller_id: impl Into<String>,
        key_id: impl Into<String>,
        api_secret: impl Into<String>,
    ) -> Credentials {
        Credentials {
            kind: PartyKind::Biller,
            party_id: biller_id.into(),
            key_id: key_id.into(),
            secret: api_secret.into(),
        }
    }

    /// The API secret, for verifying callbacks.
    pub fn secret(&self) -> &str {
        &self.secret
    }
}

/// How hard to retry network errors and 5xx answers.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts in all (1 = no retry).
    pub attempts: u32,
    /// Wait before the first retry; doubled each time up to `max_backoff`.
    pub first_backoff: Duration,
    /// The longest wait between attempts.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy { attempts: 8, first_backoff: Duration::from_millis(100), max_backoff: Duration::from_secs(2) }
    }
}

/// A client for one merchant or biller. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Client {
    base: String,
    credentials: Credentials,
    http: reqwest::Client,
    retry: RetryPolicy,
}

fn new_nonce() -> String {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("the operating system's random generator is available");
    hex::encode(bytes)
}

fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

impl Client {
    /// A client for the gateway at `base_url` (`https://…` or `http://…`), with a 10 s
    /// timeout per attempt and the default [`RetryPolicy`].
    pub fn new(base_url: &str, credentials: Credentials) -> Result<Client, Error> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| Error::Invalid(e.to_string()))?;
        Client::with_http(base_url, credentials, http)
    }

    /// A client over your own `reqwest::Client` (for example one trusting a private CA).
    pub fn with_http(base_url: &str, credentials: Credentials, http: reqwest::Client) -> Result<Client, Error> {
        if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
            return Err(Error::Invalid(format!("base URL {base_url:?} must start with http:// or https://")));
        }
        Ok(Client { base: base_url.trim_end_matches('/').to_owned(), credentials, http, retry: RetryPolicy::default() })
    }

    /// Replaces the retry policy.
    pub fn retry_policy(mut self, retry: RetryPolicy) -> Client {
        self.retry = retry;
        self
    }

    /// The credentials this client signs with.
    pub fn credentials(&self) -> &Credentials {
        &self.credentials
    }

    /// Sends a signed request, retrying network errors and 5xx answers. Each attempt is
    /// signed afresh (new timestamp and nonce) over the same body.
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<(Vec<u8>, &str)>,
    ) -> Result<reqwest::Response, Error> {
        let mut backoff = self.retry.first_backoff;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = self.send_once(method.clone(), path, body.as_ref().map(|(b, t)| (b.as_slice(), *t))).await;
            let retry = match &result {
                Ok(r) => r.status().is_server_error(),
                Err(e) => e.is_retryable(),
            };
            if !retry || attempt >= self.retry.attempts {
                return match result {
                    Ok(r) if r.status().is_server_error() || r.status().is_client_error() => Err(api_error(r).await),
                    other => other,
                };
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(self.retry.max_backoff);
        }
    }

    async fn send_once(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<(&[u8], &str)>,
    ) -> Result<reqwest::Response, Error> {
        let (timestamp, nonce) = (unix_now(), new_nonce());
        let bytes = body.map_or(&[][..], |(b, _)| b);
        let signature = sign(
            self.credentials.secret.as_bytes(),
            &canonical_request(method.as_str(), path, timestamp, &nonce, bytes),
        );
        let header = AuthHeader {
            party_kind: self.credentials.kind,
            party_id: self.credentials.party_id.clone(),
            key_id: self.credentials.key_id.clone(),
            timestamp,
            nonce,
            signature,
        }
        .render();
        let mut request = self.http.request(method, format!("{}{path}", self.base)).header("authorization", header);
        if let Some((b, content_type)) = body {
            request = request.header("content-type", content_type).body(b.to_vec());
        }
        request.send().await.map_err(|e| Error::Network(e.to_string()))
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> Result<T, Error> {
        let body = match body {
            Some(b) => Some((serde_json::to_vec(b).map_err(|e| Error::Invalid(e.to_string()))?, "application/json")),
            None => None,
        };
        let response = self.send(method, path, body).await?;
        response.json().await.map_err(|e| Error::Decode(e.to_string()))
    }

    async fn text(&self, path: &str) -> Result<String, Error> {
        self.send(reqwest::Method::GET, path, None).await?.text().await.map_err(|e| Error::Decode(e.to_string()))
    }

    /// `GET /v1/merchant`.
    pub async fn merchant(&self) -> Result<Merchant, Error> {
        self.call(reqwest::Method::GET, "/v1/merchant", None::<&()>).await
    }

    /// `POST /v1/orders`: creates a dynamic-QR order (the same `out_trade_no` and body
    /// return the same order).
    pub async fn create_order(&self, order: &NewOrder) -> Result<Order, Error> {
        self.call(reqwest::Method::POST, "/v1/orders", Some(order)).await
    }

    /// `GET /v1/orders/{order_id}`.
    pub async fn order(&self, order_id: &str) -> Result<Order, Error> {
        self.call(reqwest::Method::GET, &format!("/v1/orders/{}", segment(order_id)), None::<&()>).await
    }

    /// `GET /v1/orders/by-out-trade-no/{out_trade_no}`.
    pub async fn order_by_out_trade_no(&self, out_trade_no: &str) -> Result<Order, Error> {
        self.call(reqwest::Method::GET, &format!("/v1/orders/by-out-trade-no/{}", segment(out_trade_no)), None::<&()>)
            .await
    }

    /// `POST /v1/orders/{order_id}/close`.
    pub async fn close_order(&self, order_id: &str) -> Result<Order, Error> {
        self.call(reqwest::Method::POST, &format!("/v1/orders/{}/close", segment(order_id)), None::<&()>).await
    }

    /// `POST /v1/orders/{order_id}/print`: asks your counter bridge to print a paid
    /// order's receipt.
    pub async fn request_print(&self, order_id: &str) -> Result<PrintRequest, Error> {
        self.call(reqwest::Method::POST, &format!("/v1/orders/{}/print", segment(order_id)), None::<&()>).await
    }

    /// `POST /v1/print-requests/claim`: the waiting print requests, oldest first; each is
    /// handed out once. The counter bridge polls this.
    pub async fn claim_print_requests(&self) -> Result<Vec<PrintRequest>, Error> {
        let list: crate::types::PrintRequests =
            self.call(reqwest::Method::POST, "/v1/print-requests/claim", None::<&()>).await?;
        Ok(list.print_requests)
    }

    /// `POST /v1/orders/{order_id}/reverse` (payment-code orders).
    pub async fn reverse_order(&self, order_id: &str) -> Result<Order, Error> {
        self.call(reqwest::Method::POST, &format!("/v1/orders/{}/reverse", segment(order_id)), None::<&()>).await
    }

    /// `GET /v1/orders/{order_id}/qr.png`: the order's QR code as a PNG.
    pub async fn order_qr_png(&self, order_id: &str) -> Result<Vec<u8>, Error> {
        let r = self.send(reqwest::Method::GET, &format!("/v1/orders/{}/qr.png", segment(order_id)), None).await?;
        r.bytes().await.map(|b| b.to_vec()).map_err(|e| Error::Decode(e.to_string()))
    }

    /// `GET /v1/orders/{order_id}/qr.txt`: the QR drawn in text, for a terminal.
    pub async fn order_qr_txt(&self, order_id: &str) -> Result<String, Error> {
        self.text(&format!("/v1/orders/{}/qr.txt", segment(order_id))).await
    }

    /// `GET /v1/orders?status=…`: the merchant's newest orders (first page).
    pub async fn orders(&self, status: Option<&str>) -> Result<Vec<Order>, Error> {
        #[derive(serde::Deserialize)]
        struct Page {
            orders: Vec<Order>,
        }
        let path = match status {
            Some(s) => format!("/v1/orders?status={}&limit=100", segment(s)),
            None => "/v1/orders?limit=100".to_owned(),
        };
        Ok(self.call::<Page>(reqwest::Method::GET, &path, None::<&()>).await?.orders)
    }

    /// `GET /v1/orders/{order_id}/qr.svg`.
    pub async fn order_qr_svg(&self, order_id: &str) -> Result<String, Error> {
        self.text(&format!("/v1/orders/{}/qr.svg", segment(order_id))).await
    }

    /// `POST /v1/micropay`: charges a scanned payment code (`SUCCESS`, or `USERPAYING`
    /// while the consumer confirms; poll [`Client::order`] and reverse if it never comes).
    pub async fn micropay(&self, payment: &Micropay) -> Result<Order, Error> {
        self.call(reqwest::Method::POST, "/v1/micropay", Some(payment)).await
    }

    /// `POST /v1/refunds` (the same `out_refund_no` and body return the first refund).
    pub async fn create_refund(&self, refund: &NewRefund) -> Result<Refund, Error> {
        self.call(reqwest::Method::POST, "/v1/refunds", Some(refund)).await
    }

    /// `GET /v1/refunds/{refund_id}`.
    pub async fn refund(&self, refund_id: &str) -> Result<Refund, Error> {
        self.call(reqwest::Method::GET, &format!("/v1/refunds/{}", segment(refund_id)), None::<&()>).await
    }

    /// `GET /v1/refund-requests`, optionally by status.
    pub async fn refund_requests(&self, status: Option<&str>) -> Result<Vec<RefundRequest>, Error> {
        #[derive(serde::Deserialize)]
        struct Page {
            refund_requests: Vec<RefundRequest>,
        }
        let path = match status {
            Some(s) => format!("/v1/refund-requests?status={}", segment(s)),
            None => "/v1/refund-requests".to_owned(),
        };
        Ok(self.call::<Page>(reqwest::Method::GET, &path, None::<&()>).await?.refund_requests)
    }

    /// `POST /v1/refund-requests/{id}/approve`: the refund is made at once.
    pub async fn approve_refund_request(&self, id: &str) -> Result<RefundRequest, Error> {
        self.call(reqwest::Method::POST, &format!("/v1/refund-requests/{}/approve", segment(id)), None::<&()>).await
    }

    /// `POST /v1/refund-requests/{id}/refuse` with a reason.
    pub async fn refuse_refund_request(&self, id: &str, reason: &str) -> Result<RefundRequest, Error> {
        let body = serde_json::json!({ "reason": reason });
        self.call(reqwest::Method::POST, &format!("/v1/refund-requests/{}/refuse", segment(id)), Some(&body)).await
    }

    /// `GET /v1/notifications`: events and their delivery attempts.
    pub async fn notifications(&self) -> Result<Vec<Notification>, Error> {
        #[derive(serde::Deserialize)]
        struct Page {
            notifications: Vec<Notification>,
        }
        Ok(self.call::<Page>(reqwest::Method::GET, "/v1/notifications?limit=100", None::<&()>).await?.notifications)
    }

    /// `POST /v1/notifications/{event_id}/resend`.
    pub async fn resend_notification(&self, event_id: &str) -> Result<(), Error> {
        self.call::<serde_json::Value>(
            reqwest::Method::POST,
            &format!("/v1/notifications/{}/resend", segment(event_id)),
            None::<&()>,
        )
        .await
        .map(|_| ())
    }

    /// `GET /v1/statements/{date}.csv` (`date` is `YYYY-MM-DD`, a Beijing day).
    pub async fn statement_csv(&self, date: &str) -> Result<String, Error> {
        self.text(&format!("/v1/statements/{}.csv", segment(date))).await
    }

    /// `POST /v1/bills` (billers): posts bills as a JSON array; each is idempotent by
    /// `bill_no`, and bad rows come back by row number while good ones are accepted.
    pub async fn post_bills(&self, bills: &[NewBill]) -> Result<BillBatch, Error> {
        self.call(reqwest::Method::POST, "/v1/bills", Some(&bills)).await
    }

    /// `POST /v1/bills` with a CSV body (header row first).
    pub async fn post_bills_csv(&self, csv: &str) -> Result<BillBatch, Error> {
        let response =
            self.send(reqwest::Method::POST, "/v1/bills", Some((csv.as_bytes().to_vec(), "text/csv"))).await?;
        response.json().await.map_err(|e| Error::Decode(e.to_string()))
    }

    /// `GET /v1/bills/{bill_no}` (billers).
    pub async fn bill(&self, bill_no: &str) -> Result<Bill, Error> {
        self.call(reqwest::Method::GET, &format!("/v1/bills/{}", segment(bill_no)), None::<&()>).await
    }

    /// `PUT /v1/bills/{bill_no}` (billers; unpaid bills only): a new amount and/or due date.
    pub async fn amend_bill(&self, bill_no: &str, amount: Option<&str>, due_date: Option<&str>) -> Result<Bill, Error> {
        let mut body = serde_json::Map::new();
        if let Some(a) = amount {
            body.insert("amount".into(), a.into());
        }
        if let Some(d) = due_date {
            body.insert("due_date".into(), d.into());
        }
        self.call(reqwest::Method::PUT, &format!("/v1/bills/{}", segment(bill_no)), Some(&body)).await
    }

    /// `POST /v1/bills/{bill_no}/cancel` (billers; unpaid bills only).
    pub async fn cancel_bill(&self, bill_no: &str) -> Result<Bill, Error> {
        self.call(reqwest::Method::POST, &format!("/v1/bills/{}/cancel", segment(bill_no)), None::<&()>).await
    }

    /// `GET /v1/biller/statements/{date}.csv` (billers).
    pub async fn biller_statement_csv(&self, date: &str) -> Result<String, Error> {
        self.text(&format!("/v1/biller/statements/{}.csv", segment(date))).await
    }
}

/// Percent-encodes a path segment (ids are URL-safe already; this guards user input).
fn segment(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

async fn api_error(response: reqwest::Response) -> Error {
    let status = response.status().as_u16();
    let request_id = response.headers().get("request-id").and_then(|v| v.to_str().ok()).map(str::to_owned);
    match response.json::<serde_json::Value>().await {
        Ok(v) => Error::Api {
            status,
            code: v["code"].as_str().unwrap_or("UNKNOWN").to_owned(),
            message: v["message"].as_str().unwrap_or("").to_owned(),
            request_id,
        },
        Err(e) => Error::Api { status, code: "UNKNOWN".to_owned(), message: e.to_string(), request_id },
    }
}
