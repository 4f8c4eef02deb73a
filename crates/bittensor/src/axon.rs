//! The axon: bittensor's Synapse server on warp. Order of checks (stricter than upstream, which
//! blacklists before verifying and lets unsigned requests through): route → headers → signature →
//! nonce → body hash → blacklist, all before a byte of the body is read; then the body (bounded
//! while it streams) → nonce recorded → priority → handler. Replies carry the status in the HTTP
//! status, in `bt_header_axon_*` headers and in the body's `axon` object, as Python axons do.

use std::collections::{BTreeMap, HashMap};
use std::marker::PhantomData;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::FutureExt;
use futures::future::BoxFuture;
use serde_json::{Map, Value, json};
use warp::Filter;
use warp::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use warp::reply::Response;

use super::btauth;
use super::keypair::{self, Keypair};
use super::nonce::{NonceError, NonceTracker};
use super::priority::PriorityGate;
use super::synapse::{self, Envelope, Synapse, TerminalInfo};
use super::{PROTOCOL_VERSION, now_ns, ss58};

/// Bodies above this are refused: SN23 images are a few MB of base64.
pub const DEFAULT_MAX_BODY: u64 = 32 * 1024 * 1024;
const DEFAULT_TIMEOUT_SECS: f64 = 12.0;
/// At most the first 64 characters of what a peer sent, for a reason we send back or keep.
fn clip(text: &str) -> String {
    nicheimage_common::text::clip(text, 64)
}

/// A dendrite uuid is 36 characters (`uuid1`); anything past this is not one.
pub const MAX_UUID_CHARS: usize = 64;
/// The largest request timeout that widens the nonce window (every SN23 model asks for 12 s).
pub const DEFAULT_MAX_TIMEOUT_SECS: f64 = 12.0;

/// Who is calling, as far as the verified headers say.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The caller's ss58 hotkey (signature-verified before any hook sees it).
    pub hotkey: String,
    pub ip: Option<IpAddr>,
    pub port: Option<u16>,
    pub version: Option<i64>,
    pub uuid: String,
    /// The request's own timeout, seconds.
    pub timeout_secs: f64,
}

/// An axon route's hooks for one synapse type.
pub trait Handler<S: Synapse>: Send + Sync + 'static {
    /// Why a caller is turned away or forwarding failed; its `Display` is the reason the caller
    /// reads (403 from the two checks, 500 from `forward`).
    type Error: std::error::Error + Send + 'static;

    /// `Err` refuses with 403, before the body is read (legacy requests) or once the
    /// signature over the body verified (btauth/1).
    fn blacklist(&self, _caller: &Caller) -> Result<(), Self::Error> {
        Ok(())
    }
    /// A check of a hotkey that is claimed but not verified yet, which must change nothing
    /// (no counters, no rate windows): `Err` refuses a btauth/1 request with 403 before its
    /// body is read, so strangers cost no body reads.
    fn admissible(&self, _hotkey: &str) -> Result<(), Self::Error> {
        Ok(())
    }
    /// Higher is admitted first when the handler slots are busy.
    fn priority(&self, _caller: &Caller, _synapse: &S) -> f64 {
        0.0
    }
    /// The answer, or why there is none (500).
    fn forward(
        self: Arc<Self>,
        caller: Caller,
        synapse: S,
    ) -> BoxFuture<'static, Result<S, Self::Error>>;
}

/// A refusal: the status code and the reason the caller reads.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub status: u16,
    pub message: String,
}

impl warp::reject::Reject for Refused {}

/// A refusal before the body was read, with the synapse name the reply carries.
#[derive(Debug)]
struct Refused {
    failure: Failure,
    name: String,
}

impl Failure {
    fn new(status: u16, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
}

/// A handler with its synapse type erased: refusals arrive as the 403 they become.
trait Route: Send + Sync {
    fn blacklist(&self, caller: &Caller) -> Result<(), Failure>;
    fn admissible(&self, hotkey: &str) -> Result<(), Failure>;
    fn run(
        &self,
        caller: Caller,
        fields: Map<String, Value>,
        deadline: tokio::time::Instant,
        gate: PriorityGate,
    ) -> BoxFuture<'static, Result<Map<String, Value>, Failure>>;
}

struct TypedRoute<S, H> {
    handler: Arc<H>,
    _synapse: PhantomData<fn() -> S>,
}

impl<S: Synapse, H: Handler<S>> Route for TypedRoute<S, H> {
    fn blacklist(&self, caller: &Caller) -> Result<(), Failure> {
        self.handler
            .blacklist(caller)
            .map_err(|e| Failure::new(403, e.to_string()))
    }

    fn admissible(&self, hotkey: &str) -> Result<(), Failure> {
        self.handler
            .admissible(hotkey)
            .map_err(|e| Failure::new(403, e.to_string()))
    }

    fn run(
        &self,
        caller: Caller,
        fields: Map<String, Value>,
        deadline: tokio::time::Instant,
        gate: PriorityGate,
    ) -> BoxFuture<'static, Result<Map<String, Value>, Failure>> {
        let handler = self.handler.clone();
        async move {
            let synapse: S = serde_json::from_value(Value::Object(fields))
                .map_err(|e| Failure::new(400, format!("synapse fields do not parse: {e}")))?;
            let priority = handler.priority(&caller, &synapse);
            let _slot = tokio::time::timeout_at(deadline, gate.admit(priority))
                .await
                .map_err(|_| Failure::new(408, "timed out waiting for a free handler slot"))?;
            let timeout = caller.timeout_secs;
            let answer = tokio::time::timeout_at(deadline, handler.forward(caller, synapse))
                .await
                .map_err(|_| {
                    Failure::new(408, format!("forward timed out after {timeout} seconds"))
                })?
                .map_err(|e| Failure::new(500, e.to_string()))?;
            match serde_json::to_value(answer) {
                Ok(Value::Object(map)) => Ok(map),
                Ok(_) => Err(Failure::new(500, "handler answer is not a JSON object")),
                Err(e) => Err(Failure::new(500, format!("handler answer: {e}"))),
            }
        }
        .boxed()
    }
}

/// Request outcomes by status code, for the console and metrics.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AxonStats {
    pub by_status: BTreeMap<u16, u64>,
    pub last_failure: Option<String>,
}

pub struct AxonBuilder {
    keypair: Arc<Keypair>,
    routes: HashMap<String, Arc<dyn Route>>,
    max_body: u64,
    max_timeout_secs: f64,
    limits: nicheimage_common::serve::Limits,
    slots: usize,
    external: Option<(String, u16)>,
    preferred: Option<nicheimage_common::serve::Preferred>,
}

impl AxonBuilder {
    pub fn new(keypair: Arc<Keypair>) -> Self {
        Self {
            keypair,
            routes: HashMap::new(),
            max_body: DEFAULT_MAX_BODY,
            max_timeout_secs: DEFAULT_MAX_TIMEOUT_SECS,
            limits: nicheimage_common::serve::Limits::default(),
            slots: 16,
            external: None,
            preferred: None,
        }
    }

    /// The largest request timeout that widens the nonce window (the timeout header is not
    /// signed): the largest this node's models ask for.
    pub fn max_timeout(mut self, secs: f64) -> Self {
        self.max_timeout_secs = secs;
        self
    }

    /// Connection limits of the listener (`[limits]`).
    pub fn limits(mut self, limits: nicheimage_common::serve::Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Serves `S` under its name and aliases.
    pub fn attach<S: Synapse, H: Handler<S>>(mut self, handler: Arc<H>) -> Self {
        let route: Arc<dyn Route> = Arc::new(TypedRoute::<S, H> {
            handler,
            _synapse: PhantomData,
        });
        for name in std::iter::once(S::NAME).chain(S::ALIASES.iter().copied()) {
            self.routes.insert(name.to_string(), route.clone());
        }
        self
    }

    pub fn max_body(mut self, bytes: u64) -> Self {
        self.max_body = bytes;
        self
    }

    /// How many requests run the handler at once; the rest wait in priority order.
    pub fn slots(mut self, slots: usize) -> Self {
        self.slots = slots;
        self
    }

    /// Keep `limits.reserved_connections` of the listener's connections for these addresses
    /// (validators the caller knows from the metagraph).
    pub fn seats(mut self, preferred: nicheimage_common::serve::Preferred) -> Self {
        self.preferred = Some(preferred);
        self
    }

    /// The address published on chain, echoed in replies' `axon` info.
    pub fn external(mut self, ip: String, port: u16) -> Self {
        self.external = Some((ip, port));
        self
    }

    pub fn build(self) -> Arc<Axon> {
        Arc::new(Axon {
            keypair: self.keypair,
            uuid: uuid::Uuid::new_v4().to_string(),
            routes: self.routes,
            nonces: NonceTracker::new(100_000, self.max_timeout_secs),
            // 1024 per hotkey: 100 requests a second from one validator, the window being 10 s.
            replays: btauth::ReplayCache::new(100_000, 1024),
            gate: PriorityGate::new(self.slots),
            max_body: self.max_body,
            limits: self.limits,
            external: self.external,
            preferred: self.preferred,
            stats: Mutex::new(AxonStats::default()),
            parsing: Arc::new(tokio::sync::Semaphore::new(
                std::thread::available_parallelism().map_or(2, |n| n.get().clamp(1, 8)),
            )),
        })
    }
}

pub struct Axon {
    keypair: Arc<Keypair>,
    uuid: String,
    routes: HashMap<String, Arc<dyn Route>>,
    nonces: NonceTracker,
    /// btauth/1's seen `(hotkey, nonce)` pairs.
    replays: btauth::ReplayCache,
    gate: PriorityGate,
    max_body: u64,
    limits: nicheimage_common::serve::Limits,
    external: Option<(String, u16)>,
    preferred: Option<nicheimage_common::serve::Preferred>,
    stats: Mutex<AxonStats>,
    /// Body parsing runs on blocking threads, at most one per core at a time, so a large body
    /// never holds an async worker (other listeners in the process stay responsive).
    parsing: Arc<tokio::sync::Semaphore>,
}

/// A request whose headers passed every check; its body is not read yet.
struct Admitted {
    caller: Caller,
    dendrite: TerminalInfo,
    name: String,
    auth: Auth,
    now_ns: u64,
    started: Instant,
}

/// What the admission checks read of a request.
struct Request<'a> {
    method: &'a str,
    path: &'a str,
    query: Option<&'a str>,
    headers: &'a HeaderMap,
    peer: Option<SocketAddr>,
}

/// How an admitted request is authenticated once its body is here.
enum Auth {
    /// `bt_header_*`: the signature is checked already; the nonce is recorded with the body.
    Legacy { endpoint: String, nonce: u64 },
    /// btauth/1: the signature covers the body, so it is checked with it.
    BtAuth {
        claim: btauth::Claim,
        method: String,
        target: String,
    },
}

/// A request that has passed signature, nonce, body-hash and blacklist checks.
struct Verified {
    caller: Caller,
    envelope: Envelope,
    name: String,
}

impl Axon {
    pub fn hotkey(&self) -> &str {
        self.keypair.ss58()
    }

    pub fn stats(&self) -> AxonStats {
        self.stats.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The warp filter serving every attached synapse (any method, like upstream's GET+POST).
    pub fn routes(
        self: &Arc<Self>,
    ) -> impl Filter<Extract = (Response,), Error = std::convert::Infallible>
    + Clone
    + Send
    + Sync
    + 'static {
        let admit = self.clone();
        let handle = self.clone();
        let refused = self.clone();
        // `None` without a `?`; `Some("")` for a bare `?` (signed as sent).
        let query = warp::query::raw()
            .map(Some)
            .or(warp::any().map(|| None::<String>))
            .unify();
        warp::method()
            .and(warp::path::full())
            .and(query)
            .and(warp::header::headers_cloned())
            .and(nicheimage_common::serve::peer())
            .and_then(
                move |method: warp::http::Method,
                      path: warp::path::FullPath,
                      query: Option<String>,
                      headers: HeaderMap,
                      peer: Option<SocketAddr>| {
                    let request = Request {
                        method: method.as_str(),
                        path: path.as_str(),
                        query: query.as_deref(),
                        headers: &headers,
                        peer,
                    };
                    let result = admit.admit(&request);
                    async move { result.map_err(warp::reject::custom) }
                },
            )
            .and(nicheimage_common::serve::body(
                self.max_body,
                self.limits.body_timeout,
            ))
            .then(move |admitted: Admitted, body: Bytes| {
                let axon = handle.clone();
                async move { axon.handle(admitted, body).await }
            })
            .recover(move |rejection: warp::Rejection| {
                let axon = refused.clone();
                async move { Ok::<_, std::convert::Infallible>(axon.refuse_transport(&rejection)) }
            })
            .unify()
    }

    /// Requests refused before the handler ran: by their headers, or their body's transport.
    fn refuse_transport(&self, rejection: &warp::Rejection) -> Response {
        let (failure, name) = if let Some(refused) = rejection.find::<Refused>() {
            (refused.failure.clone(), Some(refused.name.clone()))
        } else if let Some(body) = rejection.find::<nicheimage_common::serve::BodyRefusal>() {
            (Failure::new(body.status().as_u16(), body.to_string()), None)
        } else {
            (
                Failure::new(400, format!("unreadable request: {rejection:?}")),
                None,
            )
        };
        let status = StatusCode::from_u16(failure.status).unwrap_or(StatusCode::BAD_REQUEST);
        let label = name.clone().unwrap_or_default();
        tracing::debug!(synapse = %label, status = failure.status, message = %failure.message, "axon refused a request");
        self.record(
            status,
            Some(format!("{} {label}: {}", failure.status, failure.message)),
        );
        self.reply(
            status,
            Envelope {
                name,
                ..Default::default()
            },
            Some(failure.message),
            Instant::now(),
        )
    }

    /// Binds `address` and serves in the background until the returned handle is stopped or
    /// dropped (tests, benchmarks, tools; the node's components use `serve`).
    pub async fn spawn(self: &Arc<Self>, address: SocketAddr) -> std::io::Result<RunningAxon> {
        let listener = tokio::net::TcpListener::bind(address).await?;
        let local = listener.local_addr()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let axon = self.clone();
        let task = tokio::spawn(async move {
            axon.serve(listener, async {
                stopped.await.ok();
            })
            .await
        });
        Ok(RunningAxon {
            address: local,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// Serves on `listener` until `shutdown` resolves.
    pub async fn serve(
        self: &Arc<Self>,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) {
        nicheimage_common::serve::serve_with_seats(
            listener,
            self.routes(),
            self.limits,
            self.preferred.clone(),
            shutdown,
        )
        .await;
    }

    async fn handle(self: Arc<Self>, admitted: Admitted, body: Bytes) -> Response {
        let started = admitted.started;
        let name = admitted.name.clone();
        let verified = match self.parsing.clone().acquire_owned().await {
            Ok(permit) => {
                let axon = self.clone();
                tokio::task::spawn_blocking(move || {
                    let _permit = permit;
                    axon.verify(admitted, &body)
                })
                .await
                .unwrap_or_else(|e| Err(Failure::new(500, format!("reading the body: {e}"))))
            }
            Err(_) => Err(Failure::new(503, "the axon is shutting down")),
        };
        let outcome = match verified {
            Ok(verified) => self.dispatch(verified, started).await,
            Err(failure) => Err((
                failure,
                Envelope {
                    name: Some(name.clone()),
                    ..Default::default()
                },
            )),
        };
        match outcome {
            Ok(envelope) => {
                self.record(StatusCode::OK, None);
                self.reply(StatusCode::OK, envelope, None, started)
            }
            Err((failure, envelope)) => {
                let status = StatusCode::from_u16(failure.status)
                    .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                let message = failure.message;
                tracing::debug!(synapse = %name, status = failure.status, %message, "axon refused a request");
                self.record(
                    status,
                    Some(format!("{} {name}: {message}", status.as_u16())),
                );
                self.reply(status, envelope, Some(message), started)
            }
        }
    }

    /// Counts an answer by status; a failure becomes the last one shown.
    fn record(&self, status: StatusCode, failure: Option<String>) {
        let mut stats = self.stats.lock().unwrap_or_else(|p| p.into_inner());
        *stats.by_status.entry(status.as_u16()).or_default() += 1;
        if failure.is_some() {
            stats.last_failure = failure;
        }
    }

    /// Every check the headers allow, before the body is read: route, timeout, then the
    /// scheme the headers carry (btauth/1 when `X-Bittensor-Version` is present, else legacy).
    fn admit(&self, request: &Request<'_>) -> Result<Admitted, Refused> {
        let started = Instant::now();
        let name = request
            .path
            .trim_start_matches('/')
            .split('/')
            .next()
            .unwrap_or("")
            .to_string();
        self.admit_named(&name, request, started)
            .map_err(|failure| Refused { failure, name })
    }

    fn admit_named(
        &self,
        name: &str,
        request: &Request<'_>,
        started: Instant,
    ) -> Result<Admitted, Failure> {
        let (headers, peer) = (request.headers, request.peer);
        let Some(route) = self.routes.get(name) else {
            let mut known: Vec<&String> = self.routes.keys().collect();
            known.sort();
            return Err(Failure::new(
                404,
                format!("Synapse name '{name}' not found. Available synapses {known:?}"),
            ));
        };
        let header = |key: &str| headers.get(key).and_then(|v| v.to_str().ok());
        let timeout_secs = match header("timeout") {
            None => DEFAULT_TIMEOUT_SECS,
            Some(t) => t
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|t| t.is_finite() && *t > 0.0)
                .ok_or_else(|| {
                    Failure::new(
                        400,
                        format!("timeout header {:?} is not a positive number", clip(t)),
                    )
                })?,
        }
        .min(3600.0);
        // btauth/1 when its version header is there; its headers are judged by that scheme.
        if headers.contains_key(btauth::HEADER_VERSION) {
            return self.admit_btauth(route.as_ref(), name, request, timeout_secs, started);
        }
        let dendrite = TerminalInfo::from_headers(headers, "dendrite");
        let hotkey = dendrite
            .hotkey
            .clone()
            .ok_or_else(|| Failure::new(401, "missing bt_header_dendrite_hotkey"))?;
        let public = ss58::decode(&hotkey)
            .map_err(|e| Failure::new(401, format!("dendrite hotkey {:?}: {e}", clip(&hotkey))))?;
        let signature = dendrite.signature.as_deref().ok_or_else(|| {
            Failure::new(
                401,
                "unsigned request refused (no bt_header_dendrite_signature)",
            )
        })?;
        let signature = keypair::parse_signature_hex(signature)
            .ok_or_else(|| Failure::new(401, "signature is not 64 bytes of hex"))?;
        let uuid = dendrite
            .uuid
            .clone()
            .ok_or_else(|| Failure::new(401, "missing bt_header_dendrite_uuid"))?;
        // Kept per caller in the nonce table: a uuid's shape, not any string.
        if uuid.is_empty()
            || uuid.len() > MAX_UUID_CHARS
            || !uuid.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(Failure::new(
                400,
                format!(
                    "bt_header_dendrite_uuid must be 1 to {MAX_UUID_CHARS} letters, digits or '-'"
                ),
            ));
        }
        let nonce = dendrite
            .nonce
            .ok_or_else(|| Failure::new(401, "missing or non-numeric bt_header_dendrite_nonce"))?;
        let claimed_hash = header("computed_body_hash").unwrap_or("");
        // A sha3-256 in hex, or nothing: it goes into the signed message and into replies.
        if claimed_hash.len() > 66 {
            return Err(Failure::new(
                400,
                format!(
                    "computed_body_hash of {} characters is not a hash",
                    claimed_hash.len()
                ),
            ));
        }
        let message =
            synapse::dendrite_message(nonce, &hotkey, self.keypair.ss58(), &uuid, claimed_hash);
        if !keypair::verify(&public, message.as_bytes(), &signature) {
            // Legacy synapse signatures are sr25519; an ed25519 hotkey fails here by nature.
            return Err(Failure::new(
                401,
                format!(
                    "Signature mismatch with {message} (legacy signatures are sr25519; an ed25519 hotkey signs btauth/1)"
                ),
            ));
        }
        let endpoint = format!("{hotkey}:{uuid}");
        let now_ns = now_ns();
        self.nonces
            .check(
                &endpoint,
                Some(nonce),
                dendrite.version,
                timeout_secs,
                now_ns,
            )
            .map_err(|e| Failure::new(401, e.to_string()))?;
        if claimed_hash != synapse::body_hash() {
            return Err(Failure::new(
                400,
                format!(
                    "computed_body_hash {claimed_hash:?} does not match the body ({})",
                    synapse::body_hash()
                ),
            ));
        }
        let caller = Caller {
            hotkey,
            ip: peer.map(|p| p.ip()),
            port: peer.map(|p| p.port()),
            version: dendrite.version,
            uuid,
            timeout_secs,
        };
        route.blacklist(&caller)?;
        Ok(Admitted {
            caller,
            dendrite: TerminalInfo {
                ip: peer.map(|p| p.ip().to_string()).or(dendrite.ip.clone()),
                port: peer.map(|p| i64::from(p.port())),
                ..dendrite
            },
            name: name.to_string(),
            auth: Auth::Legacy { endpoint, nonce },
            now_ns,
            started,
        })
    }

    /// btauth/1 headers: shape, receiver and freshness as the SDK checks them, then whether
    /// the claimed hotkey could be admitted at all; the signature waits for the body.
    fn admit_btauth(
        &self,
        route: &dyn Route,
        name: &str,
        request: &Request<'_>,
        timeout_secs: f64,
        started: Instant,
    ) -> Result<Admitted, Failure> {
        let now_ns = now_ns();
        let header = |key: &str| {
            request
                .headers
                .get(key)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let claim = btauth::Claim::from_headers(header, self.keypair.ss58(), now_ns)
            .map_err(|e| Failure::new(e.status(), e.to_string()))?;
        route.admissible(&claim.hotkey)?;
        let target = match request.query {
            None => request.path.to_string(),
            Some(query) => format!("{}?{query}", request.path),
        };
        let peer = request.peer;
        let caller = Caller {
            hotkey: claim.hotkey.clone(),
            ip: peer.map(|p| p.ip()),
            port: peer.map(|p| p.port()),
            version: None,
            uuid: String::new(),
            timeout_secs,
        };
        Ok(Admitted {
            caller,
            dendrite: TerminalInfo {
                ip: peer.map(|p| p.ip().to_string()),
                port: peer.map(|p| i64::from(p.port())),
                hotkey: Some(claim.hotkey.clone()),
                nonce: Some(claim.nonce),
                ..Default::default()
            },
            name: name.to_string(),
            auth: Auth::BtAuth {
                claim,
                method: request.method.to_string(),
                target,
            },
            now_ns,
            started,
        })
    }

    /// The body of an admitted request: authenticated where the scheme needs the body
    /// (btauth/1: signature, replay, then the blacklist), parsed, and only then a legacy
    /// nonce recorded.
    fn verify(&self, admitted: Admitted, body: &[u8]) -> Result<Verified, Failure> {
        let Admitted {
            caller,
            dendrite,
            name,
            auth,
            now_ns,
            ..
        } = admitted;
        if let Auth::BtAuth {
            claim,
            method,
            target,
        } = &auth
        {
            let refused = |e: btauth::AuthError| Failure::new(e.status(), e.to_string());
            claim.verify(method, target, body).map_err(refused)?;
            // The clock read again: the body may have taken a while.
            self.replays
                .accept(&claim.hotkey, claim.nonce, super::now_ns())
                .map_err(refused)?;
            let route = self
                .routes
                .get(&name)
                .ok_or_else(|| Failure::new(404, format!("Synapse name '{name}' not found")))?;
            route.blacklist(&caller)?;
        }
        let mut envelope: Envelope =
            nicheimage_common::json_budget::parse(body, nicheimage_common::json_budget::MAX_VALUES)
                .map_err(|e| {
                    Failure::new(400, format!("body is not a synapse JSON object: {e}"))
                })?;
        if let Auth::Legacy { endpoint, nonce } = &auth {
            self.nonces.record(endpoint, *nonce, now_ns).map_err(|e| {
                let status = match e {
                    NonceError::Full => 503,
                    NonceError::TooManyUuids => 429,
                    _ => 401,
                };
                Failure::new(status, e.to_string())
            })?;
        }
        envelope.strip_protocol_keys();
        envelope.name = Some(name.clone());
        envelope.timeout = Some(caller.timeout_secs);
        // The headers are what was signed; they win over the body's copy.
        envelope.dendrite = dendrite;
        Ok(Verified {
            caller,
            envelope,
            name,
        })
    }

    async fn dispatch(
        &self,
        verified: Verified,
        started: Instant,
    ) -> Result<Envelope, (Failure, Envelope)> {
        let Verified {
            caller,
            mut envelope,
            name,
        } = verified;
        let Some(route) = self.routes.get(&name).cloned() else {
            return Err((
                Failure::new(404, format!("Synapse name '{name}' not found")),
                envelope,
            ));
        };
        let deadline =
            tokio::time::Instant::from_std(started + Duration::from_secs_f64(caller.timeout_secs));
        let fields = std::mem::take(&mut envelope.fields);
        match route.run(caller, fields, deadline, self.gate.clone()).await {
            Ok(fields) => {
                envelope.fields = fields;
                Ok(envelope)
            }
            Err(failure) => Err((failure, envelope)),
        }
    }

    /// Stamps our side (`axon` info, signed) and writes body + headers.
    fn reply(
        &self,
        status: StatusCode,
        mut envelope: Envelope,
        error: Option<String>,
        started: Instant,
    ) -> Response {
        let nonce = now_ns();
        let dendrite_hotkey = envelope.dendrite.hotkey.clone().unwrap_or_default();
        let signature = self
            .keypair
            .sign_hex(
                synapse::axon_message(nonce, &dendrite_hotkey, self.keypair.ss58(), &self.uuid)
                    .as_bytes(),
            )
            .ok();
        envelope.axon = TerminalInfo {
            status_code: Some(i64::from(status.as_u16())),
            status_message: Some(error.clone().unwrap_or_else(|| "Success".into())),
            process_time: Some(started.elapsed().as_secs_f64()),
            ip: self.external.as_ref().map(|(ip, _)| ip.clone()),
            port: self.external.as_ref().map(|(_, port)| i64::from(*port)),
            version: Some(PROTOCOL_VERSION as i64),
            nonce: Some(nonce),
            uuid: Some(self.uuid.clone()),
            hotkey: Some(self.keypair.ss58().to_string()),
            signature,
        };
        envelope.computed_body_hash = synapse::body_hash().to_string();
        let body = match &error {
            // `message` for legacy dendrites, `detail` as btauth/1 servers answer.
            Some(message) => json!({ "message": message, "detail": message }),
            None => serde_json::to_value(&envelope)
                .unwrap_or_else(|e| json!({ "message": e.to_string() })),
        };
        let body = serde_json::to_vec(&body).unwrap_or_default();
        let mut response = Response::new(body.clone().into());
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        let mut pairs = vec![
            (
                "name".to_string(),
                envelope.name.clone().unwrap_or_default(),
            ),
            (
                "timeout".to_string(),
                synapse::py_float(envelope.timeout.unwrap_or(DEFAULT_TIMEOUT_SECS)),
            ),
        ];
        pairs.extend(envelope.axon.to_headers("axon"));
        pairs.extend(envelope.dendrite.to_headers("dendrite"));
        pairs.push(("total_size".into(), body.len().to_string()));
        pairs.push(("header_size".into(), "0".into()));
        pairs.push((
            "computed_body_hash".into(),
            envelope.computed_body_hash.clone(),
        ));
        for (key, value) in pairs {
            let value: String = value
                .chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect();
            if let (Ok(k), Ok(v)) = (HeaderName::try_from(key), HeaderValue::try_from(value)) {
                headers.insert(k, v);
            }
        }
        response
    }
}

/// An axon serving in the background (see `Axon::spawn`).
pub struct RunningAxon {
    pub address: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl RunningAxon {
    /// Stops accepting, lets in-flight requests finish, and waits for that.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for RunningAxon {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
