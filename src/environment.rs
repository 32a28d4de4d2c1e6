//! The process environment, and forcemfa's one reader of it. forcemfa reads a few variables: its
//! own (`FORCEMFA_*`), `RUST_LOG`, as a Lambda function `AWS_LAMBDA_*` (and `LAMBDA_TASK_ROOT`
//! when it reads it), and through the AWS SDK the `AWS_*` settings and `HOME` (where `~/.aws`
//! is). Each must be UTF-8: one that is not would otherwise be taken as unset, silently. Every
//! other variable is none of forcemfa's business, whatever its bytes.

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

/// Variables read as paths, which may be any bytes.
const PATHS: [&str; 1] = ["FORCEMFA_CONFIG"];

/// A variable forcemfa reads whose name or value is not UTF-8.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("environment variable {name} is not valid UTF-8")]
pub struct NotUnicode {
    /// The name, with any invalid bytes replaced.
    pub name: String,
}

fn not_unicode(name: &OsString) -> NotUnicode {
    NotUnicode {
        name: name.to_string_lossy().into_owned(),
    }
}

/// Whether forcemfa, or the AWS SDK on its behalf, reads the variable `name`.
fn is_read(name: &[u8]) -> bool {
    let own = name.starts_with(b"FORCEMFA_") && !PATHS.iter().any(|p| p.as_bytes() == name);
    own || name.starts_with(b"AWS_") || name == b"RUST_LOG" || name == b"HOME"
}

/// Fails on the first variable forcemfa reads that is not UTF-8.
pub fn check() -> Result<(), NotUnicode> {
    check_vars(std::env::vars_os())
}

fn check_vars(vars: impl IntoIterator<Item = (OsString, OsString)>) -> Result<(), NotUnicode> {
    for (name, value) in vars {
        if is_read(name.as_bytes()) && (name.to_str().is_none() || value.to_str().is_none()) {
            return Err(not_unicode(&name));
        }
    }
    Ok(())
}

/// Every variable whose name starts with `prefix`, sorted by name.
pub fn with_prefix(prefix: &str) -> Result<Vec<(String, String)>, NotUnicode> {
    select(std::env::vars_os(), prefix)
}

fn select(
    vars: impl IntoIterator<Item = (OsString, OsString)>,
    prefix: &str,
) -> Result<Vec<(String, String)>, NotUnicode> {
    let mut selected = Vec::new();
    for (name, value) in vars {
        if !name.as_bytes().starts_with(prefix.as_bytes()) {
            continue;
        }
        match (name.to_str(), value.to_str()) {
            (Some(n), Some(v)) => selected.push((n.to_string(), v.to_string())),
            _ => return Err(not_unicode(&name)),
        }
    }
    selected.sort();
    Ok(selected)
}

/// The variable `name`, or None when it is not set.
pub fn var(name: &str) -> Result<Option<String>, NotUnicode> {
    match std::env::var(name) {
        Ok(value) => Ok(Some(value)),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => Err(NotUnicode {
            name: name.to_string(),
        }),
    }
}

/// The path in the variable `name`, whatever its bytes, or None when it is not set.
pub fn path(name: &str) -> Option<PathBuf> {
    std::env::var_os(name).map(PathBuf::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    fn vars(pairs: &[(&[u8], &[u8])]) -> Vec<(OsString, OsString)> {
        pairs
            .iter()
            .map(|(n, v)| {
                (
                    OsStr::from_bytes(n).to_os_string(),
                    OsStr::from_bytes(v).to_os_string(),
                )
            })
            .collect()
    }

    #[test]
    fn variables_forcemfa_does_not_read_may_hold_any_bytes() {
        let env = vars(&[
            (b"X", b"\xff"),
            (b"\xff", b"1"),
            (b"LANG", b"C.\xff"),
            (b"FORCEMFA_CONFIG", b"/etc/\xff.toml"),
            (b"AWS_REGION", b"us-east-1"),
        ]);
        assert_eq!(check_vars(env.clone()), Ok(()));
        assert_eq!(
            select(env, "FORCEMFA__"),
            Ok(Vec::new()),
            "nothing else is an override"
        );
    }

    #[test]
    fn variables_forcemfa_reads_are_named() {
        for name in [
            &b"FORCEMFA__DRY_RUN"[..],
            b"FORCEMFA_ADMIN_TOKEN",
            b"FORCEMFA_LOG_FORMAT",
            b"RUST_LOG",
            b"AWS_PROFILE",
            b"AWS_LAMBDA_FUNCTION_NAME",
            b"HOME",
        ] {
            let err = check_vars(vars(&[(b"X", b"1"), (name, b"\xff")])).unwrap_err();
            assert_eq!(err.name.as_bytes(), name);
        }
        let err = check_vars(vars(&[(b"FORCEMFA__GR\xffOUP", b"x")])).unwrap_err();
        assert_eq!(err.name, "FORCEMFA__GR\u{fffd}OUP");
    }

    #[test]
    fn overrides_are_selected_by_prefix_and_sorted() {
        let env = vars(&[
            (b"FORCEMFA__GROUP", b"G"),
            (b"FORCEMFA_CONFIG", b"x"),
            (b"FORCEMFA__DRY_RUN", b"true"),
            (b"X", b"\xff"),
        ]);
        assert_eq!(
            select(env, "FORCEMFA__").unwrap(),
            vec![
                ("FORCEMFA__DRY_RUN".to_string(), "true".to_string()),
                ("FORCEMFA__GROUP".to_string(), "G".to_string()),
            ]
        );
        let err = select(vars(&[(b"FORCEMFA__GROUP", b"\xff")]), "FORCEMFA__").unwrap_err();
        assert_eq!(err.name, "FORCEMFA__GROUP");
    }
}
