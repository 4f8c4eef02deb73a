//! The operator commands, one file each; `main` matches the subcommand and calls one of them.
//! Every command returns a [`CommandError`], which `main` turns into the exit code.

#[cfg(feature = "local-infer")]
mod batch;
pub mod chain;
pub mod healthcheck;
#[cfg_attr(feature = "local-infer", path = "local.rs")]
#[cfg_attr(not(feature = "local-infer"), path = "remote_only.rs")]
pub mod local;
pub mod node;
pub mod password;
pub mod process;
pub mod proxy_client;
pub mod wallet;
pub mod weights;

use nicheimage_node::config::{self, Config, ConfigSource};

/// Why a command failed, and so the process's exit code.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// Bad configuration or flags, or a node the configuration cannot set up (a missing
    /// hotkey): nothing was started (exit 2, as clap's own usage errors).
    #[error("{0}")]
    Usage(String),
    /// The command ran and failed: the chain could not be read, a file not written, the
    /// async runtime not started (exit 1).
    #[error("{0}")]
    Failed(String),
    /// Failed, and already said so in its own words on stderr (the replica child, whose last
    /// stderr line its pool shows as the reason); exit 1.
    #[error("")]
    Reported,
}

impl CommandError {
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Usage(_) => 2,
            Self::Failed(_) | Self::Reported => 1,
        }
    }

    pub fn usage(e: impl std::fmt::Display) -> Self {
        Self::Usage(e.to_string())
    }

    pub fn failed(e: impl std::fmt::Display) -> Self {
        Self::Failed(e.to_string())
    }
}

pub type CommandResult = Result<(), CommandError>;

/// The configuration every command runs with: the file (or the defaults), then the flags.
pub fn load_config(cli: &crate::cli::Cli) -> Result<(Config, ConfigSource), CommandError> {
    let (mut config, source) = config::load(cli.config.as_deref()).map_err(CommandError::usage)?;
    cli.apply(&mut config);
    config.validate().map_err(CommandError::usage)?;
    nicheimage_common::image::configure(nicheimage_common::image::DecodeLimits::with_side(
        config.limits.max_image_side,
    ));
    Ok((config, source))
}

/// The single-threaded runtime the one-shot commands (`chain`, `weights`, `proxy-client`) run on.
fn one_shot_runtime() -> Result<tokio::runtime::Runtime, CommandError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CommandError::failed(format!("cannot start the async runtime: {e}")))
}
