//! The real binary run headless on loopback, for integration tests: start it with a config,
//! read its JSON status lines, stop it with SIGTERM.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub struct Headless {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Drop for Headless {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Loopback ports for the node under test (see the test-support crate).
pub use nicheimage_test_support::free_port;

/// Runs `nicheimage-tui <args> --no-ui --config <dir>/config.toml` with `config` written there.
pub fn start(dir: &Path, args: &[&str], config: &str) -> Headless {
    let path = dir.join("config.toml");
    std::fs::write(&path, config).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_nicheimage-tui"))
        .arg("--no-ui")
        .args(args)
        .arg("--config")
        .arg(&path)
        .arg("--data-dir")
        .arg(dir.join("data"))
        .env("HOME", dir)
        .env("XDG_CONFIG_HOME", dir)
        .stdout(Stdio::piped())
        // Its log, for a failing test to be read afterwards.
        .stderr(
            std::fs::File::create(dir.join("stderr.log"))
                .map(Stdio::from)
                .unwrap_or_else(|_| Stdio::null()),
        )
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    Headless { child, lines: rx }
}

impl Headless {
    /// The next status line satisfying `pred`, within `secs`.
    pub fn status_within(
        &self,
        secs: u64,
        what: &str,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            let Ok(line) = self.lines.recv_timeout(left) else {
                break;
            };
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
                && v["type"] == "status"
                && pred(&v)
            {
                return v;
            }
        }
        panic!("no status line with {what} within {secs} s");
    }

    /// The next status line satisfying `pred`, within 60 s.
    pub fn status_where(
        &self,
        what: &str,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        self.status_within(60, what, pred)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends `signal` (e.g. `libc::SIGHUP`) to the node.
    pub fn signal(&self, signal: i32) {
        // SAFETY: sending a signal to our own child process.
        unsafe { libc::kill(self.child.id() as i32, signal) };
    }

    pub fn terminate(mut self) -> (std::process::ExitStatus, Vec<String>) {
        // SAFETY: sending a signal to our own child process.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                let rest: Vec<String> = self.lines.try_iter().collect();
                return (status, rest);
            }
            assert!(Instant::now() < deadline, "no exit within 20 s of SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

pub mod chopsticks;
#[cfg(feature = "local-infer")]
pub mod subnet;

/// POSTs `body` until the answer is not a 503 (a node still loading its replicas), for up to
/// a minute.
pub async fn post_when_ready(
    client: &reqwest::Client,
    url: &str,
    body: &serde_json::Value,
) -> reqwest::Response {
    for _ in 0..240 {
        if let Ok(r) = client.post(url).json(body).send().await
            && r.status() != reqwest::StatusCode::SERVICE_UNAVAILABLE
        {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("{url} never became ready");
}
