//! `forcemfa bootstrap`: the enforcement group and its policy, created or repaired. Idempotent:
//! a second run changes nothing.

use serde::Serialize;
use tracing::{info, warn};

use crate::arn;
use crate::aws::identity;
use crate::aws::{AccountClients, AwsError};
use crate::config::GroupPolicySettings;
use crate::policy::{self, GROUP_POLICY_NAME};

/// What bootstrap did to the group's inline policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PolicyOutcome {
    /// Already as rendered.
    Unchanged,
    /// There was none (in a dry run: there would be one).
    Created,
    /// There was one that differed (drift), now replaced (in a dry run: it would be).
    Updated,
}

#[derive(Debug, Clone, Serialize)]
pub struct BootstrapReport {
    pub account_id: String,
    pub group: String,
    pub policy_name: &'static str,
    pub dry_run: bool,
    /// The group did not exist and was created (in a dry run: would be).
    pub group_created: bool,
    pub policy: PolicyOutcome,
    /// The group's policy differed from the one forcemfa renders.
    pub drift: bool,
}

impl BootstrapReport {
    pub fn to_text(&self) -> String {
        let would = if self.dry_run { "would be " } else { "" };
        let group = if self.group_created {
            format!("group {} {would}created", self.group)
        } else {
            format!("group {} exists", self.group)
        };
        let policy = match self.policy {
            PolicyOutcome::Unchanged => format!("policy {} is up to date", self.policy_name),
            PolicyOutcome::Created => format!("policy {} {would}created", self.policy_name),
            PolicyOutcome::Updated => format!(
                "policy {} had drifted from forcemfa's and {would}replaced",
                self.policy_name
            ),
        };
        let mode = if self.dry_run {
            " (dry run: nothing changed)"
        } else {
            ""
        };
        format!(
            "forcemfa bootstrap{mode}  account {}\n  {group}\n  {policy}\n",
            self.account_id
        )
    }
}

/// Creates the group when missing and puts forcemfa's policy on it as an inline policy, or
/// replaces a drifted one. In a dry run, only reads.
pub async fn bootstrap(
    clients: &AccountClients,
    group: &str,
    settings: &GroupPolicySettings,
    expected_account: Option<&str>,
    dry_run: bool,
) -> Result<BootstrapReport, String> {
    let identity = identity::caller_identity(clients).await.map_err(|e| {
        format!("cannot determine the identity of the credentials (sts:GetCallerIdentity): {e}")
    })?;
    let account_id = identity.account_id;
    if let Some(expected) = expected_account.filter(|e| **e != account_id) {
        return Err(format!(
            "account_mismatch: the credentials belong to account {account_id}, not {expected} (`account_id`): nothing was read or changed"
        ));
    }
    let partition = arn::partition_of(&identity.arn)
        .map_err(|e| format!("the partition of the credentials' ARN: {e}"))?;
    let account = policy::Account {
        partition,
        id: &account_id,
    };
    let desired = policy::force_mfa_group(&account, group, settings);

    let exists = match clients
        .iam
        .get_group()
        .group_name(group)
        .max_items(1)
        .send()
        .await
    {
        Ok(_) => true,
        Err(e) => match AwsError::iam("GetGroup", &e) {
            e if e.is_not_found() => false,
            e => return Err(format!("iam:GetGroup {group} failed: {}", e.detail)),
        },
    };
    if !exists && !dry_run {
        clients
            .iam
            .create_group()
            .group_name(group)
            .send()
            .await
            .map_err(|e| {
                let e = AwsError::iam("CreateGroup", &e);
                format!("iam:CreateGroup {group} failed: {}", e.detail)
            })?;
        info!(account_id, group, "group created");
    }

    let current = if exists {
        match clients
            .iam
            .get_group_policy()
            .group_name(group)
            .policy_name(GROUP_POLICY_NAME)
            .send()
            .await
        {
            Ok(out) => Some(
                policy::decode_document(out.policy_document())
                    .map_err(|e| format!("group {group}'s policy {GROUP_POLICY_NAME}: {e}"))?,
            ),
            Err(e) => match AwsError::iam("GetGroupPolicy", &e) {
                e if e.is_not_found() => None,
                e => {
                    return Err(format!(
                        "iam:GetGroupPolicy {group}/{GROUP_POLICY_NAME} failed: {}",
                        e.detail
                    ))
                }
            },
        }
    } else {
        None
    };
    let (outcome, drift) = match &current {
        Some(doc) if *doc == desired => (PolicyOutcome::Unchanged, false),
        Some(_) => {
            warn!(
                account_id,
                group,
                policy = GROUP_POLICY_NAME,
                dry_run,
                "group policy drift"
            );
            (PolicyOutcome::Updated, true)
        }
        None => (PolicyOutcome::Created, false),
    };
    if outcome != PolicyOutcome::Unchanged && !dry_run {
        let text = serde_json::to_string(&desired).map_err(|e| e.to_string())?;
        clients
            .iam
            .put_group_policy()
            .group_name(group)
            .policy_name(GROUP_POLICY_NAME)
            .policy_document(text)
            .send()
            .await
            .map_err(|e| {
                format!(
                    "iam:PutGroupPolicy {group}/{GROUP_POLICY_NAME} failed: {}",
                    AwsError::iam("PutGroupPolicy", &e).detail
                )
            })?;
        info!(account_id, group, policy = GROUP_POLICY_NAME, outcome = ?outcome, "group policy written");
    }
    Ok(BootstrapReport {
        account_id,
        group: group.to_string(),
        policy_name: GROUP_POLICY_NAME,
        dry_run,
        group_created: !exists,
        policy: outcome,
        drift,
    })
}
