//! The AWS SDK set-up: the standard credential chain and environment, IAM's global endpoint, the
//! retry and timeout policy, and a count of every request sent, by operation.

pub mod answers;
pub mod error;
pub mod identity;

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
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeTransmitInterceptorContextRef, FinalizerInterceptorContextRef,
};
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;

use crate::config::{AwsSettings, RetryMode};
use crate::sync::lock;
use answers::AnswerCheck;

/// Retry tokens per account: a retry costs 5, a retried timeout 10, a success returns 1.
const RETRY_QUOTA: usize = 10_000;

/// IAM is a global service; without a configured region, sign for us-east-1.
const FALLBACK_REGION: &str = "us-east-1";

/// Loads the shared SDK configuration from the standard chain (AWS_PROFILE, AWS_REGION,
/// AWS_ENDPOINT_URL, web identity, ECS, IMDS, ...) with forcemfa's retry and timeout policy.
pub async fn load_sdk_config(settings: &AwsSettings) -> SdkConfig {
    let region = RegionProviderChain::default_provider().or_else(Region::new(FALLBACK_REGION));
    // Adaptive retry slows the client down when IAM throttles, rather than hammering it.
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
    aws_config::defaults(BehaviorVersion::latest())
        .region(region)
        .retry_config(retry)
        .timeout_config(timeouts)
        .load()
        .await
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
/// and the call budget see.
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

    fn read_before_transmit(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let op = operation(cfg);
        self.with(|c| *c.calls.entry(op).or_default() += 1);
        Ok(())
    }

    fn read_after_attempt(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if matches!(context.output_or_error(), Some(Err(_))) {
            let op = operation(cfg);
            self.with(|c| *c.errors.entry(op).or_default() += 1);
        }
        Ok(())
    }
}

/// The clients one account is reconciled with, for one run: they count that run's calls only.
#[derive(Debug, Clone)]
pub struct AccountClients {
    pub iam: aws_sdk_iam::Client,
    pub sts: aws_sdk_sts::Client,
    pub calls: CallCounter,
}

/// An account's clients as the pool keeps them: one set of connections, credentials and retry
/// budget for every run of the account, full or event-driven, however many run at once.
#[derive(Debug, Clone)]
pub struct SharedClients {
    iam: aws_sdk_iam::Client,
    sts: aws_sdk_sts::Client,
}

impl SharedClients {
    /// Clients on `sdk`'s credentials with a retry partition of their own, named after
    /// `partition` (the account): throttling in one account spends only that account's retry
    /// budget and slows only its rate limiter.
    pub fn new(sdk: &SdkConfig, partition: &str) -> SharedClients {
        // A larger retry quota than the SDK's 500 tokens (100 retries): IAM throttling is
        // expected, backoff and the adaptive limiter already protect IAM, and running out of
        // quota would skip users a few more patient retries would have read.
        let retry_partition = RetryPartition::custom(format!("forcemfa-{partition}"))
            .token_bucket(TokenBucket::new(RETRY_QUOTA))
            .build();
        let iam = aws_sdk_iam::Client::from_conf(
            aws_sdk_iam::config::Builder::from(sdk)
                .retry_partition(retry_partition.clone())
                .interceptor(AnswerCheck)
                .build(),
        );
        let sts = aws_sdk_sts::Client::from_conf(
            aws_sdk_sts::config::Builder::from(sdk)
                .retry_partition(retry_partition)
                .interceptor(AnswerCheck)
                .build(),
        );
        SharedClients { iam, sts }
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
        }
    }
}

impl AccountClients {
    /// Clients of their own (commands that reconcile nothing: bootstrap, policy).
    pub fn new(sdk: &SdkConfig, partition: &str) -> AccountClients {
        SharedClients::new(sdk, partition).for_run()
    }
}
