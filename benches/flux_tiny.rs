//! Per-image time of our FLUX.1-schnell pipeline vs diffusers' FluxPipeline on the same tiny
//! folder (saved by diffusers itself: scripts/parity/flux.sh), CPU, same thread count, same
//! requests (4 steps, no guidance, 256 T5 tokens), in one run:
//!
//!     scripts/parity/setup.sh            # once: the pinned Python reference (.venv-parity)
//!     cargo bench --bench flux_tiny
//!
//! Prints median seconds per image for both and the ratio ours / diffusers (lower is better).

mod common;
use common::{median, python_median, torch_on_all_cores};

use nicheimage_engine::flux::{FluxPipeline, FluxRequest};
use std::path::Path;
use std::process::Command;
use std::time::Instant;
use tch::{Device, Kind};

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let status = Command::new("bash")
        .arg(root.join("scripts/parity/flux.sh"))
        .status()
        .expect("run scripts/parity/flux.sh");
    assert!(status.success(), "scripts/parity/flux.sh failed");
    // The widest of the generated cases.
    let folder = root.join("target/parity-flux/folders/flux_3");
    let threads = torch_on_all_cores();
    let python = root.join(".venv-parity/bin/python");
    let pipe = FluxPipeline::load(&folder, Device::Cpu, Kind::Float).expect("load");
    println!("tiny FLUX.1-schnell txt2img, CPU, {threads} threads, 4 steps, no guidance");
    println!(
        "{:<16} {:>12} {:>12} {:>8}",
        "size/steps", "ours (s)", "diffusers (s)", "ratio"
    );
    for (size, runs) in [(64i64, 15usize), (256, 5), (512, 3)] {
        let req = |seed: u64| FluxRequest {
            prompt: "a photo of a cat".into(),
            seed,
            steps: 4,
            width: size,
            height: size,
        };
        pipe.txt2img(&req(0)).expect("warm-up");
        let ours = median(
            (1..=runs as u64)
                .map(|seed| {
                    let t = Instant::now();
                    pipe.txt2img(&req(seed)).expect("generate");
                    t.elapsed().as_secs_f64()
                })
                .collect(),
        );
        let theirs = python_median(
            Command::new(&python)
                .arg(root.join("scripts/parity/bench_flux.py"))
                .arg(&folder)
                .args([size, size, 4, runs as i64, threads as i64].map(|v| v.to_string())),
        )
        .expect("diffusers' timings");
        println!(
            "{:<16} {ours:>12.4} {theirs:>12.4} {:>8.2}",
            format!("{size}x{size}/4"),
            ours / theirs
        );
    }
}
