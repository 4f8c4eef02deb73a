//! The console asks for an encrypted hotkey's password on the terminal before it starts.

use nicheimage_node::config::Config;

/// Why the console cannot start with the encrypted hotkey.
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("cannot decrypt {} with the password given", .0.display())]
    Wrong(std::path::PathBuf),
    #[error("cannot read the terminal's settings: {0}")]
    Terminal(std::io::Error),
    #[error("reading the password: {0}")]
    Read(std::io::Error),
}

/// Prompts (echo off) for the configured hotkey's password when the file is encrypted and no
/// password was given in the environment; three tries, each checked by decrypting.
pub fn ask_hotkey_password(config: &Config) -> Result<(), PasswordError> {
    use nicheimage_bittensor::wallet::{self, Wallet};
    let w = &config.wallet;
    let wallet = Wallet::new(&w.path, &w.name, &w.hotkey);
    if !wallet.hotkey_is_encrypted() || wallet::password_from_env().is_some() {
        return Ok(());
    }
    for _ in 0..3 {
        let typed = read_hidden(&format!(
            "Password for the hotkey {}: ",
            wallet.hotkey_path().display()
        ))?;
        if wallet.load_hotkey(Some(typed.as_str())).is_ok() {
            wallet::provide_password(typed);
            return Ok(());
        }
        eprintln!("wrong password");
    }
    Err(PasswordError::Wrong(wallet.hotkey_path()))
}

/// One line from the terminal with echo off (restored afterwards, also on error).
fn read_hidden(prompt: &str) -> Result<zeroize::Zeroizing<String>, PasswordError> {
    use std::io::{BufRead, Write};
    eprint!("{prompt}");
    let _ = std::io::stderr().flush();
    // SAFETY: tcgetattr/tcsetattr on stdin (a terminal, checked by the caller) with a struct we
    // own; the original settings are written back before returning.
    let mut term: libc::termios = unsafe { std::mem::zeroed() };
    if unsafe { libc::tcgetattr(libc::STDIN_FILENO, &mut term) } != 0 {
        return Err(PasswordError::Terminal(std::io::Error::last_os_error()));
    }
    let original = term;
    term.c_lflag &= !libc::ECHO;
    term.c_lflag |= libc::ECHONL;
    // SAFETY: as above.
    unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &term) };
    let mut line = zeroize::Zeroizing::new(String::new());
    let read = std::io::stdin().lock().read_line(&mut line);
    // SAFETY: as above.
    unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &original) };
    read.map_err(PasswordError::Read)?;
    let trimmed = line.trim_end_matches(['\r', '\n']).to_string();
    Ok(zeroize::Zeroizing::new(trimmed))
}
