//! Stable Diffusion 1.x txt2img, step for step as `diffusers.StableDiffusionPipeline`.

use super::clip::ClipTextModel;
use super::config::{ConfigError, PipelineConfig};
use super::image::rgb_from_decoded;
use super::ldm;
use super::scheduler::{Sampler, SchedulerError, SchedulerKind};
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

    pub fn txt2img(&self, req: &Txt2Img, trace: bool) -> Result<Generation, PipelineError> {
        if req.width <= 0 || req.height <= 0 || req.width % 8 != 0 || req.height % 8 != 0 {
            return Err(PipelineError::Request(format!(
                "width and height must be positive multiples of 8, got {}x{}",
                req.width, req.height
            )));
        }
        let seed = i64::try_from(req.seed)
            .map_err(|_| PipelineError::Request(format!("seed {} is above 2^63 - 1", req.seed)))?;
        let _no_grad = tch::no_grad_guard();
        let plan = req
            .scheduler
            .plan(&self.config.scheduler, req.num_inference_steps)?;
        let mut sampler = Sampler::new(req.scheduler, plan.clone());

        let guided = req.guidance_scale > 1.0;
        let positive = self.embed(&req.prompt);
        let context = if guided {
            let negative = self.embed(req.negative_prompt.as_deref().unwrap_or(""));
            Tensor::cat(&[negative, positive], 0)
        } else {
            positive
        };

        let generator = lock_generator();
        tch::manual_seed(seed);
        let shape = [
            1,
            self.config.unet.in_channels,
            req.height / 8,
            req.width / 8,
        ];
        // Drawn on the CPU in the pipeline dtype, then moved: fp16 draws differ from f32 ones.
        let initial = Tensor::randn(shape, (self.kind, Device::Cpu)).to_device(self.device);
        let mut latents = &initial * f64::from(plan.init_noise_sigma);
        let mut steps = Vec::new();
        for &t in &plan.timesteps {
            let input = if guided {
                Tensor::cat(&[&latents, &latents], 0)
            } else {
                latents.shallow_clone()
            };
            let input = sampler.scale_model_input(&input);
            let eps = self.unet.forward(&input, t, &context);
            let eps = if guided {
                let parts = eps.chunk(2, 0);
                &parts[0] + (&parts[1] - &parts[0]) * req.guidance_scale
            } else {
                eps
            };
            latents = sampler.step(&eps, &latents);
            if trace {
                steps.push(latents.to_device(Device::Cpu).to_kind(Kind::Float));
            }
        }
        drop(generator);
        let decoded = self.decoder.decode(&latents);
        let image = rgb_from_decoded(&decoded)?;
        Ok(Generation {
            image,
            trace: trace.then(|| Trace {
                text_embeddings: context.to_device(Device::Cpu).to_kind(Kind::Float),
                initial_latents: initial.to_device(Device::Cpu).to_kind(Kind::Float),
                latents: steps,
                timesteps: plan.timesteps,
                sigmas: plan.sigmas,
            }),
        })
    }
}
