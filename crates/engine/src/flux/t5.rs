//! transformers' `T5EncoderModel` (T5 v1.1: RMS layer norms, relative position buckets shared by
//! every layer, gated `gelu_new` feed-forward, unscaled attention): FLUX's sequence conditioning.

use tch::{Kind, Tensor};

use super::config::T5Config;
use crate::nn::Linear;
use crate::weights::Scope;

/// T5's layer norm: no mean, no bias; the variance in f32 whatever the input.
struct RmsNorm {
    weight: Tensor,
    eps: f64,
}

impl RmsNorm {
    fn new(w: &Scope, dim: i64, eps: f64) -> Self {
        Self {
            weight: w.get("weight", &[dim]),
            eps,
        }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        let variance = x
            .to_kind(Kind::Float)
            .pow_tensor_scalar(2)
            .mean_dim(-1, true, Kind::Float);
        let normed = x * (variance + self.eps).rsqrt();
        let normed = match self.weight.kind() {
            Kind::Half | Kind::BFloat16 => normed.to_kind(self.weight.kind()),
            _ => normed,
        };
        &self.weight * normed
    }
}

struct Layer {
    attention_norm: RmsNorm,
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    ff_norm: RmsNorm,
    wi_0: Linear,
    wi_1: Linear,
    wo: Linear,
}

pub struct T5Encoder {
    embedding: Tensor,
    /// `[buckets, heads]`, held by the first layer and used by all.
    relative_bias: Tensor,
    layers: Vec<Layer>,
    final_norm: RmsNorm,
    config: T5Config,
}

/// transformers' `NewGELUActivation`, written as it is (not libtorch's tanh GELU kernel).
fn gelu_new(x: &Tensor) -> Tensor {
    let inner = (x + x.pow_tensor_scalar(3.0) * 0.044715) * (2.0 / std::f64::consts::PI).sqrt();
    x * 0.5 * (inner.tanh() + 1.0)
}

impl T5Encoder {
    /// `w` is rooted at the model (`shared` or `encoder.embed_tokens`, `encoder.*`).
    pub fn new(w: &Scope, c: &T5Config) -> Self {
        let (d, inner) = (c.d_model, c.num_heads * c.d_kv);
        let e = w.at("encoder");
        // transformers loads T5 in fp16 with `wo` kept in f32 (`_keep_in_fp32_modules`; not
        // in bf16): its output, and so the residual stream from the first feed-forward on, is f32.
        let wo_kind = match w.kind() {
            Kind::Half => Some(Kind::Float),
            _ => None,
        };
        let layers = (0..c.num_layers)
            .map(|i| {
                let block = e.at("block").at(i);
                let attn = block.at("layer.0");
                let ff = block.at("layer.1");
                let sa = attn.at("SelfAttention");
                let dense = ff.at("DenseReluDense");
                Layer {
                    attention_norm: RmsNorm::new(&attn.at("layer_norm"), d, c.layer_norm_epsilon),
                    q: Linear::new(&sa.at("q"), d, inner, false),
                    k: Linear::new(&sa.at("k"), d, inner, false),
                    v: Linear::new(&sa.at("v"), d, inner, false),
                    o: Linear::new(&sa.at("o"), inner, d, false),
                    ff_norm: RmsNorm::new(&ff.at("layer_norm"), d, c.layer_norm_epsilon),
                    wi_0: Linear::new(&dense.at("wi_0"), d, c.d_ff, false),
                    wi_1: Linear::new(&dense.at("wi_1"), d, c.d_ff, false),
                    wo: {
                        let wo = Linear::new(&dense.at("wo"), c.d_ff, d, false);
                        match wo_kind {
                            Some(k) => wo.to_kind(k),
                            None => wo,
                        }
                    },
                }
            })
            .collect();
        Self {
            embedding: w.at("shared").get("weight", &[c.vocab_size, d]),
            relative_bias: e
                .at("block.0.layer.0.SelfAttention.relative_attention_bias")
                .get("weight", &[c.relative_attention_num_buckets, c.num_heads]),
            layers,
            final_norm: RmsNorm::new(&e.at("final_layer_norm"), d, c.layer_norm_epsilon),
            config: c.clone(),
        }
    }

    /// The bidirectional bucket of every (query, key) pair: `[n, n]` in int64, computed on the
    /// model's device as transformers computes it (the log's rounding decides buckets at the
    /// exact powers of two).
    fn buckets(&self, n: i64) -> Tensor {
        let c = &self.config;
        let half = c.relative_attention_num_buckets / 2;
        let max_exact = half / 2;
        let opts = (Kind::Int64, self.embedding.device());
        let relative = Tensor::arange(n, opts).unsqueeze(0) - Tensor::arange(n, opts).unsqueeze(1);
        let mut buckets = relative.gt(0).to_kind(Kind::Int64) * half;
        let distance = relative.abs();
        let is_small = distance.lt(max_exact);
        let large = (distance.to_kind(Kind::Float) / max_exact as f64).log()
            / ((c.relative_attention_max_distance as f64) / max_exact as f64).ln()
            * (half - max_exact) as f64;
        let large = (large.to_kind(Kind::Int64) + max_exact).clamp_max(half - 1);
        buckets += distance.where_self(&is_small, &large);
        buckets
    }

    /// Token ids `[batch, n]` to the last hidden state `[batch, n, d_model]` (no mask: FLUX's
    /// pipeline attends over the padding too).
    pub fn forward(&self, ids: &Tensor) -> Tensor {
        let (b, n) = (ids.size()[0], ids.size()[1]);
        let device = self.embedding.device();
        let heads = self.config.num_heads;
        let mut x = self
            .embedding
            .index_select(
                0,
                &ids.flatten(0, -1).to_kind(Kind::Int64).to_device(device),
            )
            .view([b, n, -1]);
        let bias = self
            .relative_bias
            .index_select(0, &self.buckets(n).flatten(0, -1))
            .view([n, n, heads])
            .permute([2, 0, 1])
            .unsqueeze(0)
            .contiguous();
        for l in &self.layers {
            let h = l.attention_norm.forward(&x);
            let split = |t: Tensor| t.view([b, n, heads, -1]).transpose(1, 2);
            let attended = Tensor::scaled_dot_product_attention(
                &split(l.q.forward(&h)),
                &split(l.k.forward(&h)),
                &split(l.v.forward(&h)),
                Some(&bias),
                0.0,
                false,
                Some(1.0),
                false,
            );
            x = clamp_half(&x + l.o.forward(&attended.transpose(1, 2).reshape([b, n, -1])));
            let h = l.ff_norm.forward(&x);
            let h = gelu_new(&l.wi_0.forward(&h)) * l.wi_1.forward(&h);
            // `x + wo(h)` promotes to f32 when `wo` is held in f32, as in torch.
            x = clamp_half(&x + l.wo.forward(&h.to_kind(l.wo.kind())));
        }
        self.final_norm.forward(&x)
    }
}

/// transformers keeps fp16 activations finite between T5's sublayers (f32 ones as they are).
fn clamp_half(x: Tensor) -> Tensor {
    if x.kind() != Kind::Half {
        return x;
    }
    let max = 65504.0;
    let bound = if x.isinf().any().int64_value(&[]) != 0 {
        max - 1000.0
    } else {
        max
    };
    x.clamp(-bound, bound)
}
