//! Reading the users a batch of events names from the account's lists, when that costs fewer
//! calls than reading each on its own (see `reconcile::targeted`): the pages of users and of
//! virtual MFA devices, then only the per-user calls the named users still need.

use std::collections::HashSet;

use crate::aws::AccountClients;
use crate::user_name::UserName;

use super::super::context::{Account, RunContext};
use super::super::failure::AccountError;
use super::super::plan::{Rules, UserFacts};
use super::devices::{virtual_devices, VirtualDevices};
use super::{complete, list_users_and_group, UsersAndGroup};

/// The named users as the account's lists show them.
#[derive(Debug)]
pub struct NamedRead {
    /// Each named user found, once however often or however spelt it was named.
    pub users: Vec<UserFacts>,
    /// The names the lists have no user of (a user created a moment ago may not be in them yet).
    pub missing: Vec<UserName>,
    /// The pages of users and virtual MFA devices read.
    pub list_calls: u32,
}

/// Whether `n` users cost fewer calls read from the account's lists (`pages`, then `in_bulk` calls
/// per user at most) than read one by one (`alone` calls per user).
pub fn cheaper_in_bulk(n: usize, pages: u32, in_bulk: u64, alone: u64) -> bool {
    let n = n as u64;
    u64::from(pages) + n * in_bulk < n * alone
}

/// Reads the users `names` of the account a run is reconciling from its lists, and notes in the
/// account's gate what the lists cost; `None` when the run is stopped first.
pub async fn read_named_in(
    ctx: &RunContext<'_>,
    account: &Account<'_>,
    names: &[UserName],
) -> Option<Result<NamedRead, AccountError>> {
    let config = ctx.config;
    let read = read_named(
        account.clients,
        account.id(),
        names,
        &config.group,
        account.rules,
        config.aws.page_size,
        config.aws.max_concurrency,
    );
    let read = account.stop.token.run_until_cancelled(read).await?;
    if let Ok(read) = &read {
        ctx.gates.of(account.id()).note_list_calls(read.list_calls);
    }
    Some(read)
}

/// Reads the users `names` from the account's lists.
async fn read_named(
    clients: &AccountClients,
    account_id: &str,
    names: &[UserName],
    group: &str,
    rules: &Rules,
    page_size: i32,
    concurrency: usize,
) -> Result<NamedRead, AccountError> {
    let (users_and_group, devices) = tokio::join!(
        list_users_and_group(clients, group, page_size),
        virtual_devices(clients, page_size),
    );
    let UsersAndGroup {
        users,
        group: group_detail,
        pages,
    } = users_and_group?;
    if group_detail.is_none() {
        return Err(AccountError::GroupMissing {
            group: group.to_string(),
            account_id: account_id.to_string(),
        });
    }
    let VirtualDevices {
        holders,
        pages: device_pages,
        ..
    } = devices?;
    let (mut named, missing) = pick(users, names);
    complete(clients, &mut named, &holders, rules, page_size, concurrency).await;
    Ok(NamedRead {
        users: named,
        missing,
        list_calls: pages + device_pages,
    })
}

/// The users listed that `names` names, and the names no user listed has, each once however
/// spelt and in the order given. IAM finds a user whatever the case of the name asked for, and
/// so does this; sets keyed by the folded name keep it linear in the names.
fn pick(listed: Vec<UserFacts>, names: &[UserName]) -> (Vec<UserFacts>, Vec<UserName>) {
    let wanted: HashSet<&UserName> = names.iter().collect();
    let named: Vec<UserFacts> = listed
        .into_iter()
        .filter(|u| wanted.contains(&u.name))
        .collect();
    let mut seen: HashSet<&UserName> = named.iter().map(|u| &u.name).collect();
    let missing = names
        .iter()
        .filter(|name| seen.insert(name))
        .cloned()
        .collect();
    (named, missing)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::reconcile::plan::{ConsoleAccess, MfaState};

    fn listed(name: &str) -> UserFacts {
        UserFacts {
            name: UserName::from_iam(name),
            path: "/".to_string(),
            tags: BTreeMap::new(),
            member: false,
            mfa: MfaState::NotChecked,
            console: ConsoleAccess::NotChecked,
            created: None,
        }
    }

    fn names(names: &[&str]) -> Vec<UserName> {
        names.iter().map(|n| UserName::parse(n).unwrap()).collect()
    }

    #[test]
    fn each_name_is_found_or_missing_once_however_spelt_in_the_order_given() {
        let (named, missing) = pick(
            vec![listed("Alice"), listed("bob"), listed("carol")],
            &names(&["ALICE", "new1", "alice", "Bob", "NEW1", "new2", "new1"]),
        );
        let named: Vec<&str> = named.iter().map(|u| u.name.as_str()).collect();
        assert_eq!(named, ["Alice", "bob"]);
        let missing: Vec<&str> = missing.iter().map(UserName::as_str).collect();
        assert_eq!(missing, ["new1", "new2"]);
    }

    #[test]
    fn many_names_the_lists_lack_are_each_listed_once() {
        // Quadratic, this took minutes; it is linear in the names now.
        let many: Vec<UserName> = (0..200_000)
            .map(|i| UserName::from_iam(&format!("u{}", i % 100_000)))
            .collect();
        let (named, missing) = pick(vec![listed("u7")], &many);
        assert_eq!(named.len(), 1);
        assert_eq!(missing.len(), 99_999);
    }
}
