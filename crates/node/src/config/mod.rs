//! The node's configuration: typed sections with NicheImage's defaults.
//!
//! Layering is CLI > file > defaults: [`load`] reads the file (or takes the defaults), then the
//! CLI applies its overrides (the binary's `cli`). Every key is documented once in
//! `config.example.toml`, which a test keeps equal to [`Config::default`].

mod load;

pub use load::{ConfigError, ConfigSource, default_config_path, default_data_dir, load, parse};

use nicheimage_bittensor::chain::NetworkName;
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

/// The sample config shipped with the binary (`--print-config-template`).
pub const EXAMPLE: &str = include_str!("../../../../config.example.toml");

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub node: NodeConfig,
    pub metrics: MetricsConfig,
    pub supervisor: SupervisorConfig,
    pub ui: UiConfig,
    pub wallet: WalletConfig,
    pub subtensor: SubtensorConfig,
    pub axon: AxonConfig,
    pub endpoint: EndpointConfig,
    pub miner: MinerConfig,
    pub validator: ValidatorConfig,
    pub proxy: ProxyConfig,
    pub reward: RewardConfig,
    pub devnet: DevnetConfig,
    /// Connection limits of every listener the node opens (endpoint, axon, reward, proxy,
    /// metrics).
    pub limits: nicheimage_common::serve::Limits,
    /// Catalogue overrides and additions, `[models.<Name>]`.
    pub models: std::collections::BTreeMap<String, crate::catalogue::ModelOverride>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

pub use nicheimage_common::torch::{DeviceChoice, DtypeChoice};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeConfig {
    /// Where logs and state files go; empty means `$XDG_DATA_HOME/nicheimage-tui`.
    pub data_dir: Option<PathBuf>,
    pub log_format: LogFormat,
    /// A tracing filter such as `info` or `info,nicheimage_node::runtime=debug`.
    pub log_level: String,
    /// Seconds between status lines in headless mode.
    pub status_interval_secs: u64,
    /// Seconds between host telemetry samples.
    pub telemetry_interval_secs: u64,
    pub device: DeviceChoice,
    /// The pipelines' precision (replicas and `generate`).
    pub dtype: DtypeChoice,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            data_dir: None,
            log_format: LogFormat::Text,
            log_level: "info".into(),
            status_interval_secs: 10,
            telemetry_interval_secs: 2,
            device: DeviceChoice::Auto,
            dtype: DtypeChoice::Auto,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    pub enabled: bool,
    /// `GET /healthz` and `GET /metrics`; keep it on loopback unless a scraper needs it.
    pub listen: SocketAddr,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 9646)),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SupervisorConfig {
    /// First restart delay after a component fails; doubles per consecutive failure.
    pub backoff_initial_ms: u64,
    pub backoff_max_ms: u64,
    /// A run that lasted this long resets the backoff.
    pub stable_after_secs: u64,
    /// How long a stopping component may take to drain before it is aborted.
    pub drain_timeout_secs: u64,
}

impl Default for SupervisorConfig {
    fn default() -> Self {
        Self {
            backoff_initial_ms: 500,
            backoff_max_ms: 60_000,
            stable_after_secs: 60,
            drain_timeout_secs: 10,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UiConfig {
    /// A built-in theme (`default`, `light`, `high-contrast`) or a path to a theme TOML file.
    pub theme: String,
    /// Upper bound on redraws per second; frames are drawn only when state changed.
    pub max_fps: u32,
    pub mouse: bool,
}

impl Default for UiConfig {
    fn default() -> Self {
        Self {
            theme: "default".into(),
            max_fps: 15,
            mouse: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WalletConfig {
    pub name: String,
    pub hotkey: String,
    pub path: PathBuf,
}

impl Default for WalletConfig {
    fn default() -> Self {
        Self {
            name: "default".into(),
            hotkey: "default".into(),
            path: PathBuf::from("~/.bittensor/wallets"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SubtensorConfig {
    /// `finney`, `test`, `archive`, `local`, `embedded` or a `ws://` URL.
    pub network: NetworkName,
    /// Overrides the network's websocket endpoint.
    pub chain_endpoint: Option<String>,
    /// NicheImage's Python defaults to netuid 1; its README passes 23, the subnet's netuid.
    pub netuid: u16,
    /// Blocks between metagraph resyncs (NicheImage's `neuron.epoch_length`).
    pub epoch_length: u64,
    /// Run the chain watcher in the console.
    pub watch: bool,
    pub block_time_secs: f64,
    /// Seed file of the embedded chain; unset: the built-in example.
    pub embedded_chain_file: Option<PathBuf>,
}

impl Default for SubtensorConfig {
    fn default() -> Self {
        Self {
            network: NetworkName::Finney,
            chain_endpoint: None,
            netuid: 23,
            epoch_length: 100,
            watch: false,
            block_time_secs: 12.0,
            embedded_chain_file: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AxonConfig {
    /// Address the axon binds (all interfaces by default; the devnet keeps it on loopback).
    pub host: IpAddr,
    pub port: u16,
    /// Address published on chain; empty means detect it.
    pub external_ip: Option<IpAddr>,
    pub external_port: Option<u16>,
}

impl Default for AxonConfig {
    fn default() -> Self {
        Self {
            host: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            port: 8091,
            external_ip: None,
            external_port: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EndpointConfig {
    /// Also run the endpoint in the main node (the console or `--no-ui`), not only as
    /// `nicheimage-tui endpoint`.
    pub enabled: bool,
    pub model_name: String,
    pub host: IpAddr,
    pub port: u16,
    pub num_replicas: u32,
    /// GPUs per replica; fractions share a GPU (0.33 gives three replicas per GPU).
    pub num_gpus: f64,
    /// Requests waiting for a free replica; more are refused with 503.
    pub queue_capacity: usize,
    /// A request gets 504 after this long (NicheImage's miner waits 60 s).
    pub request_timeout_secs: u64,
    /// A replica that has not loaded its model within this long is restarted.
    pub load_timeout_secs: u64,
    /// Other machines' endpoints (ours or NicheImage's) to route requests to as well.
    pub remote_endpoints: Vec<String>,
    /// The NSFW classifier (`Falconsai/nsfw_image_detection`: config.json, model.safetensors,
    /// preprocessor_config.json); relative paths are under the data dir's `checkpoints/`.
    pub nsfw_classifier: PathBuf,
    /// NicheImage's three ControlNets (diffusers folders `control_v11p_sd15_canny`,
    /// `control_v11f1p_sd15_depth`, `control_v11p_sd15_normalbae`) and the annotators'
    /// `dpt_hybrid-midas-501f0c75.pt` and `scannet.pt`, for models serving
    /// controlnet_txt2img; relative paths are under the data dir's `checkpoints/`.
    pub controlnet_dir: PathBuf,
}

impl Default for EndpointConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            model_name: "RealisticVision".into(),
            // The miner on this machine is its caller; other machines need it opened on purpose.
            host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 10006,
            num_replicas: 1,
            num_gpus: 1.0,
            queue_capacity: 16,
            request_timeout_secs: 60,
            load_timeout_secs: 600,
            remote_endpoints: Vec::new(),
            nsfw_classifier: "nsfw_image_detection".into(),
            controlnet_dir: "controlnet".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MinerConfig {
    pub generate_endpoint: String,
    pub info_endpoint: String,
    /// NicheImage's miner waits this long for `/generate`.
    pub generate_timeout_secs: u64,
    /// Seconds between metagraph resyncs (NicheImage resynced about once a second).
    pub metagraph_resync_secs: u64,
    /// Knock on the announced address after announcing (off where that address must not be
    /// dialled, e.g. a test announcing a documentation address).
    pub reachability_self_test: bool,
    pub blacklist: BlacklistConfig,
}

impl Default for MinerConfig {
    fn default() -> Self {
        Self {
            generate_endpoint: "http://127.0.0.1:10006/generate".into(),
            info_endpoint: "http://127.0.0.1:10006/info".into(),
            generate_timeout_secs: 60,
            metagraph_resync_secs: 600,
            reachability_self_test: true,
            blacklist: BlacklistConfig::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BlacklistConfig {
    pub force_validator_permit: bool,
    pub allow_non_registered: bool,
    /// Callers below this stake (TAO) are refused.
    pub min_stake: f64,
    /// Rate-limit window per validator.
    pub window_secs: u64,
    /// Requests allowed per window for each `stake_per_unit` TAO of stake.
    pub requests_per_unit: u32,
    pub stake_per_unit: f64,
}

impl Default for BlacklistConfig {
    fn default() -> Self {
        Self {
            force_validator_permit: false,
            allow_non_registered: false,
            min_stake: 10_000.0,
            window_secs: 600,
            requests_per_unit: 10,
            stake_per_unit: 10_000.0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ValidatorConfig {
    pub axon_off: bool,
    pub disable_set_weights: bool,
    /// Loop period for the first `fast_steps` steps, then `loop_secs`.
    pub fast_loop_secs: u64,
    pub fast_steps: u64,
    pub loop_secs: u64,
    /// Timeout of the identity (info) query to every axon.
    pub info_timeout_secs: u64,
    pub challenge_prompt_url: String,
    pub challenge_image_url: String,
    /// The reward service; `{model}` becomes the model's name.
    pub reward_url: String,
    /// Scores and step, saved after every pass; unset: `<data dir>/validator-state.json`.
    pub state_file: Option<PathBuf>,
    /// Dial miners that announce private, loopback or link-local addresses. Off: only public
    /// unicast addresses are dialled (a local subnet or the devnet turns it on).
    pub dial_private_axons: bool,
    /// How the validator and proxy sign requests to miners: `auto` (each miner in the scheme it
    /// last accepted, legacy first, a 401 retried once in the other), `legacy` (bittensor ≤ 10
    /// synapse headers) or `btauth` (bittensor 11's btauth/1). An ed25519 hotkey always uses
    /// btauth/1.
    pub signed_requests: SignedRequests,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SignedRequests {
    #[default]
    Auto,
    Legacy,
    Btauth,
}

impl SignedRequests {
    /// The dendrite's fixed scheme (`None`: per miner).
    pub fn scheme(self) -> Option<nicheimage_bittensor::dendrite::Scheme> {
        use nicheimage_bittensor::dendrite::Scheme;
        match self {
            SignedRequests::Auto => None,
            SignedRequests::Legacy => Some(Scheme::Legacy),
            SignedRequests::Btauth => Some(Scheme::BtAuth),
        }
    }
}

impl Default for ValidatorConfig {
    fn default() -> Self {
        Self {
            axon_off: false,
            disable_set_weights: false,
            fast_loop_secs: 60,
            fast_steps: 5,
            loop_secs: 600,
            info_timeout_secs: 10,
            challenge_prompt_url: String::new(),
            challenge_image_url: "http://nicheimage.nichetensor.com/challenge/image".into(),
            reward_url: "http://nicheimage.nichetensor.com/reward/{model}".into(),
            state_file: None,
            dial_private_axons: false,
            signed_requests: SignedRequests::Auto,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProxyConfig {
    /// Opt in to the owner's organic traffic at start (switchable at run time; the last choice
    /// made there wins over this).
    pub enabled: bool,
    pub host: IpAddr,
    pub port: u16,
    /// The owner's Ed25519 public key (base64 or hex); else it comes from the owner API.
    pub owner_public_key: Option<String>,
    /// The owner API (credentials exchange); empty: none. Must be `https://` (the owner's key
    /// comes from it) unless the host is loopback or `allow_insecure_owner_api` is set.
    #[serde(alias = "proxy_client_url")]
    pub owner_api_url: String,
    /// Accept a plain-http owner API on a non-loopback host (anyone on the path could then
    /// choose the key the proxy trusts).
    pub allow_insecure_owner_api: bool,
    pub credentials_refresh_secs: u64,
    /// Also accept NicheImage's caller-supplied-key scheme (insecure).
    pub legacy_auth: bool,
    /// Signed requests older (or newer) than this are refused.
    pub max_age_secs: u64,
    pub miner_score_threshold: f64,
    pub checking_probability: f64,
    pub max_concurrent: usize,
    /// Authenticated requests a minute per client address.
    pub rate_limit_per_minute: u32,
    /// Failed authentications a minute per client address, counted apart so they never use
    /// up the signed requests' allowance.
    pub unauthenticated_per_minute: u32,
    /// Per-day counters; unset: <data dir>/proxy_counter.json.
    pub counter_file: Option<PathBuf>,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            host: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            port: 10003,
            owner_public_key: None,
            owner_api_url: "https://nicheimage.nichetensor.com/proxy_client".into(),
            allow_insecure_owner_api: false,
            credentials_refresh_secs: 600,
            legacy_auth: false,
            max_age_secs: 30,
            miner_score_threshold: 0.1,
            checking_probability: 0.1,
            max_concurrent: 64,
            rate_limit_per_minute: 600,
            unauthenticated_per_minute: 60,
            counter_file: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RewardConfig {
    pub model_name: String,
    /// Address the service binds.
    pub host: IpAddr,
    pub port: u16,
    /// Only clients whose axon belongs to a UID above this stake (TAO) are served.
    pub min_stake: f64,
    pub disable_secure: bool,
    pub num_replicas: u32,
    pub num_gpus: f64,
    /// Requests per minute per client address.
    pub rate_limit_per_minute: u32,
    /// Other generation endpoints to regenerate on, beside (or, with `num_replicas = 0`,
    /// instead of) its own replicas.
    pub remote_endpoints: Vec<String>,
}

impl Default for RewardConfig {
    fn default() -> Self {
        Self {
            model_name: "RealisticVision".into(),
            host: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            port: 10001,
            min_stake: 100.0,
            disable_secure: false,
            num_replicas: 1,
            num_gpus: 1.0,
            rate_limit_per_minute: 60,
            remote_endpoints: Vec::new(),
        }
    }
}

/// The local subnet run when no config file is found, or with `--devnet`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DevnetConfig {
    /// Miners; the second answers with the wrong seed's image, the third too slowly.
    pub miners: u32,
    /// Generation replicas of the tiny model, shared by the miners and the reward service.
    pub replicas: u32,
    /// Seconds between validator rounds.
    pub round_secs: u64,
    /// Seconds between the owner client's organic requests through the proxy.
    pub organic_every_secs: f64,
    /// The tiny model's timeout, seconds (the slow miner answers 2 s after it).
    pub timeout_secs: f64,
    /// Seconds the embedded chain's beacon pulses arrive late. Past an epoch (10 s), timelocked
    /// weights are dropped by the chain, as a late drand pulse drops them on a real one.
    pub beacon_delay_secs: f64,
    /// The tiny model's architecture: `sd15` (every pipeline, NicheImage's ControlNets), `sdxl`
    /// (txt2img, img2img) or `flux` (FLUX.1-schnell's shape, txt2img).
    pub model: crate::catalogue::Arch,
}

impl Default for DevnetConfig {
    fn default() -> Self {
        Self {
            miners: 3,
            replicas: 2,
            round_secs: 5,
            organic_every_secs: 3.0,
            timeout_secs: 4.0,
            beacon_delay_secs: 0.0,
            model: crate::catalogue::Arch::Sd15,
        }
    }
}

impl Config {
    /// Checks what types alone cannot; names the offending key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, reason: String| {
            Err(ConfigError::Invalid {
                key: key.to_string(),
                reason,
            })
        };
        if !(self.endpoint.num_gpus > 0.0 && self.endpoint.num_gpus <= 64.0) {
            return invalid(
                "endpoint.num_gpus",
                format!("{} is not in (0, 64]", self.endpoint.num_gpus),
            );
        }
        if let Err(e) = self
            .subtensor
            .network
            .resolve(self.subtensor.chain_endpoint.as_deref())
        {
            return invalid("subtensor.network", e.to_string());
        }
        if self.subtensor.block_time_secs.is_nan() || self.subtensor.block_time_secs < 0.05 {
            return invalid("subtensor.block_time_secs", "must be at least 0.05".into());
        }
        if let Some(key) = &self.proxy.owner_public_key
            && let Err(e) = crate::proxy::auth::parse_public_key(key)
        {
            return invalid("proxy.owner_public_key", e.to_string());
        }
        if !self.proxy.owner_api_url.is_empty()
            && let Err(e) = crate::proxy::owner_api::check_url(
                &self.proxy.owner_api_url,
                self.proxy.allow_insecure_owner_api,
            )
        {
            return invalid("proxy.owner_api_url", e.to_string());
        }
        if !(0.0..=1.0).contains(&self.proxy.checking_probability) {
            return invalid("proxy.checking_probability", "must be in [0, 1]".into());
        }
        if self.endpoint.queue_capacity == 0 {
            return invalid("endpoint.queue_capacity", "must be at least 1".into());
        }
        if let Err(e) = crate::catalogue::catalogue(&self.models) {
            return invalid("models", e.to_string());
        }
        if self.endpoint.num_replicas == 0 && self.endpoint.remote_endpoints.is_empty() {
            return invalid(
                "endpoint.num_replicas",
                "must be at least 1 unless endpoint.remote_endpoints lists others".into(),
            );
        }
        if let Some(bad) = self
            .endpoint
            .remote_endpoints
            .iter()
            .find(|u| !(u.starts_with("http://") || u.starts_with("https://")))
        {
            return invalid(
                "endpoint.remote_endpoints",
                format!("`{bad}` is not an http(s) URL"),
            );
        }
        if !(self.reward.num_gpus > 0.0 && self.reward.num_gpus <= 64.0) {
            return invalid(
                "reward.num_gpus",
                format!("{} is not in (0, 64]", self.reward.num_gpus),
            );
        }
        for (key, p) in [
            (
                "proxy.miner_score_threshold",
                self.proxy.miner_score_threshold,
            ),
            (
                "proxy.checking_probability",
                self.proxy.checking_probability,
            ),
        ] {
            if !(0.0..=1.0).contains(&p) {
                return invalid(key, format!("{p} is not in [0, 1]"));
            }
        }
        if self.reward.num_replicas == 0 && self.reward.remote_endpoints.is_empty() {
            return invalid(
                "reward.num_replicas",
                "must be at least 1 unless reward.remote_endpoints lists others".into(),
            );
        }
        if !(1..=32).contains(&self.devnet.miners) || self.devnet.replicas == 0 {
            return invalid(
                "devnet.miners",
                "devnet.miners must be in 1..=32 and devnet.replicas at least 1".into(),
            );
        }
        if !(self.devnet.timeout_secs >= 0.5 && self.devnet.organic_every_secs > 0.0) {
            return invalid(
                "devnet.timeout_secs",
                "devnet.timeout_secs must be at least 0.5 and organic_every_secs positive".into(),
            );
        }
        if self.ui.max_fps == 0 || self.ui.max_fps > 120 {
            return invalid(
                "ui.max_fps",
                format!("{} is not in 1..=120", self.ui.max_fps),
            );
        }
        if self.node.status_interval_secs == 0 {
            return invalid("node.status_interval_secs", "must be at least 1".into());
        }
        if self.node.telemetry_interval_secs == 0 {
            return invalid("node.telemetry_interval_secs", "must be at least 1".into());
        }
        if self.supervisor.backoff_initial_ms == 0
            || self.supervisor.backoff_initial_ms > self.supervisor.backoff_max_ms
        {
            return invalid(
                "supervisor.backoff_initial_ms",
                "must be at least 1 and not above supervisor.backoff_max_ms".into(),
            );
        }
        if tracing_subscriber::EnvFilter::try_new(&self.node.log_level).is_err() {
            return invalid(
                "node.log_level",
                format!("`{}` is not a tracing filter", self.node.log_level),
            );
        }
        Ok(())
    }
}
