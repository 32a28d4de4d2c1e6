//! Writing IAM during a reconciliation: group memberships and abandoned MFA devices. (`bootstrap`
//! writes the group and its policy; nothing else writes.)
//!
//! Every change goes through a [`Journal`]: told before the request is sent, which may veto it,
//! and told as soon as IAM has answered, so that the audit trail and the logs never trail behind
//! what IAM has done, whatever happens to the process afterwards.

use futures::stream::{self, StreamExt};
use tokio_util::sync::CancellationToken;

use crate::aws::{AccountClients, AwsError};
use crate::reconcile::plan::{Action, UserName};

/// One write to IAM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Membership(UserName, Action),
    /// Deleting an unassigned virtual MFA device, by serial number.
    DeleteDevice(String),
}

impl Change {
    /// The user, or for a device its serial number.
    pub fn subject(&self) -> &str {
        match self {
            Change::Membership(user, _) => &user.0,
            Change::DeleteDevice(serial) => serial,
        }
    }

    /// `add`, `remove` or `delete_mfa_device`, as the audit log and the logs name it.
    pub fn action_name(&self) -> &'static str {
        match self {
            Change::Membership(_, action) => action.as_str(),
            Change::DeleteDevice(_) => "delete_mfa_device",
        }
    }
}

/// What became of one change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub change: Change,
    /// `Err` carries the failed call and IAM's answer, or why the change was not sent.
    pub result: Result<(), String>,
    /// Whether the request went out: only then may IAM have made the change.
    pub sent: bool,
}

/// Hears of every change as it happens.
pub trait Journal: Sync {
    /// Called just before `change` is sent; an error keeps it from being sent and becomes its
    /// outcome.
    fn before(&self, change: &Change) -> Result<(), String>;
    /// Called as soon as the change's outcome is known.
    fn after(&self, outcome: &Outcome);
}

/// Applies every change with bounded concurrency. A failed change does not stop the others: each
/// concerns one user or device only. Once `stop` is cancelled no new change starts (`not_started`
/// says why); those already sent are let finish.
pub async fn apply(
    clients: &AccountClients,
    group: &str,
    changes: Vec<Change>,
    concurrency: usize,
    stop: &CancellationToken,
    not_started: &str,
    journal: &dyn Journal,
) -> Vec<Outcome> {
    stream::iter(changes)
        .map(|change| async move {
            let (result, sent) = if stop.is_cancelled() {
                (Err(not_started.to_string()), false)
            } else {
                match journal.before(&change) {
                    Ok(()) => (send(clients, group, &change).await, true),
                    Err(e) => (Err(e), false),
                }
            };
            let outcome = Outcome {
                change,
                result,
                sent,
            };
            journal.after(&outcome);
            outcome
        })
        .buffer_unordered(concurrency)
        .collect()
        .await
}

async fn send(clients: &AccountClients, group: &str, change: &Change) -> Result<(), String> {
    match change {
        Change::Membership(user, Action::Add) => clients
            .iam
            .add_user_to_group()
            .group_name(group)
            .user_name(&user.0)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| AwsError::iam("AddUserToGroup", &e).to_string()),
        Change::Membership(user, Action::Remove) => clients
            .iam
            .remove_user_from_group()
            .group_name(group)
            .user_name(&user.0)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| AwsError::iam("RemoveUserFromGroup", &e).to_string()),
        // IAM refuses to delete a device that a user has enabled in the meantime, so a race with
        // a user finishing their set-up cannot take their device away.
        Change::DeleteDevice(serial) => clients
            .iam
            .delete_virtual_mfa_device()
            .serial_number(serial)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| AwsError::iam("DeleteVirtualMFADevice", &e).to_string()),
    }
}
