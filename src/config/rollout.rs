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
use crate::clock::Timestamp;

/// The validated `[rollout]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolloutSettings {
    /// Before this time nobody is added: users without MFA are pending until it.
    pub enforce_from: Option<Timestamp>,
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

/// The longest `rollout.grace_period`: setting up MFA takes minutes, and a longer grace leaves
/// a new user unprotected for more than a year.
pub const LONGEST_GRACE_PERIOD: Duration = Duration::from_secs(365 * 86_400);

const GRACE_PERIOD: DurationKey = DurationKey {
    key: "rollout.grace_period",
    units: Units::Seconds,
    bounds: Bounds::Within {
        min: Duration::from_secs(1),
        max: LONGEST_GRACE_PERIOD,
    },
};

const KEYS_IN_USE_WITHIN: DurationKey = DurationKey {
    key: "rollout.keys_in_use_within",
    units: Units::Seconds,
    bounds: Bounds::Positive,
};

/// `rollout.enforce_from`: an RFC 3339 time from 1970 to the end of 9999 (in UTC), so that the
/// deadlines made of it can be written.
fn enforce_from(text: &str) -> Result<Timestamp, ConfigError> {
    const KEY: &str = "rollout.enforce_from";
    let time = OffsetDateTime::parse(text.trim(), &Rfc3339).map_err(|_| {
        ConfigError::invalid(
            KEY,
            format!("`{text}` is not an RFC 3339 time such as 2027-01-15T09:00:00Z"),
        )
    })?;
    Timestamp::from_datetime(time).ok_or_else(|| {
        ConfigError::invalid(
            KEY,
            format!("`{text}` is outside 1970-01-01T00:00:00Z..9999-12-31T23:59:59Z"),
        )
    })
}

pub(super) fn validate(raw: RawRollout) -> Result<RolloutSettings, ConfigError> {
    let enforce_from = raw
        .enforce_from
        .map(TimeText::text)
        .map(|text| enforce_from(&text))
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

#[cfg(test)]
mod tests {
    use crate::config::error::key_of;
    use crate::config::Config;

    fn refused(text: &str) -> String {
        Config::parse(&format!("[rollout]\n{text}\n"))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn enforce_from_is_a_time_from_1970_to_the_end_of_9999() {
        for good in [
            "1970-01-01T00:00:00Z",
            "9999-12-31T23:59:59Z",
            "2027-01-15T09:00:00+01:00",
        ] {
            assert!(Config::parse(&format!("[rollout]\nenforce_from = \"{good}\"\n")).is_ok());
        }
        for bad in [
            "1969-12-31T23:59:59Z",
            "9999-12-31T23:59:59-01:00",
            "0000-01-01T00:00:00Z",
        ] {
            let error = refused(&format!("enforce_from = \"{bad}\""));
            assert!(
                error.contains("rollout.enforce_from") && error.contains("9999-12-31T23:59:59Z"),
                "{bad}: {error}"
            );
        }
    }

    #[test]
    fn a_grace_period_is_at_most_a_year() {
        assert!(Config::parse("[rollout]\ngrace_period = \"365d\"\n").is_ok());
        for bad in ["366d", "3000000d", "0s"] {
            let error =
                Config::parse(&format!("[rollout]\ngrace_period = \"{bad}\"\n")).unwrap_err();
            let text = error.to_string();
            assert_eq!(key_of(error), "rollout.grace_period", "{bad}");
            assert!(text.contains(bad), "{text}");
        }
        assert!(refused("grace_period = \"366d\"").contains("1s..365d"));
    }
}
