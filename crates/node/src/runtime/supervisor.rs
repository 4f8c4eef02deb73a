//! Runs one component: start, watch, restart with backoff, obey commands, drain on stop.

use super::component::{Component, ComponentContext, EventSender};
use super::event::{ComponentChange, Event};
use super::state::NodeState;
use crate::config::SupervisorConfig;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

/// Per-component commands, routed by name from the runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Start,
    Stop,
    Restart,
}

#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    stable_after: Duration,
    consecutive_failures: u32,
}

impl Backoff {
    pub fn new(config: &SupervisorConfig) -> Self {
        Self {
            initial: Duration::from_millis(config.backoff_initial_ms),
            max: Duration::from_millis(config.backoff_max_ms),
            stable_after: Duration::from_secs(config.stable_after_secs),
            consecutive_failures: 0,
        }
    }

    /// The delay before the next attempt after a run of `ran_for` that failed.
    pub fn after_failure(&mut self, ran_for: Duration) -> Duration {
        if ran_for >= self.stable_after {
            self.consecutive_failures = 0;
        }
        let exponent = self.consecutive_failures.min(20);
        self.consecutive_failures += 1;
        self.initial.saturating_mul(1 << exponent).min(self.max)
    }

    pub fn reset(&mut self) {
        self.consecutive_failures = 0;
    }
}

enum RunEnd {
    /// The component failed (error, panic, or an unrequested return).
    Failed(String),
    Stopped,
    Restart,
    Shutdown,
}

pub(crate) struct Supervisor {
    pub component: Arc<dyn Component>,
    pub config: SupervisorConfig,
    pub events: EventSender,
    pub state: watch::Receiver<Arc<NodeState>>,
    pub shutdown: CancellationToken,
    pub control: mpsc::Receiver<Control>,
}

impl Supervisor {
    pub async fn run(mut self) {
        let name = self.component.name().to_string();
        let mut backoff = Backoff::new(&self.config);
        let mut wanted = true;
        loop {
            if !wanted {
                // Stopped on purpose: wait for Start/Restart or shutdown.
                tokio::select! {
                    _ = self.shutdown.cancelled() => return,
                    c = self.control.recv() => match c {
                        Some(Control::Start | Control::Restart) => { wanted = true; backoff.reset(); }
                        Some(Control::Stop) => continue,
                        None => return,
                    }
                }
            }
            if self.shutdown.is_cancelled() {
                self.report(&name, ComponentChange::Stopped).await;
                return;
            }
            self.report(&name, ComponentChange::Starting).await;
            let started = Instant::now();
            match self.run_once(&name).await {
                RunEnd::Shutdown => {
                    self.report(&name, ComponentChange::Stopped).await;
                    return;
                }
                RunEnd::Stopped => {
                    wanted = false;
                    self.report(&name, ComponentChange::Stopped).await;
                }
                RunEnd::Restart => backoff.reset(),
                RunEnd::Failed(error) => {
                    let retry_in = backoff.after_failure(started.elapsed());
                    tracing::warn!(component = %name, %error, retry_in_ms = retry_in.as_millis() as u64, "component failed");
                    self.report(&name, ComponentChange::Failed { error, retry_in })
                        .await;
                    // Wait out the backoff, still obeying commands.
                    tokio::select! {
                        _ = tokio::time::sleep(retry_in) => {}
                        _ = self.shutdown.cancelled() => {
                            self.report(&name, ComponentChange::Stopped).await;
                            return;
                        }
                        c = self.control.recv() => match c {
                            Some(Control::Restart | Control::Start) => backoff.reset(),
                            Some(Control::Stop) => {
                                wanted = false;
                                self.report(&name, ComponentChange::Stopped).await;
                            }
                            None => return,
                        }
                    }
                }
            }
        }
    }

    async fn run_once(&mut self, name: &str) -> RunEnd {
        let cancel = self.shutdown.child_token();
        let ctx = ComponentContext {
            name: name.to_string(),
            cancel: cancel.clone(),
            events: self.events.clone(),
            state: self.state.clone(),
        };
        // A task of its own, so a panic in the component is a failure, not a crash.
        let mut task = tokio::spawn(self.component.clone().run(ctx));
        self.report(name, ComponentChange::Running).await;
        let drain = Duration::from_secs(self.config.drain_timeout_secs);
        loop {
            tokio::select! {
                joined = &mut task => {
                    return match joined {
                        Ok(_) if self.shutdown.is_cancelled() => RunEnd::Shutdown,
                        Ok(Ok(())) => RunEnd::Failed("exited without being asked to stop".into()),
                        Ok(Err(e)) => RunEnd::Failed(format!("{e:#}")),
                        Err(e) if e.is_panic() => RunEnd::Failed(format!("panicked: {}", panic_message(e.into_panic()))),
                        Err(e) => RunEnd::Failed(format!("task ended: {e}")),
                    };
                }
                _ = self.shutdown.cancelled() => {
                    finish(name, task, drain).await;
                    return RunEnd::Shutdown;
                }
                c = self.control.recv() => match c {
                    Some(Control::Start) => continue,
                    Some(Control::Stop) => {
                        cancel.cancel();
                        finish(name, task, drain).await;
                        return RunEnd::Stopped;
                    }
                    Some(Control::Restart) => {
                        cancel.cancel();
                        finish(name, task, drain).await;
                        return RunEnd::Restart;
                    }
                    None => {
                        cancel.cancel();
                        finish(name, task, drain).await;
                        return RunEnd::Shutdown;
                    }
                }
            }
        }
    }

    async fn report(&self, name: &str, change: ComponentChange) {
        self.events
            .send(Event::Component {
                name: name.to_string(),
                change,
            })
            .await;
    }
}

/// Lets a cancelled component drain; aborts it when it takes longer than `drain`.
async fn finish(
    name: &str,
    mut task: tokio::task::JoinHandle<anyhow::Result<()>>,
    drain: Duration,
) {
    match tokio::time::timeout(drain, &mut task).await {
        Ok(Ok(Err(e))) => {
            tracing::warn!(component = %name, error = %format!("{e:#}"), "component stopped with an error")
        }
        Ok(_) => {}
        Err(_) => {
            tracing::warn!(component = %name, drain_secs = drain.as_secs(), "component did not drain in time; aborted");
            task.abort();
        }
    }
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_caps_and_resets_after_a_stable_run() {
        let mut b = Backoff::new(&SupervisorConfig {
            backoff_initial_ms: 100,
            backoff_max_ms: 1000,
            stable_after_secs: 10,
            drain_timeout_secs: 1,
        });
        let quick = Duration::from_millis(1);
        let delays: Vec<u128> = (0..6).map(|_| b.after_failure(quick).as_millis()).collect();
        assert_eq!(delays, vec![100, 200, 400, 800, 1000, 1000]);
        assert_eq!(b.after_failure(Duration::from_secs(11)).as_millis(), 100);
        assert_eq!(b.after_failure(quick).as_millis(), 200);
    }
}
