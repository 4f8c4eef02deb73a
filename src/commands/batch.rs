//! `generate --batch`: many requests from one model load, one JSON line in, one out. The GPU
//! proof kit (`scripts/gpu/`) drives the engine this way to compare it with diffusers per case.

use std::path::{Path, PathBuf};
use std::time::Instant;

use nicheimage_common::image::RgbImage;
use nicheimage_common::scheduler::SchedulerKind;
use nicheimage_engine::model::Model;
use nicheimage_engine::pipeline;
use serde::Deserialize;
use serde_json::json;

/// The file is the operator's, but a typo should not start a night of work.
const MAX_LINES: usize = 10_000;
const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Line {
    pub out: PathBuf,
    pub prompt: String,
    #[serde(default)]
    pub negative_prompt: Option<String>,
    pub seed: u64,
    pub steps: usize,
    pub guidance_scale: f64,
    pub width: i64,
    pub height: i64,
    pub scheduler: SchedulerKind,
    /// img2img from this PNG (resized as NicheImage does; width and height then come from it).
    #[serde(default)]
    pub image: Option<PathBuf>,
    #[serde(default = "default_strength")]
    pub strength: f64,
    #[serde(default = "default_resolution")]
    pub condition_resolution: usize,
}

fn default_strength() -> f64 {
    0.8
}

fn default_resolution() -> usize {
    512
}

#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {bytes} bytes is above the batch limit of {MAX_FILE_BYTES}")]
    TooLarge { path: PathBuf, bytes: u64 },
    #[error("{path}: more than {MAX_LINES} requests")]
    TooMany { path: PathBuf },
    #[error("{path} line {line}: {source}")]
    Parse {
        path: PathBuf,
        line: usize,
        source: serde_json::Error,
    },
}

/// Every request of the file, parsed before any work starts (a bad line costs no generation).
pub fn read(path: &Path) -> Result<Vec<Line>, BatchError> {
    let io = |source| BatchError::Io {
        path: path.to_path_buf(),
        source,
    };
    let bytes = std::fs::metadata(path).map_err(io)?.len();
    if bytes > MAX_FILE_BYTES {
        return Err(BatchError::TooLarge {
            path: path.to_path_buf(),
            bytes,
        });
    }
    let text = std::fs::read_to_string(path).map_err(io)?;
    let mut lines = Vec::new();
    for (number, raw) in text.lines().enumerate() {
        if raw.trim().is_empty() {
            continue;
        }
        if lines.len() == MAX_LINES {
            return Err(BatchError::TooMany {
                path: path.to_path_buf(),
            });
        }
        let line = serde_json::from_str(raw).map_err(|source| BatchError::Parse {
            path: path.to_path_buf(),
            line: number.saturating_add(1),
            source,
        })?;
        lines.push(line);
    }
    Ok(lines)
}

/// A PNG resized as NicheImage resizes conditional images.
pub fn condition_image(
    path: &Path,
    resolution: usize,
) -> Result<RgbImage, Box<dyn std::error::Error>> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Ok(RgbImage::from_png(&bytes)?.resized_for_condition(resolution)?)
}

/// The first line a batch prints: what was loaded where, and how long it took.
pub fn loaded(model: &Model, took: std::time::Duration, requests: usize) -> serde_json::Value {
    json!({
        "architecture": model.architecture(),
        "device": format!("{:?}", model.device()),
        "dtype": model.dtype_name(),
        "load_secs": took.as_secs_f64(),
        "requests": requests,
    })
}

/// Runs one request, writes its PNG and answers the JSON line that reports it.
pub fn run(model: &Model, line: &Line) -> Result<serde_json::Value, Box<dyn std::error::Error>> {
    let base = pipeline::Txt2Img {
        prompt: line.prompt.clone(),
        negative_prompt: line.negative_prompt.clone(),
        seed: line.seed,
        num_inference_steps: line.steps,
        guidance_scale: line.guidance_scale,
        width: line.width,
        height: line.height,
        scheduler: line.scheduler,
    };
    let started = Instant::now();
    let image = match &line.image {
        None => model.txt2img(&base)?,
        Some(path) => {
            let sd = model
                .stable_diffusion()
                .ok_or("img2img: this model serves txt2img only")?;
            let image = condition_image(path, line.condition_resolution)?;
            let req = pipeline::Img2Img {
                base,
                image,
                strength: line.strength,
            };
            sd.img2img(&req, false)?.image
        }
    };
    let seconds = started.elapsed().as_secs_f64();
    std::fs::write(&line.out, image.to_png()?)
        .map_err(|e| format!("cannot write {}: {e}", line.out.display()))?;
    Ok(json!({
        "out": line.out,
        "width": image.width,
        "height": image.height,
        "seconds": seconds,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("batch.jsonl");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn lines_parse_with_defaults_and_blank_lines_are_skipped() {
        let (_dir, path) = file(
            "{\"out\":\"a.png\",\"prompt\":\"p\",\"seed\":1,\"steps\":4,\"guidance_scale\":7.5,\
             \"width\":64,\"height\":64,\"scheduler\":\"euler_a\"}\n\n\
             {\"out\":\"b.png\",\"prompt\":\"q\",\"seed\":2,\"steps\":4,\"guidance_scale\":1,\
             \"width\":64,\"height\":64,\"scheduler\":\"dpm++2m\",\"image\":\"in.png\",\"strength\":0.5}\n",
        );
        let lines = read(&path).unwrap();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].scheduler, SchedulerKind::EulerAncestral);
        assert_eq!(lines[0].strength, 0.8);
        assert_eq!(lines[1].image.as_deref(), Some(Path::new("in.png")));
        assert_eq!(lines[1].condition_resolution, 512);
    }

    #[test]
    fn a_bad_line_is_named_before_any_work() {
        let (_dir, path) = file(
            "{\"out\":\"a.png\",\"prompt\":\"p\",\"seed\":1,\"steps\":4,\"guidance_scale\":7.5,\
             \"width\":64,\"height\":64,\"scheduler\":\"lcm\"}\n",
        );
        let e = read(&path).unwrap_err().to_string();
        assert!(e.contains("line 1") && e.contains("lcm"), "{e}");
        let (_dir, path) = file("{\"out\":\"a.png\",\"typo\":1}\n");
        assert!(read(&path).unwrap_err().to_string().contains("line 1"));
    }
}
