//! Commit-reveal v4 against the real Python libraries the SDKs use, from
//! `scripts/interop/setup.sh`: bittensor-drand 1.3.0 (bittensor 10.2, the legacy epoch rule) and
//! 2.0.0 (bittensor 11.3, the stateful dynamic-tempo schedule). What our Rust code encrypts to
//! drand quicknet round 1000 is opened by both with the real round-1000 signature, byte for byte,
//! and decodes as the chain's payload type; what 1.3.0 encrypts we open; our legacy reveal rounds
//! equal `get_encrypted_commit`'s and our stateful ones `get_encrypted_commit_v2`'s over
//! generated epoch states.

use nicheimage_test_support::interop;

use std::io::Write;
use std::process::{Command, Stdio};

use interop::Set;

use nicheimage_bittensor::chain::epoch::{EpochState, Rule};
use nicheimage_bittensor::chain::timelock;
use parity_scale_codec::Decode;
use serde_json::{Value, json};

const ROUND_1000: &str = "b44679b9a59af2ec876b1a6b1ad52ea9b1615fc3982b19576350f93447cb1125e342b73a8dd2bacbe47e4b6b63ed5e39";

/// One request to scripts/interop/drand_peer.py under a pinned venv.
fn drand_in(set: Set, request: Value) -> Value {
    let mut child = Command::new(interop::python(set))
        .arg(interop::script("drand_peer.py"))
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

fn drand(request: Value) -> Value {
    drand_in(Set::Legacy, request)
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
        let state = EpochState::legacy(*block, *netuid, *tempo as u16, *period, *block_time);
        let low = state.reveal_round(before).unwrap();
        let high = state.reveal_round(after).unwrap();
        assert!(
            (low..=high).contains(&theirs),
            "tempo {tempo} block {block} netuid {netuid} period {period} block time {block_time}: theirs {theirs}, ours {low}..={high}"
        );
    }
}

#[test]
fn bittensor_drand_2_opens_our_timelocked_weights() {
    let hotkey = [0xc3; 32];
    let payload = timelock::payload(&hotkey, &[1, 2, 9], &[7, 65535, 300], 4242);
    let ours = timelock::encrypt(&payload, 1000).unwrap();
    let answer = drand_in(
        Set::Today,
        json!({"decrypt": hex::encode(&ours), "signature": ROUND_1000}),
    );
    let opened = hex::decode(answer["plaintext"].as_str().unwrap()).unwrap();
    let (who, uids, values, version) =
        <(Vec<u8>, Vec<u16>, Vec<u16>, u64)>::decode(&mut &opened[..]).unwrap();
    assert_eq!(
        (who.as_slice(), uids, values, version),
        (&hotkey[..], vec![1, 2, 9], vec![7, 65535, 300], 4242)
    );
}

/// Epoch states as a chain with dynamic tempo holds them: tempos 1..=1000 (some just changed, so
/// the last epoch is further back than a tempo, or nearer), owner-triggered epochs pending
/// before, at and after the commit's block, the 50 400-block safety net about to trip or
/// tripped, reveal periods 1..=3, any netuid (the stateful rule ignores it) and block times of
/// finney, fast local nets and odd values.
fn stateful_states(count: usize) -> Vec<EpochState> {
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = |m: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % m
    };
    (0..count)
        .map(|i| {
            let tempo = 1 + next(1000);
            let block = 60_000 + next(9_000_000);
            // Since the last epoch: within the tempo, or overdue after a tempo change.
            let since = match i % 5 {
                0 => next(tempo.max(1) * 3),
                _ => next(tempo),
            };
            let last_epoch_block = block - since;
            let pending_epoch_at = match i % 4 {
                0 | 1 => 0,
                _ => match next(5) {
                    0 => block,
                    1 => block + 1,
                    2 => block + 2,
                    3 => block - next(since + 1),
                    _ => block + 1 + next(2 * tempo),
                },
            };
            let blocks_since_last_step = match i % 7 {
                0 => 50_400 - next(3),
                1 => 50_398 + next(5),
                2 => 50_400 - next(tempo + 5).min(50_400),
                _ => since,
            };
            EpochState {
                netuid: next(65_536) as u16,
                block,
                tempo: tempo as u16,
                last_epoch_block,
                pending_epoch_at,
                epoch_index: next(1_000_000),
                blocks_since_last_step,
                reveal_period_epochs: 1 + next(3),
                block_time_secs: [12.0, 0.25, 6.0, 3.7][i % 4],
                rule: Rule::Stateful,
            }
        })
        .collect()
}

#[test]
fn reveal_rounds_equal_get_encrypted_commit_v2() {
    let states = stateful_states(1200);
    let request: Vec<Value> = states
        .iter()
        .map(|s| {
            json!([
                s.last_epoch_block,
                s.pending_epoch_at,
                s.epoch_index,
                s.tempo,
                s.blocks_since_last_step,
                s.block,
                s.reveal_period_epochs,
                s.block_time_secs
            ])
        })
        .collect();
    let answer = drand_in(Set::Today, json!({ "rounds_v2": request }));
    let rounds = answer["rounds"].as_array().unwrap();
    assert_eq!(rounds.len(), states.len());
    let (mut widest, mut owner, mut safety_net, mut legacy_differs) = (0, 0, 0, 0);
    for (state, got) in states.iter().zip(rounds) {
        let theirs = got[0]
            .as_u64()
            .unwrap_or_else(|| panic!("2.0.0 refused {state:?}"));
        let (before, after) = (got[1].as_f64().unwrap(), got[2].as_f64().unwrap());
        let low = state.reveal_round(before).unwrap();
        let high = state.reveal_round(after).unwrap();
        assert!(
            (low..=high).contains(&theirs),
            "{state:?}: theirs {theirs}, ours {low}..={high}"
        );
        widest = widest.max(high - low);
        // What the legacy rule (our code before dynamic tempo) would have sent.
        let legacy = EpochState::legacy(
            state.block,
            state.netuid,
            state.tempo,
            state.reveal_period_epochs,
            state.block_time_secs,
        );
        legacy_differs += usize::from(legacy.reveal_round(before).unwrap() != theirs);
        owner += usize::from(state.pending_epoch_at > 0);
        safety_net += usize::from(state.blocks_since_last_step >= 50_400);
    }
    // Tempo 0 is refused by both.
    let mut zero = states[0].clone();
    zero.tempo = 0;
    assert!(zero.reveal_round(0.0).is_err());
    let answer = drand_in(
        Set::Today,
        json!({ "rounds_v2": [[10, 0, 0, 0, 0, 10, 1, 12.0]] }),
    );
    assert!(answer["rounds"][0][0].is_null());
    eprintln!(
        "{} states ({owner} with an owner-triggered epoch pending, {safety_net} at the safety net): reveal rounds equal, clock spread at most {widest} round(s); the legacy rule would differ on {legacy_differs}",
        states.len()
    );
}
