//! The channels messages go out on: an SNS topic and a webhook for the admins' summaries, SES for
//! each affected user's email. Each send has a short deadline of its own: a channel that is slow
//! or down costs a few seconds and a warning, never the run.

use serde_json::Value;

use crate::config::NotifySettings;

/// Which channel a message went out on, as the report and the metrics name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    Sns,
    Webhook,
    Email,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Sns => "sns",
            Channel::Webhook => "webhook",
            Channel::Email => "email",
        }
    }
}

/// One account's summary for the admins.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// What happened, as the SNS message attribute `event` says it (`run`).
    pub event: &'static str,
    pub account_id: String,
    /// The email subject SNS subscribers see.
    pub subject: String,
    /// The readable text: the SNS message, and the webhook's `text`.
    pub text: String,
    /// The webhook's JSON body; it holds `text` too.
    pub json: Value,
}

/// One email to one user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email {
    pub to: String,
    pub subject: String,
    pub body: String,
}

/// Why a message was not delivered.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SendError(pub String);

/// The configured channels.
pub struct Channels {
    settings: NotifySettings,
}

impl Channels {
    pub async fn new(settings: &NotifySettings, _sdk: &aws_config::SdkConfig) -> Channels {
        Channels {
            settings: settings.clone(),
        }
    }

    /// The channels a summary goes out on.
    pub fn summary_channels(&self) -> Vec<Channel> {
        let mut channels = Vec::new();
        if self.settings.sns_topic_arn.is_some() {
            channels.push(Channel::Sns);
        }
        if self.settings.webhook_url.is_some() {
            channels.push(Channel::Webhook);
        }
        channels
    }

    /// Whether users are emailed.
    pub fn emails(&self) -> bool {
        self.settings.email_from.is_some()
    }

    /// Sends `summary` on `channel` (SNS with the message attributes `event` and `account_id`;
    /// the webhook as a JSON POST).
    pub async fn send_summary(
        &self,
        _channel: Channel,
        _summary: &Summary,
    ) -> Result<(), SendError> {
        Err(SendError("not built yet".to_string()))
    }

    /// Sends one email through SES from `notify.email_from`.
    pub async fn send_email(&self, _email: &Email) -> Result<(), SendError> {
        Err(SendError("not built yet".to_string()))
    }
}
