//! The image challenge (img2img and ControlNet requests need a conditional image): NicheImage's
//! image-service contract, `{prompt, negative_prompt, seed}` → `{"conditional_image"}`, served by
//! `validator.challenge_image_url` — the owner's, or the `POST /challenge/image` of a reward
//! service of ours, which draws it with its own replicas.
//!
//! The prompt challenge: built in — deterministic for a seed, varied (subject, setting, style,
//! lighting, medium), so a validator needs no external service — or, when
//! `validator.challenge_prompt_url` is set, NicheImage's remote prompt service, with the built-in
//! prompt as the fallback when it fails.

use super::Dice;
use nicheimage_common::http::{ServiceError, call_json};

/// A prompt, or a conditional image as base64: a few MiB at most.
const MAX_ANSWER: usize = 16 << 20;

const SUBJECTS: &[&str] = &[
    "an old lighthouse",
    "a red fox",
    "a street market",
    "a mountain cabin",
    "a vintage car",
    "a koi pond",
    "an astronaut",
    "a violin maker",
    "a desert caravan",
    "a glass greenhouse",
    "a steam locomotive",
    "a snowy owl",
    "a harbour town",
    "a cathedral interior",
    "a bonsai tree",
    "a fishing boat",
    "a jazz trio",
    "a waterfall",
    "a robot gardener",
    "a bowl of ramen",
];
const SETTINGS: &[&str] = &[
    "at dawn",
    "in the rain",
    "under a starry sky",
    "in autumn",
    "on a foggy morning",
    "at golden hour",
    "in a snowstorm",
    "in a neon-lit city",
    "by the sea",
    "in a quiet forest",
];
const STYLES: &[&str] = &[
    "photorealistic",
    "cinematic",
    "impressionist",
    "art nouveau",
    "studio ghibli style",
    "ukiyo-e",
    "hyperdetailed",
    "minimalist",
    "baroque",
    "retro futurism",
];
const LIGHTING: &[&str] = &[
    "soft light",
    "dramatic rim lighting",
    "volumetric light",
    "backlit",
    "overcast light",
    "candlelight",
    "high contrast",
    "diffuse daylight",
];
const MEDIA: &[&str] = &[
    "oil painting",
    "35mm photograph",
    "watercolor",
    "digital art",
    "charcoal sketch",
    "3d render",
    "gouache",
    "polaroid",
];

pub fn prompt(seed: u64) -> String {
    let mut r = Dice::new(seed);
    format!(
        "{} {}, {}, {}, {}",
        r.pick(SUBJECTS),
        r.pick(SETTINGS),
        r.pick(STYLES),
        r.pick(LIGHTING),
        r.pick(MEDIA)
    )
}

/// Asks a prompt service (NicheImage's contract: the synapse's fields plus `max_length` in,
/// `{"prompt": ...}` out) to continue `start` for `seed`.
pub async fn remote_prompt(
    client: &reqwest::Client,
    url: &str,
    start: &str,
    seed: u64,
    timeout: std::time::Duration,
) -> Result<String, ServiceError> {
    let service = format!("prompt service {url}");
    let body = serde_json::json!({ "prompt": start, "seed": seed, "max_length": 77 });
    let answer = call_json(&service, client.post(url).json(&body), timeout, MAX_ANSWER).await?;
    match answer["prompt"].as_str() {
        Some(p) if !p.trim().is_empty() => Ok(p.to_string()),
        _ => Err(ServiceError::malformed(&service, "no prompt in the answer")),
    }
}

/// Asks an image service for a conditional image of `prompt` (base64 PNG).
pub async fn remote_image(
    client: &reqwest::Client,
    url: &str,
    prompt: &str,
    seed: u64,
    timeout: std::time::Duration,
) -> Result<String, ServiceError> {
    let service = format!("image service {url}");
    let body = serde_json::json!({
        "prompt": prompt,
        "seed": seed,
        "negative_prompt": "bad image, low quality, blurry",
    });
    let answer = call_json(&service, client.post(url).json(&body), timeout, MAX_ANSWER).await?;
    match answer["conditional_image"].as_str() {
        Some(image) if !image.is_empty() => Ok(image.to_string()),
        _ => Err(ServiceError::malformed(
            &service,
            "no conditional_image in the answer",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use warp::Filter;

    #[tokio::test]
    async fn an_image_service_answers_a_conditional_image_and_refusals_are_errors() {
        let service = warp::post()
            .and(warp::body::json())
            .map(|b: serde_json::Value| {
                let (reply, status) = match b["prompt"].as_str() {
                    Some("refuse") => (
                        serde_json::json!({ "detail": "no" }),
                        warp::http::StatusCode::SERVICE_UNAVAILABLE,
                    ),
                    Some("empty") => (serde_json::json!({}), warp::http::StatusCode::OK),
                    _ => (
                        serde_json::json!({ "conditional_image": format!("png-of-{}", b["seed"]) }),
                        warp::http::StatusCode::OK,
                    ),
                };
                warp::reply::with_status(warp::reply::json(&reply), status)
            });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(warp::serve(service).incoming(listener).run());
        let client = nicheimage_common::http::client().unwrap();
        let url = format!("http://{address}/");
        let timeout = std::time::Duration::from_secs(5);
        let got = remote_image(&client, &url, "a fox", 9, timeout).await;
        assert_eq!(got.ok().as_deref(), Some("png-of-9"));
        let refused = remote_image(&client, &url, "refuse", 9, timeout).await;
        assert!(
            matches!(&refused, Err(ServiceError::Refused { status, detail, .. })
                if status.as_u16() == 503 && detail == "no"),
            "{refused:?}"
        );
        let empty = remote_image(&client, &url, "empty", 9, timeout).await;
        assert!(
            matches!(empty, Err(ServiceError::Malformed { .. })),
            "{empty:?}"
        );
    }

    #[tokio::test]
    async fn a_remote_prompt_service_continues_the_prompt_and_failures_are_errors() {
        let service = warp::post().and(warp::body::json()).map(|b: serde_json::Value| {
            assert_eq!(b["max_length"], 77);
            warp::reply::json(&serde_json::json!({
                "prompt": format!("{}, trending on artstation", b["prompt"].as_str().unwrap_or(""))
            }))
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(warp::serve(service).incoming(listener).run());
        let client = nicheimage_common::http::client().unwrap();
        let timeout = std::time::Duration::from_secs(5);
        let url = format!("http://{address}/");
        let p = remote_prompt(&client, &url, "a red fox", 7, timeout).await;
        assert_eq!(p.ok().as_deref(), Some("a red fox, trending on artstation"));
        let dead = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            format!("http://{}/", l.local_addr().unwrap())
        };
        assert!(
            remote_prompt(&client, &dead, "x", 7, timeout)
                .await
                .is_err()
        );
    }

    #[test]
    fn deterministic_and_varied() {
        assert_eq!(prompt(42), prompt(42));
        let distinct: std::collections::HashSet<String> = (0..200).map(prompt).collect();
        assert!(distinct.len() > 190, "{}", distinct.len());
        assert!(prompt(1).split(", ").count() == 4);
    }
}
