//! Reconciling named users only: the users an IAM event concerns, or those given to
//! `reconcile --user`. Each is read on its own (at most four IAM calls) and decided by the same
//! plan as in a full run; the account's gate is held throughout, so that no full run applies an
//! older decision over this one.

use std::collections::HashSet;
use std::time::Instant;

use futures::stream::{self, StreamExt};
use tracing::info;

use super::inventory::{self, AccountError, UserRead};
use super::plan::{Decision, UserName};
use super::report::AccountReport;
use super::{settle, Account, RunContext};

/// Reads, plans and applies the users `names` of one account.
pub(super) async fn reconcile_users(
    ctx: &RunContext<'_>,
    account: &Account<'_>,
    report: &mut AccountReport,
    names: &[String],
) -> Result<(), AccountError> {
    let (config, halt) = (ctx.config, account.halt);
    let gate = ctx.gates.of(account.id());
    let _writing = halt
        .token
        .run_until_cancelled(gate.enter())
        .await
        .ok_or_else(|| AccountError::Stopped(halt.reason()))?;
    let read_at = Instant::now();

    let mut asked = HashSet::new();
    let names: Vec<&String> = names
        .iter()
        .filter(|n| asked.insert(n.to_ascii_lowercase()))
        .collect();
    let reads = stream::iter(names.into_iter().cloned())
        .map(|name: String| async move {
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
    let reads = halt
        .token
        .run_until_cancelled(reads)
        .await
        .ok_or_else(|| AccountError::Stopped(halt.reason()))?;

    let mut users = Vec::new();
    let mut found = HashSet::new();
    for (name, read) in reads {
        match read {
            UserRead::Missing => {
                info!(account_id = account.id(), user = %name, "no such user");
                report.users_not_found.push(name);
            }
            // Two names asked for may be one user's, spelt differently.
            UserRead::Found(facts) => {
                if found.insert(facts.name.0.to_ascii_lowercase()) {
                    users.push(facts);
                }
            }
        }
    }
    let plan = settle(ctx, account, report, &users, None).await;
    // A decision carried out here is newer than any a full run under way read. A user skipped,
    // or whose change was not made, leaves the full run's decision standing.
    let keep = config.run_timeout + config.run_timeout;
    let made = |user: &UserName| {
        report.applied && (report.added.contains(&user.0) || report.removed.contains(&user.0))
    };
    for (user, decision) in &plan.decisions {
        let carried_out = match decision {
            Decision::Skip(_) => false,
            Decision::Add | Decision::Remove => made(user),
            _ => true,
        };
        if carried_out {
            gate.mark(&user.0, read_at, keep);
        }
    }
    Ok(())
}
