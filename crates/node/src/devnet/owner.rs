//! The subnet owner's side of the devnet: organic requests, signed with the owner key, sent
//! through the validator's proxy at a steady pace, so its counters and checks have traffic.

use std::sync::Arc;
use std::time::Duration;

use ed25519_dalek::SigningKey;
use futures::FutureExt;
use futures::future::BoxFuture;
use serde_json::json;

use crate::runtime::{Component, ComponentContext};

pub struct OwnerTraffic {
    pub url: String,
    pub key: SigningKey,
    pub model: String,
    pub every: Duration,
    pub timeout: Duration,
}

impl Component for OwnerTraffic {
    fn name(&self) -> &str {
        "owner-client"
    }

    fn run(self: Arc<Self>, ctx: ComponentContext) -> BoxFuture<'static, anyhow::Result<()>> {
        async move {
            let client = nicheimage_common::http::client()?;
            let mut n: u64 = 0;
            loop {
                tokio::select! {
                    _ = ctx.cancel.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(self.every) => {}
                }
                n += 1;
                let seed = nicheimage_bittensor::now_ns() % 1_000_000_000;
                let body = json!({
                    "payload": {
                        "model_name": self.model,
                        "prompt": crate::validator::challenge::prompt(seed),
                        "seed": seed,
                    },
                    "miner_uid": -1,
                });
                // The proxy counts every answer; here only the outcome is logged.
                let answer = tokio::select! {
                    _ = ctx.cancel.cancelled() => return Ok(()),
                    a = crate::proxy::client::request(&client, &self.url, &self.key, &body, self.timeout) => a,
                };
                match answer {
                    Ok(image) => {
                        tracing::debug!(request = n, bytes = image.len(), "organic request served")
                    }
                    Err(e) => tracing::info!(request = n, error = %e, "organic request refused"),
                }
            }
        }
        .boxed()
    }
}
