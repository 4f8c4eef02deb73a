//! Telemetry: host and process samples on a timer, and a one-time libtorch probe.
//! GPUs (`gpu`: NVML, else nvidia-smi) on the same timer; the replica pool reads per-process GPU
//! memory from `gpu` too.

pub mod gpu;
pub mod host;

use crate::runtime::{Component, ComponentContext, Event};
use futures::FutureExt;
use futures::future::BoxFuture;
use std::sync::Arc;
use std::time::Duration;

pub struct Telemetry {
    pub interval: Duration,
    pub device: crate::config::DeviceChoice,
}

impl Component for Telemetry {
    fn name(&self) -> &str {
        "telemetry"
    }

    fn run(self: Arc<Self>, ctx: ComponentContext) -> BoxFuture<'static, anyhow::Result<()>> {
        async move {
            let device = self.device;
            let report = tokio::task::spawn_blocking(move || crate::engine::probe(device))
                .await
                .map_err(|e| anyhow::anyhow!("libtorch probe crashed: {e}"))?;
            if let Err(why) = &report.smoke_test {
                tracing::error!(error = %why, "libtorch smoke test failed");
            }
            ctx.events.send(Event::Torch(report)).await;

            let mut sampler = host::HostSampler::new();
            let mut ticker = tokio::time::interval(self.interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = ctx.cancel.cancelled() => return Ok(()),
                    _ = ticker.tick() => {
                        let sample = sampler.sample()?;
                        ctx.events.send(Event::Host(sample)).await;
                        // NVML is quick; the nvidia-smi fallback forks: off the async threads.
                        if let Ok(gpus) = tokio::task::spawn_blocking(gpu::sample).await {
                            ctx.events.send(Event::Gpu(gpus)).await;
                        }
                    }
                }
            }
        }
        .boxed()
    }
}
