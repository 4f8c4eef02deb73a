//! The contract between the runtime and the things it supervises.

use super::event::{Event, LogLine};
use super::state::NodeState;
use futures::future::BoxFuture;
use std::sync::Arc;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

/// A long-running part of the node (a server, a loop, a sampler).
///
/// `run` works until `ctx.cancel` fires, then finishes in-flight work and returns `Ok(())`.
/// Returning an error (or returning at all before cancellation) is a failure: the supervisor
/// records it and starts the component again after a backoff.
pub trait Component: Send + Sync + 'static {
    fn name(&self) -> &str;
    fn run(self: Arc<Self>, ctx: ComponentContext) -> BoxFuture<'static, anyhow::Result<()>>;
}

/// What a running component gets from the runtime.
#[derive(Clone)]
pub struct ComponentContext {
    pub name: String,
    /// Fires on node shutdown and when this component is stopped or restarted.
    pub cancel: CancellationToken,
    pub events: EventSender,
    pub state: watch::Receiver<Arc<NodeState>>,
}

/// The sending half of the one event channel into the state store.
#[derive(Clone)]
pub struct EventSender(pub(crate) mpsc::Sender<Event>);

impl EventSender {
    /// Waits for room: events from components are never dropped.
    pub async fn send(&self, event: Event) {
        // The store outlives every component; a send error only happens during teardown.
        let _ = self.0.send(event).await;
    }

    /// Never blocks; for callers that cannot wait (a replica's synchronous report). Returns
    /// false if dropped.
    pub fn try_send(&self, event: Event) -> bool {
        self.0.try_send(event).is_ok()
    }
}

/// The sending half of the log channel into the state store: separate from the components'
/// events, so a flood of log lines is dropped (the log file keeps them) instead of filling the
/// channel components wait on.
#[derive(Clone)]
pub struct LogSender(pub(crate) mpsc::Sender<LogLine>);

impl LogSender {
    /// Never blocks (the logging layer cannot wait). Returns false if dropped.
    pub fn try_send(&self, line: LogLine) -> bool {
        self.0.try_send(line).is_ok()
    }
}
