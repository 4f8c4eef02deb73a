//! `healthcheck`: one GET of a running node's `/readyz` (or `/healthz`), as a probe.

use super::{CommandError, CommandResult, one_shot_runtime};
use crate::cli::HealthcheckArgs;
use nicheimage_node::config::Config;
use std::time::Duration;

/// The longest answer read: `/healthz` lists components and replicas, a few KiB.
const MAX_ANSWER: usize = 1 << 20;

pub fn run(args: &HealthcheckArgs, config: &Config) -> CommandResult {
    let address = match &args.address {
        Some(a) => a.clone(),
        // A node listening on every address is asked on loopback.
        None => {
            let listen = config.metrics.listen;
            let ip = if listen.ip().is_unspecified() {
                std::net::IpAddr::from([127, 0, 0, 1])
            } else {
                listen.ip()
            };
            std::net::SocketAddr::new(ip, listen.port()).to_string()
        }
    };
    let path = if args.live { "healthz" } else { "readyz" };
    let url = format!("http://{address}/{path}");
    let runtime = one_shot_runtime()?;
    let http = nicheimage_common::http::client().map_err(CommandError::failed)?;
    let answer = runtime.block_on(async {
        let response = http
            .get(&url)
            .timeout(Duration::from_secs(args.timeout.max(1)))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status();
        let body = nicheimage_common::http::read_capped(response, MAX_ANSWER).await;
        Ok::<_, String>((status, body))
    });
    let (status, body) = answer.map_err(|e| CommandError::failed(format!("{url}: {e}")))?;
    let body = body
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    println!("{}", body.trim());
    if status.is_success() {
        Ok(())
    } else {
        Err(CommandError::failed(format!("{url}: {status}")))
    }
}
