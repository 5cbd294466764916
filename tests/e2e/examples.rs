//! The examples as their users run them: real processes, driven over HTTP.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use paykit_sdk::sandbox::Wallet;
use paykit_sdk::{Client, Credentials};
use paykit_tests::{Gateway, e2e_tests, random_phone, resident_id, workspace_bin};

/// Starts an example binary with the merchant's credentials; returns it and its URL.
fn start_example(name: &str, gw: &Gateway, creds: &paykit_tests::Credentials) -> (std::process::Child, String) {
    let mut child = Command::new(workspace_bin(name))
        .env("PAYKIT_URL", &gw.url)
        .env("PAYKIT_MERCHANT_ID", &creds.merchant_id)
        .env("PAYKIT_KEY_ID", &creds.key_id)
        .env("PAYKIT_API_SECRET", &creds.api_secret)
        .env("SHOP_LISTEN", "127.0.0.1:0")
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the example");
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut first).unwrap();
    let url = first.trim().rsplit(' ').next().unwrap().to_owned();
    (child, url)
}

e2e_tests!(the_checkout_example_is_paid_once_even_when_called_back_twice, async |gw: Gateway| {
    let creds = gw.create_merchant("Tea Shop");
    let (mut shop, url) = start_example("checkout", &gw, &creds);
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let home = http.get(&url).send().await.unwrap().text().await.unwrap();
    assert!(home.contains("Jasmine tea") && home.contains("¥12.30"), "{home}");
    let checkout = http.post(format!("{url}/checkout")).send().await.unwrap();
    assert_eq!(checkout.status(), 303);
    let order_path = checkout.headers()["location"].to_str().unwrap().to_owned();
    let page = http.get(format!("{url}{order_path}")).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("<svg") && page.contains("Scan to pay"), "{page}");
    let status = |http: reqwest::Client, path: String| async move {
        http.get(path).send().await.unwrap().json::<serde_json::Value>().await.unwrap()
    };
    let s = status(http.clone(), format!("{url}{order_path}/status")).await;
    assert_eq!(s["paid"], false);

    let phone = random_phone();
    let wallet =
        Wallet::sign_up(&gw.url, &phone, "顾客", &resident_id(phone[7..].parse::<u32>().unwrap())).await.unwrap();
    wallet.top_up("20.00").await.unwrap();
    let preview = wallet.scan(s["code_url"].as_str().unwrap()).await.unwrap();
    assert_eq!(preview["merchant_name"], "Tea Shop");
    wallet.pay(s["order_id"].as_str().unwrap()).await.unwrap();

    let mut paid = serde_json::Value::Null;
    for _ in 0..100 {
        paid = status(http.clone(), format!("{url}{order_path}/status")).await;
        if paid["paid"] == true {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(paid["paid"], true, "the callback reached the shop");
    // The gateway sends the callback again: the shop applies it once.
    let sdk =
        Client::new(&gw.url, Credentials::merchant(&creds.merchant_id, &creds.key_id, &creds.api_secret)).unwrap();
    let event = sdk.notifications().await.unwrap().into_iter().find(|n| n.event_type == "payment.succeeded").unwrap();
    sdk.resend_notification(&event.event_id).await.unwrap();
    for _ in 0..50 {
        let n = sdk.notifications().await.unwrap();
        if n.iter().any(|n| n.event_id == event.event_id && n.delivery_status.as_deref() == Some("DELIVERED")) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(status(http.clone(), format!("{url}{order_path}/status")).await["times_marked_paid"], 1);

    let thanks = http.get(format!("{url}{order_path}/thanks")).send().await.unwrap().text().await.unwrap();
    assert!(thanks.contains("Thank you"), "{thanks}");
    for _ in 0..2 {
        let refunded = http.post(format!("{url}{order_path}/refund")).send().await.unwrap();
        assert_eq!(refunded.status(), 200);
    }
    assert_eq!(wallet.balance().await.unwrap(), "20.00", "refunded once, in full");
    gw.assert_ledger_verifies();
    let _ = shop.kill();
    let _ = shop.wait();
});

/// A free local port (bound and released; good enough for a test).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

e2e_tests!(the_biller_example_reconciles_with_the_gateway_statement, async |gw: Gateway| {
    let port = free_port();
    let notify = format!("http://127.0.0.1:{port}/paykit/notify");
    let creds = gw.create_biller("City Water", "water", &["--notify-url", &notify]);
    let csv = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/biller/november.csv");
    let mut biller = Command::new(workspace_bin("biller"))
        .arg(&csv)
        .env("PAYKIT_URL", &gw.url)
        .env("PAYKIT_BILLER_ID", &creds.merchant_id)
        .env("PAYKIT_KEY_ID", &creds.key_id)
        .env("PAYKIT_API_SECRET", &creds.api_secret)
        .env("BILLER_LISTEN", format!("127.0.0.1:{port}"))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(biller.stdout.take().unwrap()).read_line(&mut first).unwrap();
    assert!(first.contains("5 bills posted (5 new"), "{first}");

    // Three households pay.
    let alice = gw.new_consumer("张伟").await;
    gw.top_up(&alice, "200.00").await;
    for account in ["100001", "100003", "100004"] {
        let bills = gw
            .wallet(
                "GET",
                &format!("/wallet/v1/bills?biller_id={}&customer_account={account}", creds.merchant_id),
                Some(&alice.token),
                serde_json::json!(null),
            )
            .await
            .json();
        let bill_id = bills["bills"][0]["bill_id"].as_str().unwrap().to_owned();
        let paid = gw
            .wallet(
                "POST",
                "/wallet/v1/bill-payments",
                Some(&alice.token),
                serde_json::json!({"bill_id": bill_id, "pay_password": alice.pay_password}),
            )
            .await;
        assert_eq!(paid.json()["status"], "PAID", "{}", paid.body);
    }
    let http = reqwest::Client::new();
    let mut rec = serde_json::Value::Null;
    for _ in 0..100 {
        rec = http.get(format!("http://127.0.0.1:{port}/reconciliation")).send().await.unwrap().json().await.unwrap();
        if rec["paid"] == "121.40" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        (
            rec["billed"].as_str(),
            rec["paid"].as_str(),
            rec["outstanding"].as_str(),
            rec["statement_net"].as_str(),
            rec["agrees"].as_bool()
        ),
        (Some("182.40"), Some("121.40"), Some("61.00"), Some("121.40"), Some(true)),
        "{rec}"
    );
    gw.assert_ledger_verifies();
    let _ = biller.kill();
    let _ = biller.wait();
});

e2e_tests!(the_refunds_example_runs_to_the_end, async |gw: Gateway| {
    let creds = gw.create_merchant("Tea Set Shop");
    let out = Command::new(workspace_bin("refunds"))
        .env("PAYKIT_URL", &gw.url)
        .env("PAYKIT_MERCHANT_ID", &creds.merchant_id)
        .env("PAYKIT_KEY_ID", &creds.key_id)
        .env("PAYKIT_API_SECRET", &creds.api_secret)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let summary: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(summary["wallet_balance"], "30.00", "every cent came back");
    let events: Vec<&str> = summary["events"].as_array().unwrap().iter().map(|e| e.as_str().unwrap()).collect();
    assert_eq!(
        events,
        ["payment.succeeded", "refund.succeeded", "refund.succeeded", "refund_request.created", "refund.succeeded"]
    );
    gw.assert_ledger_verifies();
});

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_counter_example_sells_twice_and_refunds_once() {
    let gw = Gateway::start(paykit_store::Engine::Sqlite).await.unwrap();
    let creds = gw.create_merchant("茶馆 Tea House");
    let out_dir = std::env::temp_dir().join(format!("paykit-counter-out-{}", paykit_store::ids::random_base32(6)));
    std::fs::create_dir_all(&out_dir).unwrap();
    let out = Command::new(workspace_bin("counter"))
        .env("PAYKIT_URL", &gw.url)
        .env("PAYKIT_MERCHANT_ID", &creds.merchant_id)
        .env("PAYKIT_KEY_ID", &creds.key_id)
        .env("PAYKIT_API_SECRET", &creds.api_secret)
        .env("COUNTER_OUT", &out_dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let summary: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(summary["receipts"], 3);
    assert_eq!(summary["wallet_balance"], "91.20", "100.00 - 12.30 - 8.80 + 12.30");
    assert!(stdout.contains("退款单 REFUND"));
    let png = std::fs::read(out_dir.join("receipt-1.png")).unwrap();
    assert!(paykit_tests::decode_qr_png(&png).starts_with("PAYKIT-ORDER:ord_"));
    gw.assert_ledger_verifies();
    let _ = std::fs::remove_dir_all(out_dir);
}
