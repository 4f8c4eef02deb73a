//! GPU memory as the NVIDIA driver reports it, through `nvidia-smi` (present wherever the driver
//! is; no library to link): memory per process, for each replica's VRAM, and each GPU's total,
//! for its `num_gpus` share. Cached for a few seconds: a query forks a process.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const REFRESH: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Default, PartialEq)]
pub struct GpuMemory {
    /// Bytes of GPU memory used, by process id.
    pub by_pid: HashMap<u32, u64>,
    /// Total bytes, by GPU index.
    pub totals: HashMap<usize, u64>,
}

/// Parses `nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader,nounits` (MiB).
/// A process on several GPUs appears once per GPU; its uses add up.
pub fn parse_apps(text: &str) -> HashMap<u32, u64> {
    let mut out = HashMap::new();
    for line in text.lines() {
        let mut cols = line.split(',').map(str::trim);
        if let (Some(Ok(pid)), Some(Ok(mib))) = (
            cols.next().map(str::parse::<u32>),
            cols.next().map(str::parse::<u64>),
        ) {
            *out.entry(pid).or_default() += mib << 20;
        }
    }
    out
}

/// Parses `nvidia-smi --query-gpu=index,memory.total --format=csv,noheader,nounits` (MiB).
pub fn parse_totals(text: &str) -> HashMap<usize, u64> {
    text.lines()
        .filter_map(|line| {
            let mut cols = line.split(',').map(str::trim);
            Some((
                cols.next()?.parse().ok()?,
                cols.next()?.parse::<u64>().ok()? << 20,
            ))
        })
        .collect()
}

fn query(args: &[&str]) -> Option<String> {
    let out = std::process::Command::new("nvidia-smi")
        .args(args)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The latest reading, or `None` without an NVIDIA driver.
pub fn memory() -> Option<GpuMemory> {
    static CACHE: Mutex<Option<(Instant, Option<GpuMemory>)>> = Mutex::new(None);
    let mut cache = CACHE.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((at, reading)) = cache.as_ref()
        && at.elapsed() < REFRESH
    {
        return reading.clone();
    }
    let reading = query(&[
        "--query-gpu=index,memory.total",
        "--format=csv,noheader,nounits",
    ])
    .map(|totals| GpuMemory {
        totals: parse_totals(&totals),
        by_pid: query(&[
            "--query-compute-apps=pid,used_memory",
            "--format=csv,noheader,nounits",
        ])
        .map(|apps| parse_apps(&apps))
        .unwrap_or_default(),
    });
    *cache = Some((Instant::now(), reading.clone()));
    reading
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_nvidia_smi_csv() {
        let apps = parse_apps("4242, 10240\n4243, 512\n4242, 1024\n[N/A], 3\n");
        assert_eq!(apps[&4242], 11264 << 20);
        assert_eq!(apps[&4243], 512 << 20);
        assert_eq!(apps.len(), 2);
        let totals = parse_totals("0, 81559\n1, 81559\n");
        assert_eq!(totals[&1], 81559 << 20);
        assert!(parse_totals("No devices were found\n").is_empty());
    }
}
