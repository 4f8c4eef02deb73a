//! sr25519 keys as bittensor uses them: schnorrkel with the "substrate" signing context, keys
//! expanded from a 32-byte mini-secret in Ed25519 mode (what sp-core and bittensor do).

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

/// A hotkey: public part always, secret part when loaded from a keyfile with one.
/// Debug shows only the address; the secret never leaves this type except as a signature.
pub struct Keypair {
    public: PublicKey,
    secret: Option<SecretKey>,
    ss58: String,
}

impl std::fmt::Debug for Keypair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keypair")
            .field("ss58", &self.ss58)
            .field("can_sign", &self.secret.is_some())
            .finish()
    }
}

impl Keypair {
    pub fn from_mini_secret(seed: &[u8]) -> Result<Self, KeyError> {
        let mini = MiniSecretKey::from_bytes(seed).map_err(|e| KeyError::Secret(e.to_string()))?;
        Ok(Self::from_secret(mini.expand(ExpansionMode::Ed25519)))
    }

    /// A 64-byte schnorrkel secret (key ‖ nonce), as btwallet's `privateKey` field holds it.
    pub fn from_private_key(bytes: &[u8]) -> Result<Self, KeyError> {
        let secret = SecretKey::from_bytes(bytes).map_err(|e| KeyError::Secret(e.to_string()))?;
        Ok(Self::from_secret(secret))
    }

    /// A BIP39 phrase, turned into a mini-secret the substrate way: PBKDF2-HMAC-SHA512 over the
    /// phrase's *entropy* (not its text), salt "mnemonic", 2048 rounds, first 32 bytes.
    pub fn from_phrase(phrase: &str) -> Result<Self, KeyError> {
        let mnemonic = bip39::Mnemonic::parse_normalized(phrase)
            .map_err(|e| KeyError::Mnemonic(e.to_string()))?;
        let entropy = zeroize::Zeroizing::new(mnemonic.to_entropy());
        let mut seed = zeroize::Zeroizing::new([0u8; 64]);
        pbkdf2::pbkdf2::<hmac::Hmac<sha2_10::Sha512>>(&entropy, b"mnemonic", 2048, &mut *seed)
            .map_err(|e| KeyError::Mnemonic(e.to_string()))?;
        Self::from_mini_secret(&seed[..32])
    }

    pub fn public_only(ss58_address: &str) -> Result<Self, KeyError> {
        let key = ss58::decode(ss58_address).map_err(|e| KeyError::Public(e.to_string()))?;
        let public = PublicKey::from_bytes(&key).map_err(|e| KeyError::Public(e.to_string()))?;
        Ok(Self {
            public,
            secret: None,
            ss58: ss58::encode(&key),
        })
    }

    /// A fresh random key, for local hotkeys.
    pub fn generate() -> (Self, zeroize::Zeroizing<[u8; 32]>) {
        let mini = MiniSecretKey::generate();
        let seed = zeroize::Zeroizing::new(mini.to_bytes());
        (Self::from_secret(mini.expand(ExpansionMode::Ed25519)), seed)
    }

    fn from_secret(secret: SecretKey) -> Self {
        let public = secret.to_public();
        let ss58 = ss58::encode(&public.to_bytes());
        Self {
            public,
            secret: Some(secret),
            ss58,
        }
    }

    pub fn ss58(&self) -> &str {
        &self.ss58
    }

    pub fn public_bytes(&self) -> [u8; 32] {
        self.public.to_bytes()
    }

    pub fn can_sign(&self) -> bool {
        self.secret.is_some()
    }

    pub fn sign(&self, message: &[u8]) -> Result<[u8; 64], KeyError> {
        let secret = self.secret.as_ref().ok_or(KeyError::PublicOnly)?;
        let ctx = schnorrkel::signing_context(SIGNING_CONTEXT);
        Ok(secret.sign(ctx.bytes(message), &self.public).to_bytes())
    }

    /// `0x` + hex, the form signatures travel in over HTTP.
    pub fn sign_hex(&self, message: &[u8]) -> Result<String, KeyError> {
        Ok(format!("0x{}", hex::encode(self.sign(message)?)))
    }
}

/// Verifies an sr25519 signature by the holder of `public`. Like bittensor's verifiers it also
/// accepts a signature over `<Bytes>message</Bytes>` (the polkadot-js wrapping).
pub fn verify(public: &[u8; 32], message: &[u8], signature: &[u8]) -> bool {
    let (Ok(public), Ok(signature)) = (
        PublicKey::from_bytes(public),
        Signature::from_bytes(signature),
    ) else {
        return false;
    };
    let ctx = schnorrkel::signing_context(SIGNING_CONTEXT);
    if public.verify(ctx.bytes(message), &signature).is_ok() {
        return true;
    }
    let mut wrapped = Vec::with_capacity(message.len() + 15);
    wrapped.extend_from_slice(b"<Bytes>");
    wrapped.extend_from_slice(message);
    wrapped.extend_from_slice(b"</Bytes>");
    public.verify(ctx.bytes(&wrapped), &signature).is_ok()
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
}
