//! The audit trail: every change forcemfa makes (never a dry run's plan), one JSON line per step.
//!
//! Each change is written ahead: an `intent` line is appended and synced to disk *before* the
//! request is sent, and a `done` or `failed` line as soon as IAM has answered. A crash at any
//! instant (`kill -9`, OOM, power loss after the sync) therefore leaves every change IAM may have
//! made in the file, at worst as an intent without its confirmation. A change whose intent cannot
//! be written is not sent.
//!
//! The file only ever holds whole lines: a write that fails part-way (a full disk, a file size
//! limit) is cut back to where it started, and a partial last line left by anything else is cut
//! off before the next record, so that no record is ever glued onto a fragment. Writers take an
//! exclusive lock on the file for each record, so two processes sharing it interleave whole lines.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::clock::Timestamp;
use crate::files::{self, FileError, Mode};
use crate::sync::lock;

/// Which step of a change a line records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// About to be sent: IAM may have made the change even if no later line follows.
    Intent,
    /// IAM acknowledged the change.
    Done,
    /// IAM refused it, or a read after an answer that never came shows it not made: see
    /// `error`.
    Failed,
    /// No answer came, and the read to check failed too: IAM may or may not have made it (see
    /// `error`). The next run settles it from IAM's state.
    Unknown,
}

/// One line as recorded.
#[derive(Debug, Clone, Serialize)]
pub struct Entry<'a> {
    pub time: Timestamp,
    pub run_id: &'a str,
    pub account_id: &'a str,
    pub group: &'a str,
    /// The user changed (for device deletions, the device's serial number).
    pub user: &'a str,
    /// `add`, `remove` or `delete_mfa_device`.
    pub action: &'a str,
    pub outcome: Step,
    pub reason: &'a str,
    /// Why a `failed` change failed, or why an `unknown` one is not known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'a str>,
    /// For an add, what it takes away (see the report's `impact`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub impact: Option<&'a str>,
}

/// Why a record could not be written.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AuditError {
    #[error("cannot encode an audit record: {0}")]
    Encode(Arc<serde_json::Error>),
    #[error("cannot write audit_log {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: Arc<std::io::Error>,
    },
}

/// The configuration key that names the file, for errors.
const KEY: &str = "audit_log";

/// An append-only JSON-lines file.
pub struct AuditLog {
    path: PathBuf,
    file: Mutex<File>,
}

impl AuditLog {
    /// Opens (creating, readable by forcemfa's user only) `path` for appending, and cuts off a
    /// partial last line left behind. A link or anything but a regular file is refused.
    pub fn open(path: &Path) -> Result<AuditLog, FileError> {
        let file = files::open_append(KEY, path, Mode::Private)?;
        let log = AuditLog {
            path: path.to_path_buf(),
            file: Mutex::new(file),
        };
        log.locked_io(|file| end_on_whole_line(file).map(|_| ()))
            .map_err(|source| FileError::Io {
                key: KEY,
                path: path.to_path_buf(),
                op: "repair",
                source,
            })?;
        Ok(log)
    }

    /// Checks, opening nothing, that `path` could serve as the audit log (for a dry run).
    pub fn check(path: &Path) -> Result<(), FileError> {
        files::check(KEY, path)
    }

    /// Appends one line and syncs it to disk. On failure the file is left as it was.
    pub fn record(&self, entry: &Entry<'_>) -> Result<(), AuditError> {
        let mut line = serde_json::to_string(entry).map_err(|e| AuditError::Encode(Arc::new(e)))?;
        line.push('\n');
        self.locked(|file| {
            let start = end_on_whole_line(file)?;
            let written = file
                .write_all(line.as_bytes())
                .and_then(|()| file.sync_data());
            if let Err(e) = written {
                // Never leave a fragment for the next record to be glued onto.
                let _ = file.set_len(start).and_then(|()| file.sync_data());
                return Err(e);
            }
            Ok(())
        })
    }

    /// Runs `f` on the file under an exclusive lock that other processes respect too.
    fn locked<T>(&self, f: impl FnOnce(&mut File) -> std::io::Result<T>) -> Result<T, AuditError> {
        self.locked_io(f).map_err(|e| AuditError::Write {
            path: self.path.clone(),
            source: Arc::new(e),
        })
    }

    fn locked_io<T>(&self, f: impl FnOnce(&mut File) -> std::io::Result<T>) -> std::io::Result<T> {
        let mut file = lock(&self.file);
        file.lock().and_then(|()| {
            let result = f(&mut file);
            let _ = file.unlock();
            result
        })
    }
}

/// Makes the file end on a line break, cutting off a partial last line; returns its length.
fn end_on_whole_line(file: &mut File) -> std::io::Result<u64> {
    let len = file.metadata()?.len();
    if len == 0 || last_byte(file, len)? == b'\n' {
        return Ok(len);
    }
    let keep = last_line_end(file, len)?;
    file.set_len(keep)?;
    file.sync_data()?;
    Ok(keep)
}

fn last_byte(file: &mut File, len: u64) -> std::io::Result<u8> {
    let mut byte = [0u8; 1];
    file.seek(SeekFrom::Start(len - 1))?;
    file.read_exact(&mut byte)?;
    Ok(byte[0])
}

/// The length of the file up to and including its last line break (0 when it has none).
fn last_line_end(file: &mut File, len: u64) -> std::io::Result<u64> {
    const CHUNK: u64 = 64 * 1024;
    let mut end = len;
    let mut buf = vec![0u8; CHUNK as usize];
    while end > 0 {
        let start = end.saturating_sub(CHUNK);
        let chunk = &mut buf[..(end - start) as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(chunk)?;
        if let Some(i) = chunk.iter().rposition(|b| *b == b'\n') {
            return Ok(start + i as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry<'a>(user: &'a str, outcome: Step) -> Entry<'a> {
        Entry {
            time: Timestamp::from_unix(1_767_225_600).unwrap(),
            run_id: "r",
            account_id: "123456789012",
            group: "ForceMFA",
            user,
            action: "add",
            outcome,
            reason: "no MFA device",
            impact: None,
            error: None,
        }
    }

    fn lines(path: &Path) -> Vec<serde_json::Value> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn entries_are_appended_as_json_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        std::fs::write(&path, "{\"earlier\":true}\n").unwrap();
        let log = AuditLog::open(&path).unwrap();
        log.record(&entry("alice", Step::Intent)).unwrap();
        log.record(&entry("alice", Step::Done)).unwrap();
        let lines = lines(&path);
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[1]["outcome"], "intent");
        assert_eq!(lines[2]["user"], "alice");
        assert_eq!(lines[2]["outcome"], "done");
        assert!(lines[2].get("error").is_none());
    }

    #[test]
    fn a_partial_last_line_is_cut_off_before_the_next_record() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        std::fs::write(&path, "{\"whole\":1}\n{\"cut\":").unwrap();
        let log = AuditLog::open(&path).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\"whole\":1}\n");
        // Also when the fragment appears after opening (another writer's failed write).
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"{\"again\":")
            .unwrap();
        log.record(&entry("bob", Step::Intent)).unwrap();
        let lines = lines(&path);
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[1]["user"], "bob");
    }

    #[test]
    fn a_file_without_any_line_break_is_emptied() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        std::fs::write(&path, "x".repeat(200_000)).unwrap();
        AuditLog::open(&path).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
    }

    #[test]
    fn an_unwritable_path_is_named() {
        let err = AuditLog::open(Path::new("/nonexistent/dir/audit.jsonl"))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("/nonexistent/dir/audit.jsonl"), "{err}");
    }

    #[test]
    fn a_device_is_refused() {
        // /dev/full would take no byte; it is not a file to keep records in.
        let err = AuditLog::open(Path::new("/dev/full"))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("audit_log `/dev/full`"), "{err}");
        assert!(err.contains("not a regular file"), "{err}");
    }
}
