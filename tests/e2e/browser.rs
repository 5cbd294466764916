//! The cashier console and the sandbox wallet in headless Chromium: `tests/browser/web.mjs`
//! (Playwright driving Debian's Chromium) against the real gateway. This test starts the
//! gateway, creates the merchant and its console user, runs the script, then reads the QR
//! codes back out of the screenshots with a real decoder.

use std::path::{Path, PathBuf};
use std::process::Command;

use paykit_store::Engine;
use paykit_tests::{Gateway, decode_qr_png, random_phone, resident_id};

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ is in the workspace").to_path_buf()
}

/// Whether Chromium, Node.js and playwright-core are installed; CI insists they are.
fn browser_ready(root: &Path) -> bool {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned());
    let node = Command::new("node").arg("--version").output().is_ok_and(|o| o.status.success());
    let ready =
        node && Path::new(&chromium).exists() && root.join("tests/browser/node_modules/playwright-core").exists();
    if !ready {
        let why = "browser tests need Node.js, /usr/bin/chromium (apt-get install chromium) and \
                   `npm ci --prefix tests/browser`";
        assert!(std::env::var("PAYKIT_TEST_REQUIRE_BROWSER").as_deref() != Ok("1"), "{why}");
        eprintln!("SKIPPED: {why}");
    }
    ready
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sale_a_wedge_micropay_and_a_refund_request_across_console_and_wallet() {
    let root = workspace_root();
    if !browser_ready(&root) {
        return;
    }
    let gw = Gateway::start(Engine::Sqlite).await.expect("SQLite always runs");
    let merchant = gw.create_merchant("Corner Shop");
    let out =
        gw.cli(&["merchant", "add-user", "--merchant-id", &merchant.merchant_id, "--username", "cashier1", "--json"]);
    assert!(out.status.success(), "add-user failed: {}", String::from_utf8_lossy(&out.stderr));
    let user: serde_json::Value = serde_json::from_slice(&out.stdout).expect("add-user --json prints JSON");

    // Kept by CI as artifacts (README: "Browser screenshots").
    let shots = root.join("artifacts/browser");
    let _ = std::fs::remove_dir_all(&shots);
    std::fs::create_dir_all(&shots).expect("screenshot folder");
    let result_file = shots.join("result.json");
    let run = Command::new("node")
        .arg("web.mjs")
        .current_dir(root.join("tests/browser"))
        .env("PAYKIT_URL", &gw.url)
        .env("CONSOLE_USERNAME", "cashier1")
        .env("CONSOLE_PASSWORD", user["password"].as_str().expect("a generated password"))
        .env("WALLET_PHONE", random_phone())
        .env("WALLET_NAME", "张三")
        .env("WALLET_ID_NUMBER", resident_id(7))
        .env("SCREENSHOT_DIR", &shots)
        .env("RESULT_FILE", &result_file)
        .output()
        .expect("run node");
    let (stdout, stderr) = (String::from_utf8_lossy(&run.stdout), String::from_utf8_lossy(&run.stderr));
    println!("{stdout}");
    assert!(
        run.status.success(),
        "browser tests failed (screenshots in {}):\n{stdout}\n{stderr}\n--- gateway log ---\n{}",
        shots.display(),
        gw.log()
    );
    let result: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&result_file).expect("the script's results")).expect("JSON results");

    // The QR on the console's screen, photographed, is the order's code_url.
    let shown = decode_qr_png(&std::fs::read(shots.join("console-qr.png")).expect("QR screenshot"));
    assert_eq!(shown, result["code_url"].as_str().expect("code_url"));
    assert!(shown.starts_with(&format!("{}/q/", gw.url)), "{shown}");

    // The wallet's payment-code screen shows a QR of the very digits it printed, and they
    // are a well-formed payment code.
    let code = decode_qr_png(&std::fs::read(shots.join("wallet-paycode.png")).expect("payment-code screenshot"));
    assert_eq!(code, result["payment_code"].as_str().expect("payment_code"));
    paykit_core::payment_code::parse(&code).expect("a valid payment code");

    // The statement the console downloaded adds up: three sales, two refunds.
    let csv = std::fs::read_to_string(result["statement"].as_str().expect("statement path")).expect("statement");
    assert!(
        csv.contains("# totals,trades=3,trade_amount=1221.10,refunds=2,refund_amount=15.30,fees=0.00,net=1205.80"),
        "{csv}"
    );
    gw.assert_ledger_verifies();
}

/// The console's print button reaches the counter bridge through the gateway (plain HTTP,
/// no browser needed): offered once a bridge polls, queued by the form, claimed once.
#[tokio::test(flavor = "multi_thread")]
async fn the_console_sends_a_receipt_to_a_connected_bridge() {
    let gw = Gateway::start(Engine::Sqlite).await.expect("SQLite always runs");
    let merchant = gw.create_merchant("Corner Shop");
    let out =
        gw.cli(&["merchant", "add-user", "--merchant-id", &merchant.merchant_id, "--username", "till2", "--json"]);
    let user: serde_json::Value = serde_json::from_slice(&out.stdout).expect("add-user --json prints JSON");
    let consumer = gw.new_consumer("王五").await;
    gw.top_up(&consumer, "50.00").await;
    let order = gw.create_order(&merchant, "print-1", "8.80").await;
    let order_id = order["order_id"].as_str().unwrap().to_owned();
    let paid = gw
        .wallet(
            "POST",
            "/wallet/v1/payments",
            Some(&consumer.token),
            serde_json::json!({"order_id": order_id, "funding": "balance", "pay_password": consumer.pay_password}),
        )
        .await;
    assert_eq!(paid.json()["status"], "SUCCESS", "{}", paid.body);

    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let login = http
        .post(format!("{}/console", gw.url))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form_body(&[("form", "login"), ("username", "till2"), ("password", user["password"].as_str().unwrap())]))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 303);
    let cookie = login.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
    let page = |http: reqwest::Client, cookie: String| {
        let url = format!("{}/console/orders/{order_id}", gw.url);
        async move { http.get(url).header("cookie", cookie).send().await.unwrap().text().await.unwrap() }
    };
    let html = page(http.clone(), cookie.clone()).await;
    assert!(
        html.contains("Print receipt") && !html.contains("counter printer"),
        "no bridge yet: browser printing only"
    );

    // A bridge polls (as paykit-bridge does every 2 s): the console now offers it.
    let claim = gw.signed(&merchant, "POST", "/v1/print-requests/claim", "").await;
    assert_eq!(claim.json()["print_requests"], serde_json::json!([]));
    let html = page(http.clone(), cookie.clone()).await;
    assert!(html.contains("Print on the counter printer"), "{html}");
    let csrf = html.split("name=\"csrf\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_owned();
    let sent = http
        .post(format!("{}/console/orders/{order_id}", gw.url))
        .header("cookie", &cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form_body(&[("form", "print"), ("csrf", &csrf)]))
        .send()
        .await
        .unwrap();
    assert!(sent.text().await.unwrap().contains("Sent to the counter printer."));
    let claim = gw.signed(&merchant, "POST", "/v1/print-requests/claim", "").await;
    assert_eq!(claim.json()["print_requests"][0]["order_id"], order_id.as_str());
    let again = gw.signed(&merchant, "POST", "/v1/print-requests/claim", "").await;
    assert_eq!(again.json()["print_requests"], serde_json::json!([]), "claimed once");

    // A forged form (no CSRF token) queues nothing.
    let forged = http
        .post(format!("{}/console/orders/{order_id}", gw.url))
        .header("cookie", &cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form_body(&[("form", "print")]))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 303);
    let none = gw.signed(&merchant, "POST", "/v1/print-requests/claim", "").await;
    assert_eq!(none.json()["print_requests"], serde_json::json!([]));
}

/// A form body; the values here (generated passwords, hex tokens, names) need no escaping.
fn form_body(pairs: &[(&str, &str)]) -> String {
    pairs.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&")
}
