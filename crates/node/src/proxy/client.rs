//! The owner's side of the proxy: sign a request with the owner key and send it. Used by
//! `nicheimage-tui proxy-client` (operators testing their proxy) and by the local devnet's
//! organic traffic.

use std::time::Duration;

use ed25519_dalek::SigningKey;
use serde_json::Value;

use super::auth;
use nicheimage_common::http::{ServiceError, call_json};

/// The proxy answers with one image (base64).
const MAX_ANSWER: usize = 32 << 20;

/// What the proxy answered: the base64 image, or the status and its reason.
pub async fn request(
    client: &reqwest::Client,
    url: &str,
    key: &SigningKey,
    body: &Value,
    timeout: Duration,
) -> Result<String, ServiceError> {
    let service = format!("proxy {url}");
    let bytes = serde_json::to_vec(body)
        .map_err(|e| ServiceError::malformed(&service, format!("request: {e}")))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default();
    let mut builder = client.post(url).header("content-type", "application/json");
    for (name, value) in auth::sign(key, &bytes, now) {
        builder = builder.header(name, value);
    }
    match call_json(&service, builder.body(bytes), timeout, MAX_ANSWER).await? {
        Value::String(image) => Ok(image),
        _ => Err(ServiceError::malformed(
            &service,
            "the answer is not an image",
        )),
    }
}
