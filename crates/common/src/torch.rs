//! What the node knows about libtorch and models without linking libtorch: the device an
//! operator asks for, what the start-up probe found, and a model's parameter counts.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum DeviceChoice {
    Auto,
    Cpu,
    Cuda,
}

impl DeviceChoice {
    /// The name in configs and on command lines.
    pub fn name(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Cpu => "cpu",
            Self::Cuda => "cuda",
        }
    }
}

/// The pipeline's precision: `auto` is what NicheImage runs (fp16 on CUDA, fp32 on the CPU);
/// the others force one (fp32 on CUDA for a parity check, bf16 where fp16 overflows).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum DtypeChoice {
    #[default]
    Auto,
    Fp16,
    Bf16,
    Fp32,
}

impl DtypeChoice {
    /// The name in configs and on command lines.
    pub fn name(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Fp16 => "fp16",
            Self::Bf16 => "bf16",
            Self::Fp32 => "fp32",
        }
    }
}

/// What libtorch says about this machine, probed once at start-up.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TorchReport {
    /// False when built without the `local-infer` feature.
    pub compiled_in: bool,
    pub cuda_available: bool,
    pub cuda_devices: i64,
    pub cudnn_available: bool,
    pub cpu_threads: i32,
    /// The result of a small tensor computation, or why it failed.
    pub smoke_test: Result<(), SmokeFailure>,
}

/// Why libtorch cannot compute here (serialised as its sentence).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SmokeFailure {
    #[error("built without the local-infer feature; generation is remote only")]
    NotCompiledIn,
    /// The chosen device cannot be used (libtorch's sentence).
    #[error("{0}")]
    Device(String),
    #[error("2x2 matmul gave sum {0}, expected 52")]
    WrongAnswer(f64),
    /// libtorch failed while computing (its sentence).
    #[error("{0}")]
    Torch(String),
}

impl Serialize for SmokeFailure {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Parameters per part of a pipeline, read from the checkpoint's headers.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ParameterCounts {
    pub unet: u64,
    pub vae: u64,
    pub text_encoders: u64,
    /// ControlNets, in the pipeline's dtype.
    pub controlnets: u64,
    /// The ControlNet annotators (MiDaS, NormalBae), always f32.
    pub annotators: u64,
}
