//! `POST /validator_proxy`: before the body is read, the route, the signed-request limit and
//! the signature headers (present, well formed, fresh); then the body (bounded while it
//! streams), the signature over it, the signed-request count → request → a permit → candidate
//! miners → up to five attempts, some checked against a regeneration → the base64 image as a
//! bare JSON string (NicheImage-compatible), or a status with `{"detail": reason}`. Every answer
//! past the route is counted once. Failed authentication counts against its own per-address
//! limit, never against the signed requests'.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Map, Value};
use warp::Filter;
use warp::http::{HeaderMap, StatusCode};
use warp::reply::{Reply, Response};

use super::Shared;
use super::select::{self, SelectError};
use crate::catalogue::ModelSpec;
use crate::dice::Dice;
use crate::endpoint::detail;
use crate::runtime::event::ProxyRequest;
use crate::validator::{challenge_params, reward_client};
use nicheimage_bittensor::synapse::ImageGenerating;

const MAX_BODY: u64 = 16 * 1024 * 1024;
const MAX_ATTEMPTS: usize = 5;
const MAX_STEPS: u64 = 50;
const RECENT: usize = 20;
/// Bodies read before their signature is verified, at once (see `Shared::verifying`).
pub(super) const MAX_UNVERIFIED: usize = 4;
/// Failure kinds of requests not (yet) authenticated: counted apart from the owner's traffic.
const UNAUTHENTICATED: [&str; 5] = [
    "unauthorized",
    "unauthenticated_rate_limited",
    "unauthenticated_bad_request",
    "unauthenticated_body",
    "verifying_busy",
];

pub(super) fn routes(
    shared: Arc<Shared>,
) -> impl Filter<Extract = (Response,), Error = std::convert::Infallible> + Clone + Send + Sync + 'static
{
    let body_timeout = shared.settings.limits.body_timeout;
    let with = {
        let shared = shared.clone();
        warp::any().map(move || shared.clone())
    };
    warp::path("validator_proxy")
        .and(warp::path::end())
        .and(warp::post())
        .and(with)
        .and(nicheimage_common::serve::peer())
        .and(warp::header::headers_cloned())
        .and_then(
            |shared: Arc<Shared>, peer: Option<SocketAddr>, headers: HeaderMap| async move {
                let (ip, pre) = precheck(&shared, peer, &headers)
                    .map_err(|f| warp::reject::custom(Early(f)))?;
                // An address over its junk limit has its bodies read only a few at a time (it
                // may be the owner's, so it is not refused outright); others read freely.
                let verifying = match shared.gate.check_unsigned(ip) {
                    Ok(()) => None,
                    Err(_) => Some(shared.verifying.clone().try_acquire_owned().map_err(|_| {
                        warp::reject::custom(Early(Failure(
                            StatusCode::SERVICE_UNAVAILABLE,
                            "verifying_busy",
                            format!(
                                "{MAX_UNVERIFIED} requests from addresses over their junk limit are being verified already; try again"
                            ),
                        )))
                    })?),
                };
                Ok::<_, warp::Rejection>((shared, ip, (pre, verifying)))
            },
        )
        .untuple_one()
        .and(nicheimage_common::serve::body(MAX_BODY, body_timeout))
        .then(handle)
        .recover(move |rejection: warp::Rejection| {
            let shared = shared.clone();
            async move { Ok::<_, std::convert::Infallible>(refused(&shared, rejection).await) }
        })
        .unify()
}

/// The answer to a request refused before it was handled; refusals past the route are counted.
async fn refused(shared: &Shared, rejection: warp::Rejection) -> Response {
    let failure = if let Some(Early(failure)) = rejection.find::<Early>() {
        failure.clone()
    } else if let Some(refusal) = rejection.find::<nicheimage_common::serve::BodyRefusal>() {
        // A body that never arrived whole cannot have its signature checked: a stranger's.
        Failure(
            refusal.status(),
            "unauthenticated_body",
            refusal.to_string(),
        )
    } else if rejection.is_not_found() {
        return detail(
            StatusCode::NOT_FOUND,
            "no such route; POST /validator_proxy",
        );
    } else if rejection.find::<warp::reject::MethodNotAllowed>().is_some() {
        return detail(StatusCode::METHOD_NOT_ALLOWED, "use POST");
    } else {
        return detail(StatusCode::BAD_REQUEST, "bad request");
    };
    record(
        shared,
        Err((failure, String::new(), (0, 0))),
        Instant::now(),
    )
    .await
}

/// A request refused on its headers, before its body was read.
#[derive(Debug)]
struct Early(Failure);

impl warp::reject::Reject for Early {}

/// How a request will be authenticated once its body is read.
enum Pre {
    /// Signature headers present, well formed and fresh; the signature is checked next.
    Signed(super::auth::Signed),
    /// NicheImage's scheme (`proxy.legacy_auth`): its key is in the body.
    Legacy,
}

fn unix_now() -> i64 {
    i64::try_from(nicheimage_bittensor::now_ns() / 1_000_000_000).unwrap_or(i64::MAX)
}

/// The checks that need no body: a known address, signed requests left this minute, the
/// signature headers (unless the legacy scheme may carry its key in the body).
fn precheck(
    shared: &Shared,
    peer: Option<SocketAddr>,
    headers: &HeaderMap,
) -> Result<(IpAddr, Pre), Failure> {
    let ip = peer.map(|p| p.ip()).ok_or_else(|| {
        Failure(
            StatusCode::FORBIDDEN,
            "no_address",
            "unknown client address".into(),
        )
    })?;
    shared
        .gate
        .check_signed(ip)
        .map_err(|e| Failure(StatusCode::TOO_MANY_REQUESTS, "rate_limited", e.to_string()))?;
    if shared.settings.legacy_auth && headers.get(super::auth::SIGNATURE_HEADER).is_none() {
        // Unauthenticated until its body is read: an address over its limit for those is
        // refused before that.
        shared.gate.check_unsigned(ip).map_err(|over| {
            Failure(
                StatusCode::TOO_MANY_REQUESTS,
                "unauthenticated_rate_limited",
                over.to_string(),
            )
        })?;
        return Ok((ip, Pre::Legacy));
    }
    let header = |name: &'static str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let signed = shared
        .verifier
        .precheck(header, unix_now())
        .map_err(|e| unauthenticated(shared, ip, e))?;
    Ok((ip, Pre::Signed(signed)))
}

/// A failed authentication, counted against the address's own limit for those: 401 with
/// the reason, or 429 once the address is over that limit.
fn unauthenticated(shared: &Shared, ip: IpAddr, error: super::auth::AuthError) -> Failure {
    match shared.gate.note_unsigned(ip) {
        Ok(()) => Failure(StatusCode::UNAUTHORIZED, "unauthorized", error.to_string()),
        Err(over) => Failure(
            StatusCode::TOO_MANY_REQUESTS,
            "unauthenticated_rate_limited",
            format!("{over}; last: {error}"),
        ),
    }
}

/// A `POST /validator_proxy` body, as NicheImage's owner sends it.
#[derive(Debug, Deserialize)]
pub struct Body {
    pub payload: Map<String, Value>,
    #[serde(default = "any_miner")]
    pub miner_uid: i64,
    /// NicheImage's caller-supplied key (legacy mode only).
    #[serde(default)]
    pub authorization: Option<String>,
}

/// A body or payload that is not NicheImage's request.
#[derive(Debug, thiserror::Error)]
pub enum BadRequest {
    #[error("body: {0}")]
    Body(serde_json::Error),
    #[error("payload: {0}")]
    Payload(serde_json::Error),
}

/// Parses a request body (after its signature has been checked).
pub fn parse_body(body: &[u8]) -> Result<Body, BadRequest> {
    nicheimage_common::json_budget::parse(body, nicheimage_common::json_budget::MAX_VALUES)
        .map_err(BadRequest::Body)
}

fn any_miner() -> i64 {
    -1
}

/// Why a request failed: the status, a counter name, the reason for the caller.
#[derive(Debug, Clone)]
struct Failure(StatusCode, &'static str, String);

enum Served {
    Image {
        image: String,
        uid: u16,
        model: String,
        /// Whether this image was checked.
        checked: bool,
        /// Organic checks run and failed on the way (this image's included).
        checks: (u64, u64),
    },
    /// NicheImage's `recheck`: credentials refreshed, no image (not counted as traffic).
    Rechecked,
}

async fn handle(
    shared: Arc<Shared>,
    ip: IpAddr,
    (pre, verifying): (Pre, Option<tokio::sync::OwnedSemaphorePermit>),
    body: Bytes,
) -> Response {
    let started = Instant::now();
    shared.in_flight.fetch_add(1, Ordering::SeqCst);
    shared.publish().await;
    let outcome = serve(&shared, ip, pre, verifying, &body).await;
    shared.in_flight.fetch_sub(1, Ordering::SeqCst);
    record(&shared, outcome, started).await
}

/// Counts one answered request and reports it; the response for the caller.
async fn record(shared: &Shared, outcome: Result<Served, Failed>, started: Instant) -> Response {
    let ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let date = super::counters::utc_date(nicheimage_bittensor::now_ns() / 1_000_000_000);
    let (response, entry) = {
        let mut counters = shared.counters.lock().unwrap_or_else(|p| p.into_inner());
        counters.1 = true;
        let day = counters.0.entry(date).or_default();
        match outcome {
            Ok(Served::Rechecked) => {
                let entry = ProxyRequest {
                    unix_ms: nicheimage_bittensor::now_ns() / 1_000_000,
                    model: String::new(),
                    uid: None,
                    status: 200,
                    latency_ms: ms,
                    outcome: "credentials rechecked".into(),
                };
                let reply = warp::reply::json(&serde_json::json!({"message": "Rechecked"}));
                (reply.into_response(), Some(entry))
            }
            Ok(Served::Image {
                image,
                uid,
                model,
                checked,
                checks,
            }) => {
                day.succeeded(image.len() as u64, ms);
                day.checked += checks.0;
                day.check_failed += checks.1;
                let entry = ProxyRequest {
                    unix_ms: nicheimage_bittensor::now_ns() / 1_000_000,
                    model,
                    uid: Some(uid),
                    status: 200,
                    latency_ms: ms,
                    outcome: if checked {
                        "served, checked".into()
                    } else {
                        "served".into()
                    },
                };
                (warp::reply::json(&image).into_response(), Some(entry))
            }
            Err((Failure(status, kind, why), _, _)) if UNAUTHENTICATED.contains(&kind) => {
                // A stranger's noise: its own counter, not the owner's figures or recent list.
                day.unauthenticated += 1;
                (detail(status, why), None)
            }
            Err((Failure(status, kind, why), model, checks)) => {
                day.failed(kind, ms);
                day.checked += checks.0;
                day.check_failed += checks.1;
                let entry = ProxyRequest {
                    unix_ms: nicheimage_bittensor::now_ns() / 1_000_000,
                    model,
                    uid: None,
                    status: status.as_u16(),
                    latency_ms: ms,
                    outcome: why.clone(),
                };
                (detail(status, why), Some(entry))
            }
        }
    };
    {
        let mut report = shared.lock_report();
        if let Some(entry) = entry {
            report.recent.insert(0, entry);
            report.recent.truncate(RECENT);
        }
    }
    shared.publish().await;
    response
}

type Failed = (Failure, String, (u64, u64));

async fn serve(
    shared: &Shared,
    ip: IpAddr,
    pre: Pre,
    verifying: Option<tokio::sync::OwnedSemaphorePermit>,
    body: &[u8],
) -> Result<Served, Failed> {
    let plain = |f: Failure| (f, String::new(), (0, 0));
    let parse = || {
        parse_body(body).map_err(|e| Failure(StatusCode::BAD_REQUEST, "bad_request", e.to_string()))
    };
    let request = match pre {
        Pre::Signed(signed) => {
            // The signature first: unauthenticated bodies are never parsed.
            shared
                .verifier
                .verify(&signed, body, unix_now())
                .map_err(|e| plain(unauthenticated(shared, ip, e)))?;
            parse().map_err(plain)?
        }
        Pre::Legacy => {
            // Not authenticated yet: a body that does not parse is a stranger's noise.
            let parse = || {
                parse_body(body).map_err(|e| {
                    Failure(
                        StatusCode::BAD_REQUEST,
                        "unauthenticated_bad_request",
                        e.to_string(),
                    )
                })
            };
            let request = parse().map_err(|f| {
                // Not yet authenticated: counted as a failed attempt.
                plain(match shared.gate.note_unsigned(ip) {
                    Ok(()) => f,
                    Err(over) => Failure(
                        StatusCode::TOO_MANY_REQUESTS,
                        "unauthenticated_rate_limited",
                        over.to_string(),
                    ),
                })
            })?;
            let checked = match request.authorization.as_deref() {
                Some(key) => shared.verifier.check_legacy(key),
                None => Err(super::auth::AuthError::Missing(
                    super::auth::SIGNATURE_HEADER,
                )),
            };
            checked.map_err(|e| plain(unauthenticated(shared, ip, e)))?;
            request
        }
    };
    drop(verifying);
    // Only authenticated requests count against the owner's allowance.
    shared.gate.admit_signed(ip).map_err(|e| {
        plain(Failure(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            e.to_string(),
        ))
    })?;
    if request.payload.contains_key("recheck") {
        return match shared.refresh_credentials().await {
            Ok(()) => Ok(Served::Rechecked),
            Err(e) => Err(plain(Failure(
                StatusCode::BAD_GATEWAY,
                "recheck_failed",
                e.to_string(),
            ))),
        };
    }
    let model = request
        .payload
        .get("model_name")
        .and_then(Value::as_str)
        .filter(|m| !m.is_empty())
        .ok_or_else(|| {
            plain(Failure(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "payload.model_name is required".into(),
            ))
        })?
        .to_string();
    let with_model = |f: Failure| (f, model.clone(), (0, 0));
    let spec = shared.settings.models.get(&model).ok_or_else(|| {
        with_model(Failure(
            StatusCode::BAD_REQUEST,
            "unknown_model",
            format!("unknown model {model:?}"),
        ))
    })?;
    let mut dice = Dice::new(
        nicheimage_bittensor::now_ns()
            ^ shared
                .requests
                .fetch_add(1, Ordering::Relaxed)
                .rotate_left(32),
    );
    let synapse = build_synapse(request.payload, spec, &mut dice).map_err(|e| {
        with_model(Failure(
            StatusCode::BAD_REQUEST,
            "bad_request",
            e.to_string(),
        ))
    })?;
    let timeout = Duration::from_secs_f64(spec.timeout_secs * 2.0);
    // Queue for a slot at most as long as a miner may take.
    let _permit = tokio::time::timeout(timeout, shared.permits.acquire())
        .await
        .ok()
        .and_then(Result::ok)
        .ok_or_else(|| {
            with_model(Failure(
                StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                format!("all {} proxy slots busy", shared.settings.max_concurrent),
            ))
        })?;
    let pinned = u16::try_from(request.miner_uid).ok();
    let mut candidates = {
        let book = shared.validator.book();
        select::candidates(&book, &model, pinned, shared.settings.miner_score_threshold)
    }
    .map_err(|e| {
        let status = match e {
            SelectError::PinnedZero { .. } => StatusCode::BAD_REQUEST,
            SelectError::NoMiner(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        with_model(Failure(status, "no_miner", e.to_string()))
    })?;
    dice.shuffle(&mut candidates);
    let dendrite = shared.take_dendrite();
    let attempt = Attempt {
        shared,
        dendrite: &dendrite,
        spec,
        synapse: &synapse,
        timeout,
    };
    let answer = attempt.first_good(candidates, &mut dice).await;
    shared.return_dendrite(dendrite);
    match answer {
        Ok((image, uid, checked, checks)) => Ok(Served::Image {
            image,
            uid,
            model,
            checked,
            checks,
        }),
        Err((failure, checks)) => Err((failure, model, checks)),
    }
}

/// One request's walk through its candidate miners.
struct Attempt<'a> {
    shared: &'a Shared,
    dendrite: &'a nicheimage_bittensor::dendrite::Dendrite,
    spec: &'a ModelSpec,
    synapse: &'a ImageGenerating,
    timeout: Duration,
}

/// The image, its uid, whether it was checked, and the checks (run, failed) on the way.
type Found = (String, u16, bool, (u64, u64));

impl Attempt<'_> {
    async fn first_good(
        &self,
        candidates: Vec<u16>,
        dice: &mut Dice,
    ) -> Result<Found, (Failure, (u64, u64))> {
        let axons = self.shared.validator.axons();
        let book = || self.shared.validator.book();
        let mut tried = Vec::new();
        let mut checks = (0u64, 0u64);
        for uid in candidates.into_iter().take(MAX_ATTEMPTS) {
            let Some(target) = axons.get(&uid) else {
                tried.push(format!("uid {uid}: no axon"));
                continue;
            };
            let answer = self.dendrite.call(target, self.synapse, self.timeout).await;
            if !answer.is_success() {
                tried.push(format!(
                    "uid {uid}: {} {}",
                    answer.status_code, answer.status_message
                ));
                continue;
            }
            let image = match &answer.synapse.image {
                Value::String(s) if !s.is_empty() => s.clone(),
                _ => {
                    book().record(uid, 0.0);
                    tried.push(format!("uid {uid}: empty image"));
                    continue;
                }
            };
            if !dice.chance(self.shared.settings.checking_probability) {
                return Ok((image, uid, false, checks));
            }
            let settings = &self.shared.settings;
            let verdict = reward_client::judge(
                &self.shared.http,
                &settings.reward_url,
                self.spec,
                self.synapse,
                &[&answer.synapse],
            )
            .await;
            let (reward, why) = match verdict {
                Ok(v) => v.into_iter().next().unwrap_or((
                    0.0,
                    crate::runtime::event::ServiceVerdict::Said("no verdict".into()),
                )),
                Err(e) => {
                    // Our reward service failing is not the miner's fault: serve unchecked.
                    tracing::warn!(error = %e, "organic check skipped: cannot judge");
                    return Ok((image, uid, false, checks));
                }
            };
            // Organic requests vary in size and steps: no time penalty here.
            book().record(uid, reward);
            checks.0 += 1;
            if reward > 0.0 {
                return Ok((image, uid, true, checks));
            }
            checks.1 += 1;
            tried.push(format!("uid {uid}: organic check failed ({why})"));
        }
        // Checks made on the way to a failure are counted with it.
        Err((
            Failure(
                StatusCode::BAD_GATEWAY,
                "miners_failed",
                format!("no miner answered: {}", tried.join("; ")),
            ),
            checks,
        ))
    }
}

/// The synapse sent to miners: the caller's fields, a seed if missing, the model's defaults
/// for missing parameters, steps capped at 50.
pub fn build_synapse(
    mut payload: Map<String, Value>,
    spec: &ModelSpec,
    dice: &mut Dice,
) -> Result<ImageGenerating, BadRequest> {
    if !payload.get("seed").is_some_and(Value::is_i64) {
        payload.insert("seed".into(), Value::from(dice.below(1_000_000_000)));
    }
    let mut synapse: ImageGenerating =
        serde_json::from_value(Value::Object(payload)).map_err(BadRequest::Payload)?;
    for (key, value) in challenge_params(spec) {
        synapse.pipeline_params.entry(key).or_insert(value);
    }
    if let Some(steps) = synapse.pipeline_params.get_mut("num_inference_steps")
        && steps.as_u64().is_none_or(|n| n > MAX_STEPS)
    {
        *steps = Value::from(MAX_STEPS);
    }
    synapse.image = Value::String(String::new());
    Ok(synapse)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_get_a_seed_defaults_and_at_most_50_steps() {
        let spec =
            crate::catalogue::catalogue(&Default::default()).unwrap()["RealisticVision"].clone();
        let mut dice = Dice::new(1);
        let payload: Map<String, Value> = serde_json::from_str(
            r#"{"model_name": "RealisticVision", "prompt": "a cat",
                "pipeline_params": {"num_inference_steps": 500}}"#,
        )
        .unwrap();
        let s = build_synapse(payload, &spec, &mut dice).unwrap();
        assert!(s.seed >= 0 && s.seed < 1_000_000_000);
        assert_eq!(s.pipeline_params["num_inference_steps"], 50);
        assert!(s.pipeline_params.contains_key("negative_prompt"));
        assert_eq!(s.prompt, "a cat");
        let payload: Map<String, Value> =
            serde_json::from_str(r#"{"model_name": "RealisticVision", "seed": 42}"#).unwrap();
        assert_eq!(build_synapse(payload, &spec, &mut dice).unwrap().seed, 42);
    }
}
