//! The reward service (NicheImage's `services/rewarding/app.py`): `POST /` with
//! `{"miner_data": [...], "base_data": {...}}` regenerates `base_data` through this node's replica
//! pool and answers `{"rewards": [...]}` (plus `"reasons"`, which NicheImage clients ignore).
//! `POST /challenge/image` is NicheImage's image challenge service on the same replicas. Callers
//! are limited to validators' axon IPs with enough stake (loopback always; none with
//! `--disable_secure`) and to a request rate per client.

pub mod judge;

use std::collections::{BTreeMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use serde::Deserialize;
use serde_json::{Value, json};
use warp::Filter;
use warp::http::StatusCode;

use nicheimage_common::refusal::{REFUSAL_SUMMARY_EVERY, RefusalCounter};

/// Refused reward requests (`routes`), summarised instead of one INFO line each.
static REFUSALS: RefusalCounter =
    RefusalCounter::new("reward requests refused", REFUSAL_SUMMARY_EVERY);
use warp::reply::{Reply, Response};

use crate::endpoint::{Endpoint, detail, request};
use crate::replica::Pool;
use crate::runtime::event::RewardReport;
use crate::runtime::{Component, ComponentContext, Event};
use nicheimage_bittensor::chain::Chain;

/// Batches carry one image per miner: a few MB each.
/// A batch carries every miner's image for one challenge; read only from admitted callers.
const MAX_BODY: u64 = 256 * 1024 * 1024;
const ALLOWLIST_REFRESH: Duration = Duration::from_secs(600);

pub struct RewardService {
    /// The model and replica pool settings (its own listener is not used).
    pub generation: Endpoint,
    pub listen: SocketAddr,
    /// `None`: `--disable_secure`, anyone may call.
    pub allowlist: Option<Allowlist>,
    pub rate_per_minute: u32,
}

/// Where the allowed IPs come from: validators' axons on the subnet with at least `min_stake`.
pub struct Allowlist {
    pub chain: Arc<dyn Chain>,
    pub netuid: u16,
    pub min_stake: f64,
}

/// JSON values a reward batch may hold: a whole subnet's answers, each with the synapse's
/// dendrite and axon info (about 80 values a miner), with room to spare.
const BATCH_MAX_VALUES: usize = 400_000;

#[derive(Deserialize)]
struct RawBatch {
    miner_data: Vec<Value>,
    base_data: Value,
}

/// A reward request, parsed at the edge: the job to regenerate the reference with, and each
/// miner's answer (`None` where it sent no image text).
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub job: crate::replica::protocol::GenerateJob,
    pub miner_images: Vec<Option<String>>,
}

/// A reward request that is not one (400).
#[derive(Debug, thiserror::Error)]
pub enum BadBatch {
    #[error("body: {0}")]
    Body(serde_json::Error),
    #[error("base_data: {0}")]
    Base(request::BadRequest),
}

/// Parses a reward request against the service's model.
pub fn parse_batch(body: &[u8], model: &crate::catalogue::ModelSpec) -> Result<Batch, BadBatch> {
    let raw: RawBatch =
        nicheimage_common::json_budget::parse(body, BATCH_MAX_VALUES).map_err(BadBatch::Body)?;
    let base = serde_json::to_vec(&raw.base_data).map_err(BadBatch::Body)?;
    let job = request::parse(&base, model).map_err(BadBatch::Base)?;
    let miner_images = raw
        .miner_data
        .iter()
        .map(|m| m.get("image").and_then(Value::as_str).map(str::to_string))
        .collect();
    Ok(Batch { job, miner_images })
}

struct Shared {
    pool: Pool,
    model: Arc<crate::catalogue::ModelSpec>,
    allowed: Mutex<Option<HashSet<IpAddr>>>,
    rate: nicheimage_common::ratelimit::PerMinute,
    report: Mutex<RewardReport>,
    events: crate::runtime::EventSender,
}

impl Shared {
    /// `Err(reason)` if this client may not call now.
    fn admit(&self, ip: Option<IpAddr>) -> Result<(), (StatusCode, String)> {
        let ip = ip.ok_or((StatusCode::FORBIDDEN, "unknown client address".to_string()))?;
        if let Some(allowed) = self
            .allowed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            && !ip.is_loopback()
            && !allowed.contains(&ip)
        {
            return Err((
                StatusCode::FORBIDDEN,
                format!("{ip} is not a validator axon with enough stake"),
            ));
        }
        self.rate
            .admit(ip)
            .map_err(|e| (StatusCode::TOO_MANY_REQUESTS, e.to_string()))?;
        Ok(())
    }

    async fn reward(&self, body: &[u8]) -> Result<Value, (StatusCode, String)> {
        let Batch { job, miner_images } =
            parse_batch(body, &self.model).map_err(|e| (StatusCode::BAD_REQUEST, e.to_string()))?;
        let reference = self.pool.generate(job).await.map_err(|e| {
            (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("cannot regenerate the reference: {e}"),
            )
        })?;
        // Decoding and hashing are CPU work: off the async threads.
        let verdicts = tokio::task::spawn_blocking(move || {
            let miners: Vec<Option<&str>> = miner_images.iter().map(|m| m.as_deref()).collect();
            judge::judge_batch(&reference, &miners)
        })
        .await
        .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        let mut report = self.report.lock().unwrap_or_else(|p| p.into_inner());
        for v in &verdicts {
            *report.verdicts.entry(v.kind().to_string()).or_default() += 1;
        }
        drop(report);
        Ok(json!({
            "rewards": verdicts.iter().map(|v| v.reward()).collect::<Vec<_>>(),
            "reasons": verdicts.iter().map(|v| v.reason()).collect::<Vec<_>>(),
            "verdicts": verdicts,
        }))
    }

    /// NicheImage's image challenge service: a conditional image for `prompt`, drawn by this
    /// service's replicas at the model's defaults (seeded, unlike NicheImage's).
    async fn challenge_image(&self, body: &[u8]) -> Result<Value, (StatusCode, String)> {
        let request: Value =
            nicheimage_common::json_budget::parse(body, nicheimage_common::json_budget::MAX_VALUES)
                .map_err(|e| (StatusCode::BAD_REQUEST, format!("body: {e}")))?;
        let prompt = request["prompt"]
            .as_str()
            .filter(|p| !p.trim().is_empty())
            .ok_or((StatusCode::BAD_REQUEST, "`prompt` is required".to_string()))?;
        let seed = request["seed"]
            .as_u64()
            .unwrap_or_else(|| nicheimage_bittensor::now_ns() % 1_000_000_000);
        let negative = request["negative_prompt"]
            .as_str()
            .unwrap_or("bad image, low quality, blurry");
        let txt2img = json!({
            "prompt": prompt, "seed": seed, "pipeline_type": "txt2img",
            "pipeline_params": { "negative_prompt": negative },
        });
        let job = request::parse(txt2img.to_string().as_bytes(), &self.model)
            .map_err(|e| (StatusCode::BAD_REQUEST, e.to_string()))?;
        let image = self.pool.generate(job).await.map_err(|e| {
            (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("cannot draw the image: {e}"),
            )
        })?;
        Ok(json!({ "conditional_image": image }))
    }

    /// Counts and logs a refusal, and answers it with the reason.
    fn refuse(&self, status: StatusCode, message: String) -> Response {
        self.count(status);
        REFUSALS.record(status.as_str(), &message);
        detail(status, message)
    }

    /// Counts one answer by HTTP status and publishes the report.
    fn count(&self, status: StatusCode) {
        *self
            .report
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .responses
            .entry(status.as_str().to_string())
            .or_default() += 1;
        self.publish();
    }

    fn publish(&self) {
        let allowed_ips = self
            .allowed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(HashSet::len);
        let report = {
            let mut report = self.report.lock().unwrap_or_else(|p| p.into_inner());
            report.allowed_ips = allowed_ips;
            report.clone()
        };
        self.events.try_send(Event::Reward(report));
    }
}

/// The two routes the service answers.
#[derive(Debug, Clone, Copy)]
enum Route {
    Reward,
    ChallengeImage,
}

/// A refusal before the body was read.
#[derive(Debug)]
struct Refused(StatusCode, String);

impl warp::reject::Reject for Refused {}

fn routes(
    shared: Arc<Shared>,
    body_timeout: Duration,
) -> impl Filter<Extract = (Response,), Error = std::convert::Infallible> + Clone {
    let gate = shared.clone();
    let refusals = shared.clone();
    warp::post()
        .and(warp::path::full())
        .and(nicheimage_common::serve::peer())
        .and_then(move |path: warp::path::FullPath, peer: Option<SocketAddr>| {
            // Allow-list, rate limit and route cost nothing: they come before the body is read.
            let admitted = gate.admit(peer.map(|p| p.ip())).and_then(|()| match path.as_str() {
                "/" => Ok(Route::Reward),
                "/challenge/image" => Ok(Route::ChallengeImage),
                other => Err((
                    StatusCode::NOT_FOUND,
                    format!("no {other}: the reward service answers POST / and POST /challenge/image"),
                )),
            });
            async move { admitted.map_err(|(status, why)| warp::reject::custom(Refused(status, why))) }
        })
        .and(nicheimage_common::serve::body(MAX_BODY, body_timeout))
        .then(move |route: Route, body: bytes::Bytes| {
            let shared = shared.clone();
            async move {
                let outcome = match route {
                    Route::Reward => shared.reward(&body).await,
                    Route::ChallengeImage => shared.challenge_image(&body).await,
                };
                match outcome {
                    Ok(answer) => {
                        shared.count(StatusCode::OK);
                        warp::reply::json(&answer).into_response()
                    }
                    Err((status, message)) => shared.refuse(status, message),
                }
            }
        })
        .recover(move |rejection: warp::Rejection| {
            let shared = refusals.clone();
            async move {
                let (status, message) = if let Some(Refused(status, why)) = rejection.find::<Refused>() {
                    (*status, why.clone())
                } else if let Some(body) = rejection.find::<nicheimage_common::serve::BodyRefusal>() {
                    (body.status(), body.to_string())
                } else if rejection.is_not_found() || rejection.find::<warp::reject::MethodNotAllowed>().is_some() {
                    (StatusCode::NOT_FOUND, "the reward service answers POST / and POST /challenge/image".to_string())
                } else {
                    (StatusCode::BAD_REQUEST, format!("{rejection:?}"))
                };
                Ok::<_, std::convert::Infallible>(shared.refuse(status, message))
            }
        })
        .unify()
}

/// Keeps the allowed IPs current from the metagraph; a failed read keeps the last set.
async fn refresh_allowlist(list: &Allowlist, shared: &Shared) {
    match list.chain.metagraph(list.netuid).await {
        Ok(graph) => {
            let ips: HashSet<IpAddr> = graph
                .neurons
                .iter()
                .filter(|n| n.axon.is_served() && n.total_stake_tokens() >= list.min_stake)
                .filter_map(|n| n.axon.address().ok())
                .collect();
            tracing::info!(count = ips.len(), "reward allow-list refreshed");
            *shared.allowed.lock().unwrap_or_else(|p| p.into_inner()) = Some(ips);
            shared
                .report
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .last_error = None;
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot refresh the reward allow-list");
            shared
                .report
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .last_error = Some(e.to_string());
        }
    }
}

impl Component for RewardService {
    fn name(&self) -> &str {
        "reward"
    }

    fn run(self: Arc<Self>, ctx: ComponentContext) -> BoxFuture<'static, anyhow::Result<()>> {
        async move {
            self.generation.check()?;
            self.generation.ensure_checkpoint(&ctx.events).await?;
            let what = format!("the reward service ({})", self.generation.model.name);
            let listener = crate::listen::bind(&ctx, self.listen, &what).await?;
            let pool = Pool::start(
                self.generation.pool.clone(),
                ctx.events.clone(),
                ctx.cancel.child_token(),
            );
            let shared = Arc::new(Shared {
                pool,
                model: Arc::new(self.generation.model.clone()),
                // Secure mode starts closed (loopback only) until the first metagraph read.
                allowed: Mutex::new(self.allowlist.as_ref().map(|_| HashSet::new())),
                rate: nicheimage_common::ratelimit::PerMinute::new(self.rate_per_minute),
                report: Mutex::new(RewardReport {
                    model_name: self.generation.model.name.clone(),
                    secure: self.allowlist.is_some(),
                    responses: BTreeMap::new(),
                    ..Default::default()
                }),
                events: ctx.events.clone(),
            });
            if self.allowlist.is_some() {
                let (me, shared, cancel) = (self.clone(), shared.clone(), ctx.cancel.clone());
                tokio::spawn(async move {
                    let Some(list) = me.allowlist.as_ref() else {
                        return;
                    };
                    loop {
                        refresh_allowlist(list, &shared).await;
                        shared.publish();
                        tokio::select! {
                            _ = cancel.cancelled() => return,
                            _ = tokio::time::sleep(ALLOWLIST_REFRESH) => {}
                        }
                    }
                });
            }
            let limits = self.generation.limits;
            crate::listen::until_cancelled(
                &ctx,
                listener,
                routes(shared, limits.body_timeout),
                limits,
            )
            .await;
            Ok(())
        }
        .boxed()
    }
}
