//! The ControlNet annotators the seed runs on a conditional image before its three-way
//! ControlNet: Canny edges (pure image processing), MiDaS depth and NormalBae surface normals
//! (networks, loaded from the checkpoints controlnet_aux downloads).

pub mod canny;
#[cfg(feature = "local-infer")]
pub mod midas;
#[cfg(feature = "local-infer")]
pub mod normalbae;
#[cfg(feature = "local-infer")]
pub use shared::*;

#[cfg(feature = "local-infer")]
mod shared {
    use crate::diffusion::weights::WeightError;
    use crate::image::RgbImage;
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

    /// The image as a `[1, 3, h, w]` float tensor of 0..255 values.
    pub fn image_tensor(image: &RgbImage, device: Device) -> Tensor {
        Tensor::from_slice(&image.data)
            .view([image.height as i64, image.width as i64, 3])
            .permute([2, 0, 1])
            .unsqueeze(0)
            .to_kind(Kind::Float)
            .to_device(device)
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
}
