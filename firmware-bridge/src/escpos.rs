//! ESC/POS, the receipt printers' command language: the commands the bridge sends, and the
//! real-time status bytes printers answer to `DLE EOT n`.

/// Builds a print job.
#[derive(Debug, Default, Clone)]
pub struct Job {
    bytes: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    Left = 0,
    Center = 1,
    Right = 2,
}

impl Job {
    /// `ESC @` (reset), then Chinese character mode on (`FS &`), so text is GB18030.
    pub fn new() -> Job {
        let mut job = Job::default();
        job.bytes.extend([0x1b, 0x40, 0x1c, 0x26]);
        job
    }

    pub fn align(mut self, align: Align) -> Job {
        self.bytes.extend([0x1b, 0x61, align as u8]);
        self
    }

    pub fn bold(mut self, on: bool) -> Job {
        self.bytes.extend([0x1b, 0x45, u8::from(on)]);
        self
    }

    /// `GS ! n`: width and height multipliers 1–8.
    pub fn size(mut self, width: u8, height: u8) -> Job {
        let (w, h) = (width.clamp(1, 8) - 1, height.clamp(1, 8) - 1);
        self.bytes.extend([0x1d, 0x21, (w << 4) | h]);
        self
    }

    /// One line of text, encoded GB18030 (Chinese printers' encoding), then LF.
    pub fn line(mut self, text: &str) -> Job {
        let (encoded, _, _) = encoding_rs::GB18030.encode(text);
        // Control bytes inside text would be read as commands: drop them.
        self.bytes.extend(encoded.iter().copied().filter(|&b| b >= 0x20));
        self.bytes.push(b'\n');
        self
    }

    /// A QR code (model 2, module size 6, error level M) holding `data`.
    pub fn qr(mut self, data: &str) -> Job {
        let d = data.as_bytes();
        let len = d.len() + 3;
        self.bytes.extend([0x1d, 0x28, 0x6b, 0x04, 0x00, 0x31, 0x41, 0x32, 0x00]);
        self.bytes.extend([0x1d, 0x28, 0x6b, 0x03, 0x00, 0x31, 0x43, 0x06]);
        self.bytes.extend([0x1d, 0x28, 0x6b, 0x03, 0x00, 0x31, 0x45, 0x31]);
        self.bytes.extend([0x1d, 0x28, 0x6b, (len & 0xff) as u8, (len >> 8) as u8, 0x31, 0x50, 0x30]);
        self.bytes.extend(d);
        self.bytes.extend([0x1d, 0x28, 0x6b, 0x03, 0x00, 0x31, 0x51, 0x30]);
        self
    }

    /// A barcode: `GS k 67 n data` (EAN-13) or `GS k 73 n data` (Code 128).
    pub fn barcode(mut self, data: &str) -> Job {
        let system = if data.len() == 13 && data.bytes().all(|b| b.is_ascii_digit()) { 67 } else { 73 };
        self.bytes.extend([0x1d, 0x6b, system, data.len().min(255) as u8]);
        self.bytes.extend(data.bytes().take(255));
        self
    }

    /// Feed and partial cut: `GS V 1`.
    pub fn cut(mut self) -> Job {
        self.bytes.extend([b'\n', b'\n', 0x1d, 0x56, 0x01]);
        self
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

/// `DLE EOT n`: asks for real-time status `n` (1 printer, 2 offline cause, 4 paper).
pub fn status_query(n: u8) -> [u8; 3] {
    [0x10, 0x04, n]
}

/// Bits 1 and 4 are always set in a status byte; a healthy printer answers 0x12.
pub const STATUS_FIXED_BITS: u8 = 0x12;
pub const PRINTER_OFFLINE: u8 = 0x08;
pub const OFFLINE_COVER_OPEN: u8 = 0x04;
pub const OFFLINE_PAPER_END: u8 = 0x20;
pub const PAPER_NEAR_END: u8 = 0x0c;
pub const PAPER_END: u8 = 0x60;

/// What the printer reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Status {
    pub offline: bool,
    pub cover_open: bool,
    pub paper_out: bool,
}

impl Status {
    pub fn ready(&self) -> bool {
        !self.offline && !self.cover_open && !self.paper_out
    }

    /// Reads the answers to `DLE EOT 1`, `2` and `4`. A byte without the fixed bits is not
    /// a status answer.
    pub fn from_bytes(printer: u8, offline_cause: u8, paper: u8) -> Option<Status> {
        let valid = |b: u8| b & 0x93 == STATUS_FIXED_BITS;
        if !(valid(printer) && valid(offline_cause) && valid(paper)) {
            return None;
        }
        Some(Status {
            offline: printer & PRINTER_OFFLINE != 0,
            cover_open: offline_cause & OFFLINE_COVER_OPEN != 0,
            paper_out: offline_cause & OFFLINE_PAPER_END != 0 || paper & PAPER_END == PAPER_END,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        assert_eq!(Status::from_bytes(0x12, 0x12, 0x12), Some(Status::default()));
        assert!(Status::from_bytes(0x12, 0x12, 0x12).unwrap().ready());
        assert!(Status::from_bytes(0x1a, 0x32, 0x72).unwrap().paper_out);
        assert!(Status::from_bytes(0x1a, 0x16, 0x12).unwrap().cover_open);
        assert_eq!(Status::from_bytes(0x00, 0x12, 0x12), None);
    }

    #[test]
    fn qr_length_bytes() {
        let job = Job::new().qr("abc").into_bytes();
        let store = job.windows(3).position(|w| w == [0x31, 0x50, 0x30]).unwrap();
        assert_eq!(&job[store - 2..store], &[6, 0], "pL pH = len + 3");
    }
}
