//! A concurrency gate that admits waiting requests highest-priority first (bittensor's priority
//! hook orders a thread pool; ours orders admission to the handler).

use std::collections::BinaryHeap;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

struct Waiter {
    priority: f64,
    seq: u64,
    wake: oneshot::Sender<()>,
}

impl PartialEq for Waiter {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == std::cmp::Ordering::Equal
    }
}
impl Eq for Waiter {}
impl PartialOrd for Waiter {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Waiter {
    /// Higher priority first; among equals, the earlier arrival.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.priority
            .total_cmp(&other.priority)
            .then(other.seq.cmp(&self.seq))
    }
}

struct State {
    free: usize,
    seq: u64,
    waiting: BinaryHeap<Waiter>,
}

#[derive(Clone)]
pub struct PriorityGate {
    state: Arc<Mutex<State>>,
}

/// Holding one admits one request; dropping it admits the best waiter.
pub struct Admission {
    state: Arc<Mutex<State>>,
}

impl PriorityGate {
    pub fn new(slots: usize) -> Self {
        let state = State {
            free: slots.max(1),
            seq: 0,
            waiting: BinaryHeap::new(),
        };
        Self {
            state: Arc::new(Mutex::new(state)),
        }
    }

    /// Waits for a slot. Cancel-safe: a dropped waiter's slot passes on.
    pub async fn admit(&self, priority: f64) -> Admission {
        let rx = {
            let mut s = lock(&self.state);
            if s.free > 0 && s.waiting.is_empty() {
                s.free -= 1;
                return Admission {
                    state: self.state.clone(),
                };
            }
            let (tx, rx) = oneshot::channel();
            s.seq += 1;
            let seq = s.seq;
            s.waiting.push(Waiter {
                priority,
                seq,
                wake: tx,
            });
            rx
        };
        // The sender is only dropped after it sent, so an error cannot happen while we wait.
        let _ = rx.await;
        Admission {
            state: self.state.clone(),
        }
    }

    pub fn waiting(&self) -> usize {
        lock(&self.state).waiting.len()
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        let mut s = lock(&self.state);
        while let Some(next) = s.waiting.pop() {
            if next.wake.send(()).is_ok() {
                return;
            }
        }
        s.free += 1;
    }
}

fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn admits_the_highest_priority_waiter_next() {
        let gate = PriorityGate::new(1);
        let first = gate.admit(0.0).await;
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for priority in [1.0, 5.0, 3.0] {
            let (waiter, order) = (gate.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                let _slot = waiter.admit(priority).await;
                order.lock().unwrap().push(priority);
            }));
            while gate.waiting() < tasks.len() {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        drop(first);
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), vec![5.0, 3.0, 1.0]);
    }

    #[tokio::test]
    async fn a_cancelled_waiter_does_not_eat_the_slot() {
        let gate = PriorityGate::new(1);
        let held = gate.admit(0.0).await;
        let waiting = tokio::time::timeout(Duration::from_millis(20), gate.admit(9.0)).await;
        assert!(waiting.is_err());
        drop(held);
        let again = tokio::time::timeout(Duration::from_secs(1), gate.admit(0.0)).await;
        assert!(again.is_ok());
    }
}
