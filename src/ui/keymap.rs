//! Keys as data: the same table drives input handling, the footer and the help overlay.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Quit,
    /// Show the view with this index in [`super::app::Tab::ALL`].
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

pub const BINDINGS: &[Binding] = &[
    Binding {
        codes: &[KeyCode::Char('q')],
        label: "q",
        help: "quit (drains every component)",
        short: "quit",
        action: Action::Quit,
    },
    Binding {
        codes: &[
            KeyCode::Char('1'),
            KeyCode::Char('2'),
            KeyCode::Char('3'),
            KeyCode::Char('4'),
            KeyCode::Char('5'),
            KeyCode::Char('6'),
            KeyCode::Char('7'),
            KeyCode::Char('8'),
        ],
        label: "1-8",
        help: "views: overview replicas miners validator proxy gpu logs gallery",
        short: "views",
        action: Action::GoTo(0),
    },
    Binding {
        codes: &[KeyCode::Tab],
        label: "Tab",
        help: "next view",
        short: "",
        action: Action::NextTab,
    },
    Binding {
        codes: &[KeyCode::Up, KeyCode::Char('k')],
        label: "↑/k",
        help: "select the previous component (replica in Replicas)",
        short: "",
        action: Action::Up,
    },
    Binding {
        codes: &[KeyCode::Down, KeyCode::Char('j')],
        label: "↓/j",
        help: "select the next component (replica in Replicas)",
        short: "select",
        action: Action::Down,
    },
    Binding {
        codes: &[KeyCode::Char('r')],
        label: "r",
        help: "restart the selected component (replica in Replicas)",
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
        codes: &[KeyCode::Char('x')],
        label: "x",
        help: "Replicas: kill the selected replica's process (it restarts)",
        short: "",
        action: Action::Kill,
    },
    Binding {
        codes: &[KeyCode::Char('+')],
        label: "+/-",
        help: "Replicas: one replica more or fewer",
        short: "",
        action: Action::ScaleUp,
    },
    Binding {
        codes: &[KeyCode::Char('-')],
        label: "",
        help: "",
        short: "",
        action: Action::ScaleDown,
    },
    Binding {
        codes: &[KeyCode::Char('o')],
        label: "o",
        help: "Validator: sort by uid, score, latency, weight",
        short: "",
        action: Action::Sort,
    },
    Binding {
        codes: &[KeyCode::Char('/')],
        label: "/",
        help: "Validator: filter rows; Logs: search (Enter keeps, Esc clears)",
        short: "",
        action: Action::Find,
    },
    Binding {
        codes: &[KeyCode::Char('l')],
        label: "l",
        help: "Logs: minimum level (all, info, warn, error)",
        short: "",
        action: Action::Level,
    },
    Binding {
        codes: &[KeyCode::Char(' ')],
        label: "Space",
        help: "Logs: pause or follow",
        short: "",
        action: Action::Follow,
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

/// The key shown for `action` (in titles beside what it does), from the same table.
pub fn key_for(action: Action) -> &'static str {
    BINDINGS
        .iter()
        .find(|b| b.action == action)
        .map_or("", |b| b.label)
}

pub fn action_for(key: KeyEvent) -> Option<Action> {
    // In raw mode Ctrl-C arrives as a key, not a signal.
    if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
        return Some(Action::Quit);
    }
    if let KeyCode::Char(c @ '1'..='9') = key.code {
        return Some(Action::GoTo(c as usize - '1' as usize));
    }
    BINDINGS
        .iter()
        .find(|b| b.codes.contains(&key.code))
        .map(|b| b.action)
}
