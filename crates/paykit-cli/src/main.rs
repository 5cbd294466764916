//! `paykit`: the command line over the gateway and the store. Argument parsing, output
//! formatting and exit codes live here; everything else is in the library crates.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod bench;
mod dev_cert;
mod proc_cpu;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use paykit_core::time::Timestamp;
use paykit_gateway::clock::{Clock, SystemClock};
use paykit_gateway::server::{BoundServer, TlsFiles, shutdown_signal};
use paykit_gateway::{AppState, GatewayConfig, Mode};
use paykit_store::{Store, StoreConfig};

#[derive(Parser)]
#[command(name = "paykit", version, about = "paykit: a merchant point-of-sale and payment-gateway kit")]
struct Cli {
    /// TOML config file (see README). Flags and environment override it.
    #[arg(long, global = true, env = "PAYKIT_CONFIG")]
    config: Option<PathBuf>,
    /// Database: sqlite://PATH (default sqlite://data/paykit.db) or postgres://…
    #[arg(long, global = true, env = "DATABASE_URL")]
    database_url: Option<String>,
    /// Log format.
    #[arg(long, global = true, env = "PAYKIT_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway (applies migrations first).
    Serve(ServeArgs),
    /// Apply database migrations and exit.
    Migrate,
    /// Onboard merchants and manage their API keys.
    #[command(subcommand)]
    Merchant(MerchantCommand),
    /// Onboard billers (utilities that post bills).
    #[command(subcommand)]
    Biller(BillerCommand),
    /// Ledger audits.
    #[command(subcommand)]
    Ledger(LedgerCommand),
    /// Operator accounts for the ops API (/ops/v1).
    #[command(subcommand)]
    Operator(OperatorCommand),
    /// Operator work: escalated refund requests.
    #[command(subcommand)]
    Ops(OpsCommand),
    /// Callback notifications.
    #[command(subcommand)]
    Notify(NotifyCommand),
    /// Sandbox-only tools.
    #[command(subcommand)]
    Sandbox(SandboxCommand),
    /// Load-test a gateway over real HTTP and print throughput and latency percentiles.
    /// Without --url it starts `paykit serve` on the database itself.
    Bench {
        /// The gateway to drive (its database must be --database-url / DATABASE_URL).
        #[arg(long)]
        url: Option<String>,
        #[arg(long, value_enum, default_value = "qr-pay")]
        scenario: bench::Scenario,
        /// Concurrent clients (closed loop), or the clients that share the offered rate
        /// (open loop; a client sends its next request once its last one is answered).
        #[arg(long, default_value_t = 16)]
        clients: usize,
        /// How long to run, e.g. 10s, 2m.
        #[arg(long, default_value = "10s")]
        duration: String,
        /// Run the same load this long first, unmeasured (connections, prepared statements
        /// and caches warm up), e.g. 10s. Its operations and errors are printed apart.
        #[arg(long)]
        warmup: Option<String>,
        /// Open loop: offered requests per second.
        #[arg(long)]
        rate: Option<f64>,
        /// Merchants to spread payments over (1 is the hot-account case).
        #[arg(long, default_value_t = 1)]
        merchants: usize,
        #[arg(long, default_value_t = 64)]
        wallets: usize,
        /// Callbacks scenario: the backlog of events to deliver.
        #[arg(long, default_value_t = 20_000)]
        events: usize,
        /// Start the gateway with group commit on or off (default: on).
        #[arg(long, value_parser = ["on", "off"])]
        group_commit: Option<String>,
    },
    /// Write a local CA and a server certificate for HTTPS on this machine.
    DevCert {
        /// Folder to write ca.pem, ca-key.pem, server.pem and server-key.pem into.
        #[arg(long)]
        out: PathBuf,
        /// Extra host names or IP addresses for the server certificate.
        #[arg(long = "host")]
        hosts: Vec<String>,
    },
}

#[derive(Args)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "PAYKIT_LISTEN")]
    listen: Option<std::net::SocketAddr>,
    /// sandbox (default) or production.
    #[arg(long, env = "PAYKIT_MODE")]
    mode: Option<Mode>,
    /// Serve HTTPS with this PEM certificate chain (needs --tls-key).
    #[arg(long, env = "PAYKIT_TLS_CERT")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, env = "PAYKIT_TLS_KEY")]
    tls_key: Option<PathBuf>,
    /// URL clients reach this gateway at (for code_url); default http(s)://LISTEN.
    #[arg(long, env = "PAYKIT_PUBLIC_URL")]
    public_url: Option<String>,
}

#[derive(Subcommand)]
enum MerchantCommand {
    /// Create a merchant. Prints its id, key id and API secret (shown only this once).
    Create {
        #[arg(long)]
        name: String,
        /// Where payment callbacks are sent.
        #[arg(long)]
        notify_url: Option<String>,
        /// Print {"merchant_id", "key_id", "api_secret"} as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Issue a new API key; the merchant keeps at most two active (the oldest is revoked).
    RotateKey {
        #[arg(long)]
        merchant_id: String,
        #[arg(long)]
        json: bool,
    },
    /// Add a cashier-console user (/console) to a merchant. Prints the password when it
    /// is generated (shown only this once).
    AddUser {
        #[arg(long)]
        merchant_id: String,
        /// 3 to 32 characters of letters, digits, '.', '_' and '-'; unique across merchants.
        #[arg(long)]
        username: String,
        /// Read the password (8 to 64 characters) from the first line of standard input
        /// instead of generating one.
        #[arg(long)]
        password_stdin: bool,
        /// Print {"console_user_id", "username", "password"} as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Revoke one API key at once.
    RevokeKey {
        #[arg(long)]
        merchant_id: String,
        #[arg(long)]
        key_id: String,
    },
}

#[derive(Subcommand)]
enum BillerCommand {
    /// Create a biller. Prints its id, key id and API secret (shown only this once).
    Create {
        #[arg(long)]
        name: String,
        /// water, electricity, gas, telecom, heating, property, tv or internet
        #[arg(long, value_parser = ["water", "electricity", "gas", "telecom", "heating", "property", "tv", "internet"])]
        category: String,
        /// Where bill.paid callbacks are sent.
        #[arg(long)]
        notify_url: Option<String>,
        /// Accept partial payments of a bill.
        #[arg(long)]
        allow_partial: bool,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum OperatorCommand {
    /// Create an operator and print its bearer token (shown only this once).
    Create {
        #[arg(long)]
        name: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum OpsCommand {
    /// Consumers' refund requests.
    #[command(subcommand)]
    RefundRequests(RefundRequestsCommand),
}

#[derive(Subcommand)]
enum RefundRequestsCommand {
    /// List requests (escalated ones by default).
    List {
        #[arg(long, default_value = "ESCALATED")]
        status: String,
    },
    /// Decide an escalated request: force the refund, or uphold the merchant's refusal.
    Decide {
        #[arg(long)]
        id: String,
        #[arg(long, value_parser = ["force_refund", "uphold"])]
        decision: String,
        #[arg(long)]
        note: Option<String>,
        /// Who decided (recorded in the request's history).
        #[arg(long, default_value = "cli")]
        operator: String,
    },
}

#[derive(Subcommand)]
enum NotifyCommand {
    /// Send a delivered or dead event again.
    Resend {
        #[arg(long)]
        merchant_id: String,
        #[arg(long)]
        event_id: String,
    },
}

#[derive(Subcommand)]
enum SandboxCommand {
    /// Move the sandbox clock forward for every gateway on this database (e.g. 6h, 30m, 2d).
    AdvanceClock { by: String },
}

#[derive(Subcommand)]
enum LedgerCommand {
    /// Check the ledger's invariants; exit 0 when all hold, 1 with a report otherwise.
    Verify {
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PAYKIT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn load_config(cli: &Cli) -> Result<GatewayConfig> {
    let mut config = match &cli.config {
        Some(path) => GatewayConfig::from_toml_file(path)?,
        None => GatewayConfig::default(),
    };
    if let Some(url) = &cli.database_url {
        config.database_url = url.clone();
    }
    if let Ok(mode) = std::env::var("PAYKIT_MODE") {
        config.mode = mode.parse().map_err(|e: String| anyhow::anyhow!("PAYKIT_MODE: {e}"))?;
    }
    Ok(config)
}

async fn open_store(config: &GatewayConfig) -> Result<Store> {
    let store_config = StoreConfig { max_connections: config.database_max_connections, ..StoreConfig::default() };
    let store = Store::connect(&config.database_url, &store_config)
        .await
        .with_context(|| format!("cannot open database {}", redact_url(&config.database_url)))?;
    store.migrate().await.context("cannot apply migrations")?;
    Ok(store)
}

/// Hides a password in a database URL before it is printed.
fn redact_url(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

fn now() -> Timestamp {
    SystemClock::new().now()
}

async fn run(cli: Cli) -> Result<ExitCode> {
    let mut config = load_config(&cli)?;
    match cli.command {
        Command::Serve(args) => {
            if let Some(listen) = args.listen {
                config.listen = listen;
            }
            if let Some(mode) = args.mode {
                config.mode = mode;
            }
            if args.tls_cert.is_some() || args.tls_key.is_some() {
                config.tls_cert = args.tls_cert;
                config.tls_key = args.tls_key;
            }
            if args.public_url.is_some() {
                config.public_url = args.public_url;
            }
            serve(config).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Migrate => {
            open_store(&config).await?;
            println!("migrations applied to {}", redact_url(&config.database_url));
            Ok(ExitCode::SUCCESS)
        }
        Command::Merchant(cmd) => merchant(cmd, &config).await,
        Command::Ledger(LedgerCommand::Verify { json }) => verify(&config, json).await,
        Command::Biller(BillerCommand::Create { name, category, notify_url, allow_partial, json }) => {
            let name = name.trim();
            if name.is_empty() || name.chars().count() > 128 {
                bail!("--name must be 1 to 128 characters");
            }
            if notify_url.as_deref().is_some_and(|u| !(u.starts_with("http://") || u.starts_with("https://"))) {
                bail!("--notify-url must be an http:// or https:// URL");
            }
            let store = open_store(&config).await?;
            let (biller, key) =
                store.create_biller(name, &category, notify_url.as_deref(), allow_partial, now()).await?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({ "biller_id": biller.id, "key_id": key.key_id, "api_secret": key.api_secret })
                );
            } else {
                println!("biller_id    {}\nkey_id       {}\napi_secret   {}", biller.id, key.key_id, key.api_secret);
                eprintln!(
                    "The API secret is shown only now. Sign requests with biller_id=\"…\" in place of merchant_id."
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Operator(OperatorCommand::Create { name, json }) => {
            let store = open_store(&config).await?;
            let token = paykit_store::ids::random_base32(40);
            let id = store.create_operator(&name, &paykit_gateway::wallet_auth::token_digest(&token), now()).await?;
            if json {
                println!("{}", serde_json::json!({ "operator_id": id, "token": token }));
            } else {
                println!("operator_id  {id}\ntoken        {token}");
                eprintln!("The token is shown only now. Send it as Authorization: Bearer TOKEN to /ops/v1.");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Ops(OpsCommand::RefundRequests(cmd)) => ops_refund_requests(cmd, &config).await,
        Command::Notify(NotifyCommand::Resend { merchant_id, event_id }) => {
            let store = open_store(&config).await?;
            if !store.resend_event(&merchant_id, &event_id, sandbox_now(&store, &config).await?).await? {
                bail!("merchant {merchant_id} has no event {event_id} with a notify_url");
            }
            println!("{event_id} queued for delivery");
            Ok(ExitCode::SUCCESS)
        }
        Command::Sandbox(SandboxCommand::AdvanceClock { by }) => {
            if config.mode != Mode::Sandbox {
                bail!("the clock only moves in sandbox mode (this configuration is {})", config.mode.as_str());
            }
            let secs = paykit_gateway::routes::refunds::parse_duration_secs(&by)
                .ok_or_else(|| anyhow::anyhow!("{by:?} is not a duration such as 90s, 15m, 6h or 2d"))?;
            let store = open_store(&config).await?;
            let offset = store.advance_sandbox_clock(secs).await?;
            let clock_now = Timestamp::from_unix_micros(now().unix_micros() + offset);
            println!("sandbox clock advanced by {secs} s; it now reads {clock_now} ({} s ahead)", offset / 1_000_000);
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench { url, scenario, clients, duration, warmup, rate, merchants, wallets, events, group_commit } => {
            let secs = paykit_gateway::routes::refunds::parse_duration_secs(&duration)
                .ok_or_else(|| anyhow::anyhow!("--duration {duration:?} is not a duration such as 10s or 2m"))?;
            let warmup_secs = match warmup {
                None => 0,
                Some(_)
                    if matches!(
                        scenario,
                        bench::Scenario::Callbacks | bench::Scenario::Connections | bench::Scenario::PasswordFlood
                    ) =>
                {
                    bail!("--warmup applies to the request scenarios, not to {scenario:?}")
                }
                Some(w) => paykit_gateway::routes::refunds::parse_duration_secs(&w)
                    .ok_or_else(|| anyhow::anyhow!("--warmup {w:?} is not a duration above zero such as 10s"))?,
            };
            let store = open_store(&config).await?;
            let mut _gateway = None;
            let mut gateway_pid = None;
            let started_here = url.is_none();
            let group_commit = group_commit.is_none_or(|g| g == "on");
            let url = match url {
                Some(u) => u,
                None => {
                    let (child, u) = spawn_gateway(&config.database_url, group_commit)?;
                    gateway_pid = Some(child.id());
                    _gateway = Some(KillOnDrop(child));
                    u
                }
            };
            let options = bench::Options {
                url,
                scenario,
                clients,
                duration: Duration::from_secs(secs.unsigned_abs()),
                warmup: Duration::from_secs(warmup_secs.unsigned_abs()),
                rate,
                merchants,
                wallets,
                events,
                gateway_pid,
                group_commit: started_here.then_some(group_commit),
            };
            let ok = bench::run(store, options).await?;
            Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
        Command::DevCert { out, hosts } => {
            let written = dev_cert::write(&out, &hosts)?;
            for path in written {
                println!("wrote {}", path.display());
            }
            println!(
                "serve with: paykit serve --tls-cert {0}/server.pem --tls-key {0}/server-key.pem\n\
                 clients trust {0}/ca.pem",
                out.display()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn serve(config: GatewayConfig) -> Result<()> {
    let mut store = open_store(&config).await?;
    if config.group_commit {
        store = store.with_group_commit(config.group_commit_max_batch);
    }
    let tls = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => Some(TlsFiles { cert: cert.clone(), key: key.clone() }),
        (None, None) => None,
        _ => bail!("--tls-cert and --tls-key must be given together"),
    };
    let mut config = config;
    let server = BoundServer::bind(config.listen, tls).await?;
    // With `--listen …:0` the real port is only known now, and code_urls need it.
    config.listen = server.local_addr()?;
    let state = AppState::new(store.clone(), config.clone()).await?;
    let url = config.public_url();
    println!(
        "paykit gateway ({mode}) listening on {url}\n  database: {db}\n  health:   {url}/healthz\n  API docs: {url}/openapi.json\n  \
         next:     paykit merchant create --name \"My Shop\"",
        mode = config.mode.as_str(),
        db = redact_url(&config.database_url),
    );
    paykit_gateway::spawn_background_tasks(state.clone())?;
    server.serve(state, shutdown_signal(), Duration::from_secs(30)).await?;
    store.close().await;
    Ok(())
}

async fn merchant(cmd: MerchantCommand, config: &GatewayConfig) -> Result<ExitCode> {
    let store = open_store(config).await?;
    match cmd {
        MerchantCommand::Create { name, notify_url, json } => {
            let name = name.trim();
            if name.is_empty() || name.chars().count() > 128 {
                bail!("--name must be 1 to 128 characters");
            }
            if let Some(url) = &notify_url
                && !(url.starts_with("http://") || url.starts_with("https://"))
            {
                bail!("--notify-url must be an http:// or https:// URL");
            }
            let (merchant, key) = store.create_merchant(name, notify_url.as_deref(), now()).await?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({ "merchant_id": merchant.id, "key_id": key.key_id, "api_secret": key.api_secret })
                );
            } else {
                println!("merchant_id  {}\nkey_id       {}\napi_secret   {}", merchant.id, key.key_id, key.api_secret);
                eprintln!("The API secret is shown only now: store it where your server can read it.");
            }
        }
        MerchantCommand::RotateKey { merchant_id, json } => {
            let Some(key) = store.rotate_merchant_key(&merchant_id, now()).await? else {
                bail!("no merchant {merchant_id}");
            };
            if json {
                println!(
                    "{}",
                    serde_json::json!({ "merchant_id": merchant_id, "key_id": key.key_id, "api_secret": key.api_secret, "revoked_key_ids": key.revoked_key_ids })
                );
            } else {
                println!("key_id       {}\napi_secret   {}", key.key_id, key.api_secret);
                for revoked in &key.revoked_key_ids {
                    println!("revoked      {revoked} (at most two keys stay active)");
                }
            }
        }
        MerchantCommand::AddUser { merchant_id, username, password_stdin, json } => {
            let username = username.trim();
            let username_ok = (3..=32).contains(&username.len())
                && username.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
            if !username_ok {
                bail!("--username must be 3 to 32 characters of letters, digits, '.', '_' and '-'");
            }
            let (password, generated) = if password_stdin {
                let mut line = String::new();
                std::io::stdin().read_line(&mut line)?;
                (line.trim_end_matches(['\r', '\n']).to_owned(), false)
            } else {
                (paykit_store::ids::random_base32(16), true)
            };
            if !(8..=64).contains(&password.chars().count()) {
                bail!("the password must be 8 to 64 characters");
            }
            if store.merchant(&merchant_id).await?.is_none() {
                bail!("no merchant {merchant_id}");
            }
            let hashing = paykit_gateway::passwords::PasswordHashing::new(1, 1);
            let hash = hashing.hash(&password).await.map_err(|e| anyhow::anyhow!(e.message))?;
            let Some(user) = store.create_console_user(&merchant_id, username, &hash, now()).await? else {
                bail!("the username {username} is taken; choose another");
            };
            let shown = generated.then_some(password.as_str());
            if json {
                println!(
                    "{}",
                    serde_json::json!({ "console_user_id": user.id, "username": user.username, "password": shown })
                );
            } else {
                println!("console_user_id  {}\nusername         {}", user.id, user.username);
                if let Some(p) = shown {
                    println!("password         {p}");
                    eprintln!("The password is shown only now. Log in at /console.");
                }
            }
        }
        MerchantCommand::RevokeKey { merchant_id, key_id } => {
            if !store.revoke_key(&merchant_id, &key_id, now()).await? {
                bail!("merchant {merchant_id} has no active key {key_id}");
            }
            println!("revoked {key_id}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A child process that does not outlive us, even on an error.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `paykit serve` on a free port against `database_url`; returns it and its URL.
fn spawn_gateway(database_url: &str, group_commit: bool) -> Result<(std::process::Child, String)> {
    use std::io::BufRead;
    // Risk rules would hold a benchmark's thousands of payments from one wallet: allow all.
    let config = std::env::temp_dir().join(format!("paykit-bench-{}.toml", std::process::id()));
    let allow = "{ threshold = 1, action = \"allow\" }";
    std::fs::write(
        &config,
        format!(
            "group_commit = {group_commit}\n[risk]\nvelocity = {allow}\ndaily_amount = {allow}\nnew_payee_amount = {allow}\nwrong_pay_passwords = {allow}\ncode_failures = {allow}\n"
        ),
    )?;
    let mut child = std::process::Command::new(std::env::current_exe()?)
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&config)
        .env("DATABASE_URL", database_url)
        .env("PAYKIT_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let stdout = child.stdout.take().ok_or_else(|| anyhow::anyhow!("no stdout"))?;
    let mut lines = std::io::BufReader::new(stdout).lines();
    let first = lines.next().ok_or_else(|| anyhow::anyhow!("the gateway did not start"))??;
    std::thread::spawn(move || for _ in lines {});
    let url = first.rsplit(' ').next().unwrap_or_default().to_owned();
    Ok((child, url))
}

/// Now on this database's clock: the wall clock plus the sandbox offset in sandbox mode.
async fn sandbox_now(store: &Store, config: &GatewayConfig) -> Result<Timestamp> {
    let offset = if config.mode == Mode::Sandbox { store.sandbox_clock_offset_us().await? } else { 0 };
    Ok(Timestamp::from_unix_micros(now().unix_micros() + offset))
}

async fn ops_refund_requests(cmd: RefundRequestsCommand, config: &GatewayConfig) -> Result<ExitCode> {
    use paykit_store::refunds::RequestAction;
    let store = open_store(config).await?;
    match cmd {
        RefundRequestsCommand::List { status } => {
            for r in store.refund_requests(None, Some(&status)).await? {
                println!("{}  {}  order {}  {}  {:?}", r.id, r.status, r.order_id, r.amount, r.reason);
                for (actor, action, note, at) in &r.steps {
                    println!("    {at}  {actor}  {action}  {}", note.as_deref().unwrap_or(""));
                }
            }
        }
        RefundRequestsCommand::Decide { id, decision, note, operator } => {
            let action = if decision == "force_refund" {
                RequestAction::OperatorForceRefund
            } else {
                RequestAction::OperatorUphold
            };
            let now = sandbox_now(&store, config).await?;
            let settle_at = now.plus_secs(config.sandbox_refund_secs);
            let r = store
                .act_on_refund_request(&id, action, &format!("operator:{operator}"), note.as_deref(), settle_at, now)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            println!("{}  {}  refund {}", r.id, r.status, r.refund_id.as_deref().unwrap_or("-"));
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn verify(config: &GatewayConfig, json: bool) -> Result<ExitCode> {
    let store = open_store(config).await?;
    let report = store.verify_ledger().await?;
    if json {
        let violations: Vec<String> = report.violations.iter().map(ToString::to_string).collect();
        println!(
            "{}",
            serde_json::json!({
                "ok": report.is_ok(), "accounts": report.accounts, "entries": report.entries,
                "postings": report.postings, "violations": violations,
            })
        );
    } else {
        println!("ledger: {} accounts, {} entries, {} postings", report.accounts, report.entries, report.postings);
        for v in &report.violations {
            println!("VIOLATION {v}");
        }
        println!("{}", if report.is_ok() { "OK: every invariant holds" } else { "FAILED" });
    }
    Ok(if report.is_ok() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

#[cfg(test)]
mod tests {
    #[test]
    fn database_passwords_are_not_printed() {
        assert_eq!(super::redact_url("postgres://u:secret@h/db"), "postgres://u:***@h/db");
        assert_eq!(super::redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(super::redact_url("sqlite://data/x.db"), "sqlite://data/x.db");
    }
}
