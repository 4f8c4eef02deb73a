//! The embedded chain: an in-process model of the subtensor rules our node depends on —
//! registrations, stakes, axons, a block clock, the weights rate limit, version key, permits,
//! today's stateful epochs (dynamic tempo: `epoch::EpochState` stepped every block, tempo changes
//! resetting the cycle, owner-triggered epochs), commit-reveal as today's chain runs it by
//! default (v4: weights timelocked to a beacon round, revealed by the chain in the reveal epoch
//! with the round's pulse, dropped when the pulse is late — `timelocked.rs`) or with salted hash
//! commits, the legacy epoch rule of older runtimes on request, serving rate limit and a weight
//! history. It is not a substrate node.
//! It starts from a human-editable TOML file (see `config/embedded-chain.example.toml`).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::future::BoxFuture;
use serde::Deserialize;

use super::commit::{self, CommitRecord, PendingCommit, WeightsMode};
use super::epoch::{self, EpochState, Rule};
use super::timelock::Beacon;
use super::{AxonInfo, Chain, ChainError, Hyperparams, Metagraph, Neuron, ServeAxon};
use crate::keypair::Keypair;
use crate::ss58;

/// The documented example seed file (also the default when none is configured).
pub const EXAMPLE: &str = include_str!("../../../../../embedded-chain.example.toml");

/// The seed file: a block time and subnets with their neurons.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainFile {
    /// Seconds per block (subtensor: 12; a fast local net: 0.25).
    #[serde(default = "default_block_time")]
    pub block_time_secs: f64,
    #[serde(default)]
    pub start_block: u64,
    /// Seconds the beacon's pulses reach the chain late (0: as soon as drand would publish
    /// them). A delay past an epoch shows timelocked commits dropped, as the chain drops them.
    #[serde(default)]
    pub beacon_delay_secs: f64,
    /// The share of root stake counted in a neuron's total stake (subtensor's `TaoWeight`;
    /// finney: 0.18).
    #[serde(default = "default_tao_weight")]
    pub tao_weight: f64,
    #[serde(default, rename = "subnet")]
    pub subnets: Vec<SubnetFile>,
}

/// How a commit-reveal subnet takes weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CommitRevealMode {
    /// Commit-reveal v4, today's default: encrypted to a beacon round, revealed by the chain.
    #[default]
    Timelocked,
    /// Salted hash commits, revealed by the validator (commit-reveal v2).
    Hash,
}

fn default_block_time() -> f64 {
    12.0
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubnetFile {
    pub netuid: u16,
    #[serde(default = "default_tempo")]
    pub tempo: u16,
    #[serde(default = "default_rate_limit")]
    pub weights_rate_limit: u64,
    #[serde(default)]
    pub weights_version_key: u64,
    /// Commit-reveal on (today's default) or off (plain `set_weights`).
    #[serde(default = "default_true")]
    pub commit_reveal: bool,
    #[serde(default)]
    pub commit_reveal_mode: CommitRevealMode,
    /// `stateful` (dynamic tempo, today's chain) or `legacy` (runtimes before mid 2026).
    #[serde(default = "default_rule")]
    pub epoch_rule: Rule,
    /// Epochs between a commit and its reveal.
    #[serde(default = "default_reveal_period")]
    pub reveal_period_epochs: u64,
    #[serde(default = "default_serving_rate_limit")]
    pub serving_rate_limit: u64,
    /// Blocks a new registration is protected from deregistration (subtensor: 4096).
    #[serde(default = "default_immunity_period")]
    pub immunity_period: u64,
    /// Tokens burned to register.
    #[serde(default = "default_registration_cost")]
    pub registration_cost: f64,
    /// Tokens of stake a hotkey needs to set weights.
    #[serde(default)]
    pub min_stake_to_set_weights: f64,
    #[serde(default, rename = "neuron")]
    pub neurons: Vec<NeuronFile>,
}

fn default_tao_weight() -> f64 {
    0.18
}
/// Tokens to rao (negative: 0).
fn rao(tokens: f64) -> u64 {
    (tokens.max(0.0) * 1e9) as u64
}
fn default_true() -> bool {
    true
}
fn default_rule() -> Rule {
    Rule::Stateful
}
fn default_tempo() -> u16 {
    360
}
fn default_rate_limit() -> u64 {
    100
}
fn default_immunity_period() -> u64 {
    4096
}
fn default_registration_cost() -> f64 {
    1.0
}
fn default_reveal_period() -> u64 {
    1
}
fn default_serving_rate_limit() -> u64 {
    50
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NeuronFile {
    pub hotkey: String,
    #[serde(default)]
    pub coldkey: Option<String>,
    /// Alpha tokens on this subnet.
    #[serde(default)]
    pub stake: f64,
    /// Root (TAO) tokens; count `tao_weight` of them towards the total.
    #[serde(default)]
    pub root_stake: f64,
    #[serde(default)]
    pub validator_permit: bool,
    /// `ip:port` if the axon is already served.
    #[serde(default)]
    pub axon: Option<String>,
}

/// One weights extrinsic the chain accepted.
#[derive(Debug, Clone, PartialEq)]
pub struct WeightRecord {
    pub block: u64,
    pub netuid: u16,
    pub uid: u16,
    pub uids: Vec<u16>,
    pub weights: Vec<u16>,
}

struct Subnet {
    params: SubnetFile,
    neurons: Vec<Neuron>,
    /// Latest weights per validator uid.
    weights: BTreeMap<u16, Vec<(u16, u16)>>,
    /// The block each uid registered at (the seed file's neurons: at the start block).
    registered_at: BTreeMap<u16, u64>,
    /// Unrevealed hash commits per hotkey.
    commits: BTreeMap<String, Vec<CommitRecord>>,
    /// The epoch state after the last block whose hooks ran.
    epoch: EpochState,
    /// Timelocked commits by the look-ahead epoch they were made in.
    timelocked: BTreeMap<u64, Vec<timelocked::Sealed>>,
}

/// At most this many unrevealed commits per hotkey, as subtensor.
const MAX_UNREVEALED: usize = 10;
/// Blocks between an owner's `trigger_epoch` and its epoch (subtensor's `AdminFreezeWindow`).
pub const ADMIN_FREEZE_WINDOW: u64 = 10;

mod timelocked;
pub use timelocked::Dropped;

impl EmbeddedChain {
    /// `f` of a subnet, or the chain's refusal when there is no such subnet.
    fn with_subnet<T>(&self, netuid: u16, f: impl FnOnce(&Subnet) -> T) -> Result<T, ChainError> {
        let state = self.lock();
        let subnet = state
            .subnets
            .get(&netuid)
            .ok_or_else(|| no_subnet(netuid))?;
        Ok(f(subnet))
    }
}

fn no_subnet(netuid: u16) -> ChainError {
    ChainError::refused("MechanismDoesNotExist", format!("no subnet {netuid}"))
}

fn subnet_mut(state: &mut State, netuid: u16) -> Result<&mut Subnet, ChainError> {
    state
        .subnets
        .get_mut(&netuid)
        .ok_or_else(|| no_subnet(netuid))
}

struct State {
    subnets: BTreeMap<u16, Subnet>,
    history: Vec<WeightRecord>,
    /// Blocks added by `advance` (tests, demos) on top of the clock.
    skipped: u64,
    /// The last block whose hooks (timelocked reveals, epochs) ran.
    processed: u64,
    /// Timelocked commits the chain deleted unrevealed, newest last (bounded).
    dropped: std::collections::VecDeque<timelocked::Dropped>,
}

pub struct EmbeddedChain {
    started: Instant,
    block_time: Duration,
    start_block: u64,
    beacon: Beacon,
    beacon_delay_secs: f64,
    state: Mutex<State>,
}

#[derive(Debug, thiserror::Error)]
pub enum ChainFileError {
    #[error("reading {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Invalid { path: String, source: InvalidChain },
}

/// What is wrong with a chain file's contents.
#[derive(Debug, thiserror::Error)]
pub enum InvalidChain {
    #[error(transparent)]
    Toml(#[from] toml::de::Error),
    /// A value the chain's rules do not allow, in words.
    #[error("{0}")]
    Rule(String),
}

impl EmbeddedChain {
    pub fn load(path: &Path) -> Result<Self, ChainFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| ChainFileError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_toml(&text).map_err(|source| ChainFileError::Invalid {
            path: path.display().to_string(),
            source,
        })
    }

    pub fn from_toml(text: &str) -> Result<Self, InvalidChain> {
        let file: ChainFile = toml::from_str(text)?;
        Self::new(file)
    }

    pub fn new(file: ChainFile) -> Result<Self, InvalidChain> {
        // Every block's hooks run, so the clock may not outrun them.
        if file.block_time_secs.is_nan() || file.block_time_secs < 0.01 {
            return Err(InvalidChain::Rule(
                "block_time_secs must be at least 0.01".into(),
            ));
        }
        if !(0.0..=1.0).contains(&file.tao_weight) {
            return Err(InvalidChain::Rule(
                "tao_weight must be between 0 and 1".into(),
            ));
        }
        if !(0.0..=86_400.0).contains(&file.beacon_delay_secs) {
            return Err(InvalidChain::Rule(
                "beacon_delay_secs must be between 0 and 86400".into(),
            ));
        }
        let mut subnets = BTreeMap::new();
        for subnet in file.subnets {
            let mut neurons = Vec::new();
            for (uid, n) in subnet.neurons.iter().enumerate() {
                ss58::decode(&n.hotkey).map_err(|e| {
                    InvalidChain::Rule(format!("subnet {} hotkey {}: {e}", subnet.netuid, n.hotkey))
                })?;
                let mut axon = AxonInfo::default();
                if let Some(address) = &n.axon {
                    let addr: std::net::SocketAddr = address.parse().map_err(|e| {
                        InvalidChain::Rule(format!(
                            "subnet {} axon {address:?}: {e} (want ip:port)",
                            subnet.netuid
                        ))
                    })?;
                    let (ip, ip_type) = AxonInfo::encode_ip(addr.ip());
                    axon = AxonInfo {
                        block: file.start_block,
                        version: 0,
                        ip,
                        port: addr.port(),
                        ip_type,
                        protocol: 4,
                    };
                }
                neurons.push(Neuron {
                    uid: uid as u16,
                    hotkey: n.hotkey.clone(),
                    coldkey: n.coldkey.clone().unwrap_or_else(|| n.hotkey.clone()),
                    active: true,
                    axon,
                    stake_rao: rao(n.stake),
                    root_stake_rao: rao(n.root_stake),
                    total_stake_rao: rao(n.stake)
                        .saturating_add(rao(n.root_stake * file.tao_weight)),
                    validator_permit: n.validator_permit,
                    last_update: file.start_block,
                    ..Default::default()
                });
            }
            if subnets.contains_key(&subnet.netuid) {
                return Err(InvalidChain::Rule(format!(
                    "subnet {} is listed twice",
                    subnet.netuid
                )));
            }
            if subnet.reveal_period_epochs == 0
                || subnet.reveal_period_epochs > epoch::MAX_REVEAL_PERIOD
            {
                return Err(InvalidChain::Rule(format!(
                    "subnet {}: reveal_period_epochs must be 1..={}",
                    subnet.netuid,
                    epoch::MAX_REVEAL_PERIOD
                )));
            }
            let legacy = EpochState::legacy(
                file.start_block,
                subnet.netuid,
                subnet.tempo,
                subnet.reveal_period_epochs,
                file.block_time_secs,
            );
            // A stateful subnet starts where the migration to dynamic tempo seeded it: its
            // last epoch where the legacy rule last fired, the index the legacy rule gives.
            let epoch = EpochState {
                rule: subnet.epoch_rule,
                ..legacy
            };
            subnets.insert(
                subnet.netuid,
                Subnet {
                    params: subnet.clone(),
                    neurons,
                    weights: BTreeMap::new(),
                    commits: BTreeMap::new(),
                    registered_at: BTreeMap::new(),
                    epoch,
                    timelocked: BTreeMap::new(),
                },
            );
        }
        Ok(Self {
            started: Instant::now(),
            block_time: Duration::from_secs_f64(file.block_time_secs),
            start_block: file.start_block,
            // The devnet's own beacon: pulses are real BLS signatures of quicknet-numbered
            // rounds, so commits are opened by the real tle decryption.
            beacon: Beacon::from_seed(b"embedded chain"),
            beacon_delay_secs: file.beacon_delay_secs,
            state: Mutex::new(State {
                subnets,
                history: Vec::new(),
                skipped: 0,
                processed: file.start_block,
                dropped: Default::default(),
            }),
        })
    }

    /// The state with every block up to the clock's processed (reveals, then epochs).
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let now = self.current_block(&state);
        timelocked::run_blocks(self, &mut state, now);
        state
    }

    /// The newest round whose pulse is on chain now.
    fn last_stored_round(&self) -> u64 {
        epoch::round_due(commit::unix_now() - self.beacon_delay_secs)
    }

    /// The newest round whose pulse was on chain at block `b`: its round at the block's wall
    /// time, which is never later than now. Blocks skipped by `advance` come faster than the
    /// beacon's rounds, as on a chain whose pulses are late.
    fn stored_round_at(&self, state: &State, b: u64) -> u64 {
        let now = commit::unix_now();
        let since_start = b
            .saturating_sub(self.start_block)
            .saturating_sub(state.skipped) as f64
            * self.block_time.as_secs_f64();
        let at = (now - self.started.elapsed().as_secs_f64() + since_start).min(now);
        epoch::round_due(at - self.beacon_delay_secs)
    }

    /// Timelocked commits deleted unrevealed, with the reason, oldest first.
    pub fn dropped_commits(&self) -> Vec<timelocked::Dropped> {
        self.lock().dropped.iter().cloned().collect()
    }

    /// An owner's `sudo_set_tempo`: the new tempo counts from this block (the cycle resets).
    pub fn set_tempo(&self, netuid: u16, tempo: u16) -> Result<(), ChainError> {
        let mut state = self.lock();
        let subnet = subnet_mut(&mut state, netuid)?;
        subnet.params.tempo = tempo;
        subnet.epoch.tempo = tempo;
        if subnet.epoch.rule == Rule::Stateful {
            subnet.epoch.last_epoch_block = subnet.epoch.block;
        }
        Ok(())
    }

    /// The owner's `trigger_epoch`: an epoch fires `ADMIN_FREEZE_WINDOW` blocks from now,
    /// refused as subtensor refuses it (commit-reveal on, one already pending, or the automatic
    /// epoch about to fire anyway).
    pub fn trigger_epoch(&self, netuid: u16) -> Result<u64, ChainError> {
        let mut state = self.lock();
        let subnet = subnet_mut(&mut state, netuid)?;
        let e = &mut subnet.epoch;
        if e.rule != Rule::Stateful {
            return Err(ChainError::Unsupported(
                "owner-triggered epochs need the stateful epoch rule".into(),
            ));
        }
        if subnet.params.commit_reveal {
            return Err(ChainError::refused(
                "DynamicTempoBlockedByCommitReveal",
                format!("subnet {netuid}"),
            ));
        }
        if e.pending_epoch_at > 0 {
            return Err(ChainError::refused(
                "EpochTriggerAlreadyPending",
                format!("at block {}", e.pending_epoch_at),
            ));
        }
        let auto = e
            .last_epoch_block
            .saturating_add(u64::from(e.tempo))
            .saturating_sub(e.block);
        if auto < ADMIN_FREEZE_WINDOW {
            return Err(ChainError::refused(
                "AutoEpochAlreadyImminent",
                format!("{auto} blocks to the next epoch"),
            ));
        }
        e.pending_epoch_at = e.block.saturating_add(ADMIN_FREEZE_WINDOW);
        Ok(e.pending_epoch_at)
    }

    fn current_block(&self, state: &State) -> u64 {
        let ticks = self.started.elapsed().as_secs_f64() / self.block_time.as_secs_f64();
        self.start_block + ticks as u64 + state.skipped
    }

    /// Changes a subnet's hyperparameters (as the owner's or sudo's admin calls do).
    pub fn configure(
        &self,
        netuid: u16,
        change: impl FnOnce(&mut SubnetFile),
    ) -> Result<(), ChainError> {
        let mut state = self.lock();
        let subnet = subnet_mut(&mut state, netuid)?;
        let tempo = subnet.params.tempo;
        change(&mut subnet.params);
        let p = &subnet.params;
        if p.reveal_period_epochs == 0 || p.reveal_period_epochs > epoch::MAX_REVEAL_PERIOD {
            return Err(ChainError::Unsupported(format!(
                "reveal_period_epochs must be 1..={}",
                epoch::MAX_REVEAL_PERIOD
            )));
        }
        let e = &mut subnet.epoch;
        e.reveal_period_epochs = p.reveal_period_epochs;
        if p.tempo != tempo {
            // As `sudo_set_tempo`: the new tempo counts from this block.
            e.tempo = p.tempo;
            if e.rule == Rule::Stateful {
                e.last_epoch_block = e.block;
            }
        }
        Ok(())
    }

    /// Moves the clock on by `blocks` (tests and demos).
    pub fn advance(&self, blocks: u64) {
        self.lock().skipped += blocks;
    }

    /// Registers a hotkey (a new uid at the end) with `stake` tokens; returns its uid.
    pub fn register(
        &self,
        netuid: u16,
        hotkey: &str,
        stake: f64,
        validator_permit: bool,
    ) -> Result<u16, ChainError> {
        ss58::decode(hotkey)
            .map_err(|e| ChainError::Unsupported(format!("hotkey {hotkey}: {e}")))?;
        let mut state = self.lock();
        let block = state.processed;
        let subnet = subnet_mut(&mut state, netuid)?;
        if subnet.neurons.iter().any(|n| n.hotkey == hotkey) {
            return Err(ChainError::refused(
                "HotKeyAlreadyRegisteredInSubNet",
                hotkey,
            ));
        }
        let uid = subnet.neurons.len() as u16;
        subnet.registered_at.insert(uid, block);
        subnet.neurons.push(Neuron {
            uid,
            hotkey: hotkey.into(),
            coldkey: hotkey.into(),
            active: true,
            stake_rao: rao(stake),
            total_stake_rao: rao(stake),
            validator_permit,
            last_update: block,
            ..Default::default()
        });
        Ok(uid)
    }

    /// Every weights extrinsic accepted so far, oldest first.
    pub fn weight_history(&self) -> Vec<WeightRecord> {
        self.lock().history.clone()
    }

    fn neuron_uid(subnet: &Subnet, hotkey: &str) -> Result<u16, ChainError> {
        subnet
            .neurons
            .iter()
            .find(|n| n.hotkey == hotkey)
            .map(|n| n.uid)
            .ok_or_else(|| ChainError::refused("HotKeyNotRegisteredInSubNet", hotkey))
    }

    fn apply_weights(
        &self,
        hotkey: &str,
        netuid: u16,
        uids: Vec<u16>,
        weights: Vec<u16>,
        version_key: u64,
    ) -> Result<(), ChainError> {
        let mut state = self.lock();
        Self::set_weights_in(
            state.processed,
            &mut state,
            hotkey,
            netuid,
            uids,
            weights,
            version_key,
            false,
        )
    }

    /// A hash commit: refused where commit-reveal is off, or past the unrevealed limit.
    fn apply_commit(
        &self,
        signer: &Keypair,
        netuid: u16,
        uids: Vec<u16>,
        weights: Vec<u16>,
        version_key: u64,
    ) -> Result<PendingCommit, ChainError> {
        let hotkey = signer.ss58();
        let salt = commit::new_salt()?;
        let hash = commit::commit_hash(
            &signer.public_bytes(),
            netuid,
            &uids,
            &weights,
            &salt,
            version_key,
        );
        let mut state = self.lock();
        let block = state.processed;
        let subnet = subnet_mut(&mut state, netuid)?;
        Self::neuron_uid(subnet, hotkey)?;
        let p = &subnet.params;
        if !p.commit_reveal || p.commit_reveal_mode != CommitRevealMode::Hash {
            return Err(ChainError::refused(
                "CommitRevealDisabled",
                format!("subnet {netuid} does not take hash commits"),
            ));
        }
        let (commit_epoch, reveal_epoch, first, last) = match subnet.epoch.rule {
            Rule::Legacy => {
                let tempo = u64::from(p.tempo);
                let reveal_epoch = epoch::legacy_index(block, netuid, tempo)
                    .saturating_add(p.reveal_period_epochs);
                let first = epoch::legacy_first_block(reveal_epoch, netuid, tempo);
                (None, None, first, first.saturating_add(tempo))
            }
            Rule::Stateful => {
                // The extrinsic counts in the block after the head, by its look-ahead epoch.
                let e = &subnet.epoch;
                let commit_epoch = e.epoch_before_coinbase(block.saturating_add(1));
                let reveal_epoch = commit_epoch.saturating_add(e.reveal_period_epochs);
                let (first, last) = e
                    .reveal_window(reveal_epoch)
                    .map_err(|err| ChainError::Unsupported(err.to_string()))?;
                (Some(commit_epoch), Some(reveal_epoch), first, last)
            }
        };
        let lands = subnet.epoch.epoch_before_coinbase(block.saturating_add(1));
        let period = subnet.params.reveal_period_epochs;
        let mine = subnet.commits.entry(hotkey.to_string()).or_default();
        // Expired commits no longer count against the limit.
        mine.retain(|c| match c.commit_epoch {
            Some(at) => at.saturating_add(period) >= lands,
            None => c.last_reveal_block >= block,
        });
        if mine.len() >= MAX_UNREVEALED {
            return Err(ChainError::refused("TooManyUnrevealedCommits", hotkey));
        }
        mine.push(CommitRecord {
            hash,
            commit_block: block,
            first_reveal_block: first,
            last_reveal_block: last,
            commit_epoch,
        });
        Ok(PendingCommit {
            netuid,
            hash: hex::encode(hash),
            uids,
            weights,
            salt,
            version_key,
            commit_block: block,
            first_reveal_block: first,
            last_reveal_block: last,
            commit_epoch,
            reveal_epoch,
        })
    }

    /// A reveal: the commit must match and be inside its window; then the weights are set by
    /// the usual rules.
    fn apply_reveal(&self, signer: &Keypair, c: &PendingCommit) -> Result<(), ChainError> {
        let hotkey = signer.ss58();
        let hash = commit::commit_hash(
            &signer.public_bytes(),
            c.netuid,
            &c.uids,
            &c.weights,
            &c.salt,
            c.version_key,
        );
        let mut state = self.lock();
        let block = state.processed;
        let subnet = subnet_mut(&mut state, c.netuid)?;
        let mine = subnet.commits.entry(hotkey.to_string()).or_default();
        if mine.is_empty() {
            return Err(ChainError::refused("NoWeightsCommitFound", hotkey));
        }
        let Some(at) = mine.iter().position(|m| m.hash == hash) else {
            return Err(ChainError::refused(
                "InvalidRevealCommitHashNotMatch",
                hotkey,
            ));
        };
        let CommitRecord {
            first_reveal_block: first,
            last_reveal_block: last,
            commit_epoch,
            ..
        } = mine[at];
        let (early, late) = match commit_epoch {
            // Dynamic tempo: judged by the look-ahead epoch of the block the reveal lands in.
            Some(at_epoch) => {
                let lands = subnet.epoch.epoch_before_coinbase(block.saturating_add(1));
                let due = at_epoch.saturating_add(subnet.params.reveal_period_epochs);
                (lands < due, lands > due)
            }
            None => (block < first, block > last),
        };
        if early {
            return Err(ChainError::refused(
                "RevealTooEarly",
                format!("opens at about block {first}"),
            ));
        }
        if late {
            mine.remove(at);
            return Err(ChainError::refused(
                "ExpiredWeightCommit",
                format!("closed at about block {last}"),
            ));
        }
        mine.remove(at);
        Self::set_weights_in(
            block,
            &mut state,
            hotkey,
            c.netuid,
            c.uids.clone(),
            c.weights.clone(),
            c.version_key,
            true,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn set_weights_in(
        block: u64,
        state: &mut State,
        hotkey: &str,
        netuid: u16,
        uids: Vec<u16>,
        weights: Vec<u16>,
        version_key: u64,
        revealed: bool,
    ) -> Result<(), ChainError> {
        let subnet = subnet_mut(state, netuid)?;
        let uid = Self::neuron_uid(subnet, hotkey)?;
        let p = &subnet.params;
        if p.commit_reveal && !revealed {
            return Err(ChainError::refused(
                "CommitRevealEnabled",
                format!("subnet {netuid}"),
            ));
        }
        if version_key < p.weights_version_key {
            return Err(ChainError::refused(
                "IncorrectWeightVersionKey",
                format!(
                    "sent {version_key}, subnet requires ≥ {}",
                    p.weights_version_key
                ),
            ));
        }
        let me = &subnet.neurons[uid as usize];
        let since = block.saturating_sub(me.last_update);
        if since < p.weights_rate_limit {
            return Err(ChainError::refused(
                "SettingWeightsTooFast",
                format!(
                    "{since} of {} blocks since the last update",
                    p.weights_rate_limit
                ),
            ));
        }
        let self_only = uids.len() == 1 && uids[0] == uid;
        if !me.validator_permit && !self_only {
            return Err(ChainError::refused("NeuronNoValidatorPermit", hotkey));
        }
        if me.total_stake_tokens() < p.min_stake_to_set_weights {
            return Err(ChainError::refused(
                "NotEnoughStakeToSetWeights",
                format!(
                    "{} < {}",
                    me.total_stake_tokens(),
                    p.min_stake_to_set_weights
                ),
            ));
        }
        if uids.len() != weights.len() {
            return Err(ChainError::refused(
                "WeightVecNotEqualSize",
                format!("{} uids, {} weights", uids.len(), weights.len()),
            ));
        }
        let mut seen = std::collections::HashSet::new();
        if !uids.iter().all(|u| seen.insert(*u)) {
            return Err(ChainError::refused("DuplicateUids", ""));
        }
        if let Some(bad) = uids
            .iter()
            .find(|u| usize::from(**u) >= subnet.neurons.len())
        {
            return Err(ChainError::refused(
                "UidVecContainInvalidOne",
                format!("uid {bad}"),
            ));
        }
        // The chain stores max-upscaled values, as subtensor's `max_upscale_to_u16` does.
        let max = weights.iter().copied().max().unwrap_or(0).max(1);
        let stored: Vec<u16> = weights
            .iter()
            .map(|w| ((u64::from(*w) * 65535 + u64::from(max) / 2) / u64::from(max)) as u16)
            .collect();
        subnet.weights.insert(
            uid,
            uids.iter().copied().zip(stored.iter().copied()).collect(),
        );
        subnet.neurons[uid as usize].last_update = block;
        state.history.push(WeightRecord {
            block,
            netuid,
            uid,
            uids,
            weights: stored,
        });
        Ok(())
    }

    fn apply_serve(&self, hotkey: &str, axon: ServeAxon) -> Result<(), ChainError> {
        let mut state = self.lock();
        let block = state.processed;
        let subnet = subnet_mut(&mut state, axon.netuid)?;
        let uid = Self::neuron_uid(subnet, hotkey)?;
        if axon.port == 0 {
            return Err(ChainError::refused("InvalidPort", "port 0"));
        }
        let (ip, ip_type) = AxonInfo::encode_ip(axon.ip);
        let limit = subnet.params.serving_rate_limit;
        let current = &mut subnet.neurons[uid as usize].axon;
        if current.ip == ip
            && current.port == axon.port
            && current.version == axon.version
            && current.protocol == axon.protocol
        {
            return Ok(());
        }
        if current.is_served() && block.saturating_sub(current.block) < limit {
            return Err(ChainError::refused(
                "ServingRateLimitExceeded",
                format!("{} of {limit} blocks", block - current.block),
            ));
        }
        *current = AxonInfo {
            block,
            version: axon.version,
            ip,
            port: axon.port,
            ip_type,
            protocol: axon.protocol,
        };
        Ok(())
    }

    /// Incentive, dividends and emission from the latest weights: each validator's stake-weighted
    /// vote (a simplified Yuma without clipping, enough for a local demo's reward view).
    fn scores(subnet: &Subnet) -> Vec<(f64, f64)> {
        let n = subnet.neurons.len();
        let mut incentive = vec![0.0; n];
        let mut dividends = vec![0.0; n];
        let total_stake: f64 = subnet
            .weights
            .keys()
            .map(|v| subnet.neurons[*v as usize].stake_tokens())
            .sum();
        if total_stake > 0.0 {
            for (validator, row) in &subnet.weights {
                let stake = subnet.neurons[*validator as usize].stake_tokens() / total_stake;
                let sum: f64 = row.iter().map(|(_, w)| f64::from(*w)).sum();
                if sum == 0.0 {
                    continue;
                }
                for (uid, w) in row {
                    if let Some(slot) = incentive.get_mut(*uid as usize) {
                        *slot += stake * f64::from(*w) / sum;
                    }
                }
                dividends[*validator as usize] = stake;
            }
        }
        incentive.into_iter().zip(dividends).collect()
    }
}

impl Chain for EmbeddedChain {
    fn describe(&self) -> String {
        format!(
            "embedded chain ({:.2} s blocks)",
            self.block_time.as_secs_f64()
        )
    }

    fn block(&self) -> BoxFuture<'_, Result<u64, ChainError>> {
        let block = self.lock().processed;
        async move { Ok(block) }.boxed()
    }

    fn metagraph(&self, netuid: u16) -> BoxFuture<'_, Result<Metagraph, ChainError>> {
        let state = self.lock();
        let block = state.processed;
        let result = match state.subnets.get(&netuid) {
            None => Ok(Metagraph {
                netuid,
                block,
                neurons: Vec::new(),
            }),
            Some(subnet) => {
                let scores = Self::scores(subnet);
                // Half of each block's emission (1 token) goes to miners, half to validators.
                let per_tempo = 1e9 * f64::from(subnet.params.tempo);
                let neurons = subnet
                    .neurons
                    .iter()
                    .zip(scores)
                    .map(|(n, (incentive, dividends))| Neuron {
                        incentive,
                        dividends,
                        consensus: incentive,
                        trust: if incentive > 0.0 { 1.0 } else { 0.0 },
                        validator_trust: if dividends > 0.0 { 1.0 } else { 0.0 },
                        emission_rao: ((incentive + dividends) * per_tempo / 2.0) as u64,
                        ..n.clone()
                    })
                    .collect();
                Ok(Metagraph {
                    netuid,
                    block,
                    neurons,
                })
            }
        };
        async move { result }.boxed()
    }

    fn hyperparams(&self, netuid: u16) -> BoxFuture<'_, Result<Hyperparams, ChainError>> {
        let result = self.with_subnet(netuid, |s| Hyperparams {
            tempo: s.params.tempo,
            weights_rate_limit: s.params.weights_rate_limit,
            weights_version_key: s.params.weights_version_key,
            commit_reveal_enabled: s.params.commit_reveal,
            immunity_period: s.params.immunity_period,
            registration_cost_rao: (s.params.registration_cost.max(0.0) * 1e9) as u64,
        });
        async move { result }.boxed()
    }

    fn serve_axon<'a>(
        &'a self,
        signer: &'a Keypair,
        axon: ServeAxon,
    ) -> BoxFuture<'a, Result<(), ChainError>> {
        let result = self.apply_serve(signer.ss58(), axon);
        async move { result }.boxed()
    }

    fn set_weights<'a>(
        &'a self,
        signer: &'a Keypair,
        netuid: u16,
        uids: Vec<u16>,
        weights: Vec<u16>,
        version_key: u64,
    ) -> BoxFuture<'a, Result<(), ChainError>> {
        let result = self.apply_weights(signer.ss58(), netuid, uids, weights, version_key);
        async move { result }.boxed()
    }

    fn registration_blocks(
        &self,
        netuid: u16,
        uids: Vec<u16>,
    ) -> BoxFuture<'_, Result<BTreeMap<u16, u64>, ChainError>> {
        let start = self.start_block;
        let result = self.with_subnet(netuid, |s| {
            uids.iter()
                .map(|uid| (*uid, s.registered_at.get(uid).copied().unwrap_or(start)))
                .collect()
        });
        async move { result }.boxed()
    }

    fn weights_mode(&self, netuid: u16) -> BoxFuture<'_, Result<WeightsMode, ChainError>> {
        let result = self.with_subnet(netuid, |s| {
            match (s.params.commit_reveal, s.params.commit_reveal_mode) {
                (true, CommitRevealMode::Hash) => WeightsMode::HashCommit,
                (true, CommitRevealMode::Timelocked) => WeightsMode::Timelocked {
                    call: "commit_timelocked_mechanism_weights",
                },
                (false, _) => WeightsMode::Plain {
                    call: "set_weights",
                },
            }
        });
        async move { result }.boxed()
    }

    fn commit_weights<'a>(
        &'a self,
        signer: &'a Keypair,
        netuid: u16,
        uids: Vec<u16>,
        weights: Vec<u16>,
        version_key: u64,
    ) -> BoxFuture<'a, Result<PendingCommit, ChainError>> {
        let result = self.apply_commit(signer, netuid, uids, weights, version_key);
        async move { result }.boxed()
    }

    fn reveal_weights<'a>(
        &'a self,
        signer: &'a Keypair,
        commit: &'a PendingCommit,
    ) -> BoxFuture<'a, Result<(), ChainError>> {
        let result = self.apply_reveal(signer, commit);
        async move { result }.boxed()
    }

    fn commit_timelocked<'a>(
        &'a self,
        signer: &'a Keypair,
        netuid: u16,
        uids: Vec<u16>,
        weights: Vec<u16>,
        version_key: u64,
    ) -> BoxFuture<'a, Result<commit::TimelockedCommit, ChainError>> {
        let result = self.apply_timelocked(signer, netuid, uids, weights, version_key);
        async move { result }.boxed()
    }

    fn epoch(&self, netuid: u16) -> BoxFuture<'_, Result<EpochState, ChainError>> {
        let result = self.with_subnet(netuid, |s| s.epoch.clone());
        async move { result }.boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> Keypair {
        Keypair::from_mini_secret(&[n; 32]).unwrap()
    }

    fn chain(extra: &str) -> (EmbeddedChain, Keypair, Keypair) {
        let extra = match extra.contains("commit_reveal =") {
            true => extra.to_string(),
            false => format!("commit_reveal = false\n{extra}"),
        };
        let (validator, miner) = (key(1), key(2));
        let text = format!(
            "block_time_secs = 3600\nstart_block = 1000\n[[subnet]]\nnetuid = 23\nweights_rate_limit = 100\nweights_version_key = 10\n{extra}\n\
             [[subnet.neuron]]\nhotkey = \"{}\"\nstake = 20000\nvalidator_permit = true\n\
             [[subnet.neuron]]\nhotkey = \"{}\"\naxon = \"127.0.0.1:8091\"\n",
            validator.ss58(),
            miner.ss58()
        );
        (EmbeddedChain::from_toml(&text).unwrap(), validator, miner)
    }

    fn refusal(r: Result<(), ChainError>) -> String {
        r.unwrap_err()
            .refusal()
            .unwrap_or("not a refusal")
            .to_string()
    }

    #[tokio::test]
    async fn weights_follow_rate_limit_version_key_and_permits() {
        let (chain, validator, miner) = chain("");
        assert_eq!(
            refusal(
                chain
                    .set_weights(&validator, 23, vec![1], vec![65535], 10)
                    .await
            ),
            "SettingWeightsTooFast"
        );
        chain.advance(100);
        assert_eq!(
            refusal(
                chain
                    .set_weights(&validator, 23, vec![1], vec![65535], 9)
                    .await
            ),
            "IncorrectWeightVersionKey"
        );
        assert_eq!(
            refusal(
                chain
                    .set_weights(&validator, 23, vec![1, 1], vec![1, 2], 10)
                    .await
            ),
            "DuplicateUids"
        );
        assert_eq!(
            refusal(
                chain
                    .set_weights(&validator, 23, vec![7], vec![1], 10)
                    .await
            ),
            "UidVecContainInvalidOne"
        );
        chain
            .set_weights(&validator, 23, vec![1], vec![300], 10)
            .await
            .unwrap();
        let history = chain.weight_history();
        assert_eq!(history.len(), 1);
        assert_eq!(history[0].weights, vec![65535], "stored max-upscaled");
        assert_eq!(
            refusal(
                chain
                    .set_weights(&validator, 23, vec![1], vec![1], 10)
                    .await
            ),
            "SettingWeightsTooFast"
        );
        chain.advance(100);
        assert_eq!(
            refusal(chain.set_weights(&miner, 23, vec![0], vec![1], 10).await),
            "NeuronNoValidatorPermit"
        );
        chain
            .set_weights(&miner, 23, vec![1], vec![1], 10)
            .await
            .unwrap();
        let stranger = key(9);
        assert_eq!(
            refusal(chain.set_weights(&stranger, 23, vec![1], vec![1], 10).await),
            "HotKeyNotRegisteredInSubNet"
        );
        let graph = chain.metagraph(23).await.unwrap();
        assert!(graph.neurons[1].incentive > 0.99, "{:?}", graph.neurons[1]);
        assert!(graph.neurons[0].dividends > 0.0);
        assert_eq!(graph.block, 1200);
    }

    #[tokio::test]
    async fn the_documented_example_loads() {
        let chain = EmbeddedChain::from_toml(EXAMPLE).unwrap();
        let graph = chain.metagraph(23).await.unwrap();
        assert_eq!(graph.neurons.len(), 2);
        assert!(graph.neurons[0].validator_permit);
        assert_eq!(graph.neurons[1].axon.port, 8091);
        assert_eq!(chain.hyperparams(23).await.unwrap().weights_version_key, 10);
    }

    #[tokio::test]
    async fn commit_reveal_subnets_refuse_plain_weights() {
        let (chain, validator, _) = chain("commit_reveal = true");
        chain.advance(1000);
        let err = chain
            .set_weights(&validator, 23, vec![1], vec![1], 10)
            .await
            .unwrap_err();
        assert_eq!(err.refusal(), Some("CommitRevealEnabled"));
        assert!(chain.hyperparams(23).await.unwrap().commit_reveal_enabled);
    }

    #[tokio::test]
    async fn hash_commits_are_revealed_in_their_epoch_as_subtensor_does() {
        // Tempo 4 on netuid 23: epochs are 5 blocks, epoch(b) = (b + 24) / 5.
        let (plain, _, _) = chain("");
        let (chain, validator, _) = chain(
            "commit_reveal = true\ncommit_reveal_mode = \"hash\"\nepoch_rule = \"legacy\"\ntempo = 4",
        );
        chain.advance(1000);
        assert_eq!(
            chain.weights_mode(23).await.unwrap(),
            WeightsMode::HashCommit
        );
        let block = chain.block().await.unwrap();
        let c = chain
            .commit_weights(&validator, 23, vec![1], vec![65535], 10)
            .await
            .unwrap();
        assert_eq!(c.commit_block, block);
        assert_eq!(c.first_reveal_block, ((block + 24) / 5 + 1) * 5 - 24);
        assert_eq!(c.last_reveal_block, c.first_reveal_block + 4);
        assert_eq!(
            refusal(chain.reveal_weights(&validator, &c).await),
            "RevealTooEarly"
        );
        let mut lying = c.clone();
        lying.weights = vec![1];
        chain.advance(c.first_reveal_block - block);
        assert_eq!(
            refusal(chain.reveal_weights(&validator, &lying).await),
            "InvalidRevealCommitHashNotMatch"
        );
        chain.reveal_weights(&validator, &c).await.unwrap();
        assert_eq!(chain.weight_history().len(), 1);
        assert_eq!(
            refusal(chain.reveal_weights(&validator, &c).await),
            "NoWeightsCommitFound"
        );
        // A commit left past its window expires.
        let late = chain
            .commit_weights(&validator, 23, vec![1], vec![65535], 10)
            .await
            .unwrap();
        chain.advance(late.last_reveal_block + 1 - chain.block().await.unwrap());
        assert_eq!(
            refusal(chain.reveal_weights(&validator, &late).await),
            "ExpiredWeightCommit"
        );
        // Off: commits are refused.
        assert_eq!(
            plain
                .commit_weights(&validator, 23, vec![1], vec![1], 10)
                .await
                .unwrap_err()
                .refusal(),
            Some("CommitRevealDisabled")
        );
    }

    #[tokio::test]
    async fn serving_is_rate_limited_and_registration_works() {
        let (chain, _, miner) = chain("");
        let graph = chain.metagraph(23).await.unwrap();
        assert_eq!(graph.neurons[1].axon.ip_string(), "127.0.0.1");
        let serve = |port| ServeAxon {
            netuid: 23,
            version: 1,
            ip: "10.0.0.1".parse().unwrap(),
            port,
            protocol: 4,
        };
        assert_eq!(
            refusal(chain.serve_axon(&miner, serve(9000)).await),
            "ServingRateLimitExceeded"
        );
        chain.advance(50);
        chain.serve_axon(&miner, serve(9000)).await.unwrap();
        chain.serve_axon(&miner, serve(9000)).await.unwrap();
        assert_eq!(
            chain.metagraph(23).await.unwrap().neurons[1].axon.port,
            9000
        );
        let newcomer = key(5);
        assert_eq!(chain.register(23, newcomer.ss58(), 1.0, false).unwrap(), 2);
        assert!(chain.register(23, newcomer.ss58(), 1.0, false).is_err());
        assert!(
            EmbeddedChain::from_toml(
                "[[subnet]]\nnetuid = 1\n[[subnet.neuron]]\nhotkey = \"nope\"\n"
            )
            .is_err()
        );
    }

    #[tokio::test]
    async fn stateful_hash_commits_are_keyed_by_the_epoch_index() {
        // Tempo 5, stateful: epochs every 5 blocks from the seeded last epoch.
        let (chain, validator, _) =
            chain("commit_reveal = true\ncommit_reveal_mode = \"hash\"\ntempo = 5");
        chain.advance(100);
        let e = chain.epoch(23).await.unwrap();
        assert_eq!(e.rule, Rule::Stateful);
        let c = chain
            .commit_weights(&validator, 23, vec![1], vec![65535], 10)
            .await
            .unwrap();
        let (commit_epoch, reveal_epoch) = (c.commit_epoch.unwrap(), c.reveal_epoch.unwrap());
        assert_eq!(reveal_epoch, commit_epoch + 1);
        assert_eq!(
            c.last_reveal_block - c.first_reveal_block,
            4,
            "one epoch of 5 blocks"
        );
        assert_eq!(
            refusal(chain.reveal_weights(&validator, &c).await),
            "RevealTooEarly"
        );
        // A reveal sent one block before the window lands in its first block.
        let now = chain.block().await.unwrap();
        chain.advance(c.first_reveal_block - 1 - now);
        let e = chain.epoch(23).await.unwrap();
        assert_eq!(c.window_at(Some(&e)), Some(commit::Window::Open));
        chain.reveal_weights(&validator, &c).await.unwrap();
        let late = chain
            .commit_weights(&validator, 23, vec![1], vec![65535], 10)
            .await
            .unwrap();
        let now = chain.block().await.unwrap();
        chain.advance(late.last_reveal_block - now);
        let e = chain.epoch(23).await.unwrap();
        assert_eq!(late.window_at(Some(&e)), Some(commit::Window::Expired));
        assert_eq!(
            refusal(chain.reveal_weights(&validator, &late).await),
            "ExpiredWeightCommit"
        );
    }

    #[tokio::test]
    async fn tempo_changes_reset_the_cycle_and_owners_trigger_epochs() {
        let (on, _, _) = chain("commit_reveal = true");
        let (chain, _, _) = chain("tempo = 100");
        let e = chain.epoch(23).await.unwrap();
        chain.set_tempo(23, 50).unwrap();
        let e2 = chain.epoch(23).await.unwrap();
        assert_eq!((e2.last_epoch_block, e2.tempo), (e.block, 50));
        assert_eq!(e2.next_epoch_block(), Some(e.block + 50));
        let at = chain.trigger_epoch(23).unwrap();
        assert_eq!(at, e2.block + ADMIN_FREEZE_WINDOW);
        assert_eq!(
            chain.trigger_epoch(23).unwrap_err().refusal(),
            Some("EpochTriggerAlreadyPending")
        );
        chain.advance(ADMIN_FREEZE_WINDOW);
        let fired = chain.epoch(23).await.unwrap();
        assert_eq!(
            (
                fired.epoch_index,
                fired.last_epoch_block,
                fired.pending_epoch_at
            ),
            (e.epoch_index + 1, at, 0)
        );
        assert_eq!(
            on.trigger_epoch(23).unwrap_err().refusal(),
            Some("DynamicTempoBlockedByCommitReveal")
        );
    }

    #[tokio::test]
    async fn timelocked_commits_are_opened_with_the_beacons_pulse() {
        // 50 ms blocks, tempo 20: the reveal epoch is a second away and the pulse due in it.
        let text = format!(
            "block_time_secs = 0.05\nstart_block = 1000\n[[subnet]]\nnetuid = 23\ntempo = 20\nweights_rate_limit = 0\n\
             [[subnet.neuron]]\nhotkey = \"{}\"\nstake = 20000\nvalidator_permit = true\n\
             [[subnet.neuron]]\nhotkey = \"{}\"\n",
            key(1).ss58(),
            key(2).ss58()
        );
        let chain = EmbeddedChain::from_toml(&text).unwrap();
        assert!(matches!(
            chain.weights_mode(23).await.unwrap(),
            WeightsMode::Timelocked { .. }
        ));
        assert_eq!(
            refusal(chain.set_weights(&key(1), 23, vec![1], vec![1], 0).await),
            "CommitRevealEnabled"
        );
        let c = chain
            .commit_timelocked(&key(1), 23, vec![1], vec![65535], 0)
            .await
            .unwrap();
        assert_eq!(c.reveal_epoch, c.commit_epoch + 1);
        assert_eq!(c.epoch_state.state.rule, Rule::Stateful);
        let deadline = Instant::now() + Duration::from_secs(20);
        while chain.weight_history().is_empty() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let history = chain.weight_history();
        assert_eq!(history.len(), 1, "revealed: {:?}", chain.dropped_commits());
        let revealed_at = history[0].block;
        assert!(
            revealed_at >= c.first_reveal_block && revealed_at < c.first_reveal_block + 20,
            "revealed at {revealed_at}, reveal epoch from {}",
            c.first_reveal_block
        );
    }

    #[tokio::test]
    async fn a_late_pulse_drops_the_commit_and_owner_epochs_move_the_reveal() {
        // Hour-long blocks: the round a commit targets is hours away, so its pulse is late for
        // any epoch the test makes pass by advancing blocks.
        let (chain, validator, _) = chain("commit_reveal = false\ntempo = 100");
        let pending = chain.trigger_epoch(23).unwrap();
        chain.configure(23, |p| p.commit_reveal = true).unwrap();
        let c = chain
            .commit_timelocked(&validator, 23, vec![1], vec![65535], 10)
            .await
            .unwrap();
        assert_eq!(
            c.first_reveal_block, pending,
            "the owner's epoch opens the reveal"
        );
        assert_eq!(c.epoch_state.state.pending_epoch_at, pending);
        chain.advance(pending - chain.block().await.unwrap());
        assert!(
            chain.dropped_commits().is_empty(),
            "retried while the epoch lasts"
        );
        chain.advance(100);
        let dropped = chain.dropped_commits();
        assert_eq!(dropped.len(), 1);
        assert_eq!(dropped[0].reveal_round, c.reveal_round);
        assert!(
            dropped[0].reason.contains("passed before the pulse"),
            "{:?}",
            dropped[0]
        );
        assert!(chain.weight_history().is_empty());
        // A round already on chain is refused at commit time.
        assert!(c.reveal_round > chain.last_stored_round());
    }

    #[tokio::test]
    async fn total_stake_is_alpha_plus_tao_weight_of_root() {
        // The README's example: 800 alpha and 10 000 root at TaoWeight 0.18 make 2 600.
        let text = format!(
            "tao_weight = 0.18\n[[subnet]]\nnetuid = 23\ncommit_reveal = false\nmin_stake_to_set_weights = 1000\nweights_rate_limit = 0\n\
             [[subnet.neuron]]\nhotkey = \"{}\"\nstake = 800\nroot_stake = 10000\nvalidator_permit = true\n",
            key(1).ss58()
        );
        let chain = EmbeddedChain::from_toml(&text).unwrap();
        let graph = chain.metagraph(23).await.unwrap();
        let n = &graph.neurons[0];
        assert_eq!(
            (n.stake_tokens(), n.root_stake_rao, n.total_stake_tokens()),
            (800.0, 10_000_000_000_000, 2600.0)
        );
        // Its alpha alone is under the subnet's minimum; its total is not.
        chain
            .set_weights(&key(1), 23, vec![0], vec![1], 0)
            .await
            .unwrap();
    }
}
