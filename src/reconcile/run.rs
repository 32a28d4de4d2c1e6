//! One run over every account the configuration covers: discovered, reconciled a few at a time,
//! reported together, within the run's deadline.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt};
use tracing::{error, info, warn, Instrument};

use crate::clock::Timestamp;
use crate::sync::lock;
use crate::user_name::UserName;

use super::account::reconcile_account;
use super::context::{RunContext, Scope};
use super::failure::AccountError;
use super::report::{AccountReport, RunReport};
use super::stop::Stop;
use super::targets::{ClientPool, DiscoveryError, Target};

/// After the deadline, beyond the calls' own timeout, how long accounts may take to finish.
const ABANDON_MARGIN: Duration = Duration::from_secs(5);

/// How long a run may go on past `run_timeout`: the changes already sent are given the time their
/// calls may take, and the read that settles one whose answer never came as long again.
pub fn time_past_deadline(config: &crate::config::Config) -> Duration {
    2 * Duration::from_secs(config.aws.operation_timeout_secs) + ABANDON_MARGIN
}

/// Reconciles every account the configuration covers, a few at a time, and reports.
pub async fn run(ctx: &RunContext<'_>, pool: &ClientPool) -> RunReport {
    let run_id = uuid::Uuid::new_v4().to_string();
    // Every event of the run carries its id; the span is attached to the future, not entered,
    // so that it never leaks onto other tasks sharing the thread.
    let span = match ctx.scope {
        Scope::All => tracing::info_span!("run", run_id = %run_id, dry_run = ctx.options.dry_run),
        Scope::Users(users) => tracing::info_span!(
            "run",
            run_id = %run_id,
            dry_run = ctx.options.dry_run,
            users = %first_names(users),
            user_count = users.len(),
        ),
    };
    run_in_span(ctx, pool, run_id).instrument(span).await
}

/// How many names a log line shows: every line of the run carries them.
const NAMES_SHOWN: usize = 10;

/// The first [`NAMES_SHOWN`] names, and how many more there are: a log line never carries a list
/// as long as the run's input.
fn first_names(users: &[UserName]) -> String {
    let mut text = users
        .iter()
        .take(NAMES_SHOWN)
        .map(UserName::as_str)
        .collect::<Vec<_>>()
        .join(",");
    if let Some(more) = users.len().checked_sub(NAMES_SHOWN).filter(|n| *n > 0) {
        text.push_str(&format!(" …and {more} more"));
    }
    text
}

/// The accounts as they started and finished, so that a run abandoned at its deadline still
/// reports each one.
#[derive(Default)]
struct Progress {
    started: Mutex<Vec<Target>>,
    finished: Mutex<Vec<(Target, AccountReport)>>,
}

async fn run_in_span(ctx: &RunContext<'_>, pool: &ClientPool, run_id: String) -> RunReport {
    let started_at = Timestamp::now();
    let started = Instant::now();
    info!(group = %ctx.config.group, "run started");
    let stop = Stop::new(ctx.shutdown, ctx.options.timeout);
    pool.discovery_calls.take();
    let progress = Progress::default();
    let error = within_deadline(
        ctx,
        all_accounts(ctx, pool, &run_id, &stop, &progress),
        &stop,
    )
    .await
    .map(|e| e.to_string());
    let finished = std::mem::take(&mut *lock(&progress.finished));
    let mut accounts: Vec<AccountReport> = Vec::new();
    for target in std::mem::take(&mut *lock(&progress.started)) {
        match finished.iter().find(|(t, _)| *t == target) {
            Some((_, report)) => accounts.push(report.clone()),
            None => accounts.push(abandoned(ctx, &target, &stop)),
        }
    }
    accounts.sort_by(|a, b| a.account_id.cmp(&b.account_id));

    let report = RunReport {
        run_id,
        dry_run: ctx.options.dry_run,
        started_at,
        finished_at: Timestamp::now(),
        accounts,
        error,
        discovery_api_calls: pool.discovery_calls.take().calls,
        users: match ctx.scope {
            Scope::All => None,
            Scope::Users(users) => Some(users.clone()),
        },
        notifications: Vec::new(),
    };
    log_finished(&report, started);
    report
}

/// Runs `work` until the run's deadline; past it, stops every new read and change and gives the
/// changes already sent the time their calls may take, and the read that settles one whose
/// answer never came.
async fn within_deadline<T>(
    ctx: &RunContext<'_>,
    work: impl std::future::Future<Output = Option<T>>,
    stop: &Stop<'_>,
) -> Option<T> {
    tokio::pin!(work);
    tokio::select! {
        result = &mut work => result,
        () = tokio::time::sleep(stop.timeout) => {
            stop.token.cancel();
            warn!(run_timeout_secs = stop.timeout.as_secs(), "run_timeout passed: no new read or change starts");
            match tokio::time::timeout(time_past_deadline(ctx.config), &mut work).await {
                Ok(result) => result,
                Err(_) => {
                    error!("accounts still at work after run_timeout; abandoned");
                    None
                }
            }
        }
    }
}

fn log_finished(report: &RunReport, started: Instant) {
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
}

/// Discovers the targets and reconciles each, a few at a time, into `progress`; returns the
/// discovery error, if any.
async fn all_accounts(
    ctx: &RunContext<'_>,
    pool: &ClientPool,
    run_id: &str,
    stop: &Stop<'_>,
    progress: &Progress,
) -> Option<DiscoveryError> {
    let targets = match stop
        .token
        .run_until_cancelled(pool.targets(ctx.config))
        .await
    {
        Some(Ok(targets)) => targets,
        Some(Err(e)) => {
            warn!(error = %e, "cannot list the organization's accounts; no account reconciled");
            return Some(e);
        }
        None => return Some(DiscoveryError::Stopped(stop.reason())),
    };
    stream::iter(targets)
        .for_each_concurrent(
            ctx.config.aws.max_accounts_in_parallel,
            |target| async move {
                lock(&progress.started).push(target.clone());
                let clients = pool.clients(&target).await;
                let span = tracing::info_span!(
                    "account",
                    account_id = target.account_id().unwrap_or("own"),
                );
                let report = reconcile_account(ctx, run_id, &clients, &target, None, stop)
                    .instrument(span)
                    .await;
                lock(&progress.finished).push((target, report));
            },
        )
        .await;
    None
}

/// The report of an account still at work when the run was abandoned.
fn abandoned(ctx: &RunContext<'_>, target: &Target, stop: &Stop<'_>) -> AccountReport {
    let error = AccountError::Abandoned(stop.reason());
    warn!(account_id = target.account_id().unwrap_or("own"), error = %error, "account not reconciled");
    let mut report = AccountReport {
        account_id: target.account_id().map(str::to_string),
        name: target.name().map(str::to_string),
        group: ctx.config.group.clone(),
        max_changes: ctx.options.max_changes,
        ..AccountReport::default()
    };
    report.fail(&error);
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_line_names_the_first_ten_users_and_counts_the_rest() {
        let users: Vec<UserName> = (0..1000)
            .map(|i| UserName::from_iam(&format!("u{i}")))
            .collect();
        assert_eq!(first_names(&users[..2]), "u0,u1");
        assert_eq!(first_names(&users[..10]), "u0,u1,u2,u3,u4,u5,u6,u7,u8,u9");
        assert_eq!(
            first_names(&users),
            "u0,u1,u2,u3,u4,u5,u6,u7,u8,u9 …and 990 more"
        );
    }
}
