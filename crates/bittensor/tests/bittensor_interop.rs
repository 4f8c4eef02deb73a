//! Interop with the real Python bittensor SDK (10.2.0, installed by `scripts/interop/setup.sh`,
//! which these tests run first): Python dendrite → our axon, our dendrite → Python axon, crypto
//! vectors both ways, and keyfiles written by bittensor_wallet. Loopback only.

use nicheimage_test_support::interop;

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use interop::{Set, peer_command, peer_lines};

use futures::FutureExt;
use futures::future::BoxFuture;
use nicheimage_bittensor::axon::{AxonBuilder, Caller, Handler};
use nicheimage_bittensor::dendrite::{AxonTarget, Dendrite};
use nicheimage_bittensor::keypair::{self, Keypair};
use nicheimage_bittensor::synapse::ImageGenerating;
use nicheimage_bittensor::wallet::Wallet;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

const PY_SEED: &str = "0x1111111111111111111111111111111111111111111111111111111111111111";
const STRANGER_SEED: &str = "0x2222222222222222222222222222222222222222222222222222222222222222";

fn seed_key(hex_seed: &str) -> Keypair {
    Keypair::from_mini_secret(&hex::decode(&hex_seed[2..]).unwrap()).unwrap()
}

/// Runs the peer script to completion and returns its JSON lines.
async fn peer(args: &[&str]) -> Vec<Value> {
    peer_lines(Set::Legacy, "bt_peer.py", args, Duration::from_secs(120)).await
}

/// Our test miner: answers known hotkeys, blacklists the rest.
struct Miner {
    allowed: String,
}

impl Handler<ImageGenerating> for Miner {
    type Error = std::io::Error;

    fn blacklist(&self, caller: &Caller) -> Result<(), std::io::Error> {
        if caller.hotkey == self.allowed {
            Ok(())
        } else {
            Err(std::io::Error::other("Unrecognized hotkey"))
        }
    }

    fn forward(
        self: Arc<Self>,
        _: Caller,
        mut synapse: ImageGenerating,
    ) -> BoxFuture<'static, Result<ImageGenerating, std::io::Error>> {
        async move {
            synapse.image = Value::String(format!("rust:{}", synapse.prompt));
            Ok(synapse)
        }
        .boxed()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_dendrite_is_served_verified_and_refused_by_our_axon() {
    let axon_key = Arc::new(Keypair::generate().0);
    let allowed = seed_key(PY_SEED).ss58().to_string();
    let axon = AxonBuilder::new(axon_key.clone())
        .attach::<ImageGenerating, _>(Arc::new(Miner { allowed }))
        .build();
    let server = axon.spawn(([127, 0, 0, 1], 0).into()).await.unwrap();
    let port = server.address.port().to_string();
    let common = [
        "dendrite",
        "--port",
        &port,
        "--axon-hotkey",
        axon_key.ss58(),
    ];
    let mut results = peer(
        &[
            &common[..],
            &["--seed", PY_SEED, "--case", "ok", "tamper", "stale", "ok"],
        ]
        .concat(),
    )
    .await;
    results.extend(peer(&[&common[..], &["--seed", STRANGER_SEED, "--case", "ok"]].concat()).await);
    let codes: Vec<i64> = results
        .iter()
        .map(|r| r["status_code"].as_i64().unwrap())
        .collect();
    assert_eq!(codes, vec![200, 401, 401, 200, 403], "{results:#?}");
    assert_eq!(results[0]["image"], "rust:a cat (ok)");
    assert_eq!(results[0]["axon_hotkey"], axon_key.ss58());
    assert!(results[0]["process_time"].as_f64().unwrap() > 0.0);
    assert!(
        results[1]["status_message"]
            .as_str()
            .unwrap()
            .contains("Signature mismatch"),
        "{}",
        results[1]
    );
    assert!(
        results[2]["status_message"]
            .as_str()
            .unwrap()
            .contains("too old"),
        "{}",
        results[2]
    );
    assert_eq!(results[4]["status_message"], "Unrecognized hotkey");
    let stats = axon.stats();
    assert_eq!(stats.by_status.get(&200), Some(&2));
    assert_eq!(stats.by_status.get(&401), Some(&2));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_dendrite_is_accepted_by_the_python_axon() {
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let mut child = peer_command(
        Set::Legacy,
        "bt_peer.py",
        &["axon", "--port", &port.to_string(), "--seed", PY_SEED],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let ready = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Ok(v) = serde_json::from_str::<Value>(&line) {
                return v;
            }
        }
        panic!("python axon exited before it was ready");
    })
    .await
    .expect("python axon ready in time");
    let hotkey = ready["hotkey"].as_str().unwrap().to_string();
    assert_eq!(hotkey, seed_key(PY_SEED).ss58());
    let dendrite = Dendrite::new(Arc::new(Keypair::generate().0)).unwrap();
    let target = AxonTarget {
        ip: "127.0.0.1".into(),
        port,
        hotkey: hotkey.clone(),
    };
    let synapse = ImageGenerating {
        prompt: "a red fox".into(),
        seed: 3,
        ..Default::default()
    };
    // The uvicorn server may need a moment after "ready".
    let mut answer = dendrite
        .call(&target, &synapse, Duration::from_secs(12))
        .await;
    for _ in 0..20 {
        if answer.status_code != 503 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
        answer = dendrite
            .call(&target, &synapse, Duration::from_secs(12))
            .await;
    }
    assert_eq!(answer.status_code, 200, "{answer:?}");
    assert_eq!(answer.synapse.image, Value::String("py:a red fox".into()));
    assert_eq!(answer.axon.hotkey.as_deref(), Some(hotkey.as_str()));
    assert!(answer.process_time > 0.0);
    // Signed for another axon: the Python axon's verify refuses it.
    let wrong = AxonTarget {
        hotkey: seed_key(STRANGER_SEED).ss58().into(),
        ..target.clone()
    };
    let refused = dendrite
        .call(&wrong, &synapse, Duration::from_secs(12))
        .await;
    assert_eq!(refused.status_code, 401, "{refused:?}");
    // Several at once, as a validator fans out. One axon three times over: each call from a
    // dendrite of its own uuid, since the axon wants a growing nonce per hotkey and uuid and
    // three concurrent calls may arrive in any order.
    let siblings = [dendrite.sibling(), dendrite.sibling(), dendrite.sibling()];
    let many = futures::future::join_all(
        siblings
            .iter()
            .map(|d| d.call(&target, &synapse, Duration::from_secs(12))),
    )
    .await;
    assert!(many.iter().all(|r| r.is_success()), "{many:?}");
    // Nobody listening: the synthetic 503, quickly.
    let closed = AxonTarget {
        ip: "127.0.0.1".into(),
        port: 9,
        hotkey,
    };
    assert_eq!(
        dendrite
            .call(&closed, &synapse, Duration::from_secs(5))
            .await
            .status_code,
        503
    );
    child.kill().await.ok();
}

#[tokio::test]
async fn signatures_addresses_and_body_hash_agree_both_ways() {
    let ours = seed_key(PY_SEED);
    let message = "1700000000000000000.5Dendrite.5Axon.uuid.a7ffc6f8";
    let our_signature = ours.sign_hex(message.as_bytes()).unwrap();
    let py = &peer(&[
        "vectors",
        "--seed",
        PY_SEED,
        "--message",
        message,
        "--rust-ss58",
        ours.ss58(),
        "--rust-signature",
        &our_signature,
    ])
    .await[0];
    assert_eq!(py["ss58"], ours.ss58());
    assert_eq!(py["public"], hex::encode(ours.public_bytes()));
    assert_eq!(
        py["body_hash"],
        nicheimage_bittensor::synapse::EMPTY_BODY_HASH
    );
    assert_eq!(py["rust_signature_verifies"], true);
    assert_eq!(py["rust_signature_on_other_message"], false);
    let py_signature = keypair::parse_signature_hex(py["signature"].as_str().unwrap()).unwrap();
    assert!(keypair::verify(
        &ours.public_bytes(),
        message.as_bytes(),
        &py_signature
    ));
    assert!(!keypair::verify(
        &ours.public_bytes(),
        b"other",
        &py_signature
    ));
}

#[tokio::test]
async fn keyfiles_written_by_bittensor_wallet_load_plain_and_encrypted() {
    let dir = tempfile::tempdir().unwrap();
    let password = "correct horse 42";
    let py = &peer(&[
        "keyfiles",
        "--dir",
        dir.path().to_str().unwrap(),
        "--seed",
        PY_SEED,
        "--password",
        password,
    ])
    .await[0];
    let plain = Wallet::new(dir.path(), "plain", "hk")
        .load_hotkey(None)
        .unwrap();
    assert_eq!(plain.keypair.ss58(), py["ss58"]);
    let sealed = Wallet::new(dir.path(), "sealed", "hk");
    assert!(
        sealed
            .load_hotkey(None)
            .unwrap_err()
            .to_string()
            .contains("password")
    );
    assert!(
        sealed
            .load_hotkey(Some("wrong"))
            .unwrap_err()
            .to_string()
            .contains("wrong password")
    );
    let loaded = sealed.load_hotkey(Some(password)).unwrap();
    assert_eq!(loaded.keypair.ss58(), py["ss58"]);
    assert!(loaded.keypair.can_sign());
}

#[tokio::test]
async fn our_neuron_layout_matches_the_sdk_decoder() {
    use nicheimage_bittensor::chain::subtensor::scale::{
        AxonInfoRaw, NeuronInfoLiteRaw, PrometheusInfoRaw, decode_neurons,
    };
    use parity_scale_codec::{Compact, Encode};
    let neuron = |uid: u16, seed: &str, permit: bool| NeuronInfoLiteRaw {
        hotkey: seed_key(seed).public_bytes(),
        coldkey: seed_key(STRANGER_SEED).public_bytes(),
        uid,
        netuid: 23,
        active: true,
        axon_info: AxonInfoRaw {
            block: 4_000_000 + u64::from(uid),
            version: 10_002_000,
            ip: 0x7f000001,
            port: 8091 + uid,
            ip_type: 4,
            protocol: 4,
            placeholder1: 0,
            placeholder2: 0,
        },
        prometheus_info: PrometheusInfoRaw {
            block: 0,
            version: 0,
            ip: 0,
            port: 0,
            ip_type: 0,
        },
        stake: vec![(
            seed_key(STRANGER_SEED).public_bytes(),
            Compact(12_345_000_000_000),
        )],
        rank: 0,
        emission: 987_654_321,
        incentive: 32768 + uid,
        consensus: 1000,
        trust: 0,
        validator_trust: 65535,
        dividends: 7,
        last_update: 4_100_000,
        validator_permit: permit,
        pruning_score: u16::MAX,
    };
    let bytes = vec![neuron(0, PY_SEED, true), neuron(1, STRANGER_SEED, false)].encode();
    let ours = decode_neurons(&bytes).unwrap();
    let sdk = peer(&["neurons", "--hex", &hex::encode(&bytes)]).await;
    assert_eq!(sdk.len(), 2);
    for (mine, theirs) in ours.iter().zip(&sdk) {
        assert_eq!(theirs["hotkey"], mine.hotkey.as_str());
        assert_eq!(theirs["coldkey"], mine.coldkey.as_str());
        assert_eq!(theirs["uid"], mine.uid);
        assert_eq!(theirs["netuid"], 23);
        assert_eq!(theirs["axon"]["port"], mine.axon.port);
        assert_eq!(theirs["axon"]["ip"].as_u64(), Some(mine.axon.ip as u64));
        assert_eq!(theirs["axon"]["block"], mine.axon.block);
        assert_eq!(theirs["stake"][0][1], mine.stake_rao);
        assert_eq!(theirs["emission"], mine.emission_rao);
        assert_eq!(
            theirs["incentive"].as_f64().unwrap(),
            (mine.incentive * 65535.0).round()
        );
        assert_eq!(theirs["last_update"], mine.last_update);
        assert_eq!(theirs["validator_permit"], mine.validator_permit);
        assert_eq!(theirs["pruning_score"], 65535);
    }
    assert_eq!(ours[0].axon.ip_string(), "127.0.0.1");
    assert!((ours[0].stake_tokens() - 12345.0).abs() < 1e-9);
    // A layout change (a trailing field we do not know) is an error, not a silent misread.
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(decode_neurons(&longer).is_err());
}
