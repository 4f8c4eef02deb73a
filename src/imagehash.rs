//! `imagehash.average_hash` exactly as Pillow + ImageHash compute it, bit for bit: Pillow's
//! RGB→L conversion, its separable fixed-point Lanczos resize, then "pixel > mean".

use crate::image::RgbImage;

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

fn lanczos(x: f64) -> f64 {
    fn sinc(x: f64) -> f64 {
        if x == 0.0 {
            1.0
        } else {
            let px = std::f64::consts::PI * x;
            px.sin() / px
        }
    }
    if (-3.0..3.0).contains(&x) {
        sinc(x) * sinc(x / 3.0)
    } else {
        0.0
    }
}

const PRECISION_BITS: u32 = 22;

/// Per output pixel: the first input index and fixed-point weights (Pillow's precompute_coeffs).
fn coefficients(input: usize, output: usize) -> Vec<(usize, Vec<i32>)> {
    let scale = input as f64 / output as f64;
    let filterscale = scale.max(1.0);
    let support = 3.0 * filterscale;
    (0..output)
        .map(|i| {
            let center = (i as f64 + 0.5) * scale;
            let xmin = ((center - support + 0.5) as i64).max(0) as usize;
            let xmax = (((center + support + 0.5) as i64).min(input as i64) as usize) - xmin;
            let weights: Vec<f64> = (0..xmax)
                .map(|x| lanczos((x as f64 + xmin as f64 - center + 0.5) / filterscale))
                .collect();
            let total: f64 = weights.iter().sum();
            let fixed = weights
                .iter()
                .map(|w| {
                    let w = if total != 0.0 { w / total } else { *w };
                    let scaled = w * (1u32 << PRECISION_BITS) as f64;
                    (if scaled < 0.0 {
                        scaled - 0.5
                    } else {
                        scaled + 0.5
                    }) as i32
                })
                .collect();
            (xmin, fixed)
        })
        .collect()
}

fn clip8(v: i64) -> u8 {
    (v >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Pillow's LANCZOS resize of an 8-bit single-channel image, horizontal pass first.
fn resize_l(src: &[u8], w: usize, h: usize, ow: usize, oh: usize) -> Vec<u8> {
    let horizontal = coefficients(w, ow);
    let vertical = coefficients(h, oh);
    // Only the rows the vertical pass reads.
    let first_row = vertical.first().map(|(m, _)| *m).unwrap_or(0);
    let last_row = vertical.last().map(|(m, k)| m + k.len()).unwrap_or(h);
    let rows = last_row - first_row;
    let half = 1i64 << (PRECISION_BITS - 1);
    let mut temp = vec![0u8; rows * ow];
    for y in 0..rows {
        let row = &src[(y + first_row) * w..(y + first_row + 1) * w];
        for (x, (xmin, k)) in horizontal.iter().enumerate() {
            let taps = &row[*xmin..*xmin + k.len()];
            let acc: i64 =
                half + taps.iter().zip(k).map(|(&p, &c)| p as i32 * c).sum::<i32>() as i64;
            temp[y * ow + x] = clip8(acc);
        }
    }
    let mut out = vec![0u8; ow * oh];
    for (y, (ymin, k)) in vertical.iter().enumerate() {
        for x in 0..ow {
            let acc: i64 = half
                + k.iter()
                    .enumerate()
                    .map(|(i, &c)| temp[(ymin - first_row + i) * ow + x] as i64 * c as i64)
                    .sum::<i64>();
            out[y * ow + x] = clip8(acc);
        }
    }
    out
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
            let small = resize_l(&gray, image.width, image.height, size, size);
            let mean = small.iter().map(|&p| p as f64).sum::<f64>() / small.len() as f64;
            small.iter().map(|&p| p as f64 > mean).collect()
        })
        .collect()
}

pub fn distance(a: &[bool], b: &[bool]) -> usize {
    a.iter().zip(b).filter(|(x, y)| x != y).count()
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
