//! SCALE layouts of what we read from subtensor (runtime spec 425): `NeuronInfoLite` from the
//! `NeuronInfoRuntimeApi_get_neurons_lite` runtime call, storage keys and values, and the
//! `ApplyExtrinsicResult` of a dry run.

use parity_scale_codec::{Compact, Decode, Encode};

use crate::bittensor::chain::{AxonInfo, ChainError, Neuron};
use crate::bittensor::ss58;

#[derive(Debug, Clone, Encode, Decode, PartialEq)]
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

#[derive(Debug, Clone, Encode, Decode, PartialEq)]
pub struct PrometheusInfoRaw {
    pub block: u64,
    pub version: u32,
    pub ip: u128,
    pub port: u16,
    pub ip_type: u8,
}

#[derive(Debug, Clone, Encode, Decode, PartialEq)]
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

fn unit(v: u16) -> f64 {
    f64::from(v) / 65535.0
}

impl From<NeuronInfoLiteRaw> for Neuron {
    fn from(raw: NeuronInfoLiteRaw) -> Self {
        let a = raw.axon_info;
        Neuron {
            uid: raw.uid,
            hotkey: ss58::encode(&raw.hotkey),
            coldkey: ss58::encode(&raw.coldkey),
            active: raw.active,
            axon: AxonInfo {
                block: a.block,
                version: a.version,
                ip: a.ip,
                port: a.port,
                ip_type: a.ip_type,
                protocol: a.protocol,
            },
            stake_rao: raw.stake.iter().map(|(_, s)| s.0).sum(),
            emission_rao: raw.emission,
            incentive: unit(raw.incentive),
            consensus: unit(raw.consensus),
            trust: unit(raw.trust),
            validator_trust: unit(raw.validator_trust),
            dividends: unit(raw.dividends),
            last_update: raw.last_update,
            validator_permit: raw.validator_permit,
        }
    }
}

/// Decodes the runtime call's `Vec<NeuronInfoLite>`, refusing trailing bytes (a layout change).
pub fn decode_neurons(bytes: &[u8]) -> Result<Vec<Neuron>, ChainError> {
    let mut input = bytes;
    let raw = Vec::<NeuronInfoLiteRaw>::decode(&mut input).map_err(|e| {
        ChainError::Decode(format!(
            "NeuronInfoLite list: {e} (has the runtime changed its layout?)"
        ))
    })?;
    if !input.is_empty() {
        return Err(ChainError::Decode(format!(
            "{} bytes left after the NeuronInfoLite list (layout changed?)",
            input.len()
        )));
    }
    Ok(raw.into_iter().map(Neuron::from).collect())
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
