//! Samplers, as pure functions of their config, matching diffusers 0.42 step for step:
//! `DPMSolverMultistepScheduler` (dpmsolver++, order 2, midpoint; with or without Karras sigmas),
//! `EulerDiscreteScheduler` and `EulerAncestralDiscreteScheduler`.
//!
//! The beta/alpha tables are computed with libtorch in float32 exactly as diffusers does; the
//! numpy parts of `set_timesteps` are reproduced in f64 with numpy's rounding and interpolation.

use serde::Deserialize;
use tch::{Device, Kind, Tensor};

pub use super::scheduler_config::{BetaSchedule, FinalSigmas, SamplerConfig};
pub use nicheimage_common::scheduler::{SchedulerKind, SchedulerNameError};

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SchedulerError {
    #[error(transparent)]
    Name(#[from] SchedulerNameError),
    #[error("num_inference_steps must be at least 1")]
    NoSteps,
    #[error("unsupported scheduler config: {0}")]
    Config(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TimestepSpacing {
    Linspace,
    Leading,
    Trailing,
}

/// The training schedule's tables, in float32 as torch computes them.
struct Train {
    /// `sqrt((1 - alphas_cumprod) / alphas_cumprod)` per training step.
    sigmas: Vec<f32>,
    /// DPM-Solver's log-SNR per training step: `log(sqrt(a)) - log(sqrt(1 - a))`.
    lambdas: Vec<f32>,
}

impl SamplerConfig {
    fn train(&self) -> Result<Train, SchedulerError> {
        let n = self.num_train_timesteps as i64;
        let opts = (Kind::Float, Device::Cpu);
        let betas = match self.beta_schedule {
            BetaSchedule::ScaledLinear => {
                Tensor::linspace(self.beta_start.sqrt(), self.beta_end.sqrt(), n, opts)
                    .pow_tensor_scalar(2)
            }
            BetaSchedule::Linear => Tensor::linspace(self.beta_start, self.beta_end, n, opts),
        };
        let alphas_cumprod = (Tensor::ones_like(&betas) - betas).cumprod(0, Kind::Float);
        let one_minus = Tensor::ones_like(&alphas_cumprod) - &alphas_cumprod;
        let sigmas = (&one_minus / &alphas_cumprod).pow_tensor_scalar(0.5);
        let lambdas = alphas_cumprod.sqrt().log() - one_minus.sqrt().log();
        let vec =
            |t: &Tensor| Vec::<f32>::try_from(t).map_err(|e| SchedulerError::Config(e.to_string()));
        let train = Train {
            sigmas: vec(&sigmas)?,
            lambdas: vec(&lambdas)?,
        };
        if train.sigmas.iter().any(|s| !s.is_finite() || *s <= 0.0) {
            return Err(SchedulerError::Config(format!(
                "beta_start {} / beta_end {} give a schedule without finite positive sigmas",
                self.beta_start, self.beta_end
            )));
        }
        Ok(train)
    }
}

/// The timesteps fed to the UNet and the sigma per step (one more sigma than timesteps).
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub timesteps: Vec<f64>,
    pub sigmas: Vec<f32>,
    pub init_noise_sigma: f32,
    /// DPM-Solver: the last step is first order (`euler_at_final`, `lower_order_final` under
    /// 15 steps, or a final sigma of zero).
    pub first_order_last: bool,
}

/// numpy's round: half to even.
fn round_half_even(x: f64) -> f64 {
    x.round_ties_even()
}

/// `np.interp(x, arange(len(fp)), fp)`.
fn interp(x: f64, fp: &[f32]) -> f64 {
    let last = fp.len() - 1;
    if x <= 0.0 {
        return fp[0] as f64;
    }
    if x >= last as f64 {
        return fp[last] as f64;
    }
    let j = x.floor() as usize;
    if j as f64 == x {
        return fp[j] as f64;
    }
    let slope = fp[j + 1] as f64 - fp[j] as f64;
    slope * (x - j as f64) + fp[j] as f64
}

/// `np.linspace(start, stop, num)` in f64.
fn linspace(start: f64, stop: f64, num: usize) -> Vec<f64> {
    match num {
        0 => vec![],
        1 => vec![start],
        _ => {
            let step = (stop - start) / (num - 1) as f64;
            (0..num)
                .map(|i| {
                    if i == num - 1 {
                        stop
                    } else {
                        start + i as f64 * step
                    }
                })
                .collect()
        }
    }
}

/// Karras et al. (2022) sigmas between the schedule's extremes, rho = 7.
fn karras(sigma_min: f64, sigma_max: f64, steps: usize) -> Vec<f64> {
    let rho = 7.0;
    let (min_inv, max_inv) = (sigma_min.powf(1.0 / rho), sigma_max.powf(1.0 / rho));
    linspace(0.0, 1.0, steps)
        .into_iter()
        .map(|r| (max_inv + r * (min_inv - max_inv)).powf(rho))
        .collect()
}

/// The (fractional) training timestep whose sigma is `sigma`, by log-sigma interpolation.
fn sigma_to_t(sigma: f64, log_sigmas: &[f32]) -> f64 {
    let log_sigma = sigma.max(1e-10).ln();
    let n = log_sigmas.len();
    // Last index whose log-sigma is <= log_sigma (0 when none), at most n - 2.
    let low_idx = log_sigmas
        .iter()
        .rposition(|&l| log_sigma - l as f64 >= 0.0)
        .unwrap_or(0)
        .min(n - 2);
    let (low, high) = (log_sigmas[low_idx], log_sigmas[low_idx + 1]);
    // numpy subtracts the two float32 table entries in float32.
    let w = ((f64::from(low) - log_sigma) / f64::from(low - high)).clamp(0.0, 1.0);
    (1.0 - w) * low_idx as f64 + w * (low_idx + 1) as f64
}

impl SamplerConfig {
    /// diffusers' `set_timesteps(steps)` for this sampler.
    pub fn plan(&self, steps: usize) -> Result<Plan, SchedulerError> {
        if steps == 0 {
            return Err(SchedulerError::NoSteps);
        }
        let train = self.train()?;
        let log_sigmas: Vec<f32> = train.sigmas.iter().map(|s| s.ln()).collect();
        let t_max = self.num_train_timesteps;
        let offset = self.steps_offset as f64;
        let sigma_last = match self.final_sigmas {
            FinalSigmas::Zero => 0.0,
            FinalSigmas::SigmaMin => train.sigmas[0],
        };
        let karras_between = |sigma_min: f64, sigma_max: f64| {
            karras(
                self.sigma_min.unwrap_or(sigma_min),
                self.sigma_max.unwrap_or(sigma_max),
                steps,
            )
        };
        match self.kind {
            SchedulerKind::DpmPp2m | SchedulerKind::DpmPp2mKarras => {
                // Timesteps whose log-SNR is below lambda_min_clipped are cut from the top.
                let clipped = train
                    .lambdas
                    .iter()
                    .rev()
                    .take_while(|&&l| f64::from(l) < self.lambda_min_clipped)
                    .count();
                let last = t_max - clipped;
                let mut timesteps: Vec<f64> = match self.timestep_spacing {
                    TimestepSpacing::Linspace => {
                        let mut v: Vec<f64> = linspace(0.0, last as f64 - 1.0, steps + 1)
                            .into_iter()
                            .map(round_half_even)
                            .collect();
                        v.reverse();
                        v.pop();
                        v
                    }
                    TimestepSpacing::Leading => {
                        let ratio = (last / (steps + 1)) as f64;
                        let mut v: Vec<f64> =
                            (0..=steps).map(|i| i as f64 * ratio + offset).collect();
                        v.reverse();
                        v.pop();
                        v
                    }
                    TimestepSpacing::Trailing => trailing(last, t_max as f64 / steps as f64),
                };
                let mut sigmas: Vec<f64>;
                if self.use_karras_sigmas {
                    sigmas = karras_between(train.sigmas[0] as f64, train.sigmas[t_max - 1] as f64);
                    timesteps = sigmas
                        .iter()
                        .map(|&s| round_half_even(sigma_to_t(s, &log_sigmas)))
                        .collect();
                } else {
                    sigmas = timesteps
                        .iter()
                        .map(|&t| interp(t, &train.sigmas))
                        .collect();
                }
                sigmas.push(sigma_last as f64);
                let n = timesteps.len();
                Ok(Plan {
                    timesteps,
                    sigmas: sigmas.into_iter().map(|s| s as f32).collect(),
                    init_noise_sigma: 1.0,
                    first_order_last: self.euler_at_final
                        || (self.lower_order_final && n < 15)
                        || self.final_sigmas == FinalSigmas::Zero,
                })
            }
            SchedulerKind::Euler | SchedulerKind::EulerAncestral => {
                let mut timesteps: Vec<f64> = match self.timestep_spacing {
                    TimestepSpacing::Linspace => {
                        // numpy computes this linspace in float32.
                        let mut v: Vec<f64> = linspace(0.0, (t_max - 1) as f64, steps)
                            .into_iter()
                            .map(|x| x as f32 as f64)
                            .collect();
                        v.reverse();
                        v
                    }
                    TimestepSpacing::Leading => {
                        let ratio = (t_max / steps) as f64;
                        let mut v: Vec<f64> =
                            (0..steps).map(|i| i as f64 * ratio + offset).collect();
                        v.reverse();
                        v
                    }
                    TimestepSpacing::Trailing => trailing(t_max, t_max as f64 / steps as f64),
                };
                let mut spaced: Vec<f64> = timesteps
                    .iter()
                    .map(|&t| interp(t, &train.sigmas))
                    .collect();
                if self.use_karras_sigmas {
                    // Karras sigmas between the spaced schedule's ends, at fractional timesteps.
                    let (low, high) = (spaced[spaced.len() - 1], spaced[0]);
                    spaced = karras_between(low, high);
                    timesteps = spaced
                        .iter()
                        .map(|&s| sigma_to_t(s, &log_sigmas) as f32 as f64)
                        .collect();
                }
                let mut sigmas: Vec<f32> = spaced.into_iter().map(|s| s as f32).collect();
                // Euler ancestral always ends at zero.
                sigmas.push(match self.kind {
                    SchedulerKind::Euler => sigma_last,
                    _ => 0.0,
                });
                let max = sigmas.iter().copied().fold(f32::MIN, f32::max);
                let init_noise_sigma = match self.timestep_spacing {
                    TimestepSpacing::Linspace | TimestepSpacing::Trailing => max,
                    TimestepSpacing::Leading => (max * max + 1.0).powf(0.5),
                };
                Ok(Plan {
                    timesteps,
                    sigmas,
                    init_noise_sigma,
                    first_order_last: false,
                })
            }
        }
    }
}

/// `np.arange(start, 0, -ratio).round() - 1`.
fn trailing(start: usize, ratio: f64) -> Vec<f64> {
    let mut v = Vec::new();
    let mut i = 0usize;
    loop {
        let x = start as f64 - i as f64 * ratio;
        if x <= 0.0 {
            break;
        }
        v.push(round_half_even(x) - 1.0);
        i += 1;
    }
    v
}

/// Steps one denoising run; holds the multistep history.
pub struct Sampler {
    kind: SchedulerKind,
    plan: Plan,
    step_index: usize,
    previous_x0: Option<Tensor>,
    lower_order_nums: usize,
}

fn alpha_sigma(sigma: f32) -> (f32, f32) {
    let alpha = 1.0 / (sigma * sigma + 1.0).powf(0.5);
    (alpha, sigma * alpha)
}

fn lambda(alpha: f32, sigma: f32) -> f32 {
    alpha.ln() - sigma.ln()
}

impl Sampler {
    pub fn new(kind: SchedulerKind, plan: Plan) -> Self {
        Self {
            kind,
            plan,
            step_index: 0,
            previous_x0: None,
            lower_order_nums: 0,
        }
    }

    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// Begins the run at step `index` of the plan, as img2img's `set_begin_index` does.
    pub fn begin_at(mut self, index: usize) -> Self {
        self.step_index = index;
        self
    }

    /// The timesteps still to run.
    pub fn remaining_timesteps(&self) -> &[f64] {
        &self.plan.timesteps[self.step_index.min(self.plan.timesteps.len())..]
    }

    /// diffusers' `add_noise` at the current step: `original` noised to this step's sigma.
    /// diffusers casts sigma to the samples' dtype first and computes alpha and sigma_t in it,
    /// so in fp16 they are rounded at each operation; the tensor arithmetic here does the same.
    pub fn add_noise(&self, original: &Tensor, noise: &Tensor) -> Tensor {
        let sigma = Tensor::from_slice(&[self.plan.sigmas[self.step_index]])
            .to_kind(original.kind())
            .to_device(original.device());
        match self.kind {
            SchedulerKind::DpmPp2m | SchedulerKind::DpmPp2mKarras => {
                let alpha_t = ((&sigma * &sigma) + 1.0)
                    .pow_tensor_scalar(0.5)
                    .reciprocal();
                let sigma_t = &sigma * &alpha_t;
                original * alpha_t + noise * sigma_t
            }
            SchedulerKind::Euler | SchedulerKind::EulerAncestral => original + noise * sigma,
        }
    }

    /// Euler variants divide the UNet input by sqrt(sigma² + 1); DPM-Solver leaves it.
    pub fn scale_model_input(&self, sample: &Tensor) -> Tensor {
        match self.kind {
            SchedulerKind::Euler | SchedulerKind::EulerAncestral => {
                let sigma = self.plan.sigmas[self.step_index];
                sample / f64::from((sigma * sigma + 1.0).powf(0.5))
            }
            _ => sample.shallow_clone(),
        }
    }

    /// One step from `sample` given the guided noise prediction; returns the next sample in
    /// the prediction's dtype. Euler ancestral draws its noise from libtorch's global CPU
    /// generator, as NicheImage's pipeline does with `torch.manual_seed`.
    pub fn step(&mut self, eps: &Tensor, sample: &Tensor) -> Tensor {
        let i = self.step_index;
        let n = self.plan.timesteps.len();
        let sigmas = &self.plan.sigmas;
        let out = match self.kind {
            SchedulerKind::DpmPp2m | SchedulerKind::DpmPp2mKarras => {
                let (alpha_s0, sigma_s0) = alpha_sigma(sigmas[i]);
                // The data prediction x0 = (x - sigma_t * eps) / alpha_t, in the model dtype.
                let x0 = (sample - eps * f64::from(sigma_s0)) / f64::from(alpha_s0);
                let sample = sample.to_kind(Kind::Float);
                let lower_order_final = i + 1 == n && self.plan.first_order_last;
                let (alpha_t, sigma_t) = alpha_sigma(sigmas[i + 1]);
                let h = lambda(alpha_t, sigma_t) - lambda(alpha_s0, sigma_s0);
                let coef = alpha_t * ((-h).exp() - 1.0);
                let ratio = sigma_t / sigma_s0;
                let prev = match &self.previous_x0 {
                    Some(m1) if self.lower_order_nums >= 1 && !lower_order_final => {
                        let (alpha_s1, sigma_s1) = alpha_sigma(sigmas[i - 1]);
                        let h0 = lambda(alpha_s0, sigma_s0) - lambda(alpha_s1, sigma_s1);
                        let r0 = h0 / h;
                        let d1 = (&x0 - m1) * f64::from(1.0 / r0);
                        &sample * f64::from(ratio)
                            - &x0 * f64::from(coef)
                            - d1 * f64::from(0.5 * coef)
                    }
                    _ => &sample * f64::from(ratio) - &x0 * f64::from(coef),
                };
                if self.lower_order_nums < 2 {
                    self.lower_order_nums += 1;
                }
                let prev = prev.to_kind(eps.kind());
                self.previous_x0 = Some(x0);
                prev
            }
            SchedulerKind::Euler => {
                let sample = sample.to_kind(Kind::Float);
                let sigma = f64::from(sigmas[i]);
                let x0 = &sample - eps * sigma;
                let derivative = (&sample - x0) / sigma;
                let dt = f64::from(sigmas[i + 1] - sigmas[i]);
                (sample + derivative * dt).to_kind(eps.kind())
            }
            SchedulerKind::EulerAncestral => {
                let sample = sample.to_kind(Kind::Float);
                let (from, to) = (sigmas[i], sigmas[i + 1]);
                let x0 = &sample - eps * f64::from(from);
                let up = (to * to * (from * from - to * to) / (from * from)).powf(0.5);
                let down = (to * to - up * up).powf(0.5);
                let derivative = (&sample - x0) / f64::from(from);
                let prev = sample + derivative * f64::from(down - from);
                let noise =
                    Tensor::randn(eps.size(), (eps.kind(), Device::Cpu)).to_device(eps.device());
                (prev + noise * f64::from(up)).to_kind(eps.kind())
            }
        };
        self.step_index += 1;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn karras_reference_vector() {
        // From the exactness spec (diffusers 0.42, SD 1.5 betas, 4 steps).
        let p = super::super::scheduler_config::BaseScheduler::default()
            .sampler(SchedulerKind::DpmPp2mKarras)
            .unwrap()
            .plan(4)
            .unwrap();
        assert_eq!(p.timesteps, vec![999.0, 687.0, 146.0, 0.0]);
        let want = [14.6146, 3.16861, 0.446921, 0.0291675, 0.0];
        for (got, want) in p.sigmas.iter().zip(want) {
            assert!(
                (*got as f64 - want).abs() <= 1e-5 * want.max(1e-3),
                "{got} vs {want}"
            );
        }
        assert_eq!(p.init_noise_sigma, 1.0);
    }

    #[test]
    fn numpy_rounding_and_interp() {
        assert_eq!(round_half_even(2.5), 2.0);
        assert_eq!(round_half_even(3.5), 4.0);
        assert_eq!(round_half_even(-0.5), -0.0);
        assert_eq!(interp(1.5, &[0.0, 1.0, 3.0]), 2.0);
        assert_eq!(trailing(1000, 250.0), vec![999.0, 749.0, 499.0, 249.0]);
    }
}
