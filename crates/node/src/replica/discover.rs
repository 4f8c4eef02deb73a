//! Remote replicas named by DNS (a Kubernetes headless Service, a round-robin name): the name
//! is resolved again every few seconds, and each address it gives is one remote replica, added
//! when it appears and stopped when it leaves the answer. A failed lookup keeps the replicas
//! it had (a DNS hiccup is not a dead endpoint); the replicas' own health checks say which
//! addresses answer.

use super::Shared;
use super::remote::RemoteWorker;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often a name is resolved again.
pub const RESOLVE_EVERY: Duration = Duration::from_secs(5);
/// The most addresses one name may bring (a Service's ready pods; more is a misconfiguration).
pub const MAX_ADDRESSES: usize = 64;

/// A remote endpoint as configured: an address to use as it is, or a name to follow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Fixed(String),
    Named {
        scheme: String,
        host: String,
        port: u16,
    },
}

impl Target {
    /// `http://10.0.0.2:10006` is fixed; `http://endpoint-pods.ns.svc:10006` is followed.
    /// `localhost` is fixed too (its two addresses are one endpoint), and so is every `https`
    /// name: its certificate names the host, not an address.
    pub fn parse(base: &str) -> Target {
        let base = base.trim_end_matches('/');
        let Ok(url) = reqwest::Url::parse(base) else {
            return Target::Fixed(base.to_string());
        };
        // `domain()` is `None` for IP literals.
        match (url.domain(), url.port_or_known_default()) {
            (Some(name), Some(port)) if name != "localhost" && url.scheme() == "http" => {
                Target::Named {
                    scheme: url.scheme().to_string(),
                    host: name.to_string(),
                    port,
                }
            }
            _ => Target::Fixed(base.to_string()),
        }
    }
}

/// The replicas started for one name, by address.
struct Followed {
    workers: BTreeMap<SocketAddr, CancellationToken>,
}

impl Followed {
    /// Starts workers for new addresses and stops those gone; returns (added, dropped).
    fn apply(
        &mut self,
        answer: &[SocketAddr],
        mut start: impl FnMut(SocketAddr) -> CancellationToken,
    ) -> (usize, usize) {
        // A dual-stack pod answers with both families: one replica for it, over IPv4.
        let any_v4 = answer.iter().any(SocketAddr::is_ipv4);
        let wanted: std::collections::BTreeSet<SocketAddr> = answer
            .iter()
            .copied()
            .filter(|a| !any_v4 || a.is_ipv4())
            .take(MAX_ADDRESSES)
            .collect();
        let gone: Vec<SocketAddr> = self
            .workers
            .keys()
            .filter(|a| !wanted.contains(a))
            .copied()
            .collect();
        for address in &gone {
            if let Some(token) = self.workers.remove(address) {
                token.cancel();
            }
        }
        let mut added = 0;
        for address in wanted {
            if let std::collections::btree_map::Entry::Vacant(slot) = self.workers.entry(address) {
                slot.insert(start(address));
                added += 1;
            }
        }
        (added, gone.len())
    }
}

/// Follows `host:port` until the pool stops, one remote replica per address.
pub(crate) async fn follow(
    scheme: String,
    host: String,
    port: u16,
    pool: Shared,
    next_index: Arc<AtomicUsize>,
) {
    let mut followed = Followed {
        workers: BTreeMap::new(),
    };
    let mut failed_before = false;
    loop {
        match tokio::net::lookup_host((host.as_str(), port)).await {
            Ok(addresses) => {
                failed_before = false;
                let answer: Vec<SocketAddr> = addresses.collect();
                let (added, dropped) = followed.apply(&answer, |address| {
                    let token = pool.cancel.child_token();
                    let index = next_index.fetch_add(1, Ordering::SeqCst);
                    tokio::spawn(
                        RemoteWorker {
                            index,
                            base: format!("{scheme}://{address}"),
                            pool: pool.clone(),
                            cancel: token.clone(),
                        }
                        .run(),
                    );
                    token
                });
                if added + dropped > 0 {
                    tracing::info!(%host, added, dropped, now = followed.workers.len(), "remote replicas follow the name's addresses");
                }
            }
            Err(e) if !failed_before => {
                failed_before = true;
                tracing::warn!(%host, error = %e, "cannot resolve a remote endpoint's name; keeping the replicas it had");
            }
            Err(_) => {}
        }
        tokio::select! {
            _ = pool.cancel.cancelled() => return,
            _ = tokio::time::sleep(RESOLVE_EVERY) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_followed_and_addresses_are_fixed() {
        assert_eq!(
            Target::parse("http://endpoint-pods.nicheimage.svc:10006/"),
            Target::Named {
                scheme: "http".into(),
                host: "endpoint-pods.nicheimage.svc".into(),
                port: 10006
            }
        );
        for fixed in [
            "http://10.0.0.2:10006",
            "http://[::1]:10006",
            "http://localhost:10006",
            "https://gpu-box.example:10006",
        ] {
            assert_eq!(Target::parse(fixed), Target::Fixed(fixed.into()), "{fixed}");
        }
    }

    #[test]
    fn addresses_that_appear_are_added_and_those_that_leave_are_stopped() {
        let a: SocketAddr = "127.0.0.2:1".parse().unwrap();
        let b: SocketAddr = "127.0.0.3:1".parse().unwrap();
        let c: SocketAddr = "127.0.0.4:1".parse().unwrap();
        let mut followed = Followed {
            workers: BTreeMap::new(),
        };
        let mut started = Vec::new();
        let mut start = |address| {
            started.push(address);
            CancellationToken::new()
        };
        assert_eq!(followed.apply(&[a, b], &mut start), (2, 0));
        let token_b = followed.workers[&b].clone();
        // The same answer in another order: nothing changes.
        assert_eq!(followed.apply(&[b, a], &mut start), (0, 0));
        // b left, c came.
        assert_eq!(followed.apply(&[a, c], &mut start), (1, 1));
        assert!(token_b.is_cancelled());
        assert!(!followed.workers[&a].is_cancelled());
        assert_eq!(started, vec![a, b, c]);
        // Both families from one pod: the IPv4 one only.
        let mut dual = Followed {
            workers: BTreeMap::new(),
        };
        let v6: SocketAddr = "[fd00::2]:1".parse().unwrap();
        assert_eq!(dual.apply(&[v6, a], |_| CancellationToken::new()), (1, 0));
        assert!(dual.workers.contains_key(&a));
        // An answer of thousands keeps MAX_ADDRESSES.
        let many: Vec<SocketAddr> = (0..1000u16)
            .map(|p| SocketAddr::from(([127, 0, 0, 9], p)))
            .collect();
        followed.apply(&many, |_| CancellationToken::new());
        assert_eq!(followed.workers.len(), MAX_ADDRESSES);
    }
}
