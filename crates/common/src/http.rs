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

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("answer is over the {limit} byte limit")]
    TooLarge { limit: usize },
    #[error(transparent)]
    Transport(reqwest::Error),
    #[error("answer is not JSON: {0}")]
    Json(serde_json::Error),
}
