//! Start-up to the first completed validator round of the local devnet (`--devnet`), the
//! newcomer's first minute: a fresh data dir (keys, tiny checkpoint and chain made on the way)
//! and a second start reusing them. No Python tool does this work, so there is no ratio; the
//! figure is the one the README states.
//!
//!     cargo bench --bench devnet_startup

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Seconds from spawn to the first status line with a completed round.
fn first_round(home: &std::path::Path) -> f64 {
    let config = home.join("bench.toml");
    std::fs::write(&config, "[node]\nstatus_interval_secs = 1\n").unwrap();
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_nicheimage-tui"))
        .args(["--devnet", "--no-ui", "--duration", "180s", "--config"])
        .arg(&config)
        .env("HOME", home)
        .env("XDG_DATA_HOME", home.join("data"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut seconds = None;
    for line in BufReader::new(stdout).lines().map_while(Result::ok) {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        if v["type"] == "status" && v["validator"]["step"].as_u64().unwrap_or(0) >= 1 {
            seconds = Some(started.elapsed().as_secs_f64());
            break;
        }
    }
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    seconds.expect("no completed round within 180 s")
}

fn main() {
    let home = tempfile::tempdir().unwrap();
    let fresh = first_round(home.path());
    let again = first_round(home.path());
    println!("devnet start-up to the first completed round:");
    println!("  fresh data dir (keys, tiny checkpoint, chain made): {fresh:.1} s");
    println!("  second start (files reused):                     {again:.1} s");
}
