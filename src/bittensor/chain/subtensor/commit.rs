//! Weights the way the runtime wants them, decided from its metadata and the subnet's
//! hyperparameters each time: plain (`set_mechanism_weights` where the runtime has mechanisms,
//! else `set_weights`), or, with commit-reveal on, the hash scheme (`commit_weights`, then
//! `reveal_weights` with the salt inside the window the chain stores with the commit) or the
//! timelocked commit (v4) where the runtime has it.

use parity_scale_codec::Encode;
use serde::{Deserialize, Serialize};

use super::metadata::ChainMetadata;
use super::scale::blake2_256;
use crate::bittensor::chain::ChainError;

const PALLET: &str = "SubtensorModule";

/// What the chain accepts for a subnet's weights right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightsMode {
    /// Commit-reveal off: the named call (`set_mechanism_weights` with mechanism 0, or
    /// `set_weights`).
    Plain { call: &'static str },
    /// Commit-reveal with the salted hash: `commit_weights`, later `reveal_weights`.
    HashCommit,
    /// Commit-reveal v4: weights encrypted to a drand round, revealed by the chain itself.
    Timelocked { call: &'static str },
}

impl WeightsMode {
    pub fn of(meta: &ChainMetadata, commit_reveal: bool) -> Result<Self, ChainError> {
        let has = |call| meta.has_call(PALLET, call);
        Ok(match commit_reveal {
            false if has("set_mechanism_weights") => Self::Plain {
                call: "set_mechanism_weights",
            },
            false => Self::Plain {
                call: "set_weights",
            },
            true if has("commit_timelocked_mechanism_weights") => Self::Timelocked {
                call: "commit_timelocked_mechanism_weights",
            },
            true if has("commit_timelocked_weights") => Self::Timelocked {
                call: "commit_timelocked_weights",
            },
            true if has("commit_weights") && has("reveal_weights") => Self::HashCommit,
            true => {
                return Err(ChainError::Unsupported(
                    "commit-reveal is on but this runtime has no commit call we know".into(),
                ));
            }
        })
    }

    /// The operator's word for it.
    pub fn describe(&self) -> &'static str {
        match self {
            Self::Plain { .. } => "commit-reveal off",
            Self::HashCommit => "commit-reveal (hash commit, then reveal)",
            Self::Timelocked { .. } => "commit-reveal v4 (timelocked to drand)",
        }
    }
}

/// The arguments of the plain call.
pub fn plain_args(
    call: &str,
    netuid: u16,
    uids: &[u16],
    weights: &[u16],
    version_key: u64,
) -> Vec<u8> {
    match call {
        // Mechanism 0 is the subnet's main (and, today, usually only) mechanism.
        "set_mechanism_weights" => (netuid, 0u8, uids, weights, version_key).encode(),
        _ => (netuid, uids, weights, version_key).encode(),
    }
}

/// A hash commit waiting for its reveal: everything the reveal needs, kept in the validator's
/// state file so a restart still reveals it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingCommit {
    pub netuid: u16,
    /// blake2-256 of what is revealed, hex.
    pub hash: String,
    pub uids: Vec<u16>,
    pub weights: Vec<u16>,
    pub salt: Vec<u16>,
    pub version_key: u64,
    pub commit_block: u64,
    /// The chain accepts the reveal from this block through `last_reveal_block`.
    pub first_reveal_block: u64,
    pub last_reveal_block: u64,
}

/// The hash `commit_weights` takes: blake2-256 of SCALE (hotkey, netuid, uids, values, salt,
/// version_key), as the pallet recomputes it at reveal.
pub fn commit_hash(
    hotkey: &[u8; 32],
    netuid: u16,
    uids: &[u16],
    weights: &[u16],
    salt: &[u16],
    version_key: u64,
) -> [u8; 32] {
    blake2_256(&(hotkey, netuid, uids, weights, salt, version_key).encode())
}

/// A fresh salt of eight u16 (what the SDK sends), from the OS's randomness.
pub fn new_salt() -> Result<Vec<u16>, ChainError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes)
        .map_err(|e| ChainError::Unsupported(format!("no randomness for the salt: {e}")))?;
    Ok(bytes
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bittensor::chain::subtensor::metadata;

    #[test]
    fn the_mode_follows_the_calls_the_runtime_has() {
        let meta = metadata::parse(&metadata::tests::sample_metadata()).unwrap();
        assert_eq!(
            WeightsMode::of(&meta, false).unwrap(),
            WeightsMode::Plain {
                call: "set_weights"
            }
        );
        // The sample runtime has no commit calls.
        assert!(WeightsMode::of(&meta, true).is_err());
    }

    #[test]
    fn commit_hash_covers_every_revealed_field() {
        let base = commit_hash(&[1; 32], 1, &[0, 1], &[10, 20], &[5; 8], 7);
        assert_ne!(
            base,
            commit_hash(&[2; 32], 1, &[0, 1], &[10, 20], &[5; 8], 7)
        );
        assert_ne!(
            base,
            commit_hash(&[1; 32], 1, &[0, 1], &[10, 21], &[5; 8], 7)
        );
        assert_ne!(
            base,
            commit_hash(&[1; 32], 1, &[0, 1], &[10, 20], &[6; 8], 7)
        );
        assert_ne!(
            base,
            commit_hash(&[1; 32], 1, &[0, 1], &[10, 20], &[5; 8], 8)
        );
        assert_eq!(
            plain_args("set_mechanism_weights", 1, &[2], &[3], 4)[..3],
            [1, 0, 0]
        );
        assert_eq!(new_salt().unwrap().len(), 8);
    }
}
