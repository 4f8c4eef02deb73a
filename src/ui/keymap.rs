//! Keys as data: the console's own bindings here, each view's in its unit; the same tables drive
//! input handling, the footer and the help overlay.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Quit,
    /// Show the view with this index in the console's list.
    GoTo(usize),
    NextTab,
    /// Kill the selected replica's process (it comes back).
    Kill,
    ScaleUp,
    ScaleDown,
    /// Validator: next sort order.
    Sort,
    /// Validator: filter; Logs: search.
    Find,
    /// Logs: next minimum level.
    Level,
    /// Logs: follow or pause.
    Follow,
    CycleTheme,
    Up,
    Down,
    Restart,
    StartStop,
    ToggleProxy,
    Help,
    Yes,
    Close,
}

pub struct Binding {
    pub codes: &'static [KeyCode],
    pub label: &'static str,
    pub help: &'static str,
    /// The footer's word for it; empty keeps the binding out of the footer.
    pub short: &'static str,
    pub action: Action,
}

/// The console's own keys, whatever the view; the number keys (one per view) are added by the
/// console from its list of views.
pub const GLOBAL: &[Binding] = &[
    Binding {
        codes: &[KeyCode::Char('q')],
        label: "q",
        help: "quit (drains every component)",
        short: "quit",
        action: Action::Quit,
    },
    Binding {
        codes: &[KeyCode::Tab],
        label: "Tab",
        help: "next view",
        short: "",
        action: Action::NextTab,
    },
    Binding {
        codes: &[KeyCode::Char('t')],
        label: "t",
        help: "next theme (default, light, high-contrast)",
        short: "",
        action: Action::CycleTheme,
    },
    Binding {
        codes: &[KeyCode::Char('p')],
        label: "p",
        help: "switch the validator proxy on or off (owner traffic)",
        short: "proxy",
        action: Action::ToggleProxy,
    },
    Binding {
        codes: &[KeyCode::Char('?')],
        label: "?",
        help: "show or hide this help",
        short: "help",
        action: Action::Help,
    },
    Binding {
        codes: &[KeyCode::Char('y'), KeyCode::Enter],
        label: "y/Enter",
        help: "confirm a dialog",
        short: "",
        action: Action::Yes,
    },
    Binding {
        codes: &[KeyCode::Esc, KeyCode::Char('n')],
        label: "Esc/n",
        help: "close a dialog or this help",
        short: "",
        action: Action::Close,
    },
];

/// The key shown for `action` among `bindings` (in titles beside what it does).
pub fn key_for(bindings: &[Binding], action: Action) -> &'static str {
    bindings
        .iter()
        .find(|b| b.action == action)
        .map_or("", |b| b.label)
}

/// The action of `key`: the console's keys first, then the focused view's.
pub fn action_for(key: KeyEvent, view: &[Binding]) -> Option<Action> {
    // In raw mode Ctrl-C arrives as a key, not a signal.
    if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
        return Some(Action::Quit);
    }
    if let KeyCode::Char(c @ '1'..='9') = key.code {
        return Some(Action::GoTo(c as usize - '1' as usize));
    }
    GLOBAL
        .iter()
        .chain(view)
        .find(|b| b.codes.contains(&key.code))
        .map(|b| b.action)
}
