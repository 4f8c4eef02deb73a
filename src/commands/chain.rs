//! `chain`: one look at the chain, as btcli shows it.

use super::{CommandError, CommandResult, one_shot_runtime};
use nicheimage_bittensor::chain::epoch::{EpochState, Rule};
use nicheimage_bittensor::chain::{Chain, ChainError, standing};
use nicheimage_node::assemble;
use nicheimage_node::config::Config;

/// Prints the block, the subnet's settings, the epoch schedule, the metagraph's size and our
/// hotkey's standing (as one JSON object with `json`). Exit 1 when the chain cannot be read: the
/// operator asked for exactly that.
pub fn run(config: &Config, json: bool) -> CommandResult {
    let hotkey = assemble::load_hotkey(config)
        .ok()
        .map(|k| k.ss58().to_string());
    let runtime = one_shot_runtime()?;
    runtime.block_on(async {
        let chain = assemble::open_chain(config, hotkey.as_deref()).map_err(CommandError::usage)?;
        let netuid = config.subtensor.netuid;
        if json {
            let value = as_json(chain.as_ref(), netuid, hotkey.as_deref())
                .await
                .map_err(CommandError::failed)?;
            println!("{value}");
            return Ok(());
        }
        println!("{}", chain.describe());
        let report = async {
            let block = chain.block().await?;
            println!("block {block}");
            let h = chain.hyperparams(netuid).await?;
            let mode = chain.weights_mode(netuid).await?;
            let epoch = chain.epoch(netuid).await?;
            let clock = standing::clock(&epoch, &h);
            println!(
                "subnet {netuid}: tempo {}, next epoch in {} blocks, weights rate limit {} blocks, version key {}, {}, registration cost {:.3}, immunity period {} blocks",
                h.tempo,
                clock.blocks_to_epoch,
                h.weights_rate_limit,
                h.weights_version_key,
                mode.describe(),
                clock.registration_cost,
                h.immunity_period
            );
            println!("{}", describe_epoch(&epoch));
            let graph = chain.metagraph(netuid).await?;
            let served = graph.neurons.iter().filter(|n| n.axon.is_served()).count();
            let permits = graph.neurons.iter().filter(|n| n.validator_permit).count();
            println!("{} neurons, {served} axons served, {permits} validator permits", graph.neurons.len());
            let Some(h_key) = hotkey.as_deref() else {
                println!("no hotkey loaded ([wallet] section)");
                return Ok(());
            };
            if graph.by_hotkey(h_key).is_none() {
                println!("hotkey {h_key} is NOT registered on subnet {netuid}");
                return Ok(());
            }
            let uids = graph.neurons.iter().map(|n| n.uid).collect();
            let registered = chain.registration_blocks(netuid, uids).await?;
            let Some(s) = standing::standing(&graph, h_key, block, &h, &|uid| registered.get(&uid).copied()) else {
                return Ok(());
            };
            println!(
                "hotkey {h_key}: uid {}, stake {:.3} alpha + {:.3} root = {:.3} total (alpha + TaoWeight × root), rank {:.4}, trust {:.4}, consensus {:.4}, incentive {:.4}, dividends {:.4}, emission {:.4}/tempo, validator trust {:.4}, validator permit {}",
                s.uid, s.stake, s.root_stake, s.total_stake, s.rank, s.trust, s.consensus, s.incentive, s.dividends, s.emission,
                s.validator_trust, if s.validator_permit { "yes" } else { "no" }
            );
            let immunity = match s.immunity_left {
                Some(0) => "immunity over".to_string(),
                Some(left) => format!("immune for {left} more blocks"),
                None => "immunity unknown".to_string(),
            };
            let risk = match s.pruning_place {
                Some((place, of)) => format!("place {place} of {of} in the deregistration order (1 goes first)"),
                None => "not in the deregistration order while immune".to_string(),
            };
            println!(
                "  last update {} blocks ago (rate limit {}), {immunity}, {risk}, axon {}",
                s.blocks_since_update, h.weights_rate_limit, s.axon
            );
            Ok::<_, nicheimage_bittensor::chain::ChainError>(())
        };
        report.await.map_err(CommandError::failed)
    })
}

/// The epoch schedule in one line.
pub fn describe_epoch(e: &EpochState) -> String {
    let next = match e.next_epoch_block() {
        Some(at) => format!(
            "next at block {at} (in {} blocks)",
            at.saturating_sub(e.block)
        ),
        None => "no epochs (tempo 0)".to_string(),
    };
    let rule = match e.rule {
        Rule::Stateful => format!(
            "stateful (dynamic tempo): last epoch at block {}, {} blocks since the last step{}",
            e.last_epoch_block,
            e.blocks_since_last_step,
            match e.pending_epoch_at {
                0 => String::new(),
                at => format!(", owner-triggered epoch pending at block {at}"),
            }
        ),
        Rule::Legacy => "legacy ((block + netuid + 1) / (tempo + 1))".to_string(),
    };
    format!(
        "epoch {}: {next}; rule {rule}; reveal period {} epoch(s), block time {} s",
        e.epoch_index, e.reveal_period_epochs, e.block_time_secs
    )
}

/// What `chain --json` prints: the block, the subnet's settings, the `epoch` object, the
/// metagraph's counts and our hotkey's standing with its stake split.
async fn as_json(
    chain: &dyn Chain,
    netuid: u16,
    hotkey: Option<&str>,
) -> Result<serde_json::Value, ChainError> {
    let block = chain.block().await?;
    let h = chain.hyperparams(netuid).await?;
    let mode = chain.weights_mode(netuid).await?;
    let epoch = chain.epoch(netuid).await?;
    let graph = chain.metagraph(netuid).await?;
    let me = hotkey.and_then(|k| graph.by_hotkey(k));
    let standing = match (hotkey, me) {
        (Some(k), Some(_)) => {
            let uids = graph.neurons.iter().map(|n| n.uid).collect();
            let registered = chain.registration_blocks(netuid, uids).await?;
            standing::standing(&graph, k, block, &h, &|uid| registered.get(&uid).copied())
        }
        _ => None,
    };
    Ok(serde_json::json!({
        "network": chain.describe(),
        "block": block,
        "netuid": netuid,
        "tempo": h.tempo,
        "weights_rate_limit": h.weights_rate_limit,
        "weights_version_key": h.weights_version_key,
        "weights_mode": mode.describe(),
        "immunity_period": h.immunity_period,
        "registration_cost": h.registration_cost_rao as f64 / 1e9,
        "epoch": epoch.summary(),
        "neurons": graph.neurons.len(),
        "axons_served": graph.neurons.iter().filter(|n| n.axon.is_served()).count(),
        "validator_permits": graph.neurons.iter().filter(|n| n.validator_permit).count(),
        "hotkey": hotkey,
        "registered": me.is_some(),
        "stake": me.map(|n| serde_json::json!({
            "alpha": n.stake_tokens(),
            "root": n.root_stake_rao as f64 / 1e9,
            "total": n.total_stake_tokens(),
        })),
        "standing": standing,
    }))
}
