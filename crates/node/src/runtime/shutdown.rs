//! SIGINT, SIGTERM and SIGHUP all mean: drain and exit 0.

use tokio_util::sync::CancellationToken;

/// Cancels `token` on the first termination signal. Returns an error if the handlers cannot
/// be installed.
///
/// SIGHUP stops the node too (the terminal went away) unless `reload` is given — headless, as
/// under systemd, where SIGHUP conventionally means "read the config again".
pub fn on_signals(
    token: CancellationToken,
    reload: Option<Box<dyn Fn() + Send>>,
) -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut hup = signal(SignalKind::hangup())?;
    tokio::spawn(async move {
        let name = loop {
            tokio::select! {
                _ = int.recv() => break "SIGINT",
                _ = term.recv() => break "SIGTERM",
                _ = hup.recv() => match &reload {
                    Some(reload) => reload(),
                    None => break "SIGHUP",
                },
                _ = token.cancelled() => return,
            }
        };
        tracing::info!(signal = name, "signal received; draining");
        token.cancel();
    });
    Ok(())
}
