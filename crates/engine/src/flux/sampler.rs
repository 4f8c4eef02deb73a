//! `FlowMatchEulerDiscreteScheduler` as FluxPipeline drives it for schnell: sigmas spaced
//! evenly from 1 to 1/steps (`np.linspace`, then f32), shifted, timesteps = sigma × 1000, and
//! Euler steps along the predicted velocity in f32.

use tch::{Kind, Tensor};

use super::config::FlowMatchConfig;

#[derive(Debug, Clone, PartialEq)]
pub struct FlowMatchPlan {
    /// One per step, then the final 0.
    pub sigmas: Vec<f32>,
    /// One per step.
    pub timesteps: Vec<f32>,
}

/// numpy's `linspace(start, stop, n)` in f64 (the last value is `stop` exactly).
fn linspace(start: f64, stop: f64, n: usize) -> Vec<f64> {
    match n {
        0 => Vec::new(),
        1 => vec![start],
        _ => {
            let step = (stop - start) / (n - 1) as f64;
            let mut v: Vec<f64> = (0..n).map(|i| i as f64 * step + start).collect();
            if let Some(last) = v.last_mut() {
                *last = stop;
            }
            v
        }
    }
}

impl FlowMatchPlan {
    pub fn new(config: &FlowMatchConfig, steps: usize) -> Self {
        let shift = config.shift as f32;
        let train = config.num_train_timesteps as f32;
        let raw = linspace(1.0, 1.0 / steps.max(1) as f64, steps);
        // numpy keeps the f32 array's dtype against Python floats (NEP 50).
        let sigmas: Vec<f32> = raw
            .iter()
            .map(|&s| {
                let s = s as f32;
                shift * s / (1.0 + (shift - 1.0) * s)
            })
            .collect();
        let timesteps = sigmas.iter().map(|s| s * train).collect();
        let mut sigmas = sigmas;
        sigmas.push(0.0);
        Self { sigmas, timesteps }
    }

    /// One Euler step from step `i`: `sample + (sigma[i+1] - sigma[i]) * velocity` in f32,
    /// returned in the velocity's dtype.
    pub fn step(&self, i: usize, velocity: &Tensor, sample: &Tensor) -> Tensor {
        let (sigma, next) = (self.sigmas[i], self.sigmas[i + 1]);
        let dt = Tensor::from(next - sigma).to_device(velocity.device());
        (sample.to_kind(Kind::Float) + dt * velocity).to_kind(velocity.kind())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schnell_schedules_match_diffusers() {
        // FlowMatchEulerDiscreteScheduler(shift=1.0).set_timesteps(sigmas=np.linspace(1, 1/n, n)).
        let c = FlowMatchConfig::default();
        let four = FlowMatchPlan::new(&c, 4);
        assert_eq!(four.sigmas, vec![1.0, 0.75, 0.5, 0.25, 0.0]);
        assert_eq!(four.timesteps, vec![1000.0, 750.0, 500.0, 250.0]);
        let six = FlowMatchPlan::new(&c, 6);
        assert_eq!(six.sigmas[1], 0.833_333_3_f32);
        assert_eq!(six.sigmas[5], 0.166_666_67_f32);
        assert_eq!(FlowMatchPlan::new(&c, 1).sigmas, vec![1.0, 0.0]);
        let shifted = FlowMatchPlan::new(&FlowMatchConfig { shift: 3.0, ..c }, 2);
        assert_eq!(shifted.sigmas, vec![1.0, 0.75, 0.0]);
    }
}
