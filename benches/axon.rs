//! Signed Synapse round trips through our axon vs the real Python axon (bittensor 10.2.0), in one
//! run, as a ratio:
//!
//!     cargo bench --bench axon
//!
//! Both axons serve `ImageGenerating` on loopback and echo a 1 MB synapse back; the same client
//! (our dendrite: signing, JSON, HTTP) drives both with the same concurrency, so the difference is
//! the server: verification, parsing, the handler hop and the reply. Python comes from
//! `.venv-bittensor` (`scripts/interop/setup.sh`).

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::future::BoxFuture;
use nicheimage_bittensor::axon::{AxonBuilder, Caller, Handler};
use nicheimage_bittensor::dendrite::{AxonTarget, Dendrite};
use nicheimage_bittensor::keypair::Keypair;
use nicheimage_bittensor::synapse::ImageGenerating;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

const CALLS: usize = 200;
const CONCURRENCY: usize = 8;
const PAYLOAD: usize = 1 << 20;
const PY_SEED: &str = "0x3333333333333333333333333333333333333333333333333333333333333333";

struct Echo;

impl Handler<ImageGenerating> for Echo {
    type Error = std::io::Error;

    fn forward(
        self: Arc<Self>,
        _: Caller,
        synapse: ImageGenerating,
    ) -> BoxFuture<'static, Result<ImageGenerating, std::io::Error>> {
        async move { Ok(synapse) }.boxed()
    }
}

struct Figures {
    per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
}

/// One dendrite per lane: an axon (ours and Python's alike) refuses a nonce lower than the last one
/// it saw from the same `hotkey:uuid`, and concurrent 1 MB requests from one dendrite can arrive
/// out of signing order. Eight lanes behave like eight validators.
async fn drive(lanes: &[Dendrite], target: &AxonTarget) -> Figures {
    let synapse = ImageGenerating {
        prompt: "bench".into(),
        image: Value::String("x".repeat(PAYLOAD)),
        ..Default::default()
    };
    // Warm-up (connections, first-request paths).
    for dendrite in lanes {
        let r = dendrite
            .call(target, &synapse, Duration::from_secs(30))
            .await;
        assert_eq!(
            r.status_code, 200,
            "warm-up: {} {}",
            r.status_code, r.status_message
        );
    }
    let mut latencies = Vec::with_capacity(CALLS);
    let started = Instant::now();
    for _ in 0..CALLS / CONCURRENCY {
        let batch = futures::future::join_all(lanes.iter().map(|dendrite| async {
            let t = Instant::now();
            let r = dendrite
                .call(target, &synapse, Duration::from_secs(30))
                .await;
            assert_eq!(r.status_code, 200, "{} {}", r.status_code, r.status_message);
            assert_eq!(r.synapse.image.as_str().map(str::len), Some(PAYLOAD));
            t.elapsed().as_secs_f64()
        }))
        .await;
        latencies.extend(batch);
    }
    let wall = started.elapsed().as_secs_f64();
    latencies.sort_by(f64::total_cmp);
    let at =
        |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)] * 1e3;
    Figures {
        per_second: latencies.len() as f64 / wall,
        p50_ms: at(0.5),
        p99_ms: at(0.99),
    }
}

fn print(name: &str, f: &Figures) {
    println!(
        "{name:<14} {:>8.1} calls/s   p50 {:>7.1} ms   p99 {:>7.1} ms",
        f.per_second, f.p50_ms, f.p99_ms
    );
}

#[tokio::main]
async fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let status = std::process::Command::new("bash")
        .arg(root.join("scripts/interop/setup.sh"))
        .stdout(Stdio::null())
        .status()
        .expect("setup");
    assert!(status.success(), "scripts/interop/setup.sh failed");
    println!(
        "{CALLS} signed ImageGenerating calls of {} KiB each way, {CONCURRENCY} at a time, our dendrite as the client",
        PAYLOAD / 1024
    );
    let lanes: Vec<Dendrite> = (0..CONCURRENCY)
        .map(|_| Dendrite::new(Arc::new(Keypair::generate().0)).expect("client"))
        .collect();

    let axon_key = Arc::new(Keypair::generate().0);
    let axon = AxonBuilder::new(axon_key.clone())
        .attach::<ImageGenerating, _>(Arc::new(Echo))
        .build();
    let server = axon.spawn(([127, 0, 0, 1], 0).into()).await.expect("bind");
    let port = server.address.port();
    let ours = drive(
        &lanes,
        &AxonTarget {
            ip: "127.0.0.1".into(),
            port,
            hotkey: axon_key.ss58().into(),
        },
    )
    .await;
    print("ours (Rust)", &ours);
    server.stop().await;

    let py_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let mut child = tokio::process::Command::new(root.join(".venv-bittensor/bin/python"))
        .arg(root.join("scripts/interop/bt_peer.py"))
        .args([
            "axon",
            "--echo",
            "--port",
            &py_port.to_string(),
            "--seed",
            PY_SEED,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("python axon");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let hotkey = loop {
        let line = lines
            .next_line()
            .await
            .expect("read")
            .expect("python axon exited early");
        if let Ok(v) = serde_json::from_str::<Value>(&line) {
            break v["hotkey"].as_str().expect("hotkey").to_string();
        }
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let python = drive(
        &lanes,
        &AxonTarget {
            ip: "127.0.0.1".into(),
            port: py_port,
            hotkey,
        },
    )
    .await;
    print("Python axon", &python);
    let _ = child.kill().await;
    println!(
        "ratio ours/python: throughput {:.1}x, p99 {:.2}x (below 1 is faster)",
        ours.per_second / python.per_second,
        ours.p99_ms / python.p99_ms
    );
}
