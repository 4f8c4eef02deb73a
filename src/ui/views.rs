//! The console's views in number-key order: the one list the tabs, the number keys, the footer
//! and the help are built from.

use super::view::{View, ViewContext};
use ratatui::Frame;
use ratatui::layout::Rect;

pub use super::gallery_view::GalleryView;
pub use super::gpu_view::GpuView;
pub use super::logs_view::{LogLevel, LogsView};
pub use super::miners_view::MinersView;
pub use super::overview_view::OverviewView;
pub use super::proxy_view::ProxyView;
pub use super::replicas_view::ReplicasView;
pub use super::validator_view::{SortBy, ValidatorView};

pub fn all() -> Vec<Box<dyn View>> {
    vec![
        Box::new(OverviewView::default()),
        Box::new(ReplicasView::default()),
        Box::new(MinersView),
        Box::new(ValidatorView::default()),
        Box::new(ProxyView),
        Box::new(GpuView),
        Box::new(LogsView::default()),
        Box::new(GalleryView),
    ]
}

/// What a console without views shows: nothing.
pub struct Blank;

impl View for Blank {
    fn title(&self) -> &'static str {
        ""
    }

    fn draw(&self, _frame: &mut Frame, _area: Rect, _v: &ViewContext) {}
}
