//! Writing IAM: the only module that changes anything, and only group memberships.

use futures::stream::{self, StreamExt};
use tokio_util::sync::CancellationToken;

use crate::aws::{describe, AccountClients};
use crate::plan::{Action, UserName};

/// What became of one planned change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub user: UserName,
    pub action: Action,
    /// `Err` carries the failed call and IAM's answer.
    pub result: Result<(), String>,
}

/// Why a change was not sent.
pub const NOT_STARTED: &str = "not made: forcemfa is shutting down";

/// Applies every change with bounded concurrency. A failed change does not stop the others: each
/// concerns one user only. Once `stop` is cancelled no new change starts; those already sent are
/// let finish.
pub async fn apply(
    clients: &AccountClients,
    group: &str,
    changes: Vec<(UserName, Action)>,
    concurrency: usize,
    stop: &CancellationToken,
) -> Vec<Outcome> {
    let mut outcomes: Vec<Outcome> = stream::iter(changes)
        .map(|(user, action)| async move {
            let result = if stop.is_cancelled() {
                Err(NOT_STARTED.to_string())
            } else {
                change(clients, group, &user, action).await
            };
            Outcome {
                user,
                action,
                result,
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    outcomes.sort_by(|a, b| a.user.cmp(&b.user));
    outcomes
}

async fn change(
    clients: &AccountClients,
    group: &str,
    user: &UserName,
    action: Action,
) -> Result<(), String> {
    match action {
        Action::Add => clients
            .iam
            .add_user_to_group()
            .group_name(group)
            .user_name(&user.0)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| format!("iam:AddUserToGroup failed: {}", describe(&e))),
        Action::Remove => clients
            .iam
            .remove_user_from_group()
            .group_name(group)
            .user_name(&user.0)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| format!("iam:RemoveUserFromGroup failed: {}", describe(&e))),
    }
}

/// Deletes unassigned virtual MFA devices. IAM refuses to delete one that a user has enabled in
/// the meantime, so a race with a user finishing their set-up cannot take their device away.
pub async fn delete_devices(
    clients: &AccountClients,
    serials: Vec<String>,
    concurrency: usize,
    stop: &CancellationToken,
) -> Vec<(String, Result<(), String>)> {
    stream::iter(serials)
        .map(|serial| async move {
            let result = if stop.is_cancelled() {
                Err(NOT_STARTED.to_string())
            } else {
                clients
                    .iam
                    .delete_virtual_mfa_device()
                    .serial_number(&serial)
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| format!("iam:DeleteVirtualMFADevice failed: {}", describe(&e)))
            };
            (serial, result)
        })
        .buffer_unordered(concurrency)
        .collect()
        .await
}
