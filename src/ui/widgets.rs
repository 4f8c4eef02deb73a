//! Small pieces the views share: bordered blocks, gauges, sparklines, sizes and durations.

use super::theme::Theme;
use nicheimage_node::runtime::ComponentStatus;
use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};
use ratatui::text::Span;
use ratatui::widgets::{Block, Borders};

pub(super) fn duration(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if d > 0 {
        format!("{d}d {h:02}:{m:02}:{s:02}")
    } else {
        format!("{h:02}:{m:02}:{s:02}")
    }
}

pub(super) fn bytes(n: u64) -> String {
    const MIB: f64 = 1024.0 * 1024.0;
    let n = n as f64;
    if n >= 1024.0 * MIB {
        format!("{:.1} GiB", n / (1024.0 * MIB))
    } else {
        format!("{:.0} MiB", n / MIB)
    }
}

pub(super) fn block<'a>(title: &'a str, t: &Theme) -> Block<'a> {
    Block::default()
        .borders(Borders::ALL)
        .border_style(t.frame())
        .title(Span::styled(
            format!(" {title} "),
            t.highlight().add_modifier(Modifier::BOLD),
        ))
}

/// A ten-cell text gauge.
pub(super) fn gauge(ratio: f64) -> String {
    let filled = (ratio.clamp(0.0, 1.0) * 10.0).round() as usize;
    format!("{}{}", "█".repeat(filled), "░".repeat(10 - filled))
}

/// Eighth-block bars, lowest first: the console's sparklines and histograms.
pub(super) const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// Text sparkline of the last `n` samples, each scaled to the largest.
pub(super) fn sparkline(samples: &std::collections::VecDeque<f64>, n: usize) -> String {
    let tail: Vec<f64> = samples.iter().rev().take(n).rev().copied().collect();
    let top = tail.iter().copied().fold(0.0f64, f64::max);
    tail.iter()
        .map(|x| if top <= 0.0 { bar(0.0) } else { bar(x / top) })
        .collect()
}

pub(super) fn centered(area: Rect, width: u16, height: u16) -> Rect {
    let w = width.min(area.width);
    let h = height.min(area.height);
    Rect::new(
        area.x + (area.width - w) / 2,
        area.y + (area.height - h) / 2,
        w,
        h,
    )
}

pub(super) fn status_style(status: ComponentStatus, t: &Theme) -> (&'static str, Style) {
    match status {
        ComponentStatus::Running => ("running", t.good()),
        ComponentStatus::Starting => ("starting", t.highlight()),
        ComponentStatus::Backoff => ("backoff", t.bad().add_modifier(Modifier::BOLD)),
        ComponentStatus::Stopped => ("stopped", t.label()),
    }
}

/// The bar for a fraction of full height (rounded; outside [0, 1] clamped, NaN lowest).
pub(super) fn bar(fraction: f64) -> char {
    BARS[(fraction.clamp(0.0, 1.0) * 7.0).round() as usize]
}

/// One table column: its header, its width and how an item becomes its cell.
struct Column<'a, T> {
    title: &'static str,
    width: ratatui::layout::Constraint,
    cell: Box<dyn Fn(&T) -> ratatui::widgets::Cell<'a> + 'a>,
}

/// A table's columns, each declared once with its header, width and cell, so they cannot drift
/// apart: `Columns::<Row>::new().col(...).col(...).table(rows, ...)`.
pub(super) struct Columns<'a, T>(Vec<Column<'a, T>>);

impl<'a, T> Columns<'a, T> {
    pub(super) fn new() -> Self {
        Self(Vec::new())
    }

    pub(super) fn col(
        mut self,
        title: &'static str,
        width: ratatui::layout::Constraint,
        cell: impl Fn(&T) -> ratatui::widgets::Cell<'a> + 'a,
    ) -> Self {
        self.0.push(Column {
            title,
            width,
            cell: Box::new(cell),
        });
        self
    }

    /// A table of `items` (each row in `row_style`) under a bold header in `header_style`.
    pub(super) fn table(
        &self,
        items: impl IntoIterator<Item = T>,
        row_style: Style,
        header_style: Style,
    ) -> ratatui::widgets::Table<'a> {
        use ratatui::widgets::{Row, Table};
        let rows: Vec<Row> = items
            .into_iter()
            .map(|item| Row::new(self.0.iter().map(|c| (c.cell)(&item))).style(row_style))
            .collect();
        Table::new(rows, self.0.iter().map(|c| c.width)).header(
            Row::new(self.0.iter().map(|c| c.title))
                .style(header_style.add_modifier(Modifier::BOLD)),
        )
    }
}
