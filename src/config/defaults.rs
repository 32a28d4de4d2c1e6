//! The value every key takes when neither the file nor the environment sets it, all in one place:
//! validation and the settings' `Default`s read them from here. `config/forcemfa.toml` shows them
//! (a test holds the two together). Lists and tables not listed here default to empty, and the
//! keys not listed here (`max_changes`, `audit_log`, `admin.token_file`, `cleanup.state_file`,
//! `account_id`, `[organization]`, `[events]`, `rollout.enforce_from`, `rollout.grace_period`)
//! to absent.

use std::time::Duration;

use super::settings::{AwsSettings, CleanupSettings, GroupPolicySettings, RetryMode};

/// The enforcement group.
pub const GROUP: &str = "ForceMFA";
/// Every hour, on the hour.
pub const SCHEDULE: &str = "0 0 * * * *";
/// The deadline of a run unless the schedule asks for a shorter one.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(45 * 60);
pub const DRY_RUN: bool = false;
pub const CONSOLE_USERS_ONLY: bool = false;
pub const RUN_ON_START: bool = true;
pub const LOG_LEVEL: &str = "info";
/// Loopback only: the admin listener takes `POST /reconcile` without a token there.
pub const ADMIN_LISTEN: &str = "127.0.0.1:9464";

/// `[aws]`: IAM throttles at low rates, so few calls go at once and each may be retried often.
pub const MAX_CONCURRENCY: usize = 8;
pub const MAX_ATTEMPTS: u32 = 8;
pub const CONNECT_TIMEOUT_SECS: u64 = 5;
pub const OPERATION_TIMEOUT_SECS: u64 = 60;
/// The most IAM returns in one page.
pub const PAGE_SIZE: i32 = 1000;
pub const RETRY_MODE: RetryMode = RetryMode::Standard;
pub const MAX_BACKOFF_SECS: u64 = 20;
pub const MAX_ACCOUNTS_IN_PARALLEL: usize = 32;
/// The pacing finds the rate IAM allows below this.
pub const MAX_REQUESTS_PER_SECOND: u32 = 200;
pub const BURST: u32 = 100;

/// `[cleanup]`: off unless asked for.
pub const UNASSIGNED_MFA_DEVICES: bool = false;
pub const UNASSIGNED_MIN_AGE: Duration = Duration::from_secs(3600);

/// `[group_policy]`: a leaked access key must not be able to enrol a device of its own.
pub const ALLOW_ENROLMENT_WITH_ACCESS_KEYS: bool = false;

/// `[rollout]`: a key used within the last 30 days is one some automation still signs with.
pub const KEYS_IN_USE_WITHIN: Duration = Duration::from_secs(30 * 24 * 3600);
pub const HOLD_KEYS_IN_USE: bool = false;

/// `[notify]`: the tag AWS's own examples use for an address; reminders a week and a day before
/// a deadline; SES's sending rate in its sandbox.
pub const EMAIL_TAG: &str = "email";
pub const REMINDERS: [Duration; 2] = [
    Duration::from_secs(7 * 24 * 3600),
    Duration::from_secs(24 * 3600),
];
pub const EMAILS_PER_SECOND: u32 = 1;

/// `[events]`: SQS's longest long poll.
pub const EVENTS_WAIT: Duration = Duration::from_secs(20);
pub const EVENTS_BATCH_WINDOW: Duration = Duration::from_millis(200);
/// The CloudFormation queue's own visibility timeout.
pub const EVENTS_VISIBILITY_TIMEOUT: Duration = Duration::from_secs(300);

impl Default for AwsSettings {
    fn default() -> Self {
        AwsSettings {
            max_concurrency: MAX_CONCURRENCY,
            max_attempts: MAX_ATTEMPTS,
            connect_timeout_secs: CONNECT_TIMEOUT_SECS,
            operation_timeout_secs: OPERATION_TIMEOUT_SECS,
            page_size: PAGE_SIZE,
            retry_mode: RETRY_MODE,
            max_backoff_secs: MAX_BACKOFF_SECS,
            max_accounts_in_parallel: MAX_ACCOUNTS_IN_PARALLEL,
            max_requests_per_second: MAX_REQUESTS_PER_SECOND,
            burst: BURST,
        }
    }
}

impl Default for CleanupSettings {
    fn default() -> Self {
        CleanupSettings {
            unassigned_mfa_devices: UNASSIGNED_MFA_DEVICES,
            unassigned_min_age: UNASSIGNED_MIN_AGE,
            state_file: None,
        }
    }
}

impl Default for GroupPolicySettings {
    fn default() -> Self {
        GroupPolicySettings {
            allow_enrolment_with_access_keys: ALLOW_ENROLMENT_WITH_ACCESS_KEYS,
        }
    }
}
