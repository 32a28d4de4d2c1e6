//! Reading the users a batch of events names from the account's lists, when that costs fewer
//! calls than reading each on its own (see `reconcile::targeted`): the pages of users and of
//! virtual MFA devices, then only the per-user calls the named users still need.

use std::collections::HashSet;

use crate::aws::AccountClients;
use crate::user_name::UserName;

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

/// Reads the users `names` from the account's lists.
pub async fn read_named(
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
    // IAM finds a user whatever the case of the name asked for, and so does this.
    let wanted: HashSet<&UserName> = names.iter().collect();
    let mut named: Vec<UserFacts> = users
        .into_iter()
        .filter(|u| wanted.contains(&u.name))
        .collect();
    let found: HashSet<&UserName> = named.iter().map(|u| &u.name).collect();
    let mut missing: Vec<UserName> = Vec::new();
    for name in names {
        if !found.contains(name) && !missing.contains(name) {
            missing.push(name.clone());
        }
    }
    complete(clients, &mut named, &holders, rules, page_size, concurrency).await;
    Ok(NamedRead {
        users: named,
        missing,
        list_calls: pages + device_pages,
    })
}
