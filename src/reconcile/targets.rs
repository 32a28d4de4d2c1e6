//! Which accounts a run covers (its own, listed roles, or every account of an organization) and
//! the clients for each: one set per account, reused across runs, each with its own retry budget
//! and its own pacer, so that one throttled or broken account does not starve the others and every
//! run in an account is paced together.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use aws_config::sts::AssumeRoleProvider;
use aws_config::timeout::TimeoutConfig;
use aws_config::{Region, SdkConfig};
use aws_credential_types::provider::SharedCredentialsProvider;

use crate::arn::Partition;
use futures::TryFutureExt;

use crate::aws::identity::IdentityError;
use crate::aws::pages::{every_page, AwsCall, ListError};
use crate::aws::{identity, load_sdk_config, AccountClients, AwsError, CallCounter, SharedClients};
use crate::config::{AccountTarget, AwsSettings, Config};
use crate::sync::lock;

use super::stop::StopReason;

/// Why the accounts of a run could not be found.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DiscoveryError {
    #[error("cannot determine the identity of the credentials (sts:GetCallerIdentity): {0}")]
    Identity(IdentityError),
    #[error("account_mismatch: the credentials forcemfa runs with belong to account {actual}, not {expected} (`account_id`): the organization's accounts were not listed")]
    AccountMismatch { expected: String, actual: String },
    #[error(transparent)]
    List(#[from] ListError),
    #[error("no account reconciled: {0}")]
    Stopped(StopReason),
}

/// How long the organization's account list serves to route events before it is read again.
pub const ACCOUNTS_FRESH_FOR: Duration = Duration::from_secs(600);
/// An event for an account not in the list reads it again, at most this often.
pub const ACCOUNTS_REREAD_AFTER: Duration = Duration::from_secs(60);

/// The organization's accounts as last listed, and forcemfa's own account once asked: where
/// events are routed.
#[derive(Debug, Default)]
pub struct AccountsCache {
    pub listed: Option<(Instant, Vec<Target>)>,
    pub own: Option<String>,
}

const LIST_ACCOUNTS: AwsCall = AwsCall {
    service: "organizations",
    operation: "ListAccounts",
};

/// Session name of the roles forcemfa assumes, as CloudTrail shows it.
const SESSION_NAME: &str = "forcemfa";

/// One account to reconcile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The account of forcemfa's own credentials.
    Own,
    Role(AccountTarget),
}

impl Target {
    /// The account id, when known before any call.
    pub fn account_id(&self) -> Option<&str> {
        match self {
            Target::Own => None,
            Target::Role(t) => Some(&t.account_id),
        }
    }

    pub fn name(&self) -> Option<&str> {
        match self {
            Target::Own => None,
            Target::Role(t) => t.name.as_deref(),
        }
    }

    pub fn key(&self) -> String {
        match self {
            Target::Own => "own".to_string(),
            Target::Role(t) => t.role_arn.clone(),
        }
    }
}

/// The targets of a configuration without an organization (no discovery needed).
pub fn listed_targets(config: &Config) -> Vec<Target> {
    if config.accounts.is_empty() && config.organization.is_none() {
        vec![Target::Own]
    } else {
        config.accounts.iter().cloned().map(Target::Role).collect()
    }
}

/// Adds the discovered organization accounts to the listed ones: active, not excluded, not
/// already listed (a listed entry wins, with its own role and external id).
pub fn with_organization(
    listed: Vec<Target>,
    discovered: &[String],
    config: &Config,
    partition: Partition,
) -> Vec<Target> {
    let Some(org) = &config.organization else {
        return listed;
    };
    let mut seen: BTreeSet<String> = listed
        .iter()
        .filter_map(|t| t.account_id().map(str::to_string))
        .collect();
    let mut targets = listed;
    for id in discovered {
        if org.exclude_accounts.contains(id) || !seen.insert(id.clone()) {
            continue;
        }
        targets.push(Target::Role(AccountTarget {
            account_id: id.clone(),
            role_arn: format!("arn:{partition}:iam::{id}:role/{}", org.role_name),
            external_id: org.external_id.clone(),
            name: None,
        }));
    }
    targets
}

/// The clients of every account, created on first use and kept.
pub struct ClientPool {
    base: SdkConfig,
    settings: AwsSettings,
    own: SharedClients,
    roles: Mutex<HashMap<String, SharedClients>>,
    organizations: aws_sdk_organizations::Client,
    /// Calls to AWS Organizations (account discovery).
    pub discovery_calls: CallCounter,
}

impl ClientPool {
    pub async fn new(config: &Config) -> ClientPool {
        let base = load_sdk_config(&config.aws).await;
        let discovery_calls = CallCounter::default();
        let organizations = aws_sdk_organizations::Client::from_conf(
            aws_sdk_organizations::config::Builder::from(&base)
                .interceptor(discovery_calls.clone())
                .build(),
        );
        ClientPool {
            own: SharedClients::new(&base, "own", &config.aws),
            base,
            settings: config.aws.clone(),
            roles: Mutex::new(HashMap::new()),
            organizations,
            discovery_calls,
        }
    }

    /// The clients for one run in `target`: for a role, credentials from sts:AssumeRole (cached
    /// and refreshed by the SDK before they expire).
    pub async fn clients(&self, target: &Target) -> AccountClients {
        self.shared_clients(target).await.for_run()
    }

    async fn shared_clients(&self, target: &Target) -> SharedClients {
        let Target::Role(role) = target else {
            return self.own.clone();
        };
        let key = target.key();
        if let Some(c) = lock(&self.roles).get(&key) {
            return c.clone();
        }
        let mut provider = AssumeRoleProvider::builder(&role.role_arn)
            .session_name(SESSION_NAME)
            .configure(&self.base);
        if let Some(id) = &role.external_id {
            provider = provider.external_id(id);
        }
        let provider = provider.build().await;
        let sdk = self
            .base
            .to_builder()
            .credentials_provider(SharedCredentialsProvider::new(provider))
            .build();
        let clients = SharedClients::new(&sdk, &role.account_id, &self.settings);
        lock(&self.roles).entry(key).or_insert(clients).clone()
    }

    /// A client for the SQS queue IAM's events arrive on, in `region` when the queue's URL names
    /// one. Its calls may last `long_poll` longer than IAM's: SQS holds a receive open that long
    /// when the queue is empty.
    pub fn sqs(&self, region: Option<&str>, long_poll: Duration) -> aws_sdk_sqs::Client {
        let limit = Duration::from_secs(self.settings.operation_timeout_secs) + long_poll;
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(self.settings.connect_timeout_secs))
            .operation_attempt_timeout(limit)
            .operation_timeout(limit + limit)
            .build();
        let mut config = aws_sdk_sqs::config::Builder::from(&self.base).timeout_config(timeouts);
        if let Some(region) = region {
            config = config.region(Region::new(region.to_string()));
        }
        aws_sdk_sqs::Client::from_conf(config.build())
    }

    /// The accounts a run covers. Discovers the organization's active accounts when configured.
    pub async fn targets(&self, config: &Config) -> Result<Vec<Target>, DiscoveryError> {
        let listed = listed_targets(config);
        if config.organization.is_none() {
            return Ok(listed);
        }
        // Another organization's accounts are not the ones meant, even where its roles can be
        // assumed: with `account_id`, the management account is checked before it is listed.
        if let Some(expected) = &config.account_id {
            let own = identity::caller_identity(&self.own.for_run())
                .await
                .map_err(DiscoveryError::Identity)?;
            if own.account_id != *expected {
                return Err(DiscoveryError::AccountMismatch {
                    expected: expected.clone(),
                    actual: own.account_id,
                });
            }
        }
        let mut discovered = Vec::new();
        every_page(
            LIST_ACCOUNTS,
            |token| {
                self.organizations
                    .list_accounts()
                    .set_next_token(token)
                    .send()
                    .map_err(|e| AwsError::of("organizations", LIST_ACCOUNTS.operation, &e))
            },
            |page| {
                for account in page.accounts() {
                    let active = account.status().is_some_and(|s| s.as_str() == "ACTIVE");
                    if let (true, Some(id)) = (active, account.id()) {
                        discovered.push(id.to_string());
                    }
                }
                Ok::<(), DiscoveryError>(())
            },
        )
        .await?;
        discovered.sort();
        Ok(with_organization(
            listed,
            &discovered,
            config,
            self.partition(),
        ))
    }

    /// The SDK configuration of forcemfa's own credentials, for the other services it calls.
    pub fn sdk(&self) -> &SdkConfig {
        &self.base
    }

    /// The partition of the configured region (aws, aws-cn, aws-us-gov).
    fn partition(&self) -> Partition {
        Partition::of_region(
            self.base
                .region()
                .map(std::convert::AsRef::as_ref)
                .unwrap_or_default(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        Config::parse(text).unwrap()
    }

    #[test]
    fn without_accounts_the_own_account_is_the_target() {
        assert_eq!(listed_targets(&config("")), vec![Target::Own]);
    }

    #[test]
    fn organization_accounts_join_the_listed_ones() {
        let c = config(
            r#"
            [[accounts]]
            role_arn = "arn:aws:iam::222222222222:role/special"
            external_id = "ext-special"
            [organization]
            role_name = "forcemfa"
            exclude_accounts = ["444444444444"]
            external_id = "ext-org"
            "#,
        );
        let discovered: Vec<String> = ["111111111111", "222222222222", "444444444444"]
            .iter()
            .map(std::string::ToString::to_string)
            .collect();
        let targets = with_organization(listed_targets(&c), &discovered, &c, Partition::Aws);
        let arns: Vec<String> = targets
            .iter()
            .map(|t| match t {
                Target::Role(r) => format!("{} {:?}", r.role_arn, r.external_id),
                Target::Own => "own".into(),
            })
            .collect();
        assert_eq!(
            arns,
            [
                "arn:aws:iam::222222222222:role/special Some(\"ext-special\")",
                "arn:aws:iam::111111111111:role/forcemfa Some(\"ext-org\")",
            ]
        );
    }
}
