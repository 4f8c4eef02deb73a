//! The running job's deadline. A replica works one job at a time on one thread; the job's
//! deadline is set for the length of the job and checked between denoising steps and between
//! annotators, so a job whose caller has given up stops there and frees its replica at once
//! instead of drawing to the end for nobody.

use std::cell::Cell;
use std::time::{Duration, Instant};

thread_local! {
    static DEADLINE: Cell<Option<(Instant, Instant)>> = const { Cell::new(None) };
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("deadline passed after {:.1} s; the job was stopped", .0.as_secs_f64())]
pub struct DeadlinePassed(pub Duration);

/// The deadline in force while this guard lives (the previous one comes back after).
pub struct Scope {
    previous: Option<(Instant, Instant)>,
}

/// Sets `deadline` (None: no limit) on this thread until the returned guard drops.
pub fn until(deadline: Option<Instant>) -> Scope {
    let now = Instant::now();
    let previous = DEADLINE.with(|d| d.replace(deadline.map(|at| (now, at))));
    Scope { previous }
}

impl Drop for Scope {
    fn drop(&mut self) {
        DEADLINE.with(|d| d.set(self.previous));
    }
}

/// `Err` once this thread's deadline has passed.
pub fn check() -> Result<(), DeadlinePassed> {
    match DEADLINE.with(Cell::get) {
        Some((started, at)) if Instant::now() >= at => Err(DeadlinePassed(started.elapsed())),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scope_sets_and_restores_the_deadline() {
        assert!(check().is_ok());
        {
            let _past = until(Some(Instant::now()));
            assert!(check().is_err());
            {
                let _none = until(None);
                assert!(check().is_ok());
            }
            assert!(check().is_err());
        }
        assert!(check().is_ok());
        let _later = until(Some(Instant::now() + Duration::from_secs(60)));
        assert!(check().is_ok());
    }
}
