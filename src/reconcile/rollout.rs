//! The rollout step between the plan and its changes: what each add takes away (read only for
//! the users about to be added), which users wait for their deadline, and which are held because
//! their access keys are in use.

use std::collections::{HashMap, HashSet};

use futures::stream::{self, StreamExt};
use tracing::warn;

use crate::user_name::UserName;

use super::context::{Account, RunContext};
use super::failure::AccountError;
use super::impact::{rfc3339, Impact, Verdict};
use super::inventory::access::read_access;
use super::plan::{ConsoleAccess, Plan, UserFacts};
use super::report::{AccountReport, HeldUser, PendingUser};

/// Reads the impact of every add of `plan`, holds the users `rollout.hold_keys_in_use` holds,
/// and lists pending and held users in the report.
pub async fn assess(
    ctx: &RunContext<'_>,
    account: &Account<'_>,
    plan: &mut Plan,
    users: &[UserFacts],
    report: &mut AccountReport,
) -> Result<(), AccountError> {
    let rollout = &ctx.config.rollout;
    let now = account.rules.deadlines.now;
    let within = i64::try_from(rollout.keys_in_use_within.as_secs()).unwrap_or(i64::MAX);
    let adds: Vec<UserName> = plan.adds().cloned().collect();
    let impacts = if adds.is_empty() {
        // A run with nothing to add makes no impact read.
        Vec::new()
    } else {
        // The console passwords the run read already (`console_users_only`).
        let known: HashMap<&UserName, bool> = users
            .iter()
            .filter_map(|u| match u.console {
                ConsoleAccess::Present => Some((&u.name, true)),
                ConsoleAccess::Absent => Some((&u.name, false)),
                _ => None,
            })
            .collect();
        let known = &known;
        let reads = stream::iter(adds)
            .map(|user| async move {
                let known = known.get(&user).copied();
                let access =
                    read_access(account.clients, &user, ctx.config.aws.page_size, known).await;
                Impact::judge(user.as_str(), access, now, within)
            })
            .buffered(ctx.config.aws.max_concurrency)
            .collect::<Vec<_>>();
        account
            .stop
            .token
            .run_until_cancelled(reads)
            .await
            .ok_or_else(|| AccountError::StoppedBeforeChanges(account.stop.reason()))?
    };
    if rollout.hold_keys_in_use {
        hold(plan, report, &impacts, now, within, account.id());
    }
    record_pending(plan, report);
    account.recorder.note_impacts(&impacts);
    report.impact = impacts;
    Ok(())
}

/// Lists the users pending a deadline (also when the guard trips: no read is needed for them).
pub fn record_pending(plan: &Plan, report: &mut AccountReport) {
    report.pending = plan
        .pending()
        .map(|(user, deadline)| PendingUser {
            user: user.to_string(),
            deadline: rfc3339(deadline),
            deadline_secs: deadline,
        })
        .collect();
}

/// Holds out the users whose keys are in use, and leaves as they are those whose impact could
/// not be read: they might be.
fn hold(
    plan: &mut Plan,
    report: &mut AccountReport,
    impacts: &[Impact],
    now: i64,
    within: i64,
    account_id: &str,
) {
    let of = |verdict: Verdict| -> HashSet<UserName> {
        impacts
            .iter()
            .filter(|i| i.verdict == verdict)
            .map(|i| UserName::from_iam(&i.user))
            .collect()
    };
    plan.hold(&of(Verdict::KeysInUse));
    for impact in impacts.iter().filter(|i| i.verdict == Verdict::Unknown) {
        let reason = format!(
            "rollout.hold_keys_in_use: cannot tell whether its keys are in use ({})",
            impact.error.as_deref().unwrap_or_default()
        );
        plan.skip(&UserName::from_iam(&impact.user), &reason);
    }
    for impact in impacts.iter().filter(|i| i.verdict == Verdict::KeysInUse) {
        let w = format!(
            "held out of the group, its access keys are in use: {}",
            impact.summary
        );
        warn!(account_id, user = %impact.user, "{w}");
        report.warnings.push(w);
        report.held.push(HeldUser {
            user: impact.user.clone(),
            keys: impact.keys_in_use(now, within),
        });
    }
}
