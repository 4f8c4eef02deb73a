//! Subtensor's epoch clock, the one rule commit-reveal windows, reveal rounds and "next epoch"
//! all follow: a subnet's epoch index is `(block + netuid + 1) / (tempo + 1)`, so its epochs end
//! where `(block + netuid + 1) % (tempo + 1) == 0`.

fn length(tempo: u64) -> u64 {
    tempo.saturating_add(1)
}

fn offset(netuid: u16) -> u64 {
    u64::from(netuid) + 1
}

/// The epoch a block is in.
pub fn index(block: u64, netuid: u16, tempo: u64) -> u64 {
    block.saturating_add(offset(netuid)) / length(tempo)
}

/// The first block of an epoch (its last is `tempo` blocks later).
pub fn first_block(epoch: u64, netuid: u16, tempo: u64) -> u64 {
    epoch
        .saturating_mul(length(tempo))
        .saturating_sub(offset(netuid))
}

/// Subtensor's `blocks_until_next_epoch`.
pub fn blocks_to_next(block: u64, netuid: u16, tempo: u64) -> u64 {
    tempo - block.saturating_add(offset(netuid)) % length(tempo)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epochs_as_subtensor_counts_them() {
        // netuid 1, tempo 4: what the real spec-218 runtime reported for a commit at block 9.
        assert_eq!(index(9, 1, 4), 2);
        assert_eq!(first_block(3, 1, 4), 13);
        assert_eq!(blocks_to_next(9, 1, 4), 3);
        assert_eq!(blocks_to_next(12, 1, 4), 0);
        assert_eq!(index(13, 1, 4), 3);
        assert_eq!(index(17, 1, 4), 3);
        assert_eq!(index(18, 1, 4), 4);
    }
}
