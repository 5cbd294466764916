//! Bill pay: billers post bills (JSON or CSV, in bulk), consumers find and pay them.

use std::time::Duration;

use paykit_tests::{Gateway, Receiver, e2e_tests};
use serde_json::json;

e2e_tests!(ten_thousand_bills_with_three_bad_rows, async |gw: Gateway| {
    let water = gw.create_biller("City Water", "water", &[]);
    let mut csv = String::from("bill_no,customer_account,amount,due_date,period,customer_name\n");
    for i in 1..=10_000 {
        let (amount, due) = match i {
            17 => ("12.345".to_owned(), "2026-12-20"),
            5_000 => ("30.00".to_owned(), "2026-02-30"),
            9_999 => ("-5.00".to_owned(), "2026-12-20"),
            _ => (format!("{}.{:02}", 10 + i % 90, i % 100), "2026-12-20"),
        };
        csv += &format!("W{i:05},ACC{:05},{amount},{due},2026-11,Customer {i}\n", i % 3000);
    }
    let r = gw.signed_as(&water, "POST", "/v1/bills", &csv, "text/csv").await;
    assert_eq!(r.status, 200, "{}", &r.body[..r.body.len().min(500)]);
    let v = r.json();
    assert_eq!(v["accepted"], 9_997);
    let rejected: Vec<(u64, String)> = v["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| (x["row"].as_u64().unwrap(), x["code"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(
        rejected,
        [(17, "AMOUNT_TOO_PRECISE".into()), (5_000, "INVALID_FIELD".into()), (9_999, "AMOUNT_NEGATIVE".into())]
    );

    let again = gw.signed_as(&water, "POST", "/v1/bills", &csv, "text/csv").await.json();
    assert_eq!(
        (again["accepted"].as_i64(), again["duplicates"].as_i64()),
        (Some(0), Some(9_997)),
        "nothing new the second time"
    );
    let changed = "bill_no,customer_account,amount,due_date,period\nW00001,ACC00001,99.99,2026-12-20,2026-11\n";
    let r = gw.signed_as(&water, "POST", "/v1/bills", changed, "text/csv").await.json();
    assert_eq!(r["rejected"][0]["code"], "BILL_NO_REUSED");

    let one = gw.signed(&water, "GET", "/v1/bills/W00002", "").await;
    assert_eq!((one.json()["amount"].as_str(), one.json()["status"].as_str()), (Some("12.02"), Some("UNPAID")));
    // A merchant's key cannot act as a biller, nor a biller as a merchant.
    let shop = gw.create_merchant("Not A Biller");
    assert_eq!(gw.signed(&shop, "GET", "/v1/bills/W00002", "").await.code(), "AUTH_UNKNOWN_KEY");
    assert_eq!(gw.signed(&water, "GET", "/v1/merchant", "").await.code(), "AUTH_UNKNOWN_KEY");
});

e2e_tests!(consumers_find_and_pay_bills_and_the_biller_is_told, async |gw: Gateway| {
    let rx = Receiver::start().await;
    let power = gw.create_biller("Grid Power", "electricity", &["--notify-url", &rx.url]);
    let gas = gw.create_biller("Town Gas", "gas", &["--allow-partial"]);
    let bills = json!([
        {"bill_no": "E1", "customer_account": "8001", "amount": "88.20", "due_date": "2026-12-15", "period": "2026-11", "customer_name": "张三"},
        {"bill_no": "E2", "customer_account": "8001", "amount": "10.00", "due_date": "2026-12-15", "period": "2026-10"},
        {"bill_no": "bad one", "customer_account": "8001", "amount": "1.00", "due_date": "2026-12-15", "period": "2026-10"},
        {"bill_no": "E3", "customer_account": "8002", "amount": "5.00", "due_date": "2026-12-15", "period": "2026-11", "colour": "red"}
    ]);
    let r = gw.signed(&power, "POST", "/v1/bills", &bills.to_string()).await.json();
    assert_eq!(r["accepted"], 2);
    let codes: Vec<_> = r["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| (x["row"].as_u64().unwrap(), x["code"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(codes, [(3, "INVALID_FIELD".into()), (4, "UNKNOWN_FIELD".into())]);
    let single = json!({"bill_no": "G1", "customer_account": "77", "amount": "60.00", "due_date": "2026-12-01", "period": "2026-11"});
    assert_eq!(gw.signed(&gas, "POST", "/v1/bills", &single.to_string()).await.json()["accepted"], 1);

    let alice = gw.new_consumer("缴费").await;
    gw.top_up(&alice, "200.00").await;
    let listed =
        gw.wallet("GET", "/wallet/v1/billers?category=electricity", Some(&alice.token), json!(null)).await.json();
    assert_eq!(listed["billers"].as_array().unwrap().len(), 1);
    assert_eq!(listed["billers"][0]["name"], "Grid Power");
    let found = gw
        .wallet(
            "GET",
            &format!("/wallet/v1/bills?biller_id={}&customer_account=8001", power.merchant_id),
            Some(&alice.token),
            json!(null),
        )
        .await
        .json();
    assert_eq!(found["bills"].as_array().unwrap().len(), 2);
    let e1 = found["bills"].as_array().unwrap().iter().find(|b| b["bill_no"] == "E1").unwrap()["bill_id"]
        .as_str()
        .unwrap()
        .to_owned();

    let partial = gw
        .wallet(
            "POST",
            "/wallet/v1/bill-payments",
            Some(&alice.token),
            json!({"bill_id": e1, "amount": "8.20", "pay_password": alice.pay_password}),
        )
        .await;
    assert_eq!(
        (partial.status, partial.code()),
        (400, "BILL_AMOUNT_INVALID".into()),
        "this biller takes full payment only"
    );
    let paid = gw
        .wallet(
            "POST",
            "/wallet/v1/bill-payments",
            Some(&alice.token),
            json!({"bill_id": e1, "pay_password": alice.pay_password}),
        )
        .await;
    assert_eq!(paid.json()["status"], "PAID", "{}", paid.body);
    let twice = gw
        .wallet(
            "POST",
            "/wallet/v1/bill-payments",
            Some(&alice.token),
            json!({"bill_id": e1, "pay_password": alice.pay_password}),
        )
        .await;
    assert_eq!((twice.status, twice.code()), (409, "BILL_NOT_OPEN".into()));
    assert_eq!(gw.balance(&alice).await, "111.80");
    let got = rx.wait_for(1, Duration::from_secs(10)).await;
    assert!(got[0].verifies_with(&power.api_secret), "bill.paid is signed with the biller's key");
    assert_eq!(
        (got[0].json()["event_type"].as_str(), got[0].json()["data"]["bill_no"].as_str()),
        (Some("bill.paid"), Some("E1"))
    );

    // Partial payments where the biller allows them.
    let g1 = gw
        .wallet(
            "GET",
            &format!("/wallet/v1/bills?biller_id={}&customer_account=77", gas.merchant_id),
            Some(&alice.token),
            json!(null),
        )
        .await
        .json()["bills"][0]["bill_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let half = gw
        .wallet(
            "POST",
            "/wallet/v1/bill-payments",
            Some(&alice.token),
            json!({"bill_id": g1, "amount": "25.00", "pay_password": alice.pay_password}),
        )
        .await;
    assert_eq!((half.json()["status"].as_str(), half.json()["paid"].as_str()), (Some("PARTIAL"), Some("25.00")));
    let over = gw
        .wallet(
            "POST",
            "/wallet/v1/bill-payments",
            Some(&alice.token),
            json!({"bill_id": g1, "amount": "35.01", "pay_password": alice.pay_password}),
        )
        .await;
    assert_eq!(over.code(), "BILL_AMOUNT_INVALID");

    // A frozen biller cannot be paid; unfrozen, it can.
    let ops = gw.operator_token();
    let freeze = |frozen: bool| serde_json::json!({"party_kind": "biller", "party_id": gas.merchant_id, "frozen": frozen, "reason": "audit"});
    assert_eq!(gw.wallet("POST", "/ops/v1/freezes", Some(&ops), freeze(true)).await.status, 200);
    let blocked = gw
        .wallet(
            "POST",
            "/wallet/v1/bill-payments",
            Some(&alice.token),
            json!({"bill_id": g1, "amount": "1.00", "pay_password": alice.pay_password}),
        )
        .await;
    assert_eq!((blocked.status, blocked.code()), (403, "MERCHANT_FROZEN".into()));
    assert_eq!(gw.wallet("POST", "/ops/v1/freezes", Some(&ops), freeze(false)).await.status, 200);

    // Amend and cancel only while unpaid.
    let amended = gw.signed(&power, "PUT", "/v1/bills/E2", &json!({"amount": "12.00"}).to_string()).await;
    assert_eq!(amended.json()["amount"], "12.00", "{}", amended.body);
    assert_eq!(gw.signed(&power, "POST", "/v1/bills/E1/cancel", "").await.code(), "BILL_NOT_OPEN");
    assert_eq!(gw.signed(&power, "POST", "/v1/bills/E2/cancel", "").await.json()["status"], "CANCELLED");

    // The biller's statement shows the payment and sums to its ledger.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let day = time::OffsetDateTime::from_unix_timestamp(now + 8 * 3600).unwrap().date();
    let csv = gw.signed(&power, "GET", &format!("/v1/biller/statements/{day}.csv"), "").await;
    assert!(csv.body.lines().last().unwrap().contains("net=88.20"), "{}", csv.body);
    assert!(csv.body.contains(",payment,E1,8001,"), "{}", csv.body);
    gw.assert_ledger_verifies();
});
