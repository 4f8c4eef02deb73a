//! What the node asks of the generation engine. With the `local-infer` feature the node links
//! `nicheimage-engine` (libtorch); without it, these answer that generation is remote only.
//! Every `local-infer` switch of the node is in this file (and the replica child's module).

use crate::catalogue::Arch;
use nicheimage_common::torch::{DeviceChoice, ParameterCounts, TorchReport};
use std::path::{Path, PathBuf};

#[cfg(feature = "local-infer")]
pub use local::*;
#[cfg(not(feature = "local-infer"))]
pub use remote_only::*;

/// Whether this build generates locally (links the engine).
pub const LOCAL: bool = cfg!(feature = "local-infer");

/// A checkpoint or ControlNet file NicheImage's pipeline needs and where to download it.
pub type MissingFile = (PathBuf, &'static str);

/// Why the devnet's tiny model could not be written.
#[derive(Debug, thiserror::Error)]
pub enum TinyModelError {
    #[cfg(feature = "local-infer")]
    #[error(transparent)]
    Write(#[from] nicheimage_engine::tiny::TinyError),
    #[error(
        "the devnet generates images locally; this build has no local inference (built without \
         the local-infer feature)"
    )]
    NoLocalInference,
}

#[cfg(feature = "local-infer")]
mod local {
    use super::*;
    use nicheimage_engine::{annotator, multi_controlnet, tiny, weights};

    /// What libtorch says about this machine.
    pub fn probe(choice: DeviceChoice) -> TorchReport {
        nicheimage_engine::probe(choice)
    }

    /// The parameters a replica loads: the checkpoint's, and with `controlnet_dir` NicheImage's
    /// three ControlNets and both annotators.
    pub fn parameter_counts(
        checkpoint: &Path,
        controlnet_dir: Option<&Path>,
    ) -> anyhow::Result<Option<ParameterCounts>> {
        let mut params = weights::parameter_counts(checkpoint)?;
        if let Some(dir) = controlnet_dir {
            let nets: Vec<PathBuf> = multi_controlnet::NETS
                .iter()
                .map(|(name, _)| dir.join(name))
                .collect();
            params.controlnets = weights::folder_parameter_count(&nets)?;
            params.annotators = annotator::midas::PARAMETERS + annotator::normalbae::PARAMETERS;
        }
        Ok(Some(params))
    }

    /// NicheImage's ControlNet and annotator files missing from `dir`; `None` when this build
    /// cannot run them at all.
    pub fn missing_controlnets(dir: &Path) -> Option<Vec<MissingFile>> {
        Some(multi_controlnet::missing(dir))
    }

    /// The devnet's tiny SD 1.5 checkpoint in `dir`, written once.
    pub fn tiny_checkpoint(dir: &Path, arch: Arch) -> Result<PathBuf, TinyModelError> {
        let name = match arch {
            Arch::Sd15 => "tiny-sd15",
            Arch::Sdxl => "tiny-sdxl",
            Arch::Flux => "tiny-flux",
        };
        let file = dir.join(format!("{name}.safetensors"));
        match arch {
            _ if file.exists() && dir.join(name).is_dir() => Ok(file),
            Arch::Sd15 => Ok(tiny::write_tiny_sd15(dir, name)?),
            Arch::Sdxl => Ok(tiny::write_tiny_sdxl(dir, name)?),
            Arch::Flux => {
                let folder = dir.join(name);
                // Its weights are written last: a folder cut short is written again.
                if !folder
                    .join("vae/diffusion_pytorch_model.safetensors")
                    .is_file()
                {
                    nicheimage_engine::flux::tiny::write_tiny_flux(&folder)?;
                }
                Ok(folder)
            }
        }
    }

    /// NicheImage's three ControlNets for the tiny model, with both annotators at full size and
    /// random weights (about 400 MB, written once).
    pub fn tiny_controlnets(dir: &Path) -> Result<PathBuf, TinyModelError> {
        if multi_controlnet::missing(dir).is_empty() {
            return Ok(dir.to_path_buf());
        }
        tiny::write_tiny_multi_controlnet(dir)?;
        Ok(dir.to_path_buf())
    }
}

#[cfg(not(feature = "local-infer"))]
mod remote_only {
    use super::*;

    /// Without `local-infer` there is no libtorch: say so instead of probing.
    pub fn probe(_choice: DeviceChoice) -> TorchReport {
        TorchReport {
            compiled_in: false,
            cuda_available: false,
            cuda_devices: 0,
            cudnn_available: false,
            cpu_threads: 0,
            smoke_test: Err(nicheimage_common::torch::SmokeFailure::NotCompiledIn),
        }
    }

    /// No local replicas: nothing to weigh.
    pub fn parameter_counts(
        _checkpoint: &Path,
        _controlnet_dir: Option<&Path>,
    ) -> anyhow::Result<Option<ParameterCounts>> {
        Ok(None)
    }

    /// No local replicas to give ControlNets to.
    pub fn missing_controlnets(_dir: &Path) -> Option<Vec<MissingFile>> {
        None
    }

    pub fn tiny_checkpoint(_dir: &Path, _arch: Arch) -> Result<PathBuf, TinyModelError> {
        Err(TinyModelError::NoLocalInference)
    }

    pub fn tiny_controlnets(dir: &Path) -> Result<PathBuf, TinyModelError> {
        Ok(dir.to_path_buf())
    }
}
