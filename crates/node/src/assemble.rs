//! Builds the node from the effective config: which components run, and with what settings.

use crate::catalogue;
use crate::chain_watch::ChainWatch;
use crate::config::{Config, DeviceChoice};
use crate::endpoint::Endpoint;
use crate::metrics::MetricsServer;
use crate::miner::source::WrapSource;
use crate::miner::{EndpointClient, ImageSource, Miner, MinerSettings};
use crate::replica::args::ReplicaArgs;
use crate::replica::{PoolConfig, ReplicaCommand};
use crate::runtime::{DuplicateComponent, EventChannel, Runtime};
use crate::telemetry::Telemetry;
use nicheimage_bittensor::chain::embedded::{ChainFileError, EmbeddedChain};
use nicheimage_bittensor::chain::subtensor::SubtensorChain;
use nicheimage_bittensor::chain::{Chain, Network, NetworkName};
use nicheimage_bittensor::keypair::Keypair;
use nicheimage_bittensor::wallet::{self, Wallet, WalletError};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Why the configured node cannot be put together (nothing has started yet).
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(transparent)]
    Duplicate(#[from] DuplicateComponent),
    #[error(transparent)]
    Catalogue(#[from] catalogue::CatalogueError),
    #[error("cannot find this program's path: {0}")]
    ProgramPath(std::io::Error),
    #[error(transparent)]
    Hotkey(#[from] WalletError),
    #[error("the neuron needs its hotkey: {0}")]
    NeuronHotkey(WalletError),
    #[error(transparent)]
    ChainFile(#[from] ChainFileError),
    #[error("the built-in embedded chain: {0}")]
    EmbeddedChain(nicheimage_bittensor::chain::embedded::InvalidChain),
    #[error(transparent)]
    Http(#[from] nicheimage_common::http::HttpError),
    #[error("the reward service needs the chain for its allow-list (or --disable_secure)")]
    RewardNeedsChain,
    #[error("proxy.owner_public_key: {0}")]
    OwnerKey(crate::proxy::auth::BadPublicKey),
    #[error("subtensor.network: {0}")]
    Network(nicheimage_bittensor::chain::UnknownNetwork),
}

/// The components available in this build. Roles (endpoint, miner, validator, proxy, reward)
/// join this list as they are built.
pub fn build(config: &Config, channel: EventChannel) -> Result<Runtime, SetupError> {
    let mut runtime = Runtime::new(config.supervisor.clone(), channel);
    runtime.add(Arc::new(Telemetry {
        interval: Duration::from_secs(config.node.telemetry_interval_secs),
        device: config.node.device,
    }))?;
    if config.metrics.enabled {
        runtime.add(Arc::new(MetricsServer {
            listen: config.metrics.listen,
            limits: config.limits,
        }))?;
    }
    Ok(runtime)
}

/// Adds the generation endpoint for `config.endpoint.model_name` to `runtime`, with replica
/// commands routed to it; its replicas run as `<this program> replica ...`.
pub fn add_endpoint(
    runtime: &mut Runtime,
    config: &Config,
    data_dir: &Path,
) -> Result<(), SetupError> {
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let endpoint = endpoint(config, data_dir, rx)?;
    runtime.route_replica_commands(tx);
    runtime.add(Arc::new(endpoint))?;
    Ok(())
}

fn endpoint(
    config: &Config,
    data_dir: &Path,
    commands: tokio::sync::mpsc::Receiver<crate::runtime::Command>,
) -> Result<Endpoint, SetupError> {
    let models = catalogue::catalogue(&config.models)?;
    let mut model = catalogue::lookup(&models, &config.endpoint.model_name)?.clone();
    let checkpoint = under_checkpoints(data_dir, &model.checkpoint);
    let program = std::env::current_exe().map_err(SetupError::ProgramPath)?;
    let mut args = ReplicaArgs {
        checkpoint: checkpoint.clone(),
        config_dir: None,
        scheduler: model.scheduler,
        device: config.node.device,
        dtype: config.node.dtype,
        nsfw_classifier: None,
        controlnet_dir: None,
    };
    let e = &config.endpoint;
    let mut nsfw_filter = false;
    if model.nsfw_filter {
        let classifier = under_checkpoints(data_dir, &e.nsfw_classifier);
        const FILES: [&str; 3] = [
            "config.json",
            "model.safetensors",
            "preprocessor_config.json",
        ];
        if FILES.iter().all(|f| classifier.join(f).is_file()) {
            nsfw_filter = true;
            args.nsfw_classifier = Some(classifier);
        } else {
            tracing::warn!(
                model = %model.name,
                path = %classifier.display(),
                "NSFW filter off: no classifier there; put Falconsai/nsfw_image_detection's config.json, model.safetensors and preprocessor_config.json in that folder (validators penalise images their filter would have blacked out)"
            );
        }
    }
    let listed = model.pipelines.clone();
    let controlnet_dir = controlnet_dir(&mut model, e, data_dir);
    let pipelines_off = listed
        .iter()
        .filter(|p| !model.pipelines.contains(p))
        .map(|p| p.name().to_string())
        .collect();
    args.controlnet_dir = controlnet_dir.clone();
    let listen = std::net::SocketAddr::new(e.host, e.port);
    Ok(Endpoint {
        model,
        commands: Arc::new(tokio::sync::Mutex::new(commands)),
        checkpoint,
        listen,
        limits: config.limits,
        nsfw_filter,
        controlnet_dir,
        pipelines_off,
        pool: PoolConfig {
            replicas: e.num_replicas as usize,
            gpus_per_replica: if uses_gpus(config.node.device) {
                e.num_gpus
            } else {
                0.0
            },
            queue_capacity: e.queue_capacity,
            request_timeout: Duration::from_secs(e.request_timeout_secs),
            load_timeout: Duration::from_secs(e.load_timeout_secs),
            backoff_initial: Duration::from_millis(config.supervisor.backoff_initial_ms),
            backoff_max: Duration::from_millis(config.supervisor.backoff_max_ms),
            command: ReplicaCommand {
                program,
                args: args.to_args(),
            },
            remote: e.remote_endpoints.clone(),
        },
    })
}

/// For a model serving controlnet_txt2img on local replicas: the folder they load NicheImage's
/// ControlNets and annotators from. When files are missing the pipeline is dropped, with a
/// warning naming them, and the rest is served (ControlNet requests then get a 400 listing the
/// pipelines that are).
fn controlnet_dir(
    model: &mut catalogue::ModelSpec,
    e: &crate::config::EndpointConfig,
    data_dir: &Path,
) -> Option<std::path::PathBuf> {
    let cn = catalogue::Pipeline::ControlnetTxt2img;
    if !crate::engine::LOCAL || !model.pipelines.contains(&cn) || e.num_replicas == 0 {
        return None;
    }
    if model.arch != catalogue::Arch::Sd15 {
        // NicheImage's three ControlNets are SD 1.5 nets; it never offered them for SDXL.
        model.pipelines.retain(|p| *p != cn);
        tracing::warn!(model = %model.name, "controlnet_txt2img off: NicheImage's ControlNets are for SD 1.5 models only");
        return None;
    }
    if model.condition_resolution() != 512 {
        tracing::info!(
            model = %model.name,
            resolution = model.condition_resolution(),
            "controlnet_txt2img: controlnet_aux detects at 512; at another condition_resolution our maps (made at the image's size) differ from NicheImage's"
        );
    }
    let dir = under_checkpoints(data_dir, &e.controlnet_dir);
    let missing = crate::engine::missing_controlnets(&dir)?;
    if missing.is_empty() {
        return Some(dir);
    }
    model.pipelines.retain(|p| *p != cn);
    let list: Vec<String> = missing
        .iter()
        .map(|(path, url)| format!("{} (from {url})", path.display()))
        .collect();
    tracing::warn!(
        model = %model.name,
        missing = %list.join(", "),
        "controlnet_txt2img off: its ControlNets or annotator checkpoints are missing (validators score refused requests 0)"
    );
    None
}

/// A configured path; relative ones are under the data dir's `checkpoints/`.
fn under_checkpoints(data_dir: &Path, path: &Path) -> std::path::PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        data_dir.join("checkpoints").join(path)
    }
}

/// Whether replicas get GPUs: `auto` only where the NVIDIA driver shows one (otherwise they
/// run on the CPU and must not be listed as placed on GPUs).
fn uses_gpus(device: DeviceChoice) -> bool {
    match device {
        DeviceChoice::Cpu => false,
        DeviceChoice::Cuda => true,
        DeviceChoice::Auto => crate::telemetry::gpu::memory().is_some_and(|g| !g.totals.is_empty()),
    }
}

/// The operator's hotkey from `[wallet]`; an encrypted one takes its password from
/// `NICHEIMAGE_WALLET_PASSWORD`. Permission warnings go to the log.
pub fn load_hotkey(config: &Config) -> Result<Keypair, WalletError> {
    let w = &config.wallet;
    let password = wallet::password_from_env();
    let loaded = Wallet::new(&w.path, &w.name, &w.hotkey)
        .load_hotkey(password.as_ref().map(|p| p.as_str()))?;
    for warning in &loaded.warnings {
        tracing::warn!("{warning}");
    }
    Ok(loaded.keypair)
}

/// The chain `[subtensor]` names: a subtensor node, or the embedded chain seeded from its file
/// (with `hotkey` registered on each subnet if missing, so the local node has a uid).
pub fn open_chain(config: &Config, hotkey: Option<&str>) -> Result<Arc<dyn Chain>, SetupError> {
    let s = &config.subtensor;
    match s
        .network
        .resolve(s.chain_endpoint.as_deref())
        .map_err(SetupError::Network)?
    {
        Network::Remote { name, url } => Ok(Arc::new(
            SubtensorChain::new(&name, &url).with_block_time(s.block_time_secs),
        )),
        Network::Embedded => {
            let chain = match &s.embedded_chain_file {
                Some(path) => EmbeddedChain::load(path)?,
                None => EmbeddedChain::from_toml(nicheimage_bittensor::chain::embedded::EXAMPLE)
                    .map_err(SetupError::EmbeddedChain)?,
            };
            if let Some(hotkey) = hotkey
                && chain.register(s.netuid, hotkey, 0.0, false).is_ok()
            {
                tracing::info!(%hotkey, netuid = s.netuid, "registered our hotkey on the embedded chain");
            }
            Ok(Arc::new(chain))
        }
    }
}

/// Adds the chain watcher over `chain`, following `hotkey` if one is loaded.
pub fn add_chain_watch(
    runtime: &mut Runtime,
    config: &Config,
    chain: Arc<dyn Chain>,
    hotkey: Option<String>,
) -> Result<(), SetupError> {
    runtime.add(Arc::new(ChainWatch {
        chain,
        netuid: config.subtensor.netuid,
        hotkey,
        block_time: Duration::from_secs_f64(config.subtensor.block_time_secs),
        metagraph_every: config.subtensor.epoch_length.max(1),
    }))?;
    Ok(())
}

/// The address the miner announces: `axon.external_ip` (and `external_port`, else the bound
/// port); on the embedded chain, loopback by default.
fn published_axon(config: &Config) -> Option<(std::net::IpAddr, u16)> {
    let port = config.axon.external_port.unwrap_or(config.axon.port);
    match config.axon.external_ip {
        Some(ip) => Some((ip, port)),
        None if config.subtensor.network == NetworkName::Embedded => {
            Some(([127, 0, 0, 1].into(), port))
        }
        None => None,
    }
}

/// Which miner this is among the node's: its component name, and (devnet only) a wrapper
/// around its image source that misbehaves on purpose.
pub struct MinerRole {
    pub name: String,
    pub wrap: Option<WrapSource>,
}

impl Default for MinerRole {
    fn default() -> Self {
        Self {
            name: "miner".into(),
            wrap: None,
        }
    }
}

/// Adds the miner neuron, signing with `hotkey` on `chain`.
pub fn add_miner(
    runtime: &mut Runtime,
    config: &Config,
    chain: Arc<dyn Chain>,
    hotkey: Arc<Keypair>,
    role: MinerRole,
) -> Result<(), SetupError> {
    let m = &config.miner;
    let endpoint: Arc<dyn ImageSource> = Arc::new(EndpointClient::new(
        &m.generate_endpoint,
        &m.info_endpoint,
        Duration::from_secs(m.generate_timeout_secs),
    )?);
    let settings = MinerSettings {
        name: role.name,
        source: match role.wrap {
            Some(wrap) => wrap(endpoint),
            None => endpoint,
        },
        netuid: config.subtensor.netuid,
        listen: std::net::SocketAddr::new(config.axon.host, config.axon.port),
        publish: published_axon(config),
        self_test: m.reachability_self_test,
        blacklist: {
            let (tx, rx) = tokio::sync::watch::channel(m.blacklist.clone());
            runtime.route_blacklist(tx);
            rx
        },
        resync_every: Duration::from_secs(m.metagraph_resync_secs.max(1)),
        limits: config.limits,
        max_timeout_secs: crate::catalogue::catalogue(&config.models)
            .map(|models| models.values().map(|m| m.timeout_secs).fold(0.0, f64::max))
            .ok()
            .filter(|t| *t > 0.0)
            .unwrap_or(nicheimage_bittensor::axon::DEFAULT_MAX_TIMEOUT_SECS),
    };
    runtime.add(Arc::new(Miner {
        settings,
        chain,
        keypair: hotkey,
    }))?;
    Ok(())
}

/// Adds the reward service for `[reward]`'s model: its own replica pool (`reward.num_replicas`,
/// `reward.num_gpus`) and, unless `disable_secure`, an allow-list read from `chain`.
pub fn add_reward(
    runtime: &mut Runtime,
    config: &Config,
    data_dir: &Path,
    chain: Option<Arc<dyn Chain>>,
) -> Result<(), SetupError> {
    let r = &config.reward;
    let mut generation = config.clone();
    generation.endpoint.model_name = r.model_name.clone();
    generation.endpoint.num_replicas = r.num_replicas;
    generation.endpoint.num_gpus = r.num_gpus;
    generation.endpoint.remote_endpoints = r.remote_endpoints.clone();
    // Replica commands are not routed to the reward pool; the channel just has to exist.
    let (_commands, receiver) = tokio::sync::mpsc::channel(1);
    let generation = endpoint(&generation, data_dir, receiver)?;
    let allowlist = match (r.disable_secure, chain) {
        (true, _) => None,
        (false, Some(chain)) => Some(crate::reward::Allowlist {
            chain,
            netuid: config.subtensor.netuid,
            min_stake: r.min_stake,
        }),
        (false, None) => return Err(SetupError::RewardNeedsChain),
    };
    runtime.add(Arc::new(crate::reward::RewardService {
        generation,
        listen: std::net::SocketAddr::new(r.host, r.port),
        allowlist,
        rate_per_minute: r.rate_limit_per_minute.max(1),
    }))?;
    Ok(())
}

/// Adds the validator neuron, signing with `hotkey` on `chain`, and its proxy (listening only
/// while switched on).
pub fn add_validator(
    runtime: &mut Runtime,
    config: &Config,
    data_dir: &Path,
    chain: Arc<dyn Chain>,
    hotkey: Arc<Keypair>,
) -> Result<(), SetupError> {
    let v = &config.validator;
    let models: Vec<catalogue::ModelSpec> = catalogue::catalogue(&config.models)?
        .into_values()
        .collect();
    let state_path = v
        .state_file
        .clone()
        .unwrap_or_else(|| data_dir.join("validator-state.json"));
    let shared = Arc::new(crate::validator::ValidatorShared::load(&state_path));
    let settings = crate::validator::ValidatorSettings {
        netuid: config.subtensor.netuid,
        models: models.clone(),
        reward_url: v.reward_url.clone(),
        challenge_prompt_url: v.challenge_prompt_url.clone(),
        challenge_image_url: v.challenge_image_url.clone(),
        info_timeout: Duration::from_secs(v.info_timeout_secs),
        fast_loop: Duration::from_secs(v.fast_loop_secs),
        fast_steps: v.fast_steps,
        slow_loop: Duration::from_secs(v.loop_secs),
        state_path,
        commits_path: nicheimage_bittensor::chain::commit::commits_path(data_dir),
        version_key: 10,
        set_weights: !v.disable_set_weights,
        // A local chain's miners are on private addresses by nature.
        dial_private_axons: v.dial_private_axons
            || matches!(
                config.subtensor.network,
                nicheimage_bittensor::chain::NetworkName::Local
                    | nicheimage_bittensor::chain::NetworkName::Embedded
            ),
        scheme: v.signed_requests.scheme(),
    };
    runtime.add(Arc::new(crate::validator::Validator {
        settings,
        chain: chain.clone(),
        keypair: hotkey.clone(),
        shared: shared.clone(),
    }))?;
    add_proxy(runtime, config, data_dir, chain, hotkey, shared, models)
}

fn add_proxy(
    runtime: &mut Runtime,
    config: &Config,
    data_dir: &Path,
    chain: Arc<dyn Chain>,
    hotkey: Arc<Keypair>,
    validator: Arc<crate::validator::ValidatorShared>,
    models: Vec<catalogue::ModelSpec>,
) -> Result<(), SetupError> {
    let p = &config.proxy;
    let owner_public_key = p
        .owner_public_key
        .as_deref()
        .map(crate::proxy::auth::parse_public_key)
        .transpose()
        .map_err(SetupError::OwnerKey)?;
    let host = p.host;
    let toggle_path = data_dir.join("proxy-enabled.json");
    let enabled = crate::proxy::remembered_choice(&toggle_path).unwrap_or(p.enabled);
    let (toggle_tx, toggle_rx) = tokio::sync::watch::channel(enabled);
    runtime.route_proxy_toggle(toggle_tx);
    let settings = crate::proxy::ProxySettings {
        listen: std::net::SocketAddr::new(host, p.port),
        netuid: config.subtensor.netuid,
        models: models.into_iter().map(|m| (m.name.clone(), m)).collect(),
        reward_url: config.validator.reward_url.clone(),
        owner_public_key,
        owner_api_url: p.owner_api_url.clone(),
        allow_insecure_owner_api: p.allow_insecure_owner_api,
        credentials_refresh: Duration::from_secs(p.credentials_refresh_secs.max(10)),
        legacy_auth: p.legacy_auth,
        max_age: Duration::from_secs(p.max_age_secs.max(1)),
        miner_score_threshold: p.miner_score_threshold,
        checking_probability: p.checking_probability,
        max_concurrent: p.max_concurrent.max(1),
        rate_limit_per_minute: p.rate_limit_per_minute,
        unauthenticated_per_minute: p.unauthenticated_per_minute,
        scheme: config.validator.signed_requests.scheme(),
        limits: config.limits,
        counter_path: p
            .counter_file
            .clone()
            .unwrap_or_else(|| data_dir.join("proxy_counter.json")),
        toggle_path,
    };
    runtime.add(Arc::new(crate::proxy::Proxy {
        settings: Arc::new(settings),
        validator,
        keypair: hotkey,
        chain,
        toggle: toggle_rx,
    }))?;
    Ok(())
}

/// Which chain-backed roles this run has.
#[derive(Debug, Clone, Copy, Default)]
pub struct ChainRoles {
    pub mines: bool,
    pub rewards: bool,
    pub validates: bool,
}

/// The chain, opened once and shared: the watcher always, the miner when asked. A miner without a
/// loadable hotkey cannot start; the watcher then just watches the subnet.
pub fn add_chain_roles(
    runtime: &mut Runtime,
    config: &Config,
    data_dir: &std::path::Path,
    roles: ChainRoles,
) -> Result<(), SetupError> {
    let ChainRoles {
        mines,
        rewards,
        validates,
    } = roles;
    if rewards && config.reward.disable_secure {
        // No allow-list: the reward service needs no chain at all.
        return add_reward(runtime, config, data_dir, None);
    }
    let hotkey = match load_hotkey(config) {
        Ok(key) => Some(std::sync::Arc::new(key)),
        Err(e) if mines || validates => return Err(SetupError::NeuronHotkey(e)),
        Err(e) => {
            tracing::warn!("no hotkey for the chain view: {e}");
            None
        }
    };
    let address = hotkey.as_ref().map(|k| k.ss58().to_string());
    let chain = open_chain(config, address.as_deref())?;
    add_chain_watch(runtime, config, chain.clone(), address)?;
    if rewards {
        add_reward(runtime, config, data_dir, Some(chain.clone()))?;
    }
    if let (true, Some(key)) = (validates, hotkey.clone()) {
        add_validator(runtime, config, data_dir, chain.clone(), key)?;
    }
    if let (true, Some(key)) = (mines, hotkey) {
        add_miner(runtime, config, chain, key, MinerRole::default())?;
    }
    Ok(())
}
