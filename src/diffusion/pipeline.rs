//! Stable Diffusion 1.x txt2img and img2img, step for step as diffusers'
//! `StableDiffusionPipeline` and `StableDiffusionImg2ImgPipeline`.

use super::clip::ClipTextModel;
use super::config::{ConfigError, PipelineConfig};
use super::image::rgb_from_decoded;
use super::ldm;
use super::scheduler::{Plan, Sampler, SchedulerError, SchedulerKind};
use super::tokenizer::{ClipTokenizer, END_OF_TEXT};
use super::unet::UNet;
use super::vae::{Decoder, Encoder};
use super::weights::{KeyMap, SafetensorsFile, WeightError, Weights};
use crate::image::{ImageError, RgbImage};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use tch::{Device, Kind, Tensor};

/// libtorch's CPU generator is process-global, as in the seed (`torch.manual_seed`): whoever
/// seeds it and draws from it (a generation, the tiny checkpoint writer) holds this lock.
static GENERATOR: Mutex<()> = Mutex::new(());

pub fn lock_generator() -> MutexGuard<'static, ()> {
    GENERATOR
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Weights(#[from] WeightError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Scheduler(#[from] SchedulerError),
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error("checkpoint not found: {0}")]
    NotFound(PathBuf),
    #[error(
        "{0} is neither a .safetensors file nor a diffusers folder (with unet/, vae/, text_encoder/)"
    )]
    UnknownLayout(PathBuf),
    #[error("invalid request: {0}")]
    Request(String),
    #[error("libtorch failed: {0}")]
    Torch(#[from] tch::TchError),
}

/// One txt2img request, with the seed's parameter names.
#[derive(Debug, Clone, PartialEq)]
pub struct Txt2Img {
    pub prompt: String,
    pub negative_prompt: Option<String>,
    pub seed: u64,
    pub num_inference_steps: usize,
    pub guidance_scale: f64,
    pub width: i64,
    pub height: i64,
    pub scheduler: SchedulerKind,
}

/// One img2img request: `base.width` and `base.height` are ignored, the image's own size
/// (rounded down to multiples of 8) decides, as in diffusers.
#[derive(Debug, Clone, PartialEq)]
pub struct Img2Img {
    pub base: Txt2Img,
    pub image: RgbImage,
    pub strength: f64,
}

/// What a generation produced, plus the intermediate tensors parity tests compare.
pub struct Generation {
    pub image: RgbImage,
    pub trace: Option<Trace>,
}

pub struct Trace {
    pub text_embeddings: Tensor,
    pub initial_latents: Tensor,
    /// Latents after each step.
    pub latents: Vec<Tensor>,
    pub timesteps: Vec<f64>,
    pub sigmas: Vec<f32>,
}

pub struct StableDiffusion {
    pub config: PipelineConfig,
    tokenizer: ClipTokenizer,
    text_encoder: ClipTextModel,
    unet: UNet,
    decoder: Decoder,
    pub encoder: Encoder,
    device: Device,
    kind: Kind,
}

fn file_weights(
    model: &str,
    file: &Arc<SafetensorsFile>,
    key: KeyMap,
    prefix: &str,
    kind: Kind,
    device: Device,
) -> Weights {
    Weights::from_file(model, file.clone(), key, prefix, kind, device)
}

impl StableDiffusion {
    /// Loads a civitai-style single `.safetensors` file (architecture from `config_dir`, or from
    /// a folder named like the file beside it, else SD 1.5), or a diffusers folder.
    pub fn load(
        path: &Path,
        config_dir: Option<&Path>,
        device: Device,
        kind: Kind,
    ) -> Result<Self, PipelineError> {
        if !path.exists() {
            return Err(PipelineError::NotFound(path.to_path_buf()));
        }
        let _no_grad = tch::no_grad_guard();
        if path.is_dir() {
            return Self::load_folder(path, device, kind);
        }
        if path.extension().is_none_or(|e| e != "safetensors") {
            return Err(PipelineError::UnknownLayout(path.to_path_buf()));
        }
        let beside = path.with_extension("");
        let config = match config_dir {
            Some(dir) => PipelineConfig::from_folder(dir)?,
            None if beside.is_dir() => PipelineConfig::from_folder(&beside)?,
            None => PipelineConfig::default(),
        };
        let file = SafetensorsFile::open(path)?;
        let unet_config = config.unet.clone();
        let vae_blocks = config.vae.block_out_channels.len();
        let unet_w = file_weights(
            "unet",
            &file,
            Arc::new(move |n| ldm::unet_key(n, &unet_config)),
            ldm::UNET_PREFIX,
            kind,
            device,
        );
        let vae_w = file_weights(
            "vae",
            &file,
            Arc::new(move |n| ldm::vae_key(n, vae_blocks)),
            ldm::VAE_PREFIX,
            kind,
            device,
        );
        let clip_w = file_weights(
            "text_encoder",
            &file,
            Arc::new(ldm::clip_key),
            ldm::CLIP_PREFIX,
            kind,
            device,
        );
        Self::build(config, &clip_w, &unet_w, &vae_w, device, kind)
    }

    fn load_folder(dir: &Path, device: Device, kind: Kind) -> Result<Self, PipelineError> {
        let config = PipelineConfig::from_folder(dir)?;
        let pick = |sub: &str, stem: &str| -> Result<Arc<SafetensorsFile>, PipelineError> {
            for name in [
                format!("{stem}.safetensors"),
                format!("{stem}.fp16.safetensors"),
            ] {
                let p = dir.join(sub).join(name);
                if p.is_file() {
                    return Ok(SafetensorsFile::open(&p)?);
                }
            }
            Err(PipelineError::NotFound(
                dir.join(sub).join(format!("{stem}.safetensors")),
            ))
        };
        let unet_file = pick("unet", "diffusion_pytorch_model")?;
        let vae_file = pick("vae", "diffusion_pytorch_model")?;
        let clip_file = pick("text_encoder", "model")?;
        let same: KeyMap = Arc::new(|n: &str| n.to_string());
        // transformers 5 saves CLIPTextModel without the `text_model.` prefix; real files have it.
        let clip_key: KeyMap = if clip_file.contains("text_model.embeddings.token_embedding.weight")
        {
            Arc::new(|n: &str| format!("text_model.{n}"))
        } else {
            same.clone()
        };
        let unet_w = file_weights("unet", &unet_file, same.clone(), "", kind, device);
        let vae_w = file_weights("vae", &vae_file, same, "", kind, device);
        let clip_w = file_weights("text_encoder", &clip_file, clip_key, "", kind, device);
        Self::build(config, &clip_w, &unet_w, &vae_w, device, kind)
    }

    /// Assembles the models from weight sources and checks that every parameter was found.
    pub fn build(
        config: PipelineConfig,
        clip: &Weights,
        unet: &Weights,
        vae: &Weights,
        device: Device,
        kind: Kind,
    ) -> Result<Self, PipelineError> {
        let text_encoder = ClipTextModel::new(&clip.root(), &config.text_encoder);
        let unet_model = UNet::new(&unet.root(), &config.unet);
        let decoder = Decoder::new(&vae.root(), &config.vae);
        let encoder = Encoder::new(&vae.root(), &config.vae);
        for w in [clip, unet, vae] {
            w.finish()?;
        }
        Ok(Self {
            config,
            tokenizer: ClipTokenizer::new(END_OF_TEXT),
            text_encoder,
            unet: unet_model,
            decoder,
            encoder,
            device,
            kind,
        })
    }

    fn embed(&self, text: &str) -> Tensor {
        let ids = Tensor::from_slice(&self.tokenizer.encode_padded(text))
            .unsqueeze(0)
            .to_device(self.device);
        self.text_encoder.forward(&ids)
    }

    /// The prompt's embeddings, negative first when classifier-free guidance is on.
    fn context(&self, req: &Txt2Img) -> Tensor {
        let positive = self.embed(&req.prompt);
        if req.guided() {
            let negative = self.embed(req.negative_prompt.as_deref().unwrap_or(""));
            Tensor::cat(&[negative, positive], 0)
        } else {
            positive
        }
    }

    /// Draws from libtorch's global CPU generator in the pipeline dtype, then moves: fp16
    /// draws differ from f32 ones, and diffusers draws on the CPU for a CPU generator.
    fn randn(&self, shape: &[i64]) -> Tensor {
        Tensor::randn(shape, (self.kind, Device::Cpu)).to_device(self.device)
    }

    /// The denoising loop from the sampler's current step to the end, then the VAE decode.
    fn denoise(
        &self,
        req: &Txt2Img,
        context: &Tensor,
        mut sampler: Sampler,
        mut latents: Tensor,
        trace: Option<Trace>,
    ) -> Result<Generation, PipelineError> {
        let mut steps = Vec::new();
        let timesteps = sampler.remaining_timesteps().to_vec();
        for &t in &timesteps {
            let input = if req.guided() {
                Tensor::cat(&[&latents, &latents], 0)
            } else {
                latents.shallow_clone()
            };
            let input = sampler.scale_model_input(&input);
            let eps = self.unet.forward(&input, t, context);
            let eps = if req.guided() {
                let parts = eps.chunk(2, 0);
                &parts[0] + (&parts[1] - &parts[0]) * req.guidance_scale
            } else {
                eps
            };
            latents = sampler.step(&eps, &latents);
            if trace.is_some() {
                steps.push(latents.to_device(Device::Cpu).to_kind(Kind::Float));
            }
        }
        let decoded = self.decoder.decode(&latents);
        let image = rgb_from_decoded(&decoded)?;
        Ok(Generation {
            image,
            trace: trace.map(|t| Trace {
                latents: steps,
                timesteps,
                ..t
            }),
        })
    }

    pub fn txt2img(&self, req: &Txt2Img, trace: bool) -> Result<Generation, PipelineError> {
        check_size(req.width, req.height)?;
        let seed = req.torch_seed()?;
        let _no_grad = tch::no_grad_guard();
        let plan = req
            .scheduler
            .plan(&self.config.scheduler, req.num_inference_steps)?;
        let sampler = Sampler::new(req.scheduler, plan.clone());
        let context = self.context(req);

        let _generator = lock_generator();
        tch::manual_seed(seed);
        let shape = [
            1,
            self.config.unet.in_channels,
            req.height / 8,
            req.width / 8,
        ];
        let initial = self.randn(&shape);
        let latents = &initial * f64::from(plan.init_noise_sigma);
        let trace = trace.then(|| Trace::start(&context, &initial, &plan));
        self.denoise(req, &context, sampler, latents, trace)
    }

    /// diffusers' `StableDiffusionImg2ImgPipeline`: the image is VAE-encoded (a seeded sample of
    /// its latent distribution), noised to the step `strength` selects, then denoised from there.
    pub fn img2img(&self, req: &Img2Img, trace: bool) -> Result<Generation, PipelineError> {
        let base = &req.base;
        if !(0.0..=1.0).contains(&req.strength) {
            return Err(PipelineError::Request(format!(
                "strength must be between 0 and 1, got {}",
                req.strength
            )));
        }
        // diffusers' image processor: both sides rounded down to multiples of 8, Lanczos.
        let (w, h) = (req.image.width / 8 * 8, req.image.height / 8 * 8);
        check_size(w as i64, h as i64)?;
        let image = if (w, h) == (req.image.width, req.image.height) {
            req.image.clone()
        } else {
            req.image.resize_lanczos(w, h)
        };
        let seed = base.torch_seed()?;
        let steps = base.num_inference_steps;
        let start = img2img_start(steps, req.strength).ok_or_else(|| {
            PipelineError::Request(format!(
                "strength {} leaves no step of {steps} to run",
                req.strength
            ))
        })?;
        let _no_grad = tch::no_grad_guard();
        let plan = base.scheduler.plan(&self.config.scheduler, steps)?;
        let sampler = Sampler::new(base.scheduler, plan.clone()).begin_at(start);
        let context = self.context(base);

        let pixels = Tensor::from_slice(&image.data)
            .reshape([1, h as i64, w as i64, 3])
            .permute([0, 3, 1, 2])
            .to_kind(Kind::Float)
            / 255.0;
        let pixels = (pixels * 2.0 - 1.0).to_kind(self.kind).to_device(self.device);
        let (mean, logvar) = self.encoder.encode(&pixels);

        let _generator = lock_generator();
        tch::manual_seed(seed);
        let sample = &mean + (logvar * 0.5).exp() * self.randn(&mean.size());
        let encoded = sample * self.config.vae.scaling_factor;
        let noise = self.randn(&encoded.size());
        let latents = sampler.add_noise(&encoded, &noise);
        let trace = trace.then(|| Trace::start(&context, &latents, &plan));
        self.denoise(base, &context, sampler, latents, trace)
    }
}

/// diffusers' `get_timesteps`: the index of the first step img2img runs, or None when
/// `strength` leaves no step.
pub fn img2img_start(steps: usize, strength: f64) -> Option<usize> {
    let init = ((steps as f64 * strength) as usize).min(steps);
    let start = steps - init;
    (start < steps).then_some(start)
}

fn check_size(width: i64, height: i64) -> Result<(), PipelineError> {
    if width <= 0 || height <= 0 || width % 8 != 0 || height % 8 != 0 {
        return Err(PipelineError::Request(format!(
            "width and height must be positive multiples of 8, got {width}x{height}"
        )));
    }
    Ok(())
}

impl Txt2Img {
    fn guided(&self) -> bool {
        self.guidance_scale > 1.0
    }

    fn torch_seed(&self) -> Result<i64, PipelineError> {
        i64::try_from(self.seed)
            .map_err(|_| PipelineError::Request(format!("seed {} is above 2^63 - 1", self.seed)))
    }
}

impl Trace {
    fn start(context: &Tensor, initial: &Tensor, plan: &Plan) -> Self {
        Trace {
            text_embeddings: context.to_device(Device::Cpu).to_kind(Kind::Float),
            initial_latents: initial.to_device(Device::Cpu).to_kind(Kind::Float),
            latents: Vec::new(),
            timesteps: Vec::new(),
            sigmas: plan.sigmas.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::img2img_start;

    #[test]
    fn strength_picks_the_first_step_as_diffusers() {
        assert_eq!(img2img_start(30, 0.75), Some(8));
        assert_eq!(img2img_start(10, 1.0), Some(0));
        assert_eq!(img2img_start(7, 0.5), Some(4));
        assert_eq!(img2img_start(4, 0.2), None);
        assert_eq!(img2img_start(4, 0.0), None);
    }
}
