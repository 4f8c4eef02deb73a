//! The Proxy tab: the switch and where it listens, today's and all days' counters with the
//! failure reasons, organic checks, the latency histogram and the latest requests.

use super::theme::Theme;
use super::view::{View, ViewContext};
use super::widgets::{Columns, block};
use nicheimage_node::proxy::counters::{DayCounters, LATENCY_BOUNDS_MS};
use nicheimage_node::runtime::event::{ProxyReport, ProxyRequest};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Margin, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph};

/// The Proxy view: its switch is the console's `p`, so no keys of its own.
#[derive(Debug, Clone, Default)]
pub struct ProxyView;

impl View for ProxyView {
    fn title(&self) -> &'static str {
        "Proxy"
    }

    fn draw(&self, frame: &mut Frame, area: Rect, v: &ViewContext) {
        draw(
            frame,
            area,
            v.state.proxy.as_deref(),
            v.now_unix_ms,
            v.theme,
        );
    }
}

/// Requests answered per second over the last minute (from the recent list).
pub fn per_second(p: &ProxyReport, now_unix_ms: u64) -> f64 {
    let minute = now_unix_ms.saturating_sub(60_000);
    p.recent.iter().filter(|r| r.unix_ms >= minute).count() as f64 / 60.0
}

fn mean_ms(d: &DayCounters) -> String {
    d.latency_ms_sum
        .checked_div(d.success + d.fail)
        .map_or("-".into(), |ms| format!("{ms} ms"))
}

fn bytes(n: u64) -> String {
    format!("{:.1} MB", n as f64 / 1e6)
}

fn draw(frame: &mut Frame, area: Rect, p: Option<&ProxyReport>, now_unix_ms: u64, t: &Theme) {
    let muted = t.label();
    let text = t.value();
    frame.render_widget(block("proxy — p switches it (asks first)", t), area);
    let inner = area.inner(Margin::new(1, 1));
    let Some(p) = p else {
        frame.render_widget(
            Paragraph::new(Line::styled(
                "no validator proxy in this node (it runs with the validator)",
                muted,
            )),
            inner,
        );
        return;
    };
    let [head, counters, histogram, recent] = Layout::vertical([
        Constraint::Length(2),
        Constraint::Length(5),
        Constraint::Length(2),
        Constraint::Min(2),
    ])
    .areas(inner);

    let mut first = vec![match (&p.listening, p.enabled) {
        (Some(a), _) => Span::styled(format!("ON {a}"), t.good()),
        (None, true) => Span::styled("starting", t.warning()),
        (None, false) => Span::styled("OFF", muted),
    }];
    first.extend([
        Span::styled("  auth ", muted),
        Span::styled(p.auth.clone(), text),
        Span::styled("  in flight ", muted),
        Span::styled(p.in_flight.to_string(), text),
        Span::styled("  req/s ", muted),
        Span::styled(format!("{:.2}", per_second(p, now_unix_ms)), text),
    ]);
    let second = match (p.warnings.first(), &p.last_error) {
        (Some(w), _) => Line::styled(w.clone(), t.warning()),
        (None, Some(e)) => Line::styled(e.clone(), t.bad()),
        (None, None) => Line::styled("no problem reported", muted),
    };
    frame.render_widget(Paragraph::new(vec![Line::from(first), second]), head);

    let reasons = |d: &DayCounters| {
        d.fail_reasons
            .iter()
            .map(|(k, v)| format!("{k} ×{v}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let columns = Columns::<(String, &DayCounters)>::new()
        .col(
            "",
            Constraint::Length(17),
            |(name, _): &(String, &DayCounters)| Cell::from(name.clone()),
        )
        .col("served", Constraint::Length(7), |(_, d)| {
            Cell::from(d.success.to_string()).style(t.good())
        })
        .col("failed", Constraint::Length(7), |(_, d)| {
            Cell::from(d.fail.to_string()).style(Style::new().fg(if d.fail > 0 {
                t.warn
            } else {
                t.text
            }))
        })
        .col("checks", Constraint::Length(8), |(_, d)| {
            Cell::from(format!(
                "{}/{}",
                d.checked - d.check_failed.min(d.checked),
                d.checked
            ))
        })
        .col("bytes", Constraint::Length(9), |(_, d)| {
            Cell::from(bytes(d.bytes))
        })
        .col("mean", Constraint::Length(9), |(_, d)| {
            Cell::from(mean_ms(d))
        })
        .col("failures by reason", Constraint::Min(10), move |(_, d)| {
            Cell::from(reasons(d))
        });
    let days = [
        (format!("today {}", p.date), &p.today),
        ("all days".into(), &p.total),
    ];
    let table = columns.table(days, text, muted);
    frame.render_widget(table, counters);

    // Today's latency buckets as one line of bars with their bounds.
    let counts = &p.today.latency_ms;
    let most = counts.iter().copied().max().unwrap_or(0).max(1);
    let mut spans = vec![Span::styled("latency today ", muted)];
    for (i, n) in counts.iter().enumerate() {
        let label = match LATENCY_BOUNDS_MS.get(i) {
            Some(b) if *b >= 1000 => format!("≤{}s", b / 1000),
            Some(b) => format!("≤{b}ms"),
            None => ">32s".into(),
        };
        let bar = if *n == 0 {
            ' '
        } else {
            super::widgets::BARS[(*n * 7 / most) as usize]
        };
        spans.push(Span::styled(label, muted));
        spans.push(Span::styled(format!("{bar}{n} "), t.highlight()));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), histogram);

    let columns = Columns::<&ProxyRequest>::new()
        .col("when", Constraint::Length(9), |r: &&ProxyRequest| {
            Cell::from(format!(
                "{:>4}s ago",
                now_unix_ms.saturating_sub(r.unix_ms) / 1000
            ))
        })
        .col("model", Constraint::Length(16), |r| {
            Cell::from(r.model.clone())
        })
        .col("uid", Constraint::Length(5), |r| {
            Cell::from(r.uid.map_or("-".into(), |u| u.to_string()))
        })
        .col("status", Constraint::Length(6), |r| {
            let ok = (200..300).contains(&r.status);
            Cell::from(r.status.to_string()).style(Style::new().fg(if ok { t.ok } else { t.warn }))
        })
        .col("latency", Constraint::Length(9), |r| {
            Cell::from(format!("{} ms", r.latency_ms))
        })
        .col("outcome", Constraint::Min(10), |r| {
            Cell::from(r.outcome.clone())
        });
    let table = columns.table(p.recent.iter(), text, muted);
    frame.render_widget(table, recent);
}
