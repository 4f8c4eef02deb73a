//! Command line: global flags, and one subcommand per piece NicheImage ran as its own process.
//! NicheImage's flag names (`--model_name`, `--wallet.name`, ...) are accepted with kebab-case
//! aliases.

use clap::{Args, Parser, Subcommand};
use nicheimage_bittensor::chain::NetworkName;
use nicheimage_common::scheduler::SchedulerKind;
use nicheimage_node::config::{Config, DeviceChoice, DtypeChoice, LogFormat};
pub use nicheimage_node::replica::args::ReplicaArgs;
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "nicheimage-tui",
    version,
    about = "Operator console for a NicheImage (Bittensor subnet 23) node"
)]
pub struct Cli {
    /// Config file (default: $XDG_CONFIG_HOME/nicheimage-tui/config.toml if it exists).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Run headless: logs and JSON status lines on stdout. Implied when stdout is not a terminal.
    #[arg(long = "no-ui", alias = "no_ui")]
    pub no_ui: bool,
    /// Logs and state files (default: $XDG_DATA_HOME/nicheimage-tui).
    #[arg(
        long = "data-dir",
        alias = "data_dir",
        global = true,
        value_name = "DIR"
    )]
    pub data_dir: Option<PathBuf>,
    /// Theme name (default, light, high-contrast) or a theme TOML file.
    #[arg(long)]
    pub theme: Option<String>,
    #[arg(long = "log-format", alias = "log_format", global = true, value_enum)]
    pub log_format: Option<LogFormat>,
    /// Run the local subnet (embedded chain, validator, miners, reward service, proxy, owner
    /// traffic) in this process. Also what runs when no config file is found.
    #[arg(long)]
    pub devnet: bool,
    /// Stop after this long (e.g. `60s`, `5m`, `1h`; plain numbers are seconds), draining as on
    /// SIGTERM. A devnet run then prints its summary.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub duration: Option<std::time::Duration>,
    /// Print the documented sample config (all defaults) and exit.
    #[arg(long = "print-config-template", alias = "print_config_template")]
    pub print_config_template: bool,
    #[command(subcommand)]
    pub command: Option<Role>,
}

/// A `--duration` value that is not a duration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadDuration {
    #[error("`{0}` is not a duration like 60s, 5m or 1h")]
    NotANumber(String),
    #[error("`{0}`: unit must be ms, s, m or h")]
    Unit(String),
    #[error("`{0}` must be positive")]
    NotPositive(String),
}

/// `90`, `90s`, `2m`, `1h`, `1.5m`.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, BadDuration> {
    let t = text.trim();
    let (number, unit) = match t.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => t.split_at(i),
        None => (t, "s"),
    };
    let n: f64 = number
        .trim()
        .parse()
        .map_err(|_| BadDuration::NotANumber(text.to_string()))?;
    let scale = match unit {
        "ms" => 0.001,
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        _ => return Err(BadDuration::Unit(text.to_string())),
    };
    if !(n.is_finite() && n > 0.0) {
        return Err(BadDuration::NotPositive(text.to_string()));
    }
    Ok(std::time::Duration::from_secs_f64(n * scale))
}

/// NicheImage's `--chain_endpoint`: a network name or a websocket URL.
#[derive(Debug, Clone, PartialEq)]
pub enum ChainEndpoint {
    Network(NetworkName),
    Url(String),
}

fn parse_chain_endpoint(text: &str) -> Result<ChainEndpoint, std::convert::Infallible> {
    if text.contains("://") {
        Ok(ChainEndpoint::Url(text.to_string()))
    } else {
        text.parse().map(ChainEndpoint::Network)
    }
}

/// One piece of the node, headless, the way NicheImage ran separate processes.
#[derive(Debug, Subcommand)]
pub enum Role {
    /// The generation endpoint (NicheImage's services.miner_endpoint.app).
    Endpoint(EndpointArgs),
    /// A reward service for one model (NicheImage's services.rewarding.app).
    Reward(RewardArgs),
    /// The miner neuron.
    Miner(MinerArgs),
    /// The validator neuron.
    Validator(ValidatorArgs),
    /// Generate one image with the local engine and write it as PNG (a quick check of a
    /// checkpoint, a device and a scheduler).
    Generate(GenerateArgs),
    /// One generation replica (started by the endpoint's pool; speaks JSON lines on stdio).
    #[command(hide = true)]
    Replica(ReplicaArgs),
    /// Write the tiny random SD 1.5 checkpoint (single file + config folder) used by the tests,
    /// the local demo and the parity fixtures.
    #[command(name = "tiny-checkpoint")]
    TinyCheckpoint(TinyCheckpointArgs),
    /// The operator's hotkey: show its address, or create a fresh one for local use.
    Wallet {
        #[command(subcommand)]
        action: WalletAction,
    },
    /// One look at the chain: block, subnet settings, epoch schedule, metagraph and our hotkey's
    /// place in it.
    Chain(JsonNeuronArgs),
    /// Weights as btcli handles them: set (or commit, when the subnet wants commit-reveal),
    /// reveal kept commits, show the state.
    Weights {
        #[command(subcommand)]
        action: WeightsAction,
    },
    /// The subnet owner's side of the validator proxy: sign one request with an owner key, send
    /// it, write the PNG. For operators testing their proxy.
    #[command(name = "proxy-client")]
    ProxyClient(ProxyClientArgs),
    /// Ask a running node whether it is ready (`/readyz`) or, with `--live`, alive (`/healthz`):
    /// exit 0 when it says so, 1 otherwise. For container and Kubernetes probes (no curl needed).
    Healthcheck(HealthcheckArgs),
}

#[derive(Debug, Args)]
pub struct HealthcheckArgs {
    /// The node's metrics address (`metrics.listen`); default: the configured one.
    #[arg(long, value_name = "HOST:PORT")]
    pub address: Option<String>,
    /// Check liveness (`/healthz`) instead of readiness (`/readyz`).
    #[arg(long)]
    pub live: bool,
    /// Seconds to wait for the answer.
    #[arg(long, default_value_t = 5)]
    pub timeout: u64,
}

#[derive(Debug, Args)]
pub struct TinyCheckpointArgs {
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    #[arg(long, default_value = "tiny-sd15")]
    pub name: String,
    /// The architecture: sd15 or sdxl.
    #[arg(long, value_enum, default_value = "sd15")]
    pub arch: nicheimage_node::catalogue::Arch,
    /// Write a tiny ControlNet for the tiny SD 1.5 UNet instead (a diffusers folder
    /// `<out>/<name>`), its random weights drawn from this seed.
    #[arg(long, value_name = "SEED")]
    pub controlnet: Option<i64>,
    /// Write a full-size annotator network with random weights drawn from seed 0 instead
    /// (`<out>/<name>.safetensors`): the stand-in for its real checkpoint in parity tests.
    #[cfg(feature = "local-infer")]
    #[arg(long, value_enum, conflicts_with = "controlnet")]
    pub annotator: Option<nicheimage_engine::tiny::AnnotatorNet>,
}

#[derive(Debug, Args)]
pub struct ProxyClientArgs {
    /// The owner's Ed25519 key file (hex seed).
    #[arg(long, value_name = "FILE")]
    pub key: PathBuf,
    /// Create the key file (mode 0600), print its public key for `proxy.owner_public_key`, exit.
    #[arg(long = "new-key", alias = "new_key")]
    pub new_key: bool,
    /// The proxy (default: this config's proxy port on 127.0.0.1).
    #[arg(long)]
    pub url: Option<String>,
    #[arg(
        long = "model_name",
        alias = "model-name",
        default_value = "RealisticVision"
    )]
    pub model_name: String,
    #[arg(long, default_value = "a lighthouse on a cliff at dusk")]
    pub prompt: String,
    #[arg(long)]
    pub seed: Option<u64>,
    /// Pin one miner (its uid); default: the proxy chooses.
    #[arg(long = "miner_uid", alias = "miner-uid", default_value_t = -1)]
    pub miner_uid: i64,
    #[arg(long, default_value = "proxy.png", value_name = "FILE")]
    pub out: PathBuf,
    /// Seconds to wait for the answer.
    #[arg(long, default_value_t = 120)]
    pub timeout: u64,
}

#[derive(Debug, Subcommand)]
pub enum WeightsAction {
    /// Set the weights, or commit them where the subnet has commit-reveal on (says which).
    Set(WeightsSetArgs),
    /// Reveal the kept hash commits whose window is open.
    Reveal(NeuronArgs),
    /// Last update, next eligible block, commit-reveal mode and period, epoch schedule, pending
    /// commits.
    Status(JsonNeuronArgs),
}

/// A read-only command's arguments: the neuron's, and whether to print JSON.
#[derive(Debug, Args)]
pub struct JsonNeuronArgs {
    #[command(flatten)]
    pub neuron: NeuronArgs,
    /// Print one JSON object (for scripts) instead of text.
    #[arg(long)]
    pub json: bool,
}

impl WeightsAction {
    pub fn neuron(&self) -> &NeuronArgs {
        match self {
            WeightsAction::Set(a) => &a.neuron,
            WeightsAction::Reveal(n) => n,
            WeightsAction::Status(a) => &a.neuron,
        }
    }
}

#[derive(Debug, Args)]
pub struct WeightsSetArgs {
    #[command(flatten)]
    pub neuron: NeuronArgs,
    /// The uids to weight.
    #[arg(long, num_args = 1.., required = true)]
    pub uids: Vec<u16>,
    /// One non-negative weight per uid (normalised as the SDK does).
    #[arg(long, num_args = 1.., required = true)]
    pub weights: Vec<f32>,
    /// Default: the subnet's weights version key.
    #[arg(long = "version_key", alias = "version-key")]
    pub version_key: Option<u64>,
    /// With a hash commit, wait for its window and reveal before exiting.
    #[arg(long)]
    pub wait: bool,
}

#[derive(Debug, Subcommand)]
pub enum WalletAction {
    /// Print the hotkey's and coldkey's addresses (never secrets) and file warnings.
    Show(NeuronArgs),
    /// Write a new unencrypted hotkey (mode 0600) where [wallet] points; refuses to overwrite.
    #[command(name = "new-hotkey")]
    NewHotkey(NewHotkeyArgs),
}

#[derive(Debug, Args)]
pub struct NewHotkeyArgs {
    #[command(flatten)]
    pub neuron: NeuronArgs,
    /// The key's signature scheme. ed25519 keys sign extrinsics and btauth/1 requests but not
    /// legacy synapses (those are sr25519 only).
    #[arg(long, value_enum, default_value_t = CryptoArg::Sr25519)]
    pub crypto: CryptoArg,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CryptoArg {
    Sr25519,
    Ed25519,
}

impl From<CryptoArg> for nicheimage_bittensor::keypair::CryptoType {
    fn from(c: CryptoArg) -> Self {
        match c {
            CryptoArg::Sr25519 => Self::Sr25519,
            CryptoArg::Ed25519 => Self::Ed25519,
        }
    }
}

impl WalletAction {
    fn neuron(&self) -> &NeuronArgs {
        match self {
            WalletAction::Show(n) => n,
            WalletAction::NewHotkey(a) => &a.neuron,
        }
    }
}

#[derive(Debug, Args)]
pub struct EndpointArgs {
    #[arg(long = "model_name", alias = "model-name")]
    pub model_name: Option<String>,
    #[arg(long)]
    pub port: Option<u16>,
    #[arg(long = "num_replicas", alias = "num-replicas")]
    pub num_replicas: Option<u32>,
    /// GPUs per replica (fractions share a GPU).
    #[arg(long = "num_gpus", alias = "num-gpus")]
    pub num_gpus: Option<f64>,
    #[arg(long, value_enum)]
    pub device: Option<DeviceChoice>,
}

#[derive(Debug, Args)]
pub struct RewardArgs {
    #[arg(long = "model_name", alias = "model-name")]
    pub model_name: Option<String>,
    #[arg(long)]
    pub port: Option<u16>,
    #[arg(long)]
    pub netuid: Option<u16>,
    #[arg(long = "min_stake", alias = "min-stake")]
    pub min_stake: Option<f64>,
    /// NicheImage's name for the chain network or endpoint.
    #[arg(long = "chain_endpoint", alias = "chain-endpoint", value_parser = parse_chain_endpoint)]
    pub chain_endpoint: Option<ChainEndpoint>,
    #[arg(long = "disable_secure", alias = "disable-secure")]
    pub disable_secure: bool,
    #[arg(long = "num_replicas", alias = "num-replicas")]
    pub num_replicas: Option<u32>,
    #[arg(long = "num_gpus", alias = "num-gpus")]
    pub num_gpus: Option<f64>,
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// A single-file .safetensors checkpoint or a diffusers folder.
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// diffusers config folder for a single file (default: a folder named like the file).
    #[arg(long = "config-dir")]
    pub config_dir: Option<PathBuf>,
    #[arg(long, required_unless_present = "batch")]
    pub prompt: Option<String>,
    #[arg(long = "negative-prompt", alias = "negative_prompt")]
    pub negative_prompt: Option<String>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[arg(long = "steps", alias = "num_inference_steps", default_value_t = 30)]
    pub steps: usize,
    #[arg(
        long = "guidance-scale",
        alias = "guidance_scale",
        default_value_t = 7.5
    )]
    pub guidance_scale: f64,
    #[arg(long, default_value_t = 512)]
    pub width: i64,
    #[arg(long, default_value_t = 512)]
    pub height: i64,
    #[arg(long, default_value = "dpm++2m_karras")]
    pub scheduler: SchedulerKind,
    #[arg(long, value_enum)]
    pub device: Option<DeviceChoice>,
    /// The pipeline's precision (default: `[node] dtype`, auto = fp16 on CUDA, fp32 on CPU).
    #[arg(long, value_enum)]
    pub dtype: Option<DtypeChoice>,
    /// Many images from one load: a JSON-lines file, one request per line (`out`, `prompt`,
    /// `seed`, `steps`, `guidance_scale`, `width`, `height`, `scheduler`, and optionally
    /// `negative_prompt`, `image` with `strength` and `condition_resolution` for img2img). Prints
    /// one JSON line per image with its generation time. Used by the GPU proof kit.
    #[arg(long, value_name = "JSONL", conflicts_with_all = ["prompt", "image", "out", "controlnet_dir"])]
    pub batch: Option<PathBuf>,
    /// img2img from this PNG instead of txt2img (resized as NicheImage does: short side to
    /// --condition-resolution, sides to multiples of 64); width and height then come from it.
    #[arg(long, value_name = "PNG")]
    pub image: Option<PathBuf>,
    #[arg(long, default_value_t = 0.8, requires = "image")]
    pub strength: f64,
    #[arg(
        long = "condition-resolution",
        default_value_t = 512,
        requires = "image"
    )]
    pub condition_resolution: usize,
    /// NicheImage's controlnet_txt2img instead of img2img: --image becomes the conditional image,
    /// annotated and fed to the three ControlNets in this folder (see `[endpoint]
    /// controlnet_dir`); the three maps are written beside --out as `<out>.canny.png`,
    /// `<out>.depth.png`, `<out>.normal.png`. Width and height stay as given.
    #[arg(long = "controlnet-dir", value_name = "DIR", requires = "image")]
    pub controlnet_dir: Option<PathBuf>,
    /// Run the NSFW classifier folder on the result, as replicas do.
    #[arg(long = "nsfw-classifier", value_name = "DIR")]
    pub nsfw_classifier: Option<PathBuf>,
    /// Where the PNG goes.
    #[arg(long, required_unless_present = "batch")]
    pub out: Option<PathBuf>,
}

/// Flags every neuron shares (bittensor's wallet and subtensor flags).
#[derive(Debug, Args)]
pub struct NeuronArgs {
    #[arg(long)]
    pub netuid: Option<u16>,
    #[arg(long = "wallet.name", alias = "wallet-name")]
    pub wallet_name: Option<String>,
    #[arg(long = "wallet.hotkey", alias = "wallet-hotkey")]
    pub wallet_hotkey: Option<String>,
    #[arg(long = "wallet.path", alias = "wallet-path")]
    pub wallet_path: Option<PathBuf>,
    #[arg(long = "subtensor.network", alias = "subtensor-network")]
    pub subtensor_network: Option<NetworkName>,
    #[arg(long = "subtensor.chain_endpoint", alias = "subtensor-chain-endpoint")]
    pub subtensor_chain_endpoint: Option<String>,
    #[arg(long = "axon.port", alias = "axon-port")]
    pub axon_port: Option<u16>,
    #[arg(long = "neuron.epoch_length", alias = "neuron-epoch-length")]
    pub epoch_length: Option<u64>,
}

#[derive(Debug, Args)]
pub struct MinerArgs {
    #[command(flatten)]
    pub neuron: NeuronArgs,
    #[arg(long = "generate_endpoint", alias = "generate-endpoint")]
    pub generate_endpoint: Option<String>,
    #[arg(long = "info_endpoint", alias = "info-endpoint")]
    pub info_endpoint: Option<String>,
    #[arg(
        long = "blacklist.force_validator_permit",
        alias = "blacklist-force-validator-permit"
    )]
    pub force_validator_permit: bool,
    #[arg(
        long = "blacklist.allow_non_registered",
        alias = "blacklist-allow-non-registered"
    )]
    pub allow_non_registered: bool,
}

#[derive(Debug, Args)]
pub struct ValidatorArgs {
    #[command(flatten)]
    pub neuron: NeuronArgs,
    /// Opt in to the owner's organic traffic on this port.
    #[arg(long = "proxy.port", alias = "proxy-port")]
    pub proxy_port: Option<u16>,
    #[arg(long = "proxy.proxy_client_url", alias = "proxy-proxy-client-url")]
    pub proxy_client_url: Option<String>,
    #[arg(
        long = "proxy.miner_score_threshold",
        alias = "proxy-miner-score-threshold"
    )]
    pub miner_score_threshold: Option<f64>,
    #[arg(
        long = "proxy.checking_probability",
        alias = "proxy-checking-probability"
    )]
    pub checking_probability: Option<f64>,
    #[arg(long = "neuron.axon_off", alias = "axon_off", alias = "axon-off")]
    pub axon_off: bool,
    #[arg(
        long = "neuron.disable_set_weights",
        alias = "neuron-disable-set-weights"
    )]
    pub disable_set_weights: bool,
    #[arg(long = "challenge.prompt", alias = "challenge-prompt")]
    pub challenge_prompt: Option<String>,
    #[arg(long = "challenge.image", alias = "challenge-image")]
    pub challenge_image: Option<String>,
}

fn set<T>(slot: &mut T, value: Option<T>) {
    if let Some(v) = value {
        *slot = v;
    }
}

fn set_flag(slot: &mut bool, given: bool) {
    if given {
        *slot = true;
    }
}

impl NeuronArgs {
    fn apply(&self, c: &mut Config) {
        set(&mut c.subtensor.netuid, self.netuid);
        set(&mut c.wallet.name, self.wallet_name.clone());
        set(&mut c.wallet.hotkey, self.wallet_hotkey.clone());
        set(&mut c.wallet.path, self.wallet_path.clone());
        set(&mut c.subtensor.network, self.subtensor_network.clone());
        if self.subtensor_chain_endpoint.is_some() {
            c.subtensor.chain_endpoint = self.subtensor_chain_endpoint.clone();
        }
        set(&mut c.axon.port, self.axon_port);
        set(&mut c.subtensor.epoch_length, self.epoch_length);
    }
}

impl Cli {
    /// Applies the flags on top of the file/default config (CLI wins).
    pub fn apply(&self, c: &mut Config) {
        if let Some(dir) = self.data_dir.clone() {
            c.node.data_dir = Some(dir);
        }
        set(&mut c.ui.theme, self.theme.clone());
        set(&mut c.node.log_format, self.log_format);
        let Some(role) = &self.command else {
            return;
        };
        match role {
            Role::Endpoint(a) => {
                set(&mut c.endpoint.model_name, a.model_name.clone());
                set(&mut c.endpoint.port, a.port);
                set(&mut c.endpoint.num_replicas, a.num_replicas);
                set(&mut c.endpoint.num_gpus, a.num_gpus);
                set(&mut c.node.device, a.device);
            }
            Role::Reward(a) => {
                set(&mut c.reward.model_name, a.model_name.clone());
                set(&mut c.reward.port, a.port);
                set(&mut c.subtensor.netuid, a.netuid);
                set(&mut c.reward.min_stake, a.min_stake);
                match a.chain_endpoint.clone() {
                    Some(ChainEndpoint::Url(url)) => c.subtensor.chain_endpoint = Some(url),
                    Some(ChainEndpoint::Network(name)) => c.subtensor.network = name,
                    None => {}
                }
                set_flag(&mut c.reward.disable_secure, a.disable_secure);
                set(&mut c.reward.num_replicas, a.num_replicas);
                set(&mut c.reward.num_gpus, a.num_gpus);
            }
            Role::Miner(a) => {
                a.neuron.apply(c);
                set(&mut c.miner.generate_endpoint, a.generate_endpoint.clone());
                set(&mut c.miner.info_endpoint, a.info_endpoint.clone());
                set_flag(
                    &mut c.miner.blacklist.force_validator_permit,
                    a.force_validator_permit,
                );
                set_flag(
                    &mut c.miner.blacklist.allow_non_registered,
                    a.allow_non_registered,
                );
            }
            Role::Validator(a) => {
                a.neuron.apply(c);
                // NicheImage opted in by passing a port.
                if let Some(port) = a.proxy_port {
                    c.proxy.port = port;
                    c.proxy.enabled = true;
                }
                set(&mut c.proxy.owner_api_url, a.proxy_client_url.clone());
                set(&mut c.proxy.miner_score_threshold, a.miner_score_threshold);
                set(&mut c.proxy.checking_probability, a.checking_probability);
                set_flag(&mut c.validator.axon_off, a.axon_off);
                set_flag(&mut c.validator.disable_set_weights, a.disable_set_weights);
                set(
                    &mut c.validator.challenge_prompt_url,
                    a.challenge_prompt.clone(),
                );
                set(
                    &mut c.validator.challenge_image_url,
                    a.challenge_image.clone(),
                );
            }
            Role::TinyCheckpoint { .. } => {}
            Role::Generate(a) => {
                set(&mut c.node.device, a.device);
                set(&mut c.node.dtype, a.dtype);
            }
            Role::Replica(a) => set(&mut c.node.device, Some(a.device)),
            Role::Wallet { action } => action.neuron().apply(c),
            Role::Chain(args) => args.neuron.apply(c),
            Role::Weights { action } => action.neuron().apply(c),
            Role::ProxyClient(_) | Role::Healthcheck(_) => {}
        }
    }
}

#[cfg(test)]
mod duration_tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn durations_with_and_without_units() {
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("60s"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("1.5m"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5d").is_err());
        assert!(parse_duration("0").is_err());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn applied(args: &[&str]) -> Config {
        let cli = Cli::try_parse_from(args).unwrap();
        let mut c = Config::default();
        cli.apply(&mut c);
        c
    }

    #[test]
    fn seed_endpoint_command_line() {
        let c = applied(&[
            "nicheimage-tui",
            "endpoint",
            "--port",
            "10006",
            "--model_name",
            "AnimeV3",
            "--num_replicas",
            "3",
            "--num_gpus",
            "0.33",
        ]);
        assert_eq!(c.endpoint.model_name, "AnimeV3");
        assert_eq!(c.endpoint.num_replicas, 3);
        assert_eq!(c.endpoint.num_gpus, 0.33);
    }

    #[test]
    fn kebab_case_aliases() {
        let c = applied(&[
            "nicheimage-tui",
            "validator",
            "--wallet-name",
            "v",
            "--proxy-port",
            "10003",
            "--axon-port",
            "9000",
            "--axon_off",
        ]);
        assert_eq!(c.wallet.name, "v");
        assert_eq!((c.proxy.port, c.proxy.enabled), (10003, true));
        assert_eq!(c.axon.port, 9000);
        assert!(c.validator.axon_off);
    }

    #[test]
    fn cli_overrides_file_which_overrides_defaults() {
        let mut c = nicheimage_node::config::parse(
            "[wallet]\nname = \"from-file\"\nhotkey = \"file-hot\"\n",
            std::path::Path::new("c.toml"),
        )
        .unwrap();
        let cli =
            Cli::try_parse_from(["nicheimage-tui", "miner", "--wallet.name", "from-cli"]).unwrap();
        cli.apply(&mut c);
        assert_eq!(c.wallet.name, "from-cli");
        assert_eq!(c.wallet.hotkey, "file-hot");
        assert_eq!(c.wallet.path, Config::default().wallet.path);
    }

    #[test]
    fn reward_chain_endpoint_takes_a_network_or_a_url() {
        let c = applied(&[
            "nicheimage-tui",
            "reward",
            "--chain_endpoint",
            "test",
            "--disable_secure",
        ]);
        assert_eq!(c.subtensor.network, NetworkName::Test);
        assert!(c.reward.disable_secure);
        let c = applied(&[
            "nicheimage-tui",
            "reward",
            "--chain_endpoint",
            "ws://127.0.0.1:9944",
        ]);
        assert_eq!(
            c.subtensor.chain_endpoint.as_deref(),
            Some("ws://127.0.0.1:9944")
        );
    }

    #[test]
    fn global_flags() {
        let c = applied(&[
            "nicheimage-tui",
            "--no-ui",
            "--theme",
            "light",
            "--log-format",
            "json",
            "--data-dir",
            "/d",
        ]);
        assert_eq!(c.ui.theme, "light");
        assert_eq!(c.node.log_format, LogFormat::Json);
        assert_eq!(c.node.data_dir.as_deref(), Some(std::path::Path::new("/d")));
    }
}
