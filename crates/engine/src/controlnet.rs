//! diffusers' `ControlNetModel` (SD 1.5 ControlNets such as lllyasviel's v1.1 canny, depth and
//! normalbae): a copy of the UNet's stem and down path that reads a control image and returns
//! residuals for the UNet's skip connections; several are summed (`MultiControlNetModel`).

use super::config::{ConfigError, UNetConfig};
use super::nn::Conv2d;
use super::unet::{DownPath, Residuals, Stem};
use super::weights::{WeightError, Weights};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

#[derive(Debug, thiserror::Error)]
pub enum ControlNetError {
    #[error(
        "ControlNet {0} is missing ({1}); download a diffusers ControlNet folder (config.json and diffusion_pytorch_model.safetensors), e.g. lllyasviel/control_v11p_sd15_canny"
    )]
    Missing(PathBuf, &'static str),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Weights(#[from] WeightError),
    #[error("{0}: {1} is not supported")]
    Unsupported(PathBuf, String),
}

/// The ControlNet-only keys of `config.json`; the rest is the UNet's.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct ControlConfig {
    pub conditioning_embedding_out_channels: Vec<i64>,
    pub conditioning_channels: i64,
    pub global_pool_conditions: bool,
    pub controlnet_conditioning_channel_order: String,
}

impl Default for ControlConfig {
    fn default() -> Self {
        Self {
            conditioning_embedding_out_channels: vec![16, 32, 96, 256],
            conditioning_channels: 3,
            global_pool_conditions: false,
            controlnet_conditioning_channel_order: "rgb".into(),
        }
    }
}

/// The control image to feature-map encoder (`ControlNetConditioningEmbedding`).
struct CondEmbedding {
    conv_in: Conv2d,
    blocks: Vec<Conv2d>,
    conv_out: Conv2d,
}

impl CondEmbedding {
    fn forward(&self, x: &Tensor) -> Tensor {
        let mut x = self.conv_in.forward(x).silu();
        for b in &self.blocks {
            x = b.forward(&x).silu();
        }
        self.conv_out.forward(&x)
    }
}

pub struct ControlNet {
    /// The architecture it was built for: it must match the UNet it steers.
    pub unet: UNetConfig,
    stem: Stem,
    path: DownPath,
    cond: CondEmbedding,
    down_zero: Vec<Conv2d>,
    mid_zero: Conv2d,
}

impl ControlNet {
    pub fn new(w: &Weights, unet: &UNetConfig, control: &ControlConfig) -> Self {
        let root = w.root();
        let path = DownPath::new(&root, unet);
        let stem = Stem::new(&root, unet);
        let ce = root.at("controlnet_cond_embedding");
        let chans = &control.conditioning_embedding_out_channels;
        let blocks = chans
            .windows(2)
            .enumerate()
            .flat_map(|(i, pair)| {
                let b = ce.at("blocks");
                [
                    Conv2d::new(&b.at(2 * i), pair[0], pair[0], 3, 1, 1),
                    Conv2d::new(&b.at(2 * i + 1), pair[0], pair[1], 3, 2, 1),
                ]
            })
            .collect();
        let cond = CondEmbedding {
            conv_in: Conv2d::new(
                &ce.at("conv_in"),
                control.conditioning_channels,
                chans[0],
                3,
                1,
                1,
            ),
            blocks,
            conv_out: Conv2d::new(
                &ce.at("conv_out"),
                *chans.last().unwrap_or(&16),
                unet.block_out_channels[0],
                3,
                1,
                1,
            ),
        };
        let down_zero = DownPath::skip_channels(unet)
            .into_iter()
            .enumerate()
            .map(|(i, c)| Conv2d::new(&root.at("controlnet_down_blocks").at(i), c, c, 1, 1, 0))
            .collect();
        let last = *unet.block_out_channels.last().unwrap_or(&0);
        Self {
            unet: unet.clone(),
            stem,
            path,
            cond,
            down_zero,
            mid_zero: Conv2d::new(&root.at("controlnet_mid_block"), last, last, 1, 1, 0),
        }
    }

    /// Loads a diffusers ControlNet folder (`config.json`, `diffusion_pytorch_model.safetensors`).
    pub fn load(dir: &Path, device: Device, kind: Kind) -> Result<Self, ControlNetError> {
        let config = dir.join("config.json");
        if !config.is_file() {
            return Err(ControlNetError::Missing(
                dir.to_path_buf(),
                "no config.json",
            ));
        }
        let text = std::fs::read_to_string(&config).map_err(|source| ConfigError::Read {
            path: config.display().to_string(),
            source,
        })?;
        let parse = |source| ConfigError::Parse {
            path: config.display().to_string(),
            source,
        };
        let unet: UNetConfig = nicheimage_common::pyjson::from_str(&text).map_err(parse)?;
        let control: ControlConfig = nicheimage_common::pyjson::from_str(&text).map_err(parse)?;
        let n = unet.block_out_channels.len();
        if n == 0 || unet.down_block_types.len() != n {
            return Err(ControlNetError::Unsupported(
                config,
                "down_block_types and block_out_channels of different lengths".into(),
            ));
        }
        if control.conditioning_embedding_out_channels.is_empty() {
            return Err(ControlNetError::Unsupported(
                config,
                "an empty conditioning_embedding_out_channels".into(),
            ));
        }
        if control.global_pool_conditions || control.controlnet_conditioning_channel_order != "rgb"
        {
            return Err(ControlNetError::Unsupported(
                config,
                "global_pool_conditions or a BGR channel order".into(),
            ));
        }
        let files = super::folder::weight_files(dir, super::folder::Library::Diffusers)?;
        let _no_grad = tch::no_grad_guard();
        let weights = super::folder::Opened::open(&files)?.weights(
            "controlnet",
            std::sync::Arc::new(|n: &str| n.to_string()),
            kind,
            device,
        );
        let net = Self::new(&weights, &unet, &control);
        weights.finish()?;
        Ok(net)
    }

    /// Whether this net can steer a UNet of architecture `base` (same levels, widths, context).
    pub fn fits(&self, base: &UNetConfig) -> bool {
        let (a, b) = (&self.unet, base);
        a.block_out_channels == b.block_out_channels
            && a.layers_per_block == b.layers_per_block
            && a.cross_attention_dim == b.cross_attention_dim
            && a.in_channels == b.in_channels
            && a.down_block_types == b.down_block_types
            && a.addition_embed_type == b.addition_embed_type
    }

    /// The residuals for `sample` at timestep `t` given the control image `[batch, 3, H, W]`
    /// in [0, 1], each scaled by `scale`.
    pub fn forward(
        &self,
        sample: &Tensor,
        t: f64,
        context: &Tensor,
        added: Option<(&Tensor, &Tensor)>,
        image: &Tensor,
        scale: f64,
    ) -> Residuals {
        let emb = self.stem.embedding(sample, t, added);
        let x = self.stem.conv_in.forward(sample) + self.cond.forward(image);
        let (mid, skips) = self.path.forward(x, &emb, context);
        Residuals {
            down: skips
                .iter()
                .zip(&self.down_zero)
                .map(|(s, conv)| conv.forward(s) * scale)
                .collect(),
            mid: self.mid_zero.forward(&mid) * scale,
        }
    }
}

/// `MultiControlNetModel`: the nets' residuals summed, in order, as they come.
pub fn sum(all: impl Iterator<Item = Residuals>) -> Option<Residuals> {
    all.reduce(|acc, r| Residuals {
        down: acc.down.iter().zip(&r.down).map(|(a, b)| a + b).collect(),
        mid: acc.mid + r.mid,
    })
}
