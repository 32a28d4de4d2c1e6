//! Reconciling single users: `forcemfa reconcile --user`, and the daemon's reaction to IAM's
//! events on an SQS queue.

use crate::support::daemon::{eventually, metric, Daemon};
use crate::support::proxy::{Fault, FaultProxy, Rule};
use crate::support::queue::{iam_event, Queue};
use crate::support::{names, set, skipped, Account, ACCOUNT_ID};

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
    // alice and carol: GetUser, ListGroupsForUser, ListMFADevices, and the write (4 each), and
    // for carol's add what it takes away (ListAccessKeys, GetLoginProfile); ops: GetUser only
    // (exempt); nobody: GetUser only.
    assert_eq!(
        iam_calls(&acct),
        4 + (4 + 2) + 1 + 1,
        "{}",
        acct["api_calls"]
    );
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
        v.iter().map(ToString::to_string).collect::<Vec<_>>()
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
    let skipped = skipped(&acct);
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

fn user_event(name: &str, user: &str) -> String {
    iam_event(ACCOUNT_ID, name, &serde_json::json!({ "userName": user }))
}

/// A daemon whose schedule never fires during the test, reading `queue`.
fn events_daemon(a: &Account, endpoint: &str, queue: &Queue, extra: &str) -> Daemon {
    Daemon::start(
        a,
        endpoint,
        &format!(
            "schedule = \"0 0 1 1 *\"\nrun_on_start = false\n{extra}\n[events]\nqueue_url = \"{}\"\nwait = \"1s\"\nbatch_window = \"200ms\"\nvisibility_timeout = \"5s\"\n",
            queue.url
        ),
    )
}

async fn until<F, Fut>(secs: u64, what: &str, d: &Daemon, check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let ok = eventually(secs, check).await;
    assert!(ok, "{what} within {secs}s:\n{}", d.stderr_text());
}

#[tokio::test]
async fn iam_events_change_membership_within_seconds_without_a_full_run() {
    let a = Account::with_group().await;
    let queue = Queue::create(&a.moto.endpoint, "forcemfa-events").await;
    let mut d = events_daemon(
        &a,
        &a.moto.endpoint,
        &queue,
        "[exempt]\ntags = { forcemfa = \"exempt\" }",
    );

    // A new user without MFA is put into the group.
    a.user("newbie").await;
    queue.send(&user_event("CreateUser", "newbie")).await;
    until(10, "newbie added", &d, || async {
        a.members(GROUP).await.contains("newbie")
    })
    .await;

    // Enrolling a device takes them out.
    let device = a
        .iam
        .create_virtual_mfa_device()
        .virtual_mfa_device_name("newbie-phone")
        .send()
        .await
        .unwrap();
    let serial = device
        .virtual_mfa_device()
        .unwrap()
        .serial_number()
        .to_string();
    a.iam
        .enable_mfa_device()
        .user_name("newbie")
        .serial_number(&serial)
        .authentication_code1("123456")
        .authentication_code2("654321")
        .send()
        .await
        .unwrap();
    queue
        .send(&iam_event(
            ACCOUNT_ID,
            "EnableMFADevice",
            &serde_json::json!({ "userName": "newbie", "serialNumber": serial }),
        ))
        .await;
    until(10, "newbie removed", &d, || async {
        !a.members(GROUP).await.contains("newbie")
    })
    .await;

    // Deactivating the last device puts them back.
    a.iam
        .deactivate_mfa_device()
        .user_name("newbie")
        .serial_number(&serial)
        .send()
        .await
        .unwrap();
    queue
        .send(&iam_event(
            ACCOUNT_ID,
            "DeactivateMFADevice",
            &serde_json::json!({ "userName": "newbie", "serialNumber": serial }),
        ))
        .await;
    until(10, "newbie added again", &d, || async {
        a.members(GROUP).await.contains("newbie")
    })
    .await;

    // A user tagged exempt is left alone, whatever the event says.
    a.user_at("robot", "/", &[("forcemfa", "exempt")]).await;
    queue.send(&user_event("TagUser", "robot")).await;
    until(10, "the queue drained", &d, || async {
        queue.len().await == 0
    })
    .await;
    until(10, "four events handled", &d, || async {
        metric(&d, "forcemfa_events_total{outcome=\"handled\"}") == 4.0
    })
    .await;
    assert_eq!(a.members(GROUP).await, set(&["newbie"]));

    assert_eq!(d.runs(), 0, "no full run took place");
    assert_eq!(metric(&d, "forcemfa_event_delay_seconds_count"), 3.0);
    assert_eq!(
        metric(
            &d,
            "forcemfa_changes_total{account=\"123456789012\",action=\"add\"}"
        ),
        2.0
    );
    let handled = d.events("event handled");
    assert_eq!(handled.len(), 4, "{}", d.stderr_text());
    assert_eq!(handled[0]["event_name"], "CreateUser");
    assert_eq!(handled[0]["users"], "newbie");
    let changes = d.events("membership change");
    assert_eq!(changes.len(), 3, "{}", d.stderr_text());
    assert!(changes.iter().all(|c| c["outcome"] == "done"));
    let (_, ready) = d.get("/readyz");
    assert!(ready.contains("events queue: readable"), "{ready}");
    assert_eq!(d.stop().0, 0);
}

#[tokio::test]
async fn unusable_messages_are_deleted_and_counted_without_blocking_the_next() {
    let a = Account::with_group().await;
    a.create_group("Developers").await;
    a.user("victim").await;
    a.user("mine").await;
    a.user("dev").await;
    a.user("good").await;
    let queue = Queue::create(&a.moto.endpoint, "forcemfa-events").await;
    let s3 = user_event("CreateUser", "victim").replace("\"aws.iam\"", "\"aws.s3\"");
    let failed = {
        let mut e: serde_json::Value =
            serde_json::from_str(&user_event("CreateUser", "victim")).unwrap();
        e["detail"]["errorCode"] = "EntityAlreadyExists".into();
        e.to_string()
    };
    let own = {
        let mut e: serde_json::Value = serde_json::from_str(&iam_event(
            ACCOUNT_ID,
            "RemoveUserFromGroup",
            &serde_json::json!({ "groupName": GROUP, "userName": "mine" }),
        ))
        .unwrap();
        // moto's answer to GetCallerIdentity for the test's credentials.
        e["detail"]["userIdentity"]["arn"] = "arn:aws:sts::123456789012:user/moto".into();
        e.to_string()
    };
    for body in [
        "not json at all".to_string(),
        "{\"detail-type\": \"AWS API Call via CloudTrail\", \"source\": \"aws.iam\"}".to_string(),
        s3,
        failed,
        iam_event(
            "999999999999",
            "CreateUser",
            &serde_json::json!({ "userName": "victim" }),
        ),
        own,
        iam_event(
            ACCOUNT_ID,
            "AddUserToGroup",
            &serde_json::json!({ "groupName": "Developers", "userName": "dev" }),
        ),
        user_event("CreateUser", "good"),
    ] {
        queue.send(&body).await;
    }
    let mut d = events_daemon(&a, &a.moto.endpoint, &queue, "");
    until(10, "good added", &d, || async {
        a.members(GROUP).await.contains("good")
    })
    .await;
    until(10, "the queue drained", &d, || async {
        queue.len().await == 0
    })
    .await;
    // Only the good event changed anything.
    assert_eq!(a.members(GROUP).await, set(&["good"]));
    for (outcome, n) in [
        ("malformed", 2.0),
        ("unsupported", 1.0),
        ("failed_call", 1.0),
        ("foreign_account", 1.0),
        ("own_change", 1.0),
        ("other_group", 1.0),
        ("handled", 1.0),
    ] {
        assert_eq!(
            metric(
                &d,
                &format!("forcemfa_events_total{{outcome=\"{outcome}\"}}")
            ),
            n,
            "{outcome}"
        );
    }
    assert_eq!(metric(&d, "forcemfa_events_received_total"), 8.0);
    let unusable = d.events("event message unusable; deleted");
    assert_eq!(unusable.len(), 4, "{}", d.stderr_text());
    assert!(unusable
        .iter()
        .any(|l| l["reason"].as_str().unwrap().contains("not JSON")));
    assert_eq!(d.stop().0, 0);
}

#[tokio::test]
async fn an_event_whose_user_cannot_be_read_is_delivered_again_and_then_handled() {
    let a = Account::with_group().await;
    a.user("flaky").await;
    let queue = Queue::create(&a.moto.endpoint, "forcemfa-events").await;
    let proxy = FaultProxy::start(&a.moto.endpoint);
    // Every attempt of the first reconciliation fails (two attempts per call).
    proxy.set_rules(vec![Rule::new(
        &["Action=ListMFADevices", "UserName=flaky"],
        Fault::ServerError,
    )
    .times(2)]);
    let mut d = events_daemon(
        &a,
        &proxy.endpoint,
        &queue,
        "[aws]\nmax_attempts = 2\nmax_backoff_secs = 1",
    );
    queue.send(&user_event("CreateUser", "flaky")).await;
    until(10, "the event left for redelivery", &d, || async {
        !d.events("event not handled; left on the queue for redelivery")
            .is_empty()
    })
    .await;
    assert!(
        a.members(GROUP).await.is_empty(),
        "a user whose state was unknown was changed"
    );
    assert_eq!(queue.len().await, 1, "the message was deleted");
    // After the visibility timeout (5 s) it comes back, and the user is read this time.
    until(20, "flaky added", &d, || async {
        a.members(GROUP).await.contains("flaky")
    })
    .await;
    until(10, "the queue drained", &d, || async {
        queue.len().await == 0
    })
    .await;
    assert_eq!(metric(&d, "forcemfa_events_received_total"), 2.0);
    assert_eq!(metric(&d, "forcemfa_events_total{outcome=\"retry\"}"), 1.0);
    assert_eq!(
        metric(&d, "forcemfa_events_total{outcome=\"handled\"}"),
        1.0
    );
    let retry = &d.events("event not handled; left on the queue for redelivery")[0];
    assert!(
        retry["reason"].as_str().unwrap().contains("flaky"),
        "{retry}"
    );
    assert_eq!(d.stop().0, 0);
}

#[tokio::test]
async fn a_burst_of_events_for_one_user_costs_one_reconciliation() {
    let a = Account::with_group().await;
    a.user("busy").await;
    let queue = Queue::create(&a.moto.endpoint, "forcemfa-events").await;
    for _ in 0..25 {
        queue.send(&user_event("TagUser", "busy")).await;
    }
    let mut d = events_daemon(&a, &a.moto.endpoint, &queue, "");
    until(10, "the queue drained", &d, || async {
        queue.len().await == 0
    })
    .await;
    assert_eq!(a.members(GROUP).await, set(&["busy"]));
    assert_eq!(
        metric(&d, "forcemfa_events_total{outcome=\"handled\"}"),
        25.0
    );
    // One read of the user for the whole burst: GetUser, ListGroupsForUser, ListMFADevices.
    for op in [
        "GetUser",
        "ListGroupsForUser",
        "ListMFADevices",
        "AddUserToGroup",
    ] {
        assert_eq!(
            metric(
                &d,
                &format!("forcemfa_api_calls_total{{account=\"123456789012\",operation=\"{op}\"}}")
            ),
            1.0,
            "{op}"
        );
    }
    assert_eq!(d.stop().0, 0);
}

#[tokio::test]
async fn an_unreadable_queue_is_reported_and_scheduled_runs_go_on() {
    let a = Account::with_group().await;
    a.user("carol").await;
    let mut d = Daemon::start(
        &a,
        &a.moto.endpoint,
        "schedule = \"0 0 1 1 *\"\nrun_on_start = false\n[events]\nqueue_url = \"http://127.0.0.1:1/123456789012/missing\"\nwait = \"1s\"\n",
    );
    until(15, "the queue failure logged", &d, || async {
        !d.events("cannot read the events queue; scheduled runs go on")
            .is_empty()
    })
    .await;
    let (status, ready) = d.get("/readyz");
    assert_eq!(status, 200);
    assert!(ready.contains("events queue: unreadable"), "{ready}");
    let (_, text) = d.get("/metrics");
    assert!(
        text.lines()
            .any(|l| l == "forcemfa_events_queue_up{queue=\"missing\"} 0"),
        "{text}"
    );
    let (status, _) = d.post("/reconcile", None);
    assert_eq!(status, 202);
    d.wait_runs(1, 20).await;
    assert_eq!(a.members(GROUP).await, set(&["carol"]));
    assert_eq!(d.stop().0, 0);
}

/// A full run reads carol without MFA and plans to add her; before it applies, she enrols a
/// device and her event is handled. The full run's older decision must not put her back in.
#[tokio::test]
async fn a_full_run_does_not_undo_a_newer_event_driven_decision() {
    let a = Account::with_group().await;
    a.user("carol").await;
    a.user("slow").await;
    let queue = Queue::create(&a.moto.endpoint, "forcemfa-events").await;
    let proxy = FaultProxy::start(&a.moto.endpoint);
    // The full run's read of `slow` takes 4 s: carol's event is handled meanwhile.
    proxy.set_rules(vec![Rule::new(
        &["Action=ListMFADevices", "UserName=slow"],
        Fault::Delay(4000),
    )]);
    let mut d = events_daemon(&a, &proxy.endpoint, &queue, "");
    let (status, _) = d.post("/reconcile", None);
    assert_eq!(status, 202);
    until(10, "the full run to start", &d, || async {
        !d.events("run started").is_empty()
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(1000)).await;
    a.existing("carol").virtual_mfa().await;
    queue.send(&user_event("EnableMFADevice", "carol")).await;
    until(10, "carol's event handled", &d, || async {
        !d.events("event handled").is_empty()
    })
    .await;
    d.wait_runs(1, 20).await;
    assert_eq!(
        a.members(GROUP).await,
        set(&["slow"]),
        "{}",
        d.stderr_text()
    );
    let left_out = d.events("membership change left out");
    assert_eq!(left_out.len(), 1, "{}", d.stderr_text());
    assert_eq!(left_out[0]["user"], "carol");
    assert_eq!(
        left_out[0]["reason"],
        "an event-driven reconciliation decided on this user after this run read it"
    );
    assert_eq!(d.stop().0, 0);
}

// ---- Review of the events feature: each test below failed before the fix committed with it. ----

/// A change forcemfa never makes (here CreateUser) is not its own change, even when its principal
/// made it: a principal shared with other automation, or anyone holding forcemfa's credentials,
/// would otherwise create users whose events are all skipped.
#[tokio::test]
async fn only_the_calls_forcemfa_makes_are_skipped_as_its_own() {
    let a = Account::with_group().await;
    a.user("sneaky").await;
    a.user("mine").await;
    let queue = Queue::create(&a.moto.endpoint, "forcemfa-events").await;
    let as_forcemfa = |name: &str, params: serde_json::Value| {
        let mut e: serde_json::Value =
            serde_json::from_str(&iam_event(ACCOUNT_ID, name, &params)).unwrap();
        // moto's answer to GetCallerIdentity for the test's credentials.
        e["detail"]["userIdentity"]["arn"] = "arn:aws:sts::123456789012:user/moto".into();
        e.to_string()
    };
    queue
        .send(&as_forcemfa(
            "CreateUser",
            serde_json::json!({ "userName": "sneaky" }),
        ))
        .await;
    queue
        .send(&as_forcemfa(
            "RemoveUserFromGroup",
            serde_json::json!({ "groupName": GROUP, "userName": "mine" }),
        ))
        .await;
    let mut d = events_daemon(&a, &a.moto.endpoint, &queue, "");
    until(10, "the queue drained", &d, || async {
        queue.len().await == 0
    })
    .await;
    assert_eq!(
        a.members(GROUP).await,
        set(&["sneaky"]),
        "{}",
        d.stderr_text()
    );
    assert_eq!(
        metric(&d, "forcemfa_events_total{outcome=\"own_change\"}"),
        1.0
    );
    assert_eq!(
        metric(&d, "forcemfa_events_total{outcome=\"handled\"}"),
        1.0
    );
    assert_eq!(d.stop().0, 0);
}

/// A ListGroupsForUser answer without its list would read as "in no group": for a member with
/// MFA that is "nothing to do", reported as a decision (and, in the daemon, a decision that makes
/// a full run leave out its removal). It must be a skip, like a ListMFADevices answer without its.
#[tokio::test]
async fn a_group_listing_without_its_list_is_a_skip_not_a_fact() {
    const NS: &str = r#"xmlns="https://iam.amazonaws.com/doc/2010-05-08/""#;
    let a = Account::with_group().await;
    a.user("alice")
        .await
        .virtual_mfa()
        .await
        .member_of(GROUP)
        .await;
    let proxy = FaultProxy::start(&a.moto.endpoint);
    proxy.set_rules(vec![Rule::new(
        &["Action=ListGroupsForUser", "UserName=alice"],
        Fault::Answer {
            status: 200,
            body: format!("<ListGroupsForUserResponse {NS}><ListGroupsForUserResult><IsTruncated>false</IsTruncated></ListGroupsForUserResult><ResponseMetadata><RequestId>r</RequestId></ResponseMetadata></ListGroupsForUserResponse>"),
        },
    )]);
    let config = a.config("[aws]\nmax_attempts = 1\n");
    let run = a.forcemfa_via(
        &proxy.endpoint,
        &[
            "reconcile",
            "--config",
            config.to_str().unwrap(),
            "--output",
            "json",
            "--user",
            "alice",
        ],
    );
    let acct = run.account();
    assert_eq!(run.code, 1, "{}\n{acct}", run.stderr);
    let skipped = acct["skipped"].as_array().unwrap();
    assert_eq!(skipped.len(), 1, "{acct}");
    assert!(
        skipped[0]["reason"]
            .as_str()
            .unwrap()
            .contains("ListGroupsForUser"),
        "{acct}"
    );
    assert_eq!(a.members(GROUP).await, set(&["alice"]));
}

/// Without `[events]` the service has no queue: `forcemfa_events_queue_up` must not be 0, or
/// ForceMFAEventsQueueUnreadable (`== 0 for 10m`) fires for every service without an events queue.
#[tokio::test]
async fn without_an_events_queue_the_queue_is_not_reported_down() {
    let a = Account::with_group().await;
    let mut d = Daemon::start(
        &a,
        &a.moto.endpoint,
        "schedule = \"0 0 1 1 *\"\nrun_on_start = false\n",
    );
    let (_, text) = d.get("/metrics");
    let down: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("forcemfa_events_queue_up") && l.ends_with(" 0"))
        .collect();
    assert!(down.is_empty(), "{down:?}");
    assert_eq!(d.stop().0, 0);
}

/// `events.batch_window` accepts up to 60 s, but SQS long-polls 20 s at most: a longer follow-up
/// receive was refused, the window ended at once, and a second event for the same user cost a
/// second reconciliation.
#[tokio::test]
async fn a_batch_window_longer_than_a_long_poll_still_gathers_the_burst() {
    let a = Account::with_group().await;
    a.user("busy").await;
    let queue = Queue::create(&a.moto.endpoint, "forcemfa-events").await;
    let mut d = Daemon::start(
        &a,
        &a.moto.endpoint,
        &format!(
            "schedule = \"0 0 1 1 *\"\nrun_on_start = false\n[events]\nqueue_url = \"{}\"\nwait = \"1s\"\nbatch_window = \"21s\"\nvisibility_timeout = \"60s\"\n",
            queue.url
        ),
    );
    // Let the daemon start polling, then send the burst 3 s apart.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    queue.send(&user_event("TagUser", "busy")).await;
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    queue.send(&user_event("TagUser", "busy")).await;
    until(40, "the queue drained", &d, || async {
        queue.len().await == 0
    })
    .await;
    until(10, "two events handled", &d, || async {
        metric(&d, "forcemfa_events_total{outcome=\"handled\"}") == 2.0
    })
    .await;
    assert_eq!(
        metric(
            &d,
            "forcemfa_api_calls_total{account=\"123456789012\",operation=\"GetUser\"}"
        ),
        1.0,
        "{}",
        d.stderr_text()
    );
    assert_eq!(d.stop().0, 0);
}

/// Events from an organization's member accounts, arriving on one queue, are reconciled through
/// each account's role; an excluded account's are foreign.
#[tokio::test]
async fn events_of_organization_accounts_use_each_accounts_role() {
    let a = Account::with_group().await;
    let members = a.organization(&["member-a", "member-b"]).await;
    for id in &members {
        let other = a.other(id).await;
        other.group(GROUP).await;
        other.user("newcomer").await;
    }
    let queue = Queue::create(&a.moto.endpoint, "forcemfa-events").await;
    let mut d = events_daemon(
        &a,
        &a.moto.endpoint,
        &queue,
        &format!(
            "[organization]\nrole_name = \"OrganizationAccountAccessRole\"\nexclude_accounts = [\"{}\"]\n",
            members[1]
        ),
    );
    for account in [&members[0], &members[1]] {
        queue
            .send(&iam_event(
                account,
                "CreateUser",
                &serde_json::json!({ "userName": "newcomer" }),
            ))
            .await;
    }
    until(15, "the queue drained", &d, || async {
        queue.len().await == 0
    })
    .await;
    assert_eq!(
        a.other(&members[0]).await.members(GROUP).await,
        set(&["newcomer"])
    );
    assert!(
        a.other(&members[1]).await.members(GROUP).await.is_empty(),
        "an excluded account was touched"
    );
    assert_eq!(
        metric(&d, "forcemfa_events_total{outcome=\"handled\"}"),
        1.0
    );
    assert_eq!(
        metric(&d, "forcemfa_events_total{outcome=\"foreign_account\"}"),
        1.0
    );
    let handled: Vec<_> = d
        .events("event handled")
        .into_iter()
        .filter(|e| e["outcome"] == "handled")
        .collect();
    assert_eq!(handled.len(), 1);
    assert_eq!(handled[0]["account_id"], members[0].as_str());
    assert_eq!(d.stop().0, 0);
}

#[tokio::test]
async fn an_event_is_never_acted_on_with_credentials_of_another_account() {
    let (a, proxy) = crate::support::role_answered_with_another_account().await;
    let queue = Queue::create(&a.moto.endpoint, "forcemfa-events").await;
    let d = events_daemon(
        &a,
        &proxy.endpoint,
        &queue,
        "[[accounts]]\nrole_arn = \"arn:aws:iam::222222222222:role/forcemfa\"\n",
    );
    queue
        .send(&iam_event(
            "222222222222",
            "CreateUser",
            &serde_json::json!({ "userName": "carol" }),
        ))
        .await;
    until(15, "the event left for redelivery", &d, || async {
        !d.events("event not handled; left on the queue for redelivery")
            .is_empty()
    })
    .await;
    let retry = &d.events("event not handled; left on the queue for redelivery")[0];
    assert!(
        retry["reason"].as_str().unwrap().contains("333333333333"),
        "{retry}"
    );
    for id in ["222222222222", "333333333333"] {
        assert!(
            a.other(id).await.members(GROUP).await.is_empty(),
            "{id} changed"
        );
    }
}

/// An SQS ReceiveMessage answer with every message's receipt handle taken out.
fn without_receipt_handles(answer: &str) -> String {
    let Ok(mut v) = serde_json::from_str::<serde_json::Value>(answer) else {
        return answer.to_string();
    };
    for m in v["Messages"].as_array_mut().into_iter().flatten() {
        if let Some(m) = m.as_object_mut() {
            m.remove("ReceiptHandle");
        }
    }
    v.to_string()
}

#[tokio::test]
async fn a_message_that_cannot_be_deleted_is_logged_with_its_id_and_counted() {
    let a = Account::with_group().await;
    a.user("carol").await;
    let queue = Queue::create(&a.moto.endpoint, "forcemfa-events").await;
    let proxy = FaultProxy::start(&a.moto.endpoint);
    proxy.set_rules(vec![Rule::new(
        &["MaxNumberOfMessages"],
        Fault::Rewrite(without_receipt_handles),
    )]);
    let d = events_daemon(&a, &proxy.endpoint, &queue, "");
    queue.send(&user_event("CreateUser", "carol")).await;
    until(10, "the message reported not deleted", &d, || async {
        !d.events("event message not deleted; it will be handled again")
            .is_empty()
    })
    .await;
    let handled = &d.events("event handled")[0];
    let lost = &d.events("event message not deleted; it will be handled again")[0];
    assert_eq!(lost["message_id"], handled["message_id"], "{lost}");
    assert!(
        lost["reason"].as_str().unwrap().contains("receipt handle"),
        "{lost}"
    );
    assert!(metric(&d, "forcemfa_events_delete_errors_total") >= 1.0);
    assert_eq!(a.members(GROUP).await, set(&["carol"]));
}

#[tokio::test]
async fn a_garbage_queue_answer_is_said_to_be_sqs_s() {
    let a = Account::with_group().await;
    let queue = Queue::create(&a.moto.endpoint, "forcemfa-events").await;
    let proxy = FaultProxy::start(&a.moto.endpoint);
    proxy.set_rules(vec![Rule::new(
        &["MaxNumberOfMessages"],
        Fault::Answer {
            status: 502,
            body: "<html><body>Bad Gateway</body></html>".to_string(),
        },
    )]);
    let d = events_daemon(&a, &proxy.endpoint, &queue, "[aws]\nmax_attempts = 1");
    until(10, "the queue reported unreadable", &d, || async {
        !d.events("cannot read the events queue; scheduled runs go on")
            .is_empty()
    })
    .await;
    let failure = &d.events("cannot read the events queue; scheduled runs go on")[0];
    let error = failure["error"].as_str().unwrap();
    assert!(error.contains("sqs:ReceiveMessage"), "{error}");
    assert!(error.contains("not SQS's"), "{error}");
    assert!(!error.contains("IAM"), "{error}");
}

#[tokio::test]
async fn events_are_acted_on_only_in_the_configured_account() {
    let a = Account::with_group().await;
    a.user("carol").await;
    let queue = Queue::create(&a.moto.endpoint, "forcemfa-events").await;
    // The credentials are 123456789012's; the configuration means 999999999999.
    let d = events_daemon(
        &a,
        &a.moto.endpoint,
        &queue,
        "account_id = \"999999999999\"",
    );
    for account in [ACCOUNT_ID, "999999999999"] {
        queue
            .send(&iam_event(
                account,
                "CreateUser",
                &serde_json::json!({ "userName": "carol" }),
            ))
            .await;
    }
    until(
        15,
        "the meant account's event left for redelivery",
        &d,
        || async {
            !d.events("event not handled; left on the queue for redelivery")
                .is_empty()
        },
    )
    .await;
    let retry = &d.events("event not handled; left on the queue for redelivery")[0];
    assert_eq!(retry["account_id"], "999999999999", "{retry}");
    assert!(
        retry["reason"].as_str().unwrap().contains(ACCOUNT_ID),
        "{retry}"
    );
    until(
        10,
        "the other account's event judged foreign",
        &d,
        || async { metric(&d, "forcemfa_events_total{outcome=\"foreign_account\"}") == 1.0 },
    )
    .await;
    assert!(a.members(GROUP).await.is_empty(), "a change was made");
}
