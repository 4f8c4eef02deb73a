//! Remote replicas found by DNS, with real DNS: three endpoint processes on 127.0.0.2/.3/.4
//! behind one name that dnsmasq serves, in a network and mount namespace of the test's own
//! (its loopback, its /etc/resolv.conf); a fourth endpoint with no replicas of its own follows
//! the name. It serves through every address, picks up an added one, and drops one that is
//! killed and leaves the answer — serving throughout.
//!
//! The test re-runs itself inside `unshare --net --mount` (root, as CI is). Without unshare or
//! dnsmasq it says so and passes, unless `NICHEIMAGE_REQUIRE_NETNS` is set (`scripts/test.sh`
//! installs dnsmasq and sets it).
#![cfg(feature = "local-infer")]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nicheimage_engine::tiny::write_tiny_sd15;
use serde_json::{Value, json};

const INSIDE: &str = "NICHEIMAGE_DNS_TEST_INSIDE";
const NAME: &str = "endpoints.nicheimage.test";
const PORT: u16 = 18006;
const METRICS: u16 = 19646;

#[test]
fn remote_replicas_follow_a_dns_name() {
    if std::env::var_os(INSIDE).is_some() {
        return inside();
    }
    let have = |tool: &str| {
        Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !(root && have("unshare") && have("dnsmasq") && have("ip")) {
        assert!(
            std::env::var_os("NICHEIMAGE_REQUIRE_NETNS").is_none(),
            "root, unshare, ip and dnsmasq are needed"
        );
        eprintln!("skipped: needs root, unshare, ip and dnsmasq");
        return;
    }
    let me = std::env::current_exe().unwrap();
    let status = Command::new("unshare")
        .args(["--net", "--mount", "--fork"])
        .arg(me)
        .args([
            "--exact",
            "remote_replicas_follow_a_dns_name",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(INSIDE, "1")
        .status()
        .unwrap();
    assert!(status.success(), "the test inside the namespace failed");
}

/// A process killed (and waited for) when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn run(program: &str, args: &[&str]) {
    let status = Command::new(program).args(args).status().unwrap();
    assert!(status.success(), "{program} {args:?}");
}

/// An endpoint serving the tiny model on `host`, with `replicas` of its own and `extra` lines
/// under `[endpoint]`.
fn endpoint(dir: &Path, checkpoint: &Path, host: &str, replicas: u32, extra: &str) -> Proc {
    let folder = dir.join(host);
    std::fs::create_dir_all(&folder).unwrap();
    let config = folder.join("config.toml");
    std::fs::write(
        &config,
        format!(
            r#"[node]
device = "cpu"
[metrics]
listen = "{host}:{METRICS}"
[endpoint]
model_name = "Tiny"
host = "{host}"
port = {PORT}
num_replicas = {replicas}
request_timeout_secs = 60
{extra}
[models.Tiny]
arch = "sd15"
checkpoint = "{}"
[models.Tiny.defaults]
num_inference_steps = 2
width = 64
height = 64
"#,
            checkpoint.display()
        ),
    )
    .unwrap();
    Proc(
        Command::new(env!("CARGO_BIN_EXE_nicheimage-tui"))
            .args(["endpoint", "--config"])
            .arg(&config)
            .arg("--data-dir")
            .arg(folder.join("data"))
            .env("XDG_CONFIG_HOME", &folder)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// Serves `addresses` for [`NAME`] (dnsmasq rereads the file on SIGHUP).
fn publish(names: &Path, addresses: &[&str], dnsmasq: Option<&Proc>) {
    let text: String = addresses.iter().map(|a| format!("{a} {NAME}\n")).collect();
    std::fs::write(names, text).unwrap();
    if let Some(d) = dnsmasq {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(d.0.id() as i32, libc::SIGHUP) };
    }
}

struct Router {
    client: reqwest::Client,
    rt: tokio::runtime::Runtime,
}

impl Router {
    fn health(&self, host: &str) -> Value {
        self.rt.block_on(async {
            match self
                .client
                .get(format!("http://{host}:{METRICS}/healthz"))
                .send()
                .await
            {
                Ok(r) => r.json().await.unwrap_or(Value::Null),
                Err(_) => Value::Null,
            }
        })
    }

    /// The remote replicas the router has, by address, with their status.
    fn remotes(&self) -> Vec<(String, String)> {
        let h = self.health("127.0.0.1");
        let mut out: Vec<(String, String)> = h["replicas"]
            .as_object()
            .map(|m| {
                m.values()
                    .filter_map(|r| {
                        Some((
                            r["remote"].as_str()?.to_string(),
                            r["status"].as_str()?.to_string(),
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.sort();
        out
    }

    fn until(&self, what: &str, pred: impl Fn(&[(String, String)]) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let remotes = self.remotes();
            if pred(&remotes) {
                return;
            }
            assert!(Instant::now() < deadline, "never: {what} ({remotes:?})");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Sends `n` requests, three at a time, through the router; every one must be served.
    fn generate(&self, n: u64) {
        self.rt.block_on(async {
            for batch in (0..n).collect::<Vec<_>>().chunks(3) {
                let calls = batch.iter().map(|seed| {
                    self.client
                        .post(format!("http://127.0.0.1:{PORT}/generate"))
                        .json(&json!({"prompt": "a lighthouse", "seed": seed,
                            "pipeline_type": "txt2img", "pipeline_params": {}}))
                        .send()
                });
                for r in futures::future::join_all(calls).await {
                    let r = r.unwrap();
                    let status = r.status().as_u16();
                    let body: Value = r.json().await.unwrap_or(Value::Null);
                    assert_eq!(status, 200, "{body}");
                }
            }
        });
    }

    /// Images an endpoint's own replica has served.
    fn served(&self, host: &str) -> u64 {
        self.health(host)["replicas"]["0"]["served"]
            .as_u64()
            .unwrap_or(0)
    }
}

fn ready(remotes: &[(String, String)], host: &str) -> bool {
    remotes
        .iter()
        .any(|(r, s)| r == &format!("http://{host}:{PORT}") && s == "ready")
}

fn inside() {
    let started = Instant::now();
    run("ip", &["link", "set", "lo", "up"]);
    let dir = tempfile::tempdir().unwrap();
    let resolv = dir.path().join("resolv.conf");
    std::fs::write(&resolv, "nameserver 127.0.0.1\n").unwrap();
    run(
        "mount",
        &["--bind", resolv.to_str().unwrap(), "/etc/resolv.conf"],
    );
    let names: PathBuf = dir.path().join("names");
    publish(&names, &["127.0.0.2", "127.0.0.3"], None);
    let dnsmasq = Proc(
        Command::new("dnsmasq")
            .args([
                "--keep-in-foreground",
                "--no-resolv",
                "--no-hosts",
                "--user=root",
                "--bind-interfaces",
                "--listen-address=127.0.0.1",
                "--local-ttl=0",
            ])
            .arg(format!("--addn-hosts={}", names.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let checkpoint = write_tiny_sd15(dir.path(), "tiny-sd15").unwrap();
    let a = endpoint(dir.path(), &checkpoint, "127.0.0.2", 1, "");
    let b = endpoint(dir.path(), &checkpoint, "127.0.0.3", 1, "");
    let c = endpoint(dir.path(), &checkpoint, "127.0.0.4", 1, "");
    let follow = format!("remote_endpoints = [\"http://{NAME}:{PORT}\"]");
    let _router = endpoint(dir.path(), &checkpoint, "127.0.0.1", 0, &follow);
    let router = Router {
        client: nicheimage_common::http::client().unwrap(),
        rt: tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap(),
    };

    // The name gives two addresses: two remote replicas, both serving.
    router.until("both addresses ready", |r| {
        ready(r, "127.0.0.2") && ready(r, "127.0.0.3") && r.len() == 2
    });
    eprintln!("two addresses followed after {:?}", started.elapsed());
    router.generate(6);
    assert!(router.served("127.0.0.2") > 0, "127.0.0.2 served nothing");
    assert!(router.served("127.0.0.3") > 0, "127.0.0.3 served nothing");

    // A third address appears in the answer: picked up.
    let t = Instant::now();
    publish(
        &names,
        &["127.0.0.2", "127.0.0.3", "127.0.0.4"],
        Some(&dnsmasq),
    );
    router.until("the added address ready", |r| {
        ready(r, "127.0.0.4") && r.len() == 3
    });
    eprintln!("an added address served after {:?}", t.elapsed());
    let before = router.served("127.0.0.4");
    router.generate(9);
    assert!(
        router.served("127.0.0.4") > before,
        "127.0.0.4 served nothing"
    );

    // One endpoint is killed: its replica goes down and the rest keep serving; once its
    // address leaves the answer, its replica is gone.
    drop(b);
    router.until("the killed one down", |r| {
        !ready(r, "127.0.0.3") && ready(r, "127.0.0.2") && ready(r, "127.0.0.4")
    });
    router.generate(6);
    let t = Instant::now();
    publish(&names, &["127.0.0.2", "127.0.0.4"], Some(&dnsmasq));
    router.until("the left address dropped", |r| {
        r.len() == 2 && ready(r, "127.0.0.2") && ready(r, "127.0.0.4")
    });
    eprintln!("a removed address dropped after {:?}", t.elapsed());
    router.generate(6);
    drop((a, c, dnsmasq));
}
