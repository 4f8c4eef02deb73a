//! The validator role of the real binary on the embedded chain: its proxy comes up when
//! switched on in config and answers a signed request (no miner has a score yet: 503 with the
//! reason), and its state file survives `kill -9` at random moments of a tight save loop.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{Headless, free_port};
use ed25519_dalek::SigningKey;
use nicheimage_node::proxy::client;

fn new_hotkey(wallets: &Path) {
    let made = Command::new(env!("CARGO_BIN_EXE_nicheimage-tui"))
        .args(["wallet", "new-hotkey", "--wallet.path"])
        .arg(wallets)
        .output()
        .unwrap();
    assert!(made.status.success(), "{made:?}");
}

fn start(dir: &Path, proxy_port: u16, owner: &SigningKey) -> Headless {
    use base64::Engine;
    let public = base64::engine::general_purpose::STANDARD.encode(owner.verifying_key().as_bytes());
    // No pause between passes: the state file is rewritten as fast as the disk allows.
    let config = format!(
        "[node]\nstatus_interval_secs = 1\ndevice = \"cpu\"\n[metrics]\nenabled = false\n\
         [wallet]\npath = \"{}\"\n[subtensor]\nnetwork = \"embedded\"\nblock_time_secs = 0.1\n\
         [validator]\nfast_loop_secs = 0\nfast_steps = 1000000000\ninfo_timeout_secs = 1\ndial_private_axons = true\n\
         [proxy]\nenabled = true\nhost = \"127.0.0.1\"\nport = {proxy_port}\nowner_api_url = \"\"\n\
         owner_public_key = \"{public}\"\n",
        dir.join("wallets").display()
    );
    common::start(dir, &["validator"], &config)
}

#[tokio::test]
async fn the_validator_serves_its_proxy_and_its_state_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    new_hotkey(&dir.path().join("wallets"));
    let owner = SigningKey::from_bytes(&[42; 32]);
    let port = free_port();
    let node = start(dir.path(), port, &owner);
    node.status_where("the proxy listening", |v| {
        v["proxy"]["listening"].is_string() && v["validator"]["step"].as_u64() > Some(0)
    });
    let body = serde_json::json!({"payload": {"model_name": "RealisticVision", "prompt": "x"}});
    let err = client::request(
        &nicheimage_common::http::client().unwrap(),
        &format!("http://127.0.0.1:{port}/validator_proxy"),
        &owner,
        &body,
        Duration::from_secs(30),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, nicheimage_common::http::ServiceError::Refused { status, detail, .. }
            if status.as_u16() == 503 && detail.contains("no miner with a non-zero score")),
        "{err}"
    );
    let v = node.status_where("the failure counted", |v| {
        v["proxy"]["today"]["fail_reasons"]["no_miner"] == 1
    });
    assert_eq!(v["proxy"]["enabled"], true);

    // kill -9 in the middle of the save loop, five times; every restart reads the state back.
    let state = dir.path().join("data").join("validator-state.json");
    let mut node = node;
    let mut last_step = 0;
    for round in 0..5u64 {
        let v = node.status_where("another pass saved", |v| {
            v["validator"]["step"].as_u64() > Some(last_step)
        });
        assert_eq!(
            v["validator"]["state_note"],
            serde_json::Value::Null,
            "round {round}"
        );
        last_step = v["validator"]["step"].as_u64().unwrap();
        std::thread::sleep(Duration::from_millis(13 * round + 7));
        drop(node); // SIGKILL
        let saved: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&state).unwrap()).expect("a whole file");
        assert!(saved["step"].as_u64() >= Some(last_step), "{saved}");
        node = start(dir.path(), port, &owner);
    }
    let v = node.status_where("the last restart", |v| {
        v["validator"]["step"].as_u64() > Some(last_step)
    });
    assert_eq!(v["validator"]["state_note"], serde_json::Value::Null);
    assert!(
        !dir.path()
            .join("data")
            .join("validator-state.json.corrupt")
            .exists()
    );
    assert!(node.terminate().0.success());
}
