//! Reconciling named users only: the users IAM events concern, or those given to
//! `reconcile --user`. They are decided by the same plan as in a full run; the account's gate is
//! held throughout, so that no full run of this process applies an older decision over this one.
//!
//! Each user is read on its own (GetUser, ListGroupsForUser, ListMFADevices, and GetLoginProfile
//! with `console_users_only`) unless reading them from the account's lists costs fewer calls:
//! the pages of users and virtual MFA devices (as many as the account's last bulk read took, or
//! [`UNKNOWN_LIST_CALLS`] before any), plus at most ListMFADevices (and GetLoginProfile) per user.

use std::collections::HashSet;
use std::time::Instant;

use futures::stream::{self, StreamExt};
use tracing::{info, warn};

use crate::user_name::UserName;

use super::context::{Account, RunContext};
use super::enforce::{plan_and_apply, Read};
use super::failure::AccountError;
use super::inventory::named::{cheaper_in_bulk, read_named_in};
use super::inventory::{self, unread_user, UserRead};
use super::plan::{Decision, UserFacts};
use super::report::AccountReport;

/// The most users one run for named users takes (`reconcile --user`, a direct invocation's
/// `users`). A run's deadline stops its calls, not the work that grows with the names it is given,
/// and a list past this is better served by a full run, which reads every user in a few pages.
pub const MAX_NAMED_USERS: usize = 1_000;

/// More users named than one run for named users takes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{count} users named, more than the {max} a run for named users takes; run in full (name no user) or in smaller runs",
    max = MAX_NAMED_USERS
)]
pub struct TooManyUsers {
    pub count: usize,
}

/// Refuses more than [`MAX_NAMED_USERS`] names, before any is read.
pub fn check_named(count: usize) -> Result<(), TooManyUsers> {
    if count > MAX_NAMED_USERS {
        return Err(TooManyUsers { count });
    }
    Ok(())
}

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
    let console = config.console_users_only;
    let users = if read_in_bulk(
        names.len(),
        console,
        gate.list_calls(),
        config.aws.page_size,
    ) {
        read_from_lists(ctx, account, report, names).await?
    } else {
        read_users(ctx, account, report, names).await?
    };
    let read = Read {
        started: read_at,
        gated: true,
    };
    let plan = plan_and_apply(ctx, account, report, &users, read).await;
    // A decision carried out here is newer than any a full run under way read. A user skipped,
    // or whose change was not made, leaves the full run's decision standing.
    let keep = config.run_timeout + config.run_timeout;
    let changed: HashSet<UserName> = report
        .added
        .iter()
        .chain(&report.removed)
        .cloned()
        .collect();
    let made = |user: &UserName| report.applied && changed.contains(user);
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

/// IAM's quota of users in one account, which no account can raise.
const MOST_USERS: u32 = 5_000;

/// The list pages a bulk read is taken to cost before one has been made: users and virtual MFA
/// devices (one each) at IAM's quota of users.
fn unknown_list_calls(page_size: i32) -> u32 {
    2 * MOST_USERS.div_ceil(u32::try_from(page_size.max(1)).unwrap_or(1))
}

/// Whether reading `named` users from the account's lists costs fewer calls than reading each on
/// its own. `list_calls` is what the account's last bulk read took in pages.
fn read_in_bulk(named: usize, console: bool, list_calls: Option<u32>, page_size: i32) -> bool {
    let console = u64::from(console);
    let pages = list_calls.unwrap_or_else(|| unknown_list_calls(page_size));
    cheaper_in_bulk(named, pages, 1 + console, 3 + console)
}

/// Reads the users named from the account's lists.
async fn read_from_lists(
    ctx: &RunContext<'_>,
    account: &Account<'_>,
    report: &mut AccountReport,
    names: &[UserName],
) -> Result<Vec<UserFacts>, AccountError> {
    let stop = account.stop;
    let read = read_named_in(ctx, account, names)
        .await
        .ok_or_else(|| AccountError::StoppedBeforeRead(stop.reason()))??;
    info!(
        account_id = account.id(),
        users = names.len(),
        list_calls = read.list_calls,
        "named users read from the account's lists"
    );
    let mut users = read.users;
    // A user just created may not be in the lists yet: a name they lack is asked for on its own,
    // up to a bound, so that names the account never had cost no more than reading it whole.
    let cap = missing_lookups(read.list_calls);
    let (look_up, unread) = read.missing.split_at(read.missing.len().min(cap));
    if !look_up.is_empty() {
        users.extend(read_users(ctx, account, report, look_up).await?);
    }
    if !unread.is_empty() {
        warn!(
            account_id = account.id(),
            looked_up = look_up.len(),
            not_looked_up = unread.len(),
            "names the account's lists lack, past the first {cap}, not looked up: skipped"
        );
        let reason = format!(
            "not in the account's lists, and not looked up on its own (iam:GetUser): only the first {cap} names the lists lack are"
        );
        users.extend(unread.iter().map(|name| unread_user(name, reason.clone())));
    }
    Ok(users)
}

/// The fewest names the account's lists lack that are still looked up one by one: users
/// created (or deleted) since the lists were read, as many as a batch of events can name, so
/// that a burst of them is handled at its first delivery rather than a few per redelivery
/// (which would end in the dead-letter queue).
const MISSING_LOOKUPS_FLOOR: usize = 200;

/// How many names the account's lists lack are looked up one by one (GetUser each): as many as
/// the pages the lists took, and at least [`MISSING_LOOKUPS_FLOOR`]. Past that, a name is left
/// unread and skipped, not guessed missing, so that an event naming it is retried.
fn missing_lookups(list_calls: u32) -> usize {
    usize::try_from(list_calls)
        .unwrap_or(usize::MAX)
        .max(MISSING_LOOKUPS_FLOOR)
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
                report.users_not_found.push(name.clone());
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lone_user_is_read_on_its_own_and_a_batch_from_the_lists_once_cheaper() {
        // 1,000 users and their devices: one page each.
        assert!(!read_in_bulk(1, false, Some(2), 1000));
        assert!(read_in_bulk(2, false, Some(2), 1000));
        // A large account's lists, 20 pages: 3n > 20 + n from 11 users on.
        assert!(!read_in_bulk(10, false, Some(20), 1000));
        assert!(read_in_bulk(11, false, Some(20), 1000));
        // With console_users_only: 4n against pages + 2n.
        assert!(!read_in_bulk(10, true, Some(20), 1000));
        assert!(read_in_bulk(11, true, Some(20), 1000));
    }

    #[test]
    fn a_run_takes_up_to_its_limit_of_named_users_and_refuses_more_naming_both() {
        assert_eq!(check_named(0), Ok(()));
        assert_eq!(check_named(MAX_NAMED_USERS), Ok(()));
        let error = check_named(200_000).unwrap_err().to_string();
        assert!(
            error.contains("200000 users") && error.contains("1000"),
            "{error}"
        );
    }

    #[test]
    fn names_the_lists_lack_are_looked_up_no_more_than_the_lists_cost() {
        assert_eq!(missing_lookups(2), MISSING_LOOKUPS_FLOOR);
        assert_eq!(missing_lookups(267), 267);
    }

    #[test]
    fn before_any_bulk_read_its_cost_is_taken_at_iams_quota_of_users() {
        assert_eq!(unknown_list_calls(1000), 10);
        assert_eq!(unknown_list_calls(100), 100);
        assert!(!read_in_bulk(5, false, None, 1000));
        assert!(read_in_bulk(6, false, None, 1000));
        assert!(!read_in_bulk(50, false, None, 100));
    }
}
