//! nicheimage-tui: parse the command line, run the one command it names, turn a failure into
//! its exit code (2: bad configuration or flags; 1: the command failed).

use clap::Parser;
use nicheimage_tui::cli::{Cli, Role};
use nicheimage_tui::commands::{self, CommandError, CommandResult, local};
use std::process::ExitCode;

fn main() -> ExitCode {
    // SAFETY: the first thing the process does, before any thread or runtime exists.
    let nofile = unsafe { commands::process::prepare() };
    let cli = Cli::parse();
    match run(&cli, nofile) {
        Ok(()) => ExitCode::SUCCESS,
        Err(CommandError::Reported) => ExitCode::from(CommandError::Reported.exit_code()),
        Err(e) => {
            eprintln!("nicheimage-tui: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

fn run(cli: &Cli, nofile: std::io::Result<(u64, u64)>) -> CommandResult {
    if cli.print_config_template {
        print!("{}", nicheimage_node::config::EXAMPLE);
        return Ok(());
    }
    let (config, source) = commands::load_config(cli)?;
    match &cli.command {
        None
        | Some(Role::Endpoint(_))
        | Some(Role::Reward(_))
        | Some(Role::Miner(_))
        | Some(Role::Validator(_)) => commands::node::run(cli, config, source, nofile),
        Some(Role::Generate(args)) => local::generate(args, config.node.device, config.node.dtype),
        Some(Role::Replica(args)) => local::replica(args),
        Some(Role::TinyCheckpoint(args)) => local::tiny_checkpoint(args),
        Some(Role::Wallet { action, .. }) => commands::wallet::run(action, &config),
        Some(Role::Chain(args)) => commands::chain::run(&config, args.json),
        Some(Role::Weights { action }) => commands::weights::run(action, &config),
        Some(Role::ProxyClient(args)) => commands::proxy_client::run(args, &config),
        Some(Role::Healthcheck(args)) => commands::healthcheck::run(args, &config),
    }
}
