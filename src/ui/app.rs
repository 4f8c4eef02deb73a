//! The console's own state (its views, which one is shown, a popup) and how keys reach them.
//! Pure: the only way out is the returned [`Outcome`].

use super::keymap::Action;
use super::view::View;
use nicheimage_node::runtime::{Command, NodeState};

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
    /// A command to send once the operator says yes to `prompt`.
    Ask {
        prompt: String,
        command: Command,
    },
    /// Switch to the next built-in theme.
    CycleTheme,
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

/// A line of text a view filters or searches by, and whether the keyboard is typing into it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TextField {
    pub text: String,
    pub typing: bool,
}

impl TextField {
    /// At most this many characters.
    const MAX_CHARS: usize = 64;

    pub fn edit(&mut self, key: TextKey) {
        match key {
            TextKey::Char(c) if self.text.chars().count() < Self::MAX_CHARS => self.text.push(c),
            TextKey::Char(_) => {}
            TextKey::Backspace => {
                self.text.pop();
            }
            TextKey::Enter => self.typing = false,
            TextKey::Esc => {
                self.text.clear();
                self.typing = false;
            }
        }
    }

    /// The text as a view's title shows it: `none` when empty, a cursor while typing.
    pub fn shown(&self) -> String {
        match (self.text.is_empty(), self.typing) {
            (true, false) => "none".into(),
            (_, true) => format!("{}▏", self.text),
            (false, false) => self.text.clone(),
        }
    }
}

/// The console: its views in number-key order, the one shown, and a popup over it.
pub struct UiState {
    views: Vec<Box<dyn View>>,
    focus: usize,
    pub popup: Option<Popup>,
}

impl Default for UiState {
    fn default() -> Self {
        Self::new(super::views::all())
    }
}

impl UiState {
    /// A console over `views`, showing the first.
    pub fn new(views: Vec<Box<dyn View>>) -> Self {
        Self {
            views,
            focus: 0,
            popup: None,
        }
    }

    pub fn views(&self) -> impl Iterator<Item = &dyn View> {
        self.views.iter().map(|v| v.as_ref())
    }

    pub fn focus(&self) -> usize {
        self.focus
    }

    /// The view shown. A console has at least one view; an empty list shows a blank one.
    pub fn focused(&self) -> &dyn View {
        self.views
            .get(self.focus)
            .map_or(&super::views::Blank as &dyn View, |v| v.as_ref())
    }

    fn focused_mut(&mut self) -> Option<&mut Box<dyn View>> {
        self.views.get_mut(self.focus)
    }

    /// The view of type `T`, for tests and for callers that set a view up.
    pub fn view<T: View>(&self) -> Option<&T> {
        self.views
            .iter()
            .find_map(|v| (v.as_ref() as &dyn std::any::Any).downcast_ref::<T>())
    }

    pub fn view_mut<T: View>(&mut self) -> Option<&mut T> {
        self.views
            .iter_mut()
            .find_map(|v| (v.as_mut() as &mut dyn std::any::Any).downcast_mut::<T>())
    }

    /// Shows view `i`; the view left stops typing (its text stays), so a click on a tab while
    /// typing cannot leave a field that swallows keys later.
    fn show(&mut self, i: usize) {
        self.edit(TextKey::Enter);
        self.focus = i;
    }

    /// Whether keys go to a text field (the focused view's filter or search).
    pub fn typing(&mut self) -> bool {
        self.focused_mut()
            .and_then(|v| v.typing())
            .is_some_and(|f| f.typing)
    }

    /// A key while typing.
    pub fn edit(&mut self, key: TextKey) {
        if let Some(field) = self.focused_mut().and_then(|v| v.typing()) {
            field.edit(key);
        }
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
        let outcome = match action {
            Action::Quit => match work_in_flight(state) {
                Some(work) => Outcome::Ask {
                    prompt: format!("{work} in flight: quit anyway? Running work drains first."),
                    command: Command::Shutdown,
                },
                None => Outcome::Quit,
            },
            Action::GoTo(i) => {
                if i < self.views.len() {
                    self.show(i);
                }
                Outcome::Nothing
            }
            Action::NextTab => {
                self.show((self.focus + 1) % self.views.len().max(1));
                Outcome::Nothing
            }
            Action::CycleTheme => Outcome::CycleTheme,
            Action::Help => {
                self.popup = Some(Popup::Help);
                Outcome::Nothing
            }
            Action::ToggleProxy => match &state.proxy {
                None => Outcome::Nothing,
                Some(proxy) => {
                    let on = !proxy.enabled;
                    Outcome::Ask {
                        prompt: if on {
                            "Switch the validator proxy ON (serve the owner's traffic)?".into()
                        } else {
                            "Switch the validator proxy OFF (in-flight requests finish)?".into()
                        },
                        command: Command::SetProxy(on),
                    }
                }
            },
            Action::Yes | Action::Close => Outcome::Nothing,
            // Everything else is a view's: only the focused one hears it.
            other => match self.focused_mut() {
                Some(view) => view.handle(other, state),
                None => Outcome::Nothing,
            },
        };
        match outcome {
            Outcome::Ask { prompt, command } => {
                self.popup = Some(Popup::Confirm { prompt, command });
                Outcome::Nothing
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ui::views::{LogLevel, LogsView, OverviewView, ReplicasView, SortBy, ValidatorView};
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

    fn title(ui: &UiState) -> &'static str {
        ui.focused().title()
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
        let selected = |ui: &UiState| ui.view::<OverviewView>().unwrap().selected.clone();
        assert_eq!(selected(&ui).as_deref(), Some("a"));
        for _ in 0..5 {
            ui.handle(Action::Down, &s);
        }
        assert_eq!(selected(&ui).as_deref(), Some("b"));
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
        assert_eq!(title(&ui), "Validator");
        ui.handle(Action::NextTab, &s);
        assert_eq!(title(&ui), "Proxy");
        for _ in 0..4 {
            ui.handle(Action::NextTab, &s);
        }
        assert_eq!(title(&ui), "Overview");
        ui.handle(Action::GoTo(8), &s);
        assert_eq!(title(&ui), "Overview", "no ninth view");
    }

    #[test]
    fn keys_reach_only_the_view_they_belong_to() {
        let s = with_replicas(&[0, 1]);
        let mut ui = UiState::default();
        // x is the Replicas view's: elsewhere it does nothing.
        for view in [0, 2, 3, 4, 5, 6, 7] {
            ui.handle(Action::GoTo(view), &s);
            assert_eq!(ui.handle(Action::Kill, &s), Outcome::Nothing);
            assert!(ui.popup.is_none(), "x on {}", title(&ui));
        }
        // The Validator's sort key leaves the Logs view's level alone, and the other way round.
        ui.handle(Action::GoTo(3), &s);
        ui.handle(Action::Level, &s);
        ui.handle(Action::Sort, &s);
        ui.handle(Action::GoTo(6), &s);
        ui.handle(Action::Sort, &s);
        assert_eq!(ui.view::<ValidatorView>().unwrap().sort, SortBy::Score);
        assert_eq!(ui.view::<LogsView>().unwrap().level, LogLevel::All);
        // The Replicas view's Up/Down move its own selection, not the components'.
        ui.handle(Action::GoTo(1), &s);
        ui.handle(Action::Down, &s);
        assert_eq!(ui.view::<ReplicasView>().unwrap().selected, Some(1));
        assert_eq!(ui.view::<OverviewView>().unwrap().selected, None);
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
        assert_eq!(ui.view::<ReplicasView>().unwrap().selected, Some(1000));
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
        assert!(!ui.typing(), "no filter on the Overview");
        ui.handle(Action::GoTo(3), &s);
        ui.handle(Action::Sort, &s);
        assert_eq!(ui.view::<ValidatorView>().unwrap().sort, SortBy::Score);
        ui.handle(Action::Find, &s);
        assert!(ui.typing());
        for c in "tim".chars() {
            ui.edit(TextKey::Char(c));
        }
        ui.edit(TextKey::Backspace);
        ui.edit(TextKey::Enter);
        let filter = |ui: &UiState| ui.view::<ValidatorView>().unwrap().filter.clone();
        assert_eq!(
            filter(&ui),
            TextField {
                text: "ti".into(),
                typing: false
            }
        );
        ui.handle(Action::Find, &s);
        ui.edit(TextKey::Esc);
        assert_eq!(filter(&ui), TextField::default());
        ui.handle(Action::GoTo(6), &s);
        assert_eq!(title(&ui), "Logs");
        ui.handle(Action::Level, &s);
        let logs = |ui: &UiState| ui.view::<LogsView>().unwrap().clone();
        assert_eq!(logs(&ui).level, LogLevel::Info);
        assert!(
            !logs(&ui).level.shows(tracing::Level::DEBUG)
                && logs(&ui).level.shows(tracing::Level::WARN)
        );
        ui.handle(Action::Follow, &s);
        assert_eq!(logs(&ui).paused_at, Some(0));
        ui.handle(Action::Follow, &s);
        assert_eq!(logs(&ui).paused_at, None);
        assert_eq!(ui.handle(Action::CycleTheme, &s), Outcome::CycleTheme);
    }

    #[test]
    fn leaving_a_view_while_typing_stops_typing_and_keeps_the_text() {
        let s = state_with(&["a"]);
        let mut ui = UiState::default();
        ui.handle(Action::GoTo(3), &s);
        ui.handle(Action::Find, &s);
        ui.edit(TextKey::Char('7'));
        // A click on the Logs tab (the mouse works while typing).
        ui.handle(Action::GoTo(6), &s);
        assert!(!ui.typing());
        ui.handle(Action::GoTo(3), &s);
        assert!(
            !ui.typing(),
            "back on the Validator view, keys are keys again"
        );
        assert_eq!(ui.view::<ValidatorView>().unwrap().filter.text, "7");
    }

    #[test]
    fn quit_works_even_with_a_popup() {
        let s = state_with(&["a"]);
        let mut ui = UiState::default();
        ui.handle(Action::Help, &s);
        assert_eq!(ui.handle(Action::Quit, &s), Outcome::Quit);
    }
}
