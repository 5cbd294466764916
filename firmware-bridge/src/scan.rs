//! Reading a serial barcode scanner: framing bytes into scans, and classifying them.
//!
//! A scanner sends each scan as ASCII followed by a suffix (CR, LF or CR LF), optionally
//! behind a configured prefix or an AIM symbology identifier (`]E0`, `]Q1`, …). Noise on
//! the line — bytes that are not printable ASCII, over-long lines, half lines cut by an
//! unplug — is dropped with a reason, never a panic.

use paykit_core::{luhn, payment_code};
use serde::Deserialize;

/// The longest scan accepted; anything longer is line noise.
pub const MAX_SCAN_LEN: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Suffix {
    Cr,
    Lf,
    Crlf,
}

/// How the scanner frames its output.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Framing {
    pub suffix: Suffix,
    /// A fixed prefix the scanner is configured to send before each scan.
    #[serde(default)]
    pub prefix: String,
    /// Whether the scanner sends AIM identifiers (`]E0` …) before each scan.
    #[serde(default)]
    pub aim: bool,
}

/// What came out of the framer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Framed {
    Scan(String),
    /// Dropped bytes and why (for the log).
    Dropped(&'static str),
}

/// Turns a byte stream into scans. Feed it whatever the port gives; it keeps partial
/// lines between calls.
#[derive(Debug)]
pub struct Framer {
    framing: Framing,
    line: Vec<u8>,
    /// A CR seen while waiting for the LF of CR LF.
    pending_cr: bool,
    /// The current line is being thrown away (it went bad); wait for its end.
    discarding: Option<&'static str>,
}

impl Framer {
    pub fn new(framing: Framing) -> Framer {
        Framer { framing, line: Vec::new(), pending_cr: false, discarding: None }
    }

    /// Drops a half-read line, e.g. when the port closed under it.
    pub fn reset(&mut self) -> Option<Framed> {
        let had = !self.line.is_empty() || self.discarding.is_some();
        self.line.clear();
        self.pending_cr = false;
        self.discarding = None;
        had.then_some(Framed::Dropped("half a line when the port closed"))
    }

    pub fn push(&mut self, bytes: &[u8]) -> Vec<Framed> {
        let mut out = Vec::new();
        for &b in bytes {
            let end = match (self.framing.suffix, b) {
                (Suffix::Cr, b'\r') | (Suffix::Lf, b'\n') => true,
                (Suffix::Crlf, b'\r') => {
                    self.pending_cr = true;
                    continue;
                }
                (Suffix::Crlf, b'\n') if self.pending_cr => true,
                _ => false,
            };
            if self.pending_cr && !end {
                // A lone CR inside a CR LF framed line is noise.
                self.pending_cr = false;
                self.discarding.get_or_insert("stray carriage return");
            }
            self.pending_cr = false;
            if end {
                out.push(self.finish());
                continue;
            }
            if self.discarding.is_some() {
                continue;
            }
            if !(0x20..0x7f).contains(&b) {
                self.discarding = Some("bytes that are not printable ASCII");
            } else if self.line.len() >= MAX_SCAN_LEN {
                self.discarding = Some("an over-long line");
            } else {
                self.line.push(b);
            }
        }
        out
    }

    fn finish(&mut self) -> Framed {
        let line = std::mem::take(&mut self.line);
        if let Some(reason) = self.discarding.take() {
            return Framed::Dropped(reason);
        }
        let mut text = String::from_utf8(line).unwrap_or_default();
        if !self.framing.prefix.is_empty() {
            match text.strip_prefix(&self.framing.prefix) {
                Some(rest) => text = rest.to_owned(),
                None => return Framed::Dropped("a line without the configured prefix"),
            }
        }
        if self.framing.aim {
            // AIM identifiers are `]` + symbology letter + modifier digit.
            let b = text.as_bytes();
            if b.len() >= 3 && b[0] == b']' && b[1].is_ascii_alphabetic() && b[2].is_ascii_alphanumeric() {
                text = text[3..].to_owned();
            } else {
                return Framed::Dropped("a line without an AIM identifier");
            }
        }
        if text.is_empty() { Framed::Dropped("an empty line") } else { Framed::Scan(text) }
    }
}

/// What a scan is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanKind {
    /// A consumer's 18-digit payment code (prefix 10–15, Luhn-valid).
    PaymentCode(String),
    /// A product barcode, EAN-13 or EAN-8 with a valid check digit.
    Product(String),
    /// A paykit receipt's QR: `…/q/TOKEN` or an order reference for a refund.
    ReceiptQr(String),
    Other(String),
}

/// EAN-13 / EAN-8 check digit: weights 3 and 1 from the right of the payload.
pub fn ean_valid(code: &str) -> bool {
    if !(code.len() == 13 || code.len() == 8) || !code.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    let digits: Vec<u32> = code.bytes().map(|b| u32::from(b - b'0')).collect();
    let (payload, check) = digits.split_at(digits.len() - 1);
    let sum: u32 = payload.iter().rev().enumerate().map(|(i, d)| if i % 2 == 0 { d * 3 } else { *d }).sum();
    (10 - sum % 10) % 10 == check[0]
}

pub fn classify(scan: &str) -> ScanKind {
    let digits = scan.bytes().all(|b| b.is_ascii_digit());
    if digits && scan.len() == payment_code::LEN {
        let prefix: u32 = scan[..2].parse().unwrap_or(0);
        if (10..=15).contains(&prefix) && luhn::is_valid(scan) {
            return ScanKind::PaymentCode(scan.to_owned());
        }
    }
    if digits && ean_valid(scan) {
        return ScanKind::Product(scan.to_owned());
    }
    if scan.starts_with("PAYKIT-ORDER:") || scan.contains("/q/") {
        return ScanKind::ReceiptQr(scan.to_owned());
    }
    ScanKind::Other(scan.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framer(suffix: Suffix, prefix: &str, aim: bool) -> Framer {
        Framer::new(Framing { suffix, prefix: prefix.into(), aim })
    }

    #[test]
    fn frames_each_suffix_across_arbitrary_chunks() {
        let mut f = framer(Suffix::Crlf, "", false);
        let mut got = f.push(b"1234");
        got.extend(f.push(b"5\r"));
        got.extend(f.push(b"\nabc\r\n"));
        assert_eq!(got, [Framed::Scan("12345".into()), Framed::Scan("abc".into())]);
        let mut f = framer(Suffix::Cr, "", false);
        assert_eq!(f.push(b"a\rb\r"), [Framed::Scan("a".into()), Framed::Scan("b".into())]);
        let mut f = framer(Suffix::Lf, "", false);
        assert_eq!(f.push(b"x\n"), [Framed::Scan("x".into())]);
    }

    #[test]
    fn prefix_and_aim_are_stripped() {
        let mut f = framer(Suffix::Cr, "S:", true);
        assert_eq!(f.push(b"S:]E04006381333931\r"), [Framed::Scan("4006381333931".into())]);
        assert_eq!(f.push(b"4006381333931\r"), [Framed::Dropped("a line without the configured prefix")]);
    }

    #[test]
    fn garbage_is_dropped_and_valid_scans_survive_between_it() {
        let mut f = framer(Suffix::Cr, "", false);
        let mut input = vec![0xff, 0x00, b'x', b'\r'];
        input.extend(b"4006381333931\r");
        input.extend(std::iter::repeat_n(b'9', 300));
        input.extend(b"\r12\r");
        let got = f.push(&input);
        assert_eq!(
            got,
            [
                Framed::Dropped("bytes that are not printable ASCII"),
                Framed::Scan("4006381333931".into()),
                Framed::Dropped("an over-long line"),
                Framed::Scan("12".into()),
            ]
        );
        f.push(b"half");
        assert_eq!(f.reset(), Some(Framed::Dropped("half a line when the port closed")));
    }

    #[test]
    fn random_bytes_never_panic_and_scans_are_still_found() {
        let mut seed = 0x1234_5678_9abc_def0u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut f = framer(Suffix::Cr, "", false);
        let mut found = 0;
        for _ in 0..10_000 {
            let len = (next() % 64) as usize;
            let mut line: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            line.push(b'\r');
            for framed in f.push(&line) {
                if let Framed::Scan(s) = framed {
                    assert!(s.bytes().all(|b| (0x20..0x7f).contains(&b)));
                }
            }
            // A valid scan after each garbage line is always recognised.
            let got = f.push(b"4006381333931\r");
            if got.last() == Some(&Framed::Scan("4006381333931".into())) {
                found += 1;
            }
        }
        assert_eq!(found, 10_000);
    }

    #[test]
    fn classification() {
        let code = payment_code::generate(12345678, b"secret", 1_000_000);
        assert_eq!(classify(&code), ScanKind::PaymentCode(code.clone()));
        let mut bad = code.into_bytes();
        bad[17] = if bad[17] == b'0' { b'1' } else { b'0' };
        assert!(matches!(classify(std::str::from_utf8(&bad).unwrap()), ScanKind::Other(_)));
        assert_eq!(classify("4006381333931"), ScanKind::Product("4006381333931".into()));
        assert_eq!(classify("96385074"), ScanKind::Product("96385074".into()));
        assert!(matches!(classify("4006381333932"), ScanKind::Other(_)));
        assert!(matches!(classify("PAYKIT-ORDER:ord_x"), ScanKind::ReceiptQr(_)));
    }
}
