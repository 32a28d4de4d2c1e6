//! `FORCEMFA__SECTION__KEY` environment variables, written over the file's keys before the
//! configuration is validated, so that every value is checked the same way whatever its source.

use super::error::ConfigError;

/// Prefix of the environment variables that override configuration keys: `FORCEMFA__GROUP`,
/// `FORCEMFA__ADMIN__LISTEN`, `FORCEMFA__EXEMPT__USERS='["breakglass"]'`.
pub const ENV_PREFIX: &str = "FORCEMFA__";

/// Writes every `FORCEMFA__*` variable into `table`; returns the variables' names. A value that
/// reads as a TOML value (`true`, `25`, `["a"]`) is taken as one, anything else as a string.
pub(super) fn overlay_env(
    table: &mut toml::Table,
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<Vec<String>, ConfigError> {
    let mut names = Vec::new();
    let mut vars: Vec<(String, String)> = vars
        .into_iter()
        .filter(|(k, _)| k.starts_with(ENV_PREFIX))
        .collect();
    vars.sort();
    for (name, value) in vars {
        let path: Vec<String> = name[ENV_PREFIX.len()..]
            .split("__")
            .map(str::to_ascii_lowercase)
            .collect();
        if path.iter().any(std::string::String::is_empty) {
            return Err(ConfigError::invalid(
                &name,
                "is not of the form FORCEMFA__KEY or FORCEMFA__SECTION__KEY",
            ));
        }
        let parsed = toml::from_str::<toml::Table>(&format!("v = {value}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| toml::Value::String(value.clone()));
        let Some((key, sections)) = path.split_last() else {
            return Err(ConfigError::invalid(&name, "names no key"));
        };
        let mut slot = &mut *table;
        for section in sections {
            let entry = slot
                .entry(section.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            slot = match entry {
                toml::Value::Table(t) => t,
                _ => {
                    return Err(ConfigError::invalid(
                        &name,
                        format!("`{section}` is not a section"),
                    ))
                }
            };
        }
        slot.insert(key.clone(), parsed);
        names.push(name);
    }
    Ok(names)
}

/// `error`, naming the variable among `variables` that set the invalid key, if one did.
pub(super) fn naming_variable(error: ConfigError, variables: &[String]) -> ConfigError {
    let ConfigError::Invalid { key, message } = error else {
        return error;
    };
    match variables.iter().find(|v| variable_sets(v, &key)) {
        Some(variable) => ConfigError::Invalid {
            key,
            message: format!("{message} (set by {variable})"),
        },
        None => ConfigError::Invalid { key, message },
    }
}

/// Whether the override `variable` sets `key` or a table holding it: `FORCEMFA__AWS__PAGE_SIZE`
/// sets `aws.page_size`, `FORCEMFA__ACCOUNTS` sets `accounts[0].role_arn`.
fn variable_sets(variable: &str, key: &str) -> bool {
    let Some(path) = variable.strip_prefix(ENV_PREFIX) else {
        return false;
    };
    let path = path.to_ascii_lowercase().replace("__", ".");
    key == path
        || key
            .strip_prefix(path.as_str())
            .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['))
}
