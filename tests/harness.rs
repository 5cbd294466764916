//! The end-to-end harness: starts the real `paykit` binary on a free port against a fresh
//! database (SQLite, or a PostgreSQL schema when `PAYKIT_TEST_POSTGRES_URL` is set), and
//! talks to it the way merchants do: over HTTP, signed.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use paykit_core::signing::{AuthHeader, PartyKind, canonical_request, sign};
use paykit_store::Engine;
use paykit_store::testing::TestDb;

/// The `paykit` binary cargo built beside this test binary (`target/<profile>/paykit`).
pub fn paykit_bin() -> PathBuf {
    workspace_bin("paykit")
}

/// A binary of the workspace (the gateway, an example) built beside this test binary.
pub fn workspace_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe.parent().and_then(Path::parent).expect("target/<profile>/deps/..");
    let bin = dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(bin.exists(), "{} is missing: run the tests with `cargo test --workspace`", bin.display());
    bin
}

/// Installs ring as the one rustls provider for clients in this process.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Merchant credentials as `paykit merchant create --json` prints them.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub merchant_id: String,
    pub key_id: String,
    pub api_secret: String,
}

/// A running gateway process with its own database. Killed when dropped.
pub struct Gateway {
    child: Option<Child>,
    pub url: String,
    pub db: TestDb,
    pub log_path: PathBuf,
    pub http: reqwest::Client,
}

/// One `paykit serve` process on a free port.
pub struct ServeProcess {
    pub child: Child,
    pub url: String,
    pub log_path: PathBuf,
}

impl ServeProcess {
    /// Starts `paykit serve --listen 127.0.0.1:0` on `database_url` and waits for its URL.
    pub fn spawn(database_url: &str, extra_args: &[String]) -> ServeProcess {
        let log_path = std::env::temp_dir().join(format!("paykit-e2e-{}.log", paykit_store::ids::random_base32(10)));
        let log = std::fs::File::create(&log_path).expect("create the gateway log");
        let listen: &[&str] =
            if extra_args.iter().any(|a| a == "--listen") { &[] } else { &["--listen", "127.0.0.1:0"] };
        let mut child = Command::new(paykit_bin())
            .arg("serve")
            .args(listen)
            .args(extra_args)
            .env("DATABASE_URL", database_url)
            .env("PAYKIT_LOG", "warn")
            .env_remove("PAYKIT_CONFIG")
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("start paykit serve");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(first)) = lines.next() {
                let _ = tx.send(first);
            }
            // Keep draining so the child never blocks on a full pipe.
            for _ in lines {}
        });
        let first = rx.recv_timeout(Duration::from_secs(60)).unwrap_or_else(|_| {
            let _ = child.kill();
            panic!("paykit serve did not start; log: {}", std::fs::read_to_string(&log_path).unwrap_or_default())
        });
        let url = first.rsplit(' ').next().expect("listening line ends with the URL").to_owned();
        ServeProcess { child, url, log_path }
    }
}

/// Runs a `paykit` command against a database.
pub fn paykit_cli(database_url: &str, args: &[&str]) -> Output {
    Command::new(paykit_bin())
        .args(args)
        .env("DATABASE_URL", database_url)
        .env("PAYKIT_LOG", "warn")
        .env_remove("PAYKIT_CONFIG")
        .output()
        .expect("run paykit")
}

/// Writes a TOML config file for a gateway under test and returns `--config PATH` args.
pub fn config_args(toml: &str) -> Vec<String> {
    let dir = std::env::temp_dir().join(format!("paykit-cfg-{}", paykit_store::ids::random_base32(8)));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("paykit.toml");
    std::fs::write(&path, toml).unwrap();
    vec!["--config".into(), path.display().to_string()]
}

/// Extra settings for a gateway under test.
#[derive(Default)]
pub struct GatewayOptions {
    pub extra_args: Vec<String>,
    pub client: Option<reqwest::Client>,
    pub scheme: Option<&'static str>,
}

impl Gateway {
    /// Starts a gateway on `engine`, or returns `None` when PostgreSQL is not configured
    /// (the store's test helper has said so loudly).
    pub async fn start(engine: Engine) -> Option<Gateway> {
        Gateway::start_with(engine, GatewayOptions::default()).await
    }

    pub async fn start_with(engine: Engine, options: GatewayOptions) -> Option<Gateway> {
        install_crypto_provider();
        let db = TestDb::new(engine).await?;
        let process = ServeProcess::spawn(&db.url, &options.extra_args);
        let url = match options.scheme {
            Some(scheme) => process.url.replacen("http://", &format!("{scheme}://"), 1).replacen(
                "https://",
                &format!("{scheme}://"),
                1,
            ),
            None => process.url.clone(),
        };
        let http = options.client.unwrap_or_default();
        let ServeProcess { child, log_path, .. } = process;
        Some(Gateway { child: Some(child), url, db, log_path, http })
    }

    /// Runs a `paykit` command against this gateway's database.
    pub fn cli(&self, args: &[&str]) -> Output {
        paykit_cli(&self.db.url, args)
    }

    /// `paykit merchant create --json`.
    pub fn create_merchant(&self, name: &str) -> Credentials {
        let out = self.cli(&["merchant", "create", "--name", name, "--json"]);
        assert!(out.status.success(), "merchant create failed: {}", String::from_utf8_lossy(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("merchant create --json prints JSON");
        Credentials {
            merchant_id: v["merchant_id"].as_str().unwrap().to_owned(),
            key_id: v["key_id"].as_str().unwrap().to_owned(),
            api_secret: v["api_secret"].as_str().unwrap().to_owned(),
        }
    }

    /// `paykit biller create --json`; the credentials sign as a biller.
    pub fn create_biller(&self, name: &str, category: &str, extra: &[&str]) -> Credentials {
        let mut args = vec!["biller", "create", "--name", name, "--category", category, "--json"];
        args.extend_from_slice(extra);
        let out = self.cli(&args);
        assert!(out.status.success(), "biller create failed: {}", String::from_utf8_lossy(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("biller create --json prints JSON");
        Credentials {
            merchant_id: v["biller_id"].as_str().unwrap().to_owned(),
            key_id: v["key_id"].as_str().unwrap().to_owned(),
            api_secret: v["api_secret"].as_str().unwrap().to_owned(),
        }
    }

    /// Sends a request signed with `creds`, now, with a fresh nonce.
    pub async fn signed(&self, creds: &Credentials, method: &str, path: &str, body: &str) -> Reply {
        self.signed_as(creds, method, path, body, "application/json").await
    }

    pub async fn signed_as(
        &self,
        creds: &Credentials,
        method: &str,
        path: &str,
        body: &str,
        content_type: &str,
    ) -> Reply {
        let header = sign_header(creds, method, path, body.as_bytes(), unix_now(), &new_nonce());
        self.send(method, path, Some(&header), body, content_type).await
    }

    /// Sends a request with the given Authorization header (or none) as it stands.
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        authorization: Option<&str>,
        body: &str,
        content_type: &str,
    ) -> Reply {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("HTTP method");
        let mut req = self.http.request(method, format!("{}{path}", self.url)).header("content-type", content_type);
        if let Some(a) = authorization {
            req = req.header("authorization", a);
        }
        let res = req.body(body.to_owned()).send().await.expect("gateway answers");
        Reply::read(res).await
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Waits for the process to exit (after a signal) and returns its status.
    pub fn wait(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let child = self.child.as_mut()?;
        let deadline = std::time::Instant::now() + limit;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_file(&self.log_path);
    }
}

/// A response, read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Reply {
    pub async fn read(res: reqwest::Response) -> Reply {
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let body = res.text().await.expect("read body");
        Reply { status, headers, body }
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    /// The API error code of an error body.
    pub fn code(&self) -> String {
        self.json()["code"].as_str().unwrap_or_else(|| panic!("no error code in {}", self.body)).to_owned()
    }
}

pub fn sign_header(creds: &Credentials, method: &str, path: &str, body: &[u8], timestamp: i64, nonce: &str) -> String {
    let signature = sign(creds.api_secret.as_bytes(), &canonical_request(method, path, timestamp, nonce, body));
    AuthHeader {
        // Billers sign exactly like merchants, with biller_id in the header.
        party_kind: if creds.merchant_id.starts_with("blr_") { PartyKind::Biller } else { PartyKind::Merchant },
        party_id: creds.merchant_id.clone(),
        key_id: creds.key_id.clone(),
        timestamp,
        nonce: nonce.to_owned(),
        signature,
    }
    .render()
}

pub fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

pub fn new_nonce() -> String {
    paykit_store::ids::random_base32(24)
}

/// Declares `name::sqlite` and `name::postgres` end-to-end tests around one async body
/// taking a started [`Gateway`].
#[macro_export]
macro_rules! e2e_tests {
    ($name:ident, $body:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let gw =
                    $crate::Gateway::start(paykit_store::Engine::Sqlite).await.expect("sqlite is always available");
                ($body)(gw).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let Some(gw) = $crate::Gateway::start(paykit_store::Engine::Postgres).await else { return };
                ($body)(gw).await;
            }
        }
    };
}

/// A consumer with a verified wallet, a pay password and a bound debit card.
#[derive(Debug, Clone)]
pub struct Consumer {
    pub user_id: String,
    pub phone: String,
    pub token: String,
    pub name: String,
    pub pay_password: String,
    pub card_id: String,
}

/// A valid 18-character resident ID for someone born on 1990-03-07.
pub fn resident_id(seq: u32) -> String {
    let first17 = format!("44030419900307{:03}", seq % 1000);
    format!("{first17}{}", paykit_core::resident_id::check_character(&first17).unwrap())
}

pub fn random_phone() -> String {
    let digits: String =
        paykit_store::ids::random_base32(16).bytes().map(|b| char::from(b'0' + b % 10)).take(8).collect();
    format!("139{digits}")
}

impl Gateway {
    /// A wallet API call with an optional bearer token.
    pub async fn wallet(&self, method: &str, path: &str, token: Option<&str>, body: serde_json::Value) -> Reply {
        self.wallet_with(method, path, token, body, None).await
    }

    pub async fn wallet_with(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: serde_json::Value,
        idempotency_key: Option<&str>,
    ) -> Reply {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self.http.request(method.clone(), format!("{}{path}", self.url));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(k) = idempotency_key {
            req = req.header("idempotency-key", k);
        }
        if method != reqwest::Method::GET && method != reqwest::Method::DELETE {
            req = req.json(&body);
        }
        Reply::read(req.send().await.expect("gateway answers")).await
    }

    /// Registers, logs in, verifies, sets pay password 135790 and binds the always-good
    /// debit card.
    pub async fn new_consumer(&self, name: &str) -> Consumer {
        let phone = random_phone();
        let r = self
            .wallet("POST", "/wallet/v1/users", None, serde_json::json!({"phone": phone, "password": "correct horse"}))
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
        let r = self
            .wallet(
                "POST",
                "/wallet/v1/sessions",
                None,
                serde_json::json!({"phone": phone, "password": "correct horse"}),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        let (token, user_id) =
            (r.json()["token"].as_str().unwrap().to_owned(), r.json()["user_id"].as_str().unwrap().to_owned());
        let seq = phone[7..].parse::<u32>().unwrap();
        let r = self
            .wallet(
                "POST",
                "/wallet/v1/real-name",
                Some(&token),
                serde_json::json!({"name": name, "id_number": resident_id(seq)}),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        let r = self
            .wallet("PUT", "/wallet/v1/pay-password", Some(&token), serde_json::json!({"pay_password": "135790"}))
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        let r = self
            .wallet(
                "POST",
                "/wallet/v1/cards",
                Some(&token),
                serde_json::json!({"card_number": "6222000000000009", "holder_name": name}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
        let card_id = r.json()["card_id"].as_str().unwrap().to_owned();
        Consumer { user_id, phone, token, name: name.to_owned(), pay_password: "135790".to_owned(), card_id }
    }

    /// A registered, logged-in, real-name-verified user without pay password or card
    /// (enough to receive money); returns (token, phone).
    pub async fn verified_user(&self, name: &str) -> (String, String) {
        let phone = random_phone();
        let r = self
            .wallet("POST", "/wallet/v1/users", None, serde_json::json!({"phone": phone, "password": "correct horse"}))
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
        let token = self.log_in(&phone).await;
        let seq = phone[7..].parse::<u32>().unwrap();
        let r = self
            .wallet(
                "POST",
                "/wallet/v1/real-name",
                Some(&token),
                serde_json::json!({"name": name, "id_number": resident_id(seq)}),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        (token, phone)
    }

    pub async fn log_in(&self, phone: &str) -> String {
        let r = self
            .wallet(
                "POST",
                "/wallet/v1/sessions",
                None,
                serde_json::json!({"phone": phone, "password": "correct horse"}),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        r.json()["token"].as_str().unwrap().to_owned()
    }

    pub async fn balance_of(&self, token: &str) -> String {
        self.wallet("GET", "/wallet/v1/balance", Some(token), serde_json::Value::Null).await.json()["balance"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    pub async fn top_up(&self, c: &Consumer, amount: &str) {
        let r = self
            .wallet(
                "POST",
                "/wallet/v1/top-ups",
                Some(&c.token),
                serde_json::json!({"card_id": c.card_id, "amount": amount, "pay_password": c.pay_password}),
            )
            .await;
        assert_eq!((r.status, r.json()["status"].as_str()), (200, Some("SUCCESS")), "{}", r.body);
    }

    pub async fn balance(&self, c: &Consumer) -> String {
        self.wallet("GET", "/wallet/v1/balance", Some(&c.token), serde_json::Value::Null).await.json()["balance"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// Creates a dynamic-QR order and returns its JSON.
    pub async fn create_order(&self, creds: &Credentials, out_trade_no: &str, amount: &str) -> serde_json::Value {
        let body = serde_json::json!({"out_trade_no": out_trade_no, "amount": amount, "description": "Jasmine tea"})
            .to_string();
        let r = self.signed(creds, "POST", "/v1/orders", &body).await;
        assert_eq!(r.status, 201, "{}", r.body);
        r.json()
    }

    /// An operator token for /ops/v1.
    pub fn operator_token(&self) -> String {
        let out = self.cli(&["operator", "create", "--name", "ops-test", "--json"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["token"].as_str().unwrap().to_owned()
    }

    /// Moves the sandbox clock and waits until the gateway has seen it.
    pub async fn advance_clock(&self, by: &str) {
        let out = self.cli(&["sandbox", "advance-clock", by]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        tokio::time::sleep(Duration::from_millis(350)).await;
    }

    /// `paykit ledger verify` must pass.
    pub fn assert_ledger_verifies(&self) {
        let out = self.cli(&["ledger", "verify"]);
        assert!(out.status.success(), "ledger verify failed:\n{}", String::from_utf8_lossy(&out.stdout));
    }
}

/// Decodes the single QR code in a PNG with a real QR decoder.
pub fn decode_qr_png(png_bytes: &[u8]) -> String {
    let decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
    let mut reader = decoder.read_info().expect("a PNG");
    let mut buf = vec![0; reader.output_buffer_size().expect("buffer size")];
    let info = reader.next_frame(&mut buf).expect("a frame");
    let (w, h) = (info.width as usize, info.height as usize);
    let channels = buf.len() / (w * h);
    let mut img = rqrr::PreparedImage::prepare_from_greyscale(w, h, |x, y| buf[(y * w + x) * channels]);
    let grids = img.detect_grids();
    assert_eq!(grids.len(), 1, "one QR code in the picture");
    grids[0].decode().expect("the QR decodes").1
}

/// One callback as a merchant's server received it.
#[derive(Debug, Clone)]
pub struct Callback {
    pub headers: std::collections::HashMap<String, String>,
    pub body: String,
    pub status_sent: u16,
}

impl Callback {
    /// Checks the signature the way a merchant must: over TIMESTAMP\nNONCE\nBODY\n.
    pub fn verifies_with(&self, secret: &str) -> bool {
        let ts: i64 = self.headers["paykit-timestamp"].parse().unwrap();
        let canonical =
            paykit_core::signing::canonical_callback(ts, &self.headers["paykit-nonce"], self.body.as_bytes());
        paykit_core::signing::verify(secret.as_bytes(), &canonical, &self.headers["paykit-signature"])
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap()
    }

    pub fn timestamp(&self) -> i64 {
        self.headers["paykit-timestamp"].parse().unwrap()
    }
}

/// A merchant's callback endpoint in the test process, failing on command.
#[derive(Clone)]
pub struct Receiver {
    pub url: String,
    pub got: std::sync::Arc<std::sync::Mutex<Vec<Callback>>>,
    /// Answer 500 to this many more callbacks.
    pub fail_next: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    /// Answer 500 to everything while set.
    pub down: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Sleep this long before answering.
    pub delay_ms: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl Receiver {
    pub async fn start() -> Receiver {
        Receiver::start_with(None).await
    }

    /// A receiver serving HTTPS with the given PEM certificate and key.
    pub async fn start_tls(cert: &Path, key: &Path) -> Receiver {
        install_crypto_provider();
        let tls = axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key)
            .await
            .expect("load the receiver's certificate");
        Receiver::start_with(Some(tls)).await
    }

    async fn start_with(tls: Option<axum_server::tls_rustls::RustlsConfig>) -> Receiver {
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let scheme = if tls.is_some() { "https" } else { "http" };
        let url = format!("{scheme}://{}/notify", listener.local_addr().unwrap());
        let receiver = Receiver {
            url,
            got: Default::default(),
            fail_next: Default::default(),
            down: Default::default(),
            delay_ms: Default::default(),
        };
        let r = receiver.clone();
        let app = axum::Router::new().route(
            "/notify",
            axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
                let r = r.clone();
                async move {
                    let delay = r.delay_ms.load(Ordering::SeqCst);
                    if delay > 0 {
                        tokio::time::sleep(Duration::from_millis(delay)).await;
                    }
                    let fail = r.down.load(Ordering::SeqCst)
                        || r.fail_next.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok();
                    let status = if fail { 500 } else { 200 };
                    let headers = headers
                        .iter()
                        .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
                        .collect();
                    r.got.lock().unwrap().push(Callback { headers, body, status_sent: status });
                    axum::http::StatusCode::from_u16(status).unwrap()
                }
            }),
        );
        let service = app.into_make_service();
        match tls {
            Some(tls) => tokio::spawn(async move {
                axum_server::from_tcp_rustls(listener, tls).unwrap().serve(service).await.unwrap()
            }),
            None => tokio::spawn(async move { axum_server::from_tcp(listener).unwrap().serve(service).await.unwrap() }),
        };
        receiver
    }

    pub fn received(&self) -> Vec<Callback> {
        self.got.lock().unwrap().clone()
    }

    /// Waits until at least `n` callbacks arrived.
    pub async fn wait_for(&self, n: usize, limit: Duration) -> Vec<Callback> {
        let deadline = std::time::Instant::now() + limit;
        loop {
            let got = self.received();
            if got.len() >= n {
                return got;
            }
            assert!(std::time::Instant::now() < deadline, "only {} of {n} callbacks arrived", got.len());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
