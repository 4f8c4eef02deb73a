//! The Gallery tab: the latest judged images, drawn with half blocks (two pixels a cell), each
//! with who made it, its seed and latency, and the verdict.

use super::theme::Theme;
use super::view::{View, ViewContext};
use super::widgets::block;
use nicheimage_common::image::Thumbnail;
use nicheimage_node::runtime::event::GalleryImage;
use nicheimage_node::runtime::event::RewardReason;
use ratatui::Frame;
use ratatui::layout::{Margin, Rect};
use ratatui::style::{Color, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use std::collections::VecDeque;
use std::sync::Arc;

/// Lines of text under each picture.
const CAPTION: u16 = 3;

/// One row of cells for pixel rows `2y` and `2y + 1`; without colours, shades instead.
fn pixel_row(t: &Thumbnail, y: usize, colour: bool) -> Line<'static> {
    let rgb = |p: [u8; 3]| Color::Rgb(p[0], p[1], p[2]);
    let spans = (0..t.width)
        .map(|x| {
            let top = t.pixel(x, 2 * y);
            let bottom = if 2 * y + 1 < t.height {
                t.pixel(x, 2 * y + 1)
            } else {
                top
            };
            if colour {
                Span::styled("▀", Style::new().fg(rgb(top)).bg(rgb(bottom)))
            } else {
                let luma = (u32::from(top[0]) + u32::from(top[1]) + u32::from(top[2])) / 3;
                Span::raw([" ", "░", "▒", "▓", "█"][(luma * 5 / 256) as usize])
            }
        })
        .collect::<Vec<_>>();
    Line::from(spans)
}

/// The Gallery view: no state and no keys of its own.
#[derive(Debug, Clone, Default)]
pub struct GalleryView;

impl View for GalleryView {
    fn title(&self) -> &'static str {
        "Gallery"
    }

    fn draw(&self, frame: &mut Frame, area: Rect, v: &ViewContext) {
        draw(frame, area, &v.state.gallery, v.theme);
    }
}

fn draw(frame: &mut Frame, area: Rect, images: &VecDeque<Arc<GalleryImage>>, t: &Theme) {
    frame.render_widget(block("gallery — latest judged images", t), area);
    let inner = area.inner(Margin::new(1, 1));
    let muted = t.label();
    if images.is_empty() {
        frame.render_widget(
            Paragraph::new(Line::styled(
                "no image judged yet (a validator's rounds fill this view)",
                muted,
            )),
            inner,
        );
        return;
    }
    let colour = *t != Theme::PLAIN;
    let mut x = inner.x;
    let mut y = inner.y;
    let mut row_height = 0u16;
    for image in images.iter().rev() {
        let th = &image.thumbnail;
        let w = (th.width as u16).max(24);
        let h = th.height.div_ceil(2) as u16 + CAPTION;
        if x + w > inner.right() {
            x = inner.x;
            y += row_height + 1;
            row_height = 0;
        }
        if y + h > inner.bottom() || w > inner.width {
            break;
        }
        let mut lines: Vec<Line> = (0..th.height.div_ceil(2))
            .map(|r| pixel_row(th, r, colour))
            .collect();
        let verdict = if image.reward > 0.0 { t.ok } else { t.warn };
        lines.push(Line::from(vec![
            Span::styled(format!("uid {}", image.uid), t.value()),
            Span::styled(
                format!(" · seed {} · {} ms", image.seed, image.latency_ms),
                muted,
            ),
        ]));
        // The latency is on the line above: the verdict alone here.
        let said = match &image.reason {
            RewardReason::Judged { verdict, .. } => verdict.to_string(),
            other => other.to_string(),
        };
        lines.push(Line::styled(
            format!("{:.3}: {said}", image.reward),
            Style::new().fg(verdict),
        ));
        lines.push(Line::styled(image.prompt.clone(), muted));
        frame.render_widget(Paragraph::new(lines), Rect::new(x, y, w, h));
        x += w + 2;
        row_height = row_height.max(h);
    }
}
