//! The keys of the notification record: which reminders were sent, which pending and held users
//! the admins were told about. Each is kept as its text, one format and one parser per key.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A key of the record that is none of its kinds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is no key of the notification record")]
pub struct BadKey(String);

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
    type Err = BadKey;

    fn from_str(text: &str) -> Result<ReminderKey, BadKey> {
        let bad = || BadKey(text.to_string());
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
    type Err = BadKey;

    fn from_str(text: &str) -> Result<Known, BadKey> {
        match text.split_once('/') {
            Some(("pending", user)) if !user.is_empty() => Ok(Known::Pending(user.to_string())),
            Some(("held", user)) if !user.is_empty() => Ok(Known::Held(user.to_string())),
            _ => Err(BadKey(text.to_string())),
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

#[cfg(test)]
mod tests {
    use super::*;

    use crate::notify::state::NotifyState;

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
