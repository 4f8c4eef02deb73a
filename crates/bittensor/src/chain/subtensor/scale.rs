//! SCALE of what we read from subtensor: neurons read by field name from a decoded
//! `NeuronInfoLite` (whatever layout the runtime's metadata gives), the layout of runtimes whose
//! runtime APIs return bare bytes (spec 218 to 425 encode it alike), storage keys, and the
//! `ApplyExtrinsicResult` of a dry run.

use parity_scale_codec::{Compact, Decode, Encode};
use scale_info::{PortableRegistry, TypeInfo};

use super::dynamic::{self, Value};

use crate::chain::{AxonInfo, ChainError, Neuron};
use crate::ss58;

#[derive(Debug, Clone, Encode, Decode, PartialEq, TypeInfo)]
pub struct AxonInfoRaw {
    pub block: u64,
    pub version: u32,
    pub ip: u128,
    pub port: u16,
    pub ip_type: u8,
    pub protocol: u8,
    pub placeholder1: u8,
    pub placeholder2: u8,
}

#[derive(Debug, Clone, Encode, Decode, PartialEq, TypeInfo)]
pub struct PrometheusInfoRaw {
    pub block: u64,
    pub version: u32,
    pub ip: u128,
    pub port: u16,
    pub ip_type: u8,
}

#[derive(Debug, Clone, Encode, Decode, PartialEq, TypeInfo)]
pub struct NeuronInfoLiteRaw {
    pub hotkey: [u8; 32],
    pub coldkey: [u8; 32],
    #[codec(compact)]
    pub uid: u16,
    #[codec(compact)]
    pub netuid: u16,
    pub active: bool,
    pub axon_info: AxonInfoRaw,
    pub prometheus_info: PrometheusInfoRaw,
    /// (coldkey, stake) pairs; stake is alpha rao.
    pub stake: Vec<([u8; 32], Compact<u64>)>,
    #[codec(compact)]
    pub rank: u16,
    #[codec(compact)]
    pub emission: u64,
    #[codec(compact)]
    pub incentive: u16,
    #[codec(compact)]
    pub consensus: u16,
    #[codec(compact)]
    pub trust: u16,
    #[codec(compact)]
    pub validator_trust: u16,
    #[codec(compact)]
    pub dividends: u16,
    #[codec(compact)]
    pub last_update: u64,
    pub validator_permit: bool,
    #[codec(compact)]
    pub pruning_score: u16,
}

/// The `NeuronInfoLite` layout for runtimes that wrap runtime-API results in `Vec<u8>` and so do
/// not describe it in their metadata, as a registry of its own: `(registry, Vec<NeuronInfoLite>)`.
pub fn wrapped_neurons_layout() -> (PortableRegistry, u32) {
    let mut registry = scale_info::Registry::new();
    let id = registry
        .register_type(&scale_info::meta_type::<Vec<NeuronInfoLiteRaw>>())
        .id;
    (registry.into(), id)
}

fn unit(v: &Value) -> Result<f64, ChainError> {
    Ok(f64::from(v.as_u16()?) / 65535.0)
}

/// One neuron from a decoded `NeuronInfoLite`, by field name.
pub fn neuron(v: &Value) -> Result<Neuron, ChainError> {
    let named = |name: &str| {
        v.field(name)
            .map_err(|e| ChainError::Decode(format!("NeuronInfoLite: {e}")))
    };
    let a = named("axon_info")?;
    let mut stake: u64 = 0;
    for pair in named("stake")?.as_list()? {
        let amount = match pair.as_list()? {
            [_, amount] => amount.as_u64()?,
            _ => return Err(ChainError::Decode("NeuronInfoLite.stake: not pairs".into())),
        };
        stake = stake
            .checked_add(amount)
            .ok_or_else(|| ChainError::Decode("NeuronInfoLite.stake: sum past u64".into()))?;
    }
    Ok(Neuron {
        uid: named("uid")?.as_u16()?,
        hotkey: ss58::encode(&named("hotkey")?.as_bytes32()?),
        coldkey: ss58::encode(&named("coldkey")?.as_bytes32()?),
        active: named("active")?.as_bool()?,
        axon: AxonInfo {
            block: a.field("block")?.as_u64()?,
            version: u32::try_from(a.field("version")?.as_u64()?)
                .map_err(|_| ChainError::Decode("axon version past u32".into()))?,
            ip: a.field("ip")?.as_u128()?,
            port: a.field("port")?.as_u16()?,
            ip_type: a.field("ip_type")?.as_u8()?,
            protocol: a.field("protocol")?.as_u8()?,
        },
        stake_rao: stake,
        root_stake_rao: 0,
        total_stake_rao: stake,
        emission_rao: named("emission")?.as_u64()?,
        rank: unit(named("rank")?)?,
        incentive: unit(named("incentive")?)?,
        consensus: unit(named("consensus")?)?,
        trust: unit(named("trust")?)?,
        validator_trust: unit(named("validator_trust")?)?,
        dividends: unit(named("dividends")?)?,
        last_update: named("last_update")?.as_u64()?,
        validator_permit: named("validator_permit")?.as_bool()?,
        pruning_score: unit(named("pruning_score")?)?,
    })
}

/// Neurons from a decoded `Vec<NeuronInfoLite>`.
pub fn neurons(v: &Value) -> Result<Vec<Neuron>, ChainError> {
    v.as_list()?.iter().map(neuron).collect()
}

/// Decodes bare `Vec<NeuronInfoLite>` bytes in the wrapped-runtime layout, refusing trailing
/// bytes (a layout change).
pub fn decode_neurons(bytes: &[u8]) -> Result<Vec<Neuron>, ChainError> {
    let (types, id) = wrapped_neurons_layout();
    neurons(&dynamic::decode_all(&types, id, bytes)?)
}

pub fn twox_128(data: &[u8]) -> [u8; 16] {
    let a = twox_hash::XxHash64::oneshot(0, data).to_le_bytes();
    let b = twox_hash::XxHash64::oneshot(1, data).to_le_bytes();
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&a);
    out[8..].copy_from_slice(&b);
    out
}

pub fn blake2_256(data: &[u8]) -> [u8; 32] {
    use blake2::Digest;
    blake2::Blake2b::<blake2::digest::consts::U32>::digest(data).into()
}

pub fn blake2_128(data: &[u8]) -> [u8; 16] {
    use blake2::Digest;
    blake2::Blake2b::<blake2::digest::consts::U16>::digest(data).into()
}

/// The storage key of an entry: the prefixes, then each SCALE-encoded key part hashed the way
/// the runtime's metadata says.
pub fn storage_key_hashed(
    pallet: &str,
    item: &str,
    hashers: &[frame_metadata::v14::StorageHasher],
    parts: &[&[u8]],
) -> Result<String, ChainError> {
    use frame_metadata::v14::StorageHasher as H;
    if hashers.len() != parts.len() {
        return Err(ChainError::Unsupported(format!(
            "{pallet}.{item} takes {} key parts, {} given",
            hashers.len(),
            parts.len()
        )));
    }
    let mut key = Vec::with_capacity(32 + parts.iter().map(|p| p.len() + 32).sum::<usize>());
    key.extend_from_slice(&twox_128(pallet.as_bytes()));
    key.extend_from_slice(&twox_128(item.as_bytes()));
    for (hasher, part) in hashers.iter().zip(parts) {
        match hasher {
            H::Blake2_128 => key.extend_from_slice(&blake2_128(part)),
            H::Blake2_256 => key.extend_from_slice(&blake2_256(part)),
            H::Blake2_128Concat => {
                key.extend_from_slice(&blake2_128(part));
                key.extend_from_slice(part);
            }
            H::Twox128 => key.extend_from_slice(&twox_128(part)),
            H::Twox256 => {
                for seed in 0..4 {
                    key.extend_from_slice(&twox_hash::XxHash64::oneshot(seed, part).to_le_bytes());
                }
            }
            H::Twox64Concat => {
                key.extend_from_slice(&twox_hash::XxHash64::oneshot(0, part).to_le_bytes());
                key.extend_from_slice(part);
            }
            H::Identity => key.extend_from_slice(part),
        }
    }
    Ok(format!("0x{}", hex::encode(key)))
}

/// Key of a `StorageMap<Identity, _, _>` entry (or a plain value when `key` is empty).
pub fn storage_key(pallet: &str, item: &str, identity_key: &[u8]) -> String {
    let mut key = Vec::with_capacity(32 + identity_key.len());
    key.extend_from_slice(&twox_128(pallet.as_bytes()));
    key.extend_from_slice(&twox_128(item.as_bytes()));
    key.extend_from_slice(identity_key);
    format!("0x{}", hex::encode(key))
}

/// Parses `0x…` hex from an RPC answer.
pub fn hex_bytes(value: &serde_json::Value) -> Result<Vec<u8>, ChainError> {
    let text = value
        .as_str()
        .ok_or_else(|| ChainError::Decode(format!("expected hex, got {value}")))?;
    hex::decode(text.trim_start_matches("0x"))
        .map_err(|e| ChainError::Decode(format!("bad hex: {e}")))
}

/// What `BlockBuilder_apply_extrinsic` said about a transaction.
#[derive(Debug, Clone, PartialEq)]
pub enum DryRun {
    Ok,
    /// Dispatch failed in a pallet: (pallet index, error index).
    Module {
        pallet: u8,
        error: u8,
    },
    /// Another dispatch error kind (BadOrigin, Token, ...), by name.
    Dispatch(String),
    /// The transaction pool would refuse it: validity error by name, or `Custom(code)`.
    Invalid(String),
}

const DISPATCH_ERRORS: [&str; 15] = [
    "Other",
    "CannotLookup",
    "BadOrigin",
    "Module",
    "ConsumerRemaining",
    "NoProviders",
    "TooManyConsumers",
    "Token",
    "Arithmetic",
    "Transactional",
    "Exhausted",
    "Corruption",
    "Unavailable",
    "RootNotAllowed",
    "Trie",
];
const INVALID_TRANSACTION: [&str; 13] = [
    "Call",
    "Payment",
    "Future",
    "Stale",
    "BadProof",
    "AncientBirthBlock",
    "ExhaustsResources",
    "Custom",
    "BadMandatory",
    "MandatoryValidation",
    "BadSigner",
    "IndeterminateImplicit",
    "UnknownOrigin",
];

/// Decodes `Result<Result<(), DispatchError>, TransactionValidityError>`.
pub fn decode_apply_result(bytes: &[u8]) -> Result<DryRun, ChainError> {
    let bad = || ChainError::Decode(format!("apply_extrinsic result 0x{}", hex::encode(bytes)));
    match bytes {
        [0, 0, ..] => Ok(DryRun::Ok),
        [0, 1, 3, pallet, error, ..] => Ok(DryRun::Module {
            pallet: *pallet,
            error: *error,
        }),
        [0, 1, kind, ..] => Ok(DryRun::Dispatch(
            DISPATCH_ERRORS
                .get(usize::from(*kind))
                .unwrap_or(&"Unknown")
                .to_string(),
        )),
        [1, 0, 7, code, ..] => Ok(DryRun::Invalid(format!("Custom({code})"))),
        [1, 0, kind, ..] => Ok(DryRun::Invalid(
            INVALID_TRANSACTION
                .get(usize::from(*kind))
                .unwrap_or(&"Unknown")
                .to_string(),
        )),
        [1, 1, ..] => Ok(DryRun::Invalid("UnknownValidity".into())),
        _ => Err(bad()),
    }
}

/// Subtensor's `InvalidTransaction::Custom` codes for the checks its transaction extension runs
/// before dispatch (common/src/transaction_error.rs), mapped back to the pallet error names.
pub fn custom_invalid_name(code: u8) -> Option<&'static str> {
    Some(match code {
        1 => "NotEnoughStakeToSetWeights",
        6 => "SettingWeightsTooFast",
        12 => "ServingRateLimitExceeded",
        19 => "HotKeyNotRegisteredInSubNet",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashed_keys_follow_their_hashers() {
        use frame_metadata::v14::StorageHasher as H;
        let plain = storage_key_hashed("System", "Number", &[], &[]).unwrap();
        assert_eq!(plain, storage_key("System", "Number", &[]));
        let identity = storage_key_hashed("SubtensorModule", "Tempo", &[H::Identity], &[&[2, 0]]);
        assert_eq!(
            identity.unwrap(),
            storage_key("SubtensorModule", "Tempo", &[2, 0])
        );
        // System.Account of Alice: blake2_128_concat, a key every Substrate tool prints.
        let alice = hex::decode("d43593c715fdd31c61141abd04a99fd6822c8558854ccde39a5684e7a56da27d")
            .unwrap();
        assert_eq!(
            storage_key_hashed("System", "Account", &[H::Blake2_128Concat], &[&alice]).unwrap(),
            "0x26aa394eea5630e07c48ae0c9558cef7b99d880ec681799c0cf30e8886371da9de1e86a9a8c739864cf3cc5ec2bea59fd43593c715fdd31c61141abd04a99fd6822c8558854ccde39a5684e7a56da27d"
        );
        assert!(storage_key_hashed("A", "B", &[H::Identity], &[]).is_err());
    }

    #[test]
    fn storage_prefixes_match_substrate() {
        // twox128("System") ++ twox128("Number"), a well-known key.
        assert_eq!(
            storage_key("System", "Number", &[]),
            "0x26aa394eea5630e07c48ae0c9558cef702a5c1b19ab7a04f536c519aca4983ac"
        );
    }

    #[test]
    fn dry_run_results_decode() {
        assert_eq!(decode_apply_result(&[0, 0]).unwrap(), DryRun::Ok);
        assert_eq!(
            decode_apply_result(&[0, 1, 3, 7, 53, 0, 0, 0]).unwrap(),
            DryRun::Module {
                pallet: 7,
                error: 53
            }
        );
        assert_eq!(
            decode_apply_result(&[0, 1, 2]).unwrap(),
            DryRun::Dispatch("BadOrigin".into())
        );
        assert_eq!(
            decode_apply_result(&[1, 0, 7, 6]).unwrap(),
            DryRun::Invalid("Custom(6)".into())
        );
        assert_eq!(
            decode_apply_result(&[1, 0, 4]).unwrap(),
            DryRun::Invalid("BadProof".into())
        );
        assert!(decode_apply_result(&[9]).is_err());
    }
}
