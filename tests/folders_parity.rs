//! Diffusers folders as diffusers 0.42.1 saved them (scripts/parity/folders.py, pinned in
//! scripts/parity/requirements.txt): the seed's scheduler swap on every base scheduler, the
//! tokenizers, and (where the generated folders are present) loading and rendering each one.
#![cfg(feature = "local-infer")]

use nicheimage_tui::diffusion::scheduler::SchedulerKind;
use nicheimage_tui::diffusion::scheduler_config::{BaseScheduler, FinalSigmas, Holder};
use serde_json::Value;
use std::path::Path;

fn schedules() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/folders/schedules.json");
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
    BaseScheduler::from_json(nicheimage_tui::pyjson::from_str(&text).unwrap()).unwrap()
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
