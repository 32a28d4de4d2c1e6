//! `[rollout]`: giving people time before they are added, and holding back users whose access
//! keys are in use. Every deadline is derived from IAM's facts and these keys alone, so that a
//! restart, a second instance and an event-driven run all agree.

use std::time::Duration;

use serde::Deserialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::defaults;
use super::duration::{Bounds, DurationKey, Units};
use super::error::ConfigError;

/// The validated `[rollout]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolloutSettings {
    /// Before this time nobody is added: users without MFA are pending until it.
    pub enforce_from: Option<OffsetDateTime>,
    /// A user is added no earlier than its creation plus this.
    pub grace_period: Option<Duration>,
    /// An active access key used within this is in use.
    pub keys_in_use_within: Duration,
    /// Users whose keys are in use are held out of the group instead of added.
    pub hold_keys_in_use: bool,
}

impl Default for RolloutSettings {
    fn default() -> Self {
        RolloutSettings {
            enforce_from: None,
            grace_period: None,
            keys_in_use_within: defaults::KEYS_IN_USE_WITHIN,
            hold_keys_in_use: defaults::HOLD_KEYS_IN_USE,
        }
    }
}

/// `[rollout]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRollout {
    enforce_from: Option<TimeText>,
    grace_period: Option<String>,
    keys_in_use_within: Option<String>,
    hold_keys_in_use: Option<bool>,
}

/// A time as written: a string, or TOML's own date-time (`enforce_from = 2027-01-15T09:00:00Z`,
/// or the same through `FORCEMFA__ROLLOUT__ENFORCE_FROM`).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum TimeText {
    Text(String),
    Toml(toml::value::Datetime),
}

impl TimeText {
    fn text(self) -> String {
        match self {
            TimeText::Text(text) => text,
            TimeText::Toml(time) => time.to_string(),
        }
    }
}

const GRACE_PERIOD: DurationKey = DurationKey {
    key: "rollout.grace_period",
    units: Units::Seconds,
    bounds: Bounds::Positive,
};

const KEYS_IN_USE_WITHIN: DurationKey = DurationKey {
    key: "rollout.keys_in_use_within",
    units: Units::Seconds,
    bounds: Bounds::Positive,
};

pub(super) fn validate(raw: RawRollout) -> Result<RolloutSettings, ConfigError> {
    let enforce_from = raw
        .enforce_from
        .map(TimeText::text)
        .map(|text| {
            OffsetDateTime::parse(text.trim(), &Rfc3339).map_err(|_| {
                ConfigError::invalid(
                    "rollout.enforce_from",
                    format!("`{text}` is not an RFC 3339 time such as 2027-01-15T09:00:00Z"),
                )
            })
        })
        .transpose()?;
    Ok(RolloutSettings {
        enforce_from,
        grace_period: raw
            .grace_period
            .as_deref()
            .map(|text| GRACE_PERIOD.read(text))
            .transpose()?,
        keys_in_use_within: KEYS_IN_USE_WITHIN.read_or(
            raw.keys_in_use_within.as_deref(),
            defaults::KEYS_IN_USE_WITHIN,
        )?,
        hold_keys_in_use: raw.hold_keys_in_use.unwrap_or(defaults::HOLD_KEYS_IN_USE),
    })
}
