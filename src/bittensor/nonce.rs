//! Replay protection for an axon, with the v7.2+ rules applied to every caller: per
//! `hotkey:uuid` nonces must grow, and a first-seen endpoint's nonce must be fresh when the
//! caller is new enough to send wall-clock nonces (version ≥ 7002000; v6 sent monotonic time).

use std::collections::HashMap;
use std::sync::Mutex;

/// v7.2+ allows `4 s + timeout` of age for an endpoint's first nonce.
const ALLOWED_DELTA_NS: u64 = 4_000_000_000;
/// Callers from version 7.2.0 on send wall-clock nonces.
const WALL_CLOCK_NONCE_VERSION: i64 = 7_002_000;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum NonceError {
    #[error("missing nonce")]
    Missing,
    #[error(
        "nonce is too old: acceptable delta is {allowed_secs:.2} seconds, this one is {age_secs:.2} s old"
    )]
    Stale { allowed_secs: f64, age_secs: f64 },
    #[error(
        "nonce {nonce} is not greater than the last one seen for this hotkey and uuid ({last})"
    )]
    Reused { nonce: u64, last: u64 },
}

/// Last nonce per `hotkey:uuid`. Bounded: once full, the entries seen longest ago are dropped.
pub struct NonceTracker {
    last: Mutex<HashMap<String, (u64, u64)>>,
    capacity: usize,
}

impl Default for NonceTracker {
    fn default() -> Self {
        Self::with_capacity(100_000)
    }
}

impl NonceTracker {
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            last: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
        }
    }

    /// Checks a nonce without recording it (recording happens only after the signature holds).
    pub fn check(
        &self,
        endpoint: &str,
        nonce: Option<u64>,
        version: Option<i64>,
        timeout_secs: f64,
        now_ns: u64,
    ) -> Result<u64, NonceError> {
        let nonce = nonce.ok_or(NonceError::Missing)?;
        let last = self.lock().get(endpoint).map(|(n, _)| *n);
        match last {
            Some(last) if nonce <= last => Err(NonceError::Reused { nonce, last }),
            Some(_) => Ok(nonce),
            None => {
                if version.unwrap_or(0) >= WALL_CLOCK_NONCE_VERSION {
                    let allowed = ALLOWED_DELTA_NS + (timeout_secs.max(0.0) * 1e9) as u64;
                    if nonce < now_ns.saturating_sub(allowed) {
                        return Err(NonceError::Stale {
                            allowed_secs: allowed as f64 / 1e9,
                            age_secs: now_ns.saturating_sub(nonce) as f64 / 1e9,
                        });
                    }
                }
                Ok(nonce)
            }
        }
    }

    /// Records an accepted nonce; a concurrent larger one wins.
    pub fn record(&self, endpoint: &str, nonce: u64, now_ns: u64) -> Result<(), NonceError> {
        let mut map = self.lock();
        if let Some((last, _)) = map.get(endpoint)
            && nonce <= *last
        {
            return Err(NonceError::Reused { nonce, last: *last });
        }
        if map.len() >= self.capacity && !map.contains_key(endpoint) {
            let oldest = map
                .iter()
                .min_by_key(|(_, (_, seen))| *seen)
                .map(|(k, _)| k.clone());
            if let Some(oldest) = oldest {
                map.remove(&oldest);
            }
        }
        map.insert(endpoint.to_string(), (nonce, now_ns));
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (u64, u64)>> {
        self.last.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_700_000_000_000_000_000;
    const SEC: u64 = 1_000_000_000;

    #[test]
    fn freshness_applies_to_new_callers_only() {
        let t = NonceTracker::default();
        let v10 = Some(10_002_000);
        assert!(t.check("a:u", Some(NOW - 15 * SEC), v10, 12.0, NOW).is_ok());
        let stale = t.check("a:u", Some(NOW - 17 * SEC), v10, 12.0, NOW);
        assert!(matches!(stale, Err(NonceError::Stale { .. })), "{stale:?}");
        assert!(stale.unwrap_err().to_string().contains("16.00 seconds"));
        // v6 sent monotonic nonces (small numbers): no freshness check.
        assert!(t.check("b:u", Some(5), Some(6_009_003), 12.0, NOW).is_ok());
        assert_eq!(
            t.check("c:u", None, v10, 12.0, NOW),
            Err(NonceError::Missing)
        );
    }

    #[test]
    fn nonces_must_grow_per_endpoint() {
        let t = NonceTracker::default();
        t.record("a:u", NOW, NOW).unwrap();
        assert!(matches!(
            t.check("a:u", Some(NOW), None, 12.0, NOW),
            Err(NonceError::Reused { .. })
        ));
        assert!(t.check("a:u", Some(NOW + 1), None, 12.0, NOW).is_ok());
        assert!(
            t.check("a:other-uuid", Some(NOW - SEC), Some(10_002_000), 12.0, NOW)
                .is_ok()
        );
        assert!(t.record("a:u", NOW - 1, NOW).is_err());
    }

    #[test]
    fn stays_bounded() {
        let t = NonceTracker::with_capacity(2);
        t.record("a", 1, 1).unwrap();
        t.record("b", 1, 2).unwrap();
        t.record("c", 1, 3).unwrap();
        assert_eq!(t.len(), 2);
        // The oldest-seen entry went.
        assert!(t.check("a", Some(1), None, 0.0, 4).is_ok());
    }
}
