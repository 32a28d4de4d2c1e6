//! Typed configuration: a TOML file (optional) whose every key has a default, validated as a whole
//! before anything talks to AWS, so a bad value stops the process with the key named.

mod env;
pub mod events;
mod raw;
pub mod schedule;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use crate::arn::{is_account_id, Arn};
use crate::environment::{self, NotUnicode};
use env::{overlay_env, variable_sets, ENV_PREFIX};
pub use events::EventsSettings;
use raw::{RawAccount, RawAws, RawConfig, RawExempt, RawOrganization};
use schedule::Schedule;

/// Errors found while reading or validating the configuration. Each names the file or the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// `origin` names the file, and the environment variables when they took part.
    #[error("{origin}: {message}")]
    Parse { origin: String, message: String },
    #[error("invalid config key `{key}`: {message}")]
    Invalid { key: String, message: String },
    #[error(transparent)]
    Environment(#[from] NotUnicode),
    /// A file forcemfa is to write that it must not or cannot (the error names the key).
    #[error(transparent)]
    File(#[from] crate::files::FileError),
}

impl ConfigError {
    fn invalid(key: &str, message: impl Into<String>) -> Self {
        ConfigError::Invalid {
            key: key.to_string(),
            message: message.into(),
        }
    }

    /// Names the environment variable among `variables` that set the invalid key, if one did.
    fn naming_variable(self, variables: &[String]) -> Self {
        let ConfigError::Invalid { key, message } = self else {
            return self;
        };
        match variables.iter().find(|v| variable_sets(v, &key)) {
            Some(variable) => ConfigError::Invalid {
                key,
                message: format!("{message} (set by {variable})"),
            },
            None => ConfigError::Invalid { key, message },
        }
    }
}

/// Who is never added to nor removed from the group.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExemptRules {
    pub users: Vec<String>,
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

impl Default for AwsSettings {
    fn default() -> Self {
        AwsSettings {
            max_concurrency: 8,
            max_attempts: 8,
            connect_timeout_secs: 5,
            operation_timeout_secs: 60,
            page_size: 1000,
            retry_mode: RetryMode::Standard,
            max_backoff_secs: 20,
            max_accounts_in_parallel: 32,
            max_requests_per_second: 200,
            burst: 100,
        }
    }
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

/// The shortest `cleanup.unassigned_min_age`. A virtual MFA device is unassigned from its creation
/// until its user has typed two codes from it, which takes minutes; deleting it then breaks the
/// setup under way.
pub const MIN_UNASSIGNED_AGE: std::time::Duration = std::time::Duration::from_secs(5 * 60);

impl Default for CleanupSettings {
    fn default() -> Self {
        CleanupSettings {
            unassigned_mfa_devices: false,
            unassigned_min_age: std::time::Duration::from_secs(3600),
            state_file: None,
        }
    }
}

/// Choices in the enforcement group's policy (`forcemfa policy force-mfa-group`, `bootstrap`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupPolicySettings {
    /// Let a request signed with a member's long-term access key alone (no console session, no
    /// MFA) create and enable an MFA device and change the password. Off by default: with it,
    /// whoever holds a leaked key can enrol a device of their own and get the key's full
    /// permissions back. For organisations whose API-only users enrol from the CLI.
    pub allow_enrolment_with_access_keys: bool,
}

/// `90s`, `30m`, `1h`, `2d`.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration such as 90s, 30m, 1h or 2d"))?;
    let unit_secs = match unit.trim() {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => {
            return Err(format!(
                "`{text}` is not a duration such as 90s, 30m, 1h or 2d"
            ))
        }
    };
    n.checked_mul(unit_secs)
        .map(std::time::Duration::from_secs)
        .ok_or_else(|| format!("`{text}` is too long"))
}

/// The validated configuration with every default filled in.
#[derive(Debug, Clone)]
pub struct Config {
    pub group: String,
    /// The account forcemfa's own credentials must belong to (`account_id`): checked before
    /// anything is changed with them. Roles are checked against their ARN's account.
    pub account_id: Option<String>,
    pub dry_run: bool,
    pub max_changes: Option<u64>,
    pub console_users_only: bool,
    pub schedule: Schedule,
    /// The deadline of one run: a run still going when the next is due would hold the next one
    /// back. By default [`DEFAULT_RUN_TIMEOUT`], or the schedule's shortest interval when that is
    /// shorter; a value given is shorter than that interval.
    pub run_timeout: std::time::Duration,
    /// The daemon reconciles once right after it starts.
    pub run_on_start: bool,
    /// forcemfa's log level, or a full filter directive list.
    pub log_level: String,
    /// Every change made is appended here as a JSON line.
    pub audit_log: Option<PathBuf>,
    pub exempt: ExemptRules,
    pub admin_listen: SocketAddr,
    /// File holding the bearer token that `POST /reconcile` needs on a non-loopback listener.
    pub admin_token_file: Option<PathBuf>,
    pub aws: AwsSettings,
    pub cleanup: CleanupSettings,
    pub group_policy: GroupPolicySettings,
    /// Accounts reconciled through assumed roles; empty (and no organization) means the account
    /// of forcemfa's own credentials.
    pub accounts: Vec<AccountTarget>,
    pub organization: Option<OrganizationSettings>,
    /// Reconciling single users as their IAM events arrive (`[events]`); off when absent.
    pub events: Option<EventsSettings>,
}

/// The shortest interval between two scheduled runs. A run reads every user of every account
/// from IAM, which throttles at low rates; a schedule of seconds is a mistake.
pub const MIN_SCHEDULE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);

/// The deadline of a run unless the schedule asks for a shorter one.
pub const DEFAULT_RUN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(45 * 60);

pub const DEFAULT_GROUP: &str = "ForceMFA";
pub const DEFAULT_SCHEDULE: &str = "0 0 * * * *";
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9464";

impl Config {
    /// Reads `path` when given (without one every key takes its default), then applies the
    /// `FORCEMFA__*` environment overrides.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let text = match path {
            None => String::new(),
            Some(path) => std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.to_path_buf(),
                source,
            })?,
        };
        let origin = match path {
            Some(path) => format!("config file {}", path.display()),
            None => "configuration".to_string(),
        };
        Config::parse_layered(&text, &origin, environment::with_prefix(ENV_PREFIX)?)
    }

    /// Parses and validates TOML text.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse_layered(text, "config text", std::iter::empty())
    }

    /// Parses `text`, overrides keys from `FORCEMFA__KEY` / `FORCEMFA__SECTION__KEY` variables
    /// in `vars`, and validates the result.
    pub fn parse_layered(
        text: &str,
        origin: &str,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let parse_error = |origin: &str, e: toml::de::Error| ConfigError::Parse {
            origin: origin.to_string(),
            message: e.to_string().trim_end().replace('\n', " "),
        };
        let mut table: toml::Table = toml::from_str(text).map_err(|e| parse_error(origin, e))?;
        let overridden = overlay_env(&mut table, vars)?;
        let raw: RawConfig = if overridden.is_empty() {
            // From the text itself, so that errors point at the line.
            toml::from_str(text).map_err(|e| parse_error(origin, e))?
        } else {
            let origin = format!("{origin} with {}", overridden.join(", "));
            toml::Value::Table(table)
                .try_into()
                .map_err(|e| parse_error(&origin, e))?
        };
        Config::from_raw(raw).map_err(|e| e.naming_variable(&overridden))
    }

    fn from_raw(raw: RawConfig) -> Result<Config, ConfigError> {
        let group = raw.group.unwrap_or_else(|| DEFAULT_GROUP.to_string());
        validate_group_name(&group)?;
        if let Some(bad) = raw.account_id.as_ref().filter(|id| !is_account_id(id)) {
            return Err(ConfigError::invalid(
                "account_id",
                format!("`{bad}` is not a 12-digit AWS account id"),
            ));
        }

        let max_changes = match raw.max_changes {
            None => None,
            Some(n) => Some(positive("max_changes", n)?),
        };

        let schedule_text = raw.schedule.unwrap_or_else(|| DEFAULT_SCHEDULE.to_string());
        let schedule = Schedule::parse(&schedule_text)
            .map_err(|message| ConfigError::invalid("schedule", message))?;
        let interval = schedule.shortest_interval();
        if let Some(every) = interval.filter(|i| *i < MIN_SCHEDULE_INTERVAL) {
            return Err(ConfigError::invalid(
                "schedule",
                format!(
                    "`{schedule_text}` fires as often as every {}; runs must be at least {} apart",
                    humanize(every),
                    humanize(MIN_SCHEDULE_INTERVAL)
                ),
            ));
        }

        let run_timeout = validate_run_timeout(raw.run_timeout.as_deref(), interval)?;

        let log_level = raw.log_level.unwrap_or_else(|| "info".to_string());
        validate_log_level(&log_level)?;

        let exempt = validate_exempt(raw.exempt)?;

        let listen = raw
            .admin
            .listen
            .unwrap_or_else(|| DEFAULT_ADMIN_LISTEN.to_string());
        let admin_listen: SocketAddr = listen.parse().map_err(|_| {
            ConfigError::invalid(
                "admin.listen",
                format!("`{listen}` is not an address and port such as 127.0.0.1:9464"),
            )
        })?;

        let aws = validate_aws(&raw.aws)?;

        let defaults = CleanupSettings::default();
        let cleanup = CleanupSettings {
            unassigned_mfa_devices: raw
                .cleanup
                .unassigned_mfa_devices
                .unwrap_or(defaults.unassigned_mfa_devices),
            unassigned_min_age: match raw.cleanup.unassigned_min_age {
                None => defaults.unassigned_min_age,
                Some(text) => at_least(
                    "cleanup.unassigned_min_age",
                    &text,
                    MIN_UNASSIGNED_AGE,
                    "a device is unassigned while its user is still setting it up",
                )?,
            },
            state_file: raw.cleanup.state_file,
        };

        if let (Some(audit_log), Some(state_file)) = (&raw.audit_log, &cleanup.state_file) {
            validate_separate_files(audit_log, state_file)?;
        }

        Ok(Config {
            group,
            account_id: raw.account_id,
            dry_run: raw.dry_run.unwrap_or(false),
            max_changes,
            console_users_only: raw.console_users_only.unwrap_or(false),
            schedule,
            run_timeout,
            run_on_start: raw.run_on_start.unwrap_or(true),
            log_level,
            audit_log: raw.audit_log,
            exempt,
            admin_listen,
            admin_token_file: raw.admin.token_file,
            aws,
            cleanup,
            group_policy: GroupPolicySettings {
                allow_enrolment_with_access_keys: raw
                    .group_policy
                    .allow_enrolment_with_access_keys
                    .unwrap_or(false),
            },
            accounts: validate_accounts(raw.accounts)?,
            organization: raw.organization.map(validate_organization).transpose()?,
            events: events::validate(raw.events)?,
        })
    }
}

/// The account id in a role ARN (`arn:PARTITION:iam::ACCOUNT:role/PATH/NAME`).
pub fn role_arn_account(arn: &str) -> Option<&str> {
    let arn = Arn::parse(arn)?;
    arn.iam_name("role")?;
    is_account_id(arn.account).then_some(arn.account)
}

fn validate_external_id(key: &str, id: &Option<String>) -> Result<(), ConfigError> {
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

fn validate_accounts(raw: Vec<RawAccount>) -> Result<Vec<AccountTarget>, ConfigError> {
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
            validate_external_id(&key("external_id"), &a.external_id)?;
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

/// `run_timeout`, given as `text` or by default, for a schedule whose runs may be `interval` apart
/// (None: less than twice in the coming 400 days).
fn validate_run_timeout(
    text: Option<&str>,
    interval: Option<std::time::Duration>,
) -> Result<std::time::Duration, ConfigError> {
    let Some(text) = text else {
        return Ok(interval.map_or(DEFAULT_RUN_TIMEOUT, |i| i.min(DEFAULT_RUN_TIMEOUT)));
    };
    let timeout = parse_duration(text).map_err(|m| ConfigError::invalid("run_timeout", m))?;
    if timeout.is_zero() {
        return Err(ConfigError::invalid(
            "run_timeout",
            "must be longer than 0s",
        ));
    }
    if let Some(interval) = interval.filter(|i| timeout >= *i) {
        return Err(ConfigError::invalid(
            "run_timeout",
            format!(
                "`{text}` is not shorter than the {} between two runs of the schedule; a run must end before the next is due",
                humanize(interval)
            ),
        ));
    }
    Ok(timeout)
}

/// The audit log is only ever appended to; the state file is rewritten whole, through a temporary
/// file beside it. Were they one file, each run would wipe the audit trail. (The temporary file
/// has a random name and is created exclusively, so it can never be the audit log.)
fn validate_separate_files(audit_log: &Path, state_file: &Path) -> Result<(), ConfigError> {
    if same_file(audit_log, state_file) {
        return Err(ConfigError::invalid(
            "cleanup.state_file",
            format!(
                "audit_log `{}` is the same file as cleanup.state_file `{}`; rewriting the state would destroy the audit trail",
                audit_log.display(),
                state_file.display()
            ),
        ));
    }
    Ok(())
}

/// Whether two paths name one file, now or once created: both resolved as the system would, and,
/// when both exist, compared by device and inode (which also catches hard links).
fn same_file(a: &Path, b: &Path) -> bool {
    if let (Ok(ma), Ok(mb)) = (std::fs::metadata(a), std::fs::metadata(b)) {
        if (ma.dev(), ma.ino()) == (mb.dev(), mb.ino()) {
            return true;
        }
    }
    resolve(a) == resolve(b)
}

/// `path` made absolute against the working directory, with every part that exists resolved
/// through symbolic links, and `.` and `..` applied to the rest.
fn resolve(path: &Path) -> PathBuf {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut resolved = PathBuf::new();
    for component in absolute.components() {
        match component {
            Component::CurDir => {}
            // `resolved` holds no symbolic link, so its parent is the real one.
            Component::ParentDir => {
                resolved.pop();
            }
            Component::Normal(name) => {
                resolved.push(name);
                if let Ok(real) = std::fs::canonicalize(&resolved) {
                    resolved = real;
                }
            }
            Component::RootDir | Component::Prefix(_) => resolved.push(component),
        }
    }
    resolved
}

/// IAM user and role names: 1 to 64 characters of `[A-Za-z0-9+=,.@_-]`.
fn is_iam_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c))
}

fn validate_organization(raw: RawOrganization) -> Result<OrganizationSettings, ConfigError> {
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
    validate_external_id("organization.external_id", &raw.external_id)?;
    Ok(OrganizationSettings {
        role_name: raw.role_name,
        exclude_accounts: raw.exclude_accounts,
        external_id: raw.external_id,
    })
}

/// IAM group names: 1 to 128 characters of `[A-Za-z0-9+=,.@_-]`.
fn validate_group_name(group: &str) -> Result<(), ConfigError> {
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
fn validate_log_level(level: &str) -> Result<(), ConfigError> {
    crate::telemetry::level_filter(level)
        .map(|_| ())
        .map_err(|m| ConfigError::invalid("log_level", m))
}

fn validate_exempt(raw: RawExempt) -> Result<ExemptRules, ConfigError> {
    // A name IAM would refuse matches nobody: the user meant to be exempt would be enforced.
    if let Some((i, user)) = raw.users.iter().enumerate().find(|(_, u)| !is_iam_name(u)) {
        return Err(ConfigError::invalid(
            "exempt.users",
            format!(
                "entry {} `{user}` is not an IAM user name (1 to 64 letters, digits and +=,.@_-)",
                i + 1
            ),
        ));
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
        users: raw.users,
        path_prefixes: raw.path_prefixes,
        tags: raw.tags,
    })
}

fn validate_aws(raw: &RawAws) -> Result<AwsSettings, ConfigError> {
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

/// The duration `text` of `key`, refused below `floor` with the reason `why`.
fn at_least(
    key: &str,
    text: &str,
    floor: std::time::Duration,
    why: &str,
) -> Result<std::time::Duration, ConfigError> {
    let duration = parse_duration(text).map_err(|m| ConfigError::invalid(key, m))?;
    if duration < floor {
        return Err(ConfigError::invalid(
            key,
            format!("`{text}` is shorter than {}: {why}", humanize(floor)),
        ));
    }
    Ok(duration)
}

/// A duration in the largest unit of [`parse_duration`] that divides it: `5m`, `90s`, `2h`.
fn humanize(duration: std::time::Duration) -> String {
    let secs = duration.as_secs();
    match secs {
        0 => "0s".to_string(),
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// Like [`humanize`], with milliseconds for what is not a whole second.
fn humanize_ms(duration: std::time::Duration) -> String {
    if duration.subsec_millis() == 0 {
        humanize(duration)
    } else {
        format!("{}ms", duration.as_millis())
    }
}

fn positive(key: &str, n: i64) -> Result<u64, ConfigError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn key_of(err: ConfigError) -> String {
        match err {
            ConfigError::Invalid { key, .. } => key,
            other => panic!("expected an invalid key, got {other}"),
        }
    }

    #[test]
    fn empty_file_gives_documented_defaults() {
        let c = Config::parse("").unwrap();
        assert_eq!(c.group, "ForceMFA");
        assert!(!c.dry_run);
        assert!(!c.console_users_only);
        assert_eq!(c.max_changes, None);
        assert_eq!(c.admin_listen.to_string(), "127.0.0.1:9464");
        assert!(c.run_on_start);
        assert_eq!(c.admin_token_file, None);
        assert_eq!(c.aws, AwsSettings::default());
        assert_eq!(c.exempt, ExemptRules::default());
        assert!(!c.group_policy.allow_enrolment_with_access_keys);
        assert_eq!(c.run_timeout, DEFAULT_RUN_TIMEOUT);
    }

    #[test]
    fn run_timeout_ends_a_run_before_the_next_is_due() {
        let timeout = |text: &str| Config::parse(text).map(|c| c.run_timeout.as_secs());
        assert_eq!(timeout("").unwrap(), 45 * 60);
        assert_eq!(timeout("schedule = \"0 0 * * *\"").unwrap(), 45 * 60);
        assert_eq!(timeout("schedule = \"*/5 * * * *\"").unwrap(), 5 * 60);
        assert_eq!(timeout("schedule = \"* * * * *\"").unwrap(), 60);
        assert_eq!(timeout("run_timeout = \"59m\"").unwrap(), 59 * 60);
        assert_eq!(
            timeout("schedule = \"*/5 * * * *\"\nrun_timeout = \"299s\"").unwrap(),
            299
        );
        // Fewer than two firings in the horizon: no interval bounds it.
        assert_eq!(
            timeout("schedule = \"0 0 29 2 *\"\nrun_timeout = \"3h\"").unwrap(),
            3 * 3600
        );
        for bad in [
            "run_timeout = \"1h\"",
            "run_timeout = \"61m\"",
            "schedule = \"*/5 * * * *\"\nrun_timeout = \"5m\"",
            "run_timeout = \"0s\"",
            "run_timeout = \"0m\"",
            "run_timeout = \"soon\"",
        ] {
            assert_eq!(
                key_of(Config::parse(bad).unwrap_err()),
                "run_timeout",
                "{bad}"
            );
        }
    }

    #[test]
    fn shipped_files_are_valid_and_the_reference_shows_the_defaults() {
        let reference = Config::load(Some(Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/config/forcemfa.toml"
        ))))
        .unwrap();
        let defaults = Config::parse("").unwrap();
        assert_eq!(format!("{reference:?}"), format!("{defaults:?}"));
        Config::load(Some(Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/config/demo.toml"
        ))))
        .unwrap();
    }

    fn env(vars: &[(&str, &str)]) -> Vec<(String, String)> {
        vars.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn environment_overrides_the_file() {
        let c = Config::parse_layered(
            "group = \"FromFile\"\ndry_run = false\n[exempt]\nusers = [\"x\"]\n",
            "test",
            env(&[
                ("FORCEMFA__GROUP", "FromEnv"),
                ("FORCEMFA__DRY_RUN", "true"),
                ("FORCEMFA__MAX_CHANGES", "7"),
                ("FORCEMFA__ADMIN__LISTEN", "0.0.0.0:9000"),
                ("FORCEMFA__EXEMPT__PATH_PREFIXES", "[\"/automation/\"]"),
                (
                    "FORCEMFA__GROUP_POLICY__ALLOW_ENROLMENT_WITH_ACCESS_KEYS",
                    "true",
                ),
                ("FORCEMFA_CONFIG", "ignored: not an override"),
                ("HOME", "/root"),
            ]),
        )
        .unwrap();
        assert_eq!(c.group, "FromEnv");
        assert!(c.dry_run);
        assert_eq!(c.max_changes, Some(7));
        assert_eq!(c.admin_listen.to_string(), "0.0.0.0:9000");
        assert_eq!(c.exempt.users, vec!["x"]);
        assert_eq!(c.exempt.path_prefixes, vec!["/automation/"]);
        assert!(c.group_policy.allow_enrolment_with_access_keys);
    }

    #[test]
    fn bad_environment_overrides_are_named() {
        let err = Config::parse_layered("", "test", env(&[("FORCEMFA__GRUOP", "x")]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("gruop") && err.contains("FORCEMFA__GRUOP"),
            "{err}"
        );
        let err = Config::parse_layered("", "test", env(&[("FORCEMFA__MAX_CHANGES", "-1")]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`max_changes`") && err.contains("FORCEMFA__MAX_CHANGES"),
            "{err}"
        );
        let err = Config::parse_layered(
            "",
            "test",
            env(&[("FORCEMFA__AWS__PAGE_SIZE", "0"), ("FORCEMFA__GROUP", "G")]),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("`aws.page_size`") && err.contains("set by FORCEMFA__AWS__PAGE_SIZE"),
            "{err}"
        );
        assert!(!err.contains("FORCEMFA__GROUP"), "{err}");
        let err = Config::parse_layered(
            "",
            "test",
            env(&[("FORCEMFA__ACCOUNTS", "[{ role_arn = \"nope\" }]")]),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("`accounts[0].role_arn`") && err.contains("FORCEMFA__ACCOUNTS"),
            "{err}"
        );
        // A bad key from the file is not blamed on a variable.
        let err =
            Config::parse_layered("max_changes = 0", "test", env(&[("FORCEMFA__GROUP", "G")]))
                .unwrap_err()
                .to_string();
        assert!(
            err.contains("`max_changes`") && !err.contains("FORCEMFA__"),
            "{err}"
        );
        let err = Config::parse_layered("", "test", env(&[("FORCEMFA__GROUP__X", "1")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("FORCEMFA__GROUP__X"), "{err}");
    }

    #[test]
    fn full_file_is_read() {
        let c = Config::parse(
            r#"
            group = "MustUseMFA"
            dry_run = true
            max_changes = 25
            console_users_only = true
            schedule = "*/5 * * * *"
            [exempt]
            users = ["breakglass"]
            path_prefixes = ["/automation/"]
            tags = { "forcemfa" = "exempt" }
            [admin]
            listen = "0.0.0.0:9000"
            [aws]
            max_concurrency = 4
            page_size = 100
            max_requests_per_second = 10
            burst = 20
            [group_policy]
            allow_enrolment_with_access_keys = true
            "#,
        )
        .unwrap();
        assert!(c.group_policy.allow_enrolment_with_access_keys);
        assert_eq!(c.group, "MustUseMFA");
        assert!(c.dry_run && c.console_users_only);
        assert_eq!(c.max_changes, Some(25));
        assert_eq!(c.exempt.users, vec!["breakglass"]);
        assert_eq!(c.exempt.tags.get("forcemfa").unwrap(), "exempt");
        assert_eq!(c.aws.max_concurrency, 4);
        assert_eq!(c.aws.page_size, 100);
        assert_eq!((c.aws.max_requests_per_second, c.aws.burst), (10, 20));
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = Config::parse("[exmpt]\nusers = []\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("exmpt"), "{err}");
        let err = Config::parse("[exempt]\nuser = []\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("user"), "{err}");
    }

    #[test]
    fn bad_values_name_their_key() {
        assert_eq!(key_of(Config::parse("group = \"\"").unwrap_err()), "group");
        assert_eq!(
            key_of(Config::parse("group = \"a b\"").unwrap_err()),
            "group"
        );
        assert_eq!(
            key_of(Config::parse("max_changes = -1").unwrap_err()),
            "max_changes"
        );
        assert_eq!(
            key_of(Config::parse("max_changes = 0").unwrap_err()),
            "max_changes"
        );
        assert_eq!(
            key_of(Config::parse("schedule = \"every hour\"").unwrap_err()),
            "schedule"
        );
        for too_often in [
            "*/10 * * * * *",
            "* * * * * *",
            "0,59 * * * * *",
            "0-1 0 0 * * *",
        ] {
            let text = format!("schedule = \"{too_often}\"");
            assert_eq!(
                key_of(Config::parse(&text).unwrap_err()),
                "schedule",
                "{too_often}"
            );
        }
        for often_enough in ["* * * * *", "0 * * * * *", "0 0,1 * * * *"] {
            assert!(Config::parse(&format!("schedule = \"{often_enough}\"")).is_ok());
        }
        assert_eq!(
            key_of(Config::parse("[admin]\nlisten = \"localhost\"").unwrap_err()),
            "admin.listen"
        );
        assert_eq!(
            key_of(Config::parse("[exempt]\npath_prefixes = [\"svc/\"]").unwrap_err()),
            "exempt.path_prefixes"
        );
        for bad in [
            "",
            " ",
            "breakglass ",
            " breakglass",
            "ops/admin",
            "émile",
            "a b",
        ] {
            let text = format!("[exempt]\nusers = [\"ok\", {bad:?}]");
            assert_eq!(
                key_of(Config::parse(&text).unwrap_err()),
                "exempt.users",
                "{bad:?}"
            );
        }
        let too_long = format!("[exempt]\nusers = [\"{}\"]", "a".repeat(65));
        assert_eq!(
            key_of(Config::parse(&too_long).unwrap_err()),
            "exempt.users"
        );
        let longest = format!("[exempt]\nusers = [\"{}\", \"a+=,.@_-Z9\"]", "a".repeat(64));
        assert!(Config::parse(&longest).is_ok());
        assert_eq!(
            key_of(Config::parse("[aws]\nmax_concurrency = 0").unwrap_err()),
            "aws.max_concurrency"
        );
        assert_eq!(
            key_of(Config::parse("[aws]\nretry_mode = \"legacy\"").unwrap_err()),
            "aws.retry_mode"
        );
        assert_eq!(
            key_of(Config::parse("[aws]\nmax_requests_per_second = 0").unwrap_err()),
            "aws.max_requests_per_second"
        );
        assert_eq!(
            key_of(Config::parse("[aws]\nburst = 0").unwrap_err()),
            "aws.burst"
        );
        assert_eq!(
            key_of(Config::parse("log_level = \"loud[\"").unwrap_err()),
            "log_level"
        );
        assert_eq!(
            key_of(Config::parse("log_level = \"verbose\"").unwrap_err()),
            "log_level"
        );
        assert!(Config::parse("log_level = \"DEBUG\"").is_ok());
        assert!(Config::parse("log_level = \"info,aws_config=debug\"").is_ok());
    }

    #[test]
    fn accounts_and_organization() {
        let c = Config::parse(
            r#"
            [[accounts]]
            role_arn = "arn:aws:iam::222222222222:role/forcemfa"
            name = "prod"
            [[accounts]]
            role_arn = "arn:aws-cn:iam::333333333333:role/ops/forcemfa"
            external_id = "forcemfa-ext-1"
            [organization]
            role_name = "forcemfa"
            exclude_accounts = ["444444444444"]
            [aws]
            max_accounts_in_parallel = 2
            "#,
        )
        .unwrap();
        assert_eq!(c.accounts[0].account_id, "222222222222");
        assert_eq!(c.accounts[1].account_id, "333333333333");
        assert_eq!(c.organization.unwrap().role_name, "forcemfa");
        assert_eq!(c.aws.max_accounts_in_parallel, 2);

        for (text, key) in [
            ("[[accounts]]\nrole_arn = \"arn:aws:iam::22:role/x\"", "accounts[0].role_arn"),
            ("[[accounts]]\nrole_arn = \"arn:aws:iam::222222222222:user/x\"", "accounts[0].role_arn"),
            ("[[accounts]]\nrole_arn = \"forcemfa\"", "accounts[0].role_arn"),
            (
                "[[accounts]]\nrole_arn = \"arn:aws:iam::222222222222:role/a\"\n[[accounts]]\nrole_arn = \"arn:aws:iam::222222222222:role/b\"",
                "accounts[1].role_arn",
            ),
            ("[[accounts]]\nrole_arn = \"arn:aws:iam::222222222222:role/a\"\nexternal_id = \"x\"", "accounts[0].external_id"),
            ("[organization]\nrole_name = \"bad name\"", "organization.role_name"),
            ("[organization]\nrole_name = \"r\"\nexclude_accounts = [\"12\"]", "organization.exclude_accounts"),
        ] {
            assert_eq!(key_of(Config::parse(text).unwrap_err()), key, "{text}");
        }
        let err = Config::parse("[[accounts]]\nrole = \"x\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("role"), "{err}");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s").unwrap().as_secs(), 90);
        assert_eq!(parse_duration("30m").unwrap().as_secs(), 1800);
        assert_eq!(parse_duration("1h").unwrap().as_secs(), 3600);
        assert_eq!(parse_duration("2d").unwrap().as_secs(), 172_800);
        for bad in ["", "h", "1", "1 hour", "-1h", "1.5h"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert_eq!(
            key_of(Config::parse("[cleanup]\nunassigned_min_age = \"soon\"").unwrap_err()),
            "cleanup.unassigned_min_age"
        );
        assert_eq!(humanize(parse_duration("90s").unwrap()), "90s");
        assert_eq!(humanize(parse_duration("300s").unwrap()), "5m");
        assert_eq!(humanize(parse_duration("120m").unwrap()), "2h");
        assert_eq!(humanize(parse_duration("48h").unwrap()), "2d");
    }

    #[test]
    fn cleanup_never_touches_a_device_being_set_up() {
        for short in ["0s", "1s", "90s", "4m", "299s"] {
            let text = format!("[cleanup]\nunassigned_min_age = \"{short}\"");
            assert_eq!(
                key_of(Config::parse(&text).unwrap_err()),
                "cleanup.unassigned_min_age",
                "{short}"
            );
        }
        let c = Config::parse("[cleanup]\nunassigned_min_age = \"300s\"").unwrap();
        assert_eq!(c.cleanup.unassigned_min_age, MIN_UNASSIGNED_AGE);
    }

    #[test]
    fn the_audit_log_and_the_state_file_must_be_two_files() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir(d.join("sub")).unwrap();
        std::fs::write(d.join("real"), "").unwrap();
        std::os::unix::fs::symlink(d.join("real"), d.join("link")).unwrap();
        std::os::unix::fs::symlink(d.join("sub"), d.join("sublink")).unwrap();
        std::fs::hard_link(d.join("real"), d.join("hard")).unwrap();
        let same = [
            ("a", "a"),
            ("sub/../a", "a"),
            ("./sub/./../a", "a"),
            ("missing/../a", "a"),
            ("missing/x", "missing/./x"),
            ("link", "real"),
            ("hard", "real"),
            // sublink/.. is the parent of sub, as the system resolves it: d itself.
            ("sublink/../a", "a"),
            ("sublink/x", "sub/x"),
        ];
        for (audit, state) in same {
            let err = validate_separate_files(&d.join(audit), &d.join(state)).unwrap_err();
            assert_eq!(key_of(err), "cleanup.state_file", "{audit} and {state}");
        }
        for (audit, state) in [
            ("a", "b"),
            ("sub/a", "a"),
            ("a.jsonl", "a.json"),
            ("state.tmp", "state.json"),
        ] {
            assert!(
                validate_separate_files(&d.join(audit), &d.join(state)).is_ok(),
                "{audit} and {state}"
            );
        }
        // Relative to the working directory, as the files are opened.
        let cwd = std::env::current_dir().unwrap();
        assert!(same_file(Path::new("./x"), &cwd.join("x")));
        assert!(same_file(Path::new("x"), Path::new("./y/../x")));
    }

    #[test]
    fn wrong_types_are_parse_errors_naming_the_key() {
        let err = Config::parse("dry_run = \"yes\"").unwrap_err().to_string();
        assert!(err.contains("dry_run"), "{err}");
    }
}
