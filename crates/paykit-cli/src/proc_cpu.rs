//! CPU time by process, from `/proc` (Linux), for the bench's report: on a shared 2-core
//! machine the question after "how fast" is "whose cores": the gateway's, the database's
//! or the load generator's own.

use std::time::Instant;

/// `/proc/PID/stat` counts in USER_HZ, which Linux fixes at 100 for user space.
const TICKS_PER_SECOND: f64 = 100.0;

/// The user and system CPU seconds in a `/proc/PID/stat` line; None if it does not parse.
/// The command name (second field) is in parentheses and may itself hold spaces and
/// parentheses, so the fields are counted from the last `)`.
fn cpu_seconds_in_stat(stat: &str) -> Option<f64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace();
    // After the name: state, ppid, pgrp, session, tty_nr, tpgid, flags, minflt, cminflt,
    // majflt, cmajflt, then utime and stime.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / TICKS_PER_SECOND)
}

fn cpu_seconds(pid: u32) -> Option<f64> {
    cpu_seconds_in_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Every process named `postgres` on this machine (the server and its backends), by pid.
fn postgres_pids() -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "postgres"))
        .collect()
}

/// The processes a run is measured over, and their CPU seconds when it began.
pub struct CpuWatch {
    started: Instant,
    gateway: Option<(u32, f64)>,
    bench: Option<f64>,
    /// None unless the run is on PostgreSQL.
    postgres: Option<Vec<(u32, f64)>>,
}

impl CpuWatch {
    pub fn start(gateway_pid: Option<u32>, on_postgres: bool) -> CpuWatch {
        CpuWatch {
            started: Instant::now(),
            gateway: gateway_pid.and_then(|pid| Some((pid, cpu_seconds(pid)?))),
            bench: cpu_seconds(std::process::id()),
            postgres: on_postgres
                .then(|| postgres_pids().into_iter().filter_map(|pid| Some((pid, cpu_seconds(pid)?))).collect()),
        }
    }

    /// One line: the cores each used since [`CpuWatch::start`]. PostgreSQL's figure is
    /// every `postgres` process on the machine that was there at the start (the bench's
    /// connections open before it), so another database's work would count too.
    pub fn report(&self) -> String {
        let secs = self.started.elapsed().as_secs_f64();
        let cores = |before: f64, after: Option<f64>| after.map(|a| format!("{:.2}", (a - before) / secs));
        let mut parts = Vec::new();
        if let Some((pid, before)) = self.gateway {
            parts.push(format!("gateway {}", cores(before, cpu_seconds(pid)).unwrap_or_else(|| "?".into())));
        }
        if let Some(ps) = &self.postgres {
            let used: f64 = ps.iter().filter_map(|&(pid, before)| Some(cpu_seconds(pid)? - before)).sum();
            parts.push(format!("postgres {:.2}", used / secs));
        }
        if let Some(before) = self.bench {
            let used = cores(before, cpu_seconds(std::process::id())).unwrap_or_else(|| "?".into());
            parts.push(format!("bench client {used}"));
        }
        let of = std::thread::available_parallelism().map_or(0, usize::from);
        format!("cpu cores  {}  (of {of})", parts.join("  "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stat_line_gives_user_plus_system_seconds() {
        // utime 250 and stime 50 ticks; a command name with spaces and a parenthesis.
        let stat = "4242 (tokio (rt) w) S 1 4242 4242 0 -1 4194560 900 0 3 0 250 50 0 0 20 0 4 0 123 456 789";
        assert_eq!(cpu_seconds_in_stat(stat), Some(3.0));
        assert_eq!(cpu_seconds_in_stat("4242 (x) S 1 2"), None, "too few fields");
        assert_eq!(cpu_seconds_in_stat("no name here"), None);
    }

    #[test]
    fn this_process_is_seen_using_cpu() {
        let before = cpu_seconds(std::process::id()).expect("/proc is there on Linux");
        // Busy until the kernel has counted a tick more (one is 10 ms), or give up.
        let give_up = Instant::now() + std::time::Duration::from_secs(10);
        let mut spun = 0u64;
        while cpu_seconds(std::process::id()) == Some(before) && Instant::now() < give_up {
            spun = std::hint::black_box((0..100_000u64).fold(spun, |a, b| a.wrapping_add(b * b)));
        }
        assert!(cpu_seconds(std::process::id()).unwrap() > before, "no CPU counted in 10 s of spinning");
    }
}
