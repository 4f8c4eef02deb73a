//! Which miners serve an organic request: those whose mean score for the model is above the
//! threshold (un-normalised, so any number of equally good miners qualify — NicheImage compared
//! normalised shares and ran dry past ~10 miners), else any miner with a non-zero mean; a pinned
//! uid only if its mean is non-zero.

use crate::validator::scores::MinerBook;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SelectError {
    #[error("Selected miner score is 0 (uid {uid} for {model})")]
    PinnedZero { uid: u16, model: String },
    #[error("no miner with a non-zero score serves {0}")]
    NoMiner(String),
}

/// Candidate uids, best first by mean (ties in uid order); the caller shuffles within reason.
pub fn candidates(
    book: &MinerBook,
    model: &str,
    pinned: Option<u16>,
    threshold: f64,
) -> Result<Vec<u16>, SelectError> {
    if let Some(uid) = pinned {
        let serves = book.uids.get(&uid).is_some_and(|i| i.model_name == model);
        return if serves && book.mean(uid) > 0.0 {
            Ok(vec![uid])
        } else {
            Err(SelectError::PinnedZero {
                uid,
                model: model.to_string(),
            })
        };
    }
    let scored: Vec<(u16, f64)> = book
        .serving(model)
        .into_iter()
        .map(|uid| (uid, book.mean(uid)))
        .filter(|(_, mean)| *mean > 0.0)
        .collect();
    let above: Vec<u16> = scored
        .iter()
        .filter(|(_, mean)| *mean > threshold)
        .map(|(uid, _)| *uid)
        .collect();
    let chosen = if above.is_empty() {
        scored.iter().map(|(uid, _)| *uid).collect()
    } else {
        above
    };
    if chosen.is_empty() {
        return Err(SelectError::NoMiner(model.to_string()));
    }
    Ok(chosen)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn book(entries: &[(u16, &str, &[f64])]) -> MinerBook {
        let mut b = MinerBook::default();
        for (uid, model, scores) in entries {
            b.identify(*uid, &format!("hk{uid}"), Some(model));
            for s in *scores {
                b.record(*uid, *s);
            }
        }
        b
    }

    #[test]
    fn many_equally_good_miners_all_qualify() {
        let entries: Vec<(u16, &str, &[f64])> =
            (0..40).map(|u| (u, "M", &[1.0, 1.0][..])).collect();
        let b = book(&entries);
        assert_eq!(candidates(&b, "M", None, 0.1).unwrap().len(), 40);
    }

    #[test]
    fn threshold_then_fallback_then_nothing() {
        let b = book(&[
            (1, "M", &[0.9]),
            (2, "M", &[0.05]),
            (3, "N", &[1.0]),
            (4, "M", &[0.0]),
        ]);
        assert_eq!(candidates(&b, "M", None, 0.1), Ok(vec![1]));
        assert_eq!(candidates(&b, "M", None, 0.95), Ok(vec![1, 2]));
        assert_eq!(
            candidates(&b, "X", None, 0.1),
            Err(SelectError::NoMiner("X".into()))
        );
    }

    #[test]
    fn a_pinned_uid_needs_a_score_for_that_model() {
        let b = book(&[(1, "M", &[0.9]), (4, "M", &[0.0]), (3, "N", &[1.0])]);
        assert_eq!(candidates(&b, "M", Some(1), 0.1), Ok(vec![1]));
        assert!(matches!(
            candidates(&b, "M", Some(4), 0.1),
            Err(SelectError::PinnedZero { uid: 4, .. })
        ));
        assert!(candidates(&b, "M", Some(3), 0.1).is_err());
        assert!(candidates(&b, "M", Some(99), 0.1).is_err());
    }
}
