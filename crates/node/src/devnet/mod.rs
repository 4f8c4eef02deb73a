//! The local subnet the node runs when no config file is found (or with `--devnet`): its own
//! hotkeys and owner key in the data dir, an embedded chain with them registered, the tiny SD 1.5
//! checkpoint, one generation endpoint the miners share, a reward service, a validator with short
//! rounds and its proxy, a few miners (some misbehaving on purpose, so the scores show the rules
//! at work) and an owner client sending organic traffic through the proxy. Every part is the real
//! component a production node runs; only the chain is the embedded one.

pub mod owner;
pub mod sabotage;
pub mod summary;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::assemble;
use crate::catalogue::{Arch, Defaults, ModelOverride, Pipeline};
use crate::config::Config;
use crate::miner::source::WrapSource;
use crate::runtime::Runtime;
use nicheimage_bittensor::chain::NetworkName;
use nicheimage_bittensor::chain::embedded::EmbeddedChain;
use nicheimage_bittensor::keypair::Keypair;
use nicheimage_bittensor::wallet::Wallet;
use nicheimage_common::scheduler::SchedulerKind;
pub use sabotage::{Sabotage, Saboteur};

/// The model every devnet miner serves.
pub const MODEL: &str = "Tiny";
pub const NETUID: u16 = 23;
/// Seconds per block of the embedded chain: fast enough for weights every few rounds.
const BLOCK_SECS: f64 = 0.5;
/// Blocks between a validator's weight updates (10 s).
const WEIGHTS_RATE_LIMIT: u64 = 20;

/// One devnet miner: its hotkey, axon port and how it behaves.
pub struct DevnetMiner {
    pub name: String,
    pub key: Arc<Keypair>,
    pub port: u16,
    pub sabotage: Option<Sabotage>,
}

/// Everything the devnet made or found in its folder, and the config its components run with.
pub struct Devnet {
    pub dir: PathBuf,
    /// The operator's config with the devnet's models, ports, URLs and keys filled in.
    pub config: Config,
    pub chain: Arc<EmbeddedChain>,
    pub validator: Arc<Keypair>,
    pub miners: Vec<DevnetMiner>,
    /// The subnet owner's key (from `owner.key`), signing the organic traffic.
    pub owner: ed25519_dalek::SigningKey,
}

/// How miner `i` (from 0) behaves: the second answers with the next seed's image, the third
/// answers after the model's timeout; the rest are honest.
pub fn sabotage_for(i: usize, timeout_secs: f64) -> Option<Sabotage> {
    match i {
        1 => Some(Sabotage::WrongSeed),
        2 => Some(Sabotage::Slow(Duration::from_secs_f64(timeout_secs + 2.0))),
        _ => None,
    }
}

/// Why the devnet could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum DevnetError {
    #[error("devnet.miners must be at least 1")]
    NoMiners,
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot find a free loopback port: {0}")]
    Port(std::io::Error),
    #[error(transparent)]
    Model(#[from] crate::engine::TinyModelError),
    #[error("devnet hotkey {name}: {source}")]
    Hotkey {
        name: String,
        source: nicheimage_bittensor::wallet::WalletError,
    },
    #[error(transparent)]
    OwnerKey(#[from] crate::proxy::auth::OwnerKeyError),
    #[error("the devnet's chain: {0}")]
    Chain(#[from] nicheimage_bittensor::chain::embedded::InvalidChain),
    #[error("devnet config: {0}")]
    Config(#[from] crate::config::ConfigError),
}

fn free_port() -> Result<u16, DevnetError> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(DevnetError::Port)
}

/// The hotkey `name` of the devnet wallet, created on first use.
fn hotkey(wallets: &Path, name: &str) -> Result<Arc<Keypair>, DevnetError> {
    let wallet = Wallet::new(wallets, "devnet", name);
    let key = if wallet.hotkey_path().exists() {
        wallet.load_hotkey(None).map(|l| l.keypair)
    } else {
        wallet.create_hotkey(nicheimage_bittensor::keypair::CryptoType::Sr25519)
    };
    key.map(Arc::new).map_err(|source| DevnetError::Hotkey {
        name: name.to_string(),
        source,
    })
}

/// The embedded chain's seed file: the validator with stake and a permit, the miners with a
/// little stake and no axon yet (they announce their own). The subnet runs today's defaults:
/// stateful epochs and commit-reveal v4 (timelocked to the chain's beacon), with the beacon's
/// pulses `beacon_delay_secs` late.
fn chain_file(validator: &Keypair, miners: &[DevnetMiner], beacon_delay_secs: f64) -> String {
    let mut text = format!(
        "# Written by the devnet at every start; edit [devnet] in the config instead.\n\
         block_time_secs = {BLOCK_SECS}\nstart_block = 1000\nbeacon_delay_secs = {beacon_delay_secs:?}\n\n\
         [[subnet]]\nnetuid = {NETUID}\ntempo = 20\nweights_rate_limit = {WEIGHTS_RATE_LIMIT}\n\
         weights_version_key = 10\nserving_rate_limit = 0\nmin_stake_to_set_weights = 1000.0\n\n\
         [[subnet.neuron]]\n# validator\nhotkey = \"{}\"\nstake = 100000.0\nvalidator_permit = true\n",
        validator.ss58()
    );
    for m in miners {
        text.push_str(&format!(
            "\n[[subnet.neuron]]\n# {}\nhotkey = \"{}\"\nstake = 10.0\n",
            m.name,
            m.key.ss58()
        ));
    }
    text
}

/// Makes (or reuses) the devnet's files under `<data_dir>/devnet` and derives the config its
/// components run with from `base`.
pub fn prepare(base: &Config, data_dir: &Path) -> Result<Devnet, DevnetError> {
    let d = &base.devnet;
    if d.miners == 0 {
        return Err(DevnetError::NoMiners);
    }
    let dir = data_dir.join("devnet");
    std::fs::create_dir_all(&dir).map_err(|source| DevnetError::Io {
        action: "create",
        path: dir.clone(),
        source,
    })?;
    let checkpoint = crate::engine::tiny_checkpoint(&dir.join("model"), d.model)?;
    // NicheImage's ControlNets are SD 1.5 nets; FLUX serves txt2img only.
    let (controlnets, pipelines) = match d.model {
        Arch::Sd15 => (
            crate::engine::tiny_controlnets(&dir.join("model").join("controlnet"))?,
            vec![
                Pipeline::Txt2img,
                Pipeline::Img2img,
                Pipeline::ControlnetTxt2img,
            ],
        ),
        Arch::Sdxl => (
            base.endpoint.controlnet_dir.clone(),
            vec![Pipeline::Txt2img, Pipeline::Img2img],
        ),
        Arch::Flux => (
            base.endpoint.controlnet_dir.clone(),
            vec![Pipeline::Txt2img],
        ),
    };
    let wallets = dir.join("wallets");
    let validator = hotkey(&wallets, "validator")?;
    let mut miners = Vec::new();
    for i in 0..d.miners {
        let name = format!("miner-{}", i + 1);
        miners.push(DevnetMiner {
            key: hotkey(&wallets, &name)?,
            port: free_port()?,
            sabotage: sabotage_for(i as usize, d.timeout_secs),
            name,
        });
    }
    let owner_file = dir.join("owner.key");
    if !owner_file.exists() {
        crate::proxy::auth::create_signing_key(&owner_file)?;
    }
    let owner = crate::proxy::auth::load_signing_key(&owner_file)?;
    let owner_public = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(owner.verifying_key().as_bytes())
    };

    let seed = chain_file(&validator, &miners, d.beacon_delay_secs);
    let chain_path = dir.join("chain.toml");
    std::fs::write(&chain_path, &seed).map_err(|source| DevnetError::Io {
        action: "write",
        path: chain_path.clone(),
        source,
    })?;
    let chain = Arc::new(EmbeddedChain::from_toml(&seed)?);

    let mut c = base.clone();
    c.models.insert(
        MODEL.into(),
        ModelOverride {
            arch: Some(d.model),
            checkpoint: Some(checkpoint),
            scheduler: Some(SchedulerKind::DpmPp2mKarras),
            defaults: Some(Defaults {
                num_inference_steps: Some(4),
                width: Some(64),
                height: Some(64),
                // schnell runs without guidance.
                guidance_scale: (d.model == Arch::Flux).then_some(0.0),
                ..Default::default()
            }),
            timeout_secs: Some(d.timeout_secs),
            incentive_weight: Some(1.0),
            // There is no real classifier offline, and a random tiny one would black out
            // random images.
            nsfw_filter: Some(false),
            // Every pipeline the architecture serves, the conditional images of img2img and
            // ControlNet challenges drawn by the reward service's /challenge/image, at the tiny
            // model's size.
            pipelines: Some(pipelines),
            condition_resolution: Some(64),
            ..Default::default()
        },
    );
    c.subtensor.network = NetworkName::Embedded;
    c.subtensor.chain_endpoint = None;
    c.subtensor.netuid = NETUID;
    c.subtensor.block_time_secs = BLOCK_SECS;
    c.subtensor.epoch_length = 10;
    c.subtensor.embedded_chain_file = Some(chain_path);
    let (endpoint_port, reward_port, proxy_port) = (free_port()?, free_port()?, free_port()?);
    let endpoint_base = format!("http://127.0.0.1:{endpoint_port}");
    c.endpoint.enabled = true;
    c.endpoint.model_name = MODEL.into();
    c.endpoint.host = std::net::Ipv4Addr::LOCALHOST.into();
    c.endpoint.port = endpoint_port;
    c.endpoint.num_replicas = d.replicas;
    c.endpoint.controlnet_dir = controlnets;
    c.endpoint.remote_endpoints.clear();
    // The reward service regenerates through the same endpoint, over HTTP, instead of loading
    // its own replicas: one model in memory on a laptop.
    // Everything on loopback: a laptop's devnet is nobody else's business.
    c.axon.host = std::net::Ipv4Addr::LOCALHOST.into();
    c.reward.host = std::net::Ipv4Addr::LOCALHOST.into();
    c.reward.model_name = MODEL.into();
    c.reward.port = reward_port;
    c.reward.disable_secure = false;
    c.reward.num_replicas = 0;
    c.reward.remote_endpoints = vec![endpoint_base.clone()];
    c.reward.rate_limit_per_minute = 100_000;
    c.miner.generate_endpoint = format!("{endpoint_base}/generate");
    c.miner.info_endpoint = format!("{endpoint_base}/info");
    c.miner.metagraph_resync_secs = 10;
    // NicheImage's 10 requests per 10 000 stake per 10 minutes would stop a validator that asks
    // every few seconds; the devnet's miners allow plenty, per minute.
    c.miner.blacklist.window_secs = 60;
    c.miner.blacklist.requests_per_unit = 1000;
    c.validator.reward_url = format!("http://127.0.0.1:{reward_port}/");
    c.validator.challenge_prompt_url = String::new();
    c.validator.challenge_image_url = format!("http://127.0.0.1:{reward_port}/challenge/image");
    c.validator.fast_loop_secs = d.round_secs;
    c.validator.loop_secs = d.round_secs;
    c.validator.info_timeout_secs = 5;
    c.validator.state_file = Some(dir.join("validator-state.json"));
    c.validator.disable_set_weights = false;
    // Everything is on loopback here.
    c.validator.dial_private_axons = true;
    c.proxy.host = std::net::Ipv4Addr::LOCALHOST.into();
    c.proxy.port = proxy_port;
    c.proxy.enabled = true;
    c.proxy.owner_public_key = Some(owner_public);
    // The devnet's owner is local: no owner API to ask for credentials.
    c.proxy.owner_api_url = String::new();
    c.proxy.legacy_auth = false;
    c.proxy.checking_probability = 0.25;
    c.proxy.counter_file = Some(dir.join("proxy_counter.json"));
    c.metrics.listen = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()?));
    c.validate()?;
    Ok(Devnet {
        dir,
        config: c,
        chain,
        validator,
        miners,
        owner,
    })
}

impl Devnet {
    pub fn proxy_url(&self) -> String {
        format!(
            "http://127.0.0.1:{}/validator_proxy",
            self.config.proxy.port
        )
    }

    /// Adds every devnet component to `runtime` (telemetry and metrics come from
    /// [`assemble::build`]).
    pub fn add_to(&self, runtime: &mut Runtime) -> Result<(), assemble::SetupError> {
        let c = &self.config;
        let chain: Arc<dyn nicheimage_bittensor::chain::Chain> = self.chain.clone();
        assemble::add_endpoint(runtime, c, &self.dir)?;
        assemble::add_chain_watch(
            runtime,
            c,
            chain.clone(),
            Some(self.validator.ss58().to_string()),
        )?;
        assemble::add_reward(runtime, c, &self.dir, Some(chain.clone()))?;
        assemble::add_validator(runtime, c, &self.dir, chain.clone(), self.validator.clone())?;
        for m in &self.miners {
            let mut mc = c.clone();
            mc.axon.port = m.port;
            assemble::add_miner(
                runtime,
                &mc,
                chain.clone(),
                m.key.clone(),
                assemble::MinerRole {
                    name: m.name.clone(),
                    wrap: m.sabotage.map(|sabotage| -> WrapSource {
                        Box::new(move |honest| Arc::new(Saboteur { honest, sabotage }))
                    }),
                },
            )?;
        }
        runtime.add(Arc::new(owner::OwnerTraffic {
            url: self.proxy_url(),
            key: self.owner.clone(),
            model: MODEL.into(),
            every: Duration::from_secs_f64(c.devnet.organic_every_secs.max(0.5)),
            timeout: Duration::from_secs_f64(c.devnet.timeout_secs * 4.0),
        }))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_second_and_third_miners_misbehave() {
        assert_eq!(sabotage_for(0, 4.0), None);
        assert_eq!(sabotage_for(1, 4.0), Some(Sabotage::WrongSeed));
        assert_eq!(
            sabotage_for(2, 4.0),
            Some(Sabotage::Slow(Duration::from_secs(6)))
        );
        assert_eq!(sabotage_for(3, 4.0), None);
    }

    #[test]
    fn the_chain_file_registers_everyone_and_parses() {
        let key = |n: u8| Arc::new(Keypair::from_mini_secret(&[n; 32]).unwrap());
        let miners: Vec<DevnetMiner> = (0..3)
            .map(|i| DevnetMiner {
                name: format!("miner-{}", i + 1),
                key: key(2 + i),
                port: 1,
                sabotage: None,
            })
            .collect();
        let text = chain_file(&key(1), &miners, 0.0);
        let chain = EmbeddedChain::from_toml(&text).unwrap();
        let uid = chain.register(NETUID, key(9).ss58(), 0.0, false).unwrap();
        assert_eq!(uid, 4, "validator + 3 miners come first");
    }
}
