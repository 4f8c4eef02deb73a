//! Subtensor's epoch clock, the one schedule that commit-reveal windows, reveal rounds and "next
//! epoch" all follow. Two rules exist on real chains:
//!
//! - **stateful** (dynamic tempo, subtensor since mid 2026): an epoch fires at block `b` when
//!   `tempo > 0` and an owner-triggered epoch is due (`PendingEpochAt > 0 && b >= PendingEpochAt`),
//!   or the safety net trips (`BlocksSinceLastStep > 50400`), or `b - LastEpochBlock >= tempo`.
//!   Firing sets `LastEpochBlock = b`, `PendingEpochAt = 0`, `SubnetEpochIndex += 1` and
//!   `BlocksSinceLastStep = 0`. Read from storage at one pinned block.
//! - **legacy** (runtimes without those items, spec 218 among them): the epoch index is
//!   `(block + netuid + 1) / (tempo + 1)`. The epoch itself runs one block before the index moves
//!   (where subtensor's `blocks_until_next_epoch` is 0); commit-reveal follows the index, so here
//!   "fires" means the block where the index moves, and `last_epoch_block` is that block — what
//!   `migrate_dynamic_tempo` seeded `LastEpochBlock` with.

use serde::{Deserialize, Serialize};

/// The storage items a dynamic-tempo runtime keeps per subnet (all present, or the legacy rule).
pub const STATEFUL_ITEMS: [&str; 4] = [
    "LastEpochBlock",
    "PendingEpochAt",
    "SubnetEpochIndex",
    "BlocksSinceLastStep",
];

/// Past this many blocks without an epoch the chain runs one anyway (subtensor's `MaxTempo`).
pub const SAFETY_NET_BLOCKS: u64 = 50_400;
/// Blocks bittensor-drand adds after the first reveal block so the drand pulse is on chain.
pub const PULSE_INGEST_BLOCKS: u64 = 3;
/// A commit lands in the block after the head it was computed at.
const INCLUSION_OFFSET: u64 = 1;
/// Reveal periods beyond this are refused rather than simulated (the chain's own bound is far
/// lower; this keeps the simulation's loop bounded whatever a node reports).
pub const MAX_REVEAL_PERIOD: u64 = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Rule {
    #[default]
    Stateful,
    Legacy,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EpochError {
    #[error("tempo is 0: subnet {0} runs no epochs, so nothing committed there is revealed")]
    TempoIsZero(u16),
    #[error("reveal period of {0} epochs is beyond the {MAX_REVEAL_PERIOD} this node simulates")]
    RevealPeriodTooLong(u64),
    #[error("the epoch asked for is {0} epochs ahead, beyond what this node simulates")]
    TooFarAhead(u64),
    #[error("no reveal block found within the simulated span")]
    NoRevealBlock,
}

/// A subnet's epoch state at one block (`block`, the chain head it was read at), with the
/// settings every epoch computation needs. Serialised as the `epoch` object of the JSON outputs.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct EpochState {
    pub netuid: u16,
    pub block: u64,
    pub tempo: u16,
    pub last_epoch_block: u64,
    pub pending_epoch_at: u64,
    pub epoch_index: u64,
    pub blocks_since_last_step: u64,
    pub reveal_period_epochs: u64,
    pub block_time_secs: f64,
    pub rule: Rule,
}

/// The legacy epoch index of a block.
pub fn legacy_index(block: u64, netuid: u16, tempo: u64) -> u64 {
    block.saturating_add(u64::from(netuid) + 1) / tempo.saturating_add(1)
}

/// The block at which a legacy epoch fires (the first block of the epoch it starts).
pub fn legacy_first_block(epoch: u64, netuid: u16, tempo: u64) -> u64 {
    epoch
        .saturating_mul(tempo.saturating_add(1))
        .saturating_sub(u64::from(netuid) + 1)
}

/// Subtensor's legacy `blocks_until_next_epoch` (0 where an epoch fires at `block`).
pub fn legacy_blocks_to_next(block: u64, netuid: u16, tempo: u64) -> u64 {
    tempo - block.saturating_add(u64::from(netuid) + 1) % tempo.saturating_add(1)
}

impl EpochState {
    /// The state a legacy runtime implies at `block` (its items are derived from the rule).
    pub fn legacy(
        block: u64,
        netuid: u16,
        tempo: u16,
        reveal_period_epochs: u64,
        block_time_secs: f64,
    ) -> Self {
        let t = u64::from(tempo);
        let epoch_index = legacy_index(block, netuid, t);
        let last_epoch_block = legacy_first_block(epoch_index, netuid, t).min(block);
        Self {
            netuid,
            block,
            tempo,
            last_epoch_block,
            pending_epoch_at: 0,
            epoch_index,
            blocks_since_last_step: block - last_epoch_block,
            reveal_period_epochs,
            block_time_secs,
            rule: Rule::Legacy,
        }
    }

    /// `should_run_epoch` for block `b`, with the state as it stands.
    pub fn fires_at(&self, b: u64) -> bool {
        if self.tempo == 0 {
            return false;
        }
        match self.rule {
            Rule::Legacy => {
                let t = u64::from(self.tempo);
                b.saturating_add(u64::from(self.netuid) + 1)
                    .is_multiple_of(t + 1)
            }
            Rule::Stateful => {
                (self.pending_epoch_at > 0 && b >= self.pending_epoch_at)
                    || self.blocks_since_last_step > SAFETY_NET_BLOCKS
                    || b.saturating_sub(self.last_epoch_block) >= u64::from(self.tempo)
            }
        }
    }

    /// The state after the chain's coinbase runs at block `b` (the block after `self.block`).
    pub fn after_block(&self, b: u64) -> Self {
        let mut next = self.clone();
        next.block = b;
        next.blocks_since_last_step = next.blocks_since_last_step.saturating_add(1);
        if next.fires_at(b) {
            next.fire(b);
        }
        next
    }

    /// An epoch runs at block `b`.
    pub fn fire(&mut self, b: u64) {
        self.last_epoch_block = b;
        self.pending_epoch_at = 0;
        self.epoch_index = self.epoch_index.saturating_add(1);
        self.blocks_since_last_step = 0;
    }

    /// The epoch index the chain sees at block `b` before its coinbase runs (what reveals and
    /// commits in `b` are keyed by), given the state after block `b - 1`.
    pub fn epoch_before_coinbase(&self, b: u64) -> u64 {
        match self.rule {
            Rule::Legacy => legacy_index(b, self.netuid, u64::from(self.tempo)),
            Rule::Stateful if self.fires_at(b) => self.epoch_index.saturating_add(1),
            Rule::Stateful => self.epoch_index,
        }
    }

    /// The first block after the head at which an epoch runs (`None` with tempo 0). Legacy:
    /// the head plus subtensor's `blocks_until_next_epoch` (the head itself when that is 0).
    pub fn next_epoch_block(&self) -> Option<u64> {
        if self.tempo == 0 {
            return None;
        }
        let head = self.block;
        match self.rule {
            Rule::Legacy => Some(head.saturating_add(legacy_blocks_to_next(
                head,
                self.netuid,
                u64::from(self.tempo),
            ))),
            Rule::Stateful => {
                // Closed form of stepping `after_block` from head + 1 until an epoch fires.
                let next = head.saturating_add(1);
                let by_tempo = self
                    .last_epoch_block
                    .saturating_add(u64::from(self.tempo))
                    .max(next);
                let by_safety_net = head.saturating_add(
                    (SAFETY_NET_BLOCKS + 1)
                        .saturating_sub(self.blocks_since_last_step)
                        .max(1),
                );
                let by_owner = match self.pending_epoch_at {
                    0 => u64::MAX,
                    at => at.max(next),
                };
                Some(by_tempo.min(by_safety_net).min(by_owner))
            }
        }
    }

    pub fn blocks_to_next_epoch(&self) -> Option<u64> {
        self.next_epoch_block()
            .map(|b| b.saturating_sub(self.block))
    }

    fn check(&self) -> Result<(), EpochError> {
        if self.tempo == 0 {
            return Err(EpochError::TempoIsZero(self.netuid));
        }
        if self.reveal_period_epochs > MAX_REVEAL_PERIOD && self.rule == Rule::Stateful {
            return Err(EpochError::RevealPeriodTooLong(self.reveal_period_epochs));
        }
        Ok(())
    }

    /// When a commit submitted now (computed at the head, landing in the next block) is revealed:
    /// its commit epoch, its reveal epoch and the first block of the reveal epoch, as the chain
    /// runs `reveal_crv3_commits` before the coinbase of each block.
    pub fn reveal_schedule(&self) -> Result<RevealSchedule, EpochError> {
        self.check()?;
        let period = self.reveal_period_epochs;
        let landing = self.block.saturating_add(INCLUSION_OFFSET);
        match self.rule {
            Rule::Legacy => {
                // The chain keys the commit by the epoch of the block it lands in.
                let t = u64::from(self.tempo);
                let commit_epoch = legacy_index(landing, self.netuid, t);
                let reveal_epoch = commit_epoch.saturating_add(period);
                Ok(RevealSchedule {
                    commit_epoch,
                    reveal_epoch,
                    first_reveal_block: legacy_first_block(reveal_epoch, self.netuid, t),
                })
            }
            Rule::Stateful => {
                let commit_epoch = self.epoch_before_coinbase(landing);
                let reveal_epoch = commit_epoch.saturating_add(period);
                Ok(RevealSchedule {
                    commit_epoch,
                    reveal_epoch,
                    first_reveal_block: self.first_block_seeing(reveal_epoch, landing)?,
                })
            }
        }
    }

    /// The first block from `from` (the block after the head, or later) whose look-ahead epoch
    /// is `target`, stepping the chain's coinbase block by block as the chain does.
    fn first_block_seeing(&self, target: u64, from: u64) -> Result<u64, EpochError> {
        // An epoch is at most SAFETY_NET_BLOCKS + 1 blocks long.
        let epochs = target.saturating_sub(self.epoch_index).saturating_add(1);
        if epochs > MAX_REVEAL_PERIOD + 2 {
            return Err(EpochError::TooFarAhead(epochs));
        }
        let span = epochs.saturating_mul(SAFETY_NET_BLOCKS + 1);
        let mut state = self.clone();
        for b in self.block.saturating_add(1)..=from.saturating_add(span) {
            if b >= from && state.epoch_before_coinbase(b) == target {
                return Ok(b);
            }
            state = state.after_block(b);
        }
        Err(EpochError::NoRevealBlock)
    }

    /// The blocks in which a hash commit of reveal epoch `epoch` can be revealed, as predicted
    /// from this state (an owner-triggered epoch later can still move them).
    pub fn reveal_window(&self, epoch: u64) -> Result<(u64, u64), EpochError> {
        self.check()?;
        match self.rule {
            Rule::Legacy => {
                let t = u64::from(self.tempo);
                let first = legacy_first_block(epoch, self.netuid, t);
                let next = legacy_first_block(epoch.saturating_add(1), self.netuid, t);
                Ok((first, next.saturating_sub(1)))
            }
            Rule::Stateful => {
                let from = self.block.saturating_add(INCLUSION_OFFSET);
                let first = self.first_block_seeing(epoch, from)?;
                let next = self.first_block_seeing(epoch.saturating_add(1), first)?;
                Ok((first, next.saturating_sub(1)))
            }
        }
    }

    /// The drand quicknet round a timelocked commit made now is encrypted to: the round due
    /// `PULSE_INGEST_BLOCKS` after the first reveal block, from the wall clock `now_secs` (as
    /// bittensor-drand 2.0's `get_encrypted_commit_v2` under the stateful rule, 1.3's
    /// `get_encrypted_commit` under the legacy one).
    pub fn reveal_round(&self, now_secs: f64) -> Result<u64, EpochError> {
        self.timelocked_target(now_secs).map(|(round, _)| round)
    }

    /// [`Self::reveal_round`] with the schedule it came from, simulated once.
    pub fn timelocked_target(&self, now_secs: f64) -> Result<(u64, RevealSchedule), EpochError> {
        let schedule = self.reveal_schedule()?;
        let first_reveal_block = match self.rule {
            Rule::Stateful => schedule.first_reveal_block,
            // bittensor-drand 1.3 counts from the head's own epoch, not the landing block's.
            Rule::Legacy => {
                let t = u64::from(self.tempo);
                let epoch = legacy_index(self.block, self.netuid, t);
                legacy_first_block(
                    epoch.saturating_add(self.reveal_period_epochs),
                    self.netuid,
                    t,
                )
            }
        };
        let blocks = first_reveal_block
            .saturating_add(PULSE_INGEST_BLOCKS)
            .saturating_sub(self.block);
        Ok((
            round_due(now_secs + blocks as f64 * self.block_time_secs),
            schedule,
        ))
    }

    /// Everything the `epoch` JSON object carries.
    pub fn summary(&self) -> EpochSummary {
        EpochSummary {
            state: self.clone(),
            next_epoch_block: self.next_epoch_block(),
        }
    }
}

/// The quicknet round whose pulse is due at unix time `secs` (never below 1).
pub fn round_due(secs: f64) -> u64 {
    use super::timelock::{QUICKNET_GENESIS, QUICKNET_PERIOD};
    let round = ((secs - QUICKNET_GENESIS as f64) / QUICKNET_PERIOD as f64).floor();
    if round < 1.0 { 1 } else { round as u64 }
}

/// Where a commit made at the head of an [`EpochState`] is revealed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevealSchedule {
    pub commit_epoch: u64,
    pub reveal_epoch: u64,
    pub first_reveal_block: u64,
}

/// An [`EpochState`] with its next epoch block, as the JSON outputs show it.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct EpochSummary {
    #[serde(flatten)]
    pub state: EpochState,
    pub next_epoch_block: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stateful(
        last: u64,
        pending: u64,
        index: u64,
        tempo: u16,
        since: u64,
        head: u64,
    ) -> EpochState {
        EpochState {
            netuid: 1,
            block: head,
            tempo,
            last_epoch_block: last,
            pending_epoch_at: pending,
            epoch_index: index,
            blocks_since_last_step: since,
            reveal_period_epochs: 1,
            block_time_secs: 12.0,
            rule: Rule::Stateful,
        }
    }

    #[test]
    fn legacy_epochs_as_subtensor_counts_them() {
        // netuid 1, tempo 4: what the real spec-218 runtime reported for a commit at block 9.
        assert_eq!(legacy_index(9, 1, 4), 2);
        assert_eq!(legacy_first_block(3, 1, 4), 13);
        assert_eq!(legacy_blocks_to_next(9, 1, 4), 3);
        assert_eq!(legacy_blocks_to_next(12, 1, 4), 0);
        assert_eq!(legacy_index(13, 1, 4), 3);
        assert_eq!(legacy_index(17, 1, 4), 3);
        assert_eq!(legacy_index(18, 1, 4), 4);
        let s = EpochState::legacy(9, 1, 4, 1, 12.0);
        assert_eq!((s.epoch_index, s.last_epoch_block), (2, 8));
        assert_eq!(s.next_epoch_block(), Some(12));
        assert_eq!(s.reveal_schedule().unwrap().first_reveal_block, 13);
    }

    #[test]
    fn the_period_is_tempo_and_owners_can_fire_early() {
        // Last epoch at 10, tempo 50: the next fires at 60 and the reveal epoch starts there.
        let s = stateful(10, 0, 0, 50, 0, 10);
        assert_eq!(s.next_epoch_block(), Some(60));
        let r = s.reveal_schedule().unwrap();
        assert_eq!(
            (r.commit_epoch, r.reveal_epoch, r.first_reveal_block),
            (0, 1, 60)
        );
        // An owner-triggered epoch at 95 fires before tempo's at 100.
        let s = stateful(80, 95, 4, 20, 11, 91);
        assert_eq!(s.next_epoch_block(), Some(95));
        assert_eq!(s.reveal_schedule().unwrap().first_reveal_block, 95);
        // Stepping agrees with the closed form.
        let mut t = s.clone();
        let mut b = t.block;
        while t.epoch_index == 4 {
            b += 1;
            t = t.after_block(b);
        }
        assert_eq!(b, 95);
        assert_eq!(
            (
                t.last_epoch_block,
                t.pending_epoch_at,
                t.blocks_since_last_step
            ),
            (95, 0, 0)
        );
    }

    #[test]
    fn the_safety_net_fires_past_its_limit() {
        // Tempo far away, but 50 400 blocks without a step: the next block fires.
        let s = stateful(0, 0, 7, 1000, SAFETY_NET_BLOCKS, 100);
        assert_eq!(s.next_epoch_block(), Some(101));
        assert_eq!(s.after_block(101).epoch_index, 8);
        let s = stateful(0, 0, 7, 1000, SAFETY_NET_BLOCKS - 5, 100);
        assert_eq!(s.next_epoch_block(), Some(106));
        // The pre-coinbase view does not count the block's own step, as the chain's reveal.
        assert_eq!(s.epoch_before_coinbase(106), 7);
    }

    #[test]
    fn legacy_reveal_rounds_follow_the_reveal_epoch() {
        // tempo 360, netuid 2, block 1000: epoch 2, reveal epoch 3 starts at block 1080.
        let now: f64 = 1_800_000_000.0;
        let s = EpochState::legacy(1000, 2, 360, 1, 12.0);
        let expected = ((now + 83.0 * 12.0 - 1_692_803_367.0) / 3.0).floor() as u64;
        assert_eq!(s.reveal_round(now), Ok(expected));
        assert_eq!(s.reveal_round(0.0), Ok(1), "never below 1");
    }

    #[test]
    fn bounded_and_refused_inputs() {
        assert_eq!(
            stateful(0, 0, 0, 0, 0, 5).reveal_schedule(),
            Err(EpochError::TempoIsZero(1))
        );
        let mut s = stateful(0, 0, 0, 10, 0, 5);
        s.reveal_period_epochs = MAX_REVEAL_PERIOD + 1;
        assert!(matches!(
            s.reveal_schedule(),
            Err(EpochError::RevealPeriodTooLong(_))
        ));
        // The longest legal case still ends (max tempo, max period).
        s.reveal_period_epochs = 3;
        s.tempo = u16::MAX;
        assert!(s.reveal_schedule().is_ok());
        assert_eq!(round_due(0.0), 1);
    }

    /// Why the legacy rule cannot stay: after the migration aligned the two schedules once, they
    /// drift a block per epoch. For some heads the legacy rule's round is due after today's
    /// reveal epoch has ended, and the chain then deletes the commit; for others the round comes
    /// long before the reveal epoch (the weights are public early).
    #[test]
    fn after_the_migration_the_legacy_round_can_miss_the_reveal_epoch() {
        let (netuid, tempo) = (1u16, 360u16);
        // `migrate_dynamic_tempo` seeded LastEpochBlock and SubnetEpochIndex from the legacy
        // rule, as `EpochState::legacy` derives them.
        let seeded = EpochState::legacy(7_000_000, netuid, tempo, 1, 12.0);
        let (mut lost, mut early, mut total, mut example) = (0, 0, 0, None);
        // The drift is a block an epoch, so 361 epochs cover every phase; heads near the end
        // of an epoch are where the legacy round can come too late.
        for k in 1..=722u64 {
            let last = seeded.last_epoch_block + 360 * k;
            for offset in (0..360).step_by(7).chain(340..360) {
                let head = last + offset;
                let today = EpochState {
                    netuid,
                    block: head,
                    tempo,
                    last_epoch_block: last,
                    pending_epoch_at: 0,
                    epoch_index: seeded.epoch_index + k,
                    blocks_since_last_step: offset,
                    reveal_period_epochs: 1,
                    block_time_secs: 12.0,
                    rule: Rule::Stateful,
                };
                // bittensor-drand 1.3 aims at the legacy reveal epoch's first block, plus 3.
                let t = u64::from(tempo);
                let old_first = legacy_first_block(legacy_index(head, netuid, t) + 1, netuid, t);
                let pulse_old = old_first + PULSE_INGEST_BLOCKS;
                let due_today = today.reveal_schedule().unwrap();
                let (_, end) = today.reveal_window(due_today.reveal_epoch).unwrap();
                total += 1;
                if pulse_old > end {
                    lost += 1;
                    example.get_or_insert((k, head, due_today, end, pulse_old));
                } else if pulse_old < due_today.first_reveal_block {
                    early += 1;
                }
            }
        }
        let (k, head, due, end, pulse_old) =
            example.expect("a head where the legacy round is lost");
        eprintln!(
            "{lost} of {total} heads lose the commit under the legacy rule, {early} publish it early; \
             e.g. {k} epochs after the migration, head {head}: today's reveal epoch {} runs blocks \
             {}..={end}, the legacy round is due at block {pulse_old}; the stateful round is due at \
             block {}",
            due.reveal_epoch,
            due.first_reveal_block,
            due.first_reveal_block + PULSE_INGEST_BLOCKS
        );
        assert!(lost > 0 && early > 0);
    }
}
