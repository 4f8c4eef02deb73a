//! State files written so a crash (even `kill -9`) never leaves half a file: a temp file in the
//! same folder, synced, renamed over the old one. A file that does not parse is moved aside
//! rather than overwritten, and the operator told why.

use serde::Serialize;
use serde::de::DeserializeOwned;
use std::io::Write;
use std::path::Path;

/// Writes `value` as pretty JSON to `path` atomically.
pub fn save_atomic<T: Serialize>(path: &Path, value: &T) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("json.tmp");
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(&serde_json::to_vec_pretty(value).map_err(std::io::Error::other)?)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Loads `path`: missing → default; unreadable or corrupt → default with the reason, a corrupt
/// file moved aside to `<name>.json.corrupt`. `what` names the file for the operator.
pub fn load_or_aside<T: DeserializeOwned + Default>(
    path: &Path,
    what: &str,
) -> (T, Option<String>) {
    let text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return (T::default(), None),
        Err(e) => {
            return (
                T::default(),
                Some(format!("cannot read {what} {}: {e}", path.display())),
            );
        }
    };
    match serde_json::from_slice(&text) {
        Ok(value) => (value, None),
        Err(e) => {
            let aside = path.with_extension("json.corrupt");
            let moved = std::fs::rename(path, &aside);
            let note = format!(
                "{what} {} is corrupt ({e}); {}; starting afresh",
                path.display(),
                match moved {
                    Ok(()) => format!("moved aside to {}", aside.display()),
                    Err(m) => format!("could not move it aside: {m}"),
                }
            );
            (T::default(), Some(note))
        }
    }
}
