//! Durations as the configuration writes them: a whole number and a unit (`90s`, `30m`, `1h`,
//! `2d`, and `250ms` for the keys that measure below a second), read by one parser and held to
//! each key's bounds, and every key to [`LONGEST`].

use std::time::Duration;

use super::error::ConfigError;

/// The longest duration any key takes: 100 years (36,525 days). Whatever is computed from one (a
/// deadline, a reminder, a run's end) stays within the years a time can be written in (RFC 3339,
/// up to 9999) and within what the clock's arithmetic holds.
pub(super) const LONGEST: Duration = Duration::from_secs(36_525 * 86_400);

/// Why a duration key's value is refused; the [`ConfigError`] that carries it names the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum DurationError {
    #[error("`{0}` is not a duration such as 90s, 30m, 1h or 2d")]
    Unreadable(String),
    #[error("`{text}` is longer than {}, the longest this key takes", humanize(*max))]
    TooLong { text: String, max: Duration },
    #[error("must be longer than 0s")]
    Zero,
    #[error("`{text}` is shorter than {}: {why}", humanize(*floor))]
    TooShort {
        text: String,
        floor: Duration,
        why: &'static str,
    },
    #[error("`{text}` is outside {}..{}", humanize_ms(*min), humanize_ms(*max))]
    Outside {
        text: String,
        min: Duration,
        max: Duration,
    },
}

/// The units a key takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Units {
    /// `s`, `m`, `h` and `d`.
    Seconds,
    /// `ms` as well, for the keys of the event path, whose waits are short.
    Milliseconds,
}

/// The values a key takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Bounds {
    /// Anything longer than zero.
    Positive,
    /// At least `floor`; `why` tells whoever gives less what a shorter value would break.
    AtLeast { floor: Duration, why: &'static str },
    /// Within `min..=max`.
    Within { min: Duration, max: Duration },
}

/// A duration key of the configuration: its name, the units it takes and its bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct DurationKey {
    pub(super) key: &'static str,
    pub(super) units: Units,
    pub(super) bounds: Bounds,
}

impl DurationKey {
    /// The value `text`, or `default` when the key is absent; the error names the key.
    pub(super) fn read_or(
        &self,
        text: Option<&str>,
        default: Duration,
    ) -> Result<Duration, ConfigError> {
        match text {
            None => Ok(default),
            Some(text) => self.read(text),
        }
    }

    /// The value `text`, within the key's bounds; the error names the key.
    pub(super) fn read(&self, text: &str) -> Result<Duration, ConfigError> {
        self.check(text)
            .map_err(|e| ConfigError::invalid(self.key, e))
    }

    fn check(&self, text: &str) -> Result<Duration, DurationError> {
        let value = parse(text, self.units)?;
        // The key's own bounds first: they are the tighter ones.
        match self.bounds {
            Bounds::Positive if value.is_zero() => Err(DurationError::Zero),
            Bounds::AtLeast { floor, why } if value < floor => Err(DurationError::TooShort {
                text: text.to_string(),
                floor,
                why,
            }),
            Bounds::Within { min, max } if value < min || value > max => {
                Err(DurationError::Outside {
                    text: text.to_string(),
                    min,
                    max,
                })
            }
            _ if value > LONGEST => Err(DurationError::TooLong {
                text: text.to_string(),
                max: LONGEST,
            }),
            _ => Ok(value),
        }
    }
}

/// Reads `text` in `units`: a whole number directly followed by its unit, spaces around allowed.
pub(super) fn parse(text: &str, units: Units) -> Result<Duration, DurationError> {
    let too_long = || DurationError::TooLong {
        text: text.trim().to_string(),
        max: LONGEST,
    };
    if units == Units::Milliseconds {
        if let Some(ms) = text.trim().strip_suffix("ms") {
            if !ms.is_empty() && ms.bytes().all(|b| b.is_ascii_digit()) {
                return ms
                    .parse()
                    .map(Duration::from_millis)
                    .map_err(|_| too_long());
            }
        }
    }
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let unreadable = || DurationError::Unreadable(text.to_string());
    // All digits: a number that does not fit is too long, not unreadable.
    let n: u64 = match number.parse() {
        Ok(n) => n,
        Err(_) if !number.is_empty() => return Err(too_long()),
        Err(_) => return Err(unreadable()),
    };
    let unit_secs = match unit.trim() {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(unreadable()),
    };
    n.checked_mul(unit_secs)
        .map(Duration::from_secs)
        .ok_or_else(too_long)
}

/// A duration in the largest whole unit that divides it: `5m`, `90s`, `2h`.
pub(super) fn humanize(duration: Duration) -> String {
    let secs = duration.as_secs();
    match secs {
        0 => "0s".to_string(),
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// Like [`humanize`], with milliseconds for what is not a whole second.
pub(super) fn humanize_ms(duration: Duration) -> String {
    if duration.subsec_millis() == 0 {
        humanize(duration)
    } else {
        format!("{}ms", duration.as_millis())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::error::key_of;
    use crate::config::Config;

    fn parse_duration(text: &str) -> Result<Duration, DurationError> {
        parse(text, Units::Seconds)
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s").unwrap().as_secs(), 90);
        assert_eq!(parse_duration("30m").unwrap().as_secs(), 1800);
        assert_eq!(parse_duration("1h").unwrap().as_secs(), 3600);
        assert_eq!(parse_duration("2d").unwrap().as_secs(), 172_800);
        for bad in ["", "h", "1", "1 hour", "-1h", "1.5h"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert_eq!(
            key_of(Config::parse("[cleanup]\nunassigned_min_age = \"soon\"").unwrap_err()),
            "cleanup.unassigned_min_age"
        );
        assert_eq!(humanize(parse_duration("90s").unwrap()), "90s");
        assert_eq!(humanize(parse_duration("300s").unwrap()), "5m");
        assert_eq!(humanize(parse_duration("120m").unwrap()), "2h");
        assert_eq!(humanize(parse_duration("48h").unwrap()), "2d");
    }

    #[test]
    fn milliseconds_only_where_a_key_takes_them() {
        assert_eq!(
            parse("250ms", Units::Milliseconds),
            Ok(Duration::from_millis(250))
        );
        assert_eq!(parse("2s", Units::Milliseconds), Ok(Duration::from_secs(2)));
        assert!(parse("250ms", Units::Seconds).is_err());
        assert_eq!(humanize_ms(Duration::from_millis(1500)), "1500ms");
        assert_eq!(humanize_ms(Duration::from_secs(60)), "1m");
    }

    #[test]
    fn no_key_takes_more_than_a_hundred_years() {
        let key = DurationKey {
            key: "k",
            units: Units::Milliseconds,
            bounds: Bounds::Positive,
        };
        assert_eq!(key.read("36525d").unwrap(), LONGEST);
        for long in [
            "36526d",
            "3000000d",
            "18446744073709551615s",
            "99999999999999999999999d",
            "99999999999999999999ms",
        ] {
            assert_eq!(
                key.read(long).unwrap_err().to_string(),
                format!("invalid config key `k`: `{long}` is longer than 36525d, the longest this key takes"),
            );
        }
        // Through the configuration, each key is named.
        for (text, key) in [
            (
                "[rollout]\ngrace_period = \"3000000d\"",
                "rollout.grace_period",
            ),
            (
                "[rollout]\nkeys_in_use_within = \"40000d\"",
                "rollout.keys_in_use_within",
            ),
            (
                "[cleanup]\nunassigned_min_age = \"40000d\"",
                "cleanup.unassigned_min_age",
            ),
            ("[notify]\nreminders = [\"40000d\"]", "notify.reminders"),
            ("run_timeout = \"18446744073709551615s\"", "run_timeout"),
        ] {
            assert_eq!(key_of(Config::parse(text).unwrap_err()), key, "{text}");
        }
    }

    #[test]
    fn messages_name_the_bound() {
        let key = DurationKey {
            key: "k",
            units: Units::Seconds,
            bounds: Bounds::AtLeast {
                floor: Duration::from_secs(300),
                why: "too soon",
            },
        };
        assert_eq!(
            key.read("4m").unwrap_err().to_string(),
            "invalid config key `k`: `4m` is shorter than 5m: too soon"
        );
        let key = DurationKey {
            key: "k",
            units: Units::Milliseconds,
            bounds: Bounds::Within {
                min: Duration::ZERO,
                max: Duration::from_secs(60),
            },
        };
        assert_eq!(
            key.read("61s").unwrap_err().to_string(),
            "invalid config key `k`: `61s` is outside 0s..1m"
        );
        let key = DurationKey {
            key: "k",
            units: Units::Seconds,
            bounds: Bounds::Positive,
        };
        assert_eq!(
            key.read("0m").unwrap_err().to_string(),
            "invalid config key `k`: must be longer than 0s"
        );
    }
}
