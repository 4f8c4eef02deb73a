//! The replica process (`nicheimage-tui replica ...`): loads one model and serves jobs from
//! stdin until stdin closes. A crash here (a CUDA OOM, a libtorch abort) ends only this process.

use super::args::ReplicaArgs;
use super::protocol::{JobLine, ReplyLine};
use nicheimage_common::image::RgbImage;
use nicheimage_engine::model::Model;
use nicheimage_engine::multi_controlnet::{MultiControlNet, MultiControlNetError};
use nicheimage_engine::nsfw::NsfwFilter;
use nicheimage_engine::pipeline::{Img2Img, PipelineError, Txt2Img};
use nicheimage_engine::scheduler::SchedulerKind;
use nicheimage_engine::select_device;
use nicheimage_engine::weights::WeightError;
use std::io::{BufRead, Write};
use std::time::Instant;

#[derive(Debug, thiserror::Error)]
pub enum ChildError {
    #[error(transparent)]
    Setup(#[from] Box<dyn std::error::Error + Send + Sync>),
    #[error("cannot talk to the pool: {0}")]
    Io(#[from] std::io::Error),
}

fn send(out: &mut impl Write, line: &ReplyLine) -> std::io::Result<()> {
    let text = serde_json::to_string(line).map_err(std::io::Error::other)?;
    writeln!(out, "{text}")?;
    out.flush()
}

pub fn run(args: &ReplicaArgs) -> Result<(), ChildError> {
    let checkpoint = args.checkpoint.as_path();
    let config_dir = args.config_dir.as_deref();
    let (scheduler, device) = (args.scheduler, args.device);
    let nsfw_classifier = args.nsfw_classifier.as_deref();
    let controlnet_dir = args.controlnet_dir.as_deref();
    type Setup = (
        Model,
        SchedulerKind,
        tch::Device,
        Option<NsfwFilter>,
        Option<Result<MultiControlNet, MultiControlNetError>>,
    );
    type Failure = (Box<dyn std::error::Error + Send + Sync>, bool);
    // Which failures a restart cannot mend: everything about the files, not the device.
    let permanent = |e: Box<dyn std::error::Error + Send + Sync>| -> Failure { (e, true) };
    let setup = || -> Result<Setup, Failure> {
        let device = select_device(device).map_err(|e| (e.into(), false))?;
        let model = Model::load(checkpoint, config_dir, device, args.dtype).map_err(|e| {
            let lasting = !matches!(
                e,
                PipelineError::Torch(_) | PipelineError::Weights(WeightError::Io { .. })
            );
            (
                Box::new(e) as Box<dyn std::error::Error + Send + Sync>,
                lasting,
            )
        })?;
        let filter = nsfw_classifier
            .map(|dir| NsfwFilter::load(dir, device))
            .transpose()
            .map_err(|e| permanent(e.into()))?;
        // A bad ControlNet file costs only that pipeline: its requests get the load error.
        let kind = model.kind();
        let controls = controlnet_dir.map(|dir| {
            MultiControlNet::load(dir, device, kind).inspect_err(|e| {
                tracing::error!(error = %e, "controlnet_txt2img unavailable: cannot load its files");
            })
        });
        Ok((model, scheduler, device, filter, controls))
    };
    let (model, scheduler, device, filter, controls) = match setup() {
        Ok(s) => s,
        Err((error, permanent)) => {
            // The pool learns why (and whether to retry soon) before the process ends.
            let line = ReplyLine::LoadFailed {
                error: error.to_string(),
                permanent,
            };
            send(&mut std::io::stdout().lock(), &line)?;
            return Err(ChildError::Setup(error));
        }
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    send(
        &mut out,
        &ReplyLine::Ready {
            device: format!("{device:?}"),
            pipeline: Some(model.architecture().into()),
            dtype: Some(model.dtype_name().into()),
        },
    )?;
    for line in std::io::stdin().lock().lines() {
        let line = line?;
        let reply = match serde_json::from_str::<JobLine>(&line) {
            Err(e) => ReplyLine::Error {
                id: 0,
                error: format!("unreadable job: {e}"),
            },
            Ok(JobLine {
                id,
                job,
                deadline_ms,
            }) => {
                let started = Instant::now();
                let _deadline = nicheimage_engine::deadline::until(
                    deadline_ms.map(|ms| started + std::time::Duration::from_millis(ms)),
                );
                let req = Txt2Img {
                    prompt: job.prompt,
                    negative_prompt: job.negative_prompt,
                    seed: job.seed,
                    num_inference_steps: job.num_inference_steps as usize,
                    guidance_scale: job.guidance_scale,
                    width: i64::from(job.width),
                    height: i64::from(job.height),
                    scheduler,
                };
                let conditional = |png: &str| {
                    RgbImage::from_base64_png(png).map_err(|e| format!("conditional image: {e}"))
                };
                let generated = match (job.img2img, job.controlnet) {
                    (Some(_), Some(_)) => {
                        Err("a job cannot be both img2img and controlnet_txt2img".into())
                    }
                    (Some(input), None) => match model.stable_diffusion() {
                        None => Err("this model serves txt2img only".into()),
                        Some(sd) => conditional(&input.image).and_then(|image| {
                            let req = Img2Img {
                                base: req,
                                image,
                                strength: input.strength,
                            };
                            sd.img2img(&req, false)
                                .map(|g| g.image)
                                .map_err(|e| e.to_string())
                        }),
                    },
                    (None, Some(input)) => match (&controls, model.stable_diffusion()) {
                        (None, _) | (_, None) => {
                            Err("this replica was started without ControlNets".into())
                        }
                        (Some(Err(e)), _) => Err(format!("controlnet_txt2img unavailable: {e}")),
                        (Some(Ok(c)), Some(sd)) => conditional(&input.image).and_then(|image| {
                            c.generate(sd, &req, &image, input.scales)
                                .map(|g| g.image)
                                .map_err(|e| e.to_string())
                        }),
                    },
                    (None, None) => model.txt2img(&req).map_err(|e| e.to_string()),
                };
                let filtered = generated.map(|image| match &filter {
                    None => (image, false),
                    Some(f) => {
                        let verdict = f.apply(image);
                        if verdict.blanked {
                            tracing::info!(
                                job = id,
                                score = verdict.nsfw_score,
                                "NSFW classifier flagged the image; sending a black one"
                            );
                        }
                        (verdict.image, verdict.blanked)
                    }
                });
                match filtered.and_then(|(image, blanked)| {
                    let png = image.to_base64_png().map_err(|e| e.to_string())?;
                    Ok((png, blanked))
                }) {
                    Ok((image, nsfw_blanked)) => ReplyLine::Image {
                        id,
                        image,
                        millis: started.elapsed().as_millis() as u64,
                        nsfw_blanked,
                    },
                    Err(error) => ReplyLine::Error { id, error },
                }
            }
        };
        send(&mut out, &reply)?;
    }
    Ok(())
}
