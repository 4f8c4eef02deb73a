//! The wallet password given in `NICHEIMAGE_WALLET_PASSWORD` stays with the node: the real
//! binary serving one replica of the tiny checkpoint; neither the replica process's environment
//! nor the node's own `/proc/<pid>/environ` holds it.
#![cfg(all(feature = "local-infer", target_os = "linux"))]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nicheimage_bittensor::wallet::PASSWORD_ENV;
use nicheimage_engine::tiny::write_tiny_sd15;

const SECRET: &str = "correct-horse-battery-staple-7f3a";

fn environ_holds_secret(pid: u32) -> bool {
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    environ
        .windows(SECRET.len())
        .any(|w| w == SECRET.as_bytes())
}

#[test]
fn the_wallet_password_reaches_no_replica() {
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = write_tiny_sd15(&dir.path().join("model"), "tiny-sd15").unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[node]\nstatus_interval_secs = 1\ndevice = \"cpu\"\n[metrics]\nenabled = false\n\
             [models.Tiny]\narch = \"sd15\"\ncheckpoint = \"{}\"\n\
             [endpoint]\nmodel_name = \"Tiny\"\nhost = \"127.0.0.1\"\nport = {}\nnum_replicas = 1\n",
            checkpoint.display(),
            common::free_port()
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_nicheimage-tui"))
        .args(["--no-ui", "endpoint", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .env("HOME", dir.path())
        .env("XDG_CONFIG_HOME", dir.path())
        .env(PASSWORD_ENV, SECRET)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let node = child.id();
    let lines = BufReader::new(child.stdout.take().unwrap());
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut replica = None;
    for line in lines.lines().map_while(Result::ok) {
        let status: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
        if status["type"] == "status" && status["replicas"]["0"]["status"] == "ready" {
            replica = status["replicas"]["0"]["pid"].as_u64();
            break;
        }
        if Instant::now() > deadline {
            break;
        }
    }
    let checked = replica.map(|pid| {
        let pid = u32::try_from(pid).unwrap();
        (environ_holds_secret(pid), environ_holds_secret(node))
    });
    // SIGTERM lets the node stop its replica; SIGKILL both if it does not in time.
    // SAFETY: signalling our own child.
    unsafe { libc::kill(node as i32, libc::SIGTERM) };
    let stop = Instant::now() + Duration::from_secs(15);
    while matches!(child.try_wait(), Ok(None)) && Instant::now() < stop {
        std::thread::sleep(Duration::from_millis(50));
    }
    if let Some(pid) = replica {
        // SAFETY: the replica our child started; gone already in the usual case.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    }
    let _ = child.kill();
    let _ = child.wait();
    let (in_replica, in_node) = checked.expect("the replica never became ready with its pid");
    assert!(!in_replica, "the replica inherited the password");
    assert!(
        !in_node,
        "the node's /proc/<pid>/environ still shows the password"
    );
}
