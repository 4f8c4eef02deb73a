//! The real binary, headless, on loopback: status lines, /healthz, /metrics, clean SIGTERM.

mod common;

use common::{Headless, free_port};
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;

fn start(dir: &Path, port: u16) -> Headless {
    start_with(dir, port, "")
}

/// Starts the node with `extra` appended to its config file.
fn start_with(dir: &Path, port: u16, extra: &str) -> Headless {
    let config = format!(
        "[node]\nstatus_interval_secs = 1\ntelemetry_interval_secs = 1\ndevice = \"cpu\"\n\
         [metrics]\nlisten = \"127.0.0.1:{port}\"\n\
         [supervisor]\nbackoff_initial_ms = 200\nbackoff_max_ms = 400\n{extra}"
    );
    common::start(dir, &[], &config)
}

#[tokio::test]
async fn serves_health_and_metrics_reports_status_and_exits_zero_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let node = start(dir.path(), port);
    let v = node.status_where("metrics and telemetry running, torch probed", |v| {
        v["components"]["metrics"]["status"] == "running"
            && v["components"]["telemetry"]["status"] == "running"
            && !v["torch"].is_null()
            && !v["host"].is_null()
    });
    assert_eq!(v["healthy"], true);
    assert_eq!(v["listeners"]["metrics"], format!("127.0.0.1:{port}"));
    assert!(v["host"]["process_rss_bytes"].as_u64().unwrap() > 0);
    if cfg!(feature = "local-infer") {
        assert_eq!(v["torch"]["smoke_test"], serde_json::json!({"Ok": null}));
    }

    let base = format!("http://127.0.0.1:{port}");
    let client = nicheimage_common::http::client().unwrap();
    let health = client.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let body: serde_json::Value = health.json().await.unwrap();
    assert_eq!(body["status"], "ok");
    assert_eq!(body["components"]["telemetry"]["status"], "running");

    // Ready: nothing here generates, and every component runs.
    let ready = client.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(body["status"], "ready");
    // The probe command containers use says the same, by its exit code.
    for extra in [&[][..], &["--live"][..]] {
        let probe = std::process::Command::new(env!("CARGO_BIN_EXE_nicheimage-tui"))
            .args(["healthcheck", "--address", &format!("127.0.0.1:{port}")])
            .args(extra)
            .output()
            .unwrap();
        assert!(probe.status.success(), "{probe:?}");
    }

    let metrics = client.get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(metrics.status(), 200);
    assert!(
        metrics.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = metrics.text().await.unwrap();
    assert!(
        text.contains("nicheimage_component_up{component=\"metrics\"} 1\n"),
        "{text}"
    );
    assert!(
        text.contains("nicheimage_process_resident_memory_bytes "),
        "{text}"
    );

    let missing = client.get(format!("{base}/nope")).send().await.unwrap();
    assert_eq!(missing.status(), 404);

    let (status, rest) = node.terminate();
    assert!(status.success(), "exit status {status:?}");
    let last = rest
        .iter()
        .rev()
        .find_map(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .ok()
                .filter(|v| v["type"] == "status")
        })
        .expect("a final status line");
    assert_eq!(last["components"]["metrics"]["status"], "stopped");
    let logs: Vec<_> = std::fs::read_dir(dir.path().join("data/logs"))
        .unwrap()
        .collect();
    assert!(!logs.is_empty(), "a log file in the data dir");
}

#[tokio::test]
async fn a_taken_port_is_reported_and_retried_while_the_rest_keeps_running() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = blocker.local_addr().unwrap().port();
    let node = start(dir.path(), port);
    let v = node.status_where("metrics in backoff twice", |v| {
        v["components"]["metrics"]["restarts"].as_u64() >= Some(1)
            && v["components"]["metrics"]["status"] == "backoff"
    });
    let err = v["components"]["metrics"]["last_error"].as_str().unwrap();
    assert!(
        err.contains(&format!("cannot listen on 127.0.0.1:{port}")),
        "{err}"
    );
    assert_eq!(v["components"]["telemetry"]["status"], "running");
    assert_eq!(v["healthy"], false);

    // Once the port is free the supervisor's retry succeeds.
    drop(blocker);
    node.status_where("metrics recovered", |v| {
        v["components"]["metrics"]["status"] == "running"
    });
    let (status, _) = node.terminate();
    assert!(status.success());
}

#[tokio::test]
async fn the_chain_watcher_shows_our_uid_on_the_embedded_chain() {
    let dir = tempfile::tempdir().unwrap();
    let wallets = dir.path().join("wallets");
    let made = Command::new(env!("CARGO_BIN_EXE_nicheimage-tui"))
        .args(["wallet", "new-hotkey", "--wallet.path"])
        .arg(&wallets)
        .output()
        .unwrap();
    assert!(made.status.success(), "{made:?}");
    let printed = String::from_utf8(made.stdout).unwrap();
    let hotkey = printed.split_whitespace().nth(1).unwrap().to_string();
    let chain_file = dir.path().join("chain.toml");
    std::fs::write(
        &chain_file,
        "block_time_secs = 0.1\nstart_block = 500\n[[subnet]]\nnetuid = 23\n\
         [[subnet.neuron]]\nhotkey = \"5DP4qTec9XxffaALGWsEPhS1oWrDWMBjzhBmyzShREMJpymt\"\nstake = 5\n",
    )
    .unwrap();
    let extra = format!(
        "[wallet]\npath = \"{}\"\n[subtensor]\nnetwork = \"embedded\"\nwatch = true\n\
         block_time_secs = 0.1\nepoch_length = 5\nembedded_chain_file = \"{}\"\n",
        wallets.display(),
        chain_file.display()
    );
    let node = start_with(dir.path(), free_port(), &extra);
    let v = node.status_where("our uid on the chain", |v| {
        v["chain"]["uid"] == 1 && v["chain"]["block"].as_u64() > Some(505)
    });
    assert_eq!(v["chain"]["hotkey"], hotkey.as_str());
    assert_eq!(v["chain"]["neurons"], 2);
    // Our standing, as btcli shows it, and the subnet's clock.
    assert_eq!(v["chain"]["standing"]["uid"], 1);
    assert!(v["chain"]["clock"]["blocks_to_epoch"].is_u64(), "{v}");
    assert_eq!(v["components"]["chain"]["status"], "running");
    let (status, _) = node.terminate();
    assert!(status.success());
}

#[tokio::test]
async fn an_unreachable_chain_is_reported_and_the_node_keeps_running() {
    let dir = tempfile::tempdir().unwrap();
    let closed = free_port();
    let extra = format!(
        "[subtensor]\nnetwork = \"local\"\nchain_endpoint = \"ws://127.0.0.1:{closed}\"\n\
         watch = true\nblock_time_secs = 0.2\n"
    );
    let node = start_with(dir.path(), free_port(), &extra);
    let v = node.status_where("the chain error", |v| v["chain"]["last_error"].is_string());
    let error = v["chain"]["last_error"].as_str().unwrap();
    assert!(
        error.contains(&format!("chain unreachable at ws://127.0.0.1:{closed}")),
        "{error}"
    );
    assert_eq!(v["components"]["chain"]["status"], "running");
    assert_eq!(v["components"]["telemetry"]["status"], "running");
    let (status, _) = node.terminate();
    assert!(status.success());
}
