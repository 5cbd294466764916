//! The SDK against the real gateway: checkout paid by the sandbox wallet, callbacks
//! verified (and deduplicated by event_id), refunds, bills, and retries across a restart.

use std::time::Duration;

use paykit_sdk::callback::{self, CallbackError, Headers};
use paykit_sdk::sandbox::Wallet;
use paykit_sdk::{Client, Credentials, NewBill, NewOrder, NewRefund};
use paykit_tests::{Gateway, Receiver, ServeProcess, e2e_tests, random_phone, resident_id};

fn client(gw: &Gateway, creds: &paykit_tests::Credentials) -> Client {
    Client::new(&gw.url, Credentials::merchant(&creds.merchant_id, &creds.key_id, &creds.api_secret)).unwrap()
}

async fn sandbox_wallet(gw: &Gateway, name: &str) -> Wallet {
    let phone = random_phone();
    let seq = phone[7..].parse::<u32>().unwrap();
    Wallet::sign_up(&gw.url, &phone, name, &resident_id(seq)).await.unwrap()
}

fn headers(c: &paykit_tests::Callback) -> Headers {
    Headers::from_lookup(|name| c.headers.get(name).cloned())
}

e2e_tests!(checkout_through_the_sdk_with_verified_callbacks, async |gw: Gateway| {
    let rx = Receiver::start().await;
    let creds = gw.create_merchant("SDK Shop");
    let shop = client(&gw, &creds);
    assert_eq!(shop.merchant().await.unwrap().name, "SDK Shop");
    let order = shop.create_order(&NewOrder::new("SDK-1", "12.30", "Oolong").notify_url(&rx.url)).await.unwrap();
    assert_eq!(order.status, "NOTPAY");
    assert_eq!(
        shop.create_order(&NewOrder::new("SDK-1", "12.30", "Oolong").notify_url(&rx.url)).await.unwrap().order_id,
        order.order_id
    );
    let err = shop.create_order(&NewOrder::new("SDK-1", "12.31", "Oolong")).await.unwrap_err();
    assert_eq!(err.code(), Some("OUT_TRADE_NO_REUSED"));

    let wallet = sandbox_wallet(&gw, "测试").await;
    wallet.top_up("50.00").await.unwrap();
    let preview = wallet.scan(order.code_url.as_deref().unwrap()).await.unwrap();
    assert_eq!(preview["amount"], "12.30");
    wallet.pay(&order.order_id).await.unwrap();
    assert_eq!(shop.order(&order.order_id).await.unwrap().status, "SUCCESS");

    let got = rx.wait_for(1, Duration::from_secs(10)).await;
    let now = paykit_tests::unix_now();
    let event = callback::verify(&headers(&got[0]), got[0].body.as_bytes(), &creds.api_secret, now, 300).unwrap();
    assert_eq!(
        (event.event_type.as_str(), event.data["order_id"].as_str()),
        ("payment.succeeded", Some(order.order_id.as_str()))
    );
    // The gateway may send an event twice: the second carries the same event_id.
    shop.resend_notification(&event.event_id).await.unwrap();
    let got = rx.wait_for(2, Duration::from_secs(10)).await;
    let again = callback::verify(&headers(&got[1]), got[1].body.as_bytes(), &creds.api_secret, now, 300).unwrap();
    assert_eq!(again.event_id, event.event_id);

    // One changed byte, a stale timestamp, a missing header: each refused by name.
    let mut tampered = got[0].body.clone().into_bytes();
    tampered[5] ^= 0x01;
    assert_eq!(
        callback::verify(&headers(&got[0]), &tampered, &creds.api_secret, now, 300),
        Err(CallbackError::BadSignature)
    );
    assert!(matches!(
        callback::verify(&headers(&got[0]), got[0].body.as_bytes(), &creds.api_secret, now + 600, 300),
        Err(CallbackError::Stale(_))
    ));
    let mut missing = headers(&got[0]);
    missing.nonce = None;
    assert_eq!(
        callback::verify(&missing, got[0].body.as_bytes(), &creds.api_secret, now, 300),
        Err(CallbackError::MissingHeader("Paykit-Nonce"))
    );

    assert!(shop.order_qr_txt(&order.order_id).await.unwrap().contains('█'));
    assert_eq!(shop.orders(Some("SUCCESS")).await.unwrap().len(), 1);
    let refund = shop.create_refund(&NewRefund::of_order(&order.order_id, "SDK-R1", "2.30")).await.unwrap();
    assert_eq!((refund.status.as_str(), refund.channel.as_str()), ("SUCCESS", "balance"));
    assert_eq!(wallet.balance().await.unwrap(), "40.00");
    gw.assert_ledger_verifies();
});

e2e_tests!(a_biller_posts_bills_through_the_sdk, async |gw: Gateway| {
    let creds = gw.create_biller("SDK Water", "water", &[]);
    let biller =
        Client::new(&gw.url, Credentials::biller(&creds.merchant_id, &creds.key_id, &creds.api_secret)).unwrap();
    let bill = |no: &str, amount: &str| NewBill {
        bill_no: no.into(),
        customer_account: "A1".into(),
        amount: amount.into(),
        due_date: "2026-12-31".into(),
        period: "2026-12".into(),
        customer_name: None,
        description: None,
    };
    let batch = biller.post_bills(&[bill("B1", "10.00"), bill("B2", "1.001")]).await.unwrap();
    assert_eq!((batch.accepted, batch.rejected.len(), batch.rejected[0].row), (1, 1, 2));
    let csv = biller
        .post_bills_csv("bill_no,customer_account,amount,due_date,period\nB3,A1,5.00,2026-12-31,2026-12\n")
        .await
        .unwrap();
    assert_eq!(csv.accepted, 1);
    assert_eq!(biller.bill("B1").await.unwrap().status, "UNPAID");
    assert_eq!(biller.amend_bill("B1", Some("12.00"), None).await.unwrap().amount, "12.00");
    assert_eq!(biller.cancel_bill("B3").await.unwrap().status, "CANCELLED");
});

/// The gateway dies mid-run and comes back on the same port: the SDK's retries finish the
/// refund, and there is exactly one of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_survive_a_gateway_restart() {
    let mut gw = Gateway::start(paykit_store::Engine::Sqlite).await.unwrap();
    let creds = gw.create_merchant("Restart Shop");
    let shop = client(&gw, &creds);
    let wallet = sandbox_wallet(&gw, "重启").await;
    wallet.top_up("20.00").await.unwrap();
    let order = shop.create_order(&NewOrder::new("RS-1", "10.00", "tea")).await.unwrap();
    wallet.pay(&order.order_id).await.unwrap();

    let port = gw.url.rsplit(':').next().unwrap().to_owned();
    std::process::Command::new("kill").args(["-KILL", &gw.pid().to_string()]).status().unwrap();
    gw.wait(Duration::from_secs(5)).expect("killed");
    let refund = tokio::spawn({
        let shop = shop.clone();
        let order_id = order.order_id.clone();
        async move { shop.create_refund(&NewRefund::of_order(&order_id, "RS-R1", "4.00")).await }
    });
    tokio::time::sleep(Duration::from_millis(700)).await;
    let mut restarted = ServeProcess::spawn(&gw.db.url, &["--listen".into(), format!("127.0.0.1:{port}")]);
    let refund = refund.await.unwrap().expect("the retried refund succeeds after the restart");
    assert_eq!(refund.status, "SUCCESS");
    let again = shop.create_refund(&NewRefund::of_order(&order.order_id, "RS-R1", "4.00")).await.unwrap();
    assert_eq!(again.refund_id, refund.refund_id, "no duplicate refund");
    assert_eq!(wallet.balance().await.unwrap(), "14.00");
    gw.assert_ledger_verifies();
    let _ = restarted.child.kill();
    let _ = restarted.child.wait();
}
