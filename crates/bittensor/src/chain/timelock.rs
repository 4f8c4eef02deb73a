//! Commit-reveal v4: weights encrypted to a future drand quicknet round with the `tle` scheme
//! the chain decrypts (Boneh–Franklin FullIdent on BLS12-381 — identities and round signatures
//! in G1, the public key and `U` in G2 — wrapping a random AES-256-GCM key). The bytes are laid
//! out as arkworks serialises the scheme's `TLECiphertext`, which is what `pallet_subtensor` and
//! `bittensor_drand` read. The round a commit targets comes from the epoch schedule
//! (`epoch::EpochState::reveal_round`). A [`Beacon`] signs rounds as drand does, for the
//! embedded chain, whose pulses come from its own key.

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use ark_bls12_381::{Bls12_381, Fr, G1Affine, G1Projective, G2Affine, G2Projective};
use ark_ec::hashing::HashToCurve;
use ark_ec::hashing::curve_maps::wb::WBMap;
use ark_ec::hashing::map_to_curve_hasher::MapToCurveBasedHasher;
use ark_ec::pairing::Pairing;
use ark_ec::{CurveGroup, PrimeGroup};
use ark_ff::PrimeField;
use ark_ff::field_hashers::DefaultFieldHasher;
use ark_serialize::{CanonicalDeserialize, CanonicalSerialize};
use parity_scale_codec::Encode;

use sha2_10::{Digest, Sha256};

/// drand quicknet ("bls-unchained-g1-rfc9380"), the network the chain follows.
pub const QUICKNET_PUBLIC_KEY: &str = "83cf0f2896adee7eb8b5f01fcad3912212c437e0073e911fb90022d3e760183c8c4b450b6a0a6c3ac6a5776a2d1064510d1fec758c921cc22b0e17e63aaf4bcb5ed66304de9cf809bd274ca73bab4af5a6e9c76a4bc09e76eae8991ef5ece45a";
pub const QUICKNET_GENESIS: u64 = 1_692_803_367;
pub const QUICKNET_PERIOD: u64 = 3;
const DST: &[u8] = b"BLS_SIG_BLS12381G1_XMD:SHA-256_SSWU_RO_NUL_";
const CIPHER_SUITE: &[u8] = b"AES_GCM_";
/// The version `commit_timelocked_*` calls carry today.
pub const COMMIT_REVEAL_VERSION: u16 = 4;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TimelockError {
    #[error("no randomness: {0}")]
    Random(String),
    #[error("bad curve point or ciphertext: {0}")]
    Malformed(String),
    #[error("the round signature does not open this ciphertext")]
    WrongSignature,
}

fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

fn xor32(a: &[u8; 32], b: &[u8; 32]) -> [u8; 32] {
    std::array::from_fn(|i| a[i] ^ b[i])
}

/// The G1 point a round's signature signs: hash-to-curve of sha256(round, big-endian).
fn identity(round: u64) -> Result<G1Affine, TimelockError> {
    let hasher = MapToCurveBasedHasher::<
        G1Projective,
        DefaultFieldHasher<Sha256, 128>,
        WBMap<ark_bls12_381::g1::Config>,
    >::new(DST)
    .map_err(|e| TimelockError::Malformed(e.to_string()))?;
    hasher
        .hash(&sha256(&[&round.to_be_bytes()]))
        .map_err(|e| TimelockError::Malformed(e.to_string()))
}

/// `sha256` of a pairing value in arkworks' serialisation (12 little-endian Fp, c0 before c1).
fn h2(g: &<Bls12_381 as Pairing>::TargetField) -> Result<[u8; 32], TimelockError> {
    let mut bytes = Vec::with_capacity(576);
    g.serialize_compressed(&mut bytes)
        .map_err(|e| TimelockError::Malformed(e.to_string()))?;
    Ok(sha256(&[&bytes]))
}

/// drand quicknet's public key, which the live chain's pulses verify against.
pub fn quicknet_key() -> Result<G2Affine, TimelockError> {
    let bytes =
        hex::decode(QUICKNET_PUBLIC_KEY).map_err(|e| TimelockError::Malformed(e.to_string()))?;
    G2Affine::deserialize_compressed(&bytes[..])
        .map_err(|e| TimelockError::Malformed(e.to_string()))
}

/// A beacon of our own in drand's quicknet scheme (secret scalar; public key in G2; a round's
/// pulse is the secret times the round's identity point in G1). The embedded chain's pulses.
pub struct Beacon {
    secret: Fr,
    public: G2Affine,
}

impl Beacon {
    /// A beacon keyed by `seed` (hashed to a scalar).
    pub fn from_seed(seed: &[u8]) -> Self {
        let secret = Fr::from_be_bytes_mod_order(&sha256(&[b"nicheimage devnet beacon", seed]));
        let public = (G2Projective::generator() * secret).into_affine();
        Self { secret, public }
    }

    pub fn public_key(&self) -> G2Affine {
        self.public
    }

    /// The pulse (signature, 48-byte compressed G1) of `round`.
    pub fn pulse(&self, round: u64) -> Result<Vec<u8>, TimelockError> {
        let sig = (G1Projective::from(identity(round)?) * self.secret).into_affine();
        let mut out = Vec::with_capacity(48);
        sig.serialize_compressed(&mut out)
            .map_err(|e| TimelockError::Malformed(e.to_string()))?;
        Ok(out)
    }
}

fn r_of(sigma: &[u8; 32], key: &[u8; 32]) -> Fr {
    Fr::from_be_bytes_mod_order(&sha256(&[sigma, key]))
}

fn push_vec(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
    out.extend_from_slice(bytes);
}

/// The random parts of one encryption.
struct Randomness {
    key: [u8; 32],
    sigma: [u8; 32],
    nonce: [u8; 12],
}

/// Encrypts `message` so that the signature of drand quicknet round `round` opens it.
pub fn encrypt(message: &[u8], round: u64) -> Result<Vec<u8>, TimelockError> {
    encrypt_to(&quicknet_key()?, message, round)
}

/// Encrypts `message` so that the pulse of `round` of the beacon with key `key` opens it.
pub fn encrypt_to(key: &G2Affine, message: &[u8], round: u64) -> Result<Vec<u8>, TimelockError> {
    let mut random = [0u8; 76];
    getrandom::fill(&mut random).map_err(|e| TimelockError::Random(e.to_string()))?;
    let take = |at: usize| -> [u8; 32] { std::array::from_fn(|i| random[at + i]) };
    let (aes_key, sigma) = (take(0), take(32));
    let nonce = std::array::from_fn(|i| random[64 + i]);
    encrypt_with(
        key,
        message,
        round,
        &Randomness {
            key: aes_key,
            sigma,
            nonce,
        },
    )
}

fn encrypt_with(
    public: &G2Affine,
    message: &[u8],
    round: u64,
    rnd: &Randomness,
) -> Result<Vec<u8>, TimelockError> {
    let r = r_of(&rnd.sigma, &rnd.key);
    let u = (G2Projective::generator() * r).into_affine();
    let r_pub = (G2Projective::from(*public) * r).into_affine();
    let g_id = Bls12_381::pairing(identity(round)?, r_pub).0;
    let v = xor32(&rnd.sigma, &h2(&g_id)?);
    let w = xor32(&rnd.key, &sha256(&[&rnd.sigma]));
    let body = Aes256Gcm::new((&rnd.key).into())
        .encrypt(Nonce::from_slice(&rnd.nonce), message)
        .map_err(|e| TimelockError::Malformed(e.to_string()))?;
    let mut aes = Vec::with_capacity(body.len() + 36);
    push_vec(&mut aes, &body);
    push_vec(&mut aes, &rnd.nonce);
    let mut out = Vec::with_capacity(aes.len() + 200);
    u.serialize_compressed(&mut out)
        .map_err(|e| TimelockError::Malformed(e.to_string()))?;
    push_vec(&mut out, &v);
    push_vec(&mut out, &w);
    push_vec(&mut out, &aes);
    push_vec(&mut out, CIPHER_SUITE);
    Ok(out)
}

/// Reads one `u64`-length-prefixed vector (bounded by what is left).
fn take_vec<'a>(input: &mut &'a [u8]) -> Result<&'a [u8], TimelockError> {
    let bad = || TimelockError::Malformed("truncated vector".into());
    let (len, rest) = input.split_first_chunk::<8>().ok_or_else(bad)?;
    let len = usize::try_from(u64::from_le_bytes(*len)).map_err(|_| bad())?;
    if len > rest.len() {
        return Err(bad());
    }
    let (v, rest) = rest.split_at(len);
    *input = rest;
    Ok(v)
}

fn take32(input: &mut &[u8]) -> Result<[u8; 32], TimelockError> {
    take_vec(input)?
        .try_into()
        .map_err(|_| TimelockError::Malformed("expected 32 bytes".into()))
}

/// Opens a ciphertext with a round's signature (48-byte compressed G1), as the chain does.
pub fn decrypt(ciphertext: &[u8], signature: &[u8]) -> Result<Vec<u8>, TimelockError> {
    let sig = G1Affine::deserialize_compressed(signature)
        .map_err(|e| TimelockError::Malformed(format!("signature: {e}")))?;
    let mut input = ciphertext;
    let u = G2Affine::deserialize_compressed(&mut input)
        .map_err(|e| TimelockError::Malformed(format!("U: {e}")))?;
    let (v, w) = (take32(&mut input)?, take32(&mut input)?);
    let mut aes = take_vec(&mut input)?;
    // The suite is read (the scheme's layout ends with it) but, as the chain, not checked.
    take_vec(&mut input)?;
    let sigma = xor32(&v, &h2(&Bls12_381::pairing(sig, u).0)?);
    let key = xor32(&w, &sha256(&[&sigma]));
    if (G2Projective::generator() * r_of(&sigma, &key)).into_affine() != u {
        return Err(TimelockError::WrongSignature);
    }
    let body = take_vec(&mut aes)?;
    let nonce = take_vec(&mut aes)?;
    if nonce.len() != 12 {
        return Err(TimelockError::Malformed("nonce is not 12 bytes".into()));
    }
    Aes256Gcm::new((&key).into())
        .decrypt(Nonce::from_slice(nonce), body)
        .map_err(|_| TimelockError::WrongSignature)
}

/// What the chain decrypts and applies: SCALE `{hotkey, uids, values, version_key}`.
pub fn payload(hotkey: &[u8; 32], uids: &[u16], values: &[u16], version_key: u64) -> Vec<u8> {
    (&hotkey[..], uids, values, version_key).encode()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ark_ec::AffineRepr;

    /// drand quicknet's real signature of round 1000.
    const ROUND_1000: &str = "b44679b9a59af2ec876b1a6b1ad52ea9b1615fc3982b19576350f93447cb1125e342b73a8dd2bacbe47e4b6b63ed5e39";

    #[test]
    fn the_real_round_signature_opens_what_we_encrypt_and_nothing_else() {
        let sig = hex::decode(ROUND_1000).unwrap();
        let message = payload(&[7; 32], &[0, 1, 5], &[1, 65535, 30], 10);
        let ct = encrypt(&message, 1000).unwrap();
        assert_eq!(ct.len(), 244 + message.len());
        assert_eq!(decrypt(&ct, &sig).unwrap(), message);
        // Another round's ciphertext does not open with round 1000's signature.
        let other = encrypt(&message, 1001).unwrap();
        assert_eq!(decrypt(&other, &sig), Err(TimelockError::WrongSignature));
        // Truncated or lying input is an error, never a panic.
        for cut in [0, 50, 96, 100, 140, 200, ct.len() - 1] {
            assert!(decrypt(&ct[..cut], &sig).is_err());
        }
        let mut lying = ct.clone();
        lying[176..184].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(decrypt(&lying, &sig).is_err());
    }

    #[test]
    fn the_layout_is_the_serialised_tle_ciphertext() {
        let rnd = Randomness {
            key: [1; 32],
            sigma: [2; 32],
            nonce: [3; 12],
        };
        let quicknet = quicknet_key().unwrap();
        let ct = encrypt_with(&quicknet, b"hello", 1000, &rnd).unwrap();
        assert_eq!(&ct[96..104], &32u64.to_le_bytes());
        assert_eq!(&ct[176..184], &((5 + 16 + 8 + 12 + 8) as u64).to_le_bytes());
        assert_eq!(&ct[184..192], &21u64.to_le_bytes());
        assert_eq!(&ct[ct.len() - 16..ct.len() - 8], &8u64.to_le_bytes());
        assert_eq!(&ct[ct.len() - 8..], b"AES_GCM_");
        assert_eq!(
            encrypt_with(&quicknet, b"hello", 1000, &rnd).unwrap(),
            ct,
            "deterministic"
        );
    }

    #[test]
    fn our_beacon_pulses_open_what_is_encrypted_to_it() {
        let beacon = Beacon::from_seed(b"test");
        let ct = encrypt_to(&beacon.public_key(), b"weights", 77).unwrap();
        assert_eq!(
            decrypt(&ct, &beacon.pulse(77).unwrap()).unwrap(),
            b"weights"
        );
        assert_eq!(
            decrypt(&ct, &beacon.pulse(78).unwrap()),
            Err(TimelockError::WrongSignature)
        );
        // A pulse verifies as drand's do: e(pulse, g2) = e(H(round), public key).
        let sig = G1Affine::deserialize_compressed(&beacon.pulse(77).unwrap()[..]).unwrap();
        assert_eq!(
            Bls12_381::pairing(sig, G2Affine::generator()),
            Bls12_381::pairing(identity(77).unwrap(), beacon.public_key())
        );
    }
}
