//! Property tests (fuzzing on the stable toolchain) of the parsers that read files and chain
//! data we did not write: keyfiles, the runtime's metadata and SCALE values an RPC node sends,
//! safetensors headers, torch checkpoints (zip + pickle) and tokenizer folders. Each starts from
//! valid inputs and mutates them, or feeds arbitrary bytes; every property says "an error or a
//! value, never a panic, and in bounded time".
//!
//! Case counts follow `PROPTEST_CASES` as in `parsers_prop.rs`; a long run is
//! `PROPTEST_CASES=20000 cargo test --release -p nicheimage-node --features local-infer --test files_prop -- --nocapture`.

use nicheimage_test_support::cases;

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use cases::{Mutation, arb_mutation, mutate, run};
use nicheimage_bittensor::chain::subtensor::scale::{
    AxonInfoRaw, NeuronInfoLiteRaw, PrometheusInfoRaw,
};
use nicheimage_bittensor::chain::subtensor::{dynamic, metadata, scale};
use nicheimage_bittensor::keyfile;
use parity_scale_codec::{Compact, Encode};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

/// What one parse may take in a debug build before the property fails.
const PARSE_BUDGET: Duration = Duration::from_secs(2);

fn within_budget(what: &str, started: Instant) -> Result<(), TestCaseError> {
    let took = started.elapsed();
    prop_assert!(took < PARSE_BUDGET, "{what} took {took:?}");
    Ok(())
}

fn mutated(seed: &[u8], mutations: &[Mutation]) -> Vec<u8> {
    let mut bytes = seed.to_vec();
    for m in mutations {
        mutate(&mut bytes, m);
    }
    bytes
}

/// A seed picked from `seeds` by index, then mutated.
fn from_seeds(seeds: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    let n = seeds.len();
    (0..n, prop::collection::vec(arb_mutation(), 1..6))
        .prop_map(move |(i, ms)| mutated(&seeds[i], &ms))
}

// ---------------------------------------------------------------------------------------------
// Keyfiles.

fn keyfile_seeds() -> Vec<Vec<u8>> {
    let phrase = "bottom drive obey lake curtain smoke basket hold race lonely fit walk";
    let (_, json) = keyfile::json_for_phrase(phrase).expect("a keyfile for a fixed phrase");
    let full = json.as_bytes().to_vec();
    let value: serde_json::Value = serde_json::from_slice(&full).expect("our keyfile is JSON");
    // The phrase alone, and the public address alone (a `pub.txt`).
    let field = |name: &str| {
        serde_json::json!({ name: value[name].clone() })
            .to_string()
            .into_bytes()
    };
    vec![
        full,
        field("secretPhrase"),
        field("ss58Address"),
        b"$NACL0123456789012345678901234567890123456789".to_vec(),
    ]
}

#[test]
fn keyfiles_arbitrary_and_mutated_never_panic() {
    let strategy = prop_oneof![
        3 => from_seeds(keyfile_seeds()),
        1 => prop::collection::vec(any::<u8>(), 0..256),
    ];
    run(4, strategy, |bytes| {
        let started = Instant::now();
        // No password: an encrypted file is an error, never an Argon2 run.
        let _ = keyfile::parse(&bytes, None);
        within_budget("a keyfile", started)
    });
}

#[test]
fn keyfile_seeds_load_as_the_same_key() {
    let seeds = keyfile_seeds();
    let full = keyfile::parse(&seeds[0], None).expect("the full keyfile loads");
    for (i, seed) in seeds.iter().enumerate().take(3).skip(1) {
        let key = keyfile::parse(seed, None).unwrap_or_else(|e| panic!("seed {i}: {e}"));
        assert_eq!(key.ss58(), full.ss58(), "seed {i}");
    }
    assert!(keyfile::parse(&seeds[3], None).is_err());
}

// ---------------------------------------------------------------------------------------------
// SCALE: metadata and values from an RPC node.

/// The newer runtime's V16 metadata when `../shared/chain` is there; without it the caller
/// is skipped with a message, unless `NICHEIMAGE_REQUIRE_CHAIN` is set (as CI sets it there).
fn shared_metadata() -> Option<&'static Vec<u8>> {
    static BYTES: OnceLock<Option<Vec<u8>>> = OnceLock::new();
    let bytes = BYTES
        .get_or_init(|| {
            let path = nicheimage_test_support::root()
                .join("../shared/chain/subtensor-1194374e6.metadata-v16.scale");
            std::fs::read(path).ok()
        })
        .as_ref();
    if bytes.is_none() {
        assert!(
            std::env::var_os("NICHEIMAGE_REQUIRE_CHAIN").is_none(),
            "../shared/chain/subtensor-1194374e6.metadata-v16.scale is required"
        );
        eprintln!("skipped: ../shared/chain is not here");
    }
    bytes
}

fn arb_neuron() -> impl Strategy<Value = NeuronInfoLiteRaw> {
    (
        any::<[u8; 32]>(),
        any::<u16>(),
        any::<(u64, u128, u16, u8)>(),
        // Stakes whose sum fits a u64 (a larger sum is refused as a lie, rightly).
        prop::collection::vec((any::<[u8; 32]>(), 0..u64::MAX / 4), 0..3),
        any::<(u16, u64, u64, bool)>(),
    )
        .prop_map(
            |(hotkey, uid, (block, ip, port, ip_type), stake, (rank, emission, update, permit))| {
                NeuronInfoLiteRaw {
                    hotkey,
                    coldkey: hotkey,
                    uid,
                    netuid: 1,
                    active: permit,
                    axon_info: AxonInfoRaw {
                        block,
                        version: 1,
                        ip,
                        port,
                        ip_type,
                        protocol: 4,
                        placeholder1: 0,
                        placeholder2: 0,
                    },
                    prometheus_info: PrometheusInfoRaw {
                        block,
                        version: 1,
                        ip,
                        port,
                        ip_type,
                    },
                    stake: stake.into_iter().map(|(c, s)| (c, Compact(s))).collect(),
                    rank,
                    emission,
                    incentive: rank,
                    consensus: rank,
                    trust: rank,
                    validator_trust: rank,
                    dividends: rank,
                    last_update: update,
                    validator_permit: permit,
                    pruning_score: rank,
                }
            },
        )
}

#[test]
fn neuron_lists_from_an_rpc_node_never_panic_and_valid_ones_decode() {
    let valid = prop::collection::vec(arb_neuron(), 0..4);
    let strategy = (valid, prop::collection::vec(arb_mutation(), 0..4));
    run(2, strategy, |(neurons, mutations)| {
        let bytes = neurons.encode();
        if mutations.is_empty() {
            let decoded = scale::decode_neurons(&bytes)
                .map_err(|e| TestCaseError::fail(format!("valid neurons refused: {e}")))?;
            prop_assert_eq!(decoded.len(), neurons.len());
            for (d, n) in decoded.iter().zip(&neurons) {
                prop_assert_eq!(d.uid, n.uid);
                prop_assert_eq!(d.validator_permit, n.validator_permit);
            }
            return Ok(());
        }
        let started = Instant::now();
        let _ = scale::decode_neurons(&mutated(&bytes, &mutations));
        within_budget("a neuron list", started)
    });
}

#[test]
fn dry_run_results_never_panic() {
    run(1, prop::collection::vec(any::<u8>(), 0..64), |bytes| {
        let _ = scale::decode_apply_result(&bytes);
        Ok(())
    });
}

#[test]
fn metadata_arbitrary_bytes_never_panic() {
    let prefix = prop::collection::vec(any::<u8>(), 0..512).prop_map(|mut tail| {
        // Most of these pass the magic and the version and reach the registry decoder.
        let mut bytes = b"meta".to_vec();
        bytes.push(16);
        bytes.append(&mut tail);
        bytes
    });
    let strategy = prop_oneof![prefix, prop::collection::vec(any::<u8>(), 0..512)];
    run(1, strategy, |bytes| {
        let started = Instant::now();
        let _ = metadata::parse(&bytes);
        within_budget("metadata", started)
    });
}

#[test]
fn mutated_runtime_metadata_never_panics() {
    let Some(seed) = shared_metadata() else {
        return;
    };
    let strategy = prop::collection::vec(arb_mutation(), 1..4);
    run(32, strategy, |mutations| {
        let started = Instant::now();
        let _ = metadata::parse(&mutated(seed, &mutations));
        within_budget("mutated metadata", started)
    });
}

#[test]
fn values_of_every_runtime_type_never_panic() {
    let Some(seed) = shared_metadata() else {
        return;
    };
    let chain = metadata::parse(seed).expect("the shared metadata parses");
    let types = u32::try_from(chain.types.types.len()).expect("a few thousand types");
    let strategy = (0..types, prop::collection::vec(any::<u8>(), 0..256));
    run(1, strategy, |(id, bytes)| {
        let started = Instant::now();
        let _ = dynamic::decode_all(&chain.types, id, &bytes);
        within_budget("a value", started)
    });
}

// ---------------------------------------------------------------------------------------------
// Model files: safetensors headers, torch checkpoints, tokenizer folders. Where the node links
// libtorch (`local-infer`, on in the workspace's test run): its build script gives the test its
// rpath.

#[cfg(feature = "local-infer")]
mod model_files {
    use super::*;
    use nicheimage_engine::tiny::{state_dict_pickle, torch_zip};
    use nicheimage_engine::tokenizer::ClipTokenizer;
    use nicheimage_engine::tokenizer_files::TokenizerFiles;
    use nicheimage_engine::torch_file::read_torch_file;
    use nicheimage_engine::weights::SafetensorsFile;

    fn safetensors_seed() -> Vec<u8> {
        let header = serde_json::json!({
            "__metadata__": {"format": "pt"},
            "a.weight": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]},
            "b": {"dtype": "F16", "shape": [3], "data_offsets": [16, 22]},
        })
        .to_string();
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend(header.as_bytes());
        bytes.extend([0u8; 22]);
        bytes
    }

    #[test]
    fn safetensors_headers_never_panic() {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let strategy = prop_oneof![
            3 => from_seeds(vec![safetensors_seed()]),
            1 => prop::collection::vec(any::<u8>(), 0..64),
        ];
        run(4, strategy, |bytes| {
            let path = dir.path().join("m.safetensors");
            std::fs::write(&path, &bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let started = Instant::now();
            if let Ok(file) = SafetensorsFile::open(&path) {
                let names: Vec<String> = file.names().cloned().collect();
                for name in names {
                    let _ = file.read(&name);
                }
            }
            within_budget("a safetensors file", started)
        });
        let path = dir.path().join("m.safetensors");
        std::fs::write(&path, safetensors_seed()).expect("the seed is written");
        let file = SafetensorsFile::open(&path).expect("the seed opens");
        assert_eq!(file.shape("a.weight"), Some(vec![2, 2]));
    }

    /// A pickle of `{"w": tensor}` over a 4-float storage, as torch.save writes a state dict.
    fn pickle_seed() -> Vec<u8> {
        state_dict_pickle(2, 2)
    }

    fn checkpoint(pickle: &[u8], storage: &[u8]) -> Vec<u8> {
        torch_zip(pickle, storage).expect("a zip in memory")
    }

    fn floats() -> Vec<u8> {
        [1f32, 2.0, 3.0, 4.0]
            .iter()
            .flat_map(|f| f.to_le_bytes())
            .collect()
    }

    #[test]
    fn torch_checkpoints_never_panic() {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let seed = pickle_seed();
        // Mutated pickles inside a sound zip reach the unpickler; mutated zips the zip reader.
        let pickles = (
            prop::collection::vec(arb_mutation(), 1..6),
            prop::collection::vec(any::<u8>(), 0..24),
        )
            .prop_map(move |(ms, storage)| checkpoint(&mutated(&seed, &ms), &storage));
        let zips = from_seeds(vec![checkpoint(&pickle_seed(), &floats())]);
        let strategy = prop_oneof![3 => pickles, 1 => zips];
        run(4, strategy, |bytes| {
            let path = dir.path().join("m.pt");
            std::fs::write(&path, &bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let started = Instant::now();
            let _ = read_torch_file(&path);
            within_budget("a torch checkpoint", started)
        });
        let path = dir.path().join("m.pt");
        std::fs::write(&path, checkpoint(&pickle_seed(), &floats())).expect("written");
        let tensors = read_torch_file(&path).expect("the seed reads");
        assert_eq!(tensors.len(), 1);
    }

    fn tokenizer_seed() -> [(&'static str, Vec<u8>); 4] {
        let vocab = serde_json::json!({
            "c": 0, "a": 1, "t</w>": 2, "ca": 3, "cat</w>": 4,
            "<|startoftext|>": 5, "<|endoftext|>": 6,
        });
        [
            ("vocab.json", vocab.to_string().into_bytes()),
            ("merges.txt", b"#version: 0.2\nc a\nca t</w>\n".to_vec()),
            (
                "special_tokens_map.json",
                br#"{"pad_token": "<|endoftext|>", "unk_token": {"content": "<|endoftext|>"}}"#
                    .to_vec(),
            ),
            (
                "added_tokens.json",
                br#"{"<|startoftext|>": 5, "<|endoftext|>": 6}"#.to_vec(),
            ),
        ]
    }

    #[test]
    fn tokenizer_folders_never_panic() {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let strategy = (0usize..4, prop::collection::vec(arb_mutation(), 1..6));
        run(4, strategy, |(which, mutations)| {
            for (i, (name, bytes)) in tokenizer_seed().into_iter().enumerate() {
                let bytes = if i == which {
                    mutated(&bytes, &mutations)
                } else {
                    bytes
                };
                std::fs::write(dir.path().join(name), bytes)
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
            }
            let started = Instant::now();
            if let Ok(Some(files)) = TokenizerFiles::read(dir.path()) {
                let tokenizer = ClipTokenizer::from_files(files);
                let _ = tokenizer.encode_padded("a cat <|endoftext|> cat");
            }
            within_budget("a tokenizer folder", started)
        });
        for (name, bytes) in tokenizer_seed() {
            std::fs::write(dir.path().join(name), bytes).expect("written");
        }
        let files = TokenizerFiles::read(dir.path())
            .expect("the seed reads")
            .expect("a vocabulary");
        let ids = ClipTokenizer::from_files(files).encode("cat");
        assert!(ids.contains(&4), "{ids:?}");
    }
}
