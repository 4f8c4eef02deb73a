//! One replica slot: starts its process, feeds it jobs, notices when it dies, starts it again.

use super::protocol::{JobLine, ReplyLine};
use super::{Job, JobError, JobStats, Shared};
use crate::runtime::event::{Event, ReplicaReport, ReplicaStatus};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

/// How long past a job's deadline a replica may stay busy before it is killed: a step (or an
/// annotator) in progress is not interrupted, so this covers the slowest single one.
const STUCK_GRACE: Duration = Duration::from_secs(15);

/// Operator requests to one replica. Restart and Retire wait for the current job so no request
/// is lost; Kill does not wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SlotCommand {
    Restart,
    Retire,
    Kill,
}

pub(crate) struct Worker {
    pub index: usize,
    /// Its placement slot (which GPUs it gets), held until the worker ends.
    pub slot: usize,
    pub commands: mpsc::UnboundedReceiver<SlotCommand>,
    pub gpus: Vec<usize>,
    pub pool: Shared,
    /// Counted in the pool's `failing` (its process ended without serving, until one does).
    pub failing: std::sync::atomic::AtomicBool,
}

enum End {
    Cancelled,
    /// Scaled away: the slot is gone for good.
    Retired,
    Restart,
    Died(String),
    /// The model cannot be loaded, and trying again cannot help.
    CannotLoad(String),
}

/// How a restart backoff ended.
#[derive(PartialEq)]
enum Pause {
    Elapsed,
    Cancelled,
    Retired,
}

/// Why a ready replica stopped taking jobs.
enum Stop {
    Cancelled,
    Command(SlotCommand),
    Died(std::io::Result<std::process::ExitStatus>),
}

/// SIGKILL (the operator's kill command) and its exit status.
async fn kill_now(child: &mut Child) -> std::io::Result<std::process::ExitStatus> {
    let _ = child.start_kill();
    child.wait().await
}

fn describe(status: &std::io::Result<std::process::ExitStatus>) -> String {
    use std::os::unix::process::ExitStatusExt;
    match status {
        Ok(s) => match (s.code(), s.signal()) {
            (Some(code), _) => format!("exited with status {code}"),
            (None, Some(sig)) => format!("killed by signal {sig}"),
            _ => "ended".into(),
        },
        Err(e) => format!("cannot wait for it: {e}"),
    }
}

/// Whether the node's variable `name` reaches a replica: what libtorch, CUDA, the locale and
/// logging need, and the node's own `NICHEIMAGE_*` settings; never a secret-looking name.
pub(crate) fn passes_to_replica(name: &str) -> bool {
    const EXACT: &[&str] = &[
        "PATH",
        "HOME",
        "TMPDIR",
        "LANG",
        "LANGUAGE",
        "LD_LIBRARY_PATH",
        "RUST_LOG",
        "RUST_BACKTRACE",
        "RUST_LIB_BACKTRACE",
    ];
    const PREFIXES: &[&str] = &[
        "LC_",
        "LIBTORCH",
        "OMP_",
        "MKL_",
        "CUDA_",
        "NVIDIA_",
        "PYTORCH_",
        "NICHEIMAGE_",
    ];
    const SECRET: &[&str] = &["PASSWORD", "MNEMONIC", "SECRET", "TOKEN", "PRIVATE"];
    let upper = name.to_ascii_uppercase();
    !SECRET.iter().any(|s| upper.contains(s))
        && (EXACT.contains(&name) || PREFIXES.iter().any(|p| name.starts_with(p)))
}

/// The part of `vars` (the node's environment) a replica starts with.
pub(crate) fn replica_env(
    vars: impl Iterator<Item = (std::ffi::OsString, std::ffi::OsString)>,
) -> Vec<(std::ffi::OsString, std::ffi::OsString)> {
    vars.filter(|(k, _)| k.to_str().is_some_and(passes_to_replica))
        .collect()
}

/// The replica gets SIGKILL when the node dies, however it dies (`kill -9` included), so no
/// replica outlives it holding GPU memory. The signal follows the thread that forked: tokio
/// spawns from its worker threads, which live as long as the runtime.
#[cfg(target_os = "linux")]
fn die_with_parent(cmd: &mut Command) {
    // SAFETY: getpid has no preconditions and cannot fail.
    let parent = unsafe { libc::getpid() };
    // SAFETY: the closure runs in the forked child before exec; it calls only prctl and getppid
    // (both async-signal-safe) and allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            let signal = libc::SIGKILL as libc::c_ulong;
            if libc::prctl(libc::PR_SET_PDEATHSIG, signal, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The node died between fork and prctl: the signal will never come, so stop here.
            if libc::getppid() != parent {
                return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
}

impl Worker {
    fn report(&self, r: &ReplicaReport) {
        match r.status {
            ReplicaStatus::Dead | ReplicaStatus::Failed => self.set_failing(true),
            ReplicaStatus::Ready | ReplicaStatus::Busy | ReplicaStatus::Stopped => {
                self.set_failing(false)
            }
            _ => {}
        }
        let mut r = r.clone();
        r.rss_bytes = r
            .pid
            .and_then(|p| crate::telemetry::host::rss_of(&p.to_string()));
        if let (Some(pid), false) = (r.pid, r.gpus.is_empty())
            && let Some(gpu) = crate::telemetry::gpu::memory()
        {
            r.vram_bytes = gpu.by_pid.get(&pid).copied();
            let total: u64 = r.gpus.iter().filter_map(|g| gpu.totals.get(g)).sum();
            let share = self.pool.config.gpus_per_replica.min(1.0);
            r.vram_share_bytes = (total > 0).then_some((total as f64 * share) as u64);
            if let (Some(used), Some(limit)) = (r.vram_bytes, r.vram_share_bytes)
                && used > limit
            {
                let warning = format!(
                    "uses {} MiB of GPU memory, over its num_gpus share of {} MiB",
                    used >> 20,
                    limit >> 20
                );
                tracing::warn!(replica = r.index, "{warning}");
                r.last_error = Some(warning);
            }
        }
        self.pool.events.try_send(Event::Replica(r));
    }

    fn set_failing(&self, failing: bool) {
        if self.failing.swap(failing, Ordering::SeqCst) != failing {
            if failing {
                self.pool.failing.fetch_add(1, Ordering::SeqCst);
            } else {
                self.pool.failing.fetch_sub(1, Ordering::SeqCst);
            }
        }
    }

    pub async fn run(mut self) {
        let mut report = ReplicaReport::new(self.index, self.gpus.clone(), None);
        let mut backoff = self.pool.config.backoff_initial;
        loop {
            let started = Instant::now();
            match self.serve_process(&mut report).await {
                End::Restart => {
                    tracing::info!(replica = self.index, "replica restarted by command");
                    report.restarts += 1;
                    continue;
                }
                End::Cancelled => {
                    report.status = ReplicaStatus::Stopped;
                    report.pid = None;
                    self.report(&report);
                    return;
                }
                End::Retired => return self.retire().await,
                End::Died(reason) => {
                    tracing::warn!(replica = self.index, %reason, "replica died; restarting");
                    report.status = ReplicaStatus::Dead;
                    report.pid = None;
                    report.last_error = Some(reason);
                    self.report(&report);
                }
                End::CannotLoad(reason) => {
                    // Retrying every second cannot help: wait the longest backoff (the
                    // operator may fix the files meanwhile).
                    backoff = self.pool.config.backoff_max;
                    tracing::error!(replica = self.index, %reason, retry_in = ?backoff, "replica cannot load its model");
                    report.status = ReplicaStatus::Failed;
                    report.pid = None;
                    report.last_error = Some(format!(
                        "cannot load the model (retry in {} s): {reason}",
                        backoff.as_secs()
                    ));
                    self.report(&report);
                    match self.back_off(backoff).await {
                        Pause::Retired => return self.retire().await,
                        Pause::Cancelled => continue,
                        Pause::Elapsed => {}
                    }
                    report.restarts += 1;
                    continue;
                }
            }
            if started.elapsed() > Duration::from_secs(60) {
                backoff = self.pool.config.backoff_initial;
            }
            match self.back_off(backoff).await {
                Pause::Retired => return self.retire().await,
                Pause::Cancelled => continue,
                Pause::Elapsed => {}
            }
            backoff = (backoff * 2).min(self.pool.config.backoff_max);
            report.restarts += 1;
        }
    }

    /// Scaled away: frees its placement and leaves the state (not a stopped replica to show
    /// and count).
    async fn retire(&self) {
        self.set_failing(false);
        self.pool
            .placements
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.slot);
        tracing::info!(replica = self.index, "replica retired");
        self.pool
            .events
            .send(Event::ReplicaRetired(self.index))
            .await;
    }

    /// Waits out a restart backoff. A Retire meanwhile ends the slot at once; Restart and Kill
    /// have no process to act on.
    async fn back_off(&mut self, delay: Duration) -> Pause {
        let sleep = tokio::time::sleep(delay);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                _ = self.pool.cancel.cancelled() => return Pause::Cancelled,
                _ = &mut sleep => return Pause::Elapsed,
                Some(c) = self.commands.recv() => {
                    if c == SlotCommand::Retire {
                        return Pause::Retired;
                    }
                }
            }
        }
    }

    /// libtorch threads for this replica's next process: a share of the cores when it is one of
    /// several CPU replicas (decided at each start, so a restart after scaling takes the new
    /// share).
    fn cpu_threads(&self) -> Option<usize> {
        if !self.gpus.is_empty() {
            return None;
        }
        super::cpu_threads_per_replica(self.pool.local_replicas.load(Ordering::SeqCst))
    }

    fn spawn(&self, cpu_threads: Option<usize>) -> std::io::Result<Child> {
        let mut cmd = Command::new(&self.pool.config.command.program);
        cmd.args(&self.pool.config.command.args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            // A clean environment: the node's secrets (the wallet password, ...) stay here.
            .env_clear()
            .envs(replica_env(std::env::vars_os()));
        if !self.gpus.is_empty() {
            let list: Vec<String> = self.gpus.iter().map(|g| g.to_string()).collect();
            cmd.env("CUDA_VISIBLE_DEVICES", list.join(","));
        }
        if let Some(n) = cpu_threads {
            cmd.env("OMP_NUM_THREADS", n.to_string());
        }
        #[cfg(target_os = "linux")]
        die_with_parent(&mut cmd);
        cmd.spawn()
    }

    async fn serve_process(&mut self, report: &mut ReplicaReport) -> End {
        if self.pool.cancel.is_cancelled() {
            return End::Cancelled;
        }
        report.status = ReplicaStatus::Loading;
        let cpu_threads = self.cpu_threads();
        let mut child = match self.spawn(cpu_threads) {
            Ok(c) => c,
            Err(e) => {
                return End::Died(format!(
                    "cannot start {}: {e}",
                    self.pool.config.command.program.display()
                ));
            }
        };
        report.pid = child.id();
        self.report(report);
        let (Some(mut stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return End::Died("process started without pipes".into());
        };
        let index = self.index;
        // The replica's own log lines, kept for the reason it gives when it fails.
        let last_stderr = Arc::new(std::sync::Mutex::new(String::new()));
        let keep = last_stderr.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                tracing::info!(replica = index, "{line}");
                if let Ok(mut k) = keep.lock() {
                    *k = line;
                }
            }
        });
        let died = |child_status: std::io::Result<std::process::ExitStatus>| {
            let last = last_stderr.lock().map(|s| s.clone()).unwrap_or_default();
            let status = describe(&child_status);
            End::Died(if last.is_empty() {
                status
            } else {
                format!("{status}: {last}")
            })
        };
        let mut lines = BufReader::new(stdout).lines();

        // Loading.
        let ready = tokio::select! {
            _ = self.pool.cancel.cancelled() => return End::Cancelled,
            Some(c) = self.commands.recv() => return match c {
                SlotCommand::Restart => End::Restart,
                SlotCommand::Retire => End::Retired,
                SlotCommand::Kill => died(kill_now(&mut child).await),
            },
            status = child.wait() => return died(status),
            _ = tokio::time::sleep(self.pool.config.load_timeout) => return End::Died(format!("not ready within {:?}", self.pool.config.load_timeout)),
            line = lines.next_line() => line,
        };
        match ready
            .ok()
            .flatten()
            .and_then(|l| serde_json::from_str::<ReplyLine>(&l).ok())
        {
            Some(ReplyLine::Ready {
                device,
                pipeline,
                dtype,
            }) => {
                // Kept only as short labels: the replica is ours, but its words are capped.
                let short = |s: String| s.chars().take(16).collect::<String>();
                report.runs =
                    pipeline
                        .zip(dtype)
                        .map(|(a, d)| crate::runtime::event::ReplicaRuns {
                            architecture: short(a),
                            dtype: short(d),
                        });
                let threads = cpu_threads.map(|n| n.to_string()).or_else(|| {
                    std::env::var("OMP_NUM_THREADS")
                        .ok()
                        .map(|n| format!("{n} (OMP_NUM_THREADS)"))
                });
                tracing::info!(
                    replica = self.index,
                    %device,
                    cpu_threads = threads.as_deref().unwrap_or("libtorch's default"),
                    "replica ready"
                );
            }
            Some(ReplyLine::LoadFailed { error, permanent }) => {
                let _ = child.wait().await;
                return match permanent {
                    true => End::CannotLoad(error),
                    false => End::Died(format!("cannot load the model: {error}")),
                };
            }
            _ => {
                let status = child.wait().await;
                return died(status);
            }
        }
        report.status = ReplicaStatus::Ready;
        self.report(report);
        self.pool.ready.fetch_add(1, Ordering::SeqCst);
        let end = self
            .serve_jobs(&mut child, &mut stdin, &mut lines, report)
            .await;
        self.pool.ready.fetch_sub(1, Ordering::SeqCst);
        match end {
            Stop::Cancelled => End::Cancelled,
            Stop::Command(SlotCommand::Retire) => End::Retired,
            Stop::Command(SlotCommand::Restart) => End::Restart,
            Stop::Command(SlotCommand::Kill) => died(kill_now(&mut child).await),
            Stop::Died(status) => died(status),
        }
    }

    /// The process ended with a job in hand: the caller hears it at once.
    fn died_during_job(
        &self,
        stats: &mut JobStats,
        report: &mut ReplicaReport,
        started: Instant,
        reply: tokio::sync::oneshot::Sender<Result<String, JobError>>,
        reason: String,
    ) {
        let result = Err(JobError::ReplicaDied {
            replica: self.index,
            reason,
        });
        stats.record(report, started.elapsed().as_millis() as u64, &result);
        let _ = reply.send(result);
    }

    async fn serve_jobs(
        &mut self,
        child: &mut Child,
        stdin: &mut tokio::process::ChildStdin,
        lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
        report: &mut ReplicaReport,
    ) -> Stop {
        let mut next_id = 0u64;
        let mut stats = JobStats::default();
        let mut pending: Option<SlotCommand> = None;
        loop {
            if let Some(c) = pending.take() {
                return Stop::Command(c);
            }
            let jobs = self.pool.jobs.clone();
            let job = tokio::select! {
                _ = self.pool.cancel.cancelled() => return Stop::Cancelled,
                Some(c) = self.commands.recv() => return Stop::Command(c),
                status = child.wait() => return Stop::Died(status),
                job = async { jobs.lock().await.recv().await } => job,
            };
            let Some(Job {
                request,
                reply,
                deadline,
            }) = job
            else {
                return Stop::Cancelled;
            };
            if reply.is_closed() {
                continue; // the caller gave up while the job was queued
            }
            if deadline <= tokio::time::Instant::now() {
                // Its time ran out in the queue: a timeout, not a pool that went away.
                let _ = reply.send(Err(JobError::Timeout(self.pool.config.request_timeout)));
                continue;
            }
            next_id += 1;
            report.status = ReplicaStatus::Busy;
            self.report(report);
            let started = Instant::now();
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let line = serde_json::to_string(&JobLine {
                id: next_id,
                job: request,
                deadline_ms: Some(u64::try_from(left.as_millis()).unwrap_or(u64::MAX)),
            })
            .unwrap_or_default();
            if let Err(e) = stdin.write_all(format!("{line}\n").as_bytes()).await {
                let status = child.wait().await;
                let reason = format!("cannot send the job: {e}");
                self.died_during_job(&mut stats, report, started, reply, reason);
                return Stop::Died(status);
            }
            // Lines::next_line is cancel-safe, so the wait can be re-entered after a command.
            let answer = loop {
                tokio::select! {
                    _ = self.pool.cancel.cancelled() => {
                        let _ = reply.send(Err(JobError::ShuttingDown));
                        return Stop::Cancelled;
                    }
                    Some(c) = self.commands.recv(), if pending.is_none() => {
                        if c != SlotCommand::Kill {
                            // Restart and Retire wait for the job.
                            pending = Some(c);
                            continue;
                        }
                        let status = kill_now(child).await;
                        self.died_during_job(&mut stats, report, started, reply, describe(&status));
                        return Stop::Died(status);
                    }
                    status = child.wait() => {
                        self.died_during_job(&mut stats, report, started, reply, describe(&status));
                        return Stop::Died(status);
                    }
                    // The replica stops a late job between steps; one stuck inside a step
                    // this long is killed so the slot is free again.
                    _ = tokio::time::sleep_until(deadline + STUCK_GRACE) => {
                        let status = kill_now(child).await;
                        let reason = format!("still busy {STUCK_GRACE:?} past the job's deadline; killed");
                        tracing::warn!(replica = self.index, "{reason}");
                        self.died_during_job(&mut stats, report, started, reply, reason);
                        return Stop::Died(status);
                    }
                    line = lines.next_line() => break line,
                }
            };
            let line = match answer {
                Ok(Some(line)) => line,
                // Its stdout closed: the process is ending (killed, or crashed).
                Ok(None) | Err(_) => {
                    let status = child.wait().await;
                    self.died_during_job(&mut stats, report, started, reply, describe(&status));
                    return Stop::Died(status);
                }
            };
            let result = match serde_json::from_str::<ReplyLine>(&line) {
                Ok(ReplyLine::Image {
                    id,
                    image,
                    nsfw_blanked,
                    ..
                }) if id == next_id => {
                    report.nsfw_blanked += u64::from(nsfw_blanked);
                    Ok(image)
                }
                Ok(ReplyLine::Error { error, .. }) => Err(JobError::Failed(error)),
                _ => Err(JobError::Failed(
                    "the replica answered something unreadable".into(),
                )),
            };
            stats.record(report, started.elapsed().as_millis() as u64, &result);
            let _ = reply.send(result);
            report.status = ReplicaStatus::Ready;
            self.report(report);
        }
    }
}

#[cfg(test)]
mod env_tests {
    use super::passes_to_replica;

    #[test]
    fn replicas_get_what_they_need_and_no_secrets() {
        for name in [
            "PATH",
            "HOME",
            "LC_ALL",
            "LD_LIBRARY_PATH",
            "LIBTORCH_USE_PYTORCH",
            "OMP_NUM_THREADS",
            "CUDA_VISIBLE_DEVICES",
            "NVIDIA_VISIBLE_DEVICES",
            "RUST_LOG",
            "NICHEIMAGE_DATA_DIR",
        ] {
            assert!(passes_to_replica(name), "{name}");
        }
        for name in [
            "NICHEIMAGE_WALLET_PASSWORD",
            "NICHEIMAGE_MNEMONIC",
            "NICHEIMAGE_owner_secret",
            "NICHEIMAGE_HF_TOKEN",
            "AWS_SECRET_ACCESS_KEY",
            "SSH_AUTH_SOCK",
            "PATHX",
        ] {
            assert!(!passes_to_replica(name), "{name}");
        }
    }
}
