//! Two measurements for the generation endpoint, in one run:
//!
//!     cargo bench --bench endpoint
//!
//! 1. PNG encoding of a 1024x1024 image: ours vs Pillow (NicheImage's encoder) on the same pixels,
//!    time and size as ratios (Python from .venv-parity, see scripts/parity/setup.sh).
//! 2. Endpoint overhead: a request through HTTP, the queue, a replica process and PNG/base64,
//!    against the same generation called in process.
//! 3. The reward check of one 1024x1024 base64 PNG pair (decode both, average hashes at sizes 8
//!    and 6, distance): ours vs Pillow + imagehash as NicheImage's reward service does it.

mod common;
use common::median;

use nicheimage_common::image::RgbImage;
use nicheimage_engine::pipeline::{StableDiffusion, Txt2Img};
use nicheimage_engine::tiny::write_tiny_sd15;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A Python script's JSON answer and the median of its `seconds`.
fn python_timing(stdout: &[u8]) -> (serde_json::Value, f64) {
    let v: serde_json::Value = serde_json::from_slice(stdout).unwrap_or_default();
    let seconds = v["seconds"]
        .as_array()
        .map(|a| a.iter().filter_map(|x| x.as_f64()).collect())
        .unwrap_or_default();
    (v, median(seconds))
}

/// A photo-like test image: smooth gradients, soft shapes and a little deterministic noise.
fn test_image(w: usize, h: usize) -> RgbImage {
    let mut data = Vec::with_capacity(w * h * 3);
    let mut seed = 0x2545F4914F6CDD1Du64;
    for y in 0..h {
        for x in 0..w {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let noise = (seed % 9) as f64 - 4.0;
            let (fx, fy) = (x as f64 / w as f64, y as f64 / h as f64);
            let blob = (-((fx - 0.4).powi(2) + (fy - 0.5).powi(2)) * 12.0).exp();
            let r = 40.0 + 180.0 * fx * (1.0 - fy) + 30.0 * blob + noise;
            let g = 60.0 + 120.0 * fy + 60.0 * blob + noise;
            let b = 90.0 + 100.0 * (1.0 - fx) * fy + 20.0 * (fx * 40.0).sin() + noise;
            data.extend([r, g, b].map(|v| v.clamp(0.0, 255.0) as u8));
        }
    }
    RgbImage::new(w, h, data).expect("sizes agree")
}

fn png_benchmark(root: &Path) {
    let image = test_image(1024, 1024);
    let runs = 10;
    let mut times = Vec::new();
    let mut size = 0;
    for _ in 0..=runs {
        let t = Instant::now();
        size = image.to_png().expect("encode").len();
        times.push(t.elapsed().as_secs_f64());
    }
    let ours = median(times[1..].to_vec());
    print!("PNG 1024x1024: ours {:.1} ms, {} bytes", ours * 1e3, size);
    let python = root.join(".venv-parity/bin/python");
    if !python.exists() {
        println!(" (no Python reference: run scripts/parity/setup.sh)");
        return;
    }
    let raw = root.join("target/bench-png.rgb");
    std::fs::write(&raw, &image.data).expect("write pixels");
    let out = Command::new(python)
        .arg(root.join("scripts/parity/bench_png.py"))
        .arg(&raw)
        .args(["1024", "1024", &runs.to_string()])
        .output()
        .expect("run Pillow");
    let (v, theirs) = python_timing(&out.stdout);
    let their_size = v["bytes"].as_u64().unwrap_or(0);
    println!(
        "; Pillow {:.1} ms, {} bytes; speed-up {:.2}x, size ratio {:.3}",
        theirs * 1e3,
        their_size,
        theirs / ours,
        size as f64 / their_size as f64
    );
}

fn reward_benchmark(root: &Path) {
    use nicheimage_node::reward::judge::{Reference, judge_batch};
    let reference = test_image(1024, 1024);
    let mut shifted = reference.clone();
    for v in shifted.data.iter_mut() {
        *v = v.saturating_add(3);
    }
    let (reference_b64, miner_b64) = (
        reference.to_base64_png().expect("encode"),
        shifted.to_base64_png().expect("encode"),
    );
    let runs = 10;
    let mut times = Vec::new();
    let mut verdict = None;
    for _ in 0..=runs {
        let t = Instant::now();
        // As the reward service does it: both images decoded and hashed in parallel.
        verdict = Some(judge_batch(&reference_b64, &[Some(&miner_b64)]).expect("judge"));
        times.push(t.elapsed().as_secs_f64());
    }
    let mut sequential = Vec::new();
    for _ in 0..=runs {
        let t = Instant::now();
        let decoded = RgbImage::from_base64_png(&reference_b64).expect("decode");
        let _ = Reference::new(&decoded).judge(Some(&miner_b64));
        sequential.push(t.elapsed().as_secs_f64());
    }
    let one_thread = median(sequential[1..].to_vec());
    let ours = median(times[1..].to_vec());
    print!(
        "reward check 1024x1024 pair: ours {:.1} ms ({:.1} ms on one thread) ({:?})",
        ours * 1e3,
        one_thread * 1e3,
        verdict.expect("ran")
    );
    let python = root.join(".venv-parity/bin/python");
    if !python.exists() {
        println!(" (no Python reference: run scripts/parity/setup.sh)");
        return;
    }
    let (a, b) = (
        root.join("target/bench-reference.b64"),
        root.join("target/bench-miner.b64"),
    );
    std::fs::write(&a, &reference_b64).expect("write");
    std::fs::write(&b, &miner_b64).expect("write");
    let out = Command::new(python)
        .arg(root.join("scripts/parity/bench_reward.py"))
        .args([&a, &b])
        .arg(runs.to_string())
        .output()
        .expect("run Pillow + imagehash");
    let (v, theirs) = python_timing(&out.stdout);
    println!(
        "; Pillow + imagehash {:.1} ms (distance {}); speed-up {:.1}x",
        theirs * 1e3,
        v["distance"],
        theirs / ours
    );
}

fn overhead_benchmark(root: &Path) {
    let dir = root.join("target/bench-endpoint");
    let checkpoint = write_tiny_sd15(&dir, "tiny-sd15").expect("tiny checkpoint");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a port")
        .port();
    let metrics = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a port")
        .port();
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[node]\ndevice = \"cpu\"\n[metrics]\nlisten = \"127.0.0.1:{metrics}\"\n[endpoint]\nmodel_name = \"Tiny\"\n\
             host = \"127.0.0.1\"\nport = {port}\n[models.Tiny]\narch = \"sd15\"\ncheckpoint = \"{}\"\n",
            checkpoint.display()
        ),
    )
    .expect("config");
    let mut node = Command::new(env!("CARGO_BIN_EXE_nicheimage-tui"))
        .args(["endpoint", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.join("data"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the endpoint");
    let runtime = tokio::runtime::Runtime::new().expect("tokio");
    let body = serde_json::json!({"prompt": "a photo of a cat", "seed": 1, "pipeline_type": "txt2img",
        "pipeline_params": {"num_inference_steps": 4, "width": 64, "height": 64}});
    let client = nicheimage_common::http::client().unwrap();
    let url = format!("http://127.0.0.1:{port}/generate");
    let sd =
        StableDiffusion::load(&checkpoint, None, tch::Device::Cpu, tch::Kind::Float).expect("load");
    let req = Txt2Img {
        prompt: "a photo of a cat".into(),
        negative_prompt: None,
        seed: 1,
        num_inference_steps: 4,
        guidance_scale: 7.5,
        width: 64,
        height: 64,
        scheduler: "dpm++2m_karras".parse().expect("known"),
    };
    // Alternate the two so that both see the same machine.
    let (http, direct) = runtime.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(120);
        while client
            .post(&url)
            .json(&body)
            .send()
            .await
            .map(|r| r.status() != 200)
            .unwrap_or(true)
        {
            assert!(Instant::now() < deadline, "endpoint not up");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        sd.txt2img(&req, false).expect("warm-up");
        let (mut http, mut direct) = (Vec::new(), Vec::new());
        for _ in 0..20 {
            let t = Instant::now();
            let r = client.post(&url).json(&body).send().await.expect("request");
            let _ = r.bytes().await;
            http.push(t.elapsed().as_secs_f64());
            let t = Instant::now();
            sd.txt2img(&req, false).expect("generate");
            direct.push(t.elapsed().as_secs_f64());
        }
        (median(http), median(direct))
    });
    let _ = node.kill();
    let _ = node.wait();
    println!(
        "endpoint 64x64/4 steps: {:.1} ms through HTTP vs {:.1} ms in process: overhead {:.1} ms ({:.0}%)",
        http * 1e3,
        direct * 1e3,
        (http - direct) * 1e3,
        100.0 * (http - direct) / direct
    );
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    png_benchmark(root);
    reward_benchmark(root);
    overhead_benchmark(root);
}
