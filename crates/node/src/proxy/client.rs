//! The owner's side of the proxy: sign a request with the owner key and send it. Used by
//! `nicheimage-tui proxy-client` (operators testing their proxy) and by the local devnet's
//! organic traffic.

use std::time::Duration;

use ed25519_dalek::SigningKey;
use serde_json::Value;

use super::auth;

/// The proxy answers with one image (base64).
const MAX_ANSWER: usize = 32 << 20;

/// What the proxy answered: the base64 image, or the status and its reason.
pub async fn request(
    client: &reqwest::Client,
    url: &str,
    key: &SigningKey,
    body: &Value,
    timeout: Duration,
) -> Result<String, String> {
    let bytes = serde_json::to_vec(body).map_err(|e| e.to_string())?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default();
    let mut builder = client
        .post(url)
        .timeout(timeout)
        .header("content-type", "application/json");
    for (name, value) in auth::sign(key, &bytes, now) {
        builder = builder.header(name, value);
    }
    let response = builder
        .body(bytes)
        .send()
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    let status = response.status();
    let answer: Value = nicheimage_common::http::json_capped(response, MAX_ANSWER)
        .await
        .map_err(|e| format!("{url}: HTTP {status}, unreadable answer: {e}"))?;
    match answer {
        Value::String(image) if status.is_success() => Ok(image),
        other => Err(format!(
            "HTTP {status}: {}",
            other["detail"].as_str().unwrap_or(&other.to_string())
        )),
    }
}
