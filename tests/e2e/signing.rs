//! Request signing as a merchant meets it: the README's recipe, by hand, with openssl.

use std::io::Write;
use std::process::{Command, Stdio};

use paykit_tests::{Gateway, ServeProcess, e2e_tests, new_nonce, sign_header, unix_now};
use serde_json::json;

/// `printf '%s' CANONICAL | openssl dgst -sha256 -hmac SECRET -binary | base64`, exactly
/// as the README tells a merchant to check their own code.
fn openssl_signature(secret: &str, canonical: &[u8]) -> String {
    let mut dgst = Command::new("openssl")
        .args(["dgst", "-sha256", "-hmac", secret, "-binary"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("openssl is installed");
    dgst.stdin.take().unwrap().write_all(canonical).unwrap();
    let mac = dgst.wait_with_output().unwrap().stdout;
    assert_eq!(mac.len(), 32, "HMAC-SHA256 is 32 bytes");
    let mut b64 = Command::new("base64").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    b64.stdin.take().unwrap().write_all(&mac).unwrap();
    String::from_utf8(b64.wait_with_output().unwrap().stdout).unwrap().trim().to_owned()
}

e2e_tests!(cli_merchant_signs_by_hand_with_openssl, async |gw: Gateway| {
    let creds = gw.create_merchant("Hand-signed Tea House");
    let (ts, nonce) = (unix_now(), new_nonce());
    let canonical = format!("GET\n/v1/merchant\n{ts}\n{nonce}\n\n");
    let signature = openssl_signature(&creds.api_secret, canonical.as_bytes());
    let header = format!(
        "PAYKIT-HMAC-SHA256 merchant_id=\"{}\",key_id=\"{}\",timestamp=\"{ts}\",nonce=\"{nonce}\",signature=\"{signature}\"",
        creds.merchant_id, creds.key_id
    );
    let first = gw.send("GET", "/v1/merchant", Some(&header), "", "application/json").await;
    assert_eq!(first.status, 200, "{}", first.body);
    let profile = first.json();
    assert_eq!(profile["merchant_id"], creds.merchant_id.as_str());
    assert_eq!(profile["name"], "Hand-signed Tea House");
    assert_eq!(profile["keys"][0]["key_id"], creds.key_id.as_str());
    assert!(!first.body.contains(&creds.api_secret), "the secret is never sent back");
    assert!(first.headers.contains_key("request-id"));

    let replay = gw.send("GET", "/v1/merchant", Some(&header), "", "application/json").await;
    assert_eq!((replay.status, replay.code()), (401, "AUTH_NONCE_REPLAYED".into()));
});

e2e_tests!(each_tampering_is_refused_with_its_own_code, async |gw: Gateway| {
    let creds = gw.create_merchant("Tamper Test");
    let now = unix_now();
    // Each case: what was signed (method, path, body, timestamp, nonce) vs what is sent.
    let signed_as = |method: &str, path: &str, body: &str, ts: i64, nonce: &str| {
        sign_header(&creds, method, path, body.as_bytes(), ts, nonce)
    };
    let cases: Vec<(&str, String, &str, &str, &str)> = vec![
        ("method", signed_as("POST", "/v1/merchant", "", now, &new_nonce()), "GET", "/v1/merchant", ""),
        ("path", signed_as("GET", "/v1/merchant", "", now, &new_nonce()), "GET", "/v1/merchant?x=1", ""),
        ("body", signed_as("GET", "/v1/merchant", "{}", now, &new_nonce()), "GET", "/v1/merchant", "{ }"),
    ];
    for (what, header, method, path, body) in cases {
        let reply = gw.send(method, path, Some(&header), body, "application/json").await;
        assert_eq!((reply.status, reply.code()), (401, "AUTH_BAD_SIGNATURE".into()), "changed {what}");
    }

    // Timestamp and nonce: sign properly, then change one character in the header.
    let nonce = new_nonce();
    let header = signed_as("GET", "/v1/merchant", "", now, &nonce);
    let changed_ts = header.replace(&format!("timestamp=\"{now}\""), &format!("timestamp=\"{}\"", now - 1));
    let reply = gw.send("GET", "/v1/merchant", Some(&changed_ts), "", "application/json").await;
    assert_eq!((reply.status, reply.code()), (401, "AUTH_BAD_SIGNATURE".into()), "changed timestamp");
    let mut other_nonce = nonce.clone().into_bytes();
    other_nonce[0] = if other_nonce[0] == b'a' { b'b' } else { b'a' };
    let changed_nonce = header.replace(&nonce, std::str::from_utf8(&other_nonce).unwrap());
    let reply = gw.send("GET", "/v1/merchant", Some(&changed_nonce), "", "application/json").await;
    assert_eq!((reply.status, reply.code()), (401, "AUTH_BAD_SIGNATURE".into()), "changed nonce");

    // Correctly signed, but more than 300 s off either way (a margin over 300 s, with a
    // fresh clock reading: on a loaded machine seconds pass between the steps above).
    for skew in [-330, 330] {
        let header = signed_as("GET", "/v1/merchant", "", unix_now() + skew, &new_nonce());
        let reply = gw.send("GET", "/v1/merchant", Some(&header), "", "application/json").await;
        assert_eq!((reply.status, reply.code()), (401, "AUTH_TIMESTAMP_SKEW".into()), "skew {skew}");
    }

    let reply = gw.send("GET", "/v1/merchant", None, "", "application/json").await;
    assert_eq!((reply.status, reply.code()), (401, "AUTH_MISSING".into()));
    let reply = gw.send("GET", "/v1/merchant", Some("PAYKIT-HMAC-SHA256 merchant_id=x"), "", "application/json").await;
    assert_eq!((reply.status, reply.code()), (401, "AUTH_MALFORMED".into()));

    // Another merchant's key with this merchant's id, and an unknown merchant.
    let other = gw.create_merchant("Other Shop");
    let mixed = paykit_tests::Credentials { key_id: other.key_id.clone(), ..creds.clone() };
    let header = sign_header(&mixed, "GET", "/v1/merchant", b"", now, &new_nonce());
    let reply = gw.send("GET", "/v1/merchant", Some(&header), "", "application/json").await;
    assert_eq!((reply.status, reply.code()), (401, "AUTH_UNKNOWN_KEY".into()));
    let ghost = paykit_tests::Credentials { merchant_id: "mch_doesnotexist000000".into(), ..creds.clone() };
    let header = sign_header(&ghost, "GET", "/v1/merchant", b"", now, &new_nonce());
    let reply = gw.send("GET", "/v1/merchant", Some(&header), "", "application/json").await;
    assert_eq!((reply.status, reply.code()), (401, "AUTH_UNKNOWN_KEY".into()));

    // After all that, a correct request still works and sees only its own merchant.
    let ok = gw.signed(&creds, "GET", "/v1/merchant", "").await;
    assert_eq!(ok.status, 200);
    assert_eq!(ok.json()["merchant_id"], creds.merchant_id.as_str());
    let theirs = gw.signed(&other, "GET", "/v1/merchant", "").await;
    assert_eq!(theirs.json()["merchant_id"], other.merchant_id.as_str());
});

e2e_tests!(a_rotated_key_and_the_old_one_both_work_until_revoked, async |gw: Gateway| {
    let first = gw.create_merchant("Rotating Shop");
    let out = gw.cli(&["merchant", "rotate-key", "--merchant-id", &first.merchant_id, "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let second = paykit_tests::Credentials {
        key_id: v["key_id"].as_str().unwrap().into(),
        api_secret: v["api_secret"].as_str().unwrap().into(),
        ..first.clone()
    };
    assert_eq!(gw.signed(&first, "GET", "/v1/merchant", "").await.status, 200);
    let profile = gw.signed(&second, "GET", "/v1/merchant", "").await;
    assert_eq!(profile.status, 200);
    assert_eq!(profile.json()["keys"].as_array().unwrap().len(), 2);

    // An order created with the first key: the gateway has read it and remembers it.
    let made = json!({"out_trade_no": "R1", "amount": "1.00", "description": "tea"}).to_string();
    assert_eq!(gw.signed(&first, "POST", "/v1/orders", &made).await.status, 201);

    // Revoked by another process, which this gateway does not hear about.
    let out = gw.cli(&["merchant", "revoke-key", "--merchant-id", &first.merchant_id, "--key-id", &first.key_id]);
    assert!(out.status.success());
    let reply = gw.signed(&first, "GET", "/v1/merchant", "").await;
    assert_eq!((reply.status, reply.code()), (401, "AUTH_UNKNOWN_KEY".into()));
    // A create writes nothing and tells nothing: a new order, the same one again (which
    // would answer with it), a taken out_trade_no, a bad body, a bad signature.
    let other = json!({"out_trade_no": "R1", "amount": "2.00", "description": "tea"}).to_string();
    let new = json!({"out_trade_no": "R2", "amount": "1.00", "description": "tea"}).to_string();
    let bad = json!({"out_trade_no": "R3", "amount": "-1", "description": "tea"}).to_string();
    for body in [&new, &made, &other, &bad] {
        let reply = gw.signed(&first, "POST", "/v1/orders", body).await;
        assert_eq!((reply.status, reply.code()), (401, "AUTH_UNKNOWN_KEY".into()), "{body}");
    }
    let forged = paykit_tests::Credentials { api_secret: "not-the-secret".into(), ..first.clone() };
    let reply = gw.signed(&forged, "POST", "/v1/orders", &new).await;
    assert_eq!((reply.status, reply.code()), (401, "AUTH_UNKNOWN_KEY".into()));
    let r2 = gw.signed(&second, "GET", "/v1/orders/by-out-trade-no/R2", "").await;
    assert_eq!(r2.status, 404, "nothing was written: {}", r2.body);
    assert_eq!(gw.signed(&second, "GET", "/v1/merchant", "").await.status, 200);
    assert_eq!(gw.signed(&second, "POST", "/v1/orders", &new).await.status, 201);
});

e2e_tests!(a_signed_read_sent_many_times_at_once_is_answered_once, async |gw: Gateway| {
    let creds = gw.create_merchant("Replay Shop");
    let header = sign_header(&creds, "GET", "/v1/merchant", b"", unix_now(), &new_nonce());
    let send = || gw.send("GET", "/v1/merchant", Some(&header), "", "application/json");
    // The same signed GET eight times at once: the nonce is claimed in this process before
    // the database is asked about it, so exactly one gets through.
    let replies = tokio::join!(send(), send(), send(), send(), send(), send(), send(), send());
    let replies = [replies.0, replies.1, replies.2, replies.3, replies.4, replies.5, replies.6, replies.7];
    let answered = replies.iter().filter(|r| r.status == 200).count();
    assert_eq!(answered, 1, "{:?}", replies.iter().map(|r| (r.status, r.code())).collect::<Vec<_>>());
    for r in replies.iter().filter(|r| r.status != 200) {
        assert_eq!((r.status, r.code()), (401, "AUTH_NONCE_REPLAYED".into()));
    }
    // And later, whether its nonce is still in flight or stored by now.
    let other = gw.signed(&creds, "GET", "/v1/merchant", "").await;
    assert_eq!(other.status, 200, "other nonces still pass");
    let later = send().await;
    assert_eq!((later.status, later.code()), (401, "AUTH_NONCE_REPLAYED".into()));
});

e2e_tests!(a_signed_order_create_sent_many_times_creates_one_order, async |gw: Gateway| {
    let creds = gw.create_merchant("Once Shop");
    let body = r#"{"out_trade_no":"ONCE-1","amount":"1.00","description":"once"}"#;
    let header = sign_header(&creds, "POST", "/v1/orders", body.as_bytes(), unix_now(), &new_nonce());
    // A second gateway process on the same database: it cannot see the first one's nonces
    // in flight, only what is committed.
    let mut other = ServeProcess::spawn(&gw.db.url, &[]);
    let send_to = |url: String| {
        let req = gw.http.post(format!("{url}/v1/orders")).header("content-type", "application/json");
        let req = req.header("authorization", header.clone()).body(body);
        async move { paykit_tests::Reply::read(req.send().await.expect("gateway answers")).await }
    };
    let send = || send_to(gw.url.clone());
    let send_other = || send_to(other.url.clone());
    // The nonce commits with the order: of eight at once, four to each process, one
    // creates it and the rest are refused as replays, as is the same request later.
    let replies = tokio::join!(send(), send_other(), send(), send_other(), send(), send_other(), send(), send_other());
    let replies = [replies.0, replies.1, replies.2, replies.3, replies.4, replies.5, replies.6, replies.7];
    let outcomes: Vec<_> = replies.iter().map(|r| (r.status, r.body.clone())).collect();
    assert_eq!(replies.iter().filter(|r| r.status == 201).count(), 1, "{outcomes:?}");
    for r in replies.iter().filter(|r| r.status != 201) {
        assert_eq!((r.status, r.code()), (401, "AUTH_NONCE_REPLAYED".into()), "{outcomes:?}");
    }
    assert_eq!(send_other().await.code(), "AUTH_NONCE_REPLAYED");
    let _ = other.child.kill();
    let _ = other.child.wait();
    let later = send().await;
    assert_eq!((later.status, later.code()), (401, "AUTH_NONCE_REPLAYED".into()));

    // The same body with a new nonce is the merchant's retry: the order, as it stands.
    let retry = gw.signed(&creds, "POST", "/v1/orders", body).await;
    assert_eq!(retry.status, 200, "{}", retry.body);
    assert_eq!(retry.json()["order_id"], replies.iter().find(|r| r.status == 201).unwrap().json()["order_id"]);

    // A create refused before anything is written spends its nonce all the same.
    let bad = r#"{"out_trade_no":"ONCE-2","amount":"-1.00","description":"refused"}"#;
    let header = sign_header(&creds, "POST", "/v1/orders", bad.as_bytes(), unix_now(), &new_nonce());
    let refused = gw.send("POST", "/v1/orders", Some(&header), bad, "application/json").await;
    assert_eq!(refused.status, 400, "{}", refused.body);
    let replay = gw.send("POST", "/v1/orders", Some(&header), bad, "application/json").await;
    assert_eq!((replay.status, replay.code()), (401, "AUTH_NONCE_REPLAYED".into()));
});
