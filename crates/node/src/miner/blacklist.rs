//! Who may use the miner's axon, as NicheImage's miner decided it — now configurable and counted:
//! 1. the hotkey must be in the metagraph ("Unrecognized hotkey"), unless non-registered callers
//!    are allowed; 2. a validator permit if required; 3. stake ≥ `min_stake`; 4. a rate limit per
//!    validator: `requests_per_unit × floor(stake / stake_per_unit)` requests per window, the window
//!    starting at the caller's first request and restarting once it is older than `window_secs`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::config::BlacklistConfig;
use crate::runtime::event::ValidatorCounters;
use nicheimage_bittensor::chain::Neuron;

/// Why a caller is turned away; `Display` is the wording of NicheImage's miner (validators' logs
/// show it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("Unrecognized hotkey")]
    Unrecognized,
    #[error("No validator permit")]
    NoPermit,
    #[error("Not enough stake")]
    LowStake,
    #[error("Limit exceeded")]
    LimitExceeded,
}

/// The one counter every caller the metagraph does not know is counted under.
pub const NOT_REGISTERED: &str = "(not registered)";

struct Window {
    started: Instant,
    count: u32,
}

/// Rate windows and per-validator counters.
#[derive(Default)]
pub struct Blacklist {
    windows: HashMap<String, Window>,
    pub counters: HashMap<String, ValidatorCounters>,
}

impl Blacklist {
    /// Records how long a generation for `hotkey` took.
    pub fn served(&mut self, hotkey: &str, latency: Duration) {
        if let Some(c) = self.counters.get_mut(hotkey) {
            c.last_latency_ms = Some(latency.as_millis() as u64);
        }
    }

    /// Decides one request from `hotkey` (`neuron`: its metagraph entry, if registered).
    pub fn check(
        &mut self,
        rules: &BlacklistConfig,
        hotkey: &str,
        neuron: Option<&Neuron>,
        now: Instant,
    ) -> Result<(), Refusal> {
        // Counters exist per registered neuron; every stranger shares one, so keys made up by
        // the thousand leave no state behind.
        let key = match neuron {
            Some(_) => hotkey,
            None => NOT_REGISTERED,
        };
        let counters = self.counters.entry(key.to_string()).or_default();
        counters.requests += 1;
        counters.last_request_unix_ms = Some(crate::runtime::state::unix_ms_now());
        counters.uid = neuron.map(|n| n.uid);
        counters.stake = neuron.map(|n| n.total_stake_tokens()).unwrap_or(0.0);
        let decision = Self::decide(&mut self.windows, rules, hotkey, neuron, now, counters);
        match decision {
            Ok(()) => counters.allowed += 1,
            Err(refusal) => *counters.rejected.entry(refusal.to_string()).or_default() += 1,
        }
        decision
    }

    /// The rules that need no state (registration, permit, stake): what a claimed hotkey is
    /// judged by before its request is authenticated. Counts nothing.
    pub fn admissible(rules: &BlacklistConfig, neuron: Option<&Neuron>) -> Result<(), Refusal> {
        let Some(neuron) = neuron else {
            return if rules.allow_non_registered {
                Ok(())
            } else {
                Err(Refusal::Unrecognized)
            };
        };
        if rules.force_validator_permit && !neuron.validator_permit {
            return Err(Refusal::NoPermit);
        }
        // Total stake (alpha + TaoWeight × root), as bittensor 11.3's metagraph counts it.
        if neuron.total_stake_tokens() < rules.min_stake {
            return Err(Refusal::LowStake);
        }
        Ok(())
    }

    fn decide(
        windows: &mut HashMap<String, Window>,
        rules: &BlacklistConfig,
        hotkey: &str,
        neuron: Option<&Neuron>,
        now: Instant,
        counters: &mut ValidatorCounters,
    ) -> Result<(), Refusal> {
        Self::admissible(rules, neuron)?;
        let Some(neuron) = neuron else {
            return Ok(());
        };
        let stake = neuron.total_stake_tokens();
        let units = if rules.stake_per_unit > 0.0 {
            (stake / rules.stake_per_unit).floor()
        } else {
            1.0
        };
        let limit = (f64::from(rules.requests_per_unit) * units).min(f64::from(u32::MAX)) as u32;
        counters.limit = limit;
        let window = windows.entry(hotkey.to_string()).or_insert(Window {
            started: now,
            count: 0,
        });
        if now.duration_since(window.started) > Duration::from_secs(rules.window_secs) {
            *window = Window {
                started: now,
                count: 0,
            };
            counters.window_resets += 1;
        }
        window.count += 1;
        counters.window_count = window.count;
        if window.count > limit {
            Err(Refusal::LimitExceeded)
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn validator(stake: f64, permit: bool) -> Neuron {
        Neuron {
            uid: 3,
            stake_rao: (stake * 1e9) as u64,
            total_stake_rao: (stake * 1e9) as u64,
            validator_permit: permit,
            ..Default::default()
        }
    }

    #[test]
    fn the_seed_rules_in_order() {
        let rules = BlacklistConfig::default();
        let mut b = Blacklist::default();
        let now = Instant::now();
        assert_eq!(
            b.check(&rules, "stranger", None, now),
            Err(Refusal::Unrecognized)
        );
        assert_eq!(
            b.check(&rules, "poor", Some(&validator(9_999.0, true)), now),
            Err(Refusal::LowStake)
        );
        // 25k stake: 20 requests per 600 s window.
        let rich = validator(25_000.0, false);
        for _ in 0..20 {
            assert_eq!(b.check(&rules, "rich", Some(&rich), now), Ok(()));
        }
        assert_eq!(
            b.check(&rules, "rich", Some(&rich), now),
            Err(Refusal::LimitExceeded)
        );
        let later = now + Duration::from_secs(601);
        assert_eq!(b.check(&rules, "rich", Some(&rich), later), Ok(()));
        let c = &b.counters["rich"];
        assert_eq!(
            (c.requests, c.allowed, c.limit, c.window_resets),
            (22, 21, 20, 1)
        );
        assert_eq!(c.rejected["Limit exceeded"], 1);
        assert_eq!(
            b.counters[NOT_REGISTERED].rejected["Unrecognized hotkey"],
            1
        );
        assert!(!b.counters.contains_key("stranger"));
    }

    #[test]
    fn strangers_leave_no_state_of_their_own() {
        let rules = BlacklistConfig::default();
        let mut b = Blacklist::default();
        let now = Instant::now();
        for i in 0..10_000 {
            let _ = b.check(&rules, &format!("junk-{i}"), None, now);
        }
        assert_eq!(b.counters.len(), 1);
        assert_eq!(b.counters[NOT_REGISTERED].requests, 10_000);
        assert!(b.windows.is_empty());
    }

    #[test]
    fn options_open_or_close_the_door() {
        let mut b = Blacklist::default();
        let now = Instant::now();
        let open = BlacklistConfig {
            allow_non_registered: true,
            ..Default::default()
        };
        assert_eq!(b.check(&open, "stranger", None, now), Ok(()));
        let strict = BlacklistConfig {
            force_validator_permit: true,
            ..Default::default()
        };
        assert_eq!(
            b.check(&strict, "v", Some(&validator(50_000.0, false)), now),
            Err(Refusal::NoPermit)
        );
        assert_eq!(
            b.check(&strict, "v", Some(&validator(50_000.0, true)), now),
            Ok(())
        );
    }
}
