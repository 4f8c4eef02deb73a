//! The miner neuron: an axon that answers validators' `ImageGenerating` synapses through the
//! generation endpoint, guarded by NicheImage's blacklist and rate limit (configurable, counted per
//! validator), prioritised by stake when busy; the metagraph resynced on a timer; the axon
//! announced on chain when the published address changes.

pub mod blacklist;
pub mod endpoint_client;
pub mod source;

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::future::BoxFuture;
use serde_json::Value;

use crate::config::BlacklistConfig;
use crate::runtime::event::{Announce, MinerReport};
use crate::runtime::{Component, ComponentContext, Event};
use blacklist::Blacklist;
pub use endpoint_client::EndpointClient;
use nicheimage_bittensor::axon::{Axon, AxonBuilder, Caller, Handler};
use nicheimage_bittensor::chain::{Chain, Metagraph, ServeAxon};
use nicheimage_bittensor::keypair::Keypair;
use nicheimage_bittensor::synapse::ImageGenerating;
pub use source::ImageSource;

pub struct MinerSettings {
    /// The component's name ("miner"; "miner-1", ... when a node runs several).
    pub name: String,
    pub netuid: u16,
    pub listen: SocketAddr,
    /// The address to announce on chain; `None`: do not announce (and say why).
    pub publish: Option<(IpAddr, u16)>,
    /// Where the images come from (the endpoint, or a devnet saboteur around it).
    pub source: Arc<dyn ImageSource>,
    /// The rules in force; a new value applies from the next request.
    pub blacklist: tokio::sync::watch::Receiver<BlacklistConfig>,
    pub resync_every: Duration,
    /// Connection limits of the axon's listener.
    pub limits: nicheimage_common::serve::Limits,
    /// The largest timeout a validator asks for (the models'): it bounds the nonce window.
    pub max_timeout_secs: f64,
    /// Knock on the announced address after announcing.
    pub self_test: bool,
}

pub struct Miner {
    pub settings: MinerSettings,
    pub chain: Arc<dyn Chain>,
    pub keypair: Arc<Keypair>,
}

/// What the axon's hooks share with the component loop.
struct MinerHandler {
    rules: tokio::sync::watch::Receiver<BlacklistConfig>,
    blacklist: Mutex<Blacklist>,
    metagraph: Mutex<Metagraph>,
    source: Arc<dyn ImageSource>,
    model_name: Mutex<Option<String>>,
    /// Validators' addresses (permit and enough stake), for the axon's reserved connections.
    seats: nicheimage_common::serve::Preferred,
}

impl MinerHandler {
    fn stake_of(&self, hotkey: &str) -> f64 {
        lock(&self.metagraph)
            .by_hotkey(hotkey)
            .map(|n| n.total_stake_tokens())
            .unwrap_or(0.0)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Why the miner's axon answers a validator with no image.
#[derive(Debug, thiserror::Error)]
pub enum MinerError {
    #[error(transparent)]
    Refused(#[from] blacklist::Refusal),
    #[error(transparent)]
    Endpoint(#[from] nicheimage_common::http::ServiceError),
}

impl Handler<ImageGenerating> for MinerHandler {
    type Error = MinerError;

    fn blacklist(&self, caller: &Caller) -> Result<(), MinerError> {
        let graph = lock(&self.metagraph);
        let neuron = graph.by_hotkey(&caller.hotkey);
        lock(&self.blacklist)
            .check(&self.rules.borrow(), &caller.hotkey, neuron, Instant::now())
            .map_err(MinerError::Refused)
    }

    fn admissible(&self, hotkey: &str) -> Result<(), MinerError> {
        let graph = lock(&self.metagraph);
        Blacklist::admissible(&self.rules.borrow(), graph.by_hotkey(hotkey))
            .map_err(MinerError::Refused)
    }

    fn priority(&self, caller: &Caller, _: &ImageGenerating) -> f64 {
        self.stake_of(&caller.hotkey)
    }

    fn forward(
        self: Arc<Self>,
        caller: Caller,
        mut synapse: ImageGenerating,
    ) -> BoxFuture<'static, Result<ImageGenerating, MinerError>> {
        async move {
            if !synapse.request_dict.is_empty() {
                // An info query: who we are (cached, as NicheImage did).
                let cached = lock(&self.model_name).clone();
                let name = match cached {
                    Some(name) => name,
                    None => {
                        let name = self.source.model_name().await?;
                        *lock(&self.model_name) = Some(name.clone());
                        name
                    }
                };
                synapse.response_dict.insert("model_name".into(), Value::String(name));
                return Ok(synapse);
            }
            let started = Instant::now();
            let image = self.source.generate(&synapse).await.inspect_err(|e| {
                tracing::warn!(validator = %caller.hotkey, error = %e, "generation failed");
            })?;
            tracing::debug!(validator = %caller.hotkey, ms = started.elapsed().as_millis() as u64, "image served");
            lock(&self.blacklist).served(&caller.hotkey, started.elapsed());
            synapse.image = Value::String(image);
            Ok(synapse)
        }
        .boxed()
    }
}

impl Miner {
    async fn sync(&self, handler: &MinerHandler, report: &mut MinerReport) {
        match self.chain.metagraph(self.settings.netuid).await {
            Ok(graph) => {
                report.metagraph_block = Some(graph.block);
                if graph.by_hotkey(self.keypair.ss58()).is_none() {
                    report.last_error = Some(format!(
                        "hotkey {} is not registered on subnet {}",
                        self.keypair.ss58(),
                        self.settings.netuid
                    ));
                } else {
                    report.last_error = None;
                }
                let rules = handler.rules.borrow().clone();
                let validators = graph
                    .neurons
                    .iter()
                    .filter(|n| n.validator_permit && n.total_stake_tokens() >= rules.min_stake)
                    .filter_map(|n| n.axon.address().ok())
                    .collect();
                *handler.seats.write().unwrap_or_else(|p| p.into_inner()) = validators;
                *lock(&handler.metagraph) = graph;
            }
            Err(e) => {
                tracing::warn!(error = %e, "metagraph sync failed; keeping the last one");
                report.last_error = Some(format!("metagraph sync: {e}"));
            }
        }
    }

    /// Knocks on the published address, as validators will.
    async fn self_test(&self, report: &mut MinerReport) {
        let (Some((ip, port)), Ok(bound)) = (self.settings.publish, report.axon.parse()) else {
            return;
        };
        if !self.settings.self_test {
            report.reachability = Some((
                false,
                format!("not checked: miner.reachability_self_test is off ({ip}:{port})"),
            ));
            return;
        }
        let seen = nicheimage_bittensor::reachability::check(
            &ip.to_string(),
            port,
            bound,
            <ImageGenerating as nicheimage_bittensor::synapse::Synapse>::NAME,
        )
        .await;
        if seen.answer.is_err() {
            tracing::warn!("{}", seen.summary());
        }
        report.reachability = Some((seen.answer.is_ok(), seen.summary()));
    }

    async fn announce(&self, report: &mut MinerReport) {
        let Some((ip, port)) = self.settings.publish else {
            report.announce_result = Some(Announce::Skipped(
                "not announced: set axon.external_ip to publish the axon on chain".into(),
            ));
            return;
        };
        report.announced = Some(SocketAddr::new(ip, port).to_string());
        let axon = ServeAxon {
            netuid: self.settings.netuid,
            version: nicheimage_bittensor::PROTOCOL_VERSION as u32,
            ip,
            port,
            protocol: 4,
        };
        report.announce_result = Some(match self.chain.serve_axon(&self.keypair, axon).await {
            Ok(()) => Announce::OnChain,
            Err(e) => {
                tracing::warn!(error = %e, "serve_axon failed");
                Announce::Failed(e.to_string())
            }
        });
    }

    fn snapshot(report: &mut MinerReport, handler: &MinerHandler, axon: &Axon) {
        report.responses = axon.stats().by_status.into_iter().collect();
        report.validators = lock(&handler.blacklist)
            .counters
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        report.model_name = lock(&handler.model_name).clone();
        report.rules = handler.rules.borrow().clone();
    }
}

impl Component for Miner {
    fn name(&self) -> &str {
        &self.settings.name
    }

    fn run(self: Arc<Self>, ctx: ComponentContext) -> BoxFuture<'static, anyhow::Result<()>> {
        async move {
            let s = &self.settings;
            let handler = Arc::new(MinerHandler {
                rules: s.blacklist.clone(),
                blacklist: Mutex::new(Blacklist::default()),
                metagraph: Mutex::new(Metagraph::default()),
                source: s.source.clone(),
                model_name: Mutex::new(None),
                seats: Default::default(),
            });
            let mut builder = AxonBuilder::new(self.keypair.clone())
                .limits(s.limits)
                .seats(handler.seats.clone())
                .max_timeout(s.max_timeout_secs)
                .attach::<ImageGenerating, _>(handler.clone());
            if let Some((ip, port)) = s.publish {
                builder = builder.external(ip.to_string(), port);
            }
            let axon = builder.build();
            let listener = crate::listen::bind(&ctx, s.listen, "the miner axon").await?;
            let mut report = MinerReport {
                name: s.name.clone(),
                sabotage: s.source.sabotage(),
                hotkey: self.keypair.ss58().to_string(),
                axon: listener
                    .local_addr()
                    .map(|a| a.to_string())
                    .unwrap_or_default(),
                ..Default::default()
            };
            let serving = {
                let (axon, cancel) = (axon.clone(), ctx.cancel.clone());
                tokio::spawn(async move { axon.serve(listener, cancel.cancelled_owned()).await })
            };
            match handler.source.model_name().await {
                Ok(name) => *lock(&handler.model_name) = Some(name),
                Err(e) => tracing::warn!("the generation endpoint does not answer yet: {e}"),
            }
            self.sync(&handler, &mut report).await;
            self.announce(&mut report).await;
            self.self_test(&mut report).await;
            let mut next_sync = Instant::now() + s.resync_every;
            loop {
                Self::snapshot(&mut report, &handler, &axon);
                ctx.events.send(Event::Miner(report.clone())).await;
                tokio::select! {
                    _ = ctx.cancel.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
                if Instant::now() >= next_sync {
                    self.sync(&handler, &mut report).await;
                    self.self_test(&mut report).await;
                    // A failed sync is retried sooner than a good one is repeated.
                    let wait = if report.metagraph_block.is_some() && report.last_error.is_none() {
                        s.resync_every
                    } else {
                        s.resync_every.min(Duration::from_secs(30))
                    };
                    next_sync = Instant::now() + wait;
                }
            }
            let _ = serving.await;
            Ok(())
        }
        .boxed()
    }
}
