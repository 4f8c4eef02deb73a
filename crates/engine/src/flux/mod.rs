//! FLUX.1-schnell as diffusers' `FluxPipeline` runs it: the pooled CLIP prompt and the T5 prompt
//! sequence condition a flow-matching transformer over 2×2-packed 16-channel latents, four
//! Euler steps without guidance, then the 16-channel VAE (scaled and shifted) draws the image.

pub mod config;
pub mod sampler;
pub mod single_file;
pub mod t5;
pub mod tiny;
pub mod tokenizer;
pub mod transformer;

use std::path::Path;
use std::sync::Arc;

use nicheimage_common::image::RgbImage;
use tch::{Device, Kind, Tensor};

use crate::clip::ClipTextModel;
use crate::folder::{Library, Opened, weight_files};
use crate::image::rgb_from_decoded;
use crate::pipeline::PipelineError;
use crate::tokenizer::ClipTokenizer;
use crate::vae::Decoder;
use crate::weights::{KeyMap, SafetensorsFile, Weights};
use config::FluxConfig;
use sampler::FlowMatchPlan;
use t5::T5Encoder;
use tokenizer::T5Tokenizer;
use transformer::FluxTransformer;

/// schnell's T5 sequence (`max_sequence_length` in its model card and pipeline call).
pub const T5_TOKENS: usize = 256;
/// The VAE halves the side three times; packing groups 2×2 latents into one token.
const PIXELS_PER_TOKEN: i64 = 16;

/// One txt2img request. FLUX.1-schnell is distilled: no negative prompt, no guidance.
#[derive(Debug, Clone, PartialEq)]
pub struct FluxRequest {
    pub prompt: String,
    pub seed: u64,
    pub steps: usize,
    pub width: i64,
    pub height: i64,
}

pub struct FluxPipeline {
    pub config: FluxConfig,
    clip_tokenizer: ClipTokenizer,
    clip: ClipTextModel,
    t5_tokenizer: T5Tokenizer,
    t5: T5Encoder,
    transformer: FluxTransformer,
    decoder: Decoder,
    device: Device,
    kind: Kind,
}

impl FluxPipeline {
    /// A diffusers FLUX folder (transformer shards, both text encoders and tokenizers, VAE,
    /// scheduler), every weight in `kind` on `device`.
    pub fn load(dir: &Path, device: Device, kind: Kind) -> Result<Self, PipelineError> {
        Self::load_with(dir, None, device, kind)
    }

    /// As [`load`](Self::load), the transformer from `transformer_file` (the model's own
    /// single file, Black Forest Labs' names) when given, the rest from the folder.
    pub fn load_with(
        dir: &Path,
        transformer_file: Option<&Path>,
        device: Device,
        kind: Kind,
    ) -> Result<Self, PipelineError> {
        let config = FluxConfig::from_folder(dir)?;
        let open = |sub: &str, library| -> Result<Opened, PipelineError> {
            Ok(Opened::open(&weight_files(&dir.join(sub), library)?)?)
        };
        let same: KeyMap = Arc::new(|n: &str| n.to_string());
        let clip_files = open("text_encoder", Library::Transformers)?;
        // transformers 5 saves CLIPTextModel without `text_model.`, 4 with it.
        let clip_key: KeyMap =
            match clip_files.contains("text_model.embeddings.token_embedding.weight") {
                true => Arc::new(|n: &str| format!("text_model.{n}")),
                false => same.clone(),
            };
        let clip_weights = clip_files.weights("text_encoder", clip_key, kind, device);
        let t5_files = open("text_encoder_2", Library::Transformers)?;
        // The embedding is tied: files name it `shared` or `encoder.embed_tokens`.
        let t5_key: KeyMap = match t5_files.contains("shared.weight") {
            true => same.clone(),
            false => Arc::new(|n: &str| match n {
                "shared.weight" => "encoder.embed_tokens.weight".into(),
                other => other.into(),
            }),
        };
        let t5_weights = t5_files.weights("text_encoder_2", t5_key, kind, device);
        let transformer_weights = match transformer_file {
            Some(file) => {
                let file = SafetensorsFile::open(file)?;
                // Files repackaged for ComfyUI put everything under `model.diffusion_model.`.
                let prefix = single_file::prefix(&file);
                let key: KeyMap =
                    Arc::new(move |n: &str| format!("{prefix}{}", single_file::bfl_key(n)));
                Weights::from_file("transformer", file, key, prefix, kind, device)
            }
            None => open("transformer", Library::Diffusers)?.weights(
                "transformer",
                same.clone(),
                kind,
                device,
            ),
        };
        let vae_weights = open("vae", Library::Diffusers)?.weights("vae", same, kind, device);

        let clip = ClipTextModel::new(&clip_weights.root(), &config.text_encoder);
        let t5 = T5Encoder::new(&t5_weights.root(), &config.text_encoder_2);
        let transformer = FluxTransformer::new(&transformer_weights.root(), &config.transformer);
        let decoder = Decoder::new(&vae_weights.root(), &config.vae);
        // txt2img never encodes: the encoder's keys are accounted for, not read.
        vae_weights.root().ignore("encoder");
        for w in [
            &clip_weights,
            &t5_weights,
            &transformer_weights,
            &vae_weights,
        ] {
            w.finish()?;
        }

        let clip_tokenizer =
            ClipTokenizer::from_folder(&dir.join("tokenizer"), config.text_encoder.vocab_size)?
                .unwrap_or_else(|| ClipTokenizer::new(crate::tokenizer::END_OF_TEXT));
        let t5_tokenizer =
            T5Tokenizer::from_file(&dir.join("tokenizer_2/tokenizer.json"), T5_TOKENS)?;
        if t5_tokenizer.max_id() >= config.text_encoder_2.vocab_size {
            return Err(PipelineError::Request(format!(
                "the T5 tokenizer's ids reach {}, past the encoder's {} embeddings",
                t5_tokenizer.max_id(),
                config.text_encoder_2.vocab_size
            )));
        }
        Ok(Self {
            config,
            clip_tokenizer,
            clip,
            t5_tokenizer,
            t5,
            transformer,
            decoder,
            device,
            kind,
        })
    }

    pub fn device(&self) -> Device {
        self.device
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The padded CLIP (77) and T5 (256) ids of `text`.
    pub fn token_ids(&self, text: &str) -> Result<(Vec<i64>, Vec<i64>), PipelineError> {
        Ok((
            self.clip_tokenizer.encode_padded(text),
            self.t5_tokenizer.encode(text)?,
        ))
    }

    /// diffusers' `FluxPipeline(prompt, height, width, num_inference_steps, guidance_scale=0,
    /// max_sequence_length=256, generator=torch.manual_seed(seed))`.
    pub fn txt2img(&self, req: &FluxRequest) -> Result<RgbImage, PipelineError> {
        let _no_grad = tch::no_grad_guard();
        if req.steps == 0 {
            return Err(PipelineError::Request(
                "num_inference_steps must be at least 1".into(),
            ));
        }
        // diffusers rounds each side down to a multiple of 16.
        let (h, w) = (
            2 * (req.height / PIXELS_PER_TOKEN),
            2 * (req.width / PIXELS_PER_TOKEN),
        );
        if h == 0 || w == 0 {
            return Err(PipelineError::Request(format!(
                "{}x{} is smaller than FLUX's 16-pixel tokens",
                req.width, req.height
            )));
        }
        let (clip_ids, t5_ids) = self.token_ids(&req.prompt)?;
        let ids = |v: Vec<i64>| Tensor::from_slice(&v).unsqueeze(0).to_device(self.device);
        let pooled = self.clip.pooled(&ids(clip_ids)).to_kind(self.kind);
        let text = self.t5.forward(&ids(t5_ids)).to_kind(self.kind);

        let channels = self.config.vae.latent_channels;
        // Drawn on the CPU generator in the pipeline's dtype, as randn_tensor does.
        let noise = {
            let _generator = crate::pipeline::lock_generator();
            tch::manual_seed(req.seed as i64);
            Tensor::randn([1, channels, h, w], (self.kind, Device::Cpu))
        }
        .to_device(self.device);
        let mut latents = pack(&noise);
        let text_ids = Tensor::zeros([text.size()[1], 3], (self.kind, self.device));
        let rope = self.transformer.rope(&Tensor::cat(
            &[text_ids, image_ids(h / 2, w / 2, self.kind, self.device)],
            0,
        ));

        let plan = FlowMatchPlan::new(&self.config.scheduler, req.steps);
        for (i, t) in plan.timesteps.iter().enumerate() {
            crate::deadline::check()?;
            let timestep = Tensor::from_slice(&[*t])
                .to_device(self.device)
                .to_kind(self.kind)
                / 1000.0;
            let velocity = self
                .transformer
                .forward(&latents, &text, &pooled, &timestep, &rope);
            latents = plan.step(i, &velocity, &latents);
        }
        crate::deadline::check()?;
        let vae = &self.config.vae;
        let latents = unpack(&latents, h, w) / vae.scaling_factor + vae.shift_factor.unwrap_or(0.0);
        let decoded = self.decoder.decode_unscaled(&latents);
        Ok(rgb_from_decoded(&decoded)?)
    }
}

/// `[1, c, h, w]` → `[1, (h/2)·(w/2), 4c]` (FluxPipeline's `_pack_latents`).
fn pack(x: &Tensor) -> Tensor {
    let s = x.size();
    let (c, h, w) = (s[1], s[2], s[3]);
    x.view([1, c, h / 2, 2, w / 2, 2])
        .permute([0, 2, 4, 1, 3, 5])
        .reshape([1, (h / 2) * (w / 2), c * 4])
}

/// The inverse of [`pack`] for latents of `h`×`w`.
fn unpack(x: &Tensor, h: i64, w: i64) -> Tensor {
    let c = x.size()[2] / 4;
    x.view([1, h / 2, w / 2, c, 2, 2])
        .permute([0, 3, 1, 4, 2, 5])
        .reshape([1, c, h, w])
}

/// (0, row, column) for every packed token, row-major.
fn image_ids(rows: i64, cols: i64, kind: Kind, device: Device) -> Tensor {
    let r = Tensor::arange(rows, (Kind::Float, Device::Cpu))
        .unsqueeze(1)
        .expand([rows, cols], false);
    let c = Tensor::arange(cols, (Kind::Float, Device::Cpu))
        .unsqueeze(0)
        .expand([rows, cols], false);
    Tensor::stack(
        &[
            Tensor::zeros([rows, cols], (Kind::Float, Device::Cpu)),
            r,
            c,
        ],
        -1,
    )
    .reshape([rows * cols, 3])
    .to_kind(kind)
    .to_device(device)
}
