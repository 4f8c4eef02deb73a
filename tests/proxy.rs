//! The validator proxy on loopback: real miners (the tiny SD 1.5 model behind a real endpoint),
//! a real reward service for the organic checks, the proxy run by the node runtime and switched
//! with `Command::SetProxy`. Signed requests are served; unsigned, forged, stale and replayed
//! ones are refused before any miner is asked; a pinned zero-score uid is refused; a check
//! catches a miner answering with the wrong seed; switching off drains, switching on serves
//! again; 100 concurrent requests all answered and every one counted. Junk from the owner's own
//! address is refused on its own limit and never locks out the owner's signed requests; bodies
//! are refused on their headers before they are read.
#![cfg(feature = "local-infer")]

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use base64::Engine;
use common::subnet::{Behaviour, Subnet};
use ed25519_dalek::SigningKey;
use nicheimage_bittensor::dendrite::AxonTarget;
use nicheimage_node::config::SupervisorConfig;
use nicheimage_node::proxy::{Proxy, ProxySettings, auth, client};
use nicheimage_node::runtime::event::ProxyReport;
use nicheimage_node::runtime::{Command, EventChannel, Node, Runtime};
use nicheimage_node::validator::ValidatorShared;
use nicheimage_node::validator::scores::MinerBook;
use serde_json::{Value, json};

fn proxy_state(node: &Node) -> Option<ProxyReport> {
    node.snapshot().proxy.as_deref().cloned()
}

async fn wait_for(node: &Node, what: &str, pred: impl Fn(&ProxyReport) -> bool) -> ProxyReport {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(p) = proxy_state(node)
            && pred(&p)
        {
            return p;
        }
        assert!(Instant::now() < deadline, "proxy never reached: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Sends `body` with exactly these headers; the status and the JSON answer.
async fn send_raw(url: &str, headers: &[(&str, String)], body: &[u8]) -> (u16, Value) {
    let mut request = nicheimage_common::http::client()
        .unwrap()
        .post(url)
        .header("content-type", "application/json");
    for (k, v) in headers {
        request = request.header(*k, v);
    }
    let response = request.body(body.to_vec()).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn now() -> i64 {
    (nicheimage_bittensor::now_ns() / 1_000_000_000) as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_serves_owners_refuses_strangers_checks_miners_and_counts_everything() {
    // uid 1, 2 honest; 3 answers another seed's image; 4 takes 3 s.
    let subnet = Subnet::start(
        &[
            Behaviour::Honest,
            Behaviour::Honest,
            Behaviour::WrongSeed,
            Behaviour::Slow(3),
        ],
        60.0,
    )
    .await;
    let mut book = MinerBook::default();
    for uid in 1..=4u16 {
        book.identify(uid, &format!("miner{uid}"), Some("Tiny"));
        book.record(uid, 1.0);
    }
    book.identify(5, "miner5", Some("Tiny"));
    book.record(5, 0.0);
    let validator = Arc::new(ValidatorShared::with_book(book));
    let axons: BTreeMap<u16, AxonTarget> = subnet
        .axons
        .iter()
        .enumerate()
        .map(|(i, a)| {
            (
                i as u16 + 1,
                AxonTarget {
                    ip: a.address.ip().to_string(),
                    port: a.address.port(),
                    hotkey: common::subnet::key(2 + i as u8).ss58().to_string(),
                },
            )
        })
        .collect();
    validator.set_axons(axons);

    let owner = SigningKey::from_bytes(&[42; 32]);
    let port = common::free_port();
    let url = format!("http://127.0.0.1:{port}/validator_proxy");
    let dir = subnet.dir.path().join("proxy");
    let (toggle_tx, toggle_rx) = tokio::sync::watch::channel(true);
    let settings = ProxySettings {
        listen: ([127, 0, 0, 1], port).into(),
        netuid: 23,
        models: [("Tiny".to_string(), subnet.model.clone())].into(),
        reward_url: subnet.reward_url(),
        owner_public_key: Some(owner.verifying_key()),
        owner_api_url: String::new(),
        allow_insecure_owner_api: false,
        credentials_refresh: Duration::from_secs(600),
        legacy_auth: false,
        max_age: Duration::from_secs(30),
        miner_score_threshold: 0.1,
        checking_probability: 1.0,
        max_concurrent: 256,
        rate_limit_per_minute: 100_000,
        unauthenticated_per_minute: 100_000,
        scheme: None,
        limits: Default::default(),
        counter_path: dir.join("proxy_counter.json"),
        toggle_path: dir.join("proxy-enabled.json"),
    };
    let mut runtime = Runtime::new(
        SupervisorConfig {
            drain_timeout_secs: 30,
            ..Default::default()
        },
        EventChannel::new(),
    );
    runtime.route_proxy_toggle(toggle_tx);
    runtime
        .add(Arc::new(Proxy {
            settings: Arc::new(settings),
            validator: validator.clone(),
            keypair: subnet.validator_key.clone(),
            chain: subnet.chain.clone(),
            toggle: toggle_rx,
        }))
        .expect("a unique component name");
    let node = runtime.start();
    wait_for(&node, "listening", |p| p.listening.is_some()).await;
    let calls = || -> u64 {
        subnet
            .miners
            .iter()
            .map(|m| m.calls.load(Ordering::SeqCst))
            .sum()
    };
    let http = nicheimage_common::http::client().unwrap();
    let long = Duration::from_secs(300);
    let (mut served, mut failed) = (0u64, 0u64);

    // A signed request: an image from uid 1, checked against a regeneration.
    let body = json!({"payload": {"model_name": "Tiny", "prompt": "a red fox"}, "miner_uid": 1});
    let image = client::request(&http, &url, &owner, &body, long)
        .await
        .unwrap();
    served += 1;
    let png = base64::engine::general_purpose::STANDARD
        .decode(&image)
        .unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let p = wait_for(&node, "one success", |p| p.today.success == 1).await;
    assert_eq!((p.today.checked, p.today.check_failed), (1, 0));

    // Strangers: nothing reaches a miner.
    let before = calls();
    let bytes = serde_json::to_vec(&body).unwrap();
    let (status, answer) = send_raw(&url, &[], &bytes).await;
    assert_eq!(status, 401, "{answer}");
    assert!(
        answer["detail"]
            .as_str()
            .unwrap()
            .contains("missing header")
    );
    let forger = SigningKey::from_bytes(&[43; 32]);
    let (status, answer) = send_raw(&url, &auth::sign(&forger, &bytes, now()), &bytes).await;
    assert_eq!(
        (status, answer["detail"].as_str()),
        (401, Some("bad signature"))
    );
    let (status, answer) = send_raw(&url, &auth::sign(&owner, &bytes, now() - 100), &bytes).await;
    assert_eq!(status, 401);
    assert!(answer["detail"].as_str().unwrap().contains("at most 30 s"));
    // The same signed request twice: the second is a replay (the first is served).
    let headers = auth::sign(&owner, &bytes, now());
    let (status, _) = send_raw(&url, &headers, &bytes).await;
    assert_eq!(status, 200);
    let (status, answer) = send_raw(&url, &headers, &bytes).await;
    assert_eq!(
        (status, answer["detail"].as_str()),
        (401, Some("nonce already used"))
    );
    served += 1;
    // Strangers' refusals are counted apart from the owner's figures.
    let strangers = 4u64;
    assert_eq!(
        calls(),
        before + 1,
        "only the one good request reached a miner"
    );

    // A pinned uid whose score is 0.
    let zero = json!({"payload": {"model_name": "Tiny"}, "miner_uid": 5});
    let err = client::request(&http, &url, &owner, &zero, long)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, nicheimage_common::http::ServiceError::Refused { status, detail, .. }
            if status.as_u16() == 400 && detail.contains("score is 0")),
        "{err}"
    );
    // The organic check catches uid 3's wrong image and scores it 0.
    let wrong = json!({"payload": {"model_name": "Tiny", "prompt": "a boat"}, "miner_uid": 3});
    let err = client::request(&http, &url, &owner, &wrong, long)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("organic check failed"), "{err}");
    assert_eq!(
        validator.book().uids[&3]
            .scores
            .iter()
            .copied()
            .collect::<Vec<_>>(),
        vec![1.0, 0.0]
    );
    failed += 2;
    let p = wait_for(&node, "the miss counted", |p| p.today.check_failed == 1).await;
    assert_eq!(p.today.checked, 3);

    // Off while a slow request is in flight: it completes; new connections are refused.
    let slow = json!({"payload": {"model_name": "Tiny"}, "miner_uid": 4});
    let in_flight = {
        let (http, url, owner, slow) = (http.clone(), url.clone(), owner.clone(), slow.clone());
        tokio::spawn(async move { client::request(&http, &url, &owner, &slow, long).await })
    };
    wait_for(&node, "the slow request in flight", |p| p.in_flight == 1).await;
    node.commands.send(Command::SetProxy(false)).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_ok()
    {
        assert!(
            Instant::now() < deadline,
            "still accepting after switching off"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        in_flight.await.unwrap().is_ok(),
        "the in-flight request completes"
    );
    served += 1;
    let p = wait_for(&node, "off", |p| !p.enabled && p.listening.is_none()).await;
    assert_eq!(p.today.success, served);
    let remembered = std::fs::read_to_string(dir.join("proxy-enabled.json")).unwrap();
    assert!(remembered.contains("false"), "{remembered}");
    // The counters were flushed on the way down.
    let on_disk: BTreeMap<String, Value> =
        serde_json::from_str(&std::fs::read_to_string(dir.join("proxy_counter.json")).unwrap())
            .unwrap();
    assert_eq!(on_disk[&p.date]["success"], served);

    // On again.
    node.commands.send(Command::SetProxy(true)).await.unwrap();
    wait_for(&node, "on again", |p| p.enabled && p.listening.is_some()).await;
    client::request(&http, &url, &owner, &body, long)
        .await
        .unwrap();
    served += 1;

    // Load: 100 at once, none lost, every one counted exactly once. Each is two generations
    // (the miner's and the check's), one core each: ~45 s here, three times that on a slow CI
    // machine, so the wait per request is generous.
    let load = 100;
    let started = Instant::now();
    let requests = (0..load).map(|i| {
        let (http, url, owner) = (http.clone(), url.clone(), owner.clone());
        async move {
            // The smallest image the tiny model makes, so 200 generations fit in CI.
            let body = json!({"payload": {
                "model_name": "Tiny", "prompt": format!("load {i}"),
                "pipeline_params": {"width": 32, "height": 32, "num_inference_steps": 2},
            }});
            client::request(&http, &url, &owner, &body, Duration::from_secs(900)).await
        }
    });
    let answers = futures::future::join_all(requests).await;
    let lost: Vec<&nicheimage_common::http::ServiceError> =
        answers.iter().filter_map(|a| a.as_ref().err()).collect();
    assert!(
        lost.is_empty(),
        "{} lost: {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
    served += load;
    eprintln!(
        "{load} concurrent proxy requests in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let p = wait_for(&node, "all counted", |p| p.today.success == served).await;
    let t = &p.today;
    assert_eq!(t.fail, failed);
    assert_eq!(t.unauthenticated, strangers);
    assert_eq!(t.fail_reasons.values().sum::<u64>(), failed);
    assert_eq!(t.latency_ms.iter().sum::<u64>(), served + failed);
    // Every served image passed one check; the failed checks come on top.
    assert_eq!(t.checked, served + t.check_failed, "{t:?}");
    assert!(t.bytes > 0);
    assert_eq!(p.total, *t);

    node.shutdown.cancel();
    node.wait().await;
    let on_disk: BTreeMap<String, nicheimage_node::proxy::counters::DayCounters> =
        serde_json::from_str(&std::fs::read_to_string(dir.join("proxy_counter.json")).unwrap())
            .unwrap();
    assert_eq!(
        on_disk[&p.date], p.today,
        "the file holds what the state showed"
    );
    subnet.stop().await;
}

/// One request written by hand (headers that lie about the body, bodies cut short); the status
/// and the answer's text. Reads until the answer is whole or `wait` passes.
async fn raw(port: u16, head: &str, body: &[u8], wait: Duration) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let request = format!("POST /validator_proxy HTTP/1.1\r\nhost: 127.0.0.1\r\n{head}\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    let mut answer = Vec::new();
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let text = String::from_utf8_lossy(&answer).to_string();
        if let Some((headers, rest)) = text.split_once("\r\n\r\n") {
            let length = headers
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().to_string())
                })
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(0);
            if rest.len() >= length {
                let status = headers.split(' ').nth(1).unwrap().parse().unwrap();
                return (status, rest.to_string());
            }
        }
        let mut buf = [0u8; 4096];
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => panic!("connection closed before an answer: {text:?}"),
            Ok(Ok(n)) => answer.extend_from_slice(&buf[..n]),
            Err(_) => panic!("no answer within {wait:?}: {text:?}"),
        }
    }
}

/// A proxy on loopback that knows no miner (a request that passes authentication and the
/// limits is answered 503), with these limits.
async fn bare_proxy(
    owner: &SigningKey,
    dir: &std::path::Path,
    rate_limit_per_minute: u32,
    unauthenticated_per_minute: u32,
) -> (Node, u16) {
    let port = common::free_port();
    let model =
        nicheimage_node::catalogue::catalogue(&Default::default()).unwrap()["RealisticVision"]
            .clone();
    let (toggle_tx, toggle_rx) = tokio::sync::watch::channel(true);
    let settings = ProxySettings {
        listen: ([127, 0, 0, 1], port).into(),
        netuid: 23,
        models: [("RealisticVision".to_string(), model)].into(),
        reward_url: "http://127.0.0.1:9/{model}".into(),
        owner_public_key: Some(owner.verifying_key()),
        owner_api_url: String::new(),
        allow_insecure_owner_api: false,
        credentials_refresh: Duration::from_secs(600),
        legacy_auth: false,
        max_age: Duration::from_secs(30),
        miner_score_threshold: 0.1,
        checking_probability: 0.0,
        max_concurrent: 4,
        rate_limit_per_minute,
        unauthenticated_per_minute,
        scheme: None,
        limits: nicheimage_common::serve::Limits {
            max_connections: 16,
            header_timeout: Duration::from_secs(5),
            body_timeout: Duration::from_secs(1),
            ..Default::default()
        },
        counter_path: dir.join("proxy_counter.json"),
        toggle_path: dir.join("proxy-enabled.json"),
    };
    let mut runtime = Runtime::new(SupervisorConfig::default(), EventChannel::new());
    runtime.route_proxy_toggle(toggle_tx);
    runtime
        .add(Arc::new(Proxy {
            settings: Arc::new(settings),
            validator: Arc::new(ValidatorShared::with_book(MinerBook::default())),
            keypair: common::subnet::key(1),
            chain: Arc::new(
                nicheimage_bittensor::chain::embedded::EmbeddedChain::from_toml(
                    nicheimage_bittensor::chain::embedded::EXAMPLE,
                )
                .unwrap(),
            ),
            toggle: toggle_rx,
        }))
        .expect("a unique component name");
    let node = runtime.start();
    wait_for(&node, "listening", |p| p.listening.is_some()).await;
    (node, port)
}

/// The three signature headers as raw header lines.
fn header_lines(headers: &[(&'static str, String); 3]) -> String {
    headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn junk_from_the_owners_address_cannot_lock_out_signed_requests() {
    let owner = SigningKey::from_bytes(&[42; 32]);
    let dir = tempfile::tempdir().unwrap();
    let (node, port) = bare_proxy(&owner, dir.path(), 3, 5).await;
    let url = format!("http://127.0.0.1:{port}/validator_proxy");
    let body = serde_json::to_vec(&json!({"payload": {"model_name": "RealisticVision"}})).unwrap();
    let signed = |at: i64| auth::sign(&owner, &body, at);
    let detail = |answer: &Value| answer["detail"].as_str().unwrap_or_default().to_string();

    // A timestamp that would overflow `now - timestamp`: stale, counted as junk (1 of 5).
    let (status, answer) = send_raw(&url, &signed(i64::MIN + now()), &body).await;
    assert_eq!(status, 401, "{answer}");
    assert!(detail(&answer).contains("at most 30 s"), "{answer}");
    // A huge body without signature headers: refused on its headers, never read (2 of 5).
    let wait = Duration::from_secs(5);
    let (status, answer) = raw(port, "content-length: 1000000000\r\n", b"", wait).await;
    assert_eq!(status, 401, "{answer}");
    assert!(answer.contains("missing header"), "{answer}");
    // Three more unsigned, then the address is over its junk limit.
    for _ in 0..3 {
        assert_eq!(send_raw(&url, &[], &body).await.0, 401);
    }
    for _ in 0..20 {
        let (status, answer) = send_raw(&url, &[], &body).await;
        assert_eq!(status, 429, "{answer}");
        assert!(
            detail(&answer).contains("more than 5 unauthenticated"),
            "{answer}"
        );
    }
    // A forged signature from the same address: junk as well.
    let forger = SigningKey::from_bytes(&[43; 32]);
    let forged = auth::sign(&forger, &body, now());
    assert_eq!(send_raw(&url, &forged, &body).await.0, 429);

    // The owner's signed requests from that same address still pass, up to their own limit.
    for _ in 0..3 {
        let (status, answer) = send_raw(&url, &signed(now()), &body).await;
        assert_eq!(status, 503, "{answer}");
        assert!(detail(&answer).contains("miner"), "{answer}");
    }
    let (status, answer) = send_raw(&url, &signed(now()), &body).await;
    assert_eq!(status, 429, "{answer}");
    assert!(detail(&answer).contains("more than 3 signed"), "{answer}");
    // Over the signed limit, even a huge body is refused before it is read.
    let head = format!(
        "content-length: 1000000000\r\n{}",
        header_lines(&signed(now()))
    );
    assert_eq!(raw(port, &head, b"", wait).await.0, 429);

    // The owner's figures hold only the owner's requests; the 26 strangers' refusals (5
    // unauthorized, 21 over the junk limit) have their own counter.
    let p = wait_for(&node, "all counted", |p| {
        p.today.fail == 5 && p.today.unauthenticated == 26
    })
    .await;
    let reasons = &p.today.fail_reasons;
    assert!(!reasons.contains_key("unauthorized"), "{reasons:?}");
    assert_eq!(reasons["no_miner"], 3, "{reasons:?}");
    assert_eq!(reasons["rate_limited"], 2, "{reasons:?}");
    assert!(
        p.recent.iter().all(|r| r.status != 401),
        "strangers stay out of the recent list"
    );
    node.shutdown.cancel();
    node.wait().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_are_bounded_before_and_while_they_are_read() {
    let owner = SigningKey::from_bytes(&[42; 32]);
    let dir = tempfile::tempdir().unwrap();
    let (node, port) = bare_proxy(&owner, dir.path(), 100, 100).await;
    let signed_head = |length: &str| {
        format!(
            "{length}{}",
            header_lines(&auth::sign(&owner, b"{}", now()))
        )
    };
    let wait = Duration::from_secs(5);
    // Well-signed headers claiming a body over the limit: 413 without a byte of it sent.
    let (status, answer) = raw(
        port,
        &signed_head("content-length: 1000000000\r\n"),
        b"",
        wait,
    )
    .await;
    assert_eq!(status, 413, "{answer}");
    assert!(answer.contains("byte limit"), "{answer}");
    // No length: 411.
    let (status, answer) = raw(
        port,
        &signed_head("transfer-encoding: chunked\r\n"),
        b"2\r\n{}\r\n0\r\n\r\n",
        wait,
    )
    .await;
    assert_eq!(status, 411, "{answer}");
    // Part of a body, then nothing: refused once the body timeout (1 s) passes.
    let started = Instant::now();
    let (status, answer) = raw(
        port,
        &signed_head("content-length: 100\r\n"),
        b"{\"payload\"",
        wait,
    )
    .await;
    assert_eq!(status, 408, "{answer}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    // None of them could be authenticated: counted apart from the owner's figures.
    let p = wait_for(&node, "all counted", |p| p.today.unauthenticated == 3).await;
    assert_eq!(p.today.fail, 0, "{:?}", p.today);
    node.shutdown.cancel();
    node.wait().await;
}

/// Forged requests with fresh signature headers are read before their signature can fail. Once
/// an address is over its junk limit (it may still be the owner's, so it is not refused
/// outright), only a few of such bodies are read at once: a fifth is refused 503 before its
/// body, and counted as a stranger's, not in the owner's figures.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_few_bodies_are_read_before_their_signature_is_checked() {
    use tokio::io::AsyncWriteExt;
    let owner = SigningKey::from_bytes(&[42; 32]);
    let forger = SigningKey::from_bytes(&[43; 32]);
    let dir = tempfile::tempdir().unwrap();
    let (node, port) = bare_proxy(&owner, dir.path(), 100, 2).await;
    let body = vec![b' '; 1 << 20];
    let head = format!(
        "content-length: {}\r\n{}",
        body.len(),
        header_lines(&auth::sign(&forger, &body, now()))
    );
    // Two forged requests read in full and refused: the address is now over its junk limit.
    for _ in 0..2 {
        let (status, answer) = raw(port, &head, &body, Duration::from_secs(5)).await;
        assert_eq!(status, 401, "{answer}");
    }
    // Four forged requests whose bodies trickle in: each holds a seat while it is read.
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        let request = format!("POST /validator_proxy HTTP/1.1\r\nhost: 127.0.0.1\r\n{head}\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        stream.write_all(&body[..1024]).await.unwrap();
        held.push(stream);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, answer) = raw(port, &head, b"", Duration::from_secs(5)).await;
    assert_eq!(status, 503, "{answer}");
    assert!(answer.contains("being verified"), "{answer}");
    drop(held);
    // 2 forged, 1 busy and the 4 bodies cut short: all a stranger's.
    let p = wait_for(&node, "counted apart", |p| p.today.unauthenticated == 7).await;
    assert_eq!(p.today.fail, 0, "{:?}", p.today);
    node.shutdown.cancel();
    node.wait().await;
}
