//! A tiny, randomly initialised SD 1.5-architecture checkpoint in the real single-file layout,
//! with the diffusers config folder beside it. Deterministic: the same bytes on every machine
//! (libtorch's CPU generator is seeded), so tests and the local demo can make it themselves.

use super::clip::ClipTextModel;
use super::config::PipelineConfig;
use super::ldm;
use super::unet::UNet;
use super::vae::{Decoder, Encoder};
use super::weights::Weights;
use serde_json::json;
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

pub const TINY_SEED: i64 = 20_240_229;

#[derive(Debug, thiserror::Error)]
pub enum TinyError {
    #[error("cannot write {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Torch {
        path: PathBuf,
        source: tch::TchError,
    },
}

fn write(path: &Path, text: &str) -> Result<(), TinyError> {
    std::fs::write(path, text).map_err(|source| TinyError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Writes `<dir>/<name>.safetensors` and the config folder `<dir>/<name>/`; returns the file.
pub fn write_tiny_sd15(dir: &Path, name: &str) -> Result<PathBuf, TinyError> {
    let config = PipelineConfig::tiny();
    let _no_grad = tch::no_grad_guard();
    let generator = super::pipeline::lock_generator();
    tch::manual_seed(TINY_SEED);
    let (kind, cpu) = (Kind::Float, Device::Cpu);
    let clip = Weights::random("text_encoder", kind, cpu);
    ClipTextModel::new(&clip.root(), &config.text_encoder);
    let unet = Weights::random("unet", kind, cpu);
    UNet::new(&unet.root(), &config.unet);
    let vae = Weights::random("vae", kind, cpu);
    Decoder::new(&vae.root(), &config.vae);
    Encoder::new(&vae.root(), &config.vae);
    drop(generator);

    let vae_blocks = config.vae.block_out_channels.len();
    let mut tensors: Vec<(String, Tensor)> = Vec::new();
    for (n, t) in clip.created() {
        tensors.push((ldm::clip_key(&n), t));
    }
    tensors.push((
        format!("{}text_model.embeddings.position_ids", ldm::CLIP_PREFIX),
        Tensor::arange(
            config.text_encoder.max_position_embeddings,
            (Kind::Int64, cpu),
        )
        .unsqueeze(0),
    ));
    for (n, t) in unet.created() {
        tensors.push((ldm::unet_key(&n, &config.unet), t));
    }
    for (n, t) in vae.created() {
        // The original layout stores the VAE attention projections as 1x1 convolutions.
        let is_attention_projection = n.contains("attentions.0.to_") && n.ends_with(".weight");
        let t = if is_attention_projection {
            t.unsqueeze(-1).unsqueeze(-1)
        } else {
            t
        };
        tensors.push((ldm::vae_key(&n, vae_blocks), t));
    }
    std::fs::create_dir_all(dir).map_err(|source| TinyError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let file = dir.join(format!("{name}.safetensors"));
    Tensor::write_safetensors(&tensors, &file).map_err(|source| TinyError::Torch {
        path: file.clone(),
        source,
    })?;
    write_config_folder(&dir.join(name), &config)?;
    Ok(file)
}

/// diffusers' config files for `config`, enough for `from_single_file(..., config=folder)`.
pub fn write_config_folder(folder: &Path, c: &PipelineConfig) -> Result<(), TinyError> {
    for sub in ["unet", "vae", "text_encoder", "scheduler"] {
        let p = folder.join(sub);
        std::fs::create_dir_all(&p).map_err(|source| TinyError::Io { path: p, source })?;
    }
    let pretty = |v: serde_json::Value| serde_json::to_string_pretty(&v).unwrap_or_default();
    write(
        &folder.join("model_index.json"),
        &pretty(json!({
            "_class_name": "StableDiffusionPipeline",
            "_diffusers_version": "0.42.1",
            "feature_extractor": [null, null],
            "requires_safety_checker": false,
            "safety_checker": [null, null],
            "scheduler": ["diffusers", "PNDMScheduler"],
            "text_encoder": ["transformers", "CLIPTextModel"],
            "tokenizer": ["transformers", "CLIPTokenizer"],
            "unet": ["diffusers", "UNet2DConditionModel"],
            "vae": ["diffusers", "AutoencoderKL"],
        })),
    )?;
    let u = &c.unet;
    let heads = u.heads(0);
    write(
        &folder.join("unet/config.json"),
        &pretty(json!({
            "_class_name": "UNet2DConditionModel",
            "sample_size": u.sample_size,
            "in_channels": u.in_channels,
            "out_channels": u.out_channels,
            "layers_per_block": u.layers_per_block,
            "block_out_channels": u.block_out_channels,
            "down_block_types": u.down_block_types,
            "up_block_types": u.up_block_types,
            "cross_attention_dim": u.cross_attention_dim,
            "attention_head_dim": heads,
            "norm_num_groups": u.norm_num_groups,
            "norm_eps": u.norm_eps,
            "flip_sin_to_cos": u.flip_sin_to_cos,
            "freq_shift": u.freq_shift,
            "use_linear_projection": u.use_linear_projection,
        })),
    )?;
    let v = &c.vae;
    let n = v.block_out_channels.len();
    write(
        &folder.join("vae/config.json"),
        &pretty(json!({
            "_class_name": "AutoencoderKL",
            "in_channels": v.in_channels,
            "out_channels": v.out_channels,
            "latent_channels": v.latent_channels,
            "block_out_channels": v.block_out_channels,
            "layers_per_block": v.layers_per_block,
            "down_block_types": vec!["DownEncoderBlock2D"; n],
            "up_block_types": vec!["UpDecoderBlock2D"; n],
            "norm_num_groups": v.norm_num_groups,
            "sample_size": u.sample_size * 8,
            "scaling_factor": v.scaling_factor,
        })),
    )?;
    let t = &c.text_encoder;
    write(
        &folder.join("text_encoder/config.json"),
        &pretty(json!({
            "architectures": ["CLIPTextModel"],
            "model_type": "clip_text_model",
            "vocab_size": t.vocab_size,
            "hidden_size": t.hidden_size,
            "intermediate_size": t.intermediate_size,
            "num_hidden_layers": t.num_hidden_layers,
            "num_attention_heads": t.num_attention_heads,
            "max_position_embeddings": t.max_position_embeddings,
            "hidden_act": t.hidden_act,
            "layer_norm_eps": t.layer_norm_eps,
            "projection_dim": t.hidden_size,
            "bos_token_id": 49406,
            "eos_token_id": 49407,
            "pad_token_id": 1,
        })),
    )?;
    let s = &c.scheduler;
    write(
        &folder.join("scheduler/scheduler_config.json"),
        &pretty(json!({
            "_class_name": "PNDMScheduler",
            "beta_start": s.beta_start,
            "beta_end": s.beta_end,
            "beta_schedule": s.beta_schedule,
            "num_train_timesteps": s.num_train_timesteps,
            "set_alpha_to_one": false,
            "skip_prk_steps": true,
            "steps_offset": s.steps_offset,
            "clip_sample": false,
        })),
    )?;
    Ok(())
}

/// The same tiny weights as a diffusers folder (`unet/`, `vae/`, `text_encoder/` safetensors
/// plus configs), the other layout the engine loads. `text_model_prefix` chooses between the
/// historical `text_model.` names and transformers 5's prefix-less ones.
pub fn write_tiny_sd15_folder(dir: &Path, text_model_prefix: bool) -> Result<(), TinyError> {
    let single = dir.join("single");
    let file = write_tiny_sd15(&single, "tiny-sd15")?;
    let config = PipelineConfig::tiny();
    write_config_folder(dir, &config)?;
    let all = Tensor::read_safetensors(&file).map_err(|source| TinyError::Torch {
        path: file.clone(),
        source,
    })?;
    let vae_blocks = config.vae.block_out_channels.len();
    // Invert the single-file names through the same maps the loader uses.
    let clip = Weights::shapes("text_encoder");
    let unet = Weights::shapes("unet");
    let vae = Weights::shapes("vae");
    ClipTextModel::new(&clip.root(), &config.text_encoder);
    UNet::new(&unet.root(), &config.unet);
    Decoder::new(&vae.root(), &config.vae);
    Encoder::new(&vae.root(), &config.vae);
    let lookup = |name: &str| -> Tensor {
        all.iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t.shallow_clone())
            .expect("every mapped name is in the single file")
    };
    let outputs = [
        ("text_encoder/model.safetensors", clip.created(), 0),
        (
            "unet/diffusion_pytorch_model.safetensors",
            unet.created(),
            1,
        ),
        ("vae/diffusion_pytorch_model.safetensors", vae.created(), 2),
    ];
    for (path, names, which) in outputs {
        let tensors: Vec<(String, Tensor)> = names
            .into_iter()
            .map(|(n, t)| {
                let (key, out_name) = match which {
                    0 => (
                        ldm::clip_key(&n),
                        if text_model_prefix {
                            format!("text_model.{n}")
                        } else {
                            n.clone()
                        },
                    ),
                    1 => (ldm::unet_key(&n, &config.unet), n.clone()),
                    _ => (ldm::vae_key(&n, vae_blocks), n.clone()),
                };
                (out_name, lookup(&key).reshape(t.size()))
            })
            .collect();
        let p = dir.join(path);
        Tensor::write_safetensors(&tensors, &p)
            .map_err(|source| TinyError::Torch { path: p, source })?;
    }
    std::fs::remove_dir_all(&single).map_err(|source| TinyError::Io {
        path: single,
        source,
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parameters(w: &Weights) -> i64 {
        w.created().iter().map(|(_, t)| t.numel() as i64).sum()
    }

    #[test]
    fn the_default_architecture_is_full_size_sd15() {
        // diffusers' parameter counts for runwayml/stable-diffusion-v1-5.
        let c = PipelineConfig::default();
        let unet = Weights::shapes("unet");
        UNet::new(&unet.root(), &c.unet);
        assert_eq!(parameters(&unet), 859_520_964);
        let vae = Weights::shapes("vae");
        Decoder::new(&vae.root(), &c.vae);
        Encoder::new(&vae.root(), &c.vae);
        assert_eq!(parameters(&vae), 83_653_863);
        let clip = Weights::shapes("text_encoder");
        ClipTextModel::new(&clip.root(), &c.text_encoder);
        assert_eq!(parameters(&clip), 123_060_480);
    }
}
