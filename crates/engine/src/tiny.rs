//! Tiny, randomly initialised SD 1.5- and SDXL-architecture checkpoints in the real single-file layout,
//! with the diffusers config folder beside it. Deterministic: the same bytes on every machine
//! (libtorch's CPU generator is seeded), so tests and the local demo can make it themselves.

use super::clip::{ClipTextModel, ClipWithProjection};
use super::config::PipelineConfig;
use super::controlnet::{ControlConfig, ControlNet};
use super::ldm;
use super::unet::UNet;
use super::vae::{Decoder, Encoder};
use super::weights::{Pick, Weights};
use serde_json::json;
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

pub const TINY_SEED: i64 = 20_240_229;

/// The pickle `torch.save` writes for the state dict `{"w": tensor}`: a view of `size`
/// floats at `stride` over storage `"0"` of 4 floats (for the checkpoint reader's tests).
pub fn state_dict_pickle(size: u8, stride: u8) -> Vec<u8> {
    let mut p: Vec<u8> = vec![0x80, 2, b'}'];
    let unicode = |p: &mut Vec<u8>, s: &str| {
        p.push(b'X');
        p.extend((s.len() as u32).to_le_bytes());
        p.extend(s.as_bytes());
    };
    unicode(&mut p, "w");
    p.extend(b"ctorch._utils\n_rebuild_tensor_v2\n((");
    unicode(&mut p, "storage");
    p.extend(b"ctorch\nFloatStorage\n");
    unicode(&mut p, "0");
    unicode(&mut p, "cpu");
    p.extend([
        b'K', 4, b't', b'Q', b'K', 0, b'K', size, 0x85, b'K', stride, 0x85, 0x89,
    ]);
    p.extend(b"ccollections\nOrderedDict\n)Rt");
    p.extend([b'R', b's', b'.']);
    p
}

/// A zip-format checkpoint as `torch.save` stores one (entries uncompressed): `pickle` as
/// `archive/data.pkl`, `storage` as `archive/data/0`, a little-endian byte order.
pub fn torch_zip(pickle: &[u8], storage: &[u8]) -> zip::result::ZipResult<Vec<u8>> {
    use std::io::Write;
    let mut out = std::io::Cursor::new(Vec::new());
    let mut zip = zip::ZipWriter::new(&mut out);
    let stored =
        zip::write::FileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (name, bytes) in [
        ("archive/data.pkl", pickle),
        ("archive/byteorder", b"little".as_slice()),
        ("archive/data/0", storage),
    ] {
        zip.start_file(name, stored)?;
        zip.write_all(bytes)?;
    }
    zip.finish()?;
    drop(zip);
    Ok(out.into_inner())
}

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

pub(crate) fn write(path: &Path, text: &str) -> Result<(), TinyError> {
    std::fs::write(path, text).map_err(|source| TinyError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Writes `<dir>/<name>.safetensors` and the config folder `<dir>/<name>/`; returns the file.
pub fn write_tiny_sd15(dir: &Path, name: &str) -> Result<PathBuf, TinyError> {
    write_tiny(dir, name, &PipelineConfig::tiny())
}

/// The SDXL-architecture counterpart: both text encoders (the second in OpenCLIP's layout, fused
/// q/k/v and a transposed projection) and the added-conditioning UNet.
pub fn write_tiny_sdxl(dir: &Path, name: &str) -> Result<PathBuf, TinyError> {
    write_tiny(dir, name, &PipelineConfig::tiny_sdxl())
}

/// The tiny pipeline's random weights, drawn in a fixed order from a fixed seed.
struct TinyWeights {
    clip: Weights,
    clip_2: Option<Weights>,
    unet: Weights,
    vae: Weights,
}

fn tiny_weights(config: &PipelineConfig) -> TinyWeights {
    let _no_grad = tch::no_grad_guard();
    let _generator = super::pipeline::lock_generator();
    tch::manual_seed(TINY_SEED);
    let (kind, cpu) = (Kind::Float, Device::Cpu);
    let clip = Weights::random("text_encoder", kind, cpu);
    ClipTextModel::new(&clip.root(), &config.text_encoder);
    let clip_2 = config.text_encoder_2.as_ref().map(|c2| {
        let w = Weights::random("text_encoder_2", kind, cpu);
        ClipWithProjection::new(&w.root(), c2);
        w
    });
    let unet = Weights::random("unet", kind, cpu);
    UNet::new(&unet.root(), &config.unet);
    let vae = Weights::random("vae", kind, cpu);
    Decoder::new(&vae.root(), &config.vae);
    Encoder::new(&vae.root(), &config.vae);
    TinyWeights {
        clip,
        clip_2,
        unet,
        vae,
    }
}

/// The tiny SD 1.5 as a diffusers folder (`unet/`, `vae/`, `text_encoder/` safetensors plus
/// configs), the other layout the engine loads: the same weights as [`write_tiny_sd15`] under
/// diffusers' names. `text_model_prefix` chooses between the historical `text_model.` names of
/// the (first) text encoder and transformers 5's prefix-less ones.
pub fn write_tiny_sd15_folder(dir: &Path, text_model_prefix: bool) -> Result<(), TinyError> {
    write_tiny_folder(dir, &PipelineConfig::tiny(), text_model_prefix)
}

/// The tiny SDXL as a diffusers folder, with `text_encoder_2/` as well; see
/// [`write_tiny_sd15_folder`].
pub fn write_tiny_sdxl_folder(dir: &Path, text_model_prefix: bool) -> Result<(), TinyError> {
    write_tiny_folder(dir, &PipelineConfig::tiny_sdxl(), text_model_prefix)
}

fn write_tiny_folder(
    dir: &Path,
    config: &PipelineConfig,
    text_model_prefix: bool,
) -> Result<(), TinyError> {
    write_config_folder(dir, config)?;
    let w = tiny_weights(config);
    let first = |n: String| {
        if text_model_prefix {
            format!("text_model.{n}")
        } else {
            n
        }
    };
    let mut outputs = vec![
        (
            "text_encoder/model.safetensors",
            w.clip
                .created()
                .into_iter()
                .map(|(n, t)| (first(n), t))
                .collect(),
        ),
        ("unet/diffusion_pytorch_model.safetensors", w.unet.created()),
        ("vae/diffusion_pytorch_model.safetensors", w.vae.created()),
    ];
    if let Some(c2) = &w.clip_2 {
        outputs.push(("text_encoder_2/model.safetensors", c2.created()));
    }
    for (path, tensors) in outputs {
        save(&tensors, &dir.join(path))?;
    }
    Ok(())
}

fn write_tiny(dir: &Path, name: &str, config: &PipelineConfig) -> Result<PathBuf, TinyError> {
    let TinyWeights {
        clip,
        clip_2,
        unet,
        vae,
    } = tiny_weights(config);

    let vae_blocks = config.vae.block_out_channels.len();
    let (clip_key, clip_prefix): (fn(&str) -> String, &str) = if config.is_sdxl() {
        (ldm::sdxl_clip_key, ldm::SDXL_CLIP_PREFIX)
    } else {
        (ldm::clip_key, ldm::CLIP_PREFIX)
    };
    let mut tensors: Vec<(String, Tensor)> = Vec::new();
    for (n, t) in clip.created() {
        tensors.push((clip_key(&n), t));
    }
    tensors.push((
        format!("{clip_prefix}text_model.embeddings.position_ids"),
        Tensor::arange(
            config.text_encoder.max_position_embeddings,
            (Kind::Int64, Device::Cpu),
        )
        .unsqueeze(0),
    ));
    if let Some(w) = &clip_2 {
        let mapped = w
            .created()
            .into_iter()
            .map(|(n, t)| (ldm::open_clip_key(&n), t))
            .collect();
        tensors.extend(Pick::assemble(mapped));
    }
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
    let file = dir.join(format!("{name}.safetensors"));
    save(&tensors, &file)?;
    write_config_folder(&dir.join(name), config)?;
    Ok(file)
}

/// A tiny random ControlNet for the tiny SD 1.5 UNet, as a diffusers folder
/// (`config.json`, `diffusion_pytorch_model.safetensors`). `seed` tells two nets apart.
pub fn write_tiny_controlnet(dir: &Path, seed: i64) -> Result<(), TinyError> {
    let unet = PipelineConfig::tiny().unet;
    let control = ControlConfig {
        conditioning_embedding_out_channels: vec![8, 8, 16, 16],
        ..ControlConfig::default()
    };
    let w = random_network("controlnet", seed, |w| {
        ControlNet::new(w, &unet, &control);
    });
    save(
        &w.created(),
        &dir.join("diffusion_pytorch_model.safetensors"),
    )?;
    let config = json!({
        "_class_name": "ControlNetModel",
        "_diffusers_version": "0.42.1",
        "in_channels": unet.in_channels,
        "block_out_channels": unet.block_out_channels,
        "down_block_types": unet.down_block_types,
        "layers_per_block": unet.layers_per_block,
        "cross_attention_dim": unet.cross_attention_dim,
        "attention_head_dim": unet.heads(0),
        "norm_num_groups": unet.norm_num_groups,
        "norm_eps": unet.norm_eps,
        "flip_sin_to_cos": unet.flip_sin_to_cos,
        "freq_shift": unet.freq_shift,
        "use_linear_projection": unet.use_linear_projection,
        "conditioning_embedding_out_channels": control.conditioning_embedding_out_channels,
        "conditioning_channels": control.conditioning_channels,
        "controlnet_conditioning_channel_order": control.controlnet_conditioning_channel_order,
        "global_pool_conditions": control.global_pool_conditions,
    });
    write(
        &dir.join("config.json"),
        &serde_json::to_string_pretty(&config).unwrap_or_default(),
    )
}

/// diffusers' config files for `config`, enough for `from_single_file(..., config=folder)`.
pub fn write_config_folder(folder: &Path, c: &PipelineConfig) -> Result<(), TinyError> {
    let sdxl = c.is_sdxl();
    let subs: &[&str] = if sdxl {
        &["unet", "vae", "text_encoder", "text_encoder_2", "scheduler"]
    } else {
        &["unet", "vae", "text_encoder", "scheduler"]
    };
    for sub in subs {
        let p = folder.join(sub);
        std::fs::create_dir_all(&p).map_err(|source| TinyError::Io { path: p, source })?;
    }
    let pretty = |v: serde_json::Value| serde_json::to_string_pretty(&v).unwrap_or_default();
    let index = if sdxl {
        json!({
            "_class_name": "StableDiffusionXLPipeline",
            "_diffusers_version": "0.42.1",
            "force_zeros_for_empty_prompt": c.force_zeros_for_empty_prompt,
            "scheduler": ["diffusers", "EulerDiscreteScheduler"],
            "text_encoder": ["transformers", "CLIPTextModel"],
            "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
            "tokenizer": ["transformers", "CLIPTokenizer"],
            "tokenizer_2": ["transformers", "CLIPTokenizer"],
            "unet": ["diffusers", "UNet2DConditionModel"],
            "vae": ["diffusers", "AutoencoderKL"],
        })
    } else {
        json!({
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
        })
    };
    write(&folder.join("model_index.json"), &pretty(index))?;
    let u = &c.unet;
    let heads = u.heads(0);
    let mut unet = json!({
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
    });
    if sdxl {
        let n = u.block_out_channels.len();
        let per_block = |p: &super::config::PerBlock| (0..n).map(|i| p.get(i)).collect::<Vec<_>>();
        unet["attention_head_dim"] = json!(per_block(&u.attention_head_dim));
        unet["transformer_layers_per_block"] = json!(per_block(&u.transformer_layers_per_block));
        unet["addition_embed_type"] = json!(u.addition_embed_type);
        unet["addition_time_embed_dim"] = json!(u.addition_time_embed_dim);
        unet["projection_class_embeddings_input_dim"] =
            json!(u.projection_class_embeddings_input_dim);
    }
    write(&folder.join("unet/config.json"), &pretty(unet))?;
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
            "force_upcast": v.force_upcast,
        })),
    )?;
    let text = |t: &super::config::ClipConfig, class: &str| {
        json!({
            "architectures": [class],
            "model_type": "clip_text_model",
            "vocab_size": t.vocab_size,
            "hidden_size": t.hidden_size,
            "intermediate_size": t.intermediate_size,
            "num_hidden_layers": t.num_hidden_layers,
            "num_attention_heads": t.num_attention_heads,
            "max_position_embeddings": t.max_position_embeddings,
            "hidden_act": t.hidden_act,
            "layer_norm_eps": t.layer_norm_eps,
            "projection_dim": t.projection_dim.unwrap_or(t.hidden_size),
            "bos_token_id": 49406,
            "eos_token_id": 49407,
            "pad_token_id": 1,
        })
    };
    write(
        &folder.join("text_encoder/config.json"),
        &pretty(text(&c.text_encoder, "CLIPTextModel")),
    )?;
    if let Some(t2) = &c.text_encoder_2 {
        write(
            &folder.join("text_encoder_2/config.json"),
            &pretty(text(t2, "CLIPTextModelWithProjection")),
        )?;
    }
    let scheduler = c.scheduler.to_json();
    write(
        &folder.join("scheduler/scheduler_config.json"),
        &pretty(scheduler),
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parameters(w: &Weights) -> i64 {
        w.created().iter().map(|(_, t)| t.numel() as i64).sum()
    }

    #[test]
    fn parameter_counts_come_from_the_headers() {
        let dir = tempfile::tempdir().unwrap();
        let file = write_tiny_sd15(dir.path(), "t").unwrap();
        let counts = super::super::weights::parameter_counts(&file).unwrap();
        let c = PipelineConfig::tiny();
        let unet = Weights::shapes("unet");
        UNet::new(&unet.root(), &c.unet);
        let vae = Weights::shapes("vae");
        Decoder::new(&vae.root(), &c.vae);
        Encoder::new(&vae.root(), &c.vae);
        let clip = Weights::shapes("text_encoder");
        ClipTextModel::new(&clip.root(), &c.text_encoder);
        assert_eq!(counts.unet as i64, parameters(&unet));
        assert_eq!(counts.vae as i64, parameters(&vae));
        // Plus the 77 position ids the file carries.
        assert_eq!(counts.text_encoders as i64, parameters(&clip) + 77);
    }

    #[test]
    fn the_sdxl_architecture_is_full_size_sdxl() {
        // diffusers' and transformers' parameter counts for SDXL 1.0 base's UNet and second
        // text encoder (scripts/parity: the same configs instantiated empty).
        let c = PipelineConfig::sdxl();
        let unet = Weights::shapes("unet");
        UNet::new(&unet.root(), &c.unet);
        assert_eq!(parameters(&unet), 2_567_463_684);
        let clip = Weights::shapes("text_encoder_2");
        ClipWithProjection::new(&clip.root(), c.text_encoder_2.as_ref().unwrap());
        assert_eq!(parameters(&clip), 694_659_840);
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

/// Which annotator network a random full-size checkpoint is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum AnnotatorNet {
    Midas,
    Normalbae,
}

/// A full-size annotator network with deterministic random weights (stored in fp16 to halve
/// the file), under the published checkpoint's names: the parity tests' stand-in for the real
/// weights, which cannot be redistributed in the repo.
pub fn write_random_annotator(net: AnnotatorNet, file: &Path, seed: i64) -> Result<(), TinyError> {
    let w = random_network("annotator", seed, |w| match net {
        AnnotatorNet::Midas => {
            crate::annotator::midas::Midas::build(&w.root(), Device::Cpu);
        }
        AnnotatorNet::Normalbae => {
            crate::annotator::normalbae::NormalBae::build(&w.root(), Device::Cpu);
        }
    });
    let tensors: Vec<(String, Tensor)> = w
        .created()
        .into_iter()
        .map(|(n, t)| (n, t.to_kind(Kind::Half)))
        .collect();
    save(&tensors, file)
}

/// One network whose architecture `build` makes, with random weights drawn from `seed`.
pub(crate) fn random_network(model: &str, seed: i64, build: impl FnOnce(&Weights)) -> Weights {
    let _no_grad = tch::no_grad_guard();
    let _generator = super::pipeline::lock_generator();
    tch::manual_seed(seed);
    let w = Weights::random(model, Kind::Float, Device::Cpu);
    build(&w);
    w
}

/// Writes `tensors` as a safetensors `file`, making its folder first.
pub(crate) fn save(tensors: &[(String, Tensor)], file: &Path) -> Result<(), TinyError> {
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir).map_err(|source| TinyError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    Tensor::write_safetensors(tensors, file).map_err(|source| TinyError::Torch {
        path: file.to_path_buf(),
        source,
    })
}

/// A complete folder for NicheImage's three-way ControlNet on the tiny SD 1.5: three tiny
/// ControlNets under the Hugging Face names and both annotators, full size with random weights,
/// as safetensors (about 400 MB).
pub fn write_tiny_multi_controlnet(dir: &Path) -> Result<(), TinyError> {
    use super::multi_controlnet::{NETS, converted_name};
    for (i, (name, _)) in NETS.iter().enumerate() {
        write_tiny_controlnet(&dir.join(name), 100 + i as i64)?;
    }
    write_random_annotator(
        AnnotatorNet::Midas,
        &dir.join(converted_name(crate::annotator::midas::CHECKPOINT)),
        0,
    )?;
    write_random_annotator(
        AnnotatorNet::Normalbae,
        &dir.join(converted_name(crate::annotator::normalbae::CHECKPOINT)),
        0,
    )
}
