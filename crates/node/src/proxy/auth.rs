//! Who may use the proxy: requests signed by the subnet owner's Ed25519 key.
//!
//! Every request carries three headers: `x-proxy-timestamp` (unix seconds), `x-proxy-nonce`
//! (8–64 characters of `[A-Za-z0-9_-]`, never reused) and `x-proxy-signature` (base64 of the
//! Ed25519 signature over [`message`]: a version tag, the timestamp, the nonce and the body's
//! SHA-256). Requests older (or newer) than the allowed age, or whose nonce was already seen,
//! are refused. NicheImage's scheme — a static signed message checked against a public key the
//! *caller* supplies — proves nothing and is only available behind `proxy.legacy_auth`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier as _, VerifyingKey};
use sha2::{Digest, Sha256};

pub const TIMESTAMP_HEADER: &str = "x-proxy-timestamp";
pub const NONCE_HEADER: &str = "x-proxy-nonce";
pub const SIGNATURE_HEADER: &str = "x-proxy-signature";
const TAG: &str = "nicheimage-proxy-v1";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing header {0}")]
    Missing(&'static str),
    #[error("malformed header {0}")]
    Malformed(&'static str),
    #[error("request timestamp {age_secs} s from now; at most {max_secs} s allowed")]
    Stale { age_secs: i64, max_secs: u64 },
    #[error("nonce already used")]
    Replayed,
    #[error("bad signature")]
    BadSignature,
    #[error("no owner key is known yet (set proxy.owner_public_key or reach proxy.owner_api_url)")]
    NoOwnerKey,
    #[error("legacy credentials rejected: {0}")]
    Legacy(LegacyRefusal),
}

/// Why NicheImage's `authorization` check failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LegacyRefusal {
    #[error("no credentials from the owner API yet")]
    NoCredentials,
    #[error(transparent)]
    Key(#[from] BadPublicKey),
    #[error("the stored signature is not one")]
    StoredSignature,
    /// NicheImage's wording.
    #[error("Error getting authentication token")]
    Mismatch,
}

/// A public key that is not one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BadPublicKey {
    #[error("not 32 bytes of base64 or hex")]
    NotKeyBytes,
    #[error("not an Ed25519 public key")]
    NotEd25519,
}

/// Why the owner's signing key could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum OwnerKeyError {
    #[error("owner key {}: cannot {action}: {source}", path.display())]
    Io {
        action: &'static str,
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("owner key {}: not hex: {source}", path.display())]
    NotHex {
        path: std::path::PathBuf,
        source: hex::FromHexError,
    },
    #[error("owner key {}: not 32 bytes", path.display())]
    NotSeed { path: std::path::PathBuf },
    #[error("no randomness: {0}")]
    Random(getrandom::Error),
}

impl AuthError {
    /// A short stable name for counters.
    pub fn kind(&self) -> &'static str {
        match self {
            AuthError::Missing(_) | AuthError::Malformed(_) => "unsigned",
            AuthError::Stale { .. } => "stale",
            AuthError::Replayed => "replayed",
            AuthError::BadSignature | AuthError::Legacy(_) => "bad_signature",
            AuthError::NoOwnerKey => "no_owner_key",
        }
    }
}

/// The bytes the owner signs.
pub fn message(timestamp: i64, nonce: &str, body: &[u8]) -> Vec<u8> {
    let digest = hex::encode(Sha256::digest(body));
    format!("{TAG}\n{timestamp}\n{nonce}\n{digest}").into_bytes()
}

/// A public key as base64 or hex of its 32 bytes.
pub fn parse_public_key(text: &str) -> Result<VerifyingKey, BadPublicKey> {
    let text = text.trim();
    let bytes = hex::decode(text.trim_start_matches("0x"))
        .ok()
        .filter(|b| b.len() == 32)
        .or_else(|| B64.decode(text).ok())
        .ok_or(BadPublicKey::NotKeyBytes)?;
    let array: [u8; 32] = bytes.try_into().map_err(|_| BadPublicKey::NotKeyBytes)?;
    VerifyingKey::from_bytes(&array).map_err(|_| BadPublicKey::NotEd25519)
}

fn io(
    action: &'static str,
    path: &std::path::Path,
) -> impl FnOnce(std::io::Error) -> OwnerKeyError {
    let path = path.to_path_buf();
    move |source| OwnerKeyError::Io {
        action,
        path,
        source,
    }
}

/// The owner's signing key from a file holding its 32-byte seed in hex.
pub fn load_signing_key(path: &std::path::Path) -> Result<SigningKey, OwnerKeyError> {
    let text = std::fs::read_to_string(path).map_err(io("read", path))?;
    let bytes = hex::decode(text.trim().trim_start_matches("0x")).map_err(|source| {
        OwnerKeyError::NotHex {
            path: path.to_path_buf(),
            source,
        }
    })?;
    let seed: [u8; 32] = bytes.try_into().map_err(|_| OwnerKeyError::NotSeed {
        path: path.to_path_buf(),
    })?;
    Ok(SigningKey::from_bytes(&seed))
}

/// Writes a fresh owner key (hex seed, mode 0600); refuses to overwrite. Returns the public
/// key as base64, for `proxy.owner_public_key`.
pub fn create_signing_key(path: &std::path::Path) -> Result<String, OwnerKeyError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(OwnerKeyError::Random)?;
    let key = SigningKey::from_bytes(&seed);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io("create its folder", path))?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io("create", path))?;
    file.write_all(hex::encode(seed).as_bytes())
        .map_err(io("write", path))?;
    Ok(B64.encode(key.verifying_key().as_bytes()))
}

/// The three headers for `body`, signed now with a fresh nonce.
pub fn sign(key: &SigningKey, body: &[u8], unix_secs: i64) -> [(&'static str, String); 3] {
    let nonce = uuid::Uuid::new_v4().simple().to_string();
    let signature = key.sign(&message(unix_secs, &nonce, body));
    [
        (TIMESTAMP_HEADER, unix_secs.to_string()),
        (NONCE_HEADER, nonce),
        (SIGNATURE_HEADER, B64.encode(signature.to_bytes())),
    ]
}

/// NicheImage's credentials: a message the owner API signed, checked against a caller's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegacyCredentials {
    pub message: String,
    pub signature: Vec<u8>,
}

/// A request's signature headers, parsed and found fresh; the body is checked next.
#[derive(Debug, Clone)]
pub struct Signed {
    timestamp: i64,
    nonce: String,
    signature: Signature,
}

/// Checks signed requests and remembers nonces for as long as they could be accepted.
pub struct Verifier {
    max_age: Duration,
    owner: Mutex<Option<VerifyingKey>>,
    legacy: Mutex<Option<LegacyCredentials>>,
    seen: Mutex<HashMap<String, i64>>,
}

impl Verifier {
    pub fn new(max_age: Duration, owner: Option<VerifyingKey>) -> Self {
        Self {
            max_age,
            owner: Mutex::new(owner),
            legacy: Mutex::new(None),
            seen: Mutex::new(HashMap::new()),
        }
    }

    pub fn set_owner(&self, key: VerifyingKey) {
        *self.owner.lock().unwrap_or_else(|p| p.into_inner()) = Some(key);
    }

    pub fn has_owner(&self) -> bool {
        self.owner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }

    pub fn set_legacy(&self, credentials: LegacyCredentials) {
        *self.legacy.lock().unwrap_or_else(|p| p.into_inner()) = Some(credentials);
    }

    /// Checks one request's headers (name → value) against its body at `now` (unix seconds).
    pub fn check(
        &self,
        header: impl Fn(&'static str) -> Option<String>,
        body: &[u8],
        now: i64,
    ) -> Result<(), AuthError> {
        let signed = self.precheck(header, now)?;
        self.verify(&signed, body, now)
    }

    /// What the headers alone decide: present, well formed, fresh, an owner key known. Runs
    /// before the body is read, so unsigned and stale requests cost no body.
    pub fn precheck(
        &self,
        header: impl Fn(&'static str) -> Option<String>,
        now: i64,
    ) -> Result<Signed, AuthError> {
        let get = |name| header(name).ok_or(AuthError::Missing(name));
        let timestamp: i64 = get(TIMESTAMP_HEADER)?
            .trim()
            .parse()
            .map_err(|_| AuthError::Malformed(TIMESTAMP_HEADER))?;
        let nonce = get(NONCE_HEADER)?;
        if !(8..=64).contains(&nonce.len())
            || !nonce
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(AuthError::Malformed(NONCE_HEADER));
        }
        let signature = B64
            .decode(get(SIGNATURE_HEADER)?.trim())
            .ok()
            .and_then(|b| Signature::from_slice(&b).ok())
            .ok_or(AuthError::Malformed(SIGNATURE_HEADER))?;
        // The timestamp is the caller's: `abs_diff` cannot overflow where `now - timestamp`
        // would (e.g. `i64::MIN + now`).
        let max_secs = self.max_age.as_secs();
        if now.abs_diff(timestamp) > max_secs {
            return Err(AuthError::Stale {
                age_secs: now.saturating_sub(timestamp),
                max_secs,
            });
        }
        if !self.has_owner() {
            return Err(AuthError::NoOwnerKey);
        }
        Ok(Signed {
            timestamp,
            nonce,
            signature,
        })
    }

    /// The signature over `body`, then the nonce: only a valid signature may use one up.
    pub fn verify(&self, signed: &Signed, body: &[u8], now: i64) -> Result<(), AuthError> {
        let owner =
            (*self.owner.lock().unwrap_or_else(|p| p.into_inner())).ok_or(AuthError::NoOwnerKey)?;
        owner
            .verify_strict(
                &message(signed.timestamp, &signed.nonce, body),
                &signed.signature,
            )
            .map_err(|_| AuthError::BadSignature)?;
        let max_secs = self.max_age.as_secs();
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.retain(|_, t| now.abs_diff(*t) <= max_secs);
        if seen
            .insert(signed.nonce.clone(), signed.timestamp)
            .is_some()
        {
            return Err(AuthError::Replayed);
        }
        Ok(())
    }

    /// NicheImage's check: `authorization` (base64 public key) must verify the stored
    /// credentials' signature over their message.
    pub fn check_legacy(&self, authorization: &str) -> Result<(), AuthError> {
        let legacy = self
            .legacy
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or(AuthError::Legacy(LegacyRefusal::NoCredentials))?;
        let key = parse_public_key(authorization)
            .map_err(|e| AuthError::Legacy(LegacyRefusal::Key(e)))?;
        let signature = Signature::from_slice(&legacy.signature)
            .map_err(|_| AuthError::Legacy(LegacyRefusal::StoredSignature))?;
        key.verify(legacy.message.as_bytes(), &signature)
            .map_err(|_| AuthError::Legacy(LegacyRefusal::Mismatch))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers<'a>(
        h: &'a [(&'static str, String); 3],
    ) -> impl Fn(&'static str) -> Option<String> + 'a {
        move |name| h.iter().find(|(k, _)| *k == name).map(|(_, v)| v.clone())
    }

    #[test]
    fn signed_requests_pass_once_and_only_while_fresh() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let verifier = Verifier::new(Duration::from_secs(30), Some(key.verifying_key()));
        let body = br#"{"payload":{}}"#;
        let h = sign(&key, body, 1000);
        assert_eq!(verifier.check(headers(&h), body, 1010), Ok(()));
        assert_eq!(
            verifier.check(headers(&h), body, 1011),
            Err(AuthError::Replayed)
        );
        let h = sign(&key, body, 1000);
        assert_eq!(
            verifier.check(headers(&h), body, 1031).unwrap_err().kind(),
            "stale"
        );
        let h = sign(&key, body, 1000);
        assert_eq!(
            verifier.check(headers(&h), b"{}", 1000),
            Err(AuthError::BadSignature),
            "the signature covers the body"
        );
        let other = SigningKey::from_bytes(&[8; 32]);
        let h = sign(&other, body, 1000);
        assert_eq!(
            verifier.check(headers(&h), body, 1000),
            Err(AuthError::BadSignature)
        );
        assert_eq!(
            verifier.check(|_| None, body, 1000),
            Err(AuthError::Missing(TIMESTAMP_HEADER))
        );
    }

    #[test]
    fn extreme_timestamps_are_stale_not_an_overflow() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let verifier = Verifier::new(Duration::from_secs(30), Some(key.verifying_key()));
        let body = b"{}";
        let now = 1_700_000_000i64;
        for (timestamp, at) in [
            (i64::MIN + now, now),
            (i64::MIN, now),
            (i64::MAX, now),
            (i64::MAX, -1),
            (i64::MIN, i64::MAX),
        ] {
            let h = sign(&key, body, timestamp);
            let err = verifier.check(headers(&h), body, at).unwrap_err();
            assert_eq!(err.kind(), "stale", "{timestamp} at {at}: {err}");
            assert!(err.to_string().contains("at most 30 s"), "{err}");
        }
    }

    #[test]
    fn headers_are_checked_before_the_body() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let verifier = Verifier::new(Duration::from_secs(30), Some(key.verifying_key()));
        let h = sign(&key, b"body", 1000);
        let signed = verifier.precheck(headers(&h), 1000).unwrap();
        assert_eq!(
            verifier.verify(&signed, b"other", 1000),
            Err(AuthError::BadSignature)
        );
        assert_eq!(verifier.verify(&signed, b"body", 1000), Ok(()));
        assert_eq!(
            verifier
                .precheck(headers(&sign(&key, b"", 900)), 1000)
                .unwrap_err()
                .kind(),
            "stale"
        );
    }

    #[test]
    fn without_an_owner_key_nothing_passes() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let verifier = Verifier::new(Duration::from_secs(30), None);
        let h = sign(&key, b"x", 5);
        assert_eq!(
            verifier.check(headers(&h), b"x", 5),
            Err(AuthError::NoOwnerKey)
        );
    }

    #[test]
    fn legacy_credentials_check_the_callers_key() {
        let key = SigningKey::from_bytes(&[9; 32]);
        let verifier = Verifier::new(Duration::from_secs(30), None);
        verifier.set_legacy(LegacyCredentials {
            message: "hello".into(),
            signature: key.sign(b"hello").to_bytes().to_vec(),
        });
        let public = B64.encode(key.verifying_key().as_bytes());
        assert_eq!(verifier.check_legacy(&public), Ok(()));
        let other = B64.encode(SigningKey::from_bytes(&[1; 32]).verifying_key().as_bytes());
        assert!(verifier.check_legacy(&other).is_err());
    }

    #[test]
    fn public_keys_parse_from_hex_and_base64() {
        let key = SigningKey::from_bytes(&[3; 32]).verifying_key();
        assert_eq!(parse_public_key(&hex::encode(key.as_bytes())), Ok(key));
        assert_eq!(parse_public_key(&B64.encode(key.as_bytes())), Ok(key));
        assert!(parse_public_key("abc").is_err());
    }
}
