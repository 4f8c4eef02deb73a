//! The ControlNet annotators NicheImage runs on a conditional image before its three-way
//! ControlNet: Canny edges (pure image processing), MiDaS depth and NormalBae surface normals
//! (networks, loaded from the checkpoints controlnet_aux downloads).

pub mod canny;
pub mod midas;
pub mod normalbae;

use crate::weights::{Scope, WeightError, Weights};
use nicheimage_common::image::RgbImage;
use std::path::Path;
use tch::{Device, Kind, Tensor};

#[derive(Debug, thiserror::Error)]
pub enum AnnotatorError {
    #[error(
        "{what} checkpoint {path} is missing: download {source_url} and put it there (or point [endpoint] controlnet_dir at the folder that has it)"
    )]
    Missing {
        what: &'static str,
        path: String,
        source_url: &'static str,
    },
    #[error(transparent)]
    Weights(#[from] WeightError),
    #[error(transparent)]
    Deadline(#[from] crate::deadline::DeadlinePassed),
    #[error(
        "{what} needs both sides of the image to be multiples of {multiple}, got {width}x{height}"
    )]
    Size {
        what: &'static str,
        multiple: usize,
        width: usize,
        height: usize,
    },
}

/// An annotator network `build` makes from its checkpoint at `path` (`.pt` as published or
/// `.safetensors`), in f32, the first matching `strip` prefix taken off every name. A
/// missing file says where to get it; missing or misshapen tensors are named.
pub(crate) fn load_network<T>(
    what: &'static str,
    path: &Path,
    source_url: &'static str,
    strip: &[&str],
    device: Device,
    build: impl FnOnce(&Scope, Device) -> T,
) -> Result<T, AnnotatorError> {
    if !path.is_file() {
        return Err(AnnotatorError::Missing {
            what,
            path: path.display().to_string(),
            source_url,
        });
    }
    let _no_grad = tch::no_grad_guard();
    let weights = Weights::from_checkpoint(what, path, strip, Kind::Float, device)?;
    let net = build(&weights.root(), device);
    weights.finish()?;
    Ok(net)
}

/// numpy's `clip(0, 255).astype(uint8)`: NaN becomes 0, the rest truncates toward zero.
pub fn to_u8(t: &Tensor) -> Vec<u8> {
    let t = t
        .nan_to_num(0.0, None, None)
        .clamp(0.0, 255.0)
        .to_kind(Kind::Uint8);
    Vec::<u8>::try_from(t.flatten(0, -1)).expect("a Uint8 tensor converts to bytes")
}

pub fn gray_to_rgb(like: &RgbImage, gray: &[u8]) -> RgbImage {
    RgbImage {
        width: like.width,
        height: like.height,
        data: gray.iter().flat_map(|&v| [v, v, v]).collect(),
    }
}

pub fn check_size(
    what: &'static str,
    image: &RgbImage,
    multiple: usize,
) -> Result<(), AnnotatorError> {
    if image.width == 0
        || image.height == 0
        || !image.width.is_multiple_of(multiple)
        || !image.height.is_multiple_of(multiple)
    {
        return Err(AnnotatorError::Size {
            what,
            multiple,
            width: image.width,
            height: image.height,
        });
    }
    Ok(())
}
