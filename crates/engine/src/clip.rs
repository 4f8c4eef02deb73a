//! The CLIP text encoders (transformers' `CLIPTextModel` and `CLIPTextModelWithProjection`):
//! what the UNet is conditioned on.

use super::config::ClipConfig;
use super::nn::{LayerNorm, Linear, attention};
use super::weights::Scope;
use tch::{Kind, Tensor};

struct EncoderLayer {
    ln1: LayerNorm,
    q: Linear,
    k: Linear,
    v: Linear,
    out: Linear,
    ln2: LayerNorm,
    fc1: Linear,
    fc2: Linear,
}

pub struct ClipTextModel {
    token_embedding: Tensor,
    position_embedding: Tensor,
    layers: Vec<EncoderLayer>,
    final_ln: LayerNorm,
    heads: i64,
    quick_gelu: bool,
}

impl ClipTextModel {
    /// `w` is rooted at the `text_model` level.
    pub fn new(w: &Scope, c: &ClipConfig) -> Self {
        let d = c.hidden_size;
        let emb = w.at("embeddings");
        let layers = (0..c.num_hidden_layers)
            .map(|i| {
                let l = w.at("encoder.layers").at(i);
                let attn = l.at("self_attn");
                EncoderLayer {
                    ln1: LayerNorm::new(&l.at("layer_norm1"), d, c.layer_norm_eps),
                    q: Linear::new(&attn.at("q_proj"), d, d, true),
                    k: Linear::new(&attn.at("k_proj"), d, d, true),
                    v: Linear::new(&attn.at("v_proj"), d, d, true),
                    out: Linear::new(&attn.at("out_proj"), d, d, true),
                    ln2: LayerNorm::new(&l.at("layer_norm2"), d, c.layer_norm_eps),
                    fc1: Linear::new(&l.at("mlp.fc1"), d, c.intermediate_size, true),
                    fc2: Linear::new(&l.at("mlp.fc2"), c.intermediate_size, d, true),
                }
            })
            .collect();
        Self {
            token_embedding: emb.at("token_embedding").get("weight", &[c.vocab_size, d]),
            position_embedding: emb
                .at("position_embedding")
                .get("weight", &[c.max_position_embeddings, d]),
            layers,
            final_ln: LayerNorm::new(&w.at("final_layer_norm"), d, c.layer_norm_eps),
            heads: c.num_attention_heads,
            quick_gelu: c.hidden_act == "quick_gelu",
        }
    }

    /// Token ids `[batch, tokens]` to the last hidden state `[batch, tokens, hidden]`.
    pub fn forward(&self, ids: &Tensor) -> Tensor {
        self.encode(ids).last
    }

    /// Runs every layer; keeps what SD (last, normed) and SDXL (penultimate, unnormed) use.
    pub fn encode(&self, ids: &Tensor) -> ClipOutput {
        let n = ids.size()[1];
        let positions = self.position_embedding.narrow(0, 0, n).unsqueeze(0);
        let mut x = self
            .token_embedding
            .index_select(0, &ids.flatten(0, -1).to_kind(Kind::Int64))
            .view([ids.size()[0], n, -1])
            + positions;
        let mut penultimate = x.shallow_clone();
        for l in &self.layers {
            penultimate = x.shallow_clone();
            let h = l.ln1.forward(&x);
            let h = attention(
                &l.q.forward(&h),
                &l.k.forward(&h),
                &l.v.forward(&h),
                self.heads,
                true,
            );
            x = &x + l.out.forward(&h);
            let h = l.fc1.forward(&l.ln2.forward(&x));
            let h = if self.quick_gelu {
                &h * (&h * 1.702).sigmoid()
            } else {
                h.gelu("none")
            };
            x = &x + l.fc2.forward(&h);
        }
        ClipOutput {
            penultimate,
            last: self.final_ln.forward(&x),
        }
    }
}

impl ClipTextModel {
    /// transformers' `pooler_output`: the last hidden state at the first end-of-text token
    /// (the highest id; argmax returns the first maximum, as transformers does).
    pub fn pooled(&self, ids: &Tensor) -> Tensor {
        let last = self.encode(ids).last;
        let eos = ids.argmax(-1, false).to_device(last.device());
        let rows = Tensor::arange(ids.size()[0], (Kind::Int64, last.device()));
        last.index(&[Some(rows), Some(eos)])
    }
}

pub struct ClipOutput {
    /// `hidden_states[-2]`: the input of the last layer.
    pub penultimate: Tensor,
    /// `last_hidden_state`: after the final layer norm.
    pub last: Tensor,
}

/// transformers' `CLIPTextModelWithProjection` (SDXL's second encoder): the last hidden state
/// at the end-of-text token, projected, is the pooled prompt embedding.
pub struct ClipWithProjection {
    pub model: ClipTextModel,
    projection: Linear,
}

impl ClipWithProjection {
    /// `w` is rooted above `text_model` (it reads `text_model.*` and `text_projection`).
    pub fn new(w: &Scope, c: &ClipConfig) -> Self {
        let d = c.hidden_size;
        Self {
            model: ClipTextModel::new(&w.at("text_model"), c),
            projection: Linear::new(
                &w.at("text_projection"),
                d,
                c.projection_dim.unwrap_or(d),
                false,
            ),
        }
    }

    /// (penultimate hidden state, pooled projection `[batch, projection_dim]`).
    pub fn encode(&self, ids: &Tensor) -> (Tensor, Tensor) {
        let out = self.model.encode(ids);
        // The first end-of-text token: the highest id, and argmax returns the first maximum,
        // as transformers does for these configs.
        let eos = ids.argmax(-1, false).to_device(out.last.device());
        let rows = Tensor::arange(ids.size()[0], (Kind::Int64, out.last.device()));
        let pooled = out.last.index(&[Some(rows), Some(eos)]);
        (out.penultimate, self.projection.forward(&pooled))
    }
}
