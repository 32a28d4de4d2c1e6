//! Who the credentials belong to: sts:GetCallerIdentity, the one call every command starts with.

use crate::arn::Arn;
use crate::aws::error::AwsError;
use crate::aws::AccountClients;
use crate::user_name::UserName;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub account_id: String,
    pub arn: String,
    /// The user's name, when the credentials are an IAM user's own (not a role's, not root's).
    pub user: Option<UserName>,
}

/// Why the credentials' identity is not known.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error("{}", .0.detail)]
    Call(AwsError),
    #[error("the answer holds no account id")]
    NoAccount,
}

impl IdentityError {
    /// The kind of failure, as a label: the call's (`throttled`, `timeout`, ...), or
    /// `invalid_response` for an answer that names no account.
    pub fn metric_label(&self) -> &'static str {
        match self {
            IdentityError::Call(e) => e.kind.metric_label(),
            IdentityError::NoAccount => "invalid_response",
        }
    }
}

/// Asks STS whose credentials these are.
pub async fn caller_identity(clients: &AccountClients) -> Result<Identity, IdentityError> {
    let out = clients
        .sts
        .get_caller_identity()
        .send()
        .await
        .map_err(|e| IdentityError::Call(AwsError::of("sts", "GetCallerIdentity", &e)))?;
    let account_id = out
        .account()
        .filter(|a| !a.is_empty())
        .ok_or(IdentityError::NoAccount)?
        .to_string();
    let arn = out.arn().unwrap_or_default().to_string();
    Ok(Identity {
        user: Arn::parse(&arn)
            .and_then(|a| a.user_name())
            .map(UserName::from_iam),
        account_id,
        arn,
    })
}
