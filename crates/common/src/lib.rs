//! What every layer of the node shares: the HTTP client and accept loop with their limits,
//! bounded image decoding and NicheImage's image hash, atomic JSON files, Python-style JSON, rate
//! windows, refusal summaries, and the plain types that describe libtorch without linking it.

pub mod http;
pub mod image;
pub mod imagehash;
pub mod json_budget;
pub mod jsonfile;
pub mod pyjson;
pub mod ratelimit;
pub mod refusal;
pub mod resample;
pub mod scheduler;
pub mod serve;
pub mod text;
pub mod torch;
