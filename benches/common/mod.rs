//! What the benchmarks share. Each bench is its own crate and uses only part of this.
#![allow(dead_code)]

use std::time::Instant;

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Median seconds of `runs` calls of `f`, after one untimed warm-up call.
pub fn median_seconds(runs: usize, mut f: impl FnMut()) -> f64 {
    f();
    median(
        (0..runs)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed().as_secs_f64()
            })
            .collect(),
    )
}

/// Lets libtorch use every core, as the Python side is told to; returns how many.
pub fn torch_on_all_cores() -> usize {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    tch::set_num_threads(threads as i32);
    threads
}

/// Runs a Python reference that prints `{"seconds": [...]}` as its last line; the median.
pub fn python_median(command: &mut std::process::Command) -> Option<f64> {
    let out = command.output().expect("run the Python reference");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or("");
    serde_json::from_str::<serde_json::Value>(line)
        .ok()
        .and_then(|v| {
            v["seconds"]
                .as_array()
                .map(|a| a.iter().filter_map(|x| x.as_f64()).collect::<Vec<_>>())
        })
        .filter(|v| !v.is_empty())
        .map(median)
}
