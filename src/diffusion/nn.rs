//! The handful of layers the models are made of, as plain tensors.

use super::weights::Scope;
use tch::Tensor;

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
}

pub struct Conv2d {
    weight: Tensor,
    bias: Tensor,
    stride: i64,
    padding: i64,
}

impl Conv2d {
    pub fn new(w: &Scope, input: i64, output: i64, kernel: i64, stride: i64, padding: i64) -> Self {
        Self {
            weight: w.get("weight", &[output, input, kernel, kernel]),
            bias: w.get("bias", &[output]),
            stride,
            padding,
        }
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        x.conv2d(
            &self.weight,
            Some(&self.bias),
            [self.stride],
            [self.padding],
            [1],
            1,
        )
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
