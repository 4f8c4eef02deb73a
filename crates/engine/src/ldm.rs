//! Parameter names of the original (LDM / civitai single-file) layout, from diffusers names.
//! One direction only: loading asks for a diffusers name and looks up its single-file name;
//! the tiny checkpoint is written through the same map, so the two cannot drift apart.

use super::config::UNetConfig;

pub const UNET_PREFIX: &str = "model.diffusion_model.";
pub const VAE_PREFIX: &str = "first_stage_model.";
pub const CLIP_PREFIX: &str = "cond_stage_model.transformer.";
/// SDXL's two text encoders: CLIP ViT-L in transformers' names, OpenCLIP ViT-bigG in its own.
pub const SDXL_CLIP_PREFIX: &str = "conditioner.embedders.0.transformer.";
pub const OPEN_CLIP_PREFIX: &str = "conditioner.embedders.1.model.";

fn resnet_part(rest: &str) -> String {
    let (head, tail) = rest.split_once('.').unwrap_or((rest, ""));
    let mapped = match head {
        "norm1" => "in_layers.0",
        "conv1" => "in_layers.2",
        "time_emb_proj" => "emb_layers.1",
        "norm2" => "out_layers.0",
        "conv2" => "out_layers.3",
        "conv_shortcut" => "skip_connection",
        other => other,
    };
    format!("{mapped}.{tail}")
}

/// Splits `"resnets.3.norm1.weight"` into `("resnets", 3, "norm1.weight")`.
fn indexed(rest: &str) -> Option<(&str, usize, &str)> {
    let mut it = rest.splitn(3, '.');
    let kind = it.next()?;
    let index = it.next()?.parse().ok()?;
    Some((kind, index, it.next().unwrap_or("")))
}

pub fn unet_key(name: &str, c: &UNetConfig) -> String {
    let per = c.layers_per_block as usize + 1;
    let mapped = (|| -> Option<String> {
        if let Some(rest) = name.strip_prefix("conv_in.") {
            return Some(format!("input_blocks.0.0.{rest}"));
        }
        if let Some(rest) = name.strip_prefix("time_embedding.linear_1.") {
            return Some(format!("time_embed.0.{rest}"));
        }
        if let Some(rest) = name.strip_prefix("time_embedding.linear_2.") {
            return Some(format!("time_embed.2.{rest}"));
        }
        if let Some(rest) = name.strip_prefix("conv_norm_out.") {
            return Some(format!("out.0.{rest}"));
        }
        if let Some(rest) = name.strip_prefix("add_embedding.linear_1.") {
            return Some(format!("label_emb.0.0.{rest}"));
        }
        if let Some(rest) = name.strip_prefix("add_embedding.linear_2.") {
            return Some(format!("label_emb.0.2.{rest}"));
        }
        if let Some(rest) = name.strip_prefix("conv_out.") {
            return Some(format!("out.2.{rest}"));
        }
        if let Some(rest) = name.strip_prefix("down_blocks.") {
            let (b, rest) = rest.split_once('.')?;
            let b: usize = b.parse().ok()?;
            let (kind, l, tail) = indexed(rest)?;
            return Some(match kind {
                "resnets" => format!("input_blocks.{}.0.{}", 1 + b * per + l, resnet_part(tail)),
                "attentions" => format!("input_blocks.{}.1.{tail}", 1 + b * per + l),
                "downsamplers" => format!(
                    "input_blocks.{}.0.op.{}",
                    1 + b * per + per - 1,
                    tail.strip_prefix("conv.")?
                ),
                _ => return None,
            });
        }
        if let Some(rest) = name.strip_prefix("mid_block.") {
            let (kind, l, tail) = indexed(rest)?;
            return Some(match kind {
                "resnets" => format!("middle_block.{}.{}", 2 * l, resnet_part(tail)),
                "attentions" => format!("middle_block.1.{tail}"),
                _ => return None,
            });
        }
        if let Some(rest) = name.strip_prefix("up_blocks.") {
            let (b, rest) = rest.split_once('.')?;
            let b: usize = b.parse().ok()?;
            let (kind, l, tail) = indexed(rest)?;
            return Some(match kind {
                "resnets" => format!("output_blocks.{}.0.{}", b * per + l, resnet_part(tail)),
                "attentions" => format!("output_blocks.{}.1.{tail}", b * per + l),
                "upsamplers" => {
                    let slot = if c.has_cross_attention_up(b) { 2 } else { 1 };
                    format!("output_blocks.{}.{slot}.{tail}", b * per + per - 1)
                }
                _ => return None,
            });
        }
        None
    })();
    // Names with no mapping are looked up as they are, and reported missing if absent.
    format!(
        "{UNET_PREFIX}{}",
        mapped.unwrap_or_else(|| name.to_string())
    )
}

fn vae_resnet_part(rest: &str) -> String {
    match rest.split_once('.') {
        Some(("conv_shortcut", tail)) => format!("nin_shortcut.{tail}"),
        _ => rest.to_string(),
    }
}

fn vae_mid(rest: &str) -> Option<String> {
    let (kind, l, tail) = indexed(rest)?;
    Some(match kind {
        "resnets" => format!("mid.block_{}.{}", l + 1, vae_resnet_part(tail)),
        "attentions" => {
            let (head, t) = tail.split_once('.')?;
            let head = match head {
                "group_norm" => "norm".to_string(),
                "to_q" => "q".into(),
                "to_k" => "k".into(),
                "to_v" => "v".into(),
                "to_out" => return Some(format!("mid.attn_1.proj_out.{}", t.strip_prefix("0.")?)),
                other => other.into(),
            };
            format!("mid.attn_1.{head}.{t}")
        }
        _ => return None,
    })
}

/// `blocks` is the number of resolution levels (the decoder's are numbered in reverse).
pub fn vae_key(name: &str, blocks: usize) -> String {
    let mapped = (|| -> Option<String> {
        for side in ["encoder", "decoder"] {
            let Some(rest) = name.strip_prefix(side).and_then(|r| r.strip_prefix('.')) else {
                continue;
            };
            if let Some(t) = rest.strip_prefix("conv_norm_out.") {
                return Some(format!("{side}.norm_out.{t}"));
            }
            if let Some(t) = rest.strip_prefix("mid_block.") {
                return Some(format!("{side}.{}", vae_mid(t)?));
            }
            for (ours, theirs) in [("down_blocks.", "down"), ("up_blocks.", "up")] {
                if let Some(t) = rest.strip_prefix(ours) {
                    let (b, t) = t.split_once('.')?;
                    let mut b: usize = b.parse().ok()?;
                    if theirs == "up" {
                        b = blocks - 1 - b;
                    }
                    let (kind, l, tail) = indexed(t)?;
                    return Some(match kind {
                        "resnets" => {
                            format!("{side}.{theirs}.{b}.block.{l}.{}", vae_resnet_part(tail))
                        }
                        "downsamplers" => format!("{side}.{theirs}.{b}.downsample.{tail}"),
                        "upsamplers" => format!("{side}.{theirs}.{b}.upsample.{tail}"),
                        _ => return None,
                    });
                }
            }
            return Some(name.to_string());
        }
        None
    })();
    format!("{VAE_PREFIX}{}", mapped.unwrap_or_else(|| name.to_string()))
}

/// The text encoder keeps transformers' names under `cond_stage_model.transformer.`.
pub fn clip_key(name: &str) -> String {
    format!("{CLIP_PREFIX}text_model.{name}")
}

/// SDXL's first text encoder.
pub fn sdxl_clip_key(name: &str) -> String {
    format!("{SDXL_CLIP_PREFIX}text_model.{name}")
}

/// SDXL's second text encoder, from `CLIPTextModelWithProjection` names to OpenCLIP's: fused
/// q/k/v (`in_proj_*`), `c_fc`/`c_proj` MLPs, a transposed `text_projection`.
pub fn open_clip_key(name: &str) -> String {
    use super::weights::{pick_part, pick_transposed};
    let p = OPEN_CLIP_PREFIX;
    let mapped = (|| -> Option<String> {
        match name {
            "text_model.embeddings.token_embedding.weight" => {
                return Some(format!("{p}token_embedding.weight"));
            }
            "text_model.embeddings.position_embedding.weight" => {
                return Some(format!("{p}positional_embedding"));
            }
            "text_projection.weight" => {
                return Some(pick_transposed(&format!("{p}text_projection")));
            }
            _ => {}
        }
        if let Some(t) = name.strip_prefix("text_model.final_layer_norm.") {
            return Some(format!("{p}ln_final.{t}"));
        }
        let rest = name.strip_prefix("text_model.encoder.layers.")?;
        let (i, rest) = rest.split_once('.')?;
        let block = format!("{p}transformer.resblocks.{i}");
        let (part, tail) = rest.rsplit_once('.')?;
        Some(match part {
            "layer_norm1" => format!("{block}.ln_1.{tail}"),
            "layer_norm2" => format!("{block}.ln_2.{tail}"),
            "mlp.fc1" => format!("{block}.mlp.c_fc.{tail}"),
            "mlp.fc2" => format!("{block}.mlp.c_proj.{tail}"),
            "self_attn.out_proj" => format!("{block}.attn.out_proj.{tail}"),
            "self_attn.q_proj" => pick_part(&format!("{block}.attn.in_proj_{tail}"), 0, 3),
            "self_attn.k_proj" => pick_part(&format!("{block}.attn.in_proj_{tail}"), 1, 3),
            "self_attn.v_proj" => pick_part(&format!("{block}.attn.in_proj_{tail}"), 2, 3),
            _ => return None,
        })
    })();
    mapped.unwrap_or_else(|| format!("{p}{name}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unet_names_follow_the_original_layout() {
        let c = UNetConfig::default();
        let cases = [
            ("conv_in.weight", "input_blocks.0.0.weight"),
            ("time_embedding.linear_2.bias", "time_embed.2.bias"),
            (
                "down_blocks.0.resnets.1.norm1.weight",
                "input_blocks.2.0.in_layers.0.weight",
            ),
            (
                "down_blocks.1.attentions.0.proj_in.weight",
                "input_blocks.4.1.proj_in.weight",
            ),
            (
                "down_blocks.2.downsamplers.0.conv.weight",
                "input_blocks.9.0.op.weight",
            ),
            (
                "down_blocks.3.resnets.0.conv_shortcut.bias",
                "input_blocks.10.0.skip_connection.bias",
            ),
            (
                "mid_block.resnets.1.time_emb_proj.weight",
                "middle_block.2.emb_layers.1.weight",
            ),
            (
                "mid_block.attentions.0.transformer_blocks.0.attn2.to_k.weight",
                "middle_block.1.transformer_blocks.0.attn2.to_k.weight",
            ),
            (
                "up_blocks.0.resnets.2.conv2.weight",
                "output_blocks.2.0.out_layers.3.weight",
            ),
            (
                "up_blocks.0.upsamplers.0.conv.weight",
                "output_blocks.2.1.conv.weight",
            ),
            (
                "up_blocks.1.upsamplers.0.conv.bias",
                "output_blocks.5.2.conv.bias",
            ),
            (
                "up_blocks.3.attentions.2.norm.weight",
                "output_blocks.11.1.norm.weight",
            ),
            ("conv_norm_out.weight", "out.0.weight"),
        ];
        for (ours, theirs) in cases {
            assert_eq!(
                unet_key(ours, &c),
                format!("{UNET_PREFIX}{theirs}"),
                "{ours}"
            );
        }
    }

    #[test]
    fn vae_names_follow_the_original_layout() {
        let cases = [
            (
                "encoder.down_blocks.1.resnets.0.conv_shortcut.weight",
                "encoder.down.1.block.0.nin_shortcut.weight",
            ),
            (
                "encoder.down_blocks.0.downsamplers.0.conv.weight",
                "encoder.down.0.downsample.conv.weight",
            ),
            (
                "decoder.up_blocks.0.resnets.2.norm1.bias",
                "decoder.up.3.block.2.norm1.bias",
            ),
            (
                "decoder.up_blocks.2.upsamplers.0.conv.weight",
                "decoder.up.1.upsample.conv.weight",
            ),
            (
                "decoder.mid_block.attentions.0.to_out.0.weight",
                "decoder.mid.attn_1.proj_out.weight",
            ),
            (
                "decoder.mid_block.attentions.0.group_norm.bias",
                "decoder.mid.attn_1.norm.bias",
            ),
            (
                "encoder.mid_block.resnets.1.conv1.weight",
                "encoder.mid.block_2.conv1.weight",
            ),
            ("decoder.conv_norm_out.weight", "decoder.norm_out.weight"),
            ("post_quant_conv.bias", "post_quant_conv.bias"),
        ];
        for (ours, theirs) in cases {
            assert_eq!(vae_key(ours, 4), format!("{VAE_PREFIX}{theirs}"), "{ours}");
        }
    }
}
