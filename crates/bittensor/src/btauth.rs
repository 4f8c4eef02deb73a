//! `btauth/1`: bittensor 11's signed HTTP requests (`bittensor/http_auth.py` of the 11.3 wheel,
//! the signed-requests guide of subtensor). A request proves "sent by hotkey X to hotkey Y, with
//! exactly this body, recently" with six headers; the signed payload is eight newline-joined
//! lines: `btauth/1`, the scheme (`sr25519`/`ed25519`), the method upper-cased, the request
//! target as sent (path and `?query`), the lowercase-hex sha256 of the raw body, the nonce
//! (unix ns, decimal), the sender's ss58 and the receiver's ss58 (`-` when unbound).
//!
//! Verification is split in two so an axon spends nothing on a stranger's body before it can:
//! [`Claim::from_headers`] checks, in the SDK's order, the header shapes (every value's length
//! first), the receiver and freshness; [`Claim::verify`] then checks the signature over the body
//! under the declared scheme only, and [`ReplayCache::accept`] records the nonce only after the
//! signature verified.

use std::collections::HashMap;
use std::sync::Mutex;

use sha2::{Digest, Sha256};

use crate::keypair::{self, CryptoType, KeyError, Keypair};
use crate::ss58;

pub const PROTOCOL: &str = "btauth/1";
pub const VERSION: &str = "1";
pub const HEADER_VERSION: &str = "x-bittensor-version";
pub const HEADER_HOTKEY: &str = "x-bittensor-hotkey";
pub const HEADER_RECEIVER: &str = "x-bittensor-receiver";
pub const HEADER_NONCE: &str = "x-bittensor-nonce";
pub const HEADER_CRYPTO: &str = "x-bittensor-crypto";
pub const HEADER_SIGNATURE: &str = "x-bittensor-signature";

/// The SDK's freshness window: 10 s back, 2 s of forward clock drift.
pub const MAX_AGE_NS: u64 = 10_000_000_000;
pub const ALLOWED_SKEW_NS: u64 = 2_000_000_000;
/// A nonce is a u64 of nanoseconds: at most 20 digits.
const MAX_NONCE_CHARS: usize = 20;
/// `0x` + 128 hex digits.
const MAX_SIGNATURE_CHARS: usize = 130;
const MAX_CRYPTO_CHARS: usize = 8;

/// Why a signed request was refused, as the SDK's `AuthError` subclasses name it; the text is
/// the SDK's own message (what its `{"detail": ...}` carries).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("{0}")]
    Malformed(String),
    #[error("{0}")]
    WrongReceiver(String),
    #[error("{0}")]
    Stale(String),
    #[error("signature does not verify against the claimed hotkey")]
    BadSignature,
    #[error("this nonce was already accepted from this hotkey")]
    Replayed,
    #[error("too many signed requests in flight; try again")]
    Busy,
}

impl AuthError {
    /// The HTTP status: 401 for every authentication failure (the guide's mapping; 403 is for
    /// callers who authenticated but may not call), 503 when our replay memory is full.
    pub fn status(&self) -> u16 {
        match self {
            AuthError::Busy => 503,
            _ => 401,
        }
    }
}

/// The exact bytes that are signed.
pub fn payload(
    crypto: CryptoType,
    method: &str,
    target: &str,
    body: &[u8],
    nonce: u64,
    sender: &str,
    receiver: Option<&str>,
) -> String {
    let hash = hex::encode(Sha256::digest(body));
    [
        PROTOCOL,
        crypto.name(),
        &method.to_ascii_uppercase(),
        target,
        &hash,
        &nonce.to_string(),
        sender,
        receiver.unwrap_or("-"),
    ]
    .join("\n")
}

/// The headers that sign `method target` with `body` for `receiver`, at `nonce` (unix ns; each
/// retry must sign a fresh one).
pub fn sign(
    key: &Keypair,
    method: &str,
    target: &str,
    body: &[u8],
    receiver: Option<&str>,
    nonce: u64,
) -> Result<Vec<(&'static str, String)>, KeyError> {
    let message = payload(
        key.crypto(),
        method,
        target,
        body,
        nonce,
        key.ss58(),
        receiver,
    );
    let mut headers = vec![
        (HEADER_VERSION, VERSION.to_string()),
        (HEADER_HOTKEY, key.ss58().to_string()),
        (HEADER_NONCE, nonce.to_string()),
        (HEADER_SIGNATURE, key.sign_hex(message.as_bytes())?),
    ];
    if key.crypto() != CryptoType::Sr25519 {
        headers.push((HEADER_CRYPTO, key.crypto().name().to_string()));
    }
    if let Some(receiver) = receiver {
        headers.push((HEADER_RECEIVER, receiver.to_string()));
    }
    Ok(headers)
}

/// A request's btauth/1 headers, checked for shape, receiver and freshness; the signature is
/// checked with the body.
#[derive(Debug, Clone)]
pub struct Claim {
    pub hotkey: String,
    public: [u8; 32],
    pub crypto: CryptoType,
    pub nonce: u64,
    signature: [u8; 64],
    receiver: String,
}

impl Claim {
    /// The header checks of the SDK's `verify`, in its order: shape, receiver (required, and
    /// ours), freshness against `now_ns`. Every value's length is checked before it is decoded.
    pub fn from_headers(
        header: impl Fn(&str) -> Option<String>,
        our_hotkey: &str,
        now_ns: u64,
    ) -> Result<Self, AuthError> {
        let malformed = |why: &str| AuthError::Malformed(why.to_string());
        if header(HEADER_VERSION).as_deref() != Some(VERSION) {
            return Err(malformed(
                "missing or unsupported X-Bittensor-Version (expected '1')",
            ));
        }
        let hotkey = header(HEADER_HOTKEY)
            .filter(|h| !h.is_empty())
            .ok_or_else(|| malformed("missing X-Bittensor-Hotkey"))?;
        let nonce = header(HEADER_NONCE).ok_or_else(|| malformed("missing X-Bittensor-Nonce"))?;
        let nonce = Some(nonce.trim())
            .filter(|n| n.len() <= MAX_NONCE_CHARS)
            .and_then(|n| n.parse::<u64>().ok())
            .ok_or_else(|| malformed("X-Bittensor-Nonce is not a decimal integer of u64 range"))?;
        let crypto = match header(HEADER_CRYPTO) {
            None => CryptoType::Sr25519,
            Some(c) => Some(c.trim().to_ascii_lowercase())
                .filter(|c| c.len() <= MAX_CRYPTO_CHARS)
                .and_then(|c| {
                    CryptoType::from_name(&c)
                        .or_else(|| c.parse::<u64>().ok().and_then(CryptoType::from_code))
                })
                .ok_or_else(|| malformed("unsupported X-Bittensor-Crypto"))?,
        };
        let signature =
            header(HEADER_SIGNATURE).ok_or_else(|| malformed("missing X-Bittensor-Signature"))?;
        let signature = Some(signature)
            .filter(|s| s.len() <= MAX_SIGNATURE_CHARS)
            .and_then(|s| hex::decode(s.strip_prefix("0x").unwrap_or(&s)).ok())
            .ok_or_else(|| malformed("X-Bittensor-Signature is not hex"))?;
        let receiver = match header(HEADER_RECEIVER) {
            None => {
                return Err(AuthError::WrongReceiver(
                    "missing X-Bittensor-Receiver: this server requires receiver-bound requests"
                        .into(),
                ));
            }
            Some(r) if r != our_hotkey => {
                return Err(AuthError::WrongReceiver(
                    "request was signed for a different receiving hotkey".into(),
                ));
            }
            Some(r) => r,
        };
        if now_ns.saturating_sub(nonce) > MAX_AGE_NS {
            return Err(AuthError::Stale(
                "nonce is older than the 10s freshness window".into(),
            ));
        }
        if nonce.saturating_sub(now_ns) > ALLOWED_SKEW_NS {
            return Err(AuthError::Stale(
                "nonce is more than 2s in the future".into(),
            ));
        }
        // The SDK decodes these while verifying and calls a failure malformed; so do we.
        let encoding = || malformed("invalid hotkey address or signature encoding");
        let public = ss58::decode(&hotkey).map_err(|_| encoding())?;
        let signature: [u8; 64] = signature.try_into().map_err(|_| encoding())?;
        Ok(Self {
            hotkey,
            public,
            crypto,
            nonce,
            signature,
            receiver,
        })
    }

    /// The signature over `method target body`, under the declared scheme only (like the SDK's
    /// verifier, a signature over the `<Bytes>`-wrapped payload passes too).
    pub fn verify(&self, method: &str, target: &str, body: &[u8]) -> Result<(), AuthError> {
        let message = payload(
            self.crypto,
            method,
            target,
            body,
            self.nonce,
            &self.hotkey,
            Some(&self.receiver),
        );
        if keypair::verify_as(
            self.crypto,
            &self.public,
            message.as_bytes(),
            &self.signature,
        ) {
            Ok(())
        } else {
            Err(AuthError::BadSignature)
        }
    }
}

/// The seen-nonce memory: `(hotkey, nonce)` pairs accepted inside the freshness window. Written
/// only after a signature verified; bounded in all and per hotkey, and full means "try again"
/// (to that hotkey alone when it is its own share that is full), never an eviction of a pair
/// that could still pass as fresh (which would reopen a replay).
pub struct ReplayCache {
    inner: Mutex<Seen>,
    capacity: usize,
    per_hotkey: usize,
}

#[derive(Default)]
struct Seen {
    pairs: std::collections::HashSet<(String, u64)>,
    /// `(expiry, hotkey, nonce)`: a pair expires once its nonce can no longer be fresh.
    by_expiry: std::collections::BTreeSet<(u64, String, u64)>,
    per_hotkey: HashMap<String, usize>,
}

impl ReplayCache {
    pub fn new(capacity: usize, per_hotkey: usize) -> Self {
        Self {
            inner: Mutex::new(Seen::default()),
            capacity,
            per_hotkey,
        }
    }

    /// Records `(hotkey, nonce)` at `now_ns` (read after the body arrived): `Stale` if the
    /// nonce is no longer fresh — a body may take longer than the window, and the SDK checks
    /// freshness after reading it too —, `Replayed` if it was accepted before.
    pub fn accept(&self, hotkey: &str, nonce: u64, now_ns: u64) -> Result<(), AuthError> {
        if now_ns.saturating_sub(nonce) > MAX_AGE_NS {
            return Err(AuthError::Stale(
                "nonce is older than the 10s freshness window".into(),
            ));
        }
        let mut seen = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        while seen
            .by_expiry
            .first()
            .is_some_and(|(expiry, ..)| *expiry <= now_ns)
        {
            let Some((_, key, n)) = seen.by_expiry.pop_first() else {
                break;
            };
            if let Some(count) = seen.per_hotkey.get_mut(&key) {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    seen.per_hotkey.remove(&key);
                }
            }
            seen.pairs.remove(&(key, n));
        }
        let pair = (hotkey.to_string(), nonce);
        if seen.pairs.contains(&pair) {
            return Err(AuthError::Replayed);
        }
        let mine = seen.per_hotkey.get(hotkey).copied().unwrap_or(0);
        if seen.pairs.len() >= self.capacity || mine >= self.per_hotkey {
            return Err(AuthError::Busy);
        }
        // Fresh until `nonce + MAX_AGE`: kept one nanosecond past that.
        let expiry = nonce.saturating_add(MAX_AGE_NS).saturating_add(1);
        seen.by_expiry.insert((expiry, hotkey.to_string(), nonce));
        seen.pairs.insert(pair);
        *seen.per_hotkey.entry(hotkey.to_string()).or_default() += 1;
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pairs
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice_ed25519() -> Keypair {
        // sp-core's DEV_PHRASE + "//Alice" for ed25519: the guide's golden-vector sender.
        let seed = hex::decode("abf8e5bdbe30c65656c0a3cbd181ff8a56294a69dfedd27982aace4a76909115")
            .unwrap();
        Keypair::from_seed(CryptoType::Ed25519, &seed).unwrap()
    }

    const BOB: &str = "5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty";
    const NONCE: u64 = 1_752_076_800_000_000_000;

    fn lookup<'a>(headers: &'a [(&'static str, String)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            headers
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.clone())
        }
    }

    #[test]
    fn the_guides_ed25519_vector_reproduces_byte_for_byte() {
        let key = alice_ed25519();
        assert_eq!(
            key.ss58(),
            "5FA9nQDVg267DEd8m1ZypXLBnvN7SFxYwV7ndqSYGiN9TTpu"
        );
        let body = br#"{"prompt": "hello"}"#;
        let headers = sign(
            &key,
            "post",
            "/generate?stream=false",
            body,
            Some(BOB),
            NONCE,
        )
        .unwrap();
        let get = lookup(&headers);
        assert_eq!(
            get(HEADER_SIGNATURE).unwrap(),
            "0x1a6b631988bf1f7ea093ab9d5acf61f05c316d0b0e428b24b487b75a5f6ee0e1a56a26918fdf871b6cf09437e6588023a4ce423cf622621b2a7feee17612f704"
        );
        assert_eq!(get(HEADER_CRYPTO).as_deref(), Some("ed25519"));
        let claim = Claim::from_headers(&get, BOB, NONCE).unwrap();
        claim
            .verify("POST", "/generate?stream=false", body)
            .unwrap();
        assert_eq!(
            claim.verify("POST", "/generate?stream=true", body),
            Err(AuthError::BadSignature)
        );
    }

    #[test]
    fn the_guides_sr25519_vector_verifies() {
        // sr25519 signatures are randomised: one the SDK made over the guide's payload.
        let alice = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY";
        let signature = "0x528c47ae81a24baf73bce310164f7769d23b0680d722730bc13da540dd1fea25cc1f42d5406b2ad96d8955aa943662eac268b20f47c40e2908d08e2deec07384";
        let headers = vec![
            (HEADER_VERSION, "1".to_string()),
            (HEADER_HOTKEY, alice.to_string()),
            (HEADER_NONCE, NONCE.to_string()),
            (HEADER_SIGNATURE, signature.to_string()),
            (HEADER_RECEIVER, BOB.to_string()),
        ];
        let body = br#"{"prompt": "hello"}"#;
        let expected = "btauth/1\nsr25519\nPOST\n/generate?stream=false\n341c57448e531310fbbe83f44cea2a5e838bd9e8a6b82b269f01d0dbbc23c3cc\n1752076800000000000\n5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY\n5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty";
        let ours = payload(
            CryptoType::Sr25519,
            "POST",
            "/generate?stream=false",
            body,
            NONCE,
            alice,
            Some(BOB),
        );
        assert_eq!(ours, expected);
        let claim = Claim::from_headers(lookup(&headers), BOB, NONCE).unwrap();
        claim
            .verify("POST", "/generate?stream=false", body)
            .unwrap();
        assert_eq!(
            claim.verify("POST", "/generate?stream=false", b"{}"),
            Err(AuthError::BadSignature)
        );
    }

    #[test]
    fn checks_run_in_the_sdks_order_and_name_their_reason() {
        let key = alice_ed25519();
        let headers = sign(&key, "POST", "/x", b"{}", Some(BOB), NONCE).unwrap();
        let get = lookup(&headers);
        let wrong = Claim::from_headers(&get, key.ss58(), NONCE).unwrap_err();
        assert!(matches!(wrong, AuthError::WrongReceiver(_)), "{wrong}");
        assert_eq!(wrong.status(), 401);
        let stale = Claim::from_headers(&get, BOB, NONCE + MAX_AGE_NS + 1).unwrap_err();
        assert!(matches!(stale, AuthError::Stale(_)), "{stale}");
        let ahead = Claim::from_headers(&get, BOB, NONCE - ALLOWED_SKEW_NS - 1).unwrap_err();
        assert!(matches!(ahead, AuthError::Stale(_)), "{ahead}");
        // Overlong values are refused by their length, before decoding.
        let long = "5".repeat(64_000);
        let mut forged = headers.clone();
        forged.retain(|(k, _)| *k != HEADER_HOTKEY);
        forged.push((HEADER_HOTKEY, long));
        let err = Claim::from_headers(lookup(&forged), BOB, NONCE).unwrap_err();
        assert!(matches!(err, AuthError::Malformed(_)), "{err}");
        let mut no_receiver = headers.clone();
        no_receiver.retain(|(k, _)| *k != HEADER_RECEIVER);
        let err = Claim::from_headers(lookup(&no_receiver), BOB, NONCE).unwrap_err();
        assert!(matches!(err, AuthError::WrongReceiver(_)), "{err}");
    }

    #[test]
    fn the_replay_cache_refuses_repeats_and_when_full_never_evicts() {
        let cache = ReplayCache::new(3, 2);
        cache.accept("a", 1, 0).unwrap();
        assert_eq!(cache.accept("a", 1, 5), Err(AuthError::Replayed));
        cache.accept("a", 2, 5).unwrap();
        // One hotkey's share is full: only it waits.
        assert_eq!(cache.accept("a", 3, 5), Err(AuthError::Busy));
        cache.accept("b", 1, 5).unwrap();
        assert_eq!(cache.accept("c", 1, 5), Err(AuthError::Busy));
        // A pair expires only once its nonce can no longer be fresh, whenever it arrived.
        let late = 1 + MAX_AGE_NS;
        assert_eq!(cache.accept("a", 1, late), Err(AuthError::Replayed));
        cache.accept("c", late, late + 1).unwrap();
        assert_eq!(cache.len(), 2);
    }

    #[test]
    fn a_body_that_arrives_after_the_window_is_stale() {
        let cache = ReplayCache::new(8, 8);
        let nonce = 1_000;
        assert!(matches!(
            cache.accept("a", nonce, nonce + MAX_AGE_NS + 1),
            Err(AuthError::Stale(_))
        ));
        cache.accept("a", nonce, nonce + MAX_AGE_NS).unwrap();
    }
}
