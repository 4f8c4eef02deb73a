//! The generation endpoint (NicheImage's `services.miner_endpoint.app`): `POST /generate` and
//! `GET /info` over the replica pool, with NicheImage's JSON and clear HTTP errors.

pub mod request;

use crate::catalogue::ModelSpec;
use crate::replica::{JobError, Pool, PoolConfig};
use crate::runtime::event::DownloadReport;
use crate::runtime::{Component, ComponentContext, Event};
use futures::FutureExt;
use futures::future::BoxFuture;
use serde_json::json;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use warp::Filter;
use warp::http::StatusCode;
use warp::reply::{Reply, Response};

/// Bodies above this are refused (a base64 conditional image is a few MB at most).
pub const MAX_BODY: u64 = 32 * 1024 * 1024;

pub struct Endpoint {
    pub model: ModelSpec,
    /// Replica commands routed here by the runtime; kept across restarts of the component.
    pub commands: Arc<tokio::sync::Mutex<tokio::sync::mpsc::Receiver<crate::runtime::Command>>>,
    /// The checkpoint, resolved to a path.
    pub checkpoint: PathBuf,
    pub listen: SocketAddr,
    /// Connection limits of the listener.
    pub limits: nicheimage_common::serve::Limits,
    pub pool: PoolConfig,
    /// Replicas run the NSFW classifier.
    pub nsfw_filter: bool,
    /// Replicas load NicheImage's ControlNets and annotators from here.
    pub controlnet_dir: Option<PathBuf>,
    /// Pipelines the model lists that this node cannot serve (their files are missing).
    pub pipelines_off: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    #[error("checkpoint for {model} not found at {path}{hint}")]
    MissingCheckpoint {
        model: String,
        path: PathBuf,
        hint: String,
    },
}

impl Endpoint {
    /// Refuses, before any replica starts, a model this build cannot serve.
    pub fn check(&self) -> Result<(), EndpointError> {
        let m = &self.model;
        let local = self.pool.replicas > 0;
        if local && !self.checkpoint.exists() && m.download_url.is_none() {
            return Err(EndpointError::MissingCheckpoint {
                model: m.name.clone(),
                path: self.checkpoint.clone(),
                hint: format!("; set checkpoint or download_url under [models.{}]", m.name),
            });
        }
        Ok(())
    }

    /// Refuses a GPU placement whose replicas cannot fit their share of the GPU (estimated
    /// from the checkpoint's parameter counts and the model's default image size). Skipped on
    /// the CPU and where the GPUs' memory cannot be read.
    fn check_memory(&self) -> anyhow::Result<()> {
        let share = self.pool.gpus_per_replica;
        if share <= 0.0 || self.pool.replicas == 0 {
            return Ok(());
        }
        let Some(total) =
            crate::telemetry::gpu::memory().and_then(|m| m.totals.values().copied().min())
        else {
            return Ok(());
        };
        let Some(params) =
            crate::engine::parameter_counts(&self.checkpoint, self.controlnet_dir.as_deref())?
        else {
            return Ok(());
        };
        let m = &self.model;
        let native = m.arch.native_side();
        let (w, h) = (
            m.defaults.width.unwrap_or(native),
            m.defaults.height.unwrap_or(native),
        );
        let estimate = crate::replica::vram::estimate(params, m.arch, w, h, 2);
        crate::replica::vram::check_fit(&m.name, &estimate, total, share).map_err(|e| {
            anyhow::anyhow!("{e} (estimated for {w}x{h} images, the model's default size)")
        })?;
        tracing::info!(
            model = %m.name,
            need_gib = estimate.total() as f64 / (1u64 << 30) as f64,
            "each replica fits its share of the GPU"
        );
        Ok(())
    }

    /// Fetches a missing checkpoint from the model's `download_url`, reporting progress.
    pub(crate) async fn ensure_checkpoint(
        &self,
        events: &crate::runtime::EventSender,
    ) -> anyhow::Result<()> {
        let (Some(url), false, true) = (
            &self.model.download_url,
            self.checkpoint.exists(),
            self.pool.replicas > 0,
        ) else {
            return Ok(());
        };
        let model = self.model.name.clone();
        tracing::info!(%model, %url, path = %self.checkpoint.display(), "downloading the checkpoint");
        let report = |done: u64, total: Option<u64>, finished: bool, error: Option<String>| {
            events.try_send(Event::Download(DownloadReport {
                model: model.clone(),
                url: url.clone(),
                done_bytes: done,
                total_bytes: total,
                finished,
                error,
            }));
        };
        let last_tenth = std::sync::atomic::AtomicU64::new(u64::MAX);
        let progress = |done: u64, total: Option<u64>| {
            report(done, total, false, None);
            if let Some(t) = total.filter(|t| *t > 0) {
                let tenth = (done.saturating_mul(10) / t).min(10);
                if last_tenth.swap(tenth, std::sync::atomic::Ordering::Relaxed) != tenth {
                    tracing::info!(model = %model, percent = tenth * 10, "checkpoint download");
                }
            }
        };
        let client = nicheimage_common::http::client()
            .map_err(|e| anyhow::anyhow!("cannot download {url}: {e}"))?;
        let sha = self.model.sha256.as_deref();
        if sha.is_none() {
            tracing::warn!(
                %model,
                "sha256 = unknown: no hash is pinned for this checkpoint, so the download is only \
                 checked structurally (safetensors header, Stable Diffusion keys); pin one with \
                 [models.{model}] sha256"
            );
        }
        match crate::download::fetch(&client, url, &self.checkpoint, sha, &progress).await {
            Ok(()) => {
                let size = std::fs::metadata(&self.checkpoint)
                    .map(|m| m.len())
                    .unwrap_or(0);
                report(size, Some(size), true, None);
                Ok(())
            }
            Err(e) => {
                report(0, None, true, Some(e.to_string()));
                Err(e.into())
            }
        }
    }
}

/// An error answer in NicheImage's FastAPI shape, `{"detail": "..."}`.
pub(crate) fn detail(status: StatusCode, message: impl std::fmt::Display) -> Response {
    warp::reply::with_status(
        warp::reply::json(&json!({ "detail": message.to_string() })),
        status,
    )
    .into_response()
}

fn job_error(e: JobError) -> Response {
    let status = match e {
        JobError::NoReplica
        | JobError::QueueFull(_)
        | JobError::ShuttingDown
        | JobError::ReplicaDied { .. } => StatusCode::SERVICE_UNAVAILABLE,
        JobError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
        JobError::Failed(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    detail(status, e)
}

/// The HTTP routes over a pool, separate from the listener so tests can drive them.
pub fn routes(
    model: Arc<ModelSpec>,
    pool: Pool,
    events: crate::runtime::EventSender,
    body_timeout: std::time::Duration,
) -> impl Filter<Extract = (Response,), Error = std::convert::Infallible> + Clone {
    let info_model = model.clone();
    let info = warp::path!("info")
        .and(warp::get())
        .map(move || warp::reply::json(&json!({ "model_name": info_model.name })).into_response());
    // Decoding a conditional image costs up to 4096² pixels of memory: at most one per core
    // at a time, however many connections send one.
    let decoders = Arc::new(tokio::sync::Semaphore::new(
        std::thread::available_parallelism().map_or(1, |n| n.get()),
    ));
    let generate = warp::path!("generate")
        .and(warp::post())
        .and(nicheimage_common::serve::body(MAX_BODY, body_timeout))
        .then(move |body: bytes::Bytes| {
            let (model, pool, events) = (model.clone(), pool.clone(), events.clone());
            let decoders = decoders.clone();
            async move {
                // Decoding and resizing an img2img image is CPU work: off the async threads.
                let parsed = {
                    let model = model.clone();
                    let permit = decoders.acquire_owned().await;
                    tokio::task::spawn_blocking(move || {
                        let parsed = request::parse(&body, &model);
                        drop(permit);
                        parsed
                    })
                    .await
                };
                let parsed = parsed.unwrap_or_else(|e| {
                    Err(request::BadRequest(format!("cannot read the request: {e}")))
                });
                let response = match parsed {
                    Err(e) => detail(StatusCode::BAD_REQUEST, e),
                    Ok(job) => match pool.generate(job).await {
                        Ok(image) => warp::reply::json(&json!({ "image": image })).into_response(),
                        Err(e) => job_error(e),
                    },
                };
                events.try_send(Event::EndpointResponse {
                    status: response.status().as_u16(),
                    queue_depth: pool.queued(),
                });
                response
            }
        });
    info.or(generate)
        .unify()
        .recover(|rejection: warp::Rejection| async move {
            let response = if rejection.is_not_found() {
                detail(
                    StatusCode::NOT_FOUND,
                    "not found; the endpoint serves POST /generate and GET /info",
                )
            } else if let Some(body) = rejection.find::<nicheimage_common::serve::BodyRefusal>() {
                detail(body.status(), body)
            } else if rejection.find::<warp::reject::MethodNotAllowed>().is_some() {
                detail(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "use POST /generate or GET /info",
                )
            } else {
                detail(StatusCode::BAD_REQUEST, format!("{rejection:?}"))
            };
            Ok::<_, std::convert::Infallible>(response)
        })
        .unify()
}

/// Applies replica commands to the pool until the endpoint stops.
async fn steer(
    commands: Arc<tokio::sync::Mutex<tokio::sync::mpsc::Receiver<crate::runtime::Command>>>,
    pool: Pool,
    cancel: tokio_util::sync::CancellationToken,
) {
    let mut commands = commands.lock().await;
    loop {
        let command = tokio::select! {
            _ = cancel.cancelled() => return,
            c = commands.recv() => c,
        };
        match command {
            Some(crate::runtime::Command::RestartReplica(i)) => {
                if let Err(e) = pool.restart(i) {
                    tracing::warn!(error = %e, "cannot restart replica");
                }
            }
            Some(crate::runtime::Command::KillReplica(i)) => {
                if let Err(e) = pool.kill(i) {
                    tracing::warn!(error = %e, "cannot kill replica");
                }
            }
            Some(crate::runtime::Command::ScaleReplicas(n)) => {
                tracing::info!(from = pool.replicas(), to = n, "scaling replicas");
                pool.scale(n);
            }
            Some(_) => {}
            None => return,
        }
    }
}

impl Component for Endpoint {
    fn name(&self) -> &str {
        "endpoint"
    }

    fn run(self: Arc<Self>, ctx: ComponentContext) -> BoxFuture<'static, anyhow::Result<()>> {
        async move {
            self.check()?;
            self.ensure_checkpoint(&ctx.events).await?;
            self.check_memory()?;
            let what = format!(
                "/generate and /info ({}, {} replicas)",
                self.model.name, self.pool.replicas
            );
            let listener = crate::listen::bind(&ctx, self.listen, &what).await?;
            ctx.events.try_send(Event::EndpointServing(
                crate::runtime::event::EndpointInfo {
                    model: self.model.name.clone(),
                    pipelines: self
                        .model
                        .pipelines
                        .iter()
                        .map(|p| p.name().to_string())
                        .collect(),
                    nsfw_filter: self.nsfw_filter,
                    pipelines_off: self.pipelines_off.clone(),
                },
            ));
            let pool = Pool::start(
                self.pool.clone(),
                ctx.events.clone(),
                ctx.cancel.child_token(),
            );
            tokio::spawn(steer(
                self.commands.clone(),
                pool.clone(),
                ctx.cancel.clone(),
            ));
            let model = Arc::new(self.model.clone());
            let routes = routes(model, pool, ctx.events.clone(), self.limits.body_timeout);
            crate::listen::until_cancelled(&ctx, listener, routes, self.limits).await;
            Ok(())
        }
        .boxed()
    }
}
