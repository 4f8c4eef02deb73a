//! SIGINT, SIGTERM and SIGHUP all mean: drain and exit 0.

use tokio_util::sync::CancellationToken;

/// Cancels `token` on the first termination signal. Returns an error if the handlers cannot
/// be installed.
pub fn on_signals(token: CancellationToken) -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut hup = signal(SignalKind::hangup())?;
    tokio::spawn(async move {
        let name = tokio::select! {
            _ = int.recv() => "SIGINT",
            _ = term.recv() => "SIGTERM",
            _ = hup.recv() => "SIGHUP",
            _ = token.cancelled() => return,
        };
        tracing::info!(signal = name, "signal received; draining");
        token.cancel();
    });
    Ok(())
}
