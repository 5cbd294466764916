//! A shop counter with no hardware (see README.md).

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use paykit_bridge::emulator::{PrinterEmulator, pty_pair, render_png};
use paykit_sdk::sandbox::Wallet;
use serialport::SerialPort;

fn env(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|_| format!("set {name} (see examples/counter/README.md)"))
}

fn random_u32() -> u32 {
    let mut b = [0u8; 4];
    getrandom::fill(&mut b).expect("the operating system's random generator is available");
    u32::from_le_bytes(b)
}

fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

#[tokio::main]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("error: {e}");
        std::process::exit(2);
    }
}

async fn run() -> Result<(), String> {
    let (merchant, key, secret) = (env("PAYKIT_MERCHANT_ID")?, env("PAYKIT_KEY_ID")?, env("PAYKIT_API_SECRET")?);
    let gateway = std::env::var("PAYKIT_URL").unwrap_or_else(|_| "http://127.0.0.1:8080".into());
    let out_dir = std::path::PathBuf::from(std::env::var("COUNTER_OUT").unwrap_or_else(|_| ".".into()));
    let bridge_bin = std::env::current_exe().map_err(|e| e.to_string())?.with_file_name("paykit-bridge");
    if !bridge_bin.exists() {
        return Err(format!("{} is missing: cargo build -p paykit-bridge", bridge_bin.display()));
    }

    // The customer: a sandbox wallet with a phone that shows payment codes.
    let n = random_u32() % 100_000_000;
    let first17 = format!("44030419900307{:03}", n % 1000);
    let weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    let sum: u32 = first17.bytes().zip(weights).map(|(c, w)| u32::from(c - b'0') * w).sum();
    let id_number = format!("{first17}{}", b"10X98765432"[(sum % 11) as usize] as char);
    let wallet =
        Wallet::sign_up(&gateway, &format!("139{n:08}"), "柜台顾客", &id_number).await.map_err(|e| e.to_string())?;
    wallet.top_up("100.00").await.map_err(|e| e.to_string())?;

    // The devices, emulated, and the bridge.
    let printer = PrinterEmulator::start().map_err(|e| e.to_string())?;
    let (mut scanner, scanner_slave) = pty_pair().map_err(|e| e.to_string())?;
    let state = std::env::temp_dir().join(format!("paykit-counter-example-{}", random_u32()));
    std::fs::create_dir_all(&state).map_err(|e| e.to_string())?;
    let config = state.join("bridge.toml");
    std::fs::write(
        &config,
        format!(
            "[scanner]\nport = {:?}\nsuffix = \"cr\"\n\n[printer]\nport = {:?}\n\n[gateway]\nurl = {gateway:?}\nmerchant_id = {merchant:?}\n\
             key_id = {key:?}\napi_secret = {secret:?}\n\n[counter]\nterminal_id = \"DEMO\"\nstore_name = \"茶馆 Tea House\"\n\
             store_address = \"1 Tea Street\"\nstate_dir = {:?}\n",
            scanner_slave.name().unwrap_or_default(),
            printer.path,
            state.display().to_string()
        ),
    )
    .map_err(|e| e.to_string())?;
    let mut bridge = Command::new(&bridge_bin)
        .args(["run", "--config"])
        .arg(&config)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    let mut to_bridge = bridge.stdin.take().ok_or("no stdin")?;
    let mut from_bridge = BufReader::new(bridge.stdout.take().ok_or("no stdout")?).lines();
    let mut expect = |prefix: &str| -> Result<String, String> {
        for line in from_bridge.by_ref().map_while(Result::ok) {
            println!("bridge: {line}");
            if line.starts_with(prefix) {
                return Ok(line);
            }
        }
        Err(format!("the bridge stopped before {prefix:?}"))
    };
    expect("READY counter started")?;

    let mut paid_orders = Vec::new();
    for amount in ["12.30", "8.80"] {
        // The customer's phone registers a device and shows a payment code.
        let device = phone_device(&wallet).await?;
        let code = paykit_core::payment_code::generate(device.0, &device.1, unix_now());
        writeln!(to_bridge, "{amount}").map_err(|e| e.to_string())?;
        expect("READY scan")?;
        scanner.write_all(format!("{code}\r").as_bytes()).map_err(|e| e.to_string())?;
        let line = expect("SALE ")?;
        let order = line.split_whitespace().find_map(|w| w.strip_prefix("order=")).unwrap_or_default().to_owned();
        paid_orders.push(order);
    }
    writeln!(to_bridge, "refund").map_err(|e| e.to_string())?;
    expect("READY scan the QR")?;
    scanner.write_all(format!("PAYKIT-ORDER:{}\r", paid_orders[0]).as_bytes()).map_err(|e| e.to_string())?;
    expect("REFUND ")?;

    // Wait for the three receipts, show them, and save them as pictures.
    let mut receipts = Vec::new();
    for _ in 0..100 {
        receipts = printer.receipts();
        if receipts.len() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for (i, r) in receipts.iter().enumerate() {
        let file = out_dir.join(format!("receipt-{}.png", i + 1));
        std::fs::write(&file, render_png(r)).map_err(|e| e.to_string())?;
        println!("--- receipt {} ({})\n{}", i + 1, file.display(), r.text());
    }
    let _ = bridge.kill();
    let _ = bridge.wait();
    drop(scanner_slave);
    let balance = wallet.balance().await.map_err(|e| e.to_string())?;
    println!("{}", serde_json::json!({ "receipts": receipts.len(), "orders": paid_orders, "wallet_balance": balance }));
    Ok(())
}

/// Registers a device on the sandbox wallet: (device number, secret).
async fn phone_device(wallet: &Wallet) -> Result<(u32, Vec<u8>), String> {
    let r = wallet.register_device("counter demo phone").await.map_err(|e| e.to_string())?;
    let secret = base64::engine::general_purpose::STANDARD
        .decode(r["device_secret"].as_str().unwrap_or_default())
        .map_err(|e| e.to_string())?;
    let number = r["device_id"].as_str().unwrap_or_default().parse().map_err(|_| "bad device id".to_owned())?;
    Ok((number, secret))
}
