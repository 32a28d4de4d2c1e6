//! One reconciliation: read, plan, guard, apply (unless dry-run), report.

use std::sync::Mutex;
use std::time::Instant;

use futures::stream::{self, StreamExt};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn, Instrument};

use crate::accounts::{ClientPool, Target};
use crate::apply::{self, Outcome};
use crate::aws::AccountClients;
use crate::cleanup::Sightings;
use crate::config::Config;
use crate::inventory::{self, AccountError, GroupPolicyCheck};
use crate::plan::{Action, MfaState, Plan, Rules};
use crate::report::{AccountReport, FailedChange, RunReport, Skipped};

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

/// Reconciles every account the configuration covers, a few at a time, and reports. Once `stop`
/// is cancelled, no new read or change starts; changes already sent are let finish.
pub async fn run(
    config: &Config,
    pool: &ClientPool,
    options: RunOptions,
    stop: &CancellationToken,
    sightings: &Mutex<Sightings>,
) -> RunReport {
    let run_id = uuid::Uuid::new_v4().to_string();
    // Every event of the run carries its id; the span is attached to the future, not entered,
    // so that it never leaks onto other tasks sharing the thread.
    let span = tracing::info_span!("run", run_id = %run_id, dry_run = options.dry_run);
    run_in_span(config, pool, options, stop, sightings, run_id)
        .instrument(span)
        .await
}

async fn run_in_span(
    config: &Config,
    pool: &ClientPool,
    options: RunOptions,
    stop: &CancellationToken,
    sightings: &Mutex<Sightings>,
    run_id: String,
) -> RunReport {
    let started_at = now_rfc3339();
    let started = Instant::now();
    info!(group = %config.group, "run started");

    pool.discovery_calls.take();
    let (accounts, error) = match pool.targets(config).await {
        Ok(targets) => {
            let mut accounts: Vec<AccountReport> = stream::iter(targets)
                .map(|target| async move {
                    let clients = pool.clients(&target).await;
                    let span = tracing::info_span!(
                        "account",
                        account_id = target.account_id().unwrap_or("own"),
                    );
                    reconcile_account(config, &clients, &target, options, stop, sightings)
                        .instrument(span)
                        .await
                })
                .buffer_unordered(config.aws.max_accounts_in_parallel)
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
        dry_run: options.dry_run,
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
    config: &Config,
    clients: &AccountClients,
    target: &Target,
    options: RunOptions,
    stop: &CancellationToken,
    sightings: &Mutex<Sightings>,
) -> AccountReport {
    let started = Instant::now();
    clients.calls.take();
    let mut report = AccountReport {
        account_id: target.account_id().map(str::to_string),
        name: target.name().map(str::to_string),
        group: config.group.clone(),
        max_changes: options.max_changes,
        ..AccountReport::default()
    };
    if let Err(e) = reconcile_into(config, clients, options, stop, sightings, &mut report).await {
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
    config: &Config,
    clients: &AccountClients,
    options: RunOptions,
    stop: &CancellationToken,
    sightings: &Mutex<Sightings>,
    report: &mut AccountReport,
) -> Result<(), AccountError> {
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
    lock(sightings).observe(&account_id, &facts.unassigned_devices, unix_now());

    let plan = Plan::build(&facts.users, &rules);
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
        record_outcomes(report, outcomes, &account_id);
        report.applied = true;
    }
    if config.cleanup.unassigned_mfa_devices {
        clean_up_devices(
            config,
            clients,
            options,
            stop,
            sightings,
            report,
            &account_id,
        )
        .await;
    }
    Ok(())
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
    config: &Config,
    clients: &AccountClients,
    options: RunOptions,
    stop: &CancellationToken,
    sightings: &Mutex<Sightings>,
    report: &mut AccountReport,
    account_id: &str,
) {
    let due = lock(sightings).due(account_id, unix_now(), config.cleanup.unassigned_min_age);
    if options.dry_run {
        for serial in &due {
            info!(account_id, serial = %serial, dry_run = true, outcome = "planned", "MFA device deletion");
        }
        report.deleted_mfa_devices = due;
        return;
    }
    for (serial, result) in
        apply::delete_devices(clients, due, config.aws.max_concurrency, stop).await
    {
        match result {
            Ok(()) => {
                info!(account_id, serial = %serial, dry_run = false, outcome = "done", "MFA device deletion");
                lock(sightings).forget(&serial);
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

fn lock(sightings: &Mutex<Sightings>) -> std::sync::MutexGuard<'_, Sightings> {
    sightings.lock().unwrap_or_else(|p| p.into_inner())
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
        match action {
            Action::Add => report.added.push(user.0.clone()),
            Action::Remove => report.removed.push(user.0.clone()),
        }
    }
}

fn record_outcomes(report: &mut AccountReport, outcomes: Vec<Outcome>, account_id: &str) {
    for o in outcomes {
        let action = o.action.as_str();
        match o.result {
            Ok(()) => {
                info!(account_id, user = %o.user, action, dry_run = false, outcome = "done", "membership change");
                match o.action {
                    Action::Add => report.added.push(o.user.0),
                    Action::Remove => report.removed.push(o.user.0),
                }
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
