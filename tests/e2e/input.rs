//! Bad input gets a specific 400 and changes nothing: never a 500, never a panic.

use paykit_tests::{Gateway, e2e_tests};
use serde_json::json;

e2e_tests!(bad_amounts_and_bodies_get_specific_codes, async |gw: Gateway| {
    let creds = gw.create_merchant("Strict Shop");
    let order =
        |amount: serde_json::Value| json!({"out_trade_no": "T1", "amount": amount, "description": "tea"}).to_string();
    let cases: Vec<(String, &str)> = vec![
        (order(json!("1.001")), "AMOUNT_TOO_PRECISE"),
        (order(json!("-1")), "AMOUNT_NEGATIVE"),
        (order(json!("1e3")), "AMOUNT_INVALID"),
        (order(json!("NaN")), "AMOUNT_INVALID"),
        (order(json!(" 1.00")), "AMOUNT_INVALID"),
        (order(json!("99999999999999999999")), "AMOUNT_TOO_LARGE"),
        (order(json!("50000.01")), "AMOUNT_TOO_LARGE"),
        (order(json!("0.00")), "AMOUNT_ZERO"),
        (order(json!(12.3)), "INVALID_FIELD"),
        (order(json!(null)), "INVALID_FIELD"),
        ("{\"out_trade_no\": \"T1\", \"amount\": \"1.00\"".to_owned(), "INVALID_JSON"),
        ("not json".to_owned(), "INVALID_JSON"),
        ("[]".to_owned(), "INVALID_FIELD"),
        (json!({"out_trade_no": "T1", "amount": "1.00"}).to_string(), "MISSING_FIELD"),
        (
            json!({"out_trade_no": "T1", "amount": "1.00", "description": "tea", "price": "1"}).to_string(),
            "UNKNOWN_FIELD",
        ),
        (json!({"out_trade_no": 7, "amount": "1.00", "description": "tea"}).to_string(), "INVALID_FIELD"),
        (json!({"out_trade_no": "T 1", "amount": "1.00", "description": "tea"}).to_string(), "INVALID_FIELD"),
        (json!({"out_trade_no": "T1", "amount": "1.00", "description": ""}).to_string(), "INVALID_FIELD"),
        (
            json!({"out_trade_no": "T1", "amount": "1.00", "description": "tea", "currency": "USD"}).to_string(),
            "CURRENCY_UNSUPPORTED",
        ),
        (
            json!({"out_trade_no": "T1", "amount": "1.00", "description": "tea", "expire_at": "tomorrow"}).to_string(),
            "INVALID_FIELD",
        ),
    ];
    for (body, code) in cases {
        let r = gw.signed(&creds, "POST", "/v1/orders", &body).await;
        assert_eq!((r.status, r.code()), (400, code.to_owned()), "body {body}: {}", r.body);
    }
    let wrong_type = gw.send("POST", "/v1/orders", None, "{}", "text/plain").await;
    assert_eq!(wrong_type.status, 401, "auth comes first");
    let header = paykit_tests::sign_header(
        &creds,
        "POST",
        "/v1/orders",
        b"{}",
        paykit_tests::unix_now(),
        &paykit_tests::new_nonce(),
    );
    let r = gw.send("POST", "/v1/orders", Some(&header), "{}", "text/plain").await;
    assert_eq!((r.status, r.code()), (415, "UNSUPPORTED_MEDIA_TYPE".into()));

    // None of it created anything.
    let list = gw.signed(&creds, "GET", "/v1/orders", "").await;
    assert_eq!(list.json()["orders"].as_array().unwrap().len(), 0, "{}", list.body);
    assert!(gw.log().lines().all(|l| !l.contains("panicked")), "{}", gw.log());
});
