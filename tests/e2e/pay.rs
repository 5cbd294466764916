//! Paying: dynamic QR orders scanned by a wallet, payment codes scanned by a cashier, the
//! sandbox bank's test cards, and the failures the seed names.

use base64::Engine as _;
use paykit_core::payment_code;
use paykit_core::wallet::device_proof;
use paykit_tests::{Consumer, Credentials, Gateway, GatewayOptions, decode_qr_png, e2e_tests, unix_now};
use serde_json::json;

async fn order_status(gw: &Gateway, creds: &Credentials, order_id: &str) -> String {
    let r = gw.signed(creds, "GET", &format!("/v1/orders/{order_id}"), "").await;
    r.json()["status"].as_str().unwrap().to_owned()
}

async fn pay_with_password(gw: &Gateway, c: &Consumer, order_id: &str, funding: &str) -> paykit_tests::Reply {
    gw.wallet(
        "POST",
        "/wallet/v1/payments",
        Some(&c.token),
        json!({"order_id": order_id, "funding": funding, "pay_password": c.pay_password}),
    )
    .await
}

async fn merchant_balance_via_ledger(gw: &Gateway, merchant_id: &str) -> i64 {
    let pool = sqlx::AnyPool::connect(&gw.db.url).await.unwrap();
    sqlx::query_scalar::<_, i64>(
        "SELECT CAST(COALESCE(SUM(p.amount_minor), 0) AS BIGINT) FROM postings p JOIN accounts a ON a.id = p.account_id \
         WHERE a.owner_type = 'merchant' AND a.owner_id = $1",
    )
    .bind(merchant_id)
    .fetch_one(&pool)
    .await
    .unwrap()
}

e2e_tests!(a_dynamic_qr_order_is_scanned_and_paid, async |gw: Gateway| {
    let shop = gw.create_merchant("Lotus Tea House");
    let alice = gw.new_consumer("张三").await;
    gw.top_up(&alice, "100.00").await;

    let order = gw.create_order(&shop, "T1001", "12.30").await;
    let (order_id, code_url) = (order["order_id"].as_str().unwrap(), order["code_url"].as_str().unwrap());
    assert_eq!(order["status"], "NOTPAY");
    assert!(code_url.starts_with(&format!("{}/q/", gw.url)), "{code_url}");

    // The PNG decodes, with a real QR decoder, to exactly code_url; so do SVG and text exist.
    let png = gw.http.get(format!("{}/v1/orders/{order_id}/qr.png", gw.url));
    let header = paykit_tests::sign_header(
        &shop,
        "GET",
        &format!("/v1/orders/{order_id}/qr.png"),
        b"",
        unix_now(),
        &paykit_tests::new_nonce(),
    );
    let png = png.header("authorization", header).send().await.unwrap();
    assert_eq!(png.headers()["content-type"], "image/png");
    assert_eq!(decode_qr_png(&png.bytes().await.unwrap()), code_url);
    let svg = gw.signed(&shop, "GET", &format!("/v1/orders/{order_id}/qr.svg"), "").await;
    assert!(svg.body.starts_with("<?xml") && svg.body.contains("<svg"), "{}", &svg.body[..80.min(svg.body.len())]);
    let txt = gw.signed(&shop, "GET", &format!("/v1/orders/{order_id}/qr.txt"), "").await;
    assert!(txt.body.contains('█') || txt.body.contains('▀'), "{}", txt.body);

    let preview = gw.wallet("POST", "/wallet/v1/scans", Some(&alice.token), json!({"code_url": code_url})).await;
    assert_eq!(preview.status, 200, "{}", preview.body);
    let p = preview.json();
    assert_eq!(
        (p["merchant_name"].as_str(), p["amount"].as_str(), p["description"].as_str()),
        (Some("Lotus Tea House"), Some("12.30"), Some("Jasmine tea"))
    );

    let paid = pay_with_password(&gw, &alice, order_id, "balance").await;
    assert_eq!(paid.status, 200, "{}", paid.body);
    assert_eq!(paid.json()["status"], "SUCCESS");
    // A retry after a lost answer returns the same payment and charges nothing more.
    let again = pay_with_password(&gw, &alice, order_id, "balance").await;
    assert_eq!((again.status, again.json()["status"].as_str()), (200, Some("SUCCESS")));

    assert_eq!(order_status(&gw, &shop, order_id).await, "SUCCESS");
    assert_eq!(gw.balance(&alice).await, "87.70");
    assert_eq!(merchant_balance_via_ledger(&gw, &shop.merchant_id).await, 1230);
    let records = gw.wallet("GET", "/wallet/v1/records?type=payment", Some(&alice.token), json!(null)).await.json();
    let rec = &records["records"][0];
    assert_eq!(
        (rec["title"].as_str(), rec["amount"].as_str(), rec["status"].as_str()),
        (Some("Lotus Tea House"), Some("-12.30"), Some("SUCCESS"))
    );

    // Paid, closed and foreign codes are each refused with their own code.
    let bob = gw.new_consumer("李四").await;
    gw.top_up(&bob, "50.00").await;
    let r = gw.wallet("POST", "/wallet/v1/scans", Some(&bob.token), json!({"code_url": code_url})).await;
    assert_eq!((r.status, r.code()), (409, "ORDER_PAID".into()));
    let r = pay_with_password(&gw, &bob, order_id, "balance").await;
    assert_eq!((r.status, r.code()), (409, "ORDER_PAID".into()));
    let closed = gw.create_order(&shop, "T1002", "1.00").await;
    let close =
        gw.signed(&shop, "POST", &format!("/v1/orders/{}/close", closed["order_id"].as_str().unwrap()), "").await;
    assert_eq!((close.status, close.json()["status"].as_str()), (200, Some("CLOSED")));
    let r = gw.wallet("POST", "/wallet/v1/scans", Some(&bob.token), json!({"code_url": closed["code_url"]})).await;
    assert_eq!((r.status, r.code()), (409, "ORDER_CLOSED".into()));
    let r =
        gw.wallet("POST", "/wallet/v1/scans", Some(&bob.token), json!({"code_url": "https://example.com/q/abc"})).await;
    assert_eq!((r.status, r.code()), (400, "QR_CODE_INVALID".into()));

    // Another merchant cannot see the order.
    let other = gw.create_merchant("Other");
    let r = gw.signed(&other, "GET", &format!("/v1/orders/{order_id}"), "").await;
    assert_eq!((r.status, r.code()), (404, "NOT_FOUND".into()));
    gw.assert_ledger_verifies();
});

e2e_tests!(every_single_character_change_of_the_token_is_refused, async |gw: Gateway| {
    let shop = gw.create_merchant("Token Shop");
    let alice = gw.new_consumer("王五").await;
    let order = gw.create_order(&shop, "T1", "3.00").await;
    let code_url = order["code_url"].as_str().unwrap();
    let (prefix, token) = code_url.rsplit_once("/q/").unwrap();
    assert_eq!(
        gw.wallet("POST", "/wallet/v1/scans", Some(&alice.token), json!({"code_url": code_url})).await.status,
        200
    );
    for i in 0..token.len() {
        let mut changed = token.as_bytes().to_vec();
        changed[i] = if changed[i] == b'a' { b'b' } else { b'a' };
        let url = format!("{prefix}/q/{}", String::from_utf8(changed).unwrap());
        let r = gw.wallet("POST", "/wallet/v1/scans", Some(&alice.token), json!({"code_url": url})).await;
        assert_eq!((r.status, r.code()), (400, "QR_CODE_INVALID".into()), "position {i}");
    }
});

e2e_tests!(amounts_and_out_trade_no_are_idempotent, async |gw: Gateway| {
    let shop = gw.create_merchant("Idem Shop");
    let first = gw.create_order(&shop, "SAME-1", "5.00").await;
    let same = gw
        .signed(
            &shop,
            "POST",
            "/v1/orders",
            &json!({"out_trade_no": "SAME-1", "amount": "5.00", "description": "Jasmine tea"}).to_string(),
        )
        .await;
    assert_eq!(same.status, 200);
    assert_eq!(same.json()["order_id"], first["order_id"]);
    let different = gw
        .signed(
            &shop,
            "POST",
            "/v1/orders",
            &json!({"out_trade_no": "SAME-1", "amount": "5.01", "description": "Jasmine tea"}).to_string(),
        )
        .await;
    assert_eq!((different.status, different.code()), (409, "OUT_TRADE_NO_REUSED".into()));
    let by_otn = gw.signed(&shop, "GET", "/v1/orders/by-out-trade-no/SAME-1", "").await;
    assert_eq!(by_otn.json()["order_id"], first["order_id"]);
});

/// Registers a device for `c` and returns (device_id, secret bytes).
async fn register_device(gw: &Gateway, c: &Consumer, confirm: bool) -> (String, Vec<u8>) {
    let body = if confirm {
        json!({"name": "phone", "confirm_payments": true, "pay_password": c.pay_password})
    } else {
        json!({"name": "phone"})
    };
    let r = gw.wallet("POST", "/wallet/v1/devices", Some(&c.token), body).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let secret = base64::engine::general_purpose::STANDARD.decode(r.json()["device_secret"].as_str().unwrap()).unwrap();
    (r.json()["device_id"].as_str().unwrap().to_owned(), secret)
}

async fn micropay(
    gw: &Gateway,
    shop: &Credentials,
    out_trade_no: &str,
    amount: &str,
    auth_code: &str,
) -> paykit_tests::Reply {
    let body =
        json!({"out_trade_no": out_trade_no, "amount": amount, "auth_code": auth_code, "description": "noodles"})
            .to_string();
    gw.signed(shop, "POST", "/v1/micropay", &body).await
}

e2e_tests!(payment_codes_work_once_and_only_fresh, async |gw: Gateway| {
    let shop = gw.create_merchant("Noodle Bar");
    let alice = gw.new_consumer("赵六").await;
    gw.top_up(&alice, "100.00").await;
    let (device_id, secret) = register_device(&gw, &alice, false).await;
    let number: u32 = device_id.parse().unwrap();
    let now = unix_now();

    let code = payment_code::generate(number, &secret, now);
    let r = micropay(&gw, &shop, "M1", "8.50", &code).await;
    assert_eq!((r.status, r.json()["status"].as_str()), (200, Some("SUCCESS")), "{}", r.body);
    let used = micropay(&gw, &shop, "M2", "8.50", &code).await;
    assert_eq!((used.status, used.code()), (409, "AUTH_CODE_USED".into()));
    let stale = payment_code::generate(number, &secret, now - 61);
    let r = micropay(&gw, &shop, "M3", "1.00", &stale).await;
    assert_eq!((r.status, r.code()), (400, "AUTH_CODE_INVALID".into()), "a code older than 60 s");
    let mut misread = code.clone().into_bytes();
    misread[17] = if misread[17] == b'0' { b'1' } else { b'0' };
    let r = micropay(&gw, &shop, "M4", "1.00", std::str::from_utf8(&misread).unwrap()).await;
    assert_eq!((r.status, r.code()), (400, "AUTH_CODE_MALFORMED".into()));
    // Another device's secret under this device's number.
    let bob = gw.new_consumer("钱七").await;
    let (_, bob_secret) = register_device(&gw, &bob, false).await;
    let forged = payment_code::generate(number, &bob_secret, now);
    let r = micropay(&gw, &shop, "M5", "1.00", &forged).await;
    assert_eq!((r.status, r.code()), (400, "AUTH_CODE_INVALID".into()));

    assert_eq!(gw.balance(&alice).await, "91.50");
    let reversed = gw
        .signed(
            &shop,
            "POST",
            &format!(
                "/v1/orders/{}/reverse",
                gw.signed(&shop, "GET", "/v1/orders/by-out-trade-no/M1", "").await.json()["order_id"].as_str().unwrap()
            ),
            "",
        )
        .await;
    assert_eq!((reversed.status, reversed.json()["status"].as_str()), (200, Some("REVOKED")), "{}", reversed.body);
    assert_eq!(gw.balance(&alice).await, "100.00", "a reversed payment returns in full");
    gw.assert_ledger_verifies();
});

e2e_tests!(random_codes_are_rate_limited_and_none_succeeds, async |gw: Gateway| {
    let shop = gw.create_merchant("Target Shop");
    let alice = gw.new_consumer("孙八").await;
    gw.top_up(&alice, "100.00").await;
    let (device_id, _) = register_device(&gw, &alice, false).await;
    let mut limited = 0;
    for i in 0..1000u32 {
        // Well-formed (prefix 13, Luhn-valid) codes: half aimed at a real device number.
        let device = if i % 2 == 0 { device_id.parse::<u32>().unwrap() } else { 10_000_000 + i };
        let payload = format!("13{device:08}{:07}", (i * 7919 + 12345) % 10_000_000);
        let code = format!("{payload}{}", paykit_core::luhn::check_digit(&payload).unwrap());
        let r = micropay(&gw, &shop, &format!("R{i}"), "1.00", &code).await;
        assert_ne!(r.status, 200, "a random code paid: {}", r.body);
        if r.status == 429 {
            limited += 1;
        }
    }
    assert!(limited >= 950, "only {limited} of 1000 were rate-limited");
    assert_eq!(gw.balance(&alice).await, "100.00");
    let alerts = gw.wallet("GET", "/wallet/v1/alerts", Some(&alice.token), json!(null)).await.json();
    assert_eq!(alerts["alerts"][0]["kind"], "device_suspended", "the device's owner is told");
});

e2e_tests!(fifty_concurrent_micropays_with_one_code_move_money_once, async |gw: Gateway| {
    let shop = gw.create_merchant("Busy Counter");
    let alice = gw.new_consumer("周九").await;
    gw.top_up(&alice, "100.00").await;
    let (device_id, secret) = register_device(&gw, &alice, false).await;
    let code = payment_code::generate(device_id.parse().unwrap(), &secret, unix_now());
    let gw = std::sync::Arc::new(gw);
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let (gw, shop, code) = (gw.clone(), shop.clone(), code.clone());
            tokio::spawn(async move { micropay(&gw, &shop, "SAME", "9.99", &code).await })
        })
        .collect();
    let mut ids = std::collections::BTreeSet::new();
    for t in tasks {
        let r = t.await.unwrap();
        assert_eq!((r.status, r.json()["status"].as_str()), (200, Some("SUCCESS")), "{}", r.body);
        ids.insert(r.json()["order_id"].as_str().unwrap().to_owned());
    }
    assert_eq!(ids.len(), 1, "one order");
    assert_eq!(gw.balance(&alice).await, "90.01", "charged once");
    gw.assert_ledger_verifies();
});

e2e_tests!(fifty_concurrent_payments_never_overdraw, async |gw: Gateway| {
    let shop = gw.create_merchant("Crowded Shop");
    let alice = gw.new_consumer("吴十").await;
    gw.top_up(&alice, "30.00").await;
    let mut orders = Vec::new();
    for i in 0..50 {
        orders.push(gw.create_order(&shop, &format!("C{i}"), "1.00").await["order_id"].as_str().unwrap().to_owned());
    }
    // Device confirmations, so 50 Argon2 checks do not dominate the test.
    let (device_id, secret) = register_device(&gw, &alice, true).await;
    let gw = std::sync::Arc::new(gw);
    let tasks: Vec<_> = orders
        .into_iter()
        .map(|order_id| {
            let (gw, alice, device_id, secret) = (gw.clone(), alice.clone(), device_id.clone(), secret.clone());
            tokio::spawn(async move {
                let ts = unix_now();
                let proof = device_proof(&secret, &order_id, "1.00", ts);
                let body = json!({"order_id": order_id, "funding": "balance", "device_id": device_id, "device_ts": ts, "device_proof": proof});
                gw.wallet("POST", "/wallet/v1/payments", Some(&alice.token), body).await
            })
        })
        .collect();
    let (mut paid, mut refused) = (0, 0);
    for t in tasks {
        let r = t.await.unwrap();
        match r.status {
            200 => paid += 1,
            409 if r.code() == "INSUFFICIENT_BALANCE" => refused += 1,
            _ => panic!("unexpected {}", r.body),
        }
    }
    assert_eq!((paid, refused), (30, 20));
    assert_eq!(gw.balance(&alice).await, "0.00");
    gw.assert_ledger_verifies();
});

e2e_tests!(device_confirmations_are_checked, async |gw: Gateway| {
    let shop = gw.create_merchant("Biometric Shop");
    let alice = gw.new_consumer("郑一").await;
    gw.top_up(&alice, "20.00").await;
    let (device_id, secret) = register_device(&gw, &alice, true).await;
    let (_, plain_secret) = register_device(&gw, &alice, false).await;
    let order = gw.create_order(&shop, "D1", "12.30").await;
    let order_id = order["order_id"].as_str().unwrap();
    let now = unix_now();
    let pay = |device_id: &str, ts: i64, proof: String| json!({"order_id": order_id, "funding": "balance", "device_id": device_id, "device_ts": ts, "device_proof": proof});
    let cases = [
        (pay(&device_id, now, "bm90IGEgcHJvb2Y=".into()), "DEVICE_PROOF_INVALID"),
        (pay(&device_id, now - 301, device_proof(&secret, order_id, "12.30", now - 301)), "DEVICE_PROOF_EXPIRED"),
        (pay(&device_id, now, device_proof(&plain_secret, order_id, "12.30", now)), "DEVICE_PROOF_INVALID"),
        (pay(&device_id, now, device_proof(&secret, order_id, "12.31", now)), "DEVICE_PROOF_INVALID"),
    ];
    for (body, code) in cases {
        let r = gw.wallet("POST", "/wallet/v1/payments", Some(&alice.token), body).await;
        assert_eq!((r.status, r.code()), (403, code.to_owned()), "{}", r.body);
    }
    assert_eq!(gw.balance(&alice).await, "20.00");
    let ok = gw
        .wallet(
            "POST",
            "/wallet/v1/payments",
            Some(&alice.token),
            pay(&device_id, now, device_proof(&secret, order_id, "12.30", now)),
        )
        .await;
    assert_eq!((ok.status, ok.json()["status"].as_str()), (200, Some("SUCCESS")), "{}", ok.body);
    assert_eq!(gw.balance(&alice).await, "7.70");
});

e2e_tests!(large_micropays_wait_for_the_consumer, async |gw: Gateway| {
    let shop = gw.create_merchant("Jeweller");
    let alice = gw.new_consumer("冯二").await;
    for _ in 0..3 {
        gw.top_up(&alice, "1000.00").await;
    }
    let (device_id, secret) = register_device(&gw, &alice, false).await;
    let number = device_id.parse().unwrap();
    let r = micropay(&gw, &shop, "BIG1", "1500.00", &payment_code::generate(number, &secret, unix_now())).await;
    assert_eq!((r.status, r.json()["status"].as_str()), (200, Some("USERPAYING")), "{}", r.body);
    let order_id = r.json()["order_id"].as_str().unwrap().to_owned();
    assert_eq!(gw.balance(&alice).await, "3000.00", "nothing moves before confirmation");
    let pending = gw.wallet("GET", "/wallet/v1/confirmations", Some(&alice.token), json!(null)).await.json();
    let confirmation_id = pending["confirmations"][0]["confirmation_id"].as_str().unwrap().to_owned();
    assert_eq!(pending["confirmations"][0]["amount"], "1500.00");
    let wrong = gw
        .wallet(
            "POST",
            &format!("/wallet/v1/confirmations/{confirmation_id}"),
            Some(&alice.token),
            json!({"action": "confirm", "pay_password": "802461"}),
        )
        .await;
    assert_eq!((wrong.status, wrong.code()), (403, "PAY_PASSWORD_WRONG".into()));
    let ok = gw
        .wallet(
            "POST",
            &format!("/wallet/v1/confirmations/{confirmation_id}"),
            Some(&alice.token),
            json!({"action": "confirm", "pay_password": alice.pay_password}),
        )
        .await;
    assert_eq!((ok.status, ok.json()["status"].as_str()), (200, Some("SUCCESS")), "{}", ok.body);
    assert_eq!(order_status(&gw, &shop, &order_id).await, "SUCCESS");
    assert_eq!(gw.balance(&alice).await, "1500.00");

    // A second one (from her other phone) she never confirms: the merchant reverses it and
    // nothing moves.
    let (other_device, other_secret) = register_device(&gw, &alice, false).await;
    let code = payment_code::generate(other_device.parse().unwrap(), &other_secret, unix_now());
    let r = micropay(&gw, &shop, "BIG2", "1200.00", &code).await;
    assert_eq!(r.json()["status"], "USERPAYING", "{}", r.body);
    let order_id = r.json()["order_id"].as_str().unwrap().to_owned();
    let reversed = gw.signed(&shop, "POST", &format!("/v1/orders/{order_id}/reverse"), "").await;
    assert_eq!(reversed.json()["status"], "REVOKED");
    let pending = gw.wallet("GET", "/wallet/v1/confirmations", Some(&alice.token), json!(null)).await.json();
    assert_eq!(pending["confirmations"].as_array().unwrap().len(), 0);
    assert_eq!(gw.balance(&alice).await, "1500.00");
    gw.assert_ledger_verifies();
});

e2e_tests!(pay_password_locks_after_five_wrong_tries, async |gw: Gateway| {
    let shop = gw.create_merchant("Lock Shop");
    let alice = gw.new_consumer("陈三").await;
    gw.top_up(&alice, "10.00").await;
    let order = gw.create_order(&shop, "L1", "1.00").await;
    let body = json!({"order_id": order["order_id"], "funding": "balance", "pay_password": "802461"});
    for left in (1..5).rev() {
        let r = gw.wallet("POST", "/wallet/v1/payments", Some(&alice.token), body.clone()).await;
        assert_eq!(
            (r.status, r.code(), r.json()["tries_left"].as_i64()),
            (403, "PAY_PASSWORD_WRONG".into(), Some(left))
        );
    }
    let r = gw.wallet("POST", "/wallet/v1/payments", Some(&alice.token), body).await;
    assert_eq!((r.status, r.code()), (423, "PAY_PASSWORD_LOCKED".into()));
    assert!(r.json()["unlock_at"].as_str().is_some());
    // Even the right password is refused while locked.
    let r = gw
        .wallet(
            "POST",
            "/wallet/v1/payments",
            Some(&alice.token),
            json!({"order_id": order["order_id"], "funding": "balance", "pay_password": alice.pay_password}),
        )
        .await;
    assert_eq!((r.status, r.code()), (423, "PAY_PASSWORD_LOCKED".into()));
    assert_eq!(gw.balance(&alice).await, "10.00");
});

e2e_tests!(wallet_accounts_refuse_bad_input, async |gw: Gateway| {
    let post = |path: &'static str, token: Option<String>, body: serde_json::Value| {
        let gw = &gw;
        async move { gw.wallet("POST", path, token.as_deref(), body).await }
    };
    let r = post("/wallet/v1/users", None, json!({"phone": "12345", "password": "correct horse"})).await;
    assert_eq!(r.code(), "PHONE_INVALID");
    let r = post("/wallet/v1/users", None, json!({"phone": "13900000001", "password": "short"})).await;
    assert_eq!(r.code(), "PASSWORD_INVALID");
    let alice = gw.new_consumer("林四").await;
    let r = post("/wallet/v1/users", None, json!({"phone": alice.phone, "password": "correct horse"})).await;
    assert_eq!((r.status, r.code()), (409, "PHONE_ALREADY_REGISTERED".into()));
    let r = post("/wallet/v1/sessions", None, json!({"phone": alice.phone, "password": "wrong horse"})).await;
    assert_eq!((r.status, r.code()), (401, "LOGIN_FAILED".into()));
    let r = gw.wallet("GET", "/wallet/v1/balance", Some("not-a-token"), json!(null)).await;
    assert_eq!((r.status, r.code()), (401, "SESSION_INVALID".into()));
    for weak in ["123456", "111111", "654321"] {
        let r = gw
            .wallet(
                "PUT",
                "/wallet/v1/pay-password",
                Some(&alice.token),
                json!({"pay_password": weak, "old_pay_password": alice.pay_password}),
            )
            .await;
        assert_eq!(r.code(), "PAY_PASSWORD_WEAK", "{weak}");
    }

    // A new user who skipped real-name verification cannot pay or bind cards.
    let phone = paykit_tests::random_phone();
    post("/wallet/v1/users", None, json!({"phone": phone, "password": "correct horse"})).await;
    let token =
        post("/wallet/v1/sessions", None, json!({"phone": phone, "password": "correct horse"})).await.json()["token"]
            .as_str()
            .unwrap()
            .to_owned();
    let r =
        post("/wallet/v1/cards", Some(token.clone()), json!({"card_number": "6222000000000009", "holder_name": "x"}))
            .await;
    assert_eq!((r.status, r.code()), (403, "REAL_NAME_REQUIRED".into()));
    let shop = gw.create_merchant("Name Shop");
    let order = gw.create_order(&shop, "N1", "1.00").await;
    let r = post(
        "/wallet/v1/payments",
        Some(token.clone()),
        json!({"order_id": order["order_id"], "funding": "balance", "pay_password": "135790"}),
    )
    .await;
    assert_eq!((r.status, r.code()), (403, "REAL_NAME_REQUIRED".into()));
    let bad_id = paykit_tests::resident_id(1).replace('X', "1");
    let mut bad_id = bad_id.into_bytes();
    bad_id[17] = if bad_id[17] == b'0' { b'1' } else { b'0' };
    let r = post(
        "/wallet/v1/real-name",
        Some(token.clone()),
        json!({"name": "林五", "id_number": String::from_utf8(bad_id).unwrap()}),
    )
    .await;
    assert_eq!((r.status, r.code()), (400, "ID_NUMBER_INVALID".into()));
    let r = post(
        "/wallet/v1/cards",
        Some(alice.token.clone()),
        json!({"card_number": "6222000000000008", "holder_name": alice.name}),
    )
    .await;
    assert_eq!(r.code(), "CARD_NUMBER_INVALID");
    let r = post(
        "/wallet/v1/cards",
        Some(alice.token.clone()),
        json!({"card_number": "6222000000000025", "holder_name": "Someone Else"}),
    )
    .await;
    assert_eq!(r.code(), "CARD_HOLDER_MISMATCH");
    let r = post(
        "/wallet/v1/cards",
        Some(alice.token.clone()),
        json!({"card_number": "6222000000000009", "holder_name": alice.name}),
    )
    .await;
    assert_eq!((r.status, r.code()), (409, "CARD_ALREADY_BOUND".into()));
});

e2e_tests!(a_payment_answers_a_dead_session_before_anything_else, async |gw: Gateway| {
    let alice = gw.new_consumer("林六").await;
    gw.top_up(&alice, "5.00").await;
    let shop = gw.create_merchant("Session Shop");
    let order = gw.create_order(&shop, "S1", "1.00").await;
    let good = json!({"order_id": order["order_id"], "funding": "balance", "pay_password": alice.pay_password});
    let bad_body = json!({"order_id": order["order_id"], "funding": "balance", "colour": "red"});
    let no_order = json!({"order_id": "ord_nosuchorder", "funding": "balance", "pay_password": alice.pay_password});
    // PostgreSQL refuses a NUL in text, which fails the payment's first read.
    let nul = json!({"order_id": "ord_\u{0}", "funding": "balance", "pay_password": alice.pay_password});
    let pay = |token: Option<&str>, body: &serde_json::Value, key: Option<&str>| {
        let (gw, token, body, key) = (&gw, token.map(str::to_owned), body.clone(), key.map(str::to_owned));
        async move { gw.wallet_with("POST", "/wallet/v1/payments", token.as_deref(), body, key.as_deref()).await }
    };
    // No session, or one nobody has: 401 whatever else is wrong with the request.
    for token in [None, Some("no-such-session")] {
        for (body, key) in
            [(&good, None), (&bad_body, None), (&no_order, None), (&nul, None), (&good, Some("not a key!"))]
        {
            let r = pay(token, body, key).await;
            assert_eq!((r.status, r.code()), (401, "SESSION_INVALID".into()), "{token:?} {body} {key:?}");
        }
    }
    // A live session gets the request's own answers, and nothing moves.
    let r = pay(Some(&alice.token), &bad_body, None).await;
    assert_eq!((r.status, r.code()), (400, "UNKNOWN_FIELD".into()));
    let r = pay(Some(&alice.token), &good, Some("not a key!")).await;
    assert_eq!((r.status, r.code()), (400, "IDEMPOTENCY_KEY_INVALID".into()));
    let r = pay(Some(&alice.token), &no_order, None).await;
    assert_eq!((r.status, r.code()), (404, "NOT_FOUND".into()));
    let r = pay(Some(&alice.token), &nul, None).await;
    assert!(matches!(r.status, 400 | 404), "{}", r.body);
    assert_eq!(gw.balance(&alice).await, "5.00");
    // The user is read as they are at the payment: frozen since logging in, refused.
    let r = gw.wallet("POST", "/wallet/v1/freeze", Some(&alice.token), json!({})).await;
    assert_eq!(r.json()["frozen"], true);
    let r = pay(Some(&alice.token), &good, None).await;
    assert_eq!((r.status, r.code()), (403, "ACCOUNT_FROZEN".into()));
    assert_eq!(gw.balance(&alice).await, "5.00");
    let seq = alice.phone[7..].parse::<u32>().unwrap();
    let unfreeze = json!({"password": "correct horse", "pay_password": alice.pay_password, "name": alice.name,
        "id_number": paykit_tests::resident_id(seq)});
    let r = gw.wallet("POST", "/wallet/v1/unfreeze", Some(&alice.token), unfreeze).await;
    assert_eq!(r.json()["frozen"], false, "{}", r.body);
    let r = pay(Some(&alice.token), &good, None).await;
    assert_eq!((r.status, r.json()["status"].as_str()), (200, Some("SUCCESS")));
    assert_eq!(gw.balance(&alice).await, "4.00");
});

/// A gateway whose sandbox bank answers the slow card after 2 s instead of 30.
async fn gateway_with_fast_slow_card(engine: paykit_store::Engine) -> Option<Gateway> {
    let dir = std::env::temp_dir().join(format!("paykit-cfg-{}", paykit_store::ids::random_base32(8)));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("paykit.toml");
    std::fs::write(&config, "sandbox_slow_card_secs = 2\n").unwrap();
    Gateway::start_with(
        engine,
        GatewayOptions { extra_args: vec!["--config".into(), config.display().to_string()], ..Default::default() },
    )
    .await
}

async fn sandbox_cards_behave_as_documented(gw: Gateway) {
    let shop = gw.create_merchant("Card Shop");
    let alice = gw.new_consumer("黄六").await;
    let bind = |number: &'static str| {
        let (gw, alice) = (&gw, &alice);
        async move {
            let r = gw
                .wallet(
                    "POST",
                    "/wallet/v1/cards",
                    Some(&alice.token),
                    json!({"card_number": number, "holder_name": alice.name}),
                )
                .await;
            assert_eq!(r.status, 201, "{}", r.body);
            r.json()["card_id"].as_str().unwrap().to_owned()
        }
    };
    let top_up = |card_id: String, amount: &'static str| {
        let (gw, alice) = (&gw, &alice);
        async move {
            gw.wallet(
                "POST",
                "/wallet/v1/top-ups",
                Some(&alice.token),
                json!({"card_id": card_id, "amount": amount, "pay_password": alice.pay_password}),
            )
            .await
        }
    };
    let declined = bind("6222000000000025").await;
    let credit = bind("6258000000000006").await;
    for (card, code, status) in [
        (declined.clone(), "CARD_DECLINED", 402),
        (bind("6222000000009950").await, "CARD_INSUFFICIENT_FUNDS", 402),
        (bind("6222000000000066").await, "CARD_EXPIRED", 402),
        (credit.clone(), "CARD_NOT_SUPPORTED", 400),
    ] {
        let r = top_up(card, "10.00").await;
        assert_eq!((r.status, r.code()), (status, code.to_owned()), "{}", r.body);
    }
    assert_eq!(gw.balance(&alice).await, "0.00", "no refused card moved money");

    let r = top_up(alice.card_id.clone(), "10.00").await;
    assert_eq!((r.status, r.json()["status"].as_str()), (200, Some("SUCCESS")));

    // The slow card: PROCESSING now, SUCCESS once the bank answers, exactly once.
    let slow = bind("6222000000001197").await;
    let r = gw
        .wallet_with(
            "POST",
            "/wallet/v1/top-ups",
            Some(&alice.token),
            json!({"card_id": slow, "amount": "5.00", "pay_password": alice.pay_password}),
            Some("slow-1"),
        )
        .await;
    assert_eq!((r.status, r.json()["status"].as_str()), (202, Some("PROCESSING")), "{}", r.body);
    let top_up_id = r.json()["top_up_id"].as_str().unwrap().to_owned();
    let replay = gw
        .wallet_with(
            "POST",
            "/wallet/v1/top-ups",
            Some(&alice.token),
            json!({"card_id": slow, "amount": "5.00", "pay_password": alice.pay_password}),
            Some("slow-1"),
        )
        .await;
    assert_eq!(replay.json()["top_up_id"].as_str(), Some(top_up_id.as_str()), "a replay returns the first top-up");
    assert_eq!(gw.balance(&alice).await, "10.00");

    // A card-funded payment on the slow card waits in USERPAYING, then succeeds.
    let order = gw.create_order(&shop, "K1", "3.00").await;
    let r = gw
        .wallet(
            "POST",
            "/wallet/v1/payments",
            Some(&alice.token),
            json!({"order_id": order["order_id"], "funding": credit, "pay_password": alice.pay_password}),
        )
        .await;
    assert_eq!(
        (r.status, r.json()["status"].as_str(), r.json()["funding"].as_str()),
        (200, Some("SUCCESS"), Some("card")),
        "a credit card pays"
    );
    let order2 = gw.create_order(&shop, "K2", "4.00").await;
    let r = gw
        .wallet(
            "POST",
            "/wallet/v1/payments",
            Some(&alice.token),
            json!({"order_id": order2["order_id"], "funding": slow, "pay_password": alice.pay_password}),
        )
        .await;
    assert_eq!(r.json()["status"], "USERPAYING", "{}", r.body);
    let order3 = gw.create_order(&shop, "K3", "4.00").await;
    let r = gw
        .wallet(
            "POST",
            "/wallet/v1/payments",
            Some(&alice.token),
            json!({"order_id": order3["order_id"], "funding": declined, "pay_password": alice.pay_password}),
        )
        .await;
    assert_eq!((r.status, r.code()), (402, "CARD_DECLINED".into()));
    assert_eq!(order_status(&gw, &shop, order3["order_id"].as_str().unwrap()).await, "NOTPAY");

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let t =
            gw.wallet("GET", &format!("/wallet/v1/top-ups/{top_up_id}"), Some(&alice.token), json!(null)).await.json();
        let o = order_status(&gw, &shop, order2["order_id"].as_str().unwrap()).await;
        if t["status"] == "SUCCESS" && o == "SUCCESS" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the slow card never settled: {t} {o}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(gw.balance(&alice).await, "15.00", "the slow top-up landed exactly once");
    assert_eq!(merchant_balance_via_ledger(&gw, &shop.merchant_id).await, 700);
    gw.assert_ledger_verifies();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox_cards_sqlite() {
    sandbox_cards_behave_as_documented(gateway_with_fast_slow_card(paykit_store::Engine::Sqlite).await.unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox_cards_postgres() {
    if let Some(gw) = gateway_with_fast_slow_card(paykit_store::Engine::Postgres).await {
        sandbox_cards_behave_as_documented(gw).await;
    }
}
