//! A one-product web shop that takes payment through paykit (see README.md).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use paykit_sdk::callback::{self, Headers};
use paykit_sdk::{Client, Credentials, NewOrder, NewRefund};

const PRODUCT: &str = "Jasmine tea, 250 g";
const PRICE: &str = "12.30";

#[derive(Default)]
struct ShopOrder {
    order_id: String,
    code_url: String,
    paid: bool,
    /// How many times a payment was applied: must stay at most 1.
    times_marked_paid: u32,
    refunded: bool,
}

#[derive(Clone)]
struct Shop {
    paykit: Client,
    secret: String,
    public_url: String,
    orders: Arc<Mutex<HashMap<String, ShopOrder>>>,
    seen_events: Arc<Mutex<HashSet<String>>>,
}

fn env(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|_| format!("set {name} (see examples/checkout/README.md)"))
}

#[tokio::main]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("error: {e}");
        std::process::exit(2);
    }
}

async fn run() -> Result<(), String> {
    let (merchant, key, secret) = (env("PAYKIT_MERCHANT_ID")?, env("PAYKIT_KEY_ID")?, env("PAYKIT_API_SECRET")?);
    let gateway = std::env::var("PAYKIT_URL").unwrap_or_else(|_| "http://127.0.0.1:8080".into());
    let listen = std::env::var("SHOP_LISTEN").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let listener =
        tokio::net::TcpListener::bind(&listen).await.map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let public_url = std::env::var("SHOP_PUBLIC_URL").unwrap_or_else(|_| format!("http://{addr}"));
    let paykit =
        Client::new(&gateway, Credentials::merchant(merchant, key, secret.clone())).map_err(|e| e.to_string())?;
    let shop = Shop { paykit, secret, public_url, orders: Arc::default(), seen_events: Arc::default() };
    let app = Router::new()
        .route("/", get(product))
        .route("/checkout", post(checkout))
        .route("/orders/{out_trade_no}", get(order_page))
        .route("/orders/{out_trade_no}/status", get(order_status))
        .route("/orders/{out_trade_no}/thanks", get(thanks))
        .route("/orders/{out_trade_no}/refund", post(refund))
        .route("/paykit/notify", post(notify))
        .with_state(shop);
    println!("checkout example listening on http://{addr}");
    axum::serve(listener, app).await.map_err(|e| e.to_string())
}

fn page(title: &str, body: &str) -> Html<String> {
    Html(format!(
        "<!doctype html><html lang=en><meta charset=utf-8><meta name=viewport content=\"width=device-width\"><title>{title}</title>\
         <body style=\"font-family:sans-serif;max-width:30em;margin:2em auto\"><h1>{title}</h1>{body}</body></html>"
    ))
}

async fn product() -> Html<String> {
    page(
        "Tea Shop",
        &format!(
            "<p>{PRODUCT} — <b>¥{PRICE}</b></p><form method=post action=/checkout><button>Buy with paykit</button></form>"
        ),
    )
}

fn failure(e: impl std::fmt::Display) -> Response {
    (StatusCode::BAD_GATEWAY, page("Payment unavailable", &format!("<p>{e}</p>"))).into_response()
}

async fn checkout(State(shop): State<Shop>) -> Response {
    let mut id = [0u8; 6];
    getrandom::fill(&mut id).expect("the operating system's random generator is available");
    let out_trade_no = format!("SHOP-{}", id.iter().map(|b| format!("{b:02x}")).collect::<String>());
    let request = NewOrder::new(&out_trade_no, PRICE, PRODUCT).notify_url(format!("{}/paykit/notify", shop.public_url));
    match shop.paykit.create_order(&request).await {
        Ok(order) => {
            let entry = ShopOrder {
                order_id: order.order_id,
                code_url: order.code_url.unwrap_or_default(),
                ..ShopOrder::default()
            };
            shop.orders.lock().unwrap().insert(out_trade_no.clone(), entry);
            Redirect::to(&format!("/orders/{out_trade_no}")).into_response()
        }
        Err(e) => failure(e),
    }
}

async fn order_page(State(shop): State<Shop>, Path(out_trade_no): Path<String>) -> Response {
    let Some(order_id) = shop.orders.lock().unwrap().get(&out_trade_no).map(|o| o.order_id.clone()) else {
        return (StatusCode::NOT_FOUND, page("No such order", "")).into_response();
    };
    let qr = match shop.paykit.order_qr_svg(&order_id).await {
        Ok(svg) => svg,
        Err(e) => return failure(e),
    };
    let script = format!(
        "<script>setInterval(async()=>{{const r=await fetch('/orders/{out_trade_no}/status');const s=await r.json();\
         if(s.paid)location='/orders/{out_trade_no}/thanks'}},1000)</script>"
    );
    page("Scan to pay", &format!("<p>{PRODUCT} — <b>¥{PRICE}</b></p><div style=\"width:256px\">{qr}</div><p id=status>Waiting for payment…</p>{script}"))
        .into_response()
}

async fn order_status(State(shop): State<Shop>, Path(out_trade_no): Path<String>) -> Response {
    let orders = shop.orders.lock().unwrap();
    match orders.get(&out_trade_no) {
        Some(o) => axum::Json(serde_json::json!({
            "order_id": o.order_id, "code_url": o.code_url, "paid": o.paid,
            "times_marked_paid": o.times_marked_paid, "refunded": o.refunded,
        }))
        .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn thanks(State(shop): State<Shop>, Path(out_trade_no): Path<String>) -> Response {
    let paid = shop.orders.lock().unwrap().get(&out_trade_no).is_some_and(|o| o.paid);
    if !paid {
        return Redirect::to(&format!("/orders/{out_trade_no}")).into_response();
    }
    page(
        "Thank you",
        &format!("<p>Your tea is on its way.</p><form method=post action=/orders/{out_trade_no}/refund><button>Refund</button></form>"),
    )
    .into_response()
}

async fn refund(State(shop): State<Shop>, Path(out_trade_no): Path<String>) -> Response {
    let Some(order_id) = shop.orders.lock().unwrap().get(&out_trade_no).filter(|o| o.paid).map(|o| o.order_id.clone())
    else {
        return (StatusCode::CONFLICT, page("Nothing to refund", "")).into_response();
    };
    // The refund number is derived from the order, so pressing the button twice refunds once.
    match shop.paykit.create_refund(&NewRefund::of_order(order_id, format!("R-{out_trade_no}"), PRICE)).await {
        Ok(_) => {
            if let Some(o) = shop.orders.lock().unwrap().get_mut(&out_trade_no) {
                o.refunded = true;
            }
            page("Refunded", "<p>The money is on its way back.</p>").into_response()
        }
        Err(e) => failure(e),
    }
}

/// The callback endpoint: verify, then apply each event once.
async fn notify(State(shop): State<Shop>, headers: HeaderMap, body: axum::body::Bytes) -> StatusCode {
    let lookup = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    let event = match callback::verify(&Headers::from_lookup(lookup), &body, &shop.secret, now, 300) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("rejected a callback: {e}");
            return StatusCode::BAD_REQUEST;
        }
    };
    if !shop.seen_events.lock().unwrap().insert(event.event_id.clone()) {
        return StatusCode::OK; // a duplicate delivery: already applied
    }
    if event.event_type == "payment.succeeded" {
        let otn = event.data["out_trade_no"].as_str().unwrap_or_default();
        if let Some(o) = shop.orders.lock().unwrap().get_mut(otn)
            && !o.paid
        {
            o.paid = true;
            o.times_marked_paid += 1;
        }
    }
    StatusCode::OK
}
