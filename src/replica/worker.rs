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
    pub commands: mpsc::UnboundedReceiver<SlotCommand>,
    pub gpus: Vec<usize>,
    pub pool: Shared,
}

enum End {
    Cancelled,
    Restart,
    Died(String),
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

impl Worker {
    fn report(&self, r: &ReplicaReport) {
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
                End::Died(reason) => {
                    tracing::warn!(replica = self.index, %reason, "replica died; restarting");
                    report.status = ReplicaStatus::Dead;
                    report.pid = None;
                    report.last_error = Some(reason);
                    self.report(&report);
                }
            }
            if started.elapsed() > Duration::from_secs(60) {
                backoff = self.pool.config.backoff_initial;
            }
            tokio::select! {
                _ = self.pool.cancel.cancelled() => continue,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(self.pool.config.backoff_max);
            report.restarts += 1;
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
            .kill_on_drop(true);
        if !self.gpus.is_empty() {
            let list: Vec<String> = self.gpus.iter().map(|g| g.to_string()).collect();
            cmd.env("CUDA_VISIBLE_DEVICES", list.join(","));
        }
        if let Some(n) = cpu_threads {
            cmd.env("OMP_NUM_THREADS", n.to_string());
        }
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
                SlotCommand::Retire => End::Cancelled,
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
            Some(ReplyLine::Ready { device }) => {
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
            Stop::Cancelled | Stop::Command(SlotCommand::Retire) => End::Cancelled,
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
            let Some(Job { request, reply }) = job else {
                return Stop::Cancelled;
            };
            if reply.is_closed() {
                continue; // the caller timed out while the job was queued
            }
            next_id += 1;
            report.status = ReplicaStatus::Busy;
            self.report(report);
            let started = Instant::now();
            let line = serde_json::to_string(&JobLine {
                id: next_id,
                job: request,
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
