//! A real subtensor runtime on loopback: `../shared/chain/raonet.json` (node-subtensor spec 218)
//! run by Chopsticks (installed by `scripts/chain/setup.sh`), one block per extrinsic. The
//! genesis gets a fixed timestamp and slot (Chopsticks' start-up race, see that README), the
//! sudo key and balances are set with `import-storage`. Stopped on drop.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nicheimage_bittensor::chain::subtensor::scale::twox_128;

pub struct Chopsticks {
    child: Child,
    pub url: String,
    pub dir: tempfile::TempDir,
    /// Seconds from spawn to the RPC answering.
    pub started_in: f64,
}

impl Drop for Chopsticks {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The raw chain spec: `NICHEIMAGE_CHAIN_SPEC`, else `../shared/chain/raonet.json`.
fn spec_path() -> PathBuf {
    std::env::var_os("NICHEIMAGE_CHAIN_SPEC")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("../shared/chain/raonet.json"))
}

fn storage_key(pallet: &str, item: &str) -> String {
    format!(
        "0x{}{}",
        hex::encode(twox_128(pallet.as_bytes())),
        hex::encode(twox_128(item.as_bytes()))
    )
}

/// A fixed genesis time on a 3 s slot boundary (block times then follow from it).
const GENESIS_MS: u64 = 1_764_000_000_000;

impl Chopsticks {
    /// Starts the runtime with `sudo` as the sudo key and each of `funded` holding 10⁶ TAO.
    /// `None` (with the reason printed) where the spec or Chopsticks is absent, unless
    /// `NICHEIMAGE_REQUIRE_CHAIN` is set (CI), where that is a failure.
    pub fn start(sudo: &str, funded: &[&str]) -> Option<Chopsticks> {
        let spec = spec_path();
        let bin = root().join("scripts/chain/node_modules/.bin/chopsticks");
        let missing = if !spec.exists() {
            Some(format!("no chain spec at {}", spec.display()))
        } else if !bin.exists() {
            Some("Chopsticks is not installed: run scripts/chain/setup.sh".to_string())
        } else {
            None
        };
        if let Some(why) = missing {
            assert!(
                std::env::var_os("NICHEIMAGE_REQUIRE_CHAIN").is_none(),
                "the real-chain tests are required here: {why}"
            );
            eprintln!("skipped: {why}");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let mut chain: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&spec).unwrap()).unwrap();
        let top = &mut chain["genesis"]["raw"]["top"];
        let le = |n: u64| format!("0x{}", hex::encode(n.to_le_bytes()));
        top[storage_key("Timestamp", "Now")] = le(GENESIS_MS).into();
        top[storage_key("Aura", "CurrentSlot")] = le(GENESIS_MS / 3000).into();
        let patched = dir.path().join("spec.json");
        std::fs::write(&patched, serde_json::to_vec(&chain).unwrap()).unwrap();

        let port = super::free_port();
        let accounts: String = funded
            .iter()
            .map(|a| {
                format!("      - [[{a}], {{providers: 1, data: {{free: 1000000000000000}}}}]\n")
            })
            .collect();
        let config = format!(
            "genesis: {}\nhost: 127.0.0.1\nport: {port}\nbuild-block-mode: Instant\n\
             import-storage:\n  Sudo:\n    Key: {sudo}\n  System:\n    Account:\n{accounts}",
            patched.display()
        );
        let config_path = dir.path().join("chopsticks.yml");
        std::fs::write(&config_path, config).unwrap();
        let log = std::fs::File::create(dir.path().join("chopsticks.log")).unwrap();
        let started = Instant::now();
        let child = Command::new(&bin)
            .arg("--config")
            .arg(&config_path)
            .current_dir(root().join("scripts/chain"))
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        let mut node = Chopsticks {
            child,
            url: format!("ws://127.0.0.1:{port}"),
            dir,
            started_in: 0.0,
        };
        let deadline = started + Duration::from_secs(90);
        let log = node.dir.path().join("chopsticks.log");
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.contains("RPC listening") {
                break;
            }
            if let Ok(Some(status)) = node.child.try_wait() {
                panic!("Chopsticks exited ({status}):\n{text}");
            }
            assert!(
                Instant::now() < deadline,
                "Chopsticks did not listen within 90 s:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        node.started_in = started.elapsed().as_secs_f64();
        Some(node)
    }

    /// What Chopsticks printed, for a failing test.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("chopsticks.log")).unwrap_or_default()
    }
}
