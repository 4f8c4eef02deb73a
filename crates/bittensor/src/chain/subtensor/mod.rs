//! The subtensor client: a thin JSON-RPC client (one shared websocket with backoff) that reads the
//! metagraph through the `NeuronInfoRuntimeApi` runtime call, hyperparameters from storage, and
//! writes `serve_axon` / `set_weights` as hand-built extrinsics. Every write is dry-run first
//! (`BlockBuilder_apply_extrinsic`) so the operator hears the chain's refusal by name.

pub mod commit;
pub mod dynamic;
pub mod extrinsic;
pub mod metadata;
pub mod rpc;
pub mod scale;

use std::sync::Arc;

use futures::FutureExt;
use futures::future::BoxFuture;
use parity_scale_codec::{Decode, Encode};
use serde_json::{Value, json};

use super::commit::{self as shared_commit, CommitRecord, PendingCommit, WeightsMode};
use super::epoch::{self, EpochState};
use super::{Chain, ChainError, Hyperparams, Metagraph, ServeAxon};
use crate::keypair::Keypair;
use metadata::ChainMetadata;
use rpc::Rpc;
use scale::DryRun;

const PALLET: &str = "SubtensorModule";
/// How long a submission waits for the signer's earlier transactions to land (a few blocks).
const PENDING_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

pub struct SubtensorChain {
    network: String,
    rpc: Rpc,
    /// Metadata for a spec version; refetched after a runtime upgrade.
    metadata: tokio::sync::Mutex<Option<(u32, Arc<ChainMetadata>)>>,
    /// One past the nonce of each signer's last submission (a node may show a transaction in
    /// neither its pool nor its state while it builds the block); held across a submission, so
    /// submissions go one at a time, each after the last has landed.
    submitted: tokio::sync::Mutex<std::collections::HashMap<[u8; 32], u32>>,
    /// Seconds per block, for the reveal round of timelocked commits (12 on finney).
    block_time_secs: f64,
}

impl SubtensorChain {
    pub fn new(network: &str, url: &str) -> Self {
        Self {
            network: network.to_string(),
            rpc: Rpc::new(url),
            metadata: tokio::sync::Mutex::new(None),
            submitted: tokio::sync::Mutex::new(Default::default()),
            block_time_secs: 12.0,
        }
    }

    /// The chain's block time (`subtensor.block_time_secs`), for timelocked reveal rounds.
    pub fn with_block_time(mut self, secs: f64) -> Self {
        self.block_time_secs = secs;
        self
    }

    /// Encrypts the weights to the drand round today's SDK picks for this subnet's reveal epoch
    /// (bittensor-drand 2.0 on a dynamic-tempo runtime, 1.3 on an older one) and submits the
    /// runtime's timelocked commit call (version 4).
    pub async fn commit_timelocked(
        &self,
        signer: &Keypair,
        netuid: u16,
        uids: Vec<u16>,
        weights: Vec<u16>,
        version_key: u64,
    ) -> Result<shared_commit::TimelockedCommit, ChainError> {
        use super::timelock;
        let call = match self.weights_mode(netuid).await? {
            WeightsMode::Timelocked { call } => call,
            other => {
                return Err(ChainError::Unsupported(format!(
                    "subnet {netuid} is in {}, not timelocked",
                    other.describe()
                )));
            }
        };
        let meta = self.current_metadata().await?;
        let state = self.epoch_state(netuid).await?;
        let committed_at = shared_commit::unix_now();
        let (round, schedule) = shared_commit::timelocked_round(&state, committed_at)?;
        let payload = timelock::payload(&signer.public_bytes(), &uids, &weights, version_key);
        let ciphertext = timelock::encrypt(&payload, round)
            .map_err(|e| ChainError::Unsupported(format!("timelock encryption: {e}")))?;
        let version = match meta.storage_entry(PALLET, "CommitRevealWeightsVersion") {
            Ok(_) => self
                .storage_value(&meta, PALLET, "CommitRevealWeightsVersion", &[])
                .await?
                .map(|v| v.as_u16())
                .transpose()?
                .unwrap_or(timelock::COMMIT_REVEAL_VERSION),
            Err(_) => timelock::COMMIT_REVEAL_VERSION,
        };
        let args = commit::timelocked_args(call, netuid, &ciphertext, round, version);
        self.submit(signer, call, args).await?;
        Ok(shared_commit::TimelockedCommit::new(
            &state,
            schedule,
            round,
            committed_at,
            uids,
            weights,
        ))
    }

    /// Alpha, root and total stake per uid from `get_metagraph`, where the runtime has it typed
    /// (dTAO runtimes); otherwise the neurons keep alpha as their total.
    async fn stake_split(
        &self,
        meta: &ChainMetadata,
        netuid: u16,
        neurons: &mut [super::Neuron],
    ) -> Result<(), ChainError> {
        const API: &str = "SubnetInfoRuntimeApi_get_metagraph";
        match meta.apis.get(API) {
            Some(&out) if !is_byte_vec(&meta.types, out) => {}
            _ => return Ok(()),
        }
        let value = self
            .runtime_api(meta, API, &netuid.encode(), scale::wrapped_neurons_layout)
            .await?;
        let Some(graph) = value.as_option()? else {
            return Ok(());
        };
        let column = |name: &str| -> Result<Vec<u64>, ChainError> {
            graph
                .field(name)?
                .as_list()?
                .iter()
                .map(|v| v.as_u64())
                .collect()
        };
        let (alpha, tao, total) = (
            column("alpha_stake")?,
            column("tao_stake")?,
            column("total_stake")?,
        );
        for n in neurons {
            let at = usize::from(n.uid);
            if let (Some(a), Some(t), Some(all)) = (alpha.get(at), tao.get(at), total.get(at)) {
                n.stake_rao = *a;
                n.root_stake_rao = *t;
                n.total_stake_rao = *all;
            }
        }
        Ok(())
    }

    /// The subnet's epoch state read at one pinned block: the stateful items where the runtime
    /// has them (dynamic tempo), else the legacy rule; the block time from `Aura.SlotDuration`
    /// where the metadata carries it, else `subtensor.block_time_secs`.
    pub async fn epoch_state(&self, netuid: u16) -> Result<EpochState, ChainError> {
        let meta = self.current_metadata().await?;
        let hash = self.rpc.call("chain_getBlockHash", json!([])).await?;
        let header = self.rpc.call("chain_getHeader", json!([hash])).await?;
        let block = parse_hex_number(&header["number"])?;
        let at = Some(&hash);
        let key = netuid.encode();
        let read = |item: &'static str| {
            let key = key.clone();
            let meta = meta.clone();
            async move {
                self.storage_value_at(&meta, PALLET, item, &[&key], at)
                    .await?
                    .ok_or_else(|| {
                        ChainError::Decode(format!("{PALLET}.{item}({netuid}) is not set"))
                    })
            }
        };
        let tempo = read("Tempo").await?.as_u16()?;
        let period = match meta.storage_entry(PALLET, "RevealPeriodEpochs") {
            Ok(_) => read("RevealPeriodEpochs").await?.as_u64()?,
            Err(_) => 1,
        };
        let block_time_secs = meta
            .constant_u64("Aura", "SlotDuration")
            .filter(|ms| *ms > 0)
            .map_or(self.block_time_secs, |ms| ms as f64 / 1000.0);
        let stateful = has_stateful_epochs(&meta);
        if !stateful {
            return Ok(EpochState::legacy(
                block,
                netuid,
                tempo,
                period,
                block_time_secs,
            ));
        }
        Ok(EpochState {
            netuid,
            block,
            tempo,
            last_epoch_block: read("LastEpochBlock").await?.as_u64()?,
            pending_epoch_at: read("PendingEpochAt").await?.as_u64()?,
            epoch_index: read("SubnetEpochIndex").await?.as_u64()?,
            blocks_since_last_step: read("BlocksSinceLastStep").await?.as_u64()?,
            reveal_period_epochs: period,
            block_time_secs,
            rule: epoch::Rule::Stateful,
        })
    }

    async fn block_number(&self) -> Result<u64, ChainError> {
        let header = self.rpc.call("chain_getHeader", json!([])).await?;
        parse_hex_number(&header["number"])
    }

    /// The runtime's metadata now (refetched after a runtime upgrade).
    pub async fn current_metadata(&self) -> Result<Arc<ChainMetadata>, ChainError> {
        let (spec_version, _) = self.runtime_version().await?;
        self.metadata(spec_version).await
    }

    /// A storage value (or the default an absent entry reads as), decoded by its metadata type;
    /// `None` for an absent entry that has no default. `parts` are the SCALE-encoded key parts,
    /// one per hasher.
    pub async fn storage_value(
        &self,
        meta: &ChainMetadata,
        pallet: &str,
        item: &str,
        parts: &[&[u8]],
    ) -> Result<Option<dynamic::Value>, ChainError> {
        self.storage_value_at(meta, pallet, item, parts, None).await
    }

    /// As [`Self::storage_value`], in the state of block `at` (the best block when `None`).
    async fn storage_value_at(
        &self,
        meta: &ChainMetadata,
        pallet: &str,
        item: &str,
        parts: &[&[u8]],
        at: Option<&Value>,
    ) -> Result<Option<dynamic::Value>, ChainError> {
        let entry = meta.storage_entry(pallet, item)?;
        let key = scale::storage_key_hashed(pallet, item, &entry.hashers, parts)?;
        let params = match at {
            Some(block) => json!([key, block]),
            None => json!([key]),
        };
        let value = self.rpc.call("state_getStorage", params).await?;
        let bytes = match value.is_null() {
            true if entry.optional => return Ok(None),
            true => entry.default.clone(),
            false => scale::hex_bytes(&value)?,
        };
        dynamic::decode_all(&meta.types, entry.value, &bytes)
            .map(Some)
            .map_err(|e| ChainError::Decode(format!("{pallet}.{item}: {e}")))
    }

    /// How the runtime wants this subnet's weights now.
    pub async fn weights_mode(&self, netuid: u16) -> Result<WeightsMode, ChainError> {
        let meta = self.current_metadata().await?;
        let commit_reveal = self
            .subnet_value(&meta, "CommitRevealWeightsEnabled", netuid)
            .await?
            .as_bool()?;
        commit::mode_of(&meta, commit_reveal)
    }

    /// Epochs between a commit and its reveal (`None` where the runtime has no such setting).
    pub async fn reveal_period_epochs(&self, netuid: u16) -> Result<Option<u64>, ChainError> {
        let meta = self.current_metadata().await?;
        if meta.storage_entry(PALLET, "RevealPeriodEpochs").is_err() {
            return Ok(None);
        }
        let value = self
            .storage_value(&meta, PALLET, "RevealPeriodEpochs", &[&netuid.encode()])
            .await?;
        value.map(|v| v.as_u64()).transpose()
    }

    /// The signer's hash commits on a subnet as the chain holds them.
    pub async fn weight_commits(
        &self,
        netuid: u16,
        hotkey: &[u8; 32],
    ) -> Result<Vec<CommitRecord>, ChainError> {
        let meta = self.current_metadata().await?;
        let Some(commits) = self
            .storage_value(&meta, PALLET, "WeightCommits", &[&netuid.encode(), hotkey])
            .await?
        else {
            return Ok(Vec::new());
        };
        // Dynamic-tempo runtimes key commits by epoch: (hash, commit_epoch, commit_block, 0).
        let by_epoch = has_stateful_epochs(&meta);
        commits
            .as_list()?
            .iter()
            .map(|c| match (by_epoch, c.as_list()?) {
                (false, [hash, block, first, last]) => Ok(CommitRecord {
                    hash: hash.as_bytes32()?,
                    commit_block: block.as_u64()?,
                    first_reveal_block: first.as_u64()?,
                    last_reveal_block: last.as_u64()?,
                    commit_epoch: None,
                }),
                (true, [hash, epoch, block, _]) => Ok(CommitRecord {
                    hash: hash.as_bytes32()?,
                    commit_block: block.as_u64()?,
                    first_reveal_block: 0,
                    last_reveal_block: 0,
                    commit_epoch: Some(epoch.as_u64()?),
                }),
                _ => Err(ChainError::Decode(
                    "WeightCommits: not (hash, block, first, last) nor (hash, epoch, block, _)"
                        .into(),
                )),
            })
            .collect()
    }

    /// Commits weights by their salted hash and waits (a few blocks at most) for the chain to
    /// hold the commit, whose reveal window it then reports.
    pub async fn commit_weights(
        &self,
        signer: &Keypair,
        netuid: u16,
        uids: Vec<u16>,
        weights: Vec<u16>,
        version_key: u64,
    ) -> Result<PendingCommit, ChainError> {
        let salt = shared_commit::new_salt()?;
        let hotkey = signer.public_bytes();
        let hash = shared_commit::commit_hash(&hotkey, netuid, &uids, &weights, &salt, version_key);
        self.submit(signer, "commit_weights", (netuid, hash).encode())
            .await?;
        let held = self
            .watch_commits(
                netuid,
                &hotkey,
                "commit_weights was submitted but the chain has not stored it",
                |commits| commits.iter().find(|c| c.hash == hash).copied(),
            )
            .await?;
        let mut pending = PendingCommit {
            netuid,
            hash: hex::encode(hash),
            uids,
            weights,
            salt,
            version_key,
            commit_block: held.commit_block,
            first_reveal_block: held.first_reveal_block,
            last_reveal_block: held.last_reveal_block,
            commit_epoch: None,
            reveal_epoch: None,
        };
        if let Some(commit_epoch) = held.commit_epoch {
            // The chain keeps only the epoch; the blocks are our prediction of its window.
            let state = self.epoch_state(netuid).await?;
            let reveal_epoch = commit_epoch.saturating_add(state.reveal_period_epochs);
            let (first, last) = state
                .reveal_window(reveal_epoch)
                .map_err(|e| ChainError::Unsupported(e.to_string()))?;
            pending.first_reveal_block = first;
            pending.last_reveal_block = last;
            pending.commit_epoch = Some(commit_epoch);
            pending.reveal_epoch = Some(reveal_epoch);
        }
        Ok(pending)
    }

    /// Polls the signer's commits on a subnet (a few blocks at most) until `found` picks its
    /// answer out of them; `waiting` says what did not happen if it never does.
    async fn watch_commits<T>(
        &self,
        netuid: u16,
        hotkey: &[u8; 32],
        waiting: &str,
        found: impl Fn(&[CommitRecord]) -> Option<T>,
    ) -> Result<T, ChainError> {
        let deadline = std::time::Instant::now() + PENDING_WAIT;
        loop {
            if let Some(answer) = found(&self.weight_commits(netuid, hotkey).await?) {
                return Ok(answer);
            }
            if std::time::Instant::now() > deadline {
                return Err(ChainError::Unsupported(format!(
                    "{waiting} in {} s",
                    PENDING_WAIT.as_secs()
                )));
            }
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
    }

    /// Reveals a hash commit (inside its window, or the chain refuses by name) and waits for the
    /// chain to spend it.
    pub async fn reveal_weights(
        &self,
        signer: &Keypair,
        commit: &PendingCommit,
    ) -> Result<(), ChainError> {
        let args = (
            commit.netuid,
            &commit.uids,
            &commit.weights,
            &commit.salt,
            commit.version_key,
        )
            .encode();
        self.submit(signer, "reveal_weights", args).await?;
        // Landed when the chain no longer holds the commit (it spends it on reveal). The hash
        // is recomputed from what was revealed, not read back from the kept file.
        let hotkey = signer.public_bytes();
        let hash = shared_commit::commit_hash(
            &hotkey,
            commit.netuid,
            &commit.uids,
            &commit.weights,
            &commit.salt,
            commit.version_key,
        );
        self.watch_commits(
            commit.netuid,
            &hotkey,
            "reveal_weights was submitted but the commit is still on chain",
            |commits| (!commits.iter().any(|c| c.hash == hash)).then_some(()),
        )
        .await
    }

    /// The signer's nonce in the state of block `at` (`None` where the runtime has no
    /// `System.Account`).
    async fn state_nonce(
        &self,
        meta: &ChainMetadata,
        signer: &Keypair,
        at: &Value,
    ) -> Result<Option<u32>, ChainError> {
        if meta.storage_entry("System", "Account").is_err() {
            return Ok(None);
        }
        let info = self
            .storage_value_at(
                meta,
                "System",
                "Account",
                &[&signer.public_bytes()],
                Some(at),
            )
            .await?
            .ok_or_else(|| ChainError::Decode("System.Account has no default".into()))?;
        let nonce = info.field("nonce")?.as_u64()?;
        Ok(Some(u32::try_from(nonce).map_err(|_| {
            ChainError::Decode(format!("account nonce {nonce}"))
        })?))
    }

    /// A SubtensorModule value keyed by netuid.
    async fn subnet_value(
        &self,
        meta: &ChainMetadata,
        item: &str,
        netuid: u16,
    ) -> Result<dynamic::Value, ChainError> {
        self.storage_value(meta, PALLET, item, &[&netuid.to_le_bytes()])
            .await?
            .ok_or_else(|| ChainError::Decode(format!("{PALLET}.{item}({netuid}) is not set")))
    }

    /// Calls a runtime API and decodes its result by the type the metadata gives it. Runtimes
    /// that return bare bytes (`Vec<u8>`, spec 218) are decoded with `wrapped`, the layout they
    /// encode inside.
    async fn runtime_api(
        &self,
        meta: &ChainMetadata,
        name: &str,
        args: &[u8],
        wrapped: impl Fn() -> (scale_info::PortableRegistry, u32),
    ) -> Result<dynamic::Value, ChainError> {
        let data = format!("0x{}", hex::encode(args));
        let answer = self.rpc.call("state_call", json!([name, data])).await?;
        let bytes = scale::hex_bytes(&answer)?;
        let unwrap = |bytes: &[u8]| -> Result<dynamic::Value, ChainError> {
            let mut input = bytes;
            let inner = Vec::<u8>::decode(&mut input)
                .ok()
                .filter(|_| input.is_empty())
                .ok_or_else(|| ChainError::Decode("not a whole Vec<u8>".into()))?;
            let (types, id) = wrapped();
            dynamic::decode_all(&types, id, &inner)
        };
        let decoded = match meta.apis.get(name) {
            Some(&output) if is_byte_vec(&meta.types, output) => unwrap(&bytes),
            Some(&output) => dynamic::decode_all(&meta.types, output, &bytes),
            // Metadata without runtime-API types (V14): the two shapes cannot both decode
            // every byte, so try the wrapped one, then the bare one.
            None => unwrap(&bytes).or_else(|_| {
                let (types, id) = wrapped();
                dynamic::decode_all(&types, id, &bytes)
            }),
        };
        decoded.map_err(|e| ChainError::Decode(format!("{name}: {e}")))
    }

    pub async fn runtime_version(&self) -> Result<(u32, u32), ChainError> {
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
        // V15 (with runtime-API types) where the runtime serves it, else what state_getMetadata
        // gives (V14).
        let v15 = self
            .rpc
            .call(
                "state_call",
                json!(["Metadata_metadata_at_version", "0x0f000000"]),
            )
            .await
            .ok()
            .and_then(|v| scale::hex_bytes(&v).ok())
            .and_then(|b| Option::<Vec<u8>>::decode(&mut &b[..]).ok().flatten());
        let bytes = match v15 {
            Some(bytes) => bytes,
            None => scale::hex_bytes(&self.rpc.call("state_getMetadata", json!([])).await?)?,
        };
        let meta = Arc::new(metadata::parse(&bytes)?);
        *cached = Some((spec_version, meta.clone()));
        Ok(meta)
    }

    /// Builds, dry-runs and submits a SubtensorModule call signed by `signer`.
    async fn submit(&self, signer: &Keypair, call: &str, args: Vec<u8>) -> Result<(), ChainError> {
        self.submit_call(signer, PALLET, call, &args)
            .await
            .map(drop)
    }

    /// A call's bytes: its pallet and call index from the metadata, then its arguments.
    pub async fn call_bytes(
        &self,
        pallet: &str,
        call: &str,
        args: &[u8],
    ) -> Result<Vec<u8>, ChainError> {
        let meta = self.current_metadata().await?;
        let mut encoded = meta.call_index(pallet, call)?.to_vec();
        encoded.extend_from_slice(args);
        Ok(encoded)
    }

    /// `Sudo.sudo(pallet.call(args))` signed by the sudo key (local chains and tests).
    pub async fn sudo(
        &self,
        signer: &Keypair,
        pallet: &str,
        call: &str,
        args: &[u8],
    ) -> Result<String, ChainError> {
        let inner = self.call_bytes(pallet, call, args).await?;
        self.submit_call(signer, "Sudo", "sudo", &inner).await
    }

    /// Builds, dry-runs and submits any call signed by `signer`; the transaction hash. One
    /// submission at a time per client, each after the signer's earlier ones have landed, so
    /// concurrent calls from one key never share a nonce and every one is dry-run exactly.
    pub async fn submit_call(
        &self,
        signer: &Keypair,
        pallet: &str,
        call: &str,
        args: &[u8],
    ) -> Result<String, ChainError> {
        let mut submitted = self.submitted.lock().await;
        let (spec_version, tx_version) = self.runtime_version().await?;
        let meta = self.metadata(spec_version).await?;
        let mut encoded = meta.call_index(pallet, call)?.to_vec();
        encoded.extend_from_slice(args);
        let genesis = hash32(&self.rpc.call("chain_getBlockHash", json!([0])).await?)?;
        // The dry run applies the call to the head's state, where the nonce is the one before
        // any of the signer's transactions still in the pool: wait for those to land, so the
        // nonce the pool expects is the one the state has.
        let waiting_since = std::time::Instant::now();
        let (head, header, nonce) = loop {
            let head = self.rpc.call("chain_getBlockHash", json!([])).await?;
            let header = self
                .rpc
                .call("chain_getHeader", json!([head.clone()]))
                .await?;
            let next = self
                .rpc
                .call("system_accountNextIndex", json!([signer.ss58()]))
                .await?;
            let pool = next
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| ChainError::Decode(format!("account nonce {next}")))?;
            let state = self
                .state_nonce(&meta, signer, &head)
                .await?
                .unwrap_or(pool);
            let ours = submitted.get(&signer.public_bytes()).copied().unwrap_or(0);
            if state >= pool.max(ours) {
                break (head, header, state);
            }
            if waiting_since.elapsed() > PENDING_WAIT && pool <= state {
                // Our last transaction never landed and the pool no longer holds it.
                break (head, header, state);
            }
            if waiting_since.elapsed() > PENDING_WAIT {
                return Err(ChainError::Unsupported(format!(
                    "{call}: an earlier transaction of {} (nonce {state}) has not landed in {} s",
                    signer.ss58(),
                    PENDING_WAIT.as_secs()
                )));
            }
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        };
        let ctx = extrinsic::TxContext {
            spec_version,
            tx_version,
            genesis,
            // The era starts at the head's parent: the head's own hash is not yet in
            // `System.BlockHash` of the state we dry-run against (AncientBirthBlock).
            checkpoint_block: parse_hex_number(&header["number"])?.saturating_sub(1),
            checkpoint_hash: hash32(&header["parentHash"])?,
            nonce,
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
        submitted.insert(signer.public_bytes(), nonce.saturating_add(1));
        tracing::info!(call, tx = %hash, "submitted to {}", self.rpc.url());
        Ok(hash.as_str().unwrap_or_default().to_string())
    }
}

/// Whether a type is `Vec<u8>` (a runtime API that returns its result as bare bytes).
/// Whether the runtime keeps dynamic tempo's per-subnet epoch state (else: the legacy rule).
fn has_stateful_epochs(meta: &ChainMetadata) -> bool {
    epoch::STATEFUL_ITEMS
        .iter()
        .all(|item| meta.storage_entry(PALLET, item).is_ok())
}

fn is_byte_vec(types: &scale_info::PortableRegistry, id: u32) -> bool {
    use scale_info::{TypeDef, TypeDefPrimitive};
    match types.resolve(id).map(|t| &t.type_def) {
        Some(TypeDef::Sequence(s)) => matches!(
            types.resolve(s.type_param.id).map(|t| &t.type_def),
            Some(TypeDef::Primitive(TypeDefPrimitive::U8))
        ),
        _ => false,
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
    fn registration_blocks(
        &self,
        netuid: u16,
        uids: Vec<u16>,
    ) -> BoxFuture<'_, Result<std::collections::BTreeMap<u16, u64>, ChainError>> {
        async move {
            let meta = self.current_metadata().await?;
            // One request per uid, all in flight together on the one websocket.
            let reads = uids.iter().map(|uid| {
                let meta = &meta;
                async move {
                    let at = self
                        .storage_value(
                            meta,
                            PALLET,
                            "BlockAtRegistration",
                            &[&netuid.encode(), &uid.encode()],
                        )
                        .await?;
                    Ok::<_, ChainError>(match at {
                        Some(v) => Some((*uid, v.as_u64()?)),
                        None => None,
                    })
                }
            });
            Ok(futures::future::try_join_all(reads)
                .await?
                .into_iter()
                .flatten()
                .collect())
        }
        .boxed()
    }

    fn weights_mode(&self, netuid: u16) -> BoxFuture<'_, Result<WeightsMode, ChainError>> {
        SubtensorChain::weights_mode(self, netuid).boxed()
    }

    fn commit_weights<'a>(
        &'a self,
        signer: &'a Keypair,
        netuid: u16,
        uids: Vec<u16>,
        weights: Vec<u16>,
        version_key: u64,
    ) -> BoxFuture<'a, Result<PendingCommit, ChainError>> {
        SubtensorChain::commit_weights(self, signer, netuid, uids, weights, version_key).boxed()
    }

    fn reveal_weights<'a>(
        &'a self,
        signer: &'a Keypair,
        commit: &'a PendingCommit,
    ) -> BoxFuture<'a, Result<(), ChainError>> {
        SubtensorChain::reveal_weights(self, signer, commit).boxed()
    }

    fn commit_timelocked<'a>(
        &'a self,
        signer: &'a Keypair,
        netuid: u16,
        uids: Vec<u16>,
        weights: Vec<u16>,
        version_key: u64,
    ) -> BoxFuture<'a, Result<shared_commit::TimelockedCommit, ChainError>> {
        SubtensorChain::commit_timelocked(self, signer, netuid, uids, weights, version_key).boxed()
    }

    fn epoch(&self, netuid: u16) -> BoxFuture<'_, Result<EpochState, ChainError>> {
        self.epoch_state(netuid).boxed()
    }

    fn describe(&self) -> String {
        format!("subtensor {} at {}", self.network, self.rpc.url())
    }

    fn block(&self) -> BoxFuture<'_, Result<u64, ChainError>> {
        self.block_number().boxed()
    }

    fn metagraph(&self, netuid: u16) -> BoxFuture<'_, Result<Metagraph, ChainError>> {
        async move {
            let block = self.block_number().await?;
            let meta = self.current_metadata().await?;
            let value = self
                .runtime_api(
                    &meta,
                    "NeuronInfoRuntimeApi_get_neurons_lite",
                    &netuid.encode(),
                    scale::wrapped_neurons_layout,
                )
                .await?;
            let mut neurons = scale::neurons(&value)?;
            if let Err(e) = self.stake_split(&meta, netuid, &mut neurons).await {
                tracing::debug!(error = %e, "get_metagraph unreadable; stake is alpha alone");
            }
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
            let meta = self.current_metadata().await?;
            let value = |item: &'static str| self.subnet_value(&meta, item, netuid);
            Ok(Hyperparams {
                tempo: value("Tempo").await?.as_u16()?,
                weights_rate_limit: value("WeightsSetRateLimit").await?.as_u64()?,
                weights_version_key: value("WeightsVersionKey").await?.as_u64()?,
                commit_reveal_enabled: value("CommitRevealWeightsEnabled").await?.as_bool()?,
                immunity_period: value("ImmunityPeriod").await?.as_u64()?,
                registration_cost_rao: value("Burn").await?.as_u64()?,
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
            match self.weights_mode(netuid).await? {
                WeightsMode::Plain { call } => {
                    let args = commit::plain_args(call, netuid, &uids, &weights, version_key);
                    self.submit(signer, call, args).await
                }
                _ => Err(ChainError::refused(
                    "CommitRevealEnabled",
                    format!("subnet {netuid}"),
                )),
            }
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use parity_scale_codec::Decode;

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

    /// A loopback websocket node answering the RPCs our client makes, with SCALE data built the
    /// way subtensor encodes it. It checks every extrinsic's signature before answering the dry
    /// run, refuses `set_weights` like a rate-limited chain and records submissions.
    struct FakeNode {
        url: String,
        submitted: Arc<std::sync::Mutex<Vec<Vec<u8>>>>,
        commit_reveal: Arc<std::sync::atomic::AtomicBool>,
    }

    async fn fake_node(signer_public: [u8; 32]) -> FakeNode {
        use super::scale::{AxonInfoRaw, NeuronInfoLiteRaw, PrometheusInfoRaw};
        use parity_scale_codec::Compact;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}", listener.local_addr().unwrap());
        let submitted = Arc::new(std::sync::Mutex::new(Vec::new()));
        let commit_reveal = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let neurons = vec![NeuronInfoLiteRaw {
            hotkey: signer_public,
            coldkey: [9; 32],
            uid: 0,
            netuid: 23,
            active: true,
            axon_info: AxonInfoRaw {
                block: 1,
                version: 1,
                ip: 0x0a000001,
                port: 8091,
                ip_type: 4,
                protocol: 4,
                placeholder1: 0,
                placeholder2: 0,
            },
            prometheus_info: PrometheusInfoRaw {
                block: 0,
                version: 0,
                ip: 0,
                port: 0,
                ip_type: 0,
            },
            stake: vec![([9; 32], Compact(5_000_000_000_000))],
            rank: 0,
            emission: 1,
            incentive: 65535,
            consensus: 0,
            trust: 0,
            validator_trust: 0,
            dividends: 0,
            last_update: 990,
            validator_permit: true,
            pruning_score: 0,
        }]
        .encode();
        let metadata = metadata::tests::sample_metadata();
        let meta = metadata::parse(&metadata).unwrap();
        let (recorded, cr) = (submitted.clone(), commit_reveal.clone());
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
                use futures::{SinkExt, StreamExt};
                while let Some(Ok(message)) = ws.next().await {
                    let Ok(text) = message.into_text() else {
                        continue;
                    };
                    let request: Value = serde_json::from_str(&text).unwrap();
                    let params = &request["params"];
                    let hex = |bytes: &[u8]| Value::String(format!("0x{}", hex::encode(bytes)));
                    let result = match request["method"].as_str().unwrap() {
                        "chain_getHeader" => {
                            json!({ "number": "0x3e9", "parentHash": hex(&[2; 32]) })
                        }
                        "chain_getBlockHash" if params[0] == 0 => hex(&[1; 32]),
                        "chain_getBlockHash" => hex(&[2; 32]),
                        "state_getRuntimeVersion" => {
                            json!({ "specVersion": 425, "transactionVersion": 1 })
                        }
                        "state_getMetadata" => hex(&metadata),
                        "system_accountNextIndex" => json!(5),
                        "state_getStorage" => {
                            let cr_key = scale::storage_key(
                                PALLET,
                                "CommitRevealWeightsEnabled",
                                &23u16.to_le_bytes(),
                            );
                            if params[0] == cr_key.as_str() {
                                hex(&[u8::from(cr.load(std::sync::atomic::Ordering::SeqCst))])
                            } else {
                                Value::Null
                            }
                        }
                        // A node without V15: the client falls back to state_getMetadata.
                        "state_call" if params[0] == "Metadata_metadata_at_version" => hex(&[0]),
                        "state_call" if params[0] == "NeuronInfoRuntimeApi_get_neurons_lite" => {
                            assert_eq!(params[1], "0x1700");
                            hex(&neurons)
                        }
                        "state_call" if params[0] == "BlockBuilder_apply_extrinsic" => {
                            let xt = scale::hex_bytes(&params[1]).unwrap();
                            let call = check_signed(&xt, &signer_public, &meta);
                            if call[..2] == [7, 0] {
                                hex(&[0, 1, 3, 7, 29, 0, 0, 0])
                            } else {
                                hex(&[0, 0])
                            }
                        }
                        "author_submitExtrinsic" => {
                            recorded
                                .lock()
                                .unwrap()
                                .push(scale::hex_bytes(&params[0]).unwrap());
                            hex(&[0xab; 32])
                        }
                        other => panic!("unexpected RPC {other}"),
                    };
                    let reply = json!({ "jsonrpc": "2.0", "id": request["id"], "result": result });
                    ws.send(tokio_tungstenite::tungstenite::Message::text(
                        reply.to_string(),
                    ))
                    .await
                    .unwrap();
                }
            }
        });
        FakeNode {
            url,
            submitted,
            commit_reveal,
        }
    }

    /// Verifies a signed extrinsic as the runtime would and returns its call bytes.
    fn check_signed(xt: &[u8], public: &[u8; 32], meta: &ChainMetadata) -> Vec<u8> {
        let mut body = xt;
        let len = <parity_scale_codec::Compact<u32>>::decode(&mut body)
            .unwrap()
            .0 as usize;
        assert_eq!(body.len(), len);
        assert_eq!(&body[..2], &[0x84, 0x00]);
        assert_eq!(&body[2..34], public);
        assert_eq!(body[34], 0x01, "sr25519");
        let signature = &body[35..99];
        let ctx = extrinsic::TxContext {
            spec_version: 425,
            tx_version: 1,
            genesis: [1; 32],
            checkpoint_block: 1000,
            checkpoint_hash: [2; 32],
            nonce: 5,
        };
        let (extra, additional) = extrinsic::extension_parts(&meta.extensions, &ctx).unwrap();
        assert_eq!(&body[99..99 + extra.len()], &extra[..]);
        let call = body[99 + extra.len()..].to_vec();
        let payload = [call.as_slice(), &extra, &additional].concat();
        assert!(
            crate::keypair::verify(public, &payload, signature),
            "bad extrinsic signature"
        );
        call
    }

    #[tokio::test]
    async fn reads_and_writes_through_a_loopback_node() {
        let signer = Keypair::from_mini_secret(&[4; 32]).unwrap();
        let node = fake_node(signer.public_bytes()).await;
        let chain = SubtensorChain::new("local", &node.url);
        assert_eq!(chain.block().await.unwrap(), 1001);
        let graph = chain.metagraph(23).await.unwrap();
        assert_eq!(graph.neurons.len(), 1);
        assert_eq!(
            graph.by_hotkey(signer.ss58()).unwrap().axon.ip_string(),
            "10.0.0.1"
        );
        let hyper = chain.hyperparams(23).await.unwrap();
        assert_eq!(
            (
                hyper.weights_rate_limit,
                hyper.tempo,
                hyper.commit_reveal_enabled
            ),
            (100, 360, false)
        );

        // The same axon is not served again; a new port is, signed and dry-run first.
        let axon = |port| ServeAxon {
            netuid: 23,
            version: 1,
            ip: "10.0.0.1".parse().unwrap(),
            port,
            protocol: 4,
        };
        chain.serve_axon(&signer, axon(8091)).await.unwrap();
        assert!(node.submitted.lock().unwrap().is_empty());
        chain.serve_axon(&signer, axon(9000)).await.unwrap();
        assert_eq!(node.submitted.lock().unwrap().len(), 1);

        // A dry-run refusal arrives by name and nothing is submitted.
        let refused = chain
            .set_weights(&signer, 23, vec![0], vec![65535], 10)
            .await
            .unwrap_err();
        assert_eq!(
            refused.refusal(),
            Some("SettingWeightsTooFast"),
            "{refused}"
        );
        assert!(refused.to_string().contains("rate limit"));
        assert_eq!(node.submitted.lock().unwrap().len(), 1);

        node.commit_reveal
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let cr = chain
            .set_weights(&signer, 23, vec![0], vec![65535], 10)
            .await
            .unwrap_err();
        assert_eq!(cr.refusal(), Some("CommitRevealEnabled"));
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
