//! Local image generation on libtorch (feature `local-infer`): Stable Diffusion 1.x and XL,
//! numerically faithful to diffusers, and the seed's NSFW classifier.

#[cfg(feature = "local-infer")]
mod blocks;
#[cfg(feature = "local-infer")]
pub mod clip;
#[cfg(feature = "local-infer")]
pub mod config;
#[cfg(feature = "local-infer")]
pub mod controlnet;
#[cfg(feature = "local-infer")]
pub mod deadline;
#[cfg(feature = "local-infer")]
mod device;
#[cfg(feature = "local-infer")]
pub mod folder;
#[cfg(feature = "local-infer")]
pub mod image;
#[cfg(feature = "local-infer")]
pub mod ldm;
#[cfg(feature = "local-infer")]
pub(crate) mod nn;
#[cfg(feature = "local-infer")]
pub mod nsfw;
#[cfg(feature = "local-infer")]
pub mod pipeline;
#[cfg(feature = "local-infer")]
pub mod scheduler;
#[cfg(feature = "local-infer")]
pub mod scheduler_config;
#[cfg(feature = "local-infer")]
pub mod seed_controlnet;
#[cfg(feature = "local-infer")]
pub mod tiny;
pub mod tokenizer;
pub mod tokenizer_files;
#[cfg(feature = "local-infer")]
pub mod torch_file;
#[cfg(feature = "local-infer")]
pub mod unet;
#[cfg(feature = "local-infer")]
pub mod vae;
#[cfg(feature = "local-infer")]
pub mod vit;
#[cfg(feature = "local-infer")]
pub mod weights;

#[cfg(feature = "local-infer")]
pub use device::{dtype_for, probe, select_device};

/// Without `local-infer` there is no libtorch: say so instead of probing.
#[cfg(not(feature = "local-infer"))]
pub fn probe(_choice: crate::config::DeviceChoice) -> crate::runtime::event::TorchReport {
    crate::runtime::event::TorchReport {
        compiled_in: false,
        cuda_available: false,
        cuda_devices: 0,
        cudnn_available: false,
        cpu_threads: 0,
        smoke_test: Err("built without the local-infer feature; generation is remote only".into()),
    }
}
