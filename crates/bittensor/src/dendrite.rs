//! The dendrite: signs and sends synapses to axons (reqwest), concurrently, and maps transport
//! failures to the synthetic status codes Python dendrites use (408 timeout, 503 unreachable, 422
//! unparsable reply), measuring `process_time` as the wall time of the call.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

use super::btauth;
use super::keypair::{CryptoType, Keypair};
use super::synapse::{self, Envelope, Synapse, TerminalInfo};
use super::{PROTOCOL_VERSION, now_ns};

/// The longest status message kept from an axon's answer, in characters.
pub const MAX_MESSAGE_CHARS: usize = 256;

/// Where to send: an axon's address and hotkey, as the metagraph lists them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AxonTarget {
    pub ip: String,
    pub port: u16,
    pub hotkey: String,
}

impl AxonTarget {
    pub fn url(&self, synapse: &str) -> String {
        let host = if self.ip.contains(':') {
            format!("[{}]", self.ip)
        } else {
            self.ip.clone()
        };
        format!("http://{host}:{}/{synapse}", self.port)
    }
}

/// One call's outcome. `status_code` 200 means `synapse` holds the axon's answer.
#[derive(Debug, Clone)]
pub struct Response<S> {
    pub status_code: u16,
    pub status_message: String,
    /// Wall time of the call, seconds (what SN23's time penalty uses).
    pub process_time: f64,
    pub synapse: S,
    /// The axon's side as it reported it (headers over body).
    pub axon: TerminalInfo,
}

impl<S> Response<S> {
    pub fn is_success(&self) -> bool {
        self.status_code == 200
    }
}

/// Largest answer read from an axon: an SN23 image is a few MB of base64.
pub const MAX_RESPONSE: usize = 32 * 1024 * 1024;

/// How a request is signed: bittensor ≤ 10's `bt_header_*` synapse headers, or bittensor 11's
/// btauth/1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scheme {
    Legacy,
    #[serde(rename = "btauth")]
    BtAuth,
}

impl Scheme {
    fn other(self) -> Self {
        match self {
            Scheme::Legacy => Scheme::BtAuth,
            Scheme::BtAuth => Scheme::Legacy,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Scheme::Legacy => "legacy",
            Scheme::BtAuth => "btauth/1",
        }
    }
}

/// How many axons' schemes are remembered (a metagraph's worth; past it the memory restarts).
const MAX_REMEMBERED: usize = 4096;

#[derive(Clone)]
pub struct Dendrite {
    keypair: Arc<Keypair>,
    uuid: String,
    client: reqwest::Client,
    /// `None`: each axon is tried with the scheme it last accepted (legacy first), and a 401
    /// is retried once with the other scheme. `Some`: that scheme only.
    fixed: Option<Scheme>,
    /// Target hotkey → the scheme it accepted.
    schemes: Arc<std::sync::Mutex<std::collections::HashMap<String, Scheme>>>,
}

impl Dendrite {
    /// A fresh uuid per dendrite keeps peers' per-`hotkey:uuid` nonce memory happy after restarts.
    pub fn new(keypair: Arc<Keypair>) -> Result<Self, reqwest::Error> {
        let client = nicheimage_common::http::client_builder()
            .pool_max_idle_per_host(4)
            .build()?;
        Ok(Self {
            keypair,
            uuid: uuid::Uuid::new_v4().to_string(),
            client,
            fixed: None,
            schemes: Arc::default(),
        })
    }

    /// Signs every request with `scheme` (`None`: per axon, as it answers).
    pub fn with_scheme(mut self, scheme: Option<Scheme>) -> Self {
        self.fixed = scheme;
        self
    }

    /// The scheme `target` is known to accept, if it answered before.
    pub fn known_scheme(&self, target: &AxonTarget) -> Option<Scheme> {
        let known = self.schemes.lock().unwrap_or_else(|p| p.into_inner());
        known.get(&target.hotkey).copied()
    }

    fn remember(&self, target: &AxonTarget, scheme: Scheme) {
        let mut known = self.schemes.lock().unwrap_or_else(|p| p.into_inner());
        if known.len() >= MAX_REMEMBERED && !known.contains_key(&target.hotkey) {
            known.clear();
        }
        known.insert(target.hotkey.clone(), scheme);
    }

    /// Another dendrite on the same connection pool with its own uuid. Peers require nonces to
    /// rise per `hotkey:uuid`, so calls that may overlap at one axon (arriving out of signing
    /// order) need separate uuids: give each concurrent caller its own sibling.
    pub fn sibling(&self) -> Self {
        Self {
            uuid: uuid::Uuid::new_v4().to_string(),
            ..self.clone()
        }
    }

    pub fn hotkey(&self) -> &str {
        self.keypair.ss58()
    }

    /// Calls one axon.
    pub async fn call<S: Synapse + Clone>(
        &self,
        target: &AxonTarget,
        synapse: &S,
        timeout: Duration,
    ) -> Response<S> {
        let started = Instant::now();
        let outcome = self.exchange_any(target, synapse, timeout, started).await;
        let process_time = started.elapsed().as_secs_f64();
        let (status, envelope, axon) = match outcome {
            Ok(exchanged) => exchanged,
            Err((code, message)) => return failure(synapse, code, message, process_time),
        };
        if status != 200 {
            return Response {
                status_code: status,
                status_message: axon.status_message.clone().unwrap_or_default(),
                process_time,
                synapse: synapse.clone(),
                axon,
            };
        }
        match serde_json::from_value::<S>(Value::Object(envelope.fields)) {
            Ok(answer) => Response {
                status_code: 200,
                status_message: axon
                    .status_message
                    .clone()
                    .unwrap_or_else(|| "Success".into()),
                process_time,
                synapse: answer,
                axon,
            },
            Err(_) => failure(
                synapse,
                422,
                "Failed to parse response: synapse fields do not match".into(),
                process_time,
            ),
        }
    }

    /// Calls many axons at once; answers come back in `targets` order.
    pub async fn call_many<S: Synapse + Clone + Sync>(
        &self,
        targets: &[AxonTarget],
        synapse: &S,
        timeout: Duration,
    ) -> Vec<Response<S>> {
        futures::future::join_all(targets.iter().map(|t| self.call(t, synapse, timeout))).await
    }

    /// One exchange in the scheme the axon is known to speak; an axon that refuses it as
    /// unauthenticated (401) is asked once more in the other scheme, with a fresh nonce.
    async fn exchange_any<S: Synapse>(
        &self,
        target: &AxonTarget,
        synapse: &S,
        timeout: Duration,
        started: Instant,
    ) -> Result<(u16, Envelope, TerminalInfo), (u16, String)> {
        // Legacy synapse signatures are sr25519: an ed25519 hotkey speaks btauth/1 only.
        let sr25519 = self.keypair.crypto() == CryptoType::Sr25519;
        let first = match self.fixed {
            Some(Scheme::Legacy) if !sr25519 => {
                return Err((
                    500,
                    "legacy synapse signatures are sr25519 only; this hotkey is ed25519 (use btauth/1)"
                        .into(),
                ));
            }
            Some(fixed) => fixed,
            None if !sr25519 => Scheme::BtAuth,
            None => self.known_scheme(target).unwrap_or(Scheme::Legacy),
        };
        let outcome = self.exchange(target, synapse, timeout, first).await;
        let unauthenticated = matches!(&outcome, Ok((401, _, _)));
        let left = timeout.saturating_sub(started.elapsed());
        if !unauthenticated {
            // Served, or refused by policy after authenticating: the scheme works there.
            if matches!(&outcome, Ok((200 | 403, _, _))) {
                self.remember(target, first);
            }
            return outcome;
        }
        if self.fixed.is_some() || !sr25519 || left.is_zero() {
            return outcome;
        }
        let second = first.other();
        let retried = self.exchange(target, synapse, left, second).await;
        match retried {
            Ok((401, envelope, mut axon)) => {
                // Both refused: say what each scheme was told.
                let told = |o: &Result<(u16, Envelope, TerminalInfo), (u16, String)>| match o {
                    Ok((_, _, axon)) => axon.status_message.clone().unwrap_or_default(),
                    Err((_, m)) => m.clone(),
                };
                let both = format!(
                    "{}: {}; {}: {}",
                    first.name(),
                    told(&outcome),
                    second.name(),
                    axon.status_message.clone().unwrap_or_default()
                );
                axon.status_message = Some(nicheimage_common::text::clip(&both, MAX_MESSAGE_CHARS));
                Ok((401, envelope, axon))
            }
            Ok(answer) => {
                if matches!(answer.0, 200 | 403) {
                    self.remember(target, second);
                }
                Ok(answer)
            }
            Err(e) => Err(e),
        }
    }

    async fn exchange<S: Synapse>(
        &self,
        target: &AxonTarget,
        synapse: &S,
        timeout: Duration,
        scheme: Scheme,
    ) -> Result<(u16, Envelope, TerminalInfo), (u16, String)> {
        let nonce = now_ns();
        let hash = synapse::body_hash();
        let signature = match scheme {
            Scheme::Legacy => {
                let message = synapse::dendrite_message(
                    nonce,
                    self.keypair.ss58(),
                    &target.hotkey,
                    &self.uuid,
                    hash,
                );
                Some(
                    self.keypair
                        .sign_hex(message.as_bytes())
                        .map_err(|e| (500, format!("cannot sign: {e}")))?,
                )
            }
            // Signed over the body below.
            Scheme::BtAuth => None,
        };
        let timeout_secs = timeout.as_secs_f64();
        let dendrite = TerminalInfo {
            // `bt_header_dendrite_ip` is informational; the axon sees our address anyway.
            ip: None,
            version: Some(PROTOCOL_VERSION as i64),
            nonce: Some(nonce),
            uuid: Some(self.uuid.clone()),
            hotkey: Some(self.keypair.ss58().to_string()),
            signature,
            ..Default::default()
        };
        let axon = TerminalInfo {
            ip: Some(target.ip.clone()),
            port: Some(i64::from(target.port)),
            hotkey: Some(target.hotkey.clone()),
            ..Default::default()
        };
        let fields = match serde_json::to_value(synapse) {
            Ok(Value::Object(map)) => map,
            _ => Map::new(),
        };
        let envelope = Envelope {
            name: Some(S::NAME.to_string()),
            timeout: Some(timeout_secs),
            total_size: Some(0),
            header_size: Some(0),
            dendrite: dendrite.clone(),
            axon: axon.clone(),
            computed_body_hash: String::new(),
            fields,
        };
        let body = serde_json::to_vec(&envelope)
            .map_err(|e| (500, format!("cannot encode synapse: {e}")))?;
        let mut request = self
            .client
            .post(target.url(S::NAME))
            .timeout(timeout)
            .header("content-type", "application/json")
            .header("name", S::NAME)
            .header("timeout", synapse::py_float(timeout_secs));
        match scheme {
            Scheme::Legacy => {
                request = request
                    .header("total_size", body.len().to_string())
                    .header("header_size", "0")
                    .header("computed_body_hash", hash);
                for (key, value) in axon
                    .to_headers("axon")
                    .into_iter()
                    .chain(dendrite.to_headers("dendrite"))
                {
                    request = request.header(key, value);
                }
            }
            Scheme::BtAuth => {
                let path = format!("/{}", S::NAME);
                let signed = btauth::sign(
                    &self.keypair,
                    "POST",
                    &path,
                    &body,
                    Some(&target.hotkey),
                    nonce,
                )
                .map_err(|e| (500, format!("cannot sign: {e}")))?;
                for (key, value) in signed {
                    request = request.header(key, value);
                }
            }
        }
        let response = request
            .body(body)
            .send()
            .await
            .map_err(|e| transport_failure(&e, target, S::NAME, timeout_secs))?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = nicheimage_common::http::read_capped(response, MAX_RESPONSE)
            .await
            .map_err(|e| match e {
                nicheimage_common::http::ReadError::Transport(e) => {
                    transport_failure(&e, target, S::NAME, timeout_secs)
                }
                too_large => (413, format!("the axon's {too_large}")),
            })?;
        let mut axon_info = TerminalInfo::default();
        let envelope = if status == 200 {
            // Walked once without building it first: many small objects would cost 100× their
            // size as a tree.
            let envelope: Envelope = nicheimage_common::json_budget::parse(
                &bytes,
                nicheimage_common::json_budget::MAX_VALUES,
            )
            .map_err(|e| (422, format!("Failed to parse response: {e}")))?;
            axon_info = envelope.axon.clone();
            envelope
        } else {
            // `message` from legacy axons, `detail` from btauth/1 servers.
            let message = serde_json::from_slice::<Value>(&bytes).ok().and_then(|v| {
                ["message", "detail"]
                    .iter()
                    .find_map(|k| v.get(*k).and_then(Value::as_str).map(str::to_string))
            });
            axon_info.status_message = message;
            Envelope::default()
        };
        merge_present(&mut axon_info, TerminalInfo::from_headers(&headers, "axon"));
        // The axon's words go into our reasons, state and status lines: capped here.
        axon_info.status_message = axon_info
            .status_message
            .map(|m| nicheimage_common::text::clip(&m, MAX_MESSAGE_CHARS));
        axon_info.status_code = Some(i64::from(status));
        if axon_info.status_message.is_none() && status == 200 {
            axon_info.status_message = Some("Success".into());
        }
        Ok((status, envelope, axon_info))
    }
}

fn failure<S: Clone>(synapse: &S, code: u16, message: String, process_time: f64) -> Response<S> {
    let axon = TerminalInfo {
        status_code: Some(i64::from(code)),
        status_message: Some(message.clone()),
        ..Default::default()
    };
    Response {
        status_code: code,
        status_message: message,
        process_time,
        synapse: synapse.clone(),
        axon,
    }
}

/// Header values override the body's where present (as the Python dendrite merges).
fn merge_present(into: &mut TerminalInfo, from: TerminalInfo) {
    macro_rules! take {
        ($($f:ident),*) => { $( if from.$f.is_some() { into.$f = from.$f; } )* };
    }
    take!(
        status_code,
        status_message,
        process_time,
        ip,
        port,
        version,
        nonce,
        uuid,
        hotkey,
        signature
    );
}

fn transport_failure(
    error: &reqwest::Error,
    target: &AxonTarget,
    name: &str,
    timeout_secs: f64,
) -> (u16, String) {
    if error.is_timeout() {
        (408, format!("Request timeout after {timeout_secs} seconds"))
    } else if error.is_connect() {
        (
            503,
            format!(
                "Service unavailable at {}:{}/{name}",
                target.ip, target.port
            ),
        )
    } else if error.is_body() || error.is_decode() {
        (400, format!("Payload error: {error}"))
    } else {
        (500, format!("Client error: {error}"))
    }
}
