//! The one clock seam of the gateway: everything that asks "what time is it" asks this, so
//! a sandbox can move time forward and tests can pin it.

use std::sync::atomic::{AtomicI64, Ordering};

use paykit_core::time::Timestamp;

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Timestamp;
}

/// Wall-clock time plus an offset that only moves forward (a sandbox's advanced clock).
#[derive(Debug, Default)]
pub struct SystemClock {
    offset_us: AtomicI64,
}

impl SystemClock {
    pub fn new() -> SystemClock {
        SystemClock::default()
    }

    /// Sets how far this clock runs ahead of the wall clock (the sandbox clock's offset,
    /// shared through the database). It only ever moves forward.
    pub fn set_offset_us(&self, offset_us: i64) {
        self.offset_us.fetch_max(offset_us, Ordering::SeqCst);
    }

    pub fn offset_us(&self) -> i64 {
        self.offset_us.load(Ordering::SeqCst)
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        Timestamp::from_unix_micros(wall.saturating_add(self.offset_us.load(Ordering::SeqCst)))
    }
}
