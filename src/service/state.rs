//! What the service's parts share: the reconciler and token in force, the run requests, the
//! last run's report, the metrics. The main loop, the runner and the admin listener each hold it; none owns the others.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::info;

use super::metrics::Metrics;
use super::token::Token;
use crate::notify::Notifier;
use crate::reconcile::report::RunReport;
use crate::reconcile::Reconciler;
use crate::sync;

/// What a run uses; replaced as a whole on reload, so that a run sees one consistent version.
pub struct Current {
    pub reconciler: Arc<Reconciler>,
    /// Whom runs are told about, when `[notify]` names a channel.
    pub notifier: Option<Arc<Notifier>>,
    pub token: Option<Token>,
}

/// Whether the events queue (`[events]`) can be read.
#[derive(Debug, Clone, Default)]
pub enum QueueState {
    /// No `[events]` in the configuration.
    #[default]
    Off,
    /// Configured; no receive has failed since the last success (or none was tried yet).
    Readable,
    Unreadable {
        since: std::time::Instant,
        error: String,
    },
}

/// A finished run: its number and its report.
#[derive(Clone)]
pub struct FinishedRun {
    /// Runs are numbered from 1 in the order they start, for the life of the process.
    pub number: u64,
    pub report: Arc<RunReport>,
}

/// What became of a request for a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Requested {
    /// `started` (the runner was idle), `queued` (it runs after the current run) or `coalesced`
    /// (a follow-up run was already queued).
    pub outcome: &'static str,
    /// The number of the run that serves the request: the next one to start.
    pub run: u64,
}

/// The runs asked for, under one lock so that a request's outcome and the number of the run
/// that serves it are decided together with the runner taking requests.
#[derive(Default)]
struct RunRequests {
    /// A run has been asked for and not started yet.
    pending: bool,
    running: bool,
    /// Runs started so far; the last one's number.
    started: u64,
}

impl RunRequests {
    /// Whatever run starts next takes every request made before it starts, so that is the run
    /// that serves this one.
    fn request(&mut self) -> Requested {
        let outcome = if self.pending {
            "coalesced"
        } else if self.running {
            "queued"
        } else {
            "started"
        };
        self.pending = true;
        Requested {
            outcome,
            run: self.started + 1,
        }
    }

    /// Starts the run that serves the pending requests, if any; returns its number.
    fn take(&mut self) -> Option<u64> {
        if !self.pending {
            return None;
        }
        self.pending = false;
        self.running = true;
        self.started += 1;
        Some(self.started)
    }
}

/// State shared by the runner, the main loop and the admin listener.
pub struct Shared {
    current: RwLock<Arc<Current>>,
    pub metrics: Metrics,
    /// The address the admin listener is bound to (fixed for the life of the process).
    pub listen: SocketAddr,
    /// The last run that finished, for `GET /report`.
    last_run: RwLock<Option<FinishedRun>>,
    requests: Mutex<RunRequests>,
    pub(super) wake: Notify,
    events_queue: Mutex<QueueState>,
    /// Cancelled once the service stops: no new run, read or change starts.
    pub stop: CancellationToken,
}

impl Shared {
    pub fn new(current: Current, listen: SocketAddr) -> Shared {
        Shared {
            current: RwLock::new(Arc::new(current)),
            metrics: Metrics::new(),
            listen,
            last_run: RwLock::new(None),
            requests: Mutex::new(RunRequests::default()),
            wake: Notify::new(),
            events_queue: Mutex::default(),
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

    /// The last run that finished; `None` before the first.
    pub fn last_run(&self) -> Option<FinishedRun> {
        sync::read(&self.last_run).clone()
    }

    /// Asks for a run; says what became of the request and which run serves it.
    pub fn request_run(&self, source: &str) -> Requested {
        let requested = sync::lock(&self.requests).request();
        self.wake.notify_one();
        self.metrics.record_request(requested.outcome);
        info!(
            source,
            outcome = requested.outcome,
            run = requested.run,
            "run requested"
        );
        requested
    }

    pub fn queue_state(&self) -> QueueState {
        sync::lock(&self.events_queue).clone()
    }

    /// Records the events queue's state; returns the previous one. A queue already unreadable
    /// stays so since its first failure.
    pub fn set_queue_state(&self, state: QueueState) -> QueueState {
        let mut current = sync::lock(&self.events_queue);
        let state = match (&*current, state) {
            (QueueState::Unreadable { since, .. }, QueueState::Unreadable { error, .. }) => {
                QueueState::Unreadable {
                    since: *since,
                    error,
                }
            }
            (_, state) => state,
        };
        std::mem::replace(&mut *current, state)
    }

    /// Takes the pending request, if any, marking the runner busy; returns the run's number.
    pub(super) fn take_request(&self) -> Option<u64> {
        sync::lock(&self.requests).take()
    }

    /// Keeps the run's report and frees the runner for the next request.
    pub(super) fn run_finished(&self, number: u64, report: RunReport) {
        *sync::write(&self.last_run) = Some(FinishedRun {
            number,
            report: Arc::new(report),
        });
        sync::lock(&self.requests).running = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn requested(outcome: &'static str, run: u64) -> Requested {
        Requested { outcome, run }
    }

    #[test]
    fn a_request_is_served_by_the_next_run_to_start() {
        let mut q = RunRequests::default();
        assert_eq!(q.take(), None, "no request, no run");
        assert_eq!(q.request(), requested("started", 1));
        assert_eq!(q.take(), Some(1));
        // During run 1: one follow-up run serves every request.
        assert_eq!(q.request(), requested("queued", 2));
        assert_eq!(q.request(), requested("coalesced", 2));
        q.running = false;
        assert_eq!(q.take(), Some(2));
        assert_eq!(q.take(), None);
        // During run 2, a request waits for run 3, not for run 2, which began before it.
        assert_eq!(q.request(), requested("queued", 3));
        q.running = false;
        assert_eq!(q.take(), Some(3));
        q.running = false;
        assert_eq!(q.request(), requested("started", 4));
    }
}
