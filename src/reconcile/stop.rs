//! Why a run stops before its end: the service is shutting down, or the run's deadline
//! (`run_timeout`) has passed. Once either happens no new read or change starts; changes already
//! sent are let finish.

use std::fmt;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

/// The run's own stop token and what cancels it.
pub struct Stop<'a> {
    /// Cancelled at shutdown or at the deadline: every part of the run watches this one.
    pub token: CancellationToken,
    /// The caller's token, cancelled only when forcemfa shuts down.
    pub shutdown: &'a CancellationToken,
    /// The run's deadline (`run_timeout`).
    pub timeout: Duration,
    /// When the deadline passes.
    at: Instant,
}

impl Stop<'_> {
    /// A stop for one run: its token follows `shutdown`, and is cancelled at the deadline too.
    pub fn new(shutdown: &CancellationToken, timeout: Duration) -> Stop<'_> {
        Stop::since(shutdown, timeout, Instant::now())
    }

    /// A stop for one run that began at `started` (a batch of events, whose accounts start their
    /// reconciliations one after another): its deadline is `timeout` after that.
    pub fn since(shutdown: &CancellationToken, timeout: Duration, started: Instant) -> Stop<'_> {
        Stop {
            token: shutdown.child_token(),
            shutdown,
            timeout,
            at: started + timeout,
        }
    }

    /// Runs `work` to its end, cancelling the run's token once the deadline passes, so that no
    /// new read or change starts after it.
    pub async fn at_deadline<T>(&self, work: impl std::future::Future<Output = T>) -> T {
        tokio::pin!(work);
        tokio::select! {
            result = &mut work => result,
            () = tokio::time::sleep_until(self.at.into()) => {
                self.token.cancel();
                work.await
            }
        }
    }

    /// Why the run is stopping, once it is.
    pub fn reason(&self) -> StopReason {
        if self.shutdown.is_cancelled() {
            StopReason::ShuttingDown
        } else {
            StopReason::Deadline(self.timeout)
        }
    }
}

/// Why a run stopped before its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    ShuttingDown,
    /// The run passed `run_timeout`.
    Deadline(Duration),
}

impl fmt::Display for StopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StopReason::ShuttingDown => f.write_str("forcemfa is shutting down"),
            StopReason::Deadline(timeout) => write!(
                f,
                "the run passed its deadline (run_timeout = {}s)",
                timeout.as_secs()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shutdown_is_told_apart_from_the_deadline() {
        let shutdown = CancellationToken::new();
        let stop = Stop::new(&shutdown, Duration::from_secs(60));
        stop.token.cancel();
        assert_eq!(stop.reason(), StopReason::Deadline(Duration::from_secs(60)));
        assert!(!shutdown.is_cancelled());
        shutdown.cancel();
        assert_eq!(stop.reason(), StopReason::ShuttingDown);
        assert_eq!(
            StopReason::Deadline(Duration::from_secs(60)).to_string(),
            "the run passed its deadline (run_timeout = 60s)"
        );
    }
}
