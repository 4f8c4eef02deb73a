//! Weights under commit-reveal, for both chains: how a subnet wants its weights, and the hash
//! commit a validator keeps (with its salt) until its reveal window.

use parity_scale_codec::Encode;
use serde::{Deserialize, Serialize};

use super::ChainError;
use super::epoch::{EpochState, EpochSummary, RevealSchedule};
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
    /// The chain accepts the reveal from this block through `last_reveal_block` (on a
    /// dynamic-tempo chain: as predicted when committed; the epochs below decide).
    pub first_reveal_block: u64,
    pub last_reveal_block: u64,
    /// Dynamic-tempo chains key the commit by epoch: it is revealed while the chain's
    /// look-ahead epoch equals `reveal_epoch`. `None` on legacy chains (and older files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit_epoch: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reveal_epoch: Option<u64>,
}

/// A timelocked (v4) commit: the chain opens it itself in `reveal_epoch`, once drand's pulse of
/// `reveal_round` is on chain; expected around `reveal_block`. Carries the epoch state and the
/// wall clock its round was computed from, so an operator can recompute it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimelockedCommit {
    pub netuid: u16,
    /// The head block the commit was computed at (it lands in the next).
    pub commit_block: u64,
    pub commit_epoch: u64,
    pub reveal_epoch: u64,
    pub reveal_round: u64,
    /// The first block of the reveal epoch, as predicted.
    pub first_reveal_block: u64,
    /// `first_reveal_block` plus the blocks the SDK allows for the pulse to reach the chain.
    pub reveal_block: u64,
    pub epoch_state: EpochSummary,
    /// Unix seconds of the wall clock the round was computed from.
    pub committed_at: f64,
    pub uids: Vec<u16>,
    pub weights: Vec<u16>,
}

impl TimelockedCommit {
    pub fn new(
        state: &EpochState,
        schedule: RevealSchedule,
        reveal_round: u64,
        committed_at: f64,
        uids: Vec<u16>,
        weights: Vec<u16>,
    ) -> Self {
        Self {
            netuid: state.netuid,
            commit_block: state.block,
            commit_epoch: schedule.commit_epoch,
            reveal_epoch: schedule.reveal_epoch,
            reveal_round,
            first_reveal_block: schedule.first_reveal_block,
            reveal_block: schedule
                .first_reveal_block
                .saturating_add(super::epoch::PULSE_INGEST_BLOCKS),
            epoch_state: state.summary(),
            committed_at,
            uids,
            weights,
        }
    }
}

/// The round a timelocked commit made now targets, and its schedule.
pub fn timelocked_round(
    state: &EpochState,
    now_secs: f64,
) -> Result<(u64, RevealSchedule), ChainError> {
    state
        .timelocked_target(now_secs)
        .map_err(|e| ChainError::Unsupported(e.to_string()))
}

/// Unix seconds now, from the crate's one clock read (0 if the clock is before 1970).
pub fn unix_now() -> f64 {
    crate::now_ns() as f64 / 1e9
}

/// A commit of ours waiting for its reveal, as `weights status --json` and the status JSON list
/// it: `kind` (`hash` / `timelocked`), `commit_block`, `commit_epoch`, `reveal_epoch`, then
/// `reveal_window` (hash) or `reveal_round`, `epoch_state` and `committed_at` (timelocked).
#[derive(Debug, Clone, PartialEq)]
pub enum KeptCommit {
    Hash(PendingCommit),
    Timelocked(TimelockedCommit),
}

impl Serialize for KeptCommit {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let value = match self {
            Self::Hash(c) => serde_json::json!({
                "kind": "hash",
                "netuid": c.netuid,
                "hash": c.hash,
                "commit_block": c.commit_block,
                "commit_epoch": c.commit_epoch,
                "reveal_epoch": c.reveal_epoch,
                // `null` where the window could not be predicted (it has passed).
                "reveal_window": (c.first_reveal_block > 0)
                    .then_some([c.first_reveal_block, c.last_reveal_block]),
            }),
            Self::Timelocked(c) => serde_json::json!({
                "kind": "timelocked",
                "netuid": c.netuid,
                "commit_block": c.commit_block,
                "commit_epoch": c.commit_epoch,
                "reveal_epoch": c.reveal_epoch,
                "reveal_round": c.reveal_round,
                "first_reveal_block": c.first_reveal_block,
                "epoch_state": c.epoch_state,
                "committed_at": c.committed_at,
            }),
        };
        value.serialize(s)
    }
}

/// Where the timelocked commits made by `weights set` are kept (for `weights status`).
pub fn timelocked_path(data_dir: &std::path::Path) -> std::path::PathBuf {
    data_dir.join("timelocked-commits.json")
}

/// At most this many timelocked commits are kept in that file (the newest).
pub const TIMELOCKED_KEPT: usize = 32;

/// Where a block stands against a hash commit's reveal window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    NotYet,
    Open,
    /// Past the window: the chain has dropped the commit.
    Expired,
}

impl PendingCommit {
    /// Where the chain stands against this commit's window. `epoch` is the subnet's epoch state
    /// now: on a dynamic-tempo chain, a reveal sent now lands in the next block and is judged by
    /// the look-ahead epoch there; otherwise the kept block window decides.
    pub fn window_at(&self, epoch: Option<&EpochState>) -> Option<Window> {
        let (state, reveal_epoch) = (epoch?, self.reveal_epoch?);
        if state.rule != super::epoch::Rule::Stateful {
            return None;
        }
        let lands = state.epoch_before_coinbase(state.block.saturating_add(1));
        Some(match lands.cmp(&reveal_epoch) {
            std::cmp::Ordering::Less => Window::NotYet,
            std::cmp::Ordering::Equal => Window::Open,
            std::cmp::Ordering::Greater => Window::Expired,
        })
    }

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
    /// Legacy runtimes store the window; dynamic-tempo ones the commit's epoch instead.
    pub first_reveal_block: u64,
    pub last_reveal_block: u64,
    pub commit_epoch: Option<u64>,
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

/// Why kept commits could not be read or written: either way a salt may be lost, so callers
/// stop rather than carry on without them.
#[derive(Debug, thiserror::Error)]
pub enum KeptError {
    /// Unreadable, or corrupt and moved aside (the operator's sentence says which).
    #[error("{0}")]
    Unreadable(String),
    #[error("cannot write {path}: {source}")]
    Write {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

/// Commits kept at `path` (none if the file is missing; an unreadable or corrupt file is an
/// error, moved aside when corrupt, so a salt is never silently lost).
fn load_kept<T: serde::de::DeserializeOwned>(
    path: &std::path::Path,
    what: &str,
) -> Result<Vec<T>, KeptError> {
    match nicheimage_common::jsonfile::load_or_aside(path, what) {
        (commits, None) => Ok(commits),
        (_, Some(problem)) => Err(KeptError::Unreadable(problem)),
    }
}

/// Writes kept commits atomically, readable by the owner only (salts, and weights before their
/// reveal, are what a weight copier wants).
fn save_kept<T: Serialize>(path: &std::path::Path, commits: &[T]) -> Result<(), KeptError> {
    nicheimage_common::jsonfile::save_private(path, &commits).map_err(|source| KeptError::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// The kept hash commits at `path`.
pub fn load_pending(path: &std::path::Path) -> Result<Vec<PendingCommit>, KeptError> {
    load_kept(path, "the pending weight commits")
}

pub fn save_pending(path: &std::path::Path, commits: &[PendingCommit]) -> Result<(), KeptError> {
    save_kept(path, commits)
}

/// The kept timelocked commits at `path` (see [`timelocked_path`]).
pub fn load_timelocked(path: &std::path::Path) -> Result<Vec<TimelockedCommit>, KeptError> {
    load_kept(path, "the kept timelocked commits")
}

pub fn save_timelocked(
    path: &std::path::Path,
    commits: &[TimelockedCommit],
) -> Result<(), KeptError> {
    save_kept(path, commits)
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
