//! How components serve HTTP: bind (a taken port is an error naming what it was for, not a
//! panic), announce the address to the state store, serve until the component is cancelled.

use crate::runtime::{ComponentContext, Event};
use nicheimage_common::serve::{BindError, Limits, Routes, serve};
use std::net::SocketAddr;
use tokio::net::TcpListener;

/// Binds `address` and reports it as this component's listener.
pub async fn bind(
    ctx: &ComponentContext,
    address: SocketAddr,
    what: &str,
) -> Result<TcpListener, BindError> {
    let fail = |source| BindError {
        address,
        what: what.to_string(),
        source,
    };
    let listener = TcpListener::bind(address).await.map_err(fail)?;
    let bound = listener.local_addr().map_err(fail)?;
    tracing::info!(address = %bound, "serving {what}");
    ctx.events
        .send(Event::Listening {
            component: ctx.name.clone(),
            address: bound.to_string(),
        })
        .await;
    Ok(listener)
}

/// Serves `routes` on `listener` under the node's limits; returns once the component is
/// cancelled and requests drained.
pub async fn until_cancelled(
    ctx: &ComponentContext,
    listener: TcpListener,
    routes: impl Routes,
    limits: Limits,
) {
    serve(
        listener,
        routes,
        limits,
        ctx.cancel.clone().cancelled_owned(),
    )
    .await;
}
