//! The receipt printer over a serial port: status checks around every job, and the spool
//! drained in order whenever the printer is ready.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::Duration;

use crate::escpos::{Status, status_query};
use crate::spool::Spool;

#[derive(Debug, thiserror::Error)]
pub enum PrintError {
    #[error("printer not ready: {0:?}")]
    NotReady(Status),
    #[error("printer unreachable: {0}")]
    Port(String),
}

pub struct Printer {
    path: String,
    baud: u32,
    port: Option<Box<dyn serialport::SerialPort>>,
    spool: Spool,
}

impl Printer {
    pub fn new(path: &str, baud: u32, spool_dir: PathBuf) -> std::io::Result<Printer> {
        Ok(Printer { path: path.to_owned(), baud, port: None, spool: Spool::open(&spool_dir)? })
    }

    fn port(&mut self) -> Result<&mut Box<dyn serialport::SerialPort>, PrintError> {
        if self.port.is_none() {
            let port = serialport::new(&self.path, self.baud)
                .timeout(Duration::from_millis(500))
                .open()
                .map_err(|e| PrintError::Port(e.to_string()))?;
            self.port = Some(port);
        }
        Ok(self.port.as_mut().expect("just opened"))
    }

    /// Asks `DLE EOT 1`, `2` and `4`.
    pub fn status(&mut self) -> Result<Status, PrintError> {
        let result = self.query_status();
        if result.is_err() {
            self.port = None; // reopen next time
        }
        result
    }

    fn query_status(&mut self) -> Result<Status, PrintError> {
        let port = self.port()?;
        let mut answers = [0u8; 3];
        for (i, n) in [1u8, 2, 4].into_iter().enumerate() {
            port.write_all(&status_query(n)).map_err(|e| PrintError::Port(e.to_string()))?;
            let mut byte = [0u8; 1];
            port.read_exact(&mut byte).map_err(|e| PrintError::Port(format!("no status answer: {e}")))?;
            answers[i] = byte[0];
        }
        Status::from_bytes(answers[0], answers[1], answers[2])
            .ok_or_else(|| PrintError::Port(format!("garbled status {answers:02x?}")))
    }

    /// Queues a receipt on disk, then tries to print everything queued.
    pub fn print(&mut self, job: Vec<u8>) -> Result<usize, PrintError> {
        self.spool.push(&job).map_err(|e| PrintError::Port(format!("cannot queue the receipt: {e}")))?;
        self.drain()
    }

    /// Prints queued receipts in order while the printer is ready; returns how many.
    /// A job leaves the queue only when the status after it is clean, so one cut short
    /// by a paper-out or an opened cover is printed again, whole, once the printer is back.
    pub fn drain(&mut self) -> Result<usize, PrintError> {
        let mut printed = 0;
        for job in self.spool.pending().map_err(|e| PrintError::Port(e.to_string()))? {
            let status = self.status()?;
            if !status.ready() {
                return Err(PrintError::NotReady(status));
            }
            let bytes = std::fs::read(&job).map_err(|e| PrintError::Port(e.to_string()))?;
            let port = self.port()?;
            port.write_all(&bytes).and_then(|()| port.flush()).map_err(|e| PrintError::Port(e.to_string()))?;
            let after = self.status()?;
            if !after.ready() {
                return Err(PrintError::NotReady(after));
            }
            self.spool.done(&job).map_err(|e| PrintError::Port(e.to_string()))?;
            printed += 1;
        }
        Ok(printed)
    }

    pub fn queued(&self) -> usize {
        self.spool.pending().map_or(0, |p| p.len())
    }
}
