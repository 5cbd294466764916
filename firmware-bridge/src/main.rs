//! `paykit-bridge run --config bridge.toml` at the counter; `paykit-bridge emulate` to
//! create emulated devices on a laptop.

use std::io::BufRead;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use paykit_bridge::config::Config;
use paykit_bridge::counter::Counter;
use paykit_bridge::emulator::{PrinterEmulator, render_png};
use paykit_bridge::printer::{PrintError, Printer};
use serialport::SerialPort;

#[derive(Parser)]
#[command(name = "paykit-bridge", version, about = "Counter bridge: serial scanner + ESC/POS printer + paykit")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the counter with the devices and gateway in the config file.
    Run {
        #[arg(long)]
        config: PathBuf,
    },
    /// Create an emulated printer and scanner on pseudo-terminals and print their paths.
    /// Lines typed here go to the scanner (a payment code, a barcode); `paper out`,
    /// `paper in`, `cover open`, `cover close` drive the printer; `receipts` shows what
    /// it printed and writes receipt-N.png files.
    Emulate,
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run { config } => run(config),
        Command::Emulate => emulate(),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(2);
    }
}

fn run(config_path: PathBuf) -> anyhow::Result<()> {
    let config = Config::load(&config_path)?;
    let secret = config.api_secret()?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let paykit = paykit_sdk::Client::new(
            &config.gateway.url,
            paykit_sdk::Credentials::merchant(&config.gateway.merchant_id, &config.gateway.key_id, secret),
        )?;
        std::fs::create_dir_all(&config.counter.state_dir)?;

        // The printer thread owns the port and the queue: it prints jobs as they come and
        // retries what is queued once a second (paper back, cover closed, bridge restarted).
        let (print_tx, print_rx) = std::sync::mpsc::channel::<Vec<u8>>();
        let mut printer =
            Printer::new(&config.printer.port, config.printer.baud, config.counter.state_dir.join("spool"))?;
        std::thread::spawn(move || {
            loop {
                let job = print_rx.recv_timeout(Duration::from_secs(1));
                let result = match job {
                    Ok(bytes) => printer.print(bytes),
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) if printer.queued() > 0 => printer.drain(),
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => Ok(0),
                    Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
                };
                match result {
                    Ok(0) => {}
                    Ok(n) => eprintln!("printer: printed {n} receipt(s)"),
                    Err(PrintError::NotReady(s)) => {
                        eprintln!("printer: not ready {s:?}; {} receipt(s) queued", printer.queued())
                    }
                    Err(e) => eprintln!("printer: {e}; {} receipt(s) queued", printer.queued()),
                }
            }
        });

        let (scan_tx, mut scan_rx) = tokio::sync::mpsc::unbounded_channel();
        let s = config.scanner.clone();
        std::thread::spawn(move || paykit_bridge::scanner::run(s.port, s.baud, s.framing, scan_tx));
        let (line_tx, mut line_rx) = tokio::sync::mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in std::io::stdin().lock().lines().map_while(Result::ok) {
                if line_tx.send(line).is_err() {
                    return;
                }
            }
        });
        let mut counter = Counter::new(config, paykit, print_tx);
        println!("READY counter started");
        // The console's print button reaches the printer through the gateway: poll for it.
        let mut print_poll = tokio::time::interval(Duration::from_secs(2));
        print_poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = print_poll.tick() => counter.print_requested().await,
                Some(line) = line_rx.recv() => {
                    if line.trim() == "quit" { return Ok(()); }
                    counter.command(line.trim()).await;
                }
                Some(code) = scan_rx.recv() => counter.scanned(&code).await,
                else => return Ok(()),
            }
        }
    })
}

fn emulate() -> anyhow::Result<()> {
    let printer = PrinterEmulator::start()?;
    let (mut scanner_master, scanner_slave) = paykit_bridge::emulator::pty_pair()?;
    println!("printer: {}", printer.path);
    println!("scanner: {}", scanner_slave.name().unwrap_or_default());
    println!("Type a code to scan it; or: paper out | paper in | cover open | cover close | receipts | quit");
    for line in std::io::stdin().lock().lines().map_while(Result::ok) {
        match line.trim() {
            "quit" => break,
            "paper out" => printer.set_paper(false),
            "paper in" => printer.set_paper(true),
            "cover open" => printer.set_cover_open(true),
            "cover close" => printer.set_cover_open(false),
            "receipts" => {
                for (i, r) in printer.receipts().iter().enumerate() {
                    let file = format!("receipt-{}.png", i + 1);
                    std::fs::write(&file, render_png(r))?;
                    println!("--- receipt {} ({file})\n{}", i + 1, r.text());
                }
            }
            code if !code.is_empty() => paykit_bridge::emulator::type_scan(&mut scanner_master, code, b"\r")?,
            _ => {}
        }
    }
    drop(scanner_slave);
    Ok(())
}
