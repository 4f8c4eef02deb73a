//! Stable Diffusion 1.x txt2img and img2img, step for step as diffusers'
//! `StableDiffusionPipeline` and `StableDiffusionImg2ImgPipeline`.

use super::clip::{ClipTextModel, ClipWithProjection};
use super::config::{ConfigError, PipelineConfig};
use super::controlnet::{self, ControlNet};
use super::image::rgb_from_decoded;
use super::ldm;
use super::scheduler::{Plan, Sampler, SchedulerError, SchedulerKind};
use super::tokenizer::{ClipTokenizer, END_OF_TEXT};
use super::unet::UNet;
use super::vae::{Decoder, Encoder};
use super::weights::{KeyMap, SafetensorsFile, WeightError, Weights};
use nicheimage_common::image::{ImageError, RgbImage};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use tch::{Device, Kind, Tensor};

/// libtorch's CPU generator is process-global, as in NicheImage (`torch.manual_seed`): whoever
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
    #[error(transparent)]
    Deadline(#[from] super::deadline::DeadlinePassed),
    #[error(transparent)]
    Tokenizer(#[from] super::tokenizer_files::TokenizerError),
    #[error(transparent)]
    T5Tokenizer(#[from] super::flux::tokenizer::T5TokenizerError),
}

/// One txt2img request, with NicheImage's parameter names.
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

/// One ControlNet's part in a run: the net, its prepared control image, its scale.
struct Control<'a> {
    net: &'a ControlNet,
    image: Tensor,
    scale: f64,
}

/// What the UNet is conditioned on: text embeddings and, for SDXL, the pooled embedding and
/// the size/crop time ids.
struct Conditioning {
    context: Tensor,
    added: Option<(Tensor, Tensor)>,
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
    /// SDXL's pooled text embeddings (negative first under guidance).
    pub pooled: Option<Tensor>,
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
    /// SDXL's second tokenizer (pads with `!`) and encoder.
    tokenizer_2: ClipTokenizer,
    text_encoder_2: Option<ClipWithProjection>,
    unet: UNet,
    decoder: Decoder,
    pub encoder: Encoder,
    device: Device,
    kind: Kind,
    /// The VAE's dtype: f32 where diffusers upcasts it (SDXL in fp16).
    vae_kind: Kind,
}

/// Where each model's weights come from.
pub struct WeightSources {
    pub text_encoder: Weights,
    pub text_encoder_2: Option<Weights>,
    pub unet: Weights,
    pub vae: Weights,
}

/// The VAE runs in f32 when diffusers' SDXL pipeline would upcast it.
fn vae_kind(config: &PipelineConfig, kind: Kind) -> Kind {
    if config.is_sdxl() && config.vae.force_upcast && kind == Kind::Half {
        Kind::Float
    } else {
        kind
    }
}

impl StableDiffusion {
    /// Loads a civitai-style single `.safetensors` file (architecture from `config_dir`, or from
    /// a folder named like the file beside it, else SDXL or SD 1.5 by its keys), or a diffusers
    /// folder.
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
        let file = SafetensorsFile::open(path)?;
        let beside = path.with_extension("");
        let config = match config_dir {
            Some(dir) => PipelineConfig::from_folder(dir)?,
            None if beside.is_dir() => PipelineConfig::from_folder(&beside)?,
            None if file.contains(&format!("{}ln_final.weight", ldm::OPEN_CLIP_PREFIX)) => {
                PipelineConfig::sdxl()
            }
            None => PipelineConfig::default(),
        };
        let unet_config = config.unet.clone();
        let vae_blocks = config.vae.block_out_channels.len();
        let weights = |model: &str, key: KeyMap, prefix: &str, kind: Kind| {
            Weights::from_file(model, file.clone(), key, prefix, kind, device)
        };
        let (clip_key, clip_prefix): (KeyMap, &str) = if config.is_sdxl() {
            (Arc::new(ldm::sdxl_clip_key), ldm::SDXL_CLIP_PREFIX)
        } else {
            (Arc::new(ldm::clip_key), ldm::CLIP_PREFIX)
        };
        let sources = WeightSources {
            text_encoder: weights("text_encoder", clip_key, clip_prefix, kind),
            text_encoder_2: config.is_sdxl().then(|| {
                weights(
                    "text_encoder_2",
                    Arc::new(ldm::open_clip_key),
                    ldm::OPEN_CLIP_PREFIX,
                    kind,
                )
            }),
            unet: weights(
                "unet",
                Arc::new(move |n| ldm::unet_key(n, &unet_config)),
                ldm::UNET_PREFIX,
                kind,
            ),
            vae: weights(
                "vae",
                Arc::new(move |n| ldm::vae_key(n, vae_blocks)),
                ldm::VAE_PREFIX,
                vae_kind(&config, kind),
            ),
        };
        Self::build(config, &sources, device, kind)
    }

    fn load_folder(dir: &Path, device: Device, kind: Kind) -> Result<Self, PipelineError> {
        let config = PipelineConfig::from_folder(dir)?;
        use super::folder::{Library, Opened, weight_files};
        let open = |sub: &str, library| -> Result<Opened, PipelineError> {
            Ok(Opened::open(&weight_files(&dir.join(sub), library)?)?)
        };
        let same: KeyMap = Arc::new(|n: &str| n.to_string());
        // transformers 5 saves CLIPTextModel without the `text_model.` prefix, transformers 4
        // (what most repositories ship) with it; CLIPTextModelWithProjection the other way.
        let text = |sub: &str, with_projection: bool| -> Result<Weights, PipelineError> {
            let opened = open(sub, Library::Transformers)?;
            let key: KeyMap = match (
                opened.contains("text_model.embeddings.token_embedding.weight"),
                with_projection,
            ) {
                (true, false) => Arc::new(|n: &str| format!("text_model.{n}")),
                (false, true) => {
                    Arc::new(|n: &str| n.strip_prefix("text_model.").unwrap_or(n).to_string())
                }
                _ => same.clone(),
            };
            Ok(opened.weights(sub, key, kind, device))
        };
        let sources = WeightSources {
            text_encoder: text("text_encoder", false)?,
            text_encoder_2: match config.is_sdxl() {
                true => Some(text("text_encoder_2", true)?),
                false => None,
            },
            unet: open("unet", Library::Diffusers)?.weights("unet", same.clone(), kind, device),
            vae: open("vae", Library::Diffusers)?.weights(
                "vae",
                same.clone(),
                vae_kind(&config, kind),
                device,
            ),
        };
        let tokenizer =
            |sub: &str, vocab_size: i64| ClipTokenizer::from_folder(&dir.join(sub), vocab_size);
        let first = tokenizer("tokenizer", config.text_encoder.vocab_size)?;
        let second = match &config.text_encoder_2 {
            Some(c) => tokenizer("tokenizer_2", c.vocab_size)?,
            None => None,
        };
        let mut sd = Self::build(config, &sources, device, kind)?;
        // The folder's own tokenizers where it has them (the built-in vocabulary otherwise).
        if let Some(t) = first {
            sd.tokenizer = t;
        }
        if let Some(t) = second {
            sd.tokenizer_2 = t;
        }
        Ok(sd)
    }

    /// Assembles the models from weight sources and checks that every parameter was found.
    pub fn build(
        config: PipelineConfig,
        w: &WeightSources,
        device: Device,
        kind: Kind,
    ) -> Result<Self, PipelineError> {
        let text_encoder = ClipTextModel::new(&w.text_encoder.root(), &config.text_encoder);
        let text_encoder_2 = match (&w.text_encoder_2, &config.text_encoder_2) {
            (Some(w2), Some(c2)) => Some(ClipWithProjection::new(&w2.root(), c2)),
            _ => None,
        };
        let unet = UNet::new(&w.unet.root(), &config.unet);
        let decoder = Decoder::new(&w.vae.root(), &config.vae);
        let encoder = Encoder::new(&w.vae.root(), &config.vae);
        for weights in [&w.text_encoder, &w.unet, &w.vae]
            .into_iter()
            .chain(w.text_encoder_2.as_ref())
        {
            weights.finish()?;
        }
        Ok(Self {
            vae_kind: vae_kind(&config, kind),
            config,
            tokenizer: ClipTokenizer::new(END_OF_TEXT),
            text_encoder,
            tokenizer_2: ClipTokenizer::new(0),
            text_encoder_2,
            unet,
            decoder,
            encoder,
            device,
            kind,
        })
    }

    /// Where the pipeline runs.
    pub fn device(&self) -> Device {
        self.device
    }

    /// The pipeline's dtype (its VAE may run in f32).
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The padded token ids of `text` from the first tokenizer and, for SDXL, the second.
    pub fn token_ids(&self, text: &str) -> (Vec<i64>, Option<Vec<i64>>) {
        (
            self.tokenizer.encode_padded(text),
            self.text_encoder_2
                .as_ref()
                .map(|_| self.tokenizer_2.encode_padded(text)),
        )
    }

    fn ids(&self, tokenizer: &ClipTokenizer, text: &str) -> Tensor {
        Tensor::from_slice(&tokenizer.encode_padded(text))
            .unsqueeze(0)
            .to_device(self.device)
    }

    /// SD: the last hidden state. SDXL: both encoders' penultimate hidden states side by side,
    /// and the second encoder's pooled projection.
    fn embed(&self, text: &str) -> (Tensor, Option<Tensor>) {
        let first = self.text_encoder.encode(&self.ids(&self.tokenizer, text));
        match &self.text_encoder_2 {
            None => (first.last, None),
            Some(second) => {
                let (hidden, pooled) = second.encode(&self.ids(&self.tokenizer_2, text));
                (Tensor::cat(&[first.penultimate, hidden], -1), Some(pooled))
            }
        }
    }

    /// The prompt's conditioning, negative first when classifier-free guidance is on.
    fn condition(&self, req: &Txt2Img, height: i64, width: i64) -> Conditioning {
        let (positive, pooled) = self.embed(&req.prompt);
        let zeros_for_negative =
            req.negative_prompt.is_none() && self.config.force_zeros_for_empty_prompt;
        let (context, pooled) = if !req.guided() {
            (positive, pooled)
        } else if zeros_for_negative {
            let pooled = pooled.map(|p| Tensor::cat(&[p.zeros_like(), p], 0));
            (Tensor::cat(&[positive.zeros_like(), positive], 0), pooled)
        } else {
            let (negative, negative_pooled) =
                self.embed(req.negative_prompt.as_deref().unwrap_or(""));
            let pooled = match (negative_pooled, pooled) {
                (Some(n), Some(p)) => Some(Tensor::cat(&[n, p], 0)),
                _ => None,
            };
            (Tensor::cat(&[negative, positive], 0), pooled)
        };
        // SDXL's size conditioning: original size, crop top-left, target size.
        let added = pooled.map(|pooled| {
            let ids = [height, width, 0, 0, height, width].map(|v| v as f32);
            let batch = pooled.size()[0];
            let time_ids = Tensor::from_slice(&ids)
                .to_kind(self.kind)
                .unsqueeze(0)
                .repeat([batch, 1])
                .to_device(self.device);
            (pooled, time_ids)
        });
        Conditioning { context, added }
    }

    /// Draws from libtorch's global CPU generator in `kind`, then moves: fp16
    /// draws differ from f32 ones, and diffusers draws on the CPU for a CPU generator.
    fn randn(&self, shape: &[i64], kind: Kind) -> Tensor {
        Tensor::randn(shape, (kind, Device::Cpu)).to_device(self.device)
    }

    /// The denoising loop from the sampler's current step to the end, then the VAE decode.
    fn denoise(
        &self,
        req: &Txt2Img,
        cond: &Conditioning,
        controls: &[Control],
        mut sampler: Sampler,
        mut latents: Tensor,
        trace: Option<Trace>,
    ) -> Result<Generation, PipelineError> {
        let mut steps = Vec::new();
        let timesteps = sampler.remaining_timesteps().to_vec();
        for &t in &timesteps {
            super::deadline::check()?;
            let input = if req.guided() {
                Tensor::cat(&[&latents, &latents], 0)
            } else {
                latents.shallow_clone()
            };
            let input = sampler.scale_model_input(&input);
            let added = cond.added.as_ref().map(|(p, ids)| (p, ids));
            let residuals = controlnet::sum(controls.iter().map(|c| {
                c.net
                    .forward(&input, t, &cond.context, added, &c.image, c.scale)
            }));
            let eps = self
                .unet
                .forward(&input, t, &cond.context, added, residuals.as_ref());
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
        super::deadline::check()?;
        let decoded = self.decoder.decode(&latents.to_kind(self.vae_kind));
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
        self.generate(req, &[], trace)
    }

    /// diffusers' `StableDiffusionControlNetPipeline` with a `MultiControlNetModel`: txt2img
    /// whose UNet also receives the sum of every net's residuals for its control image
    /// (resized to the output size with Lanczos, values in [0, 1]), each times its scale.
    pub fn controlnet_txt2img(
        &self,
        req: &Txt2Img,
        controls: &[(&ControlNet, &RgbImage, f64)],
        trace: bool,
    ) -> Result<Generation, PipelineError> {
        if controls.is_empty() {
            return Err(PipelineError::Request("no ControlNet given".into()));
        }
        if let Some(i) = controls
            .iter()
            .position(|(n, _, _)| !n.fits(&self.config.unet))
        {
            return Err(PipelineError::Request(format!(
                "ControlNet {i} was made for another UNet (its blocks, widths or context differ)"
            )));
        }
        self.generate(req, controls, trace)
    }

    /// txt2img from seeded noise, with ControlNets when `controls` has any.
    fn generate(
        &self,
        req: &Txt2Img,
        controls: &[(&ControlNet, &RgbImage, f64)],
        trace: bool,
    ) -> Result<Generation, PipelineError> {
        check_size(req.width, req.height)?;
        let seed = req.torch_seed()?;
        let _no_grad = tch::no_grad_guard();
        let plan = self
            .config
            .scheduler
            .sampler(req.scheduler)?
            .plan(req.num_inference_steps)?;
        let sampler = Sampler::new(req.scheduler, plan.clone());
        let cond = self.condition(req, req.height, req.width);
        let (w, h) = (req.width as usize, req.height as usize);
        let batch = if req.guided() { 2 } else { 1 };
        let controls: Vec<Control> = controls
            .iter()
            .map(|(net, image, scale)| {
                let image = if (image.width, image.height) == (w, h) {
                    (*image).clone()
                } else {
                    image.resize_lanczos(w, h)
                };
                Control {
                    net,
                    image: unit_pixels(&image)
                        .repeat([batch, 1, 1, 1])
                        .to_kind(self.kind)
                        .to_device(self.device),
                    scale: *scale,
                }
            })
            .collect();

        let _generator = lock_generator();
        tch::manual_seed(seed);
        let shape = [
            1,
            self.config.unet.in_channels,
            req.height / 8,
            req.width / 8,
        ];
        let initial = self.randn(&shape, self.kind);
        let latents = &initial * f64::from(plan.init_noise_sigma);
        let trace = trace.then(|| Trace::start(&cond, &initial, &plan));
        self.denoise(req, &cond, &controls, sampler, latents, trace)
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
        if w == 0 || h == 0 {
            return Err(PipelineError::Request(format!(
                "the conditional image is {}x{}; img2img needs at least 8x8",
                req.image.width, req.image.height
            )));
        }
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
        let plan = self.config.scheduler.sampler(base.scheduler)?.plan(steps)?;
        let sampler = Sampler::new(base.scheduler, plan.clone()).begin_at(start);
        let cond = self.condition(base, h as i64, w as i64);

        let pixels = (unit_pixels(&image) * 2.0 - 1.0)
            .to_kind(self.vae_kind)
            .to_device(self.device);
        let (mean, logvar) = self.encoder.encode(&pixels);

        let _generator = lock_generator();
        tch::manual_seed(seed);
        // Drawn in the VAE's dtype, as diffusers' latent distribution does.
        let draw = self.randn(&mean.size(), self.vae_kind);
        let sample = &mean + (logvar * 0.5).exp() * draw;
        let encoded = sample.to_kind(self.kind) * self.config.vae.scaling_factor;
        let noise = self.randn(&encoded.size(), self.kind);
        let latents = sampler.add_noise(&encoded, &noise);
        let trace = trace.then(|| Trace::start(&cond, &latents, &plan));
        self.denoise(base, &cond, &[], sampler, latents, trace)
    }
}

/// diffusers' `get_timesteps`: the index of the first step img2img runs, or None when
/// `strength` leaves no step.
pub fn img2img_start(steps: usize, strength: f64) -> Option<usize> {
    let init = ((steps as f64 * strength) as usize).min(steps);
    let start = steps - init;
    (start < steps).then_some(start)
}

/// An image as `[1, 3, h, w]` f32 in [0, 1] (diffusers' image processors, before normalising).
fn unit_pixels(image: &RgbImage) -> Tensor {
    super::image::pixels(image) / 255.0
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
    fn start(cond: &Conditioning, initial: &Tensor, plan: &Plan) -> Self {
        let cpu = |t: &Tensor| t.to_device(Device::Cpu).to_kind(Kind::Float);
        Trace {
            text_embeddings: cpu(&cond.context),
            pooled: cond.added.as_ref().map(|(pooled, _)| cpu(pooled)),
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
