//! A folder's `scheduler/scheduler_config.json` as diffusers 0.42.1 reads it, and NicheImage's
//! scheduler swap on top of it: `Sampler.from_config(pipe.scheduler.config, **extra)`.
//!
//! What `from_config` hands a sampler: every key the base's file states (keys the base got as
//! defaults are listed in `_use_default_values` and dropped), whichever class wrote it, then
//! the swap's own kwargs (`use_karras_sigmas=True` for `dpm++2m_karras`); every other key takes
//! the sampler's own default. So a "DPM++ 2M Karras" repository hands `use_karras_sigmas` to
//! `euler` too, and an SDXL repository's `timestep_spacing="leading"` reaches every sampler.

use super::scheduler::{SchedulerError, SchedulerKind, TimestepSpacing};
use serde_json::{Map, Value, json};
use std::path::Path;

/// The largest training schedule read from a file (tables are sized by it).
const MAX_TRAIN_TIMESTEPS: u64 = 100_000;

/// The base scheduler as a pipeline holds it: its class and the keys its file states.
#[derive(Debug, Clone, PartialEq)]
pub struct BaseScheduler {
    pub class: String,
    explicit: Map<String, Value>,
}

/// Which pipeline holds the base: `StableDiffusionPipeline.__init__` rewrites a stated
/// `steps_offset` other than 1 to 1; the XL pipeline keeps the file's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holder {
    StableDiffusion,
    StableDiffusionXl,
}

impl Default for BaseScheduler {
    /// What SD 1.5 repositories ship (and diffusers' single-file loader assumes): PNDM with
    /// SD's betas and `steps_offset` 1, no `timestep_spacing`.
    fn default() -> Self {
        Self::from_json(json!({
            "_class_name": "PNDMScheduler",
            "beta_start": 0.00085,
            "beta_end": 0.012,
            "beta_schedule": "scaled_linear",
            "num_train_timesteps": 1000,
            "set_alpha_to_one": false,
            "skip_prk_steps": true,
            "steps_offset": 1,
            "trained_betas": null,
            "clip_sample": false
        }))
        .expect("a valid built-in config")
    }
}

impl BaseScheduler {
    /// What the SDXL 1.0 base repository ships: Euler, `leading` spacing, `steps_offset` 1.
    pub fn sdxl() -> Self {
        Self::from_json(json!({
            "_class_name": "EulerDiscreteScheduler",
            "beta_start": 0.00085,
            "beta_end": 0.012,
            "beta_schedule": "scaled_linear",
            "clip_sample": false,
            "interpolation_type": "linear",
            "num_train_timesteps": 1000,
            "prediction_type": "epsilon",
            "sample_max_value": 1.0,
            "set_alpha_to_one": false,
            "skip_prk_steps": true,
            "steps_offset": 1,
            "timestep_spacing": "leading",
            "trained_betas": null,
            "use_karras_sigmas": false
        }))
        .expect("a valid built-in config")
    }

    /// A parsed `scheduler_config.json` (Python's `NaN`/`Infinity` already standardised).
    pub fn from_json(value: Value) -> Result<Self, SchedulerError> {
        let Value::Object(mut map) = value else {
            return Err(SchedulerError::Config(
                "the config is not a JSON object".into(),
            ));
        };
        let class = match map.remove("_class_name") {
            Some(Value::String(s)) => s,
            None => String::new(),
            Some(other) => {
                return Err(SchedulerError::Config(format!(
                    "`_class_name` is {other}, not a string"
                )));
            }
        };
        let defaults: Vec<String> = match map.remove("_use_default_values") {
            Some(Value::Array(keys)) => keys
                .into_iter()
                .filter_map(|k| k.as_str().map(String::from))
                .collect(),
            _ => Vec::new(),
        };
        // Private keys (`_diffusers_version`, ...) never reach a sampler.
        map.retain(|k, _| !k.starts_with('_') && !defaults.contains(k));
        Ok(Self {
            class,
            explicit: map,
        })
    }

    /// Reads `path` (a `scheduler_config.json` as Python wrote it).
    pub fn from_file(path: &Path) -> Result<Self, SchedulerError> {
        let at = |e: String| SchedulerError::Config(format!("{}: {e}", path.display()));
        let text = std::fs::read_to_string(path).map_err(|e| at(e.to_string()))?;
        let value: Value =
            nicheimage_common::pyjson::from_str(&text).map_err(|e| at(e.to_string()))?;
        Self::from_json(value).map_err(|e| at(e.to_string()))
    }

    /// The base as `holder`'s constructor leaves it.
    pub fn held_by(mut self, holder: Holder) -> Self {
        if holder == Holder::StableDiffusion
            && self
                .explicit
                .get("steps_offset")
                .is_some_and(|v| v.as_f64() != Some(1.0))
        {
            self.explicit.insert("steps_offset".into(), json!(1));
        }
        self
    }

    /// The base as a JSON object, as a folder writer saves it.
    pub fn to_json(&self) -> Value {
        let mut map = self.explicit.clone();
        map.insert("_class_name".into(), json!(self.class));
        Value::Object(map)
    }

    /// `kind`'s class built by `from_config(base, **extra)`, checked for what this engine runs.
    pub fn sampler(&self, kind: SchedulerKind) -> Result<SamplerConfig, SchedulerError> {
        let keys = Keys {
            base: &self.explicit,
            karras: kind == SchedulerKind::DpmPp2mKarras,
            kind,
        };
        SamplerConfig::read(&keys)
    }
}

/// One sampler's view of the base: the swap's kwargs, then the base's stated keys.
struct Keys<'a> {
    base: &'a Map<String, Value>,
    karras: bool,
    kind: SchedulerKind,
}

impl Keys<'_> {
    fn get(&self, key: &str) -> Option<&Value> {
        // A stated `null` is the parameter's default (None) for every key read here.
        self.base.get(key).filter(|v| !v.is_null())
    }

    fn bad(&self, key: &str, v: &Value, why: &str) -> SchedulerError {
        SchedulerError::Config(format!("{} with `{key}` = {v}: {why}", self.kind.name()))
    }

    fn bool(&self, key: &str, default: bool) -> Result<bool, SchedulerError> {
        match self.get(key) {
            None => Ok(default),
            Some(Value::Bool(b)) => Ok(*b),
            Some(v) => Err(self.bad(key, v, "not a boolean")),
        }
    }

    fn float(&self, key: &str) -> Result<Option<f64>, SchedulerError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_f64()
                .map(Some)
                .ok_or_else(|| self.bad(key, v, "not a number")),
        }
    }

    fn string<'s>(&'s self, key: &str, default: &'s str) -> Result<&'s str, SchedulerError> {
        match self.get(key) {
            None => Ok(default),
            Some(Value::String(s)) => Ok(s),
            Some(v) => Err(self.bad(key, v, "not a string")),
        }
    }

    fn integer(&self, key: &str, default: i64) -> Result<i64, SchedulerError> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v
                .as_i64()
                .or_else(|| v.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64))
                .ok_or_else(|| self.bad(key, v, "not an integer")),
        }
    }

    /// A key this engine runs only at one value.
    fn only<T: PartialEq + std::fmt::Debug>(
        &self,
        key: &str,
        got: T,
        supported: T,
    ) -> Result<(), SchedulerError> {
        match got == supported {
            true => Ok(()),
            false => Err(SchedulerError::Config(format!(
                "{} with `{key}` = {got:?} is not supported (only {supported:?})",
                self.kind.name()
            ))),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BetaSchedule {
    Linear,
    ScaledLinear,
}

/// What the last sigma is: 0, or the training schedule's smallest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinalSigmas {
    Zero,
    SigmaMin,
}

/// One sampler's effective parameters, as diffusers' `from_config` sets them.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplerConfig {
    pub kind: SchedulerKind,
    pub num_train_timesteps: usize,
    pub beta_start: f64,
    pub beta_end: f64,
    pub beta_schedule: BetaSchedule,
    pub timestep_spacing: TimestepSpacing,
    pub steps_offset: i64,
    /// DPM-Solver and Euler: Karras sigmas over the schedule.
    pub use_karras_sigmas: bool,
    /// Euler: Karras sigmas' extremes (defaults: the spaced schedule's). DPM-Solver reads the
    /// same names from keys the base carried along.
    pub sigma_min: Option<f64>,
    pub sigma_max: Option<f64>,
    /// DPM-Solver and Euler.
    pub final_sigmas: FinalSigmas,
    /// DPM-Solver: first order at the last step when fewer than 15 steps.
    pub lower_order_final: bool,
    /// DPM-Solver: first order at the last step always.
    pub euler_at_final: bool,
    /// DPM-Solver: timesteps whose log-SNR is below this are never sampled.
    pub lambda_min_clipped: f64,
}

impl SamplerConfig {
    fn read(k: &Keys) -> Result<Self, SchedulerError> {
        let kind = k.kind;
        let dpm = matches!(kind, SchedulerKind::DpmPp2m | SchedulerKind::DpmPp2mKarras);
        let euler = kind == SchedulerKind::Euler;
        let num_train = k.integer("num_train_timesteps", 1000)?;
        let num_train_timesteps = match u64::try_from(num_train) {
            Ok(n @ 2..=MAX_TRAIN_TIMESTEPS) => n as usize,
            _ => {
                return Err(k.bad(
                    "num_train_timesteps",
                    &json!(num_train),
                    &format!("must be 2 to {MAX_TRAIN_TIMESTEPS}"),
                ));
            }
        };
        let beta_schedule = match k.string("beta_schedule", "linear")? {
            "linear" => BetaSchedule::Linear,
            "scaled_linear" => BetaSchedule::ScaledLinear,
            other => {
                return Err(k.bad(
                    "beta_schedule",
                    &json!(other),
                    "only linear and scaled_linear are supported",
                ));
            }
        };
        let timestep_spacing = match k.string("timestep_spacing", "linspace")? {
            "linspace" => TimestepSpacing::Linspace,
            "leading" => TimestepSpacing::Leading,
            "trailing" => TimestepSpacing::Trailing,
            other => {
                return Err(k.bad(
                    "timestep_spacing",
                    &json!(other),
                    "diffusers knows linspace, leading and trailing",
                ));
            }
        };
        if let Some(v) = k.get("trained_betas") {
            return Err(k.bad("trained_betas", v, "explicit betas are not supported"));
        }
        k.only(
            "prediction_type",
            k.string("prediction_type", "epsilon")?,
            "epsilon",
        )?;
        k.only(
            "rescale_betas_zero_snr",
            k.bool("rescale_betas_zero_snr", false)?,
            false,
        )?;
        let mut config = Self {
            kind,
            num_train_timesteps,
            beta_start: k.float("beta_start")?.unwrap_or(0.0001),
            beta_end: k.float("beta_end")?.unwrap_or(0.02),
            beta_schedule,
            timestep_spacing,
            steps_offset: k.integer("steps_offset", 0)?,
            use_karras_sigmas: false,
            sigma_min: None,
            sigma_max: None,
            final_sigmas: FinalSigmas::Zero,
            lower_order_final: true,
            euler_at_final: false,
            lambda_min_clipped: f64::NEG_INFINITY,
        };
        if dpm || euler {
            config.use_karras_sigmas = k.karras || k.bool("use_karras_sigmas", false)?;
            // Carried along as hidden keys for DPM-Solver, its own parameters for Euler.
            config.sigma_min = k.float("sigma_min")?;
            config.sigma_max = k.float("sigma_max")?;
            config.final_sigmas = match k.string("final_sigmas_type", "zero")? {
                "zero" => FinalSigmas::Zero,
                "sigma_min" => FinalSigmas::SigmaMin,
                other => {
                    return Err(k.bad(
                        "final_sigmas_type",
                        &json!(other),
                        "diffusers knows zero and sigma_min",
                    ));
                }
            };
            for key in ["use_exponential_sigmas", "use_beta_sigmas"] {
                k.only(key, k.bool(key, false)?, false)?;
            }
        }
        if euler {
            k.only(
                "interpolation_type",
                k.string("interpolation_type", "linear")?,
                "linear",
            )?;
            // `continuous` only changes the timesteps of v-prediction models.
            let timestep_type = k.string("timestep_type", "discrete")?;
            if !matches!(timestep_type, "discrete" | "continuous") {
                return Err(k.bad("timestep_type", &json!(timestep_type), "unknown"));
            }
        }
        if dpm {
            config.lower_order_final = k.bool("lower_order_final", true)?;
            config.euler_at_final = k.bool("euler_at_final", false)?;
            // -Infinity arrives standardised to the most negative finite f64.
            config.lambda_min_clipped = k.float("lambda_min_clipped")?.unwrap_or(f64::MIN);
            k.only("solver_order", k.integer("solver_order", 2)?, 2)?;
            // diffusers renames DEIS's algorithm and UniPC's solver types to its own.
            let algorithm = match k.string("algorithm_type", "dpmsolver++")? {
                "deis" => "dpmsolver++",
                other => other,
            };
            k.only("algorithm_type", algorithm, "dpmsolver++")?;
            let solver = match k.string("solver_type", "midpoint")? {
                "logrho" | "bh1" | "bh2" => "midpoint",
                other => other,
            };
            k.only("solver_type", solver, "midpoint")?;
            for key in [
                "thresholding",
                "use_lu_lambdas",
                "use_flow_sigmas",
                "use_dynamic_shifting",
            ] {
                k.only(key, k.bool(key, false)?, false)?;
            }
            if let Some(v) = k.get("variance_type") {
                return Err(k.bad("variance_type", v, "learned variances are not supported"));
            }
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base(value: Value) -> BaseScheduler {
        BaseScheduler::from_json(value).unwrap()
    }

    #[test]
    fn stated_keys_carry_over_and_defaults_do_not() {
        let b = base(json!({
            "_class_name": "DPMSolverMultistepScheduler",
            "use_karras_sigmas": true,
            "timestep_spacing": "leading",
            "steps_offset": 3,
            "_use_default_values": ["steps_offset"],
        }));
        let euler = b.sampler(SchedulerKind::Euler).unwrap();
        assert!(euler.use_karras_sigmas);
        assert_eq!(euler.timestep_spacing, TimestepSpacing::Leading);
        assert_eq!(
            euler.steps_offset, 0,
            "a default of the base is not handed on"
        );
        let a = b.sampler(SchedulerKind::EulerAncestral).unwrap();
        assert!(!a.use_karras_sigmas, "Euler ancestral has no Karras sigmas");
    }

    #[test]
    fn only_the_sd_pipeline_rewrites_a_stated_steps_offset() {
        let b = base(json!({"_class_name": "EulerDiscreteScheduler", "steps_offset": 0}));
        let sd = b.clone().held_by(Holder::StableDiffusion);
        let xl = b.held_by(Holder::StableDiffusionXl);
        assert_eq!(sd.sampler(SchedulerKind::Euler).unwrap().steps_offset, 1);
        assert_eq!(xl.sampler(SchedulerKind::Euler).unwrap().steps_offset, 0);
    }

    #[test]
    fn unsupported_values_are_named() {
        let b = base(json!({"prediction_type": "v_prediction"}));
        let err = b.sampler(SchedulerKind::Euler).unwrap_err().to_string();
        assert!(err.contains("prediction_type"), "{err}");
        let b = base(json!({"solver_type": "bh2", "algorithm_type": "deis"}));
        assert!(
            b.sampler(SchedulerKind::DpmPp2m).is_ok(),
            "renamed as diffusers does"
        );
        let b = base(json!({"num_train_timesteps": 1u64 << 40}));
        assert!(b.sampler(SchedulerKind::Euler).is_err());
    }
}
