//! Unix signals as futures.

use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Resolves on the first SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        warn!("cannot listen for SIGTERM/SIGINT; stop the process with SIGKILL");
        return std::future::pending().await;
    };
    let name = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    info!(signal = name, "shutdown requested");
}

/// Cancels `token` on the first SIGTERM or SIGINT.
pub async fn cancel_on_shutdown_signal(token: CancellationToken) {
    shutdown_signal().await;
    token.cancel();
}
