//! A message sent (or not) after a run, as the report lists it and the metrics count it.

use serde::Serialize;

/// One message, as the report lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Notification {
    /// `sns`, `webhook` or `email`.
    pub channel: &'static str,
    pub account_id: String,
    /// `summary` for the admins; `added`, `reminder` or `removed` for a user.
    pub kind: &'static str,
    /// The user an email is about.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// `sent`, `failed` (tried again at the next run) or, in a dry run, `would_send`.
    pub outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}
