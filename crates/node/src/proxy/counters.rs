//! The proxy's traffic counters per UTC day: NicheImage's `proxy_counter.json` shape
//! (`{"YYYY-MM-DD": {"success": n, "fail": m}}`) plus why requests failed, organic checks, bytes
//! served and a latency histogram. Every answered request lands in exactly one of success or
//! fail, and in one latency bucket.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Upper bounds of the latency buckets, milliseconds; the last bucket is everything slower.
pub const LATENCY_BOUNDS_MS: [u64; 8] = [250, 500, 1000, 2000, 4000, 8000, 16000, 32000];

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DayCounters {
    pub success: u64,
    pub fail: u64,
    #[serde(default)]
    pub fail_reasons: BTreeMap<String, u64>,
    /// Organic checks run, and how many of them the miner failed.
    #[serde(default)]
    pub checked: u64,
    #[serde(default)]
    pub check_failed: u64,
    /// Image bytes (base64 text) sent to the owner.
    #[serde(default)]
    pub bytes: u64,
    /// Counts per bucket of [`LATENCY_BOUNDS_MS`], one more for slower.
    #[serde(default)]
    pub latency_ms: Vec<u64>,
    #[serde(default)]
    pub latency_ms_sum: u64,
    /// Requests refused before they were authenticated (bad or forged signatures, too many of
    /// them, too many unverified bodies at once): a stranger's noise, kept out of the figures
    /// above, which are the owner's traffic.
    #[serde(default)]
    pub unauthenticated: u64,
}

impl DayCounters {
    fn latency(&mut self, ms: u64) {
        self.latency_ms.resize(LATENCY_BOUNDS_MS.len() + 1, 0);
        let bucket = LATENCY_BOUNDS_MS
            .iter()
            .position(|b| ms <= *b)
            .unwrap_or(LATENCY_BOUNDS_MS.len());
        self.latency_ms[bucket] += 1;
        self.latency_ms_sum += ms;
    }

    pub fn succeeded(&mut self, bytes: u64, ms: u64) {
        self.success += 1;
        self.bytes += bytes;
        self.latency(ms);
    }

    pub fn failed(&mut self, reason: &str, ms: u64) {
        self.fail += 1;
        *self.fail_reasons.entry(reason.to_string()).or_default() += 1;
        self.latency(ms);
    }

    pub fn add(&mut self, other: &DayCounters) {
        self.unauthenticated += other.unauthenticated;
        self.success += other.success;
        self.fail += other.fail;
        for (k, v) in &other.fail_reasons {
            *self.fail_reasons.entry(k.clone()).or_default() += v;
        }
        self.checked += other.checked;
        self.check_failed += other.check_failed;
        self.bytes += other.bytes;
        self.latency_ms_sum += other.latency_ms_sum;
        self.latency_ms.resize(LATENCY_BOUNDS_MS.len() + 1, 0);
        for (i, v) in other.latency_ms.iter().enumerate() {
            if let Some(slot) = self.latency_ms.get_mut(i) {
                *slot += v;
            }
        }
    }
}

pub type Counters = BTreeMap<String, DayCounters>;

/// `YYYY-MM-DD` of a unix time, UTC (the proleptic Gregorian calendar).
pub fn utc_date(unix_secs: u64) -> String {
    let days = (unix_secs / 86_400) as i64;
    // Howard Hinnant's days-to-civil algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_utc_calendar_days() {
        assert_eq!(utc_date(0), "1970-01-01");
        assert_eq!(utc_date(951_782_400), "2000-02-29");
        assert_eq!(utc_date(1_795_651_200 - 1), "2026-11-25");
        assert_eq!(utc_date(1_795_651_200), "2026-11-26");
    }

    #[test]
    fn every_request_lands_once_and_the_seed_shape_still_reads() {
        let mut d = DayCounters::default();
        d.succeeded(100, 10);
        d.failed("auth", 1);
        d.failed("auth", 99_999);
        assert_eq!((d.success, d.fail, d.bytes), (1, 2, 100));
        assert_eq!(d.fail_reasons["auth"], 2);
        assert_eq!(d.latency_ms.iter().sum::<u64>(), 3);
        assert_eq!(d.latency_ms[LATENCY_BOUNDS_MS.len()], 1);
        let seed: Counters =
            serde_json::from_str(r#"{"2024-03-01": {"success": 4, "fail": 1}}"#).unwrap();
        assert_eq!(seed["2024-03-01"].success, 4);
        let mut total = DayCounters::default();
        total.add(&d);
        total.add(&seed["2024-03-01"]);
        assert_eq!((total.success, total.fail), (5, 3));
    }
}
