//! The terminal console: renders [`NodeState`](nicheimage_node::runtime::NodeState) and sends commands.
//! No business logic and no I/O besides the terminal live here.

pub mod app;
mod chrome;
mod gallery_view;
mod gpu_view;
pub mod keymap;
mod logs_view;
mod miners_view;
mod overview_view;
mod popups;
mod proxy_view;
mod replicas_view;
pub mod theme;
mod validator_view;
pub mod view;
pub mod views;
mod widgets;

use app::{Outcome, UiState};
use crossterm::event::{Event as TermEvent, EventStream, KeyEventKind};
use futures::StreamExt;
use nicheimage_node::runtime::state::unix_ms_now;
use nicheimage_node::runtime::{Command, Node};
use std::time::{Duration, Instant};
use theme::Theme;
use view::ViewContext;

/// Restores the terminal however the console ends (return, error or panic unwinding).
struct TerminalGuard;

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        ratatui::restore();
    }
}

/// Mouse reporting on while the console runs.
struct MouseGuard;

impl MouseGuard {
    fn enable() -> std::io::Result<Self> {
        crossterm::execute!(std::io::stdout(), crossterm::event::EnableMouseCapture)?;
        Ok(MouseGuard)
    }
}

impl Drop for MouseGuard {
    fn drop(&mut self) {
        let _ = crossterm::execute!(std::io::stdout(), crossterm::event::DisableMouseCapture);
    }
}

pub struct UiSettings {
    pub theme: Theme,
    pub max_fps: u32,
    pub config_source: String,
    /// Mouse: scroll moves the selection, a click on the header picks a view.
    pub mouse: bool,
    /// NO_COLOR: themes stay plain when cycled.
    pub no_color: bool,
}

/// The view whose title is at column `x` of the header (the header lists views first).
pub fn tab_at(ui: &UiState, x: u16) -> Option<usize> {
    let mut start = 0u16;
    for (i, view) in ui.views().enumerate() {
        let width = chrome::tab_label(i, view.title()).chars().count() as u16;
        if (start..start + width).contains(&x) {
            return Some(i);
        }
        start += width + 1;
    }
    None
}

fn text_key(code: crossterm::event::KeyCode) -> Option<app::TextKey> {
    use crossterm::event::KeyCode;
    match code {
        KeyCode::Char(c) => Some(app::TextKey::Char(c)),
        KeyCode::Backspace => Some(app::TextKey::Backspace),
        KeyCode::Enter => Some(app::TextKey::Enter),
        KeyCode::Esc => Some(app::TextKey::Esc),
        _ => None,
    }
}

/// Runs the console until the operator quits or the node shuts down.
pub async fn run(node: &Node, settings: UiSettings) -> std::io::Result<()> {
    // try_init also installs a panic hook that restores the terminal before printing.
    let mut terminal = ratatui::try_init()?;
    let _guard = TerminalGuard;
    let _mouse = settings.mouse.then(MouseGuard::enable).transpose()?;
    let mut theme = settings.theme;
    let mut theme_index = 0;
    let mut input = EventStream::new();
    let mut state_rx = node.state.clone();
    let mut ui = UiState::default();
    let frame_gap = Duration::from_millis(1000 / u64::from(settings.max_fps.max(1)));
    // Uptime and countdowns change every second even when nothing else does.
    let mut clock = tokio::time::interval(Duration::from_secs(1));
    let mut dirty = true;
    let mut last_frame = Instant::now() - frame_gap;

    loop {
        if dirty {
            let wait = frame_gap.saturating_sub(last_frame.elapsed());
            if wait.is_zero() {
                let state = state_rx.borrow_and_update().clone();
                terminal.draw(|f| {
                    view::draw(
                        f,
                        &ui,
                        &ViewContext {
                            state: &state,
                            theme: &theme,
                            now_unix_ms: unix_ms_now(),
                            config_source: &settings.config_source,
                        },
                    )
                })?;
                last_frame = Instant::now();
                dirty = false;
            }
        }
        let until_frame = frame_gap.saturating_sub(last_frame.elapsed());
        tokio::select! {
            _ = node.shutdown.cancelled() => return Ok(()),
            changed = state_rx.changed() => {
                if changed.is_err() { return Ok(()); }
                dirty = true;
            }
            _ = clock.tick() => dirty = true,
            _ = tokio::time::sleep(until_frame), if dirty => {}
            event = input.next() => match event {
                Some(Ok(TermEvent::Key(key))) if key.kind != KeyEventKind::Release => {
                    if ui.typing() {
                        if let Some(k) = text_key(key.code) {
                            ui.edit(k);
                            dirty = true;
                        }
                        continue;
                    }
                    let Some(action) = keymap::action_for(key, ui.focused().bindings()) else {
                        continue;
                    };
                    let snapshot = node.snapshot();
                    match ui.handle(action, &snapshot) {
                        Outcome::Nothing | Outcome::Ask { .. } => {}
                        Outcome::Quit => {
                            let _ = node.commands.send(Command::Shutdown).await;
                            return Ok(());
                        }
                        Outcome::Send(command) => {
                            let _ = node.commands.send(command).await;
                        }
                        Outcome::CycleTheme if !settings.no_color => {
                            theme_index = (theme_index + 1) % theme::BUILT_IN.len();
                            if let Ok(next) = Theme::load(theme::BUILT_IN[theme_index].0, false) {
                                theme = next;
                            }
                        }
                        Outcome::CycleTheme => {}
                    }
                    dirty = true;
                }
                Some(Ok(TermEvent::Mouse(m))) => {
                    use crossterm::event::{MouseButton, MouseEventKind};
                    let action = match m.kind {
                        MouseEventKind::ScrollUp => Some(keymap::Action::Up),
                        MouseEventKind::ScrollDown => Some(keymap::Action::Down),
                        MouseEventKind::Down(MouseButton::Left) if m.row == 0 => {
                            tab_at(&ui, m.column).map(keymap::Action::GoTo)
                        }
                        _ => None,
                    };
                    if let Some(action) = action {
                        let snapshot = node.snapshot();
                        if let Outcome::Send(command) = ui.handle(action, &snapshot) {
                            let _ = node.commands.send(command).await;
                        }
                        dirty = true;
                    }
                }
                Some(Ok(TermEvent::Resize(..))) => dirty = true,
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e),
                None => return Ok(()),
            },
        }
    }
}
