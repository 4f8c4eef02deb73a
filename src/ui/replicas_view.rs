//! The Replicas view: the local and remote replicas with their load and failures, and downloads.

use super::app::Tab;
use super::keymap::{Action, key_for};
use super::view::ViewContext;
use super::widgets::{block, bytes};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Row, Table, TableState};

pub(super) fn draw_replicas(frame: &mut Frame, area: Rect, v: &ViewContext) {
    use nicheimage_node::runtime::event::ReplicaStatus;
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
                Cell::from(
                    r.runs
                        .as_ref()
                        .map(|m| format!("{} {}", m.architecture, m.dtype))
                        .unwrap_or_default(),
                ),
                Cell::from(r.served.to_string()),
                Cell::from(failed.to_string()),
                Cell::from(r.nsfw_blanked.to_string()),
                Cell::from(ms(r.latency_ms.p50)),
                Cell::from(ms(r.latency_ms.p95)),
                Cell::from(format!("{:.2}", r.images_per_sec)),
                Cell::from(r.vram_bytes.or(r.rss_bytes).map(bytes).unwrap_or_default()),
                Cell::from(r.last_error.as_deref().unwrap_or("")).style(t.bad()),
            ])
            .style(t.value())
        })
        .collect();
    let table = Table::new(
        rows,
        [
            Constraint::Length(4),
            Constraint::Length(7),
            Constraint::Length(3),
            Constraint::Length(8),
            Constraint::Length(9),
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
            "runs",
            "images",
            "failed",
            "nsfw",
            "p50",
            "p95",
            "img/s",
            "mem",
            "last error",
        ])
        .style(t.label().add_modifier(Modifier::BOLD)),
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
        "replicas — queue {} — {} restart · {} kill · {} scale (each asks first)",
        v.state.endpoint_queue_depth,
        key_for(Action::Restart),
        key_for(Action::Kill),
        key_for(Action::ScaleUp),
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
            t.label(),
        )];
        if !e.pipelines_off.is_empty() {
            // Listed by the model but missing files here: the log names them.
            spans.push(Span::styled(
                format!("{} OFF (see log) · ", e.pipelines_off.join(", ")),
                t.warning(),
            ));
        }
        spans.push(Span::styled(format!("{filter} "), Style::new().fg(colour)));
        frame_block = frame_block.title_bottom(Line::from(spans));
    }
    let table = table.block(frame_block).row_highlight_style(t.selected());
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
pub(super) fn draw_downloads(frame: &mut Frame, area: Rect, v: &ViewContext) {
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
