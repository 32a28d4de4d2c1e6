//! The metrics alerting needs, as CloudWatch Embedded Metric Format lines: CloudWatch Logs turns
//! each such line of the function's output into metrics, with no agent (pure).

use serde_json::{json, Value};

use crate::reconcile::report::{AccountReport, RunReport, RunResult};

/// The metrics' namespace in CloudWatch.
pub const NAMESPACE: &str = "forcemfa";
/// Their one dimension: the function, so that two stacks' metrics stay apart.
pub const DIMENSION: &str = "FunctionName";

/// What one invocation adds to the metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Figures {
    /// Full reconciliations that made their changes (dry runs are not counted).
    pub runs: u64,
    /// Those whose result was `success`: every account read and every change made.
    pub successful_runs: u64,
    /// Group memberships changed.
    pub changes: u64,
    /// What needs attention: accounts not reconciled, users skipped, changes failed or unknown;
    /// for a batch of events, at least the events left for redelivery.
    pub errors: u64,
    /// Users without an MFA device, counted by a full run.
    pub users_without_mfa: Option<u64>,
    /// The run's result, kept as a property of the line for log queries.
    pub result: Option<&'static str>,
}

impl Figures {
    /// A full run's figures.
    pub fn of_run(report: &RunReport) -> Figures {
        let result = report.result();
        Figures {
            runs: 1,
            successful_runs: u64::from(result == RunResult::Success),
            changes: report.accounts.iter().map(changes).sum(),
            errors: u64::from(report.error.is_some())
                + report
                    .accounts
                    .iter()
                    .map(AccountReport::problems)
                    .sum::<u64>(),
            users_without_mfa: Some(report.accounts.iter().map(|a| a.users_without_mfa).sum()),
            result: Some(result.as_str()),
        }
    }

    /// An events batch's figures: its reconciliations, and its events left for redelivery. A
    /// user that could not be read is both a problem of its account and the reason its event
    /// is retried: it counts once.
    pub fn of_events(reports: &[AccountReport], retried: u64) -> Figures {
        let problems = reports.iter().map(AccountReport::problems).sum::<u64>();
        Figures {
            changes: reports.iter().map(changes).sum(),
            errors: problems.max(retried),
            ..Figures::default()
        }
    }
}

fn changes(account: &AccountReport) -> u64 {
    (account.added.len() + account.removed.len()) as u64
}

/// One EMF line for `function`, at `timestamp_ms` (milliseconds since the epoch).
pub fn line(function: &str, timestamp_ms: u64, figures: &Figures) -> String {
    let mut metrics = vec![
        ("Runs", figures.runs),
        ("SuccessfulRuns", figures.successful_runs),
        ("Changes", figures.changes),
        ("Errors", figures.errors),
    ];
    if let Some(n) = figures.users_without_mfa {
        metrics.push(("UsersWithoutMfa", n));
    }
    let mut document = json!({
        "_aws": {
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [[DIMENSION]],
                "Metrics": metrics
                    .iter()
                    .map(|(name, _)| json!({ "Name": name, "Unit": "Count" }))
                    .collect::<Vec<Value>>(),
            }],
        },
        DIMENSION: function,
    });
    for (name, value) in metrics {
        document[name] = json!(value);
    }
    if let Some(result) = figures.result {
        document["result"] = json!(result);
    }
    document.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_declares_each_metric_it_carries_under_the_function() {
        let figures = Figures {
            runs: 1,
            successful_runs: 1,
            changes: 3,
            errors: 0,
            users_without_mfa: Some(7),
            result: Some("success"),
        };
        let text = line("forcemfa-run", 1_700_000_000_000, &figures);
        assert!(!text.contains('\n'));
        let doc: Value = serde_json::from_str(&text).unwrap();
        let declared = &doc["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(declared["Namespace"], "forcemfa");
        assert_eq!(declared["Dimensions"], json!([["FunctionName"]]));
        assert_eq!(doc["FunctionName"], "forcemfa-run");
        assert_eq!(doc["_aws"]["Timestamp"], 1_700_000_000_000_u64);
        let names: Vec<&str> = declared["Metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["Name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "Runs",
                "SuccessfulRuns",
                "Changes",
                "Errors",
                "UsersWithoutMfa"
            ]
        );
        for name in names {
            assert!(doc[name].is_u64(), "{name} has its value");
        }
        assert_eq!(doc["UsersWithoutMfa"], 7);
        assert_eq!(doc["result"], "success");
    }

    #[test]
    fn an_events_batch_counts_its_retries_as_errors_and_no_run() {
        let figures = Figures::of_events(&[], 2);
        assert_eq!(figures.errors, 2);
        assert_eq!(figures.runs, 0);
        let doc: Value = serde_json::from_str(&line("f", 1, &figures)).unwrap();
        assert!(doc.get("UsersWithoutMfa").is_none());
        assert!(doc.get("result").is_none());
        assert_eq!(doc["Runs"], 0);
    }
}
