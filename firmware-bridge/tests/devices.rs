//! The device layer over real pseudo-terminals: the printer driver against the printer
//! emulator, and the scanner reader surviving its device being unplugged and plugged in.

use std::time::Duration;

use paykit_bridge::emulator::PrinterEmulator;
use paykit_bridge::escpos::Job;
use paykit_bridge::printer::{PrintError, Printer};
use paykit_bridge::scan::{Framing, Suffix};

fn temp_dir(name: &str) -> std::path::PathBuf {
    let mut b = [0u8; 6];
    getrandom::fill(&mut b).unwrap();
    let dir = std::env::temp_dir()
        .join(format!("paykit-bridge-{name}-{}", b.iter().map(|x| format!("{x:02x}")).collect::<String>()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn receipt(text: &str) -> Vec<u8> {
    Job::new()
        .line("茶馆 Tea House")
        .line(text)
        .line("a line long enough to run out of paper in the middle")
        .qr("PAYKIT-ORDER:x")
        .cut()
        .into_bytes()
}

#[test]
fn a_receipt_cut_short_by_a_paper_out_is_printed_once_when_paper_is_back() {
    let emulator = PrinterEmulator::start().unwrap();
    let mut printer = Printer::new(&emulator.path, 9600, temp_dir("spool")).unwrap();
    assert_eq!(printer.print(receipt("first")).unwrap(), 1);

    emulator.run_out_after(20);
    let err = printer.print(receipt("second")).unwrap_err();
    assert!(matches!(err, PrintError::NotReady(s) if s.paper_out), "{err:?}");
    assert_eq!(printer.queued(), 1, "the receipt stays queued");
    assert_eq!(emulator.receipts().len(), 1, "the cut-short receipt does not count");
    assert!(matches!(printer.drain(), Err(PrintError::NotReady(_))), "nothing prints without paper");

    emulator.set_paper(true);
    assert_eq!(printer.drain().unwrap(), 1);
    assert_eq!(printer.drain().unwrap(), 0);
    let texts: Vec<String> = emulator.receipts().iter().map(|r| r.text()).collect();
    assert_eq!(texts.len(), 2);
    assert!(texts[1].contains("second") && texts[1].contains("茶馆"));
    assert_eq!(texts.iter().filter(|t| t.contains("second")).count(), 1, "printed exactly once");
}

#[test]
fn an_open_cover_holds_receipts_until_it_is_closed() {
    let emulator = PrinterEmulator::start().unwrap();
    let mut printer = Printer::new(&emulator.path, 9600, temp_dir("cover")).unwrap();
    emulator.set_cover_open(true);
    assert!(matches!(printer.print(receipt("a")), Err(PrintError::NotReady(s)) if s.cover_open));
    assert!(printer.print(receipt("b")).is_err());
    assert_eq!(printer.queued(), 2);
    emulator.set_cover_open(false);
    assert_eq!(printer.drain().unwrap(), 2);
    let texts: Vec<String> = emulator.receipts().iter().map(|r| r.text()).collect();
    assert!(texts[0].contains("\na\n") && texts[1].contains("\nb\n"), "in order: {texts:?}");
}

#[test]
fn queued_receipts_survive_a_restart_of_the_driver() {
    let emulator = PrinterEmulator::start().unwrap();
    let spool = temp_dir("restart");
    emulator.set_paper(false);
    {
        let mut printer = Printer::new(&emulator.path, 9600, spool.clone()).unwrap();
        assert!(printer.print(receipt("kept")).is_err());
    }
    emulator.set_paper(true);
    let mut printer = Printer::new(&emulator.path, 9600, spool).unwrap();
    assert_eq!(printer.drain().unwrap(), 1);
    assert_eq!(emulator.receipts().len(), 1);
}

#[test]
fn the_scanner_is_read_again_after_being_unplugged() {
    use std::io::Write;
    let dir = temp_dir("scanner");
    let link = dir.join("scanner");
    let plug = |link: &std::path::Path| {
        let (master, slave) = paykit_bridge::emulator::pty_pair().unwrap();
        let _ = std::fs::remove_file(link);
        std::os::unix::fs::symlink(serialport::SerialPort::name(&slave).unwrap(), link).unwrap();
        (master, slave)
    };
    let (mut master, slave) = plug(&link);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let path = link.display().to_string();
    std::thread::spawn(move || {
        paykit_bridge::scanner::run(path, 9600, Framing { suffix: Suffix::Cr, prefix: String::new(), aim: false }, tx)
    });
    std::thread::sleep(Duration::from_millis(500));
    master.write_all(b"\xff\xfe junk\r4006381333931\r").unwrap();
    assert_eq!(recv(&mut rx), "4006381333931");

    // Unplug (half a line in flight), and plug a new device in at the same path.
    master.write_all(b"40063").unwrap();
    std::thread::sleep(Duration::from_millis(200));
    drop(master);
    drop(slave);
    std::thread::sleep(Duration::from_millis(500));
    let (mut master, _slave) = plug(&link);
    std::thread::sleep(Duration::from_millis(800));
    master.write_all(b"96385074\r").unwrap();
    assert_eq!(recv(&mut rx), "96385074", "the next scan after re-plugging is read");
}

fn recv(rx: &mut tokio::sync::mpsc::UnboundedReceiver<String>) -> String {
    for _ in 0..100 {
        if let Ok(code) = rx.try_recv() {
            return code;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("no scan arrived");
}
