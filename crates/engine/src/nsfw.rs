//! NicheImage's NSFW filter: an image the classifier scores `nsfw` above 0.5 is replaced by a
//! black image of the same size (NicheImage swapped width and height; we do not). The reward
//! check penalises a miner whose filter disagrees with the validator's, so this runs the same
//! classifier (`Falconsai/nsfw_image_detection`) with the same preprocessing.

use super::vit::{VitClassifier, VitError};
use nicheimage_common::image::RgbImage;
use std::path::Path;
use tch::Device;

pub const NSFW_LABEL: &str = "nsfw";
pub const THRESHOLD: f64 = 0.5;

pub struct NsfwFilter {
    classifier: VitClassifier,
    nsfw: i64,
}

/// What the filter decided for one image.
pub struct Verdict {
    pub image: RgbImage,
    pub nsfw_score: f64,
    pub blanked: bool,
}

impl NsfwFilter {
    pub fn load(dir: &Path, device: Device) -> Result<Self, VitError> {
        let classifier = VitClassifier::load(dir, device)?;
        let nsfw = classifier
            .label_index(NSFW_LABEL)
            .ok_or_else(|| VitError::Unsupported {
                path: dir.join("config.json"),
                what: format!("a classifier without an `{NSFW_LABEL}` label"),
            })?;
        Ok(Self { classifier, nsfw })
    }

    pub fn apply(&self, image: RgbImage) -> Verdict {
        let nsfw_score = self.classifier.probability(&image, self.nsfw);
        if nsfw_score > THRESHOLD {
            let (w, h) = (image.width, image.height);
            Verdict {
                image: RgbImage {
                    width: w,
                    height: h,
                    data: vec![0; w * h * 3],
                },
                nsfw_score,
                blanked: true,
            }
        } else {
            Verdict {
                image,
                nsfw_score,
                blanked: false,
            }
        }
    }
}
