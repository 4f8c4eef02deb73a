//! The log view: the newest lines, filtered by level and search, following or paused.

use super::app::{Outcome, TextField};
use super::keymap::{Action, Binding, key_for};
use super::view::{View, ViewContext};
use super::widgets::block;
use crossterm::event::KeyCode;
use nicheimage_node::runtime::NodeState;
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

/// The lowest level the Logs view shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogLevel {
    #[default]
    All,
    Info,
    Warn,
    Error,
}

impl LogLevel {
    pub fn name(self) -> &'static str {
        match self {
            LogLevel::All => "all",
            LogLevel::Info => "info+",
            LogLevel::Warn => "warn+",
            LogLevel::Error => "error",
        }
    }

    /// Whether a line at `level` is shown (tracing orders levels by verbosity: TRACE is the
    /// greatest).
    pub fn shows(self, level: tracing::Level) -> bool {
        let least = match self {
            LogLevel::All => tracing::Level::TRACE,
            LogLevel::Info => tracing::Level::INFO,
            LogLevel::Warn => tracing::Level::WARN,
            LogLevel::Error => tracing::Level::ERROR,
        };
        level <= least
    }

    fn next(self) -> LogLevel {
        match self {
            LogLevel::All => LogLevel::Info,
            LogLevel::Info => LogLevel::Warn,
            LogLevel::Warn => LogLevel::Error,
            LogLevel::Error => LogLevel::All,
        }
    }
}

/// The Logs view's state: the level and search it filters by, and where it paused.
#[derive(Debug, Clone, Default)]
pub struct LogsView {
    pub level: LogLevel,
    pub search: TextField,
    /// Paused at this log line time: newer lines wait until follow resumes.
    pub paused_at: Option<u64>,
}

const KEYS: &[Binding] = &[
    Binding {
        codes: &[KeyCode::Char('l')],
        label: "l",
        help: "minimum level (all, info, warn, error)",
        short: "level",
        action: Action::Level,
    },
    Binding {
        codes: &[KeyCode::Char('/')],
        label: "/",
        help: "search (Enter keeps, Esc clears)",
        short: "search",
        action: Action::Find,
    },
    Binding {
        codes: &[KeyCode::Char(' ')],
        label: "Space",
        help: "pause or follow",
        short: "pause",
        action: Action::Follow,
    },
];

impl View for LogsView {
    fn title(&self) -> &'static str {
        "Logs"
    }

    fn bindings(&self) -> &'static [Binding] {
        KEYS
    }

    fn handle(&mut self, action: Action, state: &NodeState) -> Outcome {
        match action {
            Action::Level => self.level = self.level.next(),
            Action::Find => self.search.typing = true,
            Action::Follow => {
                self.paused_at = match self.paused_at {
                    Some(_) => None,
                    None => Some(state.logs.back().map_or(0, |l| l.unix_ms)),
                };
            }
            _ => {}
        }
        Outcome::Nothing
    }

    fn typing(&mut self) -> Option<&mut TextField> {
        Some(&mut self.search)
    }

    fn draw(&self, frame: &mut Frame, area: Rect, v: &ViewContext) {
        draw_log(frame, area, v, Some(self));
    }
}

/// The newest lines that fit: filtered as the Logs view says, or all of them (the Overview's
/// tail).
pub(super) fn draw_log(frame: &mut Frame, area: Rect, v: &ViewContext, view: Option<&LogsView>) {
    let t = v.theme;
    let all = LogsView::default();
    let filter = view.unwrap_or(&all);
    let height = area.height.saturating_sub(2) as usize;
    let search = filter.search.text.to_lowercase();
    let lines: Vec<Line> = v
        .state
        .logs
        .iter()
        .filter(|l| filter.level.shows(l.level))
        .filter(|l| filter.paused_at.is_none_or(|at| l.unix_ms <= at))
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
    let title = match view {
        Some(f) => format!(
            "log — level {} ({}) · search {} ({}) · {} ({})",
            f.level.name(),
            key_for(KEYS, Action::Level),
            f.search.shown(),
            key_for(KEYS, Action::Find),
            if f.paused_at.is_some() {
                "PAUSED"
            } else {
                "following"
            },
            key_for(KEYS, Action::Follow),
        ),
        None => "log".to_string(),
    };
    frame.render_widget(Paragraph::new(lines).block(block(&title, t)), area);
}
