//! The node: one runtime of supervised components (replica pool, endpoint, miner, validator,
//! reward service, proxy, chain watcher, telemetry, metrics) reporting into one state store,
//! and the configuration that assembles them. The console and headless mode are views over it.

pub mod assemble;
pub mod catalogue;
pub mod chain_watch;
pub mod config;
pub mod devnet;
pub mod dice;
pub mod download;
pub mod endpoint;
pub mod engine;
pub mod listen;
pub mod metrics;
pub mod miner;
pub mod proxy;
pub mod replica;
pub mod reward;
pub mod runtime;
pub mod telemetry;
pub mod validator;
