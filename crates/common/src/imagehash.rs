//! `imagehash.average_hash` exactly as Pillow + ImageHash compute it, bit for bit: Pillow's
//! RGB→L conversion, its separable fixed-point Lanczos resize (`crate::resample`), then "pixel > mean".

use crate::image::RgbImage;
use crate::resample::{Filter, resize};

/// Pillow's `convert('L')`: ITU-R 601-2 luma in 16-bit fixed point.
fn luma(pixels: &RgbImage) -> Vec<u8> {
    pixels
        .data
        .chunks_exact(3)
        .map(|p| {
            ((p[0] as u32 * 19595 + p[1] as u32 * 38470 + p[2] as u32 * 7471 + 0x8000) >> 16) as u8
        })
        .collect()
}

/// The 64-bit (hash_size 8) average hash; bit 63 is the top-left pixel.
pub fn average_hash(image: &RgbImage, hash_size: usize) -> Vec<bool> {
    average_hashes(image, &[hash_size])
        .pop()
        .unwrap_or_default()
}

/// Several hash sizes of one image, converting it to grayscale once.
pub fn average_hashes(image: &RgbImage, hash_sizes: &[usize]) -> Vec<Vec<bool>> {
    let gray = luma(image);
    hash_sizes
        .iter()
        .map(|&size| {
            let small = resize(
                Filter::Lanczos,
                &gray,
                1,
                (image.width, image.height),
                (size, size),
            );
            let mean = small.iter().map(|&p| p as f64).sum::<f64>() / small.len() as f64;
            small.iter().map(|&p| p as f64 > mean).collect()
        })
        .collect()
}

pub fn distance(a: &[bool], b: &[bool]) -> usize {
    a.iter().zip(b).filter(|(x, y)| x != y).count()
}

/// How far apart two pictures are, as the parity suites and the GPU kit measure it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Difference {
    /// The largest difference of one channel of one pixel, in levels of 255.
    pub max_channel: u8,
    /// The distance of their 8×8 average hashes (what the reward check compares).
    pub hash_distance: usize,
}

/// None when the sizes differ.
pub fn difference(a: &RgbImage, b: &RgbImage) -> Option<Difference> {
    if (a.width, a.height) != (b.width, b.height) {
        return None;
    }
    let max_channel = a
        .data
        .iter()
        .zip(&b.data)
        .map(|(x, y)| x.abs_diff(*y))
        .max()
        .unwrap_or(0);
    Some(Difference {
        max_channel,
        hash_distance: distance(&average_hash(a, 8), &average_hash(b, 8)),
    })
}

/// ImageHash's hex form (row-major, first pixel most significant).
pub fn to_hex(bits: &[bool]) -> String {
    let mut s = String::new();
    for chunk in bits.chunks(8) {
        let byte = chunk.iter().fold(0u8, |acc, &b| (acc << 1) | b as u8);
        s.push_str(&format!("{byte:02x}"));
    }
    s
}
