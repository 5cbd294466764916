//! The scanner's serial port, read on a thread of its own. When the device disappears the
//! port is reopened, by path, until it is back: no restart needed.

use std::io::Read;
use std::time::Duration;

use crate::scan::{Framed, Framer, Framing};

/// Reads scans from `path` forever, sending each through `out`. Dropped noise is logged.
pub fn run(path: String, baud: u32, framing: Framing, out: tokio::sync::mpsc::UnboundedSender<String>) {
    let mut framer = Framer::new(framing);
    let mut announced_missing = false;
    loop {
        let mut port = match serialport::new(&path, baud).timeout(Duration::from_millis(200)).open() {
            Ok(p) => {
                eprintln!("scanner: reading {path}");
                announced_missing = false;
                p
            }
            Err(e) => {
                if !announced_missing {
                    eprintln!("scanner: {path} not available ({e}); retrying");
                    announced_missing = true;
                }
                std::thread::sleep(Duration::from_millis(200));
                continue;
            }
        };
        let mut buf = [0u8; 512];
        loop {
            match port.read(&mut buf) {
                Ok(0) => std::thread::sleep(Duration::from_millis(20)),
                Ok(n) => {
                    for framed in framer.push(&buf[..n]) {
                        match framed {
                            Framed::Scan(code) => {
                                if out.send(code).is_err() {
                                    return;
                                }
                            }
                            Framed::Dropped(why) => eprintln!("scanner: dropped {why}"),
                        }
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(e) => {
                    eprintln!("scanner: {path} went away ({e}); reopening");
                    if let Some(Framed::Dropped(why)) = framer.reset() {
                        eprintln!("scanner: dropped {why}");
                    }
                    break;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
