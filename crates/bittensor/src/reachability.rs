//! Is the axon reachable where the chain says it is? Compares the published ip:port with the
//! local bind and knocks on the published address with an unsigned request, which a live axon of
//! ours answers with 401 (so any HTTP answer proves the path works).

use std::net::SocketAddr;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq)]
pub struct Reachability {
    pub published: String,
    pub bound: SocketAddr,
    /// Whether the published port is the one we bind (a NAT or proxy may map it; then says so).
    pub same_port: bool,
    /// `Ok(status)` if something answered HTTP at the published address.
    pub answer: Result<u16, NoAnswer>,
}

/// Why nothing answered at the published address.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum NoAnswer {
    #[error("timed out after 5 s")]
    Timeout,
    /// Refused, unroutable, not HTTP... (the HTTP client's sentence).
    #[error("{0}")]
    Failed(String),
}

impl Reachability {
    pub fn summary(&self) -> String {
        let port = if self.same_port {
            String::new()
        } else {
            format!(" (published port differs from bound {})", self.bound)
        };
        match &self.answer {
            Ok(status) => format!("axon at {} answers (HTTP {status}){port}", self.published),
            Err(e) => format!("axon at {} does NOT answer: {e}{port}", self.published),
        }
    }
}

pub async fn check(
    published_ip: &str,
    published_port: u16,
    bound: SocketAddr,
    synapse: &str,
) -> Reachability {
    let host = if published_ip.contains(':') {
        format!("[{published_ip}]")
    } else {
        published_ip.to_string()
    };
    let published = format!("{host}:{published_port}");
    let answer = async {
        let client = nicheimage_common::http::client_builder()
            .timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| NoAnswer::Failed(e.to_string()))?;
        let response = client
            .post(format!("http://{published}/{synapse}"))
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .await
            .map_err(|e| {
                if e.is_timeout() {
                    NoAnswer::Timeout
                } else {
                    NoAnswer::Failed(e.to_string())
                }
            })?;
        Ok(response.status().as_u16())
    }
    .await;
    Reachability {
        published,
        bound,
        same_port: published_port == bound.port(),
        answer,
    }
}
