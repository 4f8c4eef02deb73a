//! One summary line a minute for repeated refusals (a flood of bad requests or connections),
//! instead of a line each.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often a [`RefusalCounter`] may write its summary line.
pub const REFUSAL_SUMMARY_EVERY: Duration = Duration::from_secs(60);

/// Counts repeated refusals by reason and logs at most one INFO summary per interval, so a
/// flood of bad requests costs a line a minute instead of a line each. Every refusal is still
/// logged at DEBUG. Counts left when the flood stops go out with the next refusal's summary.
pub struct RefusalCounter {
    what: &'static str,
    every: Duration,
    state: Mutex<RefusalState>,
}

struct RefusalState {
    last_summary: Option<Instant>,
    counts: BTreeMap<String, u64>,
    last_message: String,
}

/// One summary: the refusals since the last one, by reason.
#[derive(Debug, PartialEq, Eq)]
pub struct RefusalSummary {
    pub total: u64,
    pub by_reason: String,
    pub last: String,
}

/// Distinct reasons kept per interval; the rest are counted under "other" (the reason may come
/// from the peer).
const MAX_REASONS: usize = 16;
/// Longest example message kept in a summary.
const MAX_MESSAGE: usize = 300;

impl RefusalCounter {
    pub const fn new(what: &'static str, every: Duration) -> Self {
        Self {
            what,
            every,
            state: Mutex::new(RefusalState {
                last_summary: None,
                counts: BTreeMap::new(),
                last_message: String::new(),
            }),
        }
    }

    /// Counts one refusal (`reason`: a short key such as the status code) and logs the
    /// summary when one is due.
    pub fn record(&self, reason: &str, message: &str) {
        tracing::debug!(reason, message, "{}", self.what);
        if let Some(s) = self.record_at(Instant::now(), reason, message) {
            tracing::info!(
                refused = s.total,
                by_reason = %s.by_reason,
                last = %s.last,
                "{} (summary, at most one per {} s)",
                self.what,
                self.every.as_secs()
            );
        }
    }

    /// The counting behind [`record`](Self::record), with the clock given: a summary when the
    /// interval since the last one has passed (the first refusal after a quiet spell is shown
    /// at once).
    pub fn record_at(&self, now: Instant, reason: &str, message: &str) -> Option<RefusalSummary> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let key = if state.counts.len() < MAX_REASONS || state.counts.contains_key(reason) {
            reason
        } else {
            "other"
        };
        let count = state.counts.entry(key.to_string()).or_default();
        *count = count.saturating_add(1);
        state.last_message = message.chars().take(MAX_MESSAGE).collect();
        let due = state
            .last_summary
            .is_none_or(|t| now.saturating_duration_since(t) >= self.every);
        if !due {
            return None;
        }
        state.last_summary = Some(now);
        let counts = std::mem::take(&mut state.counts);
        let total = counts.values().fold(0u64, |a, n| a.saturating_add(*n));
        let by_reason = counts
            .iter()
            .map(|(r, n)| format!("{r}: {n}"))
            .collect::<Vec<_>>()
            .join(", ");
        Some(RefusalSummary {
            total,
            by_reason,
            last: std::mem::take(&mut state.last_message),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_summarised_at_most_once_per_interval() {
        let counter = RefusalCounter::new("test refusals", Duration::from_secs(60));
        let t0 = Instant::now();
        let first = counter
            .record_at(t0, "403", "not on the allow-list")
            .unwrap();
        assert_eq!(first.total, 1, "the first refusal is shown at once");
        for i in 0..1000u64 {
            let at = t0 + Duration::from_millis(i * 50);
            let reason = if i % 4 == 0 { "429" } else { "403" };
            assert_eq!(counter.record_at(at, reason, "x"), None, "{i}");
        }
        let s = counter
            .record_at(t0 + Duration::from_secs(61), "400", "bad json")
            .unwrap();
        assert_eq!(s.total, 1001);
        assert_eq!(s.by_reason, "400: 1, 403: 750, 429: 250");
        assert_eq!(s.last, "bad json");
        assert_eq!(
            counter.record_at(t0 + Duration::from_secs(62), "403", "x"),
            None
        );
    }

    #[test]
    fn peer_chosen_reasons_and_messages_stay_bounded() {
        let counter = RefusalCounter::new("test refusals", Duration::from_secs(60));
        let t0 = Instant::now();
        counter.record_at(t0, "first", "");
        for i in 0..100 {
            counter.record_at(t0, &format!("reason {i}"), &"m".repeat(10_000));
        }
        let s = counter
            .record_at(t0 + Duration::from_secs(60), "reason 0", "")
            .unwrap();
        assert_eq!(s.by_reason.matches(": ").count(), MAX_REASONS + 1);
        assert!(s.by_reason.contains("other: 84"), "{}", s.by_reason);
        assert_eq!(s.total, 101);
        counter.record_at(t0 + Duration::from_secs(120), "r", &"é".repeat(1000));
        let s = counter
            .record_at(t0 + Duration::from_secs(180), "r", &"é".repeat(1000))
            .unwrap();
        assert_eq!(s.last.chars().count(), MAX_MESSAGE);
    }
}
