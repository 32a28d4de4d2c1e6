//! Typed configuration: a TOML file (optional) whose every key has a default, validated as a whole
//! before anything talks to AWS, so a bad value stops the process with the key named.
//!
//! The file is read here and layered with the environment (`env`) into the shape serde reads
//! (`raw`); each key is then checked (`validate`, with `duration` for lengths of time, `schedule`,
//! `events` and `paths`) and takes its default (`defaults`) when absent, giving the settings
//! (`settings`) the rest of forcemfa reads.

pub mod defaults;
mod duration;
mod env;
mod error;
pub mod events;
pub mod notify;
mod paths;
mod raw;
pub mod rollout;
pub mod schedule;
mod settings;
mod validate;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::environment;
use env::{naming_variable, overlay_env, ENV_PREFIX};
pub use error::ConfigError;
pub use events::EventsSettings;
pub use notify::NotifySettings;
use raw::RawConfig;
pub use rollout::RolloutSettings;
use schedule::Schedule;
pub use settings::{
    AccountTarget, AwsSettings, CleanupSettings, ExemptRules, GroupPolicySettings,
    OrganizationSettings, RetryMode,
};
pub use validate::{role_arn_account, MIN_SCHEDULE_INTERVAL, MIN_UNASSIGNED_AGE};

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
    /// back. By default [`defaults::RUN_TIMEOUT`], or the schedule's shortest interval when that is
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
    /// Deadlines before users are added, and holding users whose keys are in use.
    pub rollout: RolloutSettings,
    /// Telling admins and the users concerned (`[notify]`); nothing is sent without a channel.
    pub notify: NotifySettings,
}

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
        Config::from_raw(raw).map_err(|e| naming_variable(e, &overridden))
    }

    fn from_raw(raw: RawConfig) -> Result<Config, ConfigError> {
        let group = raw.group.unwrap_or_else(|| defaults::GROUP.to_string());
        validate::group_name(&group)?;
        validate::account_id(raw.account_id.as_deref())?;
        let max_changes = raw
            .max_changes
            .map(|n| validate::positive("max_changes", n))
            .transpose()?;
        let (schedule, interval) = validate::schedule(raw.schedule)?;
        let run_timeout = validate::run_timeout(raw.run_timeout.as_deref(), interval)?;
        let log_level = raw
            .log_level
            .unwrap_or_else(|| defaults::LOG_LEVEL.to_string());
        validate::log_level(&log_level)?;
        let exempt = validate::exempt(raw.exempt)?;
        let admin_listen = validate::admin_listen(raw.admin.listen)?;
        let aws = validate::aws(&raw.aws)?;
        let cleanup = validate::cleanup(raw.cleanup)?;
        if let (Some(audit_log), Some(state_file)) = (&raw.audit_log, &cleanup.state_file) {
            paths::validate_separate_files(audit_log, state_file)?;
        }
        let notify = notify::validate(raw.notify)?;
        if let Some(path) = &notify.state_file {
            paths::validate_notify_state(
                path,
                &[
                    ("audit_log", raw.audit_log.as_deref()),
                    ("cleanup.state_file", cleanup.state_file.as_deref()),
                ],
            )?;
        }
        Ok(Config {
            group,
            account_id: raw.account_id,
            dry_run: raw.dry_run.unwrap_or(defaults::DRY_RUN),
            max_changes,
            console_users_only: raw
                .console_users_only
                .unwrap_or(defaults::CONSOLE_USERS_ONLY),
            schedule,
            run_timeout,
            run_on_start: raw.run_on_start.unwrap_or(defaults::RUN_ON_START),
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
                    .unwrap_or(defaults::ALLOW_ENROLMENT_WITH_ACCESS_KEYS),
            },
            accounts: validate::accounts(raw.accounts)?,
            organization: raw.organization.map(validate::organization).transpose()?,
            events: events::validate(raw.events)?,
            rollout: rollout::validate(raw.rollout)?,
            notify,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use error::key_of;

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
        assert_eq!(c.run_timeout, defaults::RUN_TIMEOUT);
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
            // Past a day, even where the schedule leaves more.
            "schedule = \"0 0 29 2 *\"\nrun_timeout = \"25h\"",
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
    fn wrong_types_are_parse_errors_naming_the_key() {
        let err = Config::parse("dry_run = \"yes\"").unwrap_err().to_string();
        assert!(err.contains("dry_run"), "{err}");
    }
}
