//! The Bittensor layer: keys and wallet files, the Synapse wire protocol (axon = server,
//! dendrite = client) and chain access. Wire facts are in `../shared/spec/bittensor.md`.

pub mod axon;
pub mod btauth;
pub mod chain;
pub mod dendrite;
pub mod keyfile;
pub mod keypair;
pub mod nonce;
pub mod priority;
pub mod reachability;
pub mod ss58;
pub mod synapse;
pub mod wallet;

/// The SDK version we announce as a dendrite and axon: 10.2.0 as `major·10⁶ + minor·10³ + patch`.
/// Anything ≥ 7002000 makes peer axons apply the wall-clock nonce rules we follow.
pub const PROTOCOL_VERSION: u64 = 10_002_000;

/// The `bt_header_*` timestamp every nonce is: wall-clock nanoseconds.
pub fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}
