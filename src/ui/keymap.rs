//! Keys as data: the same table drives input handling, the footer and the help overlay.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Quit,
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

pub const BINDINGS: &[Binding] = &[
    Binding {
        codes: &[KeyCode::Char('q')],
        label: "q",
        help: "quit (drains every component)",
        short: "quit",
        action: Action::Quit,
    },
    Binding {
        codes: &[KeyCode::Up, KeyCode::Char('k')],
        label: "↑/k",
        help: "select the previous component",
        short: "",
        action: Action::Up,
    },
    Binding {
        codes: &[KeyCode::Down, KeyCode::Char('j')],
        label: "↓/j",
        help: "select the next component",
        short: "select",
        action: Action::Down,
    },
    Binding {
        codes: &[KeyCode::Char('r')],
        label: "r",
        help: "restart the selected component",
        short: "restart",
        action: Action::Restart,
    },
    Binding {
        codes: &[KeyCode::Char('s')],
        label: "s",
        help: "stop or start the selected component",
        short: "stop/start",
        action: Action::StartStop,
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

pub fn action_for(key: KeyEvent) -> Option<Action> {
    // In raw mode Ctrl-C arrives as a key, not a signal.
    if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
        return Some(Action::Quit);
    }
    BINDINGS
        .iter()
        .find(|b| b.codes.contains(&key.code))
        .map(|b| b.action)
}
