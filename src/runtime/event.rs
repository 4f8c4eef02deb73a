//! What components report (events) and what views ask of the runtime (commands).

use serde::Serialize;
use std::time::Duration;

/// One report into the state store. Everything a view shows arrives as one of these.
#[derive(Debug, Clone)]
pub enum Event {
    /// Lifecycle of a supervised component; only the supervisor sends these.
    Component {
        name: String,
        change: ComponentChange,
    },
    /// A component bound a network listener.
    Listening {
        component: String,
        address: String,
    },
    Host(HostSample),
    Torch(TorchReport),
    Log(LogLine),
    /// The latest state of one generation replica.
    Replica(ReplicaReport),
    /// Progress of a checkpoint download.
    Download(DownloadReport),
}

#[derive(Debug, Clone, PartialEq)]
pub enum ComponentChange {
    Starting,
    Running,
    /// The run ended with an error; the supervisor retries after `retry_in`.
    Failed {
        error: String,
        retry_in: Duration,
    },
    Stopped,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ComponentStatus {
    Starting,
    Running,
    Backoff,
    Stopped,
}

/// Commands from a view (or a test) to the runtime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Start(String),
    Stop(String),
    Restart(String),
    Shutdown,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct HostSample {
    /// This process's CPU use over the last interval, in percent of one core.
    pub process_cpu_percent: f64,
    pub process_cpu_seconds: f64,
    pub process_rss_bytes: u64,
    pub load_average_1m: f64,
    pub memory_total_bytes: u64,
    pub memory_available_bytes: u64,
    pub cores: usize,
}

/// What libtorch says about this machine, probed once at start-up.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TorchReport {
    /// False when built without the `local-infer` feature.
    pub compiled_in: bool,
    pub cuda_available: bool,
    pub cuda_devices: i64,
    pub cudnn_available: bool,
    pub cpu_threads: i32,
    /// The result of a small tensor computation, or why it failed.
    pub smoke_test: Result<(), String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LogLine {
    pub unix_ms: u64,
    pub level: String,
    pub target: String,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplicaStatus {
    Loading,
    Ready,
    Busy,
    Dead,
    Stopped,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReplicaReport {
    pub index: usize,
    pub gpus: Vec<usize>,
    pub status: ReplicaStatus,
    pub pid: Option<u32>,
    pub restarts: u32,
    pub served: u64,
    pub failed: u64,
    pub last_latency_ms: Option<u64>,
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DownloadReport {
    pub model: String,
    pub url: String,
    pub done_bytes: u64,
    pub total_bytes: Option<u64>,
    pub finished: bool,
    pub error: Option<String>,
}
