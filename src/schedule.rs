//! The enforcement schedule: a cron expression in the common 5-field form or the 6-field form with
//! seconds, always in UTC.

use croner::parser::{CronParser, Seconds};

/// A validated cron expression, held in the 6-field form the scheduler runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    expression: String,
}

impl Schedule {
    /// Accepts `min hour dom month dow` (run at second 0) or `sec min hour dom month dow`.
    pub fn parse(text: &str) -> Result<Schedule, String> {
        let fields: Vec<&str> = text.split_whitespace().collect();
        let expression = match fields.len() {
            5 => format!("0 {}", fields.join(" ")),
            6 => fields.join(" "),
            n => {
                return Err(format!(
                    "`{text}` has {n} fields; expected 5 (minute hour day month weekday) or 6 (with seconds first)"
                ))
            }
        };
        CronParser::builder()
            .seconds(Seconds::Required)
            .dom_and_dow(true)
            .build()
            .parse(&expression)
            .map_err(|e| format!("`{text}` is not a valid cron expression: {e}"))?;
        Ok(Schedule { expression })
    }

    /// The 6-field expression, seconds first.
    pub fn expression(&self) -> &str {
        &self.expression
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

    #[test]
    fn nonsense_is_rejected() {
        assert!(Schedule::parse("").is_err());
        assert!(Schedule::parse("hourly").is_err());
        assert!(Schedule::parse("61 * * * *").is_err());
        assert!(Schedule::parse("* * * * * * * *").is_err());
        assert!(Schedule::parse("0 0 32 * *").is_err());
    }
}
