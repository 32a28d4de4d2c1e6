//! The reads behind the impact of an add (see [`crate::reconcile::impact`]): the user's active
//! access keys with each one's last use, and its console password (read as the plan reads it)
//! with its last use. Made only for users about to be added.

use aws_sdk_iam::primitives::DateTime;
use aws_sdk_iam::types::{AccessKeyLastUsed, StatusType};
use futures::TryFutureExt;

use crate::aws::pages::{every_page, AwsCall, ListError};
use crate::aws::{AccountClients, AwsError};
use crate::reconcile::impact::{Access, AccessError, KeyUse};
use crate::reconcile::plan::ConsoleAccess;
use crate::user_name::UserName;

use super::console_access;

const LIST_ACCESS_KEYS: AwsCall = AwsCall::iam("ListAccessKeys");

/// What signs in as `user`: its active keys and its console password (`console`, when the run
/// has read it already).
pub async fn read_access(
    clients: &AccountClients,
    user: &UserName,
    page_size: i32,
    console: ConsoleAccess,
) -> Access {
    // One after the other: the users are read `aws.max_concurrency` at a time already.
    let keys = active_keys(clients, user, page_size).await;
    let console = match console {
        ConsoleAccess::NotChecked => console_access(clients, user).await,
        known => known,
    };
    let console_last_used = match console {
        ConsoleAccess::Present => last_password_use(clients, user).await,
        _ => Ok(None),
    };
    Access {
        keys,
        console,
        console_last_used,
    }
}

/// The user's active access keys, each with its last use (GetAccessKeyLastUsed).
async fn active_keys(
    clients: &AccountClients,
    user: &UserName,
    page_size: i32,
) -> Result<Vec<KeyUse>, AccessError> {
    let mut ids = Vec::new();
    let fetch = |marker| {
        clients
            .iam
            .list_access_keys()
            .user_name(user.as_str())
            .max_items(page_size)
            .set_marker(marker)
            .send()
            .map_err(|e| AwsError::iam(LIST_ACCESS_KEYS.operation, &e))
    };
    every_page(LIST_ACCESS_KEYS, fetch, |page| {
        for key in page.access_key_metadata() {
            if key.status() == Some(&StatusType::Active) {
                let id = key
                    .access_key_id()
                    .filter(|id| !id.is_empty())
                    .ok_or_else(|| ListError::nonsense(&LIST_ACCESS_KEYS, "a key without an id"))?;
                ids.push(id.to_string());
            }
        }
        Ok::<(), ListError>(())
    })
    .await?;
    let mut keys = Vec::with_capacity(ids.len());
    for id in ids {
        let out = match clients
            .iam
            .get_access_key_last_used()
            .access_key_id(&id)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) => match AwsError::iam("GetAccessKeyLastUsed", &e) {
                // Deleted since it was listed (a rotation): it signs nothing any more.
                e if e.is_not_found() => continue,
                // IAM's words may hold the whole key id: only its kind is kept.
                e => {
                    return Err(AccessError::KeyLastUsed {
                        key: KeyUse::new(&id, None, None, None).key,
                        kind: e.kind.metric_label(),
                    })
                }
            },
        };
        let used = out.access_key_last_used();
        keys.push(KeyUse::new(
            &id,
            used.and_then(AccessKeyLastUsed::last_used_date)
                .map(DateTime::secs),
            used.map(AccessKeyLastUsed::service_name),
            used.map(AccessKeyLastUsed::region),
        ));
    }
    Ok(keys)
}

/// When the user's console password was last used (GetUser's PasswordLastUsed).
async fn last_password_use(
    clients: &AccountClients,
    user: &UserName,
) -> Result<Option<i64>, AccessError> {
    let out = clients
        .iam
        .get_user()
        .user_name(user.as_str())
        .send()
        .await
        .map_err(|e| AwsError::iam("GetUser", &e))?;
    Ok(out
        .user()
        .and_then(|u| u.password_last_used())
        .map(DateTime::secs))
}
