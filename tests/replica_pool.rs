//! The replica pool in process, over real replica processes: scale up and down, restart one,
//! kill one.
#![cfg(feature = "local-infer")]

use nicheimage_engine::tiny::write_tiny_sd15;
use nicheimage_node::config::SupervisorConfig;
use nicheimage_node::replica::protocol::GenerateJob;
use nicheimage_node::replica::{JobError, Pool, PoolConfig, ReplicaCommand};
use nicheimage_node::runtime::event::ReplicaStatus;
use nicheimage_node::runtime::{EventChannel, Node, NodeState, NotReady, Runtime};
use std::time::{Duration, Instant};

async fn until(node: &Node, what: &str, pred: impl Fn(&NodeState) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !pred(&node.snapshot()) {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {:?}",
            node.snapshot().replicas
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn status(s: &NodeState, i: usize) -> Option<ReplicaStatus> {
    s.replicas.get(&i).map(|r| r.status)
}

fn job(seed: u64) -> GenerateJob {
    GenerateJob {
        prompt: "a cat".into(),
        negative_prompt: None,
        seed,
        num_inference_steps: 3,
        guidance_scale: 7.5,
        width: 64,
        height: 64,
        img2img: None,
        controlnet: None,
    }
}

/// A pool of `replicas` real replica processes of the tiny checkpoint on the CPU.
fn tiny_pool(checkpoint: &std::path::Path, replicas: usize, gpus_per_replica: f64) -> PoolConfig {
    PoolConfig {
        replicas,
        gpus_per_replica,
        queue_capacity: 8,
        request_timeout: Duration::from_secs(60),
        load_timeout: Duration::from_secs(60),
        backoff_initial: Duration::from_millis(100),
        backoff_max: Duration::from_millis(500),
        command: ReplicaCommand {
            program: env!("CARGO_BIN_EXE_nicheimage-tui").into(),
            args: [
                "replica",
                "--checkpoint",
                checkpoint.to_str().unwrap(),
                "--scheduler",
                "euler",
                "--device",
                "cpu",
            ]
            .map(String::from)
            .to_vec(),
        },
        remote: Vec::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scale_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = write_tiny_sd15(dir.path(), "tiny-sd15").unwrap();
    let runtime = Runtime::new(SupervisorConfig::default(), EventChannel::new());
    let events = runtime.events();
    let node = runtime.start();
    let pool = Pool::start(
        tiny_pool(&checkpoint, 1, 0.0),
        events,
        node.shutdown.child_token(),
    );
    until(&node, "replica 0 ready", |s| {
        status(s, 0) == Some(ReplicaStatus::Ready)
    })
    .await;

    pool.scale(2);
    assert_eq!(pool.replicas(), 2);
    until(&node, "replica 1 ready", |s| {
        status(s, 1) == Some(ReplicaStatus::Ready)
    })
    .await;
    // CPU replicas share the cores instead of each starting a thread per core: replica 0 started
    // alone and kept libtorch's default, replica 1 started as one of two.
    let omp_threads = |i: usize| {
        let pid = node.snapshot().replicas[&i].pid.unwrap();
        let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
        environ
            .split(|b| *b == 0)
            .find_map(|kv| kv.strip_prefix(b"OMP_NUM_THREADS="))
            .map(|v| String::from_utf8_lossy(v).into_owned())
    };
    let operator_set = std::env::var("OMP_NUM_THREADS").ok();
    let share = |n| {
        operator_set
            .clone()
            .or(nicheimage_node::replica::cpu_threads_per_replica(n).map(|t| t.to_string()))
    };
    assert_eq!(omp_threads(0), share(1));
    assert_eq!(omp_threads(1), share(2));
    let (a, b) = tokio::join!(pool.generate(job(1)), pool.generate(job(2)));
    assert!(a.is_ok() && b.is_ok());

    let pid = node.snapshot().replicas[&0].pid;
    pool.restart(0).unwrap();
    until(&node, "replica 0 restarted", |s| {
        s.replicas[&0].restarts == 1
            && s.replicas[&0].status == ReplicaStatus::Ready
            && s.replicas[&0].pid != pid
    })
    .await;
    // Restarted as one of two, it takes the share now.
    assert_eq!(omp_threads(0), share(2));
    assert!(pool.restart(7).is_err());

    // Killed by the operator: it dies like a crash (the reason kept) and comes back.
    let pid = node.snapshot().replicas[&0].pid;
    pool.kill(0).unwrap();
    until(&node, "replica 0 killed and back", |s| {
        let r = &s.replicas[&0];
        r.restarts == 2
            && r.status == ReplicaStatus::Ready
            && r.pid != pid
            && r.last_error.as_deref() == Some("killed by signal 9")
    })
    .await;
    assert!(pool.generate(job(4)).await.is_ok());

    pool.scale(1);
    // Retired, it leaves the state (it is no replica of the pool any more).
    until(&node, "replica 1 retired", |s| status(s, 1).is_none()).await;
    assert_eq!(pool.replicas(), 1);
    assert!(pool.generate(job(3)).await.is_ok());

    // Shutdown ends the replica processes.
    let pid = node.snapshot().replicas[&0].pid.unwrap() as i32;
    node.shutdown.cancel();
    let deadline = Instant::now() + Duration::from_secs(10);
    // SAFETY: signal 0 only asks whether the process exists.
    while unsafe { libc::kill(pid, 0) } == 0 {
        assert!(
            Instant::now() < deadline,
            "replica process {pid} still running"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scaling_down_then_up_places_the_new_replica_on_the_freed_gpu() {
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = write_tiny_sd15(dir.path(), "tiny-sd15").unwrap();
    let runtime = Runtime::new(SupervisorConfig::default(), EventChannel::new());
    let events = runtime.events();
    let node = runtime.start();
    // One GPU each (this machine needs none: the replicas run on the CPU).
    let pool = Pool::start(
        tiny_pool(&checkpoint, 2, 1.0),
        events,
        node.shutdown.child_token(),
    );
    let gpus = |s: &NodeState| -> Vec<(usize, Vec<usize>)> {
        s.replicas
            .values()
            .map(|r| (r.index, r.gpus.clone()))
            .collect()
    };
    until(&node, "two replicas reported", |s| s.replicas.len() == 2).await;
    assert_eq!(gpus(&node.snapshot()), vec![(0, vec![0]), (1, vec![1])]);
    pool.scale(1);
    until(&node, "replica 1 retired", |s| status(s, 1).is_none()).await;
    pool.scale(2);
    until(&node, "replica 2 reported", |s| status(s, 2).is_some()).await;
    // A new index (reports of the retired one never mix with it), on the GPU it left.
    assert_eq!(gpus(&node.snapshot()), vec![(0, vec![0]), (2, vec![1])]);
    node.shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(30), node.wait())
        .await
        .unwrap();
}

#[tokio::test]
async fn a_replica_scaled_away_during_its_restart_backoff_goes_at_once() {
    let runtime = Runtime::new(SupervisorConfig::default(), EventChannel::new());
    let events = runtime.events();
    let node = runtime.start();
    let mut config = tiny_pool(std::path::Path::new("/nonexistent"), 1, 0.0);
    // A process that dies at once, then a long backoff before the next try.
    config.command = ReplicaCommand {
        program: "/bin/false".into(),
        args: Vec::new(),
    };
    config.backoff_initial = Duration::from_secs(120);
    config.backoff_max = Duration::from_secs(120);
    let pool = Pool::start(config, events, node.shutdown.child_token());
    until(&node, "replica 0 dead", |s| {
        status(s, 0) == Some(ReplicaStatus::Dead)
    })
    .await;
    let asked = Instant::now();
    pool.scale(0);
    until(&node, "replica 0 retired", |s| status(s, 0).is_none()).await;
    assert!(
        asked.elapsed() < Duration::from_secs(10),
        "retired in {:?}, not after its 120 s backoff",
        asked.elapsed()
    );
    node.shutdown.cancel();
}

/// The state letter in `/proc/<pid>/stat`, None once the process is gone. A zombie ('Z') is
/// dead too: whoever inherited it may not have reaped it yet.
fn proc_state(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// The real binary serving the tiny model: its replica starts with a clean environment (no
/// secret of the node's), and dies with the node even when the node is SIGKILLed mid-job.
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_get_no_secrets_and_die_with_a_killed_node() {
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = write_tiny_sd15(dir.path(), "tiny-sd15").unwrap();
    // The structural check a download without a pinned sha256 gets accepts a loadable file.
    nicheimage_node::download::check_checkpoint(&checkpoint).unwrap();
    let free_port = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    };
    let (port, metrics) = (free_port(), free_port());
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[node]\ndevice = \"cpu\"\n[metrics]\nlisten = \"127.0.0.1:{metrics}\"\n\
             [endpoint]\nmodel_name = \"Tiny\"\nhost = \"127.0.0.1\"\nport = {port}\n\
             num_replicas = 1\nrequest_timeout_secs = 600\n\
             [models.Tiny]\narch = \"sd15\"\ncheckpoint = \"{}\"\nmax_side = 1024\n\
             scheduler = \"euler\"\n",
            checkpoint.display()
        ),
    )
    .unwrap();
    let node = std::process::Command::new(env!("CARGO_BIN_EXE_nicheimage-tui"))
        .args(["endpoint", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .env("XDG_CONFIG_HOME", dir.path())
        .env("NICHEIMAGE_WALLET_PASSWORD", "hunter2")
        .env("NICHEIMAGE_OWNER_SECRET", "s3cret")
        .env("AWS_SECRET_ACCESS_KEY", "aws-s3cret")
        .env("UNRELATED_SETTING", "1")
        .env("NICHEIMAGE_KEEP_ME", "kept")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Killed however the test ends, so a failed assertion leaves no node behind.
    struct KillOnDrop(std::process::Child);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut node = KillOnDrop(node);
    let client = nicheimage_common::http::client().unwrap();
    let health = format!("http://127.0.0.1:{metrics}/healthz");
    let replica = |status: &'static str| {
        let (client, health) = (client.clone(), health.clone());
        async move {
            let deadline = Instant::now() + Duration::from_secs(90);
            loop {
                if let Ok(r) = client.get(&health).send().await
                    && let Ok(h) = r.json::<serde_json::Value>().await
                    && h["replicas"]["0"]["status"] == status
                    && let Some(pid) = h["replicas"]["0"]["pid"].as_i64()
                {
                    return pid as i32;
                }
                assert!(Instant::now() < deadline, "no {status} replica within 90 s");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    let pid = replica("ready").await;

    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    let names: Vec<String> = environ
        .split(|b| *b == 0)
        .filter_map(|kv| kv.split(|b| *b == b'=').next())
        .map(|k| String::from_utf8_lossy(k).into_owned())
        .collect();
    for secret in [
        "NICHEIMAGE_WALLET_PASSWORD",
        "NICHEIMAGE_OWNER_SECRET",
        "AWS_SECRET_ACCESS_KEY",
        "UNRELATED_SETTING",
    ] {
        assert!(!names.iter().any(|n| n == secret), "{secret} in {names:?}");
    }
    assert!(names.iter().any(|n| n == "NICHEIMAGE_KEEP_ME"), "{names:?}");
    assert!(names.iter().any(|n| n == "PATH"), "{names:?}");
    let text = String::from_utf8_lossy(&environ);
    assert!(!text.contains("hunter2") && !text.contains("s3cret"));

    // A long job keeps the replica from noticing its closed stdin; kill -9 the node meanwhile.
    let generate = format!("http://127.0.0.1:{port}/generate");
    let body = serde_json::json!({
        "prompt": "a cat", "seed": 1, "pipeline_type": "txt2img",
        "pipeline_params": {"num_inference_steps": 50, "width": 1024, "height": 1024},
    });
    let job = tokio::spawn(client.post(&generate).json(&body).send());
    assert_eq!(replica("busy").await, pid);
    node.0.kill().unwrap();
    node.0.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut gone = false;
    while Instant::now() < deadline {
        if matches!(proc_state(pid), None | Some('Z') | Some('X')) {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if !gone {
        // SAFETY: clean up the orphan before failing.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    assert!(gone, "replica {pid} outlived its SIGKILLed node by 5 s");
    assert!(job.await.unwrap().is_err(), "the node is gone");
}

/// A model that cannot load for a lasting reason (here a v-prediction scheduler) is reported
/// as failed with the reason and retried at the slow end of the backoff, not every second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_that_cannot_load_is_failed_with_its_reason_and_retried_slowly() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("v-pred");
    let tiny = nicheimage_engine::config::PipelineConfig::tiny();
    nicheimage_engine::tiny::write_config_folder(&folder, &tiny).unwrap();
    let path = folder.join("scheduler/scheduler_config.json");
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    config["prediction_type"] = "v_prediction".into();
    std::fs::write(&path, config.to_string()).unwrap();
    let runtime = Runtime::new(SupervisorConfig::default(), EventChannel::new());
    let events = runtime.events();
    let node = runtime.start();
    let mut config = tiny_pool(&folder, 1, 0.0);
    config.backoff_initial = Duration::from_millis(10);
    config.backoff_max = Duration::from_secs(30);
    let pool = Pool::start(config, events, node.shutdown.child_token());
    // A job queued while the only replica is still loading: released with the reason as soon
    // as that replica fails, not after the 60 s request timeout.
    let queued = Instant::now();
    let waiting = tokio::spawn({
        let pool = pool.clone();
        async move { pool.generate(job(1)).await }
    });
    until(&node, "replica 0 failed", |s| {
        status(s, 0) == Some(ReplicaStatus::Failed)
    })
    .await;
    let failed_after = queued.elapsed();
    let released = waiting.await.unwrap();
    assert_eq!(released, Err(JobError::NoReplica));
    eprintln!(
        "queued job released {:?} after queueing; the replica was seen failed at {failed_after:?}",
        queued.elapsed()
    );
    assert!(
        queued.elapsed() < failed_after + Duration::from_secs(2),
        "released {:?} after queueing, the replica failed after {failed_after:?}",
        queued.elapsed()
    );
    // As an endpoint's node, /readyz says why it cannot serve.
    let mut state = (*node.snapshot()).clone();
    state.endpoint = Some(Default::default());
    assert_eq!(
        state
            .readiness()
            .map_err(|e| matches!(e, NotReady::NoReplica { failing: 1, .. })),
        Err(true),
        "/readyz says why"
    );
    let report = node.snapshot().replicas[&0].clone();
    let reason = report.last_error.unwrap();
    assert!(
        reason.contains("prediction_type") && reason.contains("retry in 30 s"),
        "{reason}"
    );
    assert_eq!(ReplicaStatus::Failed.health(), "failing");
    // At a 10 ms initial backoff a transient failure would have restarted many times by now.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(node.snapshot().replicas[&0].restarts, 0, "retried early");
    node.shutdown.cancel();
}
