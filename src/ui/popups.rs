//! Overlays: the help (from the keymap) and the confirmation dialog.

use super::keymap::BINDINGS;
use super::theme::Theme;
use super::widgets::{block, centered};
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Clear, Paragraph, Wrap};

pub(super) fn draw_help(frame: &mut Frame, area: Rect, t: &Theme) {
    let lines: Vec<Line> = BINDINGS
        .iter()
        .filter(|b| !b.help.is_empty())
        .map(|b| {
            Line::from(vec![
                Span::styled(format!("{:>8}  ", b.label), t.highlight()),
                Span::styled(b.help, t.value()),
            ])
        })
        .collect();
    let rect = centered(area, 56, lines.len() as u16 + 2);
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
