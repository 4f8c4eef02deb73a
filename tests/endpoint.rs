//! The generation endpoint as NicheImage's miner calls it: the real binary on loopback, two
//! replica processes serving the tiny checkpoint.
#![cfg(feature = "local-infer")]

use nicheimage_common::image::RgbImage;
use nicheimage_engine::pipeline::{Img2Img, StableDiffusion, Txt2Img};
use nicheimage_engine::tiny::write_tiny_sd15;
use serde_json::{Value, json};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// These tests start several processes each; on a 2-core CI machine they run one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

mod common;
use common::free_port;

struct Node {
    child: Child,
    base: String,
    health: String,
    client: reqwest::Client,
}

impl Drop for Node {
    fn drop(&mut self) {
        // SAFETY: signalling our own child; SIGTERM lets it stop its replicas.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Node {
    async fn start(dir: &Path, replicas: u32, queue: usize) -> Node {
        let checkpoint = write_tiny_sd15(dir, "tiny-sd15").unwrap();
        let model = format!("arch = \"sd15\"\ncheckpoint = \"{}\"", checkpoint.display());
        Node::start_with(dir, replicas, queue, &model, "").await
    }

    /// `model` is the `[models.Tiny]` lines that say which architecture and where the
    /// checkpoint comes from.
    /// `endpoint` adds lines to the `[endpoint]` table.
    async fn start_with(
        dir: &Path,
        replicas: u32,
        queue: usize,
        model: &str,
        endpoint: &str,
    ) -> Node {
        let node = Node::spawn_with(dir, replicas, queue, model, endpoint);
        node.until("every replica ready", |h| {
            let r = h["replicas"]
                .as_object()
                .map(|m| m.values().filter(|r| r["status"] == "ready").count());
            r.is_some_and(|n| n >= replicas as usize)
        })
        .await;
        node
    }

    /// [`Node::start_with`] without waiting for the replicas.
    fn spawn_with(dir: &Path, replicas: u32, queue: usize, model: &str, endpoint: &str) -> Node {
        let (port, metrics) = (free_port(), free_port());
        let config = dir.join("config.toml");
        std::fs::write(
            &config,
            format!(
                r#"[node]
device = "cpu"
[metrics]
listen = "127.0.0.1:{metrics}"
[supervisor]
backoff_initial_ms = 200
backoff_max_ms = 1000
[endpoint]
model_name = "Tiny"
host = "127.0.0.1"
port = {port}
num_replicas = {replicas}
queue_capacity = {queue}
request_timeout_secs = 60
{endpoint}
[models.Tiny]
{model}
scheduler = "dpm++2m_karras"
[models.Tiny.defaults]
num_inference_steps = 4
width = 64
height = 64
"#
            ),
        )
        .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_nicheimage-tui"))
            .args(["endpoint", "--config"])
            .arg(&config)
            .arg("--data-dir")
            .arg(dir.join("data"))
            .env("XDG_CONFIG_HOME", dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Node {
            child,
            base: format!("http://127.0.0.1:{port}"),
            health: format!("http://127.0.0.1:{metrics}/healthz"),
            client: nicheimage_common::http::client().unwrap(),
        }
    }

    async fn health(&self) -> Value {
        match self.client.get(&self.health).send().await {
            Ok(r) => r.json().await.unwrap_or(Value::Null),
            Err(_) => Value::Null,
        }
    }

    async fn until(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let h = self.health().await;
            if pred(&h) {
                return h;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {h}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn generate(&self, body: Value) -> (u16, Value) {
        let r = self
            .client
            .post(format!("{}/generate", self.base))
            .json(&body)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }
}

/// The `[models.Tiny]` lines for the tiny SD 1.5 serving txt2img and `pipeline`.
fn sd15_model(checkpoint: &Path, pipeline: &str, condition_resolution: Option<u32>) -> String {
    let mut lines = format!(
        "arch = \"sd15\"\ncheckpoint = \"{}\"\npipelines = [\"txt2img\", \"{pipeline}\"]",
        checkpoint.display()
    );
    if let Some(r) = condition_resolution {
        lines.push_str(&format!("\ncondition_resolution = {r}"));
    }
    lines
}

/// A 90 × 60 photo-like conditional image.
fn photo_90x60() -> RgbImage {
    RgbImage::new(
        90,
        60,
        (0..90 * 60 * 3).map(|i| ((i * 37) % 251) as u8).collect(),
    )
    .unwrap()
}

/// The reason in an error answer (`{"detail": ...}`, NicheImage's FastAPI shape).
fn detail(body: &Value) -> &str {
    body["detail"].as_str().unwrap_or_default()
}

/// What the engine makes in-process for `txt2img(seed, 64, 4)` with the test model's defaults.
fn direct(sd: &StableDiffusion, seed: u64) -> RgbImage {
    let req = Txt2Img {
        prompt: "a photo of a cat".into(),
        negative_prompt: None,
        seed,
        num_inference_steps: 4,
        guidance_scale: 7.5,
        width: 64,
        height: 64,
        scheduler: "dpm++2m_karras".parse().unwrap(),
    };
    sd.txt2img(&req, false).unwrap().image
}

/// Runs `f` with libtorch's CPU threads as one of `replicas` replicas gets them: the thread
/// count changes a CPU image's low bits.
fn as_one_of<T>(replicas: usize, f: impl FnOnce() -> T) -> T {
    let Some(n) = nicheimage_node::replica::cpu_threads_per_replica(replicas) else {
        return f();
    };
    let before = tch::get_num_threads();
    tch::set_num_threads(n as i32);
    let out = f();
    tch::set_num_threads(before);
    out
}

fn txt2img(seed: u64, size: u32, steps: u32) -> Value {
    json!({"prompt": "a photo of a cat", "seed": seed, "pipeline_type": "txt2img",
           "pipeline_params": {"num_inference_steps": steps, "width": size, "height": size},
           "model_name": "", "request_dict": {}, "image": ""})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn contract_concurrency_and_errors() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), 2, 8).await;

    let info: Value = node
        .client
        .get(format!("{}/info", node.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info, json!({"model_name": "Tiny"}));

    // The image is exactly what the engine makes for the same request (defaults filled in).
    let (status, body) = node
        .generate(json!({"prompt": "a photo of a cat", "seed": 1234, "pipeline_type": "txt2img"}))
        .await;
    assert_eq!(status, 200, "{body}");
    let image = RgbImage::from_base64_png(body["image"].as_str().unwrap()).unwrap();
    let sd = StableDiffusion::load(
        &dir.path().join("tiny-sd15.safetensors"),
        None,
        tch::Device::Cpu,
        tch::Kind::Float,
    )
    .unwrap();
    let expected = as_one_of(2, || direct(&sd, 1234));
    assert_eq!(image, expected);

    // Bad input: 400 with a reason.
    for (body, reason) in [
        (
            json!({"prompt": "a", "seed": 1, "pipeline_type": "inpaint"}),
            "unknown pipeline_type",
        ),
        (txt2img(1, 64, 51), "above the limit of 50"),
        (txt2img(1, 60, 4), "multiple of 8"),
        (json!({"prompt": "a", "pipeline_type": "txt2img"}), "seed"),
    ] {
        let (status, answer) = node.generate(body).await;
        assert_eq!(status, 400, "{answer}");
        assert!(
            answer["detail"].as_str().unwrap().contains(reason),
            "{answer}"
        );
    }
    let r = node
        .client
        .post(format!("{}/generate", node.base))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = node
        .client
        .get(format!("{}/nope", node.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    // Concurrent requests are spread over both replicas.
    let all = futures::future::join_all((0..6).map(|s| node.generate(txt2img(s, 64, 4)))).await;
    assert!(all.iter().all(|(status, _)| *status == 200), "{all:?}");
    let h = node.health().await;
    let served: Vec<u64> = h["replicas"]
        .as_object()
        .unwrap()
        .values()
        .map(|r| r["served"].as_u64().unwrap())
        .collect();
    assert!(
        served.iter().all(|&n| n >= 1),
        "both replicas served: {served:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_replica_fails_its_request_at_once_and_comes_back() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), 1, 4).await;
    let slow = tokio::spawn({
        let client = node.client.clone();
        let url = format!("{}/generate", node.base);
        async move {
            let r = client
                .post(url)
                .json(&txt2img(9, 256, 20))
                .send()
                .await
                .unwrap();
            (
                r.status().as_u16(),
                r.json::<Value>().await.unwrap(),
                Instant::now(),
            )
        }
    });
    let h = node
        .until("the replica busy", |h| {
            h["replicas"]["0"]["status"] == "busy"
        })
        .await;
    let pid = h["replicas"]["0"]["pid"].as_i64().unwrap() as i32;
    // SAFETY: killing the replica process our node started.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let killed = Instant::now();
    let (status, body, answered) = slow.await.unwrap();
    assert_eq!(status, 503, "{body}");
    assert!(detail(&body).contains("died"), "{body}");
    assert!(
        answered.duration_since(killed) < Duration::from_secs(1),
        "answered within a second"
    );

    let h = node
        .until("the replica back", |h| {
            h["replicas"]["0"]["status"] == "ready" && h["replicas"]["0"]["restarts"] == 1
        })
        .await;
    assert!(
        h["replicas"]["0"]["last_error"]
            .as_str()
            .unwrap()
            .contains("signal 9"),
        "{h}"
    );
    let (status, _) = node.generate(txt2img(3, 64, 4)).await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_request_at_start_up_waits_for_a_replica_instead_of_a_503() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = write_tiny_sd15(dir.path(), "tiny-sd15").unwrap();
    let model = format!("arch = \"sd15\"\ncheckpoint = \"{}\"", checkpoint.display());
    let node = Node::spawn_with(dir.path(), 1, 4, &model, "");
    // The first moment /info answers, while the replica is still loading.
    let info = format!("{}/info", node.base);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !node
        .client
        .get(&info)
        .send()
        .await
        .is_ok_and(|r| r.status() == 200)
    {
        assert!(Instant::now() < deadline, "/info never answered");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let loading = node.health().await;
    let (status, body) = node.generate(txt2img(5, 64, 4)).await;
    assert_eq!(
        status, 200,
        "{body} (replicas at /info's first answer: {loading})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_queue_is_refused_with_503() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().unwrap();
    // One replica, one queue place: while a long job runs, one more waits and the rest are
    // refused at once. The long job goes first and the test waits until the replica has taken
    // it, so the outcome does not depend on how fast the machine is.
    let node = Node::start(dir.path(), 1, 1).await;
    let long = node.generate(txt2img(100, 256, 30));
    let busy = node.until("the replica busy", |h| {
        h["replicas"]["0"]["status"] == "busy"
    });
    let ((long_status, long_body), _) = tokio::join!(long, async {
        busy.await;
        let all = futures::future::join_all((0..3).map(|s| node.generate(txt2img(s, 64, 4)))).await;
        let ok = all.iter().filter(|(s, _)| *s == 200).count();
        let full = all
            .iter()
            .filter(|(s, b)| {
                *s == 503 && b["detail"].as_str().unwrap_or("").contains("queue is full")
            })
            .count();
        assert_eq!((ok, full), (1, 2), "{all:?}");
    });
    assert_eq!(long_status, 200, "{long_body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_missing_checkpoint_is_downloaded_verified_and_served() {
    let _serial = SERIAL.lock().await;
    use sha2::{Digest, Sha256};
    use warp::Filter;
    let dir = tempfile::tempdir().unwrap();
    let made = write_tiny_sd15(&dir.path().join("made"), "tiny-sd15").unwrap();
    let bytes = std::fs::read(&made).unwrap();
    let sha = nicheimage_node::download::hex(&Sha256::digest(&bytes));
    // The architecture folder goes beside where the file will land.
    let checkpoints = dir.path().join("data/checkpoints");
    std::fs::create_dir_all(&checkpoints).unwrap();
    std::fs::rename(
        dir.path().join("made/tiny-sd15"),
        checkpoints.join("tiny-dl"),
    )
    .unwrap();
    let route = warp::path!("tiny.safetensors").map(move || bytes.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/tiny.safetensors", listener.local_addr().unwrap());
    tokio::spawn(warp::serve(route).incoming(listener).run());

    let model = format!(
        "arch = \"sd15\"\ncheckpoint = \"tiny-dl.safetensors\"\ndownload_url = \"{url}\"\nsha256 = \"{sha}\""
    );
    let node = Node::start_with(dir.path(), 1, 4, &model, "").await;
    let h = node.health().await;
    assert_eq!(h["status"], "ok");
    let (status, body) = node.generate(txt2img(5, 64, 4)).await;
    assert_eq!(status, 200, "{body}");
    assert!(checkpoints.join("tiny-dl.safetensors").is_file());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_remote_endpoint_serves_as_a_replica() {
    let _serial = SERIAL.lock().await;
    let dir_a = tempfile::tempdir().unwrap();
    let a = Node::start(dir_a.path(), 1, 4).await;
    let dir_b = tempfile::tempdir().unwrap();
    let remote = format!("remote_endpoints = [\"{}\"]", a.base);
    let b = Node::start_with(
        dir_b.path(),
        0,
        4,
        "arch = \"sd15\"\ncheckpoint = \"absent.safetensors\"",
        &remote,
    )
    .await;
    let h = b
        .until("the remote replica ready", |h| {
            h["replicas"]["1000"]["status"] == "ready"
        })
        .await;
    assert_eq!(h["replicas"]["1000"]["remote"], a.base.as_str());

    let (status, through_b) = b.generate(txt2img(11, 64, 4)).await;
    assert_eq!(status, 200, "{through_b}");
    let (_, direct) = a.generate(txt2img(11, 64, 4)).await;
    assert_eq!(through_b["image"], direct["image"]);

    drop(a);
    let (status, body) = b.generate(txt2img(12, 64, 4)).await;
    assert_eq!(status, 503, "{body}");
    b.until("the remote replica down", |h| {
        h["replicas"]["1000"]["status"] == "dead"
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn img2img_resizes_the_conditional_image_and_matches_the_engine() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = write_tiny_sd15(dir.path(), "tiny-sd15").unwrap();
    let model = sd15_model(&checkpoint, "img2img", Some(64));
    let node = Node::start_with(dir.path(), 1, 4, &model, "").await;
    let photo = photo_90x60();
    let (status, body) = node
        .generate(
            json!({"prompt": "a harbour", "seed": 8, "pipeline_type": "img2img",
                         "conditional_image": photo.to_base64_png().unwrap(),
                         "pipeline_params": {"strength": 0.6, "num_inference_steps": 5}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let image = RgbImage::from_base64_png(body["image"].as_str().unwrap()).unwrap();
    // Short side 60 → 64; 90 × 64/60 = 96 = 1.5 × 64, which Python rounds to 2 × 64.
    assert_eq!((image.width, image.height), (128, 64));
    let sd = StableDiffusion::load(&checkpoint, None, tch::Device::Cpu, tch::Kind::Float).unwrap();
    let expected = sd
        .img2img(
            &Img2Img {
                base: Txt2Img {
                    prompt: "a harbour".into(),
                    negative_prompt: None,
                    seed: 8,
                    num_inference_steps: 5,
                    guidance_scale: 7.5,
                    width: 0,
                    height: 0,
                    scheduler: "dpm++2m_karras".parse().unwrap(),
                },
                image: photo.resized_for_condition(64).unwrap(),
                strength: 0.6,
            },
            false,
        )
        .unwrap()
        .image;
    assert_eq!(image, expected);

    let (status, body) = node
        .generate(json!({"prompt": "a", "seed": 1, "pipeline_type": "img2img",
                         "conditional_image": "not base64!"}))
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(detail(&body).contains("conditional_image"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_sdxl_model_is_served_and_matches_the_engine() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = nicheimage_engine::tiny::write_tiny_sdxl(dir.path(), "tiny-sdxl").unwrap();
    let model = format!("arch = \"sdxl\"\ncheckpoint = \"{}\"", checkpoint.display());
    let node = Node::start_with(dir.path(), 1, 4, &model, "").await;
    let (status, body) = node.generate(txt2img(77, 64, 4)).await;
    assert_eq!(status, 200, "{body}");
    let image = RgbImage::from_base64_png(body["image"].as_str().unwrap()).unwrap();
    let sd = StableDiffusion::load(&checkpoint, None, tch::Device::Cpu, tch::Kind::Float).unwrap();
    let expected = direct(&sd, 77);
    assert_eq!(image, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_nsfw_classifier_filters_what_the_endpoint_sends() {
    use nicheimage_engine::nsfw::NsfwFilter;
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let classifier = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/nsfw_vit/model");
    let checkpoint = write_tiny_sd15(dir.path(), "tiny-sd15").unwrap();
    let model = format!("arch = \"sd15\"\ncheckpoint = \"{}\"", checkpoint.display());
    let endpoint = format!("nsfw_classifier = \"{}\"", classifier.display());
    let node = Node::start_with(dir.path(), 1, 4, &model, &endpoint).await;
    let sd = StableDiffusion::load(&checkpoint, None, tch::Device::Cpu, tch::Kind::Float).unwrap();
    let filter = NsfwFilter::load(&classifier, tch::Device::Cpu).unwrap();
    let mut verdicts = Vec::new();
    for seed in 0..4u64 {
        let (status, body) = node.generate(txt2img(seed, 64, 4)).await;
        assert_eq!(status, 200, "{body}");
        let served = RgbImage::from_base64_png(body["image"].as_str().unwrap()).unwrap();
        let expected = direct(&sd, seed);
        let verdict = filter.apply(expected);
        assert_eq!(served, verdict.image, "seed {seed}");
        verdicts.push(verdict.blanked);
    }
    let blanked = verdicts.iter().filter(|b| **b).count() as u64;
    node.until("the replica's NSFW count", |h| {
        h["replicas"]["0"]["nsfw_blanked"].as_u64() == Some(blanked)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn controlnet_txt2img_annotates_steers_and_matches_the_engine() {
    use nicheimage_engine::multi_controlnet::MultiControlNet;
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = write_tiny_sd15(dir.path(), "tiny-sd15").unwrap();
    let controls = dir.path().join("controlnet");
    nicheimage_engine::tiny::write_tiny_multi_controlnet(&controls).unwrap();
    let model = sd15_model(&checkpoint, "controlnet_txt2img", Some(64));
    let endpoint = format!("controlnet_dir = \"{}\"", controls.display());
    let node = Node::start_with(dir.path(), 1, 4, &model, &endpoint).await;
    let photo = photo_90x60();
    let (status, body) = node
        .generate(
            json!({"prompt": "a harbour", "seed": 9, "pipeline_type": "controlnet_txt2img",
                         "conditional_image": photo.to_base64_png().unwrap(),
                         "pipeline_params": {"controlnet_conditioning_scale": [1.0, 0.8, 0.6]}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let served = RgbImage::from_base64_png(body["image"].as_str().unwrap()).unwrap();
    let sd = StableDiffusion::load(&checkpoint, None, tch::Device::Cpu, tch::Kind::Float).unwrap();
    let nets = MultiControlNet::load(&controls, tch::Device::Cpu, tch::Kind::Float).unwrap();
    // No size asked: the conditioned image's (96 → 128 × 64), as diffusers does.
    let req = Txt2Img {
        prompt: "a harbour".into(),
        negative_prompt: None,
        seed: 9,
        num_inference_steps: 4,
        guidance_scale: 7.5,
        width: 128,
        height: 64,
        scheduler: "dpm++2m_karras".parse().unwrap(),
    };
    let conditioned = photo.resized_for_condition(64).unwrap();
    let expected = nets
        .generate(&sd, &req, &conditioned, [1.0, 0.8, 0.6])
        .unwrap()
        .image;
    assert_eq!(served, expected);
    // The nets steer: the same request without them draws something else.
    assert_ne!(served, direct_with(&sd, &req));
}

/// txt2img in-process for an explicit request.
fn direct_with(sd: &StableDiffusion, req: &Txt2Img) -> RgbImage {
    sd.txt2img(req, false).unwrap().image
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_its_files_controlnet_is_dropped_and_the_rest_is_served() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = write_tiny_sd15(dir.path(), "tiny-sd15").unwrap();
    let model = sd15_model(&checkpoint, "controlnet_txt2img", None);
    let endpoint = format!(
        "controlnet_dir = \"{}\"",
        dir.path().join("nothing-here").display()
    );
    let node = Node::start_with(dir.path(), 1, 4, &model, &endpoint).await;
    let (status, body) = node.generate(txt2img(3, 64, 4)).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = node
        .generate(
            json!({"prompt": "a", "seed": 1, "pipeline_type": "controlnet_txt2img",
                         "conditional_image": "x"}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        detail(&body).contains("does not serve controlnet_txt2img"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_broken_annotator_file_costs_only_the_controlnet_pipeline() {
    use nicheimage_engine::multi_controlnet::NETS;
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = write_tiny_sd15(dir.path(), "tiny-sd15").unwrap();
    let controls = dir.path().join("controlnet");
    for (i, (name, _)) in NETS.iter().enumerate() {
        nicheimage_engine::tiny::write_tiny_controlnet(&controls.join(name), i as i64).unwrap();
    }
    // Present, so the node offers the pipeline, but not loadable: an HTML page and a cut-off zip.
    std::fs::write(
        controls.join("dpt_hybrid-midas-501f0c75.pt"),
        "<html>404</html>",
    )
    .unwrap();
    std::fs::write(controls.join("scannet.pt"), b"PK\x03\x04cut").unwrap();
    let model = sd15_model(&checkpoint, "controlnet_txt2img", Some(64));
    let endpoint = format!("controlnet_dir = \"{}\"", controls.display());
    let node = Node::start_with(dir.path(), 1, 4, &model, &endpoint).await;
    let (status, body) = node.generate(txt2img(5, 64, 4)).await;
    assert_eq!(status, 200, "{body}");
    let photo = RgbImage::new(64, 64, vec![90; 64 * 64 * 3]).unwrap();
    let (status, body) = node
        .generate(
            json!({"prompt": "a", "seed": 1, "pipeline_type": "controlnet_txt2img",
                         "conditional_image": photo.to_base64_png().unwrap()}),
        )
        .await;
    assert_eq!(status, 500, "{body}");
    let reason = detail(&body);
    assert!(
        reason.contains("controlnet_txt2img unavailable") && reason.contains("HTML page"),
        "{body}"
    );
}
