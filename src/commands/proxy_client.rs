//! `proxy-client`: the subnet owner's side of the validator proxy, for operators testing it.

use super::{CommandError, CommandResult, one_shot_runtime};
use crate::cli::ProxyClientArgs;
use nicheimage_node::config::Config;
use nicheimage_node::proxy::{auth, client};
use std::time::Duration;

/// Signs one request with the owner key, sends it to the proxy and writes the PNG; or, with
/// `--new-key`, creates the key.
pub fn run(a: &ProxyClientArgs, config: &Config) -> CommandResult {
    if a.new_key {
        let public = auth::create_signing_key(&a.key).map_err(CommandError::failed)?;
        println!("{public}");
        eprintln!(
            "wrote {}; set proxy.owner_public_key = \"{public}\" on the validator",
            a.key.display()
        );
        return Ok(());
    }
    let key = auth::load_signing_key(&a.key)
        .map_err(|e| CommandError::usage(format!("{e} (create one with --new-key)")))?;
    let url = a
        .url
        .clone()
        .unwrap_or_else(|| format!("http://127.0.0.1:{}/validator_proxy", config.proxy.port));
    let mut payload = serde_json::json!({ "model_name": a.model_name, "prompt": a.prompt });
    if let Some(seed) = a.seed {
        payload["seed"] = seed.into();
    }
    let body = serde_json::json!({ "payload": payload, "miner_uid": a.miner_uid });
    let runtime = one_shot_runtime()?;
    let started = std::time::Instant::now();
    let http = nicheimage_common::http::client().map_err(CommandError::failed)?;
    let answer = runtime.block_on(client::request(
        &http,
        &url,
        &key,
        &body,
        Duration::from_secs(a.timeout),
    ));
    let image = answer.map_err(CommandError::failed)?;
    let png = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD
            .decode(image.trim())
            .map_err(|e| CommandError::failed(format!("the answer is not base64: {e}")))?
    };
    std::fs::write(&a.out, &png)
        .map_err(|e| CommandError::failed(format!("cannot write {}: {e}", a.out.display())))?;
    let bytes = png.len();
    println!(
        "{} ({bytes} bytes) in {:.2} s",
        a.out.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
