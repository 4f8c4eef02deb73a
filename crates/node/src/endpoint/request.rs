//! `POST /generate` bodies, parsed at the edge into a complete, validated job.

use crate::catalogue::{Arch, ModelSpec, Pipeline};
use crate::replica::protocol::{ControlInput, GenerateJob, ImageInput};
use nicheimage_common::image::RgbImage;
use serde::Deserialize;
use serde_json::{Map, Value};

/// NicheImage's limit (`limit_params`), enforced here for every caller.
pub const MAX_STEPS: u32 = 50;
/// The longest prompt or negative prompt taken, in bytes. The text encoders read 77 tokens
/// (a few hundred characters); the cap keeps tokenizing a request's text small, whatever the
/// tokenizer's cost per byte.
pub const MAX_PROMPT_BYTES: usize = 4096;

/// NicheImage's request; other top-level keys (the rest of a synapse) are ignored.
#[derive(Debug, Deserialize)]
struct RawGenerate {
    prompt: String,
    seed: Value,
    pipeline_type: String,
    #[serde(default)]
    pipeline_params: Option<Map<String, Value>>,
    #[serde(default)]
    conditional_image: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("{0}")]
pub struct BadRequest(pub String);

fn bad<T>(msg: impl Into<String>) -> Result<T, BadRequest> {
    Err(BadRequest(msg.into()))
}

fn positive_int(params: &Map<String, Value>, key: &str) -> Result<Option<u32>, BadRequest> {
    match params.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_u64().and_then(|n| u32::try_from(n).ok()) {
            Some(n) if n > 0 => Ok(Some(n)),
            _ => bad(format!(
                "pipeline_params.{key} must be a positive integer, got {v}"
            )),
        },
    }
}

const STRENGTH: &str = "strength";
const CONDITIONING_SCALE: &str = "controlnet_conditioning_scale";

const PARAMS: [&str; 5] = [
    "num_inference_steps",
    "width",
    "height",
    "guidance_scale",
    "negative_prompt",
];

/// Parses and validates a body against the served model, filling the model's defaults.
pub fn parse(body: &[u8], model: &ModelSpec) -> Result<GenerateJob, BadRequest> {
    let raw: RawGenerate =
        nicheimage_common::json_budget::parse(body, nicheimage_common::json_budget::MAX_VALUES)
            .map_err(|e| BadRequest(format!("invalid JSON body: {e}")))?;
    if raw.prompt.len() > MAX_PROMPT_BYTES {
        return bad(format!(
            "prompt of {} bytes is above the limit of {MAX_PROMPT_BYTES}",
            raw.prompt.len()
        ));
    }
    let seed = match raw.seed.as_u64() {
        Some(s) if s <= i64::MAX as u64 => s,
        _ => {
            return bad(format!(
                "seed must be a non-negative integer, got {}",
                raw.seed
            ));
        }
    };
    let Some(pipeline) = Pipeline::parse(&raw.pipeline_type) else {
        return bad(format!(
            "unknown pipeline_type `{}` (txt2img, img2img, controlnet_txt2img)",
            raw.pipeline_type
        ));
    };
    if !model.pipelines.contains(&pipeline) {
        let served: Vec<&str> = model.pipelines.iter().map(|p| p.name()).collect();
        return bad(format!(
            "model {} does not serve {} (it serves {})",
            model.name,
            pipeline.name(),
            served.join(", ")
        ));
    }
    let params = raw.pipeline_params.unwrap_or_default();
    let extra = match pipeline {
        Pipeline::Txt2img => None,
        Pipeline::Img2img => Some(STRENGTH),
        Pipeline::ControlnetTxt2img => Some(CONDITIONING_SCALE),
    };
    if let Some(unknown) = params
        .keys()
        .find(|k| !(PARAMS.contains(&k.as_str()) || extra == Some(k.as_str())))
    {
        return bad(format!(
            "unsupported pipeline_params key `{unknown}` (supported: {}{})",
            PARAMS.join(", "),
            extra.map(|e| format!(", {e}")).unwrap_or_default()
        ));
    }
    let d = &model.defaults;
    let native = model.arch.native_side();
    let steps = positive_int(&params, "num_inference_steps")?
        .or(d.num_inference_steps)
        .unwrap_or(50);
    if steps > MAX_STEPS {
        return bad(format!(
            "num_inference_steps {steps} is above the limit of {MAX_STEPS}"
        ));
    }
    let asked = (
        positive_int(&params, "width")?,
        positive_int(&params, "height")?,
    );
    let width = asked.0.or(d.width).unwrap_or(native);
    let height = asked.1.or(d.height).unwrap_or(native);
    // FLUX packs 2×2 latents of 8 pixels into one token.
    let multiple = match model.arch {
        Arch::Flux => 16,
        Arch::Sd15 | Arch::Sdxl => 8,
    };
    for (name, v) in [("width", width), ("height", height)] {
        if v % multiple != 0 {
            return bad(format!("{name} {v} is not a multiple of {multiple}"));
        }
        if v > model.max_side {
            return bad(format!(
                "{name} {v} is above this model's maximum of {}",
                model.max_side
            ));
        }
    }
    let guidance_scale = match params.get("guidance_scale") {
        None | Some(Value::Null) => d.guidance_scale.unwrap_or(7.5),
        Some(v) => match v.as_f64() {
            Some(g) if g.is_finite() && (0.0..=50.0).contains(&g) => g,
            _ => {
                return bad(format!(
                    "guidance_scale must be a number in [0, 50], got {v}"
                ));
            }
        },
    };
    let negative_prompt = match params.get("negative_prompt") {
        None => d.negative_prompt.clone(),
        Some(Value::Null) => None,
        Some(Value::String(s)) if s.len() > MAX_PROMPT_BYTES => {
            return bad(format!(
                "negative_prompt of {} bytes is above the limit of {MAX_PROMPT_BYTES}",
                s.len()
            ));
        }
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return bad("negative_prompt must be a string"),
    };
    let mut job = GenerateJob {
        prompt: raw.prompt,
        negative_prompt,
        seed,
        num_inference_steps: steps,
        guidance_scale,
        width,
        height,
        img2img: None,
        controlnet: None,
    };
    match pipeline {
        Pipeline::Txt2img => {}
        Pipeline::Img2img => {
            let strength = strength(&params, model, steps)?;
            let image = conditional_image(raw.conditional_image.as_deref(), model, "img2img")?;
            // The image decides the size, as in diffusers.
            job.width = image.width as u32;
            job.height = image.height as u32;
            job.img2img = Some(ImageInput {
                image: encode(&image)?,
                strength,
            });
        }
        Pipeline::ControlnetTxt2img => {
            let scales = conditioning_scales(&params)?;
            let image = conditional_image(
                raw.conditional_image.as_deref(),
                model,
                "controlnet_txt2img",
            )?;
            // Without a size, diffusers' ControlNet pipeline draws at the control image's.
            job.width = asked.0.unwrap_or(image.width as u32);
            job.height = asked.1.unwrap_or(image.height as u32);
            job.controlnet = Some(ControlInput {
                image: encode(&image)?,
                scales,
            });
        }
    }
    Ok(job)
}

fn encode(image: &RgbImage) -> Result<String, BadRequest> {
    image
        .to_base64_png()
        .map_err(|e| BadRequest(format!("conditional_image: {e}")))
}

/// diffusers' `controlnet_conditioning_scale`: one number for all three nets or one each;
/// 1.0 when absent.
fn conditioning_scales(params: &Map<String, Value>) -> Result<[f64; 3], BadRequest> {
    let scale = |v: &Value| {
        v.as_f64()
            .filter(|s| s.is_finite() && (0.0..=10.0).contains(s))
    };
    let wrong = |v: &Value| {
        bad(format!(
            "{CONDITIONING_SCALE} must be a number in [0, 10] or a list of 3 (Canny, depth, normals), got {v}"
        ))
    };
    match params.get(CONDITIONING_SCALE) {
        None | Some(Value::Null) => Ok([1.0; 3]),
        Some(Value::Array(items)) if items.len() == 3 => {
            let mut out = [0.0; 3];
            for (o, item) in out.iter_mut().zip(items) {
                *o = match scale(item) {
                    Some(s) => s,
                    None => return wrong(item),
                };
            }
            Ok(out)
        }
        Some(v) => match scale(v) {
            Some(s) => Ok([s; 3]),
            None => wrong(v),
        },
    }
}

/// img2img's `strength`: diffusers' default is 0.8 for SD 1.5, 0.3 for SDXL.
fn strength(params: &Map<String, Value>, model: &ModelSpec, steps: u32) -> Result<f64, BadRequest> {
    let default_strength = match model.arch {
        Arch::Sd15 | Arch::Flux => 0.8,
        Arch::Sdxl => 0.3,
    };
    let strength = match params.get(STRENGTH) {
        None | Some(Value::Null) => default_strength,
        Some(v) => match v.as_f64() {
            Some(s) if (0.0..=1.0).contains(&s) => s,
            _ => return bad(format!("strength must be a number in [0, 1], got {v}")),
        },
    };
    if (f64::from(steps) * strength) < 1.0 {
        return bad(format!(
            "strength {strength} × num_inference_steps {steps} leaves no step to run"
        ));
    }
    Ok(strength)
}

/// The conditional image, decoded and resized as NicheImage does (short side to the model's
/// condition resolution, sides rounded to 64, Lanczos).
fn conditional_image(
    image: Option<&str>,
    model: &ModelSpec,
    pipeline: &str,
) -> Result<RgbImage, BadRequest> {
    let text = match image {
        Some(t) if !t.trim().is_empty() => t,
        _ => {
            return bad(format!(
                "{pipeline} needs a conditional_image (a base64 PNG)"
            ));
        }
    };
    let decoded = RgbImage::from_base64_png(text)
        .map_err(|e| BadRequest(format!("conditional_image: {e}")))?;
    let resolution = model.condition_resolution() as usize;
    // The size is checked before resizing: a 1-pixel-wide image would otherwise ask for an
    // enormous one.
    let (w, h) = decoded
        .condition_size(resolution)
        .map_err(|e| BadRequest(format!("conditional_image: {e}")))?;
    for (name, v) in [("width", w), ("height", h)] {
        if v > model.max_side as usize {
            return bad(format!(
                "conditional_image ({}x{}) resized to {w}x{h} is above this model's maximum {name} of {}",
                decoded.width, decoded.height, model.max_side
            ));
        }
    }
    Ok(decoded.resize_lanczos(w, h))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalogue::catalogue;

    fn model(name: &str) -> ModelSpec {
        catalogue(&Default::default()).unwrap()[name].clone()
    }

    fn err(body: &str, m: &ModelSpec) -> String {
        parse(body.as_bytes(), m).unwrap_err().0
    }

    #[test]
    fn long_prompts_are_refused_with_the_limit() {
        let model = model("RealisticVision");
        let long = "a".repeat(1 << 20);
        let body = serde_json::json!({"prompt": long, "seed": 1, "pipeline_type": "txt2img"});
        let started = std::time::Instant::now();
        let refused = parse(body.to_string().as_bytes(), &model).unwrap_err();
        assert!(refused.0.contains("above the limit of 4096"), "{refused}");
        assert!(started.elapsed() < std::time::Duration::from_millis(100));
        let body = serde_json::json!({"prompt": "a", "seed": 1, "pipeline_type": "txt2img",
            "pipeline_params": {"negative_prompt": "b".repeat(5000)}});
        let refused = parse(body.to_string().as_bytes(), &model).unwrap_err();
        assert!(
            refused.0.starts_with("negative_prompt of 5000 bytes"),
            "{refused}"
        );
        let body =
            serde_json::json!({"prompt": "a".repeat(4096), "seed": 1, "pipeline_type": "txt2img"});
        assert!(parse(body.to_string().as_bytes(), &model).is_ok());
    }

    #[test]
    fn defaults_fill_in_and_extra_keys_are_ignored() {
        let m = model("DreamShaper");
        let job = parse(
            br#"{"prompt":"a cat","seed":7,"pipeline_type":"txt2img","model_name":"x","image":""}"#,
            &m,
        )
        .unwrap();
        assert_eq!(
            (job.width, job.height, job.num_inference_steps),
            (512, 768, 30)
        );
        assert_eq!(job.guidance_scale, 7.0);
        assert!(job.negative_prompt.unwrap().starts_with("out of frame"));
        let job = parse(
            br#"{"prompt":"a","seed":1,"pipeline_type":"txt2img","pipeline_params":{"num_inference_steps":4,"width":64,"height":64,"guidance_scale":5,"negative_prompt":null}}"#,
            &m,
        )
        .unwrap();
        assert_eq!(
            (
                job.width,
                job.height,
                job.num_inference_steps,
                job.guidance_scale
            ),
            (64, 64, 4, 5.0)
        );
        assert_eq!(job.negative_prompt, None);
    }

    #[test]
    fn bad_input_is_explained() {
        let m = model("RealisticVision");
        assert!(err("{", &m).contains("invalid JSON"));
        assert!(err(r#"{"seed":1,"pipeline_type":"txt2img"}"#, &m).contains("prompt"));
        assert!(err(r#"{"prompt":"a","seed":-1,"pipeline_type":"txt2img"}"#, &m).contains("seed"));
        assert!(
            err(r#"{"prompt":"a","seed":1,"pipeline_type":"inpaint"}"#, &m)
                .contains("unknown pipeline_type")
        );
        assert!(
            err(r#"{"prompt":"a","seed":1,"pipeline_type":"img2img"}"#, &m)
                .contains("does not serve")
        );
        let p = |params: &str| {
            format!(
                r#"{{"prompt":"a","seed":1,"pipeline_type":"txt2img","pipeline_params":{params}}}"#
            )
        };
        assert!(err(&p(r#"{"num_inference_steps":51}"#), &m).contains("above the limit of 50"));
        assert!(err(&p(r#"{"width":500}"#), &m).contains("multiple of 8"));
        assert!(err(&p(r#"{"height":2048}"#), &m).contains("maximum"));
        assert!(
            err(&p(r#"{"clip_skip":2}"#), &m)
                .contains("unsupported pipeline_params key `clip_skip`")
        );
        assert!(err(&p(r#"{"guidance_scale":"high"}"#), &m).contains("guidance_scale"));
    }

    fn body_with_image(pipeline: &str, image: &str, params: &str) -> String {
        format!(
            r#"{{"prompt":"a","seed":1,"pipeline_type":"{pipeline}","conditional_image":"{image}","pipeline_params":{params}}}"#
        )
    }

    fn img2img_body(image: &str, params: &str) -> String {
        body_with_image("img2img", image, params)
    }

    /// A 150 × 100 base64 PNG.
    fn photo() -> String {
        RgbImage::new(150, 100, (0..150 * 100 * 3).map(|i| i as u8).collect())
            .unwrap()
            .to_base64_png()
            .unwrap()
    }

    #[test]
    fn img2img_takes_the_conditional_image_resized_as_the_seed_does() {
        let m = model("DreamShaper");
        let photo = photo();
        let job = parse(img2img_body(&photo, r#"{"strength":0.5}"#).as_bytes(), &m).unwrap();
        // Short side 100 → 512; 150 × 5.12 = 768.
        assert_eq!((job.width, job.height), (768, 512));
        let input = job.img2img.unwrap();
        assert_eq!(input.strength, 0.5);
        let sent = RgbImage::from_base64_png(&input.image).unwrap();
        assert_eq!((sent.width, sent.height), (768, 512));
        let default = parse(img2img_body(&photo, "{}").as_bytes(), &m).unwrap();
        assert_eq!(default.img2img.unwrap().strength, 0.8);

        assert!(err(&img2img_body("", "{}"), &m).contains("needs a conditional_image"));
        assert!(err(&img2img_body("bm90IGEgcG5n", "{}"), &m).contains("not a PNG, JPEG or WebP"));
        assert!(err(&img2img_body(&photo, r#"{"strength":1.5}"#), &m).contains("[0, 1]"));
        assert!(err(&img2img_body(&photo, r#"{"strength":0.01}"#), &m).contains("leaves no step"));
        let thin = RgbImage::new(1, 40, vec![9; 120])
            .unwrap()
            .to_base64_png()
            .unwrap();
        assert!(err(&img2img_body(&thin, "{}"), &m).contains("maximum height"));
        // Refused by the decoder's size limit, before its pixels are decoded (resized it would
        // need a 512 × 102 400 000 image).
        let needle = RgbImage::new(1, 200_000, vec![7; 600_000])
            .unwrap()
            .to_base64_png()
            .unwrap();
        assert!(
            err(&img2img_body(&needle, "{}"), &m)
                .contains("conditional_image: 1×200000 exceeds the 4096×4096 limit")
        );
        // strength is an img2img key only.
        let txt = r#"{"prompt":"a","seed":1,"pipeline_type":"txt2img","pipeline_params":{"strength":0.5}}"#;
        assert!(err(txt, &m).contains("unsupported pipeline_params key `strength`"));
    }

    fn controlnet_body(image: &str, params: &str) -> String {
        body_with_image("controlnet_txt2img", image, params)
    }

    #[test]
    fn controlnet_takes_the_resized_image_and_per_net_scales() {
        let m = model("DreamShaper");
        let photo = photo();
        let job = parse(controlnet_body(&photo, "{}").as_bytes(), &m).unwrap();
        // Without a size the control image (resized as NicheImage resizes it) decides, as in
        // diffusers; a given size wins.
        assert_eq!((job.width, job.height), (768, 512));
        let sized = parse(
            controlnet_body(&photo, r#"{"width":512,"height":768}"#).as_bytes(),
            &m,
        )
        .unwrap();
        assert_eq!((sized.width, sized.height), (512, 768));
        assert!(job.img2img.is_none());
        let input = job.controlnet.unwrap();
        assert_eq!(input.scales, [1.0; 3]);
        let sent = RgbImage::from_base64_png(&input.image).unwrap();
        assert_eq!((sent.width, sent.height), (768, 512));
        let one = parse(
            controlnet_body(&photo, r#"{"controlnet_conditioning_scale":0.5}"#).as_bytes(),
            &m,
        )
        .unwrap();
        assert_eq!(one.controlnet.unwrap().scales, [0.5; 3]);
        let each = parse(
            controlnet_body(&photo, r#"{"controlnet_conditioning_scale":[1,0.5,0]}"#).as_bytes(),
            &m,
        )
        .unwrap();
        assert_eq!(each.controlnet.unwrap().scales, [1.0, 0.5, 0.0]);
        for wrong in [r#"[1,2]"#, r#""high""#, "-1", r#"[1,1,"x"]"#] {
            let body = controlnet_body(
                &photo,
                &format!(r#"{{"controlnet_conditioning_scale":{wrong}}}"#),
            );
            assert!(
                err(&body, &m).contains("controlnet_conditioning_scale must be"),
                "{wrong}"
            );
        }
        assert!(
            err(&controlnet_body("", "{}"), &m)
                .contains("controlnet_txt2img needs a conditional_image")
        );
        assert!(
            err(&controlnet_body(&photo, r#"{"strength":0.5}"#), &m)
                .contains("unsupported pipeline_params key `strength`")
        );
        // Only models that list the pipeline serve it.
        assert!(
            err(&controlnet_body(&photo, "{}"), &model("AnimeV3"))
                .contains("does not serve controlnet_txt2img")
        );
    }
}
