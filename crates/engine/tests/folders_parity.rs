//! Diffusers folders as diffusers 0.42.1 saved them (scripts/parity/folders.py, pinned in
//! scripts/parity/requirements.txt): NicheImage's scheduler swap on every base scheduler, the
//! tokenizers, and (where the generated folders are present) loading and rendering each one.

use nicheimage_engine::scheduler::SchedulerKind;
use nicheimage_engine::scheduler_config::{BaseScheduler, FinalSigmas, Holder};
use serde_json::Value;

fn schedules() -> Value {
    let path = nicheimage_test_support::root().join("tests/fixtures/folders/schedules.json");
    let text = std::fs::read_to_string(&path).expect("fixture present");
    // The fixture writes Python's non-finite floats as strings; the bases as diffusers does.
    serde_json::from_str(&text).expect("valid fixture")
}

/// The fixture's base file with its "-Infinity" strings back as Python writes them.
fn base(file: &Value) -> BaseScheduler {
    let text = serde_json::to_string(file)
        .unwrap()
        .replace("\"-Infinity\"", "-Infinity")
        .replace("\"Infinity\"", "Infinity");
    BaseScheduler::from_json(nicheimage_common::pyjson::from_str(&text).unwrap()).unwrap()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

#[test]
fn every_sampler_on_every_base_is_what_from_config_builds() {
    let fixture = schedules();
    let bases = &fixture["bases"];
    let rows = fixture["schedules"].as_array().unwrap();
    assert!(rows.len() >= 900, "{} schedules", rows.len());
    let mut checked = 0;
    for row in rows {
        let holder = match row["pipeline"].as_str().unwrap() {
            "sd15" => Holder::StableDiffusion,
            _ => Holder::StableDiffusionXl,
        };
        let name = row["base"].as_str().unwrap();
        let kind: SchedulerKind = row["sampler"].as_str().unwrap().parse().unwrap();
        let steps = row["steps"].as_u64().unwrap() as usize;
        let what = format!("{} {name} {} {steps} steps", row["pipeline"], kind.name());
        let config = base(&bases[name])
            .held_by(holder)
            .sampler(kind)
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        let want = &row["config"];
        assert_eq!(
            config.timestep_spacing,
            serde_json::from_value(want["timestep_spacing"].clone()).unwrap(),
            "{what}: timestep_spacing"
        );
        assert_eq!(
            config.steps_offset,
            want["steps_offset"].as_i64().unwrap(),
            "{what}: steps_offset"
        );
        if let Some(karras) = want.get("use_karras_sigmas") {
            assert_eq!(
                config.use_karras_sigmas,
                karras.as_bool().unwrap(),
                "{what}"
            );
        }
        if let Some(last) = want.get("final_sigmas_type") {
            let ours = match config.final_sigmas {
                FinalSigmas::Zero => "zero",
                FinalSigmas::SigmaMin => "sigma_min",
            };
            assert_eq!(ours, last.as_str().unwrap(), "{what}: final_sigmas_type");
        }
        if let Some(lower) = want.get("lower_order_final") {
            assert_eq!(config.lower_order_final, lower.as_bool().unwrap(), "{what}");
            assert_eq!(
                config.euler_at_final,
                want["euler_at_final"].as_bool().unwrap(),
                "{what}"
            );
        }
        let plan = config.plan(steps).unwrap();
        let want_t = floats(&row["timesteps"]);
        if config.use_karras_sigmas && kind == SchedulerKind::Euler {
            // Fractional timesteps from log-sigma interpolation over numpy's float32 log table,
            // which numpy's SIMD log computes to within 4 ulp (and differently per CPU): a
            // few float32 ulp of 1000 either way.
            assert_eq!(plan.timesteps.len(), want_t.len(), "{what}: timesteps");
            for (got, want) in plan.timesteps.iter().zip(&want_t) {
                assert!(
                    (got - want).abs() <= 2e-4,
                    "{what}: timestep {got} vs {want}"
                );
            }
        } else {
            assert_eq!(plan.timesteps, want_t, "{what}: timesteps");
        }
        let want_sigmas = floats(&row["sigmas"]);
        assert_eq!(plan.sigmas.len(), want_sigmas.len(), "{what}: sigmas");
        for (got, want) in plan.sigmas.iter().zip(&want_sigmas) {
            assert!(
                (f64::from(*got) - want).abs() <= 1e-6 * want.abs(),
                "{what}: sigma {got} vs {want}"
            );
        }
        let init = row["init_noise_sigma"].as_f64().unwrap();
        assert!(
            (f64::from(plan.init_noise_sigma) - init).abs() <= 1e-6 * init,
            "{what}: init_noise_sigma {} vs {init}",
            plan.init_noise_sigma
        );
        checked += 1;
    }
    assert_eq!(checked, rows.len());
}

mod rendered {
    use super::*;
    use nicheimage_common::image::RgbImage;
    use nicheimage_common::imagehash::{Difference, difference};
    use nicheimage_engine::pipeline::{StableDiffusion, Txt2Img};
    use tch::{Device, Kind};

    /// Every folder loads as the endpoint loads it; every request renders as diffusers
    /// rendered it (average-hash distance 0, at most 2/255 a channel) with the same tokens.
    #[test]
    fn every_generated_folder_loads_and_renders_as_diffusers_does() {
        let Some(dir) = nicheimage_test_support::generated("folders", "NICHEIMAGE_PARITY_FOLDERS")
        else {
            return;
        };
        let text = std::fs::read_to_string(dir.join("manifest.json")).unwrap();
        let manifest: Value = serde_json::from_str(&text).unwrap();
        let folders = manifest["folders"].as_array().unwrap();
        assert!(folders.len() >= 40, "{} folders", folders.len());
        let mut rows = Vec::new();
        let mut failures = Vec::new();
        for folder in folders {
            let name = folder["name"].as_str().unwrap();
            let path = dir.join("folders").join(name);
            let sd = match StableDiffusion::load(&path, None, Device::Cpu, Kind::Float) {
                Ok(sd) => sd,
                Err(e) => {
                    failures.push(format!("{name}: does not load: {e}"));
                    continue;
                }
            };
            for (i, req) in folder["requests"].as_array().unwrap().iter().enumerate() {
                let sampler = req["sampler"].as_str().unwrap();
                let what = format!("{name} #{i} {sampler}");
                for (field, text) in [
                    ("prompt", req["prompt"].as_str().unwrap()),
                    (
                        "negative_prompt",
                        req["negative_prompt"].as_str().unwrap_or(""),
                    ),
                ] {
                    let (first, second) = sd.token_ids(text);
                    if first != nicheimage_test_support::ids(&req["tokenizer_ids"][field]) {
                        failures.push(format!("{what}: tokenizer ids of the {field}"));
                    }
                    if let Some(second) = second
                        && second != nicheimage_test_support::ids(&req["tokenizer_2_ids"][field])
                    {
                        failures.push(format!("{what}: tokenizer_2 ids of the {field}"));
                    }
                }
                let request = Txt2Img {
                    prompt: req["prompt"].as_str().unwrap().into(),
                    negative_prompt: req["negative_prompt"].as_str().map(String::from),
                    seed: req["seed"].as_u64().unwrap(),
                    num_inference_steps: req["steps"].as_u64().unwrap() as usize,
                    guidance_scale: req["guidance_scale"].as_f64().unwrap(),
                    width: req["width"].as_i64().unwrap(),
                    height: req["height"].as_i64().unwrap(),
                    scheduler: sampler.parse().unwrap(),
                };
                let ours = match sd.txt2img(&request, false) {
                    Ok(g) => g.image,
                    Err(e) => {
                        failures.push(format!("{what}: {e}"));
                        continue;
                    }
                };
                let png = std::fs::read(dir.join(req["png"].as_str().unwrap())).unwrap();
                let want = RgbImage::from_png(&png).unwrap();
                let Some(Difference {
                    max_channel: worst,
                    hash_distance: distance,
                }) = difference(&ours, &want)
                else {
                    panic!("{what}: not the size diffusers drew");
                };
                if worst > 2 || distance > 0 {
                    failures.push(format!(
                        "{what}: max difference {worst}/255, distance {distance}"
                    ));
                }
                rows.push(serde_json::json!({
                    "folder": name, "layout": folder["layout"], "base": folder["base"],
                    "arch": folder["arch"], "sampler": sampler, "max_diff": worst, "distance": distance,
                }));
            }
        }
        // The table for the record (layout x base x sampler -> worst difference and distance).
        let out = dir.join("results.json");
        std::fs::write(&out, serde_json::to_string_pretty(&rows).unwrap()).unwrap();
        eprintln!(
            "{} renders compared; table in {}",
            rows.len(),
            out.display()
        );
        assert!(
            failures.is_empty(),
            "{} failures:\n{}",
            failures.len(),
            failures.join("\n")
        );
    }
}
