//! The reward check, the seed's rules with its bugs fixed: compare a miner's image with the
//! reference regenerated from the same request, by `imagehash.average_hash`.
//! - empty or undecodable → 0;
//! - black rule (one hash size, 6, for both sides; the seed compared a size-6 hash with a size-8
//!   one, so the rule never fired): reference not black but miner black → 0 (blanked a safe
//!   image); reference black but miner not → −5 (sent what the NSFW filter would have blanked);
//! - otherwise 1 if the 64-bit hashes are within Hamming distance 6, else 0.

use crate::image::RgbImage;
use crate::imagehash::{average_hashes, distance};

pub const MATCH_HASH_SIZE: usize = 8;
pub const MATCH_MAX_DISTANCE: usize = 6;
pub const BLACK_HASH_SIZE: usize = 6;

/// Why a miner got its reward; `reason` is what operators and the validator's log read.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Match { distance: usize },
    Mismatch { distance: usize },
    Empty,
    Undecodable(String),
    BlankedSafeImage,
    UnfilteredNsfw,
}

impl Verdict {
    pub fn reward(&self) -> f64 {
        match self {
            Verdict::Match { .. } => 1.0,
            Verdict::UnfilteredNsfw => -5.0,
            _ => 0.0,
        }
    }

    /// The outcome without its figures, for counting ("match", "mismatch", "no image", ...).
    pub fn kind(&self) -> &'static str {
        match self {
            Verdict::Match { .. } => "match",
            Verdict::Mismatch { .. } => "mismatch",
            Verdict::Empty => "no image",
            Verdict::Undecodable(_) => "image does not decode",
            Verdict::BlankedSafeImage => "black image where the reference is not",
            Verdict::UnfilteredNsfw => "image where the reference is black",
        }
    }

    pub fn reason(&self) -> String {
        match self {
            Verdict::Match { distance } => format!("hash distance {distance} (match)"),
            Verdict::Mismatch { distance } => {
                format!("hash distance {distance} (over {MATCH_MAX_DISTANCE})")
            }
            Verdict::Empty => "no image".into(),
            Verdict::Undecodable(e) => format!("image does not decode: {e}"),
            Verdict::BlankedSafeImage => "black image where the reference is not".into(),
            Verdict::UnfilteredNsfw => "image where the reference is black (NSFW filtered)".into(),
        }
    }
}

/// The reference image's hashes, computed once per batch.
pub struct Reference {
    match_hash: Vec<bool>,
    black: bool,
}

/// The match hash and whether the image is black as average_hash sees it: no pixel above the
/// mean (an all-black image hashes to zeros).
fn hashes(image: &RgbImage) -> (Vec<bool>, bool) {
    let mut both = average_hashes(image, &[MATCH_HASH_SIZE, BLACK_HASH_SIZE]);
    let black = both.pop().unwrap_or_default().iter().all(|bit| !bit);
    (both.pop().unwrap_or_default(), black)
}

impl Reference {
    pub fn new(image: &RgbImage) -> Self {
        let (match_hash, black) = hashes(image);
        Self { match_hash, black }
    }

    pub fn judge(&self, miner_image: Option<&str>) -> Verdict {
        let Some(text) = miner_image.filter(|t| !t.is_empty()) else {
            return Verdict::Empty;
        };
        let image = match RgbImage::from_base64_png(text) {
            Ok(image) => image,
            Err(e) => return Verdict::Undecodable(e.to_string()),
        };
        let (hash, black) = hashes(&image);
        match (self.black, black) {
            (false, true) => return Verdict::BlankedSafeImage,
            (true, false) => return Verdict::UnfilteredNsfw,
            _ => {}
        }
        let d = distance(&self.match_hash, &hash);
        if d <= MATCH_MAX_DISTANCE {
            Verdict::Match { distance: d }
        } else {
            Verdict::Mismatch { distance: d }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(f: impl Fn(usize, usize) -> [u8; 3]) -> RgbImage {
        let (w, h) = (64, 64);
        let mut data = Vec::with_capacity(w * h * 3);
        for y in 0..h {
            for x in 0..w {
                data.extend(f(x, y));
            }
        }
        RgbImage::new(w, h, data).unwrap()
    }

    fn b64(i: &RgbImage) -> String {
        i.to_base64_png().unwrap()
    }

    #[test]
    fn rewards_follow_the_rules() {
        let gradient = image(|x, y| [(x * 4) as u8, (y * 4) as u8, 128]);
        let reference = Reference::new(&gradient);
        assert_eq!(
            reference.judge(Some(&b64(&gradient))),
            Verdict::Match { distance: 0 }
        );
        // A slightly brighter copy still matches.
        let brighter = image(|x, y| [(x * 4 + 2) as u8, (y * 4 + 2) as u8, 130]);
        assert!(matches!(
            reference.judge(Some(&b64(&brighter))),
            Verdict::Match { .. }
        ));
        // The mirror image does not.
        let mirrored = image(|x, y| [((63 - x) * 4) as u8, ((63 - y) * 4) as u8, 128]);
        let verdict = reference.judge(Some(&b64(&mirrored)));
        assert!(
            matches!(verdict, Verdict::Mismatch { distance } if distance > 6),
            "{verdict:?}"
        );
        assert_eq!(verdict.reward(), 0.0);
        let black = image(|_, _| [0, 0, 0]);
        assert_eq!(
            reference.judge(Some(&b64(&black))),
            Verdict::BlankedSafeImage
        );
        assert_eq!(
            Reference::new(&black).judge(Some(&b64(&gradient))).reward(),
            -5.0
        );
        assert_eq!(
            Reference::new(&black).judge(Some(&b64(&black))).reward(),
            1.0
        );
        assert_eq!(reference.judge(None), Verdict::Empty);
        assert_eq!(reference.judge(Some("")), Verdict::Empty);
        assert!(matches!(
            reference.judge(Some("not base64!")),
            Verdict::Undecodable(_)
        ));
    }
}
