//! The function's set-up, once per execution environment: the configuration loaded and held to
//! what a function can do (no file kept, a run that ends before the function).

use std::path::{Path, PathBuf};
use std::time::Duration;

use tracing::warn;

use crate::config::{Config, ConfigError};
use crate::environment::{self, NotUnicode};
use crate::telemetry::Telemetry;

/// The function's timeout as the stack set it, in seconds.
pub const FUNCTION_TIMEOUT_VAR: &str = "FORCEMFA_FUNCTION_TIMEOUT";
/// Lambda's longest timeout.
const MOST_TIMEOUT: Duration = Duration::from_secs(900);
/// What a run needs after its deadline besides its last requests: the report, the metrics.
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
    #[error("invalid configuration: run_timeout ({run_timeout} s) + aws.operation_timeout_secs ({operation} s, what a request sent at the deadline may still take) + {report} s for the report = {needed} s, more than {limit}; lower run_timeout (FORCEMFA__RUN_TIMEOUT) or raise the function's timeout")]
    RunTimeout {
        run_timeout: u64,
        operation: u64,
        report: u64,
        needed: u64,
        /// The limit, named: the function's timeout or the time an invocation has.
        limit: String,
    },
}

/// The time a run may take from the start of an invocation to its report.
pub fn time_needed(config: &Config) -> Duration {
    config.run_timeout + Duration::from_secs(config.aws.operation_timeout_secs) + REPORT_TIME
}

/// Refuses a configuration whose run would outlast `limit` (`what` names it).
pub fn check_fits(config: &Config, limit: Duration, what: &str) -> Result<(), SetupError> {
    let needed = time_needed(config);
    if needed < limit {
        return Ok(());
    }
    Err(SetupError::RunTimeout {
        run_timeout: config.run_timeout.as_secs(),
        operation: config.aws.operation_timeout_secs,
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

/// Checks what only a function must be: no file to keep, a run that ends before the function.
fn check_config(config: &Config) -> Result<(), SetupError> {
    let set = [
        config.audit_log.is_some(),
        config.cleanup.state_file.is_some(),
        config.notify.state_file.is_some(),
    ];
    if let Some((key, _)) = FILE_KEYS.iter().zip(set).find(|(_, set)| *set) {
        return Err(SetupError::FileKey { key });
    }
    let timeout = function_timeout(std::env::var(FUNCTION_TIMEOUT_VAR).ok().as_deref())?;
    if let Some(timeout) = timeout {
        let what = format!("the function's timeout, {FUNCTION_TIMEOUT_VAR}");
        check_fits(config, timeout, &what)?;
    }
    if config.events.is_some() {
        warn!("[events] is not read by the function: the events queue's event source mapping delivers its messages");
    }
    Ok(())
}

/// Loads and checks the configuration.
pub fn load_config(telemetry: &Telemetry) -> Result<Config, SetupError> {
    environment::check()?;
    let given = std::env::var_os("FORCEMFA_CONFIG").map(PathBuf::from);
    let task_root = std::env::var("LAMBDA_TASK_ROOT").ok();
    let config = Config::load(config_path(given, task_root.as_deref()).as_deref())?;
    telemetry.set_level(&config.log_level);
    check_config(&config)?;
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_must_end_with_time_to_spare_before_the_function() {
        let config = Config::parse("run_timeout = \"13m\"").unwrap();
        assert_eq!(time_needed(&config).as_secs(), 13 * 60 + 60 + 10);
        assert!(check_fits(&config, Duration::from_secs(900), "t").is_ok());
        let error = check_fits(&config, Duration::from_secs(850), "the function's timeout")
            .unwrap_err()
            .to_string();
        assert!(error.contains("run_timeout (780 s)"), "{error}");
        assert!(error.contains("the function's timeout (850 s)"), "{error}");
        // The default run_timeout (45 minutes) never fits in a function.
        let default = Config::parse("").unwrap();
        assert!(check_fits(&default, MOST_TIMEOUT, "t").is_err());
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
    fn keys_that_name_files_are_refused_naming_the_key() {
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
