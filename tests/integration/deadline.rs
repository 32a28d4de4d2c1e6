//! Every run has a deadline (`run_timeout`): past it no new read or change starts, unfinished
//! accounts report an error, and the runner is free for the next run.

use std::time::{Duration, Instant};

use crate::support::daemon::{eventually, Daemon};
use crate::support::proxy::{Fault, FaultProxy, Rule};
use crate::support::{names, set, Account};

const GROUP: &str = "ForceMFA";

#[tokio::test]
async fn a_stuck_read_ends_at_the_deadline_with_nothing_changed() {
    let a = Account::with_group().await;
    a.user("carol").await;
    let proxy = FaultProxy::start(&a.moto.endpoint);
    // An answer that takes far longer than the run may.
    proxy.set_rules(vec![Rule::new(
        &["Action=GetAccountAuthorizationDetails"],
        Fault::Delay(60_000),
    )]);
    let config = a.config("run_timeout = \"2s\"\n[aws]\noperation_timeout_secs = 120\n");

    let started = Instant::now();
    let run = a.reconcile_json_via(&proxy.endpoint, &config);
    let took = started.elapsed();
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(took < Duration::from_secs(10), "{took:?}");
    let error = run.account()["error"].as_str().unwrap().to_string();
    assert!(error.contains("run_timeout"), "{error}");
    assert!(a.members(GROUP).await.is_empty());
    println!("stuck read: the run ended after {took:?} with run_timeout = 2s");
}

#[tokio::test]
async fn a_slow_apply_stops_starting_changes_at_the_deadline() {
    let a = Account::with_group().await;
    for i in 0..10 {
        a.user(&format!("u{i}")).await;
    }
    let proxy = FaultProxy::start(&a.moto.endpoint);
    proxy.set_rules(vec![Rule::new(
        &["Action=AddUserToGroup"],
        Fault::Delay(1_000),
    )]);
    let log = a.dir.path().join("audit.jsonl");
    let config = a.config(&format!(
        "run_timeout = \"3s\"\naudit_log = \"{}\"\n[aws]\nmax_concurrency = 1\n",
        log.display()
    ));

    let started = Instant::now();
    let run = a.reconcile_json_via(&proxy.endpoint, &config);
    let took = started.elapsed();
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(took < Duration::from_secs(10), "{took:?}");
    let acct = run.account();
    let added = names(&acct["added"]);
    assert!(!added.is_empty() && added.len() < 10, "{acct}");
    assert!(
        acct["error"].as_str().unwrap().contains("run_timeout"),
        "{acct}"
    );
    let failed = acct["failed"].as_array().unwrap();
    assert_eq!(failed.len() + added.len(), 10, "{acct}");
    for f in failed {
        assert!(f["reason"].as_str().unwrap().contains("deadline"), "{f}");
    }
    // What the report says was added is what IAM holds.
    assert_eq!(
        a.members(GROUP).await,
        added.into_iter().collect::<std::collections::BTreeSet<_>>()
    );
}

#[tokio::test]
async fn a_stuck_account_does_not_freeze_the_service() {
    let a = Account::with_group().await;
    a.user("carol").await;
    let proxy = FaultProxy::start(&a.moto.endpoint);
    proxy.set_rules(vec![Rule::new(
        &["Action=GetAccountAuthorizationDetails"],
        Fault::Delay(60_000),
    )]);
    let d = Daemon::start(
        &a,
        &proxy.endpoint,
        "run_on_start = true\nrun_timeout = \"2s\"\n[aws]\noperation_timeout_secs = 120\n",
    );
    d.wait_runs(1, 15).await;
    let finished = &d.events("run finished")[0];
    assert_eq!(finished["account_errors"], 1, "{finished}");
    // The listener answers throughout, and the next run goes ahead once IAM answers again.
    assert_eq!(d.get("/healthz").0, 200);
    assert_eq!(
        d.get("/readyz").0,
        200,
        "a stuck account leaves the service ready"
    );
    proxy.set_rules(vec![]);
    assert_eq!(d.post("/reconcile", None).0, 202);
    d.wait_runs(2, 15).await;
    assert!(
        eventually(5, || async { a.members(GROUP).await == set(&["carol"]) }).await,
        "{}",
        d.stderr_text()
    );
}
