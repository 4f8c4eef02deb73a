//! One-minute windows per client address, for the HTTP services peers call: a bounded table
//! (IPv6 counted by its /64, at most `MAX_TRACKED` addresses, ended windows dropped at most once
//! a second), so a flood from many addresses can neither grow it nor make each lookup a scan.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const WINDOW: Duration = Duration::from_secs(60);
/// Above this many tracked addresses, windows that have ended are dropped.
const PRUNE_ABOVE: usize = 4096;
/// The most addresses tracked at once.
pub const MAX_TRACKED: usize = 65_536;

/// Whether a lookup may start tracking an address it has not seen this minute.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Create {
    /// Only look at a window that exists.
    No,
    /// Make one unless the table is at its cap.
    UnderCap,
    Always,
}

/// The key an address is counted under: IPv6 by its /64, the smallest block a host usually
/// gets, so one host cannot take a fresh window per address.
pub fn key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut segments = v6.segments();
                segments[4..].fill(0);
                IpAddr::V6(segments.into())
            }
        },
    }
}

/// Each address's window: when it started, and its counts.
type Table<W> = HashMap<IpAddr, (Instant, W)>;

/// Counts `W` per address for the current minute.
pub struct Windows<W> {
    /// The windows, and when ended ones were last dropped.
    table: Mutex<(Table<W>, Instant)>,
}

impl<W: Default> Default for Windows<W> {
    fn default() -> Self {
        Self {
            table: Mutex::new((HashMap::new(), Instant::now())),
        }
    }
}

impl<W: Default> Windows<W> {
    /// Runs `f` on `ip`'s counts for this minute; `None` when it is not tracked and `create`
    /// says not to track it.
    pub fn with<T>(&self, ip: IpAddr, create: Create, f: impl FnOnce(&mut W) -> T) -> Option<T> {
        let mut guard = self.table.lock().unwrap_or_else(|p| p.into_inner());
        let (windows, pruned) = &mut *guard;
        let now = Instant::now();
        let ip = key(ip);
        if !windows.contains_key(&ip) {
            if create == Create::No {
                return None;
            }
            if windows.len() > PRUNE_ABOVE && now.duration_since(*pruned) >= Duration::from_secs(1)
            {
                windows.retain(|_, (start, _)| now.duration_since(*start) < WINDOW);
                *pruned = now;
            }
            if create == Create::UnderCap && windows.len() >= MAX_TRACKED {
                return None;
            }
        }
        let window = windows.entry(ip).or_insert_with(|| (now, W::default()));
        if now.duration_since(window.0) >= WINDOW {
            *window = (now, W::default());
        }
        Some(f(&mut window.1))
    }
}

/// At most `limit` requests a minute per client.
pub struct PerMinute {
    limit: u32,
    windows: Windows<u32>,
}

impl PerMinute {
    pub fn new(limit: u32) -> Self {
        Self {
            limit: limit.max(1),
            windows: Windows::default(),
        }
    }

    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// Counts one request from `ip`; `Err` with the reason when it is over the limit.
    pub fn admit(&self, ip: IpAddr) -> Result<(), Limited> {
        let count = self.windows.with(ip, Create::UnderCap, |n| {
            *n = n.saturating_add(1);
            *n
        });
        match count {
            Some(n) if n <= self.limit => Ok(()),
            Some(_) => Err(Limited::Over {
                limit: self.limit,
                what: "requests",
                ip,
            }),
            None => Err(Limited::Untracked { who: "clients", ip }),
        }
    }
}

/// Why a client's request is not admitted this minute (429).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Limited {
    /// `what`: the kind of request counted ("requests", "signed requests"...).
    #[error("more than {limit} {what} a minute from {ip}")]
    Over {
        limit: u32,
        what: &'static str,
        ip: IpAddr,
    },
    /// The table of windows is full: a new client cannot be counted, so it is refused.
    #[error("too many {who} this minute; {ip} cannot be tracked")]
    Untracked { who: &'static str, ip: IpAddr },
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
        assert_eq!(
            limit.admit(a),
            Err(Limited::Over {
                limit: 2,
                what: "requests",
                ip: a
            })
        );
        assert!(limit.admit(b).is_ok());
    }

    #[test]
    fn ipv6_counts_by_its_64_and_the_table_is_capped() {
        let limit = PerMinute::new(1);
        let one: IpAddr = "2001:db8::1".parse().unwrap();
        let same_64: IpAddr = "2001:db8::ffff:2".parse().unwrap();
        assert!(limit.admit(one).is_ok());
        assert!(limit.admit(same_64).is_err());
        for i in 0..MAX_TRACKED as u32 {
            let _ = limit.admit(IpAddr::V4(i.into()));
        }
        let late: IpAddr = "2001:db9::1".parse().unwrap();
        assert!(matches!(limit.admit(late), Err(Limited::Untracked { .. })));
    }
}
