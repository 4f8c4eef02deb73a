//! diffusers' `AutoencoderKL`: latents to pixels (decoder) and pixels to latents (encoder).

use super::blocks::{Downsample, ResnetBlock, Upsample};
use super::config::VaeConfig;
use super::nn::{Conv2d, GroupNorm, Linear, attention};
use super::weights::Scope;
use tch::Tensor;

const EPS: f64 = 1e-6;

/// Single-head self-attention over pixels with a residual (the VAE's mid-block attention).
struct PixelAttention {
    norm: GroupNorm,
    q: Linear,
    k: Linear,
    v: Linear,
    out: Linear,
}

impl PixelAttention {
    fn new(w: &Scope, channels: i64, groups: i64) -> Self {
        Self {
            norm: GroupNorm::new(&w.at("group_norm"), groups, channels, EPS),
            q: Linear::new(&w.at("to_q"), channels, channels, true),
            k: Linear::new(&w.at("to_k"), channels, channels, true),
            v: Linear::new(&w.at("to_v"), channels, channels, true),
            out: Linear::new(&w.at("to_out.0"), channels, channels, true),
        }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        let (b, c, h, w) = x.size4().expect("a 4-d input");
        let tokens = self.norm.forward(x).view([b, c, h * w]).transpose(1, 2);
        let a = attention(
            &self.q.forward(&tokens),
            &self.k.forward(&tokens),
            &self.v.forward(&tokens),
            1,
            false,
        );
        let a = self.out.forward(&a).transpose(1, 2).reshape([b, c, h, w]);
        a + x
    }
}

struct MidBlock {
    resnet1: ResnetBlock,
    attention: PixelAttention,
    resnet2: ResnetBlock,
}

impl MidBlock {
    fn new(w: &Scope, channels: i64, groups: i64) -> Self {
        Self {
            resnet1: ResnetBlock::new(&w.at("resnets.0"), channels, channels, None, groups, EPS),
            attention: PixelAttention::new(&w.at("attentions.0"), channels, groups),
            resnet2: ResnetBlock::new(&w.at("resnets.1"), channels, channels, None, groups, EPS),
        }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        let x = self.resnet1.forward(x, None);
        let x = self.attention.forward(&x);
        self.resnet2.forward(&x, None)
    }
}

/// One resolution level per channel count: `layers` resnets (the first one changing the
/// channel count from the previous level's), then the resampler `make` builds, if any.
fn levels<T>(
    w: &Scope,
    channels: &[i64],
    layers: i64,
    groups: i64,
    make: impl Fn(&Scope, i64, bool) -> Option<T>,
) -> Vec<(Vec<ResnetBlock>, Option<T>)> {
    let mut prev = channels[0];
    channels
        .iter()
        .enumerate()
        .map(|(i, &out)| {
            let b = w.at(i);
            let resnets = (0..layers)
                .map(|j| {
                    let input = if j == 0 { prev } else { out };
                    ResnetBlock::new(&b.at("resnets").at(j), input, out, None, groups, EPS)
                })
                .collect();
            prev = out;
            (resnets, make(&b, out, i + 1 == channels.len()))
        })
        .collect()
}

pub struct Decoder {
    post_quant_conv: Option<Conv2d>,
    conv_in: Conv2d,
    mid: MidBlock,
    up: Vec<(Vec<ResnetBlock>, Option<Upsample>)>,
    norm_out: GroupNorm,
    conv_out: Conv2d,
    pub scaling_factor: f64,
}

impl Decoder {
    /// `w` is rooted at the autoencoder (it reads `post_quant_conv` and `decoder.*`).
    pub fn new(w: &Scope, c: &VaeConfig) -> Self {
        let ch = &c.block_out_channels;
        let g = c.norm_num_groups;
        let d = w.at("decoder");
        let reversed: Vec<i64> = ch.iter().rev().copied().collect();
        let up = levels(
            &d.at("up_blocks"),
            &reversed,
            c.layers_per_block + 1,
            g,
            |b, out, last| (!last).then(|| Upsample::new(&b.at("upsamplers.0"), out)),
        );
        Self {
            post_quant_conv: c.use_post_quant_conv.then(|| {
                Conv2d::new(
                    &w.at("post_quant_conv"),
                    c.latent_channels,
                    c.latent_channels,
                    1,
                    1,
                    0,
                )
            }),
            conv_in: Conv2d::new(&d.at("conv_in"), c.latent_channels, reversed[0], 3, 1, 1),
            mid: MidBlock::new(&d.at("mid_block"), reversed[0], g),
            up,
            norm_out: GroupNorm::new(&d.at("conv_norm_out"), g, ch[0], EPS),
            conv_out: Conv2d::new(&d.at("conv_out"), ch[0], c.out_channels, 3, 1, 1),
            scaling_factor: c.scaling_factor,
        }
    }

    /// Scaled latents to an image in [-1, 1] (before clamping).
    pub fn decode(&self, latents: &Tensor) -> Tensor {
        self.decode_unscaled(&(latents / self.scaling_factor))
    }

    /// Latents already unscaled (FLUX also shifts them) to an image in [-1, 1].
    pub fn decode_unscaled(&self, z: &Tensor) -> Tensor {
        let z = match &self.post_quant_conv {
            Some(conv) => conv.forward(z),
            None => z.shallow_clone(),
        };
        let mut x = self.mid.forward(&self.conv_in.forward(&z));
        for (resnets, upsample) in &self.up {
            for r in resnets {
                x = r.forward(&x, None);
            }
            if let Some(u) = upsample {
                x = u.forward(&x, None);
            }
        }
        self.conv_out.forward(&self.norm_out.forward(&x).silu())
    }
}

pub struct Encoder {
    conv_in: Conv2d,
    down: Vec<(Vec<ResnetBlock>, Option<Downsample>)>,
    mid: MidBlock,
    norm_out: GroupNorm,
    conv_out: Conv2d,
    quant_conv: Option<Conv2d>,
}

impl Encoder {
    /// `w` is rooted at the autoencoder (it reads `encoder.*` and `quant_conv`).
    pub fn new(w: &Scope, c: &VaeConfig) -> Self {
        let ch = &c.block_out_channels;
        let n = ch.len();
        let g = c.norm_num_groups;
        let e = w.at("encoder");
        let down = levels(
            &e.at("down_blocks"),
            ch,
            c.layers_per_block,
            g,
            |b, out, last| (!last).then(|| Downsample::new(&b.at("downsamplers.0"), out, 0)),
        );
        let last = ch[n - 1];
        let moments = 2 * c.latent_channels;
        Self {
            conv_in: Conv2d::new(&e.at("conv_in"), c.in_channels, ch[0], 3, 1, 1),
            down,
            mid: MidBlock::new(&e.at("mid_block"), last, g),
            norm_out: GroupNorm::new(&e.at("conv_norm_out"), g, last, EPS),
            conv_out: Conv2d::new(&e.at("conv_out"), last, moments, 3, 1, 1),
            quant_conv: c
                .use_quant_conv
                .then(|| Conv2d::new(&w.at("quant_conv"), moments, moments, 1, 1, 0)),
        }
    }

    /// An image in [-1, 1] to the latent distribution's (mean, log-variance).
    pub fn encode(&self, image: &Tensor) -> (Tensor, Tensor) {
        let mut x = self.conv_in.forward(image);
        for (resnets, downsample) in &self.down {
            for r in resnets {
                x = r.forward(&x, None);
            }
            if let Some(d) = downsample {
                x = d.forward(&x);
            }
        }
        let x = self
            .conv_out
            .forward(&self.norm_out.forward(&self.mid.forward(&x)).silu());
        let x = match &self.quant_conv {
            Some(conv) => conv.forward(&x),
            None => x,
        };
        let moments = x.chunk(2, 1);
        (moments[0].shallow_clone(), moments[1].clamp(-30.0, 20.0))
    }
}
