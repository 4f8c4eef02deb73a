//! The models the subnet knows (NicheImage's `model_config.yaml` plus the validator's catalogue),
//! built in and overridable from config as `[models.<Name>]`.

use nicheimage_common::scheduler::SchedulerKind;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// NicheImage's negative prompt for most models.
pub const NEGATIVE_PROMPT: &str = "out of frame, nude, duplicate, watermark, signature, mutated, text, blurry, \
worst quality, low quality, artificial, texture artifacts, jpeg artifacts";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    Sd15,
    Sdxl,
    /// FLUX.1-schnell: a diffusers folder (or the model's own transformer file beside one);
    /// txt2img only, its folder's flow-matching scheduler, no guidance.
    Flux,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pipeline {
    Txt2img,
    Img2img,
    ControlnetTxt2img,
}

impl Pipeline {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "txt2img" => Some(Self::Txt2img),
            "img2img" => Some(Self::Img2img),
            "controlnet_txt2img" => Some(Self::ControlnetTxt2img),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Txt2img => "txt2img",
            Self::Img2img => "img2img",
            Self::ControlnetTxt2img => "controlnet_txt2img",
        }
    }
}

/// Inference parameters a request may leave out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Defaults {
    pub num_inference_steps: Option<u32>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub guidance_scale: Option<f64>,
    pub negative_prompt: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelSpec {
    pub name: String,
    pub arch: Arch,
    /// A single `.safetensors` file or a diffusers folder; relative paths are under the data
    /// dir's `checkpoints/`.
    pub checkpoint: PathBuf,
    pub download_url: Option<String>,
    /// None: unknown; a download is then checked structurally, not by hash.
    pub sha256: Option<String>,
    pub scheduler: SchedulerKind,
    pub pipelines: Vec<Pipeline>,
    pub defaults: Defaults,
    /// Seconds a validator waits for this model (NicheImage's catalogue).
    pub timeout_secs: f64,
    pub incentive_weight: f64,
    pub min_vram_gb: u32,
    /// Largest width or height a request may ask for.
    pub max_side: u32,
    /// Short side an img2img / ControlNet conditional image is resized to; None: NicheImage's
    /// (512 for SD 1.5, 768 for SDXL).
    pub condition_resolution: Option<u32>,
    /// Black out images the NSFW classifier flags, as NicheImage does (the reward check expects
    /// it).
    pub nsfw_filter: bool,
}

impl Arch {
    /// The side the architecture was trained at: NicheImage's default image size.
    pub fn native_side(self) -> u32 {
        match self {
            Arch::Sd15 => 512,
            Arch::Sdxl | Arch::Flux => 1024,
        }
    }

    /// The pipelines the architecture can serve.
    pub fn serves(self, pipeline: Pipeline) -> bool {
        self != Arch::Flux || pipeline == Pipeline::Txt2img
    }
}

impl ModelSpec {
    pub fn condition_resolution(&self) -> u32 {
        self.condition_resolution.unwrap_or(match self.arch {
            Arch::Sd15 => 512,
            Arch::Sdxl | Arch::Flux => 768,
        })
    }
}

/// `[models.<Name>]`: every key optional; a new name needs at least `arch` and `checkpoint`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ModelOverride {
    pub arch: Option<Arch>,
    pub checkpoint: Option<PathBuf>,
    pub download_url: Option<String>,
    pub sha256: Option<String>,
    pub scheduler: Option<SchedulerKind>,
    pub pipelines: Option<Vec<Pipeline>>,
    pub defaults: Option<Defaults>,
    pub timeout_secs: Option<f64>,
    pub incentive_weight: Option<f64>,
    pub min_vram_gb: Option<u32>,
    pub max_side: Option<u32>,
    pub condition_resolution: Option<u32>,
    pub nsfw_filter: Option<bool>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum CatalogueError {
    #[error(
        "model `{0}` is not in the catalogue (built in: RealisticVision, RealitiesEdgeXL, AnimeV3, DreamShaper, FluxSchnell; add others as [models.{0}] with arch and checkpoint)"
    )]
    Unknown(String),
    #[error("[models.{name}] is a new model and needs `{key}`")]
    Incomplete { name: String, key: &'static str },
    #[error(
        "[models.{name}]: a {arch:?} model cannot serve {pipeline} (FLUX.1-schnell serves txt2img)"
    )]
    Unservable {
        name: String,
        arch: Arch,
        pipeline: &'static str,
    },
}

fn civitai(version: u32) -> Option<String> {
    Some(format!("https://civitai.com/api/download/models/{version}"))
}

// sha256 = unknown for every built-in checkpoint: neither NicheImage (its README and
// model_config.yaml) nor this repository publishes a hash for these civitai files, and a guessed
// one would refuse every honest download. Until one is pinned (`[models.<Name>] sha256 = "..."`),
// a download is checked structurally instead (`download::check_checkpoint`: safetensors header,
// Stable Diffusion keys) and the endpoint logs a warning naming the model.
fn built_in() -> Vec<ModelSpec> {
    let n = || Some(NEGATIVE_PROMPT.to_string());
    vec![
        ModelSpec {
            name: "RealisticVision".into(),
            arch: Arch::Sd15,
            checkpoint: "RealisticVision.safetensors".into(),
            download_url: civitai(130_072),
            sha256: None, // unknown (see above)
            // 5430d4f switched this model to plain DPM++ 2M.
            scheduler: SchedulerKind::DpmPp2m,
            pipelines: vec![Pipeline::Txt2img],
            defaults: Defaults {
                num_inference_steps: Some(30),
                negative_prompt: n(),
                ..Defaults::default()
            },
            timeout_secs: 12.0,
            incentive_weight: 0.30,
            min_vram_gb: 12,
            max_side: 1024,
            condition_resolution: None,
            nsfw_filter: true,
        },
        ModelSpec {
            name: "RealitiesEdgeXL".into(),
            arch: Arch::Sdxl,
            checkpoint: "RealitiesEdgeXL.safetensors".into(),
            download_url: civitai(294_995),
            sha256: None, // unknown (see above)
            scheduler: SchedulerKind::DpmPp2mKarras,
            pipelines: vec![Pipeline::Txt2img],
            defaults: Defaults {
                num_inference_steps: Some(7),
                width: Some(1024),
                height: Some(1024),
                guidance_scale: Some(5.5),
                negative_prompt: None,
            },
            timeout_secs: 12.0,
            incentive_weight: 0.30,
            min_vram_gb: 24,
            max_side: 2048,
            condition_resolution: None,
            nsfw_filter: true,
        },
        ModelSpec {
            name: "AnimeV3".into(),
            arch: Arch::Sdxl,
            checkpoint: "AnimeV3.safetensors".into(),
            download_url: civitai(173_961),
            sha256: None, // unknown (see above)
            scheduler: SchedulerKind::DpmPp2mKarras,
            pipelines: vec![Pipeline::Txt2img],
            defaults: Defaults {
                num_inference_steps: Some(25),
                width: Some(1024),
                height: Some(1024),
                guidance_scale: Some(7.0),
                negative_prompt: n(),
            },
            timeout_secs: 12.0,
            incentive_weight: 0.34,
            min_vram_gb: 24,
            max_side: 2048,
            condition_resolution: None,
            nsfw_filter: true,
        },
        ModelSpec {
            name: "DreamShaper".into(),
            arch: Arch::Sd15,
            // NicheImage's file name, although the model is SD 1.5.
            checkpoint: "DreamShaperXL.safetensors".into(),
            download_url: civitai(128_713),
            sha256: None, // unknown (see above)
            scheduler: SchedulerKind::DpmPp2mKarras,
            pipelines: vec![
                Pipeline::Txt2img,
                Pipeline::Img2img,
                Pipeline::ControlnetTxt2img,
            ],
            defaults: Defaults {
                num_inference_steps: Some(30),
                width: Some(512),
                height: Some(768),
                guidance_scale: Some(7.0),
                negative_prompt: n(),
            },
            timeout_secs: 12.0,
            incentive_weight: 0.06,
            min_vram_gb: 12,
            max_side: 1024,
            condition_resolution: None,
            nsfw_filter: true,
        },
        // Not in NicheImage: what an image subnet run today serves first (Apache-2.0). Its
        // weight is 0 so NicheImage's four models keep their shares: a subnet owner who wants it
        // challenged sets `[models.FluxSchnell] incentive_weight`.
        ModelSpec {
            name: "FluxSchnell".into(),
            arch: Arch::Flux,
            // black-forest-labs/FLUX.1-schnell as `huggingface-cli download` lays it out.
            checkpoint: "FLUX.1-schnell".into(),
            download_url: None,
            sha256: None,
            // Unused: FLUX runs its folder's flow-matching Euler scheduler.
            scheduler: SchedulerKind::DpmPp2mKarras,
            pipelines: vec![Pipeline::Txt2img],
            // The model card: 4 steps, no guidance, 1024².
            defaults: Defaults {
                num_inference_steps: Some(4),
                width: Some(1024),
                height: Some(1024),
                guidance_scale: Some(0.0),
                negative_prompt: None,
            },
            timeout_secs: 16.0,
            incentive_weight: 0.0,
            // bf16: transformer 23.8 GB, T5-XXL 9.5 GB, CLIP and VAE; one GPU holds them all.
            min_vram_gb: 40,
            max_side: 1536,
            condition_resolution: None,
            nsfw_filter: true,
        },
    ]
}

/// The built-in catalogue with `overrides` applied (and new models added).
pub fn catalogue(
    overrides: &BTreeMap<String, ModelOverride>,
) -> Result<BTreeMap<String, ModelSpec>, CatalogueError> {
    let mut models: BTreeMap<String, ModelSpec> = built_in()
        .into_iter()
        .map(|m| (m.name.clone(), m))
        .collect();
    for (name, o) in overrides {
        let spec = match models.remove(name) {
            Some(s) => s,
            None => ModelSpec {
                name: name.clone(),
                arch: o.arch.ok_or_else(|| CatalogueError::Incomplete {
                    name: name.clone(),
                    key: "arch",
                })?,
                checkpoint: o
                    .checkpoint
                    .clone()
                    .ok_or_else(|| CatalogueError::Incomplete {
                        name: name.clone(),
                        key: "checkpoint",
                    })?,
                download_url: None,
                sha256: None,
                scheduler: SchedulerKind::DpmPp2mKarras,
                pipelines: vec![Pipeline::Txt2img],
                defaults: Defaults::default(),
                timeout_secs: 12.0,
                incentive_weight: 0.0,
                min_vram_gb: 12,
                max_side: 1024,
                condition_resolution: None,
                nsfw_filter: true,
            },
        };
        let merged = ModelSpec {
            name: name.clone(),
            arch: o.arch.unwrap_or(spec.arch),
            checkpoint: o.checkpoint.clone().unwrap_or(spec.checkpoint),
            download_url: o.download_url.clone().or(spec.download_url),
            sha256: o.sha256.clone().or(spec.sha256),
            scheduler: o.scheduler.unwrap_or(spec.scheduler),
            pipelines: o.pipelines.clone().unwrap_or(spec.pipelines),
            defaults: o.defaults.clone().unwrap_or(spec.defaults),
            timeout_secs: o.timeout_secs.unwrap_or(spec.timeout_secs),
            incentive_weight: o.incentive_weight.unwrap_or(spec.incentive_weight),
            min_vram_gb: o.min_vram_gb.unwrap_or(spec.min_vram_gb),
            max_side: o.max_side.unwrap_or(spec.max_side),
            condition_resolution: o.condition_resolution.or(spec.condition_resolution),
            nsfw_filter: o.nsfw_filter.unwrap_or(spec.nsfw_filter),
        };
        if let Some(p) = merged.pipelines.iter().find(|p| !merged.arch.serves(**p)) {
            return Err(CatalogueError::Unservable {
                name: name.clone(),
                arch: merged.arch,
                pipeline: p.name(),
            });
        }
        models.insert(name.clone(), merged);
    }
    Ok(models)
}

pub fn lookup<'a>(
    models: &'a BTreeMap<String, ModelSpec>,
    name: &str,
) -> Result<&'a ModelSpec, CatalogueError> {
    models
        .get(name)
        .ok_or_else(|| CatalogueError::Unknown(name.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_weights_sum_to_one() {
        let c = catalogue(&BTreeMap::new()).unwrap();
        let total: f64 = c.values().map(|m| m.incentive_weight).sum();
        assert!((total - 1.0).abs() < 1e-9);
        assert_eq!(c["DreamShaper"].defaults.height, Some(768));
        assert_eq!(c["RealisticVision"].scheduler, SchedulerKind::DpmPp2m);
    }

    #[test]
    fn flux_schnell_is_built_in_and_serves_txt2img_only() {
        let c = catalogue(&BTreeMap::new()).unwrap();
        let flux = &c["FluxSchnell"];
        assert_eq!(flux.arch, Arch::Flux);
        assert_eq!(flux.defaults.num_inference_steps, Some(4));
        assert_eq!(flux.defaults.guidance_scale, Some(0.0));
        assert_eq!(flux.incentive_weight, 0.0);
        let mut o = BTreeMap::new();
        o.insert(
            "FluxSchnell".to_string(),
            ModelOverride {
                pipelines: Some(vec![Pipeline::Txt2img, Pipeline::Img2img]),
                ..Default::default()
            },
        );
        let err = catalogue(&o).unwrap_err();
        assert!(err.to_string().contains("cannot serve img2img"), "{err}");
    }

    #[test]
    fn overrides_merge_and_new_models_need_arch_and_checkpoint() {
        let mut o = BTreeMap::new();
        o.insert(
            "DreamShaper".to_string(),
            ModelOverride {
                pipelines: Some(vec![Pipeline::Txt2img]),
                ..Default::default()
            },
        );
        o.insert(
            "Tiny".to_string(),
            ModelOverride {
                arch: Some(Arch::Sd15),
                checkpoint: Some("tiny.safetensors".into()),
                ..Default::default()
            },
        );
        let c = catalogue(&o).unwrap();
        assert_eq!(c["DreamShaper"].pipelines, vec![Pipeline::Txt2img]);
        assert_eq!(c["DreamShaper"].defaults.width, Some(512));
        assert_eq!(c["Tiny"].arch, Arch::Sd15);
        let mut bad = BTreeMap::new();
        bad.insert("Nope".to_string(), ModelOverride::default());
        assert_eq!(
            catalogue(&bad).unwrap_err(),
            CatalogueError::Incomplete {
                name: "Nope".into(),
                key: "arch"
            }
        );
        assert!(
            lookup(&c, "Missing")
                .unwrap_err()
                .to_string()
                .contains("not in the catalogue")
        );
    }
}
