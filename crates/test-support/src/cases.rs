//! What every property-test file shares: the case count (`PROPTEST_CASES`, 1024 when unset),
//! a runner that reports cases and time, and byte mutations of valid inputs.

use std::time::Instant;

use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestCaseError, TestRunner};

/// Cases when `PROPTEST_CASES` is not set: about 10 s for the whole file in a debug build.
const DEFAULT_CASES: u32 = 1024;

/// `PROPTEST_CASES` (or [`DEFAULT_CASES`]) divided by `slowness`, at least 8.
pub fn config(slowness: u32) -> ProptestConfig {
    let base = ProptestConfig::default();
    let cases = if std::env::var_os("PROPTEST_CASES").is_some() {
        base.cases
    } else {
        DEFAULT_CASES
    };
    ProptestConfig {
        cases: (cases / slowness).max(8),
        failure_persistence: None,
        ..base
    }
}

pub fn run<S: Strategy>(
    slowness: u32,
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), TestCaseError>,
) where
    S::Value: std::fmt::Debug,
{
    let config = config(slowness);
    let cases = config.cases;
    let started = Instant::now();
    let mut runner = TestRunner::new(config);
    if let Err(e) = runner.run(&strategy, test) {
        panic!("{e}");
    }
    // Shown with `--nocapture`: what a long run reports.
    eprintln!(
        "{}: {cases} cases in {:.1} s",
        std::thread::current().name().unwrap_or("?"),
        started.elapsed().as_secs_f64()
    );
}

/// One mutation of a valid input (an encoded image, a keyfile, a checkpoint ...).
#[derive(Debug, Clone)]
pub enum Mutation {
    FlipBit(usize, u8),
    SetByte(usize, u8),
    Truncate(usize),
    Insert(usize, Vec<u8>),
    Remove(usize, usize),
}

pub fn arb_mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<usize>(), 0u8..8).prop_map(|(i, b)| Mutation::FlipBit(i, b)),
        2 => (any::<usize>(), any::<u8>()).prop_map(|(i, v)| Mutation::SetByte(i, v)),
        1 => any::<usize>().prop_map(Mutation::Truncate),
        1 => (any::<usize>(), prop::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(i, b)| Mutation::Insert(i, b)),
        1 => (any::<usize>(), 1usize..32).prop_map(|(i, n)| Mutation::Remove(i, n)),
    ]
}

pub fn mutate(bytes: &mut Vec<u8>, m: &Mutation) {
    if bytes.is_empty() {
        return;
    }
    let n = bytes.len();
    match m {
        Mutation::FlipBit(i, b) => bytes[i % n] ^= 1 << b,
        Mutation::SetByte(i, v) => bytes[i % n] = *v,
        Mutation::Truncate(i) => bytes.truncate(i % n),
        Mutation::Insert(i, b) => {
            let at = i % n;
            bytes.splice(at..at, b.iter().copied());
        }
        Mutation::Remove(i, k) => {
            let at = i % n;
            bytes.drain(at..(at + k).min(n));
        }
    }
}
