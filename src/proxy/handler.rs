//! `POST /validator_proxy`: rate limit → owner signature → request → a permit → candidate
//! miners → up to five attempts, some checked against a regeneration → the base64 image as a
//! bare JSON string (seed-compatible), or a status with `{"detail": reason}`. Every answer is
//! counted once.

use std::net::SocketAddr;
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
use crate::bittensor::synapse::ImageGenerating;
use crate::catalogue::ModelSpec;
use crate::endpoint::detail;
use crate::runtime::event::ProxyRequest;
use crate::validator::{Dice, challenge_params, reward_client};

const MAX_BODY: u64 = 16 * 1024 * 1024;
const MAX_ATTEMPTS: usize = 5;
const MAX_STEPS: u64 = 50;
const RECENT: usize = 20;

pub(super) fn routes(
    shared: Arc<Shared>,
) -> impl Filter<Extract = (Response,), Error = std::convert::Infallible> + Clone {
    let with = warp::any().map(move || shared.clone());
    warp::path("validator_proxy")
        .and(warp::path::end())
        .and(warp::post())
        .and(with)
        .and(warp::addr::remote())
        .and(warp::header::headers_cloned())
        .and(warp::body::content_length_limit(MAX_BODY))
        .and(warp::body::bytes())
        .then(handle)
        .recover(|rejection: warp::Rejection| async move {
            let (status, why) = if rejection.is_not_found() {
                (
                    StatusCode::NOT_FOUND,
                    "no such route; POST /validator_proxy",
                )
            } else if rejection.find::<warp::reject::PayloadTooLarge>().is_some() {
                (StatusCode::PAYLOAD_TOO_LARGE, "body too large")
            } else if rejection.find::<warp::reject::MethodNotAllowed>().is_some() {
                (StatusCode::METHOD_NOT_ALLOWED, "use POST")
            } else {
                (StatusCode::BAD_REQUEST, "bad request")
            };
            Ok::<_, std::convert::Infallible>(detail(status, why))
        })
        .unify()
}

#[derive(Deserialize)]
struct Body {
    payload: Map<String, Value>,
    #[serde(default = "any_miner")]
    miner_uid: i64,
    /// The seed's caller-supplied key (legacy mode only).
    #[serde(default)]
    authorization: Option<String>,
}

fn any_miner() -> i64 {
    -1
}

/// Why a request failed: the status, a counter name, the reason for the caller.
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
    /// The seed's `recheck`: credentials refreshed, no image (not counted as traffic).
    Rechecked,
}

async fn handle(
    shared: Arc<Shared>,
    peer: Option<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let started = Instant::now();
    shared.in_flight.fetch_add(1, Ordering::SeqCst);
    shared.publish().await;
    let outcome = serve(&shared, peer, &headers, &body).await;
    shared.in_flight.fetch_sub(1, Ordering::SeqCst);
    let ms = started.elapsed().as_millis() as u64;
    let date = super::counters::utc_date(crate::bittensor::now_ns() / 1_000_000_000);
    let (response, entry) = {
        let mut counters = shared.counters.lock().unwrap_or_else(|p| p.into_inner());
        counters.1 = true;
        let day = counters.0.entry(date).or_default();
        match outcome {
            Ok(Served::Rechecked) => {
                let entry = ProxyRequest {
                    unix_ms: crate::bittensor::now_ns() / 1_000_000,
                    model: String::new(),
                    uid: None,
                    status: 200,
                    latency_ms: ms,
                    outcome: "credentials rechecked".into(),
                };
                let reply = warp::reply::json(&serde_json::json!({"message": "Rechecked"}));
                (reply.into_response(), entry)
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
                    unix_ms: crate::bittensor::now_ns() / 1_000_000,
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
                (warp::reply::json(&image).into_response(), entry)
            }
            Err((Failure(status, kind, why), model, checks)) => {
                day.failed(kind, ms);
                day.checked += checks.0;
                day.check_failed += checks.1;
                let entry = ProxyRequest {
                    unix_ms: crate::bittensor::now_ns() / 1_000_000,
                    model,
                    uid: None,
                    status: status.as_u16(),
                    latency_ms: ms,
                    outcome: why.clone(),
                };
                (detail(status, why), entry)
            }
        }
    };
    {
        let mut report = shared.lock_report();
        report.recent.insert(0, entry);
        report.recent.truncate(RECENT);
    }
    shared.publish().await;
    response
}

type Failed = (Failure, String, (u64, u64));

async fn serve(
    shared: &Shared,
    peer: Option<SocketAddr>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Served, Failed> {
    let plain = |f: Failure| (f, String::new(), (0, 0));
    let ip = peer.map(|p| p.ip()).ok_or_else(|| {
        plain(Failure(
            StatusCode::FORBIDDEN,
            "no_address",
            "unknown client address".into(),
        ))
    })?;
    shared
        .rate
        .admit(ip)
        .map_err(|e| plain(Failure(StatusCode::TOO_MANY_REQUESTS, "rate_limited", e)))?;
    let request: Body = serde_json::from_slice(body).map_err(|e| {
        plain(Failure(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("body: {e}"),
        ))
    })?;
    authenticate(shared, headers, body, request.authorization.as_deref()).map_err(plain)?;
    if request.payload.contains_key("recheck") {
        return match shared.refresh_credentials().await {
            Ok(()) => Ok(Served::Rechecked),
            Err(e) => Err(plain(Failure(StatusCode::BAD_GATEWAY, "recheck_failed", e))),
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
        crate::bittensor::now_ns()
            ^ shared
                .requests
                .fetch_add(1, Ordering::Relaxed)
                .rotate_left(32),
    );
    let synapse = build_synapse(request.payload, spec, &mut dice)
        .map_err(|e| with_model(Failure(StatusCode::BAD_REQUEST, "bad_request", e)))?;
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
    dendrite: &'a crate::bittensor::dendrite::Dendrite,
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
                Ok(v) => v.into_iter().next().unwrap_or((0.0, "no verdict".into())),
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

fn authenticate(
    shared: &Shared,
    headers: &HeaderMap,
    body: &[u8],
    authorization: Option<&str>,
) -> Result<(), Failure> {
    let unauthorized = |e: super::auth::AuthError| {
        Failure(StatusCode::UNAUTHORIZED, "unauthorized", e.to_string())
    };
    if shared.settings.legacy_auth
        && let Some(key) = authorization
        && headers.get(super::auth::SIGNATURE_HEADER).is_none()
    {
        return shared.verifier.check_legacy(key).map_err(unauthorized);
    }
    let now = (crate::bittensor::now_ns() / 1_000_000_000) as i64;
    shared
        .verifier
        .check(
            |name| {
                headers
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string)
            },
            body,
            now,
        )
        .map_err(unauthorized)
}

/// The synapse sent to miners: the caller's fields, a seed if missing, the model's defaults
/// for missing parameters, steps capped at 50.
fn build_synapse(
    mut payload: Map<String, Value>,
    spec: &ModelSpec,
    dice: &mut Dice,
) -> Result<ImageGenerating, String> {
    if !payload.get("seed").is_some_and(Value::is_i64) {
        payload.insert("seed".into(), Value::from(dice.below(1_000_000_000)));
    }
    let mut synapse: ImageGenerating =
        serde_json::from_value(Value::Object(payload)).map_err(|e| format!("payload: {e}"))?;
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
