//! NicheImage's `controlnet_txt2img`: three ControlNets (Canny edges, MiDaS depth, NormalBae
//! normals) summed, each fed its annotator's map of the one conditional image.
//!
//! Everything lives in one folder (the endpoint's `controlnet_dir`): the three diffusers
//! ControlNet folders under their Hugging Face names and the two annotator checkpoints under
//! controlnet_aux's file names.

use super::controlnet::{ControlNet, ControlNetError};
use super::pipeline::{Generation, PipelineError, StableDiffusion, Txt2Img};
use crate::annotator::midas::{self, Midas};
use crate::annotator::normalbae::{self, NormalBae};
use crate::annotator::{AnnotatorError, canny};
use nicheimage_common::image::RgbImage;
use std::path::{Path, PathBuf};
use tch::{Device, Kind};

/// The three ControlNets in NicheImage's order, with where to get each.
pub const NETS: [(&str, &str); 3] = [
    (
        "control_v11p_sd15_canny",
        "https://huggingface.co/lllyasviel/control_v11p_sd15_canny",
    ),
    (
        "control_v11f1p_sd15_depth",
        "https://huggingface.co/lllyasviel/control_v11f1p_sd15_depth",
    ),
    (
        "control_v11p_sd15_normalbae",
        "https://huggingface.co/lllyasviel/control_v11p_sd15_normalbae",
    ),
];

#[derive(Debug, thiserror::Error)]
pub enum MultiControlNetError {
    #[error(transparent)]
    ControlNet(#[from] ControlNetError),
    #[error(transparent)]
    Annotator(#[from] AnnotatorError),
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
}

/// What is absent from `dir`, each with where to download it; empty when all is there.
pub fn missing(dir: &Path) -> Vec<(PathBuf, &'static str)> {
    let mut absent: Vec<(PathBuf, &'static str)> = NETS
        .iter()
        .map(|(name, url)| (dir.join(name), *url))
        .filter(|(folder, _)| {
            !folder.join("config.json").is_file()
                || super::folder::weight_files(folder, super::folder::Library::Diffusers).is_err()
        })
        .collect();
    for (file, url) in [
        (midas::CHECKPOINT, midas::SOURCE),
        (normalbae::CHECKPOINT, normalbae::SOURCE),
    ] {
        if annotator_file(dir, file).is_none() {
            absent.push((dir.join(file), url));
        }
    }
    absent
}

/// The name of an annotator checkpoint converted to safetensors (`scannet.pt` →
/// `scannet.safetensors`).
pub fn converted_name(published: &str) -> String {
    format!("{}.safetensors", published.trim_end_matches(".pt"))
}

/// An annotator checkpoint converted to `.safetensors`, else as published (`.pt`).
pub fn annotator_file(dir: &Path, published: &str) -> Option<PathBuf> {
    [converted_name(published), published.to_string()]
        .into_iter()
        .map(|n| dir.join(n))
        .find(|p| p.is_file())
}

pub struct MultiControlNet {
    nets: [ControlNet; 3],
    midas: Midas,
    normalbae: NormalBae,
}

impl MultiControlNet {
    /// Loads the nets in the pipeline's dtype and the annotators in f32 (as controlnet_aux
    /// runs them).
    pub fn load(dir: &Path, device: Device, kind: Kind) -> Result<Self, MultiControlNetError> {
        let net = |i: usize| ControlNet::load(&dir.join(NETS[i].0), device, kind);
        let annotator = |name: &str| annotator_file(dir, name).unwrap_or_else(|| dir.join(name));
        Ok(Self {
            nets: [net(0)?, net(1)?, net(2)?],
            midas: Midas::load(&annotator(midas::CHECKPOINT), device)?,
            normalbae: NormalBae::load(&annotator(normalbae::CHECKPOINT), device)?,
        })
    }

    /// The three control images for a conditional image already resized as NicheImage does
    /// (sides multiples of 64). controlnet_aux resizes to a 512 short side to detect and back
    /// again; at NicheImage's condition resolution for SD 1.5, 512, both resizes leave the image
    /// as it is, so the maps are computed at the image's own size.
    pub fn control_images(&self, image: &RgbImage) -> Result<[RgbImage; 3], AnnotatorError> {
        use super::deadline::check;
        let edges = canny::canny(image, canny::LOW_THRESHOLD, canny::HIGH_THRESHOLD);
        check().map_err(AnnotatorError::from)?;
        let depth = self.midas.annotate(image)?;
        check().map_err(AnnotatorError::from)?;
        Ok([edges, depth, self.normalbae.annotate(image)?])
    }

    /// txt2img steered by all three nets, each at its conditioning scale.
    pub fn generate(
        &self,
        sd: &StableDiffusion,
        req: &Txt2Img,
        image: &RgbImage,
        scales: [f64; 3],
    ) -> Result<Generation, MultiControlNetError> {
        let maps = self.control_images(image)?;
        let controls: Vec<(&ControlNet, &RgbImage, f64)> = self
            .nets
            .iter()
            .zip(&maps)
            .zip(scales)
            .map(|((net, map), scale)| (net, map, scale))
            .collect();
        Ok(sd.controlnet_txt2img(req, &controls, false)?)
    }
}
