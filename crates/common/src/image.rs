//! 8-bit RGB images and their PNG / base64 forms, as NicheImage's endpoint returns them.

use base64::Engine;
use std::io::Cursor;

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
    #[error("{width}×{height} exceeds the {max_width}×{max_height} limit")]
    TooLarge {
        width: u64,
        height: u64,
        max_width: u64,
        max_height: u64,
    },
    #[error("{0} bytes of image is over the {1} byte limit")]
    EncodedTooLarge(usize, usize),
    #[error("not a PNG, JPEG or WebP image (its first bytes are {0})")]
    UnknownFormat(String),
    #[error("cannot decode {format}: {reason}")]
    Codec {
        format: &'static str,
        reason: String,
    },
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

    /// Decodes a PNG, JPEG or WebP under the default [`DecodeLimits`].
    pub fn from_png(bytes: &[u8]) -> Result<Self, ImageError> {
        decode(bytes, &DecodeLimits::default())
    }

    /// [`Self::from_png`] of base64 text.
    pub fn from_base64_png(text: &str) -> Result<Self, ImageError> {
        decode_base64(text, &DecodeLimits::default())
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

    /// The size NicheImage's `resize_for_condition_image` gives: the short side scaled to
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

    /// NicheImage's `resize_for_condition_image` ([`Self::condition_size`], then Lanczos).
    pub fn resized_for_condition(&self, resolution: usize) -> Result<RgbImage, ImageError> {
        let (w, h) = self.condition_size(resolution)?;
        Ok(self.resize_lanczos(w, h))
    }
}

/// What an image from outside may cost to decode. Every image a peer sends (a conditional
/// image, a miner's answer, a reward batch) is read through [`decode`] under these limits:
/// the header's dimensions are checked before any pixel buffer is allocated, so a 74-byte
/// file claiming 200000×200000 costs nothing, and a decompression bomb can inflate to at
/// most `max_width × max_height` pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DecodeLimits {
    pub max_width: u32,
    pub max_height: u32,
    /// Encoded bytes accepted (base64 text is checked before it is decoded).
    pub max_encoded_bytes: usize,
}

/// The limits [`DecodeLimits::default`] gives: `[limits] max_image_side`, set once at start.
static CONFIGURED: std::sync::OnceLock<DecodeLimits> = std::sync::OnceLock::new();

/// Sets the process's decode limits (the first call wins; the node makes it at start).
pub fn configure(limits: DecodeLimits) {
    let _ = CONFIGURED.set(limits);
}

/// The side [`DecodeLimits`] allows unless configured: four times the largest side any SN23
/// model draws.
pub const DEFAULT_MAX_SIDE: u32 = 4096;

impl Default for DecodeLimits {
    /// The configured limits, else [`DEFAULT_MAX_SIDE`] a side.
    fn default() -> Self {
        CONFIGURED
            .get()
            .copied()
            .unwrap_or_else(|| Self::with_side(DEFAULT_MAX_SIDE))
    }
}

impl DecodeLimits {
    /// At most `side`×`side` pixels, and as many encoded bytes as a barely compressed image
    /// that size could need (at least 48 MB).
    pub fn with_side(side: u32) -> Self {
        let side = side.max(1);
        let raw = u64::from(side) * u64::from(side) * 3;
        Self {
            max_width: side,
            max_height: side,
            max_encoded_bytes: usize::try_from(raw).unwrap_or(usize::MAX).max(48 << 20),
        }
    }

    fn check(&self, width: u64, height: u64) -> Result<(), ImageError> {
        if width > u64::from(self.max_width) || height > u64::from(self.max_height) {
            return Err(ImageError::TooLarge {
                width,
                height,
                max_width: self.max_width.into(),
                max_height: self.max_height.into(),
            });
        }
        Ok(())
    }

    /// The most a decoder may allocate: four bytes a pixel plus a little for its tables.
    fn alloc_budget(&self) -> u64 {
        u64::from(self.max_width) * u64::from(self.max_height) * 4 + (8 << 20)
    }
}

/// Decodes base64 text (whitespace around it ignored) as [`decode`] does bytes.
pub fn decode_base64(text: &str, limits: &DecodeLimits) -> Result<RgbImage, ImageError> {
    let text = text.trim();
    // base64 is 4 characters for 3 bytes.
    let max_text = limits.max_encoded_bytes.saturating_mul(4) / 3 + 4;
    if text.len() > max_text {
        return Err(ImageError::EncodedTooLarge(text.len(), max_text));
    }
    decode(
        &base64::engine::general_purpose::STANDARD.decode(text)?,
        limits,
    )
}

/// Decodes a PNG, JPEG or WebP (told apart by their first bytes) to 8-bit RGB: alpha dropped,
/// gray spread to RGB, 16-bit samples cut to 8, as NicheImage's judge sees them through PIL.
pub fn decode(bytes: &[u8], limits: &DecodeLimits) -> Result<RgbImage, ImageError> {
    if bytes.len() > limits.max_encoded_bytes {
        return Err(ImageError::EncodedTooLarge(
            bytes.len(),
            limits.max_encoded_bytes,
        ));
    }
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        decode_png(bytes, limits)
    } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        decode_other(bytes, image::ImageFormat::Jpeg, "JPEG", limits)
    } else if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        decode_other(bytes, image::ImageFormat::WebP, "WebP", limits)
    } else {
        let head: Vec<String> = bytes.iter().take(8).map(|b| format!("{b:02x}")).collect();
        Err(ImageError::UnknownFormat(head.join(" ")))
    }
}

fn decode_png(bytes: &[u8], limits: &DecodeLimits) -> Result<RgbImage, ImageError> {
    let budget = usize::try_from(limits.alloc_budget()).unwrap_or(usize::MAX);
    let mut decoder =
        png::Decoder::new_with_limits(Cursor::new(bytes), png::Limits { bytes: budget });
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    // IHDR alone first: a lying size gets the clear refusal, not the png crate's bare
    // "limits are exceeded" from sizing its row buffers (e.g. 8650753×1 under 256×256).
    let header = decoder.read_header_info()?;
    limits.check(header.width.into(), header.height.into())?;
    let mut reader = decoder.read_info()?;
    let (w, h) = (reader.info().width, reader.info().height);
    // Before the frame buffer exists: the header is all a liar has paid for.
    limits.check(w.into(), h.into())?;
    let size = reader
        .output_buffer_size()
        .ok_or_else(|| ImageError::Unsupported("image too large to decode".into()))?;
    let mut buf = vec![0; size];
    let info = reader.next_frame(&mut buf)?;
    let (w, h) = (info.width as usize, info.height as usize);
    buf.truncate(info.buffer_size());
    if info.color_type == png::ColorType::Rgb {
        // The common case (every SN23 image): no copy.
        return RgbImage::new(w, h, buf);
    }
    let channels = match info.color_type {
        png::ColorType::Rgba => 4,
        png::ColorType::Grayscale => 1,
        png::ColorType::GrayscaleAlpha => 2,
        other => return Err(ImageError::Unsupported(format!("{other:?}"))),
    };
    RgbImage::new(w, h, to_rgb(&buf, channels))
}

/// What an attacker sends: a well-formed PNG whose header claims `width`×`height`, with a few
/// bytes of pixel data. A decoder that trusts the header allocates for the claim (200000² is
/// 120 GB); ours refuses it. For the tests and the hostile suite.
pub fn png_claiming(width: u32, height: u32) -> Vec<u8> {
    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = 0xFFFF_FFFFu32;
        for &b in bytes {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }
    let mut ihdr = width.to_be_bytes().to_vec();
    ihdr.extend(height.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]); // 8-bit RGB
    // zlib: a stored empty block is enough to begin the image data.
    let idat = vec![0x78, 0x01, 0x01, 0x00, 0x00, 0xFF, 0xFF, 0, 0, 0, 1];
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    for (kind, data) in [(&b"IHDR"[..], ihdr), (b"IDAT", idat), (b"IEND", Vec::new())] {
        out.extend((data.len() as u32).to_be_bytes());
        let body = [kind, &data].concat();
        out.extend(&body);
        out.extend(crc32(&body).to_be_bytes());
    }
    out
}

/// Interleaved gray, gray-alpha or RGBA samples as RGB.
fn to_rgb(px: &[u8], channels: usize) -> Vec<u8> {
    match channels {
        1 => px.iter().flat_map(|&g| [g, g, g]).collect(),
        2 => px
            .chunks_exact(2)
            .flat_map(|p| [p[0], p[0], p[0]])
            .collect(),
        4 => px
            .chunks_exact(4)
            .flat_map(|p| [p[0], p[1], p[2]])
            .collect(),
        _ => px.to_vec(),
    }
}

fn decode_other(
    bytes: &[u8],
    format: image::ImageFormat,
    name: &'static str,
    limits: &DecodeLimits,
) -> Result<RgbImage, ImageError> {
    use image::ImageDecoder;
    let codec = |e: image::ImageError| ImageError::Codec {
        format: name,
        reason: e.to_string(),
    };
    let mut budget = image::Limits::default();
    budget.max_alloc = Some(limits.alloc_budget());
    let mut reader = image::ImageReader::with_format(Cursor::new(bytes), format);
    reader.limits(budget);
    // Building the decoder reads only the header; the pixels come after the size check.
    let decoder = reader.into_decoder().map_err(codec)?;
    let (w, h) = decoder.dimensions();
    limits.check(w.into(), h.into())?;
    let rgb = image::DynamicImage::from_decoder(decoder)
        .map_err(codec)?
        .into_rgb8();
    let (w, h) = (rgb.width() as usize, rgb.height() as usize);
    RgbImage::new(w, h, rgb.into_raw())
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
    fn a_header_over_the_limit_is_refused_before_any_pixel_is_allocated() {
        let e = decode(&png_claiming(200_000, 200_000), &DecodeLimits::default()).unwrap_err();
        assert_eq!(e.to_string(), "200000×200000 exceeds the 4096×4096 limit");
        let small = DecodeLimits {
            max_width: 8,
            max_height: 8,
            max_encoded_bytes: 1 << 20,
        };
        assert!(matches!(
            decode(&png_claiming(9, 8), &small),
            Err(ImageError::TooLarge { .. })
        ));
        let big = RgbImage::new(16, 4, vec![0; 192])
            .unwrap()
            .to_png()
            .unwrap();
        assert!(matches!(
            decode(&big, &small),
            Err(ImageError::TooLarge { .. })
        ));
        let tiny = DecodeLimits {
            max_encoded_bytes: 10,
            ..small
        };
        assert!(matches!(
            decode(&big, &tiny),
            Err(ImageError::EncodedTooLarge(..))
        ));
        assert!(matches!(
            decode(b"GIF89a....", &small),
            Err(ImageError::UnknownFormat(_))
        ));
    }

    #[test]
    fn jpeg_and_webp_decode_under_the_same_limits() {
        let img = RgbImage::new(16, 8, (0..384).map(|i| (i % 251) as u8).collect()).unwrap();
        let mut jpeg = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 95)
            .encode(&img.data, 16, 8, image::ExtendedColorType::Rgb8)
            .unwrap();
        let back = decode(&jpeg, &DecodeLimits::default()).unwrap();
        assert_eq!((back.width, back.height), (16, 8));
        let small = DecodeLimits {
            max_width: 15,
            ..DecodeLimits::default()
        };
        assert_eq!(
            decode(&jpeg, &small).unwrap_err().to_string(),
            "16×8 exceeds the 15×4096 limit"
        );
        let mut webp = Vec::new();
        image::codecs::webp::WebPEncoder::new_lossless(&mut webp)
            .encode(&img.data, 16, 8, image::ExtendedColorType::Rgb8)
            .unwrap();
        assert_eq!(decode(&webp, &DecodeLimits::default()).unwrap(), img);
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
