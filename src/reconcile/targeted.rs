//! Reconciling named users only: the users an IAM event concerns, or those given to
//! `reconcile --user`. Each is read on its own (at most four IAM calls) and decided by the same
//! plan as in a full run; the account's gate is held throughout, so that no full run applies an
//! older decision over this one.

use std::collections::HashSet;
use std::time::Instant;

use futures::stream::{self, StreamExt};
use tracing::info;

use crate::user_name::UserName;

use super::context::{Account, RunContext};
use super::enforce::plan_and_apply;
use super::failure::AccountError;
use super::inventory::{self, UserRead};
use super::plan::{Decision, UserFacts};
use super::report::AccountReport;

/// Reads, plans and applies the users `names` of one account.
pub async fn reconcile_users(
    ctx: &RunContext<'_>,
    account: &Account<'_>,
    report: &mut AccountReport,
    names: &[UserName],
) -> Result<(), AccountError> {
    let (config, stop) = (ctx.config, account.stop);
    let gate = ctx.gates.of(account.id());
    let _writing = stop
        .token
        .run_until_cancelled(gate.enter())
        .await
        .ok_or_else(|| AccountError::StoppedBeforeRead(stop.reason()))?;
    let read_at = Instant::now();
    let users = read_users(ctx, account, report, names).await?;
    let plan = plan_and_apply(ctx, account, report, &users, None).await;
    // A decision carried out here is newer than any a full run under way read. A user skipped,
    // or whose change was not made, leaves the full run's decision standing.
    let keep = config.run_timeout + config.run_timeout;
    let made = |user: &UserName| {
        report.applied
            && (report.added.iter().any(|a| user.is(a))
                || report.removed.iter().any(|r| user.is(r)))
    };
    for (user, decision) in &plan.decisions {
        let carried_out = match decision {
            Decision::Skip(_) => false,
            Decision::Add | Decision::Remove => made(user),
            _ => true,
        };
        if carried_out {
            gate.mark(user, read_at, keep);
        }
    }
    Ok(())
}

/// Reads each user named once, however often and however spelt; lists those that do not exist.
async fn read_users(
    ctx: &RunContext<'_>,
    account: &Account<'_>,
    report: &mut AccountReport,
    names: &[UserName],
) -> Result<Vec<UserFacts>, AccountError> {
    let (config, stop) = (ctx.config, account.stop);
    let mut asked = HashSet::new();
    let names: Vec<UserName> = names.iter().filter(|n| asked.insert(*n)).cloned().collect();
    let reads = stream::iter(names)
        .map(|name: UserName| async move {
            let read = inventory::read_user(
                account.clients,
                &name,
                &config.group,
                account.rules,
                config.aws.page_size,
            )
            .await;
            (name, read)
        })
        .buffered(config.aws.max_concurrency)
        .collect::<Vec<_>>();
    let reads = stop
        .token
        .run_until_cancelled(reads)
        .await
        .ok_or_else(|| AccountError::StoppedBeforeRead(stop.reason()))?;

    let mut users = Vec::new();
    let mut found = HashSet::new();
    for (name, read) in reads {
        match read {
            UserRead::Missing => {
                info!(account_id = account.id(), user = %name, "no such user");
                report.users_not_found.push(name.to_string());
            }
            // Two names asked for may be one user's, spelt differently.
            UserRead::Found(facts) => {
                if found.insert(facts.name.clone()) {
                    users.push(facts);
                }
            }
        }
    }
    Ok(users)
}
