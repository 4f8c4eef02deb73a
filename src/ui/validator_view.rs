//! The Validator tab: every miner in the book with its reward window, mean, share, weight, last
//! latency and why its last reward was what it was; sortable (`o`) and filterable (`/`). The
//! weight-setting status is above the table.

use super::app::{Outcome, TextField};
use super::keymap::{Action, Binding, key_for};
use super::theme::Theme;
use super::view::{View, ViewContext};
use super::widgets::{Columns, block};
use crossterm::event::KeyCode;
use nicheimage_node::catalogue::Pipeline;
use nicheimage_node::runtime::NodeState;
use nicheimage_node::runtime::event::{RoundOutcome, ValidatorReport, WeightsState, WeightsStatus};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Margin, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph};
use std::collections::BTreeSet;

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

/// The Validator view's state: its row order and filter.
#[derive(Debug, Clone, Default)]
pub struct ValidatorView {
    pub sort: SortBy,
    /// Rows containing this text (uid, hotkey, model or reason).
    pub filter: TextField,
}

const KEYS: &[Binding] = &[
    Binding {
        codes: &[KeyCode::Char('o')],
        label: "o",
        help: "sort by uid, score, latency, weight",
        short: "sort",
        action: Action::Sort,
    },
    Binding {
        codes: &[KeyCode::Char('/')],
        label: "/",
        help: "filter rows (Enter keeps, Esc clears)",
        short: "filter",
        action: Action::Find,
    },
];

impl View for ValidatorView {
    fn title(&self) -> &'static str {
        "Validator"
    }

    fn bindings(&self) -> &'static [Binding] {
        KEYS
    }

    fn handle(&mut self, action: Action, _state: &NodeState) -> Outcome {
        match action {
            Action::Sort => self.sort = self.sort.next(),
            Action::Find => self.filter.typing = true,
            _ => {}
        }
        Outcome::Nothing
    }

    fn typing(&mut self) -> Option<&mut TextField> {
        Some(&mut self.filter)
    }

    fn draw(&self, frame: &mut Frame, area: Rect, v: &ViewContext) {
        draw(frame, area, v.state.validator.as_deref(), self, v.theme);
    }
}

/// One reward as a bar: ▁ (0) to █ (1); below 0 (the black-image rule) as `-`.
fn bar(reward: f64) -> char {
    if reward < 0.0 {
        '-'
    } else {
        super::widgets::bar(reward)
    }
}

/// What one table row shows.
pub struct MinerLine<'a> {
    pub uid: u16,
    pub hotkey: &'a str,
    pub model: &'a str,
    pub window: String,
    pub mean: f64,
    pub score: f64,
    pub weight: Option<u16>,
    pub last: Option<&'a RoundOutcome>,
}

impl MinerLine<'_> {
    fn matches(&self, filter: &str) -> bool {
        if filter.is_empty() {
            return true;
        }
        let f = filter.to_lowercase();
        self.uid.to_string() == f
            || self.hotkey.to_lowercase().contains(&f)
            || self.model.to_lowercase().contains(&f)
            || self
                .last
                .is_some_and(|o| o.reason.to_string().to_lowercase().contains(&f))
    }
}

/// The rows in display order: filtered, then sorted.
pub fn lines<'a>(v: &'a ValidatorReport, ui: &ValidatorView) -> Vec<MinerLine<'a>> {
    let uids: BTreeSet<u16> = v
        .miners
        .keys()
        .copied()
        .chain(v.scores.keys().copied())
        .chain(v.last_round.iter().map(|o| o.uid))
        .collect();
    let mut rows: Vec<MinerLine> = uids
        .into_iter()
        .map(|uid| {
            let book = v.miners.get(&uid);
            let last = v.last_round.iter().rfind(|o| o.uid == uid);
            MinerLine {
                uid,
                hotkey: book.map_or("", |b| b.hotkey.as_str()),
                model: book
                    .map(|b| b.model.as_str())
                    .or(last.map(|o| o.model.as_str()))
                    .unwrap_or(""),
                window: book.map_or(String::new(), |b| {
                    b.scores.iter().map(|s| bar(*s)).collect()
                }),
                mean: book.map_or(0.0, |b| b.mean),
                score: v.scores.get(&uid).copied().unwrap_or(0.0),
                weight: v.weights_set.get(&uid).copied(),
                last,
            }
        })
        .filter(|l| l.matches(&ui.filter.text))
        .collect();
    let latency = |l: &MinerLine| l.last.and_then(|o| o.latency_ms).unwrap_or(0);
    match ui.sort {
        SortBy::Uid => {}
        SortBy::Score => rows.sort_by(|a, b| b.score.total_cmp(&a.score)),
        SortBy::Latency => rows.sort_by_key(|l| std::cmp::Reverse(latency(l))),
        SortBy::Weight => rows.sort_by_key(|l| std::cmp::Reverse(l.weight.unwrap_or(0))),
    }
    rows
}

fn draw(frame: &mut Frame, area: Rect, v: Option<&ValidatorReport>, ui: &ValidatorView, t: &Theme) {
    let muted = t.label();
    let text = t.value();
    frame.render_widget(block("validator", t), area);
    let inner = area.inner(Margin::new(1, 1));
    let Some(v) = v else {
        frame.render_widget(
            Paragraph::new(Line::styled(
                "no validator in this node (run `nicheimage-tui validator`, or the devnet)",
                muted,
            )),
            inner,
        );
        return;
    };
    let [head, table_area] =
        Layout::vertical([Constraint::Length(2), Constraint::Min(1)]).areas(inner);
    let weights_style = match v.weights.as_ref().map(WeightsStatus::state) {
        Some(WeightsState::Set) => t.good(),
        Some(WeightsState::Pending) => t.warning(),
        Some(WeightsState::Failed) => t.bad(),
        None => muted,
    };
    let mut first = vec![
        Span::styled("hotkey ", muted),
        Span::styled(v.hotkey.chars().take(16).collect::<String>(), text),
        Span::styled("  rounds ", muted),
        Span::styled(v.step.to_string(), text),
        Span::styled("  weights ", muted),
        Span::styled(
            v.weights
                .as_ref()
                .map_or("not yet".into(), WeightsStatus::to_string),
            weights_style,
        ),
    ];
    if let Some(b) = v.next_weights_block {
        first.push(Span::styled("  next eligible block ", muted));
        first.push(Span::styled(b.to_string(), text));
    }
    let mut second = vec![
        Span::styled("sort ", muted),
        Span::styled(ui.sort.name(), text),
        Span::styled(
            format!(" ({})  filter ", key_for(KEYS, Action::Sort)),
            muted,
        ),
        Span::styled(
            if ui.filter.text.is_empty() && !ui.filter.typing {
                format!("none ({})", key_for(KEYS, Action::Find))
            } else {
                ui.filter.shown()
            },
            text,
        ),
        Span::raw("  "),
    ];
    match (&v.last_error, &v.state_note) {
        (Some(e), _) => second.push(Span::styled(e.clone(), t.bad())),
        (None, Some(n)) => second.push(Span::styled(n.clone(), t.warning())),
        (None, None) => {}
    }
    frame.render_widget(
        Paragraph::new(vec![Line::from(first), Line::from(second)]),
        head,
    );

    let rows = lines(v, ui);
    let total: f64 = v.scores.values().sum();
    let columns = Columns::<&MinerLine>::new()
        .col("uid", Constraint::Length(4), |l: &&MinerLine| {
            Cell::from(l.uid.to_string())
        })
        .col("hotkey", Constraint::Length(8), |l| {
            Cell::from(l.hotkey.chars().take(8).collect::<String>())
        })
        .col("model", Constraint::Length(10), |l| {
            Cell::from(l.model.to_string())
        })
        .col("last 10", Constraint::Length(10), |l| {
            Cell::from(l.window.clone()).style(t.highlight())
        })
        .col("mean", Constraint::Length(5), |l| {
            Cell::from(format!("{:.3}", l.mean))
        })
        .col("share", Constraint::Length(6), move |l| {
            Cell::from(if total > 0.0 {
                format!("{:.1}%", 100.0 * l.score / total)
            } else {
                "-".into()
            })
        })
        .col("weight", Constraint::Length(6), |l| {
            Cell::from(l.weight.map_or("-".into(), |w| w.to_string()))
        })
        .col("latency", Constraint::Length(7), |l| {
            Cell::from(
                l.last
                    .and_then(|o| o.latency_ms)
                    .map_or(String::new(), |ms| format!("{:.2} s", ms as f64 / 1000.0)),
            )
        })
        .col("reward", Constraint::Length(6), move |l| {
            match l.last.and_then(|o| o.reward) {
                Some(r) if r > 0.0 => Cell::from(format!("{r:.3}")).style(t.good()),
                Some(r) => Cell::from(format!("{r:.3}")).style(t.warning()),
                None => Cell::from("-").style(muted),
            }
        })
        // txt2img is the common case; other pipelines are named.
        .col("why (last round)", Constraint::Min(10), |l| {
            Cell::from(l.last.map_or(String::new(), |o| match o.pipeline {
                Pipeline::Txt2img => o.reason.to_string(),
                other => format!("[{}] {}", other.name(), o.reason),
            }))
        });
    let table = columns.table(rows.iter(), text, muted);
    frame.render_widget(table, table_area);
}
