//! Unix signals -> lifecycle: SIGTERM/SIGINT cancel the shutdown token, SIGHUP
//! asks for a reload. In Docker we are PID 1, so this handler is what makes
//! `docker stop` clean.

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Listens until shutdown; sends `()` on `reload` for every SIGHUP.
///
/// # Errors
/// If a handler cannot be installed (only at startup).
pub fn spawn(shutdown: CancellationToken, reload: mpsc::Sender<()>) -> std::io::Result<()> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = term.recv() => { tracing::info!(signal = "SIGTERM", "shutting down"); break; }
                _ = int.recv() => { tracing::info!(signal = "SIGINT", "shutting down"); break; }
                _ = hup.recv() => { let _ = reload.try_send(()); }
                _ = shutdown.cancelled() => return,
            }
        }
        shutdown.cancel();
    });
    Ok(())
}
