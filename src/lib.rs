//! nicheimage-tui: the operator's program over the node runtime (`nicheimage-node`), with two
//! faces — the terminal console (`ui`) and headless mode (`headless`) — and the operator
//! commands (`commands`).

pub mod cli;
pub mod commands;
pub mod headless;
pub mod logging;
pub mod ui;
