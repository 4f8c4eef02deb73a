//! Will a replica fit its share of a GPU? An estimate from the checkpoint's parameter counts and
//! the model's default request size, checked before replicas start so that an operator sees the
//! numbers instead of a CUDA out-of-memory crash loop.

use crate::catalogue::Arch;

const GIB: f64 = (1u64 << 30) as f64;
/// The CUDA context, libtorch's workspace and the NSFW classifier.
const OVERHEAD: u64 = 700 << 20;

pub use nicheimage_common::torch::ParameterCounts;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Estimate {
    pub weights: u64,
    pub activations: u64,
    pub overhead: u64,
}

impl Estimate {
    pub fn total(&self) -> u64 {
        self.weights + self.activations + self.overhead
    }
}

/// Bytes one replica needs for `params` in fp16 (`dtype_bytes` 2) or f32 (4), generating one
/// `width` × `height` image with classifier-free guidance.
pub fn estimate(
    params: ParameterCounts,
    arch: Arch,
    width: u32,
    height: u32,
    dtype_bytes: u64,
) -> Estimate {
    // SDXL's VAE runs in f32 under fp16 (diffusers' upcast).
    let vae_bytes = match arch {
        Arch::Sdxl => 4,
        Arch::Sd15 | Arch::Flux => dtype_bytes,
    };
    let weights = (params.unet + params.text_encoders + params.controlnets) * dtype_bytes
        + params.vae * vae_bytes
        + params.annotators * 4;
    let latent_tokens = u64::from(width / 8) * u64::from(height / 8);
    // The UNet's widest level is 320 channels wide in SD 1.5 and SDXL; with its skip
    // connections, attention projections and GEGLU about 20 such tensors live at once, for a
    // batch of 2 (guidance).
    let unet = match arch {
        // FLUX: one sequence (no guidance batch) of 2×2-packed latent tokens and schnell's 256
        // text tokens, 3 072 wide, its 4× MLP and joint attention: about 24 such tensors live.
        Arch::Flux => (latent_tokens / 4 + 256) * 3072 * dtype_bytes * 24,
        Arch::Sd15 | Arch::Sdxl => 2 * latent_tokens * 320 * dtype_bytes * 20,
    };
    // The VAE decoder's last level: 128 channels at full resolution, about 3 tensors live.
    let vae = u64::from(width) * u64::from(height) * 128 * 3 * vae_bytes;
    Estimate {
        weights,
        activations: unet.max(vae),
        overhead: OVERHEAD,
    }
}

/// Refuses a placement whose estimate exceeds the replica's share of a GPU of `gpu_total`
/// bytes (shares of 1 or more get one whole GPU each: a replica runs on one device).
pub fn check_fit(model: &str, e: &Estimate, gpu_total: u64, share: f64) -> Result<(), TooLarge> {
    let budget = (gpu_total as f64 * share.min(1.0)) as u64;
    if e.total() <= budget {
        return Ok(());
    }
    Err(TooLarge {
        model: model.to_string(),
        estimate: *e,
        gpu_total,
        share,
        budget,
    })
}

/// A placement that does not fit: the numbers, for the refusal and for a smarter planner.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error(
    "model {model} needs about {:.1} GiB per replica (weights {:.1}, activations {:.1}, runtime {:.1}) but num_gpus = {share} of a {:.1} GiB GPU gives it {:.1} GiB; raise endpoint.num_gpus or lower num_replicas",
    estimate.total() as f64 / GIB,
    estimate.weights as f64 / GIB,
    estimate.activations as f64 / GIB,
    estimate.overhead as f64 / GIB,
    *gpu_total as f64 / GIB,
    *budget as f64 / GIB
)]
pub struct TooLarge {
    pub model: String,
    pub estimate: Estimate,
    pub gpu_total: u64,
    pub share: f64,
    pub budget: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    const SD15: ParameterCounts = ParameterCounts {
        unet: 859_520_964,
        vae: 83_653_863,
        text_encoders: 123_060_480,
        controlnets: 0,
        annotators: 0,
    };
    const SDXL: ParameterCounts = ParameterCounts {
        unet: 2_567_463_684,
        vae: 83_653_863,
        text_encoders: 817_844_480,
        controlnets: 0,
        annotators: 0,
    };

    #[test]
    fn sd15_fits_a_third_of_an_a100_and_sdxl_does_not_fit_a_third_of_a_24_gb_card() {
        let gib = 1u64 << 30;
        let sd15 = estimate(SD15, Arch::Sd15, 512, 768, 2);
        assert!(
            (2.5..4.5).contains(&(sd15.total() as f64 / GIB)),
            "{sd15:?}"
        );
        // NicheImage's README: three SD 1.5 replicas at 0.33 of an A100-80G.
        assert!(check_fit("DreamShaper", &sd15, 80 * gib, 0.33).is_ok());

        let sdxl = estimate(SDXL, Arch::Sdxl, 1024, 1024, 2);
        assert!(
            (7.0..10.0).contains(&(sdxl.total() as f64 / GIB)),
            "{sdxl:?}"
        );
        let err = check_fit("AnimeV3", &sdxl, 24 * gib, 0.33)
            .unwrap_err()
            .to_string();
        assert!(err.contains("AnimeV3") && err.contains("7.9 GiB"), "{err}");
        assert!(check_fit("AnimeV3", &sdxl, 24 * gib, 1.0).is_ok());
        // Two GPUs per replica still means one device's memory.
        assert!(check_fit("AnimeV3", &sdxl, 8 * gib, 2.0).is_err());
    }

    #[test]
    fn flux_schnell_needs_most_of_a_40_gb_share() {
        // black-forest-labs/FLUX.1-schnell: transformer, VAE, CLIP-L + T5-XXL.
        let flux = ParameterCounts {
            unet: 11_901_408_320,
            vae: 83_819_683,
            text_encoders: 123_060_480 + 4_762_310_656,
            controlnets: 0,
            annotators: 0,
        };
        let gib = 1u64 << 30;
        let e = estimate(flux, Arch::Flux, 1024, 1024, 2);
        assert!((31.0..36.0).contains(&(e.total() as f64 / GIB)), "{e:?}");
        assert!(check_fit("FluxSchnell", &e, 24 * gib, 1.0).is_err());
        assert!(check_fit("FluxSchnell", &e, 80 * gib, 0.5).is_ok());
        assert!(check_fit("FluxSchnell", &e, 80 * gib, 0.33).is_err());
    }

    #[test]
    fn nicheimages_controlnets_and_annotators_count_and_still_fit_a_third_of_an_a100() {
        let gib = 1u64 << 30;
        let with = ParameterCounts {
            // Three SD 1.5 ControlNets, MiDaS DPT-Hybrid and NormalBae.
            controlnets: 3 * 361_278_086,
            annotators: 122_377_985 + 72_602_752,
            ..SD15
        };
        let plain = estimate(SD15, Arch::Sd15, 512, 768, 2);
        let more = estimate(with, Arch::Sd15, 512, 768, 2);
        assert_eq!(
            more.weights - plain.weights,
            with.controlnets * 2 + with.annotators * 4
        );
        assert!(check_fit("DreamShaper", &more, 80 * gib, 0.33).is_ok());
        // A fifth of a 24 GB card holds the plain model, not the ControlNet one.
        assert!(check_fit("DreamShaper", &plain, 24 * gib, 0.2).is_ok());
        assert!(check_fit("DreamShaper", &more, 24 * gib, 0.2).is_err());
    }

    #[test]
    fn f32_weights_cost_twice_fp16() {
        let half = estimate(SD15, Arch::Sd15, 512, 512, 2);
        let full = estimate(SD15, Arch::Sd15, 512, 512, 4);
        assert_eq!(full.weights, 2 * half.weights);
    }
}
