//! Pillow's resize of 8-bit images, bit for bit: separable, horizontal pass first, 22-bit
//! fixed-point weights, each pass rounded and clamped to u8. The reward's average hash and
//! NicheImage's conditional-image resize (LANCZOS) and the NSFW classifier's input (BILINEAR) go
//! through it. Pillow up to 12.3 always runs the horizontal pass first; 13.0 sometimes runs the
//! vertical one first, which changes a few pixels by one level (scripts/parity pins 12.3).

/// Pillow's resampling filters that the network's Python code uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    Bilinear,
    Lanczos,
}

impl Filter {
    fn support(self) -> f64 {
        match self {
            Filter::Bilinear => 1.0,
            Filter::Lanczos => 3.0,
        }
    }

    fn weight(self, x: f64) -> f64 {
        match self {
            Filter::Bilinear => {
                let x = x.abs();
                if x < 1.0 { 1.0 - x } else { 0.0 }
            }
            Filter::Lanczos => lanczos(x),
        }
    }
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
fn coefficients(filter: Filter, input: usize, output: usize) -> Vec<(usize, Vec<i32>)> {
    let scale = input as f64 / output as f64;
    let filterscale = scale.max(1.0);
    let support = filter.support() * filterscale;
    // Pillow multiplies by the reciprocal; dividing differs in the last bit now and then.
    let ss = 1.0 / filterscale;
    (0..output)
        .map(|i| {
            let center = (i as f64 + 0.5) * scale;
            let xmin = ((center - support + 0.5) as i64).max(0) as usize;
            let xmax = (((center + support + 0.5) as i64).min(input as i64) as usize) - xmin;
            let weights: Vec<f64> = (0..xmax)
                .map(|x| filter.weight((x as f64 + xmin as f64 - center + 0.5) * ss))
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

/// Resizes interleaved 8-bit pixels with `channels` bands from `from` (width, height) to `to`.
/// A pass whose size does not change is skipped, as Pillow skips it.
pub fn resize(
    filter: Filter,
    src: &[u8],
    channels: usize,
    from: (usize, usize),
    to: (usize, usize),
) -> Vec<u8> {
    let (w, h) = from;
    let (ow, oh) = to;
    let half = 1i64 << (PRECISION_BITS - 1);
    let vertical = (h != oh).then(|| coefficients(filter, h, oh));
    // Only the rows the vertical pass reads.
    let (first_row, rows) = match &vertical {
        Some(v) => {
            let first = v.first().map(|(m, _)| *m).unwrap_or(0);
            let last = v.last().map(|(m, k)| m + k.len()).unwrap_or(h);
            (first, last - first)
        }
        None => (0, h),
    };
    let temp = if w != ow {
        let horizontal = coefficients(filter, w, ow);
        let mut temp = vec![0u8; rows * ow * channels];
        for y in 0..rows {
            let row = &src[(y + first_row) * w * channels..(y + first_row + 1) * w * channels];
            for (x, (xmin, k)) in horizontal.iter().enumerate() {
                for c in 0..channels {
                    let acc: i64 = half
                        + k.iter()
                            .enumerate()
                            .map(|(i, &k)| row[(xmin + i) * channels + c] as i64 * k as i64)
                            .sum::<i64>();
                    temp[(y * ow + x) * channels + c] = clip8(acc);
                }
            }
        }
        temp
    } else {
        src[first_row * w * channels..(first_row + rows) * w * channels].to_vec()
    };
    let Some(vertical) = vertical else {
        return temp;
    };
    let mut out = vec![0u8; ow * oh * channels];
    for (y, (ymin, k)) in vertical.iter().enumerate() {
        for x in 0..ow * channels {
            let acc: i64 = half
                + k.iter()
                    .enumerate()
                    .map(|(i, &c)| {
                        temp[(ymin - first_row + i) * ow * channels + x] as i64 * c as i64
                    })
                    .sum::<i64>();
            out[y * ow * channels + x] = clip8(acc);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{Filter, resize};

    #[test]
    fn same_size_is_a_copy_and_flat_images_stay_flat() {
        let px: Vec<u8> = (0..5 * 4 * 3).map(|i| (i * 7 % 256) as u8).collect();
        for filter in [Filter::Bilinear, Filter::Lanczos] {
            assert_eq!(resize(filter, &px, 3, (5, 4), (5, 4)), px);
            let flat = vec![77u8; 9 * 7 * 3];
            assert!(
                resize(filter, &flat, 3, (9, 7), (20, 3))
                    .iter()
                    .all(|&p| p == 77)
            );
        }
    }
}
