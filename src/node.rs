//! Builds the node from the effective config: which components run, and with what settings.

use crate::config::Config;
use crate::metrics::MetricsServer;
use crate::runtime::{EventChannel, Runtime};
use crate::telemetry::Telemetry;
use std::sync::Arc;
use std::time::Duration;

/// The components available in this build. Roles (endpoint, miner, validator, proxy, reward)
/// join this list as they are built.
pub fn build(config: &Config, channel: EventChannel) -> Runtime {
    let mut runtime = Runtime::new(config.supervisor.clone(), channel);
    runtime.add(Arc::new(Telemetry {
        interval: Duration::from_secs(config.node.telemetry_interval_secs),
        device: config.node.device,
    }));
    if config.metrics.enabled {
        runtime.add(Arc::new(MetricsServer {
            listen: config.metrics.listen,
        }));
    }
    runtime
}
