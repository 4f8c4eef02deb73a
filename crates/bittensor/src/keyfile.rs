//! Bittensor keyfiles: plain JSON, or `$NACL`-encrypted JSON (Argon2i key, XSalsa20-Poly1305
//! secretbox). The two older envelopes (ansible-vault, Fernet) are recognised and refused.

use argon2::{Algorithm, Argon2, Params, Version};
use crypto_secretbox::aead::{Aead, KeyInit};
use crypto_secretbox::{Nonce, XSalsa20Poly1305};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::keypair::{CryptoType, KeyError, Keypair};

const NACL_PREFIX: &[u8] = b"$NACL";
/// btwallet's fixed Argon2 salt (bittensor keyfiles are not salted per file).
const NACL_SALT: [u8; 16] = [
    0x13, 0x71, 0x83, 0xdf, 0xf1, 0x5a, 0x09, 0xbc, 0x9c, 0x90, 0xb5, 0x51, 0x87, 0x39, 0xe9, 0xb1,
];
/// libsodium's OPSLIMIT_SENSITIVE / MEMLIMIT_SENSITIVE for argon2i.
const NACL_T_COST: u32 = 8;
const NACL_M_COST_KIB: u32 = 512 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum KeyfileError {
    #[error("the keyfile is encrypted; give its password (env NICHEIMAGE_WALLET_PASSWORD)")]
    PasswordNeeded,
    #[error("wrong password, or the encrypted keyfile is damaged")]
    Decrypt,
    #[error(
        "legacy {0} keyfile: this node reads only plain and $NACL keyfiles; re-encrypt it with a current btcli (`btcli wallet update`)"
    )]
    Legacy(&'static str),
    #[error("not a bittensor keyfile: {0}")]
    Format(String),
    #[error("no random bytes from the system: {0}")]
    Random(String),
    #[error(transparent)]
    Key(#[from] KeyError),
}

/// The JSON inside a keyfile. Missing values are null in older SDKs.
#[derive(Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyfileJson {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_phrase: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_seed: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ss58_address: Option<String>,
    /// bittensor-wallet 4: 0 ed25519, 1 sr25519; absent (older files) means sr25519.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crypto_type: Option<serde_json::Value>,
}

impl KeyfileJson {
    /// `cryptoType` as a number (what 4.1 writes) or its digits or name as a string.
    fn crypto(&self) -> Result<CryptoType, KeyfileError> {
        let Some(value) = &self.crypto_type else {
            return Ok(CryptoType::Sr25519);
        };
        let parsed = match value {
            serde_json::Value::Null => Some(CryptoType::Sr25519),
            serde_json::Value::Number(n) => n.as_u64().and_then(CryptoType::from_code),
            serde_json::Value::String(s) => {
                let s = s.trim().to_ascii_lowercase();
                CryptoType::from_name(&s)
                    .or_else(|| s.parse::<u64>().ok().and_then(CryptoType::from_code))
            }
            _ => None,
        };
        parsed.ok_or_else(|| {
            KeyfileError::Format(format!(
                "cryptoType {} is neither 0 (ed25519) nor 1 (sr25519)",
                nicheimage_common::text::clip(&value.to_string(), 32)
            ))
        })
    }
}

impl Drop for KeyfileJson {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        for secret in [
            &mut self.private_key,
            &mut self.secret_phrase,
            &mut self.secret_seed,
        ] {
            if let Some(s) = secret.as_mut() {
                s.zeroize();
            }
        }
    }
}

pub fn is_encrypted(data: &[u8]) -> bool {
    data.starts_with(NACL_PREFIX)
        || data.starts_with(b"$ANSIBLE_VAULT")
        || data.starts_with(b"gAAAAA")
}

/// Reads a keyfile's bytes into a key pair, decrypting with `password` when it is `$NACL`.
pub fn parse(data: &[u8], password: Option<&str>) -> Result<Keypair, KeyfileError> {
    if data.starts_with(b"$ANSIBLE_VAULT") {
        return Err(KeyfileError::Legacy("ansible-vault"));
    }
    if data.starts_with(b"gAAAAA") {
        return Err(KeyfileError::Legacy("Fernet"));
    }
    if data.starts_with(NACL_PREFIX) {
        let password = password.ok_or(KeyfileError::PasswordNeeded)?;
        let plain = decrypt_nacl(data, password)?;
        return keypair_from_json(&plain);
    }
    keypair_from_json(data)
}

fn nacl_key(password: &str) -> Result<Zeroizing<[u8; 32]>, KeyfileError> {
    let params = Params::new(NACL_M_COST_KIB, NACL_T_COST, 1, Some(32))
        .map_err(|e| KeyfileError::Format(e.to_string()))?;
    let mut key = Zeroizing::new([0u8; 32]);
    Argon2::new(Algorithm::Argon2i, Version::V0x13, params)
        .hash_password_into(password.as_bytes(), &NACL_SALT, &mut *key)
        .map_err(|e| KeyfileError::Format(e.to_string()))?;
    Ok(key)
}

/// Decrypts `$NACL ‖ nonce(24) ‖ secretbox`. Costs 512 MiB and a few seconds, by design.
pub fn decrypt_nacl(data: &[u8], password: &str) -> Result<Zeroizing<Vec<u8>>, KeyfileError> {
    let body = &data[NACL_PREFIX.len()..];
    if body.len() < 24 + 16 {
        return Err(KeyfileError::Format(
            "encrypted keyfile is truncated".into(),
        ));
    }
    let (nonce, ciphertext) = body.split_at(24);
    let key = nacl_key(password)?;
    let cipher = XSalsa20Poly1305::new_from_slice(&*key).map_err(|_| KeyfileError::Decrypt)?;
    cipher
        .decrypt(Nonce::from_slice(nonce), ciphertext)
        .map(Zeroizing::new)
        .map_err(|_| KeyfileError::Decrypt)
}

/// Encrypts keyfile JSON the way btwallet does (used to write password-protected hotkeys).
pub fn encrypt_nacl(plain: &[u8], password: &str) -> Result<Vec<u8>, KeyfileError> {
    let key = nacl_key(password)?;
    let cipher = XSalsa20Poly1305::new_from_slice(&*key).map_err(|_| KeyfileError::Decrypt)?;
    let nonce_bytes: [u8; 24] = rand_bytes()?;
    let sealed = cipher
        .encrypt(Nonce::from_slice(&nonce_bytes), plain)
        .map_err(|_| KeyfileError::Decrypt)?;
    let mut out = Vec::with_capacity(NACL_PREFIX.len() + 24 + sealed.len());
    out.extend_from_slice(NACL_PREFIX);
    out.extend_from_slice(&nonce_bytes);
    out.extend_from_slice(&sealed);
    Ok(out)
}

/// Bytes from the operating system's random source (a uuid's bytes would not do: six of
/// every sixteen bits of a v4 uuid are fixed).
fn rand_bytes<const N: usize>() -> Result<[u8; N], KeyfileError> {
    let mut out = [0u8; N];
    getrandom::fill(&mut out).map_err(|e| KeyfileError::Random(e.to_string()))?;
    Ok(out)
}

fn hex32(field: &str, text: &str) -> Result<Zeroizing<Vec<u8>>, KeyfileError> {
    let bytes = hex::decode(text.trim().trim_start_matches("0x"))
        .map_err(|e| KeyfileError::Format(format!("{field} is not hex: {e}")))?;
    Ok(Zeroizing::new(bytes))
}

/// A `secretSeed` value: `0x` + hex of 32 bytes, or — as bittensor_wallet writes it when the
/// seed's bytes happen to be valid UTF-8 — `0x` followed by the 32 bytes as text. Anything else:
/// `None` (the loader then falls back to `privateKey`, and the `ss58Address` check stands guard).
fn seed_bytes(text: &str) -> Option<Zeroizing<Vec<u8>>> {
    let body = text.strip_prefix("0x").unwrap_or(text);
    if let Ok(bytes) = hex::decode(body)
        && bytes.len() == 32
    {
        return Some(Zeroizing::new(bytes));
    }
    (body.len() == 32).then(|| Zeroizing::new(body.as_bytes().to_vec()))
}

/// btwallet's loading priority: phrase, then seed, then private key, then address only.
fn keypair_from_json(data: &[u8]) -> Result<Keypair, KeyfileError> {
    let json: KeyfileJson = serde_json::from_slice(data)
        .map_err(|e| KeyfileError::Format(format!("keyfile JSON: {e}")))?;
    let crypto = json.crypto()?;
    let keypair = if let Some(phrase) = json.secret_phrase.as_deref() {
        Keypair::from_phrase_as(crypto, phrase)?
    } else if let Some(seed) = json.secret_seed.as_deref().and_then(seed_bytes) {
        Keypair::from_seed(crypto, &seed)?
    } else if let Some(private) = json.private_key.as_deref() {
        Keypair::from_private_key(crypto, &hex32("privateKey", private)?)?
    } else if let Some(address) = json.ss58_address.as_deref() {
        Keypair::public_only_as(crypto, address)?
    } else {
        return Err(KeyfileError::Format(
            "no secretPhrase, secretSeed, privateKey or ss58Address".into(),
        ));
    };
    if let Some(address) = json.ss58_address.as_deref()
        && address != keypair.ss58()
    {
        return Err(KeyfileError::Format(format!(
            "ss58Address {address} does not match the key it holds ({})",
            keypair.ss58()
        )));
    }
    Ok(keypair)
}

/// The keyfile JSON for a fresh sr25519 key made from a phrase.
pub fn json_for_phrase(phrase: &str) -> Result<(Keypair, Zeroizing<String>), KeyfileError> {
    json_for_phrase_as(CryptoType::Sr25519, phrase)
}

/// The keyfile JSON for a fresh key of either kind made from a phrase, as bittensor-wallet 4
/// writes it (with `cryptoType`).
pub fn json_for_phrase_as(
    crypto: CryptoType,
    phrase: &str,
) -> Result<(Keypair, Zeroizing<String>), KeyfileError> {
    let keypair = Keypair::from_phrase_as(crypto, phrase)?;
    let mut json = public_json(&keypair);
    json.secret_phrase = Some(phrase.to_string());
    let text = serde_json::to_string(&json).map_err(|e| KeyfileError::Format(e.to_string()))?;
    Ok((keypair, Zeroizing::new(text)))
}

/// The public half as a keyfile holds it (a `pub.txt`, or the base of a full keyfile).
pub fn public_json(keypair: &Keypair) -> KeyfileJson {
    let public = format!("0x{}", hex::encode(keypair.public_bytes()));
    KeyfileJson {
        account_id: Some(public.clone()),
        public_key: Some(public),
        ss58_address: Some(keypair.ss58().to_string()),
        // Only where it is not the default: bittensor-wallet ≤ 4.0 cannot read a numeric
        // cryptoType, and 4.1 reads its absence as sr25519.
        crypto_type: (keypair.crypto() != CryptoType::Sr25519)
            .then(|| serde_json::Value::from(keypair.crypto().code())),
        private_key: None,
        secret_phrase: None,
        secret_seed: None,
    }
}

/// A new random 12-word phrase.
pub fn new_phrase() -> Result<Zeroizing<String>, KeyfileError> {
    let entropy = Zeroizing::new(rand_bytes::<16>()?);
    let mnemonic =
        bip39::Mnemonic::from_entropy(&*entropy).map_err(|e| KeyError::Mnemonic(e.to_string()))?;
    Ok(Zeroizing::new(mnemonic.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_json_in_every_loading_form() {
        let seed = format!("0x{}01", "00".repeat(31));
        let by_seed = format!(r#"{{"secretSeed":"{seed}","ss58Address":null}}"#);
        let key = parse(by_seed.as_bytes(), None).unwrap();
        assert_eq!(
            key.ss58(),
            "5DP4qTec9XxffaALGWsEPhS1oWrDWMBjzhBmyzShREMJpymt"
        );
        let raw_seed = format!(r#"{{"secretSeed":"0x{}\u0001"}}"#, r"\u0000".repeat(31));
        assert_eq!(parse(raw_seed.as_bytes(), None).unwrap().ss58(), key.ss58());
        let public = r#"{"ss58Address":"5DP4qTec9XxffaALGWsEPhS1oWrDWMBjzhBmyzShREMJpymt"}"#;
        assert!(!parse(public.as_bytes(), None).unwrap().can_sign());
        let phrase = new_phrase().unwrap();
        let (made, json) = json_for_phrase(&phrase).unwrap();
        assert_eq!(parse(json.as_bytes(), None).unwrap().ss58(), made.ss58());
        let mismatch = format!(
            r#"{{"secretSeed":"{seed}","ss58Address":"5Dys2YgKb6cNcnc8QXk5NBw1gRN9bX2B4B92tbQJhYfwVVmo"}}"#
        );
        assert!(matches!(
            parse(mismatch.as_bytes(), None),
            Err(KeyfileError::Format(_))
        ));
    }

    #[test]
    fn legacy_and_garbage_are_refused_clearly() {
        assert!(matches!(
            parse(b"$ANSIBLE_VAULT;1.1;AES256\n", None),
            Err(KeyfileError::Legacy(_))
        ));
        assert!(matches!(
            parse(b"gAAAAABk", None),
            Err(KeyfileError::Legacy(_))
        ));
        assert!(matches!(
            parse(b"$NACLxxxx", None),
            Err(KeyfileError::PasswordNeeded)
        ));
        assert!(matches!(parse(b"{}", None), Err(KeyfileError::Format(_))));
        assert!(matches!(
            parse(b"not json", None),
            Err(KeyfileError::Format(_))
        ));
    }

    #[test]
    fn nacl_round_trip_and_wrong_password() {
        let plain = br#"{"ss58Address":"5DP4qTec9XxffaALGWsEPhS1oWrDWMBjzhBmyzShREMJpymt"}"#;
        let sealed = encrypt_nacl(plain, "hunter2").unwrap();
        assert!(is_encrypted(&sealed));
        assert_eq!(&*decrypt_nacl(&sealed, "hunter2").unwrap(), plain);
        assert!(matches!(
            decrypt_nacl(&sealed, "hunter3"),
            Err(KeyfileError::Decrypt)
        ));
    }
}
