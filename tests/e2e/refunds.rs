//! Refunds, consumers' refund requests, expiry, and statements.

use std::time::Duration;

use paykit_tests::{Gateway, Receiver, e2e_tests};
use serde_json::json;

async fn pay(gw: &Gateway, c: &paykit_tests::Consumer, order_id: &str, funding: &str) {
    let r = gw
        .wallet(
            "POST",
            "/wallet/v1/payments",
            Some(&c.token),
            json!({"order_id": order_id, "funding": funding, "pay_password": c.pay_password}),
        )
        .await;
    assert_eq!(r.json()["status"], "SUCCESS", "{}", r.body);
}

fn refund_body(order_id: &str, out_refund_no: &str, amount: &str) -> String {
    json!({"order_id": order_id, "out_refund_no": out_refund_no, "amount": amount, "reason": "damaged"}).to_string()
}

e2e_tests!(concurrent_refunds_never_exceed_what_was_paid, async |gw: Gateway| {
    let shop = gw.create_merchant("Refund Shop");
    let alice = gw.new_consumer("退款").await;
    gw.top_up(&alice, "20.00").await;
    let order = gw.create_order(&shop, "R1", "12.30").await;
    let order_id = order["order_id"].as_str().unwrap().to_owned();
    pay(&gw, &alice, &order_id, "balance").await;
    assert_eq!(gw.balance(&alice).await, "7.70");

    let gw = std::sync::Arc::new(gw);
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let (gw, shop, order_id) = (gw.clone(), shop.clone(), order_id.clone());
            tokio::spawn(async move {
                gw.signed(&shop, "POST", "/v1/refunds", &refund_body(&order_id, &format!("RF{i}"), "1.00")).await
            })
        })
        .collect();
    let (mut ok, mut refused) = (0, 0);
    for t in tasks {
        let r = t.await.unwrap();
        match r.status {
            201 => {
                assert_eq!(r.json()["status"], "SUCCESS");
                ok += 1
            }
            409 if r.code() == "REFUND_EXCEEDS_PAID" => refused += 1,
            _ => panic!("unexpected {}", r.body),
        }
    }
    assert_eq!((ok, refused), (12, 8), "12.00 of 12.30 can be refunded in 1.00 steps");
    assert_eq!(gw.balance(&alice).await, "19.70");

    // A replay returns the first refund; the same number with another amount is refused.
    let first = gw.signed(&shop, "POST", "/v1/refunds", &refund_body(&order_id, "LAST", "0.30")).await;
    assert_eq!(first.status, 201, "{}", first.body);
    let replay = gw.signed(&shop, "POST", "/v1/refunds", &refund_body(&order_id, "LAST", "0.30")).await;
    assert_eq!((replay.status, replay.json()["refund_id"].clone()), (200, first.json()["refund_id"].clone()));
    let reused = gw.signed(&shop, "POST", "/v1/refunds", &refund_body(&order_id, "LAST", "0.20")).await;
    assert_eq!((reused.status, reused.code()), (409, "OUT_REFUND_NO_REUSED".into()));
    let over = gw.signed(&shop, "POST", "/v1/refunds", &refund_body(&order_id, "MORE", "0.01")).await;
    assert_eq!((over.status, over.code()), (409, "REFUND_EXCEEDS_PAID".into()));
    assert_eq!(gw.balance(&alice).await, "20.00", "fully refunded, not a cent more");
    let got =
        gw.signed(&shop, "GET", &format!("/v1/refunds/{}", first.json()["refund_id"].as_str().unwrap()), "").await;
    assert_eq!(got.json()["out_refund_no"], "LAST");
    gw.assert_ledger_verifies();
});

e2e_tests!(card_refunds_go_back_to_the_card_after_the_bank_delay, async |gw: Gateway| {
    let rx = Receiver::start().await;
    let out = gw.cli(&["merchant", "create", "--name", "Card Refunds", "--notify-url", &rx.url, "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let shop = paykit_tests::Credentials {
        merchant_id: v["merchant_id"].as_str().unwrap().into(),
        key_id: v["key_id"].as_str().unwrap().into(),
        api_secret: v["api_secret"].as_str().unwrap().into(),
    };
    let alice = gw.new_consumer("刷卡").await;
    let order = gw.create_order(&shop, "C1", "8.00").await;
    let order_id = order["order_id"].as_str().unwrap();
    pay(&gw, &alice, order_id, &alice.card_id).await;
    let r = gw.signed(&shop, "POST", "/v1/refunds", &refund_body(order_id, "CR1", "3.00")).await;
    assert_eq!(
        (r.status, r.json()["status"].as_str(), r.json()["channel"].as_str()),
        (201, Some("PROCESSING"), Some("card")),
        "{}",
        r.body
    );
    let refund_id = r.json()["refund_id"].as_str().unwrap().to_owned();
    gw.assert_ledger_verifies();
    gw.advance_clock("61s").await;
    let mut status = String::new();
    for _ in 0..50 {
        status = gw.signed(&shop, "GET", &format!("/v1/refunds/{refund_id}"), "").await.json()["status"]
            .as_str()
            .unwrap()
            .to_owned();
        if status == "SUCCESS" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, "SUCCESS");
    let got = rx.wait_for(2, Duration::from_secs(10)).await;
    let types: Vec<_> = got.iter().map(|c| c.json()["event_type"].as_str().unwrap().to_owned()).collect();
    assert_eq!(types, ["payment.succeeded", "refund.succeeded"]);
    assert_eq!(gw.balance(&alice).await, "0.00", "a card refund does not land in the balance");
    gw.assert_ledger_verifies();
});

e2e_tests!(a_refused_request_escalated_and_forced_refunds_the_consumer, async |gw: Gateway| {
    let shop = gw.create_merchant("Disputed Shop");
    let alice = gw.new_consumer("申诉").await;
    gw.top_up(&alice, "50.00").await;
    let order = gw.create_order(&shop, "Q1", "30.00").await;
    let order_id = order["order_id"].as_str().unwrap();
    pay(&gw, &alice, order_id, "balance").await;

    let req = gw
        .wallet(
            "POST",
            "/wallet/v1/refund-requests",
            Some(&alice.token),
            json!({"order_id": order_id, "reason": "never arrived"}),
        )
        .await;
    assert_eq!(req.status, 201, "{}", req.body);
    let request_id = req.json()["refund_request_id"].as_str().unwrap().to_owned();
    assert_eq!(req.json()["amount"], "30.00");
    let listed = gw.signed(&shop, "GET", "/v1/refund-requests?status=PENDING", "").await.json();
    assert_eq!(listed["refund_requests"][0]["refund_request_id"], request_id.as_str());

    let refused = gw
        .signed(
            &shop,
            "POST",
            &format!("/v1/refund-requests/{request_id}/refuse"),
            &json!({"reason": "delivered on time"}).to_string(),
        )
        .await;
    assert_eq!(refused.json()["status"], "REFUSED", "{}", refused.body);
    let again = gw.signed(&shop, "POST", &format!("/v1/refund-requests/{request_id}/approve"), "").await;
    assert_eq!((again.status, again.code()), (409, "REFUND_REQUEST_STATUS_INVALID".into()));
    let escalated = gw
        .wallet(
            "POST",
            &format!("/wallet/v1/refund-requests/{request_id}/escalate"),
            Some(&alice.token),
            json!({"reason": "it did not"}),
        )
        .await;
    assert_eq!(escalated.json()["status"], "ESCALATED", "{}", escalated.body);

    let ops = gw.operator_token();
    let queue = gw.wallet("GET", "/ops/v1/refund-requests?status=ESCALATED", Some(&ops), json!(null)).await.json();
    assert_eq!(queue["refund_requests"][0]["refund_request_id"], request_id.as_str());
    let decided = gw
        .wallet(
            "POST",
            &format!("/ops/v1/refund-requests/{request_id}/decide"),
            Some(&ops),
            json!({"decision": "force_refund", "note": "no proof of delivery"}),
        )
        .await;
    assert_eq!(decided.json()["status"], "FORCED", "{}", decided.body);
    assert!(decided.json()["refund_id"].as_str().is_some());
    assert_eq!(gw.balance(&alice).await, "50.00", "money back to the balance");

    // Every step, with who did it, is visible to both sides.
    let mine = gw.wallet("GET", "/wallet/v1/refund-requests", Some(&alice.token), json!(null)).await.json();
    let theirs = gw.signed(&shop, "GET", "/v1/refund-requests", "").await.json();
    for view in [&mine, &theirs] {
        let steps: Vec<_> = view["refund_requests"][0]["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["action"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(steps, ["requested", "refused", "escalated", "forced_refund"]);
        let actors: Vec<_> = view["refund_requests"][0]["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["actor"].as_str().unwrap().split(':').next().unwrap().to_owned())
            .collect();
        assert_eq!(actors, ["consumer", "merchant", "consumer", "operator"]);
    }
    let events = gw.signed(&shop, "GET", "/v1/notifications", "").await.json();
    let types: Vec<_> = events["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["event_type"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        types.contains(&"refund_request.created".to_owned()) && types.contains(&"refund.succeeded".to_owned()),
        "{types:?}"
    );
    gw.assert_ledger_verifies();
});

e2e_tests!(unpaid_orders_expire_and_the_statement_sums_to_the_ledger, async |gw: Gateway| {
    let shop = gw.create_merchant("Day Shop");
    let alice = gw.new_consumer("对账").await;
    gw.top_up(&alice, "100.00").await;
    let mut total = 0i64;
    for (i, amount) in ["12.30", "0.01", "45.67"].iter().enumerate() {
        let order = gw.create_order(&shop, &format!("S{i}"), amount).await;
        pay(&gw, &alice, order["order_id"].as_str().unwrap(), "balance").await;
        total += paykit_core::Money::parse(amount, paykit_core::Currency::Cny).unwrap().minor_units();
    }
    let refunded = gw.create_order(&shop, "S9", "10.00").await;
    pay(&gw, &alice, refunded["order_id"].as_str().unwrap(), "balance").await;
    let r = gw
        .signed(&shop, "POST", "/v1/refunds", &refund_body(refunded["order_id"].as_str().unwrap(), "SR1", "4.00"))
        .await;
    assert_eq!(r.status, 201);
    total += 1000 - 400;

    // The unpaid order expires to CLOSED after its 2 hours, with payment.closed.
    let unpaid = gw.create_order(&shop, "X1", "9.99").await;
    let code_url = unpaid["code_url"].as_str().unwrap().to_owned();
    gw.advance_clock("2h").await;
    gw.advance_clock("1m").await;
    let mut status = String::new();
    for _ in 0..50 {
        status = gw
            .signed(&shop, "GET", &format!("/v1/orders/{}", unpaid["order_id"].as_str().unwrap()), "")
            .await
            .json()["status"]
            .as_str()
            .unwrap()
            .to_owned();
        if status == "CLOSED" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, "CLOSED");
    let scan = gw.wallet("POST", "/wallet/v1/scans", Some(&alice.token), json!({"code_url": code_url})).await;
    assert_eq!((scan.status, scan.code()), (409, "ORDER_EXPIRED".into()));
    let pay_late = gw
        .wallet(
            "POST",
            "/wallet/v1/payments",
            Some(&alice.token),
            json!({"order_id": unpaid["order_id"], "funding": "balance", "pay_password": alice.pay_password}),
        )
        .await;
    assert_eq!((pay_late.status, pay_late.code()), (409, "ORDER_EXPIRED".into()));
    let events = gw.signed(&shop, "GET", "/v1/notifications", "").await.json();
    assert!(events["notifications"].as_array().unwrap().iter().any(|n| n["event_type"] == "payment.closed"));

    // Today's statement (Beijing day) sums to the ledger to the cent.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let beijing = time::OffsetDateTime::from_unix_timestamp(now + 8 * 3600).unwrap().date();
    let path = format!("/v1/statements/{beijing}.csv");
    let csv = gw.signed(&shop, "GET", &path, "").await;
    assert_eq!(csv.status, 200, "{}", csv.body);
    let mut net = 0i64;
    for line in csv.body.lines().skip(1).filter(|l| !l.starts_with('#')) {
        let cols: Vec<&str> = line.split(',').collect();
        let amount = cols[8].trim_start_matches('-');
        let minor = paykit_core::Money::parse(amount, paykit_core::Currency::Cny).unwrap().minor_units();
        net += if cols[8].starts_with('-') { -minor } else { minor };
    }
    assert_eq!(net, total, "{}", csv.body);
    let totals = csv.body.lines().last().unwrap();
    assert!(
        totals.contains("trades=4")
            && totals.contains("refunds=1")
            && totals.contains(&format!(
                "net={}",
                paykit_core::Money::from_minor(total, paykit_core::Currency::Cny).unwrap()
            )),
        "{totals}"
    );
    let bad = gw.signed(&shop, "GET", "/v1/statements/2026-13-01.csv", "").await;
    assert_eq!((bad.status, bad.code()), (400, "INVALID_FIELD".into()));
    gw.assert_ledger_verifies();
});

e2e_tests!(unconfirmed_large_micropays_time_out, async |gw: Gateway| {
    let shop = gw.create_merchant("Timeout Shop");
    let alice = gw.new_consumer("超时").await;
    for _ in 0..2 {
        gw.top_up(&alice, "1000.00").await;
    }
    let dev = gw.wallet("POST", "/wallet/v1/devices", Some(&alice.token), json!({"name": "phone"})).await.json();
    use base64::Engine as _;
    let secret = base64::engine::general_purpose::STANDARD.decode(dev["device_secret"].as_str().unwrap()).unwrap();
    let code = paykit_core::payment_code::generate(
        dev["device_id"].as_str().unwrap().parse().unwrap(),
        &secret,
        paykit_tests::unix_now(),
    );
    let body =
        json!({"out_trade_no": "BIG", "amount": "1500.00", "auth_code": code, "description": "ring"}).to_string();
    let r = gw.signed(&shop, "POST", "/v1/micropay", &body).await;
    assert_eq!(r.json()["status"], "USERPAYING");
    gw.advance_clock("6m").await;
    let mut status = String::new();
    for _ in 0..50 {
        status = gw.signed(&shop, "GET", "/v1/orders/by-out-trade-no/BIG", "").await.json()["status"]
            .as_str()
            .unwrap()
            .to_owned();
        if status == "PAYERROR" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, "PAYERROR");
    assert_eq!(gw.balance(&alice).await, "2000.00");
    gw.assert_ledger_verifies();
});

e2e_tests!(a_partly_refunded_payment_code_order_cannot_be_reversed, async |gw: Gateway| {
    use base64::Engine as _;
    let shop = gw.create_merchant("No Double Return");
    let alice = gw.new_consumer("撤销").await;
    gw.top_up(&alice, "100.00").await;
    let dev = gw.wallet("POST", "/wallet/v1/devices", Some(&alice.token), json!({"name": "phone"})).await.json();
    let secret = base64::engine::general_purpose::STANDARD.decode(dev["device_secret"].as_str().unwrap()).unwrap();
    let code = paykit_core::payment_code::generate(
        dev["device_id"].as_str().unwrap().parse().unwrap(),
        &secret,
        paykit_tests::unix_now(),
    );
    let body = json!({"out_trade_no": "MR1", "amount": "100.00", "auth_code": code, "description": "lamp"}).to_string();
    let order = gw.signed(&shop, "POST", "/v1/micropay", &body).await.json();
    assert_eq!(order["status"], "SUCCESS");
    // A retry of the same micropay is answered from the order, code and all.
    assert_eq!(gw.signed(&shop, "POST", "/v1/micropay", &body).await.json()["order_id"], order["order_id"]);
    let order_id = order["order_id"].as_str().unwrap();
    let r = gw.signed(&shop, "POST", "/v1/refunds", &refund_body(order_id, "MR1-R", "30.00")).await;
    assert_eq!(r.status, 201);
    let reversed = gw.signed(&shop, "POST", &format!("/v1/orders/{order_id}/reverse"), "").await;
    assert_eq!((reversed.status, reversed.code()), (409, "ORDER_STATUS_INVALID".into()));
    assert_eq!(gw.balance(&alice).await, "30.00", "30.00 back once, not 130.00");
    gw.assert_ledger_verifies();
});
