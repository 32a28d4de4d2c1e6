//! `[notify]`: telling the people concerned. Every channel is optional; none blocks or changes
//! enforcement.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::arn::{is_account_id, Arn};

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
    check_channels(&raw)?;
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

/// The channels' own checks: a topic ARN, a webhook URL (never echoed: its path may be the
/// secret) and its token, a sender's address.
fn check_channels(raw: &RawNotify) -> Result<(), ConfigError> {
    if let Some(arn) = &raw.sns_topic_arn {
        let valid = Arn::parse(arn).is_some_and(|a| {
            a.service == "sns"
                && !a.region.is_empty()
                && is_account_id(a.account)
                && !a.resource.is_empty()
                && !a.resource.contains(':')
        });
        if !valid {
            return Err(ConfigError::invalid(
                "notify.sns_topic_arn",
                format!("`{arn}` is not an SNS topic ARN (arn:aws:sns:REGION:ACCOUNT:NAME)"),
            ));
        }
    }
    if let Some(url) = &raw.webhook_url {
        // The URL itself may be the secret (a chat webhook's path): it is never echoed.
        let Some(rest) = url
            .strip_prefix("https://")
            .or_else(|| url.strip_prefix("http://"))
        else {
            return Err(ConfigError::invalid(
                "notify.webhook_url",
                "is not an http(s) URL",
            ));
        };
        let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
        let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
        let loopback = ["127.0.0.1", "localhost", "[::1]"]
            .iter()
            .any(|l| host == *l || host.starts_with(&format!("{l}:")));
        if raw.webhook_token_file.is_some() && url.starts_with("http://") && !loopback {
            return Err(ConfigError::invalid(
                "notify.webhook_token_file",
                "the token would travel in clear text: notify.webhook_url must be https (or on loopback)",
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
        let address = from
            .rsplit_once('<')
            .map_or(from.as_str(), |(_, a)| a.trim_end_matches('>'));
        let valid = address
            .split_once('@')
            .is_some_and(|(local, domain)| !local.trim().is_empty() && domain.contains('.'));
        if !valid {
            return Err(ConfigError::invalid(
                "notify.email_from",
                format!("`{from}` is not an email address"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    fn refused(text: &str, key: &str) {
        let e = Config::parse(text).expect_err(text).to_string();
        assert!(e.contains(key), "{e}");
    }

    #[test]
    fn channels_are_checked_before_anything_is_sent() {
        refused(
            "[notify]\nsns_topic_arn = \"arn:aws:sns:::\"\n",
            "notify.sns_topic_arn",
        );
        refused(
            "[notify]\nsns_topic_arn = \"arn:aws:iam::123456789012:x\"\n",
            "notify.sns_topic_arn",
        );
        refused("[notify]\nemail_from = \"@\"\n", "notify.email_from");
        refused(
            "[notify]\nwebhook_token_file = \"/t\"\n",
            "notify.webhook_token_file",
        );
        refused(
            "[notify]\nwebhook_url = \"http://hooks.example.com/x\"\nwebhook_token_file = \"/t\"\n",
            "notify.webhook_token_file",
        );
        let secret = "hooks.example.com/services/T000/B000/SECRET";
        let e = Config::parse(&format!("[notify]\nwebhook_url = \"ftp://{secret}\"\n"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("notify.webhook_url") && !e.contains("SECRET"),
            "{e}"
        );
        let ok = Config::parse(
            "[notify]\nsns_topic_arn = \"arn:aws:sns:us-east-1:123456789012:forcemfa\"\nwebhook_url = \"http://127.0.0.1:9/x\"\nwebhook_token_file = \"/t\"\nemail_from = \"Security <forcemfa@example.com>\"\n",
        );
        assert!(ok.is_ok(), "{ok:?}");
    }

    #[test]
    fn the_notification_record_is_no_other_file() {
        refused(
            "audit_log = \"/tmp/a.jsonl\"\n[notify]\nemail_from = \"f@example.com\"\nstate_file = \"/tmp/../tmp/a.jsonl\"\n",
            "notify.state_file",
        );
    }

    #[test]
    fn enforce_from_may_be_a_toml_date_time_or_a_string() {
        for text in [
            "enforce_from = 2027-01-15T09:00:00Z",
            "enforce_from = \"2027-01-15T09:00:00Z\"",
        ] {
            let c = Config::parse(&format!("[rollout]\n{text}\n")).unwrap();
            assert_eq!(c.rollout.enforce_from.unwrap().unix(), 1_800_003_600);
        }
        refused(
            "[rollout]\nenforce_from = \"next monday\"\n",
            "rollout.enforce_from",
        );
    }
}
