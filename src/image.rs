//! 8-bit RGB images and their PNG / base64 forms, as the seed's endpoint returns them.

use base64::Engine;

#[derive(Debug, Clone, PartialEq)]
pub struct RgbImage {
    pub width: usize,
    pub height: usize,
    /// Row-major RGB triples.
    pub data: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("cannot encode PNG: {0}")]
    Encode(#[from] png::EncodingError),
    #[error("cannot decode PNG: {0}")]
    Decode(#[from] png::DecodingError),
    #[error("invalid base64: {0}")]
    Base64(#[from] base64::DecodeError),
    #[error("unsupported PNG: {0}")]
    Unsupported(String),
    #[error("{width}x{height} image with {len} bytes of RGB data")]
    Size {
        width: usize,
        height: usize,
        len: usize,
    },
}

impl RgbImage {
    pub fn new(width: usize, height: usize, data: Vec<u8>) -> Result<Self, ImageError> {
        if data.len() != width * height * 3 {
            return Err(ImageError::Size {
                width,
                height,
                len: data.len(),
            });
        }
        Ok(Self {
            width,
            height,
            data,
        })
    }

    pub fn to_png(&self) -> Result<Vec<u8>, ImageError> {
        let mut out = Vec::new();
        {
            let mut encoder = png::Encoder::new(&mut out, self.width as u32, self.height as u32);
            encoder.set_color(png::ColorType::Rgb);
            encoder.set_depth(png::BitDepth::Eight);
            // Latency is what the network penalises, size is what travels: zlib-rs at level 4
            // with per-row adaptive filters is ~7x faster than Pillow's encoder at about its size
            // (levels measured in benches/README.md).
            encoder.set_deflate_compression(png::DeflateCompression::Level(4));
            encoder.set_filter(png::Filter::Adaptive);
            let mut writer = encoder.write_header()?;
            writer.write_image_data(&self.data)?;
        }
        Ok(out)
    }

    pub fn to_base64_png(&self) -> Result<String, ImageError> {
        Ok(base64::engine::general_purpose::STANDARD.encode(self.to_png()?))
    }

    /// Decodes an 8-bit RGB, RGBA, gray or gray-alpha PNG (alpha dropped, gray spread to RGB).
    pub fn from_png(bytes: &[u8]) -> Result<Self, ImageError> {
        let mut decoder = png::Decoder::new(std::io::Cursor::new(bytes));
        decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
        let mut reader = decoder.read_info()?;
        let size = reader
            .output_buffer_size()
            .ok_or_else(|| ImageError::Unsupported("image too large to decode".into()))?;
        let mut buf = vec![0; size];
        let info = reader.next_frame(&mut buf)?;
        let (w, h) = (info.width as usize, info.height as usize);
        buf.truncate(info.buffer_size());
        if info.color_type == png::ColorType::Rgb {
            // The common case (every SN23 image): no copy.
            return Self::new(w, h, buf);
        }
        let px = &buf[..];
        let data: Vec<u8> = match info.color_type {
            png::ColorType::Rgb => px.to_vec(),
            png::ColorType::Rgba => px
                .chunks_exact(4)
                .flat_map(|p| [p[0], p[1], p[2]])
                .collect(),
            png::ColorType::Grayscale => px.iter().flat_map(|&g| [g, g, g]).collect(),
            png::ColorType::GrayscaleAlpha => px
                .chunks_exact(2)
                .flat_map(|p| [p[0], p[0], p[0]])
                .collect(),
            other => return Err(ImageError::Unsupported(format!("{other:?}"))),
        };
        Self::new(w, h, data)
    }

    pub fn from_base64_png(text: &str) -> Result<Self, ImageError> {
        Self::from_png(&base64::engine::general_purpose::STANDARD.decode(text.trim())?)
    }

    /// Pillow's `resize((width, height), LANCZOS)`, bit for bit.
    pub fn resize_lanczos(&self, width: usize, height: usize) -> RgbImage {
        self.resize(crate::resample::Filter::Lanczos, width, height)
    }

    /// Pillow's `resize((width, height), filter)`, bit for bit.
    pub fn resize(&self, filter: crate::resample::Filter, width: usize, height: usize) -> RgbImage {
        let data = crate::resample::resize(
            filter,
            &self.data,
            3,
            (self.width, self.height),
            (width, height),
        );
        RgbImage {
            width,
            height,
            data,
        }
    }

    /// The size the seed's `resize_for_condition_image` gives: the short side scaled to
    /// `resolution`, both sides rounded to multiples of 64 (Python's half-to-even `round`).
    pub fn condition_size(&self, resolution: usize) -> Result<(usize, usize), ImageError> {
        let short = self.width.min(self.height);
        if short == 0 || resolution == 0 {
            return Err(ImageError::Unsupported(format!(
                "cannot resize a {}x{} image to a short side of {resolution}",
                self.width, self.height
            )));
        }
        let k = resolution as f64 / short as f64;
        // Python's `round` is half to even.
        let side = |s: usize| (s as f64 * k / 64.0).round_ties_even() as usize * 64;
        let (w, h) = (side(self.width), side(self.height));
        if w == 0 || h == 0 {
            return Err(ImageError::Unsupported(format!(
                "a {}x{} image is too thin to resize to a {resolution} short side",
                self.width, self.height
            )));
        }
        Ok((w, h))
    }

    /// The seed's `resize_for_condition_image` ([`Self::condition_size`], then Lanczos).
    pub fn resized_for_condition(&self, resolution: usize) -> Result<RgbImage, ImageError> {
        let (w, h) = self.condition_size(resolution)?;
        Ok(self.resize_lanczos(w, h))
    }
}

/// A small copy of an image for the console's gallery: box-averaged down to at most
/// `max_side` pixels on its longer side.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Thumbnail {
    pub width: usize,
    pub height: usize,
    pub rgb: Vec<u8>,
}

impl Thumbnail {
    pub fn of(image: &RgbImage, max_side: usize) -> Thumbnail {
        let scale = (image.width.max(image.height) as f64 / max_side.max(1) as f64).max(1.0);
        let width = ((image.width as f64 / scale).round() as usize).max(1);
        let height = ((image.height as f64 / scale).round() as usize).max(1);
        let mut rgb = Vec::with_capacity(width * height * 3);
        for ty in 0..height {
            let (y0, y1) = span(ty, height, image.height);
            for tx in 0..width {
                let (x0, x1) = span(tx, width, image.width);
                let mut sum = [0u64; 3];
                for y in y0..y1 {
                    let row = &image.data[(y * image.width + x0) * 3..(y * image.width + x1) * 3];
                    for p in row.chunks_exact(3) {
                        for c in 0..3 {
                            sum[c] += u64::from(p[c]);
                        }
                    }
                }
                let n = ((y1 - y0) * (x1 - x0)).max(1) as u64;
                rgb.extend(sum.map(|v| (v / n) as u8));
            }
        }
        Thumbnail { width, height, rgb }
    }

    pub fn pixel(&self, x: usize, y: usize) -> [u8; 3] {
        let i = (y * self.width + x) * 3;
        [self.rgb[i], self.rgb[i + 1], self.rgb[i + 2]]
    }
}

/// The source pixels `[from, to)` that thumbnail pixel `i` of `n` averages.
fn span(i: usize, n: usize, source: usize) -> (usize, usize) {
    let from = i * source / n;
    let to = ((i + 1) * source / n).max(from + 1).min(source);
    (from, to)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thumbnails_average_blocks_and_keep_the_aspect() {
        // 4x2: left half black, right half white.
        let data: Vec<u8> = (0..8)
            .flat_map(|i| {
                if i % 4 < 2 {
                    [0, 0, 0]
                } else {
                    [255, 255, 255]
                }
            })
            .collect();
        let img = RgbImage::new(4, 2, data).unwrap();
        let t = Thumbnail::of(&img, 2);
        assert_eq!((t.width, t.height), (2, 1));
        assert_eq!(t.pixel(0, 0), [0, 0, 0]);
        assert_eq!(t.pixel(1, 0), [255, 255, 255]);
        let same = Thumbnail::of(&img, 64);
        assert_eq!(
            (same.width, same.height, same.rgb),
            (4, 2, img.data.clone())
        );
        let tall = Thumbnail::of(&RgbImage::new(10, 100, vec![7; 3000]).unwrap(), 20);
        assert_eq!((tall.width, tall.height), (2, 20));
        assert!(tall.rgb.iter().all(|v| *v == 7));
    }

    #[test]
    fn png_base64_round_trip() {
        let img = RgbImage::new(3, 2, (0..18).map(|i| i * 14).collect()).unwrap();
        let back = RgbImage::from_base64_png(&img.to_base64_png().unwrap()).unwrap();
        assert_eq!(back, img);
        assert!(RgbImage::from_base64_png("not base64!").is_err());
        assert!(RgbImage::new(2, 2, vec![0; 5]).is_err());
    }
}
