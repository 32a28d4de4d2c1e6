//! One account's reconciliation: whose the credentials are, then every user (or the users
//! named) read, planned and applied, and the account's abandoned MFA devices cleaned up.

use std::time::Instant;

use tracing::{info, warn};

use crate::aws::identity::{self, Identity};
use crate::aws::AccountClients;
use crate::clock::unix_now_secs;
use crate::config::RolloutSettings;
use crate::sync::lock;

use super::apply::{self, Change, ChangeResult, Writer};
use super::context::{Account, RunContext, Scope};
use super::enforce::{plan_and_apply, Read};
use super::failure::AccountError;
use super::inventory::{self, AccountFacts, GroupPolicyCheck};
use super::plan::{self, Deadlines, Rules};
use super::recorder::Recorder;
use super::report::{AccountReport, FailedChange};
use super::stop::Stop;
use super::targeted;
use super::targets::Target;

/// Reconciles the account of `target`; `expected` is the account it must be (see
/// [`reconcile_into`]), by default the one the target names.
pub async fn reconcile_account(
    ctx: &RunContext<'_>,
    run_id: &str,
    clients: &AccountClients,
    target: &Target,
    expected: Option<&str>,
    stop: &Stop<'_>,
) -> AccountReport {
    let started = Instant::now();
    let expected = expected
        .or(target.account_id())
        .or(ctx.config.account_id.as_deref());
    let mut report = AccountReport {
        account_id: expected.map(str::to_string),
        name: target.name().map(str::to_string),
        group: ctx.config.group.clone(),
        max_changes: ctx.options.max_changes,
        ..AccountReport::default()
    };
    if let Err(e) = reconcile_into(ctx, run_id, clients, target, expected, &mut report, stop).await
    {
        warn!(
            account_id = report.account_id.as_deref().unwrap_or(""),
            error_kind = e.metric_label(),
            error = %e,
            "account not reconciled"
        );
        report.fail(&e);
    }
    let counts = clients.calls.take();
    report.api_calls = counts.calls;
    report.api_errors = counts.errors;
    report.iam_requests_per_second = clients.pacer.rate();
    report.duration_seconds = started.elapsed().as_secs_f64();
    report
}

/// `expected` is the account the clients must act in, when it is known: a role's, the one the
/// configuration names for forcemfa's own credentials, the one an event came from.
async fn reconcile_into(
    ctx: &RunContext<'_>,
    run_id: &str,
    clients: &AccountClients,
    target: &Target,
    expected: Option<&str>,
    report: &mut AccountReport,
    stop: &Stop<'_>,
) -> Result<(), AccountError> {
    let config = ctx.config;
    let identity = checked_identity(clients, target, expected, stop).await?;
    let account_id = identity.account_id.clone();
    report.account_id = Some(account_id.clone());
    report.own_user = identity.user.clone();

    let rules = Rules {
        exempt: config.exempt.clone(),
        console_users_only: config.console_users_only,
        own_user: identity.user,
        deadlines: deadlines(&config.rollout),
    };
    let recorder = Recorder::new(ctx.audit, run_id, &account_id, &config.group);
    let account = Account {
        clients,
        recorder: &recorder,
        stop,
        rules: &rules,
    };
    let result = match ctx.scope {
        Scope::All => reconcile_all_users(ctx, &account, report).await,
        Scope::Users(names) => targeted::reconcile_users(ctx, &account, report, names).await,
    };
    report.audit_errors.extend(recorder.take_audit_errors());
    result
}

/// `[rollout]`'s deadlines, as of now.
fn deadlines(rollout: &RolloutSettings) -> Deadlines {
    Deadlines {
        now: unix_now_secs() as i64,
        enforce_from: rollout.enforce_from,
        grace_period: rollout.grace_period.map(|g| g.as_secs()),
    }
}

/// Whose the credentials are, when they are the account's meant (`expected`).
async fn checked_identity(
    clients: &AccountClients,
    target: &Target,
    expected: Option<&str>,
    stop: &Stop<'_>,
) -> Result<Identity, AccountError> {
    let identity = stop
        .token
        .run_until_cancelled(identity::caller_identity(clients))
        .await
        .ok_or_else(|| AccountError::StoppedBeforeRead(stop.reason()))?
        .map_err(AccountError::Identity)?;
    match expected {
        Some(expected) if *expected != identity.account_id => Err(AccountError::AccountMismatch {
            expected: expected.to_string(),
            actual: identity.account_id,
            credentials: match target {
                Target::Role(role) => format!("of role {}", role.role_arn),
                Target::Own => "forcemfa runs with".to_string(),
            },
        }),
        _ => Ok(identity),
    }
}

/// The full reconciliation of an account: every user read in bulk, then planned and applied.
async fn reconcile_all_users(
    ctx: &RunContext<'_>,
    account: &Account<'_>,
    report: &mut AccountReport,
) -> Result<(), AccountError> {
    let (config, stop, account_id) = (ctx.config, account.stop, account.id());
    let read_started = Instant::now();
    // Reads change nothing: on shutdown they are abandoned at once.
    let facts = stop
        .token
        .run_until_cancelled(inventory::read_account(
            account.clients,
            account_id,
            &config.group,
            account.rules,
            config.aws.page_size,
            config.aws.max_concurrency,
        ))
        .await
        .ok_or_else(|| AccountError::StoppedBeforeRead(stop.reason()))??;

    ctx.gates.of(account_id).note_list_calls(facts.list_calls);
    record_account_checks(report, &facts, &config.group, account_id);
    lock(ctx.sightings).observe(account_id, &facts.unassigned_devices, unix_now_secs());
    for name in plan::unmatched_exempt_users(&config.exempt, &facts.users) {
        let w = format!("exempt.users lists `{name}`, which matches no user of this account");
        warn!(account_id = %account_id, user = %name, "{w}");
        report.warnings.push(w);
    }
    let read = Read {
        started: read_started,
        gated: false,
    };
    plan_and_apply(ctx, account, report, &facts.users, read).await;
    if config.cleanup.unassigned_mfa_devices {
        clean_up_devices(ctx, account, report).await;
    }
    Ok(())
}

/// Records what the account's checks found: the group's policy, the root user's MFA, abandoned
/// devices. None of them stops the run; each is a warning an operator should act on.
fn record_account_checks(
    report: &mut AccountReport,
    facts: &AccountFacts,
    group: &str,
    account_id: &str,
) {
    let mut warn = |w: String| {
        warn!(account_id, group, "{w}");
        report.warnings.push(w);
    };
    let enforces = match &facts.group_policy {
        GroupPolicyCheck::Enforces => Some(true),
        GroupPolicyCheck::DoesNotEnforce => {
            warn(format!(
                "group {group} has no policy that denies access without MFA: putting users into it protects nothing (see `forcemfa bootstrap`)"
            ));
            Some(false)
        }
        GroupPolicyCheck::Unknown(reason) => {
            warn(format!(
                "cannot tell whether group {group} denies access without MFA: {reason}"
            ));
            None
        }
    };
    let root_mfa = match &facts.root_mfa {
        Ok(enabled) => {
            if !enabled {
                warn("the account's root user has no MFA device".to_string());
            }
            Some(*enabled)
        }
        Err(reason) => {
            warn(format!(
                "cannot tell whether the root user has MFA: {reason}"
            ));
            None
        }
    };
    report.group_policy_enforces_mfa = enforces;
    report.root_mfa_enabled = root_mfa;
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
async fn clean_up_devices(ctx: &RunContext<'_>, account: &Account<'_>, report: &mut AccountReport) {
    let account_id = account.id();
    let min_age = ctx.config.cleanup.unassigned_min_age;
    let due = lock(ctx.sightings).due(account_id, unix_now_secs(), min_age);
    if ctx.options.dry_run {
        for serial in &due {
            info!(account_id, serial = %serial, dry_run = true, outcome = "planned", "MFA device deletion");
        }
        report.deleted_mfa_devices = due;
        return;
    }
    let changes = due.into_iter().map(Change::DeleteDevice).collect();
    let outcomes = apply::apply(
        Writer::new(account.clients, ctx.config),
        changes,
        ctx.config.aws.max_concurrency,
        account.stop,
        account.recorder,
    )
    .await;
    for outcome in outcomes {
        let Change::DeleteDevice(serial) = outcome.change else {
            continue;
        };
        match outcome.result {
            ChangeResult::Done => {
                lock(ctx.sightings).forget(&serial);
                report.deleted_mfa_devices.push(serial);
            }
            ChangeResult::Unknown(reason) => report.unknown.push(FailedChange {
                user: serial,
                action: "delete_mfa_device",
                reason,
            }),
            other => report.warnings.push(format!(
                "cannot delete MFA device {serial}: {}",
                other.reason().unwrap_or_default()
            )),
        }
    }
    report.deleted_mfa_devices.sort();
}
