//! The handful of layers the models are made of, as plain tensors: diffusers' (linear,
//! convolution, group and layer norm, attention) and what the annotator networks add
//! (TensorFlow "same" padding, weight-standardised convolutions, batch norm, bilinear resizes).

use super::weights::Scope;
use tch::{Kind, Tensor};

pub struct Linear {
    weight: Tensor,
    bias: Option<Tensor>,
}

impl Linear {
    pub fn new(w: &Scope, input: i64, output: i64, bias: bool) -> Self {
        Self {
            weight: w.get("weight", &[output, input]),
            bias: bias.then(|| w.get("bias", &[output])),
        }
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        x.linear(&self.weight, self.bias.as_ref())
    }

    /// The same layer held in `kind` (transformers keeps some layers in f32 under fp16).
    pub fn to_kind(&self, kind: Kind) -> Self {
        Self {
            weight: self.weight.to_kind(kind),
            bias: self.bias.as_ref().map(|b| b.to_kind(kind)),
        }
    }

    pub fn kind(&self) -> Kind {
        self.weight.kind()
    }
}

#[derive(Clone, Copy, Debug)]
pub enum Padding {
    /// The same zero padding on every side.
    Fixed(i64),
    /// TensorFlow's "SAME": output = ceil(input / stride), the odd pixel of padding at the
    /// bottom/right, computed per input size.
    Same,
}

#[derive(Clone, Copy, Debug)]
pub struct ConvSpec {
    pub input: i64,
    pub output: i64,
    pub kernel: i64,
    pub stride: i64,
    pub padding: Padding,
    pub groups: i64,
    pub bias: bool,
}

impl ConvSpec {
    /// A stride-1 convolution with bias and symmetric padding that keeps the size.
    pub fn plain(input: i64, output: i64, kernel: i64) -> Self {
        Self {
            input,
            output,
            kernel,
            stride: 1,
            padding: Padding::Fixed(kernel / 2),
            groups: 1,
            bias: true,
        }
    }

    pub fn stride(self, stride: i64) -> Self {
        Self { stride, ..self }
    }

    pub fn same(self) -> Self {
        Self {
            padding: Padding::Same,
            ..self
        }
    }

    pub fn no_bias(self) -> Self {
        Self {
            bias: false,
            ..self
        }
    }

    pub fn groups(self, groups: i64) -> Self {
        Self { groups, ..self }
    }
}

/// A 2-D convolution: diffusers' plain one ([`Conv2d::new`]) or any [`ConvSpec`].
pub struct Conv2d {
    weight: Tensor,
    bias: Option<Tensor>,
    spec: ConvSpec,
}

impl Conv2d {
    /// diffusers' convolution: bias and the same padding on every side.
    pub fn new(w: &Scope, input: i64, output: i64, kernel: i64, stride: i64, padding: i64) -> Self {
        Self::with(
            w,
            ConvSpec {
                input,
                output,
                kernel,
                stride,
                padding: Padding::Fixed(padding),
                groups: 1,
                bias: true,
            },
        )
    }

    pub fn with(w: &Scope, spec: ConvSpec) -> Self {
        let shape = [
            spec.output,
            spec.input / spec.groups,
            spec.kernel,
            spec.kernel,
        ];
        Self {
            weight: w.get("weight", &shape),
            bias: spec.bias.then(|| w.get("bias", &[spec.output])),
            spec,
        }
    }

    /// Weight standardisation as timm's `StdConv2d` does it on every call (each output
    /// filter to zero mean and unit biased variance), done once at load.
    pub fn standardized(mut self, eps: f64) -> Self {
        let out = self.spec.output;
        let flat = self.weight.view([out, -1]);
        let mean = flat.mean_dim(1, true, None);
        let var = flat.var_dim(1, false, true);
        self.weight = ((flat - mean) / (var + eps).sqrt()).view_as(&self.weight);
        self
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        let s = &self.spec;
        let conv = |x: &Tensor, padding: i64| {
            x.conv2d(
                &self.weight,
                self.bias.as_ref(),
                [s.stride],
                [padding],
                [1],
                s.groups,
            )
        };
        match s.padding {
            Padding::Fixed(p) => conv(x, p),
            Padding::Same => conv(&pad_same(x, s.kernel, s.stride, 0.0), 0),
        }
    }
}

pub struct GroupNorm {
    weight: Tensor,
    bias: Tensor,
    groups: i64,
    eps: f64,
}

impl GroupNorm {
    pub fn new(w: &Scope, groups: i64, channels: i64, eps: f64) -> Self {
        Self {
            weight: w.get("weight", &[channels]),
            bias: w.get("bias", &[channels]),
            groups,
            eps,
        }
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        x.group_norm(
            self.groups,
            Some(&self.weight),
            Some(&self.bias),
            self.eps,
            true,
        )
    }
}

pub struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
}

impl LayerNorm {
    pub fn new(w: &Scope, dim: i64, eps: f64) -> Self {
        Self {
            weight: w.get("weight", &[dim]),
            bias: w.get("bias", &[dim]),
            eps,
        }
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        let dim = *self.weight.size().last().unwrap_or(&0);
        x.layer_norm([dim], Some(&self.weight), Some(&self.bias), self.eps, true)
    }
}

/// Multi-head scaled-dot-product attention over `[batch, tokens, heads * head_dim]` inputs,
/// through libtorch's fused kernel.
pub fn attention(q: &Tensor, k: &Tensor, v: &Tensor, heads: i64, causal: bool) -> Tensor {
    let (b, n, inner) = q
        .size3()
        .expect("attention inputs are [batch, tokens, channels]");
    let head_dim = inner / heads;
    let split = |t: &Tensor| {
        let len = t.size()[1];
        t.view([b, len, heads, head_dim]).transpose(1, 2)
    };
    let out = Tensor::scaled_dot_product_attention::<Tensor>(
        &split(q),
        &split(k),
        &split(v),
        None,
        0.0,
        causal,
        None,
        false,
    );
    out.transpose(1, 2).reshape([b, n, inner])
}

/// diffusers' `get_timestep_embedding` (`Timesteps`): sinusoidal embeddings `[values, dim]` of
/// (possibly fractional) values, computed in f32 on the values' device.
pub fn timestep_sinusoids(
    values: &Tensor,
    dim: i64,
    flip_sin_to_cos: bool,
    freq_shift: f64,
) -> Tensor {
    let half = dim / 2;
    let exponent = Tensor::arange(half, (Kind::Float, values.device())) * (-(10000f64).ln())
        / (half as f64 - freq_shift);
    let emb = values.to_kind(Kind::Float).unsqueeze(1) * exponent.exp().unsqueeze(0);
    let (sin, cos) = (emb.sin(), emb.cos());
    if flip_sin_to_cos {
        Tensor::cat(&[cos, sin], -1)
    } else {
        Tensor::cat(&[sin, cos], -1)
    }
}

/// timm's `pad_same`: pads so a `kernel`/`stride` window covers ceil(size / stride) outputs,
/// the smaller half first.
pub fn pad_same(x: &Tensor, kernel: i64, stride: i64, value: f64) -> Tensor {
    let size = x.size();
    let amount = |n: i64| (((n + stride - 1) / stride - 1) * stride + kernel - n).max(0);
    let (ph, pw) = (amount(size[size.len() - 2]), amount(size[size.len() - 1]));
    if ph == 0 && pw == 0 {
        return x.shallow_clone();
    }
    x.pad(
        [pw / 2, pw - pw / 2, ph / 2, ph - ph / 2],
        "constant",
        value,
    )
}

/// Batch norm with its running statistics (inference).
pub struct BatchNorm {
    weight: Tensor,
    bias: Tensor,
    mean: Tensor,
    var: Tensor,
    eps: f64,
}

impl BatchNorm {
    pub fn new(w: &Scope, channels: i64, eps: f64) -> Self {
        Self {
            weight: w.get("weight", &[channels]),
            bias: w.get("bias", &[channels]),
            mean: w.get("running_mean", &[channels]),
            var: w.get("running_var", &[channels]),
            eps,
        }
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        x.batch_norm(
            Some(&self.weight),
            Some(&self.bias),
            Some(&self.mean),
            Some(&self.var),
            false,
            0.0,
            self.eps,
            true,
        )
    }
}

/// Bilinear resize to an explicit size.
pub fn resize_bilinear(x: &Tensor, h: i64, w: i64, align_corners: bool) -> Tensor {
    x.upsample_bilinear2d([h, w], align_corners, None, None)
}

/// Twice the size, bilinear with aligned corners (`scale_factor=2, align_corners=True`).
pub fn double_aligned(x: &Tensor) -> Tensor {
    let s = x.size();
    resize_bilinear(x, s[s.len() - 2] * 2, s[s.len() - 1] * 2, true)
}
