//! The Overview: components, the miner, one line per role (chain, replicas, miners, validator,
//! proxy, GPU, host) and the log tail.

use super::app::Outcome;
use super::keymap::{Action, Binding};
use super::logs_view::draw_log;
use super::miners_view::draw_miner;
use super::theme::Theme;
use super::view::{View, ViewContext};
use super::widgets::{Columns, block, bytes, gauge, sparkline, status_style};
use crossterm::event::KeyCode;
use nicheimage_node::runtime::event::{WeightsState, WeightsStatus};
use nicheimage_node::runtime::{Command, ComponentStatus, NodeState};
use nicheimage_node::telemetry::gpu::GpuUnavailable;
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, TableState};

/// The Overview's state: the selected component, by name so it survives components appearing.
#[derive(Debug, Clone, Default)]
pub struct OverviewView {
    pub selected: Option<String>,
}

const KEYS: &[Binding] = &[
    Binding {
        codes: &[KeyCode::Up, KeyCode::Char('k')],
        label: "↑/k",
        help: "select the previous component",
        short: "",
        action: Action::Up,
    },
    Binding {
        codes: &[KeyCode::Down, KeyCode::Char('j')],
        label: "↓/j",
        help: "select the next component",
        short: "select",
        action: Action::Down,
    },
    Binding {
        codes: &[KeyCode::Char('r')],
        label: "r",
        help: "restart the selected component",
        short: "restart",
        action: Action::Restart,
    },
    Binding {
        codes: &[KeyCode::Char('s')],
        label: "s",
        help: "stop or start the selected component",
        short: "stop/start",
        action: Action::StartStop,
    },
];

impl OverviewView {
    fn selected_index(&self, state: &NodeState) -> usize {
        self.selected
            .as_ref()
            .and_then(|n| state.components.keys().position(|k| k == n))
            .unwrap_or(0)
    }

    fn move_selection(&mut self, state: &NodeState, delta: isize) {
        let n = state.components.len();
        if n == 0 {
            return;
        }
        let i = (self.selected_index(state) as isize + delta).clamp(0, n as isize - 1) as usize;
        self.selected = state.components.keys().nth(i).cloned();
    }
}

impl View for OverviewView {
    fn title(&self) -> &'static str {
        "Overview"
    }

    fn bindings(&self) -> &'static [Binding] {
        KEYS
    }

    fn handle(&mut self, action: Action, state: &NodeState) -> Outcome {
        match action {
            Action::Up | Action::Down => {
                self.move_selection(state, if action == Action::Up { -1 } else { 1 });
                Outcome::Nothing
            }
            Action::Restart | Action::StartStop => {
                let i = self.selected_index(state);
                let Some((name, c)) = state.components.iter().nth(i) else {
                    return Outcome::Nothing;
                };
                let (verb, command) = match (action, c.status) {
                    (Action::Restart, _) => ("Restart", Command::Restart(name.clone())),
                    (_, ComponentStatus::Stopped) => ("Start", Command::Start(name.clone())),
                    _ => ("Stop", Command::Stop(name.clone())),
                };
                Outcome::Ask {
                    prompt: format!("{verb} component `{name}`?"),
                    command,
                }
            }
            _ => Outcome::Nothing,
        }
    }

    fn draw(&self, frame: &mut Frame, area: Rect, v: &ViewContext) {
        draw_overview(frame, area, v, self.selected_index(v.state));
    }
}

/// Components, the miner (when there is one), status lines and the log tail.
fn draw_overview(frame: &mut Frame, area: Rect, v: &ViewContext, selected: usize) {
    let rows = v.state.components.len().max(1) as u16;
    // Several miners (the devnet) have their own view; replicas always do.
    let single_miner = match v.state.miners.len() {
        1 => v.state.miners.values().next(),
        _ => None,
    };
    let miner_rows = single_miner.map_or(0, |m| (m.validators.len() as u16).clamp(1, 6) + 4);
    let host_rows = 4
        + u16::from(v.state.gpu.is_some())
        + u16::from(!v.state.incentive_history.is_empty() || !v.state.reward_history.is_empty())
        + v.state
            .validator
            .as_ref()
            .map_or(0, |r| r.timeouts.len().min(2) as u16)
        + u16::from(v.state.chain.is_some())
        + u16::from(v.state.chain.as_ref().is_some_and(|c| c.standing.is_some()))
        + u16::from(v.state.proxy.is_some())
        + u16::from(v.state.validator.is_some())
        + u16::from(!v.state.replicas.is_empty())
        + u16::from(v.state.miners.len() > 1);
    // The node lines win over the components table when rows are short (the table scrolls to
    // its selection); the log takes what is left.
    let table_rows = (rows + 3)
        .min(area.height.saturating_sub(host_rows + miner_rows + 3))
        .max(4);
    let [components, miner, host, logs] = Layout::vertical([
        Constraint::Length(table_rows),
        Constraint::Length(miner_rows),
        Constraint::Length(host_rows),
        Constraint::Min(0),
    ])
    .areas(area);
    draw_components(frame, components, v, selected);
    if let Some(m) = single_miner {
        draw_miner(frame, miner, m, v.now_unix_ms, v.theme);
    }
    draw_host(frame, host, v);
    draw_log(frame, logs, v, None);
}

/// A component as the table lists it.
type Entry<'a> = (
    &'a String,
    &'a nicheimage_node::runtime::state::ComponentState,
);

fn draw_components(frame: &mut Frame, area: Rect, v: &ViewContext, selected: usize) {
    let t = v.theme;
    let columns = Columns::<Entry>::new()
        .col("component", Constraint::Length(12), |(name, _): &Entry| {
            Cell::from(name.as_str())
        })
        .col("status", Constraint::Length(11), |(_, c)| {
            let (label, style) = status_style(c.status, t);
            let status = match c.retry_at_unix_ms {
                Some(at) => format!(
                    "{label} {}s",
                    at.saturating_sub(v.now_unix_ms).div_ceil(1000)
                ),
                None => label.to_string(),
            };
            Cell::from(status).style(style)
        })
        .col("restarts", Constraint::Length(8), |(_, c)| {
            Cell::from(c.restarts.to_string())
        })
        .col("listening", Constraint::Length(21), |(name, _)| {
            Cell::from(
                v.state
                    .listeners
                    .get(*name)
                    .map(String::as_str)
                    .unwrap_or(""),
            )
        })
        .col("last error", Constraint::Min(10), |(_, c)| {
            Cell::from(c.last_error.as_deref().unwrap_or("")).style(t.bad())
        });
    let table = columns
        .table(v.state.components.iter(), t.value(), t.label())
        .row_highlight_style(t.selected())
        .block(block("components", t));
    let mut selection = TableState::default();
    if !v.state.components.is_empty() {
        selection.select(Some(selected));
    }
    frame.render_stateful_widget(table, area, &mut selection);
}

fn draw_host(frame: &mut Frame, area: Rect, v: &ViewContext) {
    let t = v.theme;
    let muted = t.label();
    let text = t.value();
    let host = match &v.state.host {
        Some(h) => Line::from(vec![
            Span::styled("cpu ", muted),
            Span::styled(format!("{:.0}%", h.process_cpu_percent), text),
            Span::styled("  rss ", muted),
            Span::styled(bytes(h.process_rss_bytes), text),
            Span::styled(" │ load ", muted),
            Span::styled(
                format!("{:.2} ({} cores)", h.load_average_1m, h.cores),
                text,
            ),
            Span::styled("  mem free ", muted),
            Span::styled(
                format!(
                    "{} / {}",
                    bytes(h.memory_available_bytes),
                    bytes(h.memory_total_bytes)
                ),
                text,
            ),
        ]),
        None => Line::styled("waiting for the first sample…", muted),
    };
    let torch = match &v.state.torch {
        None => Line::styled("libtorch: probing…", muted),
        Some(r) if !r.compiled_in => Line::styled(
            "libtorch: not in this build (remote generation only)",
            muted,
        ),
        Some(r) => {
            let devices = if r.cuda_available {
                format!(
                    "CUDA, {} device(s), cuDNN {}",
                    r.cuda_devices,
                    if r.cudnn_available { "yes" } else { "no" }
                )
            } else {
                format!("CPU only, {} threads", r.cpu_threads)
            };
            let (smoke, style) = match &r.smoke_test {
                Ok(()) => ("smoke test ok".to_string(), t.good()),
                Err(e) => (format!("smoke test FAILED: {e}"), t.bad()),
            };
            Line::from(vec![
                Span::styled("libtorch 2.11 ", muted),
                Span::styled(devices, text),
                Span::styled("  ", muted),
                Span::styled(smoke, style),
            ])
        }
    };
    // Most telling first: a short terminal cuts from the bottom.
    let mut lines = Vec::new();
    if let Some(chain) = &v.state.chain {
        lines.push(chain_line(chain, t));
        if let Some(s) = &chain.standing {
            lines.push(standing_line(s, chain, t));
        }
    }
    if let Some(validator) = &v.state.validator {
        lines.push(validator_line(validator, t));
        lines.extend(latency_lines(validator, t));
    }
    if let Some(proxy) = &v.state.proxy {
        lines.push(proxy_line(proxy, v.now_unix_ms, t));
    }
    if !v.state.replicas.is_empty() {
        lines.push(replicas_line(v, t));
    }
    if v.state.miners.len() > 1 {
        lines.push(miners_line(v, t));
    }
    if let Some(history) = history_line(v, t) {
        lines.push(history);
    }
    if let Some(gpu) = &v.state.gpu {
        lines.push(gpu_line(gpu, t));
    }
    lines.extend([host, torch]);
    frame.render_widget(Paragraph::new(lines).block(block("node", t)), area);
}

/// The validator proxy: on/off and where, today's traffic, the latest problem.
pub(super) fn proxy_line<'a>(
    p: &'a nicheimage_node::runtime::event::ProxyReport,
    now_unix_ms: u64,
    t: &Theme,
) -> Line<'a> {
    let muted = t.label();
    let text = t.value();
    let mut spans = vec![Span::styled("proxy ", muted)];
    match (&p.listening, p.enabled) {
        (Some(address), _) => spans.push(Span::styled(format!("ON {address}"), t.good())),
        (None, true) => spans.push(Span::styled("starting", t.warning())),
        (None, false) => spans.push(Span::styled("off (p to switch on)", muted)),
    }
    let d = &p.today;
    spans.extend([
        Span::styled("  today ", muted),
        Span::styled(format!("{} ok", d.success), t.good()),
        Span::styled(" / ", muted),
        Span::styled(
            format!("{} failed", d.fail),
            Style::new().fg(if d.fail > 0 { t.warn } else { t.text }),
        ),
        Span::styled("  checks ", muted),
        Span::styled(
            format!(
                "{}/{} passed",
                d.checked - d.check_failed.min(d.checked),
                d.checked
            ),
            text,
        ),
        Span::styled("  in flight ", muted),
        Span::styled(p.in_flight.to_string(), text),
        Span::styled("  req/s ", muted),
        Span::styled(
            format!("{:.2}", super::proxy_view::per_second(p, now_unix_ms)),
            text,
        ),
    ]);
    if let Some(w) = p.warnings.first() {
        spans.push(Span::styled(format!("  {w}"), t.warning()));
    } else if let Some(e) = &p.last_error {
        spans.push(Span::styled(format!("  {e}"), t.bad()));
    }
    Line::from(spans)
}

/// Each GPU in a few words (details in the GPU view), or why there is none.
pub(super) fn gpu_line<'a>(
    g: &'a nicheimage_node::telemetry::gpu::GpuReport,
    t: &Theme,
) -> Line<'a> {
    let muted = t.label();
    let mut spans = vec![Span::styled("gpu ", muted)];
    if let Some(why) = &g.unavailable {
        spans.push(Span::styled(
            match why {
                GpuUnavailable::NoDriver { .. } => "no NVIDIA driver (CPU only)",
            },
            muted,
        ));
        return Line::from(spans);
    }
    for d in &g.devices {
        let mem = (100 * d.memory_used_bytes)
            .checked_div(d.memory_total_bytes)
            .unwrap_or(0);
        spans.push(Span::styled(format!("#{} ", d.index), muted));
        spans.push(Span::styled(
            format!(
                "{} util {}  mem {mem}%  ",
                gauge(d.utilization_percent.unwrap_or(0) as f64 / 100.0),
                d.utilization_percent
                    .map_or("n/a".into(), |u| format!("{u}%"))
            ),
            t.value(),
        ));
    }
    Line::from(spans)
}

/// Our incentive per metagraph and the validator's mean reward per round.
pub(super) fn history_line<'a>(v: &ViewContext<'a>, t: &Theme) -> Option<Line<'a>> {
    let muted = t.label();
    let mut spans = Vec::new();
    if !v.state.incentive_history.is_empty() {
        spans.push(Span::styled("incentive ", muted));
        spans.push(Span::styled(
            sparkline(&v.state.incentive_history, 30),
            t.highlight(),
        ));
        spans.push(Span::raw("  "));
    }
    if !v.state.reward_history.is_empty() {
        spans.push(Span::styled("mean reward per round ", muted));
        spans.push(Span::styled(
            sparkline(&v.state.reward_history, 30),
            t.good(),
        ));
        if let Some(last) = v.state.reward_history.back() {
            spans.push(Span::styled(format!(" {last:.2}"), t.value()));
        }
    }
    (!spans.is_empty()).then(|| Line::from(spans))
}

/// Per model: the last round's answer latency p50/p95 against the model's timeout, and the time
/// penalty a p95 answer pays.
pub(super) fn latency_lines<'a>(
    r: &'a nicheimage_node::runtime::event::ValidatorReport,
    t: &Theme,
) -> Vec<Line<'a>> {
    let muted = t.label();
    r.latency_by_model()
        .into_iter()
        .map(|l| {
            let style = if l.p95_secs >= l.timeout_secs {
                t.bad()
            } else if l.penalty_at_p95 > 0.05 {
                t.warning()
            } else {
                t.good()
            };
            Line::from(vec![
                Span::styled(format!("latency {} ", l.model), muted),
                Span::styled(
                    format!("p50 {:.2} s  p95 {:.2} s", l.p50_secs, l.p95_secs),
                    style,
                ),
                Span::styled(format!(" of {:.0} s timeout ", l.timeout_secs), muted),
                Span::styled(gauge(l.p95_secs / l.timeout_secs), style),
                Span::styled(format!("  penalty at p95 {:.3}", l.penalty_at_p95), muted),
            ])
        })
        .take(2)
        .collect()
}

/// Rounds, the best score, the last weights (details in the Validator view).
pub(super) fn validator_line<'a>(
    r: &'a nicheimage_node::runtime::event::ValidatorReport,
    t: &Theme,
) -> Line<'a> {
    let muted = t.label();
    let text = t.value();
    let scored = r.scores.values().filter(|s| **s > 0.0).count();
    let mut spans = vec![
        Span::styled("validator ", muted),
        Span::styled(format!("{} rounds", r.step), text),
        Span::styled("  miners scored ", muted),
        Span::styled(format!("{scored}/{}", r.scores.len()), text),
        Span::styled("  weights ", muted),
        Span::styled(
            r.weights
                .as_ref()
                .map_or("not yet".into(), WeightsStatus::to_string),
            Style::new().fg(match r.weights.as_ref().map(WeightsStatus::state) {
                Some(WeightsState::Set) => t.ok,
                Some(WeightsState::Pending) => t.warn,
                Some(WeightsState::Failed) => t.error,
                None => t.muted,
            }),
        ),
    ];
    if let Some(e) = &r.last_error {
        spans.push(Span::styled(format!("  {e}"), t.bad()));
    }
    Line::from(spans)
}

/// Replicas by status and the pool's latency (details in the Replicas view).
pub(super) fn replicas_line<'a>(v: &ViewContext<'a>, t: &Theme) -> Line<'a> {
    use nicheimage_node::runtime::event::ReplicaStatus;
    let count = |s: ReplicaStatus| v.state.replicas.values().filter(|r| r.status == s).count();
    let up = count(ReplicaStatus::Ready) + count(ReplicaStatus::Busy);
    let down = count(ReplicaStatus::Dead);
    let loading = count(ReplicaStatus::Loading);
    let served: u64 = v.state.replicas.values().map(|r| r.served).sum();
    let p95 = v
        .state
        .replicas
        .values()
        .filter_map(|r| r.latency_ms.p95)
        .max();
    let mut spans = vec![
        Span::styled("replicas ", t.label()),
        Span::styled(format!("{up} up"), t.good()),
    ];
    if loading > 0 {
        spans.push(Span::styled(format!(" {loading} loading"), t.warning()));
    }
    if down > 0 {
        spans.push(Span::styled(format!(" {down} dead"), t.bad()));
    }
    // A replica that cannot load its model says why, here too.
    let failed: Vec<&str> = v
        .state
        .replicas
        .values()
        .filter(|r| r.status == ReplicaStatus::Failed)
        .filter_map(|r| r.last_error.as_deref())
        .collect();
    if let Some(reason) = failed.first() {
        spans.push(Span::styled(
            format!(" {} failed: {reason}", failed.len()),
            t.bad(),
        ));
    }
    spans.extend([
        Span::styled("  images ", t.label()),
        Span::styled(served.to_string(), t.value()),
        Span::styled("  worst p95 ", t.label()),
        Span::styled(p95.map_or("-".into(), |ms| format!("{ms} ms")), t.value()),
    ]);
    Line::from(spans)
}

/// Several miners: how many requests each answered (details in the Miners view).
pub(super) fn miners_line<'a>(v: &ViewContext<'a>, t: &Theme) -> Line<'a> {
    let mut spans = vec![Span::styled("miners ", t.label())];
    for (name, m) in &v.state.miners {
        let ok = m.responses.get(&200).copied().unwrap_or(0);
        let other: u64 = m
            .responses
            .iter()
            .filter(|(c, _)| **c != 200)
            .map(|(_, n)| n)
            .sum();
        spans.push(Span::styled(format!("{name} "), t.value()));
        spans.push(Span::styled(format!("{ok} ok"), t.good()));
        if other > 0 {
            spans.push(Span::styled(format!(" {other} other"), t.warning()));
        }
        spans.push(Span::raw("  "));
    }
    Line::from(spans)
}

/// The rest of our standing as btcli shows it: scores, permit, last update, immunity, axon.
pub(super) fn standing_line<'a>(
    s: &nicheimage_bittensor::chain::standing::Standing,
    c: &nicheimage_node::runtime::event::ChainReport,
    t: &Theme,
) -> Line<'a> {
    let muted = t.label();
    let text = t.value();
    let limit = c.clock.as_ref().map_or(String::new(), |k| {
        format!(" (limit {})", k.weights_rate_limit)
    });
    let mut spans = vec![
        Span::styled(
            if s.validator_permit {
                "      permit"
            } else {
                "      no permit"
            },
            Style::new().fg(if s.validator_permit { t.ok } else { t.muted }),
        ),
        Span::styled(
            format!("  updated {} blocks ago{limit}", s.blocks_since_update),
            muted,
        ),
        Span::styled(format!("  axon {}", s.axon), muted),
    ];
    for (name, value) in [
        ("rank", s.rank),
        ("trust", s.trust),
        ("consensus", s.consensus),
        ("dividends", s.dividends),
        ("vtrust", s.validator_trust),
    ] {
        spans.push(Span::styled(format!("  {name} "), muted));
        spans.push(Span::styled(format!("{value:.3}"), text));
    }
    Line::from(spans)
}

/// Block, subnet size and our hotkey's standing; the last chain error in place of it if any.
pub(super) fn chain_line<'a>(
    c: &'a nicheimage_node::runtime::event::ChainReport,
    t: &Theme,
) -> Line<'a> {
    let muted = t.label();
    let text = t.value();
    let mut spans = vec![
        Span::styled("chain ", muted),
        Span::styled(
            c.block
                .map_or("block ?".to_string(), |b| format!("block {b}")),
            text,
        ),
        Span::styled(format!("  sn{} ", c.netuid), muted),
        Span::styled(format!("{} neurons", c.neurons), text),
    ];
    if c.commit_reveal == Some(true) {
        spans.push(Span::styled("  commit-reveal ON", t.warning()));
    }
    match (&c.last_error, c.uid) {
        (Some(e), _) => spans.push(Span::styled(format!("  {e}"), t.bad())),
        (None, Some(uid)) => spans.extend([
            Span::styled("  uid ", muted),
            Span::styled(uid.to_string(), t.good()),
            Span::styled("  stake ", muted),
            Span::styled(format!("{:.2}", c.stake), text),
            // With root stake, the total the gates compare (alpha + TaoWeight × root).
            Span::styled(
                match &c.standing {
                    Some(s) if s.root_stake > 0.0 => format!(" (total {:.2})", s.total_stake),
                    _ => String::new(),
                },
                muted,
            ),
            Span::styled("  incentive ", muted),
            Span::styled(format!("{:.4}", c.incentive), text),
            Span::styled("  emission ", muted),
            Span::styled(format!("{:.3}", c.emission), text),
        ]),
        (None, None) if c.hotkey.is_some() => {
            spans.push(Span::styled("  hotkey not registered", t.warning()));
        }
        (None, None) => spans.push(Span::styled("  no hotkey loaded", muted)),
    }
    if let Some(clock) = &c.clock {
        // Counted from the live block to the schedule's next epoch (read with the metagraph).
        let left = match (clock.epoch.next_epoch_block, c.block) {
            (Some(next), Some(block)) => next.saturating_sub(block),
            _ => clock.blocks_to_epoch,
        };
        spans.push(Span::styled(format!("  epoch in {left}"), muted));
        let e = &clock.epoch.state;
        if e.pending_epoch_at > 0 {
            spans.push(Span::styled(
                format!(" (owner-triggered at block {})", e.pending_epoch_at),
                t.warning(),
            ));
        }
        if e.rule == nicheimage_bittensor::chain::epoch::Rule::Legacy {
            spans.push(Span::styled(" (legacy epochs)", muted));
        }
    }
    if let Some(s) = &c.standing {
        let place = match (s.immunity_left, s.pruning_place) {
            (Some(left), _) if left > 0 => format!("  immune {left} blocks"),
            (_, Some((place, of))) => format!("  dereg order {place}/{of}"),
            _ => String::new(),
        };
        spans.push(Span::styled(place, muted));
    }
    Line::from(spans)
}
