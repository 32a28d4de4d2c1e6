//! The enforcement schedule: a cron expression in the common 5-field form or the 6-field form with
//! seconds, always in UTC.

use std::time::Duration;

use chrono::{DateTime, NaiveTime, Utc};
use croner::errors::CronError;
use croner::parser::{CronParser, Seconds};
use croner::Cron;

/// How far ahead [`Schedule::shortest_interval`] looks: over a year, so that a schedule tied to
/// days of the month, months or weekdays is seen through a whole cycle.
const HORIZON: chrono::TimeDelta = chrono::TimeDelta::days(400);

/// A validated cron expression, held in the 6-field form the scheduler runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    expression: String,
}

/// The expression as the scheduler reads it (tokio-cron-scheduler builds its parser the same way).
fn cron(expression: &str) -> Result<Cron, CronError> {
    CronParser::builder()
        .seconds(Seconds::Required)
        .dom_and_dow(true)
        .build()
        .parse(expression)
}

/// The shortest distance between two of `values`, counting round the cycle of `period` (from
/// the last value of one cycle to the first of the next); None for fewer than two values.
fn closest(values: &[u32], period: u32) -> Option<u64> {
    let (first, last) = (values.first()?, values.last()?);
    let wrap = period - last + first;
    values
        .windows(2)
        .map(|w| w[1] - w[0])
        .chain(std::iter::once(wrap))
        .min()
        .filter(|_| values.len() > 1)
        .map(u64::from)
}

/// The seconds, minutes and hours at which a schedule fires on every day it fires at all.
struct TimesOfDay {
    seconds: Vec<u32>,
    minutes: Vec<u32>,
    hours: Vec<u32>,
}

impl TimesOfDay {
    fn of(cron: &Cron) -> TimesOfDay {
        let p = &cron.pattern;
        let values = |period: u32, matches: &dyn Fn(u32) -> Result<bool, CronError>| {
            (0..period)
                .filter(|v| matches(*v).unwrap_or(false))
                .collect()
        };
        TimesOfDay {
            seconds: values(60, &|s| p.second_match(s)),
            minutes: values(60, &|m| p.minute_match(m)),
            hours: values(24, &|h| p.hour_match(h)),
        }
    }

    /// The first and the last firing of a day.
    fn bounds(&self) -> Option<(NaiveTime, NaiveTime)> {
        let time = |pick: fn(&Vec<u32>) -> Option<&u32>| {
            NaiveTime::from_hms_opt(
                *pick(&self.hours)?,
                *pick(&self.minutes)?,
                *pick(&self.seconds)?,
            )
        };
        Some((time(|v| v.first())?, time(|v| v.last())?))
    }

    /// No two firings can be closer than this, whatever the days: with several seconds in a
    /// minute, the closest two of them; with one, firings are whole minutes apart, and so on up to
    /// whole days. Once an interval this short is seen, no shorter one can follow.
    fn least_possible_interval(&self) -> u64 {
        closest(&self.seconds, 60)
            .or_else(|| closest(&self.minutes, 60).map(|m| m * 60))
            .or_else(|| closest(&self.hours, 24).map(|h| h * 3600))
            .unwrap_or(86_400)
    }
}

/// Why a schedule is refused.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error("`{text}` has {fields} fields; expected 5 (minute hour day month weekday) or 6 (with seconds first)")]
    Fields { text: String, fields: usize },
    #[error("`{text}` is not a valid cron expression: {source}")]
    Cron { text: String, source: CronError },
}

impl Schedule {
    /// Accepts `min hour dom month dow` (run at second 0) or `sec min hour dom month dow`.
    pub fn parse(text: &str) -> Result<Schedule, ScheduleError> {
        let fields: Vec<&str> = text.split_whitespace().collect();
        let expression = match fields.len() {
            5 => format!("0 {}", fields.join(" ")),
            6 => fields.join(" "),
            n => {
                return Err(ScheduleError::Fields {
                    text: text.to_string(),
                    fields: n,
                })
            }
        };
        cron(&expression).map_err(|source| ScheduleError::Cron {
            text: text.to_string(),
            source,
        })?;
        Ok(Schedule { expression })
    }

    /// The 6-field expression, seconds first.
    pub fn expression(&self) -> &str {
        &self.expression
    }

    /// The shortest time between two consecutive firings over the coming 400 days, or None when
    /// it fires fewer than twice in that time.
    pub fn shortest_interval(&self) -> Option<Duration> {
        self.shortest_interval_from(Utc::now())
    }

    /// Every day the schedule fires, it fires at the same times, so once one whole day has been
    /// measured, each later day is skipped from its first firing to its last: what remains to
    /// measure is the night between two days. That keeps a dense schedule to a few thousand steps.
    fn shortest_interval_from(&self, start: DateTime<Utc>) -> Option<Duration> {
        let cron = cron(&self.expression).ok()?;
        let times = TimesOfDay::of(&cron);
        let (first_of_day, last_of_day) = times.bounds()?;
        let least = times.least_possible_interval();
        let end = start + HORIZON;
        // croner's own iterator skips a firing one second after another; this does not.
        let after = |t: &DateTime<Utc>| {
            cron.find_next_occurrence(t, false)
                .ok()
                .filter(|next| *next <= end)
        };
        let mut previous = after(&start)?;
        let (mut day_begun, mut day_measured) = (false, false);
        let mut shortest: Option<u64> = None;
        while let Some(next) = after(&previous) {
            let gap = u64::try_from((next - previous).num_seconds()).unwrap_or(0);
            if shortest.is_none_or(|s| gap < s) {
                shortest = Some(gap);
                if gap <= least {
                    break;
                }
            }
            previous = next;
            if next.time() == first_of_day {
                if day_measured {
                    previous = next.date_naive().and_time(last_of_day).and_utc();
                    continue;
                }
                day_begun = true;
            }
            if next.time() == last_of_day && day_begun {
                day_measured = true;
            }
        }
        shortest.map(Duration::from_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_fields_run_at_second_zero() {
        assert_eq!(
            Schedule::parse("0 * * * *").unwrap().expression(),
            "0 0 * * * *"
        );
        assert_eq!(
            Schedule::parse("*/5  * * * *").unwrap().expression(),
            "0 */5 * * * *"
        );
    }

    #[test]
    fn six_fields_are_kept() {
        assert_eq!(
            Schedule::parse("*/3 * * * * *").unwrap().expression(),
            "*/3 * * * * *"
        );
    }

    fn interval(expression: &str) -> Option<u64> {
        let start = DateTime::parse_from_rfc3339("2026-11-23T12:34:56Z")
            .unwrap()
            .with_timezone(&Utc);
        Schedule::parse(expression)
            .unwrap()
            .shortest_interval_from(start)
            .map(|d| d.as_secs())
    }

    #[test]
    fn the_shortest_interval_between_firings() {
        for (expression, secs) in [
            ("0 * * * *", Some(3600)),
            ("* * * * *", Some(60)),
            ("*/5 * * * *", Some(300)),
            ("*/10 * * * * *", Some(10)),
            ("*/2 * * * * *", Some(2)),
            ("0,59 * * * * *", Some(1)),
            ("0 0,59 * * * *", Some(60)),
            ("50 59 * * * *", Some(3600)),
            ("0 0 0,1 * * *", Some(3600)),
            ("0 0,59 0,12 * * *", Some(59 * 60)),
            ("30 0 6 * * MON-FRI", Some(86_400)),
            ("0 0 6 * * MON", Some(7 * 86_400)),
            ("0 0 12 1 * *", Some(28 * 86_400)),
            ("0 0 1 * *", Some(28 * 86_400)),
            // Yearly: from November, the second New Year is beyond the horizon.
            ("0 0 1 1 *", None),
            ("0 0 1 12 *", Some(365 * 86_400)),
            // Once every four years: a single firing in the horizon.
            ("0 0 29 2 *", None),
        ] {
            assert_eq!(interval(expression), secs, "{expression}");
        }
    }

    #[test]
    fn skipping_measured_days_finds_what_a_walk_through_every_firing_finds() {
        let start = DateTime::parse_from_rfc3339("2026-11-23T12:34:56Z")
            .unwrap()
            .with_timezone(&Utc);
        for expression in [
            "0 5,55 */2 * * *",
            "0 0,59 0,12 * * *",
            "30 10 8-18/3 * * MON-FRI",
            "0 0 0 L * *",
            "0 30 23 * * SUN",
            "15 0,30 0,23 1,15 * *",
            "0 */20 22-23,0-1 * * *",
            "0 0 12 * * 2#1",
            "7 7 7 * * *",
        ] {
            let cron = cron(Schedule::parse(expression).unwrap().expression()).unwrap();
            let end = start + HORIZON;
            let mut firings = vec![];
            let mut t = start;
            while let Ok(next) = cron.find_next_occurrence(&t, false) {
                if next > end {
                    break;
                }
                firings.push(next);
                t = next;
            }
            let walked = firings
                .windows(2)
                .map(|w| (w[1] - w[0]).num_seconds() as u64)
                .min();
            assert_eq!(interval(expression), walked, "{expression}");
        }
    }

    #[test]
    fn a_dense_schedule_that_never_meets_its_bound_is_measured_quickly() {
        // 0 and 59 seconds of every other minute: 1,440 firings a day, intervals of 59 and 61 s.
        let started = std::time::Instant::now();
        assert_eq!(interval("0,59 */2 * * * *"), Some(59));
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn nonsense_is_rejected() {
        assert!(Schedule::parse("").is_err());
        assert!(Schedule::parse("hourly").is_err());
        assert!(Schedule::parse("61 * * * *").is_err());
        assert!(Schedule::parse("* * * * * * * *").is_err());
        assert!(Schedule::parse("0 0 32 * *").is_err());
    }
}
