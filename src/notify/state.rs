//! What was sent, so that each message goes out once across restarts, and what is still to be
//! delivered, so that a message a channel refused goes out at the next run. Kept in
//! `notify.state_file` (written whole, through a temporary file), or in memory without it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::files::{self, FileError, SaveError};

use super::channels::Summary;
use super::keys::{Known, ReminderKey};
use super::messages::UserMessage;
use crate::reconcile::notification::{Channel, MessageKind};
use crate::user_name::UserName;

/// The configuration key that names the file, for errors.
const KEY: &str = "notify.state_file";

/// Beyond this many messages the outbox drops its oldest: a channel down for days must not grow
/// the file without bound.
const OUTBOX_MAX: usize = 10_000;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotifyState {
    /// Reminders sent, with when (Unix seconds).
    pub sent: BTreeMap<ReminderKey, i64>,
    /// Per account, the pending and held users the admins have been told about.
    pub known: BTreeMap<String, BTreeSet<Known>>,
    /// Messages recorded and not delivered yet, in the order they are sent.
    pub outbox: Vec<Queued>,
}

/// A message in the outbox, and how often a channel refused it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Queued {
    pub message: Outgoing,
    pub attempts: u32,
}

/// A message to send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Outgoing {
    Email(UserMessage),
    Summary(QueuedSummary),
}

/// An admins' summary, kept for one channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuedSummary {
    /// `sns` or `webhook`.
    pub channel: Channel,
    pub account_id: String,
    pub subject: String,
    pub text: String,
    pub json: serde_json::Value,
}

impl QueuedSummary {
    pub fn summary(&self) -> Summary {
        Summary {
            event: "run",
            account_id: self.account_id.clone(),
            subject: self.subject.clone(),
            text: self.text.clone(),
            json: self.json.clone(),
        }
    }
}

impl Outgoing {
    /// `summary` on `channel`.
    pub fn summary(channel: Channel, summary: &Summary) -> Outgoing {
        Outgoing::Summary(QueuedSummary {
            channel,
            account_id: summary.account_id.clone(),
            subject: summary.subject.clone(),
            text: summary.text.clone(),
            json: summary.json.clone(),
        })
    }

    pub fn channel(&self) -> Channel {
        match self {
            Outgoing::Email(_) => Channel::Email,
            Outgoing::Summary(s) => s.channel,
        }
    }

    pub fn account_id(&self) -> &str {
        match self {
            Outgoing::Email(m) => &m.account_id,
            Outgoing::Summary(s) => &s.account_id,
        }
    }

    /// `summary`, or why a user is written to.
    pub fn kind(&self) -> MessageKind {
        match self {
            Outgoing::Email(m) => m.occasion.kind(),
            Outgoing::Summary(_) => MessageKind::Summary,
        }
    }

    pub fn user(&self) -> Option<&UserName> {
        match self {
            Outgoing::Email(m) => Some(&m.user),
            Outgoing::Summary(_) => None,
        }
    }

    /// A reminder whose deadline has passed says nothing any more.
    pub fn stale(&self, now: i64) -> bool {
        matches!(self, Outgoing::Email(m) if m.deadline.is_some_and(|d| d.unix() <= now))
    }
}

impl NotifyState {
    /// The record in `path`; an absent file is an empty record, and so is an unreadable one
    /// (with the reason): at worst a reminder is sent twice.
    /// The record in `path` (see [`files::load_record`]; a dry run moves nothing).
    pub fn load(path: &Path, dry_run: bool) -> (NotifyState, Option<String>) {
        files::load_record(KEY, "a forcemfa notification record", path, dry_run)
    }

    pub fn save(&self, path: &Path) -> Result<(), SaveError> {
        files::save_record(KEY, "the record of notifications", path, self)
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
