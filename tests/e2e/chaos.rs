//! The fault suite: a mixed load of QR payments, micropays, refunds, transfers and red
//! packets while the gateway is killed with SIGKILL every few seconds and restarted, and
//! the callback receiver is down for a stretch and then answers 5xx three times.
//! Afterwards every operation the client saw acknowledged exists exactly once, nothing is
//! charged twice, `paykit ledger verify` passes, and every event is delivered.
//!
//! Short by default (CI); `PAYKIT_CHAOS_SECS=600 cargo test -p paykit-tests --test e2e chaos`
//! runs a long one (`PAYKIT_CHAOS_GROUP_COMMIT=true` puts PostgreSQL's group commit through it
//! too). Clients behave as the API asks: a request that got no answer (or a
//! 5xx) is sent again with the same idempotency key, `out_trade_no` or `out_refund_no`.

use std::collections::BTreeMap;
use std::process::Child;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use paykit_store::Engine;
use paykit_store::testing::TestDb;
use paykit_tests::{
    Credentials, Receiver, ServeProcess, config_args, new_nonce, random_phone, resident_id, sign_header, unix_now,
};
use serde_json::{Value, json};

/// A gateway on a fixed port that can be killed and started again on the same database.
struct Gateway {
    db_url: String,
    /// Keeps a test database alive (and drops it after).
    _db: Option<TestDb>,
    url: String,
    args: Vec<String>,
    child: Mutex<Option<Child>>,
    kills: AtomicU64,
}

impl Gateway {
    fn start(db_url: String, db: Option<TestDb>) -> Gateway {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let allow = "{ threshold = 1, action = \"allow\" }";
        // PAYKIT_CHAOS_GROUP_COMMIT=true|false overrides the default (on), to put the
        // gateway without its lane through the suite too.
        let group_commit = std::env::var("PAYKIT_CHAOS_GROUP_COMMIT")
            .map(|v| format!("group_commit = {}\n", v == "true"))
            .unwrap_or_default();
        let mut args = config_args(&format!(
            "{group_commit}[risk]\nvelocity = {allow}\ndaily_amount = {allow}\nnew_payee_amount = {allow}\n\
             wrong_pay_passwords = {allow}\ncode_failures = {allow}\n"
        ));
        args.extend(["--listen".to_owned(), format!("127.0.0.1:{port}")]);
        let process = ServeProcess::spawn(&db_url, &args);
        Gateway {
            url: process.url,
            db_url,
            _db: db,
            args,
            child: Mutex::new(Some(process.child)),
            kills: AtomicU64::new(0),
        }
    }

    /// SIGKILL, then start again on the same port and database.
    fn kill_and_restart(&self) {
        let mut child = self.child.lock().unwrap();
        if let Some(mut c) = child.take() {
            let _ = c.kill();
            let _ = c.wait();
            self.kills.fetch_add(1, Ordering::SeqCst);
        }
        *child = Some(ServeProcess::spawn(&self.db_url, &self.args).child);
    }

    fn cli(&self, args: &[&str]) -> std::process::Output {
        paykit_tests::paykit_cli(&self.db_url, args)
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.lock().unwrap().take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

/// A throwaway PostgreSQL cluster the suite creates with `initdb` (as the `postgres` user:
/// initdb refuses root) and kills with SIGKILL — never the shared server.
struct Cluster {
    dir: std::path::PathBuf,
    port: u16,
    kills: AtomicU64,
}

impl Cluster {
    /// `None` (and a SKIPPED line) where a cluster cannot be made here.
    fn create() -> Option<Cluster> {
        let as_root = std::process::Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout == b"0\n");
        if !as_root || !std::path::Path::new(PG_BIN).join("initdb").exists() {
            let why = "killing PostgreSQL needs root (to run initdb as postgres) and PostgreSQL 15's binaries";
            assert!(std::env::var("PAYKIT_TEST_REQUIRE_POSTGRES").as_deref() != Ok("1"), "{why}");
            eprintln!("SKIPPED the PostgreSQL kills: {why}");
            return None;
        }
        let dir = std::env::temp_dir().join(format!("paykit-chaos-pg-{}", paykit_store::ids::random_base32(8)));
        std::fs::create_dir_all(&dir).unwrap();
        assert!(std::process::Command::new("chown").arg("postgres:postgres").arg(&dir).status().unwrap().success());
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let cluster = Cluster { dir, port, kills: AtomicU64::new(0) };
        let initdb = format!("{PG_BIN}/initdb");
        let data = cluster.data();
        cluster.as_postgres(&[&initdb, "-D", &data, "-A", "trust", "-U", "postgres", "--no-sync"]);
        cluster.start();
        Some(cluster)
    }

    fn data(&self) -> String {
        self.dir.join("data").display().to_string()
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn as_postgres(&self, args: &[&str]) {
        let out = std::process::Command::new("runuser").args(["-u", "postgres", "--"]).args(args).output().unwrap();
        let log = std::fs::read_to_string(self.dir.join("pg.log")).unwrap_or_default();
        let tail: String =
            log.lines().rev().take(15).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n");
        assert!(out.status.success(), "{args:?}: {}\n{tail}", String::from_utf8_lossy(&out.stderr));
    }

    fn start(&self) {
        let pg_ctl = format!("{PG_BIN}/pg_ctl");
        let opts = format!("-p {} -k {} -c listen_addresses=127.0.0.1", self.port, self.dir.display());
        let log = self.dir.join("pg.log").display().to_string();
        self.as_postgres(&[&pg_ctl, "-D", &self.data(), "-o", &opts, "-l", &log, "-w", "-t", "60", "start"]);
    }

    /// SIGKILL the postmaster (a crash: no shutdown checkpoint), then start it again;
    /// it recovers from its WAL.
    fn kill_and_restart(&self) {
        let pid = std::fs::read_to_string(self.dir.join("data/postmaster.pid")).unwrap_or_default();
        if let Some(pid) = pid.lines().next().filter(|p| !p.is_empty()) {
            // The postmaster and its backends all at once, as a machine crash would: a
            // backend left alive would keep the shared memory and block the restart.
            let children = std::process::Command::new("pgrep").args(["-P", pid]).output().unwrap().stdout;
            let children = String::from_utf8_lossy(&children).split_whitespace().map(str::to_owned).collect::<Vec<_>>();
            let _ = std::process::Command::new("kill").arg("-9").arg(pid).args(&children).status();
            for _ in 0..100 {
                if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            // Wait until it is dead: gone, or a zombie nobody reaps (a container's init may
            // not), which PostgreSQL would take for a live postmaster, so its lock file goes.
            let state = || std::fs::read_to_string(format!("/proc/{pid}/stat")).ok();
            for _ in 0..100 {
                match state() {
                    Some(stat) if !stat.contains(") Z ") => std::thread::sleep(Duration::from_millis(50)),
                    _ => break,
                }
            }
            let _ = std::fs::remove_file(self.dir.join("data/postmaster.pid"));
            let _ = std::fs::remove_file(self.dir.join(format!(".s.PGSQL.{}.lock", self.port)));
            self.kills.fetch_add(1, Ordering::SeqCst);
        }
        self.start();
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let pg_ctl = format!("{PG_BIN}/pg_ctl");
        let _ = std::process::Command::new("runuser")
            .args(["-u", "postgres", "--", &pg_ctl, "-D", &self.data(), "-m", "immediate", "stop"])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// An HTTP client that keeps asking until it gets a real answer (not a network error, not
/// a 5xx), as a merchant's server or a phone would.
struct Client {
    http: reqwest::Client,
    url: String,
}

enum Auth<'a> {
    Signed(&'a Credentials),
    Bearer(&'a str),
    None,
}

impl Client {
    async fn until_answered(
        &self,
        method: &str,
        path: &str,
        auth: Auth<'_>,
        body: &Value,
        idempotency_key: Option<&str>,
    ) -> (u16, Value) {
        let body = if body.is_null() { String::new() } else { body.to_string() };
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let mut req = self
                .http
                .request(method.parse().unwrap(), format!("{}{path}", self.url))
                .timeout(Duration::from_secs(15))
                .header("content-type", "application/json")
                .body(body.clone());
            match &auth {
                Auth::Signed(creds) => {
                    req = req.header(
                        "authorization",
                        sign_header(creds, method, path, body.as_bytes(), unix_now(), &new_nonce()),
                    );
                }
                Auth::Bearer(token) => req = req.header("authorization", format!("Bearer {token}")),
                Auth::None => {}
            }
            if let Some(key) = idempotency_key {
                req = req.header("idempotency-key", key);
            }
            if let Ok(res) = req.send().await {
                let status = res.status().as_u16();
                if let Ok(v) = res.json::<Value>().await
                    && status < 500
                {
                    return (status, v);
                }
            }
            assert!(Instant::now() < deadline, "{method} {path}: no answer for 120 s");
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    }
}

struct Consumer {
    token: String,
    phone: String,
    devices: Vec<(String, Vec<u8>)>,
}

async fn consumer(c: &Client, name: &str) -> Consumer {
    let phone = random_phone();
    let creds = json!({"phone": phone, "password": "correct horse"});
    let (s, v) = c.until_answered("POST", "/wallet/v1/users", Auth::None, &creds, None).await;
    assert_eq!(s, 201, "{v}");
    let (_, v) = c.until_answered("POST", "/wallet/v1/sessions", Auth::None, &creds, None).await;
    let token = v["token"].as_str().unwrap().to_owned();
    let seq = phone[7..].parse::<u32>().unwrap();
    let b = Auth::Bearer(&token);
    let (s, v) = c
        .until_answered("POST", "/wallet/v1/real-name", b, &json!({"name": name, "id_number": resident_id(seq)}), None)
        .await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = c
        .until_answered(
            "PUT",
            "/wallet/v1/pay-password",
            Auth::Bearer(&token),
            &json!({"pay_password": "135790"}),
            None,
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let card = json!({"card_number": "6222000000000009", "holder_name": name});
    let (_, v) = c.until_answered("POST", "/wallet/v1/cards", Auth::Bearer(&token), &card, None).await;
    let top_up = json!({"card_id": v["card_id"], "amount": "5000.00", "pay_password": "135790"});
    let key = format!("topup{}", new_nonce());
    let (s, v) = c.until_answered("POST", "/wallet/v1/top-ups", Auth::Bearer(&token), &top_up, Some(&key)).await;
    assert_eq!(s, 200, "{v}");
    let mut devices = Vec::new();
    for i in 0..8 {
        let (s, v) = c
            .until_answered(
                "POST",
                "/wallet/v1/devices",
                Auth::Bearer(&token),
                &json!({"name": format!("phone {i}")}),
                None,
            )
            .await;
        assert_eq!(s, 201, "{v}");
        let secret =
            base64::Engine::decode(&base64::engine::general_purpose::STANDARD, v["device_secret"].as_str().unwrap())
                .unwrap();
        devices.push((v["device_id"].as_str().unwrap().to_owned(), secret));
    }
    Consumer { token, phone, devices }
}

/// What the clients saw acknowledged, and every key they tried (acknowledged or not).
#[derive(Default)]
struct Ledger {
    payments: Vec<String>,
    micropays: Vec<String>,
    refunds: Vec<String>,
    transfers: Vec<String>,
    packets: Vec<String>,
    transfer_keys: u64,
    packet_keys: u64,
    refused: BTreeMap<String, u64>,
}

fn refused(book: &Mutex<Ledger>, what: &str, v: &Value) {
    *book.lock().unwrap().refused.entry(format!("{what}:{}", v["code"].as_str().unwrap_or("?"))).or_default() += 1;
}

async fn run(engine: Engine) {
    paykit_tests::install_crypto_provider();
    let Some(db) = TestDb::new(engine).await else { return };
    let secs: u64 = std::env::var("PAYKIT_CHAOS_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(24);
    // On PostgreSQL the database itself is killed too: on a cluster of the suite's own.
    let cluster = if engine == Engine::Postgres { Cluster::create().map(Arc::new) } else { None };
    let gw = Arc::new(match &cluster {
        Some(c) => Gateway::start(c.url(), None),
        None => Gateway::start(db.url.clone(), Some(db)),
    });
    let receiver = Receiver::start().await;
    let out = gw.cli(&["merchant", "create", "--name", "Chaos Shop", "--notify-url", &receiver.url, "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let m: Value = serde_json::from_slice(&out.stdout).unwrap();
    let merchant = Arc::new(Credentials {
        merchant_id: m["merchant_id"].as_str().unwrap().to_owned(),
        key_id: m["key_id"].as_str().unwrap().to_owned(),
        api_secret: m["api_secret"].as_str().unwrap().to_owned(),
    });
    let client = Arc::new(Client { http: reqwest::Client::new(), url: gw.url.clone() });
    let mut consumers = Vec::new();
    for i in 0..4 {
        consumers.push(consumer(&client, &format!("混沌{i}")).await);
    }
    let consumers = Arc::new(consumers);
    let book = Arc::new(Mutex::new(Ledger::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut tasks = Vec::new();

    // QR payments with the pay password, two payers at a time.
    for p in 0..2usize {
        let (client, merchant, consumers, book, stop) =
            (client.clone(), merchant.clone(), consumers.clone(), book.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                n += 1;
                let w = &consumers[(p + n) % consumers.len()];
                let order = json!({"out_trade_no": format!("Q{p}-{n}-{}", new_nonce()), "amount": "1.00", "description": "chaos"});
                let (s, o) = client.until_answered("POST", "/v1/orders", Auth::Signed(&merchant), &order, None).await;
                assert!(s == 201 || s == 200, "{o}");
                let pay = json!({"order_id": o["order_id"], "funding": "balance", "pay_password": "135790"});
                let key = new_nonce();
                let (s, v) = client.until_answered("POST", "/wallet/v1/payments", Auth::Bearer(&w.token), &pay, Some(&key)).await;
                if s == 200 && v["status"] == "SUCCESS" {
                    book.lock().unwrap().payments.push(o["order_id"].as_str().unwrap().to_owned());
                } else {
                    refused(&book, "pay", &v);
                }
            }
        }));
    }
    // Micropays: each device's code works once per 30 s step, so devices take turns.
    {
        let (client, merchant, consumers, book, stop) =
            (client.clone(), merchant.clone(), consumers.clone(), book.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let devices: Vec<_> = consumers.iter().flat_map(|c| c.devices.iter()).collect();
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                let (device_id, secret) = devices[n % devices.len()];
                n += 1;
                let code = paykit_core::payment_code::generate(device_id.parse().unwrap(), secret, unix_now());
                let body = json!({"out_trade_no": format!("M{n}-{}", new_nonce()), "amount": "0.50", "auth_code": code, "description": "chaos"});
                let (s, v) = client.until_answered("POST", "/v1/micropay", Auth::Signed(&merchant), &body, None).await;
                if s == 200 && v["status"] == "SUCCESS" {
                    book.lock().unwrap().micropays.push(v["order_id"].as_str().unwrap().to_owned());
                } else {
                    refused(&book, "micropay", &v);
                }
                tokio::time::sleep(Duration::from_millis(1000)).await;
            }
        }));
    }
    // Refunds of 0.01 of orders already paid.
    {
        let (client, merchant, book, stop) = (client.clone(), merchant.clone(), book.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut n: usize = 0;
            while !stop.load(Ordering::SeqCst) {
                n += 1;
                // Spread over the paid orders: an order takes at most 50 refunds.
                let paid = {
                    let book = book.lock().unwrap();
                    book.payments.get(n.wrapping_mul(7919) % book.payments.len().max(1)).cloned()
                };
                let Some(order_id) = paid else {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    continue;
                };
                let body =
                    json!({"order_id": order_id, "out_refund_no": format!("R{n}-{}", new_nonce()), "amount": "0.01"});
                let (s, v) = client.until_answered("POST", "/v1/refunds", Auth::Signed(&merchant), &body, None).await;
                if s == 200 || s == 201 {
                    book.lock().unwrap().refunds.push(v["refund_id"].as_str().unwrap().to_owned());
                } else {
                    refused(&book, "refund", &v);
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }));
    }
    // Transfers and red packets between the consumers.
    {
        let (client, consumers, book, stop) = (client.clone(), consumers.clone(), book.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                n += 1;
                let (from, to) = (&consumers[n % consumers.len()], &consumers[(n + 1) % consumers.len()]);
                let key = new_nonce();
                let body = json!({"to_phone": to.phone, "amount": "0.01", "pay_password": "135790"});
                book.lock().unwrap().transfer_keys += 1;
                let (s, v) = client
                    .until_answered("POST", "/wallet/v1/transfers", Auth::Bearer(&from.token), &body, Some(&key))
                    .await;
                if s == 200 || s == 201 {
                    book.lock().unwrap().transfers.push(v["transfer_id"].as_str().unwrap().to_owned());
                } else {
                    refused(&book, "transfer", &v);
                }
                let key = new_nonce();
                let body = json!({"kind": "fixed", "total": "0.02", "shares": 2, "pay_password": "135790"});
                book.lock().unwrap().packet_keys += 1;
                let (s, v) = client
                    .until_answered("POST", "/wallet/v1/red-packets", Auth::Bearer(&from.token), &body, Some(&key))
                    .await;
                if s == 200 || s == 201 {
                    book.lock().unwrap().packets.push(v["red_packet_id"].as_str().unwrap().to_owned());
                } else {
                    refused(&book, "red_packet", &v);
                }
            }
        }));
    }
    // The faults: the gateway killed every 3 s; the receiver down from 5 s to 15 s, then
    // three 5xx answers.
    let (down, fail_next) = (receiver.down.clone(), receiver.fail_next.clone());
    // PostgreSQL is killed every 30 s (at half time in a run shorter than a minute).
    let pg_period = Duration::from_secs(30.min(secs / 2).max(1));
    let chaos = {
        let (gw, cluster) = (gw.clone(), cluster.clone());
        tokio::task::spawn_blocking(move || {
            let mut receiver_phase = 0;
            let mut next_pg_kill = pg_period;
            while started.elapsed() < Duration::from_secs(secs) {
                std::thread::sleep(Duration::from_secs(3));
                if let Some(c) = &cluster
                    && started.elapsed() >= next_pg_kill
                {
                    c.kill_and_restart();
                    next_pg_kill += pg_period;
                }
                gw.kill_and_restart();
                let t = started.elapsed();
                if receiver_phase == 0 && t >= Duration::from_secs(5) {
                    down.store(true, Ordering::SeqCst);
                    receiver_phase = 1;
                } else if receiver_phase == 1 && t >= Duration::from_secs(15) {
                    down.store(false, Ordering::SeqCst);
                    fail_next.store(3, Ordering::SeqCst);
                    receiver_phase = 2;
                }
            }
        })
    };
    chaos.await.unwrap();
    stop.store(true, Ordering::SeqCst);
    for t in tasks {
        t.await.unwrap();
    }
    receiver.down.store(false, Ordering::SeqCst);

    // Every event reaches the receiver: move the sandbox clock past the retry schedule.
    let pool = sqlx::AnyPool::connect(&gw.db_url).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let undelivered: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM deliveries WHERE status <> 'DELIVERED'")
            .fetch_one(&pool)
            .await
            .unwrap();
        if undelivered == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "{undelivered} events still undelivered after 90 s");
        let out = gw.cli(&["sandbox", "advance-clock", "1h"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let event_ids: Vec<String> = sqlx::query_scalar("SELECT event_id FROM deliveries").fetch_all(&pool).await.unwrap();
    let received: std::collections::HashSet<String> = receiver
        .received()
        .iter()
        .filter(|c| c.status_sent == 200)
        .filter_map(|c| c.json()["event_id"].as_str().map(str::to_owned))
        .collect();
    let lost_events = event_ids.iter().filter(|id| !received.contains(*id)).count();

    // The load has stopped: the book is final, and no lock is held across the checks.
    let book = std::mem::take(&mut *book.lock().unwrap());
    // Acknowledged payments exist exactly once; no order is charged twice.
    let mut lost = 0;
    for order_id in book.payments.iter().chain(&book.micropays) {
        let n: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM journal_entries WHERE kind = 'payment' AND reference = $1")
                .bind(order_id)
                .fetch_one(&pool)
                .await
                .unwrap();
        assert!(n <= 1, "order {order_id} was charged {n} times");
        lost += usize::from(n == 0);
    }
    let charged_twice: Vec<String> = sqlx::query_scalar(
        "SELECT reference FROM journal_entries WHERE kind = 'payment' GROUP BY reference HAVING COUNT(*) > 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    for (table, ids) in [("refunds", &book.refunds), ("transfers", &book.transfers), ("red_packets", &book.packets)] {
        for id in ids {
            let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table} WHERE id = $1")))
                .bind(id)
                .fetch_one(&pool)
                .await
                .unwrap();
            lost += usize::from(n != 1);
        }
    }
    // Each idempotency key moved money at most once.
    let transfers: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM transfers").fetch_one(&pool).await.unwrap();
    let packets: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM red_packets").fetch_one(&pool).await.unwrap();
    let verify = gw.cli(&["ledger", "verify"]);
    println!(
        "chaos {engine:?}: {secs} s, {} gateway kills, {} database kills, acknowledged: {} payments, {} micropays, {} refunds, \
         {} transfers, {} red packets; refused {:?}; events {} (lost {lost_events}); charged twice {}; lost {lost}",
        gw.kills.load(Ordering::SeqCst),
        cluster.as_ref().map_or(0, |c| c.kills.load(Ordering::SeqCst)),
        book.payments.len(),
        book.micropays.len(),
        book.refunds.len(),
        book.transfers.len(),
        book.packets.len(),
        book.refused,
        event_ids.len(),
        charged_twice.len(),
    );
    assert!(charged_twice.is_empty(), "charged twice: {charged_twice:?}");
    assert_eq!(lost, 0, "acknowledged operations missing");
    assert!(transfers as u64 <= book.transfer_keys && packets as u64 <= book.packet_keys, "a key moved money twice");
    assert_eq!(lost_events, 0, "events never delivered");
    assert!(verify.status.success(), "ledger verify: {}", String::from_utf8_lossy(&verify.stdout));
    assert!(gw.kills.load(Ordering::SeqCst) >= 3, "the gateway was killed during the run");
    if let Some(c) = &cluster {
        assert!(c.kills.load(Ordering::SeqCst) >= 1, "PostgreSQL was killed during the run");
    }
    drop(pool);
    assert!(!book.payments.is_empty() && !book.micropays.is_empty(), "the load made progress");
}

#[tokio::test(flavor = "multi_thread")]
async fn nothing_is_lost_or_doubled_when_the_gateway_is_killed_sqlite() {
    run(Engine::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn nothing_is_lost_or_doubled_when_the_gateway_is_killed_postgres() {
    run(Engine::Postgres).await;
}
