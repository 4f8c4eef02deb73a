//! What the process does first, before any thread or runtime exists.

/// Takes the wallet password out of the environment (before replicas, child processes, could
/// inherit it) and raises the open-files limit. Returns the limit change, logged once logging
/// is up.
///
/// # Safety
/// Call first thing in `main`, while the process has one thread: it edits the environment.
pub unsafe fn prepare() -> std::io::Result<(u64, u64)> {
    // SAFETY: the caller guarantees no other thread exists yet.
    unsafe { nicheimage_bittensor::wallet::take_password_env() };
    raise_nofile_limit()
}

/// Raises the soft open-files limit to the hard one: every connection, replica pipe and log
/// file is a descriptor, and the usual soft 1024 runs out under load. Returns (before, after).
#[cfg(unix)]
fn raise_nofile_limit() -> std::io::Result<(u64, u64)> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let before = limit.rlim_cur;
    if limit.rlim_cur < limit.rlim_max {
        limit.rlim_cur = limit.rlim_max;
        // SAFETY: setrlimit reads the struct we own.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok((before, limit.rlim_cur))
}

#[cfg(not(unix))]
fn raise_nofile_limit() -> std::io::Result<(u64, u64)> {
    Err(std::io::Error::other("not supported on this platform"))
}
