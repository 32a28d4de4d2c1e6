//! Who the credentials belong to: sts:GetCallerIdentity, the one call every command starts with.

use crate::arn::Arn;
use crate::aws::{AccountClients, AwsError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub account_id: String,
    pub arn: String,
    /// The user's name, when the credentials are an IAM user's own (not a role's, not root's).
    pub user: Option<String>,
}

/// Asks STS whose credentials these are; the error says why not.
pub async fn caller_identity(clients: &AccountClients) -> Result<Identity, String> {
    let out = clients
        .sts
        .get_caller_identity()
        .send()
        .await
        .map_err(|e| AwsError::of("sts", "GetCallerIdentity", &e).detail)?;
    let account_id = out
        .account()
        .filter(|a| !a.is_empty())
        .ok_or_else(|| "the answer holds no account id".to_string())?
        .to_string();
    let arn = out.arn().unwrap_or_default().to_string();
    Ok(Identity {
        user: Arn::parse(&arn)
            .and_then(|a| a.user_name())
            .map(str::to_string),
        account_id,
        arn,
    })
}
