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
    /// Group memberships changed.
    pub changes: u64,
    /// What needs attention: accounts not reconciled, users skipped, changes failed or unknown;
    /// for a batch of events, at least the events left for redelivery.
    pub errors: u64,
    /// For a full reconciliation that made its changes (dry runs write no metrics).
    pub run: Option<RunFigures>,
}

/// A full run's own figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunFigures {
    pub result: RunResult,
    pub users_without_mfa: u64,
}

impl Figures {
    /// A run's figures; a full run's (`full`) with its own.
    pub fn of_run(report: &RunReport, full: bool) -> Figures {
        Figures {
            changes: report.accounts.iter().map(changes).sum(),
            errors: u64::from(report.error.is_some())
                + report
                    .accounts
                    .iter()
                    .map(AccountReport::problems)
                    .sum::<u64>(),
            run: full.then(|| RunFigures {
                result: report.result(),
                users_without_mfa: report.accounts.iter().map(|a| a.users_without_mfa).sum(),
            }),
        }
    }

    /// The figures of a batch of events: its reconciliations, and its events left for
    /// redelivery. A user that could not be read is both a problem of its
    /// account and the reason its event is retried: it counts once.
    pub fn of_events(reports: &[AccountReport], retried: u64) -> Figures {
        let problems = reports.iter().map(AccountReport::problems).sum::<u64>();
        Figures {
            changes: reports.iter().map(changes).sum(),
            errors: problems.max(retried),
            run: None,
        }
    }
}

fn changes(account: &AccountReport) -> u64 {
    (account.added.len() + account.removed.len()) as u64
}

/// One EMF line for `function`, at `timestamp_ms` (milliseconds since the epoch). A full run
/// adds `Runs`, `SuccessfulRuns` and `UsersWithoutMfa` to `Changes` and `Errors`, and its
/// result as the property `result`.
pub fn line(function: &str, timestamp_ms: u64, figures: &Figures) -> String {
    let mut metrics = Vec::new();
    if let Some(run) = figures.run {
        metrics.push(("Runs", 1));
        metrics.push((
            "SuccessfulRuns",
            u64::from(run.result == RunResult::Success),
        ));
        metrics.push(("UsersWithoutMfa", run.users_without_mfa));
    }
    metrics.push(("Changes", figures.changes));
    metrics.push(("Errors", figures.errors));
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
    if let Some(run) = figures.run {
        document["result"] = json!(run.result.as_str());
    }
    document.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_line_declares_each_metric_it_carries_under_the_function() {
        let figures = Figures {
            changes: 3,
            errors: 0,
            run: Some(RunFigures {
                result: RunResult::Success,
                users_without_mfa: 7,
            }),
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
                "UsersWithoutMfa",
                "Changes",
                "Errors"
            ]
        );
        for name in names {
            assert!(doc[name].is_u64(), "{name} has its value");
        }
        assert_eq!(
            (&doc["Runs"], &doc["SuccessfulRuns"]),
            (&json!(1), &json!(1))
        );
        assert_eq!(doc["UsersWithoutMfa"], 7);
        assert_eq!(doc["result"], "success");

        let incomplete = Figures {
            run: Some(RunFigures {
                result: RunResult::Incomplete,
                users_without_mfa: 7,
            }),
            ..figures
        };
        let doc: Value = serde_json::from_str(&line("f", 1, &incomplete)).unwrap();
        assert_eq!(
            (&doc["Runs"], &doc["SuccessfulRuns"]),
            (&json!(1), &json!(0))
        );
    }

    #[test]
    fn an_events_batch_counts_its_retries_as_errors_and_declares_no_run() {
        let figures = Figures::of_events(&[], 2);
        assert_eq!(figures.errors, 2);
        let doc: Value = serde_json::from_str(&line("f", 1, &figures)).unwrap();
        let declared = doc["_aws"]["CloudWatchMetrics"][0]["Metrics"].to_string();
        assert_eq!(
            declared,
            json!([{ "Name": "Changes", "Unit": "Count" }, { "Name": "Errors", "Unit": "Count" }])
                .to_string()
        );
        for absent in ["Runs", "SuccessfulRuns", "UsersWithoutMfa", "result"] {
            assert!(doc.get(absent).is_none(), "{absent}");
        }
    }
}
