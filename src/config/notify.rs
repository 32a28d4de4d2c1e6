//! `[notify]`: telling the people concerned. Every channel is optional; none blocks or changes
//! enforcement.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::defaults;
use super::duration::{Bounds, DurationKey, Units};
use super::error::ConfigError;

/// The validated `[notify]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifySettings {
    /// The admins' summary of each run that changed something or found new pending or held users.
    pub sns_topic_arn: Option<String>,
    /// The same summary as JSON, with a `text` field chat webhooks display.
    pub webhook_url: Option<String>,
    /// A file holding the token sent as `Authorization: Bearer` to the webhook.
    pub webhook_token_file: Option<PathBuf>,
    /// The address each affected user's email comes from (an SES identity).
    pub email_from: Option<String>,
    /// The user tag that holds a user's email address.
    pub email_tag: String,
    /// Before a user's deadline, remind it this long before (each once).
    pub reminders: Vec<Duration>,
    /// Emails sent per second at most (SES's sending rate).
    pub emails_per_second: u32,
    /// Where the messages sent are remembered, so that each is sent once across restarts.
    pub state_file: Option<PathBuf>,
}

impl NotifySettings {
    /// Whether any channel is configured.
    pub fn any(&self) -> bool {
        self.sns_topic_arn.is_some() || self.webhook_url.is_some() || self.email_from.is_some()
    }
}

impl Default for NotifySettings {
    fn default() -> Self {
        NotifySettings {
            sns_topic_arn: None,
            webhook_url: None,
            webhook_token_file: None,
            email_from: None,
            email_tag: defaults::EMAIL_TAG.to_string(),
            reminders: defaults::REMINDERS.to_vec(),
            emails_per_second: defaults::EMAILS_PER_SECOND,
            state_file: None,
        }
    }
}

/// `[notify]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNotify {
    sns_topic_arn: Option<String>,
    webhook_url: Option<String>,
    webhook_token_file: Option<PathBuf>,
    email_from: Option<String>,
    email_tag: Option<String>,
    reminders: Option<Vec<String>>,
    emails_per_second: Option<i64>,
    state_file: Option<PathBuf>,
}

const REMINDER: DurationKey = DurationKey {
    key: "notify.reminders",
    units: Units::Seconds,
    bounds: Bounds::Positive,
};

pub(super) fn validate(raw: RawNotify) -> Result<NotifySettings, ConfigError> {
    let defaults = NotifySettings::default();
    if let Some(arn) = &raw.sns_topic_arn {
        let valid = arn.starts_with("arn:") && arn.split(':').count() == 6 && arn.contains(":sns:");
        if !valid {
            return Err(ConfigError::invalid(
                "notify.sns_topic_arn",
                format!("`{arn}` is not an SNS topic ARN (arn:aws:sns:REGION:ACCOUNT:NAME)"),
            ));
        }
    }
    if let Some(url) = &raw.webhook_url {
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err(ConfigError::invalid(
                "notify.webhook_url",
                format!("`{url}` is not an http(s) URL"),
            ));
        }
    }
    if raw.webhook_token_file.is_some() && raw.webhook_url.is_none() {
        return Err(ConfigError::invalid(
            "notify.webhook_token_file",
            "needs notify.webhook_url",
        ));
    }
    if let Some(from) = &raw.email_from {
        if !from.contains('@') {
            return Err(ConfigError::invalid(
                "notify.email_from",
                format!("`{from}` is not an email address"),
            ));
        }
    }
    let email_tag = raw.email_tag.unwrap_or(defaults.email_tag);
    if email_tag.is_empty() {
        return Err(ConfigError::invalid(
            "notify.email_tag",
            "must not be empty",
        ));
    }
    let mut reminders = match raw.reminders {
        None => defaults.reminders,
        Some(list) => list
            .iter()
            .map(|r| REMINDER.read(r))
            .collect::<Result<Vec<_>, _>>()?,
    };
    reminders.sort_unstable_by(|a, b| b.cmp(a));
    reminders.dedup();
    let emails_per_second = match raw.emails_per_second {
        None => defaults.emails_per_second,
        Some(n) => u32::try_from(n)
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| {
                ConfigError::invalid(
                    "notify.emails_per_second",
                    format!("{n} is not between 1 and 1000"),
                )
            })?,
    };
    Ok(NotifySettings {
        sns_topic_arn: raw.sns_topic_arn,
        webhook_url: raw.webhook_url,
        webhook_token_file: raw.webhook_token_file,
        email_from: raw.email_from,
        email_tag,
        reminders,
        emails_per_second,
        state_file: raw.state_file,
    })
}
