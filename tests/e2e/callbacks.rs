//! Callbacks: signed, on the retry schedule (driven by the sandbox clock), dead after the
//! last attempt, re-sendable, and never attempted twice at once by two gateway processes.

use std::sync::atomic::Ordering;
use std::time::Duration;

use paykit_store::events::RETRY_SCHEDULE_SECS;
use paykit_tests::{Credentials, Gateway, Receiver, ServeProcess, config_args, e2e_tests};
use serde_json::json;

/// A paid order whose events go to `notify_url`; returns the order id.
async fn paid_order(
    gw: &Gateway,
    shop: &Credentials,
    consumer: &paykit_tests::Consumer,
    out_trade_no: &str,
    notify_url: &str,
) -> String {
    let body = json!({"out_trade_no": out_trade_no, "amount": "2.50", "description": "tea", "notify_url": notify_url})
        .to_string();
    let order = gw.signed(shop, "POST", "/v1/orders", &body).await;
    assert_eq!(order.status, 201, "{}", order.body);
    let order_id = order.json()["order_id"].as_str().unwrap().to_owned();
    let paid = gw
        .wallet(
            "POST",
            "/wallet/v1/payments",
            Some(&consumer.token),
            json!({"order_id": order_id, "funding": "balance", "pay_password": consumer.pay_password}),
        )
        .await;
    assert_eq!(paid.json()["status"], "SUCCESS", "{}", paid.body);
    order_id
}

e2e_tests!(a_receiver_failing_three_times_gets_the_event_on_schedule, async |gw: Gateway| {
    let rx = Receiver::start().await;
    rx.fail_next.store(3, Ordering::SeqCst);
    let shop = gw.create_merchant("Callback Shop");
    let alice = gw.new_consumer("回调").await;
    gw.top_up(&alice, "10.00").await;
    let order_id = paid_order(&gw, &shop, &alice, "CB1", &rx.url).await;

    rx.wait_for(1, Duration::from_secs(10)).await;
    for (n, by) in [(2, "15s"), (3, "15s"), (4, "30s")] {
        gw.advance_clock(by).await;
        rx.wait_for(n, Duration::from_secs(10)).await;
    }
    let got = rx.received();
    assert_eq!(got.iter().map(|c| c.status_sent).collect::<Vec<_>>(), [500, 500, 500, 200]);
    // Each attempt is signed (with real time, which receivers check against their clocks).
    for callback in &got {
        assert!(callback.verifies_with(&shop.api_secret), "every attempt is signed");
        assert_eq!(callback.headers["paykit-key-id"], shop.key_id);
        assert!((callback.timestamp() - paykit_tests::unix_now()).abs() < 60);
    }
    // The attempts follow the schedule on the gateway's (sandbox) clock: +0, +15, +30, +60 s.
    let log = gw.signed(&shop, "GET", "/v1/notifications", "").await.json();
    let at: Vec<i64> = log["notifications"][0]["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| paykit_core::time::Timestamp::parse_rfc3339(a["at"].as_str().unwrap()).unwrap().unix_secs())
        .collect();
    for (t, expected) in at.iter().zip([0, 15, 30, 60]) {
        let offset = t - at[0];
        assert!((expected..=expected + 5).contains(&offset), "attempt at +{offset} s, expected +{expected} s");
    }
    let event = got[3].json();
    assert_eq!(event["event_type"], "payment.succeeded");
    assert_eq!(event["data"]["order_id"], order_id.as_str());
    assert_eq!(event["data"]["amount"], "2.50");
    assert!(got.iter().all(|c| c.json()["event_id"] == event["event_id"]), "one stable event_id");

    let log = gw.signed(&shop, "GET", "/v1/notifications", "").await.json();
    let n = &log["notifications"][0];
    assert_eq!(n["delivery_status"], "DELIVERED");
    let statuses: Vec<_> =
        n["attempts"].as_array().unwrap().iter().map(|a| a["http_status"].as_i64().unwrap()).collect();
    assert_eq!(statuses, [500, 500, 500, 200]);
    // Nothing more arrives once delivered.
    gw.advance_clock("1h").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rx.received().len(), 4);
});

e2e_tests!(an_always_failing_receiver_goes_dead_and_a_resend_reaches_it, async |gw: Gateway| {
    let rx = Receiver::start().await;
    rx.down.store(true, Ordering::SeqCst);
    let shop = gw.create_merchant("Dead Letter Shop");
    let alice = gw.new_consumer("死信").await;
    gw.top_up(&alice, "10.00").await;
    paid_order(&gw, &shop, &alice, "DL1", &rx.url).await;

    rx.wait_for(1, Duration::from_secs(10)).await;
    for (i, delay) in RETRY_SCHEDULE_SECS.iter().enumerate() {
        gw.advance_clock(&format!("{delay}s")).await;
        rx.wait_for(i + 2, Duration::from_secs(10)).await;
    }
    assert_eq!(rx.received().len(), 1 + RETRY_SCHEDULE_SECS.len(), "16 attempts in all");
    let mut dead = serde_json::Value::Null;
    for _ in 0..50 {
        dead = gw.signed(&shop, "GET", "/v1/notifications?status=DEAD", "").await.json();
        if dead["notifications"].as_array().is_some_and(|a| a.len() == 1) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let event_id = dead["notifications"][0]["event_id"].as_str().expect("a dead notification").to_owned();
    assert_eq!(dead["notifications"][0]["attempts"].as_array().unwrap().len(), 16);
    gw.advance_clock("1d").await;
    assert_eq!(rx.received().len(), 16, "a dead event is not retried on its own");

    rx.down.store(false, Ordering::SeqCst);
    let missing = gw.signed(&shop, "POST", "/v1/notifications/evt_nope/resend", "").await;
    assert_eq!((missing.status, missing.code()), (404, "NOT_FOUND".into()));
    let out = gw.cli(&["notify", "resend", "--merchant-id", &shop.merchant_id, "--event-id", &event_id]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let got = rx.wait_for(17, Duration::from_secs(10)).await;
    assert_eq!(got[16].status_sent, 200);
    assert!(got[16].verifies_with(&shop.api_secret));
});

/// Two gateways share one PostgreSQL database; one is killed while deliveries are in
/// flight. Every event is delivered, and no attempt is made by both at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_one_killed_lose_no_callback() {
    let config = config_args("delivery_lease_secs = 2\ncallback_timeout_secs = 1\n");
    let options = paykit_tests::GatewayOptions { extra_args: config.clone(), ..Default::default() };
    let Some(mut gw) = Gateway::start_with(paykit_store::Engine::Postgres, options).await else { return };
    let second = ServeProcess::spawn(&gw.db.url, &config);
    let rx = Receiver::start().await;
    rx.delay_ms.store(150, Ordering::SeqCst);
    let shop = gw.create_merchant("Two Gateways");
    let alice = gw.new_consumer("双机").await;
    gw.top_up(&alice, "100.00").await;
    let mut orders = Vec::new();
    for i in 0..30 {
        orders.push(paid_order(&gw, &shop, &alice, &format!("TG{i}"), &rx.url).await);
    }
    rx.wait_for(3, Duration::from_secs(20)).await;
    let first_pid = gw.pid();
    let killed = std::process::Command::new("kill").args(["-KILL", &first_pid.to_string()]).status().unwrap();
    assert!(killed.success());
    gw.wait(Duration::from_secs(5)).expect("the first gateway died");
    gw.url = second.url.clone();

    let pool = sqlx::AnyPool::connect(&gw.db.url).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let pending: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM deliveries WHERE status <> 'DELIVERED'")
            .fetch_one(&pool)
            .await
            .unwrap();
        if pending == 0 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{pending} deliveries never completed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let delivered: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM deliveries").fetch_one(&pool).await.unwrap();
    assert_eq!(delivered, 30);
    let received: std::collections::BTreeSet<String> = rx
        .received()
        .iter()
        .filter(|c| c.status_sent == 200)
        .map(|c| c.json()["data"]["order_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(received, orders.iter().cloned().collect(), "every event reached the merchant");
    // No two recorded attempts at one event overlap in time.
    let overlaps: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM delivery_attempts a JOIN delivery_attempts b ON a.event_id = b.event_id AND a.id < b.id \
         WHERE a.started_at_us < b.finished_at_us AND b.started_at_us < a.finished_at_us",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(overlaps, 0);
    let workers: i64 =
        sqlx::query_scalar("SELECT COUNT(DISTINCT worker) FROM delivery_attempts").fetch_one(&pool).await.unwrap();
    assert!(workers >= 1);
    let mut second = second;
    let _ = second.child.kill();
    let _ = second.child.wait();
}

/// A merchant with its notify_url set, from `paykit merchant create --notify-url`.
fn merchant_with_notify_url(gw: &Gateway, name: &str, url: &str) -> Credentials {
    let out = gw.cli(&["merchant", "create", "--name", name, "--notify-url", url, "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    Credentials {
        merchant_id: v["merchant_id"].as_str().unwrap().into(),
        key_id: v["key_id"].as_str().unwrap().into(),
        api_secret: v["api_secret"].as_str().unwrap().into(),
    }
}

/// Callbacks over HTTPS to a receiver whose certificate comes from a CA the test makes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callbacks_reach_an_https_receiver_trusted_through_callback_ca_file() {
    let dir = std::env::temp_dir().join(format!("paykit-cb-tls-{}", paykit_store::ids::random_base32(8)));
    let out =
        std::process::Command::new(paykit_tests::paykit_bin()).args(["dev-cert", "--out"]).arg(&dir).output().unwrap();
    assert!(out.status.success());
    let rx = Receiver::start_tls(&dir.join("server.pem"), &dir.join("server-key.pem")).await;
    assert!(rx.url.starts_with("https://"));
    let config = config_args(&format!("callback_ca_file = {:?}\n", dir.join("ca.pem").display().to_string()));
    let gw = Gateway::start_with(
        paykit_store::Engine::Sqlite,
        paykit_tests::GatewayOptions { extra_args: config, ..Default::default() },
    )
    .await
    .unwrap();
    let shop = merchant_with_notify_url(&gw, "TLS Shop", &rx.url);
    let alice = gw.new_consumer("加密").await;
    gw.top_up(&alice, "5.00").await;
    let order = gw.create_order(&shop, "TLS1", "1.00").await;
    let paid = gw
        .wallet(
            "POST",
            "/wallet/v1/payments",
            Some(&alice.token),
            json!({"order_id": order["order_id"], "funding": "balance", "pay_password": alice.pay_password}),
        )
        .await;
    assert_eq!(paid.json()["status"], "SUCCESS");
    let got = rx.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(got[0].status_sent, 200);
    assert!(got[0].verifies_with(&shop.api_secret));

    // A gateway that does not trust that CA fails the attempt and says why.
    let untrusting = Gateway::start(paykit_store::Engine::Sqlite).await.unwrap();
    let shop = merchant_with_notify_url(&untrusting, "TLS Shop 2", &rx.url);
    let bob = untrusting.new_consumer("不信").await;
    untrusting.top_up(&bob, "5.00").await;
    let order = untrusting.create_order(&shop, "TLS2", "1.00").await;
    untrusting
        .wallet(
            "POST",
            "/wallet/v1/payments",
            Some(&bob.token),
            json!({"order_id": order["order_id"], "funding": "balance", "pay_password": bob.pay_password}),
        )
        .await;
    let mut attempts = serde_json::Value::Null;
    for _ in 0..50 {
        let log = untrusting.signed(&shop, "GET", "/v1/notifications", "").await.json();
        attempts = log["notifications"][0]["attempts"].clone();
        if attempts.as_array().is_some_and(|a| !a.is_empty()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(attempts[0]["http_status"].is_null() && attempts[0]["error"].as_str().is_some(), "{attempts}");
    assert_eq!(rx.received().len(), 1, "the untrusted connection never reached the receiver");
    let _ = std::fs::remove_dir_all(dir);
}

/// A receiver that hangs times out without holding up another merchant's callbacks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_receiver_does_not_hold_up_other_merchants() {
    let config = config_args("callback_timeout_secs = 2\n");
    let gw = Gateway::start_with(
        paykit_store::Engine::Sqlite,
        paykit_tests::GatewayOptions { extra_args: config, ..Default::default() },
    )
    .await
    .unwrap();
    let hanging = Receiver::start().await;
    hanging.delay_ms.store(60_000, Ordering::SeqCst);
    let healthy = Receiver::start().await;
    let slow_shop = merchant_with_notify_url(&gw, "Hanging Shop", &hanging.url);
    let fast_shop = merchant_with_notify_url(&gw, "Healthy Shop", &healthy.url);
    let alice = gw.new_consumer("挂起").await;
    gw.top_up(&alice, "50.00").await;
    for i in 0..5 {
        paid_order(&gw, &slow_shop, &alice, &format!("H{i}"), &hanging.url).await;
    }
    let started = std::time::Instant::now();
    paid_order(&gw, &fast_shop, &alice, "F1", &healthy.url).await;
    healthy.wait_for(1, Duration::from_secs(5)).await;
    assert!(started.elapsed() < Duration::from_secs(2), "the healthy merchant waited {:?}", started.elapsed());

    let mut errors = Vec::new();
    for _ in 0..60 {
        let log = gw.signed(&slow_shop, "GET", "/v1/notifications", "").await.json();
        errors = log["notifications"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|n| n["attempts"][0]["error"].as_str().map(str::to_owned))
            .collect();
        if errors.len() == 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(errors, vec!["timed out"; 5]);
}
