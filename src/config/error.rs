//! What can be wrong with the configuration. Each error names the file or the key, and the
//! environment variable when one set it.

use std::path::PathBuf;

use crate::environment::NotUnicode;

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
    /// The value of `key` is refused, for the reason `message` gives.
    pub(super) fn invalid(key: &str, message: impl std::fmt::Display) -> Self {
        ConfigError::Invalid {
            key: key.to_string(),
            message: message.to_string(),
        }
    }
}

/// The key an error names, for tests that check which key was refused.
#[cfg(test)]
pub(super) fn key_of(err: ConfigError) -> String {
    match err {
        ConfigError::Invalid { key, .. } => key,
        other => panic!("expected an invalid key, got {other}"),
    }
}
