//! Our pipelines against diffusers 0.42 (and the NSFW classifier against transformers 5) on tiny
//! scripts/parity/sd15.py (pinned versions in scripts/parity/requirements.txt); the checkpoint
//! is regenerated here, deterministically, and must hash to what the fixtures were made from.

use nicheimage_common::image::RgbImage;
use nicheimage_common::imagehash::{average_hash, to_hex};
use nicheimage_engine::pipeline::{StableDiffusion, Trace, Txt2Img};
use nicheimage_engine::tiny::write_tiny_sd15;
use nicheimage_engine::tokenizer::{ClipTokenizer, END_OF_TEXT};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use tch::{Device, Kind, Tensor};

fn fixtures() -> PathBuf {
    nicheimage_test_support::root().join("tests/fixtures/sd15")
}

fn cases() -> &'static Value {
    static CASES: OnceLock<Value> = OnceLock::new();
    CASES.get_or_init(|| {
        let text =
            std::fs::read_to_string(fixtures().join("cases.json")).expect("fixtures present");
        serde_json::from_str(&text).expect("valid fixtures")
    })
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The tiny checkpoint, written once per test binary.
fn checkpoint() -> &'static PathBuf {
    static FILE: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &FILE
        .get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let file = write_tiny_sd15(dir.path(), "tiny-sd15").unwrap();
            (dir, file)
        })
        .1
}

#[test]
fn the_tiny_checkpoint_is_the_one_the_fixtures_were_made_from() {
    let bytes = std::fs::read(checkpoint()).unwrap();
    assert_eq!(
        hex(&Sha256::digest(&bytes)),
        cases()["checkpoint_sha256"].as_str().unwrap()
    );
}

#[test]
fn tokenizer_matches_transformers() {
    assert_tokenizer(&ClipTokenizer::new(END_OF_TEXT), &cases()["tokenizer"]);
}

/// Token ids equal to transformers' for every `{text, ids}` case.
fn assert_tokenizer(tokenizer: &ClipTokenizer, cases: &Value) {
    for case in cases.as_array().unwrap() {
        let want: Vec<i64> = case["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_i64().unwrap())
            .collect();
        let text = case["text"].as_str().unwrap();
        assert_eq!(tokenizer.encode_padded(text), want, "{text:?}");
    }
}

#[test]
fn average_hash_matches_imagehash_on_the_reference_images() {
    for case in cases()["cases"].as_array().unwrap() {
        let png = std::fs::read(fixtures().join(format!("{}.png", case["name"].as_str().unwrap())))
            .unwrap();
        let image = RgbImage::from_png(&png).unwrap();
        assert_eq!(
            to_hex(&average_hash(&image, 8)),
            case["average_hash"].as_str().unwrap()
        );
    }
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn to_vec(t: &Tensor) -> Vec<f32> {
    Vec::<f32>::try_from(&t.to_kind(Kind::Float).flatten(0, -1)).unwrap()
}

#[test]
fn txt2img_matches_diffusers() {
    let sd = StableDiffusion::load(checkpoint(), None, Device::Cpu, Kind::Float).unwrap();
    for case in cases()["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let generated = sd.txt2img(&request(case), true).unwrap();
        let trace = generated.trace.unwrap();
        assert_start(name, &trace, case);
        // The fixtures keep the first three steps and the last.
        let steps: Vec<Tensor> = case["latent_steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| trace.latents[v.as_u64().unwrap() as usize].shallow_clone())
            .collect();
        assert_latents(name, &steps, &case["latents"]);
        let reference = fixtures().join(format!("{name}.png"));
        assert_picture(name, &generated.image, &reference, 2, &case["average_hash"]);
    }
}

/// The schedule (timesteps exact, sigmas to 1e-6 relative), the initial latents (bit for
/// bit) and the text embeddings (head to 1e-5, sum) against a fixture case.
fn assert_start(name: &str, trace: &Trace, case: &Value) {
    let want_t: Vec<f64> = case["timesteps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(trace.timesteps, want_t, "{name}: timesteps");
    for (got, want) in trace.sigmas.iter().zip(floats(&case["sigmas"])) {
        assert!(
            (got - want).abs() <= 1e-6 * want.abs(),
            "{name}: sigma {got} vs {want}"
        );
    }
    assert_eq!(
        to_vec(&trace.initial_latents),
        floats(&case["initial_latents"]),
        "{name}: initial latents"
    );
    let emb = to_vec(&trace.text_embeddings);
    let head = floats(&case["embeddings_head"]);
    assert_close(
        &format!("{name}: embeddings (head)"),
        &emb[..head.len()],
        &head,
        1e-5,
    );
    let sum: f64 = emb.iter().map(|&x| x as f64).sum();
    let want_sum = case["embeddings_sum"].as_f64().unwrap();
    assert!(
        (sum - want_sum).abs() <= 1e-3 + 1e-5 * want_sum.abs(),
        "{name}: embedding sum {sum} vs {want_sum}"
    );
}

#[test]
fn schedules_match_diffusers_for_every_spacing() {
    use nicheimage_engine::scheduler::SchedulerKind;
    use nicheimage_engine::scheduler_config::BaseScheduler;
    for s in cases()["schedules"].as_array().unwrap() {
        let kind: SchedulerKind = s["scheduler"].as_str().unwrap().parse().unwrap();
        let spacing = s["timestep_spacing"].as_str().unwrap();
        // SD 1.5's hub scheduler with the spacing stated.
        let mut file = BaseScheduler::default().to_json();
        file["timestep_spacing"] = spacing.into();
        let base = BaseScheduler::from_json(file).unwrap();
        let steps = s["steps"].as_u64().unwrap() as usize;
        let plan = base.sampler(kind).unwrap().plan(steps).unwrap();
        let what = format!("{kind:?} {spacing} {steps} steps");
        let want_t: Vec<f64> = s["timesteps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        assert_eq!(plan.timesteps, want_t, "{what}: timesteps");
        let want_s = floats(&s["sigmas"]);
        assert_eq!(plan.sigmas.len(), want_s.len(), "{what}");
        for (got, want) in plan.sigmas.iter().zip(&want_s) {
            assert!(
                (got - want).abs() <= 1e-6 * want.abs(),
                "{what}: sigma {got} vs {want}"
            );
        }
        let init = s["init_noise_sigma"].as_f64().unwrap() as f32;
        assert!(
            (plan.init_noise_sigma - init).abs() <= 1e-6 * init,
            "{what}: init sigma"
        );
    }
}

// Shared by the modules below.

fn fixture(path: &str) -> PathBuf {
    nicheimage_test_support::root()
        .join("tests/fixtures")
        .join(path)
}

fn json(path: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixture(path)).expect("fixture present"))
        .expect("valid fixture")
}

fn png(path: &Path) -> RgbImage {
    RgbImage::from_png(&std::fs::read(path).expect("fixture present")).expect("a PNG")
}

/// The request a fixture case describes; width and height are 0 where the case has none
/// (img2img, where the image decides).
fn request(case: &Value) -> Txt2Img {
    Txt2Img {
        prompt: case["prompt"].as_str().unwrap().into(),
        negative_prompt: case["negative_prompt"].as_str().map(String::from),
        seed: case["seed"].as_u64().unwrap(),
        num_inference_steps: case["steps"].as_u64().unwrap() as usize,
        guidance_scale: case["guidance_scale"].as_f64().unwrap(),
        width: case["width"].as_i64().unwrap_or(0),
        height: case["height"].as_i64().unwrap_or(0),
        scheduler: case["scheduler"]
            .as_str()
            .unwrap_or("dpm++2m_karras")
            .parse()
            .unwrap(),
    }
}

/// Element-wise within `tolerance` × max(1, the largest |want|).
fn assert_close(what: &str, got: &[f32], want: &[f32], tolerance: f32) {
    let scale = want.iter().fold(0f32, |m, x| m.max(x.abs()));
    let d = max_abs_diff(got, want);
    assert!(
        d <= tolerance * scale.max(1.0),
        "{what} differ by {d} (scale {scale})"
    );
}

/// Every step's latents against the reference's, within 1e-4.
fn assert_latents(name: &str, got: &[Tensor], want: &Value) {
    let want = want.as_array().unwrap();
    assert_eq!(got.len(), want.len(), "{name}: steps run");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert_close(
            &format!("{name}: latents after step {i}"),
            &to_vec(g),
            &floats(w),
            1e-4,
        );
    }
}

/// Our picture against the reference PNG: same size, at most `max_diff` per channel, the
/// same average hash.
fn assert_picture(name: &str, ours: &RgbImage, reference: &Path, max_diff: u8, hash: &Value) {
    let reference = png(reference);
    assert_eq!(
        (ours.width, ours.height),
        (reference.width, reference.height),
        "{name}: size"
    );
    let worst = ours
        .data
        .iter()
        .zip(&reference.data)
        .map(|(a, b)| a.abs_diff(*b))
        .max()
        .unwrap();
    assert!(worst <= max_diff, "{name}: max pixel difference {worst}");
    assert_eq!(
        to_hex(&average_hash(ours, 8)),
        hash.as_str().unwrap(),
        "{name}: hash"
    );
}

mod img2img {
    //! img2img and NicheImage's conditional-image resize against scripts/parity/img2img.py.
    use super::*;
    use nicheimage_engine::pipeline::Img2Img;

    fn read(name: &str) -> RgbImage {
        png(&fixture(&format!("sd15_img2img/{name}")))
    }

    pub fn request_for(case: &Value) -> Img2Img {
        let mut image = read(&format!("{}.png", case["input"].as_str().unwrap()));
        if let Some(resolution) = case["resolution"].as_u64() {
            image = image.resized_for_condition(resolution as usize).unwrap();
        }
        Img2Img {
            base: request(case),
            image,
            strength: case["strength"].as_f64().unwrap(),
        }
    }

    #[test]
    fn nicheimages_condition_resize_matches_pillow_bit_for_bit() {
        for r in json("sd15_img2img/cases.json")["resizes"]
            .as_array()
            .unwrap()
        {
            let input = read(&format!("{}.png", r["input"].as_str().unwrap()));
            let resolution = r["resolution"].as_u64().unwrap() as usize;
            let ours = input.resized_for_condition(resolution).unwrap();
            let want = read(r["output"].as_str().unwrap());
            assert_eq!((ours.width, ours.height), (want.width, want.height), "{r}");
            assert!(ours.data == want.data, "{r}: pixels differ");
        }
    }

    #[test]
    fn img2img_matches_diffusers() {
        let sd = StableDiffusion::load(checkpoint(), None, Device::Cpu, Kind::Float).unwrap();
        for case in json("sd15_img2img/cases.json")["cases"].as_array().unwrap() {
            let name = case["name"].as_str().unwrap();
            let generated = sd.img2img(&request_for(case), true).unwrap();
            let trace = generated.trace.unwrap();
            let all: Vec<f64> = case["timesteps"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect();
            let steps = case["latents"].as_array().unwrap().len();
            assert_eq!(
                trace.timesteps,
                all[all.len() - steps..],
                "{name}: the steps strength leaves"
            );
            // The noised, encoded image: VAE encoder rounding, so close rather than exact.
            assert_close(
                &format!("{name}: initial latents"),
                &to_vec(&trace.initial_latents),
                &floats(&case["initial_latents"]),
                1e-4,
            );
            assert_latents(name, &trace.latents, &case["latents"]);
            let reference = fixture(&format!("sd15_img2img/{name}.png"));
            assert_picture(name, &generated.image, &reference, 2, &case["average_hash"]);
        }
    }

    #[test]
    fn img2img_in_fp16_matches_diffusers_in_fp16() {
        // Half-precision draws and add_noise in fp16, as CUDA replicas run it.
        let case = &json("sd15_img2img/cases.json")["fp16"];
        let ours = StableDiffusion::load(checkpoint(), None, Device::Cpu, Kind::Half)
            .unwrap()
            .img2img(&request_for(case), false)
            .unwrap()
            .image;
        let name = case["name"].as_str().unwrap();
        let reference = fixture(&format!("sd15_img2img/{name}.png"));
        assert_picture(name, &ours, &reference, 3, &case["average_hash"]);
    }
}

mod sdxl {
    //! SDXL txt2img and img2img against scripts/parity/sdxl.py on the tiny SDXL checkpoint.
    use super::*;
    use nicheimage_engine::pipeline::Img2Img;
    use nicheimage_engine::tiny::write_tiny_sdxl;

    fn cases() -> Value {
        json("sdxl/cases.json")
    }

    fn checkpoint() -> &'static PathBuf {
        static FILE: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
        &FILE
            .get_or_init(|| {
                let dir = tempfile::tempdir().unwrap();
                let file = write_tiny_sdxl(dir.path(), "tiny-sdxl").unwrap();
                (dir, file)
            })
            .1
    }

    fn load(kind: Kind) -> StableDiffusion {
        StableDiffusion::load(checkpoint(), None, Device::Cpu, kind).unwrap()
    }

    #[test]
    fn the_tiny_sdxl_checkpoint_is_the_one_the_fixtures_were_made_from() {
        let bytes = std::fs::read(checkpoint()).unwrap();
        assert_eq!(
            hex(&Sha256::digest(&bytes)),
            cases()["checkpoint_sha256"].as_str().unwrap()
        );
    }

    #[test]
    fn the_second_tokenizer_pads_with_exclamation_marks() {
        assert_tokenizer(&ClipTokenizer::new(0), &cases()["tokenizer_2"]);
    }

    #[test]
    fn sdxl_txt2img_matches_diffusers() {
        let sd = load(Kind::Float);
        assert!(sd.config.is_sdxl());
        for case in cases()["cases"].as_array().unwrap() {
            let name = case["name"].as_str().unwrap();
            let generated = sd.txt2img(&request(case), true).unwrap();
            let trace = generated.trace.unwrap();
            assert_start(name, &trace, case);
            let shape: Vec<i64> = case["embeddings_shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_i64().unwrap())
                .collect();
            assert_eq!(trace.text_embeddings.size(), shape, "{name}: embeddings");
            let emb = to_vec(&trace.text_embeddings);
            let tail = floats(&case["embeddings_tail"]);
            assert_close(
                &format!("{name}: embeddings (tail)"),
                &emb[emb.len() - tail.len()..],
                &tail,
                1e-5,
            );
            let pooled = to_vec(trace.pooled.as_ref().expect("SDXL pools"));
            assert_close(
                &format!("{name}: pooled embeddings"),
                &pooled,
                &floats(&case["pooled"]),
                1e-5,
            );
            assert_latents(name, &trace.latents, &case["latents"]);
            let reference = fixture(&format!("sdxl/{name}.png"));
            assert_picture(name, &generated.image, &reference, 2, &case["average_hash"]);
        }
    }

    #[test]
    fn sdxl_img2img_matches_diffusers() {
        // diffusers' `StableDiffusionXLImg2ImgPipeline`, on img2img.py's photo.
        let sd = load(Kind::Float);
        let photo = png(&fixture("sd15_img2img/photo_150x100.png"));
        for case in cases()["img2img"].as_array().unwrap() {
            let name = case["name"].as_str().unwrap();
            let req = Img2Img {
                base: request(case),
                image: photo
                    .resized_for_condition(case["resolution"].as_u64().unwrap() as usize)
                    .unwrap(),
                strength: case["strength"]
                    .as_f64()
                    .or(case["default_strength"].as_f64())
                    .unwrap(),
            };
            let generated = sd.img2img(&req, true).unwrap();
            assert_latents(name, &generated.trace.unwrap().latents, &case["latents"]);
            let reference = fixture(&format!("sdxl/{name}.png"));
            assert_picture(name, &generated.image, &reference, 2, &case["average_hash"]);
        }
    }

    #[test]
    fn sdxl_in_fp16_matches_diffusers_in_fp16() {
        // Half-precision draws and the VAE upcast to f32, as CUDA replicas run it.
        let case = &cases()["fp16"];
        let ours = load(Kind::Half)
            .txt2img(&request(case), false)
            .unwrap()
            .image;
        let name = case["name"].as_str().unwrap();
        let reference = fixture(&format!("sdxl/{name}.png"));
        assert_picture(name, &ours, &reference, 3, &case["average_hash"]);
    }
}

mod nsfw {
    //! The NSFW filter's ViT against transformers on a tiny random classifier
    //! (scripts/parity/nsfw_vit.py).
    use super::*;
    use nicheimage_engine::nsfw::NsfwFilter;
    use nicheimage_engine::vit::VitClassifier;

    #[test]
    fn vit_preprocessing_and_logits_match_transformers() {
        let cases = json("nsfw_vit/cases.json");
        let vit = VitClassifier::load(&fixture("nsfw_vit/model"), Device::Cpu).unwrap();
        let filter = NsfwFilter::load(&fixture("nsfw_vit/model"), Device::Cpu).unwrap();
        let mut blanked = 0;
        for case in cases["cases"].as_array().unwrap() {
            let name = case["image"].as_str().unwrap();
            let image = png(&fixture(name));
            let pixels = vit.pixels(&image);
            let got = to_vec(&pixels);
            let head = floats(&case["pixels_head"]);
            assert_eq!(&got[..head.len()], &head[..], "{name}: processed pixels");
            let sum: f64 = got.iter().map(|&x| f64::from(x)).sum();
            let want = case["pixels_sum"].as_f64().unwrap();
            assert!(
                (sum - want).abs() < 1e-3,
                "{name}: pixel sum {sum} vs {want}"
            );
            assert_close(
                &format!("{name}: logits"),
                &to_vec(&vit.logits(&pixels)),
                &floats(&case["logits"]),
                1e-4,
            );

            let verdict = filter.apply(image.clone());
            let nsfw = case["nsfw"].as_f64().unwrap();
            assert!((verdict.nsfw_score - nsfw).abs() < 1e-5, "{name}");
            assert_eq!(verdict.blanked, nsfw > 0.5, "{name}");
            assert_eq!(
                (verdict.image.width, verdict.image.height),
                (image.width, image.height),
                "{name}: the black image keeps the size"
            );
            if verdict.blanked {
                blanked += 1;
                assert!(verdict.image.data.iter().all(|&p| p == 0), "{name}");
            } else {
                assert!(verdict.image == image, "{name}: kept as it was");
            }
        }
        assert!(blanked > 0, "both verdicts are exercised");
    }

    #[test]
    fn a_missing_classifier_names_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        let err = NsfwFilter::load(tmp.path(), Device::Cpu)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("config.json"), "{err}");
    }
}

mod controlnet {
    //! Multi-ControlNet txt2img against scripts/parity/controlnet.py (two tiny random nets,
    //! precomputed control images).
    use super::*;
    use nicheimage_engine::controlnet::ControlNet;
    use nicheimage_engine::tiny::write_tiny_controlnet;

    #[test]
    fn multi_controlnet_matches_diffusers() {
        let tmp = tempfile::tempdir().unwrap();
        let nets: Vec<ControlNet> = [101, 202]
            .iter()
            .enumerate()
            .map(|(i, &seed)| {
                let folder = tmp.path().join(format!("net{i}"));
                write_tiny_controlnet(&folder, seed).unwrap();
                ControlNet::load(&folder, Device::Cpu, Kind::Float).unwrap()
            })
            .collect();
        let sd = StableDiffusion::load(checkpoint(), None, Device::Cpu, Kind::Float).unwrap();
        for case in json("controlnet/cases.json")["cases"].as_array().unwrap() {
            let name = case["name"].as_str().unwrap();
            let req = request(case);
            let images: Vec<RgbImage> = case["images"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| png(&fixture(&format!("sd15_img2img/{}", f.as_str().unwrap()))))
                .collect();
            let scales = floats(&case["scales"]);
            let controls: Vec<(&ControlNet, &RgbImage, f64)> = case["nets"]
                .as_array()
                .unwrap()
                .iter()
                .zip(&images)
                .zip(&scales)
                .map(|((n, image), &scale)| {
                    (&nets[n.as_u64().unwrap() as usize], image, f64::from(scale))
                })
                .collect();
            let generated = sd.controlnet_txt2img(&req, &controls, true).unwrap();
            assert_latents(name, &generated.trace.unwrap().latents, &case["latents"]);
            let reference = fixture(&format!("controlnet/{name}.png"));
            assert_picture(name, &generated.image, &reference, 2, &case["average_hash"]);
            // The nets matter: without them the image differs.
            let plain = sd.txt2img(&req, false).unwrap().image;
            assert!(plain != generated.image, "{name}: ControlNet had no effect");
        }
    }

    #[test]
    fn a_missing_controlnet_says_what_to_download() {
        let tmp = tempfile::tempdir().unwrap();
        let err = ControlNet::load(&tmp.path().join("canny"), Device::Cpu, Kind::Float)
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("config.json") && err.contains("lllyasviel"),
            "{err}"
        );
    }
}

mod canny {
    //! The Canny annotator against controlnet_aux's CannyDetector (OpenCV), pixel for pixel,
    //! after NicheImage's resize (scripts/parity/canny.py).
    use super::*;
    use nicheimage_engine::annotator::canny::{HIGH_THRESHOLD, LOW_THRESHOLD, canny};

    #[test]
    fn canny_matches_controlnet_aux_pixel_for_pixel() {
        let mut checked = 0;
        for entry in std::fs::read_dir(fixture("canny")).unwrap() {
            let path = entry.unwrap().path();
            let file = path.file_name().unwrap().to_string_lossy().to_string();
            let Some(name) = file.strip_suffix("_canny.png") else {
                continue;
            };
            let input = [
                fixture(&format!("canny/{name}.png")),
                fixture(&format!("sd15_img2img/{name}.png")),
            ]
            .into_iter()
            .find(|p| p.is_file())
            .unwrap();
            let image = png(&input);
            let ours = canny(
                &image.resized_for_condition(512).unwrap(),
                LOW_THRESHOLD,
                HIGH_THRESHOLD,
            );
            let want = png(&path);
            assert_eq!(
                (ours.width, ours.height),
                (want.width, want.height),
                "{name}"
            );
            let differing = ours
                .data
                .iter()
                .zip(&want.data)
                .filter(|(a, b)| a != b)
                .count();
            assert_eq!(differing, 0, "{name}: {differing} channel values differ");
            checked += 1;
        }
        assert!(checked >= 5, "{checked} reference maps");
    }
}

mod annotators {
    //! MiDaS depth and NormalBae normals against controlnet_aux's detectors, on full-size
    //! networks with the random weights our writer draws (scripts/parity/annotators.py), and
    //! the torch-file reader against a checkpoint `torch.save` wrote.
    use super::*;
    use nicheimage_engine::annotator::AnnotatorError;
    use nicheimage_engine::annotator::midas::Midas;
    use nicheimage_engine::annotator::normalbae::NormalBae;
    use nicheimage_engine::tiny::{AnnotatorNet, write_random_annotator};
    use nicheimage_engine::torch_file::read_torch_file;

    const IMAGES: [&str; 2] = ["photo_192x128", "photo_128x192"];

    /// Both random checkpoints, written once per test binary.
    fn checkpoints() -> &'static (PathBuf, PathBuf) {
        static FILES: OnceLock<(tempfile::TempDir, (PathBuf, PathBuf))> = OnceLock::new();
        &FILES
            .get_or_init(|| {
                let dir = tempfile::tempdir().unwrap();
                let midas = dir.path().join("midas-random.safetensors");
                let normal = dir.path().join("normalbae-random.safetensors");
                write_random_annotator(AnnotatorNet::Midas, &midas, 0).unwrap();
                write_random_annotator(AnnotatorNet::Normalbae, &normal, 0).unwrap();
                (dir, (midas, normal))
            })
            .1
    }

    fn raw(path: &str) -> Vec<f32> {
        std::fs::read(fixture(path))
            .expect("fixture present")
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    }

    /// Same size; every channel value within 1 of the reference (the maps truncate floats
    /// that differ in the last bits); returns how many differ at all.
    fn assert_map(name: &str, ours: &RgbImage, want: &RgbImage) -> usize {
        assert_eq!(
            (ours.width, ours.height),
            (want.width, want.height),
            "{name}"
        );
        let diffs: Vec<u8> = ours
            .data
            .iter()
            .zip(&want.data)
            .map(|(a, b)| a.abs_diff(*b))
            .collect();
        let worst = diffs.iter().copied().max().unwrap_or(0);
        assert!(worst <= 1, "{name}: max difference {worst}");
        let differing = diffs.iter().filter(|&&d| d > 0).count();
        assert!(
            differing * 100 <= diffs.len(),
            "{name}: {differing} of {} values differ",
            diffs.len()
        );
        differing
    }

    #[test]
    fn the_random_annotator_checkpoints_are_the_ones_the_fixtures_were_made_from() {
        let cases = json("annotators/cases.json");
        let (midas, normal) = checkpoints();
        for (file, key) in [(midas, "midas_sha256"), (normal, "normalbae_sha256")] {
            let bytes = std::fs::read(file).unwrap();
            assert_eq!(
                hex(&Sha256::digest(&bytes)),
                cases[key].as_str().unwrap(),
                "{key}"
            );
        }
    }

    #[test]
    fn midas_depth_matches_controlnet_aux() {
        let midas = Midas::load(&checkpoints().0, Device::Cpu).unwrap();
        for name in IMAGES {
            let image = png(&fixture(&format!("annotators/{name}.png")));
            let x = nicheimage_engine::image::pixels(&image) / 127.5 - 1.0;
            let depth = to_vec(&tch::no_grad(|| midas.depth(&x)));
            let want = raw(&format!("annotators/{name}_depth.f32"));
            assert_eq!(depth.len(), want.len(), "{name}: depth size");
            assert_close(&format!("{name}: raw depth"), &depth, &want, 1e-4);
            let ours = midas.annotate(&image).unwrap();
            let want = png(&fixture(&format!("annotators/{name}_depth.png")));
            let differing = assert_map(&format!("{name}: depth map"), &ours, &want);
            eprintln!(
                "{name}: depth max diff {}, {differing} values off by 1",
                max_abs_diff(&depth, &raw(&format!("annotators/{name}_depth.f32")))
            );
        }
    }

    #[test]
    fn normalbae_normals_match_controlnet_aux() {
        let net = NormalBae::load(&checkpoints().1, Device::Cpu).unwrap();
        for name in IMAGES {
            let image = png(&fixture(&format!("annotators/{name}.png")));
            let ours = net.annotate(&image).unwrap();
            let want = png(&fixture(&format!("annotators/{name}_normal.png")));
            let differing = assert_map(&format!("{name}: normal map"), &ours, &want);
            eprintln!("{name}: normal map {differing} values off by 1");
        }
    }

    #[test]
    fn annotators_refuse_sizes_their_networks_cannot_take() {
        let midas = Midas::load(&checkpoints().0, Device::Cpu).unwrap();
        let image = RgbImage::new(100, 64, vec![0; 100 * 64 * 3]).unwrap();
        let err = midas.annotate(&image).unwrap_err().to_string();
        assert!(
            err.contains("multiples of 32") && err.contains("100x64"),
            "{err}"
        );
    }

    #[test]
    fn missing_annotator_checkpoints_say_what_to_download() {
        let tmp = tempfile::tempdir().unwrap();
        let err = Midas::load(
            &tmp.path().join("dpt_hybrid-midas-501f0c75.pt"),
            Device::Cpu,
        )
        .err()
        .unwrap();
        assert!(matches!(err, AnnotatorError::Missing { .. }));
        let text = err.to_string();
        assert!(
            text.contains("huggingface.co/lllyasviel/Annotators") && text.contains("dpt_hybrid"),
            "{text}"
        );
        let err = NormalBae::load(&tmp.path().join("scannet.pt"), Device::Cpu)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("scannet.pt"), "{err}");
        // A checkpoint of the wrong network names what does not fit.
        let err = NormalBae::load(&checkpoints().0, Device::Cpu)
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("missing") && err.contains("encoder.original_model"),
            "{err}"
        );
    }

    #[test]
    fn torch_save_files_read_back_with_their_values() {
        let want = json("annotators/state.json");
        let tensors: std::collections::HashMap<String, Tensor> =
            read_torch_file(&fixture("annotators/state.pt"))
                .unwrap()
                .into_iter()
                .collect();
        let want = want.as_object().unwrap();
        assert_eq!(
            tensors.len(),
            want.len(),
            "only the state dict's tensors: {:?}",
            tensors.keys()
        );
        for (name, case) in want {
            let t = &tensors[&format!("model.{name}")];
            let shape: Vec<i64> = case["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_i64().unwrap())
                .collect();
            assert_eq!(t.size(), shape, "{name}");
            let got: Vec<f64> = Vec::try_from(t.to_kind(Kind::Double).flatten(0, -1)).unwrap();
            let values: Vec<f64> = case["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect();
            assert_eq!(got, values, "{name}");
        }
        // The loader takes the state dict out of its `model`/`module.` wrapping.
        use nicheimage_engine::weights::Weights;
        let w = Weights::from_checkpoint(
            "state",
            &fixture("annotators/state.pt"),
            &["model.module."],
            Kind::Float,
            Device::Cpu,
        )
        .unwrap();
        let t = w.root().at("conv").get("weight", &[4, 6]);
        let unused = w.finish().unwrap();
        assert_eq!(t.double_value(&[1, 2]), 8.0 / 8.0 - 1.0);
        assert!(unused.contains(&"view.weight".to_string()), "{unused:?}");
    }
}

#[test]
fn the_annotators_parameter_constants_match_their_architectures() {
    use nicheimage_engine::annotator::{midas, normalbae};
    use nicheimage_engine::weights::Weights;
    let count = |build: &dyn Fn(&Weights)| {
        let w = Weights::shapes("annotator");
        build(&w);
        w.created()
            .iter()
            .map(|(_, t)| t.numel() as u64)
            .sum::<u64>()
    };
    let m = count(&|w| {
        midas::Midas::build(&w.root(), Device::Cpu);
    });
    let n = count(&|w| {
        normalbae::NormalBae::build(&w.root(), Device::Cpu);
    });
    assert_eq!(n, normalbae::PARAMETERS);
    assert_eq!(m, midas::PARAMETERS, "MiDaS");
}
