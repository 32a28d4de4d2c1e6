//! The checks of each key, and the defaults applied where a key is absent. Each error names the
//! key; the parent module puts the checked parts together.

use crate::user_name::{is_iam_name, UserName};
use std::net::SocketAddr;
use std::time::Duration;

use super::defaults;
use super::duration::{humanize, Bounds, DurationKey, Units};
use super::error::ConfigError;
use super::raw::{RawAccount, RawAws, RawCleanup, RawExempt, RawOrganization};
use super::schedule::Schedule;
use super::settings::{
    AccountTarget, AwsSettings, CleanupSettings, ExemptRules, OrganizationSettings, RetryMode,
};
use crate::arn::{is_account_id, Arn};

/// The shortest interval between two scheduled runs. A run reads every user of every account
/// from IAM, which throttles at low rates; a schedule of seconds is a mistake.
pub const MIN_SCHEDULE_INTERVAL: Duration = Duration::from_secs(60);

/// The shortest `cleanup.unassigned_min_age`. A virtual MFA device is unassigned from its creation
/// until its user has typed two codes from it, which takes minutes; deleting it then breaks the
/// setup under way.
pub const MIN_UNASSIGNED_AGE: Duration = Duration::from_secs(5 * 60);

/// The longest `run_timeout`: a run that has not ended in a day is stuck, and its deadline is
/// what stops it.
pub const LONGEST_RUN_TIMEOUT: Duration = Duration::from_secs(86_400);

const RUN_TIMEOUT: DurationKey = DurationKey {
    key: "run_timeout",
    units: Units::Seconds,
    bounds: Bounds::Within {
        min: Duration::from_secs(1),
        max: LONGEST_RUN_TIMEOUT,
    },
};

const UNASSIGNED_MIN_AGE: DurationKey = DurationKey {
    key: "cleanup.unassigned_min_age",
    units: Units::Seconds,
    bounds: Bounds::AtLeast {
        floor: MIN_UNASSIGNED_AGE,
        why: "a device is unassigned while its user is still setting it up",
    },
};

pub(super) fn account_id(id: Option<&str>) -> Result<(), ConfigError> {
    match id.filter(|id| !is_account_id(id)) {
        Some(bad) => Err(ConfigError::invalid(
            "account_id",
            format!("`{bad}` is not a 12-digit AWS account id"),
        )),
        None => Ok(()),
    }
}

/// The schedule, or the default one, and the shortest interval between two of its runs (None:
/// less than twice in the coming 400 days), which must not be shorter than
/// [`MIN_SCHEDULE_INTERVAL`].
pub(super) fn schedule(text: Option<String>) -> Result<(Schedule, Option<Duration>), ConfigError> {
    let text = text.unwrap_or_else(|| defaults::SCHEDULE.to_string());
    let schedule = Schedule::parse(&text).map_err(|e| ConfigError::invalid("schedule", e))?;
    let interval = schedule.shortest_interval();
    if let Some(every) = interval.filter(|i| *i < MIN_SCHEDULE_INTERVAL) {
        return Err(ConfigError::invalid(
            "schedule",
            format!(
                "`{text}` fires as often as every {}; runs must be at least {} apart",
                humanize(every),
                humanize(MIN_SCHEDULE_INTERVAL)
            ),
        ));
    }
    Ok((schedule, interval))
}

/// `run_timeout`, given as `text` or by default, for a schedule whose runs may be `interval` apart
/// (None: less than twice in the coming 400 days).
pub(super) fn run_timeout(
    text: Option<&str>,
    interval: Option<Duration>,
) -> Result<Duration, ConfigError> {
    let Some(text) = text else {
        return Ok(interval.map_or(defaults::RUN_TIMEOUT, |i| i.min(defaults::RUN_TIMEOUT)));
    };
    let timeout = RUN_TIMEOUT.read(text)?;
    if let Some(interval) = interval.filter(|i| timeout >= *i) {
        return Err(ConfigError::invalid(
            RUN_TIMEOUT.key,
            format!(
                "`{text}` is not shorter than the {} between two runs of the schedule; a run must end before the next is due",
                humanize(interval)
            ),
        ));
    }
    Ok(timeout)
}

pub(super) fn admin_listen(listen: Option<String>) -> Result<SocketAddr, ConfigError> {
    let listen = listen.unwrap_or_else(|| defaults::ADMIN_LISTEN.to_string());
    listen.parse().map_err(|_| {
        ConfigError::invalid(
            "admin.listen",
            format!("`{listen}` is not an address and port such as 127.0.0.1:9464"),
        )
    })
}

pub(super) fn cleanup(raw: RawCleanup) -> Result<CleanupSettings, ConfigError> {
    let defaults = CleanupSettings::default();
    Ok(CleanupSettings {
        unassigned_mfa_devices: raw
            .unassigned_mfa_devices
            .unwrap_or(defaults.unassigned_mfa_devices),
        unassigned_min_age: UNASSIGNED_MIN_AGE.read_or(
            raw.unassigned_min_age.as_deref(),
            defaults.unassigned_min_age,
        )?,
        state_file: raw.state_file,
    })
}

/// The account id in a role ARN (`arn:PARTITION:iam::ACCOUNT:role/PATH/NAME`).
pub fn role_arn_account(arn: &str) -> Option<&str> {
    let arn = Arn::parse(arn)?;
    arn.iam_name("role")?;
    is_account_id(arn.account).then_some(arn.account)
}

fn external_id(key: &str, id: &Option<String>) -> Result<(), ConfigError> {
    if let Some(id) = id {
        let ok_chars = id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+=,.@:/-_".contains(c));
        if id.len() < 2 || id.len() > 1224 || !ok_chars {
            return Err(ConfigError::invalid(
                key,
                "must be 2 to 1224 characters of letters, digits and +=,.@:/-_",
            ));
        }
    }
    Ok(())
}

pub(super) fn accounts(raw: Vec<RawAccount>) -> Result<Vec<AccountTarget>, ConfigError> {
    let mut seen = std::collections::BTreeSet::new();
    raw.into_iter()
        .enumerate()
        .map(|(i, a)| {
            let key = |field: &str| format!("accounts[{i}].{field}");
            let account_id = role_arn_account(&a.role_arn)
                .ok_or_else(|| {
                    ConfigError::invalid(
                        &key("role_arn"),
                        format!(
                            "`{}` is not a role ARN such as arn:aws:iam::123456789012:role/forcemfa",
                            a.role_arn
                        ),
                    )
                })?
                .to_string();
            if !seen.insert(account_id.clone()) {
                return Err(ConfigError::invalid(
                    &key("role_arn"),
                    format!("account {account_id} is listed twice"),
                ));
            }
            external_id(&key("external_id"), &a.external_id)?;
            if a.name.as_deref().is_some_and(|n| n.trim().is_empty()) {
                return Err(ConfigError::invalid(&key("name"), "must not be empty"));
            }
            Ok(AccountTarget {
                account_id,
                role_arn: a.role_arn,
                external_id: a.external_id,
                name: a.name,
            })
        })
        .collect()
}

pub(super) fn organization(raw: RawOrganization) -> Result<OrganizationSettings, ConfigError> {
    if !is_iam_name(&raw.role_name) {
        return Err(ConfigError::invalid(
            "organization.role_name",
            format!(
                "`{}` is not an IAM role name (1 to 64 letters, digits and +=,.@_-)",
                raw.role_name
            ),
        ));
    }
    if let Some(bad) = raw.exclude_accounts.iter().find(|a| !is_account_id(a)) {
        return Err(ConfigError::invalid(
            "organization.exclude_accounts",
            format!("`{bad}` is not a 12-digit account id"),
        ));
    }
    external_id("organization.external_id", &raw.external_id)?;
    Ok(OrganizationSettings {
        role_name: raw.role_name,
        exclude_accounts: raw.exclude_accounts,
        external_id: raw.external_id,
    })
}

/// IAM group names: 1 to 128 characters of `[A-Za-z0-9+=,.@_-]`.
pub(super) fn group_name(group: &str) -> Result<(), ConfigError> {
    if group.is_empty() {
        return Err(ConfigError::invalid("group", "must not be empty"));
    }
    if group.chars().count() > 128 {
        return Err(ConfigError::invalid(
            "group",
            "an IAM group name has at most 128 characters",
        ));
    }
    if let Some(c) = group
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "+=,.@_-".contains(*c)))
    {
        return Err(ConfigError::invalid(
            "group",
            format!(
                "`{group}` contains {c:?}; an IAM group name allows letters, digits and +=,.@_-"
            ),
        ));
    }
    Ok(())
}

/// The level must be one forcemfa's logging can apply.
pub(super) fn log_level(level: &str) -> Result<(), ConfigError> {
    crate::telemetry::level_filter(level)
        .map(|_| ())
        .map_err(|m| ConfigError::invalid("log_level", m))
}

pub(super) fn exempt(raw: RawExempt) -> Result<ExemptRules, ConfigError> {
    // A name IAM would refuse matches nobody: the user meant to be exempt would be enforced.
    let mut users = Vec::with_capacity(raw.users.len());
    for (i, user) in raw.users.iter().enumerate() {
        let name = UserName::parse(user).map_err(|e| {
            ConfigError::invalid("exempt.users", format!("entry {} `{user}` is {e}", i + 1))
        })?;
        users.push(name);
    }
    for prefix in &raw.path_prefixes {
        if !prefix.starts_with('/') {
            return Err(ConfigError::invalid(
                "exempt.path_prefixes",
                format!("`{prefix}` must start with `/`, as IAM paths do"),
            ));
        }
    }
    if raw.tags.keys().any(std::string::String::is_empty) {
        return Err(ConfigError::invalid(
            "exempt.tags",
            "a tag key must not be empty",
        ));
    }
    Ok(ExemptRules {
        users,
        path_prefixes: raw.path_prefixes,
        tags: raw.tags,
    })
}

pub(super) fn aws(raw: &RawAws) -> Result<AwsSettings, ConfigError> {
    let d = AwsSettings::default();
    let max_concurrency = ranged(
        "aws.max_concurrency",
        raw.max_concurrency,
        d.max_concurrency,
        1,
        256,
    )?;
    let max_attempts = ranged("aws.max_attempts", raw.max_attempts, d.max_attempts, 1, 20)?;
    let connect_timeout_secs = ranged(
        "aws.connect_timeout_secs",
        raw.connect_timeout_secs,
        d.connect_timeout_secs,
        1,
        300,
    )?;
    let operation_timeout_secs = ranged(
        "aws.operation_timeout_secs",
        raw.operation_timeout_secs,
        d.operation_timeout_secs,
        1,
        3600,
    )?;
    let page_size = ranged("aws.page_size", raw.page_size, d.page_size, 1, 1000)?;
    let retry_mode = match raw.retry_mode.as_deref() {
        None => d.retry_mode,
        Some("adaptive") => RetryMode::Adaptive,
        Some("standard") => RetryMode::Standard,
        Some(other) => {
            return Err(ConfigError::invalid(
                "aws.retry_mode",
                format!("`{other}` is not one of adaptive, standard"),
            ))
        }
    };
    let max_backoff_secs = ranged(
        "aws.max_backoff_secs",
        raw.max_backoff_secs,
        d.max_backoff_secs,
        1,
        300,
    )?;
    let max_accounts_in_parallel = ranged(
        "aws.max_accounts_in_parallel",
        raw.max_accounts_in_parallel,
        d.max_accounts_in_parallel,
        1,
        64,
    )?;
    let max_requests_per_second = ranged(
        "aws.max_requests_per_second",
        raw.max_requests_per_second,
        d.max_requests_per_second,
        1,
        10_000,
    )?;
    let burst = ranged("aws.burst", raw.burst, d.burst, 1, 100_000)?;
    Ok(AwsSettings {
        max_concurrency,
        max_attempts,
        connect_timeout_secs,
        operation_timeout_secs,
        page_size,
        retry_mode,
        max_backoff_secs,
        max_accounts_in_parallel,
        max_requests_per_second,
        burst,
    })
}

pub(super) fn positive(key: &str, n: i64) -> Result<u64, ConfigError> {
    if n < 1 {
        return Err(ConfigError::invalid(
            key,
            format!("must be a positive integer, got {n}"),
        ));
    }
    Ok(n as u64)
}

/// A numeric key: `default` when absent, else a value within `min..=max`.
fn ranged<T: TryFrom<i64>>(
    key: &str,
    value: Option<i64>,
    default: T,
    min: i64,
    max: i64,
) -> Result<T, ConfigError> {
    match value {
        None => Ok(default),
        Some(n) => T::try_from(in_range(key, n, min, max)?)
            .map_err(|_| ConfigError::invalid(key, format!("{n} is out of range"))),
    }
}

fn in_range(key: &str, n: i64, min: i64, max: i64) -> Result<i64, ConfigError> {
    if n < min || n > max {
        return Err(ConfigError::invalid(
            key,
            format!("must be between {min} and {max}, got {n}"),
        ));
    }
    Ok(n)
}
