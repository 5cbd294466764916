//! A water utility on paykit (see README.md).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use paykit_core::{Currency, Money};
use paykit_sdk::callback::{self, Headers};
use paykit_sdk::{Client, Credentials};

#[derive(Clone)]
struct Utility {
    paykit: Client,
    secret: String,
    /// bill_no → amount billed (minor units).
    billed: Arc<HashMap<String, i64>>,
    /// event_id → (bill_no, amount paid in that payment), each event counted once.
    payments: Arc<Mutex<HashMap<String, (String, i64)>>>,
}

fn env(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|_| format!("set {name} (see examples/biller/README.md)"))
}

fn minor(text: &str) -> Result<i64, String> {
    Money::parse(text, Currency::Cny).map(|m| m.minor_units()).map_err(|e| format!("{text:?}: {e}"))
}

fn money(minor: i64) -> String {
    Money::from_minor(minor, Currency::Cny).map(|m| m.to_string()).unwrap_or_default()
}

#[tokio::main]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("error: {e}");
        std::process::exit(2);
    }
}

async fn run() -> Result<(), String> {
    let (biller, key, secret) = (env("PAYKIT_BILLER_ID")?, env("PAYKIT_KEY_ID")?, env("PAYKIT_API_SECRET")?);
    let path = std::env::args().nth(1).ok_or("give the bills CSV file as the argument")?;
    let csv = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    let gateway = std::env::var("PAYKIT_URL").unwrap_or_else(|_| "http://127.0.0.1:8080".into());
    let paykit = Client::new(&gateway, Credentials::biller(biller, key, secret.clone())).map_err(|e| e.to_string())?;

    let batch = paykit.post_bills_csv(&csv).await.map_err(|e| e.to_string())?;
    for r in &batch.rejected {
        eprintln!("row {} refused: {} {}", r.row, r.code, r.message);
    }
    // What we billed: every row the gateway holds (new now, or posted before).
    let mut billed = HashMap::new();
    for line in csv.lines().skip(1).filter(|l| !l.trim().is_empty()) {
        let cols: Vec<&str> = line.split(',').collect();
        if let Ok(bill) = paykit.bill(cols[0]).await {
            billed.insert(bill.bill_no, minor(&bill.amount)?);
        }
    }
    let listen = std::env::var("BILLER_LISTEN").unwrap_or_else(|_| "127.0.0.1:3100".into());
    let listener =
        tokio::net::TcpListener::bind(&listen).await.map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let utility = Utility { paykit, secret, billed: Arc::new(billed), payments: Arc::default() };
    let app = Router::new()
        .route("/paykit/notify", post(notify))
        .route("/reconciliation", get(reconciliation))
        .with_state(utility);
    println!(
        "biller example: {} bills posted ({} new, {} already there, {} refused); listening on http://{}",
        batch.accepted + batch.duplicates + batch.rejected.len() as u64,
        batch.accepted,
        batch.duplicates,
        batch.rejected.len(),
        listener.local_addr().map_err(|e| e.to_string())?
    );
    axum::serve(listener, app).await.map_err(|e| e.to_string())
}

async fn notify(State(u): State<Utility>, headers: HeaderMap, body: axum::body::Bytes) -> StatusCode {
    let lookup = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    let Ok(event) = callback::verify(&Headers::from_lookup(lookup), &body, &u.secret, now, 300) else {
        return StatusCode::BAD_REQUEST;
    };
    if event.event_type == "bill.paid" {
        let bill_no = event.data["bill_no"].as_str().unwrap_or_default().to_owned();
        if let Ok(paid) = minor(event.data["payment_amount"].as_str().unwrap_or("")) {
            u.payments.lock().unwrap().entry(event.event_id).or_insert((bill_no, paid));
        }
    }
    StatusCode::OK
}

/// Billed, paid (from callbacks) and outstanding, and whether the gateway's statement for
/// today agrees with the payments received.
async fn reconciliation(State(u): State<Utility>) -> Result<axum::Json<serde_json::Value>, (StatusCode, String)> {
    let billed: i64 = u.billed.values().sum();
    let paid: i64 = u.payments.lock().unwrap().values().map(|(_, m)| m).sum();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    let day = beijing_date(now);
    let statement = u.paykit.biller_statement_csv(&day).await.map_err(|e| (StatusCode::BAD_GATEWAY, e.to_string()))?;
    let statement_net = statement
        .lines()
        .last()
        .and_then(|l| l.split(',').find_map(|kv| kv.strip_prefix("net=")))
        .map(minor)
        .transpose()
        .map_err(|e| (StatusCode::BAD_GATEWAY, e))?
        .unwrap_or(0);
    Ok(axum::Json(serde_json::json!({
        "date": day, "billed": money(billed), "paid": money(paid), "outstanding": money(billed - paid),
        "statement_net": money(statement_net), "agrees": statement_net == paid,
    })))
}

/// YYYY-MM-DD of the Beijing day containing `unix_secs` (civil-from-days, no time crate).
fn beijing_date(unix_secs: i64) -> String {
    let days = (unix_secs + 8 * 3600).div_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}
