//! Rendering: a pure function of the node state, the console's own state and the theme.

use super::app::{Popup, UiState};
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
    let rows = v.state.components.len().max(1) as u16;
    let replica_rows = if v.state.replicas.is_empty() {
        0
    } else {
        (v.state.replicas.len() as u16).min(8) + 3
    };
    let miner_rows = v
        .state
        .miner
        .as_ref()
        .map_or(0, |m| (m.validators.len() as u16).clamp(1, 6) + 4);
    let [header, components, replicas, miner, host, logs, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(rows + 3),
        Constraint::Length(replica_rows),
        Constraint::Length(miner_rows),
        Constraint::Length(
            4 + u16::from(v.state.chain.is_some()) + u16::from(v.state.proxy.is_some()),
        ),
        Constraint::Min(3),
        Constraint::Length(1),
    ])
    .areas(area);
    draw_header(frame, header, v);
    draw_components(frame, components, v);
    if replica_rows > 0 {
        draw_replicas(frame, replicas, v);
    }
    if let Some(m) = &v.state.miner {
        draw_miner(frame, miner, m, t);
    }
    draw_host(frame, host, v);
    draw_logs(frame, logs, v);
    draw_footer(frame, footer, v);
    match &v.ui.popup {
        Some(Popup::Help) => draw_help(frame, area, t),
        Some(Popup::Confirm { prompt, .. }) => draw_confirm(frame, area, t, prompt),
        None => {}
    }
}

fn block<'a>(title: &'a str, t: &Theme) -> Block<'a> {
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
    let line = Line::from(vec![
        Span::styled(
            format!("nicheimage-tui {}", v.state.version),
            Style::new().fg(t.accent).add_modifier(Modifier::BOLD),
        ),
        Span::styled(" │ up ", Style::new().fg(t.muted)),
        Span::styled(
            duration(v.state.uptime_secs(v.now_unix_ms)),
            Style::new().fg(t.text),
        ),
        Span::styled(" │ ", Style::new().fg(t.muted)),
        Span::styled(health, Style::new().fg(color).add_modifier(Modifier::BOLD)),
        Span::styled(" │ config: ", Style::new().fg(t.muted)),
        Span::styled(v.config_source, Style::new().fg(t.text)),
    ]);
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
                Cell::from(place),
                Cell::from(r.served.to_string()),
                Cell::from(failed.to_string()),
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
            Constraint::Length(5),
            Constraint::Length(8),
            Constraint::Length(10),
            Constraint::Length(7),
            Constraint::Length(7),
            Constraint::Length(8),
            Constraint::Length(8),
            Constraint::Length(6),
            Constraint::Length(9),
            Constraint::Min(8),
        ],
    )
    .header(
        Row::new([
            "#",
            "status",
            "on",
            "images",
            "failed",
            "p50",
            "p95",
            "img/s",
            "mem",
            "last error",
        ])
        .style(Style::new().fg(t.muted).add_modifier(Modifier::BOLD)),
    )
    .block(block("replicas", t));
    frame.render_widget(table, area);
}

/// The miner's axon and announcement, then one row per validator that called it.
fn draw_miner(frame: &mut Frame, area: Rect, m: &crate::runtime::event::MinerReport, t: &Theme) {
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
    frame.render_widget(block("miner", t), area);
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
            Constraint::Length(8),
            Constraint::Min(10),
        ],
    )
    .header(
        Row::new(["uid", "validator", "stake", "requests", "window", "refused"])
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
    let mut lines = vec![host, torch];
    if let Some(chain) = &v.state.chain {
        lines.push(chain_line(chain, t));
    }
    if let Some(proxy) = &v.state.proxy {
        lines.push(proxy_line(proxy, t));
    }
    frame.render_widget(Paragraph::new(lines).block(block("host", t)), area);
}

/// The validator proxy: on/off and where, today's traffic, the latest problem.
fn proxy_line<'a>(p: &'a crate::runtime::event::ProxyReport, t: &Theme) -> Line<'a> {
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
    ]);
    if let Some(w) = p.warnings.first() {
        spans.push(Span::styled(format!("  {w}"), Style::new().fg(t.warn)));
    } else if let Some(e) = &p.last_error {
        spans.push(Span::styled(format!("  {e}"), Style::new().fg(t.error)));
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
    Line::from(spans)
}

fn draw_logs(frame: &mut Frame, area: Rect, v: &ViewContext) {
    let t = v.theme;
    let height = area.height.saturating_sub(2) as usize;
    let lines: Vec<Line> = v
        .state
        .logs
        .iter()
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
    frame.render_widget(Paragraph::new(lines).block(block("log", t)), area);
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
