//! The validated settings of each part of the configuration, as the rest of forcemfa reads them.
//! Their defaults are in `defaults`, their checks in `validate`.

use crate::user_name::UserName;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Who is never added to nor removed from the group.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExemptRules {
    pub users: Vec<UserName>,
    pub path_prefixes: Vec<String>,
    pub tags: BTreeMap<String, String>,
}

/// The SDK's retry strategies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryMode {
    /// Exponential backoff with jitter, plus the SDK's own client-side rate limiter, which slows
    /// every later call down after throttling (on top of the account's pacing).
    Adaptive,
    /// Exponential backoff with jitter only; the account's pacing holds the rate.
    Standard,
}

/// How forcemfa talks to IAM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsSettings {
    /// Upper bound on IAM calls in flight at once; IAM throttles at low rates.
    pub max_concurrency: usize,
    /// Attempts per call, including the first, under the SDK's adaptive retry.
    pub max_attempts: u32,
    pub connect_timeout_secs: u64,
    /// Whole-operation timeout, retries included.
    pub operation_timeout_secs: u64,
    /// MaxItems asked of every paginated list call.
    pub page_size: i32,
    pub retry_mode: RetryMode,
    /// Upper bound on one wait between attempts (and on the adaptive rate limiter's delay).
    pub max_backoff_secs: u64,
    /// Accounts reconciled at once. IAM's limits are per account, so accounts run side by side;
    /// each one in flight holds up to `max_concurrency` connections and a few hundred KiB.
    pub max_accounts_in_parallel: usize,
    /// IAM calls a second per account, at most, whatever rate IAM turns out to allow.
    pub max_requests_per_second: u32,
    /// IAM calls per account that may go out faster than the rate after a quiet spell.
    pub burst: u32,
}

/// An account reconciled through a role forcemfa assumes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountTarget {
    pub account_id: String,
    pub role_arn: String,
    pub external_id: Option<String>,
    /// A label for reports and logs.
    pub name: Option<String>,
}

/// Every active account of an AWS Organization, through a role of the same name in each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrganizationSettings {
    pub role_name: String,
    pub exclude_accounts: Vec<String>,
    pub external_id: Option<String>,
}

/// Deleting abandoned virtual MFA devices (opt-in).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CleanupSettings {
    pub unassigned_mfa_devices: bool,
    /// A device is deleted only once it has been seen unassigned for at least this long, so that
    /// a user setting one up this minute is never disturbed.
    pub unassigned_min_age: std::time::Duration,
    /// Where first sightings are kept between one-shot runs (the service keeps them in memory).
    pub state_file: Option<PathBuf>,
}

/// Choices in the enforcement group's policy (`forcemfa policy force-mfa-group`, `bootstrap`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupPolicySettings {
    /// Let a request signed with a member's long-term access key alone (no console session, no
    /// MFA) create and enable an MFA device and change the password. Off by default: with it,
    /// whoever holds a leaked key can enrol a device of their own and get the key's full
    /// permissions back. For organisations whose API-only users enrol from the CLI.
    pub allow_enrolment_with_access_keys: bool,
}
