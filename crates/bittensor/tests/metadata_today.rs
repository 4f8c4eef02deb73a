//! Our chain client against a newer runtime than the one we can run: the V16 metadata of a
//! dTAO-era subtensor (`../shared/chain/subtensor-1194374e6.metadata-v16.scale`, commit 1194374e6
//! of opentensor/subtensor, 2026-06-24). Every call we send is found there and our arguments
//! decode, field by field, as the runtime's own types, to the last byte; our extension builder
//! fills its extension list; every storage item, constant and runtime API we read resolves or
//! is absent with the fallback we take (this runtime predates dynamic tempo: legacy epochs).
//!
//! The file is not ours to ship: without it the test says so and passes, unless
//! `NICHEIMAGE_REQUIRE_CHAIN` is set (as `scripts/test.sh` does where ../shared/chain exists).

use nicheimage_bittensor::chain::ServeAxon;
use nicheimage_bittensor::chain::epoch::STATEFUL_ITEMS;
use nicheimage_bittensor::chain::subtensor::commit::{mode_of, plain_args, timelocked_args};
use nicheimage_bittensor::chain::subtensor::dynamic::{self, Value};
use nicheimage_bittensor::chain::subtensor::extrinsic::{TxContext, extension_parts};
use nicheimage_bittensor::chain::subtensor::metadata::{self, ChainMetadata};
use nicheimage_bittensor::chain::subtensor::serve_axon_args;
use parity_scale_codec::Encode;
use scale_info::TypeDef;

const FILE: &str = "subtensor-1194374e6.metadata-v16.scale";

fn load() -> Option<ChainMetadata> {
    let path = nicheimage_test_support::root()
        .join("../shared/chain")
        .join(FILE);
    match std::fs::read(&path) {
        Ok(bytes) => Some(metadata::parse(&bytes).expect("the V16 metadata parses")),
        Err(e) if std::env::var_os("NICHEIMAGE_REQUIRE_CHAIN").is_some() => {
            panic!("{}: {e}", path.display())
        }
        Err(e) => {
            eprintln!("skipped: {} ({e})", path.display());
            None
        }
    }
}

/// The runtime's own fields of `SubtensorModule::<call>`: (name, type id).
fn call_fields(meta: &ChainMetadata, call: &str) -> Vec<(String, u32)> {
    let index = meta.call_index("SubtensorModule", call).expect(call)[1];
    let enum_type = meta
        .types
        .types
        .iter()
        .find(|t| {
            let path = &t.ty.path.segments;
            path.first().is_some_and(|p| p == "pallet_subtensor")
                && path.last().is_some_and(|p| p == "Call")
        })
        .expect("pallet_subtensor's Call type");
    let TypeDef::Variant(variants) = &enum_type.ty.type_def else {
        panic!("Call is not an enum");
    };
    let variant = variants
        .variants
        .iter()
        .find(|v| v.index == index)
        .expect("the call's variant");
    assert_eq!(variant.name, call);
    variant
        .fields
        .iter()
        .map(|f| (f.name.clone().unwrap_or_default(), f.ty.id))
        .collect()
}

/// Decodes `args` as the call's fields, one by one, and requires every byte used.
fn decode_args(meta: &ChainMetadata, call: &str, args: &[u8]) -> Vec<(String, Value)> {
    let mut input = args;
    let decoded = call_fields(meta, call)
        .into_iter()
        .map(|(name, ty)| {
            let value = dynamic::decode(&meta.types, ty, &mut input)
                .unwrap_or_else(|e| panic!("{call}.{name}: {e}"));
            (name, value)
        })
        .collect();
    assert!(input.is_empty(), "{call}: {} bytes left over", input.len());
    decoded
}

fn names(fields: &[(String, Value)]) -> Vec<&str> {
    fields.iter().map(|(n, _)| n.as_str()).collect()
}

#[test]
fn every_call_we_send_decodes_as_the_runtime_types_it() {
    let Some(meta) = load() else { return };
    assert_eq!(meta.version, 16);

    // Plain weights: the mechanism call, then the older one.
    let args = plain_args("set_mechanism_weights", 7, &[0, 3], &[65535, 1], 42);
    let f = decode_args(&meta, "set_mechanism_weights", &args);
    assert_eq!(
        names(&f),
        ["netuid", "mecid", "dests", "weights", "version_key"]
    );
    assert_eq!(f[2].1.as_list().unwrap().len(), 2);
    assert_eq!(f[4].1.as_u64().unwrap(), 42);
    let args = plain_args("set_weights", 7, &[0, 3], &[65535, 1], 42);
    let f = decode_args(&meta, "set_weights", &args);
    assert_eq!(names(&f), ["netuid", "dests", "weights", "version_key"]);

    // Timelocked commits (v4): mechanism 0, the bounded ciphertext, round, version.
    let ciphertext = vec![9u8; 300];
    for call in [
        "commit_timelocked_mechanism_weights",
        "commit_timelocked_weights",
    ] {
        let f = decode_args(
            &meta,
            call,
            &timelocked_args(call, 7, &ciphertext, 123_456, 4),
        );
        let last = f.len() - 1;
        assert_eq!(f[last].1.as_u64().unwrap(), 4, "{call} version");
        assert_eq!(f[last - 1].1.as_u64().unwrap(), 123_456, "{call} round");
        assert_eq!(
            f[last - 2].1.as_bytes().unwrap(),
            ciphertext,
            "{call} commit"
        );
    }

    // Hash commit-reveal.
    let f = decode_args(&meta, "commit_weights", &(7u16, [5u8; 32]).encode());
    assert_eq!(f[1].1.as_bytes32().unwrap(), [5; 32]);
    let reveal = (7u16, vec![1u16, 2], vec![3u16, 4], vec![9u16; 8], 42u64).encode();
    let f = decode_args(&meta, "reveal_weights", &reveal);
    assert_eq!(
        names(&f),
        ["netuid", "uids", "values", "salt", "version_key"]
    );

    // The axon.
    let axon = ServeAxon {
        netuid: 7,
        version: 1,
        ip: "203.0.113.9".parse().unwrap(),
        port: 8091,
        protocol: 4,
    };
    let f = decode_args(&meta, "serve_axon", &serve_axon_args(&axon));
    assert_eq!(
        names(&f),
        [
            "netuid",
            "version",
            "ip",
            "port",
            "ip_type",
            "protocol",
            "placeholder1",
            "placeholder2"
        ]
    );
    assert_eq!(f[2].1.as_u128().unwrap(), 0xcb00_7109);

    // With commit-reveal on, this runtime takes the timelocked mechanism call.
    assert_eq!(
        format!("{:?}", mode_of(&meta, true).unwrap()),
        "Timelocked { call: \"commit_timelocked_mechanism_weights\" }"
    );
}

#[test]
fn our_extension_builder_fills_this_runtimes_list() {
    let Some(meta) = load() else { return };
    let ids: Vec<&str> = meta
        .extensions
        .iter()
        .map(|e| e.identifier.as_str())
        .collect();
    eprintln!("extensions: {ids:?}");
    let ctx = TxContext {
        spec_version: 400,
        tx_version: 1,
        genesis: [1; 32],
        checkpoint_block: 1000,
        checkpoint_hash: [2; 32],
        nonce: 3,
    };
    let (extra, additional) = extension_parts(&meta.extensions, &ctx)
        .unwrap_or_else(|e| panic!("extensions {ids:?}: {e}"));
    // What we fill decodes, extension by extension, as the runtime's own types, to the byte.
    let (mut e, mut a) = (&extra[..], &additional[..]);
    for ext in &meta.extensions {
        dynamic::decode(&meta.types, ext.extra_ty, &mut e)
            .unwrap_or_else(|err| panic!("{} explicit part: {err}", ext.identifier));
        dynamic::decode(&meta.types, ext.additional_ty, &mut a)
            .unwrap_or_else(|err| panic!("{} implicit part: {err}", ext.identifier));
    }
    assert!(
        e.is_empty() && a.is_empty(),
        "{} and {} bytes left",
        e.len(),
        a.len()
    );
}

#[test]
fn what_we_read_resolves_or_takes_its_fallback() {
    let Some(meta) = load() else { return };
    for item in [
        "Tempo",
        "WeightsSetRateLimit",
        "WeightsVersionKey",
        "CommitRevealWeightsEnabled",
        "ImmunityPeriod",
        "Burn",
        "RevealPeriodEpochs",
        "WeightCommits",
        "CommitRevealWeightsVersion",
        "BlockAtRegistration",
        "BlocksSinceLastStep",
    ] {
        meta.storage_entry("SubtensorModule", item)
            .unwrap_or_else(|e| panic!("{item}: {e}"));
    }
    meta.storage_entry("System", "Account")
        .expect("System.Account");
    // This runtime predates dynamic tempo: the client takes the legacy epoch rule here.
    let stateful: Vec<_> = STATEFUL_ITEMS
        .iter()
        .filter(|i| meta.storage_entry("SubtensorModule", i).is_ok())
        .collect();
    assert!(
        stateful.len() < STATEFUL_ITEMS.len(),
        "all of {STATEFUL_ITEMS:?} present: {stateful:?}"
    );
    // The block time comes from Aura's slot duration where the metadata carries it.
    if let Some(ms) = meta.constant_u64("Aura", "SlotDuration") {
        assert!(ms > 0, "SlotDuration {ms}");
        eprintln!("Aura.SlotDuration = {ms} ms");
    } else {
        eprintln!("no Aura.SlotDuration constant: the configured block time is used");
    }
    // Runtime APIs: typed results; the metagraph carries the stake split we read.
    assert!(
        meta.apis
            .contains_key("NeuronInfoRuntimeApi_get_neurons_lite")
    );
    let graph = meta.apis["SubnetInfoRuntimeApi_get_metagraph"];
    let text = format!("{:?}", meta.types.resolve(graph).unwrap());
    let inner = meta
        .types
        .types
        .iter()
        .find(|t| t.ty.path.segments.last().is_some_and(|s| s == "Metagraph"))
        .expect("the Metagraph type");
    let TypeDef::Composite(c) = &inner.ty.type_def else {
        panic!("Metagraph is not a struct: {text}");
    };
    let fields: Vec<_> = c.fields.iter().filter_map(|f| f.name.as_deref()).collect();
    for want in [
        "alpha_stake",
        "tao_stake",
        "total_stake",
        "hotkeys",
        "last_update",
    ] {
        assert!(
            fields.contains(&want),
            "Metagraph has no {want}: {fields:?}"
        );
    }
}
