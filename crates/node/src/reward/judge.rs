//! The reward check, NicheImage's rules with its bugs fixed: compare a miner's image with the
//! reference regenerated from the same request, by `imagehash.average_hash`.
//! - empty or undecodable → 0;
//! - black rule (one hash size, 6, for both sides; NicheImage compared a size-6 hash with a size-8
//!   one, so the rule never fired): reference not black but miner black → 0 (blanked a safe
//!   image); reference black but miner not → −5 (sent what the NSFW filter would have blanked);
//! - otherwise 1 if the 64-bit hashes are within Hamming distance 6, else 0.

use nicheimage_common::image::{ImageError, RgbImage};
use nicheimage_common::imagehash::{average_hashes, distance};

pub const MATCH_HASH_SIZE: usize = 8;
pub const MATCH_MAX_DISTANCE: usize = 6;
pub const BLACK_HASH_SIZE: usize = 6;

/// Why a miner got its reward; `reason` is what operators and the validator's log read. The
/// reward service also sends it as data (`"verdicts"`, tagged by `kind`), which NicheImage clients
/// ignore and our validator reads.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Verdict {
    Match { distance: usize },
    Mismatch { distance: usize },
    Empty,
    Undecodable { error: String },
    BlankedSafeImage,
    UnfilteredNsfw,
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.reason())
    }
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
            Verdict::Undecodable { .. } => "image does not decode",
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
            Verdict::Undecodable { error } => format!("image does not decode: {error}"),
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
        match given(miner_image) {
            None => Verdict::Empty,
            Some(text) => self.verdict(decode_and_hash(text)),
        }
    }

    fn verdict(&self, miner: Hashed) -> Verdict {
        let (hash, black) = match miner {
            Ok(h) => h,
            Err(e) => {
                return Verdict::Undecodable {
                    error: e.to_string(),
                };
            }
        };
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

/// An image's match hash and black flag, or why it does not decode.
type Hashed = Result<(Vec<bool>, bool), ImageError>;

fn decode_and_hash(png_b64: &str) -> Hashed {
    RgbImage::from_base64_png(png_b64).map(|image| hashes(&image))
}

/// [`decode_and_hash`] of every text, on one thread each, up to the machine's cores at a time.
fn hash_in_parallel(texts: &[&str]) -> Vec<Hashed> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut out = Vec::with_capacity(texts.len());
    for chunk in texts.chunks(threads) {
        std::thread::scope(|scope| {
            let handles: Vec<_> = chunk
                .iter()
                .map(|text| scope.spawn(move || decode_and_hash(text)))
                .collect();
            out.extend(handles.into_iter().map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(ImageError::Unsupported("decoder panicked".into())))
            }));
        });
    }
    out
}

/// A miner's image, unless it sent none.
fn given(miner_image: Option<&str>) -> Option<&str> {
    miner_image.filter(|t| !t.is_empty())
}

/// Judges a batch: the reference and every miner image decoded and hashed in parallel,
/// verdicts in the miners' order. Err only when the reference itself does not decode.
pub fn judge_batch(
    reference_png_b64: &str,
    miner_images: &[Option<&str>],
) -> Result<Vec<Verdict>, ImageError> {
    let texts: Vec<&str> = std::iter::once(reference_png_b64)
        .chain(miner_images.iter().filter_map(|m| given(*m)))
        .collect();
    let mut hashed = hash_in_parallel(&texts).into_iter();
    // The first result is the reference's (texts always start with it).
    let (match_hash, black) = hashed
        .next()
        .unwrap_or_else(|| decode_and_hash(reference_png_b64))?;
    let reference = Reference { match_hash, black };
    // The rest follow the given images in order.
    Ok(miner_images
        .iter()
        .map(|m| match given(*m).and_then(|_| hashed.next()) {
            Some(h) => reference.verdict(h),
            None => Verdict::Empty,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_gives_the_same_verdicts_as_one_by_one() {
        let gradient = image(|x, y| [(x * 4) as u8, (y * 4) as u8, 128]);
        let mirrored = image(|x, y| [((63 - x) * 4) as u8, ((63 - y) * 4) as u8, 128]);
        let black = image(|_, _| [0, 0, 0]);
        let images = [b64(&gradient), b64(&mirrored), b64(&black)];
        let mut miners: Vec<Option<&str>> = images.iter().map(|s| Some(s.as_str())).collect();
        miners.extend([None, Some("not base64!")]);
        // More images than cores: the later ones go in further rounds.
        let many: Vec<Option<&str>> = miners.iter().cycle().take(23).copied().collect();
        let batch = judge_batch(&images[0], &many).unwrap();
        let reference = Reference::new(&gradient);
        let one_by_one: Vec<Verdict> = many.iter().map(|m| reference.judge(*m)).collect();
        assert_eq!(batch, one_by_one);
        assert!(judge_batch("not base64!", &miners).is_err());
        assert_eq!(judge_batch(&images[0], &[]).unwrap(), vec![]);
    }

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
            Verdict::Undecodable { .. }
        ));
    }

    #[test]
    fn properties_over_random_images() {
        // Seeded random images of random sizes, some black: every image matches itself, the
        // distance is symmetric, and rewards stay within the rules (1, 0 or -5).
        let mut d = crate::validator::Dice::new(4);
        let random_image = |d: &mut crate::validator::Dice| {
            let (w, h) = (8 + d.below(40) as usize, 8 + d.below(40) as usize);
            let black = d.below(5) == 0;
            let data = (0..w * h * 3)
                .map(|_| if black { 0 } else { d.below(256) as u8 })
                .collect();
            RgbImage::new(w, h, data).unwrap()
        };
        for case in 0..60 {
            let (a, b) = (random_image(&mut d), random_image(&mut d));
            let (ra, rb) = (Reference::new(&a), Reference::new(&b));
            assert_eq!(
                ra.judge(Some(&b64(&a))),
                Verdict::Match { distance: 0 },
                "case {case}"
            );
            let (ab, ba) = (ra.judge(Some(&b64(&b))), rb.judge(Some(&b64(&a))));
            assert!(
                [1.0, 0.0, -5.0].contains(&ab.reward()),
                "case {case}: {ab:?}"
            );
            let distance = |v: &Verdict| match v {
                Verdict::Match { distance } | Verdict::Mismatch { distance } => Some(*distance),
                _ => None,
            };
            assert_eq!(distance(&ab), distance(&ba), "case {case}");
            if let Some(dist) = distance(&ab) {
                assert_eq!(ab.reward(), f64::from(u8::from(dist <= MATCH_MAX_DISTANCE)));
            }
            // The black rule is one-sided: -5 one way is 0 the other.
            if ab == Verdict::UnfilteredNsfw {
                assert_eq!(ba, Verdict::BlankedSafeImage, "case {case}");
            }
        }
    }
}
