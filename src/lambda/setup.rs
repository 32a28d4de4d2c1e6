//! The function's set-up, once per execution environment: the configuration loaded and held to
//! what a function can do (no file kept, a run that ends before the function).

use std::path::{Path, PathBuf};
use std::time::Duration;

use tracing::warn;

use super::invocation::Takes;
use crate::config::{Config, ConfigError};
use crate::environment::{self, NotUnicode};
use crate::notify::SEND_TIMEOUT;
use crate::reconcile::run::time_past_deadline;
use crate::telemetry::Telemetry;

/// The function's timeout as the stack set it, in seconds.
pub const FUNCTION_TIMEOUT_VAR: &str = "FORCEMFA_FUNCTION_TIMEOUT";
/// Which invocations the function takes: `runs`, `events`, or (unset) both.
pub const FUNCTION_TAKES_VAR: &str = "FORCEMFA_FUNCTION_TAKES";
/// Lambda's longest timeout.
const MOST_TIMEOUT: Duration = Duration::from_secs(900);
/// What an invocation needs after its run and its notifications: the report and the metrics.
pub const REPORT_TIME: Duration = Duration::from_secs(10);
/// The keys that name files, which a function cannot keep.
const FILE_KEYS: [&str; 3] = ["audit_log", "cleanup.state_file", "notify.state_file"];

/// Why the function cannot reconcile: every invocation answers with it, and changes nothing.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("invalid environment: {0}")]
    Environment(#[from] NotUnicode),
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
    #[error("invalid configuration: `{key}` is not available in a Lambda function: the package is read-only and /tmp is lost with the execution environment; the audit trail is the function's log in CloudWatch Logs")]
    FileKey { key: &'static str },
    #[error("invalid environment variable {FUNCTION_TIMEOUT_VAR}={value:?}: the function's timeout in whole seconds, 1 to 900")]
    FunctionTimeout { value: String },
    #[error("invalid environment variable {FUNCTION_TAKES_VAR}={value:?}: `runs`, `events`, or unset for both")]
    FunctionTakes { value: String },
    #[error("invalid configuration: `cleanup.unassigned_mfa_devices` is not available in a Lambda function: a device is deleted once seen unassigned for cleanup.unassigned_min_age, which needs the sightings kept from run to run in cleanup.state_file, and a function keeps no file")]
    Cleanup,
    #[error("invalid configuration: run_timeout ({run_timeout} s) + {settle} s for the requests sent before it to end (twice aws.operation_timeout_secs, and 5 s) + {notify} s for a notification ([notify]; the rest wait for the next run) + {report} s for the report = {needed} s, more than {limit}; lower run_timeout (FORCEMFA__RUN_TIMEOUT) or raise the function's timeout")]
    RunTimeout {
        run_timeout: u64,
        settle: u64,
        notify: u64,
        report: u64,
        needed: u64,
        /// The limit, named: the function's timeout or the time an invocation has.
        limit: String,
    },
}

/// The time a run may take from the start of an invocation to its report: the run, the requests
/// it sent before its deadline, one message at least when `[notify]` names a channel (the
/// notifier sends what fits in the time left, at most a minute, and keeps the rest), the report.
pub fn time_needed(config: &Config) -> Duration {
    config.run_timeout + time_past_deadline(config) + notify_time(config) + REPORT_TIME
}

/// The time kept for notifications: one message's, when there are any.
fn notify_time(config: &Config) -> Duration {
    match config.notify.any() {
        true => SEND_TIMEOUT,
        false => Duration::ZERO,
    }
}

/// Refuses a configuration whose run would outlast `limit` (`what` names it).
pub fn check_fits(config: &Config, limit: Duration, what: &str) -> Result<(), SetupError> {
    let needed = time_needed(config);
    if needed < limit {
        return Ok(());
    }
    Err(SetupError::RunTimeout {
        run_timeout: config.run_timeout.as_secs(),
        settle: time_past_deadline(config).as_secs(),
        notify: notify_time(config).as_secs(),
        report: REPORT_TIME.as_secs(),
        needed: needed.as_secs(),
        limit: format!("{what} ({} s)", limit.as_secs()),
    })
}

/// The function's timeout from `FORCEMFA_FUNCTION_TIMEOUT`, when set.
fn function_timeout(value: Option<&str>) -> Result<Option<Duration>, SetupError> {
    let Some(value) = value else {
        return Ok(None);
    };
    match value.trim().parse::<u64>() {
        Ok(secs) if (1..=MOST_TIMEOUT.as_secs()).contains(&secs) => {
            Ok(Some(Duration::from_secs(secs)))
        }
        _ => Err(SetupError::FunctionTimeout {
            value: value.to_string(),
        }),
    }
}

/// The configuration file: `FORCEMFA_CONFIG`, or `forcemfa.toml` in the package when there.
fn config_path(given: Option<PathBuf>, task_root: Option<&str>) -> Option<PathBuf> {
    given.filter(|p| !p.as_os_str().is_empty()).or_else(|| {
        let packaged = Path::new(task_root?).join("forcemfa.toml");
        packaged.is_file().then_some(packaged)
    })
}

/// What the function runs with.
pub struct Setup {
    pub config: Config,
    pub takes: Takes,
    /// The function's timeout, as the stack set it.
    pub timeout: Option<Duration>,
}

/// Checks what only a function must be: no file to keep, a run that ends before the function;
/// returns the function's timeout, when the stack set it.
fn check_config(config: &Config) -> Result<Option<Duration>, SetupError> {
    let set = [
        config.audit_log.is_some(),
        config.cleanup.state_file.is_some(),
        config.notify.state_file.is_some(),
    ];
    if let Some((key, _)) = FILE_KEYS.iter().zip(set).find(|(_, set)| *set) {
        return Err(SetupError::FileKey { key });
    }
    if config.cleanup.unassigned_mfa_devices {
        return Err(SetupError::Cleanup);
    }
    let timeout = function_timeout(environment::var(FUNCTION_TIMEOUT_VAR)?.as_deref())?;
    if let Some(timeout) = timeout {
        let what = format!("the function's timeout, {FUNCTION_TIMEOUT_VAR}");
        check_fits(config, timeout, &what)?;
    }
    if config.events.is_some() {
        warn!("[events] is not read by the function: the events queue's event source mapping delivers its messages");
    }
    Ok(timeout)
}

/// Loads and checks the configuration and what the function takes.
pub fn load(telemetry: &Telemetry) -> Result<Setup, SetupError> {
    environment::check()?;
    let value = environment::var(FUNCTION_TAKES_VAR)?;
    let takes = Takes::parse(value.as_deref()).ok_or_else(|| SetupError::FunctionTakes {
        value: value.clone().unwrap_or_default(),
    })?;
    let given = environment::path("FORCEMFA_CONFIG");
    let task_root = environment::var("LAMBDA_TASK_ROOT")?;
    let config = Config::load(config_path(given, task_root.as_deref()).as_deref())?;
    telemetry.set_level(&config.log_level);
    let timeout = check_config(&config)?;
    Ok(Setup {
        config,
        takes,
        timeout,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_must_end_with_time_to_spare_before_the_function() {
        let config = Config::parse("run_timeout = \"12m\"").unwrap();
        assert_eq!(time_needed(&config).as_secs(), 12 * 60 + 2 * 60 + 5 + 10);
        assert!(check_fits(&config, Duration::from_secs(900), "t").is_ok());
        let error = check_fits(&config, Duration::from_secs(855), "the function's timeout")
            .unwrap_err()
            .to_string();
        assert!(error.contains("run_timeout (720 s) + 125 s"), "{error}");
        assert!(error.contains("the function's timeout (855 s)"), "{error}");
        // The default run_timeout (45 minutes) never fits in a function.
        let default = Config::parse("").unwrap();
        assert!(check_fits(&default, MOST_TIMEOUT, "t").is_err());
    }

    #[test]
    fn notifications_count_in_the_time_a_run_needs() {
        let text =
            "run_timeout = \"12m\"\n[notify]\nwebhook_url = \"https://chat.example.com/hook\"";
        let config = Config::parse(text).unwrap();
        assert_eq!(
            time_needed(&config).as_secs(),
            12 * 60 + 2 * 60 + 5 + 10 + 10
        );
        let error = check_fits(&config, Duration::from_secs(860), "the function's timeout")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("+ 10 s for a notification ([notify]"),
            "{error}"
        );
        assert!(error.contains("= 865 s"), "{error}");
        assert!(check_fits(&config, Duration::from_secs(900), "t").is_ok());
    }

    #[test]
    fn the_function_timeout_is_whole_seconds_up_to_lambdas_limit() {
        assert_eq!(function_timeout(None).unwrap(), None);
        assert_eq!(
            function_timeout(Some("900")).unwrap(),
            Some(Duration::from_secs(900))
        );
        for bad in ["0", "901", "15m", "", "-1"] {
            let error = function_timeout(Some(bad)).unwrap_err().to_string();
            assert!(error.contains(FUNCTION_TIMEOUT_VAR), "{bad}: {error}");
        }
    }

    #[test]
    fn what_a_function_cannot_keep_is_refused_naming_the_key() {
        for (text, key) in [
            ("audit_log = \"/tmp/audit.jsonl\"", "audit_log"),
            (
                "[notify]\nstate_file = \"/tmp/notify.json\"",
                "notify.state_file",
            ),
            (
                "[cleanup]\nstate_file = \"/tmp/cleanup.json\"",
                "cleanup.state_file",
            ),
            (
                "[cleanup]\nunassigned_mfa_devices = true",
                "cleanup.unassigned_mfa_devices",
            ),
        ] {
            let config = Config::parse(&format!("run_timeout = \"5m\"\n{text}")).unwrap();
            let error = check_config(&config).unwrap_err().to_string();
            assert!(error.contains(&format!("`{key}`")), "{error}");
        }
    }

    #[test]
    fn the_configuration_is_the_one_named_or_the_one_packaged() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_str().unwrap();
        assert_eq!(config_path(None, Some(root)), None);
        assert_eq!(config_path(None, None), None);
        std::fs::write(dir.path().join("forcemfa.toml"), "").unwrap();
        assert_eq!(
            config_path(None, Some(root)),
            Some(dir.path().join("forcemfa.toml"))
        );
        let named = PathBuf::from("/opt/forcemfa.toml");
        assert_eq!(config_path(Some(named.clone()), Some(root)), Some(named));
    }
}
