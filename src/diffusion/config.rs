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
    pub addition_embed_type: Option<String>,
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
        if let Some(t) = &self.addition_embed_type {
            return unsupported(format!("addition_embed_type `{t}` (SDXL)"));
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
        }
    }
}

/// The whole SD pipeline's architecture.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PipelineConfig {
    pub unet: UNetConfig,
    pub vae: VaeConfig,
    pub text_encoder: ClipConfig,
    pub scheduler: super::scheduler::NoiseSchedule,
}

fn read_json<T: for<'de> Deserialize<'de> + Default>(
    path: &Path,
) -> Result<Option<T>, ConfigError> {
    if !path.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.display().to_string(),
        source,
    })?;
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|source| ConfigError::Parse {
            path: path.display().to_string(),
            source,
        })
}

impl PipelineConfig {
    /// Reads `unet/`, `vae/`, `text_encoder/` and `scheduler/` configs under `folder` (a
    /// diffusers folder); each one absent falls back to SD 1.5's.
    pub fn from_folder(folder: &Path) -> Result<Self, ConfigError> {
        let unet_path = folder.join("unet/config.json");
        let unet: UNetConfig = read_json(&unet_path)?.unwrap_or_default();
        unet.check(&unet_path.display().to_string())?;
        Ok(Self {
            unet,
            vae: read_json(&folder.join("vae/config.json"))?.unwrap_or_default(),
            text_encoder: read_json(&folder.join("text_encoder/config.json"))?.unwrap_or_default(),
            scheduler: read_json(&folder.join("scheduler/scheduler_config.json"))?
                .unwrap_or_default(),
        })
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
            scheduler: Default::default(),
        }
    }
}
