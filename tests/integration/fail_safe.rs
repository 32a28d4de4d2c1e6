//! A user whose state cannot be read is left as it is and reported; a refused change is reported.

use crate::support::proxy::{Fault, FaultProxy, Rule};
use crate::support::{names, set, skipped, Account};

const GROUP: &str = "ForceMFA";

#[tokio::test]
async fn unreadable_users_are_skipped_not_guessed() {
    let a = Account::with_group().await;
    // Neither has MFA; without the faults, one would be added and the other kept.
    a.user("hidden-out").await;
    a.user("hidden-in").await.member_of(GROUP).await;
    // With hardware MFA (not in the virtual list, so read per user) and a member.
    a.user("hidden-fixed")
        .await
        .hardware_mfa()
        .await
        .member_of(GROUP)
        .await;
    a.user("plain").await;
    let proxy = FaultProxy::start(&a.moto.endpoint);
    proxy.set_rules(vec![Rule::new(
        &["Action=ListMFADevices", "UserName=hidden-"],
        Fault::ServerError,
    )]);
    let config = a.config("[aws]\nmax_attempts = 2\n");

    let run = a.reconcile_json_via(&proxy.endpoint, &config);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(
        a.members(GROUP).await,
        set(&["hidden-fixed", "hidden-in", "plain"])
    );
    let acct = run.account();
    assert_eq!(names(&acct["added"]), ["plain"]);
    assert!(names(&acct["removed"]).is_empty());
    let skipped = skipped(&acct);
    assert_eq!(
        skipped.iter().map(|s| s.0.as_str()).collect::<Vec<_>>(),
        ["hidden-fixed", "hidden-in", "hidden-out"]
    );
    for (_, reason) in &skipped {
        assert!(reason.contains("ListMFADevices"), "{reason}");
        assert!(reason.contains("ServiceFailure"), "{reason}");
    }
    assert!(
        proxy.faulted() >= 6,
        "each read was retried: {}",
        proxy.faulted()
    );
    let warnings = run
        .log_lines()
        .into_iter()
        .filter(|l| l["message"] == "user skipped")
        .count();
    assert_eq!(warnings, 3);

    // Once the faults stop, the next run converges.
    proxy.set_rules(vec![]);
    let run = a.forcemfa_via(
        &proxy.endpoint,
        &["reconcile", "--config", config.to_str().unwrap()],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        a.members(GROUP).await,
        set(&["hidden-in", "hidden-out", "plain"])
    );
}

#[tokio::test]
async fn refused_changes_are_reported_and_the_rest_applied() {
    let a = Account::with_group().await;
    a.user("blocked").await;
    a.user("fine").await;
    let proxy = FaultProxy::start(&a.moto.endpoint);
    proxy.set_rules(vec![Rule::new(
        &["Action=AddUserToGroup", "UserName=blocked"],
        Fault::ServerError,
    )]);
    let config = a.config("[aws]\nmax_attempts = 1\n");

    let run = a.reconcile_json_via(&proxy.endpoint, &config);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(a.members(GROUP).await, set(&["fine"]));
    let acct = run.account();
    assert_eq!(names(&acct["added"]), ["fine"]);
    let failed = &acct["failed"][0];
    assert_eq!(failed["user"], "blocked");
    assert_eq!(failed["action"], "add");
    assert!(failed["reason"]
        .as_str()
        .unwrap()
        .contains("AddUserToGroup"));
}

#[tokio::test]
async fn throttling_is_retried_and_the_run_converges() {
    let a = Account::with_group().await;
    a.user("alice")
        .await
        .virtual_mfa()
        .await
        .member_of(GROUP)
        .await;
    a.user("bob")
        .await
        .hardware_mfa()
        .await
        .member_of(GROUP)
        .await;
    a.user("carol").await;
    let proxy = FaultProxy::start(&a.moto.endpoint);
    proxy.set_rules(vec![
        Rule::new(&["Action=GetAccountAuthorizationDetails"], Fault::Throttle).times(1),
        Rule::new(&["Action=ListMFADevices"], Fault::Throttle).times(1),
        Rule::new(&["Action=AddUserToGroup"], Fault::Throttle).times(1),
    ]);
    // A throttled call waits up to max_backoff_secs before its retry; keep that short here.
    let config = a.config("[aws]\nmax_backoff_secs = 1\n");

    let run = a.reconcile_json_via(&proxy.endpoint, &config);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(proxy.faulted(), 3);
    assert_eq!(a.members(GROUP).await, set(&["carol"]));
    let acct = run.account();
    assert_eq!(names(&acct["added"]), ["carol"]);
    assert_eq!(names(&acct["removed"]), ["alice", "bob"]);
    // Retries are counted as the requests they are. After the retries' waits the read is over a
    // second old, so the changes are usually checked with the lists once more just before.
    let lists = acct["api_calls"]["GetAccountAuthorizationDetails"]
        .as_u64()
        .unwrap();
    assert!((2..=3).contains(&lists), "{lists}");
    assert_eq!(acct["api_calls"]["AddUserToGroup"], 2);
}

#[tokio::test]
async fn a_user_deleted_mid_run_is_reported_not_panicked_on() {
    let a = Account::with_group().await;
    a.user("gone-before-read").await;
    a.user("gone-before-write").await;
    a.user("fine").await;
    let proxy = FaultProxy::start(&a.moto.endpoint);
    proxy.set_rules(vec![
        Rule::new(
            &["Action=ListMFADevices", "UserName=gone-before-read"],
            Fault::NoSuchEntity,
        ),
        Rule::new(
            &["Action=AddUserToGroup", "UserName=gone-before-write"],
            Fault::NoSuchEntity,
        ),
    ]);
    let run = a.forcemfa_via(&proxy.endpoint, &["reconcile", "--output", "json"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let acct = run.account();
    assert_eq!(names(&acct["added"]), ["fine"]);
    assert_eq!(acct["skipped"][0]["user"], "gone-before-read");
    assert!(acct["skipped"][0]["reason"]
        .as_str()
        .unwrap()
        .contains("no longer exists"));
    assert_eq!(acct["failed"][0]["user"], "gone-before-write");
    assert!(acct["failed"][0]["reason"]
        .as_str()
        .unwrap()
        .contains("NoSuchEntity"));
}
