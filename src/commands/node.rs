//! Running the node: the whole local subnet (`--devnet`, or a first run without a config), the
//! console over the configured node, or one role headless (`endpoint`, `reward`, `miner`,
//! `validator`), as NicheImage ran separate processes.

use super::{CommandError, CommandResult, password};
use crate::cli::{Cli, Role};
use crate::ui::theme::Theme;
use crate::{headless, logging, ui};
use clap::Parser;
use nicheimage_node::config::{Config, ConfigSource, default_data_dir, load};
use nicheimage_node::runtime::{Command, EventChannel, shutdown};
use nicheimage_node::{assemble, devnet};
use std::io::IsTerminal;
use std::time::Duration;

/// A component the configuration cannot set up (a missing hotkey, a model without a checkpoint,
/// a taken devnet folder): logged (the console's log file keeps it) and returned as a usage
/// error, since nothing ran.
fn setup_failed(what: &str, e: impl std::fmt::Display) -> CommandError {
    tracing::error!(error = %e, "cannot set up {what}");
    CommandError::Usage(format!("cannot set up {what}: {e}"))
}

/// Runs the node until it is stopped (a signal, `q` in the console, `--duration`).
pub fn run(
    cli: &Cli,
    config: Config,
    source: ConfigSource,
    nofile: std::io::Result<(u64, u64)>,
) -> CommandResult {
    // No config file and no role: the whole local subnet, so a first run shows a living node
    // (a build without local inference cannot generate its images: it shows the plain console).
    let devnet = cli.devnet
        || (nicheimage_node::engine::LOCAL
            && cli.command.is_none()
            && matches!(source, ConfigSource::Defaults));
    if devnet && cli.command.is_some() {
        return Err(CommandError::usage(
            "--devnet runs the whole local subnet and takes no subcommand",
        ));
    }
    let mines = matches!(cli.command, Some(Role::Miner(_)));
    let rewards = matches!(cli.command, Some(Role::Reward(_)));
    let validates = matches!(cli.command, Some(Role::Validator(_)));
    let serves_endpoint = matches!(cli.command, Some(Role::Endpoint(_)))
        || ((cli.command.is_none() || mines) && config.endpoint.enabled);
    // Roles run headless, as NicheImage's separate processes did.
    let headless = cli.no_ui || cli.command.is_some() || !std::io::stdout().is_terminal();
    let theme = if headless {
        None
    } else {
        Some(
            Theme::load(&config.ui.theme, std::env::var_os("NO_COLOR").is_some())
                .map_err(CommandError::usage)?,
        )
    };
    // The console asks for an encrypted hotkey's password before it takes the terminal;
    // headless runs read NICHEIMAGE_WALLET_PASSWORD.
    if !headless && !devnet && std::io::stdin().is_terminal() {
        password::ask_hotkey_password(&config).map_err(CommandError::usage)?;
    }
    let data_dir = config
        .node
        .data_dir
        .clone()
        .unwrap_or_else(default_data_dir);

    let channel = EventChannel::new();
    let _log_guards = logging::init(
        logging::LogSettings {
            data_dir: &data_dir,
            filter: &config.node.log_level,
            format: config.node.log_format,
            stdout: headless,
        },
        channel.logs.clone(),
    )
    .map_err(CommandError::usage)?;
    match &nofile {
        Ok((before, after)) => tracing::debug!(before, after, "open-files limit (RLIMIT_NOFILE)"),
        Err(e) => tracing::warn!(error = %e, "cannot raise the open-files limit; keeping it"),
    }

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CommandError::failed(format!("cannot start the async runtime: {e}")))?;
    runtime.block_on(async move {
        tracing::info!(
            version = env!("CARGO_PKG_VERSION"),
            config = %source,
            data_dir = %data_dir.display(),
            mode = if headless { "headless" } else { "tui" },
            "starting node"
        );
        let devnet = devnet
            .then(|| devnet::prepare(&config, &data_dir))
            .transpose()
            .map_err(|e| setup_failed("the devnet", e))?;
        let config = devnet.as_ref().map_or(config, |d| d.config.clone());
        let mut runtime =
            assemble::build(&config, channel).map_err(|e| setup_failed("the node", e))?;
        if let Some(d) = &devnet {
            tracing::info!(dir = %d.dir.display(), miners = d.miners.len(), "running the local devnet");
            d.add_to(&mut runtime)
                .map_err(|e| setup_failed("the devnet", e))?;
        } else {
            if serves_endpoint {
                assemble::add_endpoint(&mut runtime, &config, &data_dir)
                    .map_err(|e| setup_failed("the endpoint", e))?;
            }
            let roles = assemble::ChainRoles {
                mines,
                rewards,
                validates,
            };
            if config.subtensor.watch || mines || rewards || validates {
                assemble::add_chain_roles(&mut runtime, &config, &data_dir, roles)
                    .map_err(|e| setup_failed("the chain roles", e))?;
            }
        }
        let node = runtime.start();
        if let Some(limit) = cli.duration {
            let shutdown = node.shutdown.clone();
            tokio::spawn(async move {
                tokio::time::sleep(limit).await;
                tracing::info!(secs = limit.as_secs_f64(), "--duration reached; stopping");
                shutdown.cancel();
            });
        }
        let reload = headless.then(|| reload_on_hup(cli, node.commands.clone()));
        if let Err(e) = shutdown::on_signals(node.shutdown.clone(), reload) {
            tracing::error!(error = %e, "cannot install signal handlers");
        }
        match theme {
            None => {
                headless::run(&node, Duration::from_secs(config.node.status_interval_secs)).await
            }
            Some(theme) => {
                let settings = ui::UiSettings {
                    theme,
                    mouse: config.ui.mouse,
                    no_color: std::env::var_os("NO_COLOR").is_some(),
                    max_fps: config.ui.max_fps,
                    config_source: match (&devnet, &source) {
                        (Some(d), _) => format!("devnet in {}", d.dir.display()),
                        (None, ConfigSource::File(p)) => p.display().to_string(),
                        (None, ConfigSource::Defaults) => "defaults".into(),
                    },
                };
                if let Err(e) = ui::run(&node, settings).await {
                    tracing::error!(error = %e, "console failed; shutting down");
                }
                node.shutdown.cancel();
            }
        }
        let state = node.state.clone();
        node.wait().await;
        let last = state.borrow().clone();
        if headless {
            headless::print_final(&last);
        }
        if let Some(d) = &devnet {
            let summary = devnet::summary::Summary::collect(d, &last).await;
            print!("{}", summary.text());
            if headless {
                println!("{}", summary.json_line());
            }
        }
        tracing::info!("stopped");
        Ok(())
    })
}

/// SIGHUP in headless mode: read the config file again and apply what can change while running
/// (today: `[miner.blacklist]`); a bad file is reported and changes nothing.
fn reload_on_hup(cli: &Cli, commands: tokio::sync::mpsc::Sender<Command>) -> Box<dyn Fn() + Send> {
    let path = cli.config.clone();
    // The same flags again (they override the file on every reload, as at start).
    let cli = Cli::parse_from(std::env::args_os());
    Box::new(move || {
        let loaded = load(path.as_deref()).and_then(|(mut c, _)| {
            cli.apply(&mut c);
            c.validate().map(|()| c)
        });
        match loaded {
            Ok(c) => {
                tracing::info!(
                    "SIGHUP: config read again; applying [miner.blacklist] (other changes need a restart)"
                );
                let command = Command::SetBlacklist(c.miner.blacklist);
                if commands.try_send(command).is_err() {
                    tracing::warn!("SIGHUP: the node is busy or stopping; rules unchanged");
                }
            }
            Err(e) => tracing::error!(error = %e, "SIGHUP: config not reloaded"),
        }
    })
}
