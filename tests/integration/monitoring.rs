//! The alerting rules: promtool's own checks, and their unit tests on synthetic series.

use std::process::Command;

use crate::support::files::{check, output, repo};

#[test]
fn the_alert_rules_pass_promtool_and_their_unit_tests() {
    check(
        Command::new("promtool")
            .args(["check", "rules"])
            .arg(repo("deploy/prometheus/alerts.yml")),
        "promtool check rules",
        |l| l.is_empty() || l.starts_with("Checking ") || l.contains("SUCCESS: "),
    );
    let (ok, text) = output(
        Command::new("promtool")
            .args(["test", "rules", "alerts.test.yml"])
            .current_dir(repo("tests/prometheus")),
        "promtool test rules",
    );
    assert!(
        ok && text.contains("SUCCESS"),
        "promtool test rules:\n{text}"
    );
}
