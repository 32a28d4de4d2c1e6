//! Writes whose answer never comes: what IAM did is settled by a read, never guessed, and the
//! calls counted are the requests that went out.

use std::collections::BTreeMap;

use crate::support::proxy::{Fault, FaultProxy, Rule};
use crate::support::{audit_lines, audited, names, set, Account};

const GROUP: &str = "ForceMFA";

/// A user with a virtual MFA device who is still in the group: to be removed.
async fn member_with_mfa(a: &Account, name: &str) {
    a.user(name)
        .await
        .virtual_mfa()
        .await
        .member_of(GROUP)
        .await;
}

fn api_calls(acct: &serde_json::Value) -> BTreeMap<String, u64> {
    serde_json::from_value(acct["api_calls"].clone()).unwrap()
}

/// Every operation the report counts was seen that many times by the endpoint.
fn assert_calls_went_out(acct: &serde_json::Value, proxy: &FaultProxy) {
    for (op, n) in api_calls(acct) {
        let seen = proxy.requests_with(&[&format!("Action={op}&")]) as u64;
        assert_eq!(
            n, seen,
            "{op}: counted {n}, the endpoint saw {seen}: {acct}"
        );
    }
}

#[tokio::test]
async fn a_write_made_after_its_timeout_is_reported_done_not_failed() {
    let a = Account::with_group().await;
    member_with_mfa(&a, "carol").await;
    let proxy = FaultProxy::start(&a.moto.endpoint);
    // The removal reaches IAM a second after forcemfa gave up on it (its timeout is 6 s); the
    // read that checks it is held long enough to see it made.
    proxy.set_rules(vec![
        Rule::new(&["Action=RemoveUserFromGroup"], Fault::Delay(7000)),
        Rule::new(&["Action=ListGroupsForUser"], Fault::Delay(3000)),
    ]);
    let log = a.dir.path().join("audit.jsonl");
    let config = a.config(&format!(
        "audit_log = \"{}\"\n[aws]\noperation_timeout_secs = 6\n",
        log.display()
    ));
    let run = a.reconcile_json_via(&proxy.endpoint, &config);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let acct = run.account();
    assert_eq!(names(&acct["removed"]), ["carol"], "{acct}");
    assert!(acct["failed"].as_array().unwrap().is_empty(), "{acct}");
    assert!(acct["unknown"].as_array().unwrap().is_empty(), "{acct}");
    assert!(a.members(GROUP).await.is_empty());
    let lines = audit_lines(&log);
    assert_eq!(audited(&lines, "remove", "done"), set(&["carol"]));
    assert!(audited(&lines, "remove", "failed").is_empty());
    assert_eq!(api_calls(&acct)["RemoveUserFromGroup"], 1, "{acct}");
    assert_eq!(api_calls(&acct)["ListGroupsForUser"], 1, "{acct}");
    assert_calls_went_out(&acct, &proxy);
}

#[tokio::test]
async fn a_write_whose_outcome_cannot_be_read_is_unknown_and_settled_by_the_next_run() {
    let a = Account::with_group().await;
    member_with_mfa(&a, "carol").await;
    let proxy = FaultProxy::start(&a.moto.endpoint);
    // IAM makes the change but its answer is lost, every time; the read to check fails too.
    proxy.set_rules(vec![
        Rule::new(&["Action=RemoveUserFromGroup"], Fault::DropAfterForward),
        Rule::new(&["Action=ListGroupsForUser"], Fault::ServerError),
    ]);
    let log = a.dir.path().join("audit.jsonl");
    let config = a.config(&format!(
        "audit_log = \"{}\"\n[aws]\nmax_attempts = 2\nmax_backoff_secs = 1\n",
        log.display()
    ));
    let run = a.reconcile_json_via(&proxy.endpoint, &config);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let acct = run.account();
    assert!(names(&acct["removed"]).is_empty(), "{acct}");
    assert!(acct["failed"].as_array().unwrap().is_empty(), "{acct}");
    let unknown = &acct["unknown"][0];
    assert_eq!(unknown["user"], "carol", "{acct}");
    assert_eq!(unknown["action"], "remove", "{acct}");
    let reason = unknown["reason"].as_str().unwrap();
    assert!(
        reason.contains("iam:RemoveUserFromGroup") && reason.contains("ListGroupsForUser"),
        "{reason}"
    );
    let lines = audit_lines(&log);
    assert_eq!(audited(&lines, "remove", "unknown"), set(&["carol"]));
    assert!(audited(&lines, "remove", "failed").is_empty());
    assert!(
        run.log_lines()
            .iter()
            .any(|l| l["message"] == "membership change"
                && l["outcome"] == "unknown"
                && l["user"] == "carol"),
        "{}",
        run.stderr
    );
    assert!(run.stdout.contains("\"unknown\""));
    assert_calls_went_out(&acct, &proxy);

    // The next run reads IAM's state: the removal was made; nothing is left to do.
    proxy.set_rules(vec![]);
    let next = a.reconcile_json_via(&proxy.endpoint, &config);
    assert_eq!(next.code, 0, "{}", next.stderr);
    assert_eq!(next.account()["planned_changes"], 0);
    assert!(a.members(GROUP).await.is_empty());
}

#[tokio::test]
async fn calls_given_up_before_they_left_are_not_counted() {
    let a = Account::with_group().await;
    for i in 0..6 {
        member_with_mfa(&a, &format!("u{i}")).await;
    }
    let proxy = FaultProxy::start(&a.moto.endpoint);
    // Writes held past the timeout: the pacing lets only a few be under way at once, so the
    // others time out while they wait for their turn, and never reach IAM.
    proxy.set_rules(vec![Rule::new(
        &["Action=RemoveUserFromGroup"],
        Fault::Delay(4000),
    )]);
    let log = a.dir.path().join("audit.jsonl");
    let config = a.config(&format!(
        "audit_log = \"{}\"\n[aws]\noperation_timeout_secs = 3\nmax_attempts = 3\n",
        log.display()
    ));
    let run = a.reconcile_json_via(&proxy.endpoint, &config);
    let acct = run.account();
    assert_calls_went_out(&acct, &proxy);
    // Every user is accounted for once, and as IAM has it.
    let members = a.members(GROUP).await;
    let removed = names(&acct["removed"]);
    let failed: Vec<String> = acct["failed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["user"].as_str().unwrap().to_string())
        .collect();
    let unknown = acct["unknown"].as_array().unwrap().len();
    assert_eq!(removed.len() + failed.len() + unknown, 6, "{acct}");
    for user in &removed {
        assert!(!members.contains(user), "{user} reported removed: {acct}");
    }
    let lines = audit_lines(&log);
    let done = audited(&lines, "remove", "done");
    assert_eq!(done, removed.iter().cloned().collect(), "{acct}");
    // IAM never answered no here: a change is failed only if it was never sent, and then it is
    // not made.
    assert!(audited(&lines, "remove", "failed").is_empty(), "{acct}");
    for user in &failed {
        assert!(members.contains(user), "{user} reported failed: {acct}");
    }
}

#[tokio::test]
async fn a_change_made_whose_retries_were_refused_is_done() {
    let a = Account::with_group().await;
    a.user("carol").await;
    let proxy = FaultProxy::start(&a.moto.endpoint);
    // The first attempt is made but its answer lost; the retries are throttled to the end.
    proxy.set_rules(vec![
        Rule::new(&["Action=AddUserToGroup"], Fault::DropAfterForward).times(1),
        Rule::new(&["Action=AddUserToGroup"], Fault::Throttle),
    ]);
    let log = a.dir.path().join("audit.jsonl");
    let config = a.config(&format!(
        "audit_log = \"{}\"\n[aws]\nmax_attempts = 3\nmax_backoff_secs = 1\n",
        log.display()
    ));
    let run = a.reconcile_json_via(&proxy.endpoint, &config);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let acct = run.account();
    assert_eq!(names(&acct["added"]), ["carol"], "{acct}");
    assert!(acct["failed"].as_array().unwrap().is_empty(), "{acct}");
    assert_eq!(a.members(GROUP).await, set(&["carol"]));
    assert_eq!(audited(&audit_lines(&log), "add", "done"), set(&["carol"]));
    assert_calls_went_out(&acct, &proxy);
}
