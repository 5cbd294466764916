//! Wallet money: freezing, transfers, red packets, withdrawals and card repayments.

use std::time::Duration;

use paykit_tests::{Consumer, Gateway, e2e_tests};
use serde_json::json;

async fn post(gw: &Gateway, path: &str, token: &str, body: serde_json::Value) -> paykit_tests::Reply {
    gw.wallet("POST", path, Some(token), body).await
}

/// Polls until `check` holds (background work runs twice a second).
async fn eventually<F: AsyncFn() -> bool>(what: &str, check: F) {
    for _ in 0..100 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what} never happened");
}

e2e_tests!(a_frozen_account_sends_nothing_but_still_receives_refunds, async |gw: Gateway| {
    let shop = gw.create_merchant("Freeze Shop");
    let alice = gw.new_consumer("冻结").await;
    gw.top_up(&alice, "100.00").await;
    let order = gw.create_order(&shop, "F1", "10.00").await;
    let paid = post(
        &gw,
        "/wallet/v1/payments",
        &alice.token,
        json!({"order_id": order["order_id"], "funding": "balance", "pay_password": alice.pay_password}),
    )
    .await;
    assert_eq!(paid.json()["status"], "SUCCESS");

    assert_eq!(post(&gw, "/wallet/v1/freeze", &alice.token, json!({})).await.json()["frozen"], true);
    let order2 = gw.create_order(&shop, "F2", "1.00").await;
    let attempts = [
        (
            "/wallet/v1/payments",
            json!({"order_id": order2["order_id"], "funding": "balance", "pay_password": alice.pay_password}),
        ),
        (
            "/wallet/v1/transfers",
            json!({"to_merchant_id": shop.merchant_id, "amount": "1.00", "pay_password": alice.pay_password}),
        ),
        (
            "/wallet/v1/withdrawals",
            json!({"card_id": alice.card_id, "amount": "1.00", "pay_password": alice.pay_password}),
        ),
        (
            "/wallet/v1/red-packets",
            json!({"kind": "fixed", "total": "1.00", "shares": 1, "pay_password": alice.pay_password}),
        ),
    ];
    for (path, body) in attempts {
        let r = post(&gw, path, &alice.token, body).await;
        assert_eq!((r.status, r.code()), (403, "ACCOUNT_FROZEN".into()), "{path}: {}", r.body);
    }
    let refund = gw
        .signed(
            &shop,
            "POST",
            "/v1/refunds",
            &json!({"order_id": order["order_id"], "out_refund_no": "FR1", "amount": "10.00"}).to_string(),
        )
        .await;
    assert_eq!(refund.json()["status"], "SUCCESS", "{}", refund.body);
    assert_eq!(gw.balance(&alice).await, "100.00", "the refund landed in the frozen wallet");

    let wrong = post(&gw, "/wallet/v1/unfreeze", &alice.token, json!({"password": "correct horse", "pay_password": alice.pay_password, "name": alice.name, "id_number": "11010519491231002X"})).await;
    assert_eq!((wrong.status, wrong.code()), (403, "UNFREEZE_DENIED".into()));
    let seq = alice.phone[7..].parse::<u32>().unwrap();
    let ok = post(&gw, "/wallet/v1/unfreeze", &alice.token, json!({"password": "correct horse", "pay_password": alice.pay_password, "name": alice.name, "id_number": paykit_tests::resident_id(seq)})).await;
    assert_eq!(ok.json()["frozen"], false, "{}", ok.body);

    // The operator freezes the merchant: it cannot be paid, but can still refund.
    let ops = gw.operator_token();
    let r = post(
        &gw,
        "/ops/v1/freezes",
        &ops,
        json!({"party_kind": "merchant", "party_id": shop.merchant_id, "frozen": true, "reason": "fraud review"}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = post(
        &gw,
        "/wallet/v1/payments",
        &alice.token,
        json!({"order_id": order2["order_id"], "funding": "balance", "pay_password": alice.pay_password}),
    )
    .await;
    assert_eq!((r.status, r.code()), (403, "MERCHANT_FROZEN".into()));
    let audit = gw.wallet("GET", "/ops/v1/freezes", Some(&ops), json!(null)).await.json();
    let actions: Vec<_> = audit["freezes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["party_kind"].as_str().unwrap().to_owned(), f["frozen"].as_bool().unwrap()))
        .collect();
    assert_eq!(actions, [("merchant".to_owned(), true), ("user".to_owned(), false), ("user".to_owned(), true)]);
    gw.assert_ledger_verifies();
});

e2e_tests!(transfers_wait_for_the_payee_and_return_after_a_day, async |gw: Gateway| {
    let alice = gw.new_consumer("转出").await;
    gw.top_up(&alice, "100.00").await;
    let (bob_token, bob_phone) = gw.verified_user("转入").await;
    let send = |to: serde_json::Value, amount: &str| {
        let mut body = json!({"amount": amount, "memo": "dinner", "pay_password": alice.pay_password});
        body.as_object_mut().unwrap().extend(to.as_object().unwrap().clone());
        body
    };
    let t = post(&gw, "/wallet/v1/transfers", &alice.token, send(json!({"to_phone": bob_phone}), "30.00")).await;
    assert_eq!((t.status, t.json()["status"].as_str()), (201, Some("PENDING")), "{}", t.body);
    assert_eq!(gw.balance(&alice).await, "70.00");
    assert_eq!(gw.balance_of(&bob_token).await, "0.00", "nothing lands before acceptance");
    let mine = gw.wallet("GET", "/wallet/v1/transfers", Some(&alice.token), json!(null)).await.json();
    assert_eq!(mine["outgoing"][0]["status"], "PENDING");
    let theirs = gw.wallet("GET", "/wallet/v1/transfers", Some(&bob_token), json!(null)).await.json();
    let id = theirs["incoming"][0]["transfer_id"].as_str().unwrap().to_owned();
    let accepted = post(&gw, &format!("/wallet/v1/transfers/{id}/accept"), &bob_token, json!({})).await;
    assert_eq!(accepted.json()["status"], "ACCEPTED", "{}", accepted.body);
    assert_eq!(gw.balance_of(&bob_token).await, "30.00");
    let again = post(&gw, &format!("/wallet/v1/transfers/{id}/accept"), &bob_token, json!({})).await;
    assert_eq!((again.status, again.code()), (409, "TRANSFER_NOT_PENDING".into()));

    // Not accepted within 24 h: it goes back.
    let t2 = post(&gw, "/wallet/v1/transfers", &alice.token, send(json!({"to_phone": bob_phone}), "20.00")).await;
    // To a number with no wallet yet: claimable once it registers and verifies.
    let stranger = paykit_tests::random_phone();
    let t3 = post(&gw, "/wallet/v1/transfers", &alice.token, send(json!({"to_phone": stranger}), "5.00")).await;
    assert_eq!((t3.json()["payee_kind"].as_str(), t3.json()["status"].as_str()), (Some("phone"), Some("PENDING")));
    gw.wallet("POST", "/wallet/v1/users", None, json!({"phone": stranger, "password": "correct horse"})).await;
    let stranger_token = gw.log_in(&stranger).await;
    let unverified = gw.wallet("GET", "/wallet/v1/transfers", Some(&stranger_token), json!(null)).await.json();
    assert_eq!(unverified["incoming"].as_array().unwrap().len(), 0, "claimable only after real-name verification");
    let seq = stranger[7..].parse::<u32>().unwrap();
    post(
        &gw,
        "/wallet/v1/real-name",
        &stranger_token,
        json!({"name": "新人", "id_number": paykit_tests::resident_id(seq)}),
    )
    .await;
    let waiting = gw.wallet("GET", "/wallet/v1/transfers", Some(&stranger_token), json!(null)).await.json();
    let t3_id = waiting["incoming"][0]["transfer_id"].as_str().unwrap().to_owned();
    assert_eq!(
        post(&gw, &format!("/wallet/v1/transfers/{t3_id}/accept"), &stranger_token, json!({})).await.json()["status"],
        "ACCEPTED"
    );
    assert_eq!(gw.balance_of(&stranger_token).await, "5.00");

    // To a merchant: at once. A retry with the same Idempotency-Key moves nothing more.
    let shop = gw.create_merchant("Transfer Shop");
    let body = send(json!({"to_merchant_id": shop.merchant_id}), "1.00");
    let t4 = gw.wallet_with("POST", "/wallet/v1/transfers", Some(&alice.token), body.clone(), Some("tr-1")).await;
    assert_eq!(t4.json()["status"], "COMPLETED", "{}", t4.body);
    let again = gw.wallet_with("POST", "/wallet/v1/transfers", Some(&alice.token), body, Some("tr-1")).await;
    assert_eq!(again.json()["transfer_id"], t4.json()["transfer_id"]);
    let other = gw
        .wallet_with(
            "POST",
            "/wallet/v1/transfers",
            Some(&alice.token),
            send(json!({"to_merchant_id": shop.merchant_id}), "2.00"),
            Some("tr-1"),
        )
        .await;
    assert_eq!((other.status, other.code()), (409, "IDEMPOTENCY_KEY_REUSED".into()));
    let bad = post(&gw, "/wallet/v1/transfers", &alice.token, send(json!({"to_phone": alice.phone}), "1.00")).await;
    assert_eq!(bad.code(), "PAYEE_INVALID");
    let too_much =
        post(&gw, "/wallet/v1/transfers", &alice.token, send(json!({"to_phone": bob_phone}), "50000.00")).await;
    assert_eq!(too_much.code(), "INSUFFICIENT_BALANCE");

    assert_eq!(gw.balance(&alice).await, "44.00");
    gw.advance_clock("1d").await;
    gw.advance_clock("1m").await;
    let t2_id = t2.json()["transfer_id"].as_str().unwrap().to_owned();
    eventually("the unaccepted transfer returned", async || gw.balance(&alice).await == "64.00").await;
    let late = post(&gw, &format!("/wallet/v1/transfers/{t2_id}/accept"), &bob_token, json!({})).await;
    assert_eq!(late.code(), "TRANSFER_NOT_PENDING");
    gw.assert_ledger_verifies();
});

e2e_tests!(two_hundred_claims_on_a_hundred_share_packet, async |gw: Gateway| {
    let alice = gw.new_consumer("发红包").await;
    gw.top_up(&alice, "300.00").await;
    let r = post(
        &gw,
        "/wallet/v1/red-packets",
        &alice.token,
        json!({"kind": "lucky", "total": "200.00", "shares": 100, "pay_password": alice.pay_password}),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let packet = r.json()["red_packet_id"].as_str().unwrap().to_owned();
    for (body, code) in [
        (json!({"kind": "lucky", "total": "200.01", "shares": 2}), "RED_PACKET_INVALID"),
        (json!({"kind": "lucky", "total": "0.99", "shares": 100}), "RED_PACKET_INVALID"),
        (json!({"kind": "fixed", "total": "1.00", "shares": 3}), "RED_PACKET_INVALID"),
        (json!({"kind": "lucky", "total": "1.00", "shares": 101}), "RED_PACKET_INVALID"),
        (json!({"kind": "mystery", "total": "1.00", "shares": 1}), "INVALID_FIELD"),
    ] {
        let mut body = body;
        body["pay_password"] = json!(alice.pay_password);
        assert_eq!(post(&gw, "/wallet/v1/red-packets", &alice.token, body).await.code(), code);
    }

    let mut users = Vec::new();
    for i in 0..120 {
        users.push(gw.verified_user(&format!("抢{i}")).await.0);
    }
    let gw = std::sync::Arc::new(gw);
    // Every user claims once and 80 of them twice, all at once: 200 claims.
    let claims: Vec<_> = users.iter().chain(users.iter().take(80)).cloned().collect();
    let tasks: Vec<_> = claims
        .into_iter()
        .map(|token| {
            let (gw, packet) = (gw.clone(), packet.clone());
            tokio::spawn(async move {
                (token.clone(), post(&gw, &format!("/wallet/v1/red-packets/{packet}/claim"), &token, json!({})).await)
            })
        })
        .collect();
    let mut won = std::collections::BTreeMap::new();
    let mut codes = std::collections::BTreeMap::<String, usize>::new();
    for t in tasks {
        let (token, r) = t.await.unwrap();
        if r.status == 200 {
            let minor = paykit_core::Money::parse(r.json()["amount"].as_str().unwrap(), paykit_core::Currency::Cny)
                .unwrap()
                .minor_units();
            assert!(minor >= 1);
            assert!(won.insert(token, minor).is_none(), "a user claimed twice");
        } else {
            *codes.entry(r.code()).or_default() += 1;
        }
    }
    assert_eq!(won.len(), 100, "{codes:?}");
    assert_eq!(won.values().sum::<i64>(), 20_000, "the shares sum to the total");
    assert_eq!(codes.values().sum::<usize>(), 100);
    for (token, minor) in won.iter().take(5) {
        assert_eq!(
            paykit_core::Money::parse(&gw.balance_of(token).await, paykit_core::Currency::Cny).unwrap().minor_units(),
            *minor
        );
    }

    // A packet left partly unclaimed returns exactly the rest after 24 h.
    let r = post(
        &gw,
        "/wallet/v1/red-packets",
        &alice.token,
        json!({"kind": "fixed", "total": "10.00", "shares": 10, "pay_password": alice.pay_password}),
    )
    .await;
    let second = r.json()["red_packet_id"].as_str().unwrap().to_owned();
    for token in users.iter().take(3) {
        assert_eq!(
            post(&gw, &format!("/wallet/v1/red-packets/{second}/claim"), token, json!({})).await.json()["amount"],
            "1.00"
        );
    }
    assert_eq!(gw.balance(&alice).await, "90.00");
    gw.advance_clock("1d").await;
    gw.advance_clock("1m").await;
    eventually("the remainder returned", async || gw.balance(&alice).await == "97.00").await;
    let late = post(&gw, &format!("/wallet/v1/red-packets/{second}/claim"), &users[50], json!({})).await;
    assert_eq!(late.code(), "RED_PACKET_EMPTY");
    gw.assert_ledger_verifies();
});

async fn bind(gw: &Gateway, c: &Consumer, number: &str) -> String {
    let r = post(gw, "/wallet/v1/cards", &c.token, json!({"card_number": number, "holder_name": c.name})).await;
    assert_eq!(r.status, 201, "{}", r.body);
    r.json()["card_id"].as_str().unwrap().to_owned()
}

e2e_tests!(withdrawals_and_card_repayments, async |gw: Gateway| {
    let alice = gw.new_consumer("还款").await;
    for _ in 0..3 {
        gw.top_up(&alice, "1000.00").await;
    }
    let withdraw =
        |card: &str, amount: &str| json!({"card_id": card, "amount": amount, "pay_password": alice.pay_password});
    let w1 = post(&gw, "/wallet/v1/withdrawals", &alice.token, withdraw(&alice.card_id, "800.00")).await;
    assert_eq!(
        (w1.status, w1.json()["fee"].as_str(), w1.json()["status"].as_str()),
        (202, Some("0.00"), Some("PROCESSING")),
        "{}",
        w1.body
    );
    // 200.00 of the 1000.00 free quota is left: 0.1% of the other 300.00 is 0.30.
    let w2 = post(&gw, "/wallet/v1/withdrawals", &alice.token, withdraw(&alice.card_id, "500.00")).await;
    assert_eq!(w2.json()["fee"], "0.30");
    let w3 = post(&gw, "/wallet/v1/withdrawals", &alice.token, withdraw(&alice.card_id, "10.00")).await;
    assert_eq!(w3.json()["fee"], "0.10", "the minimum fee");
    assert_eq!(gw.balance(&alice).await, "1689.60");

    let credit = bind(&gw, &alice, "6258000000000006").await;
    let r = post(&gw, "/wallet/v1/withdrawals", &alice.token, withdraw(&credit, "1.00")).await;
    assert_eq!(r.code(), "CARD_NOT_SUPPORTED");
    let repay = |card: &str, funding: &str| json!({"card_id": card, "amount": "100.00", "funding": funding, "pay_password": alice.pay_password});
    let rp = post(&gw, "/wallet/v1/card-repayments", &alice.token, repay(&credit, "balance")).await;
    assert_eq!((rp.status, rp.json()["status"].as_str()), (202, Some("PROCESSING")), "{}", rp.body);
    let from_debit = post(&gw, "/wallet/v1/card-repayments", &alice.token, repay(&credit, &alice.card_id)).await;
    assert_eq!(from_debit.status, 202, "{}", from_debit.body);
    let declined_card = bind(&gw, &alice, "6258000000000022").await;
    let declined = post(&gw, "/wallet/v1/card-repayments", &alice.token, repay(&declined_card, "balance")).await;
    assert_eq!((declined.status, declined.code()), (402, "CARD_DECLINED".into()));
    let to_debit = post(&gw, "/wallet/v1/card-repayments", &alice.token, repay(&alice.card_id, "balance")).await;
    assert_eq!(to_debit.code(), "CARD_NOT_SUPPORTED");
    assert_eq!(gw.balance(&alice).await, "1589.60", "only the balance-funded repayment left the wallet");

    gw.advance_clock("31s").await;
    let id = rp.json()["id"].as_str().unwrap().to_owned();
    eventually("the repayment settled", async || {
        gw.wallet("GET", &format!("/wallet/v1/payouts/{id}"), Some(&alice.token), json!(null)).await.json()["status"]
            == "SUCCESS"
    })
    .await;
    let records = gw.wallet("GET", "/wallet/v1/records?type=withdrawal", Some(&alice.token), json!(null)).await.json();
    assert_eq!(records["records"].as_array().unwrap().len(), 3);
    gw.assert_ledger_verifies();
});

/// Risk rules from the config file: a held payment moves nothing until confirmed, and
/// nothing if declined or left to expire; a blocked one is refused; alerts reach the
/// consumer and the operator.
async fn risk_rules_hold_and_block(gw: Gateway) {
    let shop = gw.create_merchant("Risky Shop");
    let alice = gw.new_consumer("风控").await;
    for _ in 0..2 {
        gw.top_up(&alice, "1000.00").await;
    }
    let pay = |order_id: serde_json::Value| json!({"order_id": order_id, "funding": "balance", "pay_password": alice.pay_password});
    // A first payment of 300.00 to a new payee is held (threshold 200.00).
    let big = gw.create_order(&shop, "K1", "300.00").await;
    let held = post(&gw, "/wallet/v1/payments", &alice.token, pay(big["order_id"].clone())).await;
    assert_eq!((held.status, held.json()["status"].as_str()), (202, Some("HELD")), "{}", held.body);
    assert_eq!(held.json()["reasons"], "new_payee_amount");
    assert_eq!(gw.balance(&alice).await, "2000.00", "a held payment moves no money");
    let confirmation = held.json()["confirmation_id"].as_str().unwrap().to_owned();
    let listed = gw.wallet("GET", "/wallet/v1/confirmations", Some(&alice.token), json!(null)).await.json();
    assert_eq!(listed["confirmations"][0]["confirmation_id"], confirmation.as_str());
    let ok = post(
        &gw,
        &format!("/wallet/v1/confirmations/{confirmation}"),
        &alice.token,
        json!({"action": "confirm", "pay_password": alice.pay_password}),
    )
    .await;
    assert_eq!(ok.json()["status"], "SUCCESS", "{}", ok.body);
    assert_eq!(gw.balance(&alice).await, "1700.00");

    // Declined, and left to expire: nothing moves.
    let other = gw.create_merchant("Other Risky Shop");
    let o2 = gw.create_order(&other, "K2", "250.00").await;
    let h2 = post(&gw, "/wallet/v1/payments", &alice.token, pay(o2["order_id"].clone())).await;
    let c2 = h2.json()["confirmation_id"].as_str().unwrap().to_owned();
    assert_eq!(
        post(&gw, &format!("/wallet/v1/confirmations/{c2}"), &alice.token, json!({"action": "decline"})).await.json()["status"],
        "DECLINED"
    );
    let third = gw.create_merchant("Third Risky Shop");
    let o3 = gw.create_order(&third, "K3", "250.00").await;
    let h3 = post(&gw, "/wallet/v1/payments", &alice.token, pay(o3["order_id"].clone())).await;
    let c3 = h3.json()["confirmation_id"].as_str().unwrap().to_owned();
    gw.advance_clock("6m").await;
    let late = post(
        &gw,
        &format!("/wallet/v1/confirmations/{c3}"),
        &alice.token,
        json!({"action": "confirm", "pay_password": alice.pay_password}),
    )
    .await;
    assert_eq!(late.code(), "CONFIRMATION_NOT_PENDING");
    assert_eq!(gw.balance(&alice).await, "1700.00");

    // The daily limit (1,000.00) blocks outright.
    let o4 = gw.create_order(&shop, "K4", "199.00").await;
    assert_eq!(
        post(&gw, "/wallet/v1/payments", &alice.token, pay(o4["order_id"].clone())).await.json()["status"],
        "SUCCESS"
    );
    let o5 = gw.create_order(&shop, "K5", "600.00").await;
    let blocked = post(&gw, "/wallet/v1/payments", &alice.token, pay(o5["order_id"].clone())).await;
    assert_eq!((blocked.status, blocked.code()), (403, "RISK_BLOCKED".into()), "{}", blocked.body);
    // Velocity: a third payment within the window is held (threshold 2).
    let o6 = gw.create_order(&shop, "K6", "1.00").await;
    let r = post(&gw, "/wallet/v1/payments", &alice.token, pay(o6["order_id"].clone())).await;
    assert_eq!(
        (r.json()["status"].as_str(), r.json()["reasons"].as_str()),
        (Some("HELD"), Some("velocity")),
        "{}",
        r.body
    );

    let alerts = gw.wallet("GET", "/wallet/v1/alerts", Some(&alice.token), json!(null)).await.json();
    let kinds: Vec<_> =
        alerts["alerts"].as_array().unwrap().iter().map(|a| a["kind"].as_str().unwrap().to_owned()).collect();
    assert!(kinds.contains(&"risk_hold".to_owned()) && kinds.contains(&"risk_block".to_owned()), "{kinds:?}");
    let ops = gw.operator_token();
    let ops_alerts = gw.wallet("GET", "/ops/v1/risk-alerts", Some(&ops), json!(null)).await.json();
    assert!(ops_alerts["alerts"].as_array().unwrap().len() >= 5);
    gw.assert_ledger_verifies();
}

const RISK_CONFIG: &str = "[risk]\nvelocity = { threshold = 2, action = \"hold\" }\nvelocity_window_secs = 3600\n\
    daily_amount = { threshold = 100000, action = \"block\" }\nnew_payee_amount = { threshold = 20000, action = \"hold\" }\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn risk_rules_sqlite() {
    let options =
        paykit_tests::GatewayOptions { extra_args: paykit_tests::config_args(RISK_CONFIG), ..Default::default() };
    risk_rules_hold_and_block(Gateway::start_with(paykit_store::Engine::Sqlite, options).await.unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn risk_rules_postgres() {
    let options =
        paykit_tests::GatewayOptions { extra_args: paykit_tests::config_args(RISK_CONFIG), ..Default::default() };
    if let Some(gw) = Gateway::start_with(paykit_store::Engine::Postgres, options).await {
        risk_rules_hold_and_block(gw).await;
    }
}
