//! `nicheimage-tui weights set | status | reveal`: what btcli does with weights, against a
//! subtensor node. `set` sets or commits as the subnet wants (and says which); a hash commit's
//! salt is kept in `<data dir>/weight-commits.json` (written atomically) until `reveal` (or a
//! `set --wait`) reveals it inside its window.

use std::path::Path;
use std::time::Duration;

use nicheimage_bittensor::chain::Network;
use nicheimage_bittensor::chain::commit::{
    KeptCommit, PendingCommit, TIMELOCKED_KEPT, TimelockedCommit, WeightsMode, Window,
    commits_path, load_pending, load_timelocked, save_pending, save_timelocked, timelocked_path,
};
use nicheimage_bittensor::chain::subtensor::SubtensorChain;
use nicheimage_bittensor::chain::weights::normalize_for_emit;
use nicheimage_bittensor::chain::{Chain, ChainError};
use nicheimage_bittensor::keypair::Keypair;
use nicheimage_node::assemble;
use nicheimage_node::config::{Config, default_data_dir};

use super::{CommandError, CommandResult, one_shot_runtime};
use crate::cli::WeightsAction;

/// What `weights set` was asked.
#[derive(Debug, Clone)]
pub struct SetRequest {
    pub netuid: u16,
    pub uids: Vec<u16>,
    /// Any non-negative numbers, normalised as the SDK does.
    pub weights: Vec<f32>,
    /// The subnet's own version key when not given.
    pub version_key: Option<u64>,
    /// Reveal a hash commit in its window before returning.
    pub wait: bool,
}

/// Sets or commits the weights; what was done, in words.
pub async fn set(
    chain: &SubtensorChain,
    signer: &Keypair,
    request: &SetRequest,
    commits: &Path,
) -> Result<String, WeightsCommandError> {
    let SetRequest {
        netuid,
        version_key,
        wait,
        ..
    } = *request;
    let (uids, weights) = normalize_for_emit(&request.uids, &request.weights)?;
    if uids.is_empty() {
        return Err(WeightsCommandError::AllZero);
    }
    let hyper = chain
        .hyperparams(netuid)
        .await
        .map_err(WeightsCommandError::Chain)?;
    let version_key = version_key.unwrap_or(hyper.weights_version_key);
    match chain
        .weights_mode(netuid)
        .await
        .map_err(WeightsCommandError::Chain)?
    {
        WeightsMode::Plain { call } => {
            chain
                .set_weights(signer, netuid, uids.clone(), weights, version_key)
                .await
                .map_err(WeightsCommandError::Chain)?;
            Ok(format!(
                "set {} weights on subnet {netuid} with {call} (commit-reveal is off)",
                uids.len()
            ))
        }
        WeightsMode::HashCommit => {
            let pending = chain
                .commit_weights(signer, netuid, uids, weights, version_key)
                .await
                .map_err(WeightsCommandError::Chain)?;
            let mut all = load_pending(commits)?;
            all.push(pending.clone());
            save_pending(commits, &all)?;
            let mut said = format!(
                "committed {} weights on subnet {netuid} (commit-reveal is on): hash 0x{} at block {}, reveal in blocks {}..={}",
                pending.uids.len(),
                pending.hash,
                pending.commit_block,
                pending.first_reveal_block,
                pending.last_reveal_block
            );
            if wait {
                wait_for_window(chain, &pending).await?;
                said.push('\n');
                said.push_str(&reveal(chain, signer, netuid, commits).await?);
            } else {
                said.push_str("; run `weights reveal` in the window (the salt is kept in ");
                said.push_str(&commits.display().to_string());
                said.push(')');
            }
            Ok(said)
        }
        WeightsMode::Timelocked { call } => {
            // Read the kept file first: a file we cannot read must stop us before the commit.
            let path = timelocked_path_beside(commits);
            let mut kept: Vec<TimelockedCommit> = load_timelocked(&path)?;
            let c = chain
                .commit_timelocked(signer, netuid, uids, weights, version_key)
                .await
                .map_err(WeightsCommandError::Chain)?;
            kept.push(c.clone());
            let drop = kept.len().saturating_sub(TIMELOCKED_KEPT);
            kept.drain(..drop);
            save_timelocked(&path, &kept)?;
            Ok(format!(
                "committed {} weights on subnet {netuid} with {call} (commit-reveal v4): block {}, epoch {}, timelocked to drand round {}; the chain reveals them itself in epoch {}, at about block {} (`weights status` shows the last update)",
                c.uids.len(),
                c.commit_block,
                c.commit_epoch,
                c.reveal_round,
                c.reveal_epoch,
                c.reveal_block
            ))
        }
    }
}

/// Waits until a hash commit's reveal window is open (by the chain's epochs where it keys
/// commits by epoch, else by the blocks it stored).
async fn wait_for_window(
    chain: &SubtensorChain,
    pending: &PendingCommit,
) -> Result<(), WeightsCommandError> {
    loop {
        let now = chain.block().await.map_err(WeightsCommandError::Chain)?;
        let epoch = chain
            .epoch(pending.netuid)
            .await
            .map_err(WeightsCommandError::Chain)?;
        match pending
            .window_at(Some(&epoch))
            .unwrap_or_else(|| pending.window(now))
        {
            Window::Open => return Ok(()),
            Window::Expired => return Err(WeightsCommandError::WindowClosed(now)),
            Window::NotYet => {}
        }
        eprintln!(
            "block {now}: waiting for the reveal window (from about block {})",
            pending.first_reveal_block
        );
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
}

/// Reveals every kept commit of `netuid` whose window is open; drops those revealed or past
/// their window; keeps the rest.
pub async fn reveal(
    chain: &SubtensorChain,
    signer: &Keypair,
    netuid: u16,
    commits: &Path,
) -> Result<String, WeightsCommandError> {
    let block = chain.block().await.map_err(WeightsCommandError::Chain)?;
    let epoch = chain
        .epoch(netuid)
        .await
        .map_err(WeightsCommandError::Chain)?;
    let mut kept = Vec::new();
    let mut said = Vec::new();
    for pending in load_pending(commits)? {
        if pending.netuid != netuid {
            kept.push(pending);
            continue;
        }
        // Dynamic tempo: the window is the reveal epoch, judged where the reveal lands.
        let window = pending
            .window_at(Some(&epoch))
            .unwrap_or_else(|| pending.window(block));
        match window {
            Window::Expired => said.push(format!(
                "commit 0x{} expired at block {} (now {block}); dropped",
                pending.hash, pending.last_reveal_block
            )),
            Window::NotYet => {
                said.push(format!(
                    "commit 0x{} opens at block {} (now {block})",
                    pending.hash, pending.first_reveal_block
                ));
                kept.push(pending);
            }
            Window::Open => match chain.reveal_weights(signer, &pending).await {
                Ok(()) => said.push(format!(
                    "revealed commit 0x{}: {} weights",
                    pending.hash,
                    pending.uids.len()
                )),
                Err(e) => {
                    said.push(format!("commit 0x{}: {e}", pending.hash));
                    kept.push(pending);
                }
            },
        }
    }
    save_pending(commits, &kept)?;
    if said.is_empty() {
        said.push(format!("no kept commits for subnet {netuid}"));
    }
    Ok(said.join("\n"))
}

/// The timelocked commits `weights set` made are kept beside the hash commits' salts.
fn timelocked_path_beside(commits: &Path) -> std::path::PathBuf {
    timelocked_path(commits.parent().unwrap_or(Path::new(".")))
}

/// Last update, next eligible block, commit-reveal mode and period, the epoch schedule and the
/// pending commits (hash commits as the chain holds them, timelocked ones `weights set` made
/// whose reveal epoch has not ended), as text or one JSON object.
pub async fn status(
    chain: &SubtensorChain,
    hotkey: &Keypair,
    netuid: u16,
    commits: &Path,
    json: bool,
) -> Result<String, WeightsCommandError> {
    let block = chain.block().await.map_err(WeightsCommandError::Chain)?;
    let hyper = chain
        .hyperparams(netuid)
        .await
        .map_err(WeightsCommandError::Chain)?;
    let mode = chain
        .weights_mode(netuid)
        .await
        .map_err(WeightsCommandError::Chain)?;
    let epoch = chain
        .epoch(netuid)
        .await
        .map_err(WeightsCommandError::Chain)?;
    let period = chain
        .reveal_period_epochs(netuid)
        .await
        .map_err(WeightsCommandError::Chain)?;
    let graph = chain
        .metagraph(netuid)
        .await
        .map_err(WeightsCommandError::Chain)?;
    let me = graph.by_hotkey(hotkey.ss58());
    let on_chain = chain
        .weight_commits(netuid, &hotkey.public_bytes())
        .await
        .or_else(|e| match e {
            // Runtimes with only timelocked commits have no hash-commit storage.
            ChainError::Unsupported(_) => Ok(Vec::new()),
            other => Err(other),
        })
        .map_err(WeightsCommandError::Chain)?;
    let kept = load_pending(commits)?;
    let mut pending = Vec::new();
    for c in &on_chain {
        let hex = hex::encode(c.hash);
        let view = match kept.iter().find(|k| k.hash == hex) {
            Some(k) => k.clone(),
            None => {
                let reveal_epoch = c
                    .commit_epoch
                    .map(|e| e.saturating_add(epoch.reveal_period_epochs));
                // A window that cannot be predicted (already passed) shows as unknown.
                let (first, last) = match reveal_epoch {
                    Some(e) => epoch.reveal_window(e).unwrap_or((0, 0)),
                    None => (c.first_reveal_block, c.last_reveal_block),
                };
                PendingCommit {
                    netuid,
                    hash: hex.clone(),
                    uids: Vec::new(),
                    weights: Vec::new(),
                    salt: Vec::new(),
                    version_key: 0,
                    commit_block: c.commit_block,
                    first_reveal_block: first,
                    last_reveal_block: last,
                    commit_epoch: c.commit_epoch,
                    reveal_epoch,
                }
            }
        };
        pending.push((KeptCommit::Hash(view), kept.iter().any(|k| k.hash == hex)));
    }
    // Timelocked commits stay listed until their reveal epoch has ended.
    let path = timelocked_path_beside(commits);
    let now_epoch = epoch.epoch_before_coinbase(epoch.block.saturating_add(1));
    let all = load_timelocked(&path)?;
    let count = all.len();
    let live: Vec<TimelockedCommit> = all
        .into_iter()
        .filter(|c| c.netuid != netuid || c.reveal_epoch >= now_epoch)
        .collect();
    if live.len() != count {
        save_timelocked(&path, &live)?;
    }
    for c in live.iter().filter(|c| c.netuid == netuid) {
        pending.push((KeptCommit::Timelocked(c.clone()), true));
    }
    if json {
        let value = serde_json::json!({
            "netuid": netuid,
            "block": block,
            "weights_mode": mode.describe(),
            "reveal_period_epochs": period,
            "tempo": hyper.tempo,
            "weights_rate_limit": hyper.weights_rate_limit,
            "weights_version_key": hyper.weights_version_key,
            "epoch": epoch.summary(),
            "hotkey": hotkey.ss58(),
            "uid": me.map(|n| n.uid),
            "last_update": me.map(|n| n.last_update),
            "next_eligible_block": me.map(|n| n.last_update.saturating_add(hyper.weights_rate_limit)),
            "pending": pending.iter().map(|(c, _)| c).collect::<Vec<_>>(),
        });
        return Ok(value.to_string());
    }
    let mut lines = vec![format!(
        "subnet {netuid} at block {block}: {}{}, tempo {}, weights rate limit {} blocks, version key {}",
        mode.describe(),
        match (mode, period) {
            (WeightsMode::Plain { .. }, _) | (_, None) => String::new(),
            (_, Some(p)) => format!(" (reveal period {p} epoch(s))"),
        },
        hyper.tempo,
        hyper.weights_rate_limit,
        hyper.weights_version_key
    )];
    lines.push(super::chain::describe_epoch(&epoch));
    match me {
        None => lines.push(format!(
            "hotkey {} is not registered on subnet {netuid}",
            hotkey.ss58()
        )),
        Some(n) => {
            let next = n.last_update.saturating_add(hyper.weights_rate_limit);
            lines.push(format!(
                "hotkey {} (uid {}): last update at block {} ({} blocks ago), next eligible {}",
                hotkey.ss58(),
                n.uid,
                n.last_update,
                block.saturating_sub(n.last_update),
                if next <= block {
                    "now".to_string()
                } else {
                    format!("at block {next}")
                }
            ));
        }
    }
    for (c, salt_kept) in &pending {
        lines.push(match c {
            KeptCommit::Hash(c) => format!(
                "pending commit 0x{} from block {}{}: {} ({})",
                c.hash,
                c.commit_block,
                match c.reveal_epoch {
                    Some(e) => format!(", reveal epoch {e}"),
                    None => String::new(),
                },
                match c.first_reveal_block {
                    0 => "reveal window passed or unknown".to_string(),
                    first => format!("reveal in {first}..={}", c.last_reveal_block),
                },
                if *salt_kept { "salt kept" } else { "salt NOT kept here" }
            ),
            KeptCommit::Timelocked(c) => format!(
                "timelocked commit from block {} (epoch {}): drand round {}, revealed by the chain in epoch {} at about block {}",
                c.commit_block, c.commit_epoch, c.reveal_round, c.reveal_epoch, c.reveal_block
            ),
        });
    }
    if pending.is_empty() {
        lines.push("no pending commits on chain".into());
    }
    Ok(lines.join("\n"))
}

/// Why a `weights` command did not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum WeightsCommandError {
    #[error(transparent)]
    Chain(#[from] ChainError),
    #[error(transparent)]
    Kept(#[from] nicheimage_bittensor::chain::commit::KeptError),
    #[error(transparent)]
    Weights(#[from] nicheimage_bittensor::chain::weights::WeightsError),
    #[error("every weight is 0: nothing to set")]
    AllZero,
    #[error("the window closed at block {0}")]
    WindowClosed(u64),
}

/// `weights set | reveal | status` against the configured subtensor node.
pub fn run(action: &WeightsAction, config: &Config) -> CommandResult {
    let s = &config.subtensor;
    let network = s
        .network
        .resolve(s.chain_endpoint.as_deref())
        .map_err(CommandError::usage)?;
    let chain = match network {
        Network::Remote { name, url } => {
            SubtensorChain::new(&name, &url).with_block_time(s.block_time_secs)
        }
        Network::Embedded => {
            return Err(CommandError::usage(
                "weights commands talk to a subtensor node; the embedded chain lives inside a running node",
            ));
        }
    };
    let hotkey = assemble::load_hotkey(config).map_err(CommandError::usage)?;
    let data_dir = config
        .node
        .data_dir
        .clone()
        .unwrap_or_else(default_data_dir);
    let commits = commits_path(&data_dir);
    let runtime = one_shot_runtime()?;
    let netuid = s.netuid;
    let done = runtime.block_on(async {
        match action {
            WeightsAction::Set(args) => {
                let request = SetRequest {
                    netuid,
                    uids: args.uids.clone(),
                    weights: args.weights.clone(),
                    version_key: args.version_key,
                    wait: args.wait,
                };
                set(&chain, &hotkey, &request, &commits).await
            }
            WeightsAction::Reveal(_) => reveal(&chain, &hotkey, netuid, &commits).await,
            WeightsAction::Status(args) => {
                status(&chain, &hotkey, netuid, &commits, args.json).await
            }
        }
    });
    println!("{}", done.map_err(CommandError::failed)?);
    Ok(())
}
