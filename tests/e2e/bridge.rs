//! The counter, whole: the real `paykit-bridge` process on emulated devices over real
//! pseudo-terminals, paying through a real gateway.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::Duration;

use base64::Engine as _;
use paykit_bridge::emulator::{PrinterEmulator, pty_pair, render_png};
use paykit_tests::{Consumer, Credentials, Gateway, decode_qr_png, unix_now, workspace_bin};
use serde_json::json;

struct Bridge {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
}

impl Bridge {
    fn start(config: &std::path::Path) -> Bridge {
        let mut child = Command::new(workspace_bin("paykit-bridge"))
            .args(["run", "--config"])
            .arg(config)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut bridge = Bridge { child, stdin, lines };
        bridge.expect("READY counter started");
        bridge
    }

    fn say(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").unwrap();
    }

    /// Waits for a line starting with `prefix`, skipping others.
    fn expect(&mut self, prefix: &str) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while std::time::Instant::now() < deadline {
            if let Ok(line) = self.lines.recv_timeout(Duration::from_millis(100))
                && line.starts_with(prefix)
            {
                return line;
            }
        }
        panic!("the bridge never said {prefix:?}");
    }

    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn field<'a>(line: &'a str, name: &str) -> &'a str {
    line.split_whitespace().find_map(|w| w.strip_prefix(&format!("{name}="))).unwrap()
}

async fn device(gw: &Gateway, c: &Consumer) -> (u32, Vec<u8>) {
    let r = gw.wallet("POST", "/wallet/v1/devices", Some(&c.token), json!({"name": "phone"})).await.json();
    let secret = base64::engine::general_purpose::STANDARD.decode(r["device_secret"].as_str().unwrap()).unwrap();
    (r["device_id"].as_str().unwrap().parse().unwrap(), secret)
}

fn config(
    gw: &Gateway,
    creds: &Credentials,
    scanner: &str,
    printer: &str,
    state: &std::path::Path,
) -> std::path::PathBuf {
    let text = format!(
        "[scanner]\nport = {scanner:?}\nbaud = 9600\nsuffix = \"cr\"\n\n[printer]\nport = {printer:?}\n\n\
         [gateway]\nurl = {:?}\nmerchant_id = {:?}\nkey_id = {:?}\napi_secret = {:?}\n\n\
         [counter]\nterminal_id = \"T01\"\nstore_name = \"茶馆 Tea House\"\nstore_address = \"1 Tea Street\"\nstate_dir = {:?}\n\
         userpaying_limit_secs = 2\n\n[[products]]\nbarcode = \"4006381333931\"\nname = \"Jasmine tea\"\nprice = \"12.30\"\n\n\
         [[products]]\nbarcode = \"96385074\"\nname = \"Cup\"\nprice = \"0.70\"\n",
        gw.url,
        creds.merchant_id,
        creds.key_id,
        creds.api_secret,
        state.display().to_string()
    );
    let path = state.join("bridge.toml");
    std::fs::create_dir_all(state).unwrap();
    std::fs::write(&path, text).unwrap();
    path
}

async fn wait_receipts(printer: &PrinterEmulator, n: usize) -> Vec<paykit_bridge::emulator::Receipt> {
    for _ in 0..100 {
        let r = printer.receipts();
        if r.len() >= n {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("only {} of {n} receipts printed", printer.receipts().len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_counter_sells_reverses_refunds_and_loses_no_receipt() {
    let gw = Gateway::start(paykit_store::Engine::Sqlite).await.unwrap();
    let creds = gw.create_merchant("茶馆 Tea House");
    let alice = gw.new_consumer("柜台").await;
    for _ in 0..3 {
        gw.top_up(&alice, "1000.00").await;
    }
    let printer = PrinterEmulator::start().unwrap();
    let (mut scanner, scanner_slave) = pty_pair().unwrap();
    let scanner_path = serialport::SerialPort::name(&scanner_slave).unwrap();
    let state = std::env::temp_dir().join(format!("paykit-counter-{}", paykit_store::ids::random_base32(8)));
    let config = config(&gw, &creds, &scanner_path, &printer.path, &state);
    let mut bridge = Bridge::start(&config);
    let scan = |scanner: &mut serialport::TTYPort, code: &str| {
        scanner.write_all(format!("{code}\r").as_bytes()).unwrap();
    };

    // A sale paid with a scanned payment code, and its receipt.
    let (number, secret) = device(&gw, &alice).await;
    bridge.say("12.30");
    bridge.expect("READY scan");
    scan(&mut scanner, &paykit_core::payment_code::generate(number, &secret, unix_now()));
    let paid = bridge.expect("SALE ");
    assert!(paid.starts_with("SALE PAID"), "{paid}");
    let (order_id, out_trade_no) = (field(&paid, "order").to_owned(), field(&paid, "out_trade_no").to_owned());
    assert_eq!(out_trade_no, "T01-00000001");
    let receipts = wait_receipts(&printer, 1).await;
    let text = receipts[0].text();
    for expected in [
        "茶馆 Tea House",
        "销售单 SALE",
        "金额 Amount: ¥12.30",
        &format!("订单 Order: {out_trade_no}"),
        "时间 Time: 20",
        "方式 Method",
    ] {
        assert!(text.contains(expected), "{expected:?} missing from:\n{text}");
    }
    assert_eq!(
        decode_qr_png(&render_png(&receipts[0])),
        format!("PAYKIT-ORDER:{order_id}"),
        "the receipt's QR decodes"
    );
    assert_eq!(gw.balance(&alice).await, "2987.70");

    // A large payment the consumer never confirms: reversed, and nothing printed.
    let (number2, secret2) = device(&gw, &alice).await;
    bridge.say("1500.00");
    bridge.expect("READY scan");
    scan(&mut scanner, &paykit_core::payment_code::generate(number2, &secret2, unix_now()));
    bridge.expect("WAITING");
    let reversed = bridge.expect("SALE ");
    assert!(reversed.starts_with("SALE REVERSED"), "{reversed}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(printer.receipts().len(), 1, "no receipt for a reversed sale");
    assert_eq!(gw.balance(&alice).await, "2987.70");

    // A refund at the counter, started by scanning the QR on the receipt.
    bridge.say("refund");
    bridge.expect("READY scan the QR");
    scan(&mut scanner, &format!("PAYKIT-ORDER:{order_id}"));
    let refund = bridge.expect("REFUND ");
    assert!(refund.contains("amount=12.30") && refund.contains("status=SUCCESS"), "{refund}");
    let receipts = wait_receipts(&printer, 2).await;
    assert!(receipts[1].text().contains("退款单 REFUND"), "{}", receipts[1].text());
    assert_eq!(gw.balance(&alice).await, "3000.00");

    // QR mode: the counter prints a dynamic QR, the customer scans and pays it, and the
    // sale receipt follows.
    bridge.say("qr 3.00");
    let qr_line = bridge.expect("QR printed");
    let receipts = wait_receipts(&printer, 3).await;
    let code_url = decode_qr_png(&render_png(&receipts[2]));
    assert_eq!(code_url, field(&qr_line, "code_url"), "the printed QR carries the order's code_url");
    let preview = gw.wallet("POST", "/wallet/v1/scans", Some(&alice.token), json!({"code_url": code_url})).await.json();
    let paid = gw
        .wallet(
            "POST",
            "/wallet/v1/payments",
            Some(&alice.token),
            json!({"order_id": preview["order_id"], "funding": "balance", "pay_password": alice.pay_password}),
        )
        .await;
    assert_eq!(paid.json()["status"], "SUCCESS");
    assert!(bridge.expect("SALE ").starts_with("SALE PAID"));
    wait_receipts(&printer, 4).await;

    // An item sale: product barcodes add up, then the payment code pays the total.
    bridge.say("sale");
    bridge.expect("READY items");
    scan(&mut scanner, "4006381333931");
    bridge.expect("ITEM Jasmine tea 12.30");
    scan(&mut scanner, "96385074");
    bridge.expect("ITEM Cup 0.70");
    scan(&mut scanner, "4006381333932");
    let (number5, secret5) = device(&gw, &alice).await;
    scan(&mut scanner, &paykit_core::payment_code::generate(number5, &secret5, unix_now()));
    let items_sale = bridge.expect("SALE ");
    assert!(items_sale.contains("amount=13.00"), "{items_sale}");
    let receipts = wait_receipts(&printer, 5).await;
    assert!(receipts[4].text().contains("Jasmine tea  ¥12.30") && receipts[4].text().contains("Cup  ¥0.70"));

    // The console's print button: a receipt asked for through the gateway prints once.
    let qr_order_id = preview["order_id"].as_str().unwrap().to_owned();
    let asked = gw.signed(&creds, "POST", &format!("/v1/orders/{qr_order_id}/print"), "").await;
    assert_eq!(asked.status, 202, "{}", asked.body);
    let printed = bridge.expect("PRINT ");
    assert!(printed.contains(&qr_order_id), "{printed}");
    let receipts = wait_receipts(&printer, 6).await;
    assert!(receipts[5].text().contains("金额 Amount: ¥3.00"), "{}", receipts[5].text());
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(printer.receipts().len(), 6, "printed once, not at every poll");
    let unpaid = gw.create_order(&creds, "never-paid", "1.00").await;
    let refused =
        gw.signed(&creds, "POST", &format!("/v1/orders/{}/print", unpaid["order_id"].as_str().unwrap()), "").await;
    assert_eq!((refused.status, refused.code().as_str()), (409, "ORDER_STATUS_INVALID"));
    let printed_before_paper_out = printer.receipts().len();

    // Paper runs out; the bridge is killed with a receipt queued; after a restart and
    // fresh paper the receipt prints exactly once.
    printer.set_paper(false);
    let (number3, secret3) = device(&gw, &alice).await;
    bridge.say("5.00");
    bridge.expect("READY scan");
    scan(&mut scanner, &paykit_core::payment_code::generate(number3, &secret3, unix_now()));
    let queued_sale = bridge.expect("SALE PAID");
    let queued_no = field(&queued_sale, "out_trade_no").to_owned();
    tokio::time::sleep(Duration::from_millis(500)).await;
    bridge.kill();
    assert_eq!(std::fs::read_dir(state.join("spool")).unwrap().count(), 1, "the receipt is queued on disk");
    let bridge = Bridge::start(&config);
    printer.set_paper(true);
    wait_receipts(&printer, printed_before_paper_out + 1).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let copies = printer.receipts().iter().filter(|r| r.text().contains(&queued_no)).count();
    assert_eq!(copies, 1, "printed once after the restart");
    assert_eq!(printer.receipts().len(), printed_before_paper_out + 1);
    assert_eq!(queued_no, "T01-00000005");
    // The order sequence survived the restart: the next sale is number 6.
    let mut bridge = bridge;
    let (number4, secret4) = device(&gw, &alice).await;
    bridge.say("2.00");
    bridge.expect("READY scan");
    scanner
        .write_all(format!("{}\r", paykit_core::payment_code::generate(number4, &secret4, unix_now())).as_bytes())
        .unwrap();
    let next = bridge.expect("SALE PAID");
    assert_eq!(field(&next, "out_trade_no"), "T01-00000006");
    bridge.kill();
    drop(scanner_slave);
    gw.assert_ledger_verifies();
    let _ = std::fs::remove_dir_all(state);
}
