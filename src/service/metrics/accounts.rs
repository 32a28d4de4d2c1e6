//! The metrics of runs, of each account's state, and of the requests sent to AWS.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::reconcile::report::{AccountOutcome, AccountReport, RunReport, RunResult};

use super::labels::{
    AccountErrorLabels, AccountLabel, ApiLabels, ChangeLabels, FloatGauge, ResultLabel,
    UserStateLabels,
};

/// How runs end and when.
#[derive(Default)]
pub(super) struct RunMetrics {
    pub(super) runs: Family<ResultLabel, Counter>,
    pub(super) last_run_duration: FloatGauge,
    pub(super) last_run_time: FloatGauge,
    pub(super) last_success_time: FloatGauge,
    pub(super) dry_run: Gauge,
}

impl RunMetrics {
    pub(super) fn register(&self, registry: &mut Registry) {
        registry.register(
            "runs",
            "Reconciliation runs by result: success, incomplete (a user or account not handled), guard_tripped",
            self.runs.clone(),
        );
        registry.register(
            "last_run_duration_seconds",
            "Duration of the last run",
            self.last_run_duration.clone(),
        );
        registry.register(
            "last_run_timestamp_seconds",
            "Unix time at which the last run finished",
            self.last_run_time.clone(),
        );
        registry.register(
            "last_success_timestamp_seconds",
            "Unix time at which the last run with result success finished",
            self.last_success_time.clone(),
        );
        registry.register(
            "dry_run",
            "1 when the last run was a dry run: it changed nothing, whatever its result",
            self.dry_run.clone(),
        );
    }

    pub(super) fn record(&self, report: &RunReport, duration_secs: f64, finished_unix: f64) {
        let result = report.result();
        self.runs
            .get_or_create(&ResultLabel {
                result: result.as_str(),
            })
            .inc();
        self.last_run_duration.set(duration_secs);
        self.last_run_time.set(finished_unix);
        self.dry_run.set(i64::from(report.dry_run));
        if result == RunResult::Success {
            self.last_success_time.set(finished_unix);
        }
    }
}

/// What each account looked like at its last run, and what was changed in it.
#[derive(Default)]
pub(super) struct AccountMetrics {
    pub(super) users: Family<UserStateLabels, Gauge>,
    pub(super) users_pending: Family<AccountLabel, Gauge>,
    pub(super) users_held: Family<AccountLabel, Gauge>,
    pub(super) changes: Family<ChangeLabels, Counter>,
    pub(super) planned_changes: Family<AccountLabel, Gauge>,
    pub(super) account_errors: Family<AccountErrorLabels, Counter>,
    pub(super) audit_errors: Family<AccountLabel, Counter>,
    pub(super) group_policy_enforces_mfa: Family<AccountLabel, Gauge>,
    pub(super) root_mfa_enabled: Family<AccountLabel, Gauge>,
    pub(super) unassigned_devices: Family<AccountLabel, Gauge>,
    pub(super) deleted_devices: Family<AccountLabel, Counter>,
}

impl AccountMetrics {
    pub(super) fn register(&self, registry: &mut Registry) {
        registry.register(
            "users",
            "Users by MFA state in the last run: compliant (MFA), non_compliant (no MFA), exempt, skipped (state unknown)",
            self.users.clone(),
        );
        registry.register(
            "users_pending",
            "Users without MFA not added yet in the last run: their [rollout] deadline has not come",
            self.users_pending.clone(),
        );
        registry.register(
            "users_held",
            "Users without MFA held out of the group in the last run: their access keys are in use",
            self.users_held.clone(),
        );
        registry.register(
            "changes",
            "Group membership changes made, by action (add, remove); dry runs change nothing",
            self.changes.clone(),
        );
        registry.register(
            "planned_changes",
            "Changes the last run planned (made, or not made in a dry run or by the guard)",
            self.planned_changes.clone(),
        );
        registry.register(
            "account_errors",
            "Runs in which an account could not be reconciled, by kind of failure",
            self.account_errors.clone(),
        );
        registry.register(
            "audit_errors",
            "Audit log lines that could not be written (a change whose intent line fails is not made)",
            self.audit_errors.clone(),
        );
        registry.register(
            "group_policy_enforces_mfa",
            "1 when a policy of the enforcement group denies access without MFA, 0 when none does (the group protects nothing)",
            self.group_policy_enforces_mfa.clone(),
        );
        registry.register(
            "root_mfa_enabled",
            "1 when the account's root user has MFA, 0 when it has not",
            self.root_mfa_enabled.clone(),
        );
        registry.register(
            "unassigned_mfa_devices",
            "Virtual MFA devices that belong to nobody (abandoned set-ups) in the last run",
            self.unassigned_devices.clone(),
        );
        registry.register(
            "deleted_mfa_devices",
            "Abandoned virtual MFA devices deleted",
            self.deleted_devices.clone(),
        );
    }

    pub(super) fn record(&self, account: &str, a: &AccountReport) {
        let label = AccountLabel {
            account: account.to_string(),
        };
        self.record_changes(account, a);
        self.planned_changes
            .get_or_create(&label)
            .set(a.planned_changes as i64);
        if let Some(enforces) = a.group_policy_enforces_mfa {
            self.group_policy_enforces_mfa
                .get_or_create(&label)
                .set(i64::from(enforces));
        }
        if let Some(enabled) = a.root_mfa_enabled {
            self.root_mfa_enabled
                .get_or_create(&label)
                .set(i64::from(enabled));
        }
        // A failed read leaves the last known counts rather than zeros that would look compliant.
        if a.was_read() {
            self.unassigned_devices
                .get_or_create(&label)
                .set(a.unassigned_mfa_devices.len() as i64);
            self.users_pending
                .get_or_create(&label)
                .set(a.pending.len() as i64);
            self.users_held
                .get_or_create(&label)
                .set(a.held.len() as i64);
            for (state, n) in [
                ("compliant", a.users_with_mfa),
                ("non_compliant", a.users_without_mfa),
                ("exempt", a.exempt.len() as u64),
                ("skipped", a.skipped.len() as u64),
            ] {
                self.users
                    .get_or_create(&UserStateLabels {
                        account: account.to_string(),
                        state,
                    })
                    .set(n as i64);
            }
        }
    }
}

impl AccountMetrics {
    /// What any reconciliation of the account did: its failure, lost audit lines, changes made.
    pub(super) fn record_changes(&self, account: &str, a: &AccountReport) {
        let label = AccountLabel {
            account: account.to_string(),
        };
        if let AccountOutcome::Failed { kind } = a.outcome() {
            self.account_errors
                .get_or_create(&AccountErrorLabels {
                    account: account.to_string(),
                    kind,
                })
                .inc();
        }
        if !a.audit_errors.is_empty() {
            self.audit_errors
                .get_or_create(&label)
                .inc_by(a.audit_errors.len() as u64);
        }
        if a.applied {
            for (action, n) in [("add", a.added.len()), ("remove", a.removed.len())] {
                self.changes
                    .get_or_create(&ChangeLabels {
                        account: account.to_string(),
                        action,
                    })
                    .inc_by(n as u64);
            }
            self.deleted_devices
                .get_or_create(&label)
                .inc_by(a.deleted_mfa_devices.len() as u64);
        }
    }
}

/// The requests sent to AWS, by account and operation.
#[derive(Default)]
pub(super) struct ApiMetrics {
    pub(super) api_calls: Family<ApiLabels, Counter>,
    pub(super) api_errors: Family<ApiLabels, Counter>,
}

impl ApiMetrics {
    pub(super) fn register(&self, registry: &mut Registry) {
        registry.register(
            "api_calls",
            "Requests sent to AWS by operation, retries included",
            self.api_calls.clone(),
        );
        registry.register(
            "api_errors",
            "Requests to AWS that failed (throttled, refused, timed out), by operation",
            self.api_errors.clone(),
        );
    }

    pub(super) fn record(&self, account: &str, a: &AccountReport) {
        for (counts, family) in [
            (&a.api_calls, &self.api_calls),
            (&a.api_errors, &self.api_errors),
        ] {
            for (op, n) in counts {
                let labels = ApiLabels {
                    account: account.to_string(),
                    operation: op.clone(),
                };
                family.get_or_create(&labels).inc_by(*n);
            }
        }
    }
}
