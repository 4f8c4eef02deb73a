//! The node runtime: supervised components, one event channel into one state store, and a
//! command channel back. The TUI and headless mode are both thin views over [`Node`].

mod component;
pub mod event;
pub mod shutdown;
pub mod state;
mod supervisor;

pub use component::{Component, ComponentContext, EventSender, LogSender};
pub use event::{Command, ComponentChange, ComponentStatus, Event, LogLine};
pub use state::{NodeState, NotReady};
pub use supervisor::Backoff;

use crate::config::SupervisorConfig;
use std::collections::HashMap;
use std::sync::Arc;
use supervisor::{Control, Supervisor};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

const EVENT_CAPACITY: usize = 4096;

/// Log lines waiting for the store; past this they are dropped from the view (not the file).
const LOG_CAPACITY: usize = 1024;

/// The channels into the state store, made before anything else so logging can feed it from
/// the start: components' events (never dropped) and log lines (dropped when the store lags).
pub struct EventChannel {
    pub sender: EventSender,
    pub logs: LogSender,
    receiver: mpsc::Receiver<Event>,
    log_receiver: mpsc::Receiver<LogLine>,
}

impl EventChannel {
    pub fn new() -> Self {
        let (tx, rx) = mpsc::channel(EVENT_CAPACITY);
        let (log_tx, log_rx) = mpsc::channel(LOG_CAPACITY);
        Self {
            sender: EventSender(tx),
            logs: LogSender(log_tx),
            receiver: rx,
            log_receiver: log_rx,
        }
    }
}

impl Default for EventChannel {
    fn default() -> Self {
        Self::new()
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("a component named `{0}` is already part of the node")]
pub struct DuplicateComponent(pub String);

/// Collects components before the node starts.
pub struct Runtime {
    supervisor: SupervisorConfig,
    channel: EventChannel,
    components: Vec<Arc<dyn Component>>,
    shutdown: CancellationToken,
    replica_commands: Option<mpsc::Sender<Command>>,
    proxy_toggle: Option<watch::Sender<bool>>,
    blacklist: Vec<watch::Sender<crate::config::BlacklistConfig>>,
}

/// A running node: its state, its command channel, and the shutdown token.
pub struct Node {
    pub state: watch::Receiver<Arc<NodeState>>,
    pub commands: mpsc::Sender<Command>,
    pub shutdown: CancellationToken,
    tasks: JoinSet<()>,
}

impl Runtime {
    pub fn new(supervisor: SupervisorConfig, channel: EventChannel) -> Self {
        Self {
            supervisor,
            channel,
            components: Vec::new(),
            shutdown: CancellationToken::new(),
            replica_commands: None,
            proxy_toggle: None,
            blacklist: Vec::new(),
        }
    }

    /// Where replica commands go (the endpoint that owns the pool).
    pub fn route_replica_commands(&mut self, to: mpsc::Sender<Command>) {
        self.replica_commands = Some(to);
    }

    /// Where `Command::SetProxy` goes (the proxy component watches it).
    pub fn route_proxy_toggle(&mut self, to: watch::Sender<bool>) {
        self.proxy_toggle = Some(to);
    }

    /// Where `Command::SetBlacklist` goes (every miner of the node reads its rules from one).
    pub fn route_blacklist(&mut self, to: watch::Sender<crate::config::BlacklistConfig>) {
        self.blacklist.push(to);
    }

    pub fn events(&self) -> EventSender {
        self.channel.sender.clone()
    }

    /// Adds a component to supervise. Names route commands and label the state, so a second
    /// component with a name already taken is refused.
    pub fn add(&mut self, component: Arc<dyn Component>) -> Result<&mut Self, DuplicateComponent> {
        let name = component.name();
        if self.components.iter().any(|c| c.name() == name) {
            return Err(DuplicateComponent(name.to_string()));
        }
        self.components.push(component);
        Ok(self)
    }

    pub fn start(self) -> Node {
        let mut tasks = JoinSet::new();
        let (state_tx, state_rx) = watch::channel(Arc::new(NodeState::default()));
        let (command_tx, command_rx) = mpsc::channel(64);
        let store_done = CancellationToken::new();
        tasks.spawn(store(
            self.channel.receiver,
            self.channel.log_receiver,
            state_tx,
            store_done.clone(),
        ));

        let mut routes = HashMap::new();
        let mut supervisors = JoinSet::new();
        for component in self.components {
            let (control_tx, control_rx) = mpsc::channel(16);
            routes.insert(component.name().to_string(), control_tx);
            supervisors.spawn(
                Supervisor {
                    component,
                    config: self.supervisor.clone(),
                    events: self.channel.sender.clone(),
                    state: state_rx.clone(),
                    shutdown: self.shutdown.clone(),
                    control: control_rx,
                }
                .run(),
            );
        }
        tasks.spawn(route_commands(
            command_rx,
            Routes {
                components: routes,
                replicas: self.replica_commands,
                proxy: self.proxy_toggle,
                blacklist: self.blacklist,
            },
            self.shutdown.clone(),
        ));
        // The store runs until shutdown, and then until every supervisor has reported its
        // last event.
        let shutdown = self.shutdown.clone();
        tasks.spawn(async move {
            shutdown.cancelled().await;
            while supervisors.join_next().await.is_some() {}
            store_done.cancel();
        });
        Node {
            state: state_rx,
            commands: command_tx,
            shutdown: self.shutdown,
            tasks,
        }
    }
}

impl Node {
    pub fn snapshot(&self) -> Arc<NodeState> {
        self.state.borrow().clone()
    }

    /// Waits until shutdown has been requested and every component has drained.
    pub async fn wait(mut self) {
        self.shutdown.cancelled().await;
        while self.tasks.join_next().await.is_some() {}
    }
}

async fn store(
    mut events: mpsc::Receiver<Event>,
    mut logs: mpsc::Receiver<LogLine>,
    state_tx: watch::Sender<Arc<NodeState>>,
    done: CancellationToken,
) {
    let mut state = NodeState::clone(&state_tx.borrow());
    loop {
        // Shutdown, then components, then logs: a log flood delays neither.
        let first = tokio::select! {
            biased;
            _ = done.cancelled() => None,
            e = events.recv() => e,
            Some(line) = logs.recv() => Some(Event::Log(line)),
        };
        let Some(first) = first else {
            // Drain what is left so the final snapshot is complete.
            let now = state::unix_ms_now();
            drain(&mut state, &mut events, &mut logs, now);
            state_tx.send_replace(Arc::new(state));
            return;
        };
        let now = state::unix_ms_now();
        state.apply(first, now);
        // Fold a burst of events into one published snapshot.
        drain(&mut state, &mut events, &mut logs, now);
        state_tx.send_replace(Arc::new(state.clone()));
    }
}

/// Applies every event and log line already waiting.
fn drain(
    state: &mut NodeState,
    events: &mut mpsc::Receiver<Event>,
    logs: &mut mpsc::Receiver<LogLine>,
    now: u64,
) {
    while let Ok(e) = events.try_recv() {
        state.apply(e, now);
    }
    while let Ok(line) = logs.try_recv() {
        state.apply(Event::Log(line), now);
    }
}

/// Where each kind of command goes.
struct Routes {
    components: HashMap<String, mpsc::Sender<Control>>,
    replicas: Option<mpsc::Sender<Command>>,
    proxy: Option<watch::Sender<bool>>,
    blacklist: Vec<watch::Sender<crate::config::BlacklistConfig>>,
}

async fn route_commands(
    mut commands: mpsc::Receiver<Command>,
    routes: Routes,
    shutdown: CancellationToken,
) {
    loop {
        let command = tokio::select! {
            c = commands.recv() => c,
            _ = shutdown.cancelled() => return,
        };
        let Some(command) = command else { return };
        let (name, control) = match command {
            Command::Shutdown => {
                tracing::info!("shutdown requested");
                shutdown.cancel();
                return;
            }
            Command::Start(n) => (n, Control::Start),
            Command::Stop(n) => (n, Control::Stop),
            Command::Restart(n) => (n, Control::Restart),
            Command::SetBlacklist(rules) => {
                if routes.blacklist.is_empty() {
                    tracing::warn!("no miner in this node; blacklist rules ignored");
                }
                for tx in &routes.blacklist {
                    tracing::info!(?rules, "new miner blacklist rules");
                    tx.send_replace(rules.clone());
                }
                continue;
            }
            Command::SetProxy(on) => {
                match &routes.proxy {
                    Some(tx) => {
                        tracing::info!(on, "proxy toggled");
                        tx.send_replace(on);
                    }
                    None => tracing::warn!("no validator proxy in this node; command ignored"),
                }
                continue;
            }
            c @ (Command::RestartReplica(_)
            | Command::KillReplica(_)
            | Command::ScaleReplicas(_)) => {
                match &routes.replicas {
                    Some(tx) => {
                        tracing::info!(command = ?c, "replica command");
                        let _ = tx.send(c).await;
                    }
                    None => {
                        tracing::warn!(command = ?c, "no replica pool in this node; command ignored")
                    }
                }
                continue;
            }
        };
        match routes.components.get(&name) {
            Some(tx) => {
                tracing::info!(component = %name, command = ?control, "command");
                let _ = tx.send(control).await;
            }
            None => tracing::warn!(component = %name, "command for an unknown component ignored"),
        }
    }
}
