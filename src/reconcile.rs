//! One reconciliation: read, plan, guard, apply (unless dry-run), report.

use std::sync::Mutex;
use std::time::Instant;

use futures::stream::{self, StreamExt};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn, Instrument};

use crate::accounts::{ClientPool, Target};
use crate::apply::{self, Outcome};
use crate::audit::{self, AuditLog};
use crate::aws::AccountClients;
use crate::cleanup::Sightings;
use crate::config::Config;
use crate::inventory::{self, AccountError, GroupPolicyCheck};
use crate::plan::{self, Action, MfaState, Plan, Rules};
use crate::report::{AccountReport, FailedChange, RunReport, Skipped};
use crate::sync::lock;

/// What a single run is asked to do, after the command line has overridden the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunOptions {
    pub dry_run: bool,
    pub max_changes: Option<u64>,
}

impl RunOptions {
    pub fn from_config(config: &Config) -> RunOptions {
        RunOptions {
            dry_run: config.dry_run,
            max_changes: config.max_changes,
        }
    }
}

fn now_rfc3339() -> String {
    OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .unwrap_or_else(|_| OffsetDateTime::now_utc().unix_timestamp().to_string())
}

/// Everything a run needs besides the clients.
pub struct RunContext<'a> {
    pub config: &'a Config,
    pub options: RunOptions,
    /// Once cancelled, no new read or change starts; changes already sent are let finish.
    pub stop: &'a CancellationToken,
    /// First sightings of abandoned MFA devices, kept across runs.
    pub sightings: &'a Mutex<Sightings>,
    /// Where every change made is recorded (`audit_log`).
    pub audit: Option<&'a AuditLog>,
}

/// Reconciles every account the configuration covers, a few at a time, and reports.
pub async fn run(ctx: &RunContext<'_>, pool: &ClientPool) -> RunReport {
    let run_id = uuid::Uuid::new_v4().to_string();
    // Every event of the run carries its id; the span is attached to the future, not entered,
    // so that it never leaks onto other tasks sharing the thread.
    let span = tracing::info_span!("run", run_id = %run_id, dry_run = ctx.options.dry_run);
    run_in_span(ctx, pool, run_id).instrument(span).await
}

async fn run_in_span(ctx: &RunContext<'_>, pool: &ClientPool, run_id: String) -> RunReport {
    let started_at = now_rfc3339();
    let started = Instant::now();
    info!(group = %ctx.config.group, "run started");

    pool.discovery_calls.take();
    let (accounts, error) = match pool.targets(ctx.config).await {
        Ok(targets) => {
            let run_id = run_id.as_str();
            let mut accounts: Vec<AccountReport> = stream::iter(targets)
                .map(|target| async move {
                    let clients = pool.clients(&target).await;
                    let span = tracing::info_span!(
                        "account",
                        account_id = target.account_id().unwrap_or("own"),
                    );
                    reconcile_account(ctx, run_id, &clients, &target)
                        .instrument(span)
                        .await
                })
                .buffer_unordered(ctx.config.aws.max_accounts_in_parallel)
                .collect()
                .await;
            accounts.sort_by(|a, b| a.account_id.cmp(&b.account_id));
            (accounts, None)
        }
        Err(e) => {
            warn!(error = %e, "cannot list the organization's accounts; no account reconciled");
            (Vec::new(), Some(e))
        }
    };

    let report = RunReport {
        run_id,
        dry_run: ctx.options.dry_run,
        started_at,
        finished_at: now_rfc3339(),
        accounts,
        error,
        discovery_api_calls: pool.discovery_calls.take().calls,
    };
    let sum = |f: fn(&AccountReport) -> usize| report.accounts.iter().map(f).sum::<usize>();
    info!(
        accounts = report.accounts.len(),
        users = report.accounts.iter().map(|a| a.users_scanned).sum::<u64>(),
        added = sum(|a| a.added.len()),
        removed = sum(|a| a.removed.len()),
        exempt = sum(|a| a.exempt.len()),
        skipped = sum(|a| a.skipped.len()),
        failed = sum(|a| a.failed.len()),
        account_errors = sum(|a| usize::from(a.error.is_some())),
        duration_ms = started.elapsed().as_millis() as u64,
        result = report.result().as_str(),
        exit_code = report.exit_code(),
        "run finished"
    );
    report
}

async fn reconcile_account(
    ctx: &RunContext<'_>,
    run_id: &str,
    clients: &AccountClients,
    target: &Target,
) -> AccountReport {
    let started = Instant::now();
    clients.calls.take();
    let mut report = AccountReport {
        account_id: target.account_id().map(str::to_string),
        name: target.name().map(str::to_string),
        group: ctx.config.group.clone(),
        max_changes: ctx.options.max_changes,
        ..AccountReport::default()
    };
    if let Err(e) = reconcile_into(ctx, run_id, clients, &mut report).await {
        warn!(
            account_id = report.account_id.as_deref().unwrap_or(""),
            error_kind = e.kind(),
            error = %e,
            "account not reconciled"
        );
        report.error = Some(e.to_string());
    }
    let counts = clients.calls.take();
    report.api_calls = counts.calls;
    report.api_errors = counts.errors;
    report.duration_seconds = started.elapsed().as_secs_f64();
    report
}

async fn reconcile_into(
    ctx: &RunContext<'_>,
    run_id: &str,
    clients: &AccountClients,
    report: &mut AccountReport,
) -> Result<(), AccountError> {
    let (config, options, stop) = (ctx.config, ctx.options, ctx.stop);
    let identity = stop
        .run_until_cancelled(inventory::caller_identity(clients))
        .await
        .ok_or(AccountError::Stopped)??;
    let account_id = identity.account_id.clone();
    report.account_id = Some(account_id.clone());
    report.own_user = identity.user.as_ref().map(|u| u.0.clone());

    let rules = Rules {
        exempt: config.exempt.clone(),
        console_users_only: config.console_users_only,
        own_user: identity.user.clone(),
    };
    // Reads change nothing: on shutdown they are abandoned at once.
    let facts = stop
        .run_until_cancelled(inventory::read_account(
            clients,
            identity,
            &config.group,
            &rules,
            config.aws.page_size,
            config.aws.max_concurrency,
        ))
        .await
        .ok_or(AccountError::Stopped)??;

    record_account_checks(report, &facts, &config.group, &account_id);
    lock(ctx.sightings).observe(&account_id, &facts.unassigned_devices, unix_now());

    let plan = Plan::build(&facts.users, &rules);
    for name in plan::unmatched_exempt_users(&config.exempt, &facts.users) {
        let w = format!("exempt.users lists `{name}`, which matches no user of this account");
        warn!(account_id = %account_id, user = name, "{w}");
        report.warnings.push(w);
    }
    report.users_scanned = facts.users.len() as u64;
    report.users_with_mfa = count_mfa(&facts.users, &MfaState::Present);
    report.users_without_mfa = count_mfa(&facts.users, &MfaState::Absent);
    report.exempt = names(plan.exempt());
    report.out_of_scope = names(plan.out_of_scope());
    report.skipped = plan
        .skipped()
        .map(|(user, reason)| {
            warn!(account_id = %account_id, user = %user, reason, "user skipped");
            Skipped {
                user: user.0.clone(),
                reason: reason.to_string(),
            }
        })
        .collect();
    report.planned_changes = plan.change_count();

    let changes = plan.changes();
    if plan.exceeds(options.max_changes) {
        let max = options.max_changes.unwrap_or_default();
        let message = format!(
            "the plan has {} changes, more than max_changes = {max}: no change made (raise max_changes or pass --max-changes to proceed)",
            plan.change_count()
        );
        warn!(account_id = %account_id, planned = plan.change_count(), max_changes = max, "guard tripped: {message}");
        report.guard_tripped = true;
        report.error = Some(message);
        record_planned(report, &changes, &account_id, options.dry_run, "blocked");
        return Ok(());
    }

    let recorder = Recorder {
        audit: ctx.audit,
        run_id,
        account_id: &account_id,
        group: &config.group,
    };
    if options.dry_run {
        record_planned(report, &changes, &account_id, true, "planned");
    } else {
        let outcomes = apply::apply(
            clients,
            &config.group,
            changes,
            config.aws.max_concurrency,
            stop,
        )
        .await;
        record_outcomes(report, outcomes, &recorder);
        report.applied = true;
    }
    if config.cleanup.unassigned_mfa_devices {
        clean_up_devices(ctx, clients, report, &recorder).await;
    }
    Ok(())
}

/// Writes each change made to the audit log, if there is one; a failed write is an error in
/// the account's report.
struct Recorder<'a> {
    audit: Option<&'a AuditLog>,
    run_id: &'a str,
    account_id: &'a str,
    group: &'a str,
}

impl Recorder<'_> {
    fn record(&self, report: &mut AccountReport, user: &str, action: &str, reason: &str) {
        let Some(audit) = self.audit else {
            return;
        };
        let entry = audit::Entry {
            time: now_rfc3339(),
            run_id: self.run_id,
            account_id: self.account_id,
            group: self.group,
            user,
            action,
            reason,
        };
        if let Err(e) = audit.record(&entry) {
            error!(account_id = self.account_id, user, action, error = %e, "audit record lost");
            report.audit_errors.push(format!("{action} {user}: {e}"));
        }
    }
}

/// Records what the account's checks found: the group's policy, the root user's MFA, abandoned
/// devices. None of them stops the run; each is a warning an operator should act on.
fn record_account_checks(
    report: &mut AccountReport,
    facts: &inventory::AccountFacts,
    group: &str,
    account_id: &str,
) {
    report.group_policy_enforces_mfa = match &facts.group_policy {
        GroupPolicyCheck::Enforces => Some(true),
        GroupPolicyCheck::DoesNotEnforce => {
            let w = format!(
                "group {group} has no policy that denies access without MFA: putting users into it protects nothing (see `forcemfa bootstrap`)"
            );
            warn!(account_id, group, "{w}");
            report.warnings.push(w);
            Some(false)
        }
        GroupPolicyCheck::Unknown(reason) => {
            let w =
                format!("cannot tell whether group {group} denies access without MFA: {reason}");
            warn!(account_id, group, "{w}");
            report.warnings.push(w);
            None
        }
    };
    report.root_mfa_enabled = match &facts.root_mfa {
        Ok(enabled) => {
            if !enabled {
                let w = "the account's root user has no MFA device".to_string();
                warn!(account_id, "{w}");
                report.warnings.push(w);
            }
            Some(*enabled)
        }
        Err(reason) => {
            let w = format!("cannot tell whether the root user has MFA: {reason}");
            warn!(account_id, "{w}");
            report.warnings.push(w);
            None
        }
    };
    report.unassigned_mfa_devices = facts.unassigned_devices.clone();
    if !facts.unassigned_devices.is_empty() {
        info!(
            account_id,
            count = facts.unassigned_devices.len(),
            "unassigned virtual MFA devices"
        );
    }
}

/// Deletes the abandoned devices seen unassigned for long enough (or, in a dry run, lists them).
async fn clean_up_devices(
    ctx: &RunContext<'_>,
    clients: &AccountClients,
    report: &mut AccountReport,
    recorder: &Recorder<'_>,
) {
    let account_id = recorder.account_id;
    let min_age = ctx.config.cleanup.unassigned_min_age;
    let due = lock(ctx.sightings).due(account_id, unix_now(), min_age);
    if ctx.options.dry_run {
        for serial in &due {
            info!(account_id, serial = %serial, dry_run = true, outcome = "planned", "MFA device deletion");
        }
        report.deleted_mfa_devices = due;
        return;
    }
    let outcomes =
        apply::delete_devices(clients, due, ctx.config.aws.max_concurrency, ctx.stop).await;
    for (serial, result) in outcomes {
        match result {
            Ok(()) => {
                info!(account_id, serial = %serial, dry_run = false, outcome = "done", "MFA device deletion");
                lock(ctx.sightings).forget(&serial);
                recorder.record(
                    report,
                    &serial,
                    "delete_mfa_device",
                    "unassigned for at least cleanup.unassigned_min_age",
                );
                report.deleted_mfa_devices.push(serial);
            }
            Err(reason) => {
                warn!(account_id, serial = %serial, dry_run = false, outcome = "failed", reason = %reason, "MFA device deletion");
                report
                    .warnings
                    .push(format!("cannot delete MFA device {serial}: {reason}"));
            }
        }
    }
    report.deleted_mfa_devices.sort();
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

fn count_mfa(users: &[crate::plan::UserFacts], state: &MfaState) -> u64 {
    users.iter().filter(|u| u.mfa == *state).count() as u64
}

fn names<'a>(users: impl Iterator<Item = &'a crate::plan::UserName>) -> Vec<String> {
    users.map(|u| u.0.clone()).collect()
}

/// Lists a change under `added` or `removed`.
fn push_change(report: &mut AccountReport, action: Action, user: String) {
    match action {
        Action::Add => report.added.push(user),
        Action::Remove => report.removed.push(user),
    }
}

/// Records changes that were not carried out (dry run, or the guard).
fn record_planned(
    report: &mut AccountReport,
    changes: &[(crate::plan::UserName, Action)],
    account_id: &str,
    dry_run: bool,
    outcome: &str,
) {
    for (user, action) in changes {
        info!(account_id, user = %user, action = action.as_str(), dry_run, outcome, "membership change");
        push_change(report, *action, user.0.clone());
    }
}

fn record_outcomes(report: &mut AccountReport, outcomes: Vec<Outcome>, recorder: &Recorder<'_>) {
    let account_id = recorder.account_id;
    for o in outcomes {
        let action = o.action.as_str();
        match o.result {
            Ok(()) => {
                info!(account_id, user = %o.user, action, dry_run = false, outcome = "done", "membership change");
                let reason = match o.action {
                    Action::Add => "no MFA device",
                    Action::Remove => "has an MFA device",
                };
                recorder.record(report, &o.user.0, action, reason);
                push_change(report, o.action, o.user.0);
            }
            Err(reason) => {
                warn!(account_id, user = %o.user, action, dry_run = false, outcome = "failed", reason = %reason, "membership change");
                report.failed.push(FailedChange {
                    user: o.user.0,
                    action,
                    reason,
                });
            }
        }
    }
    report.added.sort();
    report.removed.sort();
}
