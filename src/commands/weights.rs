//! `nicheimage-tui weights set | status | reveal`: what btcli does with weights, against a
//! subtensor node. `set` sets or commits as the subnet wants (and says which); a hash commit's
//! salt is kept in `<data dir>/weight-commits.json` (written atomically) until `reveal` (or a
//! `set --wait`) reveals it inside its window.

use std::path::Path;
use std::time::Duration;

use nicheimage_bittensor::chain::Network;
use nicheimage_bittensor::chain::commit::commits_path;
use nicheimage_bittensor::chain::commit::{WeightsMode, Window, load_pending, save_pending};
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
) -> Result<String, String> {
    let SetRequest {
        netuid,
        version_key,
        wait,
        ..
    } = *request;
    let (uids, weights) =
        normalize_for_emit(&request.uids, &request.weights).map_err(|e| e.to_string())?;
    if uids.is_empty() {
        return Err("every weight is 0: nothing to set".into());
    }
    let hyper = chain.hyperparams(netuid).await.map_err(text)?;
    let version_key = version_key.unwrap_or(hyper.weights_version_key);
    match chain.weights_mode(netuid).await.map_err(text)? {
        WeightsMode::Plain { call } => {
            chain
                .set_weights(signer, netuid, uids.clone(), weights, version_key)
                .await
                .map_err(text)?;
            Ok(format!(
                "set {} weights on subnet {netuid} with {call} (commit-reveal is off)",
                uids.len()
            ))
        }
        WeightsMode::HashCommit => {
            let pending = chain
                .commit_weights(signer, netuid, uids, weights, version_key)
                .await
                .map_err(text)?;
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
                wait_for_block(chain, pending.first_reveal_block).await?;
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
            let c = chain
                .commit_timelocked(signer, netuid, uids, weights, version_key)
                .await
                .map_err(text)?;
            Ok(format!(
                "committed {} weights on subnet {netuid} with {call} (commit-reveal v4): block {}, timelocked to drand round {}; the chain reveals them itself at about block {} (`weights status` shows the last update)",
                c.uids.len(),
                c.commit_block,
                c.reveal_round,
                c.reveal_block
            ))
        }
    }
}

async fn wait_for_block(chain: &SubtensorChain, block: u64) -> Result<(), String> {
    loop {
        let now = chain.block().await.map_err(text)?;
        if now >= block {
            return Ok(());
        }
        eprintln!("block {now}: waiting for {block}");
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
) -> Result<String, String> {
    let block = chain.block().await.map_err(text)?;
    let mut kept = Vec::new();
    let mut said = Vec::new();
    for pending in load_pending(commits)? {
        if pending.netuid != netuid {
            kept.push(pending);
            continue;
        }
        match pending.window(block) {
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

/// Last update, next eligible block, commit-reveal mode and period, pending commits.
pub async fn status(
    chain: &SubtensorChain,
    hotkey: &Keypair,
    netuid: u16,
    commits: &Path,
) -> Result<String, String> {
    let block = chain.block().await.map_err(text)?;
    let hyper = chain.hyperparams(netuid).await.map_err(text)?;
    let mode = chain.weights_mode(netuid).await.map_err(text)?;
    let period = chain.reveal_period_epochs(netuid).await.map_err(text)?;
    let graph = chain.metagraph(netuid).await.map_err(text)?;
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
    match graph.by_hotkey(hotkey.ss58()) {
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
    let on_chain = chain
        .weight_commits(netuid, &hotkey.public_bytes())
        .await
        .or_else(|e| match e {
            // Runtimes with only timelocked commits have no hash-commit storage.
            ChainError::Unsupported(_) => Ok(Vec::new()),
            other => Err(other),
        })
        .map_err(text)?;
    let kept = load_pending(commits)?;
    for c in &on_chain {
        let (at, first, last) = (c.commit_block, c.first_reveal_block, c.last_reveal_block);
        let hex = hex::encode(c.hash);
        let salt = if kept.iter().any(|k| k.hash == hex) {
            "salt kept"
        } else {
            "salt NOT kept here"
        };
        lines.push(format!(
            "pending commit 0x{hex} from block {at}: reveal in {first}..={last} ({salt})"
        ));
    }
    if on_chain.is_empty() {
        lines.push("no pending commits on chain".into());
    }
    Ok(lines.join("\n"))
}

fn text(e: ChainError) -> String {
    e.to_string()
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
            WeightsAction::Status(_) => status(&chain, &hotkey, netuid, &commits).await,
        }
    });
    println!("{}", done.map_err(CommandError::Failed)?);
    Ok(())
}
