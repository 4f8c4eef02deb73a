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
        let px = &buf[..info.buffer_size()];
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn png_base64_round_trip() {
        let img = RgbImage::new(3, 2, (0..18).map(|i| i * 14).collect()).unwrap();
        let back = RgbImage::from_base64_png(&img.to_base64_png().unwrap()).unwrap();
        assert_eq!(back, img);
        assert!(RgbImage::from_base64_png("not base64!").is_err());
        assert!(RgbImage::new(2, 2, vec![0; 5]).is_err());
    }
}
