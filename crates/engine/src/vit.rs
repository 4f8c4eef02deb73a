//! transformers' `ViTForImageClassification` with its image processor: the network behind
//! `Falconsai/nsfw_image_detection`, NicheImage's NSFW filter.

use super::nn::{Conv2d, LayerNorm, Linear, attention};
use super::weights::{SafetensorsFile, WeightError, Weights};
use nicheimage_common::image::RgbImage;
use nicheimage_common::resample::Filter;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

#[derive(Debug, thiserror::Error)]
pub enum VitError {
    #[error("the classifier folder {0} has no {1}")]
    Missing(PathBuf, &'static str),
    #[error("cannot read {path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("{path}: {what} is not supported")]
    Unsupported { path: PathBuf, what: String },
    #[error(transparent)]
    Weights(#[from] WeightError),
}

/// `config.json`: the keys this architecture reads.
#[derive(Debug, Clone, Deserialize)]
pub struct VitConfig {
    pub hidden_size: i64,
    pub num_hidden_layers: i64,
    pub num_attention_heads: i64,
    pub intermediate_size: i64,
    #[serde(default = "default_act")]
    pub hidden_act: String,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    pub image_size: i64,
    pub patch_size: i64,
    #[serde(default = "default_channels")]
    pub num_channels: i64,
    #[serde(default = "yes")]
    pub qkv_bias: bool,
    pub id2label: BTreeMap<String, String>,
}

fn default_act() -> String {
    "gelu".into()
}
fn default_eps() -> f64 {
    1e-12
}
fn default_channels() -> i64 {
    3
}
fn yes() -> bool {
    true
}

/// `preprocessor_config.json`: resize, rescale, normalise.
#[derive(Debug, Clone, Deserialize)]
pub struct Preprocess {
    pub size: Size,
    #[serde(default = "bilinear")]
    pub resample: u8,
    #[serde(default = "rescale")]
    pub rescale_factor: f64,
    pub image_mean: [f32; 3],
    pub image_std: [f32; 3],
}

#[derive(Debug, Clone, Deserialize)]
pub struct Size {
    pub height: usize,
    pub width: usize,
}

fn bilinear() -> u8 {
    2
}
fn rescale() -> f64 {
    1.0 / 255.0
}

impl Preprocess {
    /// The processor's output `[1, 3, h, w]`: Pillow resize of the 8-bit image, then
    /// `x * rescale_factor` in f64 stored as f32, then `(x - mean) / std` in f32, as transformers'
    /// PIL backend computes it.
    pub fn pixels(&self, image: &RgbImage, filter: Filter) -> Tensor {
        let (w, h) = (self.size.width, self.size.height);
        let resized = if (image.width, image.height) == (w, h) {
            image.clone()
        } else {
            image.resize(filter, w, h)
        };
        let mut planes = vec![0f32; 3 * w * h];
        for (i, px) in resized.data.chunks_exact(3).enumerate() {
            for c in 0..3 {
                let scaled = (f64::from(px[c]) * self.rescale_factor) as f32;
                planes[c * w * h + i] = (scaled - self.image_mean[c]) / self.image_std[c];
            }
        }
        Tensor::from_slice(&planes).reshape([1, 3, h as i64, w as i64])
    }
}

struct Layer {
    ln_before: LayerNorm,
    q: Linear,
    k: Linear,
    v: Linear,
    out: Linear,
    ln_after: LayerNorm,
    intermediate: Linear,
    output: Linear,
}

pub struct VitClassifier {
    pub config: VitConfig,
    pub preprocess: Preprocess,
    filter: Filter,
    patch: Conv2d,
    cls_token: Tensor,
    positions: Tensor,
    layers: Vec<Layer>,
    final_ln: LayerNorm,
    classifier: Linear,
    device: Device,
}

fn read_json<T: for<'de> Deserialize<'de>>(dir: &Path, name: &'static str) -> Result<T, VitError> {
    let path = dir.join(name);
    if !path.is_file() {
        return Err(VitError::Missing(dir.to_path_buf(), name));
    }
    let text = std::fs::read_to_string(&path).map_err(|e| VitError::Read {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    nicheimage_common::pyjson::from_str(&text).map_err(|e| VitError::Read {
        path,
        reason: e.to_string(),
    })
}

impl VitClassifier {
    /// Loads a transformers folder: `config.json`, `preprocessor_config.json`,
    /// `model.safetensors`.
    pub fn load(dir: &Path, device: Device) -> Result<Self, VitError> {
        let config: VitConfig = read_json(dir, "config.json")?;
        let preprocess: Preprocess = read_json(dir, "preprocessor_config.json")?;
        let filter = match preprocess.resample {
            1 => Filter::Lanczos,
            2 => Filter::Bilinear,
            other => {
                return Err(VitError::Unsupported {
                    path: dir.join("preprocessor_config.json"),
                    what: format!("resample {other} (only 1, LANCZOS, and 2, BILINEAR)"),
                });
            }
        };
        if preprocess.size.height as i64 != config.image_size
            || preprocess.size.width as i64 != config.image_size
            || config.patch_size <= 0
            || config.image_size % config.patch_size != 0
        {
            return Err(VitError::Unsupported {
                path: dir.join("preprocessor_config.json"),
                what: format!(
                    "a {}x{} input for a {} px model with {} px patches",
                    preprocess.size.width,
                    preprocess.size.height,
                    config.image_size,
                    config.patch_size
                ),
            });
        }
        let labels = config.id2label.len();
        if config
            .id2label
            .keys()
            .any(|k| k.parse::<usize>().map_or(true, |i| i >= labels))
        {
            return Err(VitError::Unsupported {
                path: dir.join("config.json"),
                what: "id2label keys that are not 0..n".into(),
            });
        }
        if config.hidden_act != "gelu" {
            return Err(VitError::Unsupported {
                path: dir.join("config.json"),
                what: format!("hidden_act `{}`", config.hidden_act),
            });
        }
        let file = dir.join("model.safetensors");
        if !file.is_file() {
            return Err(VitError::Missing(dir.to_path_buf(), "model.safetensors"));
        }
        let _no_grad = tch::no_grad_guard();
        let weights = Weights::from_file(
            "nsfw_classifier",
            SafetensorsFile::open(&file)?,
            std::sync::Arc::new(|n: &str| n.to_string()),
            "",
            Kind::Float,
            device,
        );
        let model = Self::build(config, preprocess, filter, &weights, device);
        weights.finish()?;
        Ok(model)
    }

    fn build(
        config: VitConfig,
        preprocess: Preprocess,
        filter: Filter,
        weights: &Weights,
        device: Device,
    ) -> Self {
        let c = &config;
        let (d, eps) = (c.hidden_size, c.layer_norm_eps);
        let root = weights.root();
        let vit = root.at("vit");
        let emb = vit.at("embeddings");
        let patches = (c.image_size / c.patch_size).pow(2);
        let layers = (0..c.num_hidden_layers)
            .map(|i| {
                let l = vit.at("encoder.layer").at(i);
                let a = l.at("attention.attention");
                Layer {
                    ln_before: LayerNorm::new(&l.at("layernorm_before"), d, eps),
                    q: Linear::new(&a.at("query"), d, d, c.qkv_bias),
                    k: Linear::new(&a.at("key"), d, d, c.qkv_bias),
                    v: Linear::new(&a.at("value"), d, d, c.qkv_bias),
                    out: Linear::new(&l.at("attention.output.dense"), d, d, true),
                    ln_after: LayerNorm::new(&l.at("layernorm_after"), d, eps),
                    intermediate: Linear::new(
                        &l.at("intermediate.dense"),
                        d,
                        c.intermediate_size,
                        true,
                    ),
                    output: Linear::new(&l.at("output.dense"), c.intermediate_size, d, true),
                }
            })
            .collect();
        Self {
            patch: Conv2d::new(
                &emb.at("patch_embeddings.projection"),
                c.num_channels,
                d,
                c.patch_size,
                c.patch_size,
                0,
            ),
            cls_token: emb.get("cls_token", &[1, 1, d]),
            positions: emb.get("position_embeddings", &[1, patches + 1, d]),
            layers,
            final_ln: LayerNorm::new(&vit.at("layernorm"), d, eps),
            classifier: Linear::new(&root.at("classifier"), d, c.id2label.len() as i64, true),
            config,
            preprocess,
            filter,
            device,
        }
    }

    /// The processor's input tensor for `image`.
    pub fn pixels(&self, image: &RgbImage) -> Tensor {
        self.preprocess.pixels(image, self.filter)
    }

    /// Class logits `[batch, labels]` for processed pixels.
    pub fn logits(&self, pixels: &Tensor) -> Tensor {
        let _no_grad = tch::no_grad_guard();
        let x = self.patch.forward(&pixels.to_device(self.device));
        let b = x.size()[0];
        let x = x.flatten(2, -1).transpose(1, 2);
        let cls = self.cls_token.expand([b, -1, -1], false);
        let mut x = Tensor::cat(&[cls, x], 1) + &self.positions;
        let heads = self.config.num_attention_heads;
        for l in &self.layers {
            let h = l.ln_before.forward(&x);
            let a = attention(
                &l.q.forward(&h),
                &l.k.forward(&h),
                &l.v.forward(&h),
                heads,
                false,
            );
            x = l.out.forward(&a) + x;
            let h = l.intermediate.forward(&l.ln_after.forward(&x)).gelu("none");
            x = l.output.forward(&h) + x;
        }
        let x = self.final_ln.forward(&x);
        self.classifier.forward(&x.select(1, 0))
    }

    /// The index of `label` (labels were checked to be 0..n at load).
    pub fn label_index(&self, label: &str) -> Option<i64> {
        self.config
            .id2label
            .iter()
            .find(|(_, l)| l.as_str() == label)
            .and_then(|(i, _)| i.parse::<i64>().ok())
    }

    /// The softmax probability of class `index` for one image.
    pub fn probability(&self, image: &RgbImage, index: i64) -> f64 {
        let p = self.logits(&self.pixels(image)).softmax(-1, Kind::Float);
        p.double_value(&[0, index])
    }
}
