//! Loading checkpoints: both layouts, other dtypes, and clear errors for broken files.
#![cfg(feature = "local-infer")]

use nicheimage_common::imagehash::{average_hash, distance};
use nicheimage_engine::pipeline::{PipelineError, StableDiffusion, Txt2Img};
use nicheimage_engine::tiny::{write_tiny_sd15, write_tiny_sd15_folder};
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

fn request() -> Txt2Img {
    Txt2Img {
        prompt: "a photo of a cat".into(),
        negative_prompt: Some("blurry".into()),
        seed: 77,
        num_inference_steps: 4,
        guidance_scale: 7.5,
        width: 64,
        height: 64,
        scheduler: "dpm++2m_karras".parse().unwrap(),
    }
}

fn load(path: &Path) -> Result<StableDiffusion, PipelineError> {
    StableDiffusion::load(path, None, Device::Cpu, Kind::Float)
}

fn tiny(dir: &Path) -> PathBuf {
    write_tiny_sd15(dir, "tiny-sd15").unwrap()
}

/// Rewrites the single file with `edit` applied to its tensor list (config folder kept).
fn edited(dir: &Path, name: &str, edit: impl FnOnce(&mut Vec<(String, Tensor)>)) -> PathBuf {
    let src = tiny(dir);
    let mut tensors = Tensor::read_safetensors(&src).unwrap();
    edit(&mut tensors);
    let out = dir.join(format!("{name}.safetensors"));
    Tensor::write_safetensors(&tensors, &out).unwrap();
    std::fs::rename(dir.join("tiny-sd15"), dir.join(name)).unwrap();
    out
}

#[test]
fn diffusers_folders_give_the_same_image_as_the_single_file() {
    let dir = tempfile::tempdir().unwrap();
    let single = load(&tiny(dir.path()))
        .unwrap()
        .txt2img(&request(), false)
        .unwrap()
        .image;
    for prefix in [true, false] {
        let folder = dir.path().join(format!("folder-{prefix}"));
        write_tiny_sd15_folder(&folder, prefix).unwrap();
        let image = load(&folder)
            .unwrap()
            .txt2img(&request(), false)
            .unwrap()
            .image;
        assert_eq!(image, single, "text_model prefix {prefix}");
    }
}

#[test]
fn half_precision_files_load_into_float32() {
    let dir = tempfile::tempdir().unwrap();
    let reference = load(&tiny(dir.path()))
        .unwrap()
        .txt2img(&request(), false)
        .unwrap()
        .image;
    let half = edited(dir.path(), "half", |ts| {
        for (_, t) in ts.iter_mut() {
            if t.kind() == Kind::Float {
                *t = t.to_kind(Kind::Half);
            }
        }
    });
    let image = load(&half)
        .unwrap()
        .txt2img(&request(), false)
        .unwrap()
        .image;
    assert!(distance(&average_hash(&image, 8), &average_hash(&reference, 8)) <= 6);
}

#[test]
fn a_truncated_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = tiny(dir.path());
    let bytes = std::fs::read(&file).unwrap();
    std::fs::write(&file, &bytes[..bytes.len() / 2]).unwrap();
    let err = load(&file)
        .err()
        .expect("a truncated file fails")
        .to_string();
    assert!(err.contains("not a valid safetensors file"), "{err}");
    std::fs::write(&file, b"hello").unwrap();
    let err = load(&file).err().expect("garbage fails").to_string();
    assert!(err.contains("not a valid safetensors file"), "{err}");
}

#[test]
fn missing_and_misshapen_keys_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let missing = "model.diffusion_model.input_blocks.1.1.proj_in.weight";
    let file = edited(dir.path(), "missing", |ts| ts.retain(|(n, _)| n != missing));
    let err = load(&file).err().expect("a missing key fails").to_string();
    assert!(
        err.contains("unet") && err.contains("1 missing") && err.contains(missing),
        "{err}"
    );

    let dir = tempfile::tempdir().unwrap();
    let bent = "first_stage_model.decoder.conv_in.bias";
    let file = edited(dir.path(), "bent", |ts| {
        for (n, t) in ts.iter_mut() {
            if n == bent {
                *t = Tensor::zeros([7], (Kind::Float, Device::Cpu));
            }
        }
    });
    let err = load(&file).err().expect("a wrong shape fails").to_string();
    assert!(
        err.contains("vae") && err.contains(bent) && err.contains("[7]"),
        "{err}"
    );
}

#[test]
fn unexpected_keys_are_reported_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let file = edited(dir.path(), "extra", |ts| {
        ts.push((
            "model.diffusion_model.extra_head.weight".into(),
            Tensor::zeros([2], (Kind::Float, Device::Cpu)),
        ));
        ts.push((
            "model_ema.decay".into(),
            Tensor::zeros([1], (Kind::Float, Device::Cpu)),
        ));
    });
    assert!(load(&file).is_ok());
}

#[test]
fn a_missing_checkpoint_and_bad_requests_are_errors() {
    let err = load(Path::new("/nonexistent/model.safetensors"))
        .err()
        .unwrap();
    assert!(matches!(err, PipelineError::NotFound(_)), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let sd = load(&tiny(dir.path())).unwrap();
    let mut bad = request();
    bad.width = 60;
    let err = sd.txt2img(&bad, false).err().unwrap().to_string();
    assert!(err.contains("multiples of 8"), "{err}");
}

#[test]
fn an_sdxl_diffusers_folder_gives_the_same_image_as_the_single_file() {
    use nicheimage_engine::tiny::{write_tiny_sdxl, write_tiny_sdxl_folder};
    let dir = tempfile::tempdir().unwrap();
    let file = write_tiny_sdxl(dir.path(), "tiny-sdxl").unwrap();
    let single = load(&file)
        .unwrap()
        .txt2img(&request(), false)
        .unwrap()
        .image;
    for prefix in [true, false] {
        let folder = dir.path().join(format!("sdxl-folder-{prefix}"));
        write_tiny_sdxl_folder(&folder, prefix).unwrap();
        let sd = load(&folder).unwrap();
        assert!(sd.config.is_sdxl() && sd.config.force_zeros_for_empty_prompt);
        let image = sd.txt2img(&request(), false).unwrap().image;
        assert_eq!(image, single, "text_model prefix {prefix}");
    }
}

/// Runs `nicheimage-tui generate` with [`request`]'s prompt, seed and steps on `image` and the
/// `extra` arguments, writing `out`; its stdout.
fn run_generate(
    home: &Path,
    checkpoint: &Path,
    image: &Path,
    out: &Path,
    extra: &[&str],
) -> String {
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_nicheimage-tui"))
        .args([
            "generate",
            "--device",
            "cpu",
            "--prompt",
            "a photo of a cat",
        ])
        .args([
            "--negative-prompt",
            "blurry",
            "--seed",
            "77",
            "--steps",
            "4",
        ])
        .arg("--checkpoint")
        .arg(checkpoint)
        .arg("--image")
        .arg(image)
        .arg("--out")
        .arg(out)
        .args(extra)
        .env("XDG_CONFIG_HOME", home)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout).to_string();
    assert!(
        run.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&run.stderr)
    );
    stdout
}

#[test]
fn the_generate_command_does_img2img_and_the_nsfw_filter() {
    use nicheimage_common::image::RgbImage;
    use nicheimage_engine::nsfw::NsfwFilter;
    use nicheimage_engine::pipeline::Img2Img;
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = tiny(dir.path());
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let photo = fixtures.join("sd15_img2img/photo_150x100.png");
    let classifier = fixtures.join("nsfw_vit/model");
    let out = dir.path().join("out.png");
    let stdout = run_generate(
        dir.path(),
        &checkpoint,
        &photo,
        &out,
        &[
            "--strength",
            "0.5",
            "--condition-resolution",
            "64",
            "--nsfw-classifier",
            classifier.to_str().unwrap(),
        ],
    );
    assert!(stdout.contains("nsfw score"), "{stdout}");
    let written = RgbImage::from_png(&std::fs::read(&out).unwrap()).unwrap();

    let input = RgbImage::from_png(&std::fs::read(&photo).unwrap()).unwrap();
    let req = Img2Img {
        base: request(),
        image: input.resized_for_condition(64).unwrap(),
        strength: 0.5,
    };
    let made = load(&checkpoint)
        .unwrap()
        .img2img(&req, false)
        .unwrap()
        .image;
    let expected = NsfwFilter::load(&classifier, Device::Cpu)
        .unwrap()
        .apply(made)
        .image;
    assert_eq!(written, expected);
}

#[test]
fn the_generate_command_runs_the_multi_controlnet_and_writes_its_maps() {
    use nicheimage_common::image::RgbImage;
    use nicheimage_engine::multi_controlnet::MultiControlNet;
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = tiny(dir.path());
    let controls = dir.path().join("controlnet");
    nicheimage_engine::tiny::write_tiny_multi_controlnet(&controls).unwrap();
    let photo =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sd15_img2img/photo_150x100.png");
    let out = dir.path().join("out.png");
    let extra = [
        "--width",
        "64",
        "--height",
        "64",
        "--condition-resolution",
        "64",
        "--controlnet-dir",
        controls.to_str().unwrap(),
    ];
    run_generate(dir.path(), &checkpoint, &photo, &out, &extra);
    let read = |p: &Path| RgbImage::from_png(&std::fs::read(p).unwrap()).unwrap();
    let input = read(&photo).resized_for_condition(64).unwrap();
    let nets = MultiControlNet::load(&controls, Device::Cpu, Kind::Float).unwrap();
    let maps = nets.control_images(&input).unwrap();
    for (map, name) in maps.iter().zip(["canny", "depth", "normal"]) {
        assert_eq!(
            &read(&dir.path().join(format!("out.{name}.png"))),
            map,
            "{name}"
        );
    }
    let expected = nets
        .generate(&load(&checkpoint).unwrap(), &request(), &input, [1.0; 3])
        .unwrap()
        .image;
    assert_eq!(read(&out), expected);
}
