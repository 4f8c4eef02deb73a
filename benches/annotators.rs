//! The ControlNet annotators' time per map, ours vs controlnet_aux, on NicheImage's DreamShaper
//! conditional-image size (768×512), CPU, same thread count, the same full-size networks with
//! the same random weights, in one run:
//!
//!     scripts/parity/setup.sh            # once: the pinned Python reference (.venv-parity)
//!     cargo bench --bench annotators
//!
//! Prints median seconds per map for both and the ratio ours / controlnet_aux (lower is better).

mod common;
use common::{median_seconds, torch_on_all_cores};

use nicheimage_common::image::RgbImage;
use nicheimage_engine::annotator::canny;
use nicheimage_engine::annotator::midas::Midas;
use nicheimage_engine::annotator::normalbae::NormalBae;
use nicheimage_engine::tiny::{AnnotatorNet, write_random_annotator};
use serde_json::Value;
use std::path::Path;
use std::process::Command;
use tch::Device;

const RUNS: usize = 3;

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = root.join("target/bench-annotators");
    let threads = torch_on_all_cores();
    let midas_file = dir.join("midas-random.safetensors");
    let normal_file = dir.join("normalbae-random.safetensors");
    for (net, file) in [
        (AnnotatorNet::Midas, &midas_file),
        (AnnotatorNet::Normalbae, &normal_file),
    ] {
        // Deterministic, so written once; flushed before timing so that the kernel's writeback
        // of 400 MB does not land inside our measurements.
        if !file.exists() {
            write_random_annotator(net, file, 0).expect("annotator weights");
        }
        std::fs::File::open(file)
            .and_then(|f| f.sync_all())
            .expect("flush the weights");
    }
    let photo = RgbImage::from_png(
        &std::fs::read(root.join("tests/fixtures/annotators/photo_192x128.png")).expect("fixture"),
    )
    .expect("PNG");
    let image = photo.resized_for_condition(512).expect("resize");
    let image_file = dir.join("input.png");
    std::fs::write(&image_file, image.to_png().expect("encode")).expect("write input");

    let midas = Midas::load(&midas_file, Device::Cpu).expect("load MiDaS");
    let normalbae = NormalBae::load(&normal_file, Device::Cpu).expect("load NormalBae");
    let ours = [
        median_seconds(RUNS, || {
            midas.annotate(&image).expect("depth");
        }),
        median_seconds(RUNS, || {
            normalbae.annotate(&image).expect("normals");
        }),
    ];
    let python = root.join(".venv-parity/bin/python");
    let theirs: Option<Value> = python.exists().then(|| {
        let out = Command::new(&python)
            .arg(root.join("scripts/parity/bench_annotators.py"))
            .arg(&dir)
            .arg(&image_file)
            .args([RUNS.to_string(), threads.to_string()])
            .output()
            .expect("run the Python side");
        let text = String::from_utf8_lossy(&out.stdout);
        text.lines()
            .rev()
            .find_map(|l| serde_json::from_str(l).ok())
            .unwrap_or_else(|| {
                panic!(
                    "no result from Python: {}",
                    String::from_utf8_lossy(&out.stderr)
                )
            })
    });
    println!(
        "annotators on a {}x{} image, CPU, {threads} threads, f32",
        image.width, image.height
    );
    println!(
        "{:<10} {:>10} {:>18} {:>8}",
        "map", "ours (s)", "controlnet_aux (s)", "ratio"
    );
    let edges = median_seconds(10, || {
        canny::canny(&image, canny::LOW_THRESHOLD, canny::HIGH_THRESHOLD);
    });
    for (name, key, ours) in [
        ("depth", "midas", ours[0]),
        ("normals", "normalbae", ours[1]),
        ("canny", "canny", edges),
    ] {
        match theirs.as_ref().and_then(|t| t[key].as_f64()) {
            Some(t) => println!("{name:<10} {ours:>10.4} {t:>18.4} {:>8.2}", ours / t),
            None => println!("{name:<10} {ours:>10.4} {:>18} {:>8}", "-", "-"),
        }
    }
    if theirs.is_none() {
        println!("(no .venv-parity: run scripts/parity/setup.sh for the controlnet_aux side)");
    }
}
