//! Logging: JSON lines on stderr (the default off a terminal, for journald and log shippers) or a
//! readable format for people, with a level that the configuration may set once it is loaded.

use std::io::IsTerminal;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, reload, EnvFilter, Registry};

use crate::environment;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Json,
    Pretty,
}

impl LogFormat {
    /// Pretty for a person at a terminal, JSON for everything else.
    pub fn detect() -> LogFormat {
        if std::io::stderr().is_terminal() {
            LogFormat::Pretty
        } else {
            LogFormat::Json
        }
    }
}

/// Everybody else's events (the SDK's) only from `warn`, and its credential and region providers'
/// only from `error`: their warning that one failed is a dump of the error (kilobytes of request
/// internals), which the failed call's own error then says in words; without a region, IAM's
/// calls are signed for us-east-1 anyway.
const OTHERS: &str = "warn,aws_config::meta::credentials=error,aws_config::imds::region=error,\
aws_config::profile::credentials=error,aws_config::web_identity_token=error,\
aws_config::sts::assume_role=error";

/// forcemfa's own events at `info`.
const DEFAULT_LEVEL: &str = "info";

/// Handle on the installed subscriber, to apply the configured level after start-up.
pub struct Telemetry {
    filter: reload::Handle<EnvFilter, Registry>,
}

/// A bare level (`debug`) applies to forcemfa; a full directive list is used as written.
fn directives(level: &str) -> String {
    if is_directive_list(level) {
        level.to_string()
    } else {
        format!("{OTHERS},forcemfa={level}")
    }
}

fn is_directive_list(level: &str) -> bool {
    level.contains('=') || level.contains(',')
}

/// Why a configured `log_level` cannot be applied.
#[derive(Debug, thiserror::Error)]
pub enum LevelError {
    #[error("`{level}` is not one of {}", LEVELS.join(", "))]
    NotALevel { level: String },
    #[error(transparent)]
    Directives(#[from] tracing_subscriber::filter::ParseError),
}

/// The levels a bare `log_level` may name, in any letter case.
const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];

/// The filter for the configured `log_level`. A bare level must be a level's name (a bare word
/// would otherwise be taken for a target name and silently change nothing); a directive list
/// must parse.
pub fn level_filter(level: &str) -> Result<EnvFilter, LevelError> {
    if !is_directive_list(level) && !LEVELS.contains(&level.to_ascii_lowercase().as_str()) {
        return Err(LevelError::NotALevel {
            level: level.to_string(),
        });
    }
    Ok(EnvFilter::builder().parse(directives(level))?)
}

fn rust_log() -> Option<EnvFilter> {
    environment::var("RUST_LOG")
        .ok()
        .flatten()
        .filter(|v| !v.trim().is_empty())
        .and_then(|v| EnvFilter::builder().parse(v).ok())
}

impl Telemetry {
    /// Installs the global subscriber. RUST_LOG, when set, wins over any configured level.
    pub fn init(format: LogFormat) -> Telemetry {
        let filter = rust_log().unwrap_or_else(|| EnvFilter::new(directives(DEFAULT_LEVEL)));
        let (filter, handle) = reload::Layer::new(filter);
        let json = (format == LogFormat::Json).then(|| {
            fmt::layer()
                .json()
                .flatten_event(true)
                .with_current_span(true)
                .with_span_list(false)
                .with_writer(std::io::stderr)
        });
        let pretty = (format == LogFormat::Pretty).then(|| {
            fmt::layer()
                .with_ansi(std::io::stderr().is_terminal())
                .with_writer(std::io::stderr)
        });
        // A second init (only possible in tests) keeps the first subscriber.
        let _ = tracing_subscriber::registry()
            .with(filter)
            .with(json)
            .with(pretty)
            .try_init();
        if format == LogFormat::Json {
            // Even a panic's message is a JSON line, for journald and log shippers.
            std::panic::set_hook(Box::new(|info| {
                tracing::error!(panic = %info, "panic");
            }));
        }
        Telemetry { filter: handle }
    }

    /// Applies `log_level` from the configuration unless RUST_LOG is set.
    pub fn set_level(&self, level: &str) {
        if rust_log().is_some() {
            return;
        }
        if let Ok(filter) = level_filter(level) {
            let _ = self.filter.reload(filter);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_levels_apply_to_forcemfa_only() {
        assert_eq!(directives("debug"), format!("{OTHERS},forcemfa=debug"));
        assert!(level_filter("debug").is_ok());
        assert_eq!(directives("info,aws_config=debug"), "info,aws_config=debug");
    }
}
