//! The replica pool: generation replicas as child processes, fed from one bounded queue.
//! An idle replica takes the next job, so work goes to whichever is free; a replica that dies
//! fails its job at once and is started again with backoff.

pub mod args;
#[cfg(feature = "local-infer")]
pub mod child;
mod discover;
pub mod protocol;
mod remote;
pub mod vram;
mod worker;

use crate::runtime::EventSender;
use protocol::GenerateJob;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::{Mutex, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

/// How to start one replica process.
#[derive(Debug, Clone)]
pub struct ReplicaCommand {
    pub program: PathBuf,
    pub args: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct PoolConfig {
    pub replicas: usize,
    /// GPUs per replica (fractions share a GPU); 0 means CPU replicas.
    pub gpus_per_replica: f64,
    pub queue_capacity: usize,
    pub request_timeout: Duration,
    pub load_timeout: Duration,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    pub command: ReplicaCommand,
    /// Other machines' endpoints served through this pool, e.g. `http://10.0.0.2:10006`.
    pub remote: Vec<String>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum JobError {
    #[error(
        "no replica can serve: every replica is failing (the reasons are in /healthz and /readyz)"
    )]
    NoReplica,
    #[error("the queue is full ({0} waiting)")]
    QueueFull(usize),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("replica {replica} died while generating: {reason}")]
    ReplicaDied { replica: usize, reason: String },
    #[error("generation failed: {0}")]
    Failed(String),
    #[error("the pool is shutting down")]
    ShuttingDown,
}

/// Folds one finished job into a replica's report: counts, failure reason, latency window.
#[derive(Default)]
pub(crate) struct JobStats {
    window: std::collections::VecDeque<u64>,
    /// When recent images finished, for images/s over `RATE_WINDOW`.
    finished: std::collections::VecDeque<std::time::Instant>,
}

impl JobStats {
    const WINDOW: usize = 256;
    const RATE_WINDOW: Duration = Duration::from_secs(60);

    pub fn record(
        &mut self,
        report: &mut crate::runtime::event::ReplicaReport,
        millis: u64,
        result: &Result<String, JobError>,
    ) {
        report.last_latency_ms = Some(millis);
        match result {
            Ok(_) => {
                report.served += 1;
                if self.window.len() == Self::WINDOW {
                    self.window.pop_front();
                }
                self.window.push_back(millis);
                report.latency_ms =
                    crate::runtime::event::Percentiles::of(self.window.make_contiguous());
                let now = std::time::Instant::now();
                self.finished.push_back(now);
                while self
                    .finished
                    .front()
                    .is_some_and(|t| now.duration_since(*t) > Self::RATE_WINDOW)
                {
                    self.finished.pop_front();
                }
                report.images_per_sec =
                    self.finished.len() as f64 / Self::RATE_WINDOW.as_secs_f64();
            }
            Err(e) => {
                let reason = if matches!(e, JobError::ReplicaDied { .. }) {
                    "died"
                } else {
                    "error"
                };
                *report.failures.entry(reason.into()).or_default() += 1;
                report.last_error = Some(e.to_string());
            }
        }
    }
}

pub(crate) struct Job {
    pub request: GenerateJob,
    pub reply: oneshot::Sender<Result<String, JobError>>,
    /// When the caller stops waiting: the replica is told, and stops the job there.
    pub deadline: tokio::time::Instant,
}

/// A handle to submit jobs and steer replicas; cheap to clone.
#[derive(Clone)]
pub struct Pool {
    jobs: mpsc::Sender<Job>,
    ready: Arc<AtomicUsize>,
    failing: Arc<AtomicUsize>,
    local: Arc<AtomicUsize>,
    capacity: usize,
    timeout: Duration,
    slots: Arc<std::sync::Mutex<Slots>>,
}

/// What every replica worker, local or remote, shares with the pool.
#[derive(Clone)]
pub(crate) struct Shared {
    pub config: PoolConfig,
    pub jobs: Arc<Mutex<mpsc::Receiver<Job>>>,
    /// Replicas ready for a job, counted by the workers.
    pub ready: Arc<AtomicUsize>,
    /// Local replicas whose process last ended without serving (dead, or cannot load).
    pub failing: Arc<AtomicUsize>,
    /// Local replicas the pool is meant to run (the last scale), for the CPU thread share.
    pub local_replicas: Arc<AtomicUsize>,
    /// Placement slots held by a local replica process, a retiring one included (it frees its
    /// slot when its last job is done), so no two replicas are placed on the same GPUs.
    pub placements: Arc<std::sync::Mutex<std::collections::BTreeSet<usize>>>,
    pub events: EventSender,
    pub cancel: CancellationToken,
}

/// The local replicas, and what it takes to start another.
struct Slots {
    /// Each live replica's command channel.
    by_index: std::collections::BTreeMap<usize, mpsc::UnboundedSender<worker::SlotCommand>>,
    /// Replica indices only grow, so a retired replica's last reports never mix with a new one.
    next_index: usize,
    shared: Shared,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ControlError {
    #[error("there is no replica {0}")]
    NoSuchReplica(usize),
}

impl Slots {
    fn spawn(&mut self) {
        let index = self.next_index;
        self.next_index += 1;
        let slot = {
            let mut taken = self
                .shared
                .placements
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let slot = free_slot(taken.iter().copied());
            taken.insert(slot);
            slot
        };
        let (tx, rx) = mpsc::unbounded_channel();
        self.by_index.insert(index, tx);
        tokio::spawn(
            worker::Worker {
                index,
                slot,
                commands: rx,
                gpus: gpus_for(slot, self.shared.config.gpus_per_replica),
                pool: self.shared.clone(),
                failing: Default::default(),
            }
            .run(),
        );
    }
}

/// libtorch threads for each of `replicas` CPU replicas: they split the cores, since libtorch
/// gives every process a thread per core, and two processes each running all cores at once
/// were 2.5x slower per job than with a share each (2 cores, the devnet's ControlNet jobs).
/// A lone replica keeps libtorch's own default, and an operator's `OMP_NUM_THREADS` wins (None
/// for both). The thread count changes a CPU image's low bits (reduction order), never its
/// perceptual hash.
pub fn cpu_threads_per_replica(replicas: usize) -> Option<usize> {
    if replicas <= 1 || std::env::var_os("OMP_NUM_THREADS").is_some() {
        return None;
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    Some((cores / replicas).max(1))
}

/// How often a waiting job looks whether any replica can still serve it.
const NO_REPLICA_CHECK: Duration = Duration::from_millis(200);

/// Remote replicas take indices from here on, so local ones (0..) never collide with them.
pub const FIRST_REMOTE_INDEX: usize = 1000;

/// The lowest placement slot no replica process holds: after scaling down and up again, a new
/// replica takes the GPUs the retired one left, not ones beyond those in use.
fn free_slot(taken: impl Iterator<Item = usize>) -> usize {
    let taken: std::collections::BTreeSet<usize> = taken.collect();
    (0..).find(|s| !taken.contains(s)).unwrap_or(taken.len())
}

/// Which GPUs the replica in placement slot `index` gets: whole GPUs each for shares >= 1, else several replicas
/// packed onto one GPU (0.33 gives three per GPU).
pub fn gpus_for(index: usize, share: f64) -> Vec<usize> {
    if share <= 0.0 {
        return Vec::new();
    }
    if share >= 1.0 {
        let n = share.floor() as usize;
        return (index * n..(index + 1) * n).collect();
    }
    let per_gpu = ((1.0 / share) + 1e-9).floor().max(1.0) as usize;
    vec![index / per_gpu]
}

impl Pool {
    /// Starts the replica workers; they stop (killing their processes) when `cancel` fires.
    pub fn start(config: PoolConfig, events: EventSender, cancel: CancellationToken) -> Pool {
        let (tx, rx) = mpsc::channel(config.queue_capacity.max(1));
        let ready = Arc::new(AtomicUsize::new(0));
        let failing = Arc::new(AtomicUsize::new(0));
        let local = Arc::new(AtomicUsize::new(config.replicas));
        let mut slots = Slots {
            by_index: Default::default(),
            next_index: 0,
            shared: Shared {
                config: config.clone(),
                jobs: Arc::new(Mutex::new(rx)),
                ready: ready.clone(),
                failing: failing.clone(),
                local_replicas: local.clone(),
                placements: Default::default(),
                events,
                cancel,
            },
        };
        for _ in 0..config.replicas {
            slots.spawn();
        }
        // Remote replicas take indices after the first local ones; scaling leaves them alone.
        // An address is one replica; a name is followed, one replica per address it resolves to.
        let next_remote = Arc::new(AtomicUsize::new(FIRST_REMOTE_INDEX));
        for base in &config.remote {
            let shared = slots.shared.clone();
            match discover::Target::parse(base) {
                discover::Target::Fixed(base) => {
                    tokio::spawn(
                        remote::RemoteWorker {
                            index: next_remote.fetch_add(1, Ordering::SeqCst),
                            base,
                            cancel: shared.cancel.child_token(),
                            pool: shared,
                        }
                        .run(),
                    );
                }
                discover::Target::Named { scheme, host, port } => {
                    tokio::spawn(discover::follow(
                        scheme,
                        host,
                        port,
                        shared,
                        next_remote.clone(),
                    ));
                }
            }
        }
        Pool {
            jobs: tx,
            ready,
            failing,
            local,
            capacity: config.queue_capacity,
            timeout: config.request_timeout,
            slots: Arc::new(std::sync::Mutex::new(slots)),
        }
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, Slots> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn command(&self, index: usize, command: worker::SlotCommand) -> Result<(), ControlError> {
        let slots = self.slots();
        let tx = slots
            .by_index
            .get(&index)
            .ok_or(ControlError::NoSuchReplica(index))?;
        tx.send(command)
            .map_err(|_| ControlError::NoSuchReplica(index))
    }

    /// Restarts one replica's process once it finishes its current job.
    pub fn restart(&self, index: usize) -> Result<(), ControlError> {
        self.command(index, worker::SlotCommand::Restart)
    }

    /// Kills one replica's process at once, as a crash would (its job, if any, fails); the
    /// slot starts it again after its backoff.
    pub fn kill(&self, index: usize) -> Result<(), ControlError> {
        tracing::warn!(replica = index, "killing the replica's process by command");
        self.command(index, worker::SlotCommand::Kill)
    }

    /// Starts or retires replicas (the newest first, each after its current job) to reach `n`.
    pub fn scale(&self, n: usize) {
        let mut slots = self.slots();
        slots.shared.local_replicas.store(n, Ordering::SeqCst);
        while slots.by_index.len() < n {
            slots.spawn();
        }
        while slots.by_index.len() > n {
            if let Some((_, tx)) = slots.by_index.pop_last() {
                let _ = tx.send(worker::SlotCommand::Retire);
            }
        }
    }

    pub fn replicas(&self) -> usize {
        self.slots().by_index.len()
    }

    pub fn ready_replicas(&self) -> usize {
        self.ready.load(Ordering::SeqCst)
    }

    pub fn queued(&self) -> usize {
        self.capacity - self.jobs.capacity()
    }

    /// Queues a job and waits (bounded by the request timeout) for its image. While replicas
    /// are still starting the job waits for one; only when every one is failing (or there is
    /// none) is it refused at once.
    pub async fn generate(&self, request: GenerateJob) -> Result<String, JobError> {
        if self.none_can_serve() {
            return Err(JobError::NoReplica);
        }
        let (reply, answer) = oneshot::channel();
        let deadline = tokio::time::Instant::now() + self.timeout;
        self.jobs
            .try_send(Job {
                request,
                reply,
                deadline,
            })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => JobError::QueueFull(self.capacity),
                mpsc::error::TrySendError::Closed(_) => JobError::ShuttingDown,
            })?;
        // A queued job is released as soon as no replica can serve it (the last one failed to
        // load, say), not at its deadline; a replica that takes it later finds nobody waiting.
        let mut answer = std::pin::pin!(answer);
        let mut check = tokio::time::interval(NO_REPLICA_CHECK);
        loop {
            tokio::select! {
                result = &mut answer => {
                    return result.unwrap_or(Err(JobError::ShuttingDown));
                }
                _ = tokio::time::sleep_until(deadline) => {
                    return Err(JobError::Timeout(self.timeout));
                }
                _ = check.tick() => {
                    if self.none_can_serve() {
                        return Err(JobError::NoReplica);
                    }
                }
            }
        }
    }

    /// No replica is ready and every local one is failing (or there is none): nothing will
    /// take a job until one recovers, which its backoff puts seconds to minutes away.
    fn none_can_serve(&self) -> bool {
        let local = self.local.load(Ordering::SeqCst);
        self.ready_replicas() == 0 && (local == 0 || self.failing.load(Ordering::SeqCst) >= local)
    }
}

#[cfg(test)]
mod tests {
    use super::{cpu_threads_per_replica, free_slot, gpus_for};

    #[test]
    fn cpu_replicas_split_the_cores_and_a_lone_one_keeps_the_default() {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let split = |n: usize| std::env::var_os("OMP_NUM_THREADS").is_none().then_some(n);
        assert_eq!(cpu_threads_per_replica(0), None);
        assert_eq!(cpu_threads_per_replica(1), None);
        assert_eq!(cpu_threads_per_replica(2), split((cores / 2).max(1)));
        assert_eq!(cpu_threads_per_replica(cores + 1), split(1));
    }

    #[test]
    fn gpu_placement() {
        assert_eq!(gpus_for(0, 0.0), Vec::<usize>::new());
        assert_eq!(gpus_for(1, 1.0), vec![1]);
        assert_eq!(gpus_for(1, 2.0), vec![2, 3]);
        let packed: Vec<Vec<usize>> = (0..4).map(|i| gpus_for(i, 0.33)).collect();
        assert_eq!(packed, vec![vec![0], vec![0], vec![0], vec![1]]);
        assert_eq!(gpus_for(3, 0.5), vec![1]);
    }

    #[test]
    fn a_new_replica_takes_the_lowest_free_placement() {
        assert_eq!(free_slot(std::iter::empty()), 0);
        // Three replicas on one GPU each, the newest retired: the next one gets GPU 2 again,
        // not GPU 3 (its index, 3, only grows).
        assert_eq!(free_slot([0, 1].into_iter()), 2);
        assert_eq!(gpus_for(free_slot([0, 1].into_iter()), 1.0), vec![2]);
        assert_eq!(free_slot([2, 0].into_iter()), 1);
    }
}
