//! The AWS SDK set-up: the standard credential chain and environment, IAM's global endpoint, the
//! retry and timeout policy, the pacing of every account's IAM calls, and a count of every request
//! sent, by operation.

pub mod answers;
pub mod error;
pub mod identity;
pub mod pacing;
pub mod pages;

pub use error::AwsError;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_config::meta::region::RegionProviderChain;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_iam::config::retry::{RetryPartition, TokenBucket};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::http::SharedHttpClient;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeTransmitInterceptorContextMut, FinalizerInterceptorContextRef,
};
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::{
    RuntimeComponents, RuntimeComponentsBuilder,
};
use aws_smithy_runtime_api::client::runtime_plugin::RuntimePlugin;
use aws_smithy_types::config_bag::ConfigBag;

use crate::config::{AwsSettings, RetryMode};
use crate::sync::lock;
use answers::AnswerCheck;
use pacing::{Dispatch, PaceFeedback, PacedHttpClient, Pacer};

/// Retry tokens per account: a retry costs 5, a retried timeout 10, a success returns 1.
const RETRY_QUOTA: usize = 10_000;

/// IAM is a global service; without a configured region, sign for us-east-1.
const FALLBACK_REGION: &str = "us-east-1";

/// Loads the shared SDK configuration from the standard chain (AWS_PROFILE, AWS_REGION,
/// AWS_ENDPOINT_URL, web identity, ECS, IMDS, ...) with forcemfa's retry and timeout policy.
pub async fn load_sdk_config(settings: &AwsSettings) -> SdkConfig {
    let region = RegionProviderChain::default_provider().or_else(Region::new(FALLBACK_REGION));
    // The account's pacing holds IAM's rate; adaptive retry adds the SDK's own limiter on top.
    let retry = match settings.retry_mode {
        RetryMode::Adaptive => RetryConfig::adaptive(),
        RetryMode::Standard => RetryConfig::standard(),
    }
    .with_max_attempts(settings.max_attempts)
    .with_initial_backoff(Duration::from_millis(200))
    .with_max_backoff(Duration::from_secs(settings.max_backoff_secs));
    let timeouts = TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(settings.connect_timeout_secs))
        .operation_attempt_timeout(Duration::from_secs(settings.operation_timeout_secs.min(30)))
        .operation_timeout(Duration::from_secs(settings.operation_timeout_secs))
        .build();
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .region(region)
        .retry_config(retry)
        .timeout_config(timeouts);
    if let Some(http) = default_http_client() {
        loader = loader.http_client(http);
    }
    loader.load().await
}

/// A new instance of the SDK's default HTTPS client. Set on the shared configuration, it is the one
/// every client built from it uses (IAM's of every account, STS's, the role providers'), so that
/// they share one connection pool and one TLS set-up instead of holding one each.
fn default_http_client() -> Option<SharedHttpClient> {
    let plugin = aws_smithy_runtime::client::defaults::default_http_client_plugin_v2(
        BehaviorVersion::latest(),
    )?;
    plugin
        .runtime_components(&RuntimeComponentsBuilder::new("forcemfa"))
        .http_client()
}

/// Requests sent and failed attempts, by operation name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallCounts {
    pub calls: BTreeMap<String, u64>,
    /// Attempts that ended in an error: IAM's (throttling included), a timeout, a broken
    /// connection.
    pub errors: BTreeMap<String, u64>,
}

/// Counts requests sent to AWS by operation name, retries included: that is what IAM's throttling
/// and the call budget see. An attempt abandoned before its request left (waiting for the
/// pacing) is not counted.
#[derive(Debug, Clone, Default)]
pub struct CallCounter {
    counts: Arc<Mutex<CallCounts>>,
}

fn operation(cfg: &ConfigBag) -> String {
    cfg.load::<Metadata>()
        .map(|m| m.name().to_string())
        .unwrap_or_else(|| "unknown".to_string())
}

impl CallCounter {
    fn with<T>(&self, f: impl FnOnce(&mut CallCounts) -> T) -> T {
        f(&mut lock(&self.counts))
    }

    /// The counts since the last `take`, resetting them.
    pub fn take(&self) -> CallCounts {
        self.with(std::mem::take)
    }
}

impl Intercept for CallCounter {
    fn name(&self) -> &'static str {
        "forcemfa::CallCounter"
    }

    /// Tags the attempt's request, so that the pacing can tell whether it left the process.
    fn modify_before_transmit(
        &self,
        context: &mut BeforeTransmitInterceptorContextMut<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let dispatch = Dispatch::default();
        context.request_mut().add_extension(dispatch.clone());
        cfg.interceptor_state().store_put(dispatch);
        Ok(())
    }

    /// Counts the attempt as a call when its request went out: one given up while it waited for
    /// its turn in the pacing or for a connection never reached AWS.
    fn read_after_attempt(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        // None: the attempt failed before its request was ready (credentials, signing).
        let dispatch = cfg.load::<Dispatch>().cloned();
        if dispatch.is_some() {
            cfg.interceptor_state().unset::<Dispatch>();
        }
        let went_out = dispatch.as_ref().is_some_and(Dispatch::went_out);
        let op = operation(cfg);
        // IAM's "no such entity" (HTTP 404) answers a lookup: a user without a console password,
        // a user deleted since it was listed. It is not a failed attempt; a write's still is.
        let lookup = op.starts_with("Get") || op.starts_with("List");
        let not_found = lookup
            && context
                .response()
                .is_some_and(|r| r.status().as_u16() == 404);
        let failed = matches!(context.output_or_error(), Some(Err(_))) && !not_found;
        self.with(|c| {
            // A failed attempt is counted even when its request never left (no connection, a
            // timeout while it waited): an unreachable endpoint shows in the errors.
            if failed {
                *c.errors.entry(op.clone()).or_default() += 1;
            }
            if went_out {
                *c.calls.entry(op).or_default() += 1;
            }
        });
        Ok(())
    }
}

/// The clients one account is reconciled with, for one run: they count that run's calls only, and
/// share the account's pacer with every other run of it.
#[derive(Debug, Clone)]
pub struct AccountClients {
    pub iam: aws_sdk_iam::Client,
    pub sts: aws_sdk_sts::Client,
    pub calls: CallCounter,
    /// Paces every IAM request of the account, retries included.
    pub pacer: Pacer,
}

/// An account's clients as the pool keeps them: one set of connections, credentials and retry
/// budget for every run of the account, full or event-driven, however many run at once.
#[derive(Debug, Clone)]
pub struct SharedClients {
    iam: aws_sdk_iam::Client,
    sts: aws_sdk_sts::Client,
    pacer: Pacer,
}

impl SharedClients {
    /// Clients on `sdk`'s credentials with a retry partition of their own, named after
    /// `partition` (the account), and a pacer of their own: throttling in one account spends only
    /// that account's retry budget and slows only its own calls.
    pub fn new(sdk: &SdkConfig, partition: &str, settings: &AwsSettings) -> SharedClients {
        let pacer = Pacer::new(
            f64::from(settings.max_requests_per_second),
            f64::from(settings.burst),
        );
        // A larger retry quota than the SDK's 500 tokens (100 retries): IAM throttling is
        // expected, backoff and the pacing already protect IAM, and running out of
        // quota would skip users a few more patient retries would have read.
        let retry_partition = RetryPartition::custom(format!("forcemfa-{partition}"))
            .token_bucket(TokenBucket::new(RETRY_QUOTA))
            .build();
        let mut iam = aws_sdk_iam::config::Builder::from(sdk)
            .retry_partition(retry_partition.clone())
            .interceptor(AnswerCheck)
            .interceptor(PaceFeedback::new(pacer.clone()));
        if let Some(http) = sdk.http_client().or_else(default_http_client) {
            iam = iam.http_client(PacedHttpClient::new(http, pacer.clone()));
        }
        let iam = aws_sdk_iam::Client::from_conf(iam.build());
        let sts = aws_sdk_sts::Client::from_conf(
            aws_sdk_sts::config::Builder::from(sdk)
                .retry_partition(retry_partition)
                .interceptor(AnswerCheck)
                .build(),
        );
        SharedClients { iam, sts, pacer }
    }

    /// The same clients counting into a counter of their own, so that two runs of one account
    /// at once each report their own calls.
    pub fn for_run(&self) -> AccountClients {
        let calls = CallCounter::default();
        AccountClients {
            iam: aws_sdk_iam::Client::from_conf(
                self.iam
                    .config()
                    .to_builder()
                    .interceptor(calls.clone())
                    .build(),
            ),
            sts: aws_sdk_sts::Client::from_conf(
                self.sts
                    .config()
                    .to_builder()
                    .interceptor(calls.clone())
                    .build(),
            ),
            calls,
            pacer: self.pacer.clone(),
        }
    }
}

impl AccountClients {
    /// Clients of their own (commands that reconcile nothing: bootstrap, policy).
    pub fn new(sdk: &SdkConfig, partition: &str, settings: &AwsSettings) -> AccountClients {
        SharedClients::new(sdk, partition, settings).for_run()
    }
}
