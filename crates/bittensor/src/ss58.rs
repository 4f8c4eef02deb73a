//! SS58 addresses: base58 of `prefix ‖ pubkey ‖ blake2b-512("SS58PRE" ‖ prefix ‖ pubkey)[..2]`.

use blake2::{Blake2b512, Digest};

/// Bittensor's (and generic Substrate's) address prefix.
pub const BITTENSOR_PREFIX: u8 = 42;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Ss58Error {
    #[error("not base58: {0}")]
    Base58(String),
    #[error("wrong length {0} (a single-byte-prefix address of a 32-byte key decodes to 35 bytes)")]
    Length(usize),
    #[error("{0} characters: a prefix-42 address is at most {MAX_CHARS}")]
    TooLong(usize),
    #[error("checksum mismatch (a typo in the address?)")]
    Checksum,
    #[error("address prefix {0}, expected {BITTENSOR_PREFIX} (bittensor)")]
    Prefix(u8),
}

fn checksum(prefix: u8, key: &[u8; 32]) -> [u8; 2] {
    let mut h = Blake2b512::new();
    h.update(b"SS58PRE");
    h.update([prefix]);
    h.update(key);
    let out = h.finalize();
    [out[0], out[1]]
}

/// Encodes a public key with prefix 42.
pub fn encode(key: &[u8; 32]) -> String {
    let mut raw = Vec::with_capacity(35);
    raw.push(BITTENSOR_PREFIX);
    raw.extend_from_slice(key);
    raw.extend_from_slice(&checksum(BITTENSOR_PREFIX, key));
    bs58::encode(raw).into_string()
}

/// The longest base58 text of 35 bytes (a prefix-42 address is 47 or 48 characters). Longer
/// input is refused before decoding: base58 decoding costs the square of its length.
pub const MAX_CHARS: usize = 48;

/// Decodes a prefix-42 address into its public key.
pub fn decode(address: &str) -> Result<[u8; 32], Ss58Error> {
    let address = address.trim();
    if address.len() > MAX_CHARS {
        return Err(Ss58Error::TooLong(address.len()));
    }
    let raw = bs58::decode(address)
        .into_vec()
        .map_err(|e| Ss58Error::Base58(e.to_string()))?;
    if raw.len() != 35 {
        return Err(Ss58Error::Length(raw.len()));
    }
    let mut key = [0u8; 32];
    key.copy_from_slice(&raw[1..33]);
    if raw[33..] != checksum(raw[0], &key) {
        return Err(Ss58Error::Checksum);
    }
    if raw[0] != BITTENSOR_PREFIX {
        return Err(Ss58Error::Prefix(raw[0]));
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_typos() {
        let key = [7u8; 32];
        let address = encode(&key);
        assert!(address.starts_with('5'));
        assert_eq!(address.len(), 48);
        assert_eq!(decode(&address), Ok(key));
        let mut typo: Vec<char> = address.chars().collect();
        typo[10] = if typo[10] == 'a' { 'b' } else { 'a' };
        let typo: String = typo.into_iter().collect();
        assert!(decode(&typo).is_err());
        assert!(matches!(decode("0OIl"), Err(Ss58Error::Base58(_))));
    }

    #[test]
    fn long_input_is_refused_before_decoding() {
        let long = "1".repeat(64_000);
        let started = std::time::Instant::now();
        assert_eq!(decode(&long), Err(Ss58Error::TooLong(64_000)));
        assert!(started.elapsed() < std::time::Duration::from_millis(5));
        let key = [7u8; 32];
        assert_eq!(encode(&key).len(), 48);
        assert_eq!(decode(&encode(&key)), Ok(key));
    }
}
