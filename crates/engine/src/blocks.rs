//! Building blocks shared by the UNet and the VAE (diffusers' `ResnetBlock2D`,
//! `Transformer2DModel`, `Downsample2D`, `Upsample2D`).

use super::nn::{Conv2d, GroupNorm, LayerNorm, Linear, attention};
use super::weights::Scope;
use tch::Tensor;

pub struct ResnetBlock {
    norm1: GroupNorm,
    conv1: Conv2d,
    time_emb_proj: Option<Linear>,
    norm2: GroupNorm,
    conv2: Conv2d,
    shortcut: Option<Conv2d>,
}

impl ResnetBlock {
    /// `temb_channels` is None in the VAE, which has no time embedding.
    pub fn new(
        w: &Scope,
        input: i64,
        output: i64,
        temb_channels: Option<i64>,
        groups: i64,
        eps: f64,
    ) -> Self {
        Self {
            norm1: GroupNorm::new(&w.at("norm1"), groups, input, eps),
            conv1: Conv2d::new(&w.at("conv1"), input, output, 3, 1, 1),
            time_emb_proj: temb_channels
                .map(|t| Linear::new(&w.at("time_emb_proj"), t, output, true)),
            norm2: GroupNorm::new(&w.at("norm2"), groups, output, eps),
            conv2: Conv2d::new(&w.at("conv2"), output, output, 3, 1, 1),
            shortcut: (input != output)
                .then(|| Conv2d::new(&w.at("conv_shortcut"), input, output, 1, 1, 0)),
        }
    }

    pub fn forward(&self, x: &Tensor, temb: Option<&Tensor>) -> Tensor {
        let mut h = self.conv1.forward(&self.norm1.forward(x).silu());
        if let (Some(proj), Some(temb)) = (&self.time_emb_proj, temb) {
            h += proj.forward(&temb.silu()).unsqueeze(-1).unsqueeze(-1);
        }
        let h = self.conv2.forward(&self.norm2.forward(&h).silu());
        match &self.shortcut {
            Some(s) => s.forward(x) + h,
            None => x + h,
        }
    }
}

struct TransformerBlock {
    norm1: LayerNorm,
    attn1: CrossAttention,
    norm2: LayerNorm,
    attn2: CrossAttention,
    norm3: LayerNorm,
    ff_in: Linear,
    ff_out: Linear,
}

struct CrossAttention {
    q: Linear,
    k: Linear,
    v: Linear,
    out: Linear,
    heads: i64,
}

impl CrossAttention {
    fn new(w: &Scope, dim: i64, context_dim: i64, heads: i64) -> Self {
        Self {
            q: Linear::new(&w.at("to_q"), dim, dim, false),
            k: Linear::new(&w.at("to_k"), context_dim, dim, false),
            v: Linear::new(&w.at("to_v"), context_dim, dim, false),
            out: Linear::new(&w.at("to_out.0"), dim, dim, true),
            heads,
        }
    }

    fn forward(&self, x: &Tensor, context: &Tensor) -> Tensor {
        let h = attention(
            &self.q.forward(x),
            &self.k.forward(context),
            &self.v.forward(context),
            self.heads,
            false,
        );
        self.out.forward(&h)
    }
}

/// Spatial transformer: group norm, projection in, self- and cross-attention blocks, out.
pub struct Transformer2D {
    norm: GroupNorm,
    proj_in_linear: Option<Linear>,
    proj_in_conv: Option<Conv2d>,
    blocks: Vec<TransformerBlock>,
    proj_out_linear: Option<Linear>,
    proj_out_conv: Option<Conv2d>,
}

impl Transformer2D {
    pub fn new(
        w: &Scope,
        channels: i64,
        heads: i64,
        context_dim: i64,
        depth: i64,
        groups: i64,
        linear_projection: bool,
    ) -> Self {
        let inner = channels;
        let blocks = (0..depth)
            .map(|i| {
                let b = w.at("transformer_blocks").at(i);
                TransformerBlock {
                    norm1: LayerNorm::new(&b.at("norm1"), inner, 1e-5),
                    attn1: CrossAttention::new(&b.at("attn1"), inner, inner, heads),
                    norm2: LayerNorm::new(&b.at("norm2"), inner, 1e-5),
                    attn2: CrossAttention::new(&b.at("attn2"), inner, context_dim, heads),
                    norm3: LayerNorm::new(&b.at("norm3"), inner, 1e-5),
                    ff_in: Linear::new(&b.at("ff.net.0.proj"), inner, inner * 8, true),
                    ff_out: Linear::new(&b.at("ff.net.2"), inner * 4, inner, true),
                }
            })
            .collect();
        let (pil, pic, pol, poc) = if linear_projection {
            (
                Some(Linear::new(&w.at("proj_in"), channels, inner, true)),
                None,
                Some(Linear::new(&w.at("proj_out"), inner, channels, true)),
                None,
            )
        } else {
            (
                None,
                Some(Conv2d::new(&w.at("proj_in"), channels, inner, 1, 1, 0)),
                None,
                Some(Conv2d::new(&w.at("proj_out"), inner, channels, 1, 1, 0)),
            )
        };
        Self {
            norm: GroupNorm::new(&w.at("norm"), groups, channels, 1e-6),
            proj_in_linear: pil,
            proj_in_conv: pic,
            blocks,
            proj_out_linear: pol,
            proj_out_conv: poc,
        }
    }

    pub fn forward(&self, x: &Tensor, context: &Tensor) -> Tensor {
        let (b, c, h, w) = x.size4().expect("a [batch, channels, height, width] input");
        let normed = self.norm.forward(x);
        let to_tokens = |t: Tensor| t.permute([0, 2, 3, 1]).reshape([b, h * w, -1]);
        let mut tokens = match (&self.proj_in_conv, &self.proj_in_linear) {
            (Some(conv), _) => to_tokens(conv.forward(&normed)),
            (_, Some(lin)) => lin.forward(&to_tokens(normed)),
            _ => unreachable!("one projection is always built"),
        };
        for blk in &self.blocks {
            let n = blk.norm1.forward(&tokens);
            tokens = blk.attn1.forward(&n, &n) + tokens;
            tokens = blk.attn2.forward(&blk.norm2.forward(&tokens), context) + tokens;
            let ff = blk.ff_in.forward(&blk.norm3.forward(&tokens));
            let halves = ff.chunk(2, -1);
            let geglu = &halves[0] * halves[1].gelu("none");
            tokens = blk.ff_out.forward(&geglu) + tokens;
        }
        let from_tokens = |t: Tensor| t.reshape([b, h, w, c]).permute([0, 3, 1, 2]).contiguous();
        let out = match (&self.proj_out_conv, &self.proj_out_linear) {
            (Some(conv), _) => conv.forward(&from_tokens(tokens)),
            (_, Some(lin)) => from_tokens(lin.forward(&tokens)),
            _ => unreachable!("one projection is always built"),
        };
        out + x
    }
}

/// Stride-2 3x3 convolution; `padding` 1 in the UNet, 0 (after an asymmetric pad) in the VAE.
pub struct Downsample {
    conv: Conv2d,
    asymmetric_pad: bool,
}

impl Downsample {
    pub fn new(w: &Scope, channels: i64, padding: i64) -> Self {
        Self {
            conv: Conv2d::new(&w.at("conv"), channels, channels, 3, 2, padding),
            asymmetric_pad: padding == 0,
        }
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        if self.asymmetric_pad {
            self.conv.forward(&x.constant_pad_nd([0, 1, 0, 1]))
        } else {
            self.conv.forward(x)
        }
    }
}

/// Nearest-neighbour upsampling to `size` (2x unless a skip connection is odd-sized), then conv.
pub struct Upsample {
    conv: Conv2d,
}

impl Upsample {
    pub fn new(w: &Scope, channels: i64) -> Self {
        Self {
            conv: Conv2d::new(&w.at("conv"), channels, channels, 3, 1, 1),
        }
    }

    pub fn forward(&self, x: &Tensor, size: Option<(i64, i64)>) -> Tensor {
        let (_, _, h, w) = x.size4().expect("a 4-d input");
        let (oh, ow) = size.unwrap_or((h * 2, w * 2));
        self.conv
            .forward(&x.upsample_nearest2d([oh, ow], None, None))
    }
}
