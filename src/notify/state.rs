//! What was sent, so that each message goes out once across restarts, and what is still to be
//! delivered, so that a message a channel refused goes out at the next run. Kept in
//! `notify.state_file` (written whole, through a temporary file), or in memory without it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::files::{self, FileError, Mode};

use super::messages::UserMessage;

/// The configuration key that names the file, for errors.
const KEY: &str = "notify.state_file";

/// Messages older than this many are dropped from the outbox, the oldest first: a channel down
/// for days must not grow the file without bound.
const OUTBOX_MAX: usize = 10_000;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotifyState {
    /// Reminders sent, by key, with when (Unix seconds).
    pub sent: BTreeMap<String, i64>,
    /// Per account, the pending and held users the admins have been told about.
    pub known: BTreeMap<String, BTreeSet<String>>,
    /// Emails not delivered yet.
    pub outbox: Vec<UserMessage>,
}

/// Why the state file could not be written.
#[derive(Debug, thiserror::Error)]
pub enum SaveError {
    #[error("cannot encode the record of notifications: {0}")]
    Encode(#[from] serde_json::Error),
    #[error(transparent)]
    File(#[from] FileError),
}

impl NotifyState {
    /// The record in `path`; an absent file is an empty record, and so is an unreadable one
    /// (with the reason): at worst a reminder is sent twice.
    pub fn load(path: &Path) -> (NotifyState, Option<String>) {
        match files::read(KEY, path) {
            Ok(None) => (NotifyState::default(), None),
            Ok(Some(text)) => match serde_json::from_str(&text) {
                Ok(state) => (state, None),
                Err(e) => (
                    NotifyState::default(),
                    Some(format!(
                        "{} is not a forcemfa notification record: {e}",
                        path.display()
                    )),
                ),
            },
            Err(e) => (NotifyState::default(), Some(e.to_string())),
        }
    }

    pub fn save(&self, path: &Path) -> Result<(), SaveError> {
        let text = serde_json::to_string_pretty(self)?;
        Ok(files::replace(KEY, path, text.as_bytes(), Mode::Private)?)
    }

    /// Checks, opening nothing, that `path` could serve.
    pub fn check(path: &Path) -> Result<(), FileError> {
        files::check(KEY, path)
    }

    /// Keeps the outbox within bounds.
    pub fn trim(&mut self) {
        if self.outbox.len() > OUTBOX_MAX {
            let excess = self.outbox.len() - OUTBOX_MAX;
            self.outbox.drain(..excess);
        }
    }
}
