//! FLUX.1-schnell against diffusers 0.42.1: tiny random pipelines saved by diffusers itself
//! (scripts/parity/flux.py, run by scripts/parity/flux.sh into target/parity-flux), rendered by
//! our engine from the folder (and from the transformer's original single file beside it) as
//! diffusers rendered them: the same CLIP and T5 token ids, the same schedule, at most 2/255 a
//! channel and average-hash distance 0.

use std::path::Path;

use nicheimage_common::image::RgbImage;
use nicheimage_common::imagehash::{Difference, difference};
use nicheimage_engine::flux::sampler::FlowMatchPlan;
use nicheimage_engine::flux::{FluxPipeline, FluxRequest};
use serde_json::Value;
use tch::{Device, Kind};

/// Our image against diffusers' `images/<image>.png`.
fn against(dir: &Path, image: &str, ours: &RgbImage, what: &str) -> Difference {
    let png = std::fs::read(dir.join(format!("images/{image}.png"))).unwrap();
    difference(ours, &RgbImage::from_png(&png).unwrap())
        .unwrap_or_else(|| panic!("{what}: not the size diffusers drew"))
}

#[test]
fn tiny_flux_pipelines_render_as_diffusers_does() {
    let Some(dir) = nicheimage_test_support::generated("flux", "NICHEIMAGE_PARITY_FLUX") else {
        return;
    };
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
    let started = std::time::Instant::now();
    let (mut requests, mut worst, mut long_prompts, mut half_requests) = (0, 0u8, 0, 0);
    for case in manifest["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let folder = dir.join("folders").join(name);
        let from_folder = FluxPipeline::load(&folder, Device::Cpu, Kind::Float)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        // The transformer from the repository's own single file, the rest from the folder.
        let single = dir
            .join("folders")
            .join(case["transformer_single_file"].as_str().unwrap());
        let from_single = FluxPipeline::load_with(&folder, Some(&single), Device::Cpu, Kind::Float)
            .unwrap_or_else(|e| panic!("{name} single file: {e}"));
        // Every prompt's ids, the folder's T5 tokenizer.json as transformers 5 or 4 wrote it.
        for t in case["tokens"].as_array().unwrap() {
            let prompt = t["prompt"].as_str().unwrap();
            let (clip, t5) = from_folder.token_ids(prompt).unwrap();
            assert_eq!(
                clip,
                nicheimage_test_support::ids(&t["clip"]),
                "{name}: CLIP ids of {prompt:?}"
            );
            assert_eq!(
                t5,
                nicheimage_test_support::ids(&t["t5"]),
                "{name}: T5 ids of {prompt:?}"
            );
        }
        // The half precisions diffusers rendered some of this case's requests in, each loaded once.
        let mut halves: Vec<(&str, FluxPipeline)> = Vec::new();
        for r in case["requests"].as_array().unwrap() {
            for dtype in r["half"].as_array().map(Vec::as_slice).unwrap_or_default() {
                let dtype = dtype.as_str().unwrap();
                if halves.iter().all(|(d, _)| *d != dtype) {
                    let kind = if dtype == "fp16" {
                        Kind::Half
                    } else {
                        Kind::BFloat16
                    };
                    halves.push((
                        dtype,
                        FluxPipeline::load(&folder, Device::Cpu, kind).unwrap(),
                    ));
                }
            }
        }
        for (i, r) in case["requests"].as_array().unwrap().iter().enumerate() {
            // Every request from the folder, the first also through the single file.
            let pipe = if i == 0 { &from_single } else { &from_folder };
            let what = format!("{name} request {i}");
            let prompt = r["prompt"].as_str().unwrap();
            let (clip, t5) = pipe.token_ids(prompt).unwrap();
            assert_eq!(
                clip,
                nicheimage_test_support::ids(&r["clip_ids"]),
                "{what}: CLIP ids"
            );
            assert_eq!(
                t5,
                nicheimage_test_support::ids(&r["t5_ids"]),
                "{what}: T5 ids"
            );
            long_prompts += usize::from(t5.last() != Some(&0));
            let steps = r["steps"].as_u64().unwrap() as usize;
            let plan = FlowMatchPlan::new(&pipe.config.scheduler, steps);
            let sigmas: Vec<f32> = r["sigmas"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
                .collect();
            assert_eq!(plan.sigmas, sigmas, "{what}: sigmas");
            let req = FluxRequest {
                prompt: prompt.into(),
                seed: r["seed"].as_u64().unwrap(),
                steps,
                width: r["width"].as_i64().unwrap(),
                height: r["height"].as_i64().unwrap(),
            };
            let ours = pipe.txt2img(&req).unwrap_or_else(|e| panic!("{what}: {e}"));
            let Difference {
                max_channel: max,
                hash_distance: d,
            } = against(&dir, &format!("{name}/{i}"), &ours, &what);
            assert!(
                max <= 2 && d == 0,
                "{what}: max diff {max}, hash distance {d}"
            );
            worst = worst.max(max);
            requests += 1;
            // Half precision, on the CPU as diffusers rendered it there.
            for dtype in r["half"].as_array().map(Vec::as_slice).unwrap_or_default() {
                let dtype = dtype.as_str().unwrap();
                let (_, pipe) = halves.iter().find(|(d, _)| *d == dtype).unwrap();
                let ours = pipe.txt2img(&req).unwrap();
                // Rounding in half precision can move a pixel by one level, which can flip an
                // average-hash bit where a cell sits on the mean: at most one bit here.
                let Difference {
                    max_channel: max,
                    hash_distance: d,
                } = against(&dir, &format!("{name}/{dtype}-{i}"), &ours, &what);
                assert!(
                    max <= 2 && d <= 1,
                    "{what} in {dtype}: max diff {max}, hash distance {d}"
                );
                eprintln!("{what} in {dtype}: max diff {max}, hash distance {d}");
                half_requests += 1;
            }
        }
    }
    assert!(
        half_requests >= 8,
        "{half_requests} half-precision requests"
    );
    assert!(requests >= 16, "{requests} requests");
    assert!(long_prompts >= 1, "no prompt reached T5's 256 tokens");
    eprintln!(
        "{requests} FLUX requests over {} pipelines (and {half_requests} in fp16 and bf16): max diff {worst}/255, hash distance 0, {:.1}s",
        manifest["cases"].as_array().unwrap().len(),
        started.elapsed().as_secs_f64()
    );
}
