//! The run report: one JSON object for machines (`--output json`), a short summary for people.
//! Field names are an interface; new fields may be added, existing ones are never renamed.
//! `docs/report.schema.json` describes the JSON, and changes with it.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use serde::Serialize;

use super::apply::{Change, ChangeResult, NotSent, Outcome};
use super::failure::AccountError;
use super::impact::{Impact, KeyUse};
use super::notification::Notification;
use super::plan::Action;
use crate::clock::Timestamp;
use crate::user_name::UserName;

/// Exit codes of a reconcile.
pub mod exit {
    pub const OK: u8 = 0;
    /// Finished, but some user or account could not be handled.
    pub const INCOMPLETE: u8 = 1;
    /// Bad usage or configuration; nothing touched.
    pub const USAGE: u8 = 2;
    /// The plan had more changes than `max_changes`; nothing changed.
    pub const GUARD: u8 = 3;
}

#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub run_id: String,
    pub dry_run: bool,
    pub started_at: Timestamp,
    pub finished_at: Timestamp,
    pub accounts: Vec<AccountReport>,
    /// Why no account was reconciled at all (the organization's accounts could not be listed).
    pub error: Option<String>,
    /// Requests to AWS Organizations, for account discovery.
    pub discovery_api_calls: BTreeMap<String, u64>,
    /// The users a run for named users covered (`reconcile --user`); `null` for a full run.
    pub users: Option<Vec<UserName>>,
    /// The messages `[notify]` sent after the run (or, in a dry run, would have sent): filled
    /// in by the notifier, to which the run's caller hands the report.
    pub notifications: Vec<Notification>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skipped {
    pub user: UserName,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PendingUser {
    pub user: UserName,
    /// From when the user is added, unless it enrols MFA first.
    pub deadline: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HeldUser {
    pub user: UserName,
    /// The active keys used within `rollout.keys_in_use_within`.
    pub keys: Vec<KeyUse>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FailedChange {
    /// The user; for a device deletion (`delete_mfa_device`), the device's serial number.
    pub user: String,
    pub action: &'static str,
    pub reason: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct AccountReport {
    /// `null` only when the credentials' account could not be determined.
    pub account_id: Option<String>,
    /// The account's `name` from the configuration.
    pub name: Option<String>,
    pub group: String,
    pub users_scanned: u64,
    /// Users put into the group; in a dry run or when the guard tripped, those that would be.
    pub added: Vec<UserName>,
    /// Users taken out of the group; in a dry run or when the guard tripped, those that would be.
    pub removed: Vec<UserName>,
    /// What adding each user without MFA takes away: one entry per user about to be added (or
    /// held), read before any is added. Empty when there is nothing to add, or the guard tripped.
    pub impact: Vec<Impact>,
    /// Users without MFA not added yet: their deadline (`[rollout]`) has not come.
    pub pending: Vec<PendingUser>,
    /// Users without MFA held out of the group because their access keys are in use
    /// (`rollout.hold_keys_in_use`), with those keys.
    pub held: Vec<HeldUser>,
    /// The email addresses (`notify.email_tag`) of the users added, removed, pending or held.
    #[serde(skip)]
    pub contacts: HashMap<UserName, String>,
    pub exempt: Vec<UserName>,
    /// In a run for named users, the names no user of the account has.
    pub users_not_found: Vec<UserName>,
    /// Users left as they are because a fact their decision needs could not be read.
    pub skipped: Vec<Skipped>,
    /// Why the account could not be reconciled (or why nothing was changed in it); set with
    /// `error_kind` by [`AccountReport::fail`] only.
    pub error: Option<String>,
    /// True when `added` and `removed` were carried out, false for a dry run, a tripped guard or
    /// an account error.
    pub applied: bool,
    pub guard_tripped: bool,
    pub max_changes: Option<u64>,
    /// Changes in the plan (adds plus removes).
    pub planned_changes: u64,
    /// Planned changes not made: IAM refused them, a read after an answer that never came shows
    /// them not made, or they were not sent (see `reason`). These users are not in
    /// `added`/`removed`.
    pub failed: Vec<FailedChange>,
    /// Changes sent that IAM never answered no to and that a read afterwards does not show (or
    /// could not read): IAM may or may not have made them. The next run settles them from IAM's
    /// state. A device deletion is listed with `action` `delete_mfa_device` and its serial number.
    pub unknown: Vec<FailedChange>,
    /// Planned changes left out because a newer read of the user no longer calls for them: the
    /// read just before the change, or an event-driven reconciliation of the user after this
    /// run's read. `reason` says which.
    pub superseded: Vec<FailedChange>,
    /// Users without MFA and without a console password, left out by `console_users_only`.
    pub out_of_scope: Vec<UserName>,
    /// The IAM user forcemfa runs as, when it is one; never added to the group.
    pub own_user: Option<UserName>,
    pub users_with_mfa: u64,
    pub users_without_mfa: u64,
    /// Whether a policy of the group denies access without MFA; `null` when it could not be
    /// read. When false, enforcement into the group protects nothing.
    pub group_policy_enforces_mfa: Option<bool>,
    /// Whether the account's root user has MFA; `null` when it could not be read.
    pub root_mfa_enabled: Option<bool>,
    /// Virtual MFA devices that belong to nobody (abandoned set-ups), by serial number.
    pub unassigned_mfa_devices: Vec<String>,
    /// Abandoned devices deleted (`[cleanup] unassigned_mfa_devices`); when `applied` is false,
    /// those that would be.
    pub deleted_mfa_devices: Vec<String>,
    /// Things an operator should look at that did not stop the run.
    pub warnings: Vec<String>,
    /// Changes made that could not be written to `audit_log`.
    pub audit_errors: Vec<String>,
    /// Requests sent to AWS by operation, retries included.
    pub api_calls: BTreeMap<String, u64>,
    /// Attempts that failed (throttled, refused, timed out), by operation.
    pub api_errors: BTreeMap<String, u64>,
    /// IAM calls a second the account's pacing held at the end of the run: the rate IAM was found
    /// to allow, or `aws.max_requests_per_second` when it did not throttle.
    pub iam_requests_per_second: f64,
    pub duration_seconds: f64,
    /// Why the account failed, as a metric label (`account_mismatch`, `throttled`, `stopped`,
    /// ...): [`AccountError::metric_label`], set with `error` by [`AccountReport::fail`].
    pub error_kind: Option<&'static str>,
}

/// How one account's reconciliation ended, as the exit code and the metrics see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountOutcome {
    /// Read and planned; its changes applied, or listed in a dry run. Users may still have been
    /// skipped or changes refused.
    Reconciled,
    /// The plan had more changes than `max_changes`: nothing was changed.
    GuardTripped,
    /// Not (wholly) reconciled; the label says why.
    Failed { kind: &'static str },
}

impl AccountReport {
    /// Records why the account could not be (wholly) reconciled: the message in `error`, its
    /// label in `error_kind`.
    pub fn fail(&mut self, error: &AccountError) {
        self.guard_tripped |= matches!(error, AccountError::GuardTripped { .. });
        self.error = Some(error.to_string());
        self.error_kind = Some(error.metric_label());
    }

    pub fn outcome(&self) -> AccountOutcome {
        if self.guard_tripped {
            return AccountOutcome::GuardTripped;
        }
        match self.error_kind {
            Some(kind) => AccountOutcome::Failed { kind },
            None => AccountOutcome::Reconciled,
        }
    }

    /// Whether every fact of the account was read (the guard may still have stopped changes).
    pub fn was_read(&self) -> bool {
        !matches!(self.outcome(), AccountOutcome::Failed { .. })
    }

    /// The account needs attention: an error, a user skipped, or a change refused.
    fn incomplete(&self) -> bool {
        self.problems() > 0
    }

    /// How many things need attention: the account's error, each user skipped, each change
    /// failed or of unknown outcome, each audit record not written.
    pub fn problems(&self) -> u64 {
        (usize::from(self.error.is_some())
            + self.skipped.len()
            + self.failed.len()
            + self.unknown.len()
            + self.audit_errors.len()) as u64
    }
}

/// How a run ended, in one word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunResult {
    Success,
    /// Some user or account could not be handled.
    Incomplete,
    /// The plan had more changes than `max_changes`.
    GuardTripped,
}

impl RunResult {
    pub fn as_str(self) -> &'static str {
        match self {
            RunResult::Success => "success",
            RunResult::Incomplete => "incomplete",
            RunResult::GuardTripped => "guard_tripped",
        }
    }
}

impl RunReport {
    pub fn result(&self) -> RunResult {
        if self
            .accounts
            .iter()
            .any(|a| a.outcome() == AccountOutcome::GuardTripped)
        {
            RunResult::GuardTripped
        } else if self.error.is_some() || self.accounts.iter().any(AccountReport::incomplete) {
            RunResult::Incomplete
        } else {
            RunResult::Success
        }
    }

    pub fn exit_code(&self) -> u8 {
        match self.result() {
            RunResult::Success => exit::OK,
            RunResult::Incomplete => exit::INCOMPLETE,
            RunResult::GuardTripped => exit::GUARD,
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| {
            serde_json::json!({ "error": format!("cannot serialize the report: {e}") }).to_string()
        })
    }

    /// A readable summary.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let mode = if self.dry_run {
            " (dry run: nothing changed)"
        } else {
            ""
        };
        let _ = writeln!(out, "forcemfa reconcile{mode}  run {}", self.run_id);
        if let Some(error) = &self.error {
            let _ = writeln!(out, "error: {error}");
        }
        for a in &self.accounts {
            a.write_text(&mut out);
        }
        for n in &self.notifications {
            let about = n
                .user
                .as_ref()
                .map(|u| format!(" to {u}"))
                .unwrap_or_default();
            let error = n
                .error
                .as_deref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "notification {} {}{about} ({}): {}{error}",
                n.channel, n.kind, n.account_id, n.outcome
            );
        }
        out
    }
}

impl AccountReport {
    /// Lists a change under `added` or `removed`.
    fn push_change(&mut self, action: Action, user: &UserName) {
        match action {
            Action::Add => self.added.push(user.clone()),
            Action::Remove => self.removed.push(user.clone()),
        }
    }

    /// Lists changes that were not carried out (a dry run, or the guard); the recorder has
    /// logged them.
    pub fn list_planned(&mut self, changes: &[(UserName, Action)]) {
        for (user, action) in changes {
            self.push_change(*action, user);
        }
    }

    /// Lists each change made under `added` or `removed`, each failed one under `failed`, and
    /// each whose outcome is not known under `unknown`; the journal has already logged and
    /// audited them. Returns how many were not sent because the run was stopped.
    pub fn record_outcomes(&mut self, outcomes: Vec<Outcome>) -> usize {
        let stopped = outcomes
            .iter()
            .filter(|o| matches!(o.result, ChangeResult::NotSent(NotSent::Stopped(_))))
            .count();
        for outcome in outcomes {
            let Change::Membership(user, action) = outcome.change else {
                continue;
            };
            let listed = |reason: String| FailedChange {
                user: user.to_string(),
                action: action.as_str(),
                reason,
            };
            match &outcome.result {
                ChangeResult::Done => self.push_change(action, &user),
                ChangeResult::Unknown(reason) => self.unknown.push(listed(reason.clone())),
                ChangeResult::NotSent(NotSent::Superseded(reason)) => {
                    self.superseded.push(listed((*reason).to_string()));
                }
                other => self.failed.push(listed(other.reason().unwrap_or_default())),
            }
        }
        // Sorted as spelt, as people read them.
        for list in [&mut self.added, &mut self.removed] {
            list.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        }
        for list in [&mut self.failed, &mut self.unknown, &mut self.superseded] {
            list.sort_by(|a, b| a.user.cmp(&b.user));
        }
        stopped
    }
}

impl AccountReport {
    /// The account's part of the readable summary.
    fn write_text(&self, out: &mut String) {
        let account = match (&self.account_id, &self.name) {
            (Some(id), Some(name)) => format!("{id} ({name})"),
            (Some(id), None) => id.clone(),
            (None, _) => "(unknown account)".to_string(),
        };
        let _ = writeln!(
            out,
            "account {account}  group {}  users {}  with MFA {}  without MFA {}",
            self.group, self.users_scanned, self.users_with_mfa, self.users_without_mfa
        );
        let (add_verb, remove_verb) = if self.applied {
            ("added", "removed")
        } else {
            ("would add", "would remove")
        };
        list(out, add_verb, &self.added);
        list(out, remove_verb, &self.removed);
        self.write_rollout(out);
        list(out, "exempt", &self.exempt);
        list(
            out,
            "out of scope (no console password)",
            &self.out_of_scope,
        );
        if let Some(own) = &self.own_user {
            let _ = writeln!(out, "  own identity: {own} (never added)");
        }
        for s in &self.skipped {
            let _ = writeln!(out, "  skipped {}: {}", s.user, s.reason);
        }
        for f in &self.failed {
            let _ = writeln!(out, "  failed to {} {}: {}", f.action, f.user, f.reason);
        }
        for u in &self.unknown {
            let _ = writeln!(
                out,
                "  unknown whether IAM made the {} of {} (the next run settles it): {}",
                u.action, u.user, u.reason
            );
        }
        for s in &self.superseded {
            let _ = writeln!(
                out,
                "  left out the {} of {}: {}",
                s.action, s.user, s.reason
            );
        }
        list(out, "unassigned MFA devices", &self.unassigned_mfa_devices);
        let deleted = if self.applied {
            "deleted MFA devices"
        } else {
            "would delete MFA devices"
        };
        list(out, deleted, &self.deleted_mfa_devices);
        for e in &self.audit_errors {
            let _ = writeln!(out, "  audit log error: {e}");
        }
        for w in &self.warnings {
            let _ = writeln!(out, "  warning: {w}");
        }
        if let Some(error) = &self.error {
            let _ = writeln!(out, "  error: {error}");
        }
        let unchanged = self.added.is_empty() && self.removed.is_empty();
        if unchanged && !self.incomplete() && self.outcome() == AccountOutcome::Reconciled {
            let _ = writeln!(out, "  nothing to change");
        }
    }
}

impl AccountReport {
    /// What each add takes away, who is pending and until when, and who is held.
    fn write_rollout(&self, out: &mut String) {
        for i in &self.impact {
            let _ = writeln!(out, "  impact: {}", i.summary);
        }
        for p in &self.pending {
            let _ = writeln!(out, "  pending until {}: {}", p.deadline, p.user);
        }
        for h in &self.held {
            let keys: Vec<String> = h.keys.iter().map(|k| format!("…{}", k.key)).collect();
            let _ = writeln!(out, "  held (keys in use: {}): {}", keys.join(", "), h.user);
        }
    }
}

fn list<T: AsRef<str>>(out: &mut String, label: &str, names: &[T]) {
    if !names.is_empty() {
        let names: Vec<&str> = names.iter().map(AsRef::as_ref).collect();
        let _ = writeln!(out, "  {label} ({}): {}", names.len(), names.join(", "));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(accounts: Vec<AccountReport>) -> RunReport {
        RunReport {
            run_id: "r".into(),
            dry_run: false,
            started_at: Timestamp::now(),
            finished_at: Timestamp::now(),
            accounts,
            error: None,
            discovery_api_calls: BTreeMap::new(),
            users: None,
            notifications: Vec::new(),
        }
    }

    #[test]
    fn exit_codes() {
        assert_eq!(report(vec![AccountReport::default()]).exit_code(), exit::OK);
        let skipped = AccountReport {
            skipped: vec![Skipped {
                user: UserName::from_iam("a"),
                reason: "x".into(),
            }],
            ..AccountReport::default()
        };
        assert_eq!(report(vec![skipped.clone()]).exit_code(), exit::INCOMPLETE);
        let errored = AccountReport {
            error: Some("x".into()),
            ..AccountReport::default()
        };
        assert_eq!(report(vec![errored]).exit_code(), exit::INCOMPLETE);
        let guarded = AccountReport {
            guard_tripped: true,
            error: Some("guard".into()),
            ..AccountReport::default()
        };
        assert_eq!(report(vec![skipped, guarded]).exit_code(), exit::GUARD);
    }

    #[test]
    fn json_has_the_documented_fields() {
        let v: serde_json::Value =
            serde_json::from_str(&report(vec![AccountReport::default()]).to_json()).unwrap();
        for key in ["run_id", "dry_run", "started_at", "finished_at", "accounts"] {
            assert!(v.get(key).is_some(), "{key}");
        }
        let a = &v["accounts"][0];
        for key in [
            "account_id",
            "group",
            "users_scanned",
            "added",
            "removed",
            "exempt",
            "skipped",
            "error",
        ] {
            assert!(a.get(key).is_some(), "{key}");
        }
    }
}
