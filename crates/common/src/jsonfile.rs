//! State files written so a crash (even `kill -9`) never leaves half a file: a temp file in the
//! same folder (a name of its own per save), synced, renamed over the old one, the folder
//! synced so the rename survives a power cut. A file that does not parse is moved aside rather
//! than overwritten, and the operator told why.

use serde::Serialize;
use serde::de::DeserializeOwned;
use std::ffi::{OsStr, OsString};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Numbers this process's temp files: with the pid, two saves never share one, whether two
/// tasks or two processes save the same file at once.
static SAVES: AtomicU64 = AtomicU64::new(0);

/// An I/O error that names what was being done and to which path.
fn context(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> std::io::Error {
    let path = path.display().to_string();
    move |e| std::io::Error::new(e.kind(), format!("{what} {path}: {e}"))
}

/// The folder `path` is in (`.` for a bare file name).
fn folder(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// `<name>.<pid>.<n>.tmp` beside `path`.
fn temp_path(path: &Path, name: &OsStr) -> PathBuf {
    let mut temp = OsString::from(name);
    let n = SAVES.fetch_add(1, Ordering::Relaxed);
    temp.push(format!(".{}.{n}.tmp", std::process::id()));
    folder(path).join(temp)
}

/// Writes `value` as pretty JSON to `path` atomically.
pub fn save_atomic<T: Serialize>(path: &Path, value: &T) -> std::io::Result<()> {
    save(path, value, false)
}

/// As [`save_atomic`], for files holding secrets (salts, weights before their reveal): the file
/// is 0600 from its first byte, and folders it has to create are 0700.
pub fn save_private<T: Serialize>(path: &Path, value: &T) -> std::io::Result<()> {
    save(path, value, true)
}

fn save<T: Serialize>(path: &Path, value: &T, private: bool) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let bytes = serde_json::to_vec_pretty(value)
        .map_err(std::io::Error::other)
        .map_err(context("encoding", path))?;
    let dir = folder(path);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(if private { 0o700 } else { 0o777 })
        .create(dir)
        .map_err(context("creating", dir))?;
    let name = path.file_name().ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{} names no file", path.display()),
        )
    })?;
    let tmp = temp_path(path, name);
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(if private { 0o600 } else { 0o666 })
        .open(&tmp)
        .and_then(|mut file| {
            file.write_all(&bytes)?;
            file.sync_all()
        });
    let renamed = written
        .map_err(context("writing", &tmp))
        .and_then(|()| std::fs::rename(&tmp, path).map_err(context("replacing", path)));
    if let Err(e) = renamed {
        // Best effort: a temp file left behind is swept at the next load.
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    // The rename is in the folder's entry: durable only once the folder is synced.
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(context("syncing the folder", dir))
}

/// Removes temp files beside `path` left by saves of processes that are gone (killed
/// mid-save), and the fixed temp name older versions used. Linux only (`/proc` tells whether
/// a pid lives); elsewhere nothing is removed.
fn sweep_stale_temps(path: &Path) {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return;
    };
    if !Path::new("/proc/self").exists() {
        return;
    }
    let Ok(entries) = std::fs::read_dir(folder(path)) else {
        return;
    };
    let prefix = format!("{name}.");
    for entry in entries.flatten() {
        let file = entry.file_name();
        let Some(rest) = file
            .to_str()
            .and_then(|f| f.strip_prefix(&prefix))
            .and_then(|f| f.strip_suffix(".tmp"))
        else {
            continue;
        };
        let stale = match rest.split_once('.') {
            Some((pid, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
                pid.parse::<u32>().is_ok_and(|pid| {
                    pid != std::process::id() && !Path::new("/proc").join(pid.to_string()).exists()
                })
            }
            _ => false,
        };
        // Also old: a process in another PID namespace (a container sharing the folder) is
        // invisible in /proc, and its save in progress must not be pulled from under it.
        if stale && older_than_ten_minutes(&entry.path()) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    // `state.json.tmp`: the one temp name of versions before unique names.
    let legacy = path.with_extension("json.tmp");
    if older_than_ten_minutes(&legacy) {
        let _ = std::fs::remove_file(legacy);
    }
}

fn older_than_ten_minutes(path: &Path) -> bool {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age >= std::time::Duration::from_secs(600))
}

/// Loads `path`: missing → default; unreadable or corrupt → default with the reason, a corrupt
/// file moved aside to `<name>.json.corrupt`. `what` names the file for the operator.
pub fn load_or_aside<T: DeserializeOwned + Default>(
    path: &Path,
    what: &str,
) -> (T, Option<String>) {
    sweep_stale_temps(path);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_files_are_owner_only_from_the_start() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new/secrets.json");
        std::fs::create_dir_all(dir.path().join("old")).unwrap();
        let old = dir.path().join("old/secrets.json");
        std::fs::write(&old, "[]").unwrap();
        std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o644)).unwrap();
        for p in [&path, &old] {
            save_private(p, &vec![1, 2, 3]).unwrap();
            let mode = std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", p.display());
        }
        let folder = std::fs::metadata(dir.path().join("new")).unwrap();
        assert_eq!(folder.permissions().mode() & 0o777, 0o700);
    }

    #[test]
    fn temp_names_are_unique_and_nothing_is_left_behind() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let name = path.file_name().unwrap();
        let (a, b) = (temp_path(&path, name), temp_path(&path, name));
        assert_ne!(a, b);
        let a = a.file_name().unwrap().to_str().unwrap().to_string();
        assert!(
            a.starts_with(&format!("state.json.{}.", std::process::id())) && a.ends_with(".tmp"),
            "{a}"
        );
        // Many writers of one file at once: every save lands whole, no temp file remains.
        std::thread::scope(|s| {
            for t in 0..8u64 {
                let path = &path;
                s.spawn(move || {
                    for i in 0..20u64 {
                        save_atomic(path, &vec![t * 100 + i; 500]).unwrap();
                    }
                });
            }
        });
        let last: Vec<u64> = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(last.len(), 500);
        assert!(last.iter().all(|v| *v == last[0]));
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![OsString::from("state.json")]);
    }

    #[test]
    fn errors_name_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("file");
        std::fs::write(&blocker, b"x").unwrap();
        let err = save_atomic(&blocker.join("state.json"), &1).unwrap_err();
        assert!(
            err.to_string().contains(&blocker.display().to_string()),
            "{err}"
        );
    }

    #[test]
    fn loading_sweeps_temp_files_of_dead_processes_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        save_atomic(&path, &7u32).unwrap();
        // pid 0 is never a process of ours; our own pid is alive.
        let dead = dir.path().join("state.json.0.3.tmp");
        let ours = dir
            .path()
            .join(format!("state.json.{}.9.tmp", std::process::id()));
        let old = dir.path().join("state.json.tmp");
        let other = dir.path().join("other.json.0.1.tmp");
        // A dead pid's file written just now may be a live process in another PID namespace.
        let recent = dir.path().join("state.json.0.4.tmp");
        let twenty_minutes_ago =
            std::time::SystemTime::now() - std::time::Duration::from_secs(1200);
        for f in [&dead, &ours, &old, &other, &recent] {
            std::fs::write(f, b"{").unwrap();
            if f != &recent {
                std::fs::File::options()
                    .write(true)
                    .open(f)
                    .unwrap()
                    .set_modified(twenty_minutes_ago)
                    .unwrap();
            }
        }
        let (value, note) = load_or_aside::<u32>(&path, "test state");
        assert_eq!((value, note), (7, None));
        assert!(!dead.exists() && !old.exists());
        assert!(ours.exists() && other.exists() && recent.exists());
    }
}
