//! The main job as a newcomer runs it: no config file, so the node runs the whole local subnet
//! (embedded chain, validator, three miners — one honest, one answering with another seed's
//! image, one too slow —, reward service, proxy and owner traffic), headless and bounded by
//! `--duration`. Asserted: rounds completed, the honest miner holds the weight and the
//! misbehaving ones less, the proxy served signed requests, exit 0, and state files consistent
//! with the summary; a second run in the same data dir picks the state up.
#![cfg(feature = "local-infer")]

use std::path::Path;
use std::process::Command;

use serde_json::Value;

/// Runs the binary with no config for `secs`; its exit success and the summary line.
fn run_devnet(home: &Path, secs: u64) -> (bool, Value, String) {
    run_devnet_with(home, secs, &[])
}

fn run_devnet_with(home: &Path, secs: u64, args: &[&str]) -> (bool, Value, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_nicheimage-tui"))
        .args(["--no-ui", "--duration", &format!("{secs}s")])
        .args(args)
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env("XDG_DATA_HOME", home.join("data"))
        .env("RUST_LOG", "info")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let summary = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["type"] == "summary")
        .unwrap_or_else(|| panic!("no summary line in:\n{stdout}"));
    (out.status.success(), summary, stdout)
}

fn miner<'a>(summary: &'a Value, name: &str) -> &'a Value {
    summary["miners"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {summary}"))
}

#[test]
fn with_no_config_the_node_runs_a_living_local_subnet() {
    let home = tempfile::tempdir().unwrap();
    let (ok, summary, stdout) = run_devnet(home.path(), 45);
    assert!(ok, "exit status not 0:\n{stdout}");
    assert!(stdout.contains("running the local devnet"), "{stdout}");
    let rounds = summary["rounds"].as_u64().unwrap();
    assert!(rounds >= 2, "{summary}");
    assert!(summary["weights_set"].as_u64().unwrap() >= 1, "{summary}");

    // Today's defaults: stateful epochs, and the validator's weights go through commit-reveal
    // v4 — committed timelocked (with the epoch state its round came from), then revealed by
    // the chain in the reveal epoch.
    let statuses: Vec<Value> = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["type"] == "status")
        .collect();
    assert!(
        statuses
            .iter()
            .any(|s| s["chain"]["clock"]["epoch"]["rule"] == "stateful"),
        "no stateful epoch object in the status lines"
    );
    let committed = statuses.iter().find_map(|s| {
        s["validator"]["commits"]
            .as_array()?
            .iter()
            .find(|c| c["kind"] == "timelocked")
            .cloned()
    });
    let committed = committed.unwrap_or_else(|| panic!("no timelocked commit shown:\n{stdout}"));
    assert_eq!(committed["epoch_state"]["rule"], "stateful", "{committed}");
    assert!(
        committed["reveal_round"].as_u64().unwrap() > 0,
        "{committed}"
    );
    // The validator saw the chain reveal it: its outcome text says so, or — when the 10 s
    // status lines missed that moment before the next commit replaced it — the weights it
    // remembers as set (recorded only when a reveal has landed, commit-reveal being on).
    assert!(
        statuses.iter().any(|s| s["validator"]["weights"]
            .as_str()
            .is_some_and(|w| w.contains("revealed the timelocked commit"))
            || s["validator"]["weights_set"]
                .as_object()
                .is_some_and(|w| !w.is_empty())),
        "no reveal seen:\n{stdout}"
    );

    let honest = miner(&summary, "miner-1");
    let wrong_seed = miner(&summary, "miner-2");
    let slow = miner(&summary, "miner-3");
    assert_eq!(honest["behaviour"], "honest");
    let weight = |m: &Value| m["weight"].as_u64().unwrap();
    assert!(weight(honest) > 0, "{summary}");
    assert!(weight(wrong_seed) < weight(honest), "{summary}");
    assert!(weight(slow) < weight(honest), "{summary}");
    assert!(honest["score"].as_f64().unwrap() > 0.5, "{summary}");

    let proxy = &summary["proxy"];
    assert!(proxy["success"].as_u64().unwrap() >= 1, "{summary}");

    // The state files agree with what the run reported.
    let dir = home.path().join("data/nicheimage-tui/devnet");
    let state: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("validator-state.json")).unwrap())
            .unwrap();
    assert_eq!(state["step"].as_u64(), Some(rounds), "{state}");
    let counters: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("proxy_counter.json")).unwrap())
            .unwrap();
    let served: u64 = counters
        .as_object()
        .unwrap()
        .values()
        .map(|day| day["success"].as_u64().unwrap())
        .sum();
    assert_eq!(served, proxy["success"].as_u64().unwrap(), "{counters}");
    for file in [
        "chain.toml",
        "owner.key",
        "wallets/devnet/hotkeys/validator",
        "wallets/devnet/hotkeys/miner-1",
        "model/tiny-sd15.safetensors",
    ] {
        assert!(dir.join(file).exists(), "{file} missing");
    }

    // Started again: same keys, the validator's state continues.
    let (ok, again, stdout) = run_devnet(home.path(), 15);
    assert!(ok, "{stdout}");
    assert!(again["rounds"].as_u64().unwrap() > rounds, "{again}");
    assert_eq!(miner(&again, "miner-1")["hotkey"], honest["hotkey"]);
}

/// The same subnet on a tiny FLUX.1-schnell (`[devnet] model = "flux"`): the miners serve it
/// through the endpoint, the validator challenges it, the reward service regenerates it, and the
/// honest miner is the one paid.
#[test]
fn a_tiny_flux_subnet_pays_the_honest_miner() {
    let home = tempfile::tempdir().unwrap();
    let config = home.path().join("flux.toml");
    std::fs::write(&config, "[devnet]\nmodel = \"flux\"\n").unwrap();
    let config = config.to_str().unwrap();
    let (ok, summary, stdout) = run_devnet_with(home.path(), 35, &["--devnet", "--config", config]);
    assert!(ok, "exit status not 0:\n{stdout}");
    assert!(summary["rounds"].as_u64().unwrap() >= 2, "{summary}");
    let honest = miner(&summary, "miner-1");
    let wrong_seed = miner(&summary, "miner-2");
    assert!(honest["score"].as_f64().unwrap() > 0.5, "{summary}");
    assert_eq!(wrong_seed["score"].as_f64(), Some(0.0), "{summary}");
    let dir = home
        .path()
        .join("data/nicheimage-tui/devnet/model/tiny-flux");
    assert!(dir.join("tokenizer_2/tokenizer.json").is_file());
}
