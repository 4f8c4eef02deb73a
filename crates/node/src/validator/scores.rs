//! The validator's bookkeeping (NicheImage's `MinerManager`): per uid the last 10 rewards and the
//! model it serves; per-model vectors (mean over 10, clamped to [0, 1], normalised) weighted by
//! the models' incentive shares into the final scores. Reset when a uid changes model or hotkey
//! (NicheImage forgot the hotkey case). Saved as JSON atomically after every pass.

use std::collections::{BTreeMap, VecDeque};
use std::path::Path;

use serde::{Deserialize, Serialize};

pub const WINDOW: usize = 10;

/// The range of the reward rules: 1 for a match, 0 for a miss, -5 for an unfiltered NSFW image.
pub const MIN_REWARD: f64 = -5.0;
pub const MAX_REWARD: f64 = 1.0;

/// A reward as the book keeps it: clamped to [`MIN_REWARD`, `MAX_REWARD`]; not a finite number:
/// 0. Rewards come from a remote service; an infinity would be saved as `null` and break
/// the state file, a huge value would outweigh every other miner.
pub fn sane_reward(reward: f64) -> f64 {
    if reward.is_finite() {
        reward.clamp(MIN_REWARD, MAX_REWARD)
    } else {
        0.0
    }
}

/// The time penalty: `0.4 · (t / timeout)³`, at most 0.4 — with NicheImage's 12 s timeout this is
/// its `0.4 · t³ / 12³`. Applied only to positive rewards, result rounded to 3 decimals. The
/// reward is brought into range first, so the result is always finite.
pub fn penalised(reward: f64, process_time: f64, timeout: f64) -> f64 {
    let reward = sane_reward(reward);
    if reward <= 0.0 {
        return reward;
    }
    sane_reward(((reward - time_penalty(process_time, timeout)) * 1000.0).round() / 1000.0)
}

/// `0.4 · (t / timeout)³`, at most 0.4. `max` also turns a NaN time (the miner's number) into 0.
pub fn time_penalty(process_time: f64, timeout: f64) -> f64 {
    (0.4 * (process_time.max(0.0) / timeout.max(1e-9)).powi(3)).min(0.4)
}

/// One model's answer latency in a validator round, against its timeout.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelLatency {
    pub model: String,
    pub timeout_secs: f64,
    pub p50_secs: f64,
    pub p95_secs: f64,
    /// The time penalty an answer at p95 pays.
    pub penalty_at_p95: f64,
}

impl crate::runtime::event::ValidatorReport {
    /// Per model with answers in the last round: latency p50/p95 and the penalty at p95.
    pub fn latency_by_model(&self) -> Vec<ModelLatency> {
        self.timeouts
            .iter()
            .filter_map(|(model, timeout)| {
                let ms: Vec<u64> = self
                    .last_round
                    .iter()
                    .filter(|o| &o.model == model)
                    .filter_map(|o| o.latency_ms)
                    .collect();
                if ms.is_empty() {
                    return None;
                }
                let p = crate::runtime::event::Percentiles::of(&ms);
                let secs = |v: Option<u64>| v.unwrap_or(0) as f64 / 1000.0;
                let p95_secs = secs(p.p95);
                Some(ModelLatency {
                    model: model.clone(),
                    timeout_secs: *timeout,
                    p50_secs: secs(p.p50),
                    p95_secs,
                    penalty_at_p95: time_penalty(p95_secs, *timeout),
                })
            })
            .collect()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UidInfo {
    pub hotkey: String,
    pub model_name: String,
    pub scores: VecDeque<f64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MinerBook {
    pub step: u64,
    pub uids: BTreeMap<u16, UidInfo>,
}

impl MinerBook {
    /// Records who a uid is; a new hotkey or model starts its history afresh.
    pub fn identify(&mut self, uid: u16, hotkey: &str, model_name: Option<&str>) {
        let entry = self.uids.entry(uid).or_default();
        if entry.hotkey != hotkey {
            *entry = UidInfo {
                hotkey: hotkey.to_string(),
                ..Default::default()
            };
        }
        if let Some(model) = model_name
            && entry.model_name != model
        {
            entry.model_name = model.to_string();
            entry.scores.clear();
        }
    }

    /// Forgets uids whose hotkey left the subnet.
    pub fn retain(&mut self, keep: impl Fn(u16, &str) -> bool) {
        self.uids.retain(|uid, info| keep(*uid, &info.hotkey));
    }

    /// Keeps `reward` (brought into range: every reward passes here) in the uid's window.
    pub fn record(&mut self, uid: u16, reward: f64) {
        if let Some(info) = self.uids.get_mut(&uid) {
            info.scores.push_back(sane_reward(reward));
            while info.scores.len() > WINDOW {
                info.scores.pop_front();
            }
        }
    }

    /// The plain mean of a uid's recorded rewards (0 with none): what the proxy ranks by.
    pub fn mean(&self, uid: u16) -> f64 {
        self.uids
            .get(&uid)
            .filter(|i| !i.scores.is_empty())
            .map(|i| i.scores.iter().sum::<f64>() / i.scores.len() as f64)
            .unwrap_or(0.0)
    }

    /// Uids serving `model`, in uid order.
    pub fn serving(&self, model: &str) -> Vec<u16> {
        self.uids
            .iter()
            .filter(|(_, i)| i.model_name == model)
            .map(|(uid, _)| *uid)
            .collect()
    }

    /// One model's vector: mean over the full window (a newcomer ramps up), clamped, normalised.
    pub fn model_vector(&self, model: &str) -> BTreeMap<u16, f64> {
        let mut v: BTreeMap<u16, f64> = self
            .uids
            .iter()
            .filter(|(_, i)| i.model_name == model)
            .map(|(uid, i)| {
                (
                    *uid,
                    (i.scores.iter().sum::<f64>() / WINDOW as f64).clamp(0.0, 1.0),
                )
            })
            .collect();
        let total: f64 = v.values().sum();
        if total > 0.0 {
            v.values_mut().for_each(|s| *s /= total);
        }
        v
    }

    /// Σ over models of incentive weight × model vector.
    pub fn final_scores(&self, incentive: &BTreeMap<String, f64>) -> BTreeMap<u16, f64> {
        let mut out = BTreeMap::new();
        for (model, weight) in incentive {
            for (uid, s) in self.model_vector(model) {
                let value = weight * s;
                *out.entry(uid).or_insert(0.0) += if value.is_finite() { value } else { 0.0 };
            }
        }
        out
    }

    /// Writes `path` atomically (see [`nicheimage_common::jsonfile`]).
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        nicheimage_common::jsonfile::save_atomic(path, self)
    }

    /// Loads `path`; missing → empty; unreadable or corrupt → empty (a corrupt file moved aside),
    /// with the reason returned for the operator. One bad uid entry (a `null` score, a wrong
    /// type) is skipped with a warning; the others load. Scores are brought into range.
    pub fn load(path: &Path) -> (Self, Option<String>) {
        let (raw, note) =
            nicheimage_common::jsonfile::load_or_aside::<LenientBook>(path, "validator state");
        let mut book = MinerBook {
            step: raw.step,
            uids: BTreeMap::new(),
        };
        let mut skipped = Vec::new();
        for (key, value) in raw.uids {
            let Ok(uid) = key.parse::<u16>() else {
                skipped.push(format!("{key:?} is not a uid"));
                continue;
            };
            match serde_json::from_value::<UidInfo>(value) {
                Ok(mut info) => {
                    info.scores.iter_mut().for_each(|s| *s = sane_reward(*s));
                    let extra = info.scores.len().saturating_sub(WINDOW);
                    info.scores.drain(..extra);
                    book.uids.insert(uid, info);
                }
                Err(e) => skipped.push(format!("uid {uid}: {e}")),
            }
        }
        if skipped.is_empty() {
            return (book, note);
        }
        let skipped = format!(
            "validator state {}: skipped {} bad entr{} ({}); the rest loaded",
            path.display(),
            skipped.len(),
            if skipped.len() == 1 { "y" } else { "ies" },
            skipped.join("; ")
        );
        tracing::warn!("{skipped}");
        let note = match note {
            Some(n) => format!("{n}; {skipped}"),
            None => skipped,
        };
        (book, Some(note))
    }
}

/// The state file as read: uid entries kept as JSON so each can fail on its own.
#[derive(Default, Deserialize)]
struct LenientBook {
    step: u64,
    uids: BTreeMap<String, serde_json::Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn penalty_follows_the_seed_curve() {
        assert_eq!(penalised(1.0, 6.0, 12.0), 0.95);
        assert_eq!(penalised(1.0, 9.5, 12.0), 0.802);
        assert_eq!(penalised(1.0, 30.0, 12.0), 0.6);
        assert_eq!(penalised(0.0, 30.0, 12.0), 0.0);
        assert_eq!(penalised(-5.0, 1.0, 12.0), -5.0);
        // Monotone in time, bounded by 0.4 off.
        let mut last = 1.0;
        for t in 0..40 {
            let r = penalised(1.0, t as f64 * 0.5, 12.0);
            assert!(r <= last && r >= 0.6);
            last = r;
        }
    }

    #[test]
    fn window_resets_and_normalisation() {
        let mut b = MinerBook::default();
        b.identify(1, "hk1", Some("A"));
        b.identify(2, "hk2", Some("A"));
        b.identify(3, "hk3", Some("B"));
        for _ in 0..12 {
            b.record(1, 1.0);
        }
        assert_eq!(b.uids[&1].scores.len(), WINDOW);
        b.record(2, 1.0);
        b.record(3, -5.0);
        let a = b.model_vector("A");
        // uid 1: 10/10 → 1.0; uid 2: 1/10 → 0.1; normalised over 1.1.
        assert!((a[&1] - 1.0 / 1.1).abs() < 1e-12 && (a[&2] - 0.1 / 1.1).abs() < 1e-12);
        assert_eq!(b.model_vector("B")[&3], 0.0);
        let incentive = BTreeMap::from([("A".to_string(), 0.5), ("B".to_string(), 0.5)]);
        let f = b.final_scores(&incentive);
        assert!((f.values().sum::<f64>() - 0.5).abs() < 1e-12);
        // A model change or a new hotkey starts over.
        b.identify(1, "hk1", Some("B"));
        assert!(b.uids[&1].scores.is_empty());
        b.identify(2, "other", Some("A"));
        assert!(b.uids[&2].scores.is_empty());
        b.retain(|uid, _| uid != 3);
        assert!(!b.uids.contains_key(&3));
    }

    #[test]
    fn state_saves_atomically_and_survives_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let mut b = MinerBook {
            step: 7,
            ..Default::default()
        };
        b.identify(4, "hk", Some("A"));
        b.record(4, 0.5);
        b.save(&path).unwrap();
        assert_eq!(MinerBook::load(&path), (b, None));
        std::fs::write(&path, b"{\"step\": 3, \"uids\": {").unwrap();
        let (empty, note) = MinerBook::load(&path);
        assert_eq!(empty, MinerBook::default());
        assert!(note.unwrap().contains("moved aside"));
        assert!(dir.path().join("state.json.corrupt").exists());
        assert_eq!(
            MinerBook::load(&path).1,
            None,
            "the corrupt file is out of the way"
        );
    }

    #[test]
    fn a_huge_or_broken_reward_yields_a_finite_score() {
        let r = penalised(1e308, 6.0, 12.0);
        assert!(r.is_finite(), "{r}");
        assert_eq!(r, penalised(1.0, 6.0, 12.0));
        assert_eq!(penalised(f64::INFINITY, 1.0, 12.0), 0.0);
        assert_eq!(penalised(f64::NAN, 1.0, 12.0), 0.0);
        assert_eq!(penalised(-1e308, 1.0, 12.0), MIN_REWARD);
        assert_eq!(penalised(1.0, f64::NAN, 12.0), 1.0);
        assert_eq!(penalised(1.0, f64::INFINITY, 12.0), 0.6);
        // Recorded directly (the proxy's organic checks): clamped too, and it saves and loads.
        let mut b = MinerBook::default();
        b.identify(1, "hk", Some("A"));
        for r in [1e308, f64::INFINITY, f64::NEG_INFINITY, f64::NAN, -1e308] {
            b.record(1, r);
        }
        let scores: Vec<f64> = b.uids[&1].scores.iter().copied().collect();
        assert_eq!(scores, vec![1.0, 0.0, 0.0, 0.0, MIN_REWARD]);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        b.save(&path).unwrap();
        assert_eq!(MinerBook::load(&path), (b, None));
    }

    #[test]
    fn a_null_score_skips_its_entry_and_keeps_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        std::fs::write(
            &path,
            r#"{"step": 9, "uids": {
                "1": {"hotkey": "hk1", "model_name": "A", "scores": [0.5, null]},
                "2": {"hotkey": "hk2", "model_name": "A", "scores": [1.0, 0.25]},
                "x": {"hotkey": "hk3", "model_name": "A", "scores": []},
                "3": {"hotkey": "hk3", "model_name": "B", "scores": [7.0, -9.0]}
            }}"#,
        )
        .unwrap();
        let (book, note) = MinerBook::load(&path);
        assert_eq!(book.step, 9);
        assert_eq!(book.uids.keys().copied().collect::<Vec<_>>(), vec![2, 3]);
        assert_eq!(book.uids[&2].scores, [1.0, 0.25]);
        assert_eq!(
            book.uids[&3].scores,
            [MAX_REWARD, MIN_REWARD],
            "out of range: clamped"
        );
        let note = note.unwrap();
        assert!(
            note.contains("skipped 2 bad entries") && note.contains("uid 1"),
            "{note}"
        );
        assert!(path.exists(), "a file with a bad entry is not moved aside");
    }

    #[test]
    fn a_save_cut_short_leaves_the_last_state() {
        // A process killed mid-save leaves at most a partial temp file; the state file is
        // only ever replaced whole, by rename.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let book = MinerBook {
            step: 41,
            ..Default::default()
        };
        book.save(&path).unwrap();
        std::fs::write(path.with_extension("json.tmp"), b"{\"step\": 42, \"ui").unwrap();
        assert_eq!(MinerBook::load(&path), (book.clone(), None));
        let next = MinerBook {
            step: 42,
            ..Default::default()
        };
        next.save(&path).unwrap();
        assert_eq!(
            MinerBook::load(&path).0,
            next,
            "a later save replaces the stale temp file"
        );
    }

    /// Properties over many seeded random cases (no extra crate: the validator's own splitmix
    /// generator drives them, so a failure names its case and reproduces).
    mod properties {
        use super::*;
        use crate::validator::Dice;

        fn unit(d: &mut Dice) -> f64 {
            d.below(1_000_001) as f64 / 1_000_000.0
        }

        #[test]
        fn the_penalty_never_rewards_and_grows_with_time() {
            let mut d = Dice::new(1);
            for case in 0..20_000 {
                let reward = [1.0, 0.0, -5.0][d.below(3) as usize] * unit(&mut d).max(0.001);
                let timeout = 0.5 + 30.0 * unit(&mut d);
                let (t1, t2) = (3.0 * timeout * unit(&mut d), 3.0 * timeout * unit(&mut d));
                let (early, late) = (t1.min(t2), t1.max(t2));
                let (a, b) = (
                    penalised(reward, early, timeout),
                    penalised(reward, late, timeout),
                );
                if reward <= 0.0 {
                    assert_eq!((a, b), (reward, reward), "case {case}");
                    continue;
                }
                // At most 0.4 off (plus the rounding to 3 decimals), never above the reward.
                assert!(
                    a <= reward + 5e-4 && a >= reward - 0.4 - 5e-4,
                    "case {case}: {a}"
                );
                assert!(b <= a, "case {case}: later {b} above earlier {a}");
                assert_eq!((a * 1000.0).round() / 1000.0, a, "case {case}: 3 decimals");
            }
        }

        #[test]
        fn the_window_keeps_exactly_the_last_ten() {
            let mut d = Dice::new(2);
            for case in 0..500 {
                let mut b = MinerBook::default();
                b.identify(1, "hk", Some("A"));
                let n = d.below(40) as usize;
                let all: Vec<f64> = (0..n).map(|_| unit(&mut d)).collect();
                for r in &all {
                    b.record(1, *r);
                }
                let kept: Vec<f64> = b.uids[&1].scores.iter().copied().collect();
                assert_eq!(
                    kept,
                    all[n.saturating_sub(WINDOW)..].to_vec(),
                    "case {case}"
                );
                let mean = if kept.is_empty() {
                    0.0
                } else {
                    kept.iter().sum::<f64>() / kept.len() as f64
                };
                assert!((b.mean(1) - mean).abs() < 1e-12, "case {case}");
            }
        }

        #[test]
        fn model_vectors_are_normalised_and_final_scores_bounded() {
            let mut d = Dice::new(3);
            let models = ["A", "B", "C"];
            for case in 0..500 {
                let mut b = MinerBook::default();
                for uid in 0..d.below(30) as u16 {
                    b.identify(uid, &format!("hk{uid}"), Some(models[d.below(3) as usize]));
                    for _ in 0..d.below(15) {
                        let r = match d.below(10) {
                            0 => -5.0,
                            1 | 2 => 0.0,
                            _ => unit(&mut d),
                        };
                        b.record(uid, r);
                    }
                }
                let weights: Vec<f64> = models.iter().map(|_| unit(&mut d)).collect();
                for model in models {
                    let v = b.model_vector(model);
                    assert!(v.values().all(|x| (0.0..=1.0).contains(x)), "case {case}");
                    let sum: f64 = v.values().sum();
                    assert!(sum == 0.0 || (sum - 1.0).abs() < 1e-9, "case {case}: {sum}");
                }
                let incentive: BTreeMap<String, f64> = models
                    .iter()
                    .map(|m| m.to_string())
                    .zip(weights.iter().copied())
                    .collect();
                let f = b.final_scores(&incentive);
                assert!(
                    f.values().all(|x| x.is_finite() && *x >= 0.0),
                    "case {case}"
                );
                assert!(
                    f.values().sum::<f64>() <= weights.iter().sum::<f64>() + 1e-9,
                    "case {case}"
                );
            }
        }
    }
}
