//! controlnet_aux's `MidasDetector` as NicheImage calls it: MiDaS v3 DPT-Hybrid (a BiT
//! ResNet-50 stem and three stages, then ViT-B/16 on its stride-16 features, then the DPT
//! decoder) on the image scaled to [-1, 1], the depth stretched to 0..255.
//!
//! Weights: `dpt_hybrid-midas-501f0c75.pt` from the `lllyasviel/Annotators` Hugging Face repo
//! (the zip-format torch file as published, or the same tensors as safetensors).

use super::{AnnotatorError, check_size, gray_to_rgb, load_network, to_u8};
use crate::image::pixels;
use crate::nn::{
    Conv2d, ConvSpec, LayerNorm, Linear, attention, double_aligned, pad_same, resize_bilinear,
};
use crate::weights::Scope;
use nicheimage_common::image::RgbImage;
use std::path::Path;
use tch::{Device, Tensor};

pub const CHECKPOINT: &str = "dpt_hybrid-midas-501f0c75.pt";
pub const SOURCE: &str =
    "https://huggingface.co/lllyasviel/Annotators/resolve/main/dpt_hybrid-midas-501f0c75.pt";

/// Parameters the network loads (for the memory estimate).
pub const PARAMETERS: u64 = 122_377_985;

const STAGE_CHANNELS: [i64; 3] = [256, 512, 1024];
const STAGE_BLOCKS: [usize; 3] = [3, 4, 9];
const STEM: i64 = 64;
const GROUPS: i64 = 32;
const STD_EPS: f64 = 1e-8;
const DIM: i64 = 768;
const HEADS: i64 = 12;
const DEPTH: usize = 12;
/// ViT blocks whose outputs feed the decoder's two coarsest levels.
const HOOKS: [usize; 2] = [8, 11];
const FEATURES: i64 = 256;
const PATCH: i64 = 16;
/// The position-embedding grid the ViT was trained at (384 / 16).
const GRID: i64 = 24;

/// timm's `GroupNormAct`: group norm, then ReLU unless it ends a residual branch.
struct GroupNormAct {
    weight: Tensor,
    bias: Tensor,
    relu: bool,
}

impl GroupNormAct {
    fn new(w: &Scope, channels: i64, relu: bool) -> Self {
        Self {
            weight: w.get("weight", &[channels]),
            bias: w.get("bias", &[channels]),
            relu,
        }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        let y = x.group_norm(GROUPS, Some(&self.weight), Some(&self.bias), 1e-5, true);
        if self.relu { y.relu() } else { y }
    }
}

fn std_conv(w: &Scope, input: i64, output: i64, kernel: i64, stride: i64) -> Conv2d {
    let spec = ConvSpec::plain(input, output, kernel)
        .stride(stride)
        .same()
        .no_bias();
    Conv2d::with(w, spec).standardized(STD_EPS)
}

struct Bottleneck {
    downsample: Option<(Conv2d, GroupNormAct)>,
    conv1: Conv2d,
    norm1: GroupNormAct,
    conv2: Conv2d,
    norm2: GroupNormAct,
    conv3: Conv2d,
    norm3: GroupNormAct,
}

impl Bottleneck {
    fn new(w: &Scope, input: i64, output: i64, stride: i64) -> Self {
        let mid = output / 4;
        let downsample = (input != output || stride != 1).then(|| {
            let d = w.at("downsample");
            (
                std_conv(&d.at("conv"), input, output, 1, stride),
                GroupNormAct::new(&d.at("norm"), output, false),
            )
        });
        Self {
            downsample,
            conv1: std_conv(&w.at("conv1"), input, mid, 1, 1),
            norm1: GroupNormAct::new(&w.at("norm1"), mid, true),
            conv2: std_conv(&w.at("conv2"), mid, mid, 3, stride),
            norm2: GroupNormAct::new(&w.at("norm2"), mid, true),
            conv3: std_conv(&w.at("conv3"), mid, output, 1, 1),
            norm3: GroupNormAct::new(&w.at("norm3"), output, false),
        }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        let shortcut = match &self.downsample {
            Some((conv, norm)) => norm.forward(&conv.forward(x)),
            None => x.shallow_clone(),
        };
        let y = self.norm1.forward(&self.conv1.forward(x));
        let y = self.norm2.forward(&self.conv2.forward(&y));
        let y = self.norm3.forward(&self.conv3.forward(&y));
        (y + shortcut).relu()
    }
}

struct VitBlock {
    norm1: LayerNorm,
    qkv: Linear,
    proj: Linear,
    norm2: LayerNorm,
    fc1: Linear,
    fc2: Linear,
}

impl VitBlock {
    fn new(w: &Scope) -> Self {
        Self {
            norm1: LayerNorm::new(&w.at("norm1"), DIM, 1e-6),
            qkv: Linear::new(&w.at("attn.qkv"), DIM, 3 * DIM, true),
            proj: Linear::new(&w.at("attn.proj"), DIM, DIM, true),
            norm2: LayerNorm::new(&w.at("norm2"), DIM, 1e-6),
            fc1: Linear::new(&w.at("mlp.fc1"), DIM, 4 * DIM, true),
            fc2: Linear::new(&w.at("mlp.fc2"), 4 * DIM, DIM, true),
        }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        let qkv = self.qkv.forward(&self.norm1.forward(x)).chunk(3, -1);
        let a = attention(&qkv[0], &qkv[1], &qkv[2], HEADS, false);
        let x = x + self.proj.forward(&a);
        let h = self.fc1.forward(&self.norm2.forward(&x)).gelu("none");
        x + self.fc2.forward(&h)
    }
}

/// `ResidualConvUnit_custom` without batch norm.
struct ResidualUnit {
    conv1: Conv2d,
    conv2: Conv2d,
}

impl ResidualUnit {
    fn new(w: &Scope) -> Self {
        let spec = ConvSpec::plain(FEATURES, FEATURES, 3);
        Self {
            conv1: Conv2d::with(&w.at("conv1"), spec),
            conv2: Conv2d::with(&w.at("conv2"), spec),
        }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        let y = self.conv1.forward(&x.relu());
        self.conv2.forward(&y.relu()) + x
    }
}

struct FusionBlock {
    unit1: ResidualUnit,
    unit2: ResidualUnit,
    out_conv: Conv2d,
}

impl FusionBlock {
    fn new(w: &Scope) -> Self {
        Self {
            unit1: ResidualUnit::new(&w.at("resConfUnit1")),
            unit2: ResidualUnit::new(&w.at("resConfUnit2")),
            out_conv: Conv2d::with(&w.at("out_conv"), ConvSpec::plain(FEATURES, FEATURES, 1)),
        }
    }

    fn forward(&self, x: &Tensor, skip: Option<&Tensor>) -> Tensor {
        let x = match skip {
            Some(s) => x + self.unit1.forward(s),
            None => x.shallow_clone(),
        };
        self.out_conv
            .forward(&double_aligned(&self.unit2.forward(&x)))
    }
}

/// The readout projection and convolutions that turn a hooked ViT output into a feature map.
struct Reassemble {
    readout: Linear,
    convs: Vec<Conv2d>,
}

impl Reassemble {
    fn forward(&self, tokens: &Tensor, grid: (i64, i64)) -> Tensor {
        let patches = tokens.narrow(1, 1, tokens.size()[1] - 1);
        let cls = tokens.narrow(1, 0, 1).expand_as(&patches);
        let x = self
            .readout
            .forward(&Tensor::cat(&[&patches, &cls], -1))
            .gelu("none");
        let mut x = x.transpose(1, 2).unflatten(2, [grid.0, grid.1]);
        for conv in &self.convs {
            x = conv.forward(&x);
        }
        x
    }
}

pub struct Midas {
    stem_conv: Conv2d,
    stem_norm: GroupNormAct,
    stages: Vec<Vec<Bottleneck>>,
    patch_proj: Conv2d,
    cls_token: Tensor,
    pos_embed: Tensor,
    blocks: Vec<VitBlock>,
    reassemble: [Reassemble; 2],
    layer_rn: Vec<Conv2d>,
    refine: Vec<FusionBlock>,
    head: [Conv2d; 3],
    device: Device,
}

impl Midas {
    /// Loads the checkpoint (`.pt` as published or `.safetensors`), reporting a missing file
    /// with where to get it and any missing or misshapen tensor by name.
    pub fn load(path: &Path, device: Device) -> Result<Self, AnnotatorError> {
        // MiDaS also saves {"model": ..., "optimizer": ...} while training.
        load_network(
            "MiDaS depth",
            path,
            SOURCE,
            &["model."],
            device,
            Self::build,
        )
    }

    /// The architecture under `w` (parameter names as in the published checkpoint).
    pub fn build(w: &Scope, device: Device) -> Self {
        let vit = w.at("pretrained.model");
        let backbone = vit.at("patch_embed.backbone");
        let mut input = STEM;
        let stages = (0..3)
            .map(|s| {
                let stage = backbone.at(format!("stages.{s}"));
                (0..STAGE_BLOCKS[s])
                    .map(|b| {
                        let stride = if s > 0 && b == 0 { 2 } else { 1 };
                        let block = Bottleneck::new(
                            &stage.at(format!("blocks.{b}")),
                            input,
                            STAGE_CHANNELS[s],
                            stride,
                        );
                        input = STAGE_CHANNELS[s];
                        block
                    })
                    .collect()
            })
            .collect();
        let post = |i: usize| w.at(format!("pretrained.act_postprocess{i}"));
        let reassemble = |i: usize, convs: Vec<Conv2d>| Reassemble {
            readout: Linear::new(&post(i).at("0.project.0"), 2 * DIM, DIM, true),
            convs,
        };
        let pointwise = |i: usize| Conv2d::with(&post(i).at(3), ConvSpec::plain(DIM, DIM, 1));
        let scratch = w.at("scratch");
        let level_channels = [STAGE_CHANNELS[0], STAGE_CHANNELS[1], DIM, DIM];
        let head = scratch.at("output_conv");
        // The ViT's final norm and its ImageNet classifier are in the checkpoint, but the
        // decoder reads block outputs before them.
        LayerNorm::new(&vit.at("norm"), DIM, 1e-6);
        vit.ignore("head");
        Self {
            stem_conv: std_conv(&backbone.at("stem.conv"), 3, STEM, 7, 2),
            stem_norm: GroupNormAct::new(&backbone.at("stem.norm"), STEM, true),
            stages,
            patch_proj: Conv2d::with(
                &vit.at("patch_embed.proj"),
                ConvSpec::plain(STAGE_CHANNELS[2], DIM, 1),
            ),
            cls_token: vit.get("cls_token", &[1, 1, DIM]),
            pos_embed: vit.get("pos_embed", &[1, GRID * GRID + 1, DIM]),
            blocks: (0..DEPTH)
                .map(|i| VitBlock::new(&vit.at(format!("blocks.{i}"))))
                .collect(),
            reassemble: [
                reassemble(3, vec![pointwise(3)]),
                reassemble(
                    4,
                    vec![
                        pointwise(4),
                        Conv2d::with(&post(4).at(4), ConvSpec::plain(DIM, DIM, 3).stride(2)),
                    ],
                ),
            ],
            layer_rn: (0..4)
                .map(|i| {
                    let spec = ConvSpec::plain(level_channels[i], FEATURES, 3).no_bias();
                    Conv2d::with(&scratch.at(format!("layer{}_rn", i + 1)), spec)
                })
                .collect(),
            refine: (1..=4)
                .map(|i| FusionBlock::new(&scratch.at(format!("refinenet{i}"))))
                .collect(),
            head: [
                Conv2d::with(&head.at(0), ConvSpec::plain(FEATURES, FEATURES / 2, 3)),
                Conv2d::with(&head.at(2), ConvSpec::plain(FEATURES / 2, 32, 3)),
                Conv2d::with(&head.at(4), ConvSpec::plain(32, 1, 1)),
            ],
            device,
        }
    }

    /// The network's raw (relative inverse) depth for a `[1, 3, h, w]` input in [-1, 1].
    pub fn depth(&self, x: &Tensor) -> Tensor {
        let (h, w) = (x.size()[2], x.size()[3]);
        let grid = (h / PATCH, w / PATCH);
        let x = self.stem_norm.forward(&self.stem_conv.forward(x));
        let mut x =
            pad_same(&x, 3, 2, f64::NEG_INFINITY).max_pool2d([3, 3], [2, 2], [0, 0], [1, 1], false);
        let mut levels = Vec::new();
        for stage in &self.stages {
            for block in stage {
                x = block.forward(&x);
            }
            levels.push(x.shallow_clone());
        }
        let tokens = self
            .patch_proj
            .forward(&levels[2])
            .flatten(2, -1)
            .transpose(1, 2);
        let cls = self.cls_token.expand([tokens.size()[0], -1, -1], false);
        let mut t = Tensor::cat(&[&cls, &tokens], 1) + self.position_embedding(grid);
        let mut hooked = Vec::new();
        for (i, block) in self.blocks.iter().enumerate() {
            t = block.forward(&t);
            if HOOKS.contains(&i) {
                hooked.push(t.shallow_clone());
            }
        }
        let layers = [
            levels[0].shallow_clone(),
            levels[1].shallow_clone(),
            self.reassemble[0].forward(&hooked[0], grid),
            self.reassemble[1].forward(&hooked[1], grid),
        ];
        let rn: Vec<Tensor> = layers
            .iter()
            .zip(&self.layer_rn)
            .map(|(l, conv)| conv.forward(l))
            .collect();
        let path = self.refine[3].forward(&rn[3], None);
        let path = self.refine[2].forward(&path, Some(&rn[2]));
        let path = self.refine[1].forward(&path, Some(&rn[1]));
        let path = self.refine[0].forward(&path, Some(&rn[0]));
        let y = double_aligned(&self.head[0].forward(&path));
        let y = self.head[1].forward(&y).relu();
        self.head[2].forward(&y).relu().squeeze_dim(1)
    }

    /// The 24×24 trained grid resized (bilinear, corners not aligned) to this image's grid.
    fn position_embedding(&self, grid: (i64, i64)) -> Tensor {
        let cls = self.pos_embed.narrow(1, 0, 1);
        let table = self
            .pos_embed
            .narrow(1, 1, GRID * GRID)
            .reshape([1, GRID, GRID, DIM])
            .permute([0, 3, 1, 2]);
        let table = resize_bilinear(&table, grid.0, grid.1, false)
            .permute([0, 2, 3, 1])
            .reshape([1, grid.0 * grid.1, DIM]);
        Tensor::cat(&[&cls, &table], 1)
    }

    /// The depth map as controlnet_aux draws it: shifted to start at 0, divided by its
    /// maximum, times 255, truncated to 8 bits, in all three channels.
    pub fn annotate(&self, image: &RgbImage) -> Result<RgbImage, AnnotatorError> {
        check_size("MiDaS", image, 32)?;
        let _no_grad = tch::no_grad_guard();
        let x = pixels(image).to_device(self.device) / 127.5 - 1.0;
        let depth = self.depth(&x).get(0).to_device(Device::Cpu);
        let shifted = &depth - depth.min();
        let scaled = (&shifted / shifted.max()) * 255.0;
        Ok(gray_to_rgb(image, &to_u8(&scaled)))
    }
}
