//! Weights under commit-reveal, for both chains: how a subnet wants its weights, and the hash
//! commit a validator keeps (with its salt) until its reveal window.

use parity_scale_codec::Encode;
use serde::{Deserialize, Serialize};

use super::ChainError;
use super::subtensor::scale::blake2_256;

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
    /// The operator's word for it.
    pub fn describe(&self) -> &'static str {
        match self {
            Self::Plain { .. } => "commit-reveal off",
            Self::HashCommit => "commit-reveal (hash commit, then reveal)",
            Self::Timelocked { .. } => "commit-reveal v4 (timelocked to drand)",
        }
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

/// A timelocked (v4) commit: the chain opens it itself when drand publishes `reveal_round`,
/// expected around `reveal_block`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimelockedCommit {
    pub netuid: u16,
    pub commit_block: u64,
    pub reveal_round: u64,
    pub reveal_block: u64,
    pub uids: Vec<u16>,
    pub weights: Vec<u16>,
}

/// Where a block stands against a hash commit's reveal window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    NotYet,
    Open,
    /// Past the window: the chain has dropped the commit.
    Expired,
}

impl PendingCommit {
    pub fn window(&self, block: u64) -> Window {
        if block > self.last_reveal_block {
            Window::Expired
        } else if block < self.first_reveal_block {
            Window::NotYet
        } else {
            Window::Open
        }
    }
}

/// A hash commit as the chain holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommitRecord {
    pub hash: [u8; 32],
    pub commit_block: u64,
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

/// Where the hash commits' salts are kept, in the node's data directory (shared by the
/// validator and the `weights` commands).
pub fn commits_path(data_dir: &std::path::Path) -> std::path::PathBuf {
    data_dir.join("weight-commits.json")
}

/// The kept commits at `path` (none if the file is missing; an unreadable or corrupt file is
/// an error, moved aside when corrupt, so a salt is never silently lost).
pub fn load_pending(path: &std::path::Path) -> Result<Vec<PendingCommit>, String> {
    match nicheimage_common::jsonfile::load_or_aside(path, "the pending weight commits") {
        (commits, None) => Ok(commits),
        (_, Some(problem)) => Err(problem),
    }
}

/// Writes the kept commits atomically.
pub fn save_pending(path: &std::path::Path, commits: &[PendingCommit]) -> Result<(), String> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    nicheimage_common::jsonfile::save_atomic(path, &commits)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(new_salt().unwrap().len(), 8);
    }
}
