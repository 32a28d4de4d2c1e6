//! A malformed, incomplete or endless IAM answer is never taken as a fact: the users it concerns
//! are skipped, a listing that cannot be read whole stops the account, and a write whose answer is
//! not its acknowledgement is a failed change. The fault proxy serves as a scriptable fake IAM
//! endpoint in front of a working account.

use std::time::{Duration, Instant};

use crate::support::proxy::{Fault, FaultProxy, Rule};
use crate::support::{names, pairs, set, skipped, Account};

const GROUP: &str = "ForceMFA";
const NS: &str = r#"xmlns="https://iam.amazonaws.com/doc/2010-05-08/""#;

fn answer(body: String) -> Fault {
    Fault::Answer { status: 200, body }
}

/// A ListMFADevices answer whose result element holds `result`.
fn list_mfa(result: &str) -> String {
    format!(
        "<ListMFADevicesResponse {NS}><ListMFADevicesResult>{result}</ListMFADevicesResult><ResponseMetadata><RequestId>r</RequestId></ResponseMetadata></ListMFADevicesResponse>"
    )
}

/// Rules that answer every ListMFADevices for `user` from `bodies`: the first page (no Marker),
/// and the page after Marker `M1`.
fn mfa_rules(user: &str, first: &str, after_m1: Option<&str>) -> Vec<Rule> {
    let who = format!("UserName={user}");
    let mut rules = vec![
        Rule::new(&["Action=ListMFADevices", &who], answer(first.to_string())).unless(&["Marker="]),
    ];
    if let Some(next) = after_m1 {
        rules.push(Rule::new(
            &["Action=ListMFADevices", &who, "Marker=M1"],
            answer(next.to_string()),
        ));
    }
    rules
}

#[tokio::test]
async fn a_broken_mfa_list_skips_the_user_instead_of_guessing() {
    let a = Account::with_group().await;
    // Has MFA and is out: a list read as empty would add it.
    a.user("has-mfa").await.hardware_mfa().await;
    // Has none and is in: a list read as holding a device would remove it.
    a.user("no-mfa").await.member_of(GROUP).await;
    // A control: converges as usual.
    a.user("plain").await;
    let proxy = FaultProxy::start(&a.moto.endpoint);
    let config = a.config("");

    let cut = format!("<ListMFADevicesResponse {NS}><ListMFADevicesResult><MFADevices>");
    let no_list = list_mfa("<IsTruncated>false</IsTruncated>");
    let empty_member =
        list_mfa("<MFADevices><member/></MFADevices><IsTruncated>false</IsTruncated>");
    let truncated_no_marker = list_mfa("<MFADevices/><IsTruncated>true</IsTruncated>");
    let repeats = list_mfa("<MFADevices/><IsTruncated>true</IsTruncated><Marker>M1</Marker>");
    let cases: Vec<(&str, String, Option<String>)> = vec![
        ("cut after <MFADevices>", cut, None),
        ("no list element", no_list, None),
        ("an empty <member/>", empty_member, None),
        ("IsTruncated without Marker", truncated_no_marker, None),
        ("a repeated Marker", repeats.clone(), Some(repeats)),
    ];
    for (case, first, next) in cases {
        let mut rules = mfa_rules("has-mfa", &first, next.as_deref());
        rules.extend(mfa_rules("no-mfa", &first, next.as_deref()));
        proxy.set_rules(rules);

        let run = a.reconcile_json_via(&proxy.endpoint, &config);
        assert_eq!(run.code, 1, "{case}: {}", run.stderr);
        assert_eq!(
            a.members(GROUP).await,
            set(&["no-mfa", "plain"]),
            "{case}: nobody with MFA added, nobody without removed"
        );
        let acct = run.account();
        assert!(acct["error"].is_null(), "{case}: {acct}");
        assert!(names(&acct["removed"]).is_empty(), "{case}: {acct}");
        assert!(
            !names(&acct["added"]).contains(&"has-mfa".to_string()),
            "{case}"
        );
        let skipped = skipped(&acct);
        assert_eq!(
            skipped.iter().map(|s| s.0.as_str()).collect::<Vec<_>>(),
            ["has-mfa", "no-mfa"],
            "{case}: {acct}"
        );
        for (user, reason) in &skipped {
            assert!(
                reason.contains("ListMFADevices"),
                "{case}: {user}: {reason}"
            );
        }
    }
}

/// The answer cut right after its first list member: between two users, or two devices.
fn cut_after_first_member(body: &str) -> String {
    let end = body.find("</member>").expect("a member") + "</member>".len();
    body[..end].to_string()
}

fn says_truncated_without_marker(body: &str) -> String {
    body.replace(
        "<IsTruncated>false</IsTruncated>",
        "<IsTruncated>true</IsTruncated>",
    )
}

/// The answer without its `element`.
fn without(body: &str, element: &str) -> String {
    let (open, close) = (format!("<{element}>"), format!("</{element}>"));
    let start = body.find(&open).expect("the element");
    let end = body.find(&close).expect("its end") + close.len();
    format!("{}{}", &body[..start], &body[end..])
}

fn without_group_list(body: &str) -> String {
    without(body, "GroupDetailList")
}

fn without_virtual_list(body: &str) -> String {
    without(body, "VirtualMFADevices")
}

#[tokio::test]
async fn a_listing_that_cannot_be_read_whole_stops_the_account() {
    let a = Account::with_group().await;
    a.user("alice")
        .await
        .virtual_mfa()
        .await
        .member_of(GROUP)
        .await;
    a.user("bob")
        .await
        .virtual_mfa()
        .await
        .member_of(GROUP)
        .await;
    a.user("carol").await;
    a.user("dave").await;
    let before = a.members(GROUP).await;
    let proxy = FaultProxy::start(&a.moto.endpoint);
    let config = a.config("");

    type Case = (&'static str, &'static str, fn(&str) -> String);
    let cases: Vec<Case> = vec![
        (
            "GetAccountAuthorizationDetails",
            "cut between two users",
            cut_after_first_member,
        ),
        (
            "GetAccountAuthorizationDetails",
            "IsTruncated without Marker",
            says_truncated_without_marker,
        ),
        (
            "GetAccountAuthorizationDetails",
            "no group element",
            without_group_list,
        ),
        (
            "ListVirtualMFADevices",
            "cut between two devices",
            cut_after_first_member,
        ),
        (
            "ListVirtualMFADevices",
            "IsTruncated without Marker",
            says_truncated_without_marker,
        ),
        (
            "ListVirtualMFADevices",
            "no list element",
            without_virtual_list,
        ),
    ];
    for (operation, case, rewrite) in cases {
        let action = format!("Action={operation}");
        proxy.set_rules(vec![Rule::new(&[&action], Fault::Rewrite(rewrite))]);
        let run = a.reconcile_json_via(&proxy.endpoint, &config);
        assert_eq!(run.code, 1, "{operation} {case}: {}", run.stderr);
        let acct = run.account();
        let error = acct["error"].as_str().unwrap_or_default();
        assert!(error.contains(operation), "{operation} {case}: {acct}");
        assert!(
            !error.contains("does not exist"),
            "{operation} {case}: not a missing group: {error}"
        );
        assert!(names(&acct["added"]).is_empty(), "{operation} {case}");
        assert!(names(&acct["removed"]).is_empty(), "{operation} {case}");
        assert_eq!(a.members(GROUP).await, before, "{operation} {case}");
    }

    // The same account, answered whole, converges.
    proxy.set_rules(vec![]);
    let run = a.reconcile_json_via(&proxy.endpoint, &config);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(a.members(GROUP).await, set(&["carol", "dave"]));
}

/// One GetAccountAuthorizationDetails page holding `user`, pointing on to `marker`.
fn details_page(user: &str, marker: &str) -> String {
    format!(
        "<GetAccountAuthorizationDetailsResponse {NS}><GetAccountAuthorizationDetailsResult><UserDetailList><member><Path>/</Path><UserName>{user}</UserName><UserId>AID{user}</UserId><Arn>arn:aws:iam::123456789012:user/{user}</Arn><CreateDate>2026-01-01T00:00:00Z</CreateDate><GroupList/></member></UserDetailList><GroupDetailList/><RoleDetailList/><Policies/><IsTruncated>true</IsTruncated><Marker>{marker}</Marker></GetAccountAuthorizationDetailsResult><ResponseMetadata><RequestId>r</RequestId></ResponseMetadata></GetAccountAuthorizationDetailsResponse>"
    )
}

#[tokio::test]
async fn pagination_that_cycles_fails_the_account_at_once() {
    let a = Account::with_group().await;
    a.user("carol").await;
    let proxy = FaultProxy::start(&a.moto.endpoint);
    let op = "Action=GetAccountAuthorizationDetails";
    // Marker A, B, A, ...
    proxy.set_rules(vec![
        Rule::new(&[op], answer(details_page("u1", "A"))).unless(&["Marker="]),
        Rule::new(&[op, "Marker=A"], answer(details_page("u2", "B"))),
        Rule::new(&[op, "Marker=B"], answer(details_page("u3", "A"))),
    ]);
    let config = a.config("");
    let started = Instant::now();
    let run = a.reconcile_json_via(&proxy.endpoint, &config);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(started.elapsed() < Duration::from_secs(20));
    let error = run.account()["error"].as_str().unwrap().to_string();
    assert!(error.contains("GetAccountAuthorizationDetails"), "{error}");
    assert!(error.contains("cycles"), "{error}");
    assert_eq!(proxy.requests_with(&[op]), 3, "stopped at the first repeat");
    assert!(a.members(GROUP).await.is_empty());

    // A listing that repeats its own marker.
    let op = "Action=ListVirtualMFADevices";
    let page = format!(
        "<ListVirtualMFADevicesResponse {NS}><ListVirtualMFADevicesResult><VirtualMFADevices/><IsTruncated>true</IsTruncated><Marker>Z</Marker></ListVirtualMFADevicesResult><ResponseMetadata><RequestId>r</RequestId></ResponseMetadata></ListVirtualMFADevicesResponse>"
    );
    proxy.set_rules(vec![Rule::new(&[op], answer(page))]);
    let before = proxy.requests_with(&[op]);
    let run = a.reconcile_json_via(&proxy.endpoint, &config);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let error = run.account()["error"].as_str().unwrap().to_string();
    assert!(error.contains("ListVirtualMFADevices"), "{error}");
    assert_eq!(proxy.requests_with(&[op]) - before, 2);
    assert!(a.members(GROUP).await.is_empty());
}

#[tokio::test]
async fn a_write_answered_with_something_else_is_never_believed_done() {
    let a = Account::with_group().await;
    a.user("carol").await;
    a.user("alice")
        .await
        .virtual_mfa()
        .await
        .member_of(GROUP)
        .await;
    let log = a.dir.path().join("audit.jsonl");
    // An abandoned device, first seen unassigned a day ago: due for deletion.
    let state = a.dir.path().join("state.json");
    std::fs::write(
        &state,
        r#"{"first_seen":{"arn:aws:iam::123456789012:mfa/abandoned":1}}"#,
    )
    .unwrap();
    let config = a.config(&format!(
        "audit_log = \"{}\"\n[cleanup]\nunassigned_mfa_devices = true\nunassigned_min_age = \"1h\"\nstate_file = \"{}\"\n",
        log.display(),
        state.display()
    ));
    let error_envelope = format!(
        "<ErrorResponse {NS}><Error><Type>Sender</Type><Code>LimitExceeded</Code><Message>no</Message></Error><RequestId>r</RequestId></ErrorResponse>"
    );
    let not_its_answer = format!(
        "<AddUserToGroupResponse {NS}><ResponseMetadata><RequestId>r</RequestId></ResponseMetadata></AddUserToGroupResponse>"
    );
    let proxy = FaultProxy::start(&a.moto.endpoint);
    proxy.set_rules(vec![
        Rule::new(&["Action=AddUserToGroup"], answer(error_envelope.clone())),
        Rule::new(&["Action=RemoveUserFromGroup"], answer(not_its_answer)),
        Rule::new(
            &["Action=DeleteVirtualMFADevice"],
            answer("<html><body>gateway</body></html>".to_string()),
        ),
    ]);
    a.iam
        .create_virtual_mfa_device()
        .virtual_mfa_device_name("abandoned")
        .send()
        .await
        .unwrap();

    let run = a.reconcile_json_via(&proxy.endpoint, &config);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let acct = run.account();
    assert!(names(&acct["added"]).is_empty(), "{acct}");
    assert!(names(&acct["removed"]).is_empty(), "{acct}");
    assert!(names(&acct["deleted_mfa_devices"]).is_empty(), "{acct}");
    let failed = pairs(&acct["failed"], "user", "reason");
    // IAM's own error envelope is its "no"; a read confirms nothing was made.
    assert_eq!(failed.len(), 1, "{acct}");
    assert_eq!(failed[0].0, "carol");
    assert!(failed[0].1.contains("AddUserToGroup"), "{}", failed[0].1);
    assert!(failed[0].1.contains("LimitExceeded"), "{}", failed[0].1);
    // Another operation's answer, or a gateway's page, is no "no" from IAM: the read does not
    // show the change, but IAM may yet make it; the next run settles it.
    let unknown = pairs(&acct["unknown"], "action", "reason");
    assert_eq!(unknown.len(), 2, "{acct}");
    assert_eq!(unknown[0].0, "remove", "{acct}");
    assert!(
        unknown[0].1.contains("RemoveUserFromGroup"),
        "{}",
        unknown[0].1
    );
    assert_eq!(unknown[1].0, "delete_mfa_device", "{acct}");
    assert!(
        unknown[1].1.contains("DeleteVirtualMFADevice"),
        "{}",
        unknown[1].1
    );

    // The audit log shows each change as attempted, none as done.
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(lines.iter().all(|l| l["outcome"] != "done"), "{lines:?}");
    let count = |outcome: &str| lines.iter().filter(|l| l["outcome"] == outcome).count();
    assert_eq!(count("failed"), 1, "{lines:?}");
    assert_eq!(count("unknown"), 2, "{lines:?}");
}
