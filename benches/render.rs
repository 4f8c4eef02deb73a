//! The console's cost: frame render time of every view with 256 miners and 8 replicas in state
//! (goal < 2 ms); what the state store pays to publish a snapshot of that state with full log
//! and gallery rings (one event applied, the state copied for the watchers); then the real
//! binary in a pseudo-terminal at the default fps, idle, with no model loaded: its CPU use and
//! resident memory.
//!
//!     cargo bench --bench render

use std::io::Read;
use std::time::{Duration, Instant};

use nicheimage_node::reward::judge::Verdict;
use nicheimage_node::runtime::event::{
    MinerReport, MinerRow, Percentiles, ReplicaReport, ReplicaStatus, RoundOutcome,
    ValidatorCounters, ValidatorReport,
};
use nicheimage_node::runtime::event::{RewardReason, ServiceVerdict};
use nicheimage_node::runtime::{Event, NodeState};
use nicheimage_tui::ui::app::UiState;
use nicheimage_tui::ui::keymap::Action;
use nicheimage_tui::ui::theme::Theme;
use nicheimage_tui::ui::view::{ViewContext, draw};
use ratatui::Terminal;
use ratatui::backend::TestBackend;

fn big_state() -> NodeState {
    let mut s = NodeState::new(0);
    for i in 0..8 {
        let mut r = ReplicaReport::new(i, vec![i], None);
        r.status = ReplicaStatus::Busy;
        r.served = 1000 + i as u64;
        r.latency_ms = Percentiles {
            p50: Some(2900),
            p95: Some(3400),
            p99: Some(3900),
        };
        s.apply(Event::Replica(r), 0);
    }
    let validators: std::collections::BTreeMap<String, ValidatorCounters> = (0..64)
        .map(|i| {
            (
                format!("5Validator{i:040}"),
                ValidatorCounters {
                    uid: Some(i),
                    stake: 20_000.0,
                    requests: 100,
                    ..Default::default()
                },
            )
        })
        .collect();
    s.apply(
        Event::Miner(MinerReport {
            name: "miner".into(),
            validators,
            ..Default::default()
        }),
        0,
    );
    let uids = 0..256u16;
    s.apply(
        Event::Validator(ValidatorReport {
            step: 100,
            last_round: uids
                .clone()
                .map(|uid| RoundOutcome {
                    uid,
                    model: "RealisticVision".into(),
                    pipeline: nicheimage_node::catalogue::Pipeline::Txt2img,
                    reward: Some(f64::from(uid % 2)),
                    reason: RewardReason::Judged {
                        verdict: ServiceVerdict::Verdict(Verdict::Match { distance: 3 }),
                        secs: 2.1,
                        reward: 0.998,
                    },
                    latency_ms: Some(2100 + u64::from(uid)),
                })
                .collect(),
            scores: uids.clone().map(|u| (u, f64::from(u) / 256.0)).collect(),
            miners: uids
                .clone()
                .map(|u| {
                    (
                        u,
                        MinerRow {
                            hotkey: format!("5Miner{u:042}"),
                            model: "RealisticVision".into(),
                            scores: vec![0.9; 10],
                            mean: 0.9,
                        },
                    )
                })
                .collect(),
            weights_set: uids.map(|u| (u, u * 200)).collect(),
            timeouts: [("RealisticVision".to_string(), 12.0)].into(),
            ..Default::default()
        }),
        0,
    );
    s
}

fn render_times() {
    let state = big_state();
    let theme = Theme::default_theme();
    let mut terminal = Terminal::new(TestBackend::new(160, 48)).unwrap();
    println!("frame render, 160x48, 256 miners, 8 replicas (mean / worst of 300 frames):");
    let views = UiState::default().views().count();
    for i in 0..views {
        let mut ui = UiState::default();
        ui.handle(Action::GoTo(i), &state);
        let mut times = Vec::new();
        for _ in 0..300 {
            let started = Instant::now();
            terminal
                .draw(|f| {
                    draw(
                        f,
                        &ui,
                        &ViewContext {
                            state: &state,
                            theme: &theme,
                            now_unix_ms: 10_000,
                            config_source: "bench",
                        },
                    )
                })
                .unwrap();
            times.push(started.elapsed());
        }
        let mean = times.iter().sum::<Duration>() / times.len() as u32;
        let worst = times.iter().max().unwrap();
        println!(
            "  {:<10} {:>7.3} ms / {:>7.3} ms",
            ui.focused().title(),
            mean.as_secs_f64() * 1e3,
            worst.as_secs_f64() * 1e3
        );
    }
}

/// (utime + stime in clock ticks, resident bytes) of `pid`.
fn cpu_and_rss(pid: u32) -> (u64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let rss_kb: u64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    (ticks, rss_kb * 1024)
}

fn idle_console() {
    use portable_pty::{CommandBuilder, PtySize, native_pty_system};
    let home = tempfile::tempdir().unwrap();
    let config = home.path().join("config.toml");
    // A node with no model: telemetry and metrics only.
    std::fs::write(&config, "[metrics]\nenabled = false\n").unwrap();
    let pty = native_pty_system()
        .openpty(PtySize {
            rows: 48,
            cols: 160,
            pixel_width: 0,
            pixel_height: 0,
        })
        .unwrap();
    let mut cmd = CommandBuilder::new(env!("CARGO_BIN_EXE_nicheimage-tui"));
    cmd.arg("--config");
    cmd.arg(&config);
    cmd.env("HOME", home.path());
    cmd.env("XDG_DATA_HOME", home.path().join("data"));
    cmd.env("TERM", "xterm-256color");
    let mut child = pty.slave.spawn_command(cmd).unwrap();
    let mut reader = pty.master.try_clone_reader().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        while matches!(reader.read(&mut buf), Ok(n) if n > 0) {}
    });
    let pid = child.process_id().unwrap();
    std::thread::sleep(Duration::from_secs(5));
    let (t0, _) = cpu_and_rss(pid);
    let window = Duration::from_secs(20);
    std::thread::sleep(window);
    let (t1, rss) = cpu_and_rss(pid);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let cpu = (t1 - t0) as f64 / hz / window.as_secs_f64() * 100.0;
    println!("idle console (default fps, telemetry every 2 s, no model loaded):");
    println!("  CPU {cpu:.2} % of one core over {} s", window.as_secs());
    println!("  RSS {:.1} MiB", rss as f64 / (1024.0 * 1024.0));
    let _ = child.kill();
    drop(pty.master);
}

/// The store's publish: apply one log line, copy the state into the snapshot the views and
/// headless read (as `runtime::store` does for every burst of events).
fn publish_cost() {
    let mut state = big_state();
    for i in 0..600u64 {
        state.apply(
            Event::Log(nicheimage_node::runtime::LogLine {
                unix_ms: i,
                level: tracing::Level::INFO,
                target: "nicheimage_node::endpoint".into(),
                message: format!("replica 3 served a 1024x1024 image in 2.9 s (request {i})"),
            }),
            0,
        );
    }
    for i in 0..20u16 {
        state.apply(
            Event::Gallery(nicheimage_node::runtime::event::GalleryImage {
                unix_ms: 0,
                uid: i,
                model: "RealisticVision".into(),
                prompt: "a lighthouse on a cliff, oil painting, golden hour".into(),
                seed: i64::from(i),
                latency_ms: 2900,
                reward: 1.0,
                reason: RewardReason::Judged {
                    verdict: ServiceVerdict::Verdict(Verdict::Match { distance: 0 }),
                    secs: 2.9,
                    reward: 1.0,
                },
                thumbnail: nicheimage_common::image::Thumbnail {
                    width: 64,
                    height: 64,
                    rgb: vec![128; 64 * 64 * 3],
                },
            }),
            0,
        );
    }
    let rounds = 2000u32;
    let started = Instant::now();
    let mut kept = Vec::with_capacity(4);
    for i in 0..rounds {
        state.apply(
            Event::Log(nicheimage_node::runtime::LogLine {
                unix_ms: u64::from(i),
                level: tracing::Level::INFO,
                target: "nicheimage_node::endpoint".into(),
                message: "one more line".into(),
            }),
            0,
        );
        // A watcher still holds the previous snapshot while the next is made.
        kept.push(std::sync::Arc::new(state.clone()));
        if kept.len() > 2 {
            kept.remove(0);
        }
    }
    let each = started.elapsed() / rounds;
    println!(
        "publish (apply a log line, snapshot the state; {} log lines, {} gallery images, 256 miners): {:.1} µs",
        state.logs.len(),
        state.gallery.len(),
        each.as_secs_f64() * 1e6
    );
}

fn main() {
    render_times();
    publish_cost();
    idle_console();
}
