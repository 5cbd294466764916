//! Device emulators, so the counter runs on a laptop with no hardware: a printer that
//! parses ESC/POS, answers `DLE EOT` status queries, runs out of paper or opens its cover
//! on command, and renders what it printed to text and to a PNG; and a scanner that types
//! codes with a chosen suffix. Both speak over real pseudo-terminals.

use std::io::{Read, Write};

use serialport::SerialPort;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::escpos::{OFFLINE_COVER_OPEN, OFFLINE_PAPER_END, PAPER_END, PRINTER_OFFLINE, STATUS_FIXED_BITS};

/// One element of a printed receipt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Printed {
    Text { text: String, bold: bool, scale: u8 },
    Qr(String),
    Barcode(String),
}

/// A receipt the printer finished (cut), complete.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Receipt {
    pub items: Vec<Printed>,
}

impl Receipt {
    pub fn text(&self) -> String {
        let mut out = String::new();
        for item in &self.items {
            match item {
                Printed::Text { text, .. } => out += text,
                Printed::Qr(d) => out += &format!("[QR {d}]"),
                Printed::Barcode(d) => out += &format!("[BARCODE {d}]"),
            }
            out.push('\n');
        }
        out
    }

    pub fn qr_payloads(&self) -> Vec<&str> {
        self.items.iter().filter_map(|i| if let Printed::Qr(d) = i { Some(d.as_str()) } else { None }).collect()
    }
}

/// The emulated printer's mechanism and what it has printed.
#[derive(Debug, Default)]
pub struct PrinterState {
    pub paper_out: bool,
    pub cover_open: bool,
    /// Run out of paper after this many more printable bytes.
    pub paper_left: Option<usize>,
    pub receipts: Vec<Receipt>,
    current: Receipt,
    /// The current receipt lost content (no paper, cover open): it will not count.
    spoiled: bool,
    bold: bool,
    scale: u8,
    line: Vec<u8>,
    qr_data: Option<String>,
}

/// Parses an ESC/POS byte stream. Never panics, whatever the bytes; unknown commands are
/// skipped. Returns the status answers to send back.
#[derive(Debug, Default)]
pub struct Parser {
    pending: Vec<u8>,
}

impl Parser {
    pub fn feed(&mut self, state: &mut PrinterState, bytes: &[u8]) -> Vec<u8> {
        self.pending.extend_from_slice(bytes);
        let mut answers = Vec::new();
        while !self.pending.is_empty() {
            match step(state, &self.pending, &mut answers) {
                Step::Consumed(n) => {
                    self.pending.drain(..n.max(1));
                }
                Step::NeedMore => break,
            }
        }
        // A command that never completes must not grow without bound.
        if self.pending.len() > 70_000 {
            self.pending.clear();
        }
        answers
    }
}

enum Step {
    Consumed(usize),
    NeedMore,
}

fn status_byte(state: &PrinterState, n: u8) -> u8 {
    let offline = state.paper_out || state.cover_open;
    STATUS_FIXED_BITS
        | match n {
            1 if offline => PRINTER_OFFLINE,
            2 => {
                (if state.cover_open { OFFLINE_COVER_OPEN } else { 0 })
                    | (if state.paper_out { OFFLINE_PAPER_END } else { 0 })
            }
            4 if state.paper_out => PAPER_END,
            _ => 0,
        }
}

fn can_print(state: &mut PrinterState) -> bool {
    if state.paper_out || state.cover_open {
        state.spoiled = true;
        return false;
    }
    true
}

fn flush_line(state: &mut PrinterState) {
    let bytes = std::mem::take(&mut state.line);
    if !can_print(state) || bytes.is_empty() {
        return;
    }
    let (text, _, _) = encoding_rs::GB18030.decode(&bytes);
    state.current.items.push(Printed::Text { text: text.into_owned(), bold: state.bold, scale: state.scale.max(1) });
}

fn step(state: &mut PrinterState, b: &[u8], answers: &mut Vec<u8>) -> Step {
    let need = |n: usize| if b.len() < n { Step::NeedMore } else { Step::Consumed(n) };
    match b[0] {
        0x10 if b.len() >= 2 && b[1] == 0x04 => {
            if b.len() < 3 {
                return Step::NeedMore;
            }
            answers.push(status_byte(state, b[2]));
            Step::Consumed(3)
        }
        0x10 => need(2),
        b'\n' => {
            flush_line(state);
            Step::Consumed(1)
        }
        0x1b => match b.get(1) {
            None => Step::NeedMore,
            Some(0x40) => {
                state.bold = false;
                state.scale = 1;
                Step::Consumed(2)
            }
            Some(0x45) => {
                if let Some(&n) = b.get(2) {
                    state.bold = n & 1 == 1;
                }
                need(3)
            }
            Some(0x61) => need(3),
            Some(_) => Step::Consumed(2),
        },
        0x1c => need(2), // FS & / FS . : Chinese mode on / off
        0x1d => match b.get(1) {
            None => Step::NeedMore,
            Some(0x21) => {
                if let Some(&n) = b.get(2) {
                    state.scale = (n >> 4) + 1;
                }
                need(3)
            }
            Some(0x56) => {
                if b.len() < 3 {
                    return Step::NeedMore;
                }
                flush_line(state);
                let receipt = std::mem::take(&mut state.current);
                if !std::mem::take(&mut state.spoiled) && !receipt.items.is_empty() {
                    state.receipts.push(receipt);
                }
                // `GS V 65/66 n` carries a feed amount.
                Step::Consumed(if b[2] >= 65 { 4.min(b.len()) } else { 3 })
            }
            Some(0x6b) => {
                // GS k m n data (m >= 65: length-prefixed), or GS k m data NUL.
                let (Some(&m), Some(&n)) = (b.get(2), b.get(3)) else { return Step::NeedMore };
                if m >= 65 {
                    let end = 4 + usize::from(n);
                    if b.len() < end {
                        return Step::NeedMore;
                    }
                    if can_print(state) {
                        state.current.items.push(Printed::Barcode(String::from_utf8_lossy(&b[4..end]).into_owned()));
                    }
                    Step::Consumed(end)
                } else {
                    match b[3..].iter().position(|&x| x == 0) {
                        Some(p) => Step::Consumed(3 + p + 1),
                        None if b.len() > 300 => Step::Consumed(b.len()),
                        None => Step::NeedMore,
                    }
                }
            }
            Some(0x28) => {
                // GS ( k pL pH cn fn [data]
                if b.len() < 5 {
                    return Step::NeedMore;
                }
                let len = usize::from(b[3]) | (usize::from(b[4]) << 8);
                let end = 5 + len;
                if b.len() < end {
                    return Step::NeedMore;
                }
                if b[2] == 0x6b && len >= 3 && b[5] == 0x31 {
                    match b[6] {
                        0x50 => state.qr_data = Some(String::from_utf8_lossy(&b[8..end]).into_owned()),
                        0x51 => {
                            if let Some(d) = state.qr_data.clone()
                                && can_print(state)
                            {
                                state.current.items.push(Printed::Qr(d));
                            }
                        }
                        _ => {}
                    }
                }
                Step::Consumed(end)
            }
            Some(_) => Step::Consumed(2),
        },
        byte if byte >= 0x20 => {
            if let Some(left) = state.paper_left.as_mut() {
                if *left == 0 {
                    state.paper_out = true;
                    state.paper_left = None;
                } else {
                    *left -= 1;
                }
            }
            state.line.push(byte);
            if state.line.len() > 4096 {
                state.line.clear();
            }
            Step::Consumed(1)
        }
        _ => Step::Consumed(1),
    }
}

/// A pseudo-terminal pair (master, slave). `TTYPort::pair` is not thread-safe (it uses
/// `ptsname`), so every pair in the process is made under one lock.
pub fn pty_pair() -> serialport::Result<(serialport::TTYPort, serialport::TTYPort)> {
    static LOCK: Mutex<()> = Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    serialport::TTYPort::pair()
}

/// A printer emulator on the master side of a pseudo-terminal.
pub struct PrinterEmulator {
    pub state: Arc<Mutex<PrinterState>>,
    /// The path the bridge opens (the pty's slave side).
    pub path: String,
    _keep: Box<dyn std::any::Any + Send>,
}

impl PrinterEmulator {
    /// Creates a pty pair and serves it on a thread.
    pub fn start() -> std::io::Result<PrinterEmulator> {
        let (mut master, slave) = pty_pair().map_err(std::io::Error::other)?;
        let path = slave.name().unwrap_or_default();
        master.set_timeout(Duration::from_millis(50)).map_err(std::io::Error::other)?;
        let state = Arc::new(Mutex::new(PrinterState { scale: 1, ..PrinterState::default() }));
        let shared = state.clone();
        std::thread::spawn(move || {
            let mut parser = Parser::default();
            let mut buf = [0u8; 4096];
            loop {
                match master.read(&mut buf) {
                    Ok(0) => std::thread::sleep(Duration::from_millis(10)),
                    Ok(n) => {
                        let answers = parser.feed(&mut shared.lock().unwrap(), &buf[..n]);
                        if !answers.is_empty() && master.write_all(&answers).is_err() {
                            return;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Ok(PrinterEmulator { state, path, _keep: Box::new(slave) })
    }

    pub fn receipts(&self) -> Vec<Receipt> {
        self.state.lock().unwrap().receipts.clone()
    }

    pub fn set_paper(&self, present: bool) {
        self.state.lock().unwrap().paper_out = !present;
    }

    pub fn set_cover_open(&self, open: bool) {
        self.state.lock().unwrap().cover_open = open;
    }

    /// Paper runs out after `bytes` more printable bytes (in the middle of a receipt).
    pub fn run_out_after(&self, bytes: usize) {
        self.state.lock().unwrap().paper_left = Some(bytes);
    }
}

/// Renders a receipt as a PNG (8×8 font for ASCII, a box for other characters; QR codes
/// drawn module for module so a QR reader can check them).
pub fn render_png(receipt: &Receipt) -> Vec<u8> {
    use font8x8::UnicodeFonts;
    const WIDTH: usize = 384; // 48 mm at 8 dots/mm
    let mut rows: Vec<Vec<bool>> = Vec::new();
    let blank = |rows: &mut Vec<Vec<bool>>, n: usize| rows.extend(std::iter::repeat_n(vec![false; WIDTH], n));
    blank(&mut rows, 8);
    for item in &receipt.items {
        match item {
            Printed::Text { text, scale, .. } => {
                let s = usize::from((*scale).clamp(1, 2)) * 2;
                let mut band = vec![vec![false; WIDTH]; 8 * s];
                for (i, ch) in text.chars().enumerate() {
                    let glyph =
                        font8x8::BASIC_FONTS.get(ch).unwrap_or([0xff, 0x81, 0x81, 0x81, 0x81, 0x81, 0x81, 0xff]);
                    for (gy, bits) in glyph.iter().enumerate() {
                        for gx in 0..8 {
                            if bits >> gx & 1 == 1 {
                                for dy in 0..s {
                                    for dx in 0..s {
                                        let x = 8 + (i * 8 + gx) * s + dx;
                                        if x < WIDTH {
                                            band[gy * s + dy][x] = true;
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
                rows.extend(band);
                blank(&mut rows, 4);
            }
            Printed::Qr(data) | Printed::Barcode(data) => {
                let Ok(code) = qrcode::QrCode::with_error_correction_level(data.as_bytes(), qrcode::EcLevel::M) else {
                    continue;
                };
                let (w, colors) = (code.width(), code.to_colors());
                let scale = 4;
                blank(&mut rows, 16);
                for my in 0..w {
                    let mut row = vec![false; WIDTH];
                    for mx in 0..w {
                        if colors[my * w + mx] == qrcode::Color::Dark {
                            for dx in 0..scale {
                                let x = 32 + mx * scale + dx;
                                if x < WIDTH {
                                    row[x] = true;
                                }
                            }
                        }
                    }
                    rows.extend(std::iter::repeat_n(row, scale));
                }
                blank(&mut rows, 16);
            }
        }
    }
    blank(&mut rows, 8);
    let height = rows.len();
    let pixels: Vec<u8> = rows.iter().flat_map(|r| r.iter().map(|&dark| if dark { 0 } else { 255 })).collect();
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, WIDTH as u32, height as u32);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    if let Ok(mut writer) = encoder.write_header() {
        let _ = writer.write_image_data(&pixels);
    }
    out
}

/// Types `code` + suffix into a scanner pty's master side, at the configured baud pace.
pub fn type_scan(master: &mut dyn Write, code: &str, suffix: &[u8]) -> std::io::Result<()> {
    master.write_all(code.as_bytes())?;
    master.write_all(suffix)?;
    master.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::escpos::{Align, Job};

    fn print(job: Vec<u8>) -> PrinterState {
        let mut state = PrinterState { scale: 1, ..PrinterState::default() };
        Parser::default().feed(&mut state, &job);
        state
    }

    #[test]
    fn parses_what_the_bridge_sends() {
        let job = Job::new()
            .align(Align::Center)
            .bold(true)
            .size(2, 2)
            .line("茶馆 Tea House")
            .bold(false)
            .size(1, 1)
            .line("¥12.30")
            .qr("PAYKIT-ORDER:ord_1")
            .barcode("4006381333931")
            .cut();
        let state = print(job.into_bytes());
        assert_eq!(state.receipts.len(), 1);
        let r = &state.receipts[0];
        assert_eq!(r.items[0], Printed::Text { text: "茶馆 Tea House".into(), bold: true, scale: 2 });
        assert_eq!(r.qr_payloads(), ["PAYKIT-ORDER:ord_1"]);
        assert!(r.text().contains("¥12.30") && r.text().contains("[BARCODE 4006381333931]"));
    }

    #[test]
    fn answers_status_and_spoils_receipts_without_paper() {
        let mut state = PrinterState { scale: 1, ..PrinterState::default() };
        let mut parser = Parser::default();
        assert_eq!(
            parser.feed(&mut state, &[0x10, 0x04, 0x01, 0x10, 0x04, 0x02, 0x10, 0x04, 0x04]),
            [0x12, 0x12, 0x12]
        );
        state.paper_left = Some(5);
        parser.feed(&mut state, &Job::new().line("a long line that runs out").cut().into_bytes());
        assert!(state.receipts.is_empty(), "a receipt cut short does not count");
        assert_eq!(parser.feed(&mut state, &[0x10, 0x04, 0x04]), [0x72]);
        state.paper_out = false;
        parser.feed(&mut state, &Job::new().line("again").cut().into_bytes());
        assert_eq!(state.receipts.len(), 1);
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut seed = 42u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut state = PrinterState::default();
        let mut parser = Parser::default();
        for _ in 0..10_000 {
            let len = (next() % 200) as usize;
            let bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            parser.feed(&mut state, &bytes);
        }
        // A fresh connection prints properly.
        let mut state = PrinterState { scale: 1, ..PrinterState::default() };
        let mut parser = Parser::default();
        parser.feed(&mut state, &Job::new().line("ok").cut().into_bytes());
        assert_eq!(state.receipts.last().unwrap().text(), "ok\n");
    }

    #[test]
    fn the_png_holds_a_qr_a_reader_can_decode() {
        let state = print(Job::new().line("Tea").qr("PAYKIT-ORDER:ord_abc").cut().into_bytes());
        let png = render_png(&state.receipts[0]);
        let decoder = png::Decoder::new(std::io::Cursor::new(png));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        let (w, h) = (info.width as usize, info.height as usize);
        let mut img = rqrr::PreparedImage::prepare_from_greyscale(w, h, |x, y| buf[y * w + x]);
        let grids = img.detect_grids();
        assert_eq!(grids[0].decode().unwrap().1, "PAYKIT-ORDER:ord_abc");
    }
}
