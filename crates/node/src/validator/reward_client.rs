//! Asking a reward service (ours or the remote `reward_url`) to judge miners' images against
//! the challenge: NicheImage's `{"miner_data", "base_data"}` → `{"rewards"}` exchange.

use std::time::Duration;

use serde_json::{Value, json};

use crate::catalogue::ModelSpec;
use crate::reward::judge::Verdict;
use crate::runtime::event::ServiceVerdict;
use nicheimage_bittensor::synapse::ImageGenerating;
use nicheimage_common::http::{ServiceError, call_json};

/// A reward service answers with a few numbers and reasons.
const MAX_ANSWER: usize = 1 << 20;

/// The fields the reward service reads from a synapse.
fn strip(s: &ImageGenerating) -> Value {
    json!({
        "prompt": s.prompt, "seed": s.seed, "image": s.image,
        "pipeline_type": s.pipeline_type, "pipeline_params": s.pipeline_params,
        "conditional_image": s.conditional_image,
    })
}

/// One `(reward, reason)` per answer, in order. `url_template`'s `{model}` becomes the model's
/// name. An error means the service could not judge — not the miners' fault.
pub async fn judge(
    client: &reqwest::Client,
    url_template: &str,
    model: &ModelSpec,
    challenge: &ImageGenerating,
    answers: &[&ImageGenerating],
) -> Result<Vec<(f64, ServiceVerdict)>, ServiceError> {
    let body = json!({
        "miner_data": answers.iter().map(|a| strip(a)).collect::<Vec<_>>(),
        "base_data": strip(challenge),
    });
    let url = url_template.replace("{model}", &model.name);
    let service = format!("reward service {url}");
    let timeout = Duration::from_secs_f64((model.timeout_secs * 4.0).max(30.0));
    let answer = call_json(&service, client.post(&url).json(&body), timeout, MAX_ANSWER).await?;
    let rewards = answer["rewards"]
        .as_array()
        .ok_or_else(|| ServiceError::malformed(&service, "no rewards in the answer"))?;
    if rewards.len() != answers.len() {
        return Err(ServiceError::malformed(
            &service,
            format!("{} rewards for {} images", rewards.len(), answers.len()),
        ));
    }
    // Ours sends typed verdicts too; a NicheImage-era service sends only its sentences.
    let typed = answer["verdicts"].as_array();
    Ok(rewards
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let verdict = typed
                .and_then(|v| v.get(i))
                .and_then(|v| serde_json::from_value::<Verdict>(v.clone()).ok())
                .map(clipped)
                .map(ServiceVerdict::Verdict)
                .unwrap_or_else(|| {
                    let said = answer["reasons"][i].as_str().unwrap_or("judged");
                    ServiceVerdict::Said(nicheimage_common::text::clip(said, 200))
                });
            // The service is remote: its number is brought into the rules' range here.
            (
                super::scores::sane_reward(r.as_f64().unwrap_or(0.0)),
                verdict,
            )
        })
        .collect())
}

/// A verdict's only free text, capped as a peer's text is.
fn clipped(v: Verdict) -> Verdict {
    match v {
        Verdict::Undecodable { error } => Verdict::Undecodable {
            error: nicheimage_common::text::clip(&error, 200),
        },
        other => other,
    }
}
