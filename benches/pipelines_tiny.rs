//! Per-image time of our SD 1.5 and SDXL pipelines vs diffusers on the same tiny checkpoints,
//! CPU, same thread count, same requests, in one run:
//!
//!     scripts/parity/setup.sh            # once: the pinned Python reference (.venv-parity)
//!     cargo bench --bench pipelines_tiny
//!
//! Prints median seconds per image for both and the ratio ours / diffusers (lower is better).

mod common;
use common::{median, python_median, torch_on_all_cores};

use nicheimage_engine::pipeline::{StableDiffusion, Txt2Img};
use nicheimage_engine::tiny::{write_tiny_sd15, write_tiny_sdxl};
use std::path::Path;
use std::process::Command;
use std::time::Instant;
use tch::{Device, Kind};

const NEGATIVE: &str = "out of frame, nude, duplicate, watermark, signature, mutated, text, blurry, worst quality, \
low quality, artificial, texture artifacts, jpeg artifacts";

/// Image side, steps, timed runs.
type Case = (i64, usize, usize);

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = root.join("target/bench-tiny");
    let threads = torch_on_all_cores();
    let python = root.join(".venv-parity/bin/python");
    let sizes: [(&str, &[Case]); 2] = [
        ("sd15", &[(64, 4, 15), (256, 20, 3), (512, 20, 2)]),
        ("sdxl", &[(64, 4, 15), (256, 20, 3)]),
    ];
    for (arch, cases) in sizes {
        let name = format!("tiny-{arch}");
        let file = match arch {
            "sd15" => write_tiny_sd15(&dir, &name),
            _ => write_tiny_sdxl(&dir, &name),
        }
        .expect("tiny checkpoint");
        let sd = StableDiffusion::load(&file, None, Device::Cpu, Kind::Float).expect("load");
        println!("tiny {arch} txt2img, CPU, {threads} threads, dpm++2m_karras, CFG 7.5");
        println!(
            "{:<16} {:>12} {:>12} {:>8}",
            "size/steps", "ours (s)", "diffusers (s)", "ratio"
        );
        for &(size, steps, runs) in cases {
            let req = |seed: u64| Txt2Img {
                prompt: "a photo of a cat".into(),
                negative_prompt: Some(NEGATIVE.into()),
                seed,
                num_inference_steps: steps,
                guidance_scale: 7.5,
                width: size,
                height: size,
                scheduler: "dpm++2m_karras".parse().expect("known scheduler"),
            };
            sd.txt2img(&req(0), false).expect("warm-up");
            let ours: Vec<f64> = (1..=runs as u64)
                .map(|seed| {
                    let t = Instant::now();
                    sd.txt2img(&req(seed), false).expect("generate");
                    t.elapsed().as_secs_f64()
                })
                .collect();
            let ours = median(ours);
            let theirs = python.exists().then(|| {
                python_median(
                    Command::new(&python)
                        .arg(root.join("scripts/parity/bench_pipeline.py"))
                        .arg(arch)
                        .arg(&file)
                        .arg(dir.join(&name))
                        .args(
                            [size, size, steps as i64, runs as i64, threads as i64]
                                .map(|v| v.to_string()),
                        ),
                )
            });
            let label = format!("{size}x{size}/{steps}");
            match theirs.flatten() {
                Some(t) => println!("{label:<16} {ours:>12.4} {t:>12.4} {:>8.2}", ours / t),
                None => println!("{label:<16} {ours:>12.4} {:>12} {:>8}", "n/a", "n/a"),
            }
        }
    }
    if !python.exists() {
        println!("(no Python reference: run scripts/parity/setup.sh for the diffusers column)");
    }
}
