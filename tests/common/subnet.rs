//! A small subnet on loopback for the validator and proxy tests: the tiny SD 1.5 checkpoint,
//! a real endpoint and a real reward service (the binary, headless), and miners in this process
//! — each its own hotkey and axon, honest or misbehaving on purpose — registered on an
//! embedded chain next to the validator's hotkey (uid 0).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use nicheimage_bittensor::axon::{AxonBuilder, Caller, Handler, RunningAxon};
use nicheimage_bittensor::chain::embedded::EmbeddedChain;
use nicheimage_bittensor::keypair::Keypair;
use nicheimage_bittensor::synapse::ImageGenerating;
use nicheimage_engine::tiny::write_tiny_sd15;
use nicheimage_node::catalogue::{self, Arch, ModelOverride, ModelSpec};
use nicheimage_node::miner::endpoint_client::EndpointClient;
use serde_json::Value;

use super::{Headless, free_port, start};

#[derive(Clone, Copy, Debug)]
pub enum Behaviour {
    Honest,
    /// Answers with the image of the next seed.
    WrongSeed,
    /// Sleeps this many seconds, then answers honestly.
    Slow(u64),
    /// Answers with a 74-byte PNG whose header claims 200000×200000.
    LyingPng,
}

pub struct TestMiner {
    behaviour: Behaviour,
    endpoint: EndpointClient,
    /// Generation requests seen (info queries not counted).
    pub calls: AtomicU64,
}

impl Handler<ImageGenerating> for TestMiner {
    type Error = std::io::Error;

    /// As a real miner's blacklist: only the subnet's validator (uid 0) is served.
    fn blacklist(&self, caller: &Caller) -> Result<(), std::io::Error> {
        if caller.hotkey == key(1).ss58() {
            Ok(())
        } else {
            Err(std::io::Error::other(format!(
                "{} is not a validator of this subnet",
                caller.hotkey
            )))
        }
    }

    fn forward(
        self: Arc<Self>,
        _: Caller,
        mut s: ImageGenerating,
    ) -> BoxFuture<'static, Result<ImageGenerating, std::io::Error>> {
        async move {
            if !s.request_dict.is_empty() {
                s.response_dict
                    .insert("model_name".into(), Value::String("Tiny".into()));
                return Ok(s);
            }
            self.calls.fetch_add(1, Ordering::SeqCst);
            let mut request = s.clone();
            match self.behaviour {
                Behaviour::Honest => {}
                Behaviour::WrongSeed => request.seed += 1,
                Behaviour::Slow(secs) => tokio::time::sleep(Duration::from_secs(secs)).await,
                Behaviour::LyingPng => {
                    use base64::Engine;
                    let png = nicheimage_common::image::png_claiming(200_000, 200_000);
                    s.image = Value::String(base64::engine::general_purpose::STANDARD.encode(png));
                    return Ok(s);
                }
            }
            s.image = Value::String(
                self.endpoint
                    .generate(&request)
                    .await
                    .map_err(std::io::Error::other)?,
            );
            Ok(s)
        }
        .boxed()
    }
}

pub fn key(n: u8) -> Arc<Keypair> {
    Arc::new(Keypair::from_mini_secret(&[n; 32]).unwrap())
}

pub struct Subnet {
    pub dir: tempfile::TempDir,
    pub checkpoint: PathBuf,
    /// The catalogue entry "Tiny" (64×64, 4 steps) with this `timeout_secs`.
    pub model: ModelSpec,
    pub reward_port: u16,
    pub validator_key: Arc<Keypair>,
    /// Miner `i` is uid `i + 1`.
    pub miners: Vec<Arc<TestMiner>>,
    pub axons: Vec<RunningAxon>,
    pub chain: Arc<EmbeddedChain>,
    endpoint: Option<Headless>,
    reward: Option<Headless>,
}

impl Subnet {
    pub async fn start(behaviours: &[Behaviour], timeout_secs: f64) -> Subnet {
        let dir = tempfile::tempdir().unwrap();
        let checkpoint = write_tiny_sd15(&dir.path().join("model"), "tiny-sd15").unwrap();
        let model = format!(
            "[models.Tiny]\narch = \"sd15\"\ncheckpoint = \"{}\"\nscheduler = \"dpm++2m_karras\"\n\
             pipelines = [\"txt2img\", \"img2img\"]\n\
             [models.Tiny.defaults]\nnum_inference_steps = 4\nwidth = 64\nheight = 64\n",
            checkpoint.display()
        );
        let (endpoint_port, reward_port) = (free_port(), free_port());
        let base = format!(
            "[node]\nstatus_interval_secs = 1\ndevice = \"cpu\"\n[metrics]\nenabled = false\n{model}"
        );
        let (e_dir, r_dir) = (dir.path().join("endpoint"), dir.path().join("reward"));
        std::fs::create_dir_all(&e_dir).unwrap();
        std::fs::create_dir_all(&r_dir).unwrap();
        // Deep queues: the load tests send hundreds of requests at once.
        let endpoint = start(
            &e_dir,
            &["endpoint"],
            &format!(
                "{base}[endpoint]\nmodel_name = \"Tiny\"\nhost = \"127.0.0.1\"\nport = {endpoint_port}\nnum_replicas = 1\nqueue_capacity = 1024\nrequest_timeout_secs = 600\n"
            ),
        );
        let reward = start(
            &r_dir,
            &["reward", "--disable_secure"],
            &format!(
                "{base}[endpoint]\nqueue_capacity = 1024\nrequest_timeout_secs = 600\n[reward]\nmodel_name = \"Tiny\"\nport = {reward_port}\nrate_limit_per_minute = 100000\n"
            ),
        );
        endpoint.status_within(120, "a ready replica", |v| {
            v["replicas"]["0"]["status"] == "ready"
        });
        reward.status_within(120, "a ready replica", |v| {
            v["replicas"]["0"]["status"] == "ready"
        });

        let mut miners = Vec::new();
        let mut axons = Vec::new();
        for (i, behaviour) in behaviours.iter().enumerate() {
            let miner = Arc::new(TestMiner {
                behaviour: *behaviour,
                endpoint: EndpointClient::new(
                    &format!("http://127.0.0.1:{endpoint_port}/generate"),
                    &format!("http://127.0.0.1:{endpoint_port}/info"),
                    Duration::from_secs(120),
                )
                .unwrap(),
                calls: AtomicU64::new(0),
            });
            let axon = AxonBuilder::new(key(2 + i as u8))
                .attach::<ImageGenerating, _>(miner.clone())
                .slots(256)
                .build();
            axons.push(axon.spawn(([127, 0, 0, 1], 0).into()).await.unwrap());
            miners.push(miner);
        }
        let validator_key = key(1);
        let mut chain_file = format!(
            "block_time_secs = 0.05\nstart_block = 1000\n[[subnet]]\nnetuid = 23\nweights_rate_limit = 0\nweights_version_key = 10\ncommit_reveal = false\n\
             [[subnet.neuron]]\nhotkey = \"{}\"\nstake = 20000\nvalidator_permit = true\n",
            validator_key.ss58()
        );
        for (i, axon) in axons.iter().enumerate() {
            chain_file.push_str(&format!(
                "[[subnet.neuron]]\nhotkey = \"{}\"\nstake = 1\naxon = \"{}\"\n",
                key(2 + i as u8).ss58(),
                axon.address
            ));
        }
        let chain = Arc::new(EmbeddedChain::from_toml(&chain_file).unwrap());
        let mut overrides = BTreeMap::new();
        overrides.insert(
            "Tiny".to_string(),
            ModelOverride {
                arch: Some(Arch::Sd15),
                checkpoint: Some(checkpoint.clone()),
                timeout_secs: Some(timeout_secs),
                incentive_weight: Some(1.0),
                ..Default::default()
            },
        );
        let model = catalogue::catalogue(&overrides).unwrap()["Tiny"].clone();
        Subnet {
            dir,
            checkpoint,
            model,
            reward_port,
            validator_key,
            miners,
            axons,
            chain,
            endpoint: Some(endpoint),
            reward: Some(reward),
        }
    }

    /// A validator of this subnet (uid 0) judging through its reward service, its state in
    /// `validator-state.json` under the subnet's folder.
    pub fn validator(&self, set_weights: bool) -> nicheimage_node::validator::Validator {
        use nicheimage_node::validator::{Validator, ValidatorSettings, ValidatorShared};
        Validator {
            settings: ValidatorSettings {
                netuid: 23,
                models: vec![self.model.clone()],
                reward_url: self.reward_url(),
                challenge_prompt_url: String::new(),
                challenge_image_url: String::new(),
                info_timeout: Duration::from_secs(5),
                fast_loop: Duration::from_secs(1),
                fast_steps: 1,
                slow_loop: Duration::from_secs(1),
                state_path: self.dir.path().join("validator-state.json"),
                commits_path: self.dir.path().join("weight-commits.json"),
                version_key: 10,
                set_weights,
                dial_private_axons: true,
                scheme: None,
            },
            chain: self.chain.clone(),
            keypair: self.validator_key.clone(),
            shared: Arc::new(ValidatorShared::default()),
        }
    }

    pub fn reward_pid(&self) -> Option<u32> {
        self.reward.as_ref().map(Headless::pid)
    }

    pub fn endpoint_pid(&self) -> Option<u32> {
        self.endpoint.as_ref().map(Headless::pid)
    }

    /// Whether the endpoint and reward processes still run.
    pub fn services_alive(&mut self) -> bool {
        [self.endpoint.as_mut(), self.reward.as_mut()]
            .into_iter()
            .all(|node| node.is_some_and(|n| n.alive()))
    }

    pub fn reward_url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.reward_port)
    }

    /// Stops the axons and both services; asserts they exit cleanly.
    pub async fn stop(mut self) {
        for axon in self.axons.drain(..) {
            axon.stop().await;
        }
        for node in [self.reward.take(), self.endpoint.take()]
            .into_iter()
            .flatten()
        {
            assert!(node.terminate().0.success());
        }
    }
}
