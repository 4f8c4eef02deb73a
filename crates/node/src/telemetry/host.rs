//! Host and process figures from /proc (Linux).

use crate::runtime::event::HostSample;
use std::time::Instant;

#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: &'static str,
        source: std::io::Error,
    },
    #[error("unexpected format in {path}")]
    Format { path: &'static str },
}

fn read(path: &'static str) -> Result<String, HostError> {
    std::fs::read_to_string(path).map_err(|source| HostError::Read { path, source })
}

/// utime + stime in clock ticks, from the fields after the parenthesised command name.
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let after = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // After ")", field 0 is state (field 3 in proc(5)); utime is field 14, stime 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

fn parse_meminfo_kib(meminfo: &str, key: &str) -> Option<u64> {
    meminfo
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
}

/// Resident memory of a process (`"self"` or a pid) from /proc/<pid>/statm; None when gone.
pub fn rss_of(pid: &str) -> Option<u64> {
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf only reads a system constant.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * if page > 0 { page as u64 } else { 4096 })
}

/// Samples the process; keeps the previous CPU reading to turn ticks into a rate.
pub struct HostSampler {
    ticks_per_sec: f64,
    previous: Option<(Instant, u64)>,
}

impl HostSampler {
    pub fn new() -> Self {
        // SAFETY: sysconf only reads a system constant.
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        Self {
            ticks_per_sec: if ticks > 0 { ticks as f64 } else { 100.0 },
            previous: None,
        }
    }

    pub fn sample(&mut self) -> Result<HostSample, HostError> {
        let now = Instant::now();
        let stat = read("/proc/self/stat")?;
        let ticks = parse_cpu_ticks(&stat).ok_or(HostError::Format {
            path: "/proc/self/stat",
        })?;
        let rss_bytes = rss_of("self").ok_or(HostError::Format {
            path: "/proc/self/statm",
        })?;
        let loadavg = read("/proc/loadavg")?;
        let load: f64 = loadavg
            .split_whitespace()
            .next()
            .and_then(|v| v.parse().ok())
            .ok_or(HostError::Format {
                path: "/proc/loadavg",
            })?;
        let meminfo = read("/proc/meminfo")?;
        let total = parse_meminfo_kib(&meminfo, "MemTotal").ok_or(HostError::Format {
            path: "/proc/meminfo",
        })?;
        let available = parse_meminfo_kib(&meminfo, "MemAvailable").unwrap_or(0);

        let cpu_percent = match self.previous {
            Some((t0, ticks0)) => {
                let wall = now.duration_since(t0).as_secs_f64();
                if wall > 0.0 {
                    100.0 * (ticks.saturating_sub(ticks0) as f64 / self.ticks_per_sec) / wall
                } else {
                    0.0
                }
            }
            None => 0.0,
        };
        self.previous = Some((now, ticks));
        Ok(HostSample {
            process_cpu_percent: cpu_percent,
            process_cpu_seconds: ticks as f64 / self.ticks_per_sec,
            process_rss_bytes: rss_bytes,
            load_average_1m: load,
            memory_total_bytes: total * 1024,
            memory_available_bytes: available * 1024,
            cores: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
        })
    }
}

impl Default for HostSampler {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_survive_spaces_and_parens_in_the_command_name() {
        let stat = "42 (my (odd) prog) S 1 42 42 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 1 0 5 1000 50";
        assert_eq!(parse_cpu_ticks(stat), Some(10));
    }

    #[test]
    fn meminfo_values_are_kib() {
        let m = "MemTotal:       24000000 kB\nMemFree:  1 kB\nMemAvailable:   12000000 kB\n";
        assert_eq!(parse_meminfo_kib(m, "MemTotal"), Some(24_000_000));
        assert_eq!(parse_meminfo_kib(m, "MemAvailable"), Some(12_000_000));
        assert_eq!(parse_meminfo_kib(m, "Missing"), None);
    }

    #[test]
    fn a_real_sample_is_plausible() {
        let mut s = HostSampler::new();
        let a = s.sample().unwrap();
        assert!(a.process_rss_bytes > 0);
        assert!(a.memory_total_bytes >= a.memory_available_bytes);
        assert!(a.cores >= 1);
    }
}
