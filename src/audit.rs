//! The audit trail: every change actually made (never a dry run's plan) appended to a file as
//! one JSON line, written and flushed to disk before the run reports it.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::Serialize;

use crate::sync::lock;

/// One change as recorded.
#[derive(Debug, Clone, Serialize)]
pub struct Entry<'a> {
    pub time: String,
    pub run_id: &'a str,
    pub account_id: &'a str,
    pub group: &'a str,
    /// The user changed (for device deletions, the device's serial number).
    pub user: &'a str,
    /// `add`, `remove` or `delete_mfa_device`.
    pub action: &'a str,
    pub reason: &'a str,
}

/// An append-only JSON-lines file.
pub struct AuditLog {
    path: PathBuf,
    file: Mutex<File>,
}

impl AuditLog {
    /// Opens (creating) `path` for appending.
    pub fn open(path: &Path) -> Result<AuditLog, String> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| format!("cannot open audit_log {}: {e}", path.display()))?;
        Ok(AuditLog {
            path: path.to_path_buf(),
            file: Mutex::new(file),
        })
    }

    /// Appends one line and syncs it to disk.
    pub fn record(&self, entry: &Entry<'_>) -> Result<(), String> {
        let mut line = serde_json::to_string(entry).map_err(|e| e.to_string())?;
        line.push('\n');
        let mut file = lock(&self.file);
        file.write_all(line.as_bytes())
            .and_then(|()| file.sync_data())
            .map_err(|e| format!("cannot write audit_log {}: {e}", self.path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_appended_as_json_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        std::fs::write(&path, "{\"earlier\":true}\n").unwrap();
        let log = AuditLog::open(&path).unwrap();
        for user in ["alice", "bob"] {
            log.record(&Entry {
                time: "2026-01-01T00:00:00Z".into(),
                run_id: "r",
                account_id: "123456789012",
                group: "ForceMFA",
                user,
                action: "add",
                reason: "no MFA device",
            })
            .unwrap();
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[2]["user"], "bob");
        assert_eq!(lines[2]["action"], "add");
    }

    #[test]
    fn an_unwritable_path_is_named() {
        let err = AuditLog::open(Path::new("/nonexistent/dir/audit.jsonl"))
            .err()
            .unwrap();
        assert!(err.contains("/nonexistent/dir/audit.jsonl"), "{err}");
    }
}
