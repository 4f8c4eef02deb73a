//! controlnet_aux's `NormalBaeDetector` as NicheImage calls it: Bae et al.'s surface-normal
//! network (an EfficientNet-B5 encoder, gen-efficientnet's `tf_efficientnet_b5_ap`, and a
//! decoder that refines its estimate at 1/8, 1/4, 1/2 and full size) on the ImageNet-normalised
//! image; the full-size normal's xyz drawn as `(n + 1) / 2` in 0..255.
//!
//! Weights: `scannet.pt` from the `lllyasviel/Annotators` Hugging Face repo (a torch file whose
//! `model` entry holds the state dict, names prefixed `module.`), or the same tensors as
//! safetensors.

use super::{AnnotatorError, check_size, load_network, to_u8};
use crate::image::pixels;
use crate::nn::{BatchNorm, Conv2d, ConvSpec, double_aligned, resize_bilinear};
use crate::weights::Scope;
use nicheimage_common::image::RgbImage;
use std::path::Path;
use tch::{Device, Kind, Tensor};

pub const CHECKPOINT: &str = "scannet.pt";
pub const SOURCE: &str = "https://huggingface.co/lllyasviel/Annotators/resolve/main/scannet.pt";

/// Parameters the network loads, BN statistics included (for the memory estimate).
pub const PARAMETERS: u64 = 72_602_752;

/// EfficientNet-B5 after gen-efficientnet's rounding (width 1.6, depth 2.2): per stage the
/// block count, kernel, first stride, expansion and output channels.
const STAGES: [(usize, i64, i64, i64, i64); 7] = [
    (3, 3, 1, 1, 24),
    (5, 3, 2, 6, 40),
    (5, 5, 2, 6, 64),
    (7, 3, 2, 6, 128),
    (7, 5, 1, 6, 176),
    (9, 5, 2, 6, 304),
    (3, 3, 1, 6, 512),
];
const STEM: i64 = 48;
const HEAD: i64 = 2048;
const ENCODER_BN_EPS: f64 = 1e-3;
const DECODER_BN_EPS: f64 = 1e-5;
const MEAN: [f64; 3] = [0.485, 0.456, 0.406];
const STD: [f64; 3] = [0.229, 0.224, 0.225];

/// gen-efficientnet's conv: TF "same" padding only where it differs from symmetric padding
/// (stride 2), no bias.
fn conv(w: &Scope, input: i64, output: i64, kernel: i64, stride: i64, groups: i64) -> Conv2d {
    let spec = ConvSpec::plain(input, output, kernel)
        .stride(stride)
        .groups(groups)
        .no_bias();
    Conv2d::with(w, if stride > 1 { spec.same() } else { spec })
}

struct SqueezeExcite {
    reduce: Conv2d,
    expand: Conv2d,
}

impl SqueezeExcite {
    fn new(w: &Scope, channels: i64, reduced: i64) -> Self {
        Self {
            reduce: Conv2d::with(&w.at("conv_reduce"), ConvSpec::plain(channels, reduced, 1)),
            expand: Conv2d::with(&w.at("conv_expand"), ConvSpec::plain(reduced, channels, 1)),
        }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        let s = x.mean_dim([2i64, 3].as_slice(), true, None);
        let s = self.expand.forward(&self.reduce.forward(&s).silu());
        x * s.sigmoid()
    }
}

/// One MBConv block: the first stage's depthwise-separable form (no expansion) or the
/// inverted residual, with squeeze-excite sized from the block's input channels.
struct Block {
    expand: Option<(Conv2d, BatchNorm)>,
    depthwise: Conv2d,
    depthwise_bn: BatchNorm,
    se: SqueezeExcite,
    project: Conv2d,
    project_bn: BatchNorm,
    residual: bool,
}

impl Block {
    fn new(w: &Scope, input: i64, output: i64, kernel: i64, stride: i64, expansion: i64) -> Self {
        let mid = input * expansion;
        let reduced = ((input as f64) * 0.25 + 0.5) as i64;
        let bn = |name: &str, c| BatchNorm::new(&w.at(name), c, ENCODER_BN_EPS);
        let (expand, dw_bn, project, project_bn) = if expansion == 1 {
            (None, "bn1", "conv_pw", "bn2")
        } else {
            (
                Some((conv(&w.at("conv_pw"), input, mid, 1, 1, 1), bn("bn1", mid))),
                "bn2",
                "conv_pwl",
                "bn3",
            )
        };
        Self {
            expand,
            depthwise: conv(&w.at("conv_dw"), mid, mid, kernel, stride, mid),
            depthwise_bn: bn(dw_bn, mid),
            se: SqueezeExcite::new(&w.at("se"), mid, reduced),
            project: conv(&w.at(project), mid, output, 1, 1, 1),
            project_bn: bn(project_bn, output),
            residual: stride == 1 && input == output,
        }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        let y = match &self.expand {
            Some((conv, bn)) => bn.forward(&conv.forward(x)).silu(),
            None => x.shallow_clone(),
        };
        let y = self
            .depthwise_bn
            .forward(&self.depthwise.forward(&y))
            .silu();
        let y = self
            .project_bn
            .forward(&self.project.forward(&self.se.forward(&y)));
        if self.residual { y + x } else { y }
    }
}

/// `UpSampleBN`: up to the skip's size, concatenate, two conv–BN–LeakyReLU.
struct UpSample {
    convs: [(Conv2d, BatchNorm); 2],
}

impl UpSample {
    fn new(w: &Scope, input: i64, output: i64) -> Self {
        let layer = |c: usize, b: usize, i| {
            (
                Conv2d::with(&w.at(format!("_net.{c}")), ConvSpec::plain(i, output, 3)),
                BatchNorm::new(&w.at(format!("_net.{b}")), output, DECODER_BN_EPS),
            )
        };
        Self {
            convs: [layer(0, 1, input), layer(3, 4, output)],
        }
    }

    fn forward(&self, x: &Tensor, skip: &Tensor) -> Tensor {
        let s = skip.size();
        let up = resize_bilinear(x, s[2], s[3], true);
        let mut y = Tensor::cat(&[&up, skip], 1);
        for (conv, bn) in &self.convs {
            y = bn.forward(&conv.forward(&y)).leaky_relu();
        }
        y
    }
}

/// A per-pixel MLP (four 1-wide Conv1d layers with ReLU between) to four outputs.
struct PixelMlp {
    layers: Vec<(Tensor, Tensor)>,
}

impl PixelMlp {
    fn new(w: &Scope, input: i64) -> Self {
        let dims = [(input, 128), (128, 128), (128, 128), (128, 4)];
        Self {
            layers: dims
                .iter()
                .enumerate()
                .map(|(i, &(a, b))| {
                    let l = w.at(2 * i);
                    (l.get("weight", &[b, a, 1]), l.get("bias", &[b]))
                })
                .collect(),
        }
    }

    /// `x` is `[batch, channels, pixels]`.
    fn forward(&self, x: &Tensor) -> Tensor {
        let mut y = x.shallow_clone();
        for (i, (weight, bias)) in self.layers.iter().enumerate() {
            y = y.conv1d(weight, Some(bias), [1], [0], [1], 1);
            if i + 1 < self.layers.len() {
                y = y.relu();
            }
        }
        y
    }
}

/// Unit xyz (norm + 1e-10 after the square root) and kappa = elu + 1.01.
fn norm_normalize(x: &Tensor) -> Tensor {
    let xyz = x.narrow(1, 0, 3);
    let kappa = x.narrow(1, 3, 1);
    let norm = xyz
        .square()
        .sum_dim_intlist([1i64].as_slice(), true, None)
        .sqrt()
        + 1e-10;
    Tensor::cat(&[&xyz / norm, kappa.elu() + 1.01], 1)
}

pub struct NormalBae {
    stem: Conv2d,
    stem_bn: BatchNorm,
    stages: Vec<Vec<Block>>,
    head: Conv2d,
    bottleneck: Conv2d,
    ups: [UpSample; 4],
    res8: Conv2d,
    refine: [PixelMlp; 3],
    device: Device,
}

impl NormalBae {
    /// Loads `scannet.pt` (the state dict under `model`, names prefixed `module.`) or the
    /// same tensors as safetensors.
    pub fn load(path: &Path, device: Device) -> Result<Self, AnnotatorError> {
        let strip = ["model.module.", "model.", "module."];
        load_network("NormalBae", path, SOURCE, &strip, device, Self::build)
    }

    /// The architecture under `w`, by the names `NNET.state_dict()` gives.
    pub fn build(w: &Scope, device: Device) -> Self {
        let enc = w.at("encoder.original_model");
        let mut input = STEM;
        let stages = STAGES
            .iter()
            .enumerate()
            .map(|(s, &(blocks, kernel, stride, expansion, output))| {
                (0..blocks)
                    .map(|b| {
                        let block = Block::new(
                            &enc.at(format!("blocks.{s}.{b}")),
                            input,
                            output,
                            kernel,
                            if b == 0 { stride } else { 1 },
                            expansion,
                        );
                        input = output;
                        block
                    })
                    .collect()
            })
            .collect();
        // The classifier's final norm: in the checkpoint, unused by the decoder, which reads
        // the head convolution's raw output.
        BatchNorm::new(&enc.at("bn2"), HEAD, ENCODER_BN_EPS);
        let dec = w.at("decoder");
        Self {
            stem: conv(&enc.at("conv_stem"), 3, STEM, 3, 2, 1),
            stem_bn: BatchNorm::new(&enc.at("bn1"), STEM, ENCODER_BN_EPS),
            stages,
            head: conv(&enc.at("conv_head"), 512, HEAD, 1, 1, 1),
            bottleneck: Conv2d::with(&dec.at("conv2"), ConvSpec::plain(HEAD, HEAD, 1)),
            ups: [
                UpSample::new(&dec.at("up1"), HEAD + 176, 1024),
                UpSample::new(&dec.at("up2"), 1024 + 64, 512),
                UpSample::new(&dec.at("up3"), 512 + 40, 256),
                UpSample::new(&dec.at("up4"), 256 + 24, 128),
            ],
            res8: Conv2d::with(&dec.at("out_conv_res8"), ConvSpec::plain(512, 4, 3)),
            refine: [
                PixelMlp::new(&dec.at("out_conv_res4"), 512 + 4),
                PixelMlp::new(&dec.at("out_conv_res2"), 256 + 4),
                PixelMlp::new(&dec.at("out_conv_res1"), 128 + 4),
            ],
            device,
        }
    }

    /// The full-size estimate `[batch, 4, h, w]` (unit normal xyz and its concentration).
    pub fn normals(&self, x: &Tensor) -> Tensor {
        let mut x = self.stem_bn.forward(&self.stem.forward(x)).silu();
        let mut skips = Vec::new();
        for (s, stage) in self.stages.iter().enumerate() {
            for block in stage {
                x = block.forward(&x);
            }
            // Stages 0, 1, 2 and 4 feed the decoder at 1/2, 1/4, 1/8 and 1/16.
            if matches!(s, 0 | 1 | 2 | 4) {
                skips.push(x.shallow_clone());
            }
        }
        let d0 = self.bottleneck.forward(&self.head.forward(&x));
        let d1 = self.ups[0].forward(&d0, &skips[3]);
        let d2 = self.ups[1].forward(&d1, &skips[2]);
        let d3 = self.ups[2].forward(&d2, &skips[1]);
        let d4 = self.ups[3].forward(&d3, &skips[0]);
        let mut estimate = norm_normalize(&self.res8.forward(&d2));
        for (features, mlp) in [&d2, &d3, &d4].into_iter().zip(&self.refine) {
            let f = double_aligned(features);
            let p = double_aligned(&estimate);
            let joined = Tensor::cat(&[&f, &p], 1);
            let s = joined.size();
            let out = mlp.forward(&joined.view([s[0], s[1], -1]));
            estimate = norm_normalize(&out).view([s[0], 4, s[2], s[3]]);
        }
        estimate
    }

    /// The normal map as controlnet_aux draws it (RGB = xyz).
    pub fn annotate(&self, image: &RgbImage) -> Result<RgbImage, AnnotatorError> {
        check_size("NormalBae", image, 32)?;
        let _no_grad = tch::no_grad_guard();
        let channel = |v: &[f64; 3]| {
            Tensor::from_slice(v)
                .to_kind(Kind::Float)
                .view([1, 3, 1, 1])
                .to_device(self.device)
        };
        let (mean, std) = (channel(&MEAN), channel(&STD));
        let x = (pixels(image).to_device(self.device) / 255.0 - mean) / std;
        let xyz = self.normals(&x).get(0).narrow(0, 0, 3);
        let drawn = (((xyz + 1.0) * 0.5).clamp(0.0, 1.0) * 255.0)
            .permute([1, 2, 0])
            .to_device(Device::Cpu);
        Ok(RgbImage {
            width: image.width,
            height: image.height,
            data: to_u8(&drawn),
        })
    }
}
