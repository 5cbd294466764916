//! Partial refunds and a consumer's refund request, scripted (see README.md).

use paykit_sdk::sandbox::Wallet;
use paykit_sdk::{Client, Credentials, NewOrder, NewRefund};

fn env(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|_| format!("set {name} (see examples/refunds/README.md)"))
}

fn tag() -> String {
    let mut b = [0u8; 4];
    getrandom::fill(&mut b).expect("the operating system's random generator is available");
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A valid sandbox identity: phone 139xxxxxxxx and a resident ID with its check character.
fn identity() -> (String, String) {
    let mut b = [0u8; 4];
    getrandom::fill(&mut b).expect("the operating system's random generator is available");
    let n = u32::from_le_bytes(b) % 100_000_000;
    let first17 = format!("44030419900307{:03}", n % 1000);
    let weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    let sum: u32 = first17.bytes().zip(weights).map(|(c, w)| u32::from(c - b'0') * w).sum();
    let check = b"10X98765432"[(sum % 11) as usize] as char;
    (format!("139{n:08}"), format!("{first17}{check}"))
}

#[tokio::main]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("error: {e}");
        std::process::exit(2);
    }
}

async fn run() -> Result<(), String> {
    let creds = Credentials::merchant(env("PAYKIT_MERCHANT_ID")?, env("PAYKIT_KEY_ID")?, env("PAYKIT_API_SECRET")?);
    let gateway = std::env::var("PAYKIT_URL").unwrap_or_else(|_| "http://127.0.0.1:8080".into());
    let shop = Client::new(&gateway, creds).map_err(|e| e.to_string())?;
    let err = |e: paykit_sdk::Error| e.to_string();

    let run = tag();
    let order = shop.create_order(&NewOrder::new(format!("RF-{run}"), "30.00", "Tea set")).await.map_err(err)?;
    let (phone, id_number) = identity();
    let wallet = Wallet::sign_up(&gateway, &phone, "退款演示", &id_number).await.map_err(err)?;
    wallet.top_up("30.00").await.map_err(err)?;
    wallet.pay(&order.order_id).await.map_err(err)?;
    println!("paid {} for order {}", order.amount, order.order_id);

    for (n, amount) in [(1, "5.00"), (2, "7.50")] {
        let r = shop
            .create_refund(&NewRefund::of_order(&order.order_id, format!("RF-{run}-{n}"), amount))
            .await
            .map_err(err)?;
        println!("refund {} of {}: {}", r.out_refund_no, r.amount, r.status);
    }
    let request = wallet.request_refund(&order.order_id, "the teapot arrived cracked").await.map_err(err)?;
    let request_id = request["refund_request_id"].as_str().unwrap_or_default().to_owned();
    println!("consumer asked for {}: {request_id}", request["amount"].as_str().unwrap_or_default());
    let answered = shop.approve_refund_request(&request_id).await.map_err(err)?;
    println!("merchant approved: {} (refund {})", answered.status, answered.refund_id.as_deref().unwrap_or("-"));

    let notifications = shop.notifications().await.map_err(err)?;
    for n in notifications.iter().rev() {
        println!("event {} {}", n.event_type, n.event_id);
    }
    let balance = wallet.balance().await.map_err(err)?;
    let kinds: Vec<&str> = notifications.iter().rev().map(|n| n.event_type.as_str()).collect();
    println!("{}", serde_json::json!({ "order_id": order.order_id, "wallet_balance": balance, "events": kinds }));
    Ok(())
}
