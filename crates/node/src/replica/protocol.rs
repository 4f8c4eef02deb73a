//! What the pool and a replica process say to each other: one JSON object per line, requests
//! on the child's stdin, answers on its stdout (its stderr carries its logs).

use serde::{Deserialize, Serialize};

/// A validated job (every default already filled in): txt2img, or img2img when `img2img` is
/// set, or NicheImage's three-way ControlNet when `controlnet` is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerateJob {
    pub prompt: String,
    pub negative_prompt: Option<String>,
    pub seed: u64,
    pub num_inference_steps: u32,
    pub guidance_scale: f64,
    pub width: u32,
    pub height: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub img2img: Option<ImageInput>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controlnet: Option<ControlInput>,
}

/// img2img's input: the conditional image, already resized as NicheImage resizes it (so `width`
/// and `height` are its size), as a base64 PNG, and how much of it to repaint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageInput {
    pub image: String,
    pub strength: f64,
}

/// `controlnet_txt2img`'s input: the conditional image, resized as for img2img, as a base64
/// PNG, and the conditioning scale of each net (Canny, depth, normals).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ControlInput {
    pub image: String,
    pub scales: [f64; 3],
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobLine {
    pub id: u64,
    pub job: GenerateJob,
    /// Milliseconds left before the caller gives up; the replica stops the job there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_ms: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplyLine {
    /// First line: the model is loaded.
    Ready {
        device: String,
        /// `sd15`, `sdxl` or `flux`, and the dtype it runs in (absent from older replicas).
        #[serde(default)]
        pipeline: Option<String>,
        #[serde(default)]
        dtype: Option<String>,
    },
    /// A base64 PNG.
    Image {
        id: u64,
        image: String,
        millis: u64,
        /// The NSFW filter replaced the picture with a black one.
        #[serde(default)]
        nsfw_blanked: bool,
    },
    Error {
        id: u64,
        error: String,
    },
    /// Instead of `Ready`: the model cannot be loaded. `permanent` when trying again cannot
    /// help (a config, layout or weights error, not a busy device).
    LoadFailed {
        error: String,
        permanent: bool,
    },
}
