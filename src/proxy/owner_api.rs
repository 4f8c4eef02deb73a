//! The owner API's credentials exchange (the seed's `POST {url}/get_credentials`): we report our
//! uid, proxy address, miner table and version; the answer is a signed message (the seed's
//! legacy credentials) and, from owners that support signed requests, their public key.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::VerifyingKey;
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::{LegacyCredentials, parse_public_key};

pub struct Credentials {
    pub legacy: LegacyCredentials,
    pub owner_key: Option<VerifyingKey>,
}

#[derive(Deserialize)]
struct Answer {
    message: String,
    signature: String,
    #[serde(default)]
    public_key: Option<String>,
}

pub async fn fetch(
    client: &reqwest::Client,
    base_url: &str,
    port: u16,
    uid: Option<u16>,
    miners: Value,
) -> Result<Credentials, String> {
    let url = format!("{}/get_credentials", base_url.trim_end_matches('/'));
    let body = json!({
        "postfix": format!(":{port}/validator_proxy"),
        "uid": uid,
        "all_uid_info": miners,
        "sha": env!("CARGO_PKG_VERSION"),
    });
    let response = client
        .post(&url)
        .timeout(Duration::from_secs(30))
        .json(&body)
        .send()
        .await
        .map_err(|e| format!("owner API {url}: {e}"))?;
    let status = response.status();
    if status != reqwest::StatusCode::OK {
        return Err(format!("owner API {url}: HTTP {status}"));
    }
    let answer: Answer = response
        .json()
        .await
        .map_err(|e| format!("owner API {url}: {e}"))?;
    let signature = B64
        .decode(answer.signature.trim())
        .map_err(|e| format!("owner API {url}: signature is not base64: {e}"))?;
    let owner_key = answer
        .public_key
        .as_deref()
        .map(parse_public_key)
        .transpose()
        .map_err(|e| format!("owner API {url}: public_key: {e}"))?;
    Ok(Credentials {
        legacy: LegacyCredentials {
            message: answer.message,
            signature,
        },
        owner_key,
    })
}
