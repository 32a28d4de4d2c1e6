//! Writing IAM during a reconciliation: group memberships and abandoned MFA devices. (`bootstrap`
//! writes the group and its policy; nothing else writes.)
//!
//! Every change goes through a [`Journal`]: told before the request is sent, which may veto it,
//! and told as soon as IAM has answered, so that the audit trail and the logs never trail behind
//! what IAM has done, whatever happens to the process afterwards.
//!
//! A write that ends in an error is not taken as refused on that word alone: one read (the
//! user's groups, or the account's virtual MFA devices) says whether IAM made it. A change no
//! answer ever said no to (a timeout, a connection lost after sending, an answer that cannot be
//! read or is a gateway's page), and which that read does not show, is unknown, and said so: the
//! next run settles it.

use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt};
use tracing::info;

use crate::aws::error::FailureKind;
use crate::aws::pages::ListError;
use crate::aws::{AccountClients, AwsError};
use crate::config::Config;
use crate::user_name::UserName;

use super::audit::AuditError;
use super::inventory::{self, UserRead};
use super::plan::{self, Action, Decision, Rules};
use super::stop::{Stop, StopReason};

/// A membership change is made on a read of its user at most this old; an older one is checked
/// first with a read of the user (its path and tags, its MFA devices). A decision another process made on a newer
/// read comes from an event, which takes longer than this to reach any process, so a read this
/// young cannot be older than such a decision.
pub const FRESH_FOR: Duration = Duration::from_secs(1);

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
            Change::Membership(user, _) => user.as_str(),
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

/// How one change ended.
#[derive(Debug, Clone)]
pub enum ChangeResult {
    /// IAM made it: it said so, or a read after an error shows it made.
    Done,
    /// IAM answered no (and a read afterwards shows the change not made).
    Refused(String),
    /// Sent, but IAM never answered no and a read afterwards does not show the change, or that
    /// read failed: IAM may or may not have made it. The next run settles it from IAM's state.
    Unknown(String),
    /// Never sent, so IAM cannot have made it.
    NotSent(NotSent),
}

/// Why a change was not sent.
#[derive(Debug, Clone, thiserror::Error)]
pub enum NotSent {
    /// Its audit record could not be written: no change is made that the audit log could not
    /// show.
    #[error("not made: its audit record could not be written ({0})")]
    Vetoed(AuditError),
    /// The run was stopped first.
    #[error("not made: {0}")]
    Stopped(StopReason),
    /// A read of the user just before it shows the change no longer called for: the state (and
    /// whatever decided on it since, in this process or another) stands.
    #[error("left out: {0}")]
    Superseded(&'static str),
    /// The read of the user just before it failed: the user is left as it is.
    #[error("not made: the read of the user just before it failed ({0})")]
    Unchecked(String),
}

impl ChangeResult {
    /// `done`, `failed`, `unknown`, `superseded`, or `failed` for another change not sent, as
    /// logs name outcomes.
    pub fn as_str(&self) -> &'static str {
        match self {
            ChangeResult::Done => "done",
            ChangeResult::Unknown(_) => "unknown",
            ChangeResult::NotSent(NotSent::Superseded(_)) => "superseded",
            ChangeResult::Refused(_) | ChangeResult::NotSent(_) => "failed",
        }
    }

    /// Why it was not made, or why its outcome is not known.
    pub fn reason(&self) -> Option<String> {
        match self {
            ChangeResult::Done => None,
            ChangeResult::Refused(r) | ChangeResult::Unknown(r) => Some(r.clone()),
            ChangeResult::NotSent(why) => Some(why.to_string()),
        }
    }
}

/// What became of one change.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub change: Change,
    pub result: ChangeResult,
}

/// Hears of every change as it happens.
pub trait Journal: Sync {
    /// Called just before `change` is sent; an error keeps it from being sent.
    fn before(&self, change: &Change) -> Result<(), AuditError>;
    /// Called as soon as the change's outcome is known.
    fn after(&self, outcome: &Outcome);
}

/// Where changes are written: an account's clients and its enforcement group.
#[derive(Clone, Copy)]
pub struct Writer<'a> {
    pub clients: &'a AccountClients,
    pub group: &'a str,
    /// For the read that settles a change whose answer never came.
    pub page_size: i32,
    /// When the users whose membership changes were read, and the rules that decided them: a
    /// change on an older read than [`FRESH_FOR`] is checked first.
    pub read_at: Option<(Instant, &'a Rules)>,
}

impl<'a> Writer<'a> {
    /// Writes with `clients` into the group `config` names.
    pub fn new(clients: &'a AccountClients, config: &'a Config) -> Writer<'a> {
        Writer {
            clients,
            group: &config.group,
            page_size: config.aws.page_size,
            read_at: None,
        }
    }

    /// Membership changes decided by `rules` on users read at `at`.
    pub fn read_at(self, at: Instant, rules: &'a Rules) -> Writer<'a> {
        Writer {
            read_at: Some((at, rules)),
            ..self
        }
    }
}

/// Applies every change with bounded concurrency. A failed change does not stop the others: each
/// concerns one user or device only. Once `stop` is stopping no new change starts; those already
/// sent are let finish. A membership change on a read older than [`FRESH_FOR`] is made only if a
/// read of the user just before still calls for it.
pub async fn apply(
    writer: Writer<'_>,
    changes: Vec<Change>,
    concurrency: usize,
    stop: &Stop<'_>,
    journal: &dyn Journal,
) -> Vec<Outcome> {
    stream::iter(changes)
        .map(|change| async move {
            let stopped = || ChangeResult::NotSent(NotSent::Stopped(stop.reason()));
            let result = if stop.token.is_cancelled() {
                stopped()
            } else if let Some(left_out) = recheck(writer, &change).await {
                ChangeResult::NotSent(left_out)
            } else if stop.token.is_cancelled() {
                stopped()
            } else {
                match journal.before(&change) {
                    Ok(()) => make(writer, &change).await,
                    Err(e) => ChangeResult::NotSent(NotSent::Vetoed(e)),
                }
            };
            let outcome = Outcome { change, result };
            journal.after(&outcome);
            outcome
        })
        .buffer_unordered(concurrency)
        .collect()
        .await
}

/// Whether a membership change decided on a read older than [`FRESH_FOR`] is no longer to be
/// made: the user read again just before it (path and tags, MFA devices of every kind, and the
/// console password when the decision turns on it) and decided by the same rules.
async fn recheck(writer: Writer<'_>, change: &Change) -> Option<NotSent> {
    let (Change::Membership(user, action), Some((read_at, rules))) = (change, writer.read_at)
    else {
        return None;
    };
    if read_at.elapsed() < FRESH_FOR {
        return None;
    }
    let member = *action == Action::Remove;
    let now = inventory::reread_user(writer.clients, user, member, rules, writer.page_size).await;
    still_called_for(*action, now, rules)
}

/// What a read of the user just before a change makes of it: `None` when it still stands.
pub fn still_called_for(action: Action, now: UserRead, rules: &Rules) -> Option<NotSent> {
    let facts = match now {
        UserRead::Missing => {
            return Some(NotSent::Superseded(
                "a read just before it finds no such user",
            ))
        }
        UserRead::Found(facts) => facts,
    };
    match (action, plan::decide(&facts, rules)) {
        (Action::Add, Decision::Add) | (Action::Remove, Decision::Remove) => None,
        (_, Decision::Skip(reason)) => Some(NotSent::Unchecked(reason)),
        (_, Decision::Exempt(_)) => Some(NotSent::Superseded(
            "a read just before it shows the user exempt",
        )),
        (_, Decision::OutOfScope) => Some(NotSent::Superseded(
            "a read just before it shows no console password",
        )),
        (Action::Add, _) => Some(NotSent::Superseded(
            "a read just before it shows an MFA device",
        )),
        (Action::Remove, _) => Some(NotSent::Superseded(
            "a read just before it shows no MFA device",
        )),
    }
}

/// Sends one change and settles what became of it. Any error but a refusal is checked with one
/// read: the SDK retries a call whose answer was lost, so even a final "no" may follow an attempt
/// IAM carried out. The change is `done` when the read shows it made; `failed` when it does not
/// and IAM's last answer was no; `unknown` when IAM never answered no (the request may still be
/// on its way, or IAM's reads may not show it yet) or when the read fails too.
async fn make(writer: Writer<'_>, change: &Change) -> ChangeResult {
    let error = match send(writer, change).await {
        Ok(()) => return ChangeResult::Done,
        // A caller IAM refuses was refused at every attempt.
        Err(e) if e.kind == FailureKind::Refused => return ChangeResult::Refused(e.to_string()),
        Err(e) => e,
    };
    let made = read_back(writer, change).await;
    if let Ok(true) = made {
        info!(subject = change.subject(), action = change.action_name(), error = %error, "change made although its last answer was an error (a read afterwards shows it)");
    }
    after_error(&error, made)
}

/// Whether IAM shows `change` made: the user's groups, or the account's virtual MFA devices.
async fn read_back(writer: Writer<'_>, change: &Change) -> Result<bool, ListError> {
    let (clients, page_size) = (writer.clients, writer.page_size);
    match change {
        Change::Membership(user, action) => {
            inventory::in_group(clients, user, writer.group, page_size)
                .await
                .map(|member| member == (*action == Action::Add))
        }
        Change::DeleteDevice(serial) => {
            inventory::devices::virtual_device_exists(clients, serial, page_size)
                .await
                .map(|exists| !exists)
        }
    }
}

/// What a write that ended in `error` came to, given whether a read afterwards shows it `made`.
fn after_error(error: &AwsError, made: Result<bool, ListError>) -> ChangeResult {
    match made {
        Ok(true) => ChangeResult::Done,
        Ok(false) if error.answered_no => ChangeResult::Refused(format!(
            "{error}; a read afterwards shows the change not made"
        )),
        Ok(false) => ChangeResult::Unknown(format!(
            "{error}; IAM never answered no, and a read afterwards does not show the change (yet)"
        )),
        Err(read) => ChangeResult::Unknown(format!(
            "{error}; the read to check whether it was made failed too ({read})"
        )),
    }
}

async fn send(writer: Writer<'_>, change: &Change) -> Result<(), AwsError> {
    let Writer { clients, group, .. } = writer;
    match change {
        Change::Membership(user, Action::Add) => clients
            .iam
            .add_user_to_group()
            .group_name(group)
            .user_name(user.as_str())
            .send()
            .await
            .map(|_| ())
            .map_err(|e| AwsError::iam("AddUserToGroup", &e)),
        Change::Membership(user, Action::Remove) => clients
            .iam
            .remove_user_from_group()
            .group_name(group)
            .user_name(user.as_str())
            .send()
            .await
            .map(|_| ())
            .map_err(|e| AwsError::iam("RemoveUserFromGroup", &e)),
        // IAM refuses to delete a device that a user has enabled in the meantime, so a race with
        // a user finishing their set-up cannot take their device away.
        Change::DeleteDevice(serial) => clients
            .iam
            .delete_virtual_mfa_device()
            .serial_number(serial)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| AwsError::iam("DeleteVirtualMFADevice", &e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::error::FailureKind;
    use crate::aws::pages::AwsCall;
    use crate::reconcile::plan::{ConsoleAccess, MfaState, UserFacts};

    fn error(kind: FailureKind, answered_no: bool) -> AwsError {
        AwsError {
            service: "iam",
            operation: "AddUserToGroup",
            kind,
            detail: "x".to_string(),
            answered_no,
        }
    }

    #[test]
    fn a_read_that_shows_the_change_makes_it_done_whatever_the_answer() {
        for answered_no in [true, false] {
            let result = after_error(&error(FailureKind::Timeout, answered_no), Ok(true));
            assert!(matches!(result, ChangeResult::Done), "{result:?}");
        }
    }

    #[test]
    fn a_no_and_a_read_without_the_change_is_refused() {
        let result = after_error(&error(FailureKind::Service, true), Ok(false));
        assert!(
            matches!(&result, ChangeResult::Refused(r) if r.ends_with("shows the change not made")),
            "{result:?}"
        );
        assert_eq!(result.as_str(), "failed");
    }

    #[test]
    fn no_answer_and_no_change_seen_is_unknown() {
        let result = after_error(&error(FailureKind::Timeout, false), Ok(false));
        assert!(matches!(result, ChangeResult::Unknown(_)), "{result:?}");
        assert_eq!(result.as_str(), "unknown");
        // A read that fails leaves even a 'no' unknown: an earlier attempt may have been made.
        let unreadable = ListError::nonsense(&AwsCall::iam("ListGroupsForUser"), "nothing");
        let result = after_error(&error(FailureKind::Service, true), Err(unreadable));
        assert!(
            matches!(&result, ChangeResult::Unknown(r) if r.contains("the read to check whether it was made failed too")),
            "{result:?}"
        );
    }

    fn rules() -> Rules {
        Rules {
            exempt: crate::config::ExemptRules {
                tags: [("forcemfa".to_string(), "exempt".to_string())].into(),
                ..Default::default()
            },
            console_users_only: false,
            own_user: None,
            deadlines: plan::Deadlines::default(),
        }
    }

    fn read(member: bool, mfa: MfaState, tags: &[(&str, &str)]) -> UserRead {
        UserRead::Found(UserFacts {
            name: UserName::from_iam("bob"),
            path: "/".into(),
            tags: tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            member,
            mfa,
            console: ConsoleAccess::NotChecked,
            created: Some(0),
        })
    }

    #[test]
    fn a_fresh_read_leaves_out_a_change_it_no_longer_calls_for_and_any_it_cannot_confirm() {
        let rules = rules();
        let (add, remove) = (Action::Add, Action::Remove);
        assert!(still_called_for(add, read(false, MfaState::Absent, &[]), &rules).is_none());
        assert!(still_called_for(remove, read(true, MfaState::Present, &[]), &rules).is_none());
        let stale_add = still_called_for(add, read(false, MfaState::Present, &[]), &rules).unwrap();
        assert_eq!(
            stale_add.to_string(),
            "left out: a read just before it shows an MFA device"
        );
        assert_eq!(ChangeResult::NotSent(stale_add).as_str(), "superseded");
        let stale_remove = still_called_for(remove, read(true, MfaState::Absent, &[]), &rules);
        assert!(
            matches!(stale_remove, Some(NotSent::Superseded(r)) if r.ends_with("no MFA device"))
        );
        // Made exempt since: never touched, whichever way the change went.
        let exempt = [("forcemfa", "exempt")];
        for (action, member) in [(add, false), (remove, true)] {
            let left_out =
                still_called_for(action, read(member, MfaState::NotChecked, &exempt), &rules);
            assert!(matches!(left_out, Some(NotSent::Superseded(r)) if r.ends_with("user exempt")));
        }
        assert!(matches!(
            still_called_for(add, UserRead::Missing, &rules),
            Some(NotSent::Superseded(_))
        ));
        let unread = still_called_for(
            add,
            read(false, MfaState::Unknown("throttled".into()), &[]),
            &rules,
        )
        .unwrap();
        assert_eq!(
            ChangeResult::NotSent(unread).as_str(),
            "failed",
            "a user whose state cannot be read is left as it is, and the change counts as not made"
        );
    }

    #[test]
    fn a_change_not_sent_says_why_and_counts_as_failed() {
        let result = ChangeResult::NotSent(NotSent::Stopped(StopReason::ShuttingDown));
        assert_eq!(result.as_str(), "failed");
        assert_eq!(
            result.reason().as_deref(),
            Some("not made: forcemfa is shutting down")
        );
    }
}
