//! Reading IAM during a run: the one place a reconciliation asks AWS what is there. (`bootstrap`
//! reads the group and its policy for itself; `aws::identity` asks whose the credentials are.)
//!
//! Bulk reads first (every user with path, tags and groups; every holder of a virtual MFA device),
//! then per-user calls only for the facts the plan still needs, with bounded concurrency.

pub mod access;
pub mod devices;
pub mod named;

use std::collections::{BTreeMap, HashSet};

use aws_sdk_iam::types::{EntityType, SummaryKeyType};
use futures::stream::{self, StreamExt};
use futures::TryFutureExt;

use crate::arn::Arn;
use crate::aws::pages::{every_page, AwsCall, ListError};
use crate::aws::{AccountClients, AwsError};
use crate::policy;
use crate::user_name::UserName;

use devices::{virtual_devices, VirtualDevices};

use super::failure::AccountError;
use super::plan::{self, ConsoleAccess, MfaState, Rules, UserFacts};

const GET_ACCOUNT_AUTHORIZATION_DETAILS: AwsCall = AwsCall::iam("GetAccountAuthorizationDetails");
const LIST_MFA_DEVICES: AwsCall = AwsCall::iam("ListMFADevices");
const LIST_GROUPS_FOR_USER: AwsCall = AwsCall::iam("ListGroupsForUser");

/// Whether the enforcement group's policies deny access without MFA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupPolicyCheck {
    Enforces,
    /// No inline or attached policy of the group denies access without MFA: the group protects
    /// nothing.
    DoesNotEnforce,
    /// A policy could not be read; the reason says which.
    Unknown(String),
}

/// Everything known about one account after reading it.
#[derive(Debug, Clone)]
pub struct AccountFacts {
    pub users: Vec<UserFacts>,
    pub group_policy: GroupPolicyCheck,
    /// Serial numbers of virtual MFA devices that belong to nobody (abandoned set-ups).
    pub unassigned_devices: Vec<String>,
    /// Whether the root user has MFA, or why it could not be read.
    pub root_mfa: Result<bool, ReadError>,
    /// The pages of users and virtual MFA devices read: what a bulk read of the account costs
    /// before any per-user call.
    pub list_calls: u32,
}

/// Why one fact of an account (the root user's MFA, a policy of the group) could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Call(AwsError),
    /// A call about one entity (a managed policy) failed.
    #[error("iam:{operation} {entity} failed: {}", error.detail)]
    CallAbout {
        operation: &'static str,
        entity: String,
        error: AwsError,
    },
    /// The answer lacks what it should hold.
    #[error("{operation}{} returned {what}", entity.as_deref().map(|e| format!(" {e}")).unwrap_or_default())]
    Nonsense {
        operation: AwsCall,
        entity: Option<String>,
        what: &'static str,
    },
    #[error("{entity}: {error}")]
    Undecodable { entity: String, error: String },
}

/// What GetAccountAuthorizationDetails says of the enforcement group.
struct GroupDetail {
    /// Inline policy documents (URL-encoded JSON, as IAM returns them).
    inline_documents: Vec<(String, String)>,
    /// ARNs of attached managed policies.
    attached: Vec<String>,
}

/// Every user with path, tags and whether it is in `group`, and the group's policies:
/// GetAccountAuthorizationDetails (users and groups), every page.
async fn list_users_and_group(
    clients: &AccountClients,
    group: &str,
    page_size: i32,
) -> Result<UsersAndGroup, AccountError> {
    const OP: AwsCall = GET_ACCOUNT_AUTHORIZATION_DETAILS;
    let mut users = Vec::new();
    let mut seen = HashSet::new();
    let mut group_detail = None;
    let mut pages = 0;
    let fetch = |marker| {
        pages += 1;
        clients
            .iam
            .get_account_authorization_details()
            .filter(EntityType::User)
            .filter(EntityType::Group)
            .max_items(page_size)
            .set_marker(marker)
            .send()
            .map_err(|e| AwsError::iam(OP.operation, &e))
    };
    every_page(OP, fetch, |page| {
        for detail in page.user_detail_list() {
            let name = detail
                .user_name()
                .filter(|n| !n.is_empty())
                .ok_or_else(|| ListError::nonsense(&OP, "a user without a name"))?;
            let name = UserName::from_iam(name);
            if !seen.insert(name.clone()) {
                // A user listed twice (pages shifting under a concurrent change) is read once.
                continue;
            }
            users.push(UserFacts {
                name,
                path: detail.path().unwrap_or("/").to_string(),
                tags: detail
                    .tags()
                    .iter()
                    .map(|t| (t.key().to_string(), t.value().to_string()))
                    .collect(),
                member: detail.group_list().iter().any(|g| g == group),
                mfa: MfaState::NotChecked,
                console: ConsoleAccess::NotChecked,
                created: detail
                    .create_date()
                    .map(aws_sdk_iam::primitives::DateTime::secs),
            });
        }
        if let Some(g) = page
            .group_detail_list()
            .iter()
            .find(|g| g.group_name() == Some(group))
        {
            group_detail = Some(group_detail_of(g));
        }
        Ok::<(), AccountError>(())
    })
    .await?;
    Ok(UsersAndGroup {
        users,
        group: group_detail,
        pages,
    })
}

/// Every user of the account, and the enforcement group, as [`list_users_and_group`] reads them.
struct UsersAndGroup {
    users: Vec<UserFacts>,
    group: Option<GroupDetail>,
    pages: u32,
}

fn group_detail_of(g: &aws_sdk_iam::types::GroupDetail) -> GroupDetail {
    GroupDetail {
        inline_documents: g
            .group_policy_list()
            .iter()
            .map(|p| {
                (
                    p.policy_name().unwrap_or_default().to_string(),
                    p.policy_document().unwrap_or_default().to_string(),
                )
            })
            .collect(),
        attached: g
            .attached_managed_policies()
            .iter()
            .filter_map(|p| p.policy_arn().map(str::to_string))
            .collect(),
    }
}

/// The document of a managed policy's default version.
async fn managed_policy_document(
    clients: &AccountClients,
    arn: &str,
) -> Result<serde_json::Value, ReadError> {
    let failed = |operation, error| ReadError::CallAbout {
        operation,
        entity: arn.to_string(),
        error,
    };
    let nonsense = |operation, what| ReadError::Nonsense {
        operation: AwsCall::iam(operation),
        entity: Some(arn.to_string()),
        what,
    };
    let policy = clients
        .iam
        .get_policy()
        .policy_arn(arn)
        .send()
        .await
        .map_err(|e| failed("GetPolicy", AwsError::iam("GetPolicy", &e)))?;
    let version = policy
        .policy()
        .and_then(|p| p.default_version_id())
        .ok_or_else(|| nonsense("GetPolicy", "no default version"))?;
    let document = clients
        .iam
        .get_policy_version()
        .policy_arn(arn)
        .version_id(version)
        .send()
        .await
        .map_err(|e| failed("GetPolicyVersion", AwsError::iam("GetPolicyVersion", &e)))?;
    let text = document
        .policy_version()
        .and_then(|v| v.document())
        .ok_or_else(|| nonsense("GetPolicyVersion", "no document"))?;
    policy::decode_document(text).map_err(|e| ReadError::Undecodable {
        entity: arn.to_string(),
        error: e.to_string(),
    })
}

/// Whether any of the group's policies denies access without MFA. AWS managed policies are not
/// read: none of them does.
async fn check_group_policy(clients: &AccountClients, group: &GroupDetail) -> GroupPolicyCheck {
    let mut problems = Vec::new();
    for (name, text) in &group.inline_documents {
        match policy::decode_document(text) {
            Ok(doc) if policy::denies_without_mfa(&doc) => return GroupPolicyCheck::Enforces,
            Ok(_) => {}
            Err(e) => problems.push(format!("inline policy {name}: {e}")),
        }
    }
    for arn in group
        .attached
        .iter()
        .filter(|a| Arn::parse(a).is_none_or(|a| a.account != "aws"))
    {
        match managed_policy_document(clients, arn).await {
            Ok(doc) if policy::denies_without_mfa(&doc) => return GroupPolicyCheck::Enforces,
            Ok(_) => {}
            Err(e) => problems.push(e.to_string()),
        }
    }
    if problems.is_empty() {
        GroupPolicyCheck::DoesNotEnforce
    } else {
        GroupPolicyCheck::Unknown(problems.join("; "))
    }
}

/// Whether the account's root user has MFA (GetAccountSummary).
async fn root_mfa(clients: &AccountClients) -> Result<bool, ReadError> {
    let summary = clients
        .iam
        .get_account_summary()
        .send()
        .await
        .map_err(|e| ReadError::Call(AwsError::iam("GetAccountSummary", &e)))?;
    summary
        .summary_map()
        .and_then(|m| m.get(&SummaryKeyType::AccountMfaEnabled))
        .map(|v| *v == 1)
        .ok_or(ReadError::Nonsense {
            operation: AwsCall::iam("GetAccountSummary"),
            entity: None,
            what: "no AccountMFAEnabled",
        })
}

/// Whether one user has any MFA device: ListMFADevices shows every kind (virtual, hardware TOTP,
/// FIDO), every page.
pub async fn mfa_state(clients: &AccountClients, user: &UserName, page_size: i32) -> MfaState {
    const OP: AwsCall = LIST_MFA_DEVICES;
    let mut present = false;
    let fetch = |marker| {
        clients
            .iam
            .list_mfa_devices()
            .user_name(user.as_str())
            .max_items(page_size)
            .set_marker(marker)
            .send()
            .map_err(|e| AwsError::iam(OP.operation, &e))
    };
    // Every page is read, even after a device is found: an answer that cannot be followed to its
    // end is not one to act on.
    let read = every_page(OP, fetch, |page| {
        // A device is a fact only when the answer names it and says whose it is.
        for device in page.mfa_devices() {
            if device.serial_number().is_empty() {
                return Err(ListError::nonsense(&OP, "a device without a serial number"));
            }
            // IAM spells a user's name the same in every answer: another spelling is another
            // user, or a broken answer.
            if device.user_name() != user.as_str() {
                return Err(ListError::Nonsense {
                    operation: format!("{OP} for {user}"),
                    what: format!("a device of {:?}", device.user_name()),
                });
            }
            present = true;
        }
        Ok(())
    })
    .await;
    match read {
        Ok(()) if present => MfaState::Present,
        Ok(()) => MfaState::Absent,
        Err(ListError::Call(e)) if e.is_not_found() => {
            MfaState::Unknown(format!("{OP}: the user no longer exists ({})", e.detail))
        }
        Err(e) => MfaState::Unknown(e.to_string()),
    }
}

/// Whether one user has a console password (GetLoginProfile): the one reader of it, for the plan
/// (`console_users_only`) and for the impact of an add alike. A failed read says which.
pub async fn console_access(clients: &AccountClients, user: &UserName) -> ConsoleAccess {
    match clients
        .iam
        .get_login_profile()
        .user_name(user.as_str())
        .send()
        .await
    {
        Ok(_) => ConsoleAccess::Present,
        Err(e) => match AwsError::iam("GetLoginProfile", &e) {
            e if e.is_not_found() => ConsoleAccess::Absent,
            e => ConsoleAccess::Unknown(e.to_string()),
        },
    }
}

/// Runs `lookup` for every user that `needs` it, `concurrency` at a time; returns each result
/// with the user's index.
async fn per_user<T, Fut>(
    users: &[UserFacts],
    needs: impl Fn(&UserFacts) -> bool,
    lookup: impl Fn(UserName) -> Fut,
    concurrency: usize,
) -> Vec<(usize, T)>
where
    Fut: std::future::Future<Output = T>,
{
    let wanted: Vec<(usize, UserName)> = users
        .iter()
        .enumerate()
        .filter(|(_, u)| needs(u))
        .map(|(i, u)| (i, u.name.clone()))
        .collect();
    stream::iter(wanted)
        .map(|(i, name)| {
            let result = lookup(name);
            async move { (i, result.await) }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await
}

/// What IAM says of one user named by an event or on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserRead {
    /// No such user (deleted, renamed, or never there): nothing to decide.
    Missing,
    /// The user's facts; a fact that could not be read makes the decision a skip.
    Found(UserFacts),
}

/// The groups of one user, every page: whether `group` is among them. (Also the read that
/// settles a membership change whose answer never came.)
pub async fn in_group(
    clients: &AccountClients,
    user: &UserName,
    group: &str,
    page_size: i32,
) -> Result<bool, ListError> {
    const OP: AwsCall = LIST_GROUPS_FOR_USER;
    let mut member = false;
    let fetch = |marker| {
        clients
            .iam
            .list_groups_for_user()
            .user_name(user.as_str())
            .max_items(page_size)
            .set_marker(marker)
            .send()
            .map_err(|e| AwsError::iam(OP.operation, &e))
    };
    every_page(OP, fetch, |page| {
        member |= page.groups().iter().any(|g| g.group_name() == group);
        Ok::<(), ListError>(())
    })
    .await?;
    Ok(member)
}

/// Reads one user the way [`read_account`] reads each: name, path and tags (GetUser); then, unless
/// exempt, its groups and MFA devices; then its console password when the decision turns on it.
/// At most four IAM calls. A read that fails leaves the user's MFA state unknown, so that the plan
/// skips the user rather than guess.
pub async fn read_user(
    clients: &AccountClients,
    name: &UserName,
    group: &str,
    rules: &Rules,
    page_size: i32,
) -> UserRead {
    read_user_with(clients, name, Membership::Ask(group), rules, page_size).await
}

/// Reads one user again just before a change to its membership, whose membership the change
/// assumes: GetUser, then unless exempt ListMFADevices, then GetLoginProfile when the decision
/// turns on it. Two IAM calls, three with `console_users_only`.
pub async fn reread_user(
    clients: &AccountClients,
    name: &UserName,
    member: bool,
    rules: &Rules,
    page_size: i32,
) -> UserRead {
    read_user_with(clients, name, Membership::Known(member), rules, page_size).await
}

/// A user named whose facts were not read, for `reason`: the plan skips it rather than guess.
pub fn unread_user(name: &UserName, reason: String) -> UserFacts {
    UserFacts {
        name: name.clone(),
        path: "/".to_string(),
        tags: BTreeMap::new(),
        member: false,
        mfa: MfaState::Unknown(reason),
        console: ConsoleAccess::NotChecked,
        created: None,
    }
}

/// Whether a user's membership of the enforcement group is to be read, or known.
enum Membership<'a> {
    Ask(&'a str),
    Known(bool),
}

async fn read_user_with(
    clients: &AccountClients,
    name: &UserName,
    membership: Membership<'_>,
    rules: &Rules,
    page_size: i32,
) -> UserRead {
    let unknown = |reason: String| UserRead::Found(unread_user(name, reason));
    let user = match clients.iam.get_user().user_name(name.as_str()).send().await {
        Ok(out) => match out.user() {
            Some(user) if !user.user_name().is_empty() => user.clone(),
            _ => return unknown("iam:GetUser returned no user".to_string()),
        },
        Err(e) => {
            let e = AwsError::iam("GetUser", &e);
            if e.is_not_found() {
                return UserRead::Missing;
            }
            return unknown(e.to_string());
        }
    };
    // IAM finds users whatever the case of the name asked for; its answer spells it.
    let name = UserName::from_iam(user.user_name());
    let mut facts = UserFacts {
        name: name.clone(),
        path: user.path().to_string(),
        tags: user
            .tags()
            .iter()
            .map(|t| (t.key().to_string(), t.value().to_string()))
            .collect(),
        member: false,
        mfa: MfaState::NotChecked,
        console: ConsoleAccess::NotChecked,
        created: Some(user.create_date().secs()),
    };
    if !plan::needs_mfa_lookup(&facts, rules) {
        return UserRead::Found(facts);
    }
    let (member, mfa) = match membership {
        Membership::Ask(group) => tokio::join!(
            in_group(clients, &name, group, page_size),
            mfa_state(clients, &name, page_size)
        ),
        Membership::Known(member) => (Ok(member), mfa_state(clients, &name, page_size).await),
    };
    match member {
        Ok(member) => {
            facts.member = member;
            facts.mfa = mfa;
        }
        Err(reason) => facts.mfa = MfaState::Unknown(reason.to_string()),
    }
    if plan::needs_console_lookup(&facts, rules) {
        facts.console = console_access(clients, &name).await;
    }
    UserRead::Found(facts)
}

/// Completes the users listed with what the plan still needs: a holder of a virtual device has
/// MFA; anyone else's devices of every kind are read; then the console password of those who
/// would be added for it.
async fn complete(
    clients: &AccountClients,
    users: &mut [UserFacts],
    holders: &HashSet<String>,
    rules: &Rules,
    page_size: i32,
    concurrency: usize,
) {
    for user in users.iter_mut() {
        if holders.contains(user.name.as_str()) {
            user.mfa = MfaState::Present;
        }
    }
    let needs_mfa = |u: &UserFacts| plan::needs_mfa_lookup(u, rules);
    let read_mfa = |name: UserName| async move { mfa_state(clients, &name, page_size).await };
    for (i, state) in per_user(users, needs_mfa, read_mfa, concurrency).await {
        users[i].mfa = state;
    }
    // Only now, with every MFA state known, is it clear who would be added.
    let needs_console = |u: &UserFacts| plan::needs_console_lookup(u, rules);
    let read_console = |name: UserName| async move { console_access(clients, &name).await };
    for (i, console) in per_user(users, needs_console, read_console, concurrency).await {
        users[i].console = console;
    }
}

/// Reads every fact the plan needs for one account.
pub async fn read_account(
    clients: &AccountClients,
    account_id: &str,
    group: &str,
    rules: &Rules,
    page_size: i32,
    concurrency: usize,
) -> Result<AccountFacts, AccountError> {
    let (users_and_group, devices, root_mfa) = tokio::join!(
        list_users_and_group(clients, group, page_size),
        virtual_devices(clients, page_size),
        root_mfa(clients),
    );
    let UsersAndGroup {
        mut users,
        group: group_detail,
        pages,
    } = users_and_group?;
    let Some(group_detail) = group_detail else {
        return Err(AccountError::GroupMissing {
            group: group.to_string(),
            account_id: account_id.to_string(),
        });
    };
    let VirtualDevices {
        holders,
        unassigned: unassigned_devices,
        pages: device_pages,
        ..
    } = devices?;
    let group_policy = check_group_policy(clients, &group_detail).await;
    complete(clients, &mut users, &holders, rules, page_size, concurrency).await;

    Ok(AccountFacts {
        users,
        group_policy,
        unassigned_devices,
        root_mfa,
        list_calls: pages + device_pages,
    })
}
