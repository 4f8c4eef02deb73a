//! A real-size SDXL UNet (2.57 G parameters, random weights) denoising a 1024×1024 image for 25
//! steps with classifier-free guidance, ours vs diffusers' `UNet2DConditionModel` built from the
//! same config, in one run, fp16 on the GPU:
//!
//!     cargo bench --bench sdxl_unet                       # CUDA when there is one
//!     NICHEIMAGE_BENCH_SMOKE=1 cargo bench --bench sdxl_unet   # CPU, f32, 256², 1 step: checks
//!                                                          # both sides run (needs ~12 GB RAM)
//!
//! The Python side is `scripts/parity/bench_sdxl_unet.py` (torch and diffusers; on a machine
//! without the parity venv set `NICHEIMAGE_BENCH_PYTHON` to a Python that has them). Prints
//! seconds per image (median) for both and the ratio ours / diffusers (lower is better).

mod common;
use common::{median_seconds, torch_on_all_cores};

use nicheimage_engine::config::PipelineConfig;
use nicheimage_engine::tiny::write_config_folder;
use nicheimage_engine::unet::UNet;
use nicheimage_engine::weights::Weights;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use tch::{Device, Kind, Tensor};

struct Setup {
    device: Device,
    kind: Kind,
    side: i64,
    steps: usize,
    runs: usize,
}

fn sync(device: Device) {
    if let Device::Cuda(i) = device {
        tch::Cuda::synchronize(i as i64);
    }
}

/// Seconds per image: `steps` guided UNet calls on a batch of 2 and a scheduler-like update.
fn ours(s: &Setup) -> f64 {
    let _no_grad = tch::no_grad_guard();
    let config = PipelineConfig::sdxl();
    tch::manual_seed(0);
    let w = Weights::random("unet", s.kind, s.device);
    let unet = UNet::new(&w.root(), &config.unet);
    drop(w);
    let opts = (s.kind, s.device);
    let latent = s.side / 8;
    let context = Tensor::randn([2, 77, 2048], opts);
    let pooled = Tensor::randn([2, 1280], opts);
    let time_ids = Tensor::from_slice(&[
        s.side as f32,
        s.side as f32,
        0.,
        0.,
        s.side as f32,
        s.side as f32,
    ])
    .to_kind(s.kind)
    .to_device(s.device)
    .repeat([2, 1]);
    let image = || {
        let mut x = Tensor::randn([1, 4, latent, latent], opts);
        for step in 0..s.steps {
            let t = 999.0 - step as f64 * (1000.0 / s.steps as f64);
            let eps = unet.forward(
                &Tensor::cat(&[&x, &x], 0),
                t,
                &context,
                Some((&pooled, &time_ids)),
                None,
            );
            let parts = eps.chunk(2, 0);
            let guided = &parts[0] + (&parts[1] - &parts[0]) * 7.5;
            x = &x - guided * 0.01;
        }
        sync(s.device);
    };
    median_seconds(s.runs, image)
}

fn theirs(s: &Setup, config_dir: &Path, root: &Path) -> Option<f64> {
    let python = std::env::var_os("NICHEIMAGE_BENCH_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join(".venv-parity/bin/python"));
    if !python.exists() {
        return None;
    }
    let device = match s.device {
        Device::Cuda(i) => format!("cuda:{i}"),
        _ => "cpu".into(),
    };
    let dtype = if s.kind == Kind::Half {
        "float16"
    } else {
        "float32"
    };
    let out = Command::new(&python)
        .arg(root.join("scripts/parity/bench_sdxl_unet.py"))
        .arg(config_dir.join("unet/config.json"))
        .args([
            s.side.to_string(),
            s.steps.to_string(),
            s.runs.to_string(),
            device,
            dtype.into(),
        ])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let result = text
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str::<Value>(l).ok());
    if result.is_none() {
        eprintln!(
            "the diffusers side failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    result?["seconds"].as_f64()
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let smoke = std::env::var_os("NICHEIMAGE_BENCH_SMOKE").is_some();
    let setup = if tch::Cuda::is_available() && !smoke {
        Setup {
            device: Device::Cuda(0),
            kind: Kind::Half,
            side: 1024,
            steps: 25,
            runs: 3,
        }
    } else {
        if !smoke {
            println!("no CUDA device: running the CPU smoke check (NICHEIMAGE_BENCH_SMOKE)");
        }
        torch_on_all_cores();
        Setup {
            device: Device::Cpu,
            kind: Kind::Float,
            side: 256,
            steps: 1,
            runs: 1,
        }
    };
    let config_dir = root.join("target/bench-sdxl-unet");
    write_config_folder(&config_dir, &PipelineConfig::sdxl()).expect("SDXL config folder");
    // One side at a time: each holds the 2.57 G parameters.
    let ours = ours(&setup);
    let theirs = theirs(&setup, &config_dir, root);
    println!(
        "SDXL UNet, random weights, {}², {} steps, CFG (batch 2), {:?} {:?}",
        setup.side, setup.steps, setup.device, setup.kind
    );
    match theirs {
        Some(t) => println!(
            "ours {ours:.3} s/image, diffusers {t:.3} s/image, ratio {:.2}",
            ours / t
        ),
        None => println!("ours {ours:.3} s/image (no Python side: see the header of this file)"),
    }
}
