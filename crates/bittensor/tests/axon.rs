//! Our axon's edge cases on loopback, driven by our dendrite and by raw HTTP: refusals carry the
//! right status and reason, oversized bodies and slow handlers do not hang anything, and the
//! reachability self-test tells a live axon from a dead address.

use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use nicheimage_bittensor::axon::{Axon, AxonBuilder, Caller, Handler, RunningAxon};
use nicheimage_bittensor::dendrite::{AxonTarget, Dendrite};
use nicheimage_bittensor::keypair::Keypair;
use nicheimage_bittensor::reachability;
use nicheimage_bittensor::synapse::ImageGenerating;
use serde_json::Value;

/// Echoes, or sleeps for `seed` milliseconds first.
struct Slow;

impl Handler<ImageGenerating> for Slow {
    type Error = std::io::Error;

    fn forward(
        self: Arc<Self>,
        _: Caller,
        mut s: ImageGenerating,
    ) -> BoxFuture<'static, Result<ImageGenerating, std::io::Error>> {
        async move {
            if s.prompt == "fail" {
                return Err(std::io::Error::other("generation failed: out of memory"));
            }
            tokio::time::sleep(Duration::from_millis(s.seed.max(0) as u64)).await;
            s.image = Value::String("done".into());
            Ok(s)
        }
        .boxed()
    }
}

struct Running {
    axon: Arc<Axon>,
    target: AxonTarget,
    _server: RunningAxon,
}

async fn start(max_body: u64) -> Running {
    let key = Arc::new(Keypair::generate().0);
    let axon = AxonBuilder::new(key.clone())
        .max_body(max_body)
        .attach::<ImageGenerating, _>(Arc::new(Slow))
        .build();
    let server = axon.spawn(([127, 0, 0, 1], 0).into()).await.unwrap();
    let port = server.address.port();
    Running {
        axon,
        target: AxonTarget {
            ip: "127.0.0.1".into(),
            port,
            hotkey: key.ss58().into(),
        },
        _server: server,
    }
}

fn dendrite() -> Dendrite {
    Dendrite::new(Arc::new(Keypair::generate().0)).unwrap()
}

#[tokio::test]
async fn answers_and_refusals_carry_status_and_reason() {
    let node = start(64 * 1024).await;
    let d = dendrite();
    let ok = d
        .call(
            &node.target,
            &ImageGenerating {
                prompt: "a cat".into(),
                ..Default::default()
            },
            Duration::from_secs(5),
        )
        .await;
    assert_eq!(
        (ok.status_code, ok.synapse.image.as_str()),
        (200, Some("done")),
        "{ok:?}"
    );
    assert_eq!(ok.axon.hotkey.as_deref(), Some(node.target.hotkey.as_str()));
    assert!(ok.axon.signature.is_some(), "the axon signs its reply");

    let failed = d
        .call(
            &node.target,
            &ImageGenerating {
                prompt: "fail".into(),
                ..Default::default()
            },
            Duration::from_secs(5),
        )
        .await;
    assert_eq!(failed.status_code, 500);
    assert!(
        failed.status_message.contains("out of memory"),
        "{failed:?}"
    );

    let big = ImageGenerating {
        image: Value::String("x".repeat(100 * 1024)),
        ..Default::default()
    };
    let refused = d.call(&node.target, &big, Duration::from_secs(5)).await;
    assert_eq!(refused.status_code, 413, "{refused:?}");

    // A slow handler: the caller gets 408 at its timeout (from whichever side fires first).
    let slow = ImageGenerating {
        seed: 3_000,
        ..Default::default()
    };
    let started = std::time::Instant::now();
    let timed_out = d
        .call(&node.target, &slow, Duration::from_millis(500))
        .await;
    assert_eq!(timed_out.status_code, 408, "{timed_out:?}");
    assert!(started.elapsed() < Duration::from_secs(2));

    let stats = node.axon.stats();
    assert_eq!(stats.by_status.get(&200), Some(&1));
    assert!(stats.last_failure.is_some());
}

#[tokio::test]
async fn unsigned_unknown_and_malformed_requests_are_refused() {
    let node = start(1 << 20).await;
    let client = nicheimage_common::http::client().unwrap();
    let base = format!("http://127.0.0.1:{}", node.target.port);
    let unsigned = client
        .post(format!("{base}/ImageGenerating"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), 401);
    assert_eq!(unsigned.headers()["bt_header_axon_status_code"], "401");
    let body: Value = unsigned.json().await.unwrap();
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("bt_header_dendrite_hotkey"),
        "{body}"
    );

    let unknown = client
        .post(format!("{base}/TextGenerating"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    let body: Value = unknown.json().await.unwrap();
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("ImageGenerating"),
        "{body}"
    );

    // NicheImage's old synapse name is an alias of the same route.
    let alias = client
        .post(format!("{base}/NicheImageProtocol"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(alias.status(), 401);

    let bad_timeout = client
        .post(format!("{base}/ImageGenerating"))
        .header("timeout", "soon")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(bad_timeout.status(), 400);
}

#[tokio::test]
async fn reachability_tells_a_live_axon_from_a_dead_address() {
    let node = start(1 << 20).await;
    let bound = format!("127.0.0.1:{}", node.target.port).parse().unwrap();
    let live = reachability::check("127.0.0.1", node.target.port, bound, "ImageGenerating").await;
    assert_eq!(live.answer, Ok(401), "{live:?}");
    assert!(live.same_port);
    assert!(live.summary().contains("answers"));
    let dead_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dead = reachability::check("127.0.0.1", dead_port, bound, "ImageGenerating").await;
    assert!(dead.answer.is_err());
    assert!(!dead.same_port);
    assert!(
        dead.summary().contains("does NOT answer"),
        "{}",
        dead.summary()
    );
}

/// Work before the signature check is bounded by the header's shape, not its size: 24 requests
/// with 60 000-character hotkeys (8 at a time) are each refused at once by name, as are huge
/// uuids, and a signed call is served right after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_identity_headers_are_refused_before_any_decoding() {
    let node = start(1 << 20).await;
    let client = nicheimage_common::http::client().unwrap();
    let url = format!("http://127.0.0.1:{}/ImageGenerating", node.target.port);
    let long_hotkey = "5".repeat(60_000);
    let started = std::time::Instant::now();
    let mut slowest = Duration::ZERO;
    for _ in 0..3 {
        let batch = (0..8).map(|_| {
            let (client, url, hotkey) = (client.clone(), url.clone(), long_hotkey.clone());
            async move {
                let t = std::time::Instant::now();
                let r = client
                    .post(url)
                    .header("bt_header_dendrite_hotkey", hotkey)
                    .body("{}")
                    .send()
                    .await
                    .unwrap();
                let status = r.status().as_u16();
                let body: Value = r.json().await.unwrap();
                (status, body, t.elapsed())
            }
        });
        for (status, body, took) in futures::future::join_all(batch).await {
            assert_eq!(status, 401, "{body}");
            let message = body["message"].as_str().unwrap();
            assert!(message.contains("60000 characters"), "{message}");
            assert!(message.len() < 300, "the reason does not echo the header");
            slowest = slowest.max(took);
        }
    }
    eprintln!(
        "24 long-hotkey requests refused in {:?} (slowest {slowest:?})",
        started.elapsed()
    );
    assert!(slowest < Duration::from_millis(500), "{slowest:?}");

    let signer = Keypair::generate().0;
    let huge_uuid = client
        .post(&url)
        .header("bt_header_dendrite_hotkey", signer.ss58())
        .header(
            "bt_header_dendrite_signature",
            format!("0x{}", "ab".repeat(64)),
        )
        .header("bt_header_dendrite_uuid", "f".repeat(60_000))
        .header("bt_header_dendrite_nonce", "1")
        .header("bt_header_dendrite_version", "10002000")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(huge_uuid.status(), 400);
    let body: Value = huge_uuid.json().await.unwrap();
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("bt_header_dendrite_uuid"),
        "{body}"
    );

    // Honest work right after.
    let done = dendrite()
        .call(
            &node.target,
            &ImageGenerating::default(),
            Duration::from_secs(10),
        )
        .await;
    assert_eq!(done.status_code, 200, "{done:?}");
    assert_eq!(node.axon.stats().by_status.get(&401), Some(&24));
}

/// A connection from `from` (a loopback address of its own) to the axon at `port`.
async fn connect_from(from: &str, port: u16) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
    socket.connect(([127, 0, 0, 1], port).into()).await.unwrap()
}

/// Sends one unsigned request and reads the status line, or `None` when the axon closed the
/// connection without answering (no seat).
async fn status_from(from: &str, port: u16) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = connect_from(from, port).await;
    let request = "POST /ImageGenerating HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}";
    if stream.write_all(request.as_bytes()).await.is_err() {
        return None;
    }
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
    match read {
        Ok(Ok(_)) if !answer.is_empty() => String::from_utf8_lossy(&answer)
            .lines()
            .next()
            .map(str::to_string),
        _ => None,
    }
}

/// Seats for validators: eight addresses holding every connection they may (header-incomplete,
/// as a slow-loris would) leave strangers without a seat, but a validator the metagraph knows
/// still gets one of the reserved connections and an answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strangers_holding_connections_cannot_lock_validators_out() {
    use tokio::io::AsyncWriteExt;
    let validator: std::net::IpAddr = "127.0.0.10".parse().unwrap();
    let seats: nicheimage_common::serve::Preferred = Default::default();
    seats.write().unwrap().insert(validator);
    let limits = nicheimage_common::serve::Limits {
        max_connections: 12,
        reserved_connections: 4,
        max_connections_per_address: 2,
        limit_loopback: true,
        ..Default::default()
    };
    let axon = AxonBuilder::new(Arc::new(Keypair::generate().0))
        .limits(limits)
        .seats(seats)
        .attach::<ImageGenerating, _>(Arc::new(Slow))
        .build();
    let server = axon.spawn(([127, 0, 0, 1], 0).into()).await.unwrap();
    let port = server.address.port();

    // 8 addresses × 4 tries: at most 2 each are taken, and only 8 shared seats exist.
    let mut held = Vec::new();
    for attacker in 2..=9 {
        for _ in 0..4 {
            let mut s = connect_from(&format!("127.0.0.{attacker}"), port).await;
            let _ = s
                .write_all(b"POST /ImageGenerating HTTP/1.1\r\nHost: x\r\n")
                .await;
            held.push(s);
        }
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        status_from("127.0.0.11", port).await,
        None,
        "strangers get no seat"
    );
    for _ in 0..3 {
        let answer = status_from("127.0.0.10", port).await;
        assert!(
            answer.as_deref().is_some_and(|l| l.contains("401")),
            "the validator is answered: {answer:?}"
        );
    }
    drop(held);
}

/// Peak resident memory of this process, MiB.
fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .unwrap()
        / 1024.0
}

/// A miner answering with a JSON bomb (8 MiB of tiny objects, which serde_json would build into
/// a tree of about a gigabyte) is refused by the dendrite after a walk that builds nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_json_bomb_answer_costs_the_validator_nothing() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let bomb = format!(r#"{{"image":"x","junk":[{}{{}}]}}"#, "{},".repeat(4 << 20));
    let server = tokio::spawn(async move {
        for _ in 0..4 {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut request = vec![0u8; 64 * 1024];
            let _ = stream.read(&mut request).await;
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                bomb.len()
            );
            let _ = stream.write_all(head.as_bytes()).await;
            let _ = stream.write_all(bomb.as_bytes()).await;
        }
    });
    let before = peak_rss_mib();
    let target = AxonTarget {
        ip: "127.0.0.1".into(),
        port,
        hotkey: Keypair::generate().0.ss58().into(),
    };
    let targets = vec![target; 4];
    let answers = dendrite()
        .call_many(
            &targets,
            &ImageGenerating::default(),
            Duration::from_secs(20),
        )
        .await;
    for a in &answers {
        assert_eq!(a.status_code, 422, "{}", a.status_message);
        assert!(
            a.status_message.contains("more than 10000"),
            "{}",
            a.status_message
        );
    }
    let grown = peak_rss_mib() - before;
    eprintln!("four 8 MiB JSON bombs: peak RSS grew {grown:.0} MiB");
    assert!(grown < 150.0, "{grown} MiB");
    server.abort();
}

/// Admits only `known` (a stand-in for the metagraph).
struct Known {
    known: String,
}

impl Handler<ImageGenerating> for Known {
    type Error = std::io::Error;

    fn admissible(&self, hotkey: &str) -> Result<(), std::io::Error> {
        if hotkey == self.known {
            Ok(())
        } else {
            Err(std::io::Error::other("Unrecognized hotkey"))
        }
    }

    fn blacklist(&self, caller: &Caller) -> Result<(), std::io::Error> {
        self.admissible(&caller.hotkey)
    }

    fn forward(
        self: Arc<Self>,
        _: Caller,
        mut s: ImageGenerating,
    ) -> BoxFuture<'static, Result<ImageGenerating, std::io::Error>> {
        async move {
            s.image = Value::String("done".into());
            Ok(s)
        }
        .boxed()
    }
}

/// btauth/1 signs the body, so its signature waits for it; everything before is bounded by the
/// headers: oversized values are refused by their length, a request claiming a hotkey the
/// miner would not serve is refused (403) before a byte of its 30 MB body is read, forged
/// signatures and replays are refused, and an honest btauth/1 call is served right after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn btauth_requests_cost_nothing_before_their_hotkey_could_be_served() {
    use nicheimage_bittensor::btauth;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let axon_key = Arc::new(Keypair::generate().0);
    let caller = Keypair::generate().0;
    let axon = AxonBuilder::new(axon_key.clone())
        .attach::<ImageGenerating, _>(Arc::new(Known {
            known: caller.ss58().into(),
        }))
        .build();
    let server = axon.spawn(([127, 0, 0, 1], 0).into()).await.unwrap();
    let port = server.address.port();
    let url = format!("http://127.0.0.1:{port}/ImageGenerating");
    let client = nicheimage_common::http::client().unwrap();
    let signed = |key: &Keypair, body: &[u8]| {
        btauth::sign(
            key,
            "POST",
            "/ImageGenerating",
            body,
            Some(axon_key.ss58()),
            nicheimage_bittensor::now_ns(),
        )
        .unwrap()
    };
    let send = |headers: Vec<(&'static str, String)>, body: Vec<u8>| {
        let (client, url) = (client.clone(), url.clone());
        async move {
            let mut request = client.post(url).body(body);
            for (k, v) in headers {
                request = request.header(k, v);
            }
            let r = request.send().await.unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap())
        }
    };
    // A 60 000-character hotkey: refused by its length, with a short reason.
    let mut long = signed(&caller, b"{}");
    long.retain(|(k, _)| *k != btauth::HEADER_HOTKEY);
    long.push((btauth::HEADER_HOTKEY, "5".repeat(60_000)));
    let started = std::time::Instant::now();
    let (status, body) = send(long, b"{}".to_vec()).await;
    assert_eq!(status, 401, "{body}");
    assert!(body["detail"].as_str().unwrap().len() < 100, "{body}");
    assert!(started.elapsed() < Duration::from_millis(500));
    // A stranger's well-signed headers and a 30 MB body it never sends: 403 at once.
    let stranger = Keypair::generate().0;
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let mut head = format!(
        "POST /ImageGenerating HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n",
        30 << 20
    );
    for (k, v) in signed(&stranger, b"whatever") {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut answer))
        .await
        .expect("answered without the body")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    assert!(answer.contains("Unrecognized hotkey"), "{answer}");
    // The known hotkey with a forged signature: the body is read, then refused.
    let body = serde_json::to_vec(&ImageGenerating::default()).unwrap();
    let mut forged = signed(&caller, &body);
    forged.retain(|(k, _)| *k != btauth::HEADER_SIGNATURE);
    forged.push((btauth::HEADER_SIGNATURE, format!("0x{}", "ab".repeat(64))));
    let (status, answer) = send(forged, body.clone()).await;
    assert_eq!(status, 401, "{answer}");
    assert_eq!(
        answer["detail"],
        "signature does not verify against the claimed hotkey"
    );
    // Honest, then replayed.
    let honest = signed(&caller, &body);
    let (status, answer) = send(honest.clone(), body.clone()).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["image"], "done");
    let (status, answer) = send(honest, body).await;
    assert_eq!(status, 401, "{answer}");
    assert_eq!(
        answer["detail"],
        "this nonce was already accepted from this hotkey"
    );
}
