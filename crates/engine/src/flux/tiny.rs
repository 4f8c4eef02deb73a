//! A tiny random FLUX.1-schnell folder in diffusers' layout, for the local devnet, `generate`
//! and the tests that need no Python: every part FLUX has (double and single blocks, a T5 v1.1
//! encoder with its tokenizer.json, CLIP, the 16-channel VAE, schnell's scheduler), small.

use std::path::Path;

use serde_json::{Value, json};

use super::config::{FlowMatchConfig, T5Config, TransformerConfig};
use super::t5::T5Encoder;
use super::transformer::FluxTransformer;
use crate::clip::ClipTextModel;
use crate::config::{ClipConfig, VaeConfig};
use crate::tiny::{TinyError, random_network, save, write};
use crate::vae::{Decoder, Encoder};

const SEED: i64 = 1729;

fn transformer() -> TransformerConfig {
    TransformerConfig {
        num_layers: 1,
        num_single_layers: 2,
        attention_head_dim: 16,
        num_attention_heads: 2,
        joint_attention_dim: 32,
        pooled_projection_dim: 32,
        axes_dims_rope: vec![4, 6, 6],
        ..TransformerConfig::default()
    }
}

fn t5(vocab_size: i64) -> T5Config {
    T5Config {
        vocab_size,
        d_model: 32,
        d_kv: 8,
        d_ff: 64,
        num_layers: 2,
        num_heads: 4,
        ..T5Config::default()
    }
}

fn clip() -> ClipConfig {
    ClipConfig {
        hidden_size: 32,
        intermediate_size: 64,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        ..ClipConfig::default()
    }
}

fn vae() -> VaeConfig {
    VaeConfig {
        latent_channels: 16,
        block_out_channels: vec![32, 32, 64, 64],
        layers_per_block: 1,
        scaling_factor: 0.3611,
        shift_factor: Some(0.1159),
        use_quant_conv: false,
        use_post_quant_conv: false,
        force_upcast: true,
        ..VaeConfig::default()
    }
}

/// A T5-style SentencePiece Unigram vocabulary: the specials, the word boundary, letters,
/// digits and some common pieces, scored so that longer pieces win.
fn t5_vocabulary() -> Vec<(String, f64)> {
    let mut v: Vec<(String, f64)> = ["<pad>", "</s>", "<unk>"]
        .iter()
        .map(|s| ((*s).to_string(), 0.0))
        .collect();
    v.push(("▁".into(), -2.0));
    for c in ('a'..='z').chain('0'..='9') {
        v.push((c.to_string(), -5.0));
        v.push((format!("▁{c}"), -4.5));
    }
    for word in [
        "the", "of", "and", "in", "photo", "cat", "dog", "red", "blue", "sea", "city", "night",
        "portrait", "painting", "light", "mountain", "lake", "bicycle", "by",
    ] {
        v.push((format!("▁{word}"), -3.0));
    }
    for piece in ["ing", "er", "ed", "es", "on", "an", "or", "at"] {
        v.push((piece.to_string(), -4.0));
    }
    v
}

/// The tokenizer.json of that vocabulary: transformers 5's T5 pipeline around a Unigram model.
fn t5_tokenizer_json(vocab: &[(String, f64)]) -> Result<Value, TinyError> {
    let special = |id: usize, content: &str| {
        json!({"id": id, "content": content, "single_word": false, "lstrip": false,
               "rstrip": false, "normalized": false, "special": true})
    };
    let file = json!({
        "version": "1.0",
        "added_tokens": [special(0, "<pad>"), special(1, "</s>"), special(2, "<unk>")],
        "model": {"type": "Unigram", "unk_id": 2, "vocab": vocab, "byte_fallback": false}
    });
    super::tokenizer::as_transformers_5(file).map_err(|reason| TinyError::Io {
        path: "tokenizer_2/tokenizer.json".into(),
        source: std::io::Error::other(reason),
    })
}

fn write_json(path: &Path, value: &Value) -> Result<(), TinyError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| TinyError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    write(path, &format!("{value:#}"))
}

/// Writes the folder `dir` (created) with random weights drawn from a fixed seed.
pub fn write_tiny_flux(dir: &Path) -> Result<(), TinyError> {
    let (tc, cc, vc) = (transformer(), clip(), vae());
    let vocab = t5_vocabulary();
    let t5c = t5(vocab.len() as i64);
    write_json(
        &dir.join("model_index.json"),
        &json!({"_class_name": "FluxPipeline", "_diffusers_version": "0.42.1",
                "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"],
                "text_encoder": ["transformers", "CLIPTextModel"],
                "text_encoder_2": ["transformers", "T5EncoderModel"],
                "tokenizer": ["transformers", "CLIPTokenizer"],
                "tokenizer_2": ["transformers", "T5TokenizerFast"],
                "transformer": ["diffusers", "FluxTransformer2DModel"],
                "vae": ["diffusers", "AutoencoderKL"]}),
    )?;
    write_json(
        &dir.join("transformer/config.json"),
        &json!({"_class_name": "FluxTransformer2DModel", "patch_size": tc.patch_size,
                "in_channels": tc.in_channels, "num_layers": tc.num_layers,
                "num_single_layers": tc.num_single_layers,
                "attention_head_dim": tc.attention_head_dim,
                "num_attention_heads": tc.num_attention_heads,
                "joint_attention_dim": tc.joint_attention_dim,
                "pooled_projection_dim": tc.pooled_projection_dim, "guidance_embeds": false,
                "axes_dims_rope": tc.axes_dims_rope}),
    )?;
    write_json(
        &dir.join("text_encoder/config.json"),
        &json!({"architectures": ["CLIPTextModel"], "vocab_size": cc.vocab_size,
                "hidden_size": cc.hidden_size, "intermediate_size": cc.intermediate_size,
                "num_hidden_layers": cc.num_hidden_layers,
                "num_attention_heads": cc.num_attention_heads,
                "max_position_embeddings": cc.max_position_embeddings,
                "hidden_act": cc.hidden_act, "layer_norm_eps": cc.layer_norm_eps}),
    )?;
    write_json(
        &dir.join("text_encoder_2/config.json"),
        &json!({"architectures": ["T5EncoderModel"], "vocab_size": t5c.vocab_size,
                "d_model": t5c.d_model, "d_kv": t5c.d_kv, "d_ff": t5c.d_ff,
                "num_layers": t5c.num_layers, "num_heads": t5c.num_heads,
                "relative_attention_num_buckets": t5c.relative_attention_num_buckets,
                "relative_attention_max_distance": t5c.relative_attention_max_distance,
                "layer_norm_epsilon": t5c.layer_norm_epsilon,
                "feed_forward_proj": "gated-gelu", "dense_act_fn": "gelu_new",
                "is_gated_act": true}),
    )?;
    write_json(
        &dir.join("vae/config.json"),
        &json!({"_class_name": "AutoencoderKL", "in_channels": 3, "out_channels": 3,
                "latent_channels": vc.latent_channels,
                "block_out_channels": vc.block_out_channels,
                "layers_per_block": vc.layers_per_block, "norm_num_groups": vc.norm_num_groups,
                "scaling_factor": vc.scaling_factor, "shift_factor": vc.shift_factor,
                "use_quant_conv": false, "use_post_quant_conv": false, "force_upcast": true}),
    )?;
    let s = FlowMatchConfig::default();
    write_json(
        &dir.join("scheduler/scheduler_config.json"),
        &json!({"_class_name": "FlowMatchEulerDiscreteScheduler",
                "num_train_timesteps": s.num_train_timesteps, "shift": s.shift,
                "use_dynamic_shifting": false}),
    )?;
    write_json(
        &dir.join("tokenizer_2/tokenizer.json"),
        &t5_tokenizer_json(&vocab)?,
    )?;

    let parts = [
        (
            "transformer/diffusion_pytorch_model.safetensors",
            random_network("transformer", SEED, |w| {
                FluxTransformer::new(&w.root(), &tc);
            }),
        ),
        (
            "text_encoder/model.safetensors",
            random_network("text_encoder", SEED + 1, |w| {
                ClipTextModel::new(&w.root(), &cc);
            }),
        ),
        (
            "text_encoder_2/model.safetensors",
            random_network("text_encoder_2", SEED + 2, |w| {
                T5Encoder::new(&w.root(), &t5c);
            }),
        ),
        (
            "vae/diffusion_pytorch_model.safetensors",
            random_network("vae", SEED + 3, |w| {
                Decoder::new(&w.root(), &vc);
                Encoder::new(&w.root(), &vc);
            }),
        ),
    ];
    for (file, weights) in parts {
        save(&weights.created(), &dir.join(file))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flux::{FluxPipeline, FluxRequest};
    use tch::{Device, Kind};

    #[test]
    fn the_tiny_folder_loads_tokenizes_and_draws() {
        let dir = tempfile::tempdir().unwrap();
        write_tiny_flux(dir.path()).unwrap();
        assert!(crate::model::is_flux(dir.path()));
        let pipe = FluxPipeline::load(dir.path(), Device::Cpu, Kind::Float).unwrap();
        let (clip, t5) = pipe.token_ids("a photo of the red cat").unwrap();
        assert_eq!(clip.len(), 77);
        assert_eq!(t5.len(), super::super::T5_TOKENS);
        // ▁a ▁photo ▁of ▁the ▁red ▁cat </s>, then padding.
        let vocab = t5_vocabulary();
        let id = |p: &str| vocab.iter().position(|(v, _)| v == p).unwrap() as i64;
        let words = ["▁a", "▁photo", "▁of", "▁the", "▁red", "▁cat", "</s>"];
        assert_eq!(&t5[..7], words.map(id).as_slice());
        assert!(t5[7..].iter().all(|&t| t == 0));
        let req = FluxRequest {
            prompt: "a red bicycle by the sea".into(),
            seed: 7,
            steps: 2,
            width: 48,
            height: 32,
        };
        let a = pipe.txt2img(&req).unwrap();
        assert_eq!((a.width, a.height), (48, 32));
        assert_eq!(pipe.txt2img(&req).unwrap().data, a.data, "deterministic");
        let other = pipe.txt2img(&FluxRequest { seed: 8, ..req }).unwrap();
        assert_ne!(other.data, a.data);

        // The VRAM estimate counts the transformer as the denoiser, and both text encoders.
        let counts = crate::weights::parameter_counts(dir.path()).unwrap();
        let transformer = crate::tiny::random_network("t", 0, |w| {
            FluxTransformer::new(&w.root(), &transformer());
        });
        let n: i64 = transformer
            .created()
            .iter()
            .map(|(_, t)| t.numel() as i64)
            .sum();
        assert_eq!(counts.unet, n as u64);
        assert!(counts.text_encoders > 0 && counts.vae > 0, "{counts:?}");
    }
}
