//! The binary's command line: template, config errors, role flags.

use std::process::Command;

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_nicheimage-tui"));
    // Never pick up a developer's own config.
    c.env("XDG_CONFIG_HOME", "/nonexistent-for-tests");
    c
}

#[test]
fn print_config_template_is_the_example_file() {
    let out = bin().arg("--print-config-template").output().unwrap();
    assert!(out.status.success());
    let expected =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config.example.toml"))
            .unwrap();
    assert_eq!(String::from_utf8(out.stdout).unwrap(), expected);
}

#[test]
fn version_flag() {
    let out = bin().arg("--version").output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim(),
        format!("nicheimage-tui {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn a_bad_config_exits_2_naming_key_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[metrics]\nenabled = true\nlisten = 42\n").unwrap();
    let out = bin()
        .arg("--no-ui")
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("line 3") && err.contains("listen") && err.contains("bad.toml"),
        "{err}"
    );
}

#[test]
fn a_missing_explicit_config_exits_2() {
    let out = bin()
        .args(["--no-ui", "--config", "/nonexistent/c.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8(out.stderr)
            .unwrap()
            .contains("/nonexistent/c.toml")
    );
}

#[test]
fn an_invalid_flag_value_exits_2_naming_the_key() {
    let out = bin()
        .args(["endpoint", "--num_gpus", "0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8(out.stderr)
            .unwrap()
            .contains("endpoint.num_gpus")
    );
}

#[test]
fn role_flags_with_seed_names_parse() {
    let out = bin()
        .args([
            "miner",
            "--netuid",
            "23",
            "--wallet.name",
            "w",
            "--wallet.hotkey",
            "h",
            "--subtensor.network",
            "finney",
            "--axon.port",
            "8091",
            "--generate_endpoint",
            "http://127.0.0.1:10006/generate",
            "--info_endpoint",
            "http://127.0.0.1:10006/info",
        ])
        .env("HOME", "/nonexistent-for-tests")
        .arg("--data-dir")
        .arg(std::env::temp_dir().join("nicheimage-cli-test"))
        .output()
        .unwrap();
    // Parsed (clap would say "unexpected argument"); the miner then needs wallet w's hotkey h.
    let said = String::from_utf8(out.stdout).unwrap() + &String::from_utf8(out.stderr).unwrap();
    assert!(said.contains("the neuron needs its hotkey"), "{said}");
    assert!(said.contains("w/hotkeys/h not found"), "{said}");
    assert_eq!(out.status.code(), Some(2));
}
