//! diffusers' `UNet2DConditionModel`: the noise predictor of SD 1.x/2.x and SDXL (whose
//! pooled text embedding and size/crop ids are added to the time embedding). Its stem and down
//! path are shared with ControlNet.

use super::blocks::{Downsample, ResnetBlock, Transformer2D, Upsample};
use super::config::UNetConfig;
use super::nn::{Conv2d, GroupNorm, Linear, timestep_sinusoids};
use super::weights::Scope;
use tch::Tensor;

struct Level {
    resnets: Vec<ResnetBlock>,
    attentions: Vec<Transformer2D>,
    down: Option<Downsample>,
    up: Option<Upsample>,
}

/// The input convolution and the time embedding (plus SDXL's added conditioning).
pub(super) struct Stem {
    config: UNetConfig,
    pub conv_in: Conv2d,
    time_1: Linear,
    time_2: Linear,
    /// SDXL's `add_embedding` (linear, SiLU, linear).
    add_embedding: Option<(Linear, Linear)>,
}

impl Stem {
    pub fn new(w: &Scope, c: &UNetConfig) -> Self {
        let ch0 = c.block_out_channels[0];
        let temb = ch0 * 4;
        Self {
            config: c.clone(),
            conv_in: Conv2d::new(&w.at("conv_in"), c.in_channels, ch0, 3, 1, 1),
            time_1: Linear::new(&w.at("time_embedding.linear_1"), ch0, temb, true),
            time_2: Linear::new(&w.at("time_embedding.linear_2"), temb, temb, true),
            add_embedding: c.projection_class_embeddings_input_dim.map(|input| {
                (
                    Linear::new(&w.at("add_embedding.linear_1"), input, temb, true),
                    Linear::new(&w.at("add_embedding.linear_2"), temb, temb, true),
                )
            }),
        }
    }

    fn sinusoidal(&self, values: &Tensor, dim: i64) -> Tensor {
        timestep_sinusoids(
            values,
            dim,
            self.config.flip_sin_to_cos,
            self.config.freq_shift,
        )
    }

    /// The embedding of timestep `t` for a batch like `sample`, with SDXL's `added`
    /// conditioning (pooled text embeddings `[batch, n]`, time ids `[batch, 6]`).
    pub fn embedding(&self, sample: &Tensor, t: f64, added: Option<(&Tensor, &Tensor)>) -> Tensor {
        let (batch, kind, device) = (sample.size()[0], sample.kind(), sample.device());
        let dim = self.config.block_out_channels[0];
        let t_emb = self
            .sinusoidal(&Tensor::from_slice(&[t as f32]).to_device(device), dim)
            .expand([batch, dim], false)
            .to_kind(kind);
        let mut emb = self.time_2.forward(&self.time_1.forward(&t_emb).silu());
        if let (Some((l1, l2)), Some((text_embeds, time_ids))) = (&self.add_embedding, added) {
            let d = self.config.addition_time_embed_dim.unwrap_or(256);
            let time_embeds = self
                .sinusoidal(&time_ids.flatten(0, -1), d)
                .reshape([batch, -1])
                .to_kind(kind);
            let add = Tensor::cat(&[text_embeds.to_kind(kind), time_embeds], -1);
            emb += l2.forward(&l1.forward(&add).silu());
        }
        emb
    }
}

/// The down blocks and the mid block, shared by the UNet and ControlNet.
pub(super) struct DownPath {
    down: Vec<Level>,
    mid_resnets: [ResnetBlock; 2],
    mid_attention: Transformer2D,
}

fn transformer(s: &Scope, c: &UNetConfig, channels: i64, block: usize) -> Transformer2D {
    Transformer2D::new(
        s,
        channels,
        c.heads(block),
        c.cross_attention_dim,
        c.transformer_layers_per_block.get(block),
        c.norm_num_groups,
        c.use_linear_projection,
    )
}

impl DownPath {
    pub fn new(w: &Scope, c: &UNetConfig) -> Self {
        let ch = &c.block_out_channels;
        let n = ch.len();
        let temb = ch[0] * 4;
        let (groups, eps) = (c.norm_num_groups, c.norm_eps);
        let mut down = Vec::with_capacity(n);
        let mut output = ch[0];
        for (i, &out) in ch.iter().enumerate() {
            let input = output;
            output = out;
            let b = w.at("down_blocks").at(i);
            let resnets = (0..c.layers_per_block)
                .map(|j| {
                    let inp = if j == 0 { input } else { out };
                    ResnetBlock::new(&b.at("resnets").at(j), inp, out, Some(temb), groups, eps)
                })
                .collect();
            let attentions = if c.has_cross_attention_down(i) {
                (0..c.layers_per_block)
                    .map(|j| transformer(&b.at("attentions").at(j), c, out, i))
                    .collect()
            } else {
                Vec::new()
            };
            down.push(Level {
                resnets,
                attentions,
                down: (i + 1 < n).then(|| Downsample::new(&b.at("downsamplers.0"), out, 1)),
                up: None,
            });
        }
        let last = ch[n - 1];
        let mid = w.at("mid_block");
        Self {
            down,
            mid_resnets: [
                ResnetBlock::new(&mid.at("resnets.0"), last, last, Some(temb), groups, eps),
                ResnetBlock::new(&mid.at("resnets.1"), last, last, Some(temb), groups, eps),
            ],
            mid_attention: transformer(&mid.at("attentions.0"), c, last, n - 1),
        }
    }

    /// From the input convolution's output to the mid block's; also returns every skip
    /// connection (the input first).
    pub fn forward(&self, x: Tensor, emb: &Tensor, context: &Tensor) -> (Tensor, Vec<Tensor>) {
        let mut x = x;
        let mut skips = vec![x.shallow_clone()];
        for level in &self.down {
            for (j, resnet) in level.resnets.iter().enumerate() {
                x = resnet.forward(&x, Some(emb));
                if let Some(attn) = level.attentions.get(j) {
                    x = attn.forward(&x, context);
                }
                skips.push(x.shallow_clone());
            }
            if let Some(d) = &level.down {
                x = d.forward(&x);
                skips.push(x.shallow_clone());
            }
        }
        x = self.mid_resnets[0].forward(&x, Some(emb));
        x = self.mid_attention.forward(&x, context);
        x = self.mid_resnets[1].forward(&x, Some(emb));
        (x, skips)
    }

    /// The channels of each skip connection, in order.
    pub fn skip_channels(c: &UNetConfig) -> Vec<i64> {
        let ch = &c.block_out_channels;
        let mut out = vec![ch[0]];
        for (i, &o) in ch.iter().enumerate() {
            out.extend(std::iter::repeat_n(o, c.layers_per_block as usize));
            if i + 1 < ch.len() {
                out.push(o);
            }
        }
        out
    }
}

/// What ControlNets add to the UNet: one tensor per skip connection and one for the mid block.
pub struct Residuals {
    pub down: Vec<Tensor>,
    pub mid: Tensor,
}

pub struct UNet {
    stem: Stem,
    path: DownPath,
    up: Vec<Level>,
    norm_out: GroupNorm,
    conv_out: Conv2d,
}

impl UNet {
    pub fn new(w: &Scope, c: &UNetConfig) -> Self {
        let ch = &c.block_out_channels;
        let n = ch.len();
        let temb = ch[0] * 4;
        let (groups, eps) = (c.norm_num_groups, c.norm_eps);
        // Creation order is the order the tiny checkpoint's random weights are drawn in:
        // down path, up blocks, then the stem and the output layers.
        let path = DownPath::new(w, c);
        let reversed: Vec<i64> = ch.iter().rev().copied().collect();
        let mut up = Vec::with_capacity(n);
        let mut prev_output = reversed[0];
        for (i, &out) in reversed.iter().enumerate() {
            let input = reversed[(i + 1).min(n - 1)];
            let b = w.at("up_blocks").at(i);
            let layers = c.layers_per_block + 1;
            let resnets = (0..layers)
                .map(|j| {
                    let skip = if j == layers - 1 { input } else { out };
                    let inp = if j == 0 { prev_output } else { out };
                    ResnetBlock::new(
                        &b.at("resnets").at(j),
                        inp + skip,
                        out,
                        Some(temb),
                        groups,
                        eps,
                    )
                })
                .collect();
            let attentions = if c.has_cross_attention_up(i) {
                (0..layers)
                    .map(|j| transformer(&b.at("attentions").at(j), c, out, n - 1 - i))
                    .collect()
            } else {
                Vec::new()
            };
            up.push(Level {
                resnets,
                attentions,
                down: None,
                up: (i + 1 < n).then(|| Upsample::new(&b.at("upsamplers.0"), out)),
            });
            prev_output = out;
        }
        Self {
            stem: Stem::new(w, c),
            path,
            up,
            norm_out: GroupNorm::new(&w.at("conv_norm_out"), groups, ch[0], eps),
            conv_out: Conv2d::new(&w.at("conv_out"), ch[0], c.out_channels, 3, 1, 1),
        }
    }

    /// Predicts the noise in `sample` at timestep `t`, conditioned on `context`, SDXL's
    /// `added` conditioning and ControlNet `residuals`.
    pub fn forward(
        &self,
        sample: &Tensor,
        t: f64,
        context: &Tensor,
        added: Option<(&Tensor, &Tensor)>,
        residuals: Option<&Residuals>,
    ) -> Tensor {
        let emb = self.stem.embedding(sample, t, added);
        let (mut x, mut skips) =
            self.path
                .forward(self.stem.conv_in.forward(sample), &emb, context);
        if let Some(r) = residuals {
            for (skip, extra) in skips.iter_mut().zip(&r.down) {
                *skip = &*skip + extra;
            }
            x += &r.mid;
        }
        for level in &self.up {
            for (j, resnet) in level.resnets.iter().enumerate() {
                let skip = skips.pop().expect("one skip connection per up resnet");
                x = resnet.forward(&Tensor::cat(&[&x, &skip], 1), Some(&emb));
                if let Some(attn) = level.attentions.get(j) {
                    x = attn.forward(&x, context);
                }
            }
            if let Some(u) = &level.up {
                // Upsample to the size of the skip connection it will meet next.
                let size = skips.last().map(|s| {
                    let s = s.size();
                    (s[2], s[3])
                });
                x = u.forward(&x, size);
            }
        }
        self.conv_out.forward(&self.norm_out.forward(&x).silu())
    }
}
