//! The replica pool in process, over real replica processes: scale up and down, restart one,
//! kill one.
#![cfg(feature = "local-infer")]

use nicheimage_tui::config::SupervisorConfig;
use nicheimage_tui::diffusion::tiny::write_tiny_sd15;
use nicheimage_tui::replica::protocol::GenerateJob;
use nicheimage_tui::replica::{Pool, PoolConfig, ReplicaCommand};
use nicheimage_tui::runtime::event::ReplicaStatus;
use nicheimage_tui::runtime::{EventChannel, Node, NodeState, Runtime};
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scale_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = write_tiny_sd15(dir.path(), "tiny-sd15").unwrap();
    let runtime = Runtime::new(SupervisorConfig::default(), EventChannel::new());
    let events = runtime.events();
    let node = runtime.start();
    let pool = Pool::start(
        PoolConfig {
            replicas: 1,
            gpus_per_replica: 0.0,
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
        },
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
            .or(nicheimage_tui::replica::cpu_threads_per_replica(n).map(|t| t.to_string()))
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
    until(&node, "replica 1 retired", |s| {
        status(s, 1) == Some(ReplicaStatus::Stopped)
    })
    .await;
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
