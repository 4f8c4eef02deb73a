//! Pixels to tensors and back: the VAE's output to 8-bit RGB exactly like diffusers'
//! postprocess, and an image as a float tensor.

use nicheimage_common::image::{ImageError, RgbImage};
use tch::{Kind, Tensor};

/// `[1, 3, H, W]` in [-1, 1] → `(x / 2 + 0.5).clamp(0, 1)`, float32, `* 255`, round half to even.
pub fn rgb_from_decoded(x: &Tensor) -> Result<RgbImage, ImageError> {
    let size = x.size();
    let [1, 3, h, w] = size[..] else {
        return Err(ImageError::Unsupported(format!(
            "decoded tensor of shape {size:?}"
        )));
    };
    let hwc = (x / 2.0 + 0.5)
        .clamp(0.0, 1.0)
        .to_kind(Kind::Float)
        .to_device(tch::Device::Cpu)
        .squeeze_dim(0)
        .permute([1, 2, 0])
        .contiguous();
    let bytes = (hwc * 255.0).round().to_kind(Kind::Uint8).flatten(0, -1);
    let data = Vec::<u8>::try_from(&bytes).map_err(|e| ImageError::Unsupported(e.to_string()))?;
    RgbImage::new(w as usize, h as usize, data)
}

/// The image as a `[1, 3, h, w]` float tensor of its 0..255 values, on the CPU.
pub fn pixels(image: &RgbImage) -> Tensor {
    Tensor::from_slice(&image.data)
        .reshape([1, image.height as i64, image.width as i64, 3])
        .permute([0, 3, 1, 2])
        .to_kind(Kind::Float)
}
