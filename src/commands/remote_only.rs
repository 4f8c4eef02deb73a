//! A build without `local-infer` has no engine: the local commands say so.

use super::{CommandError, CommandResult};
use crate::cli::{GenerateArgs, ReplicaArgs, TinyCheckpointArgs};
use nicheimage_node::config::{DeviceChoice, DtypeChoice};

fn absent() -> CommandError {
    CommandError::usage("this build has no local inference (built without the local-infer feature)")
}

pub fn tiny_checkpoint(_args: &TinyCheckpointArgs) -> CommandResult {
    Err(absent())
}

pub fn generate(_args: &GenerateArgs, _device: DeviceChoice, _dtype: DtypeChoice) -> CommandResult {
    Err(absent())
}

pub fn replica(_args: &ReplicaArgs) -> CommandResult {
    Err(absent())
}
