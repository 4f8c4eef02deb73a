//! A fixed one-minute window per client address, for the HTTP services peers call.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const WINDOW: Duration = Duration::from_secs(60);
/// Above this many tracked clients, windows that have ended are dropped.
const PRUNE_ABOVE: usize = 4096;

pub struct PerMinute {
    limit: u32,
    windows: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl PerMinute {
    pub fn new(limit: u32) -> Self {
        Self {
            limit: limit.max(1),
            windows: Mutex::new(HashMap::new()),
        }
    }

    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// Counts one request from `ip`; `Err` with the reason when it is over the limit.
    pub fn admit(&self, ip: IpAddr) -> Result<(), String> {
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if windows.len() > PRUNE_ABOVE {
            windows.retain(|_, (start, _)| now.duration_since(*start) < WINDOW);
        }
        let window = windows.entry(ip).or_insert((now, 0));
        if now.duration_since(window.0) >= WINDOW {
            *window = (now, 0);
        }
        window.1 += 1;
        if window.1 > self.limit {
            return Err(format!(
                "more than {} requests a minute from {ip}",
                self.limit
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_is_per_client() {
        let limit = PerMinute::new(2);
        let (a, b): (IpAddr, IpAddr) = ([10, 0, 0, 1].into(), [10, 0, 0, 2].into());
        assert!(limit.admit(a).is_ok());
        assert!(limit.admit(a).is_ok());
        assert!(limit.admit(a).unwrap_err().contains("more than 2"));
        assert!(limit.admit(b).is_ok());
    }
}
