//! The generation engine on libtorch: Stable Diffusion 1.x and XL, numerically faithful to
//! diffusers, NicheImage's ControlNet annotators and NSFW classifier. The node links it only with
//! its `local-infer` feature.

pub mod annotator;
mod blocks;
pub mod clip;
pub mod config;
pub mod controlnet;
pub mod deadline;
mod device;
pub mod flux;
pub mod folder;
pub mod image;
pub mod ldm;
pub mod model;
pub mod multi_controlnet;
pub(crate) mod nn;
pub mod nsfw;
pub mod pipeline;
pub mod scheduler;
pub mod scheduler_config;
pub mod tiny;
pub mod tokenizer;
pub mod tokenizer_files;
pub mod torch_file;
pub mod unet;
pub mod vae;
pub mod vit;
pub mod weights;

pub use device::{dtype_for, probe, resolve_dtype, select_device};
