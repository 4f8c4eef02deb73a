//! A checkpoint, loaded as what it is: Stable Diffusion (1.x or XL, a single file or a diffusers
//! folder) or FLUX.1-schnell (a diffusers folder). The replica and `generate` serve either.

use std::path::Path;

use nicheimage_common::image::RgbImage;
use nicheimage_common::torch::DtypeChoice;
use tch::{Device, Kind};

use crate::flux::config::FluxConfig;
use crate::flux::{FluxPipeline, FluxRequest};
use crate::pipeline::{PipelineError, StableDiffusion, Txt2Img};

pub enum Model {
    StableDiffusion(Box<StableDiffusion>),
    Flux(Box<FluxPipeline>),
}

/// Whether `checkpoint` is a FLUX folder.
pub fn is_flux(checkpoint: &Path) -> bool {
    checkpoint.is_dir() && FluxConfig::is_flux_folder(checkpoint)
}

/// The FLUX folder and the transformer file, when `checkpoint` is FLUX: a folder, or the
/// model's own transformer file with a FLUX folder as its config (given, or named like it).
fn flux_layout<'a>(
    checkpoint: &'a Path,
    config_dir: Option<&'a Path>,
) -> Option<(std::borrow::Cow<'a, Path>, Option<&'a Path>)> {
    use std::borrow::Cow;
    if is_flux(checkpoint) {
        return Some((Cow::Borrowed(checkpoint), None));
    }
    let folder = match config_dir {
        Some(dir) => Cow::Borrowed(dir),
        None => Cow::Owned(checkpoint.with_extension("")),
    };
    (checkpoint.is_file() && is_flux(&folder)).then_some((folder, Some(checkpoint)))
}

impl Model {
    /// `auto` precision is NicheImage's for Stable Diffusion (fp16 on CUDA) and bf16 on CUDA for
    /// FLUX (its weights are trained in bf16; fp16 overflows in its T5). Pre-Ampere cards
    /// emulate bf16 slowly: set fp16 there.
    pub fn load(
        checkpoint: &Path,
        config_dir: Option<&Path>,
        device: Device,
        dtype: DtypeChoice,
    ) -> Result<Self, PipelineError> {
        if let Some((folder, transformer)) = flux_layout(checkpoint, config_dir) {
            let kind = match (dtype, device.is_cuda()) {
                (DtypeChoice::Auto, true) => Kind::BFloat16,
                _ => crate::resolve_dtype(device, dtype),
            };
            return Ok(Self::Flux(Box::new(FluxPipeline::load_with(
                &folder,
                transformer,
                device,
                kind,
            )?)));
        }
        let kind = crate::resolve_dtype(device, dtype);
        Ok(Self::StableDiffusion(Box::new(StableDiffusion::load(
            checkpoint, config_dir, device, kind,
        )?)))
    }

    /// `sd15`, `sdxl` or `flux`.
    pub fn architecture(&self) -> &'static str {
        match self {
            Self::StableDiffusion(sd) if sd.config.is_sdxl() => "sdxl",
            Self::StableDiffusion(_) => "sd15",
            Self::Flux(_) => "flux",
        }
    }

    /// The dtype's short name: `fp16`, `bf16` or `fp32`.
    pub fn dtype_name(&self) -> &'static str {
        match self.kind() {
            Kind::Half => "fp16",
            Kind::BFloat16 => "bf16",
            _ => "fp32",
        }
    }

    pub fn kind(&self) -> Kind {
        match self {
            Self::StableDiffusion(sd) => sd.kind(),
            Self::Flux(f) => f.kind(),
        }
    }

    pub fn device(&self) -> Device {
        match self {
            Self::StableDiffusion(sd) => sd.device(),
            Self::Flux(f) => f.device(),
        }
    }

    /// The Stable Diffusion pipeline, for what only it serves (img2img, ControlNet).
    pub fn stable_diffusion(&self) -> Option<&StableDiffusion> {
        match self {
            Self::StableDiffusion(sd) => Some(sd),
            Self::Flux(_) => None,
        }
    }

    /// txt2img. FLUX.1-schnell ignores the negative prompt, the guidance scale and the sampler,
    /// as diffusers' FluxPipeline does for it (no guidance embedding, no true CFG).
    pub fn txt2img(&self, req: &Txt2Img) -> Result<RgbImage, PipelineError> {
        match self {
            Self::StableDiffusion(sd) => Ok(sd.txt2img(req, false)?.image),
            Self::Flux(f) => f.txt2img(&FluxRequest {
                prompt: req.prompt.clone(),
                seed: req.seed,
                steps: req.num_inference_steps,
                width: req.width,
                height: req.height,
            }),
        }
    }
}
