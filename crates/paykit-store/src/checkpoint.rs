//! SQLite's WAL checkpoints, mostly on a thread of their own rather than on the writer.
//!
//! In WAL mode a commit appends the pages it changed to the `-wal` file, and a checkpoint
//! copies them back into the database file and syncs both files. By default the connection
//! whose commit takes the WAL past 1,000 pages runs a checkpoint inside that commit.
//! paykit's writer is the group-commit lane, which every write waits behind, and a batch of
//! payments changes about a hundred pages: every tenth batch or so, the lane copied a
//! thousand pages and synced the database file while every payment waited. The same hot
//! pages (balance rows, the ends of the time-ordered indexes) were copied again each time,
//! and the checkpoints' syncs queued with the commits' syncs on the disk.
//!
//! So a file database has a checkpointer: a thread with its own connection that runs a
//! PASSIVE checkpoint (it waits for no reader and no writer) every [`INTERVAL`], copying
//! each page once however often it changed meanwhile. The writer checkpoints itself only
//! past [`WRITER_CHECKPOINT_PAGES`]. It still has to, now and then: SQLite starts the WAL
//! over only at the start of a write transaction that finds every frame copied, which a
//! writer busy without a pause never finds. That checkpoint copies what the WAL took since
//! the checkpointer's last one, while the lane waits: at full load 300 ms of commits, some
//! 9,000 pages, a stall of about 60 ms (qr-pay's p99 on SQLite went from 31 to about
//! 50 ms). So once the WAL nears the writer's mark the checkpointer runs every
//! [`NEAR_WRITER_INTERVAL`], and the writer's checkpoint finds a few hundred pages to copy:
//! p99 back at about 32 ms, and a sixth more payments a second than with the writer's own
//! checkpoints (BENCHMARKS.md). Under a load with pauses the checkpointer catches up and
//! the WAL starts over without the writer's help. (A RESTART checkpoint from this thread,
//! to start the WAL over without the writer, held the writer back as long and was
//! dropped.)
//!
//! Durability is unchanged: a commit is synced into the WAL before it is acknowledged, as
//! before, and a checkpoint syncs the WAL before it copies and the database file after.

use std::path::Path;
use std::sync::Mutex;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags};

use crate::Result;

/// How often the checkpointer copies what the WAL gathered. Every 100 ms, its syncs
/// slowed the commits about as much as the writer's own checkpoints had.
const INTERVAL: Duration = Duration::from_millis(300);

/// The writer's `wal_autocheckpoint` while a checkpointer runs: about 80 MiB of WAL at
/// 4 KiB pages, under a second of qr-pay at full load on a 2-core machine. A trigger, not
/// a cap: a reader's long snapshot (a ledger verify) keeps the WAL from starting over, as
/// it did before. The `-wal` file keeps its largest size for reuse.
pub(crate) const WRITER_CHECKPOINT_PAGES: u32 = 20_000;

/// Past this many WAL pages the checkpointer runs every [`NEAR_WRITER_INTERVAL`]: some
/// 150 ms before the writer's mark at full load.
const NEAR_WRITER_PAGES: i64 = WRITER_CHECKPOINT_PAGES as i64 - 5_000;
const NEAR_WRITER_INTERVAL: Duration = Duration::from_millis(5);

/// A running checkpointer; it stops when this is dropped or stopped.
pub(crate) struct Checkpointer {
    running: Mutex<Option<Running>>,
}

struct Running {
    /// Dropped to stop the thread.
    stop: mpsc::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl Checkpointer {
    /// Starts checkpointing the database at `path` (already in WAL mode).
    pub(crate) fn start(path: &Path) -> Result<Checkpointer> {
        let conn =
            Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
        // A checkpoint syncs the WAL before copying and the database file after, as on the
        // writer.
        conn.pragma_update(None, "synchronous", "FULL")?;
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("paykit-checkpoint".into())
            .spawn(move || {
                let mut wait = INTERVAL;
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(wait) {
                    let wal_pages = checkpoint(&conn);
                    // Near the writer's own checkpoint, which copies what came since this
                    // thread's last run while the lane waits: keep that little.
                    let near = wal_pages.is_some_and(|pages| pages >= NEAR_WRITER_PAGES);
                    wait = if near { NEAR_WRITER_INTERVAL } else { INTERVAL };
                }
            })
            .map_err(crate::StoreError::Checkpointer)?;
        Ok(Checkpointer { running: Mutex::new(Some(Running { stop, thread })) })
    }

    /// Stops after the checkpoint under way, if any, and returns once the thread's
    /// connection is closed: it may be the database's last, whose close copies the rest of
    /// the WAL and removes it.
    pub(crate) async fn stop(&self) {
        let Some(Running { stop, thread }) = self.running.lock().unwrap_or_else(|p| p.into_inner()).take() else {
            return;
        };
        drop(stop);
        let _ = tokio::task::spawn_blocking(move || thread.join()).await;
    }
}

/// One PASSIVE checkpoint: every page no reader still needs, waiting for nobody.
fn checkpoint(conn: &Connection) -> Option<i64> {
    let started = Instant::now();
    let outcome = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
        Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?, row.get::<_, i64>(2)?))
    });
    match outcome {
        // -1: another connection was checkpointing or starting the WAL over (the writer,
        // or another process's), or the database is not in WAL mode; next time.
        Ok((_, -1, _)) => {
            metrics::counter!("paykit_sqlite_checkpoints_skipped").increment(1);
            None
        }
        Ok((_, wal_pages, copied)) => {
            metrics::histogram!("paykit_sqlite_checkpoint_seconds").record(started.elapsed().as_secs_f64());
            // The WAL's frames since it last started over, and those readers' snapshots
            // kept from being copied.
            metrics::gauge!("paykit_sqlite_wal_pages").set(wal_pages as f64);
            metrics::gauge!("paykit_sqlite_wal_pages_not_copied").set((wal_pages - copied).max(0) as f64);
            Some(wal_pages)
        }
        Err(e) => {
            metrics::counter!("paykit_sqlite_checkpoint_failures").increment(1);
            tracing::warn!(error = %e, "WAL checkpoint failed; the writer checkpoints past its limit");
            None
        }
    }
}
