//! What the service's parts share: the reconciler and token in force, the run requests, the
//! metrics. The main loop, the runner and the admin listener each hold it; none owns the others.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::info;

use super::metrics::Metrics;
use super::token::Token;
use crate::reconcile::report::RunReport;
use crate::reconcile::Reconciler;
use crate::sync;

/// What a run uses; replaced as a whole on reload, so that a run sees one consistent version.
pub struct Current {
    pub reconciler: Arc<Reconciler>,
    pub token: Option<Token>,
}

/// State shared by the runner, the main loop and the admin listener.
pub struct Shared {
    current: RwLock<Arc<Current>>,
    pub metrics: Metrics,
    /// The address the admin listener is bound to (fixed for the life of the process).
    pub listen: SocketAddr,
    /// The report of the last run that finished, for `GET /report`.
    last_report: RwLock<Option<Arc<RunReport>>>,
    pending: AtomicBool,
    running: AtomicBool,
    pub(super) wake: Notify,
    /// Cancelled once the service stops: no new run, read or change starts.
    pub stop: CancellationToken,
}

impl Shared {
    pub fn new(current: Current, listen: SocketAddr) -> Shared {
        Shared {
            current: RwLock::new(Arc::new(current)),
            metrics: Metrics::new(),
            listen,
            last_report: RwLock::new(None),
            pending: AtomicBool::new(false),
            running: AtomicBool::new(false),
            wake: Notify::new(),
            stop: CancellationToken::new(),
        }
    }

    pub fn current(&self) -> Arc<Current> {
        sync::read(&self.current).clone()
    }

    pub fn replace(&self, next: Current) {
        *sync::write(&self.current) = Arc::new(next);
    }

    pub fn token(&self) -> Option<Token> {
        self.current().token.clone()
    }

    /// The report of the last run that finished; `None` before the first.
    pub fn last_report(&self) -> Option<Arc<RunReport>> {
        sync::read(&self.last_report).clone()
    }

    /// Asks for a run. Returns what became of the request: `started` (the runner was idle),
    /// `queued` (it runs after the current run) or `coalesced` (a follow-up run was already queued).
    pub fn request_run(&self, source: &str) -> &'static str {
        let already_pending = self.pending.swap(true, Ordering::SeqCst);
        let outcome = if already_pending {
            "coalesced"
        } else if self.running.load(Ordering::SeqCst) {
            "queued"
        } else {
            "started"
        };
        self.wake.notify_one();
        self.metrics.record_request(outcome);
        info!(source, outcome, "run requested");
        outcome
    }

    /// Takes the pending request, if any, marking the runner busy.
    pub(super) fn take_request(&self) -> bool {
        let pending = self.pending.swap(false, Ordering::SeqCst);
        if pending {
            self.running.store(true, Ordering::SeqCst);
        }
        pending
    }

    /// Keeps the run's report and frees the runner for the next request.
    pub(super) fn run_finished(&self, report: RunReport) {
        *sync::write(&self.last_report) = Some(Arc::new(report));
        self.running.store(false, Ordering::SeqCst);
    }
}
