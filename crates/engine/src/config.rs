//! Architectures, read from diffusers' own `config.json` files when present, else SD 1.5's.

use serde::Deserialize;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid {path}: {source}")]
    Parse {
        path: String,
        source: serde_json::Error,
    },
    #[error("{path}: {what} is not supported by this engine yet")]
    Unsupported { path: String, what: String },
}

/// An int for every block, or one int for all of them (diffusers accepts both).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum PerBlock {
    One(i64),
    Each(Vec<i64>),
}

impl PerBlock {
    pub fn get(&self, i: usize) -> i64 {
        match self {
            PerBlock::One(v) => *v,
            PerBlock::Each(v) => v[i.min(v.len() - 1)],
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct UNetConfig {
    pub in_channels: i64,
    pub out_channels: i64,
    pub block_out_channels: Vec<i64>,
    pub layers_per_block: i64,
    pub down_block_types: Vec<String>,
    pub up_block_types: Vec<String>,
    pub cross_attention_dim: i64,
    /// In SD configs this is really the number of heads (a diffusers naming quirk).
    pub attention_head_dim: PerBlock,
    pub num_attention_heads: Option<PerBlock>,
    pub transformer_layers_per_block: PerBlock,
    pub norm_num_groups: i64,
    pub norm_eps: f64,
    pub use_linear_projection: bool,
    pub flip_sin_to_cos: bool,
    pub freq_shift: f64,
    pub sample_size: i64,
    /// "text_time" in SDXL: pooled text embeddings and size/crop ids are added to the time
    /// embedding.
    pub addition_embed_type: Option<String>,
    pub addition_time_embed_dim: Option<i64>,
    pub projection_class_embeddings_input_dim: Option<i64>,
    pub upcast_attention: bool,
}

impl Default for UNetConfig {
    fn default() -> Self {
        Self {
            in_channels: 4,
            out_channels: 4,
            block_out_channels: vec![320, 640, 1280, 1280],
            layers_per_block: 2,
            down_block_types: vec![
                "CrossAttnDownBlock2D".into(),
                "CrossAttnDownBlock2D".into(),
                "CrossAttnDownBlock2D".into(),
                "DownBlock2D".into(),
            ],
            up_block_types: vec![
                "UpBlock2D".into(),
                "CrossAttnUpBlock2D".into(),
                "CrossAttnUpBlock2D".into(),
                "CrossAttnUpBlock2D".into(),
            ],
            cross_attention_dim: 768,
            attention_head_dim: PerBlock::One(8),
            num_attention_heads: None,
            transformer_layers_per_block: PerBlock::One(1),
            norm_num_groups: 32,
            norm_eps: 1e-5,
            use_linear_projection: false,
            flip_sin_to_cos: true,
            freq_shift: 0.0,
            sample_size: 64,
            addition_embed_type: None,
            addition_time_embed_dim: None,
            projection_class_embeddings_input_dim: None,
            upcast_attention: false,
        }
    }
}

impl UNetConfig {
    /// Heads of the attention in block `i` (diffusers: `num_attention_heads or attention_head_dim`).
    pub fn heads(&self, i: usize) -> i64 {
        self.num_attention_heads
            .as_ref()
            .unwrap_or(&self.attention_head_dim)
            .get(i)
    }

    pub fn has_cross_attention_down(&self, i: usize) -> bool {
        self.down_block_types[i] == "CrossAttnDownBlock2D"
    }

    pub fn has_cross_attention_up(&self, i: usize) -> bool {
        self.up_block_types[i] == "CrossAttnUpBlock2D"
    }

    fn check(&self, path: &str) -> Result<(), ConfigError> {
        let unsupported = |what: String| {
            Err(ConfigError::Unsupported {
                path: path.to_string(),
                what,
            })
        };
        let sizes_given = self.addition_time_embed_dim.is_some()
            && self.projection_class_embeddings_input_dim.is_some();
        match self.addition_embed_type.as_deref() {
            None => {}
            Some("text_time") if sizes_given => {}
            Some("text_time") => {
                return unsupported(
                    "addition_embed_type `text_time` without addition_time_embed_dim and projection_class_embeddings_input_dim".into(),
                );
            }
            Some(t) => return unsupported(format!("addition_embed_type `{t}`")),
        }
        let n = self.block_out_channels.len();
        if self.down_block_types.len() != n || self.up_block_types.len() != n {
            return unsupported(
                "block type lists whose length differs from block_out_channels".into(),
            );
        }
        for t in self.down_block_types.iter() {
            if t != "CrossAttnDownBlock2D" && t != "DownBlock2D" {
                return unsupported(format!("down block `{t}`"));
            }
        }
        for t in self.up_block_types.iter() {
            if t != "CrossAttnUpBlock2D" && t != "UpBlock2D" {
                return unsupported(format!("up block `{t}`"));
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct VaeConfig {
    pub in_channels: i64,
    pub out_channels: i64,
    pub latent_channels: i64,
    pub block_out_channels: Vec<i64>,
    pub layers_per_block: i64,
    pub norm_num_groups: i64,
    pub scaling_factor: f64,
    /// SDXL's VAE overflows in fp16: diffusers' SDXL pipeline decodes in f32 when this is set.
    pub force_upcast: bool,
    /// FLUX's: latents are `z / scaling_factor + shift_factor` before decoding.
    pub shift_factor: Option<f64>,
    /// FLUX's VAE has neither 1×1 convolution around the latents.
    pub use_quant_conv: bool,
    pub use_post_quant_conv: bool,
}

impl Default for VaeConfig {
    fn default() -> Self {
        Self {
            in_channels: 3,
            out_channels: 3,
            latent_channels: 4,
            block_out_channels: vec![128, 256, 512, 512],
            layers_per_block: 2,
            norm_num_groups: 32,
            scaling_factor: 0.18215,
            force_upcast: true,
            shift_factor: None,
            use_quant_conv: true,
            use_post_quant_conv: true,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct ClipConfig {
    pub vocab_size: i64,
    pub hidden_size: i64,
    pub intermediate_size: i64,
    pub num_hidden_layers: i64,
    pub num_attention_heads: i64,
    pub max_position_embeddings: i64,
    pub hidden_act: String,
    pub layer_norm_eps: f64,
    /// Set for `CLIPTextModelWithProjection` (SDXL's second encoder).
    pub projection_dim: Option<i64>,
}

impl Default for ClipConfig {
    fn default() -> Self {
        Self {
            vocab_size: 49408,
            hidden_size: 768,
            intermediate_size: 3072,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            max_position_embeddings: 77,
            hidden_act: "quick_gelu".into(),
            layer_norm_eps: 1e-5,
            projection_dim: None,
        }
    }
}

/// The whole SD pipeline's architecture; SDXL has a second text encoder.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PipelineConfig {
    pub unet: UNetConfig,
    pub vae: VaeConfig,
    pub text_encoder: ClipConfig,
    pub text_encoder_2: Option<ClipConfig>,
    /// The folder's scheduler as the pipeline holds it: the base NicheImage's sampler swap reads.
    pub scheduler: super::scheduler_config::BaseScheduler,
    /// SDXL: with guidance and no negative prompt the negative conditioning is zeros.
    pub force_zeros_for_empty_prompt: bool,
}

/// `model_index.json`'s one setting we need.
#[derive(Debug, Deserialize, Default)]
struct ModelIndex {
    force_zeros_for_empty_prompt: Option<bool>,
}

pub(crate) fn read_json<T: for<'de> Deserialize<'de> + Default>(
    path: &Path,
) -> Result<Option<T>, ConfigError> {
    if !path.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.display().to_string(),
        source,
    })?;
    nicheimage_common::pyjson::from_str(&text)
        .map(Some)
        .map_err(|source| ConfigError::Parse {
            path: path.display().to_string(),
            source,
        })
}

/// `scheduler/scheduler_config.json` (SD 1.5's hub file when absent), as the pipeline holds it.
fn base_scheduler(
    folder: &Path,
    sdxl: bool,
) -> Result<super::scheduler_config::BaseScheduler, ConfigError> {
    use super::scheduler_config::{BaseScheduler, Holder};
    let path = folder.join("scheduler/scheduler_config.json");
    let base = match path.is_file() {
        true => BaseScheduler::from_file(&path).map_err(|e| ConfigError::Unsupported {
            path: path.display().to_string(),
            what: e.to_string(),
        })?,
        false => BaseScheduler::default(),
    };
    let base = base.held_by(match sdxl {
        true => Holder::StableDiffusionXl,
        false => Holder::StableDiffusion,
    });
    // A base no sampler can be built from is a load error, not one per request.
    for kind in super::scheduler::SchedulerKind::ALL {
        base.sampler(kind)
            .and_then(|c| c.plan(1))
            .map_err(|e| ConfigError::Unsupported {
                path: path.display().to_string(),
                what: e.to_string(),
            })?;
    }
    Ok(base)
}

impl PipelineConfig {
    /// Reads `unet/`, `vae/`, `text_encoder/` and `scheduler/` configs under `folder` (a
    /// diffusers folder); each one absent falls back to SD 1.5's.
    pub fn from_folder(folder: &Path) -> Result<Self, ConfigError> {
        let unet_path = folder.join("unet/config.json");
        let unet: UNetConfig = read_json(&unet_path)?.unwrap_or_default();
        unet.check(&unet_path.display().to_string())?;
        let text_encoder_2: Option<ClipConfig> =
            read_json(&folder.join("text_encoder_2/config.json"))?;
        let index: ModelIndex = read_json(&folder.join("model_index.json"))?.unwrap_or_default();
        let sdxl = text_encoder_2.is_some();
        if sdxl != unet.addition_embed_type.is_some() {
            return Err(ConfigError::Unsupported {
                path: folder.display().to_string(),
                what: "a second text encoder without SDXL's added conditioning, or the reverse"
                    .into(),
            });
        }
        Ok(Self {
            unet,
            vae: read_json(&folder.join("vae/config.json"))?.unwrap_or_default(),
            text_encoder: read_json(&folder.join("text_encoder/config.json"))?.unwrap_or_default(),
            text_encoder_2,
            scheduler: base_scheduler(folder, sdxl)?,
            force_zeros_for_empty_prompt: index.force_zeros_for_empty_prompt.unwrap_or(sdxl),
        })
    }

    pub fn is_sdxl(&self) -> bool {
        self.text_encoder_2.is_some()
    }

    /// Stable Diffusion XL 1.0 base, as diffusers' single-file loader assumes it.
    pub fn sdxl() -> Self {
        Self {
            unet: UNetConfig {
                block_out_channels: vec![320, 640, 1280],
                down_block_types: vec![
                    "DownBlock2D".into(),
                    "CrossAttnDownBlock2D".into(),
                    "CrossAttnDownBlock2D".into(),
                ],
                up_block_types: vec![
                    "CrossAttnUpBlock2D".into(),
                    "CrossAttnUpBlock2D".into(),
                    "UpBlock2D".into(),
                ],
                cross_attention_dim: 2048,
                attention_head_dim: PerBlock::Each(vec![5, 10, 20]),
                transformer_layers_per_block: PerBlock::Each(vec![1, 2, 10]),
                use_linear_projection: true,
                sample_size: 128,
                addition_embed_type: Some("text_time".into()),
                addition_time_embed_dim: Some(256),
                projection_class_embeddings_input_dim: Some(2816),
                ..UNetConfig::default()
            },
            vae: VaeConfig {
                scaling_factor: 0.13025,
                ..VaeConfig::default()
            },
            text_encoder: ClipConfig::default(),
            text_encoder_2: Some(ClipConfig {
                hidden_size: 1280,
                intermediate_size: 5120,
                num_hidden_layers: 32,
                num_attention_heads: 20,
                hidden_act: "gelu".into(),
                projection_dim: Some(1280),
                ..ClipConfig::default()
            }),
            scheduler: super::scheduler_config::BaseScheduler::sdxl(),
            force_zeros_for_empty_prompt: true,
        }
    }

    /// A tiny SDXL-shaped pipeline that diffusers runs too: both text encoders, the added
    /// time-id conditioning, per-block transformer depth, linear projections.
    pub fn tiny_sdxl() -> Self {
        let full = Self::sdxl();
        // The two encoders must differ in width: diffusers tells them apart by it.
        let encoder = |hidden: i64, act: &str, projection: Option<i64>| ClipConfig {
            hidden_size: hidden,
            intermediate_size: 2 * hidden,
            // diffusers recognises an SDXL file by its second encoder's 10th layer.
            num_hidden_layers: 10,
            num_attention_heads: 4,
            hidden_act: act.into(),
            projection_dim: projection,
            ..ClipConfig::default()
        };
        Self {
            unet: UNetConfig {
                block_out_channels: vec![32, 64, 64],
                attention_head_dim: PerBlock::Each(vec![2, 4, 4]),
                transformer_layers_per_block: PerBlock::Each(vec![1, 1, 2]),
                cross_attention_dim: 32 + 48,
                sample_size: 8,
                addition_time_embed_dim: Some(8),
                // The pooled projection (40) and six time ids of 8.
                projection_class_embeddings_input_dim: Some(40 + 6 * 8),
                ..full.unet
            },
            vae: VaeConfig {
                block_out_channels: vec![32, 32, 64, 64],
                ..full.vae
            },
            text_encoder: encoder(32, "quick_gelu", None),
            text_encoder_2: Some(encoder(48, "gelu", Some(40))),
            ..full
        }
    }

    /// A tiny SD 1.5-shaped pipeline (3.2 M UNet parameters) that diffusers runs too.
    pub fn tiny() -> Self {
        Self {
            unet: UNetConfig {
                block_out_channels: vec![32, 64, 64, 64],
                cross_attention_dim: 32,
                sample_size: 8,
                ..UNetConfig::default()
            },
            vae: VaeConfig {
                block_out_channels: vec![32, 32, 64, 64],
                ..VaeConfig::default()
            },
            text_encoder: ClipConfig {
                hidden_size: 32,
                intermediate_size: 64,
                num_hidden_layers: 2,
                num_attention_heads: 4,
                ..ClipConfig::default()
            },
            text_encoder_2: None,
            scheduler: Default::default(),
            force_zeros_for_empty_prompt: false,
        }
    }
}
