//! One way to make HTTP clients: TLS through rustls with the ring provider, installed once.

/// A client could not be built (e.g. the process is out of file descriptors, or the system's
/// TLS/DNS setup cannot be read). Callers report it; nothing falls back to
/// `reqwest::Client::new()`, which panics in that same situation.
#[derive(Debug, thiserror::Error)]
#[error("cannot create an HTTP client: {0}")]
pub struct HttpError(#[from] reqwest::Error);

/// Installs the ring crypto provider for rustls (a second install is refused harmlessly).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A builder with the node's defaults, for clients that need more settings.
pub fn client_builder() -> reqwest::ClientBuilder {
    install_crypto_provider();
    reqwest::Client::builder().user_agent(concat!("nicheimage-tui/", env!("CARGO_PKG_VERSION")))
}

/// A client for the node's outgoing HTTP (downloads, remote services).
pub fn client() -> Result<reqwest::Client, HttpError> {
    Ok(client_builder().build()?)
}

/// A response body read no further than `limit` bytes: a peer's answer cannot make this
/// process allocate what it likes (a Content-Length over the limit is refused unread).
pub async fn read_capped(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<bytes::Bytes, ReadError> {
    if let Some(length) = response.content_length()
        && length > limit as u64
    {
        return Err(ReadError::TooLarge { limit });
    }
    let mut out = bytes::BytesMut::new();
    while let Some(chunk) = response.chunk().await.map_err(ReadError::Transport)? {
        if out.len().saturating_add(chunk.len()) > limit {
            return Err(ReadError::TooLarge { limit });
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out.freeze())
}

/// A JSON answer read through [`read_capped`]: every remote service we call is read this way.
pub async fn json_capped<T: serde::de::DeserializeOwned>(
    response: reqwest::Response,
    limit: usize,
) -> Result<T, ReadError> {
    let bytes = read_capped(response, limit).await?;
    crate::json_budget::parse(&bytes, crate::json_budget::MAX_VALUES).map_err(ReadError::Json)
}

/// Why a JSON service the node calls (generation endpoint, reward service, prompt and image
/// services, the proxy) gave no usable answer. `service` names it for the operator; a timeout or
/// a transport failure is worth trying again, the others are the service's answer.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("{service}: no answer within {secs} s")]
    Timeout { service: String, secs: u64 },
    #[error("{service}: {source}")]
    Transport {
        service: String,
        source: reqwest::Error,
    },
    #[error("{service}: HTTP {status}, unreadable answer: {source}")]
    Unreadable {
        service: String,
        status: reqwest::StatusCode,
        source: ReadError,
    },
    /// It answered with an error status; `detail` is its reason, clipped.
    #[error("{service}: HTTP {status}: {detail}")]
    Refused {
        service: String,
        status: reqwest::StatusCode,
        detail: String,
    },
    /// It answered, but not what was asked for.
    #[error("{service}: {problem}")]
    Malformed { service: String, problem: String },
}

impl ServiceError {
    pub fn malformed(service: &str, problem: impl Into<String>) -> Self {
        Self::Malformed {
            service: service.to_string(),
            problem: problem.into(),
        }
    }
}

/// Sends `request` within `timeout` and reads a JSON answer of at most `limit` bytes. An error
/// status comes back as [`ServiceError::Refused`] with the answer's `detail` or `error`. The
/// HTTP client's own errors lose the URL: `service` says where, as much as the caller wants
/// said (a miner's error goes back to its validators).
pub async fn call_json(
    service: &str,
    request: reqwest::RequestBuilder,
    timeout: std::time::Duration,
    limit: usize,
) -> Result<serde_json::Value, ServiceError> {
    let response = request.timeout(timeout).send().await.map_err(|e| {
        if e.is_timeout() {
            ServiceError::Timeout {
                service: service.to_string(),
                secs: timeout.as_secs(),
            }
        } else {
            ServiceError::Transport {
                service: service.to_string(),
                source: e.without_url(),
            }
        }
    })?;
    let status = response.status();
    let body: serde_json::Value =
        json_capped(response, limit)
            .await
            .map_err(|source| ServiceError::Unreadable {
                service: service.to_string(),
                status,
                source: match source {
                    ReadError::Transport(e) => ReadError::Transport(e.without_url()),
                    other => other,
                },
            })?;
    if !status.is_success() {
        let detail = match body.get("detail").or(body.get("error")) {
            Some(serde_json::Value::String(text)) => text.clone(),
            Some(other) => other.to_string(),
            None => body.to_string(),
        };
        return Err(ServiceError::Refused {
            service: service.to_string(),
            status,
            detail: crate::text::clip(&detail, 300),
        });
    }
    Ok(body)
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("answer is over the {limit} byte limit")]
    TooLarge { limit: usize },
    #[error(transparent)]
    Transport(reqwest::Error),
    #[error("answer is not JSON: {0}")]
    Json(serde_json::Error),
}
