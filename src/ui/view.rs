//! Rendering: a pure function of the node state, the console's own state and the theme.

use super::app::{Popup, Tab, UiState};
use super::keymap::BINDINGS;
use super::theme::Theme;
use crate::runtime::{ComponentStatus, NodeState};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Clear, Paragraph, Row, Table, TableState, Wrap};

pub const MIN_WIDTH: u16 = 60;
pub const MIN_HEIGHT: u16 = 16;

pub struct ViewContext<'a> {
    pub state: &'a NodeState,
    pub ui: &'a UiState,
    pub theme: &'a Theme,
    pub now_unix_ms: u64,
    /// Where the config came from, shown in the header.
    pub config_source: &'a str,
}

fn duration(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if d > 0 {
        format!("{d}d {h:02}:{m:02}:{s:02}")
    } else {
        format!("{h:02}:{m:02}:{s:02}")
    }
}

fn bytes(n: u64) -> String {
    const MIB: f64 = 1024.0 * 1024.0;
    let n = n as f64;
    if n >= 1024.0 * MIB {
        format!("{:.1} GiB", n / (1024.0 * MIB))
    } else {
        format!("{:.0} MiB", n / MIB)
    }
}

pub fn draw(frame: &mut Frame, v: &ViewContext) {
    let area = frame.area();
    let t = v.theme;
    if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
        let msg = format!(
            "terminal too small: {}x{} (need at least {MIN_WIDTH}x{MIN_HEIGHT})",
            area.width, area.height
        );
        frame.render_widget(
            Paragraph::new(msg)
                .style(Style::new().fg(t.warn))
                .wrap(Wrap { trim: true }),
            area,
        );
        return;
    }
    // Background problems show as one line above the footer, not as a crash or a popup.
    let problem = recent_problem(v);
    let [header, body, status, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(1),
        Constraint::Length(u16::from(problem.is_some())),
        Constraint::Length(1),
    ])
    .areas(area);
    if let Some(p) = problem {
        let color = if p.level == "ERROR" { t.error } else { t.warn };
        frame.render_widget(
            Paragraph::new(Line::from(vec![
                Span::styled(
                    format!(" {} ", p.level),
                    Style::new().fg(t.selection_fg).bg(color),
                ),
                Span::styled(format!(" {}", p.message), Style::new().fg(color)),
            ])),
            status,
        );
    }
    draw_header(frame, header, v);
    match v.ui.tab {
        Tab::Overview => draw_overview(frame, body, v),
        Tab::Replicas => draw_replicas(frame, body, v),
        Tab::Miners => draw_miners(frame, body, v),
        Tab::Validator => {
            super::validator_view::draw(frame, body, v.state.validator.as_ref(), v.ui, t)
        }
        Tab::Proxy => {
            super::proxy_view::draw(frame, body, v.state.proxy.as_ref(), v.now_unix_ms, t)
        }
        Tab::Gpu => super::gpu_view::draw(frame, body, v.state, t),
        Tab::Logs => draw_logs(frame, body, v),
        Tab::Gallery => super::gallery_view::draw(frame, body, &v.state.gallery, t),
    }
    draw_footer(frame, footer, v);
    match &v.ui.popup {
        Some(Popup::Help) => draw_help(frame, area, t),
        Some(Popup::Confirm { prompt, .. }) => draw_confirm(frame, area, t, prompt),
        None => {}
    }
}

/// Components, the miner (when there is one), status lines and the log tail.
fn draw_overview(frame: &mut Frame, area: Rect, v: &ViewContext) {
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
    draw_components(frame, components, v);
    if let Some(m) = single_miner {
        draw_miner(frame, miner, m, v.now_unix_ms, v.theme);
    }
    draw_host(frame, host, v);
    draw_logs(frame, logs, v);
}

/// Every miner of the node, one panel each.
fn draw_miners(frame: &mut Frame, area: Rect, v: &ViewContext) {
    let t = v.theme;
    if v.state.miners.is_empty() {
        frame.render_widget(
            Paragraph::new(Line::styled(
                "no miner in this node (run `nicheimage-tui miner`, or the devnet)",
                Style::new().fg(t.muted),
            ))
            .block(block("miners", t)),
            area,
        );
        return;
    }
    let heights: Vec<Constraint> = v
        .state
        .miners
        .values()
        .map(|m| Constraint::Length((m.validators.len() as u16).clamp(1, 6) + 4))
        .chain([Constraint::Min(0)])
        .collect();
    let areas = Layout::vertical(heights).split(area);
    for (m, a) in v.state.miners.values().zip(areas.iter()) {
        draw_miner(frame, *a, m, v.now_unix_ms, t);
    }
}

pub(super) fn block<'a>(title: &'a str, t: &Theme) -> Block<'a> {
    Block::default()
        .borders(Borders::ALL)
        .border_style(Style::new().fg(t.border))
        .title(Span::styled(
            format!(" {title} "),
            Style::new().fg(t.accent).add_modifier(Modifier::BOLD),
        ))
}

fn draw_header(frame: &mut Frame, area: Rect, v: &ViewContext) {
    let t = v.theme;
    let (health, color) = if v.state.healthy() {
        ("healthy", t.ok)
    } else {
        ("degraded", t.warn)
    };
    // Views first: on a narrow terminal the tail (version, config) is what gets cut.
    let mut spans = Vec::new();
    for (i, tab) in Tab::ALL.iter().enumerate() {
        let style = if *tab == v.ui.tab {
            Style::new()
                .fg(t.selection_fg)
                .bg(t.accent)
                .add_modifier(Modifier::BOLD)
        } else {
            Style::new().fg(t.muted)
        };
        spans.push(Span::styled(format!("{}:{}", i + 1, tab.title()), style));
        spans.push(Span::raw(" "));
    }
    spans.extend([
        Span::styled("│ ", Style::new().fg(t.muted)),
        Span::styled(health, Style::new().fg(color).add_modifier(Modifier::BOLD)),
        Span::styled(" │ up ", Style::new().fg(t.muted)),
        Span::styled(
            duration(v.state.uptime_secs(v.now_unix_ms)),
            Style::new().fg(t.text),
        ),
        Span::styled(" │ ", Style::new().fg(t.muted)),
        Span::styled(
            format!("nicheimage-tui {}", v.state.version),
            Style::new().fg(t.accent).add_modifier(Modifier::BOLD),
        ),
        Span::styled(" │ config: ", Style::new().fg(t.muted)),
        Span::styled(v.config_source, Style::new().fg(t.text)),
    ]);
    let line = Line::from(spans);
    frame.render_widget(Paragraph::new(line), area);
}

fn status_style(status: ComponentStatus, t: &Theme) -> (&'static str, Style) {
    match status {
        ComponentStatus::Running => ("running", Style::new().fg(t.ok)),
        ComponentStatus::Starting => ("starting", Style::new().fg(t.accent)),
        ComponentStatus::Backoff => (
            "backoff",
            Style::new().fg(t.error).add_modifier(Modifier::BOLD),
        ),
        ComponentStatus::Stopped => ("stopped", Style::new().fg(t.muted)),
    }
}

fn draw_components(frame: &mut Frame, area: Rect, v: &ViewContext) {
    let t = v.theme;
    let rows: Vec<Row> = v
        .state
        .components
        .iter()
        .map(|(name, c)| {
            let (label, style) = status_style(c.status, t);
            let status = match c.retry_at_unix_ms {
                Some(at) => format!(
                    "{label} {}s",
                    at.saturating_sub(v.now_unix_ms).div_ceil(1000)
                ),
                None => label.to_string(),
            };
            Row::new(vec![
                Cell::from(name.as_str()),
                Cell::from(status).style(style),
                Cell::from(c.restarts.to_string()),
                Cell::from(
                    v.state
                        .listeners
                        .get(name)
                        .map(String::as_str)
                        .unwrap_or(""),
                ),
                Cell::from(c.last_error.as_deref().unwrap_or("")).style(Style::new().fg(t.error)),
            ])
            .style(Style::new().fg(t.text))
        })
        .collect();
    let table = Table::new(
        rows,
        [
            Constraint::Length(12),
            Constraint::Length(11),
            Constraint::Length(8),
            Constraint::Length(21),
            Constraint::Min(10),
        ],
    )
    .header(
        Row::new(["component", "status", "restarts", "listening", "last error"])
            .style(Style::new().fg(t.muted).add_modifier(Modifier::BOLD)),
    )
    .row_highlight_style(Style::new().fg(t.selection_fg).bg(t.selection_bg))
    .block(block("components", t));
    let mut selection = TableState::default();
    if !v.state.components.is_empty() {
        selection.select(Some(v.ui.selected_index(v.state)));
    }
    frame.render_stateful_widget(table, area, &mut selection);
}

fn draw_replicas(frame: &mut Frame, area: Rect, v: &ViewContext) {
    use crate::runtime::event::ReplicaStatus;
    let t = v.theme;
    let ms = |m: Option<u64>| m.map(|m| format!("{m} ms")).unwrap_or_default();
    let rows: Vec<Row> = v
        .state
        .replicas
        .values()
        .map(|r| {
            let (label, color) = match r.status {
                ReplicaStatus::Ready => ("ready", t.ok),
                ReplicaStatus::Busy => ("busy", t.accent),
                ReplicaStatus::Loading => ("loading", t.warn),
                ReplicaStatus::Dead => ("dead", t.error),
                ReplicaStatus::Failed => ("failed", t.error),
                ReplicaStatus::Stopped => ("stopped", t.muted),
            };
            let place = match (&r.remote, r.gpus.is_empty()) {
                (Some(url), _) => url.clone(),
                (None, true) => "cpu".into(),
                (None, false) => format!("gpu {:?}", r.gpus),
            };
            let failed: u64 = r.failures.values().sum();
            Row::new(vec![
                Cell::from(r.index.to_string()),
                Cell::from(label).style(Style::new().fg(color)),
                Cell::from(r.restarts.to_string()),
                Cell::from(place),
                Cell::from(r.served.to_string()),
                Cell::from(failed.to_string()),
                Cell::from(r.nsfw_blanked.to_string()),
                Cell::from(ms(r.latency_ms.p50)),
                Cell::from(ms(r.latency_ms.p95)),
                Cell::from(format!("{:.2}", r.images_per_sec)),
                Cell::from(r.vram_bytes.or(r.rss_bytes).map(bytes).unwrap_or_default()),
                Cell::from(r.last_error.as_deref().unwrap_or("")).style(Style::new().fg(t.error)),
            ])
            .style(Style::new().fg(t.text))
        })
        .collect();
    let table = Table::new(
        rows,
        [
            Constraint::Length(4),
            Constraint::Length(7),
            Constraint::Length(3),
            Constraint::Length(8),
            Constraint::Length(6),
            Constraint::Length(6),
            Constraint::Length(4),
            Constraint::Length(7),
            Constraint::Length(7),
            Constraint::Length(5),
            Constraint::Length(8),
            Constraint::Min(8),
        ],
    )
    .header(
        Row::new([
            "#",
            "status",
            "rst",
            "on",
            "images",
            "failed",
            "nsfw",
            "p50",
            "p95",
            "img/s",
            "mem",
            "last error",
        ])
        .style(Style::new().fg(t.muted).add_modifier(Modifier::BOLD)),
    );
    if v.ui.tab != Tab::Replicas {
        frame.render_widget(table.block(block("replicas", t)), area);
        return;
    }
    // The Replicas view: a selection and the keys that act on it.
    let mut selection = TableState::default();
    selection.select(
        v.ui.selected_replica(v.state)
            .and_then(|i| v.state.replicas.keys().position(|k| *k == i)),
    );
    let title = format!(
        "replicas — queue {} — r restart · x kill · +/- scale (each asks first)",
        v.state.endpoint_queue_depth
    );
    // What the endpoint serves, on the bottom border; a filter that is off stands out.
    let mut frame_block = block(&title, t);
    if let Some(e) = &v.state.endpoint {
        let (filter, colour) = if e.nsfw_filter {
            ("nsfw filter on", t.muted)
        } else {
            ("nsfw filter OFF", t.warn)
        };
        let mut spans = vec![Span::styled(
            format!(" {}: {} · ", e.model, e.pipelines.join(", ")),
            Style::new().fg(t.muted),
        )];
        if !e.pipelines_off.is_empty() {
            // Listed by the model but missing files here: the log names them.
            spans.push(Span::styled(
                format!("{} OFF (see log) · ", e.pipelines_off.join(", ")),
                Style::new().fg(t.warn),
            ));
        }
        spans.push(Span::styled(format!("{filter} "), Style::new().fg(colour)));
        frame_block = frame_block.title_bottom(Line::from(spans));
    }
    let table = table
        .block(frame_block)
        .row_highlight_style(Style::new().fg(t.selection_fg).bg(t.selection_bg));
    let downloads = v.state.downloads.len() as u16;
    let [table_area, download_area] = Layout::vertical([
        Constraint::Min(4),
        Constraint::Length(if downloads > 0 { downloads + 2 } else { 0 }),
    ])
    .areas(area);
    frame.render_stateful_widget(table, table_area, &mut selection);
    if downloads > 0 {
        draw_downloads(frame, download_area, v);
    }
}

/// Checkpoint downloads: a progress bar each, or where one stopped.
fn draw_downloads(frame: &mut Frame, area: Rect, v: &ViewContext) {
    let t = v.theme;
    frame.render_widget(block("checkpoint downloads", t), area);
    let rows = Layout::vertical(vec![Constraint::Length(1); v.state.downloads.len()])
        .split(area.inner(ratatui::layout::Margin::new(1, 1)));
    for (d, row) in v.state.downloads.values().zip(rows.iter()) {
        let ratio = match d.total_bytes {
            Some(total) if total > 0 => (d.done_bytes as f64 / total as f64).clamp(0.0, 1.0),
            _ => 0.0,
        };
        let label = match (&d.error, d.finished) {
            (Some(e), _) => format!("{}: {e}", d.model),
            (None, true) => format!("{}: done, {}", d.model, bytes(d.done_bytes)),
            (None, false) => format!(
                "{}: {} of {}",
                d.model,
                bytes(d.done_bytes),
                d.total_bytes.map_or("?".into(), bytes)
            ),
        };
        let color = if d.error.is_some() { t.error } else { t.accent };
        frame.render_widget(
            ratatui::widgets::Gauge::default()
                .gauge_style(Style::new().fg(color).bg(t.border))
                .ratio(if d.finished && d.error.is_none() {
                    1.0
                } else {
                    ratio
                })
                .label(label),
            *row,
        );
    }
}

/// The miner's axon and announcement, then one row per validator that called it.
fn draw_miner(
    frame: &mut Frame,
    area: Rect,
    m: &crate::runtime::event::MinerReport,
    now_unix_ms: u64,
    t: &Theme,
) {
    let muted = Style::new().fg(t.muted);
    let text = Style::new().fg(t.text);
    let answered: String = m
        .responses
        .iter()
        .map(|(code, n)| format!("{code}×{n}"))
        .collect::<Vec<_>>()
        .join(" ");
    let announce_style = if m.announce_result.as_deref() == Some("on chain") {
        Style::new().fg(t.ok)
    } else {
        Style::new().fg(t.warn)
    };
    let mut summary = vec![
        Span::styled("axon ", muted),
        Span::styled(m.axon.clone(), text),
        Span::styled("  published ", muted),
        Span::styled(m.announced.clone().unwrap_or_else(|| "-".into()), text),
        Span::styled(" ", muted),
        Span::styled(
            m.announce_result.clone().unwrap_or_default(),
            announce_style,
        ),
        Span::styled("  model ", muted),
        Span::styled(m.model_name.clone().unwrap_or_else(|| "?".into()), text),
        Span::styled("  answers ", muted),
        Span::styled(
            if answered.is_empty() {
                "none yet".into()
            } else {
                answered
            },
            text,
        ),
    ];
    if let Some((ok, seen)) = &m.reachability {
        let style = Style::new().fg(if *ok { t.ok } else { t.error });
        summary.push(Span::styled(format!("  {seen}"), style));
    }
    if let Some(e) = &m.last_error {
        summary.push(Span::styled(format!("  {e}"), Style::new().fg(t.error)));
    }
    let [head, table_area] = Layout::vertical([Constraint::Length(1), Constraint::Min(1)])
        .areas(area.inner(ratatui::layout::Margin::new(1, 1)));
    let title = match &m.sabotage {
        Some(how) => format!("{} (misbehaves on purpose: {how})", m.name),
        None => m.name.clone(),
    };
    frame.render_widget(block(&title, t), area);
    frame.render_widget(Paragraph::new(Line::from(summary)), head);
    let rows: Vec<Row> = m
        .validators
        .iter()
        .map(|(hotkey, c)| {
            let rejected: String = c
                .rejected
                .iter()
                .map(|(why, n)| format!("{why} ×{n}"))
                .collect::<Vec<_>>()
                .join(", ");
            Row::new(vec![
                Cell::from(c.uid.map_or("-".into(), |u| u.to_string())),
                Cell::from(hotkey.chars().take(12).collect::<String>()),
                Cell::from(format!("{:.0}", c.stake)),
                Cell::from(c.requests.to_string()),
                Cell::from(format!("{}/{}", c.window_count, c.limit)),
                Cell::from(c.last_request_unix_ms.map_or("-".into(), |at| {
                    format!("{}s ago", now_unix_ms.saturating_sub(at) / 1000)
                })),
                Cell::from(
                    c.last_latency_ms
                        .map_or("-".into(), |ms| format!("{ms} ms")),
                ),
                Cell::from(rejected).style(Style::new().fg(t.warn)),
            ])
            .style(text)
        })
        .collect();
    let table = Table::new(
        rows,
        [
            Constraint::Length(5),
            Constraint::Length(13),
            Constraint::Length(9),
            Constraint::Length(9),
            Constraint::Length(11),
            Constraint::Length(9),
            Constraint::Length(9),
            Constraint::Min(10),
        ],
    )
    .header(
        Row::new([
            "uid",
            "validator",
            "stake",
            "requests",
            "window",
            "last",
            "latency",
            "refused",
        ])
        .style(muted.add_modifier(Modifier::BOLD)),
    );
    frame.render_widget(table, table_area);
}

fn draw_host(frame: &mut Frame, area: Rect, v: &ViewContext) {
    let t = v.theme;
    let muted = Style::new().fg(t.muted);
    let text = Style::new().fg(t.text);
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
                Ok(()) => ("smoke test ok".to_string(), Style::new().fg(t.ok)),
                Err(e) => (format!("smoke test FAILED: {e}"), Style::new().fg(t.error)),
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
fn proxy_line<'a>(
    p: &'a crate::runtime::event::ProxyReport,
    now_unix_ms: u64,
    t: &Theme,
) -> Line<'a> {
    let muted = Style::new().fg(t.muted);
    let text = Style::new().fg(t.text);
    let mut spans = vec![Span::styled("proxy ", muted)];
    match (&p.listening, p.enabled) {
        (Some(address), _) => {
            spans.push(Span::styled(format!("ON {address}"), Style::new().fg(t.ok)))
        }
        (None, true) => spans.push(Span::styled("starting", Style::new().fg(t.warn))),
        (None, false) => spans.push(Span::styled("off (p to switch on)", muted)),
    }
    let d = &p.today;
    spans.extend([
        Span::styled("  today ", muted),
        Span::styled(format!("{} ok", d.success), Style::new().fg(t.ok)),
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
        spans.push(Span::styled(format!("  {w}"), Style::new().fg(t.warn)));
    } else if let Some(e) = &p.last_error {
        spans.push(Span::styled(format!("  {e}"), Style::new().fg(t.error)));
    }
    Line::from(spans)
}

/// Each GPU in a few words (details in the GPU view), or why there is none.
fn gpu_line<'a>(g: &'a crate::telemetry::gpu::GpuReport, t: &Theme) -> Line<'a> {
    let muted = Style::new().fg(t.muted);
    let mut spans = vec![Span::styled("gpu ", muted)];
    if let Some(why) = &g.unavailable {
        spans.push(Span::styled(
            if why.starts_with("no NVIDIA driver") {
                "no NVIDIA driver (CPU only)".to_string()
            } else {
                why.clone()
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
            Style::new().fg(t.text),
        ));
    }
    Line::from(spans)
}

/// A ten-cell text gauge.
fn gauge(ratio: f64) -> String {
    let filled = (ratio.clamp(0.0, 1.0) * 10.0).round() as usize;
    format!("{}{}", "█".repeat(filled), "░".repeat(10 - filled))
}

/// Eighth-block bars, lowest first: the console's sparklines and histograms.
pub(super) const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// The bar for a fraction of full height (rounded; outside [0, 1] clamped, NaN lowest).
pub(super) fn bar(fraction: f64) -> char {
    BARS[(fraction.clamp(0.0, 1.0) * 7.0).round() as usize]
}

/// Text sparkline of the last `n` samples, each scaled to the largest.
fn sparkline(samples: &std::collections::VecDeque<f64>, n: usize) -> String {
    let tail: Vec<f64> = samples.iter().rev().take(n).rev().copied().collect();
    let top = tail.iter().copied().fold(0.0f64, f64::max);
    tail.iter()
        .map(|x| if top <= 0.0 { bar(0.0) } else { bar(x / top) })
        .collect()
}

/// Our incentive per metagraph and the validator's mean reward per round.
fn history_line<'a>(v: &ViewContext<'a>, t: &Theme) -> Option<Line<'a>> {
    let muted = Style::new().fg(t.muted);
    let mut spans = Vec::new();
    if !v.state.incentive_history.is_empty() {
        spans.push(Span::styled("incentive ", muted));
        spans.push(Span::styled(
            sparkline(&v.state.incentive_history, 30),
            Style::new().fg(t.accent),
        ));
        spans.push(Span::raw("  "));
    }
    if !v.state.reward_history.is_empty() {
        spans.push(Span::styled("mean reward per round ", muted));
        spans.push(Span::styled(
            sparkline(&v.state.reward_history, 30),
            Style::new().fg(t.ok),
        ));
        if let Some(last) = v.state.reward_history.back() {
            spans.push(Span::styled(format!(" {last:.2}"), Style::new().fg(t.text)));
        }
    }
    (!spans.is_empty()).then(|| Line::from(spans))
}

/// Per model: the last round's answer latency p50/p95 against the model's timeout, and the time
/// penalty a p95 answer pays (0.4·(t/timeout)³).
fn latency_lines<'a>(r: &'a crate::runtime::event::ValidatorReport, t: &Theme) -> Vec<Line<'a>> {
    let muted = Style::new().fg(t.muted);
    r.timeouts
        .iter()
        .filter_map(|(model, timeout)| {
            let ms: Vec<u64> = r
                .last_round
                .iter()
                .filter(|o| &o.model == model)
                .filter_map(|o| o.latency_ms)
                .collect();
            if ms.is_empty() {
                return None;
            }
            let p = crate::runtime::event::Percentiles::of(&ms);
            let p95 = p.p95.unwrap_or(0) as f64 / 1000.0;
            let penalty = (0.4 * (p95 / timeout.max(1e-9)).powi(3)).min(0.4);
            let style = if p95 >= *timeout {
                Style::new().fg(t.error)
            } else if penalty > 0.05 {
                Style::new().fg(t.warn)
            } else {
                Style::new().fg(t.ok)
            };
            Some(Line::from(vec![
                Span::styled(format!("latency {model} "), muted),
                Span::styled(
                    format!(
                        "p50 {:.2} s  p95 {p95:.2} s",
                        p.p50.unwrap_or(0) as f64 / 1000.0
                    ),
                    style,
                ),
                Span::styled(format!(" of {timeout:.0} s timeout "), muted),
                Span::styled(gauge(p95 / timeout), style),
                Span::styled(format!("  penalty at p95 {penalty:.3}"), muted),
            ]))
        })
        .take(2)
        .collect()
}

/// Rounds, the best score, the last weights (details in the Validator view).
fn validator_line<'a>(r: &'a crate::runtime::event::ValidatorReport, t: &Theme) -> Line<'a> {
    let muted = Style::new().fg(t.muted);
    let text = Style::new().fg(t.text);
    let scored = r.scores.values().filter(|s| **s > 0.0).count();
    let mut spans = vec![
        Span::styled("validator ", muted),
        Span::styled(format!("{} rounds", r.step), text),
        Span::styled("  miners scored ", muted),
        Span::styled(format!("{scored}/{}", r.scores.len()), text),
        Span::styled("  weights ", muted),
        Span::styled(
            r.weights.clone().unwrap_or_else(|| "not yet".into()),
            Style::new().fg(match &r.weights {
                Some(w) if w.starts_with("set at") => t.ok,
                Some(_) => t.warn,
                None => t.muted,
            }),
        ),
    ];
    if let Some(e) = &r.last_error {
        spans.push(Span::styled(format!("  {e}"), Style::new().fg(t.error)));
    }
    Line::from(spans)
}

/// Replicas by status and the pool's latency (details in the Replicas view).
fn replicas_line<'a>(v: &ViewContext<'a>, t: &Theme) -> Line<'a> {
    use crate::runtime::event::ReplicaStatus;
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
        Span::styled("replicas ", Style::new().fg(t.muted)),
        Span::styled(format!("{up} up"), Style::new().fg(t.ok)),
    ];
    if loading > 0 {
        spans.push(Span::styled(
            format!(" {loading} loading"),
            Style::new().fg(t.warn),
        ));
    }
    if down > 0 {
        spans.push(Span::styled(
            format!(" {down} dead"),
            Style::new().fg(t.error),
        ));
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
            Style::new().fg(t.error),
        ));
    }
    spans.extend([
        Span::styled("  images ", Style::new().fg(t.muted)),
        Span::styled(served.to_string(), Style::new().fg(t.text)),
        Span::styled("  worst p95 ", Style::new().fg(t.muted)),
        Span::styled(
            p95.map_or("-".into(), |ms| format!("{ms} ms")),
            Style::new().fg(t.text),
        ),
    ]);
    Line::from(spans)
}

/// Several miners: how many requests each answered (details in the Miners view).
fn miners_line<'a>(v: &ViewContext<'a>, t: &Theme) -> Line<'a> {
    let mut spans = vec![Span::styled("miners ", Style::new().fg(t.muted))];
    for (name, m) in &v.state.miners {
        let ok = m.responses.get(&200).copied().unwrap_or(0);
        let other: u64 = m
            .responses
            .iter()
            .filter(|(c, _)| **c != 200)
            .map(|(_, n)| n)
            .sum();
        spans.push(Span::styled(format!("{name} "), Style::new().fg(t.text)));
        spans.push(Span::styled(format!("{ok} ok"), Style::new().fg(t.ok)));
        if other > 0 {
            spans.push(Span::styled(
                format!(" {other} other"),
                Style::new().fg(t.warn),
            ));
        }
        spans.push(Span::raw("  "));
    }
    Line::from(spans)
}

/// The rest of our standing as btcli shows it: scores, permit, last update, immunity, axon.
fn standing_line<'a>(
    s: &crate::bittensor::chain::standing::Standing,
    c: &crate::runtime::event::ChainReport,
    t: &Theme,
) -> Line<'a> {
    let muted = Style::new().fg(t.muted);
    let text = Style::new().fg(t.text);
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
fn chain_line<'a>(c: &'a crate::runtime::event::ChainReport, t: &Theme) -> Line<'a> {
    let muted = Style::new().fg(t.muted);
    let text = Style::new().fg(t.text);
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
        spans.push(Span::styled("  commit-reveal ON", Style::new().fg(t.warn)));
    }
    match (&c.last_error, c.uid) {
        (Some(e), _) => spans.push(Span::styled(format!("  {e}"), Style::new().fg(t.error))),
        (None, Some(uid)) => spans.extend([
            Span::styled("  uid ", muted),
            Span::styled(uid.to_string(), Style::new().fg(t.ok)),
            Span::styled("  stake ", muted),
            Span::styled(format!("{:.2}", c.stake), text),
            Span::styled("  incentive ", muted),
            Span::styled(format!("{:.4}", c.incentive), text),
            Span::styled("  emission ", muted),
            Span::styled(format!("{:.3}", c.emission), text),
        ]),
        (None, None) if c.hotkey.is_some() => {
            spans.push(Span::styled(
                "  hotkey not registered",
                Style::new().fg(t.warn),
            ));
        }
        (None, None) => spans.push(Span::styled("  no hotkey loaded", muted)),
    }
    if let Some(clock) = &c.clock {
        spans.push(Span::styled(
            format!("  epoch in {}", clock.blocks_to_epoch),
            muted,
        ));
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

fn draw_logs(frame: &mut Frame, area: Rect, v: &ViewContext) {
    let t = v.theme;
    let ui = v.ui;
    let height = area.height.saturating_sub(2) as usize;
    let search = ui.log_search.to_lowercase();
    let lines: Vec<Line> = v
        .state
        .logs
        .iter()
        .filter(|l| ui.log_level.shows(&l.level))
        .filter(|l| ui.log_paused_at.is_none_or(|at| l.unix_ms <= at))
        .filter(|l| search.is_empty() || l.message.to_lowercase().contains(&search))
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .take(height)
        .rev()
        .map(|l| {
            let color = match l.level.as_str() {
                "ERROR" => t.error,
                "WARN" => t.warn,
                _ => t.muted,
            };
            Line::from(vec![
                Span::styled(format!("{:<5} ", l.level), Style::new().fg(color)),
                Span::styled(l.message.as_str(), Style::new().fg(t.text)),
            ])
        })
        .collect();
    let title = if ui.tab == Tab::Logs {
        format!(
            "log — level {} (l) · search {}{} (/) · {} (Space)",
            ui.log_level.name(),
            if ui.log_search.is_empty() && ui.input.is_none() {
                "none"
            } else {
                ui.log_search.as_str()
            },
            if ui.input.is_some() { "▏" } else { "" },
            if ui.log_paused_at.is_some() {
                "PAUSED"
            } else {
                "following"
            },
        )
    } else {
        "log".to_string()
    };
    frame.render_widget(Paragraph::new(lines).block(block(&title, t)), area);
}

/// The newest warning or error of the last 30 s, for the line above the footer.
fn recent_problem<'a>(v: &ViewContext<'a>) -> Option<&'a crate::runtime::event::LogLine> {
    v.state
        .logs
        .iter()
        .rev()
        .take_while(|l| l.unix_ms + 30_000 >= v.now_unix_ms)
        .find(|l| l.level == "ERROR" || l.level == "WARN")
}

fn draw_footer(frame: &mut Frame, area: Rect, v: &ViewContext) {
    let t = v.theme;
    let mut spans = Vec::new();
    for b in BINDINGS.iter().filter(|b| !b.short.is_empty()) {
        spans.push(Span::styled(
            format!(" {} ", b.label),
            Style::new().fg(t.selection_fg).bg(t.accent),
        ));
        spans.push(Span::styled(
            format!(" {}  ", b.short),
            Style::new().fg(t.muted),
        ));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

fn centered(area: Rect, width: u16, height: u16) -> Rect {
    let w = width.min(area.width);
    let h = height.min(area.height);
    Rect::new(
        area.x + (area.width - w) / 2,
        area.y + (area.height - h) / 2,
        w,
        h,
    )
}

fn draw_help(frame: &mut Frame, area: Rect, t: &Theme) {
    let lines: Vec<Line> = BINDINGS
        .iter()
        .filter(|b| !b.help.is_empty())
        .map(|b| {
            Line::from(vec![
                Span::styled(format!("{:>8}  ", b.label), Style::new().fg(t.accent)),
                Span::styled(b.help, Style::new().fg(t.text)),
            ])
        })
        .collect();
    let rect = centered(area, 56, lines.len() as u16 + 2);
    frame.render_widget(Clear, rect);
    frame.render_widget(Paragraph::new(lines).block(block("keys", t)), rect);
}

fn draw_confirm(frame: &mut Frame, area: Rect, t: &Theme, prompt: &str) {
    let rect = centered(area, 50, 5);
    frame.render_widget(Clear, rect);
    let lines = vec![
        Line::styled(prompt, Style::new().fg(t.text)),
        Line::from(vec![
            Span::styled(" y ", Style::new().fg(t.selection_fg).bg(t.warn)),
            Span::styled(" yes    ", Style::new().fg(t.muted)),
            Span::styled(" n/Esc ", Style::new().fg(t.selection_fg).bg(t.accent)),
            Span::styled(" no (default)", Style::new().fg(t.muted)),
        ]),
    ];
    frame.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: true })
            .block(block("confirm", t)),
        rect,
    );
}
