//! The Unix signals forcemfa answers, installed in one place for both the one-shot command and
//! the service.

use tokio::signal::unix::{signal, Signal as Stream, SignalKind};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// What a signal asks of forcemfa.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGTERM or SIGINT: stop.
    Shutdown(&'static str),
    /// SIGHUP: reload the configuration.
    Reload,
    /// SIGUSR1: reconcile now.
    Trigger,
}

/// The installed handlers.
pub struct Signals {
    term: Stream,
    int: Stream,
    /// SIGHUP and SIGUSR1, for the service only: elsewhere they keep their default effect.
    service: Option<(Stream, Stream)>,
}

impl Signals {
    /// Every signal the service answers; until installed they keep their default effect.
    pub fn for_service() -> std::io::Result<Signals> {
        let mut signals = Signals::shutdown_only()?;
        signals.service = Some((
            signal(SignalKind::hangup())?,
            signal(SignalKind::user_defined1())?,
        ));
        Ok(signals)
    }

    /// SIGTERM and SIGINT only.
    pub fn shutdown_only() -> std::io::Result<Signals> {
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            service: None,
        })
    }

    /// The next signal.
    pub async fn recv(&mut self) -> Signal {
        let (hup, usr1) = match &mut self.service {
            Some((hup, usr1)) => (Some(hup), Some(usr1)),
            None => (None, None),
        };
        tokio::select! {
            _ = self.term.recv() => Signal::Shutdown("SIGTERM"),
            _ = self.int.recv() => Signal::Shutdown("SIGINT"),
            Some(_) = async { match hup { Some(s) => s.recv().await, None => std::future::pending().await } } => Signal::Reload,
            Some(_) = async { match usr1 { Some(s) => s.recv().await, None => std::future::pending().await } } => Signal::Trigger,
        }
    }
}

/// Cancels `token` on the first SIGTERM or SIGINT.
pub async fn cancel_on_shutdown_signal(token: CancellationToken) {
    let mut signals = match Signals::shutdown_only() {
        Ok(s) => s,
        Err(e) => {
            warn!(error = %e, "cannot listen for signals; stop the process with SIGKILL");
            return;
        }
    };
    if let Signal::Shutdown(name) = signals.recv().await {
        info!(signal = name, "shutdown requested");
        token.cancel();
    }
}
