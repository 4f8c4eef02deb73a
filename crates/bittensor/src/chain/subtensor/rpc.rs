//! JSON-RPC over one websocket, shared by every caller, reconnecting with exponential backoff
//! (1 s doubling to 60 s) so an unreachable chain costs one quick error, not a retry storm.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::chain::ChainError;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Metadata is a few MB; blocks' extrinsic lists can be large too.
const MAX_MESSAGE: usize = 64 << 20;

/// Why a call got no answer: the connection is dropped and the chain counts as unreachable.
#[derive(Debug, Clone, thiserror::Error)]
enum Transport {
    #[error("no connection in {} s", CONNECT_TIMEOUT.as_secs())]
    ConnectTimeout,
    #[error("no answer in {} s", CALL_TIMEOUT.as_secs())]
    CallTimeout,
    #[error(transparent)]
    Socket(Arc<tokio_tungstenite::tungstenite::Error>),
    #[error("connection closed by the node")]
    Closed,
    #[error("not connected")]
    NotConnected,
}

impl From<tokio_tungstenite::tungstenite::Error> for Transport {
    fn from(e: tokio_tungstenite::tungstenite::Error) -> Self {
        Self::Socket(Arc::new(e))
    }
}

/// The node's answer to one call: its `result`, or the JSON-RPC `error` object it sent.
enum Answer {
    Result(Value),
    Error(Value),
}

struct Connection {
    socket: Option<Socket>,
    next_id: u64,
    failures: u32,
    retry_at: Option<Instant>,
    last_error: Option<Transport>,
}

pub struct Rpc {
    url: String,
    connection: tokio::sync::Mutex<Connection>,
}

impl Rpc {
    pub fn new(url: &str) -> Self {
        let connection = Connection {
            socket: None,
            next_id: 1,
            failures: 0,
            retry_at: None,
            last_error: None,
        };
        Self {
            url: url.to_string(),
            connection: tokio::sync::Mutex::new(connection),
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    fn unreachable(&self, reason: impl std::fmt::Display) -> ChainError {
        ChainError::Unreachable {
            endpoint: self.url.clone(),
            reason: reason.to_string(),
        }
    }

    /// One call; the connection is (re)opened as needed and dropped on any transport error.
    pub async fn call(&self, method: &str, params: Value) -> Result<Value, ChainError> {
        let mut conn = self.connection.lock().await;
        if conn.socket.is_none() {
            if let Some(at) = conn.retry_at.filter(|at| Instant::now() < *at) {
                let wait = at.saturating_duration_since(Instant::now()).as_secs_f64();
                let last = conn.last_error.clone().unwrap_or(Transport::NotConnected);
                return Err(self.unreachable(format!("{last} (next try in {wait:.0} s)")));
            }
            match self.connect().await {
                Ok(socket) => {
                    conn.socket = Some(socket);
                    conn.failures = 0;
                    conn.retry_at = None;
                }
                Err(reason) => {
                    conn.failures += 1;
                    let backoff = Duration::from_secs(1 << conn.failures.min(6)).min(MAX_BACKOFF);
                    conn.retry_at = Some(Instant::now() + backoff);
                    conn.last_error = Some(reason.clone());
                    return Err(self.unreachable(reason));
                }
            }
        }
        let id = conn.next_id;
        conn.next_id += 1;
        let request =
            json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params }).to_string();
        let result = match conn.socket.as_mut() {
            Some(socket) => tokio::time::timeout(CALL_TIMEOUT, exchange(socket, id, request)).await,
            None => return Err(self.unreachable(Transport::NotConnected)),
        };
        match result.unwrap_or(Err(Transport::CallTimeout)) {
            Ok(Answer::Result(value)) => Ok(value),
            Ok(Answer::Error(rpc_error)) => {
                Err(ChainError::Decode(format!("{method}: {rpc_error}")))
            }
            Err(transport) => {
                conn.socket = None;
                conn.last_error = Some(transport.clone());
                Err(self.unreachable(format!("{method}: {transport}")))
            }
        }
    }

    async fn connect(&self) -> Result<Socket, Transport> {
        nicheimage_common::http::install_crypto_provider();
        let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
            .max_message_size(Some(MAX_MESSAGE))
            .max_frame_size(Some(MAX_MESSAGE));
        let connecting =
            tokio_tungstenite::connect_async_with_config(self.url.as_str(), Some(config), false);
        match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
            Ok(Ok((socket, _))) => Ok(socket),
            Ok(Err(e)) => Err(e.into()),
            Err(_) => Err(Transport::ConnectTimeout),
        }
    }
}

/// Sends a request and reads until its answer.
async fn exchange(socket: &mut Socket, id: u64, request: String) -> Result<Answer, Transport> {
    socket.send(Message::text(request)).await?;
    while let Some(message) = socket.next().await {
        let text = match message? {
            Message::Text(text) => text.to_string(),
            Message::Binary(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Message::Close(_) => return Err(Transport::Closed),
            _ => continue,
        };
        let Ok(reply) = serde_json::from_str::<Value>(&text) else {
            continue;
        };
        if reply.get("id").and_then(Value::as_u64) != Some(id) {
            continue;
        }
        if let Some(error) = reply.get("error") {
            return Ok(Answer::Error(error.clone()));
        }
        return Ok(Answer::Result(
            reply.get("result").cloned().unwrap_or(Value::Null),
        ));
    }
    Err(Transport::Closed)
}
