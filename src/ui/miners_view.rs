//! The Miners view: each of the node's miners, its axon, announcement and callers.

use super::theme::Theme;
use super::view::{View, ViewContext};
use super::widgets::{Columns, block};
use nicheimage_node::runtime::event::{Announce, ValidatorCounters};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph};

/// The Miners view: no state and no keys of its own.
#[derive(Debug, Clone, Default)]
pub struct MinersView;

impl View for MinersView {
    fn title(&self) -> &'static str {
        "Miners"
    }

    fn draw(&self, frame: &mut Frame, area: Rect, v: &ViewContext) {
        draw_miners(frame, area, v);
    }
}

/// Every miner of the node, one panel each.
fn draw_miners(frame: &mut Frame, area: Rect, v: &ViewContext) {
    let t = v.theme;
    if v.state.miners.is_empty() {
        frame.render_widget(
            Paragraph::new(Line::styled(
                "no miner in this node (run `nicheimage-tui miner`, or the devnet)",
                t.label(),
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

/// The miner's axon and announcement, then one row per validator that called it.
pub(super) fn draw_miner(
    frame: &mut Frame,
    area: Rect,
    m: &nicheimage_node::runtime::event::MinerReport,
    now_unix_ms: u64,
    t: &Theme,
) {
    let muted = t.label();
    let text = t.value();
    let answered: String = m
        .responses
        .iter()
        .map(|(code, n)| format!("{code}×{n}"))
        .collect::<Vec<_>>()
        .join(" ");
    let announce_style = if m.announce_result == Some(Announce::OnChain) {
        t.good()
    } else {
        t.warning()
    };
    let mut summary = vec![
        Span::styled("axon ", muted),
        Span::styled(m.axon.clone(), text),
        Span::styled("  published ", muted),
        Span::styled(m.announced.clone().unwrap_or_else(|| "-".into()), text),
        Span::styled(" ", muted),
        Span::styled(
            m.announce_result
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
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
        summary.push(Span::styled(format!("  {e}"), t.bad()));
    }
    let [head, table_area] = Layout::vertical([Constraint::Length(1), Constraint::Min(1)])
        .areas(area.inner(ratatui::layout::Margin::new(1, 1)));
    let title = match &m.sabotage {
        Some(how) => format!("{} (misbehaves on purpose: {how})", m.name),
        None => m.name.clone(),
    };
    frame.render_widget(block(&title, t), area);
    frame.render_widget(Paragraph::new(Line::from(summary)), head);
    let columns = Columns::<(&String, &ValidatorCounters)>::new()
        .col(
            "uid",
            Constraint::Length(5),
            |(_, c): &(&String, &ValidatorCounters)| {
                Cell::from(c.uid.map_or("-".into(), |u| u.to_string()))
            },
        )
        .col("validator", Constraint::Length(13), |(hotkey, _)| {
            Cell::from(hotkey.chars().take(12).collect::<String>())
        })
        .col("stake", Constraint::Length(9), |(_, c)| {
            Cell::from(format!("{:.0}", c.stake))
        })
        .col("requests", Constraint::Length(9), |(_, c)| {
            Cell::from(c.requests.to_string())
        })
        .col("window", Constraint::Length(11), |(_, c)| {
            Cell::from(format!("{}/{}", c.window_count, c.limit))
        })
        .col("last", Constraint::Length(9), move |(_, c)| {
            Cell::from(c.last_request_unix_ms.map_or("-".into(), |at| {
                format!("{}s ago", now_unix_ms.saturating_sub(at) / 1000)
            }))
        })
        .col("latency", Constraint::Length(9), |(_, c)| {
            Cell::from(
                c.last_latency_ms
                    .map_or("-".into(), |ms| format!("{ms} ms")),
            )
        })
        .col("refused", Constraint::Min(10), |(_, c)| {
            let rejected: String = c
                .rejected
                .iter()
                .map(|(why, n)| format!("{why} ×{n}"))
                .collect::<Vec<_>>()
                .join(", ");
            Cell::from(rejected).style(t.warning())
        });
    let table = columns.table(m.validators.iter(), text, muted);
    frame.render_widget(table, table_area);
}
