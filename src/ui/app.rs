//! What the console itself remembers (selection, popups) and how keys change it. Pure: the
//! only way out is the returned [`Outcome`].

use super::keymap::Action;
use crate::runtime::{Command, ComponentStatus, NodeState};

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
}

#[derive(Debug, Default, Clone)]
pub struct UiState {
    /// Selected component, by name so it survives components appearing.
    pub selected: Option<String>,
    pub popup: Option<Popup>,
}

impl UiState {
    pub fn selected_index(&self, state: &NodeState) -> usize {
        self.selected
            .as_ref()
            .and_then(|n| state.components.keys().position(|k| k == n))
            .unwrap_or(0)
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
            (Some(_), Action::Quit) => {}
            (Some(_), _) => return Outcome::Nothing,
            (None, _) => {}
        }
        match action {
            Action::Quit => Outcome::Quit,
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
    use crate::runtime::{ComponentChange, Event};

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
            Event::Proxy(crate::runtime::event::ProxyReport::default()),
            0,
        );
        ui.handle(Action::ToggleProxy, &s);
        assert!(matches!(&ui.popup, Some(Popup::Confirm { prompt, .. }) if prompt.contains("ON")));
        assert_eq!(
            ui.handle(Action::Yes, &s),
            Outcome::Send(Command::SetProxy(true))
        );
    }

    #[test]
    fn quit_works_even_with_a_popup() {
        let s = state_with(&["a"]);
        let mut ui = UiState::default();
        ui.handle(Action::Help, &s);
        assert_eq!(ui.handle(Action::Quit, &s), Outcome::Quit);
    }
}
