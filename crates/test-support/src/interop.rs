//! The pinned Python references of `scripts/interop/setup.sh`, for the interop tests: each set's
//! interpreter (set up once per test binary; a no-op when already in place) and its peer
//! scripts run to completion as JSON lines.

use std::path::{Path, PathBuf};

use crate::root;
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::Value;

#[derive(Clone, Copy, Debug)]
pub enum Set {
    /// bittensor 10.2.0 (axon/dendrite) with bittensor-drand 1.3.0.
    Legacy,
    /// bittensor 11.3.0, bittensor-wallet 4.1.1 and bittensor-drand 2.0.0.
    Today,
}

impl Set {
    fn names(self) -> (&'static str, &'static str) {
        match self {
            Set::Legacy => ("legacy", ".venv-bittensor"),
            Set::Today => ("today", ".venv-bittensor-today"),
        }
    }
}

/// `scripts/interop/<name>`.
pub fn script(name: &str) -> PathBuf {
    root().join("scripts/interop").join(name)
}

/// The set's Python, its venv set up on first use.
pub fn python(set: Set) -> &'static Path {
    static LEGACY: OnceLock<PathBuf> = OnceLock::new();
    static TODAY: OnceLock<PathBuf> = OnceLock::new();
    let cell = match set {
        Set::Legacy => &LEGACY,
        Set::Today => &TODAY,
    };
    cell.get_or_init(|| {
        let (arg, venv) = set.names();
        let status = std::process::Command::new("bash")
            .arg(script("setup.sh"))
            .arg(arg)
            .stdout(Stdio::null())
            .status()
            .expect("run scripts/interop/setup.sh");
        assert!(
            status.success(),
            "scripts/interop/setup.sh {arg} failed: the pinned Python SDK is needed"
        );
        root().join(venv).join("bin/python")
    })
}

/// `python <script> <args>` under the set's venv, killed if dropped.
pub fn peer_command(set: Set, name: &str, args: &[&str]) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(python(set));
    command.arg(script(name)).args(args).kill_on_drop(true);
    command
}

/// Runs a peer script to completion within `limit`; its JSON lines.
pub async fn peer_lines(set: Set, name: &str, args: &[&str], limit: Duration) -> Vec<Value> {
    let output = tokio::time::timeout(limit, peer_command(set, name, args).output())
        .await
        .expect("python peer finished in time")
        .expect("python peer ran");
    assert!(
        output.status.success(),
        "{name} {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}
