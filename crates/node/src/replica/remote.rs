//! A replica on another machine: another endpoint (ours or NicheImage's) reached over HTTP,
//! health-checked with `GET /info`, fed through `POST /generate` like a local replica.

use super::{Job, JobError, JobStats, Shared};
use crate::runtime::event::{Event, ReplicaReport, ReplicaStatus};
use serde_json::json;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// An image answer from another machine's endpoint (base64 PNG).
const MAX_ANSWER: usize = 32 << 20;

const HEALTH_EVERY: Duration = Duration::from_secs(5);

pub(crate) struct RemoteWorker {
    pub index: usize,
    /// Base URL, e.g. `http://10.0.0.2:10006`.
    pub base: String,
    pub pool: Shared,
    /// Stops this replica alone (its address left a followed name's answer), or with the pool.
    pub cancel: tokio_util::sync::CancellationToken,
}

/// Why a remote replica is not taking work.
#[derive(Debug, thiserror::Error)]
enum Unhealthy {
    #[error("unreachable: {0}")]
    Unreachable(reqwest::Error),
    #[error("GET /info answered {0}")]
    Status(reqwest::StatusCode),
}

impl RemoteWorker {
    async fn healthy(&self, client: &reqwest::Client) -> Result<(), Unhealthy> {
        let r = client
            .get(format!("{}/info", self.base))
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .map_err(Unhealthy::Unreachable)?;
        if r.status().is_success() {
            Ok(())
        } else {
            Err(Unhealthy::Status(r.status()))
        }
    }

    async fn forward(
        &self,
        client: &reqwest::Client,
        job: &super::protocol::GenerateJob,
    ) -> Result<String, JobError> {
        let mut body = json!({
            "prompt": job.prompt, "seed": job.seed, "pipeline_type": "txt2img",
            "pipeline_params": {
                "num_inference_steps": job.num_inference_steps, "width": job.width, "height": job.height,
                "guidance_scale": job.guidance_scale, "negative_prompt": job.negative_prompt,
            },
        });
        if let Some(input) = &job.img2img {
            // Already resized to a multiple of 64, so the remote's resize leaves it as it is
            // when both sides use the same condition resolution.
            body["pipeline_type"] = json!("img2img");
            body["conditional_image"] = json!(input.image);
            body["pipeline_params"]["strength"] = json!(input.strength);
        }
        if let Some(input) = &job.controlnet {
            body["pipeline_type"] = json!("controlnet_txt2img");
            body["conditional_image"] = json!(input.image);
            body["pipeline_params"]["controlnet_conditioning_scale"] = json!(input.scales);
        }
        let died = |reason: String| JobError::ReplicaDied {
            replica: self.index,
            reason,
        };
        let r = client
            .post(format!("{}/generate", self.base))
            .json(&body)
            .timeout(self.pool.config.request_timeout)
            .send()
            .await
            .map_err(|e| died(format!("{} unreachable: {e}", self.base)))?;
        let status = r.status();
        let answer: serde_json::Value = nicheimage_common::http::json_capped(r, MAX_ANSWER)
            .await
            .map_err(|e| died(format!("unreadable answer: {e}")))?;
        match answer["image"].as_str() {
            Some(image) if status.is_success() => Ok(image.to_string()),
            _ => Err(JobError::Failed(format!(
                "{} answered {status}: {}",
                self.base, answer["detail"]
            ))),
        }
    }

    pub async fn run(self) {
        let mut report = ReplicaReport::new(self.index, Vec::new(), Some(self.base.clone()));
        // Without a client the replica is down (reason shown) and the build is retried.
        let client = loop {
            match nicheimage_common::http::client() {
                Ok(c) => break c,
                Err(e) => {
                    report.status = ReplicaStatus::Dead;
                    report.last_error = Some(e.to_string());
                    self.pool.events.try_send(Event::Replica(report.clone()));
                    tokio::select! {
                        _ = self.cancel.cancelled() => return self.finish(report).await,
                        _ = tokio::time::sleep(HEALTH_EVERY) => {}
                    }
                }
            }
        };
        let mut stats = JobStats::default();
        loop {
            // Down until /info answers.
            if let Err(reason) = self.healthy(&client).await {
                report.status = ReplicaStatus::Dead;
                report.last_error = Some(reason.to_string());
                self.pool.events.try_send(Event::Replica(report.clone()));
                tokio::select! {
                    _ = self.cancel.cancelled() => break,
                    _ = tokio::time::sleep(HEALTH_EVERY) => continue,
                }
            }
            report.status = ReplicaStatus::Ready;
            self.pool.events.try_send(Event::Replica(report.clone()));
            self.pool.ready.fetch_add(1, Ordering::SeqCst);
            let mut next_check = tokio::time::Instant::now() + HEALTH_EVERY;
            let lost = loop {
                let jobs = self.pool.jobs.clone();
                let job = tokio::select! {
                    // Stopping wins over a queued job: a retired address takes no more work.
                    biased;
                    _ = self.cancel.cancelled() => break false,
                    _ = tokio::time::sleep_until(next_check) => {
                        next_check = tokio::time::Instant::now() + HEALTH_EVERY;
                        match self.healthy(&client).await {
                            Ok(()) => continue,
                            Err(reason) => { report.last_error = Some(reason.to_string()); break true; }
                        }
                    }
                    job = async { jobs.lock().await.recv().await } => job,
                };
                let Some(Job { request, reply, .. }) = job else {
                    break false;
                };
                if self.cancel.is_cancelled() {
                    // Taken as the stop came: its caller hears at once, not at its deadline.
                    let _ = reply.send(Err(JobError::ReplicaDied {
                        replica: self.index,
                        reason: format!("{} left the endpoint name's addresses", self.base),
                    }));
                    break false;
                }
                if reply.is_closed() {
                    continue;
                }
                report.status = ReplicaStatus::Busy;
                self.pool.events.try_send(Event::Replica(report.clone()));
                let started = Instant::now();
                let result = self.forward(&client, &request).await;
                let unreachable = matches!(result, Err(JobError::ReplicaDied { .. }));
                stats.record(&mut report, started.elapsed().as_millis() as u64, &result);
                let _ = reply.send(result);
                if unreachable {
                    break true;
                }
                report.status = ReplicaStatus::Ready;
                self.pool.events.try_send(Event::Replica(report.clone()));
            };
            self.pool.ready.fetch_sub(1, Ordering::SeqCst);
            if !lost {
                break;
            }
            report.status = ReplicaStatus::Dead;
            report.restarts += 1;
            self.pool.events.try_send(Event::Replica(report.clone()));
        }
        self.finish(report).await;
    }

    /// The last report: retired (gone from the state) when its address left a followed name,
    /// else stopped with the pool.
    async fn finish(&self, mut report: ReplicaReport) {
        if self.cancel.is_cancelled() && !self.pool.cancel.is_cancelled() {
            self.pool
                .events
                .send(Event::ReplicaRetired(self.index))
                .await;
            return;
        }
        report.status = ReplicaStatus::Stopped;
        self.pool.events.try_send(Event::Replica(report));
    }
}
