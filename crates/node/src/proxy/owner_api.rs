//! The owner API's credentials exchange (NicheImage's `POST {url}/get_credentials`): we report our
//! uid, proxy address, miner table and version; the answer is a signed message (NicheImage's
//! legacy credentials) and, from owners that support signed requests, their public key.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::VerifyingKey;
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::{BadPublicKey, LegacyCredentials, parse_public_key};

/// The owner API answers with credentials and a signature.
const MAX_ANSWER: usize = 1 << 20;

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

/// Why an owner API URL is refused: the owner's key comes from its answer, so a plain-http
/// one lets anyone on the path choose who may use the proxy. `https://` passes; plain
/// `http://` only to a loopback host (tests, a local owner) or with `allow_insecure`.
pub fn check_url(url: &str, allow_insecure: bool) -> Result<(), BadOwnerUrl> {
    let parsed = reqwest::Url::parse(url).map_err(|source| BadOwnerUrl::NotUrl {
        url: url.to_string(),
        source,
    })?;
    // The parser has normalised the host: IPv6 in brackets, IPv4 in dotted form.
    let loopback = parsed.host_str().is_some_and(|host| {
        host.eq_ignore_ascii_case("localhost")
            || host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    });
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if loopback || allow_insecure => Ok(()),
        "http" => Err(BadOwnerUrl::PlainHttp(url.to_string())),
        other => Err(BadOwnerUrl::Scheme {
            url: url.to_string(),
            scheme: other.to_string(),
        }),
    }
}

/// An owner API URL the proxy will not use.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BadOwnerUrl {
    #[error("owner API `{url}` is not a URL: {source}")]
    NotUrl {
        url: String,
        source: url::ParseError,
    },
    #[error(
        "owner API `{0}` is plain http: the owner's key would come unprotected; use https:// \
         (or set proxy.allow_insecure_owner_api = true)"
    )]
    PlainHttp(String),
    #[error("owner API `{url}`: scheme {scheme} is not http(s)")]
    Scheme { url: String, scheme: String },
}

/// Why the owner API gave no credentials (the proxy keeps its last ones and asks again).
#[derive(Debug, thiserror::Error)]
pub enum OwnerApiError {
    #[error("owner API {url}: {source}")]
    Transport { url: String, source: reqwest::Error },
    #[error("owner API {url} redirected: {source}")]
    Redirected { url: String, source: BadOwnerUrl },
    #[error("owner API {url}: HTTP {status}")]
    Status {
        url: String,
        status: reqwest::StatusCode,
    },
    #[error("owner API {url}: {source}")]
    Answer {
        url: String,
        source: nicheimage_common::http::ReadError,
    },
    #[error("owner API {url}: signature is not base64: {source}")]
    Signature {
        url: String,
        source: base64::DecodeError,
    },
    #[error("owner API {url}: public_key: {source}")]
    PublicKey { url: String, source: BadPublicKey },
}

pub async fn fetch(
    client: &reqwest::Client,
    base_url: &str,
    allow_insecure: bool,
    port: u16,
    uid: Option<u16>,
    miners: Value,
) -> Result<Credentials, OwnerApiError> {
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
        .map_err(|source| OwnerApiError::Transport {
            url: url.clone(),
            source,
        })?;
    // A redirect may have left https: the answer must come over what the URL promised.
    check_url(response.url().as_str(), allow_insecure).map_err(|source| {
        OwnerApiError::Redirected {
            url: url.clone(),
            source,
        }
    })?;
    let status = response.status();
    if status != reqwest::StatusCode::OK {
        return Err(OwnerApiError::Status { url, status });
    }
    let answer: Answer = nicheimage_common::http::json_capped(response, MAX_ANSWER)
        .await
        .map_err(|source| OwnerApiError::Answer {
            url: url.clone(),
            source,
        })?;
    let signature =
        B64.decode(answer.signature.trim())
            .map_err(|source| OwnerApiError::Signature {
                url: url.clone(),
                source,
            })?;
    let owner_key = answer
        .public_key
        .as_deref()
        .map(parse_public_key)
        .transpose()
        .map_err(|source| OwnerApiError::PublicKey { url, source })?;
    Ok(Credentials {
        legacy: LegacyCredentials {
            message: answer.message,
            signature,
        },
        owner_key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_https_unless_loopback_or_allowed() {
        assert!(check_url("https://owner.example/proxy_client", false).is_ok());
        for local in [
            "http://127.0.0.1:9000/x",
            "http://[::1]:9000",
            "http://localhost/x",
            "http://LOCALHOST:1",
        ] {
            assert!(check_url(local, false).is_ok(), "{local}");
        }
        let refused = check_url("http://owner.example/proxy_client", false)
            .unwrap_err()
            .to_string();
        assert!(refused.contains("allow_insecure_owner_api"), "{refused}");
        assert!(check_url("http://owner.example/proxy_client", true).is_ok());
        // Not fooled by a loopback-looking name.
        assert!(check_url("http://127.0.0.1.owner.example/", false).is_err());
        assert!(check_url("http://localhost.owner.example/", false).is_err());
        assert!(check_url("ftp://owner.example/", true).is_err());
        assert!(check_url("not a url", true).is_err());
    }

    #[test]
    fn the_config_refuses_a_plain_http_owner_api_naming_the_key() {
        let mut config = crate::config::Config::default();
        assert!(config.proxy.owner_api_url.starts_with("https://"));
        assert!(config.validate().is_ok());
        config.proxy.owner_api_url = "http://nicheimage.nichetensor.com/proxy_client".into();
        match config.validate() {
            Err(crate::config::ConfigError::Invalid { key, reason }) => {
                assert_eq!(key, "proxy.owner_api_url");
                assert!(reason.contains("plain http"), "{reason}");
            }
            other => panic!("expected proxy.owner_api_url refused, got {other:?}"),
        }
        config.proxy.allow_insecure_owner_api = true;
        assert!(config.validate().is_ok());
        config.proxy.allow_insecure_owner_api = false;
        config.proxy.owner_api_url = "http://127.0.0.1:8000".into();
        assert!(config.validate().is_ok());
    }
}
