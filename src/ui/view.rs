//! Rendering: a pure function of the node state, the console's own state and the theme.

use super::app::{Popup, Tab, UiState};
use super::chrome::{draw_footer, draw_header, draw_problem, recent_problem};
use super::logs_view::draw_logs;
use super::miners_view::draw_miners;
use super::overview_view::draw_overview;
use super::popups::{draw_confirm, draw_help};
use super::replicas_view::draw_replicas;
use super::theme::Theme;
use nicheimage_node::runtime::NodeState;
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout};
use ratatui::widgets::{Paragraph, Wrap};

pub const MIN_WIDTH: u16 = 60;
pub const MIN_HEIGHT: u16 = 16;

pub struct ViewContext<'a> {
    pub state: &'a NodeState,
    pub ui: &'a UiState,
    pub theme: &'a Theme,
    pub now_unix_ms: u64,
    /// Where the config came from, shown in the header.
    pub config_source: &'a str,
}

pub fn draw(frame: &mut Frame, v: &ViewContext) {
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
    draw_header(frame, header, v);
    match v.ui.tab {
        Tab::Overview => draw_overview(frame, body, v),
        Tab::Replicas => draw_replicas(frame, body, v),
        Tab::Miners => draw_miners(frame, body, v),
        Tab::Validator => {
            super::validator_view::draw(frame, body, v.state.validator.as_ref(), v.ui, t)
        }
        Tab::Proxy => {
            super::proxy_view::draw(frame, body, v.state.proxy.as_ref(), v.now_unix_ms, t)
        }
        Tab::Gpu => super::gpu_view::draw(frame, body, v.state, t),
        Tab::Logs => draw_logs(frame, body, v),
        Tab::Gallery => super::gallery_view::draw(frame, body, &v.state.gallery, t),
    }
    draw_footer(frame, footer, v);
    match &v.ui.popup {
        Some(Popup::Help) => draw_help(frame, area, t),
        Some(Popup::Confirm { prompt, .. }) => draw_confirm(frame, area, t, prompt),
        None => {}
    }
}
