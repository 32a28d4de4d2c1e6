//! The files the configuration names, compared as the system resolves them: the audit log and the
//! state file must be two files however they are spelled.

use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use super::error::ConfigError;

/// The audit log is only ever appended to; the state file is rewritten whole, through a temporary
/// file beside it. Were they one file, each run would wipe the audit trail. (The temporary file
/// has a random name and is created exclusively, so it can never be the audit log.)
pub(super) fn validate_separate_files(
    audit_log: &Path,
    state_file: &Path,
) -> Result<(), ConfigError> {
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

/// The notification record is rewritten whole too: it must be neither the audit log nor the
/// device record.
pub(super) fn validate_notify_state(
    notify_state: &Path,
    others: &[(&'static str, Option<&Path>)],
) -> Result<(), ConfigError> {
    for (key, other) in others {
        if let Some(other) = other.filter(|o| same_file(o, notify_state)) {
            return Err(ConfigError::invalid(
                "notify.state_file",
                format!(
                    "`{}` is the same file as {key} `{}`; rewriting the notification record would destroy it",
                    notify_state.display(),
                    other.display()
                ),
            ));
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::error::key_of;

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
}
