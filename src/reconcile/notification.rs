//! A message sent (or not) after a run, as the report lists it and the metrics count it. The
//! report only holds these: the callers of a run hand its report to the notifier, which fills
//! them in.

use serde::{Deserialize, Serialize};

use crate::user_name::UserName;

/// Which channel a message went out on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    /// The admins' SNS topic.
    Sns,
    /// The admins' chat webhook.
    Webhook,
    /// An email to a user, through SES.
    Email,
}

impl Channel {
    /// The channel as the report and the metrics name it.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Sns => "sns",
            Channel::Webhook => "webhook",
            Channel::Email => "email",
        }
    }
}

impl std::fmt::Display for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a message is: the admins' summary, or why a user is written to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageKind {
    /// The admins' summary of an account's run.
    Summary,
    /// The user was put into the group: why, and how to set up MFA to get access back.
    Added,
    /// A reminder before the user's deadline.
    Reminder,
    /// The user was taken out of the group: access is back.
    Removed,
}

impl MessageKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageKind::Summary => "summary",
            MessageKind::Added => "added",
            MessageKind::Reminder => "reminder",
            MessageKind::Removed => "removed",
        }
    }
}

impl std::fmt::Display for MessageKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What became of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Delivery {
    /// The channel took it.
    Sent,
    /// The channel refused it or did not answer in time: it is tried again at the next run.
    Failed,
    /// A dry run: it would have been sent.
    WouldSend,
}

impl Delivery {
    pub fn as_str(self) -> &'static str {
        match self {
            Delivery::Sent => "sent",
            Delivery::Failed => "failed",
            Delivery::WouldSend => "would_send",
        }
    }
}

impl std::fmt::Display for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One message, as the report lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Notification {
    pub channel: Channel,
    pub account_id: String,
    pub kind: MessageKind,
    /// The user an email is about.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<UserName>,
    pub outcome: Delivery,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wire_names_are_the_metric_labels() {
        for c in [Channel::Sns, Channel::Webhook, Channel::Email] {
            assert_eq!(serde_json::to_value(c).unwrap(), c.as_str());
        }
        for k in [
            MessageKind::Summary,
            MessageKind::Added,
            MessageKind::Reminder,
            MessageKind::Removed,
        ] {
            assert_eq!(serde_json::to_value(k).unwrap(), k.as_str());
        }
        for d in [Delivery::Sent, Delivery::Failed, Delivery::WouldSend] {
            assert_eq!(serde_json::to_value(d).unwrap(), d.as_str());
        }
    }
}
