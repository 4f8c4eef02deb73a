//! `chain`: one look at the chain, as btcli shows it.

use super::{CommandError, CommandResult, one_shot_runtime};
use nicheimage_node::assemble;
use nicheimage_node::config::Config;

/// Prints the block, the subnet's settings, the metagraph's size and our hotkey's standing.
/// Exit 1 when the chain cannot be read: the operator asked for exactly that.
pub fn run(config: &Config) -> CommandResult {
    let hotkey = assemble::load_hotkey(config)
        .ok()
        .map(|k| k.ss58().to_string());
    let runtime = one_shot_runtime()?;
    runtime.block_on(async {
        let chain = assemble::open_chain(config, hotkey.as_deref()).map_err(CommandError::usage)?;
        let netuid = config.subtensor.netuid;
        println!("{}", chain.describe());
        let report = async {
            use nicheimage_bittensor::chain::standing;
            let block = chain.block().await?;
            println!("block {block}");
            let h = chain.hyperparams(netuid).await?;
            let mode = chain.weights_mode(netuid).await?;
            let clock = standing::clock(block, netuid, &h);
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
                "hotkey {h_key}: uid {}, stake {:.3}, rank {:.4}, trust {:.4}, consensus {:.4}, incentive {:.4}, dividends {:.4}, emission {:.4}/tempo, validator trust {:.4}, validator permit {}",
                s.uid, s.stake, s.rank, s.trust, s.consensus, s.incentive, s.dividends, s.emission,
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
