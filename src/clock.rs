//! Wall-clock time: the one time type every report, record, log line and message writes, and
//! the seconds the metrics and the clean-up record take.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Seconds since the Unix epoch (0 should the clock be set before it).
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

/// Whole seconds since the Unix epoch.
pub fn unix_now_secs() -> u64 {
    unix_now() as u64
}

/// The last second RFC 3339 can write (it has four-digit years), 9999-12-31T23:59:59Z, in Unix
/// seconds: no time forcemfa is given or computes goes past it.
pub const LATEST_TIME: i64 = 253_402_300_799;

/// A moment, whole seconds in UTC, written as RFC 3339 (`2026-12-07T10:00:00Z`) on the wire and
/// to people. Only moments from 1970 to the end of 9999 are made, so every one can be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "Wire", into = "Rfc3339Text")]
pub struct Timestamp(i64);

impl Timestamp {
    /// Now (the epoch should the clock be set before it).
    pub fn now() -> Timestamp {
        Timestamp(unix_now_secs().min(LATEST_TIME as u64) as i64)
    }

    /// The moment `secs` after the Unix epoch; `None` before it or past 9999.
    pub fn from_unix(secs: i64) -> Option<Timestamp> {
        (0..=LATEST_TIME).contains(&secs).then_some(Timestamp(secs))
    }

    /// The moment of `time`, to the second; `None` before 1970 or past 9999.
    pub fn from_datetime(time: OffsetDateTime) -> Option<Timestamp> {
        Timestamp::from_unix(time.unix_timestamp())
    }

    /// Seconds since the Unix epoch.
    pub fn unix(self) -> i64 {
        self.0
    }

    /// `secs` later, when that is still a moment that can be written.
    pub fn plus_secs(self, secs: u64) -> Option<Timestamp> {
        let secs = i64::try_from(secs).ok()?;
        Timestamp::from_unix(self.0.checked_add(secs)?)
    }

    fn datetime(self) -> OffsetDateTime {
        // In range by construction.
        OffsetDateTime::from_unix_timestamp(self.0).unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.datetime().format(&Rfc3339) {
            Ok(text) => f.write_str(&text),
            Err(_) => Err(fmt::Error),
        }
    }
}

/// A [`Timestamp`] as JSON carries it.
#[derive(Serialize, Deserialize)]
struct Rfc3339Text(#[serde(with = "time::serde::rfc3339")] OffsetDateTime);

/// What a [`Timestamp`] is read from: its RFC 3339 text, or the Unix seconds that records
/// written by earlier versions hold.
#[derive(Deserialize)]
#[serde(untagged)]
enum Wire {
    Text(Rfc3339Text),
    Secs(i64),
}

impl From<Timestamp> for Rfc3339Text {
    fn from(t: Timestamp) -> Rfc3339Text {
        Rfc3339Text(t.datetime())
    }
}

/// A time before 1970 or after 9999.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0} is before 1970 or after 9999")]
pub struct OutOfRange(String);

impl TryFrom<Wire> for Timestamp {
    type Error = OutOfRange;

    fn try_from(wire: Wire) -> Result<Timestamp, OutOfRange> {
        match wire {
            Wire::Text(text) => {
                Timestamp::from_datetime(text.0).ok_or_else(|| OutOfRange(text.0.to_string()))
            }
            Wire::Secs(secs) => {
                Timestamp::from_unix(secs).ok_or_else(|| OutOfRange(secs.to_string()))
            }
        }
    }
}

/// An optional [`Timestamp`] kept as Unix seconds, for the records whose readers (earlier
/// versions, after a rollback) expect seconds; either form is read.
pub mod unix_secs {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::Timestamp;

    pub fn serialize<S: Serializer>(t: &Option<Timestamp>, s: S) -> Result<S::Ok, S::Error> {
        t.map(Timestamp::unix).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Timestamp>, D::Error> {
        Option::<Timestamp>::deserialize(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timestamp_is_rfc3339_on_the_wire_and_to_people() {
        let t = Timestamp::from_unix(1_800_000_000).unwrap();
        assert_eq!(t.to_string(), "2027-01-15T08:00:00Z");
        assert_eq!(
            serde_json::to_value(t).unwrap(),
            serde_json::json!("2027-01-15T08:00:00Z")
        );
        let back: Timestamp =
            serde_json::from_value(serde_json::json!("2027-01-15T08:00:00Z")).unwrap();
        assert_eq!(back, t);
        let secs: Timestamp = serde_json::from_value(serde_json::json!(1_800_000_000)).unwrap();
        assert_eq!(secs, t, "records of earlier versions hold seconds");
        assert_eq!(
            Timestamp::from_unix(LATEST_TIME).unwrap().to_string(),
            "9999-12-31T23:59:59Z"
        );
    }

    #[test]
    fn only_moments_rfc3339_can_write_are_made() {
        assert_eq!(Timestamp::from_unix(-1), None);
        assert_eq!(Timestamp::from_unix(LATEST_TIME + 1), None);
        let t = Timestamp::from_unix(LATEST_TIME - 10).unwrap();
        assert_eq!(t.plus_secs(10).map(Timestamp::unix), Some(LATEST_TIME));
        assert_eq!(t.plus_secs(11), None);
        assert_eq!(t.plus_secs(u64::MAX), None);
    }
}
