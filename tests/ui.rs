//! Console rendering on ratatui's TestBackend, from seeded state (no terminal, no clock).

use nicheimage_node::reward::judge::Verdict;
use nicheimage_node::runtime::event::{
    Announce, HostSample, LogLine, RewardReason, ServiceVerdict, TorchReport, Unanswered,
    WeightsStatus,
};
use nicheimage_node::runtime::{ComponentChange, Event, NodeState};
use nicheimage_tui::ui::app::UiState;
use nicheimage_tui::ui::keymap::Action;
use nicheimage_tui::ui::theme::Theme;
use nicheimage_tui::ui::view::{ViewContext, draw};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use std::time::Duration;

const T0: u64 = 1_700_000_000_000;

fn judged(verdict: Verdict, secs: f64, reward: f64) -> RewardReason {
    RewardReason::Judged {
        verdict: ServiceVerdict::Verdict(verdict),
        secs,
        reward,
    }
}

fn seeded() -> NodeState {
    let mut s = NodeState::new(T0);
    let mut apply = |e: Event| s.apply(e, T0 + 1_000);
    for name in ["metrics", "telemetry"] {
        for change in [ComponentChange::Starting, ComponentChange::Running] {
            apply(Event::Component {
                name: name.into(),
                change,
            });
        }
    }
    apply(Event::Component {
        name: "metrics".into(),
        change: ComponentChange::Failed {
            error: "cannot listen on 127.0.0.1:9646 for /healthz and /metrics: Address in use"
                .into(),
            retry_in: Duration::from_secs(4),
        },
    });
    apply(Event::Host(HostSample {
        process_cpu_percent: 3.0,
        process_cpu_seconds: 1.5,
        process_rss_bytes: 64 * 1024 * 1024,
        load_average_1m: 0.42,
        memory_total_bytes: 24 * 1024 * 1024 * 1024,
        memory_available_bytes: 20 * 1024 * 1024 * 1024,
        cores: 2,
    }));
    apply(Event::Torch(TorchReport {
        compiled_in: true,
        cuda_available: false,
        cuda_devices: 0,
        cudnn_available: false,
        cpu_threads: 2,
        smoke_test: Ok(()),
    }));
    apply(Event::Log(LogLine {
        unix_ms: T0,
        level: tracing::Level::WARN,
        target: "nicheimage_node::runtime".into(),
        message: "component failed component=metrics".into(),
    }));
    s
}

fn render(width: u16, height: u16, ui: &UiState, theme: &Theme) -> Terminal<TestBackend> {
    draw_state(&seeded(), width, height, ui, theme)
}

/// What the console shows for `state`, as text, in the default theme.
fn screen(state: &NodeState, width: u16, height: u16, ui: &UiState) -> String {
    draw_state(state, width, height, ui, &Theme::default_theme())
        .backend()
        .to_string()
}

fn draw_state(
    state: &NodeState,
    width: u16,
    height: u16,
    ui: &UiState,
    theme: &Theme,
) -> Terminal<TestBackend> {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal
        .draw(|f| {
            draw(
                f,
                ui,
                &ViewContext {
                    state,
                    theme,
                    now_unix_ms: T0 + 3_000,
                    config_source: "defaults",
                },
            )
        })
        .unwrap();
    terminal
}

#[test]
fn overview_80x24() {
    let t = render(80, 24, &UiState::default(), &Theme::default_theme());
    insta::assert_snapshot!(t.backend());
}

#[test]
fn overview_160x48() {
    let t = render(160, 48, &UiState::default(), &Theme::default_theme());
    insta::assert_snapshot!(t.backend());
}

#[test]
fn confirm_dialog_and_help() {
    let state = seeded();
    let mut ui = UiState::default();
    ui.handle(Action::Restart, &state);
    insta::assert_snapshot!(
        "confirm",
        render(80, 24, &ui, &Theme::default_theme()).backend()
    );
    let mut ui = UiState::default();
    ui.handle(Action::Help, &state);
    insta::assert_snapshot!(
        "help",
        render(80, 24, &ui, &Theme::default_theme()).backend()
    );
}

#[test]
fn replicas_are_listed_when_an_endpoint_runs() {
    use nicheimage_node::runtime::event::{
        EndpointInfo, Percentiles, ReplicaReport, ReplicaRuns, ReplicaStatus,
    };
    let mut state = seeded();
    state.apply(
        Event::EndpointServing(EndpointInfo {
            model: "DreamShaper".into(),
            pipelines: vec!["txt2img".into(), "img2img".into()],
            nsfw_filter: false,
            pipelines_off: vec!["controlnet_txt2img".into()],
        }),
        T0,
    );
    for (index, status) in [(0, ReplicaStatus::Busy), (1, ReplicaStatus::Dead)] {
        state.apply(
            Event::Replica(ReplicaReport {
                index,
                gpus: vec![index],
                status,
                pid: Some(4242),
                restarts: index as u32,
                served: 120,
                nsfw_blanked: index as u64 * 3,
                failures: [("died".to_string(), index as u64)].into(),
                last_latency_ms: Some(2900),
                latency_ms: Percentiles {
                    p50: Some(2800),
                    p95: Some(3400),
                    p99: Some(3900),
                },
                last_error: (index == 1).then(|| "killed by signal 9".to_string()),
                remote: None,
                rss_bytes: Some(3 << 30),
                vram_bytes: (index == 0).then_some(9 << 30),
                vram_share_bytes: Some(40 << 30),
                images_per_sec: 0.35,
                runs: (index == 0).then(|| ReplicaRuns {
                    architecture: "flux".into(),
                    dtype: "bf16".into(),
                }),
            }),
            T0,
        );
    }
    let mut ui = UiState::default();
    ui.handle(Action::GoTo(1), &state);
    let terminal = draw_state(&state, 100, 30, &ui, &Theme::default_theme());
    insta::assert_snapshot!(terminal.backend());
}

#[test]
fn chain_standing_is_shown_when_watched() {
    use nicheimage_node::runtime::event::ChainReport;
    let mut state = seeded();
    let report = ChainReport {
        network: "embedded chain (2.00 s blocks)".into(),
        netuid: 23,
        block: Some(1042),
        neurons: 3,
        metagraph_block: Some(1000),
        hotkey: Some("5Fe56feiHdCVHEyHpjBZquq6Qq2HEwvaE47DLp18TDi6ptAE".into()),
        uid: Some(2),
        stake: 12.5,
        incentive: 0.3333,
        emission: 0.12,
        validator_permit: false,
        commit_reveal: Some(false),
        standing: Some(nicheimage_bittensor::chain::standing::Standing {
            uid: 2,
            pruning_place: Some((2, 3)),
            immunity_left: Some(0),
            blocks_since_update: 12,
            axon: "203.0.113.7:8091".into(),
            trust: 0.25,
            ..Default::default()
        }),
        clock: Some(nicheimage_bittensor::chain::standing::SubnetClock {
            tempo: 99,
            blocks_to_epoch: 17,
            weights_rate_limit: 100,
            ..Default::default()
        }),
        last_error: None,
    };
    state.apply(Event::Chain(report.clone()), T0);
    let terminal = draw_state(
        &state,
        100,
        26,
        &UiState::default(),
        &Theme::default_theme(),
    );
    insta::assert_snapshot!(terminal.backend());
    // The countdown runs from the live block to the schedule's next epoch, and an epoch the
    // owner triggered is named.
    let mut epoch = nicheimage_bittensor::chain::epoch::EpochState {
        block: 1000,
        tempo: 99,
        last_epoch_block: 990,
        pending_epoch_at: 1050,
        ..Default::default()
    };
    epoch.blocks_since_last_step = 10;
    state.apply(
        Event::Chain(ChainReport {
            clock: Some(nicheimage_bittensor::chain::standing::SubnetClock {
                tempo: 99,
                blocks_to_epoch: 50,
                epoch: epoch.summary(),
                ..Default::default()
            }),
            ..report.clone()
        }),
        T0,
    );
    let text = screen(&state, 200, 26, &UiState::default());
    assert!(
        text.contains("epoch in 8 (owner-triggered at block 1050)"),
        "{text}"
    );
    state.apply(
        Event::Chain(ChainReport {
            last_error: Some("chain unreachable at ws://127.0.0.1:9944: Connection refused".into()),
            ..report
        }),
        T0,
    );
    let text = screen(&state, 120, 26, &UiState::default());
    assert!(
        text.contains("chain unreachable at ws://127.0.0.1:9944"),
        "{text}"
    );
}

#[test]
fn the_miner_lists_its_validators() {
    use nicheimage_node::runtime::event::{MinerReport, ValidatorCounters};
    let mut state = seeded();
    let counters = ValidatorCounters {
        uid: Some(0),
        stake: 20_000.0,
        requests: 12,
        allowed: 10,
        limit: 20,
        window_count: 12,
        window_resets: 0,
        rejected: [("Limit exceeded".to_string(), 2)].into(),
        last_request_unix_ms: Some(T0),
        last_latency_ms: Some(2900),
    };
    state.apply(
        Event::Miner(MinerReport {
            name: "miner".into(),
            sabotage: None,
            hotkey: "5Fe56feiHdCVHEyHpjBZquq6Qq2HEwvaE47DLp18TDi6ptAE".into(),
            axon: "0.0.0.0:8091".into(),
            announced: Some("127.0.0.1:8091".into()),
            announce_result: Some(Announce::OnChain),
            reachability: Some((true, "axon at 203.0.113.7:8091 answers (HTTP 401)".into())),
            rules: Default::default(),
            model_name: Some("RealisticVision".into()),
            metagraph_block: Some(1000),
            responses: [(200, 10), (403, 3)].into(),
            validators: [
                (
                    "5DP4qTec9XxffaALGWsEPhS1oWrDWMBjzhBmyzShREMJpymt".to_string(),
                    counters,
                ),
                (
                    "5Dys2YgKb6cNcnc8QXk5NBw1gRN9bX2B4B92tbQJhYfwVVmo".to_string(),
                    ValidatorCounters {
                        requests: 1,
                        rejected: [("Unrecognized hotkey".to_string(), 1)].into(),
                        ..Default::default()
                    },
                ),
            ]
            .into(),
            last_error: None,
        }),
        T0,
    );
    let terminal = draw_state(
        &state,
        110,
        30,
        &UiState::default(),
        &Theme::default_theme(),
    );
    insta::assert_snapshot!(terminal.backend());
}

#[test]
fn too_small_says_so() {
    let t = render(40, 10, &UiState::default(), &Theme::default_theme());
    let text = t.backend().to_string();
    assert!(text.contains("terminal too small"), "{text}");
}

#[test]
fn failed_component_is_drawn_in_the_error_colour() {
    let theme = Theme::load("high-contrast", false).unwrap();
    // Select the other row: the selected one is drawn in the selection colours.
    let mut ui = UiState::default();
    ui.handle(Action::Down, &seeded());
    let t = render(80, 24, &ui, &theme);
    let buffer = t.backend().buffer();
    // Find the "backoff" status cell of the metrics row and check its style.
    let (x, y) = (0..buffer.area.height)
        .flat_map(|y| (0..buffer.area.width).map(move |x| (x, y)))
        .find(|&(x, y)| {
            (0..7).all(|i| {
                buffer
                    .cell((x + i, y))
                    .is_some_and(|c| c.symbol() == &"backoff"[i as usize..i as usize + 1])
            })
        })
        .expect("a backoff status cell");
    assert_eq!(buffer[(x, y)].fg, theme.error);
}

#[test]
fn the_proxy_line_shows_its_switch_and_todays_traffic() {
    use nicheimage_node::proxy::counters::DayCounters;
    use nicheimage_node::runtime::event::ProxyReport;
    let mut state = seeded();
    let mut today = DayCounters::default();
    today.succeeded(1000, 800);
    today.succeeded(1000, 900);
    today.failed("unauthorized", 1);
    today.checked = 1;
    state.apply(
        Event::Proxy(ProxyReport {
            enabled: true,
            listening: Some("0.0.0.0:10003".into()),
            auth: "signed requests".into(),
            date: "2026-11-25".into(),
            today: today.clone(),
            total: today,
            in_flight: 2,
            ..Default::default()
        }),
        T0,
    );
    let terminal = draw_state(
        &state,
        100,
        26,
        &UiState::default(),
        &Theme::default_theme(),
    );
    insta::assert_snapshot!(terminal.backend());
}

/// A node shaped like the devnet: two local replicas and the reward service's remote one, three
/// miners (one misbehaving), a validator's last round, the proxy.
fn devnet_state() -> NodeState {
    use nicheimage_node::runtime::event::{
        MinerReport, Percentiles, ReplicaReport, ReplicaStatus, RoundOutcome, ValidatorCounters,
        ValidatorReport,
    };
    let mut state = seeded();
    for name in [
        "endpoint",
        "validator",
        "reward",
        "miner-1",
        "miner-2",
        "miner-3",
    ] {
        for change in [ComponentChange::Starting, ComponentChange::Running] {
            state.apply(
                Event::Component {
                    name: name.into(),
                    change,
                },
                T0,
            );
        }
    }
    for (index, status, remote) in [
        (0, ReplicaStatus::Ready, None),
        (1, ReplicaStatus::Dead, None),
        (
            1000,
            ReplicaStatus::Ready,
            Some("http://127.0.0.1:40001".to_string()),
        ),
    ] {
        let mut r = ReplicaReport::new(index, vec![], remote);
        r.status = status;
        r.pid = (index == 0).then_some(4242);
        r.served = 40 + index as u64 % 7;
        r.latency_ms = Percentiles {
            p50: Some(110),
            p95: Some(240),
            p99: Some(300),
        };
        r.last_error = (index == 1).then(|| "killed by signal 9".to_string());
        state.apply(Event::Replica(r), T0);
    }
    let validator = "5DP4qTec9XxffaALGWsEPhS1oWrDWMBjzhBmyzShREMJpymt";
    for (i, sabotage) in [None, Some("WrongSeed"), Some("Slow(6s)")]
        .iter()
        .enumerate()
    {
        state.apply(
            Event::Miner(MinerReport {
                name: format!("miner-{}", i + 1),
                sabotage: sabotage.map(str::to_string),
                hotkey: format!("5Miner{i}"),
                axon: format!("0.0.0.0:4100{i}"),
                announced: Some(format!("127.0.0.1:4100{i}")),
                announce_result: Some(Announce::OnChain),
                model_name: Some("Tiny".into()),
                responses: [(200, 30 - i as u64)].into(),
                validators: [(
                    validator.to_string(),
                    ValidatorCounters {
                        uid: Some(0),
                        stake: 100_000.0,
                        requests: 30,
                        allowed: 30,
                        limit: 10_000,
                        window_count: 12,
                        last_request_unix_ms: Some(T0 + 1_000),
                        last_latency_ms: Some(95),
                        ..Default::default()
                    },
                )]
                .into(),
                ..Default::default()
            }),
            T0,
        );
    }
    state.apply(
        Event::Validator(ValidatorReport {
            hotkey: validator.into(),
            step: 12,
            last_round: vec![
                RoundOutcome {
                    uid: 1,
                    pipeline: nicheimage_node::catalogue::Pipeline::Txt2img,
                    model: "Tiny".into(),
                    reward: Some(0.9998),
                    reason: judged(Verdict::Match { distance: 0 }, 0.31, 0.9998),
                    latency_ms: Some(310),
                },
                RoundOutcome {
                    uid: 2,
                    pipeline: nicheimage_node::catalogue::Pipeline::Txt2img,
                    model: "Tiny".into(),
                    reward: Some(0.0),
                    reason: judged(Verdict::Mismatch { distance: 31 }, 0.25, 0.0),
                    latency_ms: Some(250),
                },
                RoundOutcome {
                    uid: 3,
                    pipeline: nicheimage_node::catalogue::Pipeline::Txt2img,
                    model: "Tiny".into(),
                    reward: Some(0.0),
                    reason: RewardReason::Unanswered(Unanswered::Timeout { secs: 4.0 }),
                    latency_ms: Some(4000),
                },
            ],
            scores: [(1, 0.9998), (2, 0.0), (3, 0.0)].into(),
            weights: Some(WeightsStatus::Set {
                block: 1234,
                uids: 1,
            }),
            next_weights_block: Some(1254),
            miners: (1..=3u16)
                .map(|uid| {
                    let scores: Vec<f64> = (0..8)
                        .map(|i| if uid == 1 { 0.9 + 0.01 * i as f64 } else { 0.0 })
                        .collect();
                    let mean = scores.iter().sum::<f64>() / scores.len() as f64;
                    (
                        uid,
                        nicheimage_node::runtime::event::MinerRow {
                            hotkey: format!("5Miner{}xxxxxxxx", uid - 1),
                            model: "Tiny".into(),
                            scores,
                            mean,
                        },
                    )
                })
                .collect(),
            weights_set: [(1, 65535)].into(),
            timeouts: [("Tiny".to_string(), 4.0)].into(),
            ..Default::default()
        }),
        T0,
    );
    state.apply(
        Event::Gpu(nicheimage_node::telemetry::gpu::GpuReport {
            source: nicheimage_node::telemetry::gpu::GpuSource::Nvml,
            devices: vec![nicheimage_node::telemetry::gpu::GpuDevice {
                index: 0,
                name: "NVIDIA H100 80GB HBM3".into(),
                utilization_percent: Some(87),
                memory_used_bytes: 40 << 30,
                memory_total_bytes: 80 << 30,
                temperature_c: Some(61),
                power_w: Some(512.0),
                power_limit_w: Some(700.0),
                processes: vec![(4242, 9 << 30), (777, 1 << 30)],
            }],
            unavailable: None,
        }),
        T0,
    );
    let mut today = nicheimage_node::proxy::counters::DayCounters::default();
    for ms in [180, 240, 900, 2100] {
        today.succeeded(30_000, ms);
    }
    today.failed("no_miner", 0);
    today.checked = 2;
    state.apply(
        Event::Proxy(nicheimage_node::runtime::event::ProxyReport {
            enabled: true,
            listening: Some("127.0.0.1:10003".into()),
            auth: "signed requests".into(),
            date: "2023-11-14".into(),
            today: today.clone(),
            total: today,
            recent: vec![nicheimage_node::runtime::event::ProxyRequest {
                unix_ms: T0,
                model: "Tiny".into(),
                uid: Some(1),
                status: 200,
                latency_ms: 180,
                outcome: "served, checked".into(),
            }],
            ..Default::default()
        }),
        T0,
    );
    state.apply(
        Event::Download(nicheimage_node::runtime::event::DownloadReport {
            model: "RealisticVision".into(),
            url: "https://civitai.com/api/download/models/130072".into(),
            done_bytes: 1 << 30,
            total_bytes: Some(2 << 30),
            finished: false,
            error: None,
        }),
        T0,
    );
    for (uid, passed) in [(1, true), (2, false)] {
        let rgb: Vec<u8> = (0..32 * 32)
            .flat_map(|i| [(i % 32 * 8) as u8, (i / 32 * 8) as u8, 128])
            .collect();
        state.apply(
            Event::Gallery(nicheimage_node::runtime::event::GalleryImage {
                unix_ms: T0,
                uid: uid as u16,
                model: "Tiny".into(),
                prompt: "a lighthouse on a cliff, oil painting, golden hour".into(),
                seed: 4242 + uid,
                latency_ms: 90,
                reward: if passed { 1.0 } else { 0.0 },
                reason: if passed {
                    judged(Verdict::Match { distance: 0 }, 0.09, 1.0)
                } else {
                    judged(Verdict::Mismatch { distance: 29 }, 0.09, 0.0)
                },
                thumbnail: nicheimage_common::image::Thumbnail {
                    width: 32,
                    height: 32,
                    rgb,
                },
            }),
            T0,
        );
    }
    state
}

#[test]
fn every_view_at_both_sizes() {
    let state = devnet_state();
    let titles: Vec<&str> = UiState::default().views().map(|v| v.title()).collect();
    for (i, title) in titles.into_iter().enumerate() {
        let mut ui = UiState::default();
        ui.handle(Action::GoTo(i), &state);
        assert_eq!(ui.focused().title(), title);
        for (w, h) in [(80, 24), (160, 48)] {
            let t = draw_state(&state, w, h, &ui, &Theme::default_theme());
            insta::assert_snapshot!(format!("view_{title}_{w}x{h}"), t.backend());
        }
    }
}

#[test]
fn the_validator_table_sorts_and_filters() {
    let state = devnet_state();
    let mut ui = UiState::default();
    ui.handle(Action::GoTo(3), &state);
    ui.handle(Action::Sort, &state);
    ui.handle(Action::Sort, &state); // latency: the slow miner first
    let text = screen(&state, 160, 20, &ui);
    let at = |needle: &str| {
        text.find(needle)
            .unwrap_or_else(|| panic!("{needle}: {text}"))
    };
    assert!(at("timeout (4.0 s)") < at("hash distance 0"), "{text}");
    ui.view_mut::<nicheimage_tui::ui::views::ValidatorView>()
        .unwrap()
        .filter
        .text = "timeout".into();
    let text = screen(&state, 160, 20, &ui);
    assert!(
        text.contains("timeout (4.0 s)") && !text.contains("hash distance 0"),
        "{text}"
    );
}

#[test]
fn the_selected_replica_is_highlighted_and_x_asks_before_killing() {
    let state = devnet_state();
    let mut ui = UiState::default();
    ui.handle(Action::GoTo(1), &state);
    ui.handle(Action::Down, &state);
    ui.handle(Action::Kill, &state);
    let t = draw_state(&state, 100, 30, &ui, &Theme::default_theme());
    insta::assert_snapshot!(t.backend());
}

#[test]
fn the_high_contrast_overview_with_its_styles() {
    // The buffer's Debug form lists every cell's text and the style runs: colours are part of
    // what this snapshot checks.
    let theme = Theme::load("high-contrast", false).unwrap();
    let t = draw_state(&devnet_state(), 80, 24, &UiState::default(), &theme);
    insta::assert_snapshot!(format!("{:?}", t.backend().buffer()));
}

/// `--no-ui`'s status line from the same state: its JSON shape is an interface (scripts read
/// it), pinned here so typed payloads inside the state keep it (or change it on purpose).
#[test]
fn the_headless_status_line_keeps_its_shape() {
    let line = nicheimage_tui::headless::status_line(&devnet_state(), T0 + 5_000);
    let value: serde_json::Value = serde_json::from_str(&line).unwrap();
    insta::assert_snapshot!(
        "headless_status_line",
        serde_json::to_string_pretty(&value).unwrap()
    );
}

/// Tabs, number keys, footer and help come from the console's list of views: a console built
/// from two views says so everywhere, and keys beyond them do nothing.
#[test]
fn the_frame_is_built_from_the_list_of_views() {
    use nicheimage_tui::ui::views::{GpuView, LogsView};
    let state = devnet_state();
    let mut ui = UiState::new(vec![Box::new(GpuView), Box::new(LogsView::default())]);
    ui.handle(Action::GoTo(2), &state);
    assert_eq!(ui.focused().title(), "GPU", "no third view");
    let text = screen(&state, 100, 30, &ui);
    assert!(text.starts_with("\"1:GPU 2:Logs │"), "{text}");
    assert!(text.contains(" 1-2  views "), "{text}");
    ui.handle(Action::GoTo(1), &state);
    let text = screen(&state, 100, 30, &ui);
    assert!(
        text.contains(" l  level ") && text.contains(" Space  pause "),
        "{text}"
    );
    ui.handle(Action::Help, &state);
    let help = screen(&state, 100, 30, &ui);
    assert!(
        help.contains("views: gpu logs")
            && help.contains("Logs:")
            && help.contains("pause or follow"),
        "{help}"
    );
}
