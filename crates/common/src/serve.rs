//! The node's HTTP accept loop and body filters.
//!
//! Every listener the node opens to the network is served here, under [`Limits`]: at most
//! `max_connections` at once (extra ones are closed at accept, so an idle flood cannot use up
//! the process's file descriptors), request headers within `header_timeout` (this also closes
//! idle keep-alive connections), bodies within `body_timeout` and under the route's byte limit
//! while they stream, never buffered first.

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use warp::Filter;
use warp::reply::Response;

#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {address} for {what}: {source}")]
pub struct BindError {
    pub address: SocketAddr,
    pub what: String,
    pub source: std::io::Error,
}

/// Connection limits of one listener (`[limits]` in the config).
#[derive(Debug, Clone, Copy, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Connections served at once; more are closed as they arrive.
    pub max_connections: usize,
    /// Connections from one address (IPv6: one /64; loopback is not limited unless
    /// `limit_loopback`) at once, so one peer cannot take them all.
    pub max_connections_per_address: usize,
    /// Of `max_connections`, how many only callers the listener prefers may take (the axon:
    /// validators the metagraph knows), so strangers holding connections cannot lock them out.
    pub reserved_connections: usize,
    /// Count loopback addresses per address too (tests attack from 127.0.0.2–127.0.0.9).
    pub limit_loopback: bool,
    /// A request's headers must arrive within this (also the idle keep-alive limit).
    #[serde(with = "secs")]
    pub header_timeout: Duration,
    /// A request's body must arrive within this.
    #[serde(with = "secs")]
    pub body_timeout: Duration,
    /// The largest side of an image from outside (a conditional image, a miner's answer); a
    /// header claiming more is refused before any pixel is decoded.
    pub max_image_side: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 256,
            max_connections_per_address: 32,
            reserved_connections: 64,
            limit_loopback: false,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            max_image_side: crate::image::DEFAULT_MAX_SIDE,
        }
    }
}

mod secs {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let secs = f64::deserialize(d)?;
        Duration::try_from_secs_f64(secs)
            .ok()
            .filter(|d| !d.is_zero())
            .ok_or_else(|| serde::de::Error::custom(format!("{secs} is not a positive duration")))
    }
}

/// The peer's address, put on every request by [`serve`] (warp's own `addr::remote` only
/// works under warp's server).
#[derive(Debug, Clone, Copy)]
struct Peer(SocketAddr);

/// The caller's address, as [`serve`] accepted it.
pub fn peer()
-> impl Filter<Extract = (Option<SocketAddr>,), Error = std::convert::Infallible> + Copy {
    warp::ext::optional::<Peer>().map(|p: Option<Peer>| p.map(|Peer(a)| a))
}

/// Why a body was not read.
#[derive(Debug)]
pub enum BodyRefusal {
    TooLarge { limit: u64 },
    LengthRequired,
    TimedOut(Duration),
    Broken(String),
}

impl warp::reject::Reject for BodyRefusal {}

impl BodyRefusal {
    pub fn status(&self) -> warp::http::StatusCode {
        use warp::http::StatusCode;
        match self {
            Self::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::LengthRequired => StatusCode::LENGTH_REQUIRED,
            Self::TimedOut(_) => StatusCode::REQUEST_TIMEOUT,
            Self::Broken(_) => StatusCode::BAD_REQUEST,
        }
    }
}

impl std::fmt::Display for BodyRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::TooLarge { limit } => write!(f, "body is over the {limit} byte limit"),
            Self::LengthRequired => write!(f, "a Content-Length header is required"),
            Self::TimedOut(d) => write!(f, "body not received within {} s", d.as_secs_f64()),
            Self::Broken(e) => write!(f, "body could not be read: {e}"),
        }
    }
}

/// The request body, at most `limit` bytes, within `timeout`. A Content-Length over the
/// limit is refused before a byte is read; the count is enforced again while streaming.
pub fn body(
    limit: u64,
    timeout: Duration,
) -> impl Filter<Extract = (Bytes,), Error = warp::Rejection> + Clone {
    warp::header::optional::<u64>("content-length")
        .and(warp::body::stream())
        .and_then(move |length: Option<u64>, stream| async move {
            match length {
                None => return Err(warp::reject::custom(BodyRefusal::LengthRequired)),
                Some(n) if n > limit => {
                    return Err(warp::reject::custom(BodyRefusal::TooLarge { limit }));
                }
                Some(_) => {}
            }
            let capacity = length.unwrap_or(0).min(limit);
            match tokio::time::timeout(timeout, collect(stream, limit, capacity)).await {
                Ok(result) => result.map_err(warp::reject::custom),
                Err(_) => Err(warp::reject::custom(BodyRefusal::TimedOut(timeout))),
            }
        })
}

async fn collect<S, B>(stream: S, limit: u64, capacity: u64) -> Result<Bytes, BodyRefusal>
where
    S: futures::Stream<Item = Result<B, warp::Error>>,
    B: bytes::Buf,
{
    // The capacity comes from a Content-Length already checked against the limit.
    let mut out = BytesMut::with_capacity(usize::try_from(capacity).unwrap_or(0));
    let mut stream = std::pin::pin!(stream);
    while let Some(chunk) = stream.next().await {
        let mut chunk = chunk.map_err(|e| BodyRefusal::Broken(e.to_string()))?;
        let grown = (out.len() as u64).saturating_add(chunk.remaining() as u64);
        if grown > limit {
            return Err(BodyRefusal::TooLarge { limit });
        }
        while chunk.has_remaining() {
            let part = chunk.chunk();
            out.extend_from_slice(part);
            let n = part.len();
            chunk.advance(n);
        }
    }
    Ok(out.freeze())
}

/// A listener's whole route table: every request answered (refusals included), shareable
/// across connections.
pub trait Routes:
    Filter<Extract = (Response,), Error = std::convert::Infallible> + Clone + Send + Sync + 'static
{
}

impl<F> Routes for F where
    F: Filter<Extract = (Response,), Error = std::convert::Infallible>
        + Clone
        + Send
        + Sync
        + 'static
{
}

/// The addresses a listener keeps its reserved connections for (kept current by its owner).
pub type Preferred = Arc<std::sync::RwLock<std::collections::HashSet<std::net::IpAddr>>>;

/// Serves `routes` on `listener` under `limits` until `shutdown` resolves, then lets the
/// requests in flight finish.
pub async fn serve(
    listener: TcpListener,
    routes: impl Routes,
    limits: Limits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    serve_with_seats(listener, routes, limits, None, shutdown).await
}

/// As [`serve`], keeping `limits.reserved_connections` of the connections for `preferred`
/// addresses: everyone else shares the rest.
pub async fn serve_with_seats(
    listener: TcpListener,
    routes: impl Routes,
    limits: Limits,
    preferred: Option<Preferred>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    // At most u32::MAX, so shutdown can wait for every slot with one `acquire_many`.
    let max = u32::try_from(limits.max_connections.max(1)).unwrap_or(u32::MAX);
    let reserved = match &preferred {
        Some(_) => u32::try_from(limits.reserved_connections)
            .unwrap_or(u32::MAX)
            .min(max - 1),
        None => 0,
    };
    let shared_max = max - reserved;
    let slots = Arc::new(tokio::sync::Semaphore::new(shared_max as usize));
    let seats = Arc::new(tokio::sync::Semaphore::new(reserved as usize));
    let closing = tokio_util::sync::CancellationToken::new();
    let mut shutdown = std::pin::pin!(shutdown);
    // One summary line a minute, however many connections a flood brings.
    let refused = crate::refusal::RefusalCounter::new(
        "connections refused: the listener is at its connection limit",
        crate::refusal::REFUSAL_SUMMARY_EVERY,
    );
    let per_address = Arc::new(std::sync::Mutex::new(HashMap::new()));
    loop {
        let accepted = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, address) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // Out of descriptors or a transient error: wait rather than spin.
                tracing::warn!(error = %e, "cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Some(mine) = PerAddress::take(&per_address, address, &limits) else {
            refused.record("max_connections_per_address", "one address is at its limit");
            drop(stream);
            continue;
        };
        let is_preferred = preferred.as_ref().is_some_and(|set| {
            set.read()
                .unwrap_or_else(|p| p.into_inner())
                .contains(&address.ip().to_canonical())
        });
        let slot = match slots.clone().try_acquire_owned() {
            Ok(slot) => Some(slot),
            Err(_) if is_preferred => seats.clone().try_acquire_owned().ok(),
            Err(_) => None,
        };
        let Some(slot) = slot else {
            refused.record("max_connections", "the listener is full");
            drop(stream);
            continue;
        };
        let service = warp::service(routes.clone());
        let service = hyper::service::service_fn(move |mut request: hyper::Request<_>| {
            request.extensions_mut().insert(Peer(address));
            let mut service = service.clone();
            async move { tower_call(&mut service, request).await }
        });
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(limits.header_timeout)
            .max_buf_size(64 * 1024);
        // A peer that stops reading its answers stalls our writes: past the body timeout its
        // connection is dropped, so it cannot hold the slot for ever.
        let stream = WriteDeadline::new(stream, limits.body_timeout);
        let connection = http.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
        let closing = closing.clone();
        tokio::spawn(async move {
            let mut connection = std::pin::pin!(connection);
            let ended = tokio::select! {
                ended = connection.as_mut() => Some(ended),
                _ = closing.cancelled() => None,
            };
            let ended = match ended {
                Some(ended) => Some(ended),
                None => {
                    // The request in flight may finish; then the connection closes.
                    connection.as_mut().graceful_shutdown();
                    tokio::time::timeout(DRAIN, connection.as_mut()).await.ok()
                }
            };
            // Peers that hang up or time out are routine, not the operator's problem.
            if let Some(Err(e)) = ended {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop((slot, mine));
        });
    }
    drop(listener);
    closing.cancel();
    // Every slot back means every connection is done; none takes longer than DRAIN.
    let _ = tokio::time::timeout(DRAIN + Duration::from_secs(1), async {
        let _all = slots.acquire_many(shared_max).await;
        let _reserved = seats.acquire_many(reserved).await;
    })
    .await;
}

/// How long requests in flight get to finish when the listener closes.
const DRAIN: Duration = Duration::from_secs(60);

/// A stream whose writes fail once one has been stalled (the peer not reading) for `limit`.
struct WriteDeadline<T> {
    inner: T,
    limit: Duration,
    stalled: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
}

impl<T> WriteDeadline<T> {
    fn new(inner: T, limit: Duration) -> Self {
        Self {
            inner,
            limit,
            stalled: None,
        }
    }

    /// Tracks a write's outcome: a stall arms the deadline, progress disarms it.
    fn watch<R>(
        &mut self,
        cx: &mut std::task::Context<'_>,
        polled: std::task::Poll<std::io::Result<R>>,
    ) -> std::task::Poll<std::io::Result<R>> {
        use std::task::Poll;
        if polled.is_ready() {
            self.stalled = None;
            return polled;
        }
        let limit = self.limit;
        let stalled = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match std::future::Future::poll(stalled.as_mut(), cx) {
            Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("the peer read nothing for {} s", limit.as_secs_f64()),
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for WriteDeadline<T> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for WriteDeadline<T> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_write(cx, buf);
        self.watch(cx, polled)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_flush(cx);
        self.watch(cx, polled)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

async fn tower_call<S, R>(service: &mut S, request: R) -> Result<S::Response, S::Error>
where
    S: tower_service::Service<R>,
{
    std::future::poll_fn(|cx| service.poll_ready(cx)).await?;
    service.call(request).await
}

/// Open connections per address (keyed as the rate limits key them).
type Counts = Arc<std::sync::Mutex<HashMap<std::net::IpAddr, usize>>>;

/// One connection's place in its address's count, given back when it drops.
struct PerAddress {
    counts: Counts,
    key: std::net::IpAddr,
}

impl PerAddress {
    /// `None` when `peer`'s address is at its limit. Loopback is not limited unless the limits
    /// say so: it is this machine (the miner calling its endpoint, the devnet), not a stranger.
    fn take(counts: &Counts, peer: SocketAddr, limits: &Limits) -> Option<Option<Self>> {
        let limit = limits.max_connections_per_address;
        if peer.ip().is_loopback() && !limits.limit_loopback {
            return Some(None);
        }
        let key = crate::ratelimit::key(peer.ip());
        let mut map = counts.lock().unwrap_or_else(|p| p.into_inner());
        let open = map.entry(key).or_insert(0);
        if *open >= limit.max(1) {
            return None;
        }
        *open += 1;
        Some(Some(Self {
            counts: counts.clone(),
            key,
        }))
    }
}

impl Drop for PerAddress {
    fn drop(&mut self) {
        let mut map = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(open) = map.get_mut(&self.key) {
            *open = open.saturating_sub(1);
            if *open == 0 {
                map.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bodies_are_bounded_while_streaming() {
        let chunks = |sizes: &[usize]| {
            let parts: Vec<Result<Bytes, warp::Error>> = sizes
                .iter()
                .map(|n| Ok(Bytes::from(vec![1u8; *n])))
                .collect();
            futures::stream::iter(parts)
        };
        let whole = collect(chunks(&[3, 4]), 7, 7).await.unwrap();
        assert_eq!(whole.len(), 7);
        let over = collect(chunks(&[3, 4, 1]), 7, 7).await;
        assert!(matches!(over, Err(BodyRefusal::TooLarge { limit: 7 })));
    }

    #[test]
    fn connections_are_counted_per_address_and_given_back() {
        let counts: Counts = Default::default();
        let peer = |ip: &str| SocketAddr::new(ip.parse().unwrap(), 4000);
        let limits = |n: usize, limit_loopback: bool| Limits {
            max_connections_per_address: n,
            limit_loopback,
            ..Limits::default()
        };
        let (two, one) = (limits(2, false), limits(1, false));
        let first = PerAddress::take(&counts, peer("203.0.113.7"), &two).unwrap();
        let second = PerAddress::take(&counts, peer("203.0.113.7"), &two).unwrap();
        assert!(PerAddress::take(&counts, peer("203.0.113.7"), &two).is_none());
        // The same /64 is the same peer; another address has its own count.
        let v6 = PerAddress::take(&counts, peer("2001:db8::1"), &one).unwrap();
        assert!(v6.is_some());
        assert!(PerAddress::take(&counts, peer("2001:db8::2"), &one).is_none());
        drop(v6);
        assert!(PerAddress::take(&counts, peer("203.0.113.8"), &two).is_some());
        drop(first);
        assert!(PerAddress::take(&counts, peer("203.0.113.7"), &two).is_some());
        drop(second);
        // Loopback is this machine: never limited, never counted...
        for _ in 0..5 {
            assert!(matches!(
                PerAddress::take(&counts, peer("127.0.0.1"), &one),
                Some(None)
            ));
        }
        // ...unless the limits say so (tests attacking from 127.0.0.2–9).
        let held = PerAddress::take(&counts, peer("127.0.0.2"), &limits(1, true)).unwrap();
        assert!(held.is_some());
        assert!(PerAddress::take(&counts, peer("127.0.0.2"), &limits(1, true)).is_none());
    }

    #[tokio::test]
    async fn a_peer_that_stops_reading_fails_our_writes_at_the_deadline() {
        use tokio::io::AsyncWriteExt;
        let (ours, _theirs) = tokio::io::duplex(1024);
        let mut stream = WriteDeadline::new(ours, Duration::from_millis(200));
        let started = std::time::Instant::now();
        // The peer never reads: the first KiB fits the pipe, then writes stall.
        let err = stream.write_all(&[0u8; 64 * 1024]).await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
        assert!(started.elapsed() >= Duration::from_millis(200));
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn limits_parse_from_seconds() {
        let l: Limits = toml::from_str("max_connections = 3\nheader_timeout = 2.5").unwrap();
        assert_eq!(l.max_connections, 3);
        assert_eq!(l.header_timeout, Duration::from_millis(2500));
        assert_eq!(l.body_timeout, Limits::default().body_timeout);
        assert!(toml::from_str::<Limits>("body_timeout = 0").is_err());
    }
}
