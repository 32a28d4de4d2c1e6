//! Reading IAM: the only module that asks AWS what is there.
//!
//! Bulk reads first (every user with path, tags and groups; every holder of a virtual MFA device),
//! then per-user calls only for the facts the plan still needs, with bounded concurrency.

use std::collections::{BTreeMap, HashSet};

use aws_sdk_iam::types::{AssignmentStatusType, EntityType};
use futures::stream::{self, StreamExt};

use crate::aws::{describe, is_no_such_entity, AccountClients};
use crate::plan::{self, ConsoleAccess, MfaState, Rules, UserFacts, UserName};

/// A failure that stops the whole account: nothing is changed in it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AccountError {
    #[error("cannot determine the identity of the credentials (sts:GetCallerIdentity): {0}")]
    Identity(String),
    #[error("group {group} does not exist in account {account_id}: create it, or set `group` to the enforcement group's name")]
    GroupMissing { group: String, account_id: String },
    #[error("iam:{operation} failed: {message}")]
    Read {
        operation: &'static str,
        message: String,
    },
    #[error("iam:{operation} returned {what}")]
    Nonsense {
        operation: &'static str,
        what: String,
    },
    #[error("stopped before the account was read: forcemfa is shutting down")]
    Stopped,
}

impl AccountError {
    /// A short stable label, for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            AccountError::Identity(_) => "identity",
            AccountError::GroupMissing { .. } => "group_missing",
            AccountError::Read { .. } => "read",
            AccountError::Nonsense { .. } => "invalid_response",
            AccountError::Stopped => "stopped",
        }
    }
}

/// Who the credentials belong to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub account_id: String,
    pub arn: String,
    /// Set when the credentials are an IAM user's own.
    pub user: Option<UserName>,
}

/// Everything known about one account after reading it.
#[derive(Debug, Clone)]
pub struct AccountFacts {
    pub identity: Identity,
    pub users: Vec<UserFacts>,
}

/// The user name in an IAM user ARN (`arn:PARTITION:iam::ACCOUNT:user/PATH/NAME`); `None` for any
/// other principal (assumed roles, federated users, root).
pub fn user_from_arn(arn: &str) -> Option<UserName> {
    let mut parts = arn.splitn(6, ':');
    let (Some("arn"), Some(_partition), Some("iam"), Some(_region), Some(_account), Some(resource)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return None;
    };
    let path_and_name = resource.strip_prefix("user/")?;
    let name = path_and_name.rsplit('/').next()?;
    (!name.is_empty()).then(|| UserName(name.to_string()))
}

pub async fn caller_identity(clients: &AccountClients) -> Result<Identity, AccountError> {
    let out = clients
        .sts
        .get_caller_identity()
        .send()
        .await
        .map_err(|e| AccountError::Identity(describe(&e)))?;
    let account_id = out
        .account()
        .filter(|a| !a.is_empty())
        .ok_or_else(|| AccountError::Identity("the answer holds no account id".to_string()))?
        .to_string();
    let arn = out.arn().unwrap_or_default().to_string();
    Ok(Identity {
        user: user_from_arn(&arn),
        account_id,
        arn,
    })
}

/// Fails with [`AccountError::GroupMissing`] unless the group exists.
pub async fn ensure_group(
    clients: &AccountClients,
    group: &str,
    account_id: &str,
) -> Result<(), AccountError> {
    match clients
        .iam
        .get_group()
        .group_name(group)
        .max_items(1)
        .send()
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if is_no_such_entity(&e) => Err(AccountError::GroupMissing {
            group: group.to_string(),
            account_id: account_id.to_string(),
        }),
        Err(e) => Err(AccountError::Read {
            operation: "GetGroup",
            message: describe(&e),
        }),
    }
}

/// Every user with path, tags and whether it is in `group`: GetAccountAuthorizationDetails,
/// every page.
async fn list_users(
    clients: &AccountClients,
    group: &str,
    page_size: i32,
) -> Result<Vec<UserFacts>, AccountError> {
    const OP: &str = "GetAccountAuthorizationDetails";
    let mut pages = clients
        .iam
        .get_account_authorization_details()
        .filter(EntityType::User)
        .max_items(page_size)
        .into_paginator()
        .send();
    let mut users = Vec::new();
    let mut seen = HashSet::new();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| AccountError::Read {
            operation: OP,
            message: describe(&e),
        })?;
        for detail in page.user_detail_list() {
            let name = detail
                .user_name()
                .filter(|n| !n.is_empty())
                .ok_or_else(|| AccountError::Nonsense {
                    operation: OP,
                    what: "a user without a name".to_string(),
                })?;
            if !seen.insert(name.to_string()) {
                // A user listed twice (pages shifting under a concurrent change) is read once.
                continue;
            }
            let tags: BTreeMap<String, String> = detail
                .tags()
                .iter()
                .map(|t| (t.key().to_string(), t.value().to_string()))
                .collect();
            users.push(UserFacts {
                name: UserName(name.to_string()),
                path: detail.path().unwrap_or("/").to_string(),
                tags,
                member: detail.group_list().iter().any(|g| g == group),
                mfa: MfaState::NotChecked,
                console: ConsoleAccess::NotChecked,
            });
        }
    }
    Ok(users)
}

/// Names of every IAM user holding an assigned virtual MFA device, every page.
async fn virtual_mfa_holders(
    clients: &AccountClients,
    page_size: i32,
) -> Result<HashSet<String>, AccountError> {
    let mut pages = clients
        .iam
        .list_virtual_mfa_devices()
        .assignment_status(AssignmentStatusType::Assigned)
        .max_items(page_size)
        .into_paginator()
        .send();
    let mut holders = HashSet::new();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| AccountError::Read {
            operation: "ListVirtualMFADevices",
            message: describe(&e),
        })?;
        for device in page.virtual_mfa_devices() {
            // The root user's device is listed too; it is no IAM user's.
            if let Some(user) = device.user().filter(|u| user_from_arn(u.arn()).is_some()) {
                holders.insert(user.user_name().to_string());
            }
        }
    }
    Ok(holders)
}

/// Whether one user has any MFA device: ListMFADevices shows every kind (virtual, hardware TOTP,
/// FIDO), every page.
async fn mfa_state(clients: &AccountClients, user: &str, page_size: i32) -> MfaState {
    let mut pages = clients
        .iam
        .list_mfa_devices()
        .user_name(user)
        .max_items(page_size)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        match page {
            Ok(page) if !page.mfa_devices().is_empty() => return MfaState::Present,
            Ok(_) => {}
            Err(e) if is_no_such_entity(&e) => {
                return MfaState::Unknown(format!(
                    "iam:ListMFADevices: the user no longer exists ({})",
                    describe(&e)
                ))
            }
            Err(e) => {
                return MfaState::Unknown(format!("iam:ListMFADevices failed: {}", describe(&e)))
            }
        }
    }
    MfaState::Absent
}

/// Whether one user has a console password.
async fn console_access(clients: &AccountClients, user: &str) -> ConsoleAccess {
    match clients.iam.get_login_profile().user_name(user).send().await {
        Ok(_) => ConsoleAccess::Present,
        Err(e) if is_no_such_entity(&e) => ConsoleAccess::Absent,
        Err(e) => ConsoleAccess::Unknown(format!("iam:GetLoginProfile failed: {}", describe(&e))),
    }
}

/// Reads every fact the plan needs for one account.
pub async fn read_account(
    clients: &AccountClients,
    identity: Identity,
    group: &str,
    rules: &Rules,
    page_size: i32,
    concurrency: usize,
) -> Result<AccountFacts, AccountError> {
    ensure_group(clients, group, &identity.account_id).await?;
    let (users, holders) = tokio::try_join!(
        list_users(clients, group, page_size),
        virtual_mfa_holders(clients, page_size)
    )?;
    let mut users = users;
    for user in users.iter_mut() {
        if holders.contains(&user.name.0) {
            user.mfa = MfaState::Present;
        }
    }

    let lookups: Vec<usize> = (0..users.len())
        .filter(|&i| plan::needs_mfa_lookup(&users[i], rules))
        .collect();
    let states: Vec<(usize, MfaState)> = stream::iter(lookups)
        .map(|i| {
            let name = users[i].name.0.clone();
            async move { (i, mfa_state(clients, &name, page_size).await) }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    for (i, state) in states {
        users[i].mfa = state;
    }

    let lookups: Vec<usize> = (0..users.len())
        .filter(|&i| plan::needs_console_lookup(&users[i], rules))
        .collect();
    let consoles: Vec<(usize, ConsoleAccess)> = stream::iter(lookups)
        .map(|i| {
            let name = users[i].name.0.clone();
            async move { (i, console_access(clients, &name).await) }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    for (i, console) in consoles {
        users[i].console = console;
    }

    Ok(AccountFacts { identity, users })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_arns_give_the_user_name() {
        assert_eq!(
            user_from_arn("arn:aws:iam::123456789012:user/ops/forcemfa"),
            Some(UserName("forcemfa".into()))
        );
        assert_eq!(
            user_from_arn("arn:aws-cn:iam::123456789012:user/bot"),
            Some(UserName("bot".into()))
        );
    }

    #[test]
    fn other_principals_are_not_users() {
        for arn in [
            "arn:aws:sts::123456789012:assumed-role/forcemfa/session",
            "arn:aws:iam::123456789012:root",
            "arn:aws:iam::123456789012:role/forcemfa",
            "arn:aws:sts::123456789012:user/moto",
            "arn:aws:iam::123456789012:user/",
            "not an arn",
            "",
        ] {
            assert_eq!(user_from_arn(arn), None, "{arn}");
        }
    }
}
