//! The gateway as a process: health, readiness, metrics, JSON errors on every path, HTTPS
//! with a CA the test makes, and a SIGTERM that lets in-flight requests finish.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use paykit_store::Engine;
use paykit_tests::{Gateway, GatewayOptions, e2e_tests, install_crypto_provider, paykit_bin};

e2e_tests!(health_ready_metrics_and_json_errors, async |gw: Gateway| {
    let health = gw.send("GET", "/healthz", None, "", "text/plain").await;
    assert_eq!(health.status, 200);
    assert_eq!(health.headers["paykit-mode"], "sandbox");
    let ready = gw.send("GET", "/readyz", None, "", "text/plain").await;
    assert_eq!(ready.status, 200, "{}", ready.body);
    assert_eq!(ready.json()["database"], gw.db.engine.as_str());

    let missing = gw.send("GET", "/v1/no-such-thing", None, "", "text/plain").await;
    assert_eq!((missing.status, missing.code()), (404, "NOT_FOUND".into()));
    assert_eq!(missing.json()["request_id"].as_str(), missing.headers["request-id"].to_str().ok());
    let wrong_method = gw.send("DELETE", "/healthz", None, "", "text/plain").await;
    assert_eq!((wrong_method.status, wrong_method.code()), (405, "METHOD_NOT_ALLOWED".into()));

    let metrics = gw.send("GET", "/metrics", None, "", "text/plain").await;
    assert!(
        metrics.body.contains(r#"http_requests_total{route="/healthz",method="GET",status="200"} 1"#),
        "{}",
        metrics.body
    );
    assert!(metrics.body.contains("http_request_duration_seconds_bucket{route=\"/readyz\""), "{}", metrics.body);

    let doc = gw.send("GET", "/openapi.json", None, "", "text/plain").await;
    assert_eq!(doc.json()["paths"]["/v1/merchant"]["get"]["security"][0]["PaykitHmac"], serde_json::json!([]));
});

#[tokio::test]
async fn https_with_a_ca_the_test_makes() {
    install_crypto_provider();
    let dir = std::env::temp_dir().join(format!("paykit-tls-{}", paykit_store::ids::random_base32(10)));
    let out = std::process::Command::new(paykit_bin()).args(["dev-cert", "--out"]).arg(&dir).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let ca = reqwest::Certificate::from_pem(&std::fs::read(dir.join("ca.pem")).unwrap()).unwrap();
    let client = reqwest::Client::builder().tls_certs_only([ca]).build().unwrap();
    let options = GatewayOptions {
        extra_args: vec![
            "--tls-cert".into(),
            dir.join("server.pem").display().to_string(),
            "--tls-key".into(),
            dir.join("server-key.pem").display().to_string(),
        ],
        client: Some(client),
        scheme: None,
    };
    let gw = Gateway::start_with(Engine::Sqlite, options).await.unwrap();
    assert!(gw.url.starts_with("https://127.0.0.1:"), "{}", gw.url);
    let health = gw.send("GET", "/healthz", None, "", "text/plain").await;
    assert_eq!(health.status, 200);

    // A client that does not trust the test CA is refused, and plain HTTP gets no answer.
    let untrusting = reqwest::Client::builder().tls_certs_only([]).build().unwrap();
    assert!(untrusting.get(format!("{}/healthz", gw.url)).send().await.is_err());
    let plain = gw.url.replacen("https://", "http://", 1);
    assert!(reqwest::get(format!("{plain}/healthz")).await.is_err());
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn sigterm_lets_an_in_flight_request_finish() {
    let mut gw = Gateway::start(Engine::Sqlite).await.unwrap();
    let addr = gw.url.trim_start_matches("http://").to_owned();
    // A signed-looking request whose body arrives in two halves, with SIGTERM in between.
    let mut conn = TcpStream::connect(&addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let auth = r#"PAYKIT-HMAC-SHA256 merchant_id="mch_x",key_id="key_x",timestamp="1",nonce="abcdefghijklmnop",signature="c2ln""#;
    write!(
        conn,
        "GET /v1/merchant HTTP/1.1\r\nHost: {addr}\r\nAuthorization: {auth}\r\nContent-Length: 10\r\n\r\n01234"
    )
    .unwrap();
    conn.flush().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let kill = std::process::Command::new("kill").args(["-TERM", &gw.pid().to_string()]).status().unwrap();
    assert!(kill.success());
    std::thread::sleep(Duration::from_millis(300));
    conn.write_all(b"56789").unwrap();
    let mut answer = String::new();
    let _ = conn.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 401"), "the in-flight request got its answer: {answer:?}");
    assert!(answer.contains("AUTH_UNKNOWN_KEY"), "{answer}");
    let status = gw.wait(Duration::from_secs(10)).expect("the gateway exits after SIGTERM");
    assert!(status.success(), "exit status {status:?}; log:\n{}", gw.log());
}
