//! The admin token: what the service asks of a caller off loopback, and what the client commands
//! present. Both sides use it; neither owns it.

use std::fmt;

use crate::config::{Config, ConfigError};
use crate::environment;

/// Environment variable that may hold the admin token instead of `admin.token_file`.
pub const TOKEN_ENV: &str = "FORCEMFA_ADMIN_TOKEN";

/// A bearer token. Never printed: its Debug form is masked.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(***)")
    }
}

impl Token {
    #[cfg(test)]
    pub(crate) fn for_tests(text: &str) -> Token {
        Token(text.to_string())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Compares in time independent of where the first difference is.
    pub fn matches(&self, presented: &str) -> bool {
        let (a, b) = (self.0.as_bytes(), presented.as_bytes());
        let mut diff = u8::from(a.len() != b.len());
        for (i, x) in a.iter().enumerate() {
            diff |= x ^ b.get(i).copied().unwrap_or(0);
        }
        diff == 0
    }
}

/// The admin token from `admin.token_file`, else from FORCEMFA_ADMIN_TOKEN, else none.
pub fn load_token(config: &Config) -> Result<Option<Token>, ConfigError> {
    if let Some(path) = &config.admin_token_file {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Invalid {
            key: "admin.token_file".to_string(),
            message: format!("cannot read {}: {e}", path.display()),
        })?;
        let token = text.trim();
        if token.is_empty() {
            return Err(ConfigError::Invalid {
                key: "admin.token_file".to_string(),
                message: format!("{} is empty", path.display()),
            });
        }
        return Ok(Some(Token(token.to_string())));
    }
    Ok(environment::var(TOKEN_ENV)?
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .map(Token))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_do_not_print() {
        assert_eq!(format!("{:?}", Token("s3cret".into())), "Token(***)");
    }
}
