//! The print queue on disk: a receipt is written here (atomically) before it is printed
//! and removed only after the printer reports a clean finish, so paper-outs, cover-opens
//! and restarts of the bridge lose no receipt.
//!
//! A receipt is printed again only if the bridge dies in the instant between the printer
//! finishing it and the file's removal; a printer cannot tell what it printed last.

use std::path::{Path, PathBuf};

pub struct Spool {
    dir: PathBuf,
}

impl Spool {
    pub fn open(dir: &Path) -> std::io::Result<Spool> {
        std::fs::create_dir_all(dir)?;
        Ok(Spool { dir: dir.to_owned() })
    }

    /// Queues a job; returns its file. The name orders jobs by arrival.
    pub fn push(&self, bytes: &[u8]) -> std::io::Result<PathBuf> {
        let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let path = self.dir.join(format!("{stamp:024}.job"));
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, bytes)?;
        std::fs::File::open(&tmp)?.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        if let Ok(dir) = std::fs::File::open(&self.dir) {
            let _ = dir.sync_all();
        }
        Ok(path)
    }

    /// Queued jobs, oldest first.
    pub fn pending(&self) -> std::io::Result<Vec<PathBuf>> {
        let mut jobs: Vec<PathBuf> = std::fs::read_dir(&self.dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "job"))
            .collect();
        jobs.sort();
        Ok(jobs)
    }

    pub fn done(&self, job: &Path) -> std::io::Result<()> {
        std::fs::remove_file(job)
    }
}
