//! The Validator tab: the last pass, every miner's score and share, and why its last reward was
//! what it was; the weight-setting status above.

use super::theme::Theme;
use super::view::block;
use crate::runtime::event::ValidatorReport;
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Margin, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row, Table};
use std::collections::BTreeSet;

pub fn draw(frame: &mut Frame, area: Rect, v: Option<&ValidatorReport>, t: &Theme) {
    let muted = Style::new().fg(t.muted);
    let text = Style::new().fg(t.text);
    frame.render_widget(block("validator", t), area);
    let inner = area.inner(Margin::new(1, 1));
    let Some(v) = v else {
        frame.render_widget(
            Paragraph::new(Line::styled(
                "no validator in this node (run `nicheimage-tui validator`, or the devnet)",
                muted,
            )),
            inner,
        );
        return;
    };
    let [head, table_area] =
        Layout::vertical([Constraint::Length(2), Constraint::Min(1)]).areas(inner);
    let weights_style = match &v.weights {
        Some(w) if w.starts_with("set at") => Style::new().fg(t.ok),
        Some(_) => Style::new().fg(t.warn),
        None => muted,
    };
    let mut first = vec![
        Span::styled("hotkey ", muted),
        Span::styled(v.hotkey.chars().take(16).collect::<String>(), text),
        Span::styled("  rounds ", muted),
        Span::styled(v.step.to_string(), text),
        Span::styled("  weights ", muted),
        Span::styled(
            v.weights.clone().unwrap_or_else(|| "not yet".into()),
            weights_style,
        ),
    ];
    if let Some(b) = v.next_weights_block {
        first.push(Span::styled("  next eligible block ", muted));
        first.push(Span::styled(b.to_string(), text));
    }
    let second = match (&v.last_error, &v.state_note) {
        (Some(e), _) => Line::styled(e.clone(), Style::new().fg(t.error)),
        (None, Some(n)) => Line::styled(n.clone(), Style::new().fg(t.warn)),
        (None, None) => Line::styled("last pass completed", muted),
    };
    frame.render_widget(Paragraph::new(vec![Line::from(first), second]), head);

    let total: f64 = v.scores.values().sum();
    let uids: BTreeSet<u16> = v
        .scores
        .keys()
        .copied()
        .chain(v.last_round.iter().map(|o| o.uid))
        .collect();
    let rows: Vec<Row> = uids
        .iter()
        .map(|uid| {
            let last = v.last_round.iter().rfind(|o| o.uid == *uid);
            let score = v.scores.get(uid).copied().unwrap_or(0.0);
            let (reward, style) = match last.and_then(|o| o.reward) {
                Some(r) if r > 0.0 => (format!("{r:.3}"), Style::new().fg(t.ok)),
                Some(r) => (format!("{r:.3}"), Style::new().fg(t.warn)),
                None => ("-".into(), muted),
            };
            Row::new(vec![
                Cell::from(uid.to_string()),
                Cell::from(last.map(|o| o.model.clone()).unwrap_or_default()),
                Cell::from(reward).style(style),
                Cell::from(format!("{score:.3}")),
                Cell::from(if total > 0.0 {
                    format!("{:.1}%", 100.0 * score / total)
                } else {
                    "-".into()
                }),
                Cell::from(last.map(|o| o.reason.clone()).unwrap_or_default()),
            ])
            .style(text)
        })
        .collect();
    let table = Table::new(
        rows,
        [
            Constraint::Length(5),
            Constraint::Length(16),
            Constraint::Length(7),
            Constraint::Length(7),
            Constraint::Length(7),
            Constraint::Min(10),
        ],
    )
    .header(
        Row::new([
            "uid",
            "model",
            "reward",
            "score",
            "share",
            "why (last round)",
        ])
        .style(muted.add_modifier(Modifier::BOLD)),
    );
    frame.render_widget(table, table_area);
}
