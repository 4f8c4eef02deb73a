//! The runtime's supervision: restart with backoff, commands, and draining shutdown.

use futures::FutureExt;
use futures::future::BoxFuture;
use nicheimage_node::config::SupervisorConfig;
use nicheimage_node::runtime::{
    Command, Component, ComponentChange, ComponentContext, ComponentStatus, Event, EventChannel,
    LogLine, Node, NodeState, Runtime,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

fn fast() -> SupervisorConfig {
    SupervisorConfig {
        backoff_initial_ms: 20,
        backoff_max_ms: 80,
        stable_after_secs: 60,
        drain_timeout_secs: 1,
    }
}

/// Waits (bounded) until the state satisfies `pred`.
async fn until(node: &Node, what: &str, pred: impl Fn(&NodeState) -> bool) -> Arc<NodeState> {
    let mut rx = node.state.clone();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let s = rx.borrow_and_update().clone();
        if pred(&s) {
            return s;
        }
        if tokio::time::timeout_at(deadline, rx.changed())
            .await
            .is_err()
        {
            panic!("timed out waiting for: {what}; state: {:?}", s.components);
        }
    }
}

/// Fails its first `failures` runs, then runs until cancelled, noting that it drained.
struct Flaky {
    failures: u32,
    runs: AtomicU32,
    drained: AtomicBool,
}

impl Component for Flaky {
    fn name(&self) -> &str {
        "flaky"
    }
    fn run(self: Arc<Self>, ctx: ComponentContext) -> BoxFuture<'static, anyhow::Result<()>> {
        async move {
            let n = self.runs.fetch_add(1, Ordering::SeqCst);
            if n < self.failures {
                anyhow::bail!("failure number {}", n + 1);
            }
            ctx.cancel.cancelled().await;
            tokio::time::sleep(Duration::from_millis(50)).await; // in-flight work
            self.drained.store(true, Ordering::SeqCst);
            Ok(())
        }
        .boxed()
    }
}

struct Panicky;

impl Component for Panicky {
    fn name(&self) -> &str {
        "panicky"
    }
    fn run(self: Arc<Self>, _ctx: ComponentContext) -> BoxFuture<'static, anyhow::Result<()>> {
        async move { panic!("deliberate panic") }.boxed()
    }
}

/// Ignores cancellation: the supervisor must abort it after the drain timeout.
struct Stubborn;

impl Component for Stubborn {
    fn name(&self) -> &str {
        "stubborn"
    }
    fn run(self: Arc<Self>, _ctx: ComponentContext) -> BoxFuture<'static, anyhow::Result<()>> {
        async move {
            futures::future::pending::<()>().await;
            Ok(())
        }
        .boxed()
    }
}

#[tokio::test]
async fn failing_component_restarts_with_backoff_and_keeps_its_last_error() {
    let flaky = Arc::new(Flaky {
        failures: 3,
        runs: AtomicU32::new(0),
        drained: AtomicBool::new(false),
    });
    let mut rt = Runtime::new(fast(), EventChannel::new());
    rt.add(flaky.clone()).expect("a unique component name");
    let started = tokio::time::Instant::now();
    let node = rt.start();
    let s = until(&node, "flaky running after 3 failures", |s| {
        s.components
            .get("flaky")
            .is_some_and(|c| c.status == ComponentStatus::Running && c.restarts == 3)
    })
    .await;
    // Backoff 20 + 40 + 80 ms must have been waited out.
    assert!(started.elapsed() >= Duration::from_millis(140));
    let c = &s.components["flaky"];
    assert_eq!(c.last_error.as_deref(), Some("failure number 3"));
    assert_eq!(flaky.runs.load(Ordering::SeqCst), 4);

    node.shutdown.cancel();
    let state = node.state.clone();
    tokio::time::timeout(Duration::from_secs(5), node.wait())
        .await
        .expect("shutdown drains in time");
    assert!(flaky.drained.load(Ordering::SeqCst), "component drained");
    assert_eq!(
        state.borrow().components["flaky"].status,
        ComponentStatus::Stopped
    );
}

#[tokio::test]
async fn a_panic_is_a_failure_not_a_crash() {
    let mut rt = Runtime::new(fast(), EventChannel::new());
    rt.add(Arc::new(Panicky)).expect("a unique component name");
    let node = rt.start();
    let s = until(&node, "two panics recorded", |s| {
        s.components.get("panicky").is_some_and(|c| c.restarts >= 2)
    })
    .await;
    let err = s.components["panicky"].last_error.clone().unwrap();
    assert!(err.contains("panicked: deliberate panic"), "{err}");
    node.shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), node.wait())
        .await
        .unwrap();
}

#[tokio::test]
async fn stop_start_and_restart_commands() {
    let flaky = Arc::new(Flaky {
        failures: 0,
        runs: AtomicU32::new(0),
        drained: AtomicBool::new(false),
    });
    let mut rt = Runtime::new(fast(), EventChannel::new());
    rt.add(flaky.clone()).expect("a unique component name");
    let node = rt.start();
    until(&node, "running", |s| {
        s.components
            .get("flaky")
            .is_some_and(|c| c.status == ComponentStatus::Running)
    })
    .await;

    node.commands
        .send(Command::Stop("flaky".into()))
        .await
        .unwrap();
    until(&node, "stopped", |s| {
        s.components["flaky"].status == ComponentStatus::Stopped
    })
    .await;
    assert!(flaky.drained.load(Ordering::SeqCst), "stop drains");

    node.commands
        .send(Command::Start("flaky".into()))
        .await
        .unwrap();
    until(&node, "running again", |s| {
        s.components["flaky"].status == ComponentStatus::Running
    })
    .await;
    assert_eq!(node.snapshot().components["flaky"].restarts, 0);

    node.commands
        .send(Command::Restart("flaky".into()))
        .await
        .unwrap();
    let s = until(&node, "restarted", |s| {
        let c = &s.components["flaky"];
        c.status == ComponentStatus::Running && c.restarts == 1
    })
    .await;
    assert!(s.components["flaky"].last_error.is_none());
    assert_eq!(flaky.runs.load(Ordering::SeqCst), 3);

    // Unknown components are ignored, not fatal; Shutdown ends the node.
    node.commands
        .send(Command::Stop("nope".into()))
        .await
        .unwrap();
    node.commands.send(Command::Shutdown).await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), node.wait())
        .await
        .unwrap();
}

#[tokio::test]
async fn a_component_that_ignores_cancellation_is_aborted_after_the_drain_timeout() {
    let mut rt = Runtime::new(fast(), EventChannel::new());
    rt.add(Arc::new(Stubborn)).expect("a unique component name");
    let node = rt.start();
    until(&node, "running", |s| {
        s.components
            .get("stubborn")
            .is_some_and(|c| c.status == ComponentStatus::Running)
    })
    .await;
    let t = tokio::time::Instant::now();
    node.shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), node.wait())
        .await
        .expect("aborted after the 1 s drain timeout");
    assert!(t.elapsed() >= Duration::from_millis(900));
}

#[tokio::test]
async fn a_second_component_with_a_taken_name_is_refused() {
    let mut rt = Runtime::new(fast(), EventChannel::new());
    rt.add(Arc::new(Stubborn)).expect("a unique component name");
    let refused = rt.add(Arc::new(Stubborn)).map(|_| ()).unwrap_err();
    assert_eq!(
        refused.to_string(),
        "a component named `stubborn` is already part of the node"
    );
}

#[tokio::test]
async fn a_log_flood_neither_blocks_nor_delays_components() {
    let channel = EventChannel::new();
    let logs = channel.logs.clone();
    let rt = Runtime::new(fast(), channel);
    let events = rt.events();
    let node = rt.start();
    // Far more lines than the log channel holds: the logging layer drops, it never waits.
    let started = tokio::time::Instant::now();
    let kept = (0..100_000u64)
        .filter(|i| {
            logs.try_send(LogLine {
                unix_ms: *i,
                level: tracing::Level::DEBUG,
                target: "flood".into(),
                message: "x".into(),
            })
        })
        .count();
    assert!(
        kept < 100_000,
        "some lines are dropped, not queued without bound"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    // A component's event still goes through at once: its channel is not the log's.
    tokio::time::timeout(
        Duration::from_secs(1),
        events.send(Event::ReplicaRetired(7)),
    )
    .await
    .expect("a component's send is not stuck behind the log lines");
    tokio::time::timeout(
        Duration::from_secs(1),
        events.send(Event::Component {
            name: "probe".into(),
            change: ComponentChange::Running,
        }),
    )
    .await
    .unwrap();
    until(&node, "the component's event applied", |s| {
        s.components.contains_key("probe")
    })
    .await;
    node.shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), node.wait())
        .await
        .unwrap();
}
