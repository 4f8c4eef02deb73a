//! A whole validator round on loopback with the embedded chain: one validator, three miners —
//! one honest (its images come from a real endpoint with the tiny SD 1.5 model), one answering
//! with another seed's image, one too slow — judged by a real reward service. The scores, the
//! reasons and the weights on chain are asserted, and the state survives a reload.
#![cfg(feature = "local-infer")]

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use common::free_port;
use futures::FutureExt;
use futures::future::BoxFuture;
use nicheimage_tui::bittensor::axon::{AxonBuilder, Caller, Handler, RunningAxon};
use nicheimage_tui::bittensor::chain::embedded::EmbeddedChain;
use nicheimage_tui::bittensor::dendrite::Dendrite;
use nicheimage_tui::bittensor::keypair::Keypair;
use nicheimage_tui::bittensor::synapse::ImageGenerating;
use nicheimage_tui::catalogue::{self, Arch, ModelOverride};
use nicheimage_tui::diffusion::tiny::write_tiny_sd15;
use nicheimage_tui::miner::endpoint_client::EndpointClient;
use nicheimage_tui::validator::scores::MinerBook;
use nicheimage_tui::validator::{Dice, Validator, ValidatorSettings};
use serde_json::Value;

#[derive(Clone, Copy)]
enum Behaviour {
    Honest,
    WrongSeed,
    Slow,
}

struct TestMiner {
    behaviour: Behaviour,
    endpoint: EndpointClient,
}

impl Handler<ImageGenerating> for TestMiner {
    fn forward(
        self: Arc<Self>,
        _: Caller,
        mut s: ImageGenerating,
    ) -> BoxFuture<'static, Result<ImageGenerating, String>> {
        async move {
            if !s.request_dict.is_empty() {
                s.response_dict
                    .insert("model_name".into(), Value::String("Tiny".into()));
                return Ok(s);
            }
            let mut request = s.clone();
            match self.behaviour {
                Behaviour::Honest => {}
                Behaviour::WrongSeed => request.seed += 1,
                Behaviour::Slow => tokio::time::sleep(Duration::from_secs(6)).await,
            }
            s.image = Value::String(self.endpoint.generate(&request).await?);
            Ok(s)
        }
        .boxed()
    }
}

fn key(n: u8) -> Arc<Keypair> {
    Arc::new(Keypair::from_mini_secret(&[n; 32]).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_round_scores_honest_wrong_and_slow_miners_and_sets_weights() {
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = write_tiny_sd15(&dir.path().join("model"), "tiny-sd15").unwrap();
    let model = format!(
        "[models.Tiny]\narch = \"sd15\"\ncheckpoint = \"{}\"\nscheduler = \"dpm++2m_karras\"\n\
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
    let endpoint = common::start(
        &e_dir,
        &["endpoint"],
        &format!(
            "{base}[endpoint]\nmodel_name = \"Tiny\"\nhost = \"127.0.0.1\"\nport = {endpoint_port}\nnum_replicas = 1\n"
        ),
    );
    let reward = common::start(
        &r_dir,
        &["reward", "--disable_secure"],
        &format!("{base}[reward]\nmodel_name = \"Tiny\"\nport = {reward_port}\n"),
    );
    endpoint.status_within(120, "a ready replica", |v| {
        v["replicas"]["0"]["status"] == "ready"
    });
    reward.status_within(120, "a ready replica", |v| {
        v["replicas"]["0"]["status"] == "ready"
    });

    // Three miners in this process, each its own hotkey and axon.
    let mut axons: Vec<RunningAxon> = Vec::new();
    let behaviours = [Behaviour::Honest, Behaviour::WrongSeed, Behaviour::Slow];
    for (i, behaviour) in behaviours.iter().enumerate() {
        let endpoint = EndpointClient::new(
            &format!("http://127.0.0.1:{endpoint_port}/generate"),
            &format!("http://127.0.0.1:{endpoint_port}/info"),
            Duration::from_secs(60),
        );
        let handler = Arc::new(TestMiner {
            behaviour: *behaviour,
            endpoint,
        });
        let axon = AxonBuilder::new(key(2 + i as u8))
            .attach::<ImageGenerating, _>(handler)
            .build();
        axons.push(axon.spawn(([127, 0, 0, 1], 0).into()).await.unwrap());
    }
    let validator_key = key(1);
    let mut chain_file = format!(
        "block_time_secs = 0.05\nstart_block = 1000\n[[subnet]]\nnetuid = 23\nweights_rate_limit = 0\nweights_version_key = 10\n\
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
            timeout_secs: Some(4.0),
            incentive_weight: Some(1.0),
            ..Default::default()
        },
    );
    let tiny = catalogue::catalogue(&overrides).unwrap()["Tiny"].clone();
    let state_path = dir.path().join("validator-state.json");
    let validator = Validator {
        settings: ValidatorSettings {
            netuid: 23,
            models: vec![tiny],
            reward_url: format!("http://127.0.0.1:{reward_port}/"),
            info_timeout: Duration::from_secs(5),
            fast_loop: Duration::from_secs(1),
            fast_steps: 1,
            slow_loop: Duration::from_secs(1),
            state_path: state_path.clone(),
            version_key: 10,
            set_weights: true,
        },
        chain: chain.clone(),
        keypair: validator_key.clone(),
    };
    let dendrite = Dendrite::new(validator_key).unwrap();
    let mut book = MinerBook::default();
    let outcomes = validator
        .forward(&dendrite, &mut book, &mut Dice::new(7))
        .await
        .unwrap();
    let by_uid: BTreeMap<u16, _> = outcomes.iter().map(|o| (o.uid, o)).collect();
    assert_eq!(by_uid.len(), 3, "{outcomes:#?}");
    let honest = by_uid[&1].reward.unwrap();
    assert!(honest > 0.9 && honest <= 1.0, "{outcomes:#?}");
    assert!(by_uid[&1].reason.contains("hash distance"), "{outcomes:#?}");
    assert_eq!(by_uid[&2].reward, Some(0.0), "{outcomes:#?}");
    assert_eq!(by_uid[&3].reward, Some(0.0));
    assert!(by_uid[&3].reason.starts_with("timeout"), "{outcomes:#?}");

    let done = validator.set_weights(&book).await.unwrap();
    assert!(done.contains("set at block"), "{done}");
    let history = chain.weight_history();
    assert_eq!(history.len(), 1);
    // Only the honest miner has a score: all the weight is its.
    assert_eq!(
        (
            history[0].uid,
            history[0].uids.clone(),
            history[0].weights.clone()
        ),
        (0, vec![1], vec![65535])
    );

    book.step += 1;
    book.save(&state_path).unwrap();
    let (reloaded, note) = MinerBook::load(&state_path);
    assert_eq!((reloaded, note), (book, None));

    for axon in axons {
        axon.stop().await;
    }
    for node in [reward, endpoint] {
        assert!(node.terminate().0.success());
    }
}
