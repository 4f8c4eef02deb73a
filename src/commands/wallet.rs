//! `wallet new-hotkey | show`: the operator's keys on disk.

use super::{CommandError, CommandResult};
use crate::cli::WalletAction;
use nicheimage_bittensor::wallet::{self, Wallet};
use nicheimage_node::config::Config;

pub fn run(action: &WalletAction, config: &Config) -> CommandResult {
    let w = &config.wallet;
    let wallet = Wallet::new(&w.path, &w.name, &w.hotkey);
    match action {
        WalletAction::NewHotkey(args) => {
            let key = wallet
                .create_hotkey(args.crypto.into())
                .map_err(CommandError::failed)?;
            println!(
                "hotkey {} ({})  {}",
                key.ss58(),
                key.crypto(),
                wallet.hotkey_path().display()
            );
        }
        WalletAction::Show(_) => {
            let password = wallet::password_from_env();
            let loaded = wallet
                .load_hotkey(password.as_ref().map(|p| p.as_str()))
                .map_err(CommandError::usage)?;
            println!(
                "hotkey  {}  {}",
                loaded.keypair.ss58(),
                wallet.hotkey_path().display()
            );
            for warning in loaded.warnings {
                println!("warning: {warning}");
            }
            match wallet.coldkey_address() {
                Ok(address) => {
                    println!("coldkey {address}  {}", wallet.coldkeypub_path().display())
                }
                Err(e) => println!("coldkey (none: {e})"),
            }
        }
    }
    Ok(())
}
