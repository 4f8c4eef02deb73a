//! `GET /healthz` (alive: every component running), `GET /readyz` (able to serve: a replica is
//! ready where the node generates) and `GET /metrics`, on a loopback listener.

mod exposition;

pub use exposition::render;

use crate::runtime::state::unix_ms_now;
use crate::runtime::{Component, ComponentContext, NodeState};
use futures::FutureExt;
use futures::future::BoxFuture;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::watch;
use warp::Filter;
use warp::http::StatusCode;

pub struct MetricsServer {
    pub listen: SocketAddr,
    pub limits: nicheimage_common::serve::Limits,
}

/// The routes, separate from the listener so tests can drive them directly.
pub fn routes(
    state: watch::Receiver<Arc<NodeState>>,
) -> impl Filter<Extract = (warp::reply::Response,), Error = std::convert::Infallible> + Clone {
    let health_state = state.clone();
    let healthz = warp::path!("healthz").and(warp::get()).map(move || {
        let s = health_state.borrow().clone();
        let status = if s.healthy() {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        let body = serde_json::json!({
            "status": if s.healthy() { "ok" } else { "degraded" },
            "version": s.version,
            "uptime_secs": s.uptime_secs(unix_ms_now()),
            "components": s.components,
            "replicas": s.replicas,
            // Per replica: starting, ready, failing (with the reason) or stopped.
            "replica_health": s.replicas.values().map(|r| serde_json::json!({
                "index": r.index,
                "health": r.status.health(),
                "reason": match r.status.health() {
                    "failing" => r.last_error.as_deref(),
                    _ => None,
                },
            })).collect::<Vec<_>>(),
        });
        warp::reply::with_status(warp::reply::json(&body), status).into_response()
    });
    let ready_state = state.clone();
    let readyz = warp::path!("readyz").and(warp::get()).map(move || {
        let s = ready_state.borrow().clone();
        let (status, body) = match s.readiness() {
            Ok(()) => (StatusCode::OK, serde_json::json!({ "status": "ready" })),
            Err(reason) => (
                StatusCode::SERVICE_UNAVAILABLE,
                serde_json::json!({ "status": "not ready", "reason": reason.to_string() }),
            ),
        };
        warp::reply::with_status(warp::reply::json(&body), status).into_response()
    });
    let metrics = warp::path!("metrics").and(warp::get()).map(move || {
        let s = state.borrow().clone();
        warp::reply::with_header(
            render(&s, unix_ms_now()),
            "content-type",
            "text/plain; version=0.0.4; charset=utf-8",
        )
        .into_response()
    });
    healthz
        .or(readyz)
        .unify()
        .or(metrics)
        .unify()
        .recover(|_| async {
            Ok::<_, std::convert::Infallible>(
                warp::reply::with_status(
                    "not found; try /healthz, /readyz or /metrics\n",
                    StatusCode::NOT_FOUND,
                )
                .into_response(),
            )
        })
        .unify()
}

use warp::Reply;

impl Component for MetricsServer {
    fn name(&self) -> &str {
        "metrics"
    }

    fn run(self: Arc<Self>, ctx: ComponentContext) -> BoxFuture<'static, anyhow::Result<()>> {
        async move {
            // Bind ourselves: warp's own bind panics when the port is taken.
            let listener = crate::listen::bind(&ctx, self.listen, "/healthz and /metrics").await?;
            crate::listen::until_cancelled(&ctx, listener, routes(ctx.state.clone()), self.limits)
                .await;
            Ok(())
        }
        .boxed()
    }
}
