//! The chain watcher component: reads the block once per block time and the metagraph every
//! `metagraph_every` blocks (never a poll per second), and reports our hotkey's standing. An
//! unreachable chain is reported and retried (the client backs off); it does not stop the node.

use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;

use crate::runtime::event::ChainReport;
use crate::runtime::{Component, ComponentContext, Event};
use nicheimage_bittensor::chain::{Chain, ChainError, standing};

pub struct ChainWatch {
    pub chain: Arc<dyn Chain>,
    pub netuid: u16,
    /// Our hotkey's ss58, if a wallet is loaded.
    pub hotkey: Option<String>,
    pub block_time: Duration,
    pub metagraph_every: u64,
}

impl ChainWatch {
    async fn sync_metagraph(&self, report: &mut ChainReport) -> Result<(), ChainError> {
        let graph = self.chain.metagraph(self.netuid).await?;
        report.neurons = graph.neurons.len();
        report.metagraph_block = Some(graph.block);
        let me = self.hotkey.as_deref().and_then(|h| graph.by_hotkey(h));
        report.uid = me.map(|n| n.uid);
        report.stake = me.map(|n| n.stake_tokens()).unwrap_or(0.0);
        report.incentive = me.map(|n| n.incentive).unwrap_or(0.0);
        report.emission = me.map(|n| n.emission_rao as f64 / 1e9).unwrap_or(0.0);
        report.validator_permit = me.is_some_and(|n| n.validator_permit);
        let hyper = self.chain.hyperparams(self.netuid).await?;
        report.commit_reveal = Some(hyper.commit_reveal_enabled);
        let epoch = self.chain.epoch(self.netuid).await?;
        report.clock = Some(standing::clock(&epoch, &hyper));
        report.standing = match self.hotkey.as_deref() {
            Some(hotkey) if me.is_some() => {
                let uids = graph.neurons.iter().map(|n| n.uid).collect();
                let registered = self.chain.registration_blocks(self.netuid, uids).await?;
                standing::standing(&graph, hotkey, graph.block, &hyper, &|uid| {
                    registered.get(&uid).copied()
                })
            }
            _ => None,
        };
        Ok(())
    }
}

impl Component for ChainWatch {
    fn name(&self) -> &str {
        "chain"
    }

    fn run(self: Arc<Self>, ctx: ComponentContext) -> BoxFuture<'static, anyhow::Result<()>> {
        async move {
            let mut report = ChainReport {
                network: self.chain.describe(),
                netuid: self.netuid,
                hotkey: self.hotkey.clone(),
                ..Default::default()
            };
            loop {
                match self.chain.block().await {
                    Ok(block) => {
                        report.block = Some(block);
                        report.last_error = None;
                        let due = report
                            .metagraph_block
                            .is_none_or(|at| block >= at + self.metagraph_every);
                        if due && let Err(e) = self.sync_metagraph(&mut report).await {
                            tracing::warn!(error = %e, "metagraph sync failed");
                            report.last_error = Some(e.to_string());
                        }
                    }
                    Err(e) => {
                        if report.last_error.as_deref() != Some(&e.to_string()) {
                            tracing::warn!(error = %e, "chain read failed; retrying");
                        }
                        report.last_error = Some(e.to_string());
                    }
                }
                ctx.events.send(Event::Chain(report.clone())).await;
                tokio::select! {
                    _ = ctx.cancel.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(self.block_time) => {}
                }
            }
        }
        .boxed()
    }
}
