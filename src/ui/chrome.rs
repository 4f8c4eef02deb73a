//! What frames every view: the header (tabs, health, uptime), the footer (key hints from the
//! keymap) and the problem line above it.

use super::app::UiState;
use super::keymap::{Action, Binding, GLOBAL};
use super::theme::Theme;
use super::view::ViewContext;
use super::widgets::duration;
use nicheimage_node::runtime::event::LogLine;
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

pub(super) fn draw_header(frame: &mut Frame, area: Rect, ui: &UiState, v: &ViewContext) {
    let t = v.theme;
    let (health, color) = if v.state.healthy() {
        ("healthy", t.ok)
    } else {
        ("degraded", t.warn)
    };
    // Views first: on a narrow terminal the tail (version, config) is what gets cut.
    let mut spans = Vec::new();
    for (i, view) in ui.views().enumerate() {
        let style = if i == ui.focus() {
            Style::new()
                .fg(t.selection_fg)
                .bg(t.accent)
                .add_modifier(Modifier::BOLD)
        } else {
            t.label()
        };
        spans.push(Span::styled(tab_label(i, view.title()), style));
        spans.push(Span::raw(" "));
    }
    spans.extend([
        Span::styled("│ ", t.label()),
        Span::styled(health, Style::new().fg(color).add_modifier(Modifier::BOLD)),
        Span::styled(" │ up ", t.label()),
        Span::styled(duration(v.state.uptime_secs(v.now_unix_ms)), t.value()),
        Span::styled(" │ ", t.label()),
        Span::styled(
            format!("nicheimage-tui {}", v.state.version),
            t.highlight().add_modifier(Modifier::BOLD),
        ),
        Span::styled(" │ config: ", t.label()),
        Span::styled(v.config_source, t.value()),
    ]);
    let line = Line::from(spans);
    frame.render_widget(Paragraph::new(line), area);
}

/// A tab's text in the header: its number key and title.
pub fn tab_label(index: usize, title: &str) -> String {
    format!("{}:{title}", index + 1)
}

/// The number keys' label, `1-N` for N views.
pub(super) fn views_label(ui: &UiState) -> String {
    format!("1-{}", ui.views().count())
}

/// Quit and the number keys, the shown view's keys, then the console's other keys with a footer
/// word (a narrow terminal cuts the tail).
pub(super) fn draw_footer(frame: &mut Frame, area: Rect, ui: &UiState, t: &Theme) {
    let mut spans = Vec::new();
    let mut hint = |label: &str, short: &str| {
        spans.push(Span::styled(format!(" {label} "), t.badge(t.accent)));
        spans.push(Span::styled(format!(" {short}  "), t.label()));
    };
    let shown = |b: &&Binding| !b.short.is_empty();
    let (quit, others): (Vec<&Binding>, Vec<&Binding>) = GLOBAL
        .iter()
        .filter(shown)
        .partition(|b| b.action == Action::Quit);
    for b in quit {
        hint(b.label, b.short);
    }
    hint(&views_label(ui), "views");
    for b in ui.focused().bindings().iter().filter(shown) {
        hint(b.label, b.short);
    }
    for b in others {
        hint(b.label, b.short);
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

/// The newest warning or error of the last 30 s, for the line above the footer.
pub(super) fn recent_problem<'a>(
    v: &ViewContext<'a>,
) -> Option<&'a nicheimage_node::runtime::event::LogLine> {
    v.state
        .logs
        .iter()
        .rev()
        .take_while(|l| l.unix_ms + 30_000 >= v.now_unix_ms)
        .find(|l| l.level <= tracing::Level::WARN)
        .map(|l| l.as_ref())
}

/// The newest warning or error, one line above the footer.
pub(super) fn draw_problem(frame: &mut Frame, area: Rect, p: &LogLine, t: &Theme) {
    let color = if p.level == tracing::Level::ERROR {
        t.error
    } else {
        t.warn
    };
    frame.render_widget(
        Paragraph::new(Line::from(vec![
            Span::styled(format!(" {} ", p.level.as_str()), t.badge(color)),
            Span::styled(format!(" {}", p.message), Style::new().fg(color)),
        ])),
        area,
    );
}
