//! The replica child's command line, from one struct: `nicheimage-tui replica` parses it and
//! the pool renders it when it starts a replica, so the two cannot drift apart.

use std::path::PathBuf;

use nicheimage_common::scheduler::SchedulerKind;
use nicheimage_common::torch::{DeviceChoice, DtypeChoice};

// The parsing half (clap's derive) exists with the `cli` feature, which the binary enables.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
pub struct ReplicaArgs {
    #[cfg_attr(feature = "cli", arg(long))]
    pub checkpoint: PathBuf,
    #[cfg_attr(feature = "cli", arg(long = "config-dir"))]
    pub config_dir: Option<PathBuf>,
    #[cfg_attr(feature = "cli", arg(long))]
    pub scheduler: SchedulerKind,
    #[cfg_attr(feature = "cli", arg(long, value_enum))]
    pub device: DeviceChoice,
    #[cfg_attr(feature = "cli", arg(long, value_enum, default_value_t = DtypeChoice::Auto))]
    pub dtype: DtypeChoice,
    /// The NSFW classifier folder; images it flags are blacked out.
    #[cfg_attr(feature = "cli", arg(long = "nsfw-classifier"))]
    pub nsfw_classifier: Option<PathBuf>,
    /// NicheImage's three ControlNets and two annotator checkpoints, for controlnet_txt2img.
    #[cfg_attr(feature = "cli", arg(long = "controlnet-dir"))]
    pub controlnet_dir: Option<PathBuf>,
}

impl ReplicaArgs {
    /// The `replica` subcommand and the flags that parse back into `self` (`--flag=value`, so
    /// a path that starts with `-` is not taken for a flag).
    pub fn to_args(&self) -> Vec<String> {
        let path = |flag: &str, p: &PathBuf| format!("{flag}={}", p.display());
        let (device, dtype) = (self.device.name(), self.dtype.name());
        let mut args = vec![
            "replica".to_string(),
            path("--checkpoint", &self.checkpoint),
            format!("--scheduler={}", self.scheduler.name()),
            format!("--device={device}"),
            format!("--dtype={dtype}"),
        ];
        for (flag, value) in [
            ("--config-dir", &self.config_dir),
            ("--nsfw-classifier", &self.nsfw_classifier),
            ("--controlnet-dir", &self.controlnet_dir),
        ] {
            if let Some(v) = value {
                args.push(path(flag, v));
            }
        }
        args
    }
}

#[cfg(all(test, feature = "cli"))]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    enum Cli {
        Replica(ReplicaArgs),
    }

    fn round_trip(args: &ReplicaArgs) -> ReplicaArgs {
        let line = std::iter::once("nicheimage-tui".to_string()).chain(args.to_args());
        match Cli::try_parse_from(line).unwrap() {
            Cli::Replica(parsed) => parsed,
        }
    }

    #[test]
    fn rendered_flags_parse_back_to_the_same_arguments() {
        let mut args = ReplicaArgs {
            checkpoint: "-models/a b.safetensors".into(),
            config_dir: None,
            scheduler: SchedulerKind::EulerAncestral,
            device: DeviceChoice::Cuda,
            dtype: DtypeChoice::Fp32,
            nsfw_classifier: None,
            controlnet_dir: None,
        };
        assert_eq!(round_trip(&args), args);
        args.config_dir = Some("/models/cfg".into());
        args.nsfw_classifier = Some("/models/nsfw".into());
        args.controlnet_dir = Some("/models/controlnet".into());
        args.device = DeviceChoice::Auto;
        args.dtype = DtypeChoice::Auto;
        for scheduler in SchedulerKind::ALL {
            args.scheduler = scheduler;
            assert_eq!(round_trip(&args), args);
        }
    }
}
