//! The miner neuron end to end on loopback: the real binary running the miner with its own
//! generation endpoint (tiny SD 1.5 model, CPU) on the embedded chain, called by our dendrite as
//! validators with different stakes. Checks the info query, a generated image, NicheImage's
//! blacklist reasons, the rate limit, the axon announcement and the counters in the status line.

#![cfg(feature = "local-infer")]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::free_port;
use nicheimage_bittensor::dendrite::{AxonTarget, Dendrite};
use nicheimage_bittensor::keypair::Keypair;
use nicheimage_bittensor::synapse::ImageGenerating;
use nicheimage_bittensor::wallet::Wallet;
use nicheimage_common::image::RgbImage;
use nicheimage_engine::tiny::write_tiny_sd15;
use serde_json::{Value, json};

fn key(n: u8) -> Keypair {
    Keypair::from_mini_secret(&[n; 32]).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_miner_serves_validators_by_the_rules() {
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = write_tiny_sd15(&dir.path().join("model"), "tiny-sd15").unwrap();
    let miner_key = Wallet::new(&dir.path().join("wallets"), "miner", "default")
        .create_hotkey(nicheimage_bittensor::keypair::CryptoType::Sr25519)
        .unwrap();
    let (rich, poor, stranger) = (key(1), key(2), key(3));
    let chain_file = dir.path().join("chain.toml");
    std::fs::write(
        &chain_file,
        format!(
            "block_time_secs = 0.1\n[[subnet]]\nnetuid = 23\n\
             [[subnet.neuron]]\nhotkey = \"{}\"\nstake = 20000\nvalidator_permit = true\n\
             [[subnet.neuron]]\nhotkey = \"{}\"\nstake = 500\nvalidator_permit = true\n",
            rich.ss58(),
            poor.ss58()
        ),
    )
    .unwrap();
    let (axon_port, endpoint_port, metrics_port) = (free_port(), free_port(), free_port());
    let config = format!(
        r#"[node]
status_interval_secs = 1
device = "cpu"
[metrics]
listen = "127.0.0.1:{metrics_port}"
[wallet]
path = "{wallets}"
name = "miner"
[subtensor]
network = "embedded"
embedded_chain_file = "{chain}"
block_time_secs = 0.1
[axon]
port = {axon_port}
[endpoint]
enabled = true
model_name = "Tiny"
host = "127.0.0.1"
port = {endpoint_port}
num_replicas = 1
[miner]
generate_endpoint = "http://127.0.0.1:{endpoint_port}/generate"
info_endpoint = "http://127.0.0.1:{endpoint_port}/info"
[miner.blacklist]
# 20 000 stake at 10 000 per unit: 2 units, 2 requests each.
requests_per_unit = 2
[models.Tiny]
arch = "sd15"
checkpoint = "{checkpoint}"
scheduler = "dpm++2m_karras"
[models.Tiny.defaults]
num_inference_steps = 4
width = 64
height = 64
"#,
        wallets = dir.path().join("wallets").display(),
        chain = chain_file.display(),
        checkpoint = checkpoint.display(),
    );
    let node = common::start(dir.path(), &["miner"], &config);
    let ready = node.status_within(120, "the miner announced and a replica ready", |v| {
        v["miners"]["miner"]["announce_result"] == "on chain"
            && v["replicas"]
                .as_object()
                .is_some_and(|r| r.values().any(|r| r["status"] == "ready"))
    });
    assert_eq!(ready["miners"]["miner"]["hotkey"], miner_key.ss58());
    assert_eq!(
        ready["miners"]["miner"]["announced"],
        format!("127.0.0.1:{axon_port}")
    );
    // The self-test knocked on the published address: our axon refused the unsigned knock.
    assert_eq!(
        ready["miners"]["miner"]["reachability"][0], true,
        "{}",
        ready["miners"]["miner"]
    );
    assert!(
        ready["miners"]["miner"]["reachability"][1]
            .as_str()
            .unwrap()
            .contains("answers (HTTP 401)")
    );

    let target = AxonTarget {
        ip: "127.0.0.1".into(),
        port: axon_port,
        hotkey: miner_key.ss58().into(),
    };
    let validator = Dendrite::new(Arc::new(rich)).unwrap();
    let timeout = Duration::from_secs(60);
    let mut info = ImageGenerating::default();
    info.request_dict
        .insert("get_miner_info".into(), Value::Bool(true));
    let answer = validator.call(&target, &info, timeout).await;
    assert_eq!(answer.status_code, 200, "{answer:?}");
    assert_eq!(answer.synapse.response_dict["model_name"], "Tiny");

    let request = ImageGenerating {
        prompt: "a lighthouse at dusk".into(),
        seed: 42,
        pipeline_params: json!({"num_inference_steps": 4, "width": 64, "height": 64})
            .as_object()
            .unwrap()
            .clone(),
        ..Default::default()
    };
    let image = validator.call(&target, &request, timeout).await;
    assert_eq!(image.status_code, 200, "{}", image.status_message);
    let png = RgbImage::from_base64_png(image.synapse.image.as_str().unwrap()).unwrap();
    assert_eq!((png.width, png.height), (64, 64));

    let low = Dendrite::new(Arc::new(poor))
        .unwrap()
        .call(&target, &info, timeout)
        .await;
    assert_eq!(
        (low.status_code, low.status_message.as_str()),
        (403, "Not enough stake")
    );
    let unknown = Dendrite::new(Arc::new(stranger))
        .unwrap()
        .call(&target, &info, timeout)
        .await;
    assert_eq!(
        (unknown.status_code, unknown.status_message.as_str()),
        (403, "Unrecognized hotkey")
    );

    // Two requests used; the limit is four per window.
    for _ in 0..2 {
        assert_eq!(
            validator.call(&target, &info, timeout).await.status_code,
            200
        );
    }
    let over = validator.call(&target, &info, timeout).await;
    assert_eq!(
        (over.status_code, over.status_message.as_str()),
        (403, "Limit exceeded")
    );

    let rich_hotkey = key(1).ss58().to_string();
    let v = node.status_where("the counters", |v| {
        v["miners"]["miner"]["validators"][&rich_hotkey]["requests"] == 5
    });
    let counters = &v["miners"]["miner"]["validators"][&rich_hotkey];
    assert_eq!(
        (counters["allowed"].as_u64(), counters["limit"].as_u64()),
        (Some(4), Some(4))
    );
    assert_eq!(counters["rejected"]["Limit exceeded"], 1);
    assert_eq!(v["miners"]["miner"]["responses"]["403"], 3);
    assert_eq!(v["chain"]["uid"], 2);

    // Rules edited while running: the file changed, SIGHUP, the next request sees 3 per unit.
    std::fs::write(
        dir.path().join("config.toml"),
        config.replace("requests_per_unit = 2", "requests_per_unit = 3"),
    )
    .unwrap();
    node.signal(libc::SIGHUP);
    node.status_where("the new rules", |v| {
        v["miners"]["miner"]["rules"]["requests_per_unit"] == 3
    });
    assert_eq!(
        validator.call(&target, &info, timeout).await.status_code,
        200,
        "the limit is six now"
    );
    let (status, _) = node.terminate();
    assert!(status.success());
}
