//! One execution environment of the function: the reconciler opened once, then each invocation
//! run by it, its metrics written as EMF lines on stdout.

use std::io::Write;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use lambda_runtime::{Diagnostic, LambdaEvent};
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::emf::{self, Figures};
use super::invocation::{self, DirectRun, Invocation, QueueMessage, Takes};
use super::setup::{check_fits, Setup, SetupError, REPORT_TIME};
use crate::batch::{self, Consumed};
use crate::notify::Notifier;
use crate::reconcile::{Reconciler, RunOptions, Scope};

/// The error types an invocation answers with.
const CONFIGURATION_ERROR: &str = "forcemfa.ConfigurationError";
const INVALID_INVOCATION: &str = "forcemfa.InvalidInvocation";

/// The reconciler, or why there is none.
pub struct Function {
    ready: Result<Ready, SetupError>,
}

struct Ready {
    reconciler: Reconciler,
    /// Whom runs are told about, when `[notify]` names a channel.
    notifier: Option<Notifier>,
    name: String,
    takes: Takes,
    /// The function's timeout as the stack set it, when it did.
    timeout: Option<Duration>,
}

fn diagnostic(error_type: &str, error: &dyn std::fmt::Display) -> Diagnostic {
    Diagnostic {
        error_type: error_type.to_string(),
        error_message: error.to_string(),
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The time an invocation has left: `None` when its deadline is not a time to come (a local
/// emulator's), so that only the function's configured timeout is checked.
pub fn time_left(deadline_ms: u64, now_ms: u64) -> Option<Duration> {
    (deadline_ms > now_ms).then(|| Duration::from_millis(deadline_ms - now_ms))
}

impl Function {
    /// Opens the reconciler once a configuration was loaded; a set-up error is logged here and
    /// answered to every invocation.
    pub async fn start(setup: Result<Setup, SetupError>) -> Function {
        let name = crate::environment::var("AWS_LAMBDA_FUNCTION_NAME")
            .ok()
            .flatten()
            .unwrap_or_default();
        let ready = match setup {
            Ok(setup) => Ready::open(setup, name).await,
            Err(e) => Err(e),
        };
        if let Err(e) = &ready {
            error!(error = %e, "forcemfa cannot reconcile; every invocation fails and nothing is changed");
        }
        Function { ready }
    }

    /// One invocation: its payload read, the run made, the answer.
    pub async fn handle(&self, event: LambdaEvent<Value>) -> Result<Value, Diagnostic> {
        let ready = self
            .ready
            .as_ref()
            .map_err(|e| diagnostic(CONFIGURATION_ERROR, e))?;
        let (payload, context) = event.into_parts();
        let invocation = invocation::parse(&payload)
            .and_then(|invocation| ready.takes.admit(&invocation).map(|()| invocation))
            .map_err(|e| {
                warn!(error = %e, "invocation refused; nothing was changed");
                diagnostic(INVALID_INVOCATION, &e)
            })?;
        let left = time_left(context.deadline, now_ms());
        if let Some(left) = left {
            check_fits(
                ready.reconciler.config(),
                left,
                "the time this invocation has",
            )
            .map_err(|e| {
                error!(error = %e, "invocation refused; nothing was changed");
                diagnostic(CONFIGURATION_ERROR, &e)
            })?;
        }
        // Lambda ends the process at its deadline: each path stops its run at run_timeout, and
        // check_fits has held what follows to end before the function does. Past `deadline`
        // nothing more starts (no read, change or message), so that the answer comes in time.
        let deadline = ready.deadline(left);
        let stop = CancellationToken::new();
        let stopping = deadline.map(|at| {
            let stop = stop.clone();
            tokio::spawn(async move {
                tokio::time::sleep_until(at.into()).await;
                warn!("the invocation's time is nearly up: nothing more is started");
                stop.cancel();
            })
        });
        let answer = match invocation {
            Invocation::Scheduled => {
                info!(invocation = "schedule", "full reconciliation");
                ready.run(DirectRun::default(), &stop, deadline).await
            }
            Invocation::Direct(run) => {
                info!(
                    invocation = "direct",
                    dry_run = run.dry_run,
                    users = run.users.len(),
                    "reconciliation asked for"
                );
                ready.run(run, &stop, deadline).await
            }
            Invocation::Queue(messages) => ready.events(messages, &stop, deadline).await,
        };
        if let Some(stopping) = stopping {
            stopping.abort();
        }
        Ok(answer)
    }
}

impl Ready {
    async fn open(setup: Setup, name: String) -> Result<Ready, SetupError> {
        let reconciler = Reconciler::open(setup.config).await?;
        let notifier = Notifier::open(reconciler.config(), reconciler.sdk(), None).await?;
        Ok(Ready {
            reconciler,
            notifier,
            name,
            takes: setup.takes,
            timeout: setup.timeout,
        })
    }

    /// When an invocation with `left` (when Lambda's deadline is real) must stop starting
    /// anything, to answer in time: [`REPORT_TIME`] before its deadline, or before the
    /// function's timeout when only that is known.
    fn deadline(&self, left: Option<Duration>) -> Option<Instant> {
        let left = left.or(self.timeout)?;
        Some(Instant::now() + left.saturating_sub(REPORT_TIME))
    }

    /// A run of every user, or of the users named; its report is the answer.
    async fn run(
        &self,
        run: DirectRun,
        stop: &CancellationToken,
        deadline: Option<Instant>,
    ) -> Value {
        let mut options = RunOptions::from_config(self.reconciler.config());
        options.dry_run |= run.dry_run;
        if run.max_changes.is_some() {
            options.max_changes = run.max_changes;
        }
        let scope = if run.users.is_empty() {
            Scope::All
        } else {
            Scope::Users(run.users)
        };
        let mut report = self.reconciler.run_scoped(options, &scope, stop).await;
        if let Some(notifier) = &self.notifier {
            notifier.after_run(&mut report, stop, deadline).await;
        }
        if !options.dry_run {
            self.emit(&Figures::of_run(&report, scope == Scope::All));
        }
        serde_json::to_value(&report).unwrap_or_else(
            |e| serde_json::json!({ "error": format!("cannot serialize the report: {e}") }),
        )
    }

    /// A batch from the events queue: an unusable message is consumed, the others'
    /// users reconciled; the answer names the messages to deliver again.
    async fn events(
        &self,
        messages: Vec<QueueMessage>,
        stop: &CancellationToken,
        deadline: Option<Instant>,
    ) -> Value {
        info!(
            invocation = "queue",
            messages = messages.len(),
            "events received"
        );
        let read = batch::read(messages, Consumed::LeftOut);
        let notifier = self.notifier.as_ref();
        let handled = batch::handle(&self.reconciler, notifier, read.usable, stop, deadline).await;
        let retry = handled.retry.iter().map(|m| m.message_id.as_str());
        if let (Some(outcome), false) = (&handled.outcome, self.reconciler.config().dry_run) {
            let retried = handled.retry.len() as u64;
            self.emit(&Figures::of_events(&outcome.reports, retried));
        }
        invocation::batch_response(retry)
    }

    /// Writes the invocation's metrics: one line on stdout, which CloudWatch Logs reads as EMF.
    /// A line that cannot be written costs the metrics, never the invocation's answer.
    fn emit(&self, figures: &Figures) {
        let line = emf::line(&self.name, now_ms(), figures);
        let mut out = std::io::stdout().lock();
        if let Err(e) = writeln!(out, "{line}").and_then(|()| out.flush()) {
            error!(error = %e, "metrics line not written");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deadline_in_the_past_is_no_deadline() {
        assert_eq!(
            time_left(1_700_000_900_000, 1_700_000_000_000),
            Some(Duration::from_secs(900))
        );
        assert_eq!(time_left(600_000, 1_700_000_000_000), None);
    }
}
