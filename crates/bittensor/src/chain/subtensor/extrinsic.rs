//! Signed extrinsics (format v4) built by hand from the metadata's extension list: each known
//! extension writes its explicit part and its signed-over implicit part; unknown extensions are
//! accepted only when both parts are empty (a runtime upgrade adding a non-empty one stops us with
//! a clear error instead of a bad signature).

use parity_scale_codec::{Compact, Encode};

use super::metadata::ExtensionInfo;
use super::scale::blake2_256;
use crate::chain::ChainError;
use crate::keypair::Keypair;

/// Blocks a transaction stays valid for.
const MORTAL_PERIOD: u64 = 64;

/// What the signature commits to besides the call.
#[derive(Debug, Clone)]
pub struct TxContext {
    pub spec_version: u32,
    pub tx_version: u32,
    pub genesis: [u8; 32],
    /// The block the mortality era starts at, and its hash.
    pub checkpoint_block: u64,
    pub checkpoint_hash: [u8; 32],
    pub nonce: u32,
}

/// Mortal era encoding (period a power of two; phase = birth block mod period).
pub fn mortal_era(period: u64, block: u64) -> [u8; 2] {
    let period = period
        .checked_next_power_of_two()
        .unwrap_or(1 << 16)
        .clamp(4, 1 << 16);
    let phase = block % period;
    let quantize = (period >> 12).max(1);
    let encoded =
        (period.trailing_zeros() - 1).clamp(1, 15) as u16 | (((phase / quantize) as u16) << 4);
    encoded.to_le_bytes()
}

/// The explicit and implicit bytes of every extension, in metadata order.
pub fn extension_parts(
    extensions: &[ExtensionInfo],
    ctx: &TxContext,
) -> Result<(Vec<u8>, Vec<u8>), ChainError> {
    let (mut extra, mut additional) = (Vec::new(), Vec::new());
    for ext in extensions {
        match ext.identifier.as_str() {
            "CheckSpecVersion" => ctx.spec_version.encode_to(&mut additional),
            "CheckTxVersion" => ctx.tx_version.encode_to(&mut additional),
            "CheckGenesis" => additional.extend_from_slice(&ctx.genesis),
            "CheckMortality" | "CheckEra" => {
                extra.extend_from_slice(&mortal_era(MORTAL_PERIOD, ctx.checkpoint_block));
                additional.extend_from_slice(&ctx.checkpoint_hash);
            }
            "CheckNonce" => Compact(ctx.nonce).encode_to(&mut extra),
            "ChargeTransactionPayment" | "ChargeTransactionPaymentWrapper" => {
                Compact(0u64).encode_to(&mut extra)
            }
            "CheckMetadataHash" => {
                extra.push(0); // mode: disabled
                additional.push(0); // Option<hash>: None
            }
            _ if ext.extra_empty && ext.additional_empty => {}
            other => {
                return Err(ChainError::Unsupported(format!(
                    "the runtime has a transaction extension this build cannot fill in: {other}"
                )));
            }
        }
    }
    Ok((extra, additional))
}

/// A signed v4 extrinsic: `len ‖ 0x84 ‖ MultiAddress::Id ‖ MultiSignature ‖ extra ‖ call`, the
/// signature's variant the signer's scheme (`Ed25519` = 0, `Sr25519` = 1).
pub fn signed(
    call: &[u8],
    signer: &Keypair,
    extensions: &[ExtensionInfo],
    ctx: &TxContext,
) -> Result<Vec<u8>, ChainError> {
    let (extra, additional) = extension_parts(extensions, ctx)?;
    let mut payload = Vec::with_capacity(call.len() + extra.len() + additional.len());
    payload.extend_from_slice(call);
    payload.extend_from_slice(&extra);
    payload.extend_from_slice(&additional);
    let to_sign = if payload.len() > 256 {
        blake2_256(&payload).to_vec()
    } else {
        payload
    };
    let signature = signer
        .sign(&to_sign)
        .map_err(|e| ChainError::Unsupported(format!("cannot sign: {e}")))?;
    let mut body = Vec::with_capacity(1 + 33 + 65 + extra.len() + call.len());
    body.push(0x84);
    body.push(0x00);
    body.extend_from_slice(&signer.public_bytes());
    body.push(match signer.crypto() {
        crate::keypair::CryptoType::Ed25519 => 0x00,
        crate::keypair::CryptoType::Sr25519 => 0x01,
    });
    body.extend_from_slice(&signature);
    body.extend_from_slice(&extra);
    body.extend_from_slice(call);
    let mut out = Compact(body.len() as u32).encode();
    out.extend_from_slice(&body);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ext(id: &str, empty: bool) -> ExtensionInfo {
        ExtensionInfo {
            identifier: id.into(),
            extra_empty: empty,
            additional_empty: empty,
            extra_ty: 0,
            additional_ty: 0,
        }
    }

    #[test]
    fn eras_encode_like_substrate() {
        // Period 64 → low nibble 5; phase 42 in the high bits: 0x02a5 little-endian.
        assert_eq!(mortal_era(64, 42), [0xa5, 0x02]);
        assert_eq!(mortal_era(64, 0), [0x05, 0x00]);
    }

    #[test]
    fn builds_a_verifiable_extrinsic_and_refuses_unknown_extensions() {
        let signer = Keypair::from_mini_secret(&[3; 32]).unwrap();
        let ctx = TxContext {
            spec_version: 425,
            tx_version: 1,
            genesis: [1; 32],
            checkpoint_block: 100,
            checkpoint_hash: [2; 32],
            nonce: 5,
        };
        let list = vec![
            ext("CheckNonZeroSender", true),
            ext("CheckSpecVersion", false),
            ext("CheckMortality", false),
            ext("CheckNonce", false),
            ext("ChargeTransactionPaymentWrapper", false),
            ext("DrandPriority", true),
            ext("CheckMetadataHash", false),
        ];
        let call = [7u8, 0, 23, 0];
        let xt = signed(&call, &signer, &list, &ctx).unwrap();
        let (extra, additional) = extension_parts(&list, &ctx).unwrap();
        assert_eq!(extra, vec![0x45, 0x02, 20, 0, 0]);
        assert_eq!(additional.len(), 4 + 32 + 1);
        let mut body = &xt[..];
        let len = <Compact<u32> as parity_scale_codec::Decode>::decode(&mut body)
            .unwrap()
            .0;
        assert_eq!(body.len(), len as usize);
        assert_eq!(body[0], 0x84, "signed, format v4");
        assert_eq!(&body[2..34], &signer.public_bytes());
        let signature = &body[35..99];
        let mut payload = call.to_vec();
        payload.extend_from_slice(&extra);
        payload.extend_from_slice(&additional);
        assert!(crate::keypair::verify(
            &signer.public_bytes(),
            &payload,
            signature
        ));
        assert!(xt.ends_with(&call));
        let unknown = vec![ext("NewFeeThing", false)];
        assert!(matches!(
            signed(&call, &signer, &unknown, &ctx),
            Err(ChainError::Unsupported(_))
        ));
    }
}
