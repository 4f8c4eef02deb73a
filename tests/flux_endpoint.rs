//! FLUX.1-schnell served: the endpoint (replica process, NicheImage's JSON) answers the tiny FLUX
//! folders diffusers 0.42.1 saved (scripts/parity/flux.sh) with diffusers' own images, and
//! refuses what FLUX cannot serve with the reason.
#![cfg(feature = "local-infer")]

mod common;

use nicheimage_common::image::RgbImage;
use nicheimage_common::imagehash::{Difference, difference};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_endpoint_serves_flux_as_diffusers_draws_it() {
    let Some(dir) = nicheimage_test_support::generated("flux", "NICHEIMAGE_PARITY_FLUX") else {
        return;
    };
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
    let client = nicheimage_common::http::client().unwrap();
    let (mut served, mut worst) = (0, 0u8);
    for case in manifest["cases"].as_array().unwrap().iter().take(2) {
        let name = case["name"].as_str().unwrap();
        let home = tempfile::tempdir().unwrap();
        let port = common::free_port();
        let node = common::start(
            home.path(),
            &["endpoint"],
            &format!(
                "[node]\nstatus_interval_secs = 1\ndevice = \"cpu\"\n[metrics]\nenabled = false\n\
                 [models.TinyFlux]\narch = \"flux\"\ncheckpoint = \"{}\"\nnsfw_filter = false\n\
                 [models.TinyFlux.defaults]\nnum_inference_steps = 4\nguidance_scale = 0.0\n\
                 [endpoint]\nmodel_name = \"TinyFlux\"\nhost = \"127.0.0.1\"\nport = {port}\nnum_replicas = 1\n",
                dir.join("folders").join(name).display()
            ),
        );
        let url = format!("http://127.0.0.1:{port}/generate");
        for (i, r) in case["requests"].as_array().unwrap().iter().enumerate() {
            let body = json!({
                "prompt": r["prompt"],
                "seed": r["seed"],
                "pipeline_type": "txt2img",
                "pipeline_params": {
                    "num_inference_steps": r["steps"],
                    "width": r["width"],
                    "height": r["height"],
                },
            });
            let answer: Value = common::post_when_ready(&client, &url, &body)
                .await
                .json()
                .await
                .unwrap();
            let ours = RgbImage::from_base64_png(answer["image"].as_str().unwrap()).unwrap();
            let png = std::fs::read(dir.join(format!("images/{name}/{i}.png"))).unwrap();
            let Difference {
                max_channel: max,
                hash_distance: d,
            } = difference(&ours, &RgbImage::from_png(&png).unwrap()).expect("the same size");
            assert!(
                max <= 2 && d == 0,
                "{name} request {i}: max diff {max}, hash distance {d}"
            );
            worst = worst.max(max);
            served += 1;
        }
        // What FLUX cannot serve is refused with the reason.
        let refused = |body: Value| {
            let client = client.clone();
            let url = url.clone();
            async move {
                let r = common::post_when_ready(&client, &url, &body).await;
                (r.status(), r.text().await.unwrap())
            }
        };
        let (status, text) = refused(json!({"prompt": "x", "seed": 1, "pipeline_type": "img2img",
            "conditional_image": ""}))
        .await;
        assert_eq!(status, 400, "{text}");
        assert!(text.contains("does not serve img2img"), "{text}");
        let (status, text) = refused(json!({"prompt": "x", "seed": 1, "pipeline_type": "txt2img",
            "pipeline_params": {"width": 40, "height": 64}}))
        .await;
        assert_eq!(status, 400, "{text}");
        assert!(text.contains("multiple of 16"), "{text}");
        let (status, _) = node.terminate();
        assert!(status.success());
    }
    assert!(served >= 8, "{served}");
    eprintln!("{served} FLUX images through the endpoint: max diff {worst}/255, hash distance 0");
}
