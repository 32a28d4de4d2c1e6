//! The journal of a reconciliation's changes: each is logged, and written to the audit log (if
//! there is one) as it happens, the intent before the request, the outcome as soon as IAM has
//! answered. It is the one writer of the `membership change` log lines (planned, blocked,
//! intent, done, failed, unknown, left out), each with the run's id.

use std::collections::HashMap;
use std::sync::Mutex;

use tracing::{error, info, warn};

use crate::clock::Timestamp;
use crate::sync::lock;

use super::apply::{Change, ChangeResult, Journal, NotSent, Outcome};
use super::audit::{self, AuditError, AuditLog, Step};
use super::impact::Impact;
use super::plan::Action;
use crate::user_name::UserName;

/// Why a change was listed and not made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Planned {
    /// A dry run's plan.
    Planned,
    /// The guard (`max_changes`) tripped.
    Blocked,
}

impl Planned {
    pub fn as_str(self) -> &'static str {
        match self {
            Planned::Planned => "planned",
            Planned::Blocked => "blocked",
        }
    }
}

/// Logs each change and writes it to the audit log.
pub struct Recorder<'a> {
    pub audit: Option<&'a AuditLog>,
    pub run_id: &'a str,
    pub account_id: &'a str,
    pub group: &'a str,
    /// Audit lines that could not be written, for the report.
    pub audit_errors: Mutex<Vec<String>>,
    /// What adding each user takes away (verdict, summary), for the logs and the audit log.
    impacts: Mutex<HashMap<UserName, (&'static str, String)>>,
}

impl<'a> Recorder<'a> {
    pub fn new(
        audit: Option<&'a AuditLog>,
        run_id: &'a str,
        account_id: &'a str,
        group: &'a str,
    ) -> Recorder<'a> {
        Recorder {
            audit,
            run_id,
            account_id,
            group,
            audit_errors: Mutex::new(Vec::new()),
            impacts: Mutex::default(),
        }
    }

    /// Keeps what adding each user takes away, for the lines of its add.
    pub fn note_impacts(&self, impacts: &[Impact]) {
        let mut noted = lock(&self.impacts);
        for i in impacts {
            noted.insert(i.user.clone(), (i.verdict.as_str(), i.summary.clone()));
        }
    }

    /// The impact noted for a change: only an add has one.
    fn impact_of(&self, change: &Change) -> Option<(&'static str, String)> {
        match change {
            Change::Membership(user, Action::Add) => lock(&self.impacts).get(user).cloned(),
            _ => None,
        }
    }

    /// Logs the changes listed and not made (`outcome` says why), with what each add takes away.
    pub fn planned(&self, changes: &[(UserName, Action)], dry_run: bool, outcome: Planned) {
        let (run_id, account_id, outcome) = (self.run_id, self.account_id, outcome.as_str());
        for (user, action) in changes {
            let change = Change::Membership(user.clone(), *action);
            let (impact, impact_summary) = self.impact_of(&change).unzip();
            info!(run_id, account_id, user = %user, action = action.as_str(), dry_run, outcome, impact, impact_summary, "membership change");
        }
    }

    /// The audit lines that could not be written, as the report lists them.
    pub fn take_audit_errors(&self) -> Vec<String> {
        std::mem::take(&mut *lock(&self.audit_errors))
    }

    fn write(&self, change: &Change, step: Step, error: Option<&str>) -> Result<(), AuditError> {
        let Some(audit) = self.audit else {
            return Ok(());
        };
        let (user, action) = (change.subject(), change.action_name());
        let impact = self.impact_of(change).map(|(_, summary)| summary);
        let entry = audit::Entry {
            time: Timestamp::now(),
            run_id: self.run_id,
            account_id: self.account_id,
            group: self.group,
            user,
            action,
            outcome: step,
            reason: change_reason(change),
            error,
            impact: impact.as_deref(),
        };
        audit.record(&entry).inspect_err(|e| {
            error!(account_id = self.account_id, user, action, error = %e, "audit record lost");
            lock(&self.audit_errors).push(format!("{action} {user}: {e}"));
        })
    }
}

impl Journal for Recorder<'_> {
    fn before(&self, change: &Change) -> Result<(), AuditError> {
        if self.audit.is_none() {
            // Without an audit log the log is the trail (in Lambda, CloudWatch Logs): the intent
            // goes first there, so that a process killed mid-request leaves its change seen.
            let (run_id, account_id) = (self.run_id, self.account_id);
            match change {
                Change::Membership(user, action) => {
                    info!(run_id, account_id, user = %user, action = action.as_str(), outcome = "intent", "membership change intent");
                }
                Change::DeleteDevice(serial) => {
                    info!(run_id, account_id, serial = %serial, outcome = "intent", "MFA device deletion intent");
                }
            }
        }
        // No change is made that the audit log could not show.
        self.write(change, Step::Intent, None)
    }

    fn after(&self, outcome: &Outcome) {
        let (run_id, account_id) = (self.run_id, self.account_id);
        let change = &outcome.change;
        let result = outcome.result.as_str();
        let reason = outcome.result.reason();
        let (impact, impact_summary) = self.impact_of(change).unzip();
        match (&outcome.result, change) {
            (ChangeResult::Done, Change::Membership(user, action)) => {
                info!(run_id, account_id, user = %user, action = action.as_str(), dry_run = false, outcome = result, impact, impact_summary, "membership change");
            }
            (ChangeResult::Done, Change::DeleteDevice(serial)) => {
                info!(run_id, account_id, serial = %serial, dry_run = false, outcome = result, "MFA device deletion");
            }
            (ChangeResult::NotSent(NotSent::Superseded(why)), Change::Membership(user, action)) => {
                info!(run_id, account_id, user = %user, action = action.as_str(), dry_run = false, outcome = result, reason = why, "membership change left out");
            }
            (_, Change::Membership(user, action)) => {
                let reason = reason.as_deref().unwrap_or_default();
                warn!(run_id, account_id, user = %user, action = action.as_str(), dry_run = false, outcome = result, reason, impact, impact_summary, "membership change");
            }
            (_, Change::DeleteDevice(serial)) => {
                let reason = reason.as_deref().unwrap_or_default();
                warn!(run_id, account_id, serial = %serial, dry_run = false, outcome = result, reason, "MFA device deletion");
            }
        }
        if let Some(step) = audit_step(&outcome.result) {
            let _ = self.write(change, step, reason.as_deref());
        }
    }
}

/// The audit line that records a change's outcome: none for a change never sent (its intent
/// was not written, or it was never started).
fn audit_step(result: &ChangeResult) -> Option<Step> {
    match result {
        ChangeResult::Done => Some(Step::Done),
        ChangeResult::Unknown(_) => Some(Step::Unknown),
        ChangeResult::Refused(_) => Some(Step::Failed),
        ChangeResult::NotSent(_) => None,
    }
}

/// Why a change is made, as the audit log says it.
fn change_reason(change: &Change) -> &'static str {
    match change {
        Change::Membership(_, Action::Add) => "no MFA device",
        Change::Membership(_, Action::Remove) => "has an MFA device",
        Change::DeleteDevice(_) => "unassigned for at least cleanup.unassigned_min_age",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reconcile::apply::NotSent;
    use crate::reconcile::stop::StopReason;
    use crate::user_name::UserName;

    fn lines(path: &std::path::Path) -> Vec<serde_json::Value> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn add(user: &str) -> Change {
        Change::Membership(UserName::from_iam(user), Action::Add)
    }

    #[test]
    fn each_sent_change_has_its_intent_and_its_outcome() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let log = AuditLog::open(&path).unwrap();
        let recorder = Recorder::new(Some(&log), "run", "111111111111", "ForceMFA");
        for (user, result) in [
            ("done", ChangeResult::Done),
            ("refused", ChangeResult::Refused("AccessDenied".into())),
            ("unknown", ChangeResult::Unknown("timeout".into())),
        ] {
            let change = add(user);
            recorder.before(&change).unwrap();
            recorder.after(&Outcome { change, result });
        }
        let outcomes: Vec<(String, String)> = lines(&path)
            .iter()
            .map(|l| {
                (
                    l["user"].as_str().unwrap().into(),
                    l["outcome"].as_str().unwrap().into(),
                )
            })
            .collect();
        let expected = [
            ("done", "intent"),
            ("done", "done"),
            ("refused", "intent"),
            ("refused", "failed"),
            ("unknown", "intent"),
            ("unknown", "unknown"),
        ];
        let expected: Vec<(String, String)> = expected
            .iter()
            .map(|(u, o)| (u.to_string(), o.to_string()))
            .collect();
        assert_eq!(outcomes, expected);
        assert!(recorder.take_audit_errors().is_empty());
    }

    #[test]
    fn a_change_never_sent_leaves_no_outcome_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let log = AuditLog::open(&path).unwrap();
        let recorder = Recorder::new(Some(&log), "run", "111111111111", "ForceMFA");
        recorder.after(&Outcome {
            change: add("stopped"),
            result: ChangeResult::NotSent(NotSent::Stopped(StopReason::ShuttingDown)),
        });
        assert!(lines(&path).is_empty());
    }

    #[test]
    fn without_an_audit_log_nothing_is_written_and_nothing_vetoed() {
        let recorder = Recorder::new(None, "run", "111111111111", "ForceMFA");
        assert!(recorder.before(&add("a")).is_ok());
        assert!(recorder.take_audit_errors().is_empty());
    }
}
