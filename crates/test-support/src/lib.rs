//! What the workspace's integration tests share, whichever crate they test: the workspace root
//! (fixtures, scripts and generated references live there), loopback ports, the parity
//! fixtures the pinned Python references generate, the Python SDK peers and the property-test
//! runner. Tests that run the `nicheimage-tui` binary keep their helpers in the root package.

pub mod cases;
pub mod interop;

use std::net::TcpListener;
use std::path::{Path, PathBuf};

/// The workspace root (this crate sits at `crates/test-support`).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A loopback port nothing listens on now: from 20000..32000, below the kernel's ephemeral
/// range (32768 and up), where the test's own outgoing connections and other `bind(0)`s cannot
/// take it between this check and the server's bind, and never the same twice in one test
/// process (tests run in parallel).
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    // Each test process starts at its own offset in 20000..32000.
    let offset = (std::process::id() % 400) * 30;
    for _ in 0..12_000 {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = 20_000 + ((offset + n) % 12_000) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port in 20000..32000");
}

/// A parity fixture the pinned Python reference generated (`scripts/parity/<name>.sh` writes
/// `target/parity-<name>`, or `$env` names another folder), when it is there. Without it the
/// test skips, unless `NICHEIMAGE_REQUIRE_PARITY` is set (`.ci/run` sets it): then it fails.
pub fn generated(name: &str, env: &str) -> Option<PathBuf> {
    let dir = std::env::var_os(env)
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target").join(format!("parity-{name}")));
    if dir.join("manifest.json").is_file() {
        return Some(dir);
    }
    assert!(
        std::env::var_os("NICHEIMAGE_REQUIRE_PARITY").is_none(),
        "NICHEIMAGE_REQUIRE_PARITY is set but {} is missing: run scripts/parity/{name}.sh",
        dir.display()
    );
    eprintln!(
        "skipped: no {} (run scripts/parity/{name}.sh)",
        dir.display()
    );
    None
}

/// A JSON array of integers (token ids in the fixtures' manifests); anything else fails the
/// test.
pub fn ids(v: &serde_json::Value) -> Vec<i64> {
    let all = v
        .as_array()
        .unwrap_or_else(|| panic!("not an array of ids: {v}"));
    all.iter()
        .map(|x| x.as_i64().unwrap_or_else(|| panic!("not an id: {x}")))
        .collect()
}
