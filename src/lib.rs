//! nicheimage-tui: one node runtime for a NicheImage (subnet 23) rig, with two faces — the
//! terminal console (`ui`) and headless mode (`headless`).

pub mod annotator;
pub mod bittensor;
pub mod catalogue;
pub mod cli;
pub mod config;
pub mod devnet;
pub mod diffusion;
pub mod download;
pub mod endpoint;
pub mod headless;
pub mod http;
pub mod image;
pub mod imagehash;
pub mod jsonfile;
pub mod logging;
pub mod metrics;
pub mod miner;
pub mod node;
pub mod proxy;
pub mod pyjson;
pub mod ratelimit;
pub mod replica;
pub mod resample;
pub mod reward;
pub mod runtime;
pub mod serve;
pub mod telemetry;
pub mod ui;
pub mod validator;
pub mod weights_cmd;
