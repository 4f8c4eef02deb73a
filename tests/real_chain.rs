//! Our subtensor client against a real runtime (node-subtensor spec 218 under Chopsticks, on
//! loopback): it reads the runtime version, metadata, hyperparameters and metagraph; registers
//! two hotkeys (two concurrent submissions from one coldkey) and stakes; `serve_axon` lands in
//! the axon storage; `set_weights` lands in the weights storage; too-fast, wrong-version and
//! commit-reveal refusals arrive by name. Skips with a message where the spec or Chopsticks is
//! absent (`scripts/test.sh` installs Chopsticks and requires them).

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::chopsticks::Chopsticks;
use nicheimage_bittensor::chain::commit::WeightsMode;
use nicheimage_bittensor::chain::subtensor::SubtensorChain;
use nicheimage_bittensor::chain::{Chain, ServeAxon};
use nicheimage_bittensor::keypair::{CryptoType, Keypair};
use parity_scale_codec::Encode;

const NETUID: u16 = 1;

fn key(n: u8) -> Arc<Keypair> {
    Arc::new(Keypair::from_mini_secret(&[n; 32]).unwrap())
}

/// Polls `check` until it holds (each block is ~1 s under Chopsticks).
async fn until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    while !check().await {
        assert!(Instant::now() < deadline, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Registers `hotkey` on `NETUID` with a burn paid by `coldkey` and waits until the metagraph
/// shows it; its uid.
async fn register(chain: &SubtensorChain, coldkey: &Keypair, hotkey: &[u8; 32]) -> u16 {
    chain
        .submit_call(
            coldkey,
            "SubtensorModule",
            "burned_register",
            &(NETUID, hotkey).encode(),
        )
        .await
        .unwrap();
    let ss58 = nicheimage_bittensor::ss58::encode(hotkey);
    until("the hotkey registered", || async {
        chain
            .metagraph(NETUID)
            .await
            .unwrap()
            .by_hotkey(&ss58)
            .is_some()
    })
    .await;
    chain
        .metagraph(NETUID)
        .await
        .unwrap()
        .by_hotkey(&ss58)
        .unwrap()
        .uid
}

/// Advances the chain `count` blocks (Chopsticks' `dev_newBlock`).
async fn new_blocks(ws_url: &str, count: u64) {
    let url = ws_url.replacen("ws://", "http://", 1);
    let body = serde_json::json!({
        "jsonrpc": "2.0", "id": 1, "method": "dev_newBlock", "params": [{"count": count}],
    });
    let answer: serde_json::Value = nicheimage_common::http::client()
        .unwrap()
        .post(url)
        .json(&body)
        .timeout(Duration::from_secs(120))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(answer.get("error").is_none(), "{answer}");
}

/// Seconds a call took, for the closing figures.
fn took(start: Instant) -> String {
    format!("{:.2} s", start.elapsed().as_secs_f64())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_client_reads_and_writes_a_real_subtensor_runtime() {
    let (coldkey, validator, miner) = (key(11), key(12), key(13));
    // A bittensor-wallet 4 ed25519 hotkey: its extrinsics carry MultiSignature::Ed25519.
    let ed_miner = Arc::new(Keypair::from_seed(CryptoType::Ed25519, &[14; 32]).unwrap());
    let Some(node) = Chopsticks::start(
        coldkey.ss58(),
        &[
            coldkey.ss58(),
            validator.ss58(),
            miner.ss58(),
            ed_miner.ss58(),
        ],
    ) else {
        return;
    };
    eprintln!("Chopsticks answered in {:.1} s", node.started_in);
    let chain = SubtensorChain::new("local", &node.url);
    let module = "SubtensorModule";

    // Reads.
    let t = Instant::now();
    let (spec, _) = chain.runtime_version().await.unwrap();
    assert_eq!(spec, 218);
    let meta = chain.current_metadata().await.unwrap();
    assert_eq!(meta.version, 15, "V15 through Metadata_metadata_at_version");
    assert!(meta.has_call(module, "commit_weights"));
    let hyper = chain.hyperparams(NETUID).await.unwrap();
    eprintln!("hyperparameters {hyper:?} ({})", took(t));
    assert!(!hyper.commit_reveal_enabled);
    let before = chain.metagraph(NETUID).await.unwrap();
    assert_eq!(before.neurons.len(), 1, "the spec's own neuron");
    eprintln!(
        "metagraph of {} neuron(s) ({})",
        before.neurons.len(),
        took(t)
    );
    let empty = chain.metagraph(2).await.unwrap();
    assert!(
        empty.neurons.is_empty(),
        "an unregistered netuid reads as empty"
    );

    // Local-chain settings, through sudo: room for two registrations in one block.
    let admin = |call: &'static str, args: Vec<u8>| {
        let (chain, coldkey) = (&chain, coldkey.clone());
        async move {
            chain
                .sudo(&coldkey, "AdminUtils", call, &args)
                .await
                .unwrap()
        }
    };
    admin(
        "sudo_set_max_registrations_per_block",
        (NETUID, 8u16).encode(),
    )
    .await;
    admin(
        "sudo_set_target_registrations_per_interval",
        (NETUID, 8u16).encode(),
    )
    .await;

    // Two registrations signed by one coldkey at once: distinct nonces, both land.
    let t = Instant::now();
    let register = |hotkey: Arc<Keypair>| {
        let (chain, coldkey) = (&chain, coldkey.clone());
        async move {
            chain
                .submit_call(
                    &coldkey,
                    "SubtensorModule",
                    "burned_register",
                    &(NETUID, hotkey.public_bytes()).encode(),
                )
                .await
        }
    };
    let (a, b) = tokio::join!(register(validator.clone()), register(miner.clone()));
    assert_ne!(a.unwrap(), b.unwrap(), "two transactions");
    until("both hotkeys registered", || async {
        let graph = chain.metagraph(NETUID).await.unwrap();
        graph.by_hotkey(validator.ss58()).is_some() && graph.by_hotkey(miner.ss58()).is_some()
    })
    .await;
    eprintln!("two burned_register calls landed ({})", took(t));

    // Stake on the validator: the coldkey pays it (this test runtime's fresh pools give next to
    // no alpha for it, so the balance is what shows it).
    let free = || async {
        let account = chain
            .storage_value(&meta, "System", "Account", &[&coldkey.public_bytes()])
            .await
            .unwrap()
            .unwrap();
        account
            .field("data")
            .unwrap()
            .field("free")
            .unwrap()
            .as_u64()
            .unwrap()
    };
    let t = Instant::now();
    let stake = 100_000_000_000u64;
    let before_stake = free().await;
    chain
        .submit_call(
            &coldkey,
            module,
            "add_stake",
            &(validator.public_bytes(), NETUID, stake).encode(),
        )
        .await
        .unwrap();
    until("the stake paid", || async {
        before_stake.saturating_sub(free().await) >= stake
    })
    .await;
    eprintln!("add_stake landed ({})", took(t));

    // serve_axon: loopback is refused by this runtime, so a documentation address is announced
    // (nothing dials it).
    let refused = chain
        .serve_axon(
            &miner,
            ServeAxon {
                netuid: NETUID,
                version: 1,
                ip: "127.0.0.1".parse().unwrap(),
                port: 8091,
                protocol: 4,
            },
        )
        .await
        .unwrap_err();
    assert_eq!(refused.refusal(), Some("InvalidIpAddress"), "{refused}");
    let t = Instant::now();
    let axon = ServeAxon {
        netuid: NETUID,
        version: 10_002_000,
        ip: "198.51.100.7".parse().unwrap(),
        port: 8091,
        protocol: 4,
    };
    chain.serve_axon(&miner, axon.clone()).await.unwrap();
    until("the axon in storage", || async {
        let stored = chain
            .storage_value(
                &meta,
                module,
                "Axons",
                &[&NETUID.encode(), &miner.public_bytes()],
            )
            .await
            .unwrap();
        stored.and_then(|s| s.field("port").and_then(|p| p.as_u16()).ok()) == Some(8091)
    })
    .await;
    let graph = chain.metagraph(NETUID).await.unwrap();
    let served = &graph.by_hotkey(miner.ss58()).unwrap().axon;
    assert_eq!(
        (served.ip_string().as_str(), served.port),
        ("198.51.100.7", 8091)
    );
    eprintln!("serve_axon landed ({})", took(t));

    // The ed25519 hotkey registers and announces its axon, signing serve_axon itself.
    let t = Instant::now();
    register(ed_miner.clone()).await.unwrap();
    until("the ed25519 hotkey registered", || async {
        let graph = chain.metagraph(NETUID).await.unwrap();
        graph.by_hotkey(ed_miner.ss58()).is_some()
    })
    .await;
    let ed_axon = ServeAxon {
        port: 8092,
        ..axon.clone()
    };
    chain.serve_axon(&ed_miner, ed_axon).await.unwrap();
    until("the ed25519 hotkey's axon in storage", || async {
        let graph = chain.metagraph(NETUID).await.unwrap();
        graph.by_hotkey(ed_miner.ss58()).map(|n| n.axon.port) == Some(8092)
    })
    .await;
    eprintln!(
        "an ed25519 hotkey registered and its serve_axon landed ({})",
        took(t)
    );

    // Weights: too fast right after registration (rate limit 100 blocks) ...
    let miner_uid = graph.by_hotkey(miner.ss58()).unwrap().uid;
    let validator_uid = graph.by_hotkey(validator.ss58()).unwrap().uid;
    let too_fast = chain
        .set_weights(&validator, NETUID, vec![miner_uid], vec![65535], 0)
        .await
        .unwrap_err();
    assert_eq!(
        too_fast.refusal(),
        Some("SettingWeightsTooFast"),
        "{too_fast}"
    );
    // ... then, without the limit, they land.
    admin("sudo_set_weights_set_rate_limit", (NETUID, 0u64).encode()).await;
    until("no rate limit", || async {
        chain.hyperparams(NETUID).await.unwrap().weights_rate_limit == 0
    })
    .await;
    let t = Instant::now();
    chain
        .set_weights(&validator, NETUID, vec![miner_uid], vec![65535], 0)
        .await
        .unwrap();
    until("the weights in storage", || async {
        let stored = chain
            .storage_value(
                &meta,
                module,
                "Weights",
                &[&NETUID.encode(), &validator_uid.encode()],
            )
            .await
            .unwrap()
            .unwrap();
        let row = stored.as_list().unwrap();
        row.len() == 1 && row[0].as_list().unwrap()[0].as_u16().unwrap() == miner_uid
    })
    .await;
    eprintln!("set_weights landed ({})", took(t));

    // A version key below the subnet's.
    admin("sudo_set_weights_version_key", (NETUID, 7u64).encode()).await;
    until("the version key set", || async {
        chain.hyperparams(NETUID).await.unwrap().weights_version_key == 7
    })
    .await;
    let old = chain
        .set_weights(&validator, NETUID, vec![miner_uid], vec![65535], 6)
        .await
        .unwrap_err();
    assert_eq!(old.refusal(), Some("IncorrectWeightVersionKey"), "{old}");

    // Commit-reveal on: plain weights are refused by name.
    admin(
        "sudo_set_commit_reveal_weights_enabled",
        (NETUID, true).encode(),
    )
    .await;
    until("commit-reveal on", || async {
        chain
            .hyperparams(NETUID)
            .await
            .unwrap()
            .commit_reveal_enabled
    })
    .await;
    let cr = chain
        .set_weights(&validator, NETUID, vec![miner_uid], vec![65535], 7)
        .await
        .unwrap_err();
    assert_eq!(cr.refusal(), Some("CommitRevealEnabled"), "{cr}");

    // The hash scheme (what spec 218 has): commit, keep the salt, reveal in the window.
    assert_eq!(
        chain.weights_mode(NETUID).await.unwrap(),
        WeightsMode::HashCommit
    );
    admin("sudo_set_tempo", (NETUID, 4u16).encode()).await;
    admin(
        "sudo_set_commit_reveal_weights_interval",
        (NETUID, 1u64).encode(),
    )
    .await;
    until("tempo 4", || async {
        chain.hyperparams(NETUID).await.unwrap().tempo == 4
    })
    .await;
    let t = Instant::now();
    let (uids, weights) = (vec![validator_uid, miner_uid], vec![1000u16, 65535]);
    let pending = chain
        .commit_weights(&validator, NETUID, uids.clone(), weights.clone(), 7)
        .await
        .unwrap();
    let now = chain.block().await.unwrap();
    eprintln!(
        "commit_weights landed at block {} ({}): reveal in blocks {}..={} (now {now})",
        pending.commit_block,
        took(t),
        pending.first_reveal_block,
        pending.last_reveal_block
    );
    assert!(
        pending.first_reveal_block > now && pending.last_reveal_block >= pending.first_reveal_block
    );
    let early = chain
        .reveal_weights(&validator, &pending)
        .await
        .unwrap_err();
    eprintln!("an early reveal: {early}");
    assert!(early.refusal().is_some(), "{early}");
    let blocks = pending.first_reveal_block - now;
    new_blocks(&node.url, blocks).await;
    let t = Instant::now();
    chain.reveal_weights(&validator, &pending).await.unwrap();
    until("the revealed weights in storage", || async {
        let stored = chain
            .storage_value(
                &meta,
                module,
                "Weights",
                &[&NETUID.encode(), &validator_uid.encode()],
            )
            .await
            .unwrap()
            .unwrap();
        stored.as_list().unwrap().len() == 2
    })
    .await;
    eprintln!("reveal_weights landed ({})", took(t));
    assert!(
        chain
            .weight_commits(NETUID, &validator.public_bytes())
            .await
            .unwrap()
            .is_empty(),
        "the commit is spent"
    );
    drop(node);
}

/// Runs the real binary with `args`; (exit success, stdout + stderr).
fn run(dir: &std::path::Path, args: &[String]) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_nicheimage-tui"))
        .args(args)
        .arg("--data-dir")
        .arg(dir.join("data"))
        .env("HOME", dir)
        .env("XDG_CONFIG_HOME", dir)
        .env_remove("NICHEIMAGE_WALLET_PASSWORD")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// `weights set` (plain, then committing under commit-reveal), `weights status` and
/// `weights reveal` from a shell, as an operator runs them, with a hotkey file the binary wrote.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weights_commands_set_commit_and_reveal_from_a_shell() {
    let coldkey = key(21);
    let Some(node) = Chopsticks::start(coldkey.ss58(), &[coldkey.ss58()]) else {
        return;
    };
    let home = tempfile::tempdir().unwrap();
    let dir = home.path();
    let wallet = dir.join("wallets");
    let wallet_path = wallet.to_str().unwrap();
    let neuron = [
        "--wallet.path",
        wallet_path,
        "--wallet.name",
        "op",
        "--wallet.hotkey",
        "v",
        "--subtensor.network",
        "local",
        "--subtensor.chain_endpoint",
        node.url.as_str(),
        "--netuid",
        "1",
    ];
    let with = |head: &[&str]| -> Vec<String> {
        head.iter().chain(&neuron).map(|s| s.to_string()).collect()
    };
    let (ok, said) = run(dir, &with(&["wallet", "new-hotkey"]));
    assert!(ok, "{said}");
    let ss58 = said
        .split_whitespace()
        .nth(1)
        .expect("the hotkey's address")
        .to_string();
    let hotkey = nicheimage_bittensor::ss58::decode(&ss58).unwrap();

    let chain = SubtensorChain::new("local", &node.url);
    chain
        .sudo(
            &coldkey,
            "AdminUtils",
            "sudo_set_weights_set_rate_limit",
            &(NETUID, 0u64).encode(),
        )
        .await
        .unwrap();
    let uid = register(&chain, &coldkey, &hotkey).await.to_string();

    let set_plain = with(&[
        "weights",
        "set",
        "--uids",
        "0",
        &uid,
        "--weights",
        "0.25",
        "1",
    ]);
    // Registered in this very block: no validator permit until the next epoch.
    let (ok, said) = run(dir, &set_plain);
    eprintln!("weights set (no permit yet): {said}");
    assert!(!ok && said.contains("NeuronNoValidatorPermit"), "{said}");
    new_blocks(&node.url, 1).await;
    let (ok, said) = run(dir, &set_plain);
    eprintln!("weights set (plain): {said}");
    assert!(
        ok && said.contains("with set_weights (commit-reveal is off)"),
        "{said}"
    );

    // The btcli-class look at the chain, from a shell.
    let (ok, said) = run(dir, &with(&["chain"]));
    eprintln!("chain: {said}");
    assert!(
        ok && said.contains("next epoch in")
            && said.contains(&format!("uid {uid}"))
            && said.contains("deregistration order")
            && said.contains("commit-reveal off"),
        "{said}"
    );

    // Commit-reveal on, one epoch of 5 blocks.
    for (call, args) in [
        ("sudo_set_tempo", (NETUID, 4u16).encode()),
        (
            "sudo_set_commit_reveal_weights_interval",
            (NETUID, 1u64).encode(),
        ),
        (
            "sudo_set_commit_reveal_weights_enabled",
            (NETUID, true).encode(),
        ),
    ] {
        chain
            .sudo(&coldkey, "AdminUtils", call, &args)
            .await
            .unwrap();
    }
    until("commit-reveal on", || async {
        chain
            .hyperparams(NETUID)
            .await
            .unwrap()
            .commit_reveal_enabled
    })
    .await;
    let (ok, said) = run(
        dir,
        &with(&["weights", "set", "--uids", &uid, "--weights", "1"]),
    );
    eprintln!("weights set (commit-reveal): {said}");
    assert!(ok && said.contains("committed 1 weights"), "{said}");
    let (ok, said) = run(dir, &with(&["weights", "status"]));
    eprintln!("weights status: {said}");
    assert!(
        ok && said.contains("commit-reveal (hash commit, then reveal)")
            && said.contains("salt kept"),
        "{said}"
    );
    // The same as one JSON object: the runtime stores the window; it is the legacy rule's for
    // the commit's block (this runtime has no dynamic tempo).
    let (ok, said) = run(dir, &with(&["weights", "status", "--json"]));
    assert!(ok, "{said}");
    let json_line = said
        .lines()
        .find(|l| l.starts_with('{'))
        .unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(json_line).expect(&said);
    assert_eq!(v["epoch"]["rule"], "legacy", "{v}");
    let pending = &v["pending"][0];
    assert_eq!(pending["kind"], "hash", "{v}");
    let (tempo, at) = (
        v["tempo"].as_u64().unwrap(),
        pending["commit_block"].as_u64().unwrap(),
    );
    use nicheimage_bittensor::chain::epoch::{legacy_first_block, legacy_index};
    let first = legacy_first_block(legacy_index(at, NETUID, tempo) + 1, NETUID, tempo);
    assert_eq!(
        (
            pending["reveal_window"][0].as_u64(),
            pending["reveal_window"][1].as_u64()
        ),
        (Some(first), Some(first + tempo)),
        "{v}"
    );
    let (ok, said) = run(dir, &with(&["chain", "--json"]));
    let json_line = said
        .lines()
        .find(|l| l.starts_with('{'))
        .unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(json_line).expect(&said);
    assert!(ok && v["epoch"]["rule"] == "legacy", "{v}");
    let block = v["epoch"]["block"].as_u64().unwrap();
    assert_eq!(
        v["epoch"]["next_epoch_block"].as_u64(),
        Some(
            block + nicheimage_bittensor::chain::epoch::legacy_blocks_to_next(block, NETUID, tempo)
        ),
        "{v}"
    );
    let (ok, said) = run(dir, &with(&["weights", "reveal"]));
    assert!(ok && said.contains("opens at block"), "{said}");
    new_blocks(&node.url, 5).await;
    let (ok, said) = run(dir, &with(&["weights", "reveal"]));
    eprintln!("weights reveal: {said}");
    assert!(ok && said.contains("revealed commit"), "{said}");
    let (ok, said) = run(dir, &with(&["weights", "status"]));
    assert!(ok && said.contains("no pending commits on chain"), "{said}");
    drop(node);
}

/// The miner role, headless, against the real runtime: it announces a public-looking address
/// with `serve_axon` (loopback is refused by this runtime) and, with its reachability
/// self-test off, never dials it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_miner_announces_its_axon_on_the_real_runtime() {
    let coldkey = key(31);
    let Some(node) = Chopsticks::start(coldkey.ss58(), &[coldkey.ss58()]) else {
        return;
    };
    let home = tempfile::tempdir().unwrap();
    let dir = home.path();
    let wallet = dir.join("wallets");
    let (ok, said) = run(
        dir,
        &[
            "wallet",
            "new-hotkey",
            "--wallet.path",
            wallet.to_str().unwrap(),
            "--wallet.name",
            "m",
            "--wallet.hotkey",
            "h",
        ]
        .map(String::from),
    );
    assert!(ok, "{said}");
    let ss58 = said.split_whitespace().nth(1).unwrap().to_string();
    let hotkey = nicheimage_bittensor::ss58::decode(&ss58).unwrap();
    let chain = SubtensorChain::new("local", &node.url);
    register(&chain, &coldkey, &hotkey).await;

    let port = common::free_port();
    let config = format!(
        "[node]\nstatus_interval_secs = 1\n[metrics]\nenabled = false\n\
         [wallet]\npath = \"{}\"\nname = \"m\"\nhotkey = \"h\"\n\
         [subtensor]\nnetwork = \"local\"\nchain_endpoint = \"{}\"\nnetuid = {NETUID}\n\
         [axon]\nhost = \"127.0.0.1\"\nport = {port}\nexternal_ip = \"198.51.100.7\"\n\
         [endpoint]\nenabled = false\n[miner]\nreachability_self_test = false\n",
        wallet.display(),
        node.url
    );
    let t = Instant::now();
    let miner = common::start(dir, &["miner"], &config);
    until("the miner's axon in storage", || async {
        let graph = chain.metagraph(NETUID).await.unwrap();
        graph
            .by_hotkey(&ss58)
            .is_some_and(|n| n.axon.ip_string() == "198.51.100.7" && n.axon.port == port)
    })
    .await;
    eprintln!("the miner's serve_axon landed {} after start", took(t));
    let status = miner.status_within(30, "the announcement reported", |v| {
        v.to_string().contains("198.51.100.7")
    });
    assert!(
        status.to_string().contains("reachability_self_test is off"),
        "{status}"
    );
    drop(miner);
    drop(node);
}

/// What a differential step does to the chain under test.
enum Admin {
    /// Registers a hotkey; with a validator permit when asked (the real runtime grants permits
    /// from the next block on, so it moves on a block for one).
    Register(Arc<Keypair>, bool),
    RateLimit(u64),
    VersionKey(u64),
    /// Commit-reveal on with this tempo and one epoch of reveal period.
    CommitReveal(u16),
    /// Moves the chain to this block.
    AdvanceTo(u64),
}

/// The same sequence against any chain: each step's outcome as `ok` or the refusal's name.
async fn differential<F, Fut>(chain: &dyn Chain, netuid: u16, admin: F) -> Vec<(String, String)>
where
    F: Fn(Admin) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let (validator, miner, newcomer) = (key(41), key(42), key(43));
    let outcome = |r: Result<(), nicheimage_bittensor::chain::ChainError>| match r {
        Ok(()) => "ok".to_string(),
        Err(e) => e.refusal().unwrap_or("not a refusal").to_string(),
    };
    let mut log = Vec::new();
    admin(Admin::Register(validator.clone(), true)).await;
    admin(Admin::Register(miner.clone(), false)).await;
    let graph = chain.metagraph(netuid).await.unwrap();
    let uid = |k: &Keypair| graph.by_hotkey(k.ss58()).unwrap().uid;
    let (v, m) = (uid(&validator), uid(&miner));
    let axon = |port| ServeAxon {
        netuid,
        version: 1,
        ip: "198.51.100.9".parse().unwrap(),
        port,
        protocol: 4,
    };
    log.push((
        "serve_axon".into(),
        outcome(chain.serve_axon(&miner, axon(9000)).await),
    ));
    log.push((
        "serve_axon again at once".into(),
        outcome(chain.serve_axon(&miner, axon(9001)).await),
    ));
    log.push((
        "set_weights right after registering".into(),
        outcome(
            chain
                .set_weights(&validator, netuid, vec![m], vec![65535], 0)
                .await,
        ),
    ));
    admin(Admin::RateLimit(0)).await;
    log.push((
        "set_weights".into(),
        outcome(
            chain
                .set_weights(&validator, netuid, vec![m], vec![65535], 0)
                .await,
        ),
    ));
    admin(Admin::VersionKey(7)).await;
    log.push((
        "set_weights with an old version key".into(),
        outcome(
            chain
                .set_weights(&validator, netuid, vec![m], vec![65535], 6)
                .await,
        ),
    ));
    admin(Admin::Register(newcomer.clone(), false)).await;
    log.push((
        "set_weights without a permit".into(),
        outcome(
            chain
                .set_weights(&newcomer, netuid, vec![v, m], vec![1, 1], 7)
                .await,
        ),
    ));
    admin(Admin::CommitReveal(4)).await;
    log.push((
        "set_weights under commit-reveal".into(),
        outcome(
            chain
                .set_weights(&validator, netuid, vec![m], vec![65535], 7)
                .await,
        ),
    ));
    let commit = chain
        .commit_weights(&validator, netuid, vec![v, m], vec![1, 65535], 7)
        .await;
    log.push((
        "commit_weights".into(),
        outcome(commit.as_ref().map(drop).map_err(Clone::clone)),
    ));
    let commit = commit.unwrap();
    log.push((
        "reveal before the window".into(),
        outcome(chain.reveal_weights(&validator, &commit).await),
    ));
    log.push((
        "reveal window length".into(),
        (commit.last_reveal_block - commit.first_reveal_block).to_string(),
    ));
    admin(Admin::AdvanceTo(commit.first_reveal_block)).await;
    log.push((
        "reveal in the window".into(),
        outcome(chain.reveal_weights(&validator, &commit).await),
    ));
    log.push((
        "reveal twice".into(),
        outcome(chain.reveal_weights(&validator, &commit).await),
    ));
    log
}

/// The embedded chain (the devnet's default) and the real runtime run the same sequence and
/// agree on every outcome and error name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_chain_agrees_with_the_real_runtime() {
    use nicheimage_bittensor::chain::embedded::EmbeddedChain;
    let coldkey = key(40);
    let Some(node) = Chopsticks::start(coldkey.ss58(), &[coldkey.ss58()]) else {
        return;
    };
    let real = SubtensorChain::new("local", &node.url);
    let sudo = |call: &'static str, args: Vec<u8>| {
        let (real, coldkey) = (&real, coldkey.clone());
        async move {
            real.sudo(&coldkey, "AdminUtils", call, &args)
                .await
                .unwrap();
        }
    };
    sudo(
        "sudo_set_max_registrations_per_block",
        (NETUID, 8u16).encode(),
    )
    .await;
    sudo(
        "sudo_set_target_registrations_per_interval",
        (NETUID, 8u16).encode(),
    )
    .await;
    let real_admin = |step: Admin| {
        let (real, coldkey, url) = (&real, coldkey.clone(), node.url.clone());
        let sudo = &sudo;
        async move {
            let settled =
                |what: &'static str,
                 check: fn(&nicheimage_bittensor::chain::Hyperparams) -> bool| async move {
                    until(what, || async {
                        check(&real.hyperparams(NETUID).await.unwrap())
                    })
                    .await;
                };
            match step {
                Admin::Register(hotkey, permit) => {
                    register(real, &coldkey, &hotkey.public_bytes()).await;
                    if permit {
                        new_blocks(&url, 1).await;
                    }
                }
                Admin::RateLimit(n) => {
                    sudo("sudo_set_weights_set_rate_limit", (NETUID, n).encode()).await;
                    settled("rate limit", |h| h.weights_rate_limit == 0).await;
                }
                Admin::VersionKey(k) => {
                    sudo("sudo_set_weights_version_key", (NETUID, k).encode()).await;
                    settled("version key", |h| h.weights_version_key == 7).await;
                }
                Admin::CommitReveal(tempo) => {
                    sudo("sudo_set_tempo", (NETUID, tempo).encode()).await;
                    sudo(
                        "sudo_set_commit_reveal_weights_interval",
                        (NETUID, 1u64).encode(),
                    )
                    .await;
                    sudo(
                        "sudo_set_commit_reveal_weights_enabled",
                        (NETUID, true).encode(),
                    )
                    .await;
                    settled("commit-reveal", |h| h.commit_reveal_enabled && h.tempo == 4).await;
                }
                Admin::AdvanceTo(block) => {
                    let now = real.block().await.unwrap();
                    new_blocks(&url, block.saturating_sub(now)).await;
                }
            }
        }
    };
    let t = Instant::now();
    let on_real = differential(&real, NETUID, real_admin).await;
    eprintln!("the sequence on the real runtime: {}", took(t));

    let embedded = EmbeddedChain::from_toml(&format!(
        "block_time_secs = 3600\nstart_block = 100\n[[subnet]]\nnetuid = {NETUID}\ntempo = 100\n\
         # Spec 218's rules: the legacy epoch rule, hash commits, commit-reveal off at first.\n\
         epoch_rule = \"legacy\"\ncommit_reveal = false\ncommit_reveal_mode = \"hash\"\n"
    ))
    .unwrap();
    let embedded_admin = |step: Admin| {
        let embedded = &embedded;
        async move {
            match step {
                Admin::Register(hotkey, permit) => {
                    embedded
                        .register(NETUID, hotkey.ss58(), 0.0, permit)
                        .unwrap();
                }
                Admin::RateLimit(n) => embedded
                    .configure(NETUID, |p| p.weights_rate_limit = n)
                    .unwrap(),
                Admin::VersionKey(k) => embedded
                    .configure(NETUID, |p| p.weights_version_key = k)
                    .unwrap(),
                Admin::CommitReveal(tempo) => embedded
                    .configure(NETUID, |p| {
                        p.tempo = tempo;
                        p.reveal_period_epochs = 1;
                        p.commit_reveal = true;
                    })
                    .unwrap(),
                Admin::AdvanceTo(block) => {
                    let now = embedded.block().await.unwrap();
                    embedded.advance(block.saturating_sub(now));
                }
            }
        }
    };
    let on_embedded = differential(&embedded, NETUID, embedded_admin).await;
    for ((step, real), (_, ours)) in on_real.iter().zip(&on_embedded) {
        eprintln!("{step:40} real: {real:32} embedded: {ours}");
    }
    assert_eq!(on_real, on_embedded);
    drop(node);
}
