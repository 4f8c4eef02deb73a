//! The transformer as FLUX's own repository ships it (`flux1-schnell.safetensors`, Black Forest
//! Labs' names: fused q/k/v, the single blocks' q/k/v and MLP in one `linear1`, the final
//! modulation as (shift, scale)), read under diffusers' names, as diffusers'
//! `convert_flux_transformer_checkpoint_to_diffusers` maps them.

use crate::weights::{SafetensorsFile, pick_part, pick_parts, pick_swapped};

/// Where a file holds FLUX's transformer: at the top, or under ComfyUI's `model.diffusion_model.`.
const PREFIXES: [&str; 2] = ["", "model.diffusion_model."];

/// The prefix of `file`'s transformer keys, or None when it holds no FLUX transformer.
pub fn find_prefix(file: &SafetensorsFile) -> Option<&'static str> {
    PREFIXES
        .into_iter()
        .find(|p| file.contains(&format!("{p}final_layer.linear.weight")))
}

/// [`find_prefix`], top level when there is none (the load then names what is missing).
pub fn prefix(file: &SafetensorsFile) -> &'static str {
    find_prefix(file).unwrap_or("")
}

/// A diffusers transformer parameter name -> the original file's key (with a pick).
pub fn bfl_key(name: &str) -> String {
    let (stem, leaf) = match name.rsplit_once('.') {
        Some(split) => split,
        None => return name.to_string(),
    };
    let whole = |k: &str| format!("{k}.{leaf}");
    let fixed = [
        (
            "time_text_embed.timestep_embedder.linear_1",
            "time_in.in_layer",
        ),
        (
            "time_text_embed.timestep_embedder.linear_2",
            "time_in.out_layer",
        ),
        (
            "time_text_embed.text_embedder.linear_1",
            "vector_in.in_layer",
        ),
        (
            "time_text_embed.text_embedder.linear_2",
            "vector_in.out_layer",
        ),
        ("context_embedder", "txt_in"),
        ("x_embedder", "img_in"),
        ("proj_out", "final_layer.linear"),
    ];
    if let Some((_, k)) = fixed.iter().find(|(d, _)| *d == stem) {
        return whole(k);
    }
    if stem == "norm_out.linear" {
        return pick_swapped(&whole("final_layer.adaLN_modulation.1"));
    }
    let mut parts = stem.splitn(3, '.');
    let (group, index, rest) = match (parts.next(), parts.next(), parts.next()) {
        (Some(g), Some(i), Some(r)) => (g, i, r),
        _ => return name.to_string(),
    };
    match group {
        "transformer_blocks" => {
            let b = format!("double_blocks.{index}");
            let qkv =
                |side: &str, part: i64| pick_part(&format!("{b}.{side}_attn.qkv.{leaf}"), part, 3);
            match rest {
                "norm1.linear" => whole(&format!("{b}.img_mod.lin")),
                "norm1_context.linear" => whole(&format!("{b}.txt_mod.lin")),
                "attn.to_q" => qkv("img", 0),
                "attn.to_k" => qkv("img", 1),
                "attn.to_v" => qkv("img", 2),
                "attn.add_q_proj" => qkv("txt", 0),
                "attn.add_k_proj" => qkv("txt", 1),
                "attn.add_v_proj" => qkv("txt", 2),
                "attn.norm_q" => format!("{b}.img_attn.norm.query_norm.scale"),
                "attn.norm_k" => format!("{b}.img_attn.norm.key_norm.scale"),
                "attn.norm_added_q" => format!("{b}.txt_attn.norm.query_norm.scale"),
                "attn.norm_added_k" => format!("{b}.txt_attn.norm.key_norm.scale"),
                "attn.to_out.0" => whole(&format!("{b}.img_attn.proj")),
                "attn.to_add_out" => whole(&format!("{b}.txt_attn.proj")),
                "ff.net.0.proj" => whole(&format!("{b}.img_mlp.0")),
                "ff.net.2" => whole(&format!("{b}.img_mlp.2")),
                "ff_context.net.0.proj" => whole(&format!("{b}.txt_mlp.0")),
                "ff_context.net.2" => whole(&format!("{b}.txt_mlp.2")),
                _ => name.to_string(),
            }
        }
        "single_transformer_blocks" => {
            let b = format!("single_blocks.{index}");
            // linear1 holds q, k, v (one width each) then the MLP (four widths): 7 blocks.
            let linear1 =
                |part: i64, span: i64| pick_parts(&format!("{b}.linear1.{leaf}"), part, span, 7);
            match rest {
                "norm.linear" => whole(&format!("{b}.modulation.lin")),
                "attn.to_q" => linear1(0, 1),
                "attn.to_k" => linear1(1, 1),
                "attn.to_v" => linear1(2, 1),
                "proj_mlp" => linear1(3, 4),
                "attn.norm_q" => format!("{b}.norm.query_norm.scale"),
                "attn.norm_k" => format!("{b}.norm.key_norm.scale"),
                "proj_out" => whole(&format!("{b}.linear2")),
                _ => name.to_string(),
            }
        }
        _ => name.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::weights::Pick;

    #[test]
    fn the_transformer_is_found_at_the_top_or_under_comfyuis_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let t = tch::Tensor::zeros([2, 2], (tch::Kind::Float, tch::Device::Cpu));
        for (name, expected) in [
            ("final_layer.linear.weight", Some("")),
            (
                "model.diffusion_model.final_layer.linear.weight",
                Some("model.diffusion_model."),
            ),
            ("model.diffusion_model.out.2.weight", None),
        ] {
            let path = dir.path().join("t.safetensors");
            tch::Tensor::write_safetensors(&[(name, &t)], &path).unwrap();
            let file = SafetensorsFile::open(&path).unwrap();
            assert_eq!(find_prefix(&file), expected, "{name}");
        }
    }

    #[test]
    fn names_follow_diffusers_conversion() {
        assert_eq!(bfl_key("x_embedder.weight"), "img_in.weight");
        assert_eq!(
            Pick::parse(&bfl_key("transformer_blocks.3.attn.add_k_proj.bias")),
            (
                "double_blocks.3.txt_attn.qkv.bias",
                Pick::Part {
                    index: 1,
                    span: 1,
                    of: 3
                }
            )
        );
        assert_eq!(
            Pick::parse(&bfl_key("single_transformer_blocks.0.proj_mlp.weight")),
            (
                "single_blocks.0.linear1.weight",
                Pick::Part {
                    index: 3,
                    span: 4,
                    of: 7
                }
            )
        );
        assert_eq!(
            bfl_key("single_transformer_blocks.7.attn.norm_k.weight"),
            "single_blocks.7.norm.key_norm.scale"
        );
        assert_eq!(
            Pick::parse(&bfl_key("norm_out.linear.bias")),
            ("final_layer.adaLN_modulation.1.bias", Pick::SwapHalves)
        );
    }
}
