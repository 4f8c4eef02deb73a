//! The subtensor side of weights: which call the runtime has for the subnet's mode, and the
//! plain call's arguments.

use parity_scale_codec::Encode;

use super::metadata::ChainMetadata;
use crate::chain::ChainError;
use crate::chain::commit::WeightsMode;

const PALLET: &str = "SubtensorModule";

/// The mode from the runtime's calls and the subnet's commit-reveal switch.
pub fn mode_of(meta: &ChainMetadata, commit_reveal: bool) -> Result<WeightsMode, ChainError> {
    let has = |call| meta.has_call(PALLET, call);
    Ok(match commit_reveal {
        false if has("set_mechanism_weights") => WeightsMode::Plain {
            call: "set_mechanism_weights",
        },
        false => WeightsMode::Plain {
            call: "set_weights",
        },
        true if has("commit_timelocked_mechanism_weights") => WeightsMode::Timelocked {
            call: "commit_timelocked_mechanism_weights",
        },
        true if has("commit_timelocked_weights") => WeightsMode::Timelocked {
            call: "commit_timelocked_weights",
        },
        true if has("commit_weights") && has("reveal_weights") => WeightsMode::HashCommit,
        true => {
            return Err(ChainError::refused(
                "CommitRevealEnabled",
                "and this runtime has no commit call we know",
            ));
        }
    })
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

/// The timelocked commit call's arguments: `commit` is a bounded `Vec<u8>`, mechanism 0 for the
/// mechanism variant.
pub fn timelocked_args(
    call: &str,
    netuid: u16,
    ciphertext: &[u8],
    reveal_round: u64,
    version: u16,
) -> Vec<u8> {
    match call {
        "commit_timelocked_mechanism_weights" => {
            (netuid, 0u8, ciphertext, reveal_round, version).encode()
        }
        _ => (netuid, ciphertext, reveal_round, version).encode(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::subtensor::metadata;

    #[test]
    fn the_mode_follows_the_calls_the_runtime_has() {
        let meta = metadata::parse(&metadata::tests::sample_metadata()).unwrap();
        assert_eq!(
            mode_of(&meta, false).unwrap(),
            WeightsMode::Plain {
                call: "set_weights"
            }
        );
        // The sample runtime has no commit calls: plain weights are refused by name.
        assert_eq!(
            mode_of(&meta, true).unwrap_err().refusal(),
            Some("CommitRevealEnabled")
        );
        assert_eq!(
            plain_args("set_mechanism_weights", 1, &[2], &[3], 4)[..3],
            [1, 0, 0]
        );
        let args = timelocked_args("commit_timelocked_mechanism_weights", 2, &[9; 3], 7, 4);
        assert_eq!(args, [2, 0, 0, 12, 9, 9, 9, 7, 0, 0, 0, 0, 0, 0, 0, 4, 0]);
        let args = timelocked_args("commit_timelocked_weights", 2, &[9; 3], 7, 4);
        assert_eq!(args[..3], [2, 0, 12]);
    }
}
