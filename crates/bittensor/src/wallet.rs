//! Wallet folders as bittensor lays them out: `<root>/<wallet>/hotkeys/<hotkey>` (a keyfile),
//! `<root>/<wallet>/coldkeypub.txt` (public data only). The node never touches the coldkey.

use std::path::{Path, PathBuf};

use super::keyfile::{self, KeyfileError};
use super::keypair::{CryptoType, Keypair};

/// Where an encrypted hotkey's password comes from when the operator is not prompted.
pub const PASSWORD_ENV: &str = "NICHEIMAGE_WALLET_PASSWORD";

/// The password [`take_password_env`] took out of the environment.
static TAKEN_PASSWORD: std::sync::OnceLock<Option<zeroize::Zeroizing<String>>> =
    std::sync::OnceLock::new();

/// Takes [`PASSWORD_ENV`] out of the process environment and keeps it for
/// [`password_from_env`]: child processes (replicas) inherit the environment, and the value
/// is wiped in place first, so it is not left in the memory `/proc/<pid>/environ` shows either.
///
/// # Safety
/// No other thread may exist yet: the environment is changed (`remove_var`, and a write
/// through `getenv`'s pointer) without a lock other threads would honour. Call it first in
/// `main`, before any runtime or thread starts.
pub unsafe fn take_password_env() {
    let value = std::env::var_os(PASSWORD_ENV);
    let password = value
        .as_ref()
        .and_then(|v| v.to_str())
        .map(|v| zeroize::Zeroizing::new(v.to_string()));
    drop(value.map(|v| zeroize::Zeroizing::new(v.into_encoded_bytes())));
    if let Ok(name) = std::ffi::CString::new(PASSWORD_ENV) {
        // SAFETY: single-threaded (the caller's promise); getenv's pointer is to the live,
        // writable `NAME=value` string, valid until the environment changes, and `strlen`
        // bytes of it are the value.
        unsafe {
            let value = libc::getenv(name.as_ptr());
            if !value.is_null() {
                std::ptr::write_bytes(value, 0, libc::strlen(value));
            }
        }
    }
    // SAFETY: single-threaded (the caller's promise).
    unsafe { std::env::remove_var(PASSWORD_ENV) };
    let _ = TAKEN_PASSWORD.set(password);
}

/// The password the operator typed at the console's prompt ([`provide_password`]).
static PROMPTED_PASSWORD: std::sync::OnceLock<zeroize::Zeroizing<String>> =
    std::sync::OnceLock::new();

/// Keeps the password typed at the terminal for every later [`password_from_env`].
pub fn provide_password(password: zeroize::Zeroizing<String>) {
    let _ = PROMPTED_PASSWORD.set(password);
}

/// The wallet password: typed at the prompt, or from [`PASSWORD_ENV`] as [`take_password_env`]
/// took it, or, where that was not called (library use, tests), from the environment as it is.
pub fn password_from_env() -> Option<zeroize::Zeroizing<String>> {
    if let Some(typed) = PROMPTED_PASSWORD.get() {
        return Some(typed.clone());
    }
    match TAKEN_PASSWORD.get() {
        Some(taken) => taken.clone(),
        None => std::env::var(PASSWORD_ENV)
            .ok()
            .map(zeroize::Zeroizing::new),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WalletError {
    #[error("{path} not found{hint}")]
    Missing { path: PathBuf, hint: &'static str },
    #[error("reading {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Keyfile {
        path: PathBuf,
        #[source]
        source: KeyfileError,
    },
    #[error("{path} already exists; refusing to overwrite a key")]
    Exists { path: PathBuf },
}

/// A wallet's location: root folder, wallet name and hotkey name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wallet {
    pub root: PathBuf,
    pub name: String,
    pub hotkey: String,
}

/// A loaded hotkey plus anything the operator should hear about (file permissions).
#[derive(Debug)]
pub struct LoadedHotkey {
    pub keypair: Keypair,
    pub warnings: Vec<String>,
}

/// Expands a leading `~/` with `$HOME`.
pub fn expand_home(path: &Path) -> PathBuf {
    match path.strip_prefix("~") {
        Ok(rest) => std::env::var_os("HOME")
            .map(|home| PathBuf::from(home).join(rest))
            .unwrap_or_else(|| path.to_path_buf()),
        Err(_) => path.to_path_buf(),
    }
}

impl Wallet {
    pub fn new(root: &Path, name: &str, hotkey: &str) -> Self {
        Self {
            root: expand_home(root),
            name: name.into(),
            hotkey: hotkey.into(),
        }
    }

    pub fn hotkey_path(&self) -> PathBuf {
        self.root
            .join(&self.name)
            .join("hotkeys")
            .join(&self.hotkey)
    }

    pub fn coldkeypub_path(&self) -> PathBuf {
        self.root.join(&self.name).join("coldkeypub.txt")
    }

    /// Whether the hotkey file exists and is `$NACL`-encrypted (so loading needs a password).
    pub fn hotkey_is_encrypted(&self) -> bool {
        std::fs::read(self.hotkey_path()).is_ok_and(|data| keyfile::is_encrypted(&data))
    }

    /// Loads the hotkey; `password` is used only if the file is `$NACL`-encrypted.
    pub fn load_hotkey(&self, password: Option<&str>) -> Result<LoadedHotkey, WalletError> {
        let path = self.hotkey_path();
        let data = read(
            &path,
            " (create a hotkey with `nicheimage-tui wallet new-hotkey` or btcli)",
        )?;
        let keypair = keyfile::parse(&data, password).map_err(|source| WalletError::Keyfile {
            path: path.clone(),
            source,
        })?;
        let warnings = permission_warning(&path).into_iter().collect();
        Ok(LoadedHotkey { keypair, warnings })
    }

    /// The coldkey's address from `coldkeypub.txt`.
    pub fn coldkey_address(&self) -> Result<String, WalletError> {
        let path = self.coldkeypub_path();
        let data = read(&path, " (btcli writes it with the coldkey)")?;
        let key = keyfile::parse(&data, None).map_err(|source| WalletError::Keyfile {
            path: path.clone(),
            source,
        })?;
        Ok(key.ss58().to_string())
    }

    /// Writes a fresh unencrypted hotkey (mode 0600) and its `pub.txt`, like btcli does.
    pub fn create_hotkey(&self, crypto: CryptoType) -> Result<Keypair, WalletError> {
        let path = self.hotkey_path();
        if path.exists() {
            return Err(WalletError::Exists { path });
        }
        let keyfile_error = |source| WalletError::Keyfile {
            path: path.clone(),
            source,
        };
        let phrase = keyfile::new_phrase().map_err(&keyfile_error)?;
        let (keypair, json) =
            keyfile::json_for_phrase_as(crypto, &phrase).map_err(&keyfile_error)?;
        let io = |source| WalletError::Io {
            path: path.clone(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        write_private(&path, json.as_bytes()).map_err(io)?;
        let public = serde_json::to_string(&keyfile::public_json(&keypair))
            .map_err(|e| keyfile_error(keyfile::KeyfileError::Format(e.to_string())))?;
        let pub_path = path.with_file_name(format!("{}pub.txt", self.hotkey));
        std::fs::write(&pub_path, public).map_err(|source| WalletError::Io {
            path: pub_path,
            source,
        })?;
        Ok(keypair)
    }
}

fn read(path: &Path, hint: &'static str) -> Result<Vec<u8>, WalletError> {
    std::fs::read(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            WalletError::Missing {
                path: path.to_path_buf(),
                hint,
            }
        } else {
            WalletError::Io {
                path: path.to_path_buf(),
                source,
            }
        }
    })
}

fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(data)?;
    file.sync_all()
}

/// A key file others can read is a leaked key waiting to happen; say so.
fn permission_warning(path: &Path) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode();
    (mode & 0o077 != 0).then(|| {
        format!(
            "key file {} is readable by other users (mode {:o}); run `chmod 600` on it",
            path.display(),
            mode & 0o777
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_loads_and_warns_about_permissions() {
        let dir = tempfile::tempdir().unwrap();
        let wallet = Wallet::new(dir.path(), "w", "h");
        assert!(matches!(
            wallet.load_hotkey(None),
            Err(WalletError::Missing { .. })
        ));
        let made = wallet.create_hotkey(CryptoType::Sr25519).unwrap();
        let loaded = wallet.load_hotkey(None).unwrap();
        assert_eq!(loaded.keypair.ss58(), made.ss58());
        assert!(loaded.warnings.is_empty());
        assert!(matches!(
            wallet.create_hotkey(CryptoType::Sr25519),
            Err(WalletError::Exists { .. })
        ));
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(wallet.hotkey_path(), std::fs::Permissions::from_mode(0o644))
            .unwrap();
        let loaded = wallet.load_hotkey(None).unwrap();
        assert!(loaded.warnings[0].contains("chmod 600"));
        let public = std::fs::read_to_string(dir.path().join("w/hotkeys/hpub.txt")).unwrap();
        assert!(public.contains(made.ss58()));
        assert!(!public.contains("secret"));
    }

    #[test]
    fn home_is_expanded() {
        // SAFETY-free: read-only use of HOME.
        if let Some(home) = std::env::var_os("HOME") {
            assert_eq!(
                expand_home(Path::new("~/.bittensor")),
                PathBuf::from(home).join(".bittensor")
            );
        }
        assert_eq!(expand_home(Path::new("/x")), PathBuf::from("/x"));
    }
}
