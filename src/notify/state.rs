//! What was sent, so that each message goes out once across restarts, and what is still to be
//! delivered, so that a message a channel refused goes out at the next run. Kept in
//! `notify.state_file` (written whole, through a temporary file), or in memory without it.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::files::{self, FileError, SaveError};

use super::channels::Summary;
use super::messages::UserMessage;
use crate::reconcile::notification::{Channel, MessageKind};

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

/// A reminder remembered as sent: one per user, deadline and reminder. The record keeps it as
/// `reminder/ACCOUNT/USER/DEADLINE/BEFORE` (the user case-folded, the deadline in Unix seconds,
/// the reminder's lead in seconds).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReminderKey {
    pub account_id: String,
    /// The user's name as IAM compares it (case-folded).
    pub user: String,
    pub deadline: i64,
    pub before_secs: u64,
}

/// A pending or held user the admins were told about, by its case-folded name; kept as
/// `pending/USER` or `held/USER`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Known {
    Pending(String),
    Held(String),
}

impl fmt::Display for ReminderKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ReminderKey {
            account_id,
            user,
            deadline,
            before_secs,
        } = self;
        write!(f, "reminder/{account_id}/{user}/{deadline}/{before_secs}")
    }
}

impl FromStr for ReminderKey {
    type Err = String;

    fn from_str(text: &str) -> Result<ReminderKey, String> {
        let bad = || format!("not a reminder key: {text:?}");
        let mut parts = text.split('/');
        let (Some("reminder"), Some(account_id), Some(user), Some(deadline), Some(before), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(bad());
        };
        Ok(ReminderKey {
            account_id: account_id.to_string(),
            user: user.to_string(),
            deadline: deadline.parse().map_err(|_| bad())?,
            before_secs: before.parse().map_err(|_| bad())?,
        })
    }
}

impl fmt::Display for Known {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Known::Pending(user) => write!(f, "pending/{user}"),
            Known::Held(user) => write!(f, "held/{user}"),
        }
    }
}

impl FromStr for Known {
    type Err = String;

    fn from_str(text: &str) -> Result<Known, String> {
        match text.split_once('/') {
            Some(("pending", user)) if !user.is_empty() => Ok(Known::Pending(user.to_string())),
            Some(("held", user)) if !user.is_empty() => Ok(Known::Held(user.to_string())),
            _ => Err(format!("not a pending or held user: {text:?}")),
        }
    }
}

/// Kept as their text, which map keys must be in JSON.
macro_rules! as_text {
    ($type:ty) => {
        impl Serialize for $type {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $type {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<$type, D::Error> {
                let text = String::deserialize(d)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

as_text!(ReminderKey);
as_text!(Known);

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

    pub fn user(&self) -> Option<&str> {
        match self {
            Outgoing::Email(m) => Some(&m.user),
            Outgoing::Summary(_) => None,
        }
    }

    /// A reminder whose deadline has passed says nothing any more.
    pub fn stale(&self, now: i64) -> bool {
        matches!(self, Outgoing::Email(m) if m.deadline.is_some_and(|d| d <= now))
    }
}

impl NotifyState {
    /// The record in `path`; an absent file is an empty record, and so is an unreadable one
    /// (with the reason): at worst a reminder is sent twice.
    pub fn load(path: &Path) -> (NotifyState, Option<String>) {
        files::load_record(KEY, "a forcemfa notification record", path)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_records_keys_read_back_as_written() {
        let key = ReminderKey {
            account_id: "111111111111".into(),
            user: "dave".into(),
            deadline: 1_800_000_000,
            before_secs: 86_400,
        };
        let mut state = NotifyState::default();
        state.sent.insert(key.clone(), 1);
        state.known.insert(
            "111111111111".into(),
            [Known::Pending("dave".into()), Known::Held("erin".into())].into(),
        );
        let json = serde_json::to_value(&state).unwrap();
        assert_eq!(
            json["sent"]["reminder/111111111111/dave/1800000000/86400"],
            1
        );
        assert_eq!(
            json["known"]["111111111111"],
            serde_json::json!(["pending/dave", "held/erin"])
        );
        let back: NotifyState = serde_json::from_value(json).unwrap();
        assert_eq!(back, state);
        for bad in [
            "reminder/1/dave/x/1",
            "reminder/1/dave/1",
            "pending/",
            "other/x",
        ] {
            assert!(bad.parse::<ReminderKey>().is_err() || bad.parse::<Known>().is_err());
        }
    }
}
