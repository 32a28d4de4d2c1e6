//! Reconciling single users: `forcemfa reconcile --user`, and the daemon's reaction to IAM's
//! events on an SQS queue.

use crate::support::proxy::{Fault, FaultProxy, Rule};
use crate::support::{names, set, Account};

const GROUP: &str = "ForceMFA";

/// IAM calls in a report's `api_calls`, GetCallerIdentity (STS) left out.
fn iam_calls(account: &serde_json::Value) -> u64 {
    account["api_calls"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(op, _)| *op != "GetCallerIdentity")
        .map(|(_, n)| n.as_u64().unwrap())
        .sum()
}

#[tokio::test]
async fn reconcile_user_changes_only_the_users_named_with_at_most_four_calls_each() {
    let a = Account::with_group().await;
    a.user("alice")
        .await
        .virtual_mfa()
        .await
        .member_of(GROUP)
        .await;
    a.user("carol").await;
    a.user("dave").await;
    a.user("erin")
        .await
        .hardware_mfa()
        .await
        .member_of(GROUP)
        .await;
    a.user_at("ops", "/", &[("forcemfa", "exempt")]).await;
    let config = a.config("[exempt]\ntags = { forcemfa = \"exempt\" }\n");
    let config = config.to_str().unwrap();

    let run = a.forcemfa(&[
        "reconcile",
        "--config",
        config,
        "--output",
        "json",
        "--user",
        "alice",
        "--user",
        "carol",
        "--user",
        "ops",
        "--user",
        "nobody",
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    // dave (no MFA) and erin (MFA, member) were not named: untouched.
    assert_eq!(a.members(GROUP).await, set(&["carol", "erin"]));
    let report = run.report();
    assert_eq!(names(&report["users"]), ["alice", "carol", "ops", "nobody"]);
    let acct = run.account();
    assert_eq!(names(&acct["added"]), ["carol"]);
    assert_eq!(names(&acct["removed"]), ["alice"]);
    assert_eq!(names(&acct["exempt"]), ["ops"]);
    assert_eq!(names(&acct["users_not_found"]), ["nobody"]);
    assert_eq!(acct["users_scanned"], 3);
    // alice and carol: GetUser, ListGroupsForUser, ListMFADevices, and the write (4 each); ops:
    // GetUser only (exempt); nobody: GetUser only.
    assert_eq!(iam_calls(&acct), 4 + 4 + 1 + 1, "{}", acct["api_calls"]);
    assert!(acct["api_calls"]
        .get("GetAccountAuthorizationDetails")
        .is_none());
}

#[tokio::test]
async fn reconcile_user_decides_by_the_same_rules_as_a_full_run() {
    let a = Account::with_group().await;
    a.user("carol").await; // no console password: out of scope
    a.user("dave").await.console_password().await; // no MFA, console: added
    a.user_at("bot", "/automation/", &[]).await;
    let config = a.config("console_users_only = true\ndry_run = false\n[exempt]\npath_prefixes = [\"/automation/\"]\n");
    let config = config.to_str().unwrap();
    let args = |extra: &[&str]| {
        let mut v = vec!["reconcile", "--config", config, "--output", "json"];
        v.extend_from_slice(extra);
        v.iter().map(|s| s.to_string()).collect::<Vec<_>>()
    };
    let run = |extra: &[&str]| {
        let owned = args(extra);
        let refs: Vec<&str> = owned.iter().map(String::as_str).collect();
        a.forcemfa(&refs)
    };

    let dry = run(&[
        "--dry-run",
        "--user",
        "carol",
        "--user",
        "dave",
        "--user",
        "bot",
    ]);
    assert_eq!(dry.code, 0, "{}", dry.stderr);
    let acct = dry.account();
    assert_eq!(names(&acct["added"]), ["dave"]);
    assert_eq!(names(&acct["out_of_scope"]), ["carol"]);
    assert_eq!(names(&acct["exempt"]), ["bot"]);
    assert_eq!(acct["applied"], false);
    assert!(
        a.members(GROUP).await.is_empty(),
        "a dry run changed the group"
    );

    let guarded = run(&["--max-changes", "1", "--user", "dave", "--user", "carol"]);
    assert_eq!(guarded.code, 0, "{}", guarded.stderr);
    assert_eq!(a.members(GROUP).await, set(&["dave"]));
}

/// Any of a user's reads failing (GetUser, ListGroupsForUser, ListMFADevices) leaves the user as
/// it is, reported as skipped with the call that failed.
#[tokio::test]
async fn a_user_whose_state_cannot_be_read_is_skipped_not_guessed() {
    let a = Account::with_group().await;
    a.user("get").await;
    a.user("groups")
        .await
        .virtual_mfa()
        .await
        .member_of(GROUP)
        .await;
    a.user("devices")
        .await
        .virtual_mfa()
        .await
        .member_of(GROUP)
        .await;
    a.user("fine").await;
    let proxy = FaultProxy::start(&a.moto.endpoint);
    proxy.set_rules(vec![
        Rule::new(&["Action=GetUser", "UserName=get"], Fault::ServerError),
        Rule::new(
            &["Action=ListGroupsForUser", "UserName=groups"],
            Fault::ServerError,
        ),
        Rule::new(
            &["Action=ListMFADevices", "UserName=devices"],
            Fault::Throttle,
        ),
    ]);
    let config = a.config("[aws]\nmax_attempts = 2\nmax_backoff_secs = 1\n");
    let run = a.forcemfa_via(
        &proxy.endpoint,
        &[
            "reconcile",
            "--config",
            config.to_str().unwrap(),
            "--output",
            "json",
            "--user",
            "get",
            "--user",
            "groups",
            "--user",
            "devices",
            "--user",
            "fine",
        ],
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(a.members(GROUP).await, set(&["devices", "fine", "groups"]));
    let acct = run.account();
    assert_eq!(names(&acct["added"]), ["fine"]);
    let skipped: Vec<(String, String)> = acct["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["user"].as_str().unwrap().into(),
                s["reason"].as_str().unwrap().into(),
            )
        })
        .collect();
    let users: Vec<&str> = skipped.iter().map(|s| s.0.as_str()).collect();
    assert_eq!(users, ["devices", "get", "groups"]);
    for ((_, reason), call) in
        skipped
            .iter()
            .zip(["ListMFADevices", "GetUser", "ListGroupsForUser"])
    {
        assert!(reason.contains(call), "{reason}");
    }
}

#[tokio::test]
async fn a_name_that_is_no_iam_user_name_is_refused_before_any_call() {
    let a = Account::with_group().await;
    a.user("carol").await;
    let run = a.forcemfa(&["reconcile", "--output", "json", "--user", "bad/name"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("--user"), "{}", run.stderr);
    assert!(a.members(GROUP).await.is_empty());
}
