//! A FLUX folder's architectures, from diffusers' and transformers' own `config.json` files.

use std::path::Path;

use serde::Deserialize;

use crate::config::{ClipConfig, ConfigError, VaeConfig, read_json};

/// `transformer/config.json` (`FluxTransformer2DModel`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct TransformerConfig {
    pub patch_size: i64,
    pub in_channels: i64,
    pub out_channels: Option<i64>,
    pub num_layers: i64,
    pub num_single_layers: i64,
    pub attention_head_dim: i64,
    pub num_attention_heads: i64,
    pub joint_attention_dim: i64,
    pub pooled_projection_dim: i64,
    pub guidance_embeds: bool,
    pub axes_dims_rope: Vec<i64>,
}

impl Default for TransformerConfig {
    /// FLUX.1-schnell's.
    fn default() -> Self {
        Self {
            patch_size: 1,
            in_channels: 64,
            out_channels: None,
            num_layers: 19,
            num_single_layers: 38,
            attention_head_dim: 128,
            num_attention_heads: 24,
            joint_attention_dim: 4096,
            pooled_projection_dim: 768,
            guidance_embeds: false,
            axes_dims_rope: vec![16, 56, 56],
        }
    }
}

impl TransformerConfig {
    pub fn inner_dim(&self) -> i64 {
        self.num_attention_heads * self.attention_head_dim
    }

    fn check(&self, path: &Path) -> Result<(), ConfigError> {
        let unsupported = |what: String| ConfigError::Unsupported {
            path: path.display().to_string(),
            what,
        };
        if self.patch_size != 1 {
            return Err(unsupported(format!("patch_size {}", self.patch_size)));
        }
        if self.guidance_embeds {
            return Err(unsupported(
                "a guidance embedding (FLUX.1-dev); this engine serves schnell".into(),
            ));
        }
        if self.axes_dims_rope.iter().sum::<i64>() != self.attention_head_dim
            || self.axes_dims_rope.iter().any(|a| a % 2 != 0)
        {
            return Err(unsupported(format!(
                "rope axes {:?} for head dim {}",
                self.axes_dims_rope, self.attention_head_dim
            )));
        }
        if self.in_channels % 4 != 0 || self.out_channels.is_some_and(|o| o != self.in_channels) {
            return Err(unsupported(format!(
                "{} input and {:?} output channels",
                self.in_channels, self.out_channels
            )));
        }
        Ok(())
    }
}

/// `text_encoder_2/config.json` (transformers' `T5EncoderModel`, v1.1: gated GELU).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct T5Config {
    pub vocab_size: i64,
    pub d_model: i64,
    pub d_kv: i64,
    pub d_ff: i64,
    pub num_layers: i64,
    pub num_heads: i64,
    pub relative_attention_num_buckets: i64,
    pub relative_attention_max_distance: i64,
    pub layer_norm_epsilon: f64,
    pub feed_forward_proj: String,
    pub dense_act_fn: Option<String>,
}

impl Default for T5Config {
    /// google/t5-v1_1-xxl's, as FLUX ships it.
    fn default() -> Self {
        Self {
            vocab_size: 32128,
            d_model: 4096,
            d_kv: 64,
            d_ff: 10240,
            num_layers: 24,
            num_heads: 64,
            relative_attention_num_buckets: 32,
            relative_attention_max_distance: 128,
            layer_norm_epsilon: 1e-6,
            feed_forward_proj: "gated-gelu".into(),
            dense_act_fn: None,
        }
    }
}

impl T5Config {
    fn check(&self, path: &Path) -> Result<(), ConfigError> {
        // "gated-gelu" is transformers' legacy name for gated gelu_new.
        let gated =
            self.feed_forward_proj == "gated-gelu" || self.feed_forward_proj == "gated-gelu_new";
        let act = self.dense_act_fn.as_deref().unwrap_or("gelu_new");
        if !gated || act != "gelu_new" {
            return Err(ConfigError::Unsupported {
                path: path.display().to_string(),
                what: format!(
                    "feed_forward_proj `{}` with `{act}` (T5 v1.1's gated gelu_new only)",
                    self.feed_forward_proj
                ),
            });
        }
        Ok(())
    }
}

/// `scheduler/scheduler_config.json` (`FlowMatchEulerDiscreteScheduler`), the settings schnell
/// uses; the schedule-changing options it does not use are refused by name.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct FlowMatchConfig {
    pub num_train_timesteps: i64,
    pub shift: f64,
    pub use_dynamic_shifting: bool,
    pub shift_terminal: Option<f64>,
    pub use_karras_sigmas: bool,
    pub use_exponential_sigmas: bool,
    pub use_beta_sigmas: bool,
    pub invert_sigmas: bool,
    pub stochastic_sampling: bool,
}

impl Default for FlowMatchConfig {
    fn default() -> Self {
        Self {
            num_train_timesteps: 1000,
            shift: 1.0,
            use_dynamic_shifting: false,
            shift_terminal: None,
            use_karras_sigmas: false,
            use_exponential_sigmas: false,
            use_beta_sigmas: false,
            invert_sigmas: false,
            stochastic_sampling: false,
        }
    }
}

impl FlowMatchConfig {
    fn check(&self, path: &Path) -> Result<(), ConfigError> {
        let used = [
            (
                self.use_dynamic_shifting,
                "use_dynamic_shifting (FLUX.1-dev)",
            ),
            (self.shift_terminal.is_some(), "shift_terminal"),
            (self.use_karras_sigmas, "use_karras_sigmas"),
            (self.use_exponential_sigmas, "use_exponential_sigmas"),
            (self.use_beta_sigmas, "use_beta_sigmas"),
            (self.invert_sigmas, "invert_sigmas"),
            (self.stochastic_sampling, "stochastic_sampling"),
        ];
        match used.iter().find(|(on, _)| *on) {
            Some((_, what)) => Err(ConfigError::Unsupported {
                path: path.display().to_string(),
                what: (*what).into(),
            }),
            None if self.num_train_timesteps <= 0
                || !(self.shift.is_finite() && self.shift > 0.0) =>
            {
                Err(ConfigError::Unsupported {
                    path: path.display().to_string(),
                    what: format!(
                        "{} train timesteps with shift {}",
                        self.num_train_timesteps, self.shift
                    ),
                })
            }
            None => Ok(()),
        }
    }
}

/// Every part of a FLUX folder.
#[derive(Debug, Clone, PartialEq)]
pub struct FluxConfig {
    pub transformer: TransformerConfig,
    pub text_encoder: ClipConfig,
    pub text_encoder_2: T5Config,
    pub vae: VaeConfig,
    pub scheduler: FlowMatchConfig,
}

impl FluxConfig {
    /// A diffusers FLUX folder is one whose transformer is a `FluxTransformer2DModel`.
    pub fn is_flux_folder(folder: &Path) -> bool {
        #[derive(Deserialize, Default)]
        struct ClassName {
            #[serde(rename = "_class_name")]
            class: Option<String>,
        }
        read_json::<ClassName>(&folder.join("transformer/config.json"))
            .ok()
            .flatten()
            .and_then(|c| c.class)
            .is_some_and(|c| c == "FluxTransformer2DModel")
    }

    pub fn from_folder(folder: &Path) -> Result<Self, ConfigError> {
        let path = |p: &str| folder.join(p);
        let required = |p: &str| ConfigError::Unsupported {
            path: folder.display().to_string(),
            what: format!("a FLUX folder without {p}"),
        };
        let transformer: TransformerConfig = read_json(&path("transformer/config.json"))?
            .ok_or_else(|| required("transformer/config.json"))?;
        transformer.check(&path("transformer/config.json"))?;
        let text_encoder_2: T5Config = read_json(&path("text_encoder_2/config.json"))?
            .ok_or_else(|| required("text_encoder_2/config.json"))?;
        text_encoder_2.check(&path("text_encoder_2/config.json"))?;
        let vae: VaeConfig =
            read_json(&path("vae/config.json"))?.ok_or_else(|| required("vae/config.json"))?;
        let scheduler: FlowMatchConfig =
            read_json(&path("scheduler/scheduler_config.json"))?.unwrap_or_default();
        scheduler.check(&path("scheduler/scheduler_config.json"))?;
        if vae.latent_channels * 4 != transformer.in_channels {
            return Err(ConfigError::Unsupported {
                path: folder.display().to_string(),
                what: format!(
                    "a VAE of {} latent channels under a transformer of {} input channels",
                    vae.latent_channels, transformer.in_channels
                ),
            });
        }
        Ok(Self {
            transformer,
            text_encoder: read_json(&path("text_encoder/config.json"))?.unwrap_or_default(),
            text_encoder_2,
            vae,
            scheduler,
        })
    }
}
