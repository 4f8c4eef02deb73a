//! JSON-RPC over one websocket, shared by every caller, reconnecting with exponential backoff
//! (1 s doubling to 60 s) so an unreachable chain costs one quick error, not a retry storm.

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

struct Connection {
    socket: Option<Socket>,
    next_id: u64,
    failures: u32,
    retry_at: Option<Instant>,
    last_error: String,
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
            last_error: String::new(),
        };
        Self {
            url: url.to_string(),
            connection: tokio::sync::Mutex::new(connection),
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    fn unreachable(&self, reason: impl Into<String>) -> ChainError {
        ChainError::Unreachable {
            endpoint: self.url.clone(),
            reason: reason.into(),
        }
    }

    /// One call; the connection is (re)opened as needed and dropped on any transport error.
    pub async fn call(&self, method: &str, params: Value) -> Result<Value, ChainError> {
        let mut conn = self.connection.lock().await;
        if conn.socket.is_none() {
            if let Some(at) = conn.retry_at.filter(|at| Instant::now() < *at) {
                let wait = at.saturating_duration_since(Instant::now()).as_secs_f64();
                return Err(
                    self.unreachable(format!("{} (next try in {wait:.0} s)", conn.last_error))
                );
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
                    conn.last_error = reason.clone();
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
            None => return Err(self.unreachable("not connected")),
        };
        match result {
            Ok(Ok(Ok(value))) => Ok(value),
            Ok(Ok(Err(rpc_error))) => Err(ChainError::Decode(format!("{method}: {rpc_error}"))),
            Ok(Err(transport)) => {
                conn.socket = None;
                conn.last_error = transport.clone();
                Err(self.unreachable(transport))
            }
            Err(_) => {
                conn.socket = None;
                Err(self.unreachable(format!(
                    "{method} got no answer in {} s",
                    CALL_TIMEOUT.as_secs()
                )))
            }
        }
    }

    async fn connect(&self) -> Result<Socket, String> {
        nicheimage_common::http::install_crypto_provider();
        let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
            .max_message_size(Some(MAX_MESSAGE))
            .max_frame_size(Some(MAX_MESSAGE));
        let connecting =
            tokio_tungstenite::connect_async_with_config(self.url.as_str(), Some(config), false);
        match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
            Ok(Ok((socket, _))) => Ok(socket),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no connection in {} s", CONNECT_TIMEOUT.as_secs())),
        }
    }
}

/// Sends a request and reads until its answer; `Err` = transport, `Ok(Err)` = RPC error.
async fn exchange(
    socket: &mut Socket,
    id: u64,
    request: String,
) -> Result<Result<Value, String>, String> {
    socket
        .send(Message::text(request))
        .await
        .map_err(|e| e.to_string())?;
    while let Some(message) = socket.next().await {
        let text = match message.map_err(|e| e.to_string())? {
            Message::Text(text) => text.to_string(),
            Message::Binary(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Message::Close(_) => return Err("connection closed by the node".into()),
            _ => continue,
        };
        let Ok(reply) = serde_json::from_str::<Value>(&text) else {
            continue;
        };
        if reply.get("id").and_then(Value::as_u64) != Some(id) {
            continue;
        }
        if let Some(error) = reply.get("error") {
            return Ok(Err(error.to_string()));
        }
        return Ok(Ok(reply.get("result").cloned().unwrap_or(Value::Null)));
    }
    Err("connection closed".into())
}
