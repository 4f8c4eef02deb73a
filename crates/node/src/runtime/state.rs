//! The state store: a fold of events into one snapshot that views render.

use super::event::{
    ChainReport, ComponentChange, ComponentStatus, DownloadReport, Event, GalleryImage, HostSample,
    LogLine, MinerReport, ProxyReport, ReplicaReport, RewardReport, TorchReport, ValidatorReport,
};
use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// Recent log lines kept for views; the full log is in the log file.
pub const LOG_RING: usize = 500;
/// Samples kept for the overview's sparklines.
pub const HISTORY: usize = 120;
/// Recent images kept for the gallery.
pub const GALLERY_RING: usize = 16;

pub fn unix_ms_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ComponentState {
    pub status: ComponentStatus,
    /// Restarts after a failure or by command.
    pub restarts: u32,
    pub last_error: Option<String>,
    pub last_error_unix_ms: Option<u64>,
    /// When the component entered its current status.
    pub since_unix_ms: u64,
    /// Set while in backoff: when the next attempt starts.
    pub retry_at_unix_ms: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct NodeState {
    pub version: &'static str,
    pub started_unix_ms: u64,
    pub components: BTreeMap<String, ComponentState>,
    pub listeners: BTreeMap<String, String>,
    pub host: Option<HostSample>,
    pub gpu: Option<crate::telemetry::gpu::GpuReport>,
    pub torch: Option<TorchReport>,
    pub replicas: BTreeMap<usize, ReplicaReport>,
    /// Checkpoint downloads by model name.
    pub downloads: BTreeMap<String, DownloadReport>,
    /// Endpoint responses by HTTP status.
    pub endpoint_responses: BTreeMap<u16, u64>,
    pub endpoint_queue_depth: usize,
    pub endpoint: Option<crate::runtime::event::EndpointInfo>,
    pub chain: Option<ChainReport>,
    /// Our incentive at each new metagraph, oldest first (for a sparkline).
    pub incentive_history: VecDeque<f64>,
    /// The validator's mean reward per round, oldest first.
    pub reward_history: VecDeque<f64>,
    /// Miners by component name (one, or the devnet's several).
    pub miners: BTreeMap<String, Arc<MinerReport>>,
    pub reward: Option<RewardReport>,
    // The large parts are shared between the snapshots the store publishes, not copied: a
    // report is replaced whole by its next event, a ring gains one entry at a time.
    pub validator: Option<Arc<ValidatorReport>>,
    pub proxy: Option<Arc<ProxyReport>>,
    #[serde(skip)]
    pub logs: VecDeque<Arc<LogLine>>,
    /// The latest images, newest last.
    #[serde(skip)]
    pub gallery: VecDeque<Arc<GalleryImage>>,
    /// Counts every change, so a view can tell whether it must redraw.
    pub revision: u64,
}

/// Appends to a ring of at most `cap` items, dropping the oldest.
fn push_bounded<T>(ring: &mut VecDeque<T>, item: T, cap: usize) {
    if ring.len() == cap {
        ring.pop_front();
    }
    ring.push_back(item);
}

impl Default for NodeState {
    fn default() -> Self {
        Self::new(unix_ms_now())
    }
}

impl NodeState {
    /// The replica processes this node runs itself (a remote endpoint is not ours to restart,
    /// kill or scale).
    pub fn local_replicas(&self) -> impl Iterator<Item = &ReplicaReport> {
        self.replicas.values().filter(|r| r.remote.is_none())
    }

    pub fn new(started_unix_ms: u64) -> Self {
        Self {
            version: env!("CARGO_PKG_VERSION"),
            started_unix_ms,
            components: BTreeMap::new(),
            listeners: BTreeMap::new(),
            host: None,
            gpu: None,
            torch: None,
            replicas: BTreeMap::new(),
            downloads: BTreeMap::new(),
            endpoint_responses: BTreeMap::new(),
            endpoint_queue_depth: 0,
            endpoint: None,
            chain: None,
            incentive_history: VecDeque::new(),
            reward_history: VecDeque::new(),
            miners: BTreeMap::new(),
            reward: None,
            validator: None,
            proxy: None,
            logs: VecDeque::new(),
            gallery: VecDeque::new(),
            revision: 0,
        }
    }

    pub fn apply(&mut self, event: Event, now_unix_ms: u64) {
        self.revision += 1;
        match event {
            Event::Component { name, change } => {
                let entry = self
                    .components
                    .entry(name.clone())
                    .or_insert_with(|| ComponentState {
                        status: ComponentStatus::Starting,
                        restarts: 0,
                        last_error: None,
                        last_error_unix_ms: None,
                        since_unix_ms: now_unix_ms,
                        retry_at_unix_ms: None,
                    });
                let previous = entry.status;
                entry.retry_at_unix_ms = None;
                entry.status = match change {
                    ComponentChange::Starting => {
                        // Starting again after a failure or while running is a restart;
                        // the first start and a start after a stop are not.
                        if matches!(
                            previous,
                            ComponentStatus::Backoff | ComponentStatus::Running
                        ) {
                            entry.restarts += 1;
                        }
                        ComponentStatus::Starting
                    }
                    ComponentChange::Running => ComponentStatus::Running,
                    ComponentChange::Failed { error, retry_in } => {
                        entry.last_error = Some(error);
                        entry.last_error_unix_ms = Some(now_unix_ms);
                        entry.retry_at_unix_ms = Some(now_unix_ms + retry_in.as_millis() as u64);
                        ComponentStatus::Backoff
                    }
                    ComponentChange::Stopped => {
                        self.listeners.remove(&name);
                        ComponentStatus::Stopped
                    }
                };
                entry.since_unix_ms = now_unix_ms;
            }
            Event::Listening { component, address } => {
                self.listeners.insert(component, address);
            }
            Event::Host(sample) => self.host = Some(sample),
            Event::Gpu(report) => self.gpu = Some(report),
            Event::Torch(report) => self.torch = Some(report),
            Event::Replica(report) => {
                self.replicas.insert(report.index, report);
            }
            Event::ReplicaRetired(index) => {
                self.replicas.remove(&index);
            }
            Event::Download(report) => {
                self.downloads.insert(report.model.clone(), report);
            }
            Event::Chain(report) => {
                let new_graph =
                    self.chain.as_ref().map(|c| c.metagraph_block) != Some(report.metagraph_block);
                if new_graph && report.uid.is_some() {
                    push_bounded(&mut self.incentive_history, report.incentive, HISTORY);
                }
                self.chain = Some(report);
            }
            Event::Miner(report) => {
                self.miners.insert(report.name.clone(), Arc::new(report));
            }
            Event::Reward(report) => self.reward = Some(report),
            Event::Validator(report) => {
                let new_round = self.validator.as_ref().map(|v| v.step) != Some(report.step);
                let rewards: Vec<f64> = report.last_round.iter().filter_map(|o| o.reward).collect();
                if new_round && !rewards.is_empty() {
                    let mean = rewards.iter().sum::<f64>() / rewards.len() as f64;
                    push_bounded(&mut self.reward_history, mean, HISTORY);
                }
                self.validator = Some(Arc::new(report));
            }
            Event::Proxy(report) => self.proxy = Some(Arc::new(report)),
            Event::EndpointResponse {
                status,
                queue_depth,
            } => {
                *self.endpoint_responses.entry(status).or_default() += 1;
                self.endpoint_queue_depth = queue_depth;
            }
            Event::EndpointServing(info) => self.endpoint = Some(info),
            Event::Gallery(image) => push_bounded(&mut self.gallery, Arc::new(image), GALLERY_RING),
            Event::Log(line) => push_bounded(&mut self.logs, Arc::new(line), LOG_RING),
        }
    }

    pub fn uptime_secs(&self, now_unix_ms: u64) -> u64 {
        now_unix_ms.saturating_sub(self.started_unix_ms) / 1000
    }

    /// Healthy when every component is running (or was stopped on purpose).
    pub fn healthy(&self) -> bool {
        self.components.values().all(|c| {
            matches!(
                c.status,
                ComponentStatus::Running | ComponentStatus::Stopped
            )
        })
    }

    /// Whether the node can do its work now (`/readyz`): healthy, and where it generates, at
    /// least one replica ready to serve; otherwise the reason.
    pub fn readiness(&self) -> Result<(), NotReady> {
        if !self.healthy() {
            return Err(NotReady::ComponentDown);
        }
        // A node that generates (an endpoint or a reward service) needs a replica that can;
        // none at all (a followed name that resolves to nothing yet) is not ready either.
        let generates = self.endpoint.is_some() || self.reward.is_some();
        if !generates || self.replicas.values().any(|r| r.status.health() == "ready") {
            return Ok(());
        }
        let count = |health: &str| {
            self.replicas
                .values()
                .filter(|r| r.status.health() == health)
                .count()
        };
        let last_error = self
            .replicas
            .values()
            .filter_map(|r| r.last_error.as_deref())
            .next_back()
            .map(|e| nicheimage_common::text::clip(e, 200));
        Err(NotReady::NoReplica {
            starting: count("starting"),
            failing: count("failing"),
            last_error,
        })
    }
}

/// Why the node cannot do its work now (`/readyz` answers 503 with it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotReady {
    #[error("a component is not running")]
    ComponentDown,
    #[error(
        "no replica can serve yet: {starting} starting, {failing} failing{}",
        last_error.as_deref().map(|e| format!("; last error: {e}")).unwrap_or_default()
    )]
    NoReplica {
        starting: usize,
        failing: usize,
        last_error: Option<String>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn ready_means_a_replica_can_serve_where_the_node_generates() {
        use crate::runtime::event::{ReplicaReport, ReplicaStatus};
        let mut s = NodeState::new(0);
        assert_eq!(s.readiness(), Ok(()), "a validator: nothing to generate");
        s.endpoint = Some(Default::default());
        // An endpoint following a name that resolves to nothing yet has no replicas at all.
        assert_eq!(
            s.readiness(),
            Err(NotReady::NoReplica {
                starting: 0,
                failing: 0,
                last_error: None
            })
        );
        s.apply(Event::Replica(ReplicaReport::new(0, vec![], None)), 1);
        assert!(
            s.readiness()
                .unwrap_err()
                .to_string()
                .contains("1 starting")
        );
        let mut ready = ReplicaReport::new(1000, vec![], Some("http://10.0.0.7:10006".into()));
        ready.status = ReplicaStatus::Busy;
        s.apply(Event::Replica(ready), 2);
        assert_eq!(s.readiness(), Ok(()), "a busy remote replica serves");
    }

    fn change(state: &mut NodeState, change: ComponentChange, t: u64) {
        state.apply(
            Event::Component {
                name: "x".into(),
                change,
            },
            t,
        );
    }

    #[test]
    fn failure_then_restart_counts_once_and_keeps_the_error() {
        let mut s = NodeState::new(0);
        change(&mut s, ComponentChange::Starting, 1);
        change(&mut s, ComponentChange::Running, 2);
        change(
            &mut s,
            ComponentChange::Failed {
                error: "boom".into(),
                retry_in: Duration::from_millis(500),
            },
            3,
        );
        let c = &s.components["x"];
        assert_eq!(c.status, ComponentStatus::Backoff);
        assert_eq!(c.retry_at_unix_ms, Some(503));
        change(&mut s, ComponentChange::Starting, 503);
        change(&mut s, ComponentChange::Running, 504);
        let c = &s.components["x"];
        assert_eq!(c.restarts, 1);
        assert_eq!(c.last_error.as_deref(), Some("boom"));
        assert_eq!(c.status, ComponentStatus::Running);
        assert!(s.healthy());
    }

    #[test]
    fn start_after_stop_is_not_a_restart() {
        let mut s = NodeState::new(0);
        change(&mut s, ComponentChange::Starting, 1);
        change(&mut s, ComponentChange::Running, 2);
        change(&mut s, ComponentChange::Stopped, 3);
        change(&mut s, ComponentChange::Starting, 4);
        assert_eq!(s.components["x"].restarts, 0);
    }

    #[test]
    fn log_ring_is_bounded() {
        let mut s = NodeState::new(0);
        for i in 0..(LOG_RING + 10) {
            s.apply(
                Event::Log(LogLine {
                    unix_ms: i as u64,
                    level: tracing::Level::INFO,
                    target: "t".into(),
                    message: format!("{i}"),
                }),
                0,
            );
        }
        assert_eq!(s.logs.len(), LOG_RING);
        assert_eq!(s.logs.front().unwrap().message, "10");
    }

    #[test]
    fn a_retired_replica_leaves_the_state_and_remote_ones_are_not_local() {
        let mut s = NodeState::new(0);
        for (index, remote) in [(0, None), (1, None), (1000, Some("http://10.0.0.2:10006"))] {
            s.apply(
                Event::Replica(ReplicaReport::new(index, vec![], remote.map(String::from))),
                1,
            );
        }
        assert_eq!(s.local_replicas().count(), 2);
        s.apply(Event::ReplicaRetired(1), 2);
        assert!(!s.replicas.contains_key(&1));
        assert_eq!(
            s.local_replicas().map(|r| r.index).collect::<Vec<_>>(),
            vec![0]
        );
    }
}
