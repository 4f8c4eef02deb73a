//! The log view: the newest lines, filtered by level and search, following or paused.

use super::app::Tab;
use super::keymap::{Action, key_for};
use super::view::ViewContext;
use super::widgets::block;
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

pub(super) fn draw_logs(frame: &mut Frame, area: Rect, v: &ViewContext) {
    let t = v.theme;
    let ui = v.ui;
    let height = area.height.saturating_sub(2) as usize;
    let search = ui.log_search.to_lowercase();
    let lines: Vec<Line> = v
        .state
        .logs
        .iter()
        .filter(|l| ui.log_level.shows(l.level))
        .filter(|l| ui.log_paused_at.is_none_or(|at| l.unix_ms <= at))
        .filter(|l| search.is_empty() || l.message.to_lowercase().contains(&search))
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .take(height)
        .rev()
        .map(|l| {
            let color = match l.level {
                tracing::Level::ERROR => t.error,
                tracing::Level::WARN => t.warn,
                _ => t.muted,
            };
            Line::from(vec![
                Span::styled(format!("{:<5} ", l.level.as_str()), Style::new().fg(color)),
                Span::styled(l.message.as_str(), t.value()),
            ])
        })
        .collect();
    let title = if ui.tab == Tab::Logs {
        format!(
            "log — level {} ({}) · search {}{} ({}) · {} ({})",
            ui.log_level.name(),
            key_for(Action::Level),
            if ui.log_search.is_empty() && ui.input.is_none() {
                "none"
            } else {
                ui.log_search.as_str()
            },
            if ui.input.is_some() { "▏" } else { "" },
            key_for(Action::Find),
            if ui.log_paused_at.is_some() {
                "PAUSED"
            } else {
                "following"
            },
            key_for(Action::Follow),
        )
    } else {
        "log".to_string()
    };
    frame.render_widget(Paragraph::new(lines).block(block(&title, t)), area);
}
