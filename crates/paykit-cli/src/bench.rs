//! `paykit bench`: a load generator that drives a running gateway over real HTTP — closed
//! loop (N clients back to back) or open loop (a fixed offered rate, latency measured from
//! each request's intended start, so a slow server cannot hide its queueing).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use paykit_core::signing::{AuthHeader, PartyKind, canonical_request, sign};
use paykit_core::time::Timestamp;
use paykit_core::{Currency, Money};
use paykit_store::payments::BankAnswer;
use paykit_store::{Store, StoreError};
use tokio::sync::Mutex;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// Create an order, then the wallet pays it with a device confirmation.
    QrPay,
    /// The same, confirmed with the pay password (bounded by Argon2 by design).
    QrPayPassword,
    /// A merchant-scanned payment code.
    Micropay,
    /// A 0.01 refund of a paid order.
    Refund,
    /// Of every ten operations: five qr-pay, three micropay, one refund, one order query.
    Mixed,
    /// `GET /v1/orders/{id}` of paid orders (each a signed request, so each still writes
    /// its nonce).
    Query,
    /// A backlog of `--events` callbacks delivered to a local sink; reports the drain rate
    /// and the gateway's resident memory.
    Callbacks,
    /// `--clients` keep-alive connections opened and held (each has asked for /healthz);
    /// reports the gateway's resident memory with all of them open.
    Connections,
    /// qr-pay from `--clients` clients, first alone, then under a flood of wrong passwords
    /// at `--rate` attempts a second (log-ins: the same Argon2 pool as pay passwords, and no
    /// lock-out cuts them short); compares qr-pay's p99 and counts the flood's answers.
    PasswordFlood,
}

#[derive(Debug, Clone)]
pub struct Options {
    pub url: String,
    pub scenario: Scenario,
    pub clients: usize,
    pub duration: Duration,
    /// The same load run first and not measured.
    pub warmup: Duration,
    pub rate: Option<f64>,
    pub merchants: usize,
    pub wallets: usize,
    /// Callbacks scenario: how many events to deliver.
    pub events: usize,
    /// The gateway's process, when the bench started it (for its memory).
    pub gateway_pid: Option<u32>,
    /// Whether the gateway the bench started groups commits (unknown for `--url`).
    pub group_commit: Option<bool>,
}

struct Merchant {
    id: String,
    key_id: String,
    secret: String,
}

struct Wallet {
    phone: String,
    token: String,
    devices: Vec<(String, Vec<u8>)>,
}

struct Fixture {
    merchants: Vec<Merchant>,
    wallets: Vec<Wallet>,
}

fn now() -> Timestamp {
    paykit_gateway::clock::Clock::now(&paykit_gateway::clock::SystemClock::new())
}

/// Creates merchants and funded, verified wallets with devices straight in the database
/// (registering thousands over HTTP would measure Argon2, not payments).
async fn fixture(store: &Store, o: &Options, notify_url: Option<&str>) -> Result<Fixture> {
    let hashing = paykit_gateway::passwords::PasswordHashing::new(1, 4);
    let password = hashing.hash("bench-password").await.map_err(|e| anyhow::anyhow!("{}", e.message))?;
    let pay_password = hashing.hash("135790").await.map_err(|e| anyhow::anyhow!("{}", e.message))?;
    let t = now();
    let mut merchants = Vec::new();
    for i in 0..o.merchants {
        let (m, key) = store.create_merchant(&format!("Bench Merchant {i}"), notify_url, t).await?;
        merchants.push(Merchant { id: m.id, key_id: key.key_id, secret: key.api_secret });
    }
    // A payment code works once per device per 30 s step: micropay needs many devices.
    let devices_each = match o.scenario {
        Scenario::Micropay => 200,
        Scenario::Mixed => 100,
        _ => 1,
    };
    let mut wallets = Vec::new();
    let funds = Money::parse("1000000.00", Currency::Cny)?;
    for i in 0..o.wallets {
        let phone = format!("1390{:07}", (i as u64 + u64::from(rand_u32())) % 10_000_000);
        let Some(user) = store.create_user(&phone, &password, t).await? else { continue };
        store.set_real_name(&user.id, "压测", "440***********0015", &format!("bench-{}", user.id), t).await?;
        store.set_pay_password(&user.id, &pay_password).await?;
        store
            .top_up(&user.id, "bench", funds, BankAnswer::Approved, None, t)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let token = paykit_store::ids::random_base32(40);
        store
            .create_session(&paykit_gateway::wallet_auth::token_digest(&token), &user.id, t.plus_secs(86_400), t)
            .await?;
        let mut devices = Vec::new();
        for _ in 0..devices_each {
            let mut secret = [0u8; 32];
            getrandom::fill(&mut secret)?;
            let d = store
                .create_device(&user.id, "bench", &base64::engine::general_purpose::STANDARD.encode(secret), true, t)
                .await?;
            devices.push((d.id, secret.to_vec()));
        }
        wallets.push(Wallet { phone, token, devices });
    }
    Ok(Fixture { merchants, wallets })
}

fn rand_u32() -> u32 {
    let mut b = [0u8; 4];
    let _ = getrandom::fill(&mut b);
    u32::from_le_bytes(b)
}

fn unix_now() -> i64 {
    now().unix_secs()
}

struct Runner {
    http: reqwest::Client,
    url: String,
    fixture: Fixture,
    seq: std::sync::atomic::AtomicU64,
    /// Every wallet's devices, as (wallet index, device index), taken in turn: a payment
    /// code works once per device per 30 s step.
    devices: Vec<(usize, usize)>,
    next_device: std::sync::atomic::AtomicUsize,
    refund_cursor: std::sync::atomic::AtomicUsize,
    /// Paid orders for the refund scenario: (merchant index, order id).
    paid: std::sync::OnceLock<Vec<(usize, String)>>,
}

/// An operation's outcome: Ok, or the API error code (or NETWORK).
type Outcome = Result<(), String>;

impl Runner {
    async fn signed(&self, m: &Merchant, method: &str, path: &str, body: String) -> Result<serde_json::Value, String> {
        let (ts, nonce) = (unix_now(), paykit_store::ids::random_base32(20));
        let signature = sign(m.secret.as_bytes(), &canonical_request(method, path, ts, &nonce, body.as_bytes()));
        let header = AuthHeader {
            party_kind: PartyKind::Merchant,
            party_id: m.id.clone(),
            key_id: m.key_id.clone(),
            timestamp: ts,
            nonce,
            signature,
        }
        .render();
        let method = reqwest::Method::from_bytes(method.as_bytes()).map_err(|e| e.to_string())?;
        let r = self
            .http
            .request(method, format!("{}{path}", self.url))
            .header("authorization", header)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .map_err(|_| "NETWORK".to_owned())?;
        read(r).await
    }

    async fn wallet(&self, w: &Wallet, path: &str, body: serde_json::Value) -> Result<serde_json::Value, String> {
        let r = self
            .http
            .post(format!("{}{path}", self.url))
            .bearer_auth(&w.token)
            .json(&body)
            .send()
            .await
            .map_err(|_| "NETWORK".to_owned())?;
        read(r).await
    }

    fn pick<'a, T>(&self, items: &'a [T], n: u64) -> &'a T {
        &items[(n as usize) % items.len()]
    }

    async fn op(&self) -> Outcome {
        let n = self.seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let merchant_index = (n as usize) % self.fixture.merchants.len();
        let m = &self.fixture.merchants[merchant_index];
        // Wallets and merchants both turn over every operation, so neither is hot unless
        // asked for (`--merchants 1`): 32 clients paying from one wallet at once would
        // measure that wallet's row lock, not the merchant's.
        let w = self.pick(&self.fixture.wallets, n);
        match scenario_of(self) {
            Scenario::QrPay => self.qr_pay(n, m, w, false).await,
            Scenario::QrPayPassword => self.qr_pay(n, m, w, true).await,
            Scenario::Micropay => self.micropay(n, m).await,
            Scenario::Refund => self.refund().await,
            Scenario::Mixed => match n % 10 {
                0..=4 => self.qr_pay(n, m, w, false).await,
                5..=7 => self.micropay(n, m).await,
                8 => self.refund().await,
                _ => self.query_order(n).await,
            },
            Scenario::Query => self.query_order(n).await,
            Scenario::PasswordFlood => self.qr_pay(n, m, w, false).await,
            Scenario::Callbacks | Scenario::Connections => Err("NOT_A_REQUEST_SCENARIO".into()),
        }
    }

    /// Creates an order and pays it from a wallet, with a device confirmation or the pay
    /// password.
    async fn qr_pay(&self, n: u64, m: &Merchant, w: &Wallet, with_password: bool) -> Outcome {
        let body = serde_json::json!({"out_trade_no": format!("B{n}-{}", rand_u32()), "amount": "0.01", "description": "bench"}).to_string();
        let order = self.signed(m, "POST", "/v1/orders", body).await?;
        let order_id = order["order_id"].as_str().unwrap_or_default();
        let pay = if with_password {
            serde_json::json!({"order_id": order_id, "funding": "balance", "pay_password": "135790"})
        } else {
            let (device_id, secret) = &w.devices[0];
            let ts = unix_now();
            serde_json::json!({"order_id": order_id, "funding": "balance", "device_id": device_id, "device_ts": ts,
                "device_proof": paykit_core::wallet::device_proof(secret, order_id, "0.01", ts)})
        };
        let paid = self.wallet(w, "/wallet/v1/payments", pay).await?;
        if paid["status"] == "SUCCESS" {
            Ok(())
        } else {
            Err(format!("STATUS_{}", paid["status"].as_str().unwrap_or("?")))
        }
    }

    /// A merchant-scanned payment code; each device's code works once per 30 s step, so
    /// devices are taken in turn.
    async fn micropay(&self, n: u64, m: &Merchant) -> Outcome {
        let i = self.next_device.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (w, d) = self.devices[i % self.devices.len()];
        let (device_id, secret) = &self.fixture.wallets[w].devices[d];
        let code = paykit_core::payment_code::generate(device_id.parse().unwrap_or(0), secret, unix_now());
        let body = serde_json::json!({"out_trade_no": format!("M{n}-{}", rand_u32()), "amount": "0.01", "auth_code": code, "description": "bench"}).to_string();
        self.signed(m, "POST", "/v1/micropay", body).await.map(|_| ())
    }

    /// A 0.01 refund of one of the orders paid before the run.
    async fn refund(&self) -> Outcome {
        let i = self.refund_cursor.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let paid = self.paid.get().map_or(&[][..], Vec::as_slice);
        let Some((mi, order_id)) = paid.get(i % paid.len().max(1)) else { return Err("NO_PAID_ORDERS".into()) };
        let body = serde_json::json!({"order_id": order_id, "out_refund_no": format!("R{i}-{}", rand_u32()), "amount": "0.01"}).to_string();
        self.signed(&self.fixture.merchants[*mi], "POST", "/v1/refunds", body).await.map(|_| ())
    }

    /// `GET /v1/orders/{id}` of a paid order.
    async fn query_order(&self, n: u64) -> Outcome {
        let paid = self.paid.get().map_or(&[][..], Vec::as_slice);
        let Some((mi, order_id)) = paid.get(n as usize % paid.len().max(1)) else {
            return Err("NO_PAID_ORDERS".into());
        };
        let path = format!("/v1/orders/{order_id}");
        self.signed(&self.fixture.merchants[*mi], "GET", &path, String::new()).await.map(|_| ())
    }
}

static SCENARIO: std::sync::OnceLock<Scenario> = std::sync::OnceLock::new();

fn scenario_of(_: &Runner) -> Scenario {
    *SCENARIO.get().expect("set before the run")
}

async fn read(r: reqwest::Response) -> Result<serde_json::Value, String> {
    let status = r.status();
    let v: serde_json::Value = r.json().await.map_err(|_| "DECODE".to_owned())?;
    if status.is_success() { Ok(v) } else { Err(v["code"].as_str().unwrap_or("UNKNOWN").to_owned()) }
}

/// Runs the benchmark and prints the report; returns whether the ledger verified.
pub async fn run(store: Store, o: Options) -> Result<bool> {
    if o.merchants == 0 || o.wallets == 0 || o.clients == 0 {
        bail!("--merchants, --wallets and --clients must be at least 1");
    }
    let _ = SCENARIO.set(o.scenario);
    paykit_gateway::server::install_crypto_provider();
    if o.scenario == Scenario::Callbacks {
        return callbacks(store, o).await;
    }
    if o.scenario == Scenario::Connections {
        return connections(o).await;
    }
    let setup = Instant::now();
    let fixture = fixture(&store, &o, None).await.context("setting up merchants and wallets")?;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(o.clients.max(16))
        .timeout(Duration::from_secs(30))
        .build()?;
    let runner = Arc::new(Runner {
        http,
        url: o.url.trim_end_matches('/').to_owned(),
        devices: fixture
            .wallets
            .iter()
            .enumerate()
            .flat_map(|(w, wallet)| (0..wallet.devices.len()).map(move |d| (w, d)))
            .collect(),
        fixture,
        seq: Default::default(),
        next_device: Default::default(),
        refund_cursor: Default::default(),
        paid: std::sync::OnceLock::new(),
    });
    if matches!(o.scenario, Scenario::Refund | Scenario::Mixed | Scenario::Query) {
        // Orders to refund (and, in the mix, to query): paid once each, 0.01 refunded at a
        // time, 50 refunds an order: enough orders that the run never exhausts them.
        let mut paid = Vec::new();
        let orders = if o.scenario == Scenario::Refund { 600 } else { 200 };
        for i in 0..orders {
            let m = &runner.fixture.merchants[i % runner.fixture.merchants.len()];
            let w = &runner.fixture.wallets[i % runner.fixture.wallets.len()];
            let body = serde_json::json!({"out_trade_no": format!("RB{i}-{}", rand_u32()), "amount": "0.50", "description": "bench"}).to_string();
            let order = runner.signed(m, "POST", "/v1/orders", body).await.map_err(|e| anyhow::anyhow!(e))?;
            let order_id = order["order_id"].as_str().unwrap_or_default().to_owned();
            let (device_id, secret) = &w.devices[0];
            let ts = unix_now();
            let pay = serde_json::json!({"order_id": order_id, "funding": "balance", "device_id": device_id, "device_ts": ts,
                "device_proof": paykit_core::wallet::device_proof(secret, &order_id, "0.50", ts)});
            runner.wallet(w, "/wallet/v1/payments", pay).await.map_err(|e| anyhow::anyhow!(e))?;
            paid.push((i % runner.fixture.merchants.len(), order_id));
        }
        let _ = runner.paid.set(paid);
    }
    eprintln!("setup: {} merchants, {} wallets in {:.1}s", o.merchants, o.wallets, setup.elapsed().as_secs_f64());
    if o.scenario == Scenario::PasswordFlood {
        return password_flood(store, runner, o).await;
    }

    let load = async |duration| match o.rate {
        None => closed_loop(&runner, o.clients, duration).await,
        Some(rate) => open_loop(&runner, o.clients, duration, rate).await,
    };
    if !o.warmup.is_zero() {
        let (lat, errors) = load(o.warmup).await?;
        eprintln!("warm-up: {} ops in {:.1}s, not measured; errors {errors:?}", lat.len(), o.warmup.as_secs_f64());
    }
    let cpu = crate::proc_cpu::CpuWatch::start(o.gateway_pid, store.engine() == paykit_store::Engine::Postgres);
    let started = Instant::now();
    let (lat, errors) = load(o.duration).await?;
    let elapsed = started.elapsed();
    let cpu = cpu.report();
    let pct = |p: f64| percentile_us(&lat, p);
    let ms = |us: u32| f64::from(us) / 1000.0;
    let error_count: u64 = errors.values().sum();
    println!(
        "scenario {:?}  engine {}  group commit {}  {}  clients {}  merchants {}  wallets {}  duration {:.1}s",
        o.scenario,
        store.engine().as_str(),
        o.group_commit.map_or("?", |on| if on { "on" } else { "off" }),
        o.rate.map_or("closed loop".to_owned(), |r| format!("open loop at {r}/s")),
        o.clients,
        o.merchants,
        o.wallets,
        elapsed.as_secs_f64()
    );
    println!(
        "ops {}  throughput {:.1}/s  errors {error_count}{}",
        lat.len(),
        lat.len() as f64 / elapsed.as_secs_f64(),
        if errors.is_empty() { String::new() } else { format!(" {errors:?}") }
    );
    println!(
        "latency ms  p50 {:.2}  p95 {:.2}  p99 {:.2}  max {:.2}",
        ms(pct(0.50)),
        ms(pct(0.95)),
        ms(pct(0.99)),
        ms(lat.last().copied().unwrap_or(0))
    );
    println!("{cpu}");
    let report = store.verify_ledger().await?;
    println!(
        "ledger verify: {} ({} entries, {} postings)",
        if report.is_ok() { "OK".to_owned() } else { format!("FAILED {:?}", report.violations) },
        report.entries,
        report.postings
    );
    Ok(report.is_ok())
}

/// The gateway's resident memory in MiB, from /proc (Linux).
fn rss_mib(pid: Option<u32>) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{}/status", pid?)).ok()?;
    let kib: f64 =
        status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?.trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kib / 1024.0)
}

/// The callbacks scenario: merchants whose notify_url is a local sink, a backlog of
/// `o.events` events written to the outbox in batches, and the gateway's dispatcher
/// draining it. Reports the drain rate, delivery latency (event written → sink received)
/// and the gateway's memory while it drains.
async fn callbacks(store: Store, o: Options) -> Result<bool> {
    use std::sync::atomic::{AtomicU64, Ordering};
    let received = Arc::new(AtomicU64::new(0));
    let latencies = Arc::new(std::sync::Mutex::new(Vec::<u32>::with_capacity(o.events)));
    let sink = {
        let (received, latencies) = (received.clone(), latencies.clone());
        axum::Router::new().route(
            "/hook",
            axum::routing::post(move |body: axum::body::Bytes| {
                let (received, latencies) = (received.clone(), latencies.clone());
                async move {
                    let created = serde_json::from_slice::<serde_json::Value>(&body)
                        .ok()
                        .and_then(|v| v["created_at"].as_str().and_then(|t| Timestamp::parse_rfc3339(t).ok()));
                    if let Some(created) = created {
                        let us = (now().unix_micros() - created.unix_micros()).clamp(0, i64::from(u32::MAX));
                        latencies.lock().map(|mut l| l.push(us as u32)).ok();
                    }
                    received.fetch_add(1, Ordering::Relaxed);
                    "OK"
                }
            }),
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let sink_url = format!("http://{}/hook", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, sink).await });

    let fixture = fixture(&store, &Options { wallets: 0, ..o.clone() }, Some(&sink_url)).await?;
    let rss_before = rss_mib(o.gateway_pid);
    // A gateway the bench started is paused while the backlog is written, so the drain is
    // measured on a whole backlog with nothing else writing (with --url it drains as the
    // backlog grows).
    signal_gateway(o.gateway_pid, "-STOP")?;
    let started = Instant::now();
    let mut written = 0usize;
    let write_batch = async |from: usize, batch: usize| -> Result<(), StoreError> {
        let mut tx = store.begin().await?;
        let t = now();
        for i in from..from + batch {
            let m = &fixture.merchants[i % fixture.merchants.len()];
            tx.enqueue_event("merchant", &m.id, "bench.ping", serde_json::json!({ "i": i }), Some(&sink_url), t)
                .await?;
        }
        tx.commit().await
    };
    let mut resumed = 0;
    while written < o.events {
        let batch = (o.events - written).min(500);
        match write_batch(written, batch).await {
            Ok(()) => written += batch,
            // The gateway was paused holding SQLite's write lock: let it run a moment to
            // finish that write, then pause it again and write the batch again.
            Err(e) if e.is_transient() && o.gateway_pid.is_some() && resumed < 10 => {
                resumed += 1;
                signal_gateway(o.gateway_pid, "-CONT")?;
                tokio::time::sleep(Duration::from_millis(200)).await;
                signal_gateway(o.gateway_pid, "-STOP")?;
            }
            Err(e) => return Err(e.into()),
        }
    }
    let enqueued = started.elapsed();
    signal_gateway(o.gateway_pid, "-CONT")?;
    let received_while_enqueuing = received.load(Ordering::Relaxed);
    let mut rss_max = rss_before.unwrap_or(0.0);
    // Give up when nothing has arrived for 30 s: the dispatcher is stuck or the sink is.
    let (mut last_count, mut last_progress) = (0, Instant::now());
    loop {
        let count = received.load(Ordering::Relaxed);
        rss_max = rss_max.max(rss_mib(o.gateway_pid).unwrap_or(0.0));
        if count as usize >= o.events {
            break;
        }
        if count != last_count {
            (last_count, last_progress) = (count, Instant::now());
        } else if last_progress.elapsed() > Duration::from_secs(30) {
            eprintln!("no deliveries for 30 s; stopping at {count}");
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let drained = started.elapsed();
    let count = received.load(Ordering::Relaxed);
    let mut lat = latencies.lock().map(|l| l.clone()).unwrap_or_default();
    lat.sort_unstable();
    let pct = |p: f64| lat.get(((lat.len() as f64 * p).ceil() as usize).saturating_sub(1)).copied().unwrap_or(0);
    let ms = |us: u32| f64::from(us) / 1000.0;
    println!("scenario Callbacks  engine {}  merchants {}  events {}", store.engine().as_str(), o.merchants, o.events);
    println!(
        "enqueued {} in {:.1}s  delivered {count} in {:.1}s  throughput {:.1}/s",
        o.events,
        enqueued.as_secs_f64(),
        drained.as_secs_f64(),
        count as f64 / drained.as_secs_f64()
    );
    // The dispatcher alone, once the whole backlog is written and nothing competes with it.
    println!(
        "backlog drain (from the last event written)  {} in {:.1}s  {:.1}/s",
        count - received_while_enqueuing,
        (drained - enqueued).as_secs_f64(),
        (count - received_while_enqueuing) as f64 / (drained - enqueued).as_secs_f64().max(1e-9)
    );
    println!(
        "latency ms (written -> received)  p50 {:.1}  p95 {:.1}  p99 {:.1}  max {:.1}",
        ms(pct(0.50)),
        ms(pct(0.95)),
        ms(pct(0.99)),
        ms(lat.last().copied().unwrap_or(0))
    );
    if let Some(before) = rss_before {
        println!("gateway RSS MiB  before {before:.1}  max while draining {rss_max:.1}");
    }
    let report = store.verify_ledger().await?;
    println!(
        "ledger verify: {}",
        if report.is_ok() { "OK".to_owned() } else { format!("FAILED {:?}", report.violations) }
    );
    Ok(report.is_ok() && count as usize >= o.events)
}

/// Sends `signal` (`-STOP`, `-CONT`) to the gateway the bench started, if it did.
fn signal_gateway(pid: Option<u32>, signal: &str) -> Result<()> {
    let Some(pid) = pid else { return Ok(()) };
    let status = std::process::Command::new("kill").arg(signal).arg(pid.to_string()).status()?;
    if !status.success() {
        bail!("kill {signal} {pid} failed: {status}");
    }
    Ok(())
}

/// Opens `o.clients` HTTP/1.1 keep-alive connections, one request each, and holds them all
/// open while reading the gateway's memory.
async fn connections(o: Options) -> Result<bool> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = o.url.trim_start_matches("http://").trim_end_matches('/').to_owned();
    let rss_before = rss_mib(o.gateway_pid);
    let started = Instant::now();
    let mut open = Vec::with_capacity(o.clients);
    let mut failed = 0usize;
    for _ in 0..o.clients {
        let Ok(mut stream) = tokio::net::TcpStream::connect(&addr).await else {
            failed += 1;
            continue;
        };
        let request = format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\n\r\n");
        let mut buf = [0u8; 1024];
        let answered = stream.write_all(request.as_bytes()).await.is_ok()
            && matches!(stream.read(&mut buf).await, Ok(n) if n > 0 && buf.starts_with(b"HTTP/1.1 200"));
        if answered { open.push(stream) } else { failed += 1 }
    }
    let opened_in = started.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_open = rss_mib(o.gateway_pid);
    // The connections are still usable: ask again on every one.
    let mut still = 0usize;
    for stream in &mut open {
        let request = format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\n\r\n");
        let mut buf = [0u8; 1024];
        if stream.write_all(request.as_bytes()).await.is_ok()
            && matches!(stream.read(&mut buf).await, Ok(n) if n > 0 && buf.starts_with(b"HTTP/1.1 200"))
        {
            still += 1;
        }
    }
    let mib = |v: Option<f64>| v.map_or("?".to_owned(), |m| format!("{m:.1}"));
    println!("scenario Connections  clients {}", o.clients);
    println!("opened {} in {:.2}s  failed {failed}  answering after 2 s: {still}", open.len(), opened_in.as_secs_f64());
    println!("gateway RSS MiB  before {}  with all open {}", mib(rss_before), mib(rss_open));
    Ok(failed == 0 && still == open.len())
}

/// Latencies (µs) of the operations that succeeded, and the others' errors by code.
type ClientOutcomes = (Vec<u32>, BTreeMap<String, u64>);

/// Closed-loop qr-pay for `duration`: sorted latencies (µs) and errors by code.
async fn closed_loop(runner: &Arc<Runner>, clients: usize, duration: Duration) -> Result<ClientOutcomes> {
    let deadline = Instant::now() + duration;
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let runner = runner.clone();
        tasks.push(tokio::spawn(async move {
            let mut outcomes = ClientOutcomes::default();
            while Instant::now() < deadline {
                let t = Instant::now();
                record(&mut outcomes, runner.op().await, t);
            }
            outcomes
        }));
    }
    gather(tasks).await
}

/// Counts one operation: its latency from `since` if it succeeded, else its error code.
fn record((latencies, errors): &mut ClientOutcomes, outcome: Outcome, since: Instant) {
    match outcome {
        Ok(()) => latencies.push(since.elapsed().as_micros().min(u128::from(u32::MAX)) as u32),
        Err(code) => *errors.entry(code).or_default() += 1,
    }
}

/// Every client's latencies (sorted, µs) and errors by code, together.
async fn gather(tasks: Vec<tokio::task::JoinHandle<ClientOutcomes>>) -> Result<ClientOutcomes> {
    let (mut lat, mut errors) = (Vec::new(), BTreeMap::new());
    for t in tasks {
        let (l, e) = t.await?;
        lat.extend(l);
        for (k, v) in e {
            *errors.entry(k).or_default() += v;
        }
    }
    lat.sort_unstable();
    Ok((lat, errors))
}

/// Open loop: request i is due at start + i/rate whatever the server does, and its latency
/// counts from then. As in wrk2, each of `clients` clients sends its share of the
/// schedule (requests i ≡ k mod clients) one after another, so at most `clients` requests
/// are in flight, each on a kept-alive connection: a request the server keeps waiting
/// delays that client's next ones, and their latencies count that wait. A task spawned
/// per request instead cost the client more CPU than the requests did at 10,000/s, and
/// its bursts of new connections showed as the server's latency.
/// Sorted latencies (µs) and errors by code.
async fn open_loop(runner: &Arc<Runner>, clients: usize, duration: Duration, rate: f64) -> Result<ClientOutcomes> {
    let interval = Duration::from_secs_f64(1.0 / rate.max(0.001));
    let clients = clients.max(1);
    let started = Instant::now();
    let end = started + duration;
    let mut tasks = Vec::with_capacity(clients);
    for first in 0..clients {
        let runner = runner.clone();
        tasks.push(tokio::spawn(async move {
            let mut outcomes = ClientOutcomes::default();
            for i in (first..).step_by(clients) {
                let due = started + interval.mul_f64(i as f64);
                if due >= end {
                    break;
                }
                tokio::time::sleep_until(due.into()).await;
                record(&mut outcomes, runner.op().await, due);
            }
            outcomes
        }));
    }
    gather(tasks).await
}

/// The `p` quantile of sorted latencies, in µs.
fn percentile_us(sorted: &[u32], p: f64) -> u32 {
    let i = ((sorted.len() as f64 * p).ceil() as usize).saturating_sub(1).min(sorted.len().saturating_sub(1));
    sorted.get(i).copied().unwrap_or(0)
}

fn p99_ms(lat: &[u32]) -> f64 {
    f64::from(percentile_us(lat, 0.99)) / 1000.0
}

async fn password_flood(store: Store, runner: Arc<Runner>, o: Options) -> Result<bool> {
    let half = o.duration / 2;
    let (calm, calm_errors) = closed_loop(&runner, o.clients, half).await?;
    // The flood: wrong log-in passwords for a real phone number, open loop at --rate.
    let rate = o.rate.unwrap_or(400.0);
    let flood_answers = Arc::new(Mutex::new(BTreeMap::<String, u64>::new()));
    let flood = {
        let (runner, answers) = (runner.clone(), flood_answers.clone());
        tokio::spawn(async move {
            let interval = Duration::from_secs_f64(1.0 / rate.max(0.001));
            let (start, mut i) = (Instant::now(), 0u32);
            let mut tasks = Vec::new();
            while start.elapsed() < half {
                tokio::time::sleep_until((start + interval * i).into()).await;
                i += 1;
                let (runner, answers) = (runner.clone(), answers.clone());
                tasks.push(tokio::spawn(async move {
                    // A registered phone, so every attempt costs a real Argon2 verification.
                    let phone = &runner.fixture.wallets[i as usize % runner.fixture.wallets.len()].phone;
                    let body = serde_json::json!({"phone": phone, "password": "not the password"});
                    let code =
                        match runner.http.post(format!("{}/wallet/v1/sessions", runner.url)).json(&body).send().await {
                            Ok(r) => read(r).await.err().unwrap_or_else(|| "OK".into()),
                            Err(_) => "NETWORK".into(),
                        };
                    *answers.lock().await.entry(code).or_default() += 1;
                }));
            }
            for t in tasks {
                let _ = t.await;
            }
        })
    };
    let (flooded, flooded_errors) = closed_loop(&runner, o.clients, half).await?;
    let _ = flood.await;
    let answers = flood_answers.lock().await.clone();
    let (p_calm, p_flooded) = (p99_ms(&calm), p99_ms(&flooded));
    println!(
        "scenario PasswordFlood  engine {}  clients {}  flood {rate}/s wrong log-ins",
        store.engine().as_str(),
        o.clients
    );
    println!(
        "qr-pay alone:        {:.1}/s  p99 {p_calm:.2} ms  errors {calm_errors:?}",
        calm.len() as f64 / half.as_secs_f64()
    );
    println!(
        "qr-pay under flood:  {:.1}/s  p99 {p_flooded:.2} ms  errors {flooded_errors:?}",
        flooded.len() as f64 / half.as_secs_f64()
    );
    println!("p99 ratio flooded / alone: {:.2} (target < 3)", p_flooded / p_calm.max(0.001));
    println!("flood answers: {answers:?}");
    let report = store.verify_ledger().await?;
    println!(
        "ledger verify: {}",
        if report.is_ok() { "OK".to_owned() } else { format!("FAILED {:?}", report.violations) }
    );
    Ok(report.is_ok())
}
