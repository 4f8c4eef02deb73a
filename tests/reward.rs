//! The reward service on loopback, as the network uses it: a miner's endpoint makes images, the
//! reward service regenerates the reference from the same request and judges each miner's image.
//! Both are the real binary with the tiny SD 1.5 model on CPU.
#![cfg(feature = "local-infer")]

mod common;

use common::free_port;
use nicheimage_common::image::RgbImage;
use nicheimage_engine::tiny::write_tiny_sd15;
use serde_json::{Value, json};
use std::path::Path;

fn model_config(checkpoint: &Path) -> String {
    format!(
        "[models.Tiny]\narch = \"sd15\"\ncheckpoint = \"{}\"\nscheduler = \"dpm++2m_karras\"\n\
         [models.Tiny.defaults]\nnum_inference_steps = 4\nwidth = 64\nheight = 64\n",
        checkpoint.display()
    )
}

fn request(seed: u64) -> Value {
    json!({
        "prompt": "a red bicycle by the sea",
        "seed": seed,
        "pipeline_type": "txt2img",
        "pipeline_params": {"num_inference_steps": 4, "width": 64, "height": 64},
    })
}

use common::post_when_ready as until_ok;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn miners_are_judged_against_the_regenerated_reference() {
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = write_tiny_sd15(&dir.path().join("model"), "tiny-sd15").unwrap();
    let (endpoint_port, reward_port) = (free_port(), free_port());
    let miner_dir = dir.path().join("miner");
    let reward_dir = dir.path().join("reward");
    std::fs::create_dir_all(&miner_dir).unwrap();
    std::fs::create_dir_all(&reward_dir).unwrap();
    let common_config = format!(
        "[node]\nstatus_interval_secs = 1\ndevice = \"cpu\"\n[metrics]\nenabled = false\n{}",
        model_config(&checkpoint)
    );
    let endpoint = common::start(
        &miner_dir,
        &["endpoint"],
        &format!(
            "{common_config}[endpoint]\nmodel_name = \"Tiny\"\nhost = \"127.0.0.1\"\nport = {endpoint_port}\nnum_replicas = 1\n"
        ),
    );
    let reward = common::start(
        &reward_dir,
        &["reward", "--disable_secure"],
        &format!(
            "{common_config}[reward]\nmodel_name = \"Tiny\"\nport = {reward_port}\nrate_limit_per_minute = 3\n"
        ),
    );
    let client = nicheimage_common::http::client().unwrap();
    let generate = format!("http://127.0.0.1:{endpoint_port}/generate");
    let image = |r: Value| r["image"].as_str().unwrap().to_string();
    let honest = image(
        until_ok(&client, &generate, &request(7))
            .await
            .json()
            .await
            .unwrap(),
    );
    let other_seed = image(
        until_ok(&client, &generate, &request(8))
            .await
            .json()
            .await
            .unwrap(),
    );
    let black = RgbImage::new(64, 64, vec![0; 64 * 64 * 3])
        .unwrap()
        .to_base64_png()
        .unwrap();

    let mut base = request(7);
    base["image"] = json!("");
    let miner = |image: &str| {
        let mut m = request(7);
        m["image"] = json!(image);
        m
    };
    let batch = json!({
        "base_data": base,
        "miner_data": [miner(&honest), miner(&other_seed), miner(&black), miner(""), miner("not a png")],
    });
    let url = format!("http://127.0.0.1:{reward_port}/");
    let answer: Value = until_ok(&client, &url, &batch).await.json().await.unwrap();
    let rewards: Vec<f64> = answer["rewards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_f64().unwrap())
        .collect();
    assert_eq!(rewards[0], 1.0, "{answer}");
    assert_eq!(&rewards[1..], &[0.0, 0.0, 0.0, 0.0], "{answer}");
    let reasons = answer["reasons"].as_array().unwrap();
    assert!(
        reasons[0].as_str().unwrap().contains("hash distance 0"),
        "{answer}"
    );
    assert!(reasons[2].as_str().unwrap().contains("black"), "{answer}");

    // Bad input is a 400 with the reason; the fourth request in a minute is a 429.
    let bad = client
        .post(&url)
        .json(&json!({"miner_data": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let third = client.post(&url).json(&batch).send().await.unwrap();
    assert_eq!(third.status(), 200);
    let fourth = client.post(&url).json(&batch).send().await.unwrap();
    assert_eq!(fourth.status(), 429);

    let v = reward.status_where("the reward counters", |v| {
        v["reward"]["responses"]["429"] == 1
    });
    assert_eq!(v["reward"]["verdicts"]["match"], 2);
    assert_eq!(v["reward"]["secure"], false);
    for node in [reward, endpoint] {
        let (status, _) = node.terminate();
        assert!(status.success());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reward_service_draws_conditional_images_for_the_image_challenge() {
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = write_tiny_sd15(&dir.path().join("model"), "tiny-sd15").unwrap();
    let port = free_port();
    let reward = common::start(
        dir.path(),
        &["reward", "--disable_secure"],
        &format!(
            "[node]\nstatus_interval_secs = 1\ndevice = \"cpu\"\n[metrics]\nenabled = false\n{}[reward]\nmodel_name = \"Tiny\"\nport = {port}\n",
            model_config(&checkpoint)
        ),
    );
    let client = nicheimage_common::http::client().unwrap();
    let url = format!("http://127.0.0.1:{port}/challenge/image");
    let ask = json!({"prompt": "a lighthouse", "seed": 5});
    let first: Value = until_ok(&client, &url, &ask).await.json().await.unwrap();
    let image = first["conditional_image"].as_str().unwrap();
    let decoded = RgbImage::from_base64_png(image).unwrap();
    assert_eq!((decoded.width, decoded.height), (64, 64));
    // Seeded: the same request draws the same image.
    let again: Value = client
        .post(&url)
        .json(&ask)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(again["conditional_image"], first["conditional_image"]);

    // A miner may answer with a JPEG, as NicheImage's judge (PIL) opens any format: the same
    // picture as JPEG matches the reference drawn from the same request.
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 95)
        .encode(&decoded.data, 64, 64, image::ExtendedColorType::Rgb8)
        .unwrap();
    use base64::Engine;
    let batch = json!({
        "miner_data": [{"image": base64::engine::general_purpose::STANDARD.encode(&jpeg)}],
        "base_data": {"prompt": "a lighthouse", "seed": 5, "pipeline_type": "txt2img",
                      "pipeline_params": {"negative_prompt": "bad image, low quality, blurry"}},
    });
    let judged: Value = client
        .post(format!("http://127.0.0.1:{port}/"))
        .json(&batch)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(judged["rewards"][0], 1.0, "{judged}");

    let no_prompt = client
        .post(&url)
        .json(&json!({"seed": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(no_prompt.status(), 400);
    let elsewhere = client
        .post(format!("http://127.0.0.1:{port}/nothing"))
        .json(&ask)
        .send()
        .await
        .unwrap();
    assert_eq!(elsewhere.status(), 404);
    assert!(reward.terminate().0.success());
}

/// The start-up race: a `/generate` and a reward batch sent the moment each listener first
/// answers (`/info`; the reward port accepting), while the replicas still load, both wait for
/// a replica and succeed instead of a 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_sent_the_moment_the_listeners_answer_waits_for_the_replicas() {
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = write_tiny_sd15(&dir.path().join("model"), "tiny-sd15").unwrap();
    let (endpoint_port, reward_port) = (free_port(), free_port());
    let (miner_dir, reward_dir) = (dir.path().join("miner"), dir.path().join("reward"));
    std::fs::create_dir_all(&miner_dir).unwrap();
    std::fs::create_dir_all(&reward_dir).unwrap();
    let common_config = format!(
        "[node]\nstatus_interval_secs = 1\ndevice = \"cpu\"\n[metrics]\nenabled = false\n{}",
        model_config(&checkpoint)
    );
    let endpoint = common::start(
        &miner_dir,
        &["endpoint"],
        &format!(
            "{common_config}[endpoint]\nmodel_name = \"Tiny\"\nhost = \"127.0.0.1\"\nport = {endpoint_port}\nnum_replicas = 1\n"
        ),
    );
    let reward = common::start(
        &reward_dir,
        &["reward", "--disable_secure"],
        &format!("{common_config}[reward]\nmodel_name = \"Tiny\"\nport = {reward_port}\n"),
    );
    let client = nicheimage_common::http::client().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let info = format!("http://127.0.0.1:{endpoint_port}/info");
    while !client
        .get(&info)
        .send()
        .await
        .is_ok_and(|r| r.status() == 200)
    {
        assert!(std::time::Instant::now() < deadline, "/info never answered");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let generated = client
        .post(format!("http://127.0.0.1:{endpoint_port}/generate"))
        .json(&request(3))
        .send();
    while tokio::net::TcpStream::connect(("127.0.0.1", reward_port))
        .await
        .is_err()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the reward port never opened"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let mut base = request(3);
    base["image"] = json!("");
    let mut miner = request(3);
    miner["image"] = json!("");
    let batch = json!({"base_data": base, "miner_data": [miner]});
    let judged = client
        .post(format!("http://127.0.0.1:{reward_port}/"))
        .json(&batch)
        .send();
    let (generated, judged) = tokio::join!(generated, judged);
    let (generated, judged) = (generated.unwrap(), judged.unwrap());
    assert_eq!(generated.status(), 200, "{:?}", generated.text().await);
    assert_eq!(judged.status(), 200, "{:?}", judged.text().await);
    for node in [reward, endpoint] {
        node.terminate();
    }
}
