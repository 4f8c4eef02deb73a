//! Rendering: a pure function of the node state, the console (its views and popups) and the
//! theme. A view is a unit owning its state, keys and drawing ([`View`]); the frame around it
//! (tabs, footer, help) is built from the console's list of views.

use super::app::{Outcome, Popup, TextField, UiState};
use super::chrome::{draw_footer, draw_header, draw_problem, recent_problem};
use super::keymap::{Action, Binding};
use super::popups::{draw_confirm, draw_help};
use super::theme::Theme;
use nicheimage_node::runtime::NodeState;
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::widgets::{Paragraph, Wrap};

pub const MIN_WIDTH: u16 = 60;
pub const MIN_HEIGHT: u16 = 16;

/// What every view draws from, besides itself.
pub struct ViewContext<'a> {
    pub state: &'a NodeState,
    pub theme: &'a Theme,
    pub now_unix_ms: u64,
    /// Where the config came from, shown in the header.
    pub config_source: &'a str,
}

/// One view of the console. Adding a view is a file with its unit and a line in
/// [`super::views::all`]: the tabs, the number keys, the footer and the help follow.
pub trait View: std::any::Any {
    /// The tab's title.
    fn title(&self) -> &'static str;

    /// The keys this view answers besides the console's own (footer, help and input read them).
    fn bindings(&self) -> &'static [Binding] {
        &[]
    }

    /// One of this view's actions (or the mouse wheel's Up and Down, which any view may take).
    fn handle(&mut self, _action: Action, _state: &NodeState) -> Outcome {
        Outcome::Nothing
    }

    /// The text the operator is typing into, while typing.
    fn typing(&mut self) -> Option<&mut TextField> {
        None
    }

    fn draw(&self, frame: &mut Frame, area: Rect, v: &ViewContext);
}

pub fn draw(frame: &mut Frame, ui: &UiState, v: &ViewContext) {
    let area = frame.area();
    let t = v.theme;
    if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
        let msg = format!(
            "terminal too small: {}x{} (need at least {MIN_WIDTH}x{MIN_HEIGHT})",
            area.width, area.height
        );
        frame.render_widget(
            Paragraph::new(msg)
                .style(t.warning())
                .wrap(Wrap { trim: true }),
            area,
        );
        return;
    }
    // Background problems show as one line above the footer, not as a crash or a popup.
    let problem = recent_problem(v);
    let [header, body, status, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(1),
        Constraint::Length(u16::from(problem.is_some())),
        Constraint::Length(1),
    ])
    .areas(area);
    if let Some(p) = problem {
        draw_problem(frame, status, p, t);
    }
    draw_header(frame, header, ui, v);
    ui.focused().draw(frame, body, v);
    draw_footer(frame, footer, ui, t);
    match &ui.popup {
        Some(Popup::Help) => draw_help(frame, area, ui, t),
        Some(Popup::Confirm { prompt, .. }) => draw_confirm(frame, area, t, prompt),
        None => {}
    }
}
