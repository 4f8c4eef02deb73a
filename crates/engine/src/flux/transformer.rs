//! diffusers' `FluxTransformer2DModel`: double-stream blocks (image and text with their own
//! weights, attending jointly) then single-stream blocks over the joined sequence, rotary
//! positions over (text, row, column) ids, conditioned on the timestep and the pooled CLIP text.

use tch::{Kind, Tensor};

use super::config::TransformerConfig;
use crate::nn::{Linear, timestep_sinusoids};
use crate::weights::Scope;

const EPS: f64 = 1e-6;

/// LayerNorm without weights (diffusers' `elementwise_affine=False`).
fn plain_norm(x: &Tensor) -> Tensor {
    let dim = x.size()[x.dim() - 1];
    x.layer_norm([dim], None::<&Tensor>, None::<&Tensor>, EPS, false)
}

/// `torch.nn.RMSNorm` over the head dim, through libtorch's own kernel.
struct HeadNorm(Tensor);

impl HeadNorm {
    fn new(w: &Scope, dim: i64) -> Self {
        Self(w.get("weight", &[dim]))
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        let dim = self.0.size()[0];
        x.rms_norm([dim], Some(&self.0), EPS)
    }
}

/// `x * (1 + scale) + shift` with `[batch, dim]` modulations over `[batch, n, dim]`.
fn modulate(x: &Tensor, shift: &Tensor, scale: &Tensor) -> Tensor {
    x * (scale.unsqueeze(1) + 1.0) + shift.unsqueeze(1)
}

/// Queries, keys and values `[batch, heads, n, head_dim]` of one stream, normed.
struct Qkv {
    q: Linear,
    k: Linear,
    v: Linear,
    norm_q: HeadNorm,
    norm_k: HeadNorm,
}

impl Qkv {
    fn new(w: &Scope, names: [&str; 5], dim: i64, head_dim: i64) -> Self {
        Self {
            q: Linear::new(&w.at(names[0]), dim, dim, true),
            k: Linear::new(&w.at(names[1]), dim, dim, true),
            v: Linear::new(&w.at(names[2]), dim, dim, true),
            norm_q: HeadNorm::new(&w.at(names[3]), head_dim),
            norm_k: HeadNorm::new(&w.at(names[4]), head_dim),
        }
    }

    /// `[batch, n, heads, head_dim]` each, as diffusers' processor holds them.
    fn forward(&self, x: &Tensor, head_dim: i64) -> [Tensor; 3] {
        let (b, n) = (x.size()[0], x.size()[1]);
        let split = |t: Tensor| t.view([b, n, -1, head_dim]);
        [
            self.norm_q.forward(&split(self.q.forward(x))),
            self.norm_k.forward(&split(self.k.forward(x))),
            split(self.v.forward(x)),
        ]
    }
}

/// diffusers' `apply_rotary_emb` (real form, pairs interleaved) on `[batch, n, heads, dim]`.
fn rotate(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Tensor {
    let shape = x.size();
    let pairs = x.reshape([shape[0], shape[1], shape[2], -1, 2]);
    let (real, imag) = (pairs.select(-1, 0), pairs.select(-1, 1));
    let rotated = Tensor::stack(&[imag.neg(), real], -1).flatten(3, -1);
    let (cos, sin) = (cos.unsqueeze(0).unsqueeze(2), sin.unsqueeze(0).unsqueeze(2));
    (x.to_kind(Kind::Float) * cos + rotated.to_kind(Kind::Float) * sin).to_kind(x.kind())
}

/// Joint attention of `[batch, n, heads, head_dim]` queries, keys and values with rotary
/// positions; answers `[batch, n, heads * head_dim]`.
fn attend(q: &Tensor, k: &Tensor, v: &Tensor, rope: &(Tensor, Tensor)) -> Tensor {
    let (q, k) = (rotate(q, &rope.0, &rope.1), rotate(k, &rope.0, &rope.1));
    let t = |x: &Tensor| x.transpose(1, 2);
    let out = Tensor::scaled_dot_product_attention::<Tensor>(
        &t(&q),
        &t(&k),
        &t(v),
        None,
        0.0,
        false,
        None,
        false,
    );
    out.transpose(1, 2).flatten(2, 3).to_kind(q.kind())
}

/// diffusers' `FeedForward(dim, dim, "gelu-approximate")`.
struct FeedForward {
    up: Linear,
    down: Linear,
}

impl FeedForward {
    fn new(w: &Scope, dim: i64) -> Self {
        Self {
            up: Linear::new(&w.at("net.0.proj"), dim, dim * 4, true),
            down: Linear::new(&w.at("net.2"), dim * 4, dim, true),
        }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        self.down.forward(&self.up.forward(x).gelu("tanh"))
    }
}

/// fp16 activations are kept finite between blocks, as diffusers does.
fn clip_half(x: Tensor) -> Tensor {
    if x.kind() == Kind::Half {
        x.clamp(-65504.0, 65504.0)
    } else {
        x
    }
}

struct DoubleBlock {
    norm1: Linear,
    norm1_context: Linear,
    image: Qkv,
    text: Qkv,
    to_out: Linear,
    to_add_out: Linear,
    ff: FeedForward,
    ff_context: FeedForward,
}

impl DoubleBlock {
    fn new(w: &Scope, dim: i64, head_dim: i64) -> Self {
        let a = w.at("attn");
        Self {
            norm1: Linear::new(&w.at("norm1.linear"), dim, 6 * dim, true),
            norm1_context: Linear::new(&w.at("norm1_context.linear"), dim, 6 * dim, true),
            image: Qkv::new(
                &a,
                ["to_q", "to_k", "to_v", "norm_q", "norm_k"],
                dim,
                head_dim,
            ),
            text: Qkv::new(
                &a,
                [
                    "add_q_proj",
                    "add_k_proj",
                    "add_v_proj",
                    "norm_added_q",
                    "norm_added_k",
                ],
                dim,
                head_dim,
            ),
            to_out: Linear::new(&a.at("to_out.0"), dim, dim, true),
            to_add_out: Linear::new(&a.at("to_add_out"), dim, dim, true),
            ff: FeedForward::new(&w.at("ff"), dim),
            ff_context: FeedForward::new(&w.at("ff_context"), dim),
        }
    }

    /// (text, image) after the block.
    fn forward(
        &self,
        image: &Tensor,
        text: &Tensor,
        temb_silu: &Tensor,
        rope: &(Tensor, Tensor),
        head_dim: i64,
    ) -> (Tensor, Tensor) {
        let m = self.norm1.forward(temb_silu).chunk(6, 1);
        let c = self.norm1_context.forward(temb_silu).chunk(6, 1);
        let [iq, ik, iv] = self
            .image
            .forward(&modulate(&plain_norm(image), &m[0], &m[1]), head_dim);
        let [tq, tk, tv] = self
            .text
            .forward(&modulate(&plain_norm(text), &c[0], &c[1]), head_dim);
        let joined = attend(
            &Tensor::cat(&[tq, iq], 1),
            &Tensor::cat(&[tk, ik], 1),
            &Tensor::cat(&[tv, iv], 1),
            rope,
        );
        let text_len = text.size()[1];
        let parts = joined.split_with_sizes([text_len, image.size()[1]], 1);
        let image_attn = self.to_out.forward(&parts[1].contiguous());
        let text_attn = self.to_add_out.forward(&parts[0].contiguous());

        let image = image + m[2].unsqueeze(1) * image_attn;
        let ff = self
            .ff
            .forward(&modulate(&plain_norm(&image), &m[3], &m[4]));
        let image = &image + m[5].unsqueeze(1) * ff;

        let text = text + c[2].unsqueeze(1) * text_attn;
        let ff = self
            .ff_context
            .forward(&modulate(&plain_norm(&text), &c[3], &c[4]));
        let text = clip_half(&text + c[5].unsqueeze(1) * ff);
        (text, image)
    }
}

struct SingleBlock {
    norm: Linear,
    qkv: Qkv,
    proj_mlp: Linear,
    proj_out: Linear,
}

impl SingleBlock {
    fn new(w: &Scope, dim: i64, head_dim: i64) -> Self {
        Self {
            norm: Linear::new(&w.at("norm.linear"), dim, 3 * dim, true),
            qkv: Qkv::new(
                &w.at("attn"),
                ["to_q", "to_k", "to_v", "norm_q", "norm_k"],
                dim,
                head_dim,
            ),
            proj_mlp: Linear::new(&w.at("proj_mlp"), dim, 4 * dim, true),
            proj_out: Linear::new(&w.at("proj_out"), 5 * dim, dim, true),
        }
    }

    /// The joined (text then image) sequence after the block.
    fn forward(
        &self,
        x: &Tensor,
        temb_silu: &Tensor,
        rope: &(Tensor, Tensor),
        head_dim: i64,
    ) -> Tensor {
        let m = self.norm.forward(temb_silu).chunk(3, 1);
        let normed = modulate(&plain_norm(x), &m[0], &m[1]);
        let mlp = self.proj_mlp.forward(&normed).gelu("tanh");
        let [q, k, v] = self.qkv.forward(&normed, head_dim);
        let attn = attend(&q, &k, &v, rope);
        let out = self.proj_out.forward(&Tensor::cat(&[attn, mlp], 2));
        clip_half(x + m[2].unsqueeze(1) * out)
    }
}

pub struct FluxTransformer {
    x_embedder: Linear,
    context_embedder: Linear,
    time_1: Linear,
    time_2: Linear,
    text_1: Linear,
    text_2: Linear,
    double: Vec<DoubleBlock>,
    single: Vec<SingleBlock>,
    norm_out: Linear,
    proj_out: Linear,
    config: TransformerConfig,
}

impl FluxTransformer {
    /// `w` is rooted at the transformer (diffusers' names).
    pub fn new(w: &Scope, c: &TransformerConfig) -> Self {
        let dim = c.inner_dim();
        let head_dim = c.attention_head_dim;
        let t = w.at("time_text_embed");
        Self {
            x_embedder: Linear::new(&w.at("x_embedder"), c.in_channels, dim, true),
            context_embedder: Linear::new(
                &w.at("context_embedder"),
                c.joint_attention_dim,
                dim,
                true,
            ),
            time_1: Linear::new(&t.at("timestep_embedder.linear_1"), 256, dim, true),
            time_2: Linear::new(&t.at("timestep_embedder.linear_2"), dim, dim, true),
            text_1: Linear::new(
                &t.at("text_embedder.linear_1"),
                c.pooled_projection_dim,
                dim,
                true,
            ),
            text_2: Linear::new(&t.at("text_embedder.linear_2"), dim, dim, true),
            double: (0..c.num_layers)
                .map(|i| DoubleBlock::new(&w.at("transformer_blocks").at(i), dim, head_dim))
                .collect(),
            single: (0..c.num_single_layers)
                .map(|i| SingleBlock::new(&w.at("single_transformer_blocks").at(i), dim, head_dim))
                .collect(),
            norm_out: Linear::new(&w.at("norm_out.linear"), dim, 2 * dim, true),
            proj_out: Linear::new(&w.at("proj_out"), dim, c.in_channels, true),
            config: c.clone(),
        }
    }

    /// `FluxPosEmbed`: cos and sin `[n, head_dim]` (f32) for ids `[n, 3]`, each axis's
    /// frequencies in f64 as diffusers computes them off Apple GPUs.
    pub fn rope(&self, ids: &Tensor) -> (Tensor, Tensor) {
        let pos = ids.to_kind(Kind::Float);
        let (mut cos, mut sin) = (Vec::new(), Vec::new());
        for (axis, &dim) in self.config.axes_dims_rope.iter().enumerate() {
            let exponents = Tensor::arange_start_step(0, dim, 2, (Kind::Double, ids.device()))
                .narrow(0, 0, dim / 2)
                / dim as f64;
            let freqs = (Tensor::from(10000f64)
                .to_device(ids.device())
                .pow(&exponents))
            .reciprocal();
            let angles = pos
                .select(1, axis as i64)
                .to_kind(Kind::Double)
                .outer(&freqs);
            cos.push(
                angles
                    .cos()
                    .repeat_interleave_self_int(2, 1, None)
                    .to_kind(Kind::Float),
            );
            sin.push(
                angles
                    .sin()
                    .repeat_interleave_self_int(2, 1, None)
                    .to_kind(Kind::Float),
            );
        }
        (Tensor::cat(&cos, -1), Tensor::cat(&sin, -1))
    }

    /// One prediction for packed latents `[batch, n, in_channels]`, text `[batch, m,
    /// joint_dim]`, pooled CLIP `[batch, pooled_dim]` and `timestep` (already divided by 1000,
    /// in the latents' dtype, as FluxPipeline passes it).
    pub fn forward(
        &self,
        latents: &Tensor,
        text: &Tensor,
        pooled: &Tensor,
        timestep: &Tensor,
        rope: &(Tensor, Tensor),
    ) -> Tensor {
        let head_dim = self.config.attention_head_dim;
        let mut image = self.x_embedder.forward(latents);
        let kind = image.kind();
        let t = timestep.to_kind(kind) * 1000.0;
        let t_proj = timestep_sinusoids(&t, 256, true, 0.0).to_kind(pooled.kind());
        let temb = self.time_2.forward(&self.time_1.forward(&t_proj).silu())
            + self.text_2.forward(&self.text_1.forward(pooled).silu());
        let temb_silu = temb.silu();
        let mut text = self.context_embedder.forward(text);
        for block in &self.double {
            (text, image) = block.forward(&image, &text, &temb_silu, rope, head_dim);
        }
        let text_len = text.size()[1];
        let mut joined = Tensor::cat(&[text, image], 1);
        for block in &self.single {
            joined = block.forward(&joined, &temb_silu, rope, head_dim);
        }
        let image = joined.narrow(1, text_len, joined.size()[1] - text_len);
        let m = self
            .norm_out
            .forward(&temb_silu.to_kind(image.kind()))
            .chunk(2, 1);
        // AdaLayerNormContinuous: scale first, then shift.
        self.proj_out
            .forward(&modulate(&plain_norm(&image), &m[1], &m[0]))
    }
}
