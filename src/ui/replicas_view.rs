//! The Replicas view: the local and remote replicas with their load and failures, and downloads;
//! a selected replica to restart or kill, and the pool to scale, each after a yes.

use super::app::Outcome;
use super::keymap::{Action, Binding, key_for};
use super::view::{View, ViewContext};
use super::widgets::{Columns, block, bytes};
use crossterm::event::KeyCode;
use nicheimage_node::runtime::event::{ReplicaReport, ReplicaStatus};
use nicheimage_node::runtime::{Command, NodeState};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, TableState};

/// The Replicas view's state: the selected replica, by index.
#[derive(Debug, Clone, Default)]
pub struct ReplicasView {
    pub selected: Option<usize>,
}

const KEYS: &[Binding] = &[
    Binding {
        codes: &[KeyCode::Up, KeyCode::Char('k')],
        label: "↑/k",
        help: "select the previous replica",
        short: "",
        action: Action::Up,
    },
    Binding {
        codes: &[KeyCode::Down, KeyCode::Char('j')],
        label: "↓/j",
        help: "select the next replica",
        short: "select",
        action: Action::Down,
    },
    Binding {
        codes: &[KeyCode::Char('r')],
        label: "r",
        help: "restart the selected replica after its current job",
        short: "restart",
        action: Action::Restart,
    },
    Binding {
        codes: &[KeyCode::Char('x')],
        label: "x",
        help: "kill the selected replica's process (it restarts)",
        short: "kill",
        action: Action::Kill,
    },
    Binding {
        codes: &[KeyCode::Char('+')],
        label: "+/-",
        help: "one local replica more or fewer",
        short: "scale",
        action: Action::ScaleUp,
    },
    Binding {
        codes: &[KeyCode::Char('-')],
        label: "",
        help: "",
        short: "",
        action: Action::ScaleDown,
    },
];

impl ReplicasView {
    /// The selected replica, or the first one.
    fn selected_replica(&self, state: &NodeState) -> Option<usize> {
        self.selected
            .filter(|i| state.replicas.contains_key(i))
            .or_else(|| state.replicas.keys().next().copied())
    }

    fn move_selection(&mut self, state: &NodeState, delta: isize) {
        let keys: Vec<usize> = state.replicas.keys().copied().collect();
        if keys.is_empty() {
            return;
        }
        let at = self
            .selected_replica(state)
            .and_then(|r| keys.iter().position(|k| *k == r))
            .unwrap_or(0);
        let last = keys.len().saturating_sub(1);
        let i = at.saturating_add_signed(delta).min(last);
        self.selected = keys.get(i).copied();
    }
}

impl View for ReplicasView {
    fn title(&self) -> &'static str {
        "Replicas"
    }

    fn bindings(&self) -> &'static [Binding] {
        KEYS
    }

    fn handle(&mut self, action: Action, state: &NodeState) -> Outcome {
        let local = state.local_replicas().count();
        // Only a local replica is ours to restart or kill.
        let selected = self
            .selected_replica(state)
            .filter(|i| state.local_replicas().any(|r| r.index == *i));
        let ask = |prompt: String, command| Outcome::Ask { prompt, command };
        match (action, selected) {
            (Action::Up, _) => {
                self.move_selection(state, -1);
                Outcome::Nothing
            }
            (Action::Down, _) => {
                self.move_selection(state, 1);
                Outcome::Nothing
            }
            (Action::Restart, Some(i)) => ask(
                format!("Restart replica {i} after its current job?"),
                Command::RestartReplica(i),
            ),
            (Action::Kill, Some(i)) => ask(
                format!("Kill replica {i}'s process now? Its job fails; it restarts."),
                Command::KillReplica(i),
            ),
            (Action::ScaleUp, _) if local > 0 => ask(
                format!("Scale up to {} local replicas?", local + 1),
                Command::ScaleReplicas(local + 1),
            ),
            (Action::ScaleDown, _) if local > 1 => ask(
                format!(
                    "Scale down to {} local replicas (after their jobs)?",
                    local - 1
                ),
                Command::ScaleReplicas(local - 1),
            ),
            _ => Outcome::Nothing,
        }
    }

    fn draw(&self, frame: &mut Frame, area: Rect, v: &ViewContext) {
        draw_replicas(frame, area, v, self.selected_replica(v.state));
    }
}

fn draw_replicas(frame: &mut Frame, area: Rect, v: &ViewContext, selected: Option<usize>) {
    let t = v.theme;
    let ms = |m: Option<u64>| m.map(|m| format!("{m} ms")).unwrap_or_default();
    let columns = Columns::<&ReplicaReport>::new()
        .col("#", Constraint::Length(4), |r: &&ReplicaReport| {
            Cell::from(r.index.to_string())
        })
        .col("status", Constraint::Length(7), |r| {
            let (label, color) = match r.status {
                ReplicaStatus::Ready => ("ready", t.ok),
                ReplicaStatus::Busy => ("busy", t.accent),
                ReplicaStatus::Loading => ("loading", t.warn),
                ReplicaStatus::Dead => ("dead", t.error),
                ReplicaStatus::Failed => ("failed", t.error),
                ReplicaStatus::Stopped => ("stopped", t.muted),
            };
            Cell::from(label).style(Style::new().fg(color))
        })
        .col("rst", Constraint::Length(3), |r| {
            Cell::from(r.restarts.to_string())
        })
        .col("on", Constraint::Length(8), |r| {
            Cell::from(match (&r.remote, r.gpus.is_empty()) {
                (Some(url), _) => url.clone(),
                (None, true) => "cpu".into(),
                (None, false) => format!("gpu {:?}", r.gpus),
            })
        })
        .col("runs", Constraint::Length(9), |r| {
            Cell::from(
                r.runs
                    .as_ref()
                    .map(|m| format!("{} {}", m.architecture, m.dtype))
                    .unwrap_or_default(),
            )
        })
        .col("images", Constraint::Length(6), |r| {
            Cell::from(r.served.to_string())
        })
        .col("failed", Constraint::Length(6), |r| {
            Cell::from(r.failures.values().sum::<u64>().to_string())
        })
        .col("nsfw", Constraint::Length(4), |r| {
            Cell::from(r.nsfw_blanked.to_string())
        })
        .col("p50", Constraint::Length(7), move |r| {
            Cell::from(ms(r.latency_ms.p50))
        })
        .col("p95", Constraint::Length(7), move |r| {
            Cell::from(ms(r.latency_ms.p95))
        })
        .col("img/s", Constraint::Length(5), |r| {
            Cell::from(format!("{:.2}", r.images_per_sec))
        })
        .col("mem", Constraint::Length(8), |r| {
            Cell::from(r.vram_bytes.or(r.rss_bytes).map(bytes).unwrap_or_default())
        })
        .col("last error", Constraint::Min(8), |r| {
            Cell::from(r.last_error.as_deref().unwrap_or("")).style(t.bad())
        });
    let table = columns.table(v.state.replicas.values(), t.value(), t.label());
    let mut selection = TableState::default();
    selection.select(selected.and_then(|i| v.state.replicas.keys().position(|k| *k == i)));
    let title = format!(
        "replicas — queue {} — {} restart · {} kill · {} scale (each asks first)",
        v.state.endpoint_queue_depth,
        key_for(KEYS, Action::Restart),
        key_for(KEYS, Action::Kill),
        key_for(KEYS, Action::ScaleUp),
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
