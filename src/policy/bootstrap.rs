//! `forcemfa bootstrap`: the enforcement group and its policy, created or repaired. Idempotent:
//! a second run changes nothing.

use crate::aws::identity::IdentityError;
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

impl PolicyOutcome {
    /// As the report names it.
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyOutcome::Unchanged => "unchanged",
            PolicyOutcome::Created => "created",
            PolicyOutcome::Updated => "updated",
        }
    }
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

/// Why bootstrap stopped; the text names the call and what it was about.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error("cannot determine the identity of the credentials (sts:GetCallerIdentity): {0}")]
    Identity(IdentityError),
    #[error("account_mismatch: the credentials belong to account {actual}, not {expected} (`account_id`): nothing was read or changed")]
    AccountMismatch { actual: String, expected: String },
    #[error("the partition of the credentials' ARN: {0}")]
    Partition(#[from] arn::PartitionError),
    /// An IAM call failed; `subject` is the group, or the group and the policy's name.
    #[error("{}:{} {subject} failed: {}", error.service, error.operation, error.detail)]
    Call { error: AwsError, subject: String },
    #[error("group {group}'s policy {GROUP_POLICY_NAME}: {error}")]
    Document {
        group: String,
        error: policy::DocumentError,
    },
    #[error(transparent)]
    Render(#[from] serde_json::Error),
}

/// Creates the group when missing and puts forcemfa's policy on it as an inline policy, or
/// replaces a drifted one. In a dry run, only reads.
pub async fn bootstrap(
    clients: &AccountClients,
    group: &str,
    settings: &GroupPolicySettings,
    expected_account: Option<&str>,
    dry_run: bool,
) -> Result<BootstrapReport, BootstrapError> {
    let identity = identity::caller_identity(clients)
        .await
        .map_err(BootstrapError::Identity)?;
    let account_id = identity.account_id;
    if let Some(expected) = expected_account.filter(|e| **e != account_id) {
        return Err(BootstrapError::AccountMismatch {
            actual: account_id,
            expected: expected.to_string(),
        });
    }
    let account = policy::Account {
        partition: arn::partition_of(&identity.arn)?,
        id: &account_id,
    };
    let desired = policy::force_mfa_group(&account, group, settings);

    let exists = group_exists(clients, group).await?;
    if !exists && !dry_run {
        clients
            .iam
            .create_group()
            .group_name(group)
            .send()
            .await
            .map_err(|e| call_failed(AwsError::iam("CreateGroup", &e), group))?;
        info!(account_id, group, "group created");
    }
    let current = if exists {
        current_policy(clients, group).await?
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
        put_policy(clients, group, &desired).await?;
        info!(
            account_id,
            group,
            policy = GROUP_POLICY_NAME,
            outcome = outcome.as_str(),
            "group policy written"
        );
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

fn call_failed(error: AwsError, subject: impl Into<String>) -> BootstrapError {
    BootstrapError::Call {
        error,
        subject: subject.into(),
    }
}

/// The group's policy as it is called in errors: `ForceMFA/forcemfa-require-mfa`.
fn policy_subject(group: &str) -> String {
    format!("{group}/{GROUP_POLICY_NAME}")
}

async fn group_exists(clients: &AccountClients, group: &str) -> Result<bool, BootstrapError> {
    match clients
        .iam
        .get_group()
        .group_name(group)
        .max_items(1)
        .send()
        .await
    {
        Ok(_) => Ok(true),
        Err(e) => match AwsError::iam("GetGroup", &e) {
            e if e.is_not_found() => Ok(false),
            e => Err(call_failed(e, group)),
        },
    }
}

/// The group's inline policy of forcemfa's name, if it has one.
async fn current_policy(
    clients: &AccountClients,
    group: &str,
) -> Result<Option<serde_json::Value>, BootstrapError> {
    match clients
        .iam
        .get_group_policy()
        .group_name(group)
        .policy_name(GROUP_POLICY_NAME)
        .send()
        .await
    {
        Ok(out) => policy::decode_document(out.policy_document())
            .map(Some)
            .map_err(|error| BootstrapError::Document {
                group: group.to_string(),
                error,
            }),
        Err(e) => match AwsError::iam("GetGroupPolicy", &e) {
            e if e.is_not_found() => Ok(None),
            e => Err(call_failed(e, policy_subject(group))),
        },
    }
}

async fn put_policy(
    clients: &AccountClients,
    group: &str,
    desired: &serde_json::Value,
) -> Result<(), BootstrapError> {
    let text = serde_json::to_string(desired)?;
    clients
        .iam
        .put_group_policy()
        .group_name(group)
        .policy_name(GROUP_POLICY_NAME)
        .policy_document(text)
        .send()
        .await
        .map_err(|e| call_failed(AwsError::iam("PutGroupPolicy", &e), policy_subject(group)))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_names_an_outcome_as_the_report_does() {
        for outcome in [
            PolicyOutcome::Unchanged,
            PolicyOutcome::Created,
            PolicyOutcome::Updated,
        ] {
            assert_eq!(serde_json::to_value(outcome).unwrap(), outcome.as_str());
        }
    }
}
