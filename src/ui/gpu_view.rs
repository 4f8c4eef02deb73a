//! The GPU tab: each device's utilisation, memory, temperature and power, and which replica
//! holds how much of its memory.

use super::theme::Theme;
use super::view::{View, ViewContext};
use super::widgets::block;
use nicheimage_node::runtime::NodeState;
use nicheimage_node::telemetry::gpu::GpuSource;
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Margin, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Gauge, Paragraph};

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

/// Lines each device takes: name, two gauges, processes header.
fn device_height(processes: usize) -> u16 {
    4 + processes.min(6) as u16
}

/// The GPU view: no state and no keys of its own.
#[derive(Debug, Clone, Default)]
pub struct GpuView;

impl View for GpuView {
    fn title(&self) -> &'static str {
        "GPU"
    }

    fn draw(&self, frame: &mut Frame, area: Rect, v: &ViewContext) {
        draw(frame, area, v.state, v.theme);
    }
}

fn draw(frame: &mut Frame, area: Rect, state: &NodeState, t: &Theme) {
    let muted = t.label();
    let text = t.value();
    let title = match &state.gpu {
        Some(g) if g.source != GpuSource::None => format!("gpus — via {}", g.source),
        _ => "gpus".to_string(),
    };
    frame.render_widget(block(&title, t), area);
    let inner = area.inner(Margin::new(1, 1));
    let report = match &state.gpu {
        None => {
            frame.render_widget(
                Paragraph::new(Line::styled("waiting for the first reading…", muted)),
                inner,
            );
            return;
        }
        Some(r) => r,
    };
    if let Some(why) = &report.unavailable {
        frame.render_widget(
            Paragraph::new(vec![
                Line::styled(why.to_string(), t.warning()),
                Line::styled("replicas run on the CPU", muted),
            ]),
            inner,
        );
        return;
    }
    let heights: Vec<Constraint> = report
        .devices
        .iter()
        .map(|d| Constraint::Length(device_height(d.processes.len())))
        .chain([Constraint::Min(0)])
        .collect();
    let areas = Layout::vertical(heights).split(inner);
    for (d, a) in report.devices.iter().zip(areas.iter()) {
        let [name, util, mem, procs] = Layout::vertical([
            Constraint::Length(1),
            Constraint::Length(1),
            Constraint::Length(1),
            Constraint::Min(0),
        ])
        .areas(*a);
        let mut spans = vec![
            Span::styled(format!("gpu {} ", d.index), t.highlight()),
            Span::styled(d.name.clone(), text),
        ];
        if let Some(c) = d.temperature_c {
            spans.push(Span::styled(format!("  {c} °C"), text));
        }
        if let Some(w) = d.power_w {
            let limit = d
                .power_limit_w
                .map_or(String::new(), |l| format!(" / {l:.0} W"));
            spans.push(Span::styled(format!("  {w:.0} W{limit}"), text));
        }
        frame.render_widget(Paragraph::new(Line::from(spans)), name);
        let util_pct = d.utilization_percent.unwrap_or(0).min(100);
        frame.render_widget(
            Gauge::default()
                .gauge_style(t.good().bg(t.border))
                .percent(util_pct as u16)
                .label(match d.utilization_percent {
                    Some(u) => format!("utilisation {u}%"),
                    None => "utilisation n/a".into(),
                }),
            util,
        );
        let ratio = if d.memory_total_bytes > 0 {
            (d.memory_used_bytes as f64 / d.memory_total_bytes as f64).clamp(0.0, 1.0)
        } else {
            0.0
        };
        frame.render_widget(
            Gauge::default()
                .gauge_style(t.highlight().bg(t.border))
                .ratio(ratio)
                .label(format!(
                    "memory {:.1} / {:.1} GiB",
                    d.memory_used_bytes as f64 / GIB,
                    d.memory_total_bytes as f64 / GIB
                )),
            mem,
        );
        let lines: Vec<Line> = d
            .processes
            .iter()
            .take(6)
            .map(|(pid, used)| {
                let owner = state
                    .replicas
                    .values()
                    .find(|r| r.pid == Some(*pid))
                    .map_or("another process".to_string(), |r| {
                        format!("replica {}", r.index)
                    });
                Line::from(vec![
                    Span::styled(format!("  pid {pid:<8}"), muted),
                    Span::styled(format!("{:>6.2} GiB  ", *used as f64 / GIB), text),
                    Span::styled(owner, text),
                ])
            })
            .collect();
        frame.render_widget(Paragraph::new(lines), procs);
    }
}
