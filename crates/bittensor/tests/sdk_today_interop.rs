//! Interop with today's Python SDK (bittensor 11.3.0 and bittensor-wallet 4.1.1, installed by
//! `scripts/interop/setup.sh today`): a Python 11.3 validator signing with `http_auth`
//! (btauth/1) is served and refused by our axon exactly as 11.3's own verifier decides; our
//! dendrite's requests pass 11.3's verifier in a Python server (after finding out that server
//! speaks btauth/1 only); keyfiles written by bittensor-wallet 4.1.1, ed25519 ones included,
//! load with the same addresses. Loopback only.

use nicheimage_test_support::interop;

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use interop::{Set, peer_lines};

use futures::FutureExt;
use futures::future::BoxFuture;
use nicheimage_bittensor::axon::{AxonBuilder, Caller, Handler};
use nicheimage_bittensor::dendrite::{AxonTarget, Dendrite, Scheme};
use nicheimage_bittensor::keypair::{self, CryptoType, Keypair};
use nicheimage_bittensor::synapse::ImageGenerating;
use nicheimage_bittensor::wallet::Wallet;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// sp-core's dev keys (DEV_PHRASE + "//Alice" ...), as the Python peer makes them.
const ALICE_SR25519: &str = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY";
const ALICE_ED25519: &str = "5FA9nQDVg267DEd8m1ZypXLBnvN7SFxYwV7ndqSYGiN9TTpu";
const CHARLIE_SR25519: &str = "5FLSigC9HGRKVhB9FiEo4Y3koPsNmBmLJbpXg2mp1hXcS59Y";
const BOB_SR25519: &str = "5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty";

fn peer_command(args: &[&str]) -> tokio::process::Command {
    interop::peer_command(Set::Today, "bt_today_peer.py", args)
}

/// Runs the peer to completion; its JSON lines.
async fn peer(args: &[&str]) -> Vec<Value> {
    peer_lines(
        Set::Today,
        "bt_today_peer.py",
        args,
        Duration::from_secs(180),
    )
    .await
}

/// A miner whose metagraph knows Alice (both keys, staked) and Charlie (too little stake).
struct Miner {
    stakes: HashMap<&'static str, f64>,
}

impl Miner {
    fn rule(&self, hotkey: &str) -> Result<(), std::io::Error> {
        match self.stakes.get(hotkey) {
            None => Err(std::io::Error::other("Unrecognized hotkey")),
            Some(stake) if *stake < 100.0 => Err(std::io::Error::other("Not enough stake")),
            Some(_) => Ok(()),
        }
    }
}

impl Handler<ImageGenerating> for Miner {
    type Error = std::io::Error;

    fn admissible(&self, hotkey: &str) -> Result<(), std::io::Error> {
        self.rule(hotkey)
    }

    fn blacklist(&self, caller: &Caller) -> Result<(), std::io::Error> {
        self.rule(&caller.hotkey)
    }

    fn forward(
        self: Arc<Self>,
        caller: Caller,
        mut synapse: ImageGenerating,
    ) -> BoxFuture<'static, Result<ImageGenerating, std::io::Error>> {
        async move {
            synapse.image = Value::String(format!("rust:{}:{}", caller.hotkey, synapse.prompt));
            Ok(synapse)
        }
        .boxed()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_11_validator_is_served_and_refused_as_its_own_verifier_decides() {
    let key = Arc::new(Keypair::from_mini_secret(&[7; 32]).unwrap());
    let miner = Arc::new(Miner {
        stakes: HashMap::from([
            (ALICE_SR25519, 1000.0),
            (ALICE_ED25519, 1000.0),
            (CHARLIE_SR25519, 1.0),
        ]),
    });
    let axon = AxonBuilder::new(key.clone())
        .attach::<ImageGenerating, _>(miner)
        .build();
    let running = axon.spawn("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let url = format!("http://{}", running.address);
    let lines = peer(&["client", "--url", &url, "--receiver", key.ss58()]).await;
    let case = |name: &str| {
        lines
            .iter()
            .find(|l| l["case"] == name)
            .unwrap_or_else(|| panic!("no {name} in {lines:?}"))
            .clone()
    };
    // Honest requests, either key type: served, the caller's hotkey verified.
    for (name, hotkey) in [("ok_sr25519", ALICE_SR25519), ("ok_ed25519", ALICE_ED25519)] {
        let c = case(name);
        assert_eq!(c["status"], 200, "{c}");
        assert_eq!(
            c["answer"]["image"],
            format!("rust:{hotkey}:a red fox"),
            "{c}"
        );
        assert!(c["sdk"].is_null(), "{c}");
    }
    // The same request again: a replay, refused as 11.3 would.
    let again = &case("ok_sr25519")["again"];
    assert_eq!(again[0], 401, "{again}");
    assert_eq!(
        again[1]["detail"],
        "this nonce was already accepted from this hotkey"
    );
    // Every request 11.3's verifier refuses, we refuse with 401 and its words.
    for name in [
        "tampered_body",
        "wrong_receiver",
        "no_receiver",
        "stale",
        "ahead",
        "unsigned",
    ] {
        let c = case(name);
        assert!(!c["sdk"].is_null(), "11.3 accepts {name}? {c}");
        assert_eq!(c["status"], 401, "{c}");
        assert_eq!(c["answer"]["detail"], c["sdk"]["detail"], "{c}");
    }
    // Authentic but not welcome: 403 with the miner's reason (policy, as the guide says).
    for (name, reason) in [
        ("unknown_hotkey", "Unrecognized hotkey"),
        ("low_stake", "Not enough stake"),
    ] {
        let c = case(name);
        assert!(c["sdk"].is_null(), "{c}");
        assert_eq!(c["status"], 403, "{c}");
        assert_eq!(c["answer"]["detail"], reason, "{c}");
    }
    running.stop().await;
}

/// A Python 11.3 miner on a stdlib HTTP server, verifying with `http_auth.verify`.
struct PythonMiner {
    child: tokio::process::Child,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    port: u16,
}

impl PythonMiner {
    async fn start() -> Self {
        let mut child = peer_command(&["server", "--hotkey-uri", "//Bob"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python server starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let first = tokio::time::timeout(Duration::from_secs(120), lines.next_line())
            .await
            .expect("the server says its port in time")
            .expect("readable")
            .expect("a first line");
        let first: Value = serde_json::from_str(&first).expect("JSON");
        assert_eq!(first["hotkey"], BOB_SR25519);
        let port = u16::try_from(first["port"].as_u64().expect("a port")).expect("a port");
        Self { child, lines, port }
    }

    async fn next(&mut self) -> Value {
        let line = tokio::time::timeout(Duration::from_secs(30), self.lines.next_line())
            .await
            .expect("a request line in time")
            .expect("readable")
            .expect("a line");
        serde_json::from_str(&line).expect("JSON")
    }

    async fn stop(mut self) {
        if let Some(mut stdin) = self.child.stdin.take() {
            let _ = stdin.shutdown().await;
        }
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_dendrite_passes_the_python_11_verifier() {
    let mut server = PythonMiner::start().await;
    let target = AxonTarget {
        ip: "127.0.0.1".into(),
        port: server.port,
        hotkey: BOB_SR25519.into(),
    };
    let synapse = ImageGenerating {
        prompt: "a lighthouse".into(),
        ..Default::default()
    };
    let timeout = Duration::from_secs(20);
    let sr = Dendrite::new(Arc::new(Keypair::from_mini_secret(&[9; 32]).unwrap())).unwrap();
    // First call: legacy headers are refused (401), the retry in btauth/1 is served.
    let answer = sr.call(&target, &synapse, timeout).await;
    assert_eq!(answer.status_code, 200, "{}", answer.status_message);
    assert_eq!(answer.synapse.image, "served-by-python-11");
    let refused = server.next().await;
    assert_eq!(refused["status"], 401, "{refused}");
    assert_eq!(refused["error"], "MalformedAuth", "{refused}");
    let served = server.next().await;
    assert_eq!(served["status"], 200, "{served}");
    assert_eq!(served["hotkey"], sr.hotkey());
    assert_eq!(served["crypto_type"], 1);
    assert_eq!(served["prompt"], "a lighthouse");
    assert_eq!(sr.known_scheme(&target), Some(Scheme::BtAuth));
    // Remembered: the next call goes straight to btauth/1, with a fresh nonce.
    let answer = sr.call(&target, &synapse, timeout).await;
    assert_eq!(answer.status_code, 200, "{}", answer.status_message);
    assert_eq!(server.next().await["status"], 200);
    // An ed25519 hotkey speaks btauth/1 from the start.
    let ed_key = Keypair::from_seed(CryptoType::Ed25519, &[9; 32]).unwrap();
    let ed = Dendrite::new(Arc::new(ed_key)).unwrap();
    let answer = ed.call(&target, &synapse, timeout).await;
    assert_eq!(answer.status_code, 200, "{}", answer.status_message);
    let served = server.next().await;
    assert_eq!(served["hotkey"], ed.hotkey(), "{served}");
    assert_eq!(served["crypto_type"], 0);
    // Forced legacy with an ed25519 key: refused here, by name, without a request.
    let forced = ed.clone().with_scheme(Some(Scheme::Legacy));
    let answer = forced.call(&target, &synapse, timeout).await;
    assert_eq!(answer.status_code, 500);
    assert!(
        answer.status_message.contains("sr25519 only"),
        "{}",
        answer.status_message
    );
    server.stop().await;
}

#[tokio::test]
async fn keyfiles_of_bittensor_wallet_4_load_with_the_same_keys() {
    let dir = tempfile::tempdir().unwrap();
    let password = "correct horse 42";
    let py = &peer(&[
        "keyfiles",
        "--dir",
        dir.path().to_str().unwrap(),
        "--password",
        password,
    ])
    .await[0];
    for (name, crypto) in [("sr", CryptoType::Sr25519), ("ed", CryptoType::Ed25519)] {
        let plain = Wallet::new(dir.path(), "plain", name)
            .load_hotkey(None)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(plain.keypair.ss58(), py[name]["ss58"], "{name}");
        assert_eq!(plain.keypair.crypto(), crypto, "{name}");
        let seeded = Wallet::new(dir.path(), "seeded", name)
            .load_hotkey(None)
            .unwrap_or_else(|e| panic!("seeded {name}: {e}"));
        assert_eq!(seeded.keypair.ss58(), py[name]["seeded_ss58"], "{name}");
        // Python's signature verifies under the key's own scheme only.
        let signature =
            keypair::parse_signature_hex(py[name]["signature"].as_str().unwrap()).unwrap();
        let public = plain.keypair.public_bytes();
        assert!(keypair::verify_as(
            crypto,
            &public,
            b"nicheimage",
            &signature
        ));
        let other = match crypto {
            CryptoType::Sr25519 => CryptoType::Ed25519,
            CryptoType::Ed25519 => CryptoType::Sr25519,
        };
        assert!(!keypair::verify_as(
            other,
            &public,
            b"nicheimage",
            &signature
        ));
        if crypto == CryptoType::Ed25519 {
            // ed25519 is deterministic: our signature is Python's, byte for byte.
            assert_eq!(plain.keypair.sign(b"nicheimage").unwrap(), signature);
        }
        let sealed = Wallet::new(dir.path(), "sealed", name);
        assert!(sealed.load_hotkey(None).is_err());
        let loaded = sealed.load_hotkey(Some(password)).unwrap();
        assert_eq!(loaded.keypair.ss58(), py[name]["ss58"], "sealed {name}");
        assert_eq!(loaded.keypair.crypto(), crypto);
    }
}
