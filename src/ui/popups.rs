//! Overlays: the help (from the keymap) and the confirmation dialog.

use super::app::UiState;
use super::chrome::views_label;
use super::keymap::{Binding, GLOBAL};
use super::theme::Theme;
use super::widgets::{block, centered};
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Clear, Paragraph, Wrap};

/// The console's keys, the number keys with every view's title, then the shown view's own keys
/// under its title.
pub(super) fn draw_help(frame: &mut Frame, area: Rect, ui: &UiState, t: &Theme) {
    let line = |label: &str, help: String| {
        Line::from(vec![
            Span::styled(format!("{label:>8}  "), t.highlight()),
            Span::styled(help, t.value()),
        ])
    };
    let described = |b: &&Binding| !b.help.is_empty();
    let mut lines: Vec<Line> = GLOBAL
        .iter()
        .filter(described)
        .map(|b| line(b.label, b.help.to_string()))
        .collect();
    let titles: Vec<String> = ui.views().map(|v| v.title().to_lowercase()).collect();
    lines.push(line(
        &views_label(ui),
        format!("views: {}", titles.join(" ")),
    ));
    let view = ui.focused();
    let keys: Vec<&Binding> = view.bindings().iter().filter(described).collect();
    if !keys.is_empty() {
        lines.push(Line::styled(format!("{}:", view.title()), t.label()));
        lines.extend(keys.iter().map(|b| line(b.label, b.help.to_string())));
    }
    let rect = centered(area, 74, lines.len() as u16 + 2);
    frame.render_widget(Clear, rect);
    frame.render_widget(Paragraph::new(lines).block(block("keys", t)), rect);
}

pub(super) fn draw_confirm(frame: &mut Frame, area: Rect, t: &Theme, prompt: &str) {
    let rect = centered(area, 50, 5);
    frame.render_widget(Clear, rect);
    let lines = vec![
        Line::styled(prompt, t.value()),
        Line::from(vec![
            Span::styled(" y ", t.badge(t.warn)),
            Span::styled(" yes    ", t.label()),
            Span::styled(" n/Esc ", t.badge(t.accent)),
            Span::styled(" no (default)", t.label()),
        ]),
    ];
    frame.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: true })
            .block(block("confirm", t)),
        rect,
    );
}
