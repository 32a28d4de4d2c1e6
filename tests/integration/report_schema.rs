//! Every report forcemfa prints matches `docs/report.schema.json`, judged by Python's
//! `jsonschema` (installed by `scripts/ensure-tools`), which knows nothing of forcemfa's types.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::support::daemon::Daemon;
use crate::support::proxy::{Fault, FaultProxy, Rule};
use crate::support::{Account, Run};

const GROUP: &str = "ForceMFA";

/// Validates the JSON on stdin against the schema named by the first argument, under draft
/// 2020-12, after checking the schema itself; prints every error with its place.
const VALIDATE: &str = r#"
import json, sys
import jsonschema
schema = json.load(open(sys.argv[1]))
jsonschema.Draft202012Validator.check_schema(schema)
errors = list(jsonschema.Draft202012Validator(schema).iter_errors(json.load(sys.stdin)))
for e in errors:
    print("/".join(str(p) for p in e.absolute_path) or "(root)", ":", e.message)
sys.exit(1 if errors else 0)
"#;

/// Fails unless `report` matches the schema; `what` names the scenario.
fn assert_valid(what: &str, report: &str) {
    let schema = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/report.schema.json");
    let mut child = Command::new("python3")
        .args(["-c", VALIDATE, schema])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(report.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{what}: the report does not match docs/report.schema.json:\n{}{}\n{report}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The report of a run whose exit code is `code`, checked against the schema.
fn check(what: &str, run: &Run, code: i32) -> serde_json::Value {
    assert_eq!(run.code, code, "{what}: {}", run.stderr);
    assert_valid(what, &run.stdout);
    run.account()
}

/// alice: MFA, member; carol and dave: no MFA; breakglass: exempt.
async fn account() -> Account {
    let a = Account::with_group().await;
    a.user("alice")
        .await
        .virtual_mfa()
        .await
        .member_of(GROUP)
        .await;
    a.user("carol").await;
    a.user("dave").await;
    a.user("breakglass").await;
    a
}

#[tokio::test]
async fn reports_match_the_schema() {
    let a = account().await;
    let exempt = "[exempt]\nusers = [\"breakglass\"]\n";

    let config = a.config(exempt);
    let dry = a.forcemfa(&[
        "reconcile",
        "--config",
        config.to_str().unwrap(),
        "--dry-run",
        "--output",
        "json",
    ]);
    assert_eq!(check("dry run", &dry, 0)["applied"], false);

    let guard = a.forcemfa(&[
        "reconcile",
        "--config",
        config.to_str().unwrap(),
        "--max-changes",
        "1",
        "--output",
        "json",
    ]);
    assert_eq!(check("guard tripped", &guard, 3)["guard_tripped"], true);

    // carol cannot be read, dave cannot be added.
    let proxy = FaultProxy::start(&a.moto.endpoint);
    proxy.set_rules(vec![
        Rule::new(
            &["Action=ListMFADevices", "UserName=carol"],
            Fault::AccessDenied,
        ),
        Rule::new(
            &["Action=AddUserToGroup", "UserName=dave"],
            Fault::AccessDenied,
        ),
    ]);
    let config = a.config(&format!("{exempt}[aws]\nmax_attempts = 1\n"));
    let faulty = a.reconcile_json_via(&proxy.endpoint, &config);
    let acct = check("skipped user and failed change", &faulty, 1);
    assert_eq!(acct["skipped"].as_array().unwrap().len(), 1, "{acct}");
    assert_eq!(acct["failed"].as_array().unwrap().len(), 1, "{acct}");

    let success = a.reconcile_json(&a.config(exempt));
    let acct = check("success", &success, 0);
    assert!(acct["error"].is_null(), "{acct}");
    assert_eq!(acct["exempt"], serde_json::json!(["breakglass"]));

    let empty = Account::empty();
    empty.user("erin").await;
    let failed = empty.reconcile_json(&empty.config(""));
    assert!(!check("account error", &failed, 1)["error"].is_null());
}

#[tokio::test]
async fn the_services_report_matches_the_schema() {
    let a = account().await;
    let d = Daemon::start(
        &a,
        &a.moto.endpoint,
        "schedule = \"0 0 1 1 *\"\nrun_on_start = false\n",
    );
    let admin = d.admin.to_string();
    let run = a.forcemfa(&["trigger", "--admin", &admin, "--wait", "--output", "json"]);
    check("trigger --wait", &run, 0);
    let (status, body) = d.get("/report");
    assert_eq!(status, 200, "{body}");
    assert_valid("GET /report", &body);
}
