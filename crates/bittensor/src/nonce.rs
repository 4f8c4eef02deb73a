//! Replay protection for an axon: the rules of bittensor ≥ 7.2 (wall-clock nonces that must be
//! fresh and must grow per `hotkey:uuid`), applied to every caller whatever version it claims.
//! The version and timeout headers are not signed, so neither may widen the window: a missing
//! or pre-7.2 version is refused, and the timeout that widens it is capped at the largest this
//! node serves.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

/// bittensor allows `4 s + timeout` of age for a nonce.
const ALLOWED_DELTA_NS: u64 = 4_000_000_000;
/// How far ahead of our clock a nonce may be: callers' clocks (or ours) drift, and a miner
/// whose clock runs a little slow must not refuse every validator. A nonce from further ahead
/// would stay "fresh" and block its endpoint's expiry for as long as it claims.
pub const MAX_AHEAD_NS: u64 = 30_000_000_000;
/// Callers from version 7.2.0 on send wall-clock nonces.
pub const WALL_CLOCK_NONCE_VERSION: i64 = 7_002_000;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum NonceError {
    #[error("missing nonce")]
    Missing,
    #[error(
        "missing bt_header_dendrite_version: only bittensor 7.2 or newer (wall-clock nonces) is served"
    )]
    MissingVersion,
    #[error(
        "dendrite version {0} is older than 7.2.0: only wall-clock nonces (bittensor 7.2 or newer) are served"
    )]
    OldVersion(i64),
    #[error(
        "nonce is too old: acceptable delta is {allowed_secs:.2} seconds, this one is {age_secs:.2} s old"
    )]
    Stale { allowed_secs: f64, age_secs: f64 },
    #[error(
        "nonce {nonce} is not greater than the last one seen for this hotkey and uuid ({last})"
    )]
    Reused { nonce: u64, last: u64 },
    #[error("nonce is {ahead_secs:.2} s ahead of this axon's clock (at most 30 s is accepted)")]
    Ahead { ahead_secs: f64 },
    #[error("too many callers inside the nonce window; try again in a few seconds")]
    Full,
    #[error("more than {MAX_UUIDS_PER_HOTKEY} uuids of this hotkey inside the nonce window")]
    TooManyUuids,
}

/// Live `hotkey:uuid` entries one hotkey may hold: a dendrite uses one uuid, and a validator
/// with a busy proxy one per request in flight (ours: up to `max_concurrent`, 64 by default);
/// one caller rotating uuids holds at most 1% of the table.
pub const MAX_UUIDS_PER_HOTKEY: usize = 1024;

/// The hotkey part of a `hotkey:uuid` endpoint.
fn hotkey_of(endpoint: &str) -> &str {
    endpoint.split(':').next().unwrap_or(endpoint)
}

/// Last nonce per `hotkey:uuid`, for callers the blacklist admitted. Bounded: at `capacity`
/// entries inside the window, new callers are refused (nobody whose replay would still pass is
/// forgotten); entries older than the widest window go, since a nonce that old fails the
/// freshness rule anyway.
pub struct NonceTracker {
    table: Mutex<Table>,
    capacity: usize,
    max_timeout_secs: f64,
}

#[derive(Default)]
struct Table {
    /// endpoint → (last nonce, when it was recorded)
    last: HashMap<String, (u64, u64)>,
    /// Recordings oldest first; one is current when its time matches `last`'s.
    order: VecDeque<(String, u64)>,
    /// Live endpoints per hotkey.
    per_hotkey: HashMap<String, usize>,
}

impl Table {
    fn forget(&mut self, key: &str) {
        if self.last.remove(key).is_none() {
            return;
        }
        let hotkey = hotkey_of(key);
        if let Some(n) = self.per_hotkey.get_mut(hotkey) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_hotkey.remove(hotkey);
            }
        }
    }
}

impl Default for NonceTracker {
    fn default() -> Self {
        Self::new(100_000, 12.0)
    }
}

impl NonceTracker {
    /// `max_timeout_secs`: the largest request timeout the axon serves.
    pub fn new(capacity: usize, max_timeout_secs: f64) -> Self {
        Self {
            table: Mutex::new(Table::default()),
            capacity: capacity.max(1),
            max_timeout_secs: if max_timeout_secs.is_finite() {
                max_timeout_secs.max(0.0)
            } else {
                60.0
            },
        }
    }

    /// The age a nonce may have for a request claiming `timeout_secs`.
    pub fn window_ns(&self, timeout_secs: f64) -> u64 {
        let timeout = if timeout_secs.is_finite() {
            timeout_secs.clamp(0.0, self.max_timeout_secs)
        } else {
            self.max_timeout_secs
        };
        ALLOWED_DELTA_NS.saturating_add((timeout * 1e9) as u64)
    }

    /// Checks a nonce without recording it (recording happens only once the request is
    /// signed, admitted and parsed).
    pub fn check(
        &self,
        endpoint: &str,
        nonce: Option<u64>,
        version: Option<i64>,
        timeout_secs: f64,
        now_ns: u64,
    ) -> Result<u64, NonceError> {
        let nonce = nonce.ok_or(NonceError::Missing)?;
        match version {
            None => return Err(NonceError::MissingVersion),
            Some(v) if v < WALL_CLOCK_NONCE_VERSION => return Err(NonceError::OldVersion(v)),
            Some(_) => {}
        }
        let allowed = self.window_ns(timeout_secs);
        if nonce > now_ns.saturating_add(MAX_AHEAD_NS) {
            return Err(NonceError::Ahead {
                ahead_secs: nonce.saturating_sub(now_ns) as f64 / 1e9,
            });
        }
        if nonce <= now_ns.saturating_sub(allowed) {
            return Err(NonceError::Stale {
                allowed_secs: allowed as f64 / 1e9,
                age_secs: now_ns.saturating_sub(nonce) as f64 / 1e9,
            });
        }
        match self.lock().last.get(endpoint) {
            Some((last, _)) if nonce <= *last => Err(NonceError::Reused { nonce, last: *last }),
            _ => Ok(nonce),
        }
    }

    /// Records an accepted nonce; a concurrent larger one wins.
    pub fn record(&self, endpoint: &str, nonce: u64, now_ns: u64) -> Result<(), NonceError> {
        let widest = self.window_ns(self.max_timeout_secs);
        let mut table = self.lock();
        if let Some((last, _)) = table.last.get(endpoint)
            && nonce <= *last
        {
            return Err(NonceError::Reused { nonce, last: *last });
        }
        // Kept until the nonce itself is too old: one from a clock running ahead stays fresh
        // past its recording (at most MAX_AHEAD_NS), and must not be forgotten while a replay
        // of it would pass. Only entries past the widest window are ever forgotten: a full
        // table refuses new callers rather than reopening replay for those inside it.
        let kept_from = nonce.max(now_ns).min(now_ns.saturating_add(MAX_AHEAD_NS));
        let expired = now_ns.saturating_sub(widest);
        while let Some((_, seen)) = table.order.front() {
            if *seen >= expired {
                break;
            }
            let Some((key, seen)) = table.order.pop_front() else {
                break;
            };
            if table.last.get(&key).is_some_and(|(_, s)| *s == seen) {
                table.forget(&key);
            }
        }
        if !table.last.contains_key(endpoint) {
            if table.last.len() >= self.capacity {
                return Err(NonceError::Full);
            }
            let hotkey = hotkey_of(endpoint);
            let live = table.per_hotkey.get(hotkey).copied().unwrap_or(0);
            if live >= MAX_UUIDS_PER_HOTKEY {
                return Err(NonceError::TooManyUuids);
            }
            table
                .per_hotkey
                .insert(hotkey.to_string(), live.saturating_add(1));
        }
        // Re-recordings leave stale order entries behind; drop them before they pile up.
        if table.order.len() >= self.capacity.saturating_mul(2) {
            let Table { last, order, .. } = &mut *table;
            order.retain(|(key, seen)| last.get(key).is_some_and(|(_, s)| s == seen));
        }
        table.last.insert(endpoint.to_string(), (nonce, kept_from));
        table.order.push_back((endpoint.to_string(), kept_from));
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.lock().last.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_700_000_000_000_000_000;
    const SEC: u64 = 1_000_000_000;
    const V10: Option<i64> = Some(10_002_000);

    #[test]
    fn freshness_applies_to_every_caller() {
        let t = NonceTracker::default();
        assert!(t.check("a:u", Some(NOW - 15 * SEC), V10, 12.0, NOW).is_ok());
        let stale = t.check("a:u", Some(NOW - 17 * SEC), V10, 12.0, NOW);
        assert!(matches!(stale, Err(NonceError::Stale { .. })), "{stale:?}");
        assert!(stale.unwrap_err().to_string().contains("16.00 seconds"));
        // An unsigned version header cannot switch the rule off.
        assert_eq!(
            t.check("b:u", Some(5), Some(6_009_003), 12.0, NOW),
            Err(NonceError::OldVersion(6_009_003))
        );
        assert_eq!(
            t.check("b:u", Some(NOW), None, 12.0, NOW),
            Err(NonceError::MissingVersion)
        );
        assert_eq!(
            t.check("c:u", None, V10, 12.0, NOW),
            Err(NonceError::Missing)
        );
        // Nor can an unsigned timeout widen it past the largest this node serves (12 s).
        let old = Some(NOW - 40 * SEC);
        assert!(matches!(
            t.check("d:u", old, V10, 3600.0, NOW),
            Err(NonceError::Stale { .. })
        ));
        assert!(
            t.check("d:u", Some(NOW - 15 * SEC), V10, 3600.0, NOW)
                .is_ok()
        );
        assert!(
            t.check("d:u", Some(NOW - 15 * SEC), V10, f64::NAN, NOW)
                .is_ok()
        );
    }

    #[test]
    fn nonces_must_grow_per_endpoint() {
        let t = NonceTracker::default();
        t.record("a:u", NOW, NOW).unwrap();
        assert!(matches!(
            t.check("a:u", Some(NOW), V10, 12.0, NOW),
            Err(NonceError::Reused { .. })
        ));
        assert!(t.check("a:u", Some(NOW + 1), V10, 12.0, NOW).is_ok());
        assert!(
            t.check("a:other-uuid", Some(NOW - SEC), V10, 12.0, NOW)
                .is_ok()
        );
        assert!(t.record("a:u", NOW - 1, NOW).is_err());
    }

    #[test]
    fn stays_bounded_without_reopening_replay() {
        let t = NonceTracker::new(2, 60.0);
        t.record("a", NOW, NOW).unwrap();
        t.record("b", NOW, NOW + 1).unwrap();
        // Full of callers inside their window: a new one is refused, nobody is evicted.
        assert_eq!(t.record("c", NOW, NOW + 2), Err(NonceError::Full));
        assert_eq!(t.len(), 2);
        assert!(matches!(
            t.check("a", Some(NOW), V10, 0.0, NOW + 3),
            Err(NonceError::Reused { .. })
        ));
        // A known caller records again (and its stale order entries do not pile up).
        for i in 0..10 {
            t.record("a", NOW + 10 + i, NOW + 10 + i).unwrap();
        }
        assert_eq!(t.len(), 2);
        // Past the widest window (4 s + 60 s) old entries go: freshness refuses their nonces.
        let later = NOW + 65 * SEC;
        t.record("d", later, later).unwrap();
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn nonces_from_the_future_are_refused() {
        let t = NonceTracker::new(10, 12.0);
        assert!(t.check("e", Some(NOW + 29 * SEC), V10, 12.0, NOW).is_ok());
        assert!(matches!(
            t.check("e", Some(u64::MAX), V10, 12.0, NOW),
            Err(NonceError::Ahead { .. })
        ));
        assert!(matches!(
            t.check("e", Some(NOW + 100 * SEC), V10, 12.0, NOW),
            Err(NonceError::Ahead { .. })
        ));
        // One slightly ahead is kept until it is itself too old, so its replay is caught.
        let ahead = NOW + 20 * SEC;
        t.record("e", ahead, NOW).unwrap();
        let later = NOW + 34 * SEC;
        assert!(matches!(
            t.check("e", Some(ahead), V10, 12.0, later),
            Err(NonceError::Reused { .. })
        ));
    }

    #[test]
    fn one_hotkey_rotating_uuids_cannot_fill_the_table() {
        let t = NonceTracker::new(4 * MAX_UUIDS_PER_HOTKEY, 12.0);
        for i in 0..MAX_UUIDS_PER_HOTKEY {
            t.record(&format!("5Ab:{i}"), NOW, NOW).unwrap();
        }
        assert_eq!(
            t.record("5Ab:one-more", NOW, NOW),
            Err(NonceError::TooManyUuids)
        );
        // Known uuids go on; other hotkeys are untouched.
        t.record("5Ab:0", NOW + 1, NOW + 1).unwrap();
        t.record("5Cd:x", NOW, NOW).unwrap();
        // Once the window has passed, the hotkey's entries go and so does its count.
        let later = NOW + 17 * SEC;
        t.record("5Ab:fresh", later, later).unwrap();
        assert_eq!(t.len(), 1);
    }
}
