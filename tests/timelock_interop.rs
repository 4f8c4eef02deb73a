//! Commit-reveal v4 against the real Python library the SDK uses (bittensor-drand 1.3.0, from
//! `scripts/interop/setup.sh`): what our Rust code encrypts to drand quicknet round 1000 is opened
//! by `decrypt_with_signature` with the real round-1000 signature, byte for byte, and decodes as
//! the chain's payload type; what the library encrypts we open; and our reveal rounds equal
//! `get_encrypted_commit`'s over a few hundred (tempo, block, netuid, period, block time) cases.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use nicheimage_bittensor::chain::timelock;
use parity_scale_codec::Decode;
use serde_json::{Value, json};

const ROUND_1000: &str = "b44679b9a59af2ec876b1a6b1ad52ea9b1615fc3982b19576350f93447cb1125e342b73a8dd2bacbe47e4b6b63ed5e39";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// One request to scripts/interop/drand_peer.py under the pinned venv.
fn drand(request: Value) -> Value {
    let setup = Command::new("bash")
        .arg(root().join("scripts/interop/setup.sh"))
        .stdout(Stdio::null())
        .status()
        .expect("run scripts/interop/setup.sh");
    assert!(setup.success(), "scripts/interop/setup.sh failed");
    let mut child = Command::new(root().join(".venv-bittensor/bin/python"))
        .arg(root().join("scripts/interop/drand_peer.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(request.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "drand_peer.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn bittensor_drand_opens_our_timelocked_weights_and_we_open_its() {
    let signature = hex::decode(ROUND_1000).unwrap();
    let hotkey = [0x5a; 32];
    let payload = timelock::payload(&hotkey, &[0, 3, 7], &[65535, 12, 900], 10_002_000);
    let ours = timelock::encrypt(&payload, 1000).unwrap();
    let answer = drand(json!({"decrypt": hex::encode(&ours), "signature": ROUND_1000}));
    let opened = hex::decode(answer["plaintext"].as_str().unwrap()).unwrap();
    assert_eq!(
        opened, payload,
        "bittensor_drand opened our ciphertext to our bytes"
    );
    // The chain's WeightsTlockPayload {hotkey: Vec<u8>, uids, values, version_key}.
    let (who, uids, values, version) =
        <(Vec<u8>, Vec<u16>, Vec<u16>, u64)>::decode(&mut &opened[..]).unwrap();
    assert_eq!(
        (who.as_slice(), uids, values, version),
        (&hotkey[..], vec![0, 3, 7], vec![65535, 12, 900], 10_002_000)
    );

    let answer = drand(json!({"encrypt": hex::encode(b"weights from python"), "round": 1000}));
    let theirs = hex::decode(answer["ciphertext"].as_str().unwrap()).unwrap();
    assert_eq!(
        timelock::decrypt(&theirs, &signature).unwrap(),
        b"weights from python"
    );
    eprintln!(
        "ours {} bytes, theirs {} bytes, both opened by the other side",
        ours.len(),
        theirs.len()
    );
}

#[test]
fn reveal_rounds_equal_get_encrypted_commit() {
    // A small deterministic spread: tempos from 1 to 7200, blocks up to 10^7, netuids up to 4095.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = |m: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % m
    };
    let cases: Vec<(u64, u64, u16, u64, f64)> = (0..300)
        .map(|i| {
            let tempo = [1, 10, 99, 100, 360, 361, 7200][i % 7];
            let block_time = [12.0, 0.25, 3.0, 6.5][i % 4];
            (
                tempo,
                next(10_000_000),
                next(4096) as u16,
                1 + next(100),
                block_time,
            )
        })
        .collect();
    let request: Vec<Value> = cases
        .iter()
        .map(|(t, b, n, p, bt)| json!([t, b, n, p, bt]))
        .collect();
    let answer = drand(json!({ "rounds": request }));
    let rounds = answer["rounds"].as_array().unwrap();
    assert_eq!(rounds.len(), cases.len());
    for ((tempo, block, netuid, period, block_time), got) in cases.iter().zip(rounds) {
        let theirs = got[0].as_u64().unwrap();
        let (before, after) = (got[1].as_f64().unwrap(), got[2].as_f64().unwrap());
        // Their clock was read between `before` and `after`.
        let low = timelock::reveal_round(*tempo, *block, *netuid, *period, *block_time, before);
        let high = timelock::reveal_round(*tempo, *block, *netuid, *period, *block_time, after);
        assert!(
            (low..=high).contains(&theirs),
            "tempo {tempo} block {block} netuid {netuid} period {period} block time {block_time}: theirs {theirs}, ours {low}..={high}"
        );
    }
}
