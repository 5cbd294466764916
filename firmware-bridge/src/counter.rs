//! The counter loop: the cashier starts a sale at the terminal prompt, the scanner reads
//! the customer's payment code (or product barcodes), the gateway is asked through the
//! SDK, and receipts go to the printer's queue.
//!
//! Commands (one per line on standard input):
//! `12.30` or `sale 12.30` — a sale of that amount, waiting for a payment code;
//! `sale` — an item sale: scan product barcodes, then the payment code;
//! `qr 12.30` — print a dynamic QR for the customer to scan, and wait for payment;
//! `refund` — scan the QR on a customer's receipt to refund that sale in full.
//! Each outcome is printed as one line starting with `SALE`, `REFUND` or `ERROR`.

use std::path::Path;
use std::time::Duration;

use paykit_core::{Currency, Money};
use paykit_sdk::{Client, Micropay, NewOrder, NewRefund, Order};

use crate::config::Config;
use crate::escpos::{Align, Job};
use crate::scan::{ScanKind, classify};

/// Sends print jobs to the printer thread.
pub type PrintQueue = std::sync::mpsc::Sender<Vec<u8>>;

enum Mode {
    Idle,
    Sale { amount: Option<Money>, items: Vec<(String, Money)> },
    Refund,
}

pub struct Counter {
    config: Config,
    paykit: Client,
    print: PrintQueue,
    mode: Mode,
}

/// The next order number for this terminal: `T01-00000042`, from a counter kept on disk
/// (written and synced before use, so a restart never reuses a number).
fn next_out_trade_no(state_dir: &Path, terminal: &str) -> std::io::Result<String> {
    let path = state_dir.join("sequence");
    let current: u64 = std::fs::read_to_string(&path).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0);
    let next = current + 1;
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, next.to_string())?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    Ok(format!("{terminal}-{next:08}"))
}

fn cny(text: &str) -> Option<Money> {
    Money::parse_positive(text, Currency::Cny).ok()
}

impl Counter {
    pub fn new(config: Config, paykit: Client, print: PrintQueue) -> Counter {
        Counter { config, paykit, print, mode: Mode::Idle }
    }

    /// A line typed at the prompt.
    pub async fn command(&mut self, line: &str) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            [] => {}
            ["sale"] => {
                self.mode = Mode::Sale { amount: None, items: Vec::new() };
                println!("READY items: scan products, then the payment code");
            }
            ["sale", amount] | [amount] if cny(amount).is_some() => {
                self.mode = Mode::Sale { amount: cny(amount), items: Vec::new() };
                println!("READY scan the customer's payment code for {amount}");
            }
            ["qr", amount] => match cny(amount) {
                Some(a) => self.qr_sale(a).await,
                None => println!("ERROR {amount:?} is not an amount such as 12.30"),
            },
            ["refund"] => {
                self.mode = Mode::Refund;
                println!("READY scan the QR on the customer's receipt");
            }
            _ => println!("ERROR unknown command {line:?} (amount | sale [amount] | qr amount | refund)"),
        }
    }

    /// A scan from the scanner.
    pub async fn scanned(&mut self, code: &str) {
        match (classify(code), &mut self.mode) {
            (ScanKind::PaymentCode(code), Mode::Sale { amount, items }) => {
                let total = match amount {
                    Some(a) => Some(*a),
                    None => items.iter().try_fold(Money::zero(Currency::Cny), |sum, (_, p)| sum.checked_add(*p).ok()),
                };
                let items = std::mem::take(items);
                self.mode = Mode::Idle;
                match total.filter(|t| !t.is_zero()) {
                    Some(total) => self.micropay(total, items, &code).await,
                    None => println!("ERROR nothing to pay: scan products first"),
                }
            }
            (ScanKind::Product(barcode), Mode::Sale { amount: None, items }) => {
                match self.config.products.iter().find(|p| p.barcode == barcode) {
                    Some(p) => match cny(&p.price) {
                        Some(price) => {
                            items.push((p.name.clone(), price));
                            println!("ITEM {} {}", p.name, price);
                        }
                        None => println!("ERROR product {} has a bad price {:?}", p.barcode, p.price),
                    },
                    None => println!("ERROR unknown product {barcode}"),
                }
            }
            (ScanKind::ReceiptQr(qr), Mode::Refund) => {
                self.mode = Mode::Idle;
                match qr.strip_prefix("PAYKIT-ORDER:") {
                    Some(order_id) => self.refund(order_id).await,
                    None => println!("ERROR that QR is not from one of our receipts"),
                }
            }
            (kind, _) => eprintln!("counter: ignored a scan ({kind:?}) that does not fit what the counter is doing"),
        }
    }

    async fn micropay(&mut self, amount: Money, items: Vec<(String, Money)>, auth_code: &str) {
        let out_trade_no = match next_out_trade_no(&self.config.counter.state_dir, &self.config.counter.terminal_id) {
            Ok(n) => n,
            Err(e) => return println!("ERROR cannot number the sale: {e}"),
        };
        let request = Micropay {
            out_trade_no: out_trade_no.clone(),
            amount: amount.to_string(),
            auth_code: auth_code.to_owned(),
            description: self.config.counter.store_name.clone(),
        };
        let mut order = match self.paykit.micropay(&request).await {
            Ok(o) => o,
            Err(e) => return println!("ERROR {} {}", e.code().unwrap_or("NETWORK"), e),
        };
        if order.status == "USERPAYING" {
            println!("WAITING the customer confirms {amount} on their phone");
            order = self.wait_for_confirmation(order).await;
        }
        match order.status.as_str() {
            "SUCCESS" => {
                self.print_sale(&order, &items, "付款码 Payment code");
                println!(
                    "SALE PAID order={} out_trade_no={} amount={}",
                    order.order_id, order.out_trade_no, order.amount
                );
            }
            "REVOKED" => println!("SALE REVERSED order={} (not confirmed in time)", order.order_id),
            other => println!("SALE FAILED order={} status={other}", order.order_id),
        }
    }

    /// Polls with backoff until the consumer decides or the limit passes; then reverses.
    async fn wait_for_confirmation(&self, order: Order) -> Order {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(self.config.counter.userpaying_limit_secs);
        let mut wait = Duration::from_millis(500);
        while tokio::time::Instant::now() < deadline {
            tokio::time::sleep(wait.min(deadline.saturating_duration_since(tokio::time::Instant::now()))).await;
            wait = (wait * 2).min(Duration::from_secs(5));
            if let Ok(now) = self.paykit.order(&order.order_id).await
                && now.status != "USERPAYING"
            {
                return now;
            }
        }
        match self.paykit.reverse_order(&order.order_id).await {
            Ok(reversed) => reversed,
            Err(e) => {
                println!("ERROR could not reverse {}: {e}", order.order_id);
                order
            }
        }
    }

    async fn qr_sale(&mut self, amount: Money) {
        let out_trade_no = match next_out_trade_no(&self.config.counter.state_dir, &self.config.counter.terminal_id) {
            Ok(n) => n,
            Err(e) => return println!("ERROR cannot number the sale: {e}"),
        };
        let order = match self
            .paykit
            .create_order(&NewOrder::new(&out_trade_no, amount.to_string(), &self.config.counter.store_name))
            .await
        {
            Ok(o) => o,
            Err(e) => return println!("ERROR {} {e}", e.code().unwrap_or("NETWORK")),
        };
        let code_url = order.code_url.clone().unwrap_or_default();
        let job = Job::new()
            .align(Align::Center)
            .bold(true)
            .line(&self.config.counter.store_name)
            .bold(false)
            .line("请扫码付款 Scan to pay")
            .size(2, 2)
            .line(&format!("¥{amount}"))
            .size(1, 1)
            .qr(&code_url)
            .line(&format!("订单 Order {out_trade_no}"))
            .cut();
        let _ = self.print.send(job.into_bytes());
        println!("QR printed order={} code_url={code_url}", order.order_id);
        let expires = tokio::time::Instant::now() + Duration::from_secs(7200);
        while tokio::time::Instant::now() < expires {
            tokio::time::sleep(Duration::from_millis(500)).await;
            match self.paykit.order(&order.order_id).await {
                Ok(o) if o.status == "SUCCESS" => {
                    self.print_sale(&o, &[], "扫码 QR");
                    return println!(
                        "SALE PAID order={} out_trade_no={} amount={}",
                        o.order_id, o.out_trade_no, o.amount
                    );
                }
                Ok(o) if o.status != "NOTPAY" => {
                    return println!("SALE FAILED order={} status={}", o.order_id, o.status);
                }
                _ => {}
            }
        }
    }

    async fn refund(&mut self, order_id: &str) {
        let order = match self.paykit.order(order_id).await {
            Ok(o) => o,
            Err(e) => return println!("ERROR {} {e}", e.code().unwrap_or("NETWORK")),
        };
        let request = NewRefund::of_order(order_id, format!("RF-{order_id}"), order.amount.clone());
        match self.paykit.create_refund(&request).await {
            Ok(refund) => {
                let job = Job::new()
                    .align(Align::Center)
                    .bold(true)
                    .line(&self.config.counter.store_name)
                    .bold(false)
                    .line("退款单 REFUND")
                    .align(Align::Left)
                    .line(&format!("金额 Amount: ¥{}", refund.amount))
                    .line(&format!("订单 Order: {}", order.out_trade_no))
                    .line(&format!("退款 Refund: {}", refund.refund_id))
                    .line(&format!("状态 Status: {}", refund.status))
                    .cut();
                let _ = self.print.send(job.into_bytes());
                println!(
                    "REFUND {} order={} amount={} status={}",
                    refund.refund_id, order_id, refund.amount, refund.status
                );
            }
            Err(e) => println!("ERROR {} {e}", e.code().unwrap_or("NETWORK")),
        }
    }

    /// Prints the receipts the cashier console asked for (its print button), each once.
    pub async fn print_requested(&mut self) {
        let requests = match self.paykit.claim_print_requests().await {
            Ok(r) => r,
            Err(e) => {
                eprintln!("counter: asking the gateway for print requests failed ({e}); will retry");
                return;
            }
        };
        for request in requests {
            match self.paykit.order(&request.order_id).await {
                Ok(order) => {
                    let method =
                        if order.funding.as_deref() == Some("card") { "银行卡 card" } else { "零钱 balance" };
                    self.print_sale(&order, &[], method);
                    println!("PRINT {} order={}", request.print_request_id, order.order_id);
                }
                Err(e) => println!("ERROR {} {e}", e.code().unwrap_or("NETWORK")),
            }
        }
    }

    fn print_sale(&self, order: &Order, items: &[(String, Money)], method: &str) {
        let c = &self.config.counter;
        let mut job = Job::new().align(Align::Center).bold(true).size(2, 2).line(&c.store_name).size(1, 1).bold(false);
        if !c.store_address.is_empty() {
            job = job.line(&c.store_address);
        }
        job = job.line("销售单 SALE").align(Align::Left);
        for (name, price) in items {
            job = job.line(&format!("{name}  ¥{price}"));
        }
        let time = order.paid_at.clone().unwrap_or_default();
        let job = job
            .bold(true)
            .line(&format!("金额 Amount: ¥{}", order.amount))
            .bold(false)
            .line(&format!("订单 Order: {}", order.out_trade_no))
            .line(&format!("时间 Time: {time}"))
            .line(&format!("方式 Method: {method}"))
            .align(Align::Center)
            .line("扫码申请退款 Scan for refunds")
            .qr(&format!("PAYKIT-ORDER:{}", order.order_id))
            .cut();
        let _ = self.print.send(job.into_bytes());
    }
}
