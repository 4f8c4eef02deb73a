//! Our hotkey's standing on a subnet and the subnet's clock, as btcli shows them: computed from
//! one metagraph, the hyperparameters and the block, with no chain access of its own.

use serde::Serialize;

use super::epoch::{EpochState, EpochSummary};
use super::{Hyperparams, Metagraph};

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Standing {
    pub uid: u16,
    /// Tokens of alpha on this subnet.
    pub stake: f64,
    /// Root (TAO) stake counted here, tokens.
    pub root_stake: f64,
    /// Alpha plus `TaoWeight` × root: what today's SDK and our gates compare.
    pub total_stake: f64,
    pub rank: f64,
    pub trust: f64,
    pub consensus: f64,
    pub incentive: f64,
    pub dividends: f64,
    /// Tokens per tempo.
    pub emission: f64,
    pub validator_trust: f64,
    pub validator_permit: bool,
    pub blocks_since_update: u64,
    /// Blocks left under registration immunity (0: not immune); `None` where unknown.
    pub immunity_left: Option<u64>,
    /// 1-based place in the deregistration order among neurons out of immunity (1 goes first),
    /// and how many are in it; `None` while we are immune.
    pub pruning_place: Option<(usize, usize)>,
    /// The axon as the chain holds it (`ip:port`, or "not served").
    pub axon: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SubnetClock {
    pub tempo: u16,
    pub blocks_to_epoch: u64,
    /// The schedule the chain runs (stateful or legacy) with its next epoch block.
    pub epoch: EpochSummary,
    pub weights_rate_limit: u64,
    pub immunity_period: u64,
    /// Tokens to register (burned).
    pub registration_cost: f64,
}

pub fn clock(epoch: &EpochState, h: &Hyperparams) -> SubnetClock {
    SubnetClock {
        tempo: h.tempo,
        blocks_to_epoch: epoch.blocks_to_next_epoch().unwrap_or(0),
        epoch: epoch.summary(),
        weights_rate_limit: h.weights_rate_limit,
        immunity_period: h.immunity_period,
        registration_cost: h.registration_cost_rao as f64 / 1e9,
    }
}

/// `registered_at`: the block each uid registered at, where known (for immunity).
pub fn standing(
    graph: &Metagraph,
    hotkey: &str,
    block: u64,
    h: &Hyperparams,
    registered_at: &dyn Fn(u16) -> Option<u64>,
) -> Option<Standing> {
    let me = graph.by_hotkey(hotkey)?;
    let immunity_left =
        |uid: u16| registered_at(uid).map(|at| (at + h.immunity_period).saturating_sub(block));
    let mine = immunity_left(me.uid);
    let pruning_place = match mine {
        Some(0) | None => {
            let exposed: Vec<_> = graph
                .neurons
                .iter()
                .filter(|n| immunity_left(n.uid).is_none_or(|left| left == 0))
                .collect();
            let ahead = exposed
                .iter()
                .filter(|n| {
                    n.pruning_score < me.pruning_score
                        || (n.pruning_score == me.pruning_score && n.uid < me.uid)
                })
                .count();
            Some((ahead + 1, exposed.len()))
        }
        Some(_) => None,
    };
    Some(Standing {
        uid: me.uid,
        stake: me.stake_tokens(),
        root_stake: me.root_stake_rao as f64 / 1e9,
        total_stake: me.total_stake_tokens(),
        rank: me.rank,
        trust: me.trust,
        consensus: me.consensus,
        incentive: me.incentive,
        dividends: me.dividends,
        emission: me.emission_rao as f64 / 1e9,
        validator_trust: me.validator_trust,
        validator_permit: me.validator_permit,
        blocks_since_update: block.saturating_sub(me.last_update),
        immunity_left: mine,
        pruning_place,
        axon: if me.axon.is_served() {
            format!("{}:{}", me.axon.ip_string(), me.axon.port)
        } else {
            "not served".into()
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::Neuron;

    fn neuron(uid: u16, pruning: f64) -> Neuron {
        Neuron {
            uid,
            hotkey: format!("h{uid}"),
            pruning_score: pruning,
            last_update: 90,
            ..Default::default()
        }
    }

    fn hyper() -> Hyperparams {
        Hyperparams {
            tempo: 99,
            weights_rate_limit: 100,
            weights_version_key: 0,
            commit_reveal_enabled: false,
            immunity_period: 50,
            registration_cost_rao: 1_000_000_000,
        }
    }

    #[test]
    fn the_clock_reads_the_hyperparameters() {
        let c = clock(&EpochState::legacy(100, 23, 99, 1, 12.0), &hyper());
        assert_eq!(
            (c.blocks_to_epoch, c.registration_cost),
            (99 - 124 % 100, 1.0)
        );
        assert_eq!(c.epoch.next_epoch_block, Some(100 + 99 - 124 % 100));
    }

    #[test]
    fn the_pruning_place_counts_only_neurons_out_of_immunity() {
        let graph = Metagraph {
            netuid: 1,
            block: 100,
            neurons: vec![
                neuron(0, 0.5),
                neuron(1, 0.1),
                neuron(2, 0.3),
                neuron(3, 0.0),
            ],
        };
        // uid 3 registered at 80: immune until 130; the others long ago.
        let at = |uid: u16| Some(if uid == 3 { 80 } else { 0 });
        let s = standing(&graph, "h2", 100, &hyper(), &at).unwrap();
        assert_eq!(s.pruning_place, Some((2, 3)), "uid 1 goes first, then us");
        assert_eq!(s.blocks_since_update, 10);
        let immune = standing(&graph, "h3", 100, &hyper(), &at).unwrap();
        assert_eq!(
            (immune.immunity_left, immune.pruning_place),
            (Some(30), None)
        );
        assert_eq!(immune.axon, "not served");
        assert!(standing(&graph, "nobody", 100, &hyper(), &at).is_none());
    }
}
