//! The subtensor client: a thin JSON-RPC client (one shared websocket with backoff) that reads the
//! metagraph through the `NeuronInfoRuntimeApi` runtime call, hyperparameters from storage, and
//! writes `serve_axon` / `set_weights` as hand-built extrinsics. Every write is dry-run first
//! (`BlockBuilder_apply_extrinsic`) so the operator hears the chain's refusal by name.

pub mod extrinsic;
pub mod metadata;
pub mod rpc;
pub mod scale;

use std::sync::Arc;

use futures::FutureExt;
use futures::future::BoxFuture;
use parity_scale_codec::{Decode, Encode};
use serde_json::{Value, json};

use super::{Chain, ChainError, Hyperparams, Metagraph, ServeAxon};
use crate::bittensor::keypair::Keypair;
use metadata::ChainMetadata;
use rpc::Rpc;
use scale::DryRun;

const PALLET: &str = "SubtensorModule";

pub struct SubtensorChain {
    network: String,
    rpc: Rpc,
    /// Metadata for a spec version; refetched after a runtime upgrade.
    metadata: tokio::sync::Mutex<Option<(u32, Arc<ChainMetadata>)>>,
}

impl SubtensorChain {
    pub fn new(network: &str, url: &str) -> Self {
        Self {
            network: network.to_string(),
            rpc: Rpc::new(url),
            metadata: tokio::sync::Mutex::new(None),
        }
    }

    async fn block_number(&self) -> Result<u64, ChainError> {
        let header = self.rpc.call("chain_getHeader", json!([])).await?;
        parse_hex_number(&header["number"])
    }

    async fn storage<T: Decode>(
        &self,
        item: &str,
        key: &[u8],
        default: T,
    ) -> Result<T, ChainError> {
        let value = self
            .rpc
            .call(
                "state_getStorage",
                json!([scale::storage_key(PALLET, item, key)]),
            )
            .await?;
        if value.is_null() {
            return Ok(default);
        }
        let bytes = scale::hex_bytes(&value)?;
        T::decode(&mut &bytes[..]).map_err(|e| ChainError::Decode(format!("{PALLET}.{item}: {e}")))
    }

    async fn runtime_version(&self) -> Result<(u32, u32), ChainError> {
        let version = self.rpc.call("state_getRuntimeVersion", json!([])).await?;
        let field = |name: &str| {
            version[name]
                .as_u64()
                .map(|v| v as u32)
                .ok_or_else(|| ChainError::Decode(format!("runtime version lacks {name}")))
        };
        Ok((field("specVersion")?, field("transactionVersion")?))
    }

    async fn metadata(&self, spec_version: u32) -> Result<Arc<ChainMetadata>, ChainError> {
        let mut cached = self.metadata.lock().await;
        if let Some((version, meta)) = cached.as_ref()
            && *version == spec_version
        {
            return Ok(meta.clone());
        }
        let bytes = scale::hex_bytes(&self.rpc.call("state_getMetadata", json!([])).await?)?;
        let meta = Arc::new(metadata::parse(&bytes)?);
        *cached = Some((spec_version, meta.clone()));
        Ok(meta)
    }

    /// Builds, dry-runs and submits a SubtensorModule call signed by `signer`.
    async fn submit(&self, signer: &Keypair, call: &str, args: Vec<u8>) -> Result<(), ChainError> {
        let (spec_version, tx_version) = self.runtime_version().await?;
        let meta = self.metadata(spec_version).await?;
        let mut encoded = meta.call_index(PALLET, call)?.to_vec();
        encoded.extend_from_slice(&args);
        let genesis = hash32(&self.rpc.call("chain_getBlockHash", json!([0])).await?)?;
        let head = self.rpc.call("chain_getBlockHash", json!([])).await?;
        let header = self
            .rpc
            .call("chain_getHeader", json!([head.clone()]))
            .await?;
        let nonce = self
            .rpc
            .call("system_accountNextIndex", json!([signer.ss58()]))
            .await?;
        let ctx = extrinsic::TxContext {
            spec_version,
            tx_version,
            genesis,
            checkpoint_block: parse_hex_number(&header["number"])?,
            checkpoint_hash: hash32(&head)?,
            nonce: nonce
                .as_u64()
                .ok_or_else(|| ChainError::Decode(format!("account nonce {nonce}")))?
                as u32,
        };
        let xt = extrinsic::signed(&encoded, signer, &meta.extensions, &ctx)?;
        let xt_hex = format!("0x{}", hex::encode(&xt));
        let dry = self
            .rpc
            .call(
                "state_call",
                json!(["BlockBuilder_apply_extrinsic", xt_hex, head]),
            )
            .await?;
        match scale::decode_apply_result(&scale::hex_bytes(&dry)?)? {
            DryRun::Ok => {}
            DryRun::Module { pallet, error } => {
                let full = meta.error_name(pallet, error);
                let name = full.rsplit("::").next().unwrap_or(&full).to_string();
                return Err(ChainError::refused(
                    &name,
                    format!("{call} dry run: {full}"),
                ));
            }
            DryRun::Invalid(kind) => {
                let name = kind
                    .strip_prefix("Custom(")
                    .and_then(|c| c.trim_end_matches(')').parse().ok())
                    .and_then(scale::custom_invalid_name)
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("InvalidTransaction::{kind}"));
                return Err(ChainError::refused(
                    &name,
                    format!("{call} refused by the transaction pool"),
                ));
            }
            DryRun::Dispatch(kind) => {
                return Err(ChainError::refused(&kind, format!("{call} dry run")));
            }
        }
        let hash = self
            .rpc
            .call("author_submitExtrinsic", json!([xt_hex]))
            .await?;
        tracing::info!(call, tx = %hash, "submitted to {}", self.rpc.url());
        Ok(())
    }
}

fn parse_hex_number(value: &Value) -> Result<u64, ChainError> {
    value
        .as_str()
        .and_then(|s| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok())
        .ok_or_else(|| ChainError::Decode(format!("block number {value}")))
}

fn hash32(value: &Value) -> Result<[u8; 32], ChainError> {
    scale::hex_bytes(value)?
        .try_into()
        .map_err(|_| ChainError::Decode(format!("block hash {value}")))
}

/// `serve_axon` arguments in call order (all fixed-width).
pub fn serve_axon_args(axon: &ServeAxon) -> Vec<u8> {
    let (ip, ip_type) = super::AxonInfo::encode_ip(axon.ip);
    (
        axon.netuid,
        axon.version,
        ip,
        axon.port,
        ip_type,
        axon.protocol,
        0u8,
        0u8,
    )
        .encode()
}

impl Chain for SubtensorChain {
    fn describe(&self) -> String {
        format!("subtensor {} at {}", self.network, self.rpc.url())
    }

    fn block(&self) -> BoxFuture<'_, Result<u64, ChainError>> {
        self.block_number().boxed()
    }

    fn metagraph(&self, netuid: u16) -> BoxFuture<'_, Result<Metagraph, ChainError>> {
        async move {
            let block = self.block_number().await?;
            let data = format!("0x{}", hex::encode(netuid.to_le_bytes()));
            let answer = self
                .rpc
                .call(
                    "state_call",
                    json!(["NeuronInfoRuntimeApi_get_neurons_lite", data]),
                )
                .await?;
            let neurons = scale::decode_neurons(&scale::hex_bytes(&answer)?)?;
            Ok(Metagraph {
                netuid,
                block,
                neurons,
            })
        }
        .boxed()
    }

    fn hyperparams(&self, netuid: u16) -> BoxFuture<'_, Result<Hyperparams, ChainError>> {
        async move {
            let key = netuid.to_le_bytes();
            Ok(Hyperparams {
                tempo: self.storage("Tempo", &key, 360u16).await?,
                weights_rate_limit: self.storage("WeightsSetRateLimit", &key, 100u64).await?,
                weights_version_key: self.storage("WeightsVersionKey", &key, 0u64).await?,
                commit_reveal_enabled: self
                    .storage("CommitRevealWeightsEnabled", &key, true)
                    .await?,
            })
        }
        .boxed()
    }

    fn serve_axon<'a>(
        &'a self,
        signer: &'a Keypair,
        axon: ServeAxon,
    ) -> BoxFuture<'a, Result<(), ChainError>> {
        async move {
            let graph = self.metagraph(axon.netuid).await?;
            let me = graph
                .by_hotkey(signer.ss58())
                .ok_or_else(|| ChainError::refused("HotKeyNotRegisteredInSubNet", signer.ss58()))?;
            let (ip, _) = super::AxonInfo::encode_ip(axon.ip);
            if me.axon.ip == ip
                && me.axon.port == axon.port
                && me.axon.version == axon.version
                && me.axon.protocol == axon.protocol
            {
                return Ok(());
            }
            self.submit(signer, "serve_axon", serve_axon_args(&axon))
                .await
        }
        .boxed()
    }

    fn set_weights<'a>(
        &'a self,
        signer: &'a Keypair,
        netuid: u16,
        uids: Vec<u16>,
        weights: Vec<u16>,
        version_key: u64,
    ) -> BoxFuture<'a, Result<(), ChainError>> {
        async move {
            let hyper = self.hyperparams(netuid).await?;
            if hyper.commit_reveal_enabled {
                return Err(ChainError::refused(
                    "CommitRevealEnabled",
                    format!("subnet {netuid}"),
                ));
            }
            self.submit(
                signer,
                "set_weights",
                (netuid, uids, weights, version_key).encode(),
            )
            .await
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serve_axon_arguments_are_fixed_width_in_call_order() {
        let axon = ServeAxon {
            netuid: 23,
            version: 10_002_000,
            ip: "1.2.3.4".parse().unwrap(),
            port: 8091,
            protocol: 4,
        };
        let args = serve_axon_args(&axon);
        assert_eq!(args.len(), 2 + 4 + 16 + 2 + 1 + 1 + 1 + 1);
        assert_eq!(&args[..2], &[23, 0]);
        assert_eq!(&args[6..10], &[4, 3, 2, 1]);
        assert_eq!(args[24], 4);
    }

    #[tokio::test]
    async fn an_unreachable_chain_is_a_quick_clear_error_with_backoff() {
        // Nothing listens on port 9 (discard) on loopback in the test environment.
        let chain = SubtensorChain::new("local", "ws://127.0.0.1:9");
        let first = chain.block().await.unwrap_err();
        assert!(matches!(first, ChainError::Unreachable { .. }), "{first}");
        let second = chain.block().await.unwrap_err().to_string();
        assert!(second.contains("next try in"), "{second}");
    }
}
