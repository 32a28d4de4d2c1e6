//! Planning the users read and carrying the plan out: the step a full run and a run for named
//! users share. In a dry run, or when the plan trips the guard, the plan is only reported.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use tracing::warn;

use super::apply::{self, Change, ChangeResult, Journal, NotSent, Writer};
use super::context::{Account, RunContext, RunOptions};
use super::failure::AccountError;
use super::inventory::named::{cheaper_in_bulk, read_named_in};
use super::inventory::UserRead;
use super::plan::{Action, Decision, MfaState, Plan, UserFacts};
use super::recorder::Planned;
use super::report::{AccountReport, FailedChange, Skipped};
use super::rollout;
use crate::user_name::UserName;

/// How the users to plan were read, which says how their changes are made.
#[derive(Debug, Clone, Copy)]
pub struct Read {
    /// When the reads began: a change on a read older than [`apply::FRESH_FOR`] is checked
    /// against a read of its user just before it is made.
    pub started: Instant,
    /// Whether the caller holds the account's gate since before the reads (a run for named
    /// users). A full run reads without it: it then waits for the gate and leaves out the users an
    /// event-driven reconciliation has decided on since.
    pub gated: bool,
}

/// Plans `users` and applies the plan (or, in a dry run or past the guard, reports it).
pub async fn plan_and_apply(
    ctx: &RunContext<'_>,
    account: &Account<'_>,
    report: &mut AccountReport,
    users: &[UserFacts],
    read: Read,
) -> Plan {
    let options = ctx.options;
    let mut plan = Plan::build(users, account.rules);
    if plan.exceeds(options.max_changes) {
        guard_tripped(report, &plan, users, account, options);
        return plan;
    }
    // Under the account's gate since the read (named users), removals go first: they need no
    // impact read, so they are made while the read is fresh, and no one waits on others' adds.
    let removals: Vec<(UserName, Action)> = match read.gated && !options.dry_run {
        true => plan
            .changes()
            .into_iter()
            .filter(|(_, a)| *a == Action::Remove)
            .collect(),
        false => Vec::new(),
    };
    let removed_first = !removals.is_empty();
    let mut unfinished = 0;
    if removed_first {
        unfinished = apply_changes(ctx, account, report, removals, read.started).await;
    }
    if let Err(e) = rollout::assess(ctx, account, &mut plan, users, report).await {
        report_plan(report, &plan, users, account.id());
        match removed_first {
            true => adds_not_made(report, &plan, account, unfinished),
            false => report.fail(&e),
        }
        return plan;
    }
    report_plan(report, &plan, users, account.id());
    if ctx.config.notify.email_from.is_some() {
        report.contacts = contacts(&plan, users, &ctx.config.notify.email_tag);
    }
    let mut changes = plan.changes();
    if removed_first {
        changes.retain(|(_, action)| *action != Action::Remove);
    }
    if options.dry_run {
        account.recorder.planned(&changes, true, Planned::Planned);
        report.list_planned(&changes);
        return plan;
    }
    let gate = ctx.gates.of(account.id());
    let (_writing, changes) = if read.gated {
        (None, changes)
    } else {
        let Some(guard) = account.stop.token.run_until_cancelled(gate.enter()).await else {
            report.fail(&AccountError::StoppedBeforeChanges(account.stop.reason()));
            return plan;
        };
        let newer = gate.reconciled_since(read.started);
        let (changes, dropped) = without_newer(changes, &newer);
        record_left_out(account, report, dropped);
        (Some(guard), changes)
    };
    unfinished += apply_changes(ctx, account, report, changes, read.started).await;
    if unfinished > 0 {
        report.fail(&AccountError::StoppedPartway {
            unfinished,
            reason: account.stop.reason(),
        });
    }
    plan
}

/// The plan has more changes than `max_changes`: it is reported and logged, and none is made.
fn guard_tripped(
    report: &mut AccountReport,
    plan: &Plan,
    users: &[UserFacts],
    account: &Account<'_>,
    options: RunOptions,
) {
    report_plan(report, plan, users, account.id());
    rollout::record_pending(plan, report);
    let max = options.max_changes.unwrap_or_default();
    let error = AccountError::GuardTripped {
        planned: plan.change_count(),
        max,
    };
    warn!(account_id = %account.id(), planned = plan.change_count(), max_changes = max, "guard tripped: {error}");
    report.fail(&error);
    let changes = plan.changes();
    account
        .recorder
        .planned(&changes, options.dry_run, Planned::Blocked);
    report.list_planned(&changes);
}

/// A stop during the impact reads after the removals were made: the adds are listed as not made.
fn adds_not_made(
    report: &mut AccountReport,
    plan: &Plan,
    account: &Account<'_>,
    unfinished: usize,
) {
    let not_made = NotSent::Stopped(account.stop.reason()).to_string();
    let adds: Vec<&UserName> = plan.adds().collect();
    for user in &adds {
        report.failed.push(FailedChange {
            user: user.to_string(),
            action: Action::Add.as_str(),
            reason: not_made.clone(),
        });
    }
    report.fail(&AccountError::StoppedPartway {
        unfinished: unfinished + adds.len(),
        reason: account.stop.reason(),
    });
}

/// Fills in what the plan found: counts, exempt, out of scope and skipped users.
fn report_plan(report: &mut AccountReport, plan: &Plan, users: &[UserFacts], account_id: &str) {
    let count = |state: MfaState| users.iter().filter(|u| u.mfa == state).count() as u64;
    report.users_scanned = users.len() as u64;
    report.users_with_mfa = count(MfaState::Present);
    report.users_without_mfa = count(MfaState::Absent);
    report.exempt = plan.exempt().cloned().collect();
    report.out_of_scope = plan.out_of_scope().cloned().collect();
    report.skipped = plan
        .skipped()
        .map(|(user, reason)| {
            warn!(account_id = %account_id, user = %user, reason, "user skipped");
            Skipped {
                user: user.clone(),
                reason: reason.to_string(),
            }
        })
        .collect();
    report.planned_changes = plan.change_count();
}

/// The addresses (in the tag `tag`) of the users a message may concern: those added, removed,
/// pending or held.
fn contacts(plan: &Plan, users: &[UserFacts], tag: &str) -> HashMap<UserName, String> {
    let concerned: HashSet<&UserName> = plan
        .decisions
        .iter()
        .filter(|(_, d)| {
            matches!(
                d,
                Decision::Add | Decision::Remove | Decision::Pending { .. } | Decision::Held
            )
        })
        .map(|(u, _)| u)
        .collect();
    users
        .iter()
        .filter(|u| concerned.contains(&u.name))
        .filter_map(|u| {
            let address = u.tags.get(tag)?.trim();
            address
                .contains('@')
                .then(|| (u.name.clone(), address.to_string()))
        })
        .collect()
}

/// Why a full run leaves out the change of a user an event-driven reconciliation decided on after
/// the run read it.
const DECIDED_SINCE: &str =
    "an event-driven reconciliation decided on this user after this run read it";

/// The changes left once those of users an event-driven reconciliation decided on after this
/// run read them are dropped, and those dropped, as superseded: their newer decision stands.
fn without_newer(
    mut changes: Vec<(UserName, Action)>,
    newer: &HashSet<UserName>,
) -> (Vec<(UserName, Action)>, Vec<apply::Outcome>) {
    let mut dropped = Vec::new();
    changes.retain(|(user, action)| {
        let keep = !newer.contains(user);
        if !keep {
            let why = NotSent::Superseded(DECIDED_SINCE);
            dropped.push(left_out(user.clone(), *action, why));
        }
        keep
    });
    (changes, dropped)
}

/// Makes the membership changes and lists what became of each; returns how many were not made
/// because the run was stopped.
async fn apply_changes(
    ctx: &RunContext<'_>,
    account: &Account<'_>,
    report: &mut AccountReport,
    changes: Vec<(UserName, Action)>,
    read_at: Instant,
) -> usize {
    let list_calls = ctx.gates.of(account.id()).list_calls();
    let console = ctx.config.console_users_only;
    if read_at.elapsed() < apply::FRESH_FOR || !recheck_in_bulk(console, changes.len(), list_calls)
    {
        return apply_read_at(ctx, account, report, changes, Some(read_at)).await;
    }
    // The users read again from the account's lists, then the changes that still stand made at
    // once on that read.
    let rechecked = match reread(ctx, account, &changes).await {
        Ok(rechecked) => rechecked,
        Err(unread) => {
            let why = match unread {
                AccountError::StoppedBeforeChanges(reason) => NotSent::Stopped(reason),
                other => NotSent::Unchecked(other.to_string()),
            };
            Rechecked {
                confirmed: Vec::new(),
                left_out: changes
                    .into_iter()
                    .map(|(user, action)| left_out(user, action, why.clone()))
                    .collect(),
                unlisted: Vec::new(),
            }
        }
    };
    let mut unfinished = record_left_out(account, report, rechecked.left_out);
    unfinished += apply_read_at(ctx, account, report, rechecked.confirmed, None).await;
    unfinished + apply_read_at(ctx, account, report, rechecked.unlisted, Some(read_at)).await
}

/// Logs and lists changes left out before they were sent (the journal saw no request for them);
/// returns how many were left out because the run was stopped.
fn record_left_out(
    account: &Account<'_>,
    report: &mut AccountReport,
    outcomes: Vec<apply::Outcome>,
) -> usize {
    for outcome in &outcomes {
        account.recorder.after(outcome);
    }
    report.record_outcomes(outcomes)
}

/// Whether the users of `changes` are read again from the account's lists rather than one by one:
/// the lists' pages (as many as the last bulk read took; see `targeted`) and at most one
/// ListMFADevices per user (and GetLoginProfile), against GetUser and ListMFADevices per user (and
/// GetLoginProfile).
fn recheck_in_bulk(console: bool, changes: usize, list_calls: Option<u32>) -> bool {
    let console = u64::from(console);
    list_calls.is_some_and(|pages| cheaper_in_bulk(changes, pages, 1 + console, 2 + console))
}

/// The changes after a bulk read of their users: those that still stand, those left out, and
/// those whose user the lists lack (checked one by one).
struct Rechecked {
    confirmed: Vec<(UserName, Action)>,
    left_out: Vec<apply::Outcome>,
    unlisted: Vec<(UserName, Action)>,
}

async fn reread(
    ctx: &RunContext<'_>,
    account: &Account<'_>,
    changes: &[(UserName, Action)],
) -> Result<Rechecked, AccountError> {
    let rules = account.rules;
    let names: Vec<UserName> = changes.iter().map(|(u, _)| u.clone()).collect();
    let read = read_named_in(ctx, account, &names)
        .await
        .ok_or_else(|| AccountError::StoppedBeforeChanges(account.stop.reason()))??;
    let mut facts: HashMap<UserName, UserFacts> = read
        .users
        .into_iter()
        .map(|u| (u.name.clone(), u))
        .collect();
    let mut rechecked = Rechecked {
        confirmed: Vec::new(),
        left_out: Vec::new(),
        unlisted: Vec::new(),
    };
    for (user, action) in changes.iter().cloned() {
        let Some(mut now) = facts.remove(&user) else {
            rechecked.unlisted.push((user, action));
            continue;
        };
        // The membership the change assumes, as a read one by one takes it.
        now.member = action == Action::Remove;
        match apply::still_called_for(action, UserRead::Found(now), rules) {
            None => rechecked.confirmed.push((user, action)),
            Some(why) => rechecked.left_out.push(left_out(user, action, why)),
        }
    }
    Ok(rechecked)
}

fn left_out(user: UserName, action: Action, why: NotSent) -> apply::Outcome {
    apply::Outcome {
        change: Change::Membership(user, action),
        result: ChangeResult::NotSent(why),
    }
}

/// Makes the changes, each checked first when `read_at` is older than [`apply::FRESH_FOR`] (none
/// when the caller has just checked them all).
async fn apply_read_at(
    ctx: &RunContext<'_>,
    account: &Account<'_>,
    report: &mut AccountReport,
    changes: Vec<(UserName, Action)>,
    read_at: Option<Instant>,
) -> usize {
    let config = ctx.config;
    let writer = Writer::new(account.clients, config);
    let writer = match read_at {
        Some(at) => writer.read_at(at, account.rules),
        None => writer,
    };
    let changes = changes
        .into_iter()
        .map(|(user, action)| Change::Membership(user, action))
        .collect();
    let outcomes = apply::apply(
        writer,
        changes,
        config.aws.max_concurrency,
        account.stop,
        account.recorder,
    )
    .await;
    let unfinished = report.record_outcomes(outcomes);
    report.applied = true;
    unfinished
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn many_changes_are_checked_from_the_lists_and_a_few_one_by_one() {
        // Two pages of lists: 2 + n against 2n.
        assert!(!recheck_in_bulk(false, 1, Some(2)));
        assert!(!recheck_in_bulk(false, 2, Some(2)));
        assert!(recheck_in_bulk(false, 3, Some(2)));
        assert!(recheck_in_bulk(true, 3, Some(2)));
        // No bulk read seen yet: one by one.
        assert!(!recheck_in_bulk(false, 1000, None));
    }

    #[test]
    fn changes_decided_since_by_an_event_are_left_out_whatever_the_case() {
        let user = |n: &str| UserName::from_iam(n);
        let changes = vec![(user("Alice"), Action::Add), (user("bob"), Action::Remove)];
        let newer = HashSet::from([user("alice")]);
        let mut report = AccountReport::default();
        let (kept, dropped) = without_newer(changes, &newer);
        assert_eq!(kept, vec![(user("bob"), Action::Remove)]);
        report.record_outcomes(dropped);
        assert_eq!(report.superseded.len(), 1);
        assert_eq!(
            (
                report.superseded[0].user.as_str(),
                report.superseded[0].action
            ),
            ("Alice", "add")
        );
    }
}
