//! Hotkeys and coldkeys as bittensor uses them. sr25519 (the default): schnorrkel with the
//! "substrate" signing context, keys expanded from a 32-byte mini-secret in Ed25519 mode (what
//! sp-core and bittensor do). ed25519 (bittensor-wallet 4's `cryptoType: 0`): the mini-secret is
//! the ed25519 seed, and messages are signed as they are.

use schnorrkel::{ExpansionMode, MiniSecretKey, PublicKey, SecretKey, Signature};

use super::ss58;

const SIGNING_CONTEXT: &[u8] = b"substrate";

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("invalid secret key: {0}")]
    Secret(String),
    #[error("invalid public key: {0}")]
    Public(String),
    #[error("invalid mnemonic: {0}")]
    Mnemonic(String),
    #[error("this key holds no secret (public-only), so it cannot sign")]
    PublicOnly,
}

/// The signature scheme of a key, numbered as bittensor-wallet 4 writes `cryptoType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum CryptoType {
    Ed25519 = 0,
    #[default]
    Sr25519 = 1,
}

impl CryptoType {
    /// `cryptoType` as a keyfile holds it (0 or 1).
    pub fn from_code(code: u64) -> Option<Self> {
        match code {
            0 => Some(Self::Ed25519),
            1 => Some(Self::Sr25519),
            _ => None,
        }
    }

    pub fn code(self) -> u8 {
        self as u8
    }

    /// The lowercase name, as `X-Bittensor-Crypto` and our CLI spell it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Ed25519 => "ed25519",
            Self::Sr25519 => "sr25519",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "ed25519" => Some(Self::Ed25519),
            "sr25519" => Some(Self::Sr25519),
            _ => None,
        }
    }
}

impl std::fmt::Display for CryptoType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

enum Secret {
    Sr25519(SecretKey),
    Ed25519(ed25519_dalek::SigningKey),
}

/// A hotkey: public part always, secret part when loaded from a keyfile with one.
/// Debug shows only the address; the secret never leaves this type except as a signature.
pub struct Keypair {
    crypto: CryptoType,
    public: [u8; 32],
    secret: Option<Secret>,
    ss58: String,
}

impl std::fmt::Debug for Keypair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keypair")
            .field("ss58", &self.ss58)
            .field("crypto", &self.crypto)
            .field("can_sign", &self.secret.is_some())
            .finish()
    }
}

impl Keypair {
    /// An sr25519 key from its 32-byte mini-secret.
    pub fn from_mini_secret(seed: &[u8]) -> Result<Self, KeyError> {
        Self::from_seed(CryptoType::Sr25519, seed)
    }

    /// A key of either kind from its 32-byte seed (`secretSeed`).
    pub fn from_seed(crypto: CryptoType, seed: &[u8]) -> Result<Self, KeyError> {
        match crypto {
            CryptoType::Sr25519 => {
                let mini =
                    MiniSecretKey::from_bytes(seed).map_err(|e| KeyError::Secret(e.to_string()))?;
                Ok(Self::from_sr25519(mini.expand(ExpansionMode::Ed25519)))
            }
            CryptoType::Ed25519 => {
                let seed: [u8; 32] = seed.try_into().map_err(|_| {
                    KeyError::Secret(format!("an ed25519 seed is 32 bytes, not {}", seed.len()))
                })?;
                Ok(Self::from_ed25519(ed25519_dalek::SigningKey::from_bytes(
                    &seed,
                )))
            }
        }
    }

    /// The `privateKey` field: for sr25519 the 64-byte schnorrkel secret (key ‖ nonce), for
    /// ed25519 the 32-byte seed (or seed ‖ public, 64 bytes, checked against each other).
    pub fn from_private_key(crypto: CryptoType, bytes: &[u8]) -> Result<Self, KeyError> {
        match crypto {
            CryptoType::Sr25519 => {
                let secret =
                    SecretKey::from_bytes(bytes).map_err(|e| KeyError::Secret(e.to_string()))?;
                Ok(Self::from_sr25519(secret))
            }
            CryptoType::Ed25519 => match bytes.len() {
                32 => Self::from_seed(crypto, bytes),
                64 => {
                    let key = Self::from_seed(crypto, &bytes[..32])?;
                    if key.public[..] != bytes[32..] {
                        return Err(KeyError::Secret(
                            "the ed25519 private key's public half is not its seed's".into(),
                        ));
                    }
                    Ok(key)
                }
                n => Err(KeyError::Secret(format!(
                    "an ed25519 private key is 32 or 64 bytes, not {n}"
                ))),
            },
        }
    }

    /// A BIP39 phrase, turned into a mini-secret the substrate way: PBKDF2-HMAC-SHA512 over the
    /// phrase's *entropy* (not its text), salt "mnemonic", 2048 rounds, first 32 bytes.
    pub fn from_phrase(phrase: &str) -> Result<Self, KeyError> {
        Self::from_phrase_as(CryptoType::Sr25519, phrase)
    }

    /// As [`Keypair::from_phrase`], for either kind (both take the same 32-byte seed).
    pub fn from_phrase_as(crypto: CryptoType, phrase: &str) -> Result<Self, KeyError> {
        let mnemonic = bip39::Mnemonic::parse_normalized(phrase)
            .map_err(|e| KeyError::Mnemonic(e.to_string()))?;
        let entropy = zeroize::Zeroizing::new(mnemonic.to_entropy());
        let mut seed = zeroize::Zeroizing::new([0u8; 64]);
        pbkdf2::pbkdf2::<hmac::Hmac<sha2_10::Sha512>>(&entropy, b"mnemonic", 2048, &mut *seed)
            .map_err(|e| KeyError::Mnemonic(e.to_string()))?;
        Self::from_seed(crypto, &seed[..32])
    }

    /// An sr25519 public key, for verifying only.
    pub fn public_only(ss58_address: &str) -> Result<Self, KeyError> {
        Self::public_only_as(CryptoType::Sr25519, ss58_address)
    }

    pub fn public_only_as(crypto: CryptoType, ss58_address: &str) -> Result<Self, KeyError> {
        let key = ss58::decode(ss58_address).map_err(|e| KeyError::Public(e.to_string()))?;
        if !valid_public(crypto, &key) {
            return Err(KeyError::Public(format!("not an {crypto} public key")));
        }
        Ok(Self {
            crypto,
            public: key,
            secret: None,
            ss58: ss58::encode(&key),
        })
    }

    /// A fresh random sr25519 key, for local hotkeys.
    pub fn generate() -> (Self, zeroize::Zeroizing<[u8; 32]>) {
        let mini = MiniSecretKey::generate();
        let seed = zeroize::Zeroizing::new(mini.to_bytes());
        (
            Self::from_sr25519(mini.expand(ExpansionMode::Ed25519)),
            seed,
        )
    }

    fn from_sr25519(secret: SecretKey) -> Self {
        Self::with_secret(Secret::Sr25519(secret))
    }

    fn from_ed25519(secret: ed25519_dalek::SigningKey) -> Self {
        Self::with_secret(Secret::Ed25519(secret))
    }

    fn with_secret(secret: Secret) -> Self {
        let (crypto, public) = match &secret {
            Secret::Sr25519(s) => (CryptoType::Sr25519, s.to_public().to_bytes()),
            Secret::Ed25519(s) => (CryptoType::Ed25519, s.verifying_key().to_bytes()),
        };
        Self {
            crypto,
            public,
            secret: Some(secret),
            ss58: ss58::encode(&public),
        }
    }

    pub fn ss58(&self) -> &str {
        &self.ss58
    }

    pub fn crypto(&self) -> CryptoType {
        self.crypto
    }

    pub fn public_bytes(&self) -> [u8; 32] {
        self.public
    }

    pub fn can_sign(&self) -> bool {
        self.secret.is_some()
    }

    pub fn sign(&self, message: &[u8]) -> Result<[u8; 64], KeyError> {
        match self.secret.as_ref().ok_or(KeyError::PublicOnly)? {
            Secret::Sr25519(secret) => {
                let ctx = schnorrkel::signing_context(SIGNING_CONTEXT);
                Ok(secret
                    .sign(ctx.bytes(message), &secret.to_public())
                    .to_bytes())
            }
            Secret::Ed25519(secret) => {
                use ed25519_dalek::Signer;
                Ok(secret.sign(message).to_bytes())
            }
        }
    }

    /// `0x` + hex, the form signatures travel in over HTTP.
    pub fn sign_hex(&self, message: &[u8]) -> Result<String, KeyError> {
        Ok(format!("0x{}", hex::encode(self.sign(message)?)))
    }
}

fn valid_public(crypto: CryptoType, key: &[u8; 32]) -> bool {
    match crypto {
        CryptoType::Sr25519 => PublicKey::from_bytes(key).is_ok(),
        CryptoType::Ed25519 => ed25519_dalek::VerifyingKey::from_bytes(key).is_ok(),
    }
}

/// Verifies an sr25519 signature by the holder of `public`. Like bittensor's verifiers it also
/// accepts a signature over `<Bytes>message</Bytes>` (the polkadot-js wrapping).
pub fn verify(public: &[u8; 32], message: &[u8], signature: &[u8]) -> bool {
    verify_as(CryptoType::Sr25519, public, message, signature)
}

/// Verifies a signature under `crypto`, the `<Bytes>` wrapping accepted as by [`verify`].
pub fn verify_as(crypto: CryptoType, public: &[u8; 32], message: &[u8], signature: &[u8]) -> bool {
    if verify_raw(crypto, public, message, signature) {
        return true;
    }
    let mut wrapped = Vec::with_capacity(message.len().saturating_add(15));
    wrapped.extend_from_slice(b"<Bytes>");
    wrapped.extend_from_slice(message);
    wrapped.extend_from_slice(b"</Bytes>");
    verify_raw(crypto, public, &wrapped, signature)
}

fn verify_raw(crypto: CryptoType, public: &[u8; 32], message: &[u8], signature: &[u8]) -> bool {
    match crypto {
        CryptoType::Sr25519 => {
            let (Ok(public), Ok(signature)) = (
                PublicKey::from_bytes(public),
                Signature::from_bytes(signature),
            ) else {
                return false;
            };
            let ctx = schnorrkel::signing_context(SIGNING_CONTEXT);
            public.verify(ctx.bytes(message), &signature).is_ok()
        }
        CryptoType::Ed25519 => {
            let (Ok(public), Ok(signature)) = (
                ed25519_dalek::VerifyingKey::from_bytes(public),
                ed25519_dalek::Signature::from_slice(signature),
            ) else {
                return false;
            };
            public.verify_strict(message, &signature).is_ok()
        }
    }
}

/// Parses `0x`-prefixed (or bare) hex of a 64-byte signature.
pub fn parse_signature_hex(text: &str) -> Option<[u8; 64]> {
    let bytes = hex::decode(text.trim().trim_start_matches("0x")).ok()?;
    bytes.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mini(last: u8) -> [u8; 32] {
        let mut seed = [0u8; 32];
        seed[31] = last;
        seed
    }

    #[test]
    fn spec_vectors_for_public_keys_and_addresses() {
        let one = Keypair::from_mini_secret(&mini(1)).unwrap();
        assert_eq!(
            hex::encode(one.public_bytes()),
            "3a3d45dc55b57bf542f4c6ff41af080ec675317f4ed50ae1d2713bf9f892692d"
        );
        assert_eq!(
            one.ss58(),
            "5DP4qTec9XxffaALGWsEPhS1oWrDWMBjzhBmyzShREMJpymt"
        );
        let two = Keypair::from_mini_secret(&mini(2)).unwrap();
        assert_eq!(
            two.ss58(),
            "5Dys2YgKb6cNcnc8QXk5NBw1gRN9bX2B4B92tbQJhYfwVVmo"
        );
    }

    #[test]
    fn signatures_verify_and_tampering_fails() {
        let key = Keypair::from_mini_secret(&mini(1)).unwrap();
        let sig = key.sign(b"hello").unwrap();
        assert!(verify(&key.public_bytes(), b"hello", &sig));
        assert!(!verify(&key.public_bytes(), b"hellO", &sig));
        let other = Keypair::from_mini_secret(&mini(2)).unwrap();
        assert!(!verify(&other.public_bytes(), b"hello", &sig));
        let public = Keypair::public_only(key.ss58()).unwrap();
        assert!(matches!(public.sign(b"x"), Err(KeyError::PublicOnly)));
        assert!(format!("{key:?}").contains(key.ss58()));
    }

    #[test]
    fn ed25519_keys_sign_plainly_and_verify_only_as_ed25519() {
        let key = Keypair::from_seed(CryptoType::Ed25519, &mini(1)).unwrap();
        assert_eq!(key.crypto(), CryptoType::Ed25519);
        let sig = key.sign(b"hello").unwrap();
        // Plain ed25519 (RFC 8032): deterministic, and dalek's own verifier agrees.
        assert_eq!(sig, key.sign(b"hello").unwrap());
        let dalek = ed25519_dalek::SigningKey::from_bytes(&mini(1));
        assert_eq!(dalek.verifying_key().to_bytes(), key.public_bytes());
        assert!(verify_as(
            CryptoType::Ed25519,
            &key.public_bytes(),
            b"hello",
            &sig
        ));
        assert!(!verify_as(
            CryptoType::Ed25519,
            &key.public_bytes(),
            b"hellO",
            &sig
        ));
        assert!(!verify(&key.public_bytes(), b"hello", &sig));
        // The seed and seed ‖ public forms of privateKey, and a lying public half.
        let mut long = mini(1).to_vec();
        long.extend(key.public_bytes());
        let again = Keypair::from_private_key(CryptoType::Ed25519, &long).unwrap();
        assert_eq!(again.ss58(), key.ss58());
        long[40] ^= 1;
        assert!(Keypair::from_private_key(CryptoType::Ed25519, &long).is_err());
        assert!(Keypair::from_private_key(CryptoType::Ed25519, &[1; 31]).is_err());
    }

    #[test]
    fn crypto_types_are_numbered_as_bittensor_wallet_4() {
        assert_eq!(CryptoType::from_code(0), Some(CryptoType::Ed25519));
        assert_eq!(CryptoType::from_code(1), Some(CryptoType::Sr25519));
        assert_eq!(CryptoType::from_code(2), None);
        assert_eq!(CryptoType::default(), CryptoType::Sr25519);
        assert_eq!(CryptoType::from_name("ed25519"), Some(CryptoType::Ed25519));
    }
}
