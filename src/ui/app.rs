//! What the console itself remembers (selection, popups) and how keys change it. Pure: the
//! only way out is the returned [`Outcome`].

use super::keymap::Action;
use nicheimage_node::runtime::{Command, ComponentStatus, NodeState};

#[derive(Debug, Clone, PartialEq)]
pub enum Popup {
    Help,
    /// A command waiting for the operator's yes; "no" is the default.
    Confirm {
        prompt: String,
        command: Command,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Nothing,
    Quit,
    Send(Command),
    /// Switch to the next built-in theme.
    CycleTheme,
}

/// The console's views, in number-key order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Tab {
    #[default]
    Overview,
    Replicas,
    Miners,
    Validator,
    Proxy,
    Gpu,
    Logs,
    Gallery,
}

impl Tab {
    pub const ALL: [Tab; 8] = [
        Tab::Overview,
        Tab::Replicas,
        Tab::Miners,
        Tab::Validator,
        Tab::Proxy,
        Tab::Gpu,
        Tab::Logs,
        Tab::Gallery,
    ];

    pub fn title(self) -> &'static str {
        match self {
            Tab::Overview => "Overview",
            Tab::Replicas => "Replicas",
            Tab::Miners => "Miners",
            Tab::Validator => "Validator",
            Tab::Proxy => "Proxy",
            Tab::Gpu => "GPU",
            Tab::Logs => "Logs",
            Tab::Gallery => "Gallery",
        }
    }

    fn next(self) -> Tab {
        let i = Tab::ALL.iter().position(|t| *t == self).unwrap_or(0);
        Tab::ALL[(i + 1) % Tab::ALL.len()]
    }
}

/// What would be cut short by quitting now, in words; None when the node is idle.
pub fn work_in_flight(state: &NodeState) -> Option<String> {
    use nicheimage_node::runtime::event::ReplicaStatus;
    let busy = state
        .replicas
        .values()
        .filter(|r| r.status == ReplicaStatus::Busy)
        .count();
    let proxied = state.proxy.as_ref().map_or(0, |p| p.in_flight);
    let mut parts = Vec::new();
    if busy > 0 {
        parts.push(format!("{busy} generation(s)"));
    }
    if proxied > 0 {
        parts.push(format!("{proxied} proxy request(s)"));
    }
    (!parts.is_empty()).then(|| parts.join(" and "))
}

/// The Validator view's row order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SortBy {
    #[default]
    Uid,
    /// Highest final score first.
    Score,
    /// Slowest first.
    Latency,
    /// Heaviest weight first.
    Weight,
}

impl SortBy {
    pub fn name(self) -> &'static str {
        match self {
            SortBy::Uid => "uid",
            SortBy::Score => "score",
            SortBy::Latency => "latency",
            SortBy::Weight => "weight",
        }
    }

    fn next(self) -> SortBy {
        match self {
            SortBy::Uid => SortBy::Score,
            SortBy::Score => SortBy::Latency,
            SortBy::Latency => SortBy::Weight,
            SortBy::Weight => SortBy::Uid,
        }
    }
}

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

/// Which text the keyboard is typing into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    ValidatorFilter,
    LogSearch,
}

/// Keys while typing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextKey {
    Char(char),
    Backspace,
    /// Keep the text, stop typing.
    Enter,
    /// Clear the text, stop typing.
    Esc,
}

#[derive(Debug, Default, Clone)]
pub struct UiState {
    /// Selected component, by name so it survives components appearing.
    pub selected: Option<String>,
    /// Selected replica (Replicas view), by index.
    pub replica: Option<usize>,
    pub tab: Tab,
    pub popup: Option<Popup>,
    pub sort: SortBy,
    /// Validator rows containing this text (uid, hotkey, model or reason).
    pub filter: String,
    pub log_level: LogLevel,
    /// Log lines containing this text.
    pub log_search: String,
    /// Paused at this log line time: newer lines wait until follow resumes.
    pub log_paused_at: Option<u64>,
    pub input: Option<Input>,
}

impl UiState {
    /// A key while typing into the filter or the search.
    pub fn edit(&mut self, key: TextKey) {
        let Some(input) = self.input else { return };
        let text = match input {
            Input::ValidatorFilter => &mut self.filter,
            Input::LogSearch => &mut self.log_search,
        };
        match key {
            TextKey::Char(c) if text.chars().count() < 64 => text.push(c),
            TextKey::Char(_) => {}
            TextKey::Backspace => {
                text.pop();
            }
            TextKey::Enter => self.input = None,
            TextKey::Esc => {
                text.clear();
                self.input = None;
            }
        }
    }

    pub fn selected_index(&self, state: &NodeState) -> usize {
        self.selected
            .as_ref()
            .and_then(|n| state.components.keys().position(|k| k == n))
            .unwrap_or(0)
    }

    /// The selected replica, or the first one.
    pub fn selected_replica(&self, state: &NodeState) -> Option<usize> {
        self.replica
            .filter(|i| state.replicas.contains_key(i))
            .or_else(|| state.replicas.keys().next().copied())
    }

    fn move_replica(&mut self, state: &NodeState, delta: isize) {
        let keys: Vec<usize> = state.replicas.keys().copied().collect();
        if keys.is_empty() {
            return;
        }
        let at = self
            .selected_replica(state)
            .and_then(|r| keys.iter().position(|k| *k == r))
            .unwrap_or(0);
        let i = (at as isize + delta).clamp(0, keys.len() as isize - 1) as usize;
        self.replica = Some(keys[i]);
    }

    fn confirm(&mut self, prompt: String, command: Command) -> Outcome {
        self.popup = Some(Popup::Confirm { prompt, command });
        Outcome::Nothing
    }

    /// Replica keys: restart, kill, scale — each behind a confirmation.
    fn replica_action(&mut self, action: Action, state: &NodeState) -> Outcome {
        let local = state.local_replicas().count();
        let selected = self
            .selected_replica(state)
            .filter(|i| state.local_replicas().any(|r| r.index == *i));
        match (action, selected) {
            (Action::Restart, Some(i)) => self.confirm(
                format!("Restart replica {i} after its current job?"),
                Command::RestartReplica(i),
            ),
            (Action::Kill, Some(i)) => self.confirm(
                format!("Kill replica {i}'s process now? Its job fails; it restarts."),
                Command::KillReplica(i),
            ),
            (Action::ScaleUp, _) if local > 0 => self.confirm(
                format!("Scale up to {} local replicas?", local + 1),
                Command::ScaleReplicas(local + 1),
            ),
            (Action::ScaleDown, _) if local > 1 => self.confirm(
                format!(
                    "Scale down to {} local replicas (after their jobs)?",
                    local - 1
                ),
                Command::ScaleReplicas(local - 1),
            ),
            _ => Outcome::Nothing,
        }
    }

    fn move_selection(&mut self, state: &NodeState, delta: isize) {
        let n = state.components.len();
        if n == 0 {
            return;
        }
        let i = (self.selected_index(state) as isize + delta).clamp(0, n as isize - 1) as usize;
        self.selected = state.components.keys().nth(i).cloned();
    }

    pub fn handle(&mut self, action: Action, state: &NodeState) -> Outcome {
        match (&self.popup, action) {
            (Some(Popup::Confirm { command, .. }), Action::Yes) => {
                let command = command.clone();
                self.popup = None;
                return Outcome::Send(command);
            }
            (Some(_), Action::Close) | (Some(Popup::Help), Action::Help) => {
                self.popup = None;
                return Outcome::Nothing;
            }
            // q inside a dialog quits at once (the quit question itself included).
            (Some(_), Action::Quit) => return Outcome::Quit,
            (Some(_), _) => return Outcome::Nothing,
            (None, _) => {}
        }
        let replicas_view = self.tab == Tab::Replicas;
        match action {
            Action::Quit => match work_in_flight(state) {
                Some(work) => self.confirm(
                    format!("{work} in flight: quit anyway? Running work drains first."),
                    Command::Shutdown,
                ),
                None => Outcome::Quit,
            },
            Action::GoTo(i) => {
                if let Some(tab) = Tab::ALL.get(i) {
                    self.tab = *tab;
                }
                Outcome::Nothing
            }
            Action::NextTab => {
                self.tab = self.tab.next();
                Outcome::Nothing
            }
            Action::Sort if self.tab == Tab::Validator => {
                self.sort = self.sort.next();
                Outcome::Nothing
            }
            Action::Find if matches!(self.tab, Tab::Validator | Tab::Logs) => {
                self.input = Some(if self.tab == Tab::Validator {
                    Input::ValidatorFilter
                } else {
                    Input::LogSearch
                });
                Outcome::Nothing
            }
            Action::Level if self.tab == Tab::Logs => {
                self.log_level = self.log_level.next();
                Outcome::Nothing
            }
            Action::Follow if self.tab == Tab::Logs => {
                self.log_paused_at = match self.log_paused_at {
                    Some(_) => None,
                    None => Some(state.logs.back().map_or(0, |l| l.unix_ms)),
                };
                Outcome::Nothing
            }
            Action::Sort | Action::Find | Action::Level | Action::Follow => Outcome::Nothing,
            Action::CycleTheme => Outcome::CycleTheme,
            Action::Up | Action::Down if replicas_view => {
                self.move_replica(state, if action == Action::Up { -1 } else { 1 });
                Outcome::Nothing
            }
            Action::Restart | Action::Kill | Action::ScaleUp | Action::ScaleDown
                if replicas_view =>
            {
                self.replica_action(action, state)
            }
            // Replica keys mean nothing elsewhere; components are not stopped from Replicas.
            Action::Kill | Action::ScaleUp | Action::ScaleDown => Outcome::Nothing,
            Action::StartStop if replicas_view => Outcome::Nothing,
            Action::Up => {
                self.move_selection(state, -1);
                Outcome::Nothing
            }
            Action::Down => {
                self.move_selection(state, 1);
                Outcome::Nothing
            }
            Action::Help => {
                self.popup = Some(Popup::Help);
                Outcome::Nothing
            }
            Action::Restart | Action::StartStop => {
                let i = self.selected_index(state);
                let Some((name, c)) = state.components.iter().nth(i) else {
                    return Outcome::Nothing;
                };
                let (verb, command) = match (action, c.status) {
                    (Action::Restart, _) => ("Restart", Command::Restart(name.clone())),
                    (_, ComponentStatus::Stopped) => ("Start", Command::Start(name.clone())),
                    _ => ("Stop", Command::Stop(name.clone())),
                };
                self.popup = Some(Popup::Confirm {
                    prompt: format!("{verb} component `{name}`?"),
                    command,
                });
                Outcome::Nothing
            }
            Action::ToggleProxy => {
                let Some(proxy) = &state.proxy else {
                    return Outcome::Nothing;
                };
                let on = !proxy.enabled;
                self.popup = Some(Popup::Confirm {
                    prompt: if on {
                        "Switch the validator proxy ON (serve the owner's traffic)?".into()
                    } else {
                        "Switch the validator proxy OFF (in-flight requests finish)?".into()
                    },
                    command: Command::SetProxy(on),
                });
                Outcome::Nothing
            }
            Action::Yes | Action::Close => Outcome::Nothing,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nicheimage_node::runtime::{ComponentChange, Event};

    fn state_with(names: &[&str]) -> NodeState {
        let mut s = NodeState::new(0);
        for n in names {
            for change in [ComponentChange::Starting, ComponentChange::Running] {
                s.apply(
                    Event::Component {
                        name: n.to_string(),
                        change,
                    },
                    0,
                );
            }
        }
        s
    }

    #[test]
    fn restart_asks_first_and_sends_on_yes() {
        let s = state_with(&["metrics", "telemetry"]);
        let mut ui = UiState::default();
        assert_eq!(ui.handle(Action::Down, &s), Outcome::Nothing);
        assert_eq!(ui.handle(Action::Restart, &s), Outcome::Nothing);
        assert!(matches!(ui.popup, Some(Popup::Confirm { .. })));
        // Other keys do nothing while the dialog is open.
        assert_eq!(ui.handle(Action::Down, &s), Outcome::Nothing);
        assert_eq!(
            ui.handle(Action::Yes, &s),
            Outcome::Send(Command::Restart("telemetry".into()))
        );
        assert!(ui.popup.is_none());
    }

    #[test]
    fn close_cancels_and_selection_is_clamped() {
        let s = state_with(&["a", "b"]);
        let mut ui = UiState::default();
        ui.handle(Action::Up, &s);
        assert_eq!(ui.selected.as_deref(), Some("a"));
        for _ in 0..5 {
            ui.handle(Action::Down, &s);
        }
        assert_eq!(ui.selected.as_deref(), Some("b"));
        ui.handle(Action::StartStop, &s);
        assert_eq!(ui.handle(Action::Close, &s), Outcome::Nothing);
        assert!(ui.popup.is_none());
    }

    #[test]
    fn the_proxy_toggle_asks_first_and_only_where_there_is_a_proxy() {
        let mut s = state_with(&["validator"]);
        let mut ui = UiState::default();
        ui.handle(Action::ToggleProxy, &s);
        assert!(ui.popup.is_none(), "no proxy in this node");
        s.apply(
            Event::Proxy(nicheimage_node::runtime::event::ProxyReport::default()),
            0,
        );
        ui.handle(Action::ToggleProxy, &s);
        assert!(matches!(&ui.popup, Some(Popup::Confirm { prompt, .. }) if prompt.contains("ON")));
        assert_eq!(
            ui.handle(Action::Yes, &s),
            Outcome::Send(Command::SetProxy(true))
        );
    }

    fn with_replicas(indices: &[usize]) -> NodeState {
        let mut s = state_with(&["endpoint"]);
        for i in indices {
            s.apply(
                Event::Replica(nicheimage_node::runtime::event::ReplicaReport::new(
                    *i,
                    vec![],
                    (*i >= 1000).then(|| "http://10.0.0.2:10006".to_string()),
                )),
                0,
            );
        }
        s
    }

    #[test]
    fn number_keys_and_tab_switch_views() {
        let s = state_with(&["a"]);
        let mut ui = UiState::default();
        ui.handle(Action::GoTo(3), &s);
        assert_eq!(ui.tab, Tab::Validator);
        ui.handle(Action::NextTab, &s);
        assert_eq!(ui.tab, Tab::Proxy);
        for _ in 0..4 {
            ui.handle(Action::NextTab, &s);
        }
        assert_eq!(ui.tab, Tab::Overview);
        ui.handle(Action::GoTo(8), &s);
        assert_eq!(ui.tab, Tab::Overview, "no ninth view");
    }

    #[test]
    fn replica_keys_act_on_the_selected_replica_after_a_yes() {
        let s = with_replicas(&[0, 1, 1000]);
        let mut ui = UiState::default();
        assert_eq!(ui.handle(Action::Kill, &s), Outcome::Nothing);
        assert!(
            ui.popup.is_none(),
            "x does nothing outside the Replicas view"
        );
        ui.handle(Action::GoTo(1), &s);
        ui.handle(Action::Down, &s);
        ui.handle(Action::Kill, &s);
        assert_eq!(
            ui.handle(Action::Yes, &s),
            Outcome::Send(Command::KillReplica(1))
        );
        ui.handle(Action::Restart, &s);
        assert_eq!(
            ui.handle(Action::Yes, &s),
            Outcome::Send(Command::RestartReplica(1))
        );
        ui.handle(Action::ScaleUp, &s);
        assert_eq!(
            ui.handle(Action::Yes, &s),
            Outcome::Send(Command::ScaleReplicas(3))
        );
        ui.handle(Action::ScaleDown, &s);
        assert_eq!(
            ui.handle(Action::Yes, &s),
            Outcome::Send(Command::ScaleReplicas(1))
        );
        // A remote replica is not ours to kill.
        ui.handle(Action::Down, &s);
        assert_eq!(ui.replica, Some(1000));
        ui.handle(Action::Kill, &s);
        assert!(ui.popup.is_none());
    }

    #[test]
    fn scale_keys_count_the_replicas_the_pool_runs_now() {
        let mut s = with_replicas(&[0, 1, 2, 1000]);
        s.apply(Event::ReplicaRetired(2), 0);
        let mut ui = UiState::default();
        ui.handle(Action::GoTo(1), &s);
        ui.handle(Action::ScaleUp, &s);
        assert_eq!(
            ui.handle(Action::Yes, &s),
            Outcome::Send(Command::ScaleReplicas(3)),
            "two local replicas after the retirement, the remote one not counted"
        );
    }

    #[test]
    fn quitting_with_work_in_flight_asks_first() {
        let mut s = with_replicas(&[0]);
        let mut ui = UiState::default();
        assert_eq!(
            ui.handle(Action::Quit, &s),
            Outcome::Quit,
            "idle: no question"
        );
        let mut busy = s.replicas[&0].clone();
        busy.status = nicheimage_node::runtime::event::ReplicaStatus::Busy;
        s.apply(Event::Replica(busy), 0);
        assert_eq!(ui.handle(Action::Quit, &s), Outcome::Nothing);
        assert!(
            matches!(&ui.popup, Some(Popup::Confirm { prompt, .. }) if prompt.contains("1 generation"))
        );
        assert_eq!(ui.handle(Action::Yes, &s), Outcome::Send(Command::Shutdown));
    }

    #[test]
    fn filter_typing_sort_and_log_controls() {
        let s = state_with(&["a"]);
        let mut ui = UiState::default();
        ui.handle(Action::Find, &s);
        assert_eq!(ui.input, None, "no filter on the Overview");
        ui.handle(Action::GoTo(3), &s);
        ui.handle(Action::Sort, &s);
        assert_eq!(ui.sort, SortBy::Score);
        ui.handle(Action::Find, &s);
        for c in "tim".chars() {
            ui.edit(TextKey::Char(c));
        }
        ui.edit(TextKey::Backspace);
        ui.edit(TextKey::Enter);
        assert_eq!((ui.filter.as_str(), ui.input), ("ti", None));
        ui.handle(Action::Find, &s);
        ui.edit(TextKey::Esc);
        assert_eq!(ui.filter, "");
        ui.handle(Action::GoTo(6), &s);
        assert_eq!(ui.tab, Tab::Logs);
        ui.handle(Action::Level, &s);
        assert_eq!(ui.log_level, LogLevel::Info);
        assert!(
            !ui.log_level.shows(tracing::Level::DEBUG) && ui.log_level.shows(tracing::Level::WARN)
        );
        ui.handle(Action::Follow, &s);
        assert_eq!(ui.log_paused_at, Some(0));
        ui.handle(Action::Follow, &s);
        assert_eq!(ui.log_paused_at, None);
        assert_eq!(ui.handle(Action::CycleTheme, &s), Outcome::CycleTheme);
    }

    #[test]
    fn quit_works_even_with_a_popup() {
        let s = state_with(&["a"]);
        let mut ui = UiState::default();
        ui.handle(Action::Help, &s);
        assert_eq!(ui.handle(Action::Quit, &s), Outcome::Quit);
    }
}
