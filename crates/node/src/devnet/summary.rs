//! What a bounded devnet run (`--devnet --duration …`) achieved, printed when it ends: rounds,
//! each miner's score and weight and why, the weights the chain took, the proxy's counters.

use serde::Serialize;

use super::sabotage::Sabotage;
use super::{Devnet, NETUID};
use crate::proxy::counters::DayCounters;
use crate::runtime::NodeState;
use nicheimage_bittensor::chain::Chain;

#[derive(Debug, Serialize)]
pub struct MinerSummary {
    pub name: String,
    pub uid: Option<u16>,
    pub hotkey: String,
    pub behaviour: String,
    /// The validator's final score (incentive share × normalised window mean).
    pub score: f64,
    /// Its weight in the validator's last accepted weights (u16, 0 when absent).
    pub weight: u16,
    pub last_reason: Option<crate::runtime::event::RewardReason>,
}

#[derive(Debug, Serialize)]
pub struct Summary {
    /// Validator passes completed.
    pub rounds: u64,
    pub miners: Vec<MinerSummary>,
    /// Weight extrinsics the chain accepted, and the block of the last.
    pub weights_set: usize,
    pub last_weights_block: Option<u64>,
    /// The proxy's counters over every day it ran.
    pub proxy: DayCounters,
}

pub fn behaviour(s: Option<Sabotage>) -> String {
    s.map_or_else(|| "honest".into(), Sabotage::describe)
}

impl Summary {
    pub async fn collect(devnet: &Devnet, state: &NodeState) -> Summary {
        let graph = devnet.chain.metagraph(NETUID).await.unwrap_or_default();
        let uid_of = |hotkey: &str| graph.by_hotkey(hotkey).map(|n| n.uid);
        let history = devnet.chain.weight_history();
        let validator_uid = uid_of(devnet.validator.ss58());
        let last = history
            .iter()
            .rev()
            .find(|r| Some(r.uid) == validator_uid && r.netuid == NETUID);
        let validator = state.validator.clone().unwrap_or_default();
        let miners = devnet
            .miners
            .iter()
            .map(|m| {
                let uid = uid_of(m.key.ss58());
                let weight = last
                    .zip(uid)
                    .and_then(|(r, uid)| {
                        r.uids.iter().position(|u| *u == uid).map(|i| r.weights[i])
                    })
                    .unwrap_or(0);
                MinerSummary {
                    name: m.name.clone(),
                    uid,
                    hotkey: m.key.ss58().to_string(),
                    behaviour: behaviour(m.sabotage),
                    score: uid
                        .and_then(|u| validator.scores.get(&u).copied())
                        .unwrap_or(0.0),
                    weight,
                    last_reason: validator
                        .last_round
                        .iter()
                        .find(|o| Some(o.uid) == uid)
                        .map(|o| o.reason.clone()),
                }
            })
            .collect();
        Summary {
            rounds: validator.step,
            miners,
            weights_set: history.len(),
            last_weights_block: last.map(|r| r.block),
            proxy: state
                .proxy
                .as_ref()
                .map(|p| p.total.clone())
                .unwrap_or_default(),
        }
    }

    /// A few lines for people.
    pub fn text(&self) -> String {
        let mut out = format!(
            "devnet summary: {} validator rounds, {} weight updates on chain{}\n",
            self.rounds,
            self.weights_set,
            self.last_weights_block
                .map(|b| format!(" (last at block {b})"))
                .unwrap_or_default()
        );
        for m in &self.miners {
            out.push_str(&format!(
                "  {} uid {} ({}): score {:.3}, weight {}{}\n",
                m.name,
                m.uid.map_or("-".into(), |u| u.to_string()),
                m.behaviour,
                m.score,
                m.weight,
                m.last_reason
                    .as_ref()
                    .map(|r| format!(", last: {r}"))
                    .unwrap_or_default()
            ));
        }
        let p = &self.proxy;
        out.push_str(&format!(
            "  proxy: {} served, {} failed, {} organic checks ({} failed)\n",
            p.success, p.fail, p.checked, p.check_failed
        ));
        out
    }

    /// One JSON line, `"type": "summary"`.
    pub fn json_line(&self) -> String {
        let mut v = serde_json::to_value(self).unwrap_or_default();
        v["type"] = "summary".into();
        v.to_string()
    }
}
