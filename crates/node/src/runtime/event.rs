//! What components report (events) and what views ask of the runtime (commands).

use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// One report into the state store. Everything a view shows arrives as one of these.
#[derive(Debug, Clone)]
pub enum Event {
    /// Lifecycle of a supervised component; only the supervisor sends these.
    Component {
        name: String,
        change: ComponentChange,
    },
    /// A component bound a network listener.
    Listening {
        component: String,
        address: String,
    },
    Host(HostSample),
    /// Every GPU, or why none can be read.
    Gpu(crate::telemetry::gpu::GpuReport),
    Torch(TorchReport),
    Log(LogLine),
    /// The latest state of one generation replica.
    Replica(ReplicaReport),
    /// A local replica scaled away: it is no longer part of the pool.
    ReplicaRetired(usize),
    /// Progress of a checkpoint download.
    Download(DownloadReport),
    /// What the chain watcher last saw.
    Chain(ChainReport),
    /// The miner's axon, announcement and per-validator counters.
    Miner(MinerReport),
    /// The reward service's answers and verdicts.
    Reward(RewardReport),
    /// The validator's last pass: rewards with reasons, scores, weights.
    Validator(ValidatorReport),
    /// The validator proxy: on/off, listener, counters, recent requests.
    Proxy(ProxyReport),
    /// An image the node verified (or served), for the console's gallery.
    Gallery(GalleryImage),
    /// One answered HTTP request of the endpoint, and the queue behind it.
    EndpointResponse {
        status: u16,
        queue_depth: usize,
    },
    /// The endpoint is listening: what it serves.
    EndpointServing(EndpointInfo),
}

/// What the node's generation endpoint serves.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct EndpointInfo {
    pub model: String,
    pub pipelines: Vec<String>,
    /// Whether replicas black out what the NSFW classifier flags (off without the classifier).
    pub nsfw_filter: bool,
    /// Pipelines the model lists that this node cannot serve (their files are missing).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pipelines_off: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ComponentChange {
    Starting,
    Running,
    /// The run ended with an error; the supervisor retries after `retry_in`.
    Failed {
        error: String,
        retry_in: Duration,
    },
    Stopped,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ComponentStatus {
    Starting,
    Running,
    Backoff,
    Stopped,
}

/// Commands from a view (or a test) to the runtime.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Start(String),
    Stop(String),
    Restart(String),
    Shutdown,
    /// Restart one generation replica's process (after its current job).
    RestartReplica(usize),
    /// Kill one replica's process now (its job fails); the pool starts it again.
    KillReplica(usize),
    /// Start or retire replicas to reach this many.
    ScaleReplicas(usize),
    /// Switch the validator proxy's listener on or off (remembered across restarts).
    SetProxy(bool),
    /// New blacklist and rate-limit rules for the miner (e.g. the config file reloaded).
    SetBlacklist(crate::config::BlacklistConfig),
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct HostSample {
    /// This process's CPU use over the last interval, in percent of one core.
    pub process_cpu_percent: f64,
    pub process_cpu_seconds: f64,
    pub process_rss_bytes: u64,
    pub load_average_1m: f64,
    pub memory_total_bytes: u64,
    pub memory_available_bytes: u64,
    pub cores: usize,
}

pub use nicheimage_common::torch::TorchReport;

fn level_name<S: serde::Serializer>(level: &tracing::Level, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(level.as_str())
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LogLine {
    pub unix_ms: u64,
    #[serde(serialize_with = "level_name")]
    pub level: tracing::Level,
    pub target: String,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplicaStatus {
    Loading,
    Ready,
    Busy,
    Dead,
    /// Cannot load its model, for a reason a restart does not change (in `last_error`);
    /// retried at the slow end of the backoff.
    Failed,
    Stopped,
}

impl ReplicaStatus {
    /// `/healthz`'s word for it: whether the replica takes work now, soon, or not.
    pub fn health(self) -> &'static str {
        match self {
            Self::Loading => "starting",
            Self::Ready | Self::Busy => "ready",
            Self::Dead | Self::Failed => "failing",
            Self::Stopped => "stopped",
        }
    }
}

/// The chain as the node sees it: where, which block, and our hotkey's place on the subnet.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ChainReport {
    /// Network and endpoint, e.g. "subtensor finney at wss://…".
    pub network: String,
    pub netuid: u16,
    pub block: Option<u64>,
    /// Neurons on the subnet at the last metagraph sync, and that sync's block.
    pub neurons: usize,
    pub metagraph_block: Option<u64>,
    pub hotkey: Option<String>,
    /// Our uid, if the hotkey is registered.
    pub uid: Option<u16>,
    pub stake: f64,
    pub incentive: f64,
    pub emission: f64,
    pub validator_permit: bool,
    pub commit_reveal: Option<bool>,
    /// Our hotkey's standing as btcli shows it, at the last metagraph sync.
    pub standing: Option<nicheimage_bittensor::chain::standing::Standing>,
    /// The subnet's epoch clock and costs at the last metagraph sync.
    pub clock: Option<nicheimage_bittensor::chain::standing::SubnetClock>,
    /// The last failure talking to the chain (the watcher keeps retrying).
    pub last_error: Option<String>,
}

/// One validator as the miner's blacklist sees it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ValidatorCounters {
    pub uid: Option<u16>,
    pub stake: f64,
    pub requests: u64,
    pub allowed: u64,
    /// Requests allowed per window at its stake, and how many it used in the current window.
    pub limit: u32,
    pub window_count: u32,
    pub window_resets: u64,
    /// Refusals by reason ("Unrecognized hotkey", "Not enough stake", "Limit exceeded", ...).
    pub rejected: BTreeMap<String, u64>,
    /// When it last called us, and how long our last generation for it took.
    pub last_request_unix_ms: Option<u64>,
    pub last_latency_ms: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct MinerReport {
    /// The component's name: a node may run several miners (the devnet does).
    pub name: String,
    /// Set only on the devnet's deliberately misbehaving miners.
    pub sabotage: Option<String>,
    pub hotkey: String,
    /// Where the axon listens, and the address announced on chain (if any).
    pub axon: String,
    pub announced: Option<String>,
    /// The outcome of the last `serve_axon`.
    pub announce_result: Option<Announce>,
    /// The blacklist and rate-limit rules in force.
    pub rules: crate::config::BlacklistConfig,
    /// The last self-test of the published address: (answers, what was seen).
    pub reachability: Option<(bool, String)>,
    pub model_name: Option<String>,
    pub metagraph_block: Option<u64>,
    /// Axon answers by status code.
    pub responses: BTreeMap<u16, u64>,
    /// Counters by validator hotkey.
    pub validators: BTreeMap<String, ValidatorCounters>,
    pub last_error: Option<String>,
}

/// What became of the miner's axon announcement. Shown and serialised as its words.
#[derive(Debug, Clone, PartialEq)]
pub enum Announce {
    /// `serve_axon` landed: the chain holds our address.
    OnChain,
    /// Not announced, and why (no address to publish).
    Skipped(String),
    /// The chain refused it or could not be reached.
    Failed(String),
}

impl std::fmt::Display for Announce {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::OnChain => f.write_str("on chain"),
            Self::Skipped(why) | Self::Failed(why) => f.write_str(why),
        }
    }
}

impl Serialize for Announce {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// The validator's last word on its weights, as data; shown and serialised as its sentence
/// (the headless JSON keeps that shape).
#[derive(Debug, Clone, PartialEq)]
pub enum WeightsStatus {
    /// `set_weights` went in at `block` for `uids` uids.
    Set { block: u64, uids: usize },
    /// We revealed the hash commit of `commit_block` at `block`.
    Revealed {
        block: u64,
        uids: usize,
        commit_block: u64,
    },
    /// The chain revealed our timelocked commit: our last update moved to `block`.
    ChainRevealed {
        block: u64,
        uids: usize,
        commit_block: u64,
        reveal_epoch: u64,
    },
    /// Every score is 0: nothing to set.
    AllZero,
    /// The scores do not make weights (the reason).
    Unweighable(String),
    /// The chain takes our weights again at block `next`.
    RateLimited { next: u64, now: u64 },
    /// A hash commit waiting for its reveal window.
    Committed {
        commit_block: u64,
        first_reveal_block: u64,
        last_reveal_block: u64,
    },
    /// A timelocked commit waiting for the chain to reveal it.
    Timelocked {
        commit_block: u64,
        commit_epoch: u64,
        reveal_round: u64,
        reveal_epoch: u64,
        reveal_block: u64,
    },
    /// The chain deleted our timelocked commit unrevealed (its round came too late).
    Dropped {
        commit_block: u64,
        reveal_epoch: u64,
        reveal_round: u64,
    },
    /// The chain refused (`refusal`: the pallet error's name) or could not be reached.
    Failed {
        refusal: Option<String>,
        message: String,
    },
}

/// Where a [`WeightsStatus`] leaves the weights, for colour and counting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightsState {
    Set,
    Pending,
    Failed,
}

impl WeightsStatus {
    pub fn state(&self) -> WeightsState {
        match self {
            Self::Set { .. } | Self::Revealed { .. } | Self::ChainRevealed { .. } => {
                WeightsState::Set
            }
            Self::Dropped { .. } | Self::Failed { .. } => WeightsState::Failed,
            _ => WeightsState::Pending,
        }
    }

    /// The block the chain took our weights at, when it did.
    pub fn set_at(&self) -> Option<u64> {
        match self {
            Self::Set { block, .. }
            | Self::Revealed { block, .. }
            | Self::ChainRevealed { block, .. } => Some(*block),
            _ => None,
        }
    }

    pub fn failed(e: &nicheimage_bittensor::chain::ChainError) -> Self {
        Self::Failed {
            refusal: e.refusal().map(str::to_string),
            message: e.to_string(),
        }
    }
}

impl std::fmt::Display for WeightsStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Set { block, uids } => write!(f, "set at block {block} for {uids} uids"),
            Self::Revealed {
                block,
                uids,
                commit_block,
            } => write!(
                f,
                "set at block {block} for {uids} uids (revealed the commit of block {commit_block})"
            ),
            Self::ChainRevealed {
                block,
                uids,
                commit_block,
                reveal_epoch,
            } => write!(
                f,
                "set at block {block} for {uids} uids (the chain revealed the timelocked commit of block {commit_block} in epoch {reveal_epoch})"
            ),
            Self::AllZero => f.write_str("nothing to set: every score is 0"),
            Self::Unweighable(why) => write!(f, "nothing to set: {why}"),
            Self::RateLimited { next, now } => write!(f, "waiting for block {next} (now {now})"),
            Self::Committed {
                commit_block,
                first_reveal_block,
                last_reveal_block,
            } => write!(
                f,
                "committed at block {commit_block}, reveal in blocks {first_reveal_block}..={last_reveal_block}"
            ),
            Self::Timelocked {
                commit_block,
                commit_epoch,
                reveal_round,
                reveal_epoch,
                reveal_block,
            } => write!(
                f,
                "committed at block {commit_block} in epoch {commit_epoch} (timelocked to drand round {reveal_round}), the chain reveals it in epoch {reveal_epoch}, at about block {reveal_block}"
            ),
            Self::Dropped {
                commit_block,
                reveal_epoch,
                reveal_round,
            } => write!(
                f,
                "the timelocked commit of block {commit_block} was dropped by the chain: not revealed in its reveal epoch {reveal_epoch} (the chain deletes a commit whose drand round {reveal_round} is not on chain before that epoch ends); committing again next pass"
            ),
            Self::Failed { message, .. } => f.write_str(message),
        }
    }
}

impl Serialize for WeightsStatus {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// What the reward service said of one image: its verdict where it sends one (ours does),
/// else its sentence (a service that sends only NicheImage's `rewards` and `reasons`).
#[derive(Debug, Clone, PartialEq)]
pub enum ServiceVerdict {
    Verdict(crate::reward::judge::Verdict),
    Said(String),
}

impl std::fmt::Display for ServiceVerdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Verdict(v) => v.fmt(f),
            Self::Said(text) => f.write_str(text),
        }
    }
}

/// Why a miner's answer got its reward, as data: views colour and filter by it, the headless
/// JSON carries its sentence.
#[derive(Debug, Clone, PartialEq)]
pub enum RewardReason {
    /// Judged by the reward service, then penalised for taking `secs`.
    Judged {
        verdict: ServiceVerdict,
        secs: f64,
        reward: f64,
    },
    /// No usable answer from the miner's axon.
    Unanswered(Unanswered),
    /// Our reward service could not judge the batch: not the miner's fault, nothing recorded.
    NotJudged(String),
}

/// How a miner's axon failed to answer (its status code as the dendrite reports it).
#[derive(Debug, Clone, PartialEq)]
pub enum Unanswered {
    Timeout { secs: f64 },
    Blacklisted(String),
    Unreachable,
    SignatureRefused(String),
    Status { code: u16, message: String },
}

impl RewardReason {
    /// The outcome without its figures: a metric label and a filter word.
    pub fn kind(&self) -> &'static str {
        use crate::reward::judge::Verdict;
        match self {
            Self::Judged { verdict, .. } => match verdict {
                ServiceVerdict::Verdict(Verdict::Match { .. }) => "match",
                ServiceVerdict::Verdict(Verdict::Mismatch { .. }) => "mismatch",
                ServiceVerdict::Verdict(Verdict::Empty) => "no_image",
                ServiceVerdict::Verdict(Verdict::Undecodable { .. }) => "undecodable",
                ServiceVerdict::Verdict(Verdict::BlankedSafeImage) => "blanked",
                ServiceVerdict::Verdict(Verdict::UnfilteredNsfw) => "unfiltered_nsfw",
                ServiceVerdict::Said(_) => "judged",
            },
            Self::Unanswered(u) => match u {
                Unanswered::Timeout { .. } => "timeout",
                Unanswered::Blacklisted(_) => "blacklisted",
                Unanswered::Unreachable => "unreachable",
                Unanswered::SignatureRefused(_) => "signature_refused",
                Unanswered::Status { .. } => "http_error",
            },
            Self::NotJudged(_) => "not_judged",
        }
    }

    /// The hash distance, when the image was compared.
    pub fn distance(&self) -> Option<usize> {
        use crate::reward::judge::Verdict;
        match self {
            Self::Judged {
                verdict:
                    ServiceVerdict::Verdict(
                        Verdict::Match { distance } | Verdict::Mismatch { distance },
                    ),
                ..
            } => Some(*distance),
            _ => None,
        }
    }
}

impl std::fmt::Display for RewardReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Judged {
                verdict,
                secs,
                reward,
            } => write!(f, "{verdict}; {secs:.2} s → {reward}"),
            Self::Unanswered(u) => u.fmt(f),
            Self::NotJudged(why) => f.write_str(why),
        }
    }
}

impl std::fmt::Display for Unanswered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Timeout { secs } => write!(f, "timeout ({secs:.1} s)"),
            Self::Blacklisted(why) => write!(f, "blacklisted: {why}"),
            Self::Unreachable => f.write_str("unreachable"),
            Self::SignatureRefused(why) => write!(f, "refused our signature: {why}"),
            Self::Status { code, message } => write!(f, "HTTP {code}: {message}"),
        }
    }
}

impl Serialize for RewardReason {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// One miner's reward in a validator pass, and why (`reward` None: not judged, not recorded).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RoundOutcome {
    pub uid: u16,
    pub model: String,
    /// What the miner was asked (txt2img when a conditional image could not be had).
    pub pipeline: crate::catalogue::Pipeline,
    pub reward: Option<f64>,
    pub reason: RewardReason,
    /// How long the miner took to answer (None when not asked, e.g. the judge failed first).
    pub latency_ms: Option<u64>,
}

/// One miner in the validator's book.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct MinerRow {
    pub hotkey: String,
    pub model: String,
    /// The last rewards, oldest first (at most 10).
    pub scores: Vec<f64>,
    pub mean: f64,
}

/// An image with what it was asked for and what became of it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GalleryImage {
    pub unix_ms: u64,
    /// The miner that made it.
    pub uid: u16,
    pub model: String,
    pub prompt: String,
    pub seed: i64,
    pub latency_ms: u64,
    pub reward: f64,
    pub reason: RewardReason,
    #[serde(skip)]
    pub thumbnail: nicheimage_common::image::Thumbnail,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ValidatorReport {
    pub hotkey: String,
    pub step: u64,
    pub last_round: Vec<RoundOutcome>,
    /// Final scores by uid (Σ incentive share × normalised model vector).
    pub scores: BTreeMap<u16, f64>,
    /// The book: who each uid is and its reward window.
    pub miners: BTreeMap<u16, MinerRow>,
    /// The weights the chain last took from us, by uid (u16 as on chain).
    pub weights_set: BTreeMap<u16, u16>,
    /// Each model's timeout, seconds (the latency the penalty is measured against).
    pub timeouts: BTreeMap<String, f64>,
    /// The last weight setting: where and for how many, or the chain's refusal.
    pub weights: Option<WeightsStatus>,
    /// The first block at which the chain takes our weights again.
    pub next_weights_block: Option<u64>,
    /// Our commits waiting for their reveal, with the epochs (and, timelocked, the epoch state
    /// and clock) they were computed from.
    pub commits: Vec<nicheimage_bittensor::chain::commit::KeptCommit>,
    /// What happened to the saved state at start (e.g. a corrupt file moved aside).
    pub state_note: Option<String>,
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ProxyReport {
    pub enabled: bool,
    /// The bound address while the listener runs.
    pub listening: Option<String>,
    /// How requests are authenticated, in words.
    pub auth: String,
    pub warnings: Vec<String>,
    pub in_flight: usize,
    /// Today's UTC date and its counters; all days together.
    pub date: String,
    pub today: crate::proxy::counters::DayCounters,
    pub total: crate::proxy::counters::DayCounters,
    /// The latest requests, newest first.
    pub recent: Vec<ProxyRequest>,
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ProxyRequest {
    pub unix_ms: u64,
    pub model: String,
    pub uid: Option<u16>,
    pub status: u16,
    pub latency_ms: u64,
    pub outcome: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RewardReport {
    pub model_name: String,
    /// Whether callers are limited to validators' axon IPs.
    pub secure: bool,
    /// Allowed IPs at the last refresh (None: not read yet or not secure).
    pub allowed_ips: Option<usize>,
    /// Responses by HTTP status.
    pub responses: BTreeMap<String, u64>,
    /// Judged miner images by outcome ("match", "mismatch", "no image", ...).
    pub verdicts: BTreeMap<String, u64>,
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReplicaReport {
    pub index: usize,
    pub gpus: Vec<usize>,
    pub status: ReplicaStatus,
    pub pid: Option<u32>,
    pub restarts: u32,
    pub served: u64,
    /// Served images the NSFW filter blacked out.
    pub nsfw_blanked: u64,
    /// Failed jobs by reason: `error` (the engine refused) or `died` (the process ended).
    pub failures: BTreeMap<String, u64>,
    pub last_latency_ms: Option<u64>,
    /// Over the last 256 jobs.
    pub latency_ms: Percentiles,
    pub last_error: Option<String>,
    /// The base URL of a replica on another machine; None for a local process.
    pub remote: Option<String>,
    /// Resident memory of a local replica process when last reported.
    pub rss_bytes: Option<u64>,
    /// GPU memory the replica process uses (NVIDIA driver's count), and its `num_gpus` share of
    /// its GPUs' memory; a replica over its share is named in `last_error`.
    pub vram_bytes: Option<u64>,
    pub vram_share_bytes: Option<u64>,
    /// Images per second over the last minute, at the last report.
    pub images_per_sec: f64,
    /// What the replica said it runs once loaded (`sdxl` in `fp16`, `flux` in `bf16`...).
    pub runs: Option<ReplicaRuns>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReplicaRuns {
    pub architecture: String,
    pub dtype: String,
}

impl ReplicaReport {
    /// A replica about to start: nothing served, nothing failed.
    pub fn new(index: usize, gpus: Vec<usize>, remote: Option<String>) -> Self {
        Self {
            index,
            gpus,
            status: ReplicaStatus::Loading,
            pid: None,
            restarts: 0,
            served: 0,
            nsfw_blanked: 0,
            failures: BTreeMap::new(),
            last_latency_ms: None,
            latency_ms: Percentiles::default(),
            last_error: None,
            remote,
            rss_bytes: None,
            vram_bytes: None,
            vram_share_bytes: None,
            images_per_sec: 0.0,
            runs: None,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Percentiles {
    pub p50: Option<u64>,
    pub p95: Option<u64>,
    pub p99: Option<u64>,
}

impl Percentiles {
    /// Nearest-rank percentiles of `samples`.
    pub fn of(samples: &[u64]) -> Self {
        let mut v = samples.to_vec();
        v.sort_unstable();
        let at = |q: f64| {
            (!v.is_empty()).then(|| v[((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1])
        };
        Self {
            p50: at(0.50),
            p95: at(0.95),
            p99: at(0.99),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DownloadReport {
    pub model: String,
    pub url: String,
    pub done_bytes: u64,
    pub total_bytes: Option<u64>,
    pub finished: bool,
    pub error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reward::judge::Verdict;

    #[test]
    fn typed_payloads_say_what_the_strings_said() {
        // The headless JSON and the views read these sentences: the same words as before.
        let cases = [
            (
                WeightsStatus::Set {
                    block: 1234,
                    uids: 3,
                },
                "set at block 1234 for 3 uids",
                WeightsState::Set,
            ),
            (
                WeightsStatus::RateLimited {
                    next: 1300,
                    now: 1290,
                },
                "waiting for block 1300 (now 1290)",
                WeightsState::Pending,
            ),
            (
                WeightsStatus::Committed {
                    commit_block: 10,
                    first_reveal_block: 20,
                    last_reveal_block: 29,
                },
                "committed at block 10, reveal in blocks 20..=29",
                WeightsState::Pending,
            ),
            (
                WeightsStatus::failed(&nicheimage_bittensor::chain::ChainError::refused(
                    "SettingWeightsTooFast",
                    "",
                )),
                "",
                WeightsState::Failed,
            ),
        ];
        for (status, words, state) in cases {
            if !words.is_empty() {
                assert_eq!(status.to_string(), words);
                assert_eq!(serde_json::to_value(&status).unwrap(), words);
            }
            assert_eq!(status.state(), state, "{status}");
        }
        let refused = WeightsStatus::failed(&nicheimage_bittensor::chain::ChainError::refused(
            "SettingWeightsTooFast",
            "",
        ));
        assert!(
            matches!(&refused, WeightsStatus::Failed { refusal: Some(name), .. } if name == "SettingWeightsTooFast")
        );
        assert_eq!(
            WeightsStatus::Revealed {
                block: 50,
                uids: 1,
                commit_block: 40
            }
            .set_at(),
            Some(50)
        );

        let judged = RewardReason::Judged {
            verdict: ServiceVerdict::Verdict(Verdict::Mismatch { distance: 29 }),
            secs: 0.25,
            reward: 0.0,
        };
        assert_eq!(judged.to_string(), "hash distance 29 (over 6); 0.25 s → 0");
        assert_eq!((judged.kind(), judged.distance()), ("mismatch", Some(29)));
        let timeout = RewardReason::Unanswered(Unanswered::Timeout { secs: 12.04 });
        assert_eq!(serde_json::to_value(&timeout).unwrap(), "timeout (12.0 s)");
        assert_eq!((timeout.kind(), timeout.distance()), ("timeout", None));
        let foreign = RewardReason::Judged {
            verdict: ServiceVerdict::Said("hash distance 0 ≤ 6 → 1".into()),
            secs: 1.0,
            reward: 1.0,
        };
        assert_eq!(foreign.kind(), "judged");
    }

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<u64> = (1..=100).collect();
        let p = Percentiles::of(&v);
        assert_eq!((p.p50, p.p95, p.p99), (Some(50), Some(95), Some(99)));
        assert_eq!(Percentiles::of(&[]), Percentiles::default());
        assert_eq!(Percentiles::of(&[7]).p99, Some(7));
    }
}
