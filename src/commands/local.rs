//! The commands that run the engine in this process: `generate`, `replica` (the pool's child)
//! and `tiny-checkpoint`.

use std::time::Instant;

use super::{CommandError, CommandResult, batch};
use crate::cli::{GenerateArgs, ReplicaArgs, TinyCheckpointArgs};
use nicheimage_engine::model::Model;
use nicheimage_engine::{pipeline, select_device, tiny};
use nicheimage_node::catalogue::Arch;
use nicheimage_node::config::{DeviceChoice, DtypeChoice};

/// Writes a tiny random checkpoint, ControlNet or full-size annotator and prints its path.
pub fn tiny_checkpoint(a: &TinyCheckpointArgs) -> CommandResult {
    let written = match (a.annotator, a.controlnet, a.arch) {
        (Some(net), _, _) => {
            let file = a.out.join(format!("{}.safetensors", a.name));
            tiny::write_random_annotator(net, &file, 0)
                .map(|()| file)
                .map_err(CommandError::failed)
        }
        (None, Some(seed), _) => {
            let dir = a.out.join(&a.name);
            tiny::write_tiny_controlnet(&dir, seed)
                .map(|()| dir)
                .map_err(CommandError::failed)
        }
        (None, None, Arch::Sd15) => {
            tiny::write_tiny_sd15(&a.out, &a.name).map_err(CommandError::failed)
        }
        (None, None, Arch::Sdxl) => {
            tiny::write_tiny_sdxl(&a.out, &a.name).map_err(CommandError::failed)
        }
        (None, None, Arch::Flux) => {
            let dir = a.out.join(&a.name);
            nicheimage_engine::flux::tiny::write_tiny_flux(&dir)
                .map(|()| dir)
                .map_err(CommandError::failed)
        }
    }?;
    println!("{}", written.display());
    Ok(())
}

/// One image from the local engine, written as PNG, with the load and generation times; or,
/// with `--batch`, every request of a JSON-lines file from one load.
pub fn generate(a: &GenerateArgs, device: DeviceChoice, dtype: DtypeChoice) -> CommandResult {
    let device = select_device(device).map_err(CommandError::failed)?;
    let started = Instant::now();
    let model = Model::load(&a.checkpoint, a.config_dir.as_deref(), device, dtype)
        .map_err(CommandError::failed)?;
    let loaded = started.elapsed();
    if let Some(file) = &a.batch {
        let lines = batch::read(file).map_err(CommandError::failed)?;
        println!("{}", batch::loaded(&model, loaded, lines.len()));
        for line in &lines {
            let report = batch::run(&model, line).map_err(CommandError::failed)?;
            println!("{report}");
        }
        return Ok(());
    }
    let line = generate_image(a, &model).map_err(CommandError::failed)?;
    println!(
        "{line} ({} on {device:?} in {}, loaded in {:.2}s, generated in {:.2}s)",
        model.architecture(),
        model.dtype_name(),
        loaded.as_secs_f64(),
        (started.elapsed() - loaded).as_secs_f64()
    );
    Ok(())
}

fn generate_image(a: &GenerateArgs, model: &Model) -> Result<String, Box<dyn std::error::Error>> {
    let (Some(prompt), Some(out)) = (&a.prompt, &a.out) else {
        return Err("--prompt and --out are required without --batch".into());
    };
    let req = pipeline::Txt2Img {
        prompt: prompt.clone(),
        negative_prompt: a.negative_prompt.clone(),
        seed: a.seed,
        num_inference_steps: a.steps,
        guidance_scale: a.guidance_scale,
        width: a.width,
        height: a.height,
        scheduler: a.scheduler,
    };
    let image = match (&a.image, &a.controlnet_dir) {
        (None, _) => model.txt2img(&req)?,
        (Some(path), controlnet_dir) => {
            let sd = model
                .stable_diffusion()
                .ok_or("--image: this model serves txt2img only")?;
            let input = batch::condition_image(path, a.condition_resolution)?;
            match controlnet_dir {
                None => {
                    let req = pipeline::Img2Img {
                        base: req,
                        image: input,
                        strength: a.strength,
                    };
                    sd.img2img(&req, false)?.image
                }
                Some(dir) => {
                    use nicheimage_engine::multi_controlnet::MultiControlNet;
                    let nets = MultiControlNet::load(dir, sd.device(), sd.kind())?;
                    let maps = nets.control_images(&input)?;
                    for (map, name) in maps.iter().zip(["canny", "depth", "normal"]) {
                        let file = out.with_extension(format!("{name}.png"));
                        std::fs::write(&file, map.to_png()?)
                            .map_err(|e| format!("cannot write {}: {e}", file.display()))?;
                    }
                    nets.generate(sd, &req, &input, [1.0; 3])?.image
                }
            }
        }
    };
    let image = match &a.nsfw_classifier {
        None => image,
        Some(dir) => {
            let verdict =
                nicheimage_engine::nsfw::NsfwFilter::load(dir, model.device())?.apply(image);
            println!(
                "nsfw score {:.3}{}",
                verdict.nsfw_score,
                if verdict.blanked { ": blacked out" } else { "" }
            );
            verdict.image
        }
    };
    std::fs::write(out, image.to_png()?)
        .map_err(|e| format!("cannot write {}: {e}", out.display()))?;
    Ok(format!(
        "{} ({}x{})",
        out.display(),
        image.width,
        image.height
    ))
}

/// One generation replica: JSON lines on stdio, started by the endpoint's pool.
pub fn replica(a: &ReplicaArgs) -> CommandResult {
    // Its log lines go to stderr, where the pool reads them into the node's log.
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .without_time()
        .try_init();
    nicheimage_node::replica::child::run(a).map_err(|e| {
        eprintln!("replica: {e}");
        CommandError::Reported
    })
}
