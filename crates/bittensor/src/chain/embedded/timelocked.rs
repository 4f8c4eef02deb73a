//! The embedded chain's block hooks and its commit-reveal v4, modelled on subtensor's
//! `block_step`: each block first reveals the timelocked commits of the epoch whose reveal is
//! due (`reveal_commits.rs`: needing the beacon's pulse of the commit's round; retried every
//! block of the reveal epoch while the pulse is missing; deleted, without an error, once the
//! epoch has passed), then runs the coinbase's epoch step.

use parity_scale_codec::Decode;
use serde::Serialize;

use super::{EmbeddedChain, State, Subnet, subnet_mut};
use crate::chain::ChainError;
use crate::chain::commit::{self, TimelockedCommit};
use crate::chain::timelock;
use crate::keypair::Keypair;
use crate::ss58;

/// At most this many timelocked commits per hotkey and epoch, as subtensor.
const MAX_PER_EPOCH: usize = 10;
/// Dropped commits kept for the operator (oldest forgotten first).
const DROPPED_KEPT: usize = 64;

/// A timelocked commit as the chain holds it.
#[derive(Debug, Clone)]
pub(super) struct Sealed {
    hotkey: String,
    block: u64,
    ciphertext: Vec<u8>,
    round: u64,
}

/// A timelocked commit the chain deleted unrevealed, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Dropped {
    pub netuid: u16,
    pub hotkey: String,
    pub commit_block: u64,
    pub reveal_round: u64,
    pub reveal_epoch: u64,
    /// The block at which it was deleted.
    pub block: u64,
    pub reason: String,
}

/// Runs the hooks of every block after the last processed one up to `now`.
pub(super) fn run_blocks(chain: &EmbeddedChain, state: &mut State, now: u64) {
    if now <= state.processed {
        return;
    }
    let netuids: Vec<u16> = state.subnets.keys().copied().collect();
    for b in state.processed.saturating_add(1)..=now {
        for netuid in &netuids {
            reveal(chain, state, *netuid, b);
            if let Some(subnet) = state.subnets.get_mut(netuid) {
                subnet.epoch = subnet.epoch.after_block(b);
            }
        }
    }
    state.processed = now;
}

/// `reveal_crv3_commits_for_subnet` at block `b`, before the block's coinbase.
fn reveal(chain: &EmbeddedChain, state: &mut State, netuid: u16, b: u64) {
    if state
        .subnets
        .get(&netuid)
        .is_none_or(|s| s.timelocked.is_empty())
    {
        return;
    }
    let stored_round = chain.stored_round_at(state, b);
    let Some(subnet) = state.subnets.get_mut(&netuid) else {
        return;
    };
    let looking = subnet.epoch.epoch_before_coinbase(b);
    let period = subnet.params.reveal_period_epochs;
    let Some(due) = looking.checked_sub(period) else {
        return;
    };
    let mut gone = Vec::new();
    let stale: Vec<u64> = subnet.timelocked.range(..due).map(|(e, _)| *e).collect();
    for epoch in stale {
        for c in subnet.timelocked.remove(&epoch).unwrap_or_default() {
            let reason = format!(
                "its reveal epoch {} passed before the pulse of round {} reached the chain",
                epoch.saturating_add(period),
                c.round
            );
            gone.push((c, epoch.saturating_add(period), reason));
        }
    }
    let mut revealed = Vec::new();
    if let Some(commits) = subnet.timelocked.remove(&due) {
        let mut waiting = Vec::new();
        for c in commits {
            if c.round > stored_round {
                waiting.push(c);
                continue;
            }
            match open(chain, &c) {
                Ok(weights) => revealed.push((c, weights)),
                Err(reason) => gone.push((c, due.saturating_add(period), reason.to_string())),
            }
        }
        if !waiting.is_empty() {
            subnet.timelocked.insert(due, waiting);
        }
    }
    for (c, (uids, values, version_key)) in revealed {
        let applied = EmbeddedChain::set_weights_in(
            b,
            state,
            &c.hotkey,
            netuid,
            uids,
            values,
            version_key,
            true,
        );
        if let Err(e) = applied {
            gone.push((
                c,
                due.saturating_add(period),
                format!("revealed but refused: {e}"),
            ));
        }
    }
    for (c, reveal_epoch, reason) in gone {
        if state.dropped.len() >= DROPPED_KEPT {
            state.dropped.pop_front();
        }
        tracing::debug!(netuid, hotkey = %c.hotkey, %reason, "embedded chain dropped a timelocked commit");
        state.dropped.push_back(Dropped {
            netuid,
            hotkey: c.hotkey,
            commit_block: c.block,
            reveal_round: c.round,
            reveal_epoch,
            block: b,
            reason,
        });
    }
}

type Weights = (Vec<u16>, Vec<u16>, u64);

/// Why a due commit is dropped instead of revealed (the chain's own checks, in words).
#[derive(Debug, thiserror::Error)]
enum Unsealable {
    #[error(transparent)]
    Timelock(#[from] timelock::TimelockError),
    #[error("payload does not decode: {0}")]
    Payload(parity_scale_codec::Error),
    #[error("signer: {0}")]
    Signer(ss58::Ss58Error),
    #[error("the payload names another hotkey")]
    OtherHotkey,
}

/// Decrypts a commit with its round's pulse and checks the payload's hotkey is the signer's.
fn open(chain: &EmbeddedChain, c: &Sealed) -> Result<Weights, Unsealable> {
    let pulse = chain.beacon.pulse(c.round)?;
    let plain = timelock::decrypt(&c.ciphertext, &pulse)?;
    let (who, uids, values, version_key) =
        <(Vec<u8>, Vec<u16>, Vec<u16>, u64)>::decode(&mut &plain[..])
            .map_err(Unsealable::Payload)?;
    let signer = ss58::decode(&c.hotkey).map_err(Unsealable::Signer)?;
    if who != signer {
        return Err(Unsealable::OtherHotkey);
    }
    Ok((uids, values, version_key))
}

impl EmbeddedChain {
    /// `commit_timelocked_mechanism_weights`: the weights encrypted to the round the schedule
    /// gives (as bittensor 11.3 computes it), stored under the commit's look-ahead epoch.
    pub(super) fn apply_timelocked(
        &self,
        signer: &Keypair,
        netuid: u16,
        uids: Vec<u16>,
        weights: Vec<u16>,
        version_key: u64,
    ) -> Result<TimelockedCommit, ChainError> {
        let hotkey = signer.ss58();
        let mut state = self.lock();
        let stored_round = self.last_stored_round();
        let subnet: &mut Subnet = subnet_mut(&mut state, netuid)?;
        Self::neuron_uid(subnet, hotkey)?;
        if !subnet.params.commit_reveal
            || subnet.params.commit_reveal_mode != super::CommitRevealMode::Timelocked
        {
            return Err(ChainError::refused(
                "CommitRevealDisabled",
                format!("subnet {netuid} does not take timelocked commits"),
            ));
        }
        let at = subnet.epoch.clone();
        let committed_at = commit::unix_now();
        let (round, schedule) = commit::timelocked_round(&at, committed_at)?;
        // The chain's transaction guard: a round already stored could be opened by anyone.
        if round < stored_round {
            return Err(ChainError::refused(
                "InvalidRevealRound",
                format!("round {round} is before the last stored round {stored_round}"),
            ));
        }
        let payload = timelock::payload(&signer.public_bytes(), &uids, &weights, version_key);
        let ciphertext = timelock::encrypt_to(&self.beacon.public_key(), &payload, round)
            .map_err(|e| ChainError::Unsupported(format!("timelock encryption: {e}")))?;
        let queue = subnet.timelocked.entry(schedule.commit_epoch).or_default();
        if queue.iter().filter(|c| c.hotkey == hotkey).count() >= MAX_PER_EPOCH {
            return Err(ChainError::refused("TooManyUnrevealedCommits", hotkey));
        }
        queue.push(Sealed {
            hotkey: hotkey.to_string(),
            block: at.block,
            ciphertext,
            round,
        });
        Ok(TimelockedCommit::new(
            &at,
            schedule,
            round,
            committed_at,
            uids,
            weights,
        ))
    }
}
