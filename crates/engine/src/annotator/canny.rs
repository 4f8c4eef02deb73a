//! controlnet_aux's `CannyDetector` as NicheImage calls it: OpenCV's `cv2.Canny(image, 100, 200)`
//! on the 8-bit RGB image (3×3 Sobel with replicated borders, L1 magnitude, the strongest
//! channel per pixel, OpenCV's fixed-point non-maximum suppression, 8-connected hysteresis),
//! spread to three channels. NicheImage's image is already a multiple of 64 on both sides, so
//! controlnet_aux's own resizes leave it as it is.

use nicheimage_common::image::RgbImage;

/// controlnet_aux's defaults.
pub const LOW_THRESHOLD: i32 = 100;
pub const HIGH_THRESHOLD: i32 = 200;

const CANNY_SHIFT: i32 = 15;
/// tan(22.5°) in OpenCV's fixed point.
const TG22: i32 = 13573;

/// Edges (255) and the rest (0) as an RGB image of the same size.
pub fn canny(image: &RgbImage, low: i32, high: i32) -> RgbImage {
    let (w, h) = (image.width, image.height);
    let px = |x: isize, y: isize, c: usize| -> i32 {
        let x = x.clamp(0, w as isize - 1) as usize;
        let y = y.clamp(0, h as isize - 1) as usize;
        i32::from(image.data[(y * w + x) * 3 + c])
    };
    // Per pixel: the gradient of the channel with the largest |dx| + |dy| (the first on ties).
    let mut dx = vec![0i32; w * h];
    let mut dy = vec![0i32; w * h];
    let mut mag = vec![0i32; w * h];
    for y in 0..h {
        for x in 0..w {
            let (xi, yi) = (x as isize, y as isize);
            let mut best = (-1, 0, 0);
            for c in 0..3 {
                let gx = (px(xi + 1, yi - 1, c) + 2 * px(xi + 1, yi, c) + px(xi + 1, yi + 1, c))
                    - (px(xi - 1, yi - 1, c) + 2 * px(xi - 1, yi, c) + px(xi - 1, yi + 1, c));
                let gy = (px(xi - 1, yi + 1, c) + 2 * px(xi, yi + 1, c) + px(xi + 1, yi + 1, c))
                    - (px(xi - 1, yi - 1, c) + 2 * px(xi, yi - 1, c) + px(xi + 1, yi - 1, c));
                let m = gx.abs() + gy.abs();
                if m > best.0 {
                    best = (m, gx, gy);
                }
            }
            let i = y * w + x;
            (mag[i], dx[i], dy[i]) = best;
        }
    }
    // Magnitude outside the image reads as zero.
    let at = |x: isize, y: isize| -> i32 {
        if x < 0 || y < 0 || x >= w as isize || y >= h as isize {
            0
        } else {
            mag[y as usize * w + x as usize]
        }
    };
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        None,
        Weak,
        Strong,
    }
    let mut marks = vec![Mark::None; w * h];
    let mut stack = Vec::new();
    for y in 0..h {
        for x in 0..w {
            let i = y * w + x;
            let m = mag[i];
            if m <= low {
                continue;
            }
            let (xs, ys) = (dx[i], dy[i]);
            let ax = xs.abs();
            let ay = ys.abs() << CANNY_SHIFT;
            let tg22x = ax * TG22;
            let (xi, yi) = (x as isize, y as isize);
            let is_max = if ay < tg22x {
                m > at(xi - 1, yi) && m >= at(xi + 1, yi)
            } else {
                let tg67x = tg22x + (ax << (CANNY_SHIFT + 1));
                if ay > tg67x {
                    m > at(xi, yi - 1) && m >= at(xi, yi + 1)
                } else {
                    let s: isize = if (xs ^ ys) < 0 { -1 } else { 1 };
                    m > at(xi - s, yi - 1) && m > at(xi + s, yi + 1)
                }
            };
            if !is_max {
                continue;
            }
            if m > high {
                marks[i] = Mark::Strong;
                stack.push(i);
            } else {
                marks[i] = Mark::Weak;
            }
        }
    }
    while let Some(i) = stack.pop() {
        let (x, y) = ((i % w) as isize, (i / w) as isize);
        for (ox, oy) in [
            (-1, -1),
            (0, -1),
            (1, -1),
            (-1, 0),
            (1, 0),
            (-1, 1),
            (0, 1),
            (1, 1),
        ] {
            let (nx, ny) = (x + ox, y + oy);
            if nx < 0 || ny < 0 || nx >= w as isize || ny >= h as isize {
                continue;
            }
            let j = ny as usize * w + nx as usize;
            if marks[j] == Mark::Weak {
                marks[j] = Mark::Strong;
                stack.push(j);
            }
        }
    }
    let data = marks
        .iter()
        .flat_map(|m| {
            let v = if *m == Mark::Strong { 255 } else { 0 };
            [v, v, v]
        })
        .collect();
    RgbImage {
        width: w,
        height: h,
        data,
    }
}
