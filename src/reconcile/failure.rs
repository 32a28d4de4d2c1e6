//! Why an account was not (wholly) reconciled, as one enum: its message goes into the report's
//! `error`, its [`AccountError::metric_label`] into `error_kind` and the `kind` label of
//! `forcemfa_account_errors_total`.

use crate::aws::identity::IdentityError;
use crate::aws::pages::ListError;

use super::stop::StopReason;

/// A failure that stops the whole account (or, for the guard and a stop, its changes).
#[derive(Debug, Clone, thiserror::Error)]
pub enum AccountError {
    #[error("cannot determine the identity of the credentials (sts:GetCallerIdentity): {0}")]
    Identity(IdentityError),
    #[error("group {group} does not exist in account {account_id}: create it, or set `group` to the enforcement group's name")]
    GroupMissing { group: String, account_id: String },
    /// A listing that could not be read to its end, or held what cannot be a fact.
    #[error(transparent)]
    List(ListError),
    /// The credentials are another account's than the one meant (a role whose trust or answer
    /// is wrong, a profile for another account): nothing is read or changed with them.
    #[error("the credentials {credentials} belong to account {actual}, not {expected}: nothing was read or changed")]
    AccountMismatch {
        expected: String,
        actual: String,
        /// What the credentials were meant to be: a role's ARN, or forcemfa's own credentials.
        credentials: String,
    },
    /// The plan had more changes than `max_changes`: none was made.
    #[error("the plan has {planned} changes, more than max_changes = {max}: no change made (raise max_changes or pass --max-changes to proceed)")]
    GuardTripped { planned: u64, max: u64 },
    #[error("stopped before the account was read: {0}")]
    StoppedBeforeRead(StopReason),
    #[error("no change made: {0}")]
    StoppedBeforeChanges(StopReason),
    #[error("{unfinished} changes not made: {reason}")]
    StoppedPartway {
        unfinished: usize,
        reason: StopReason,
    },
    /// Still at work when the run was abandoned, its report cut short.
    #[error("not finished: {0}; abandoned with its calls still under way (see the audit log for changes sent)")]
    Abandoned(StopReason),
}

impl From<ListError> for AccountError {
    fn from(e: ListError) -> AccountError {
        AccountError::List(e)
    }
}

impl AccountError {
    /// A short stable label, for logs and metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            // The kind of failure the call met: throttled, refused, timeout, ...
            AccountError::Identity(e) => e.metric_label(),
            AccountError::GroupMissing { .. } => "group_missing",
            AccountError::List(e) => e.metric_label(),
            AccountError::AccountMismatch { .. } => "account_mismatch",
            AccountError::GuardTripped { .. } => "guard_tripped",
            AccountError::StoppedBeforeRead(_)
            | AccountError::StoppedBeforeChanges(_)
            | AccountError::StoppedPartway { .. }
            | AccountError::Abandoned(_) => "stopped",
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn every_stop_is_labelled_stopped() {
        let reason = StopReason::Deadline(Duration::from_secs(5));
        for e in [
            AccountError::StoppedBeforeRead(reason),
            AccountError::StoppedBeforeChanges(reason),
            AccountError::StoppedPartway {
                unfinished: 2,
                reason,
            },
            AccountError::Abandoned(reason),
        ] {
            assert_eq!(e.metric_label(), "stopped", "{e}");
        }
        assert_eq!(
            AccountError::StoppedPartway {
                unfinished: 2,
                reason: StopReason::ShuttingDown
            }
            .to_string(),
            "2 changes not made: forcemfa is shutting down"
        );
    }

    #[test]
    fn an_identity_failure_is_labelled_by_its_kind() {
        assert_eq!(
            AccountError::Identity(IdentityError::NoAccount).metric_label(),
            "invalid_response"
        );
    }
}
