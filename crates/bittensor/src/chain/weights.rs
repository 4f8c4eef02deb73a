//! Weights as the SDK puts them on chain (`convert_weights_and_uids_for_emit`): scaled so the
//! largest is 65535, rounded half-to-even (Python's `round`), zeros dropped.

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum WeightsError {
    #[error("weight {0} is negative (or not a number); it cannot exist on chain")]
    Negative(f64),
    #[error("{uids} uids but {weights} weights")]
    Length { uids: usize, weights: usize },
    #[error("no weights to set")]
    Empty,
}

/// Returns `(uids, u16 weights)`; all-zero input gives two empty lists (nothing to set), as upstream.
pub fn normalize_for_emit(
    uids: &[u16],
    weights: &[f32],
) -> Result<(Vec<u16>, Vec<u16>), WeightsError> {
    if uids.len() != weights.len() {
        return Err(WeightsError::Length {
            uids: uids.len(),
            weights: weights.len(),
        });
    }
    if weights.is_empty() {
        return Err(WeightsError::Empty);
    }
    if let Some(bad) = weights.iter().find(|w| !w.is_finite() || **w < 0.0) {
        return Err(WeightsError::Negative(f64::from(*bad)));
    }
    let sum: f64 = weights.iter().map(|w| f64::from(*w)).sum();
    if sum == 0.0 {
        return Ok((Vec::new(), Vec::new()));
    }
    let max = weights.iter().map(|w| f64::from(*w)).fold(0.0, f64::max);
    let mut out = (Vec::new(), Vec::new());
    for (uid, w) in uids.iter().zip(weights) {
        let scaled = (f64::from(*w) / max * 65535.0).round_ties_even() as u16;
        if scaled != 0 {
            out.0.push(*uid);
            out.1.push(scaled);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scales_by_the_max_and_drops_zeros() {
        let (uids, w) = normalize_for_emit(&[0, 1, 2, 3], &[0.5, 1.0, 0.0, 0.25]).unwrap();
        assert_eq!(uids, vec![0, 1, 3]);
        // 0.5·65535 = 32767.5 rounds to even: 32768; 0.25·65535 = 16383.75 → 16384.
        assert_eq!(w, vec![32768, 65535, 16384]);
        let (uids, w) = normalize_for_emit(&[4, 5], &[1.0, 1e-6]).unwrap();
        assert_eq!((uids, w), (vec![4], vec![65535]));
    }

    #[test]
    fn rejects_what_the_sdk_rejects() {
        assert_eq!(
            normalize_for_emit(&[0, 1], &[0.0, 0.0]),
            Ok((vec![], vec![]))
        );
        assert!(matches!(
            normalize_for_emit(&[0], &[-1.0]),
            Err(WeightsError::Negative(_))
        ));
        assert!(matches!(
            normalize_for_emit(&[0], &[f32::NAN]),
            Err(WeightsError::Negative(_))
        ));
        assert!(matches!(
            normalize_for_emit(&[0, 1], &[1.0]),
            Err(WeightsError::Length { .. })
        ));
        assert_eq!(normalize_for_emit(&[], &[]), Err(WeightsError::Empty));
    }
}
