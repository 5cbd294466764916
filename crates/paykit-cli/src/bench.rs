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
use paykit_store::Store;
use paykit_store::payments::BankAnswer;
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
}

#[derive(Debug, Clone)]
pub struct Options {
    pub url: String,
    pub scenario: Scenario,
    pub clients: usize,
    pub duration: Duration,
    pub rate: Option<f64>,
    pub merchants: usize,
    pub wallets: usize,
}

struct Merchant {
    id: String,
    key_id: String,
    secret: String,
}

struct Wallet {
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
async fn fixture(store: &Store, o: &Options) -> Result<Fixture> {
    let hashing = paykit_gateway::passwords::PasswordHashing::new(1, 4);
    let password = hashing.hash("bench-password").await.map_err(|e| anyhow::anyhow!("{}", e.message))?;
    let pay_password = hashing.hash("135790").await.map_err(|e| anyhow::anyhow!("{}", e.message))?;
    let t = now();
    let mut merchants = Vec::new();
    for i in 0..o.merchants {
        let (m, key) = store.create_merchant(&format!("Bench Merchant {i}"), None, t).await?;
        merchants.push(Merchant { id: m.id, key_id: key.key_id, secret: key.api_secret });
    }
    // A payment code works once per device per 30 s step: micropay needs many devices.
    let devices_each = if o.scenario == Scenario::Micropay { 200 } else { 1 };
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
        wallets.push(Wallet { token, devices });
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
    /// Payment codes are one per device per 30 s step: the next device to use.
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
        let w = self.pick(&self.fixture.wallets, n / self.fixture.merchants.len() as u64);
        match scenario_of(self) {
            Scenario::QrPay | Scenario::QrPayPassword => {
                let body = serde_json::json!({"out_trade_no": format!("B{n}-{}", rand_u32()), "amount": "0.01", "description": "bench"}).to_string();
                let order = self.signed(m, "POST", "/v1/orders", body).await?;
                let order_id = order["order_id"].as_str().unwrap_or_default();
                let pay = if scenario_of(self) == Scenario::QrPay {
                    let (device_id, secret) = &w.devices[0];
                    let ts = unix_now();
                    serde_json::json!({"order_id": order_id, "funding": "balance", "device_id": device_id, "device_ts": ts,
                        "device_proof": paykit_core::wallet::device_proof(secret, order_id, "0.01", ts)})
                } else {
                    serde_json::json!({"order_id": order_id, "funding": "balance", "pay_password": "135790"})
                };
                let paid = self.wallet(w, "/wallet/v1/payments", pay).await?;
                if paid["status"] == "SUCCESS" {
                    Ok(())
                } else {
                    Err(format!("STATUS_{}", paid["status"].as_str().unwrap_or("?")))
                }
            }
            Scenario::Micropay => {
                let all: Vec<&(String, Vec<u8>)> = self.fixture.wallets.iter().flat_map(|w| w.devices.iter()).collect();
                let i = self.next_device.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let (device_id, secret) = all[i % all.len()];
                let code = paykit_core::payment_code::generate(device_id.parse().unwrap_or(0), secret, unix_now());
                let body = serde_json::json!({"out_trade_no": format!("M{n}-{}", rand_u32()), "amount": "0.01", "auth_code": code, "description": "bench"}).to_string();
                self.signed(m, "POST", "/v1/micropay", body).await.map(|_| ())
            }
            Scenario::Refund => {
                let i = self.refund_cursor.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let paid = self.paid.get().map_or(&[][..], Vec::as_slice);
                let Some((mi, order_id)) = paid.get(i % paid.len().max(1)) else { return Err("NO_PAID_ORDERS".into()) };
                let body = serde_json::json!({"order_id": order_id, "out_refund_no": format!("R{i}-{}", rand_u32()), "amount": "0.01"}).to_string();
                self.signed(&self.fixture.merchants[*mi], "POST", "/v1/refunds", body).await.map(|_| ())
            }
        }
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
    let setup = Instant::now();
    let fixture = fixture(&store, &o).await.context("setting up merchants and wallets")?;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(o.clients.max(16))
        .timeout(Duration::from_secs(30))
        .build()?;
    let runner = Arc::new(Runner {
        http,
        url: o.url.trim_end_matches('/').to_owned(),
        fixture,
        seq: Default::default(),
        next_device: Default::default(),
        refund_cursor: Default::default(),
        paid: std::sync::OnceLock::new(),
    });
    if o.scenario == Scenario::Refund {
        // Orders to refund: paid once each, 0.01 refunded at a time (50 refunds an order).
        let mut paid = Vec::new();
        // 50 refunds an order: enough orders that the run never exhausts them.
        let orders = 600;
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

    let latencies = Arc::new(Mutex::new(Vec::<u32>::with_capacity(1 << 16)));
    let errors = Arc::new(Mutex::new(BTreeMap::<String, u64>::new()));
    let started = Instant::now();
    let deadline = started + o.duration;
    let record = |latencies: Arc<Mutex<Vec<u32>>>,
                  errors: Arc<Mutex<BTreeMap<String, u64>>>,
                  took: Duration,
                  outcome: Outcome| async move {
        match outcome {
            Ok(()) => latencies.lock().await.push(took.as_micros().min(u128::from(u32::MAX)) as u32),
            Err(code) => *errors.lock().await.entry(code).or_default() += 1,
        }
    };
    match o.rate {
        None => {
            let mut tasks = Vec::new();
            for _ in 0..o.clients {
                let (runner, latencies, errors) = (runner.clone(), latencies.clone(), errors.clone());
                tasks.push(tokio::spawn(async move {
                    while Instant::now() < deadline {
                        let t = Instant::now();
                        let outcome = runner.op().await;
                        record(latencies.clone(), errors.clone(), t.elapsed(), outcome).await;
                    }
                }));
            }
            for t in tasks {
                t.await?;
            }
        }
        Some(rate) => {
            // Open loop: request i is due at start + i/rate whatever the server does, and
            // its latency counts from then.
            let interval = Duration::from_secs_f64(1.0 / rate.max(0.001));
            let limit = Arc::new(tokio::sync::Semaphore::new(o.clients.max(1) * 64));
            let mut i = 0u32;
            let mut tasks = Vec::new();
            loop {
                let due = started + interval * i;
                if due >= deadline {
                    break;
                }
                tokio::time::sleep_until(due.into()).await;
                let permit = limit.clone().acquire_owned().await?;
                let (runner, latencies, errors) = (runner.clone(), latencies.clone(), errors.clone());
                tasks.push(tokio::spawn(async move {
                    let outcome = runner.op().await;
                    record(latencies, errors, due.elapsed(), outcome).await;
                    drop(permit);
                }));
                i += 1;
            }
            for t in tasks {
                t.await?;
            }
        }
    }
    let elapsed = started.elapsed();
    let mut lat = latencies.lock().await.clone();
    lat.sort_unstable();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p).ceil() as usize).saturating_sub(1).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    let ms = |us: u32| f64::from(us) / 1000.0;
    let errors = errors.lock().await.clone();
    let error_count: u64 = errors.values().sum();
    println!(
        "scenario {:?}  engine {}  {}  clients {}  merchants {}  wallets {}  duration {:.1}s",
        o.scenario,
        store.engine().as_str(),
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
    let report = store.verify_ledger().await?;
    println!(
        "ledger verify: {} ({} entries, {} postings)",
        if report.is_ok() { "OK".to_owned() } else { format!("FAILED {:?}", report.violations) },
        report.entries,
        report.postings
    );
    Ok(report.is_ok())
}
