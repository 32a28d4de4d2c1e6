//! Many accounts: listed roles, an organization, one account failing alone; and the call budget.

use crate::support::proxy::{Fault, FaultProxy, Rule};
use crate::support::{names, set, Account, ACCOUNT_ID};

const GROUP: &str = "ForceMFA";

fn by_account(report: &serde_json::Value) -> Vec<(String, serde_json::Value)> {
    report["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["account_id"].as_str().unwrap_or("?").to_string(),
                a.clone(),
            )
        })
        .collect()
}

#[tokio::test]
async fn listed_accounts_are_reconciled_in_one_run() {
    let a = Account::empty();
    for id in ["222222222222", "333333333333"] {
        let other = a.other(id).await;
        other.group(GROUP).await;
        other.user(&format!("user-{id}")).await;
    }
    let config = a.config(
        r#"
        [[accounts]]
        role_arn = "arn:aws:iam::222222222222:role/forcemfa"
        name = "prod"
        [[accounts]]
        role_arn = "arn:aws:iam::333333333333:role/forcemfa"
        external_id = "forcemfa-test"
        "#,
    );
    let run = a.reconcile_json(&config);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let accounts = by_account(&run.report());
    assert_eq!(accounts.len(), 2);
    assert_eq!(accounts[0].0, "222222222222");
    assert_eq!(accounts[0].1["name"], "prod");
    assert_eq!(names(&accounts[0].1["added"]), ["user-222222222222"]);
    assert_eq!(names(&accounts[1].1["added"]), ["user-333333333333"]);
    for id in ["222222222222", "333333333333"] {
        let other = a.other(id).await;
        assert_eq!(other.members(GROUP).await, set(&[&format!("user-{id}")]));
    }
}

#[tokio::test]
async fn an_account_whose_role_cannot_be_assumed_fails_alone() {
    let a = Account::empty();
    for id in ["222222222222", "333333333333"] {
        let other = a.other(id).await;
        other.group(GROUP).await;
        other.user("carol").await;
    }
    let proxy = FaultProxy::start(&a.moto.endpoint);
    proxy.set_rules(vec![Rule::new(
        &["Action=AssumeRole", "444444444444"],
        Fault::AccessDenied,
    )]);
    let config = a.config(
        r#"
        [[accounts]]
        role_arn = "arn:aws:iam::222222222222:role/forcemfa"
        [[accounts]]
        role_arn = "arn:aws:iam::444444444444:role/forcemfa"
        [[accounts]]
        role_arn = "arn:aws:iam::333333333333:role/forcemfa"
        "#,
    );
    let run = a.reconcile_json_via(&proxy.endpoint, &config);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let accounts = by_account(&run.report());
    assert_eq!(accounts.len(), 3);
    for (id, acct) in &accounts {
        if id == "444444444444" {
            let error = acct["error"].as_str().expect("an error");
            assert!(error.contains("AccessDenied"), "{error}");
        } else {
            assert!(acct["error"].is_null(), "{acct}");
            assert_eq!(names(&acct["added"]), ["carol"]);
        }
    }
    for id in ["222222222222", "333333333333"] {
        assert_eq!(a.other(id).await.members(GROUP).await, set(&["carol"]));
    }
}

#[tokio::test]
async fn every_active_account_of_the_organization_is_discovered() {
    let a = Account::with_group().await;
    a.user("mgmt-user").await;
    let members = a.organization(&["member-a", "member-b"]).await;
    for (name, id) in ["member-a", "member-b"].iter().zip(&members) {
        let other = a.other(id).await;
        other.group(GROUP).await;
        other.user(&format!("{name}-user")).await;
    }
    let config = a.config(&format!(
        "[organization]\nrole_name = \"OrganizationAccountAccessRole\"\nexclude_accounts = [\"{}\"]\n",
        members[1]
    ));

    let run = a.reconcile_json(&config);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let report = run.report();
    let accounts = by_account(&report);
    let ids: Vec<&str> = accounts.iter().map(|(id, _)| id.as_str()).collect();
    let mut expected = vec![ACCOUNT_ID, members[0].as_str()];
    expected.sort();
    assert_eq!(ids, expected);
    assert_eq!(report["discovery_api_calls"]["ListAccounts"], 1);
    assert_eq!(
        a.other(&members[0]).await.members(GROUP).await,
        set(&["member-a-user"])
    );
    assert!(
        a.other(&members[1]).await.members(GROUP).await.is_empty(),
        "excluded account touched"
    );
}

/// The call budget of a small steady-state account, by operation: a regression in efficiency
/// fails here.
#[tokio::test]
async fn steady_state_costs_the_lower_bound_of_calls() {
    let a = Account::with_group().await;
    for i in 0..7 {
        a.user(&format!("phone{i}")).await.virtual_mfa().await;
    }
    a.user("token").await.hardware_mfa().await;
    a.user("none1").await.member_of(GROUP).await;
    a.user("none2").await.member_of(GROUP).await;

    let run = a.forcemfa(&["reconcile", "--dry-run", "--output", "json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let acct = run.account();
    assert_eq!(acct["planned_changes"], 0);
    let calls: std::collections::BTreeMap<String, u64> =
        serde_json::from_value(acct["api_calls"].clone()).unwrap();
    let expected: std::collections::BTreeMap<String, u64> = [
        ("GetCallerIdentity", 1),
        ("GetAccountAuthorizationDetails", 1),
        ("ListVirtualMFADevices", 1),
        ("GetAccountSummary", 1),
        // Only the users not known from the virtual device list: the token and the two without.
        ("ListMFADevices", 3),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(calls, expected);
}

#[tokio::test]
async fn credentials_of_another_account_than_the_role_s_change_nothing_in_either() {
    let (a, proxy) = crate::support::role_answered_with_another_account().await;
    let config = a.config(
        "[[accounts]]\nrole_arn = \"arn:aws:iam::222222222222:role/forcemfa\"\nname = \"prod\"\n",
    );
    let metrics = a.dir.path().join("forcemfa.prom");
    let config = config.to_str().unwrap();
    let run = a.forcemfa_via(
        &proxy.endpoint,
        &[
            "reconcile",
            "--config",
            config,
            "--output",
            "json",
            "--metrics-file",
            metrics.to_str().unwrap(),
        ],
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    let accounts = by_account(&run.report());
    assert_eq!(accounts.len(), 1);
    let (id, acct) = &accounts[0];
    assert_eq!(id, "222222222222");
    assert_eq!(acct["error_kind"], "account_mismatch", "{acct}");
    let error = acct["error"].as_str().unwrap();
    assert!(
        error.contains("333333333333") && error.contains("role/forcemfa"),
        "{error}"
    );
    assert!(names(&acct["added"]).is_empty(), "{acct}");
    // Nothing but the identity was asked with those credentials.
    assert_eq!(
        acct["api_calls"],
        serde_json::json!({"GetCallerIdentity": 1}),
        "{acct}"
    );
    let text = std::fs::read_to_string(&metrics).unwrap();
    assert!(
        text.contains("kind=\"account_mismatch\""),
        "the metric label: {text}"
    );
    for id in ["222222222222", "333333333333"] {
        assert!(
            a.other(id).await.members(GROUP).await.is_empty(),
            "{id} changed"
        );
    }
}

#[tokio::test]
async fn the_own_credentials_must_belong_to_the_configured_account() {
    let a = Account::with_group().await;
    a.user("carol").await;
    let config = a.config("account_id = \"999999999999\"\n");
    let config = config.to_str().unwrap();
    let run = a.forcemfa(&["reconcile", "--config", config, "--output", "json"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let acct = run.account();
    assert_eq!(acct["account_id"], "999999999999", "{acct}");
    assert_eq!(acct["error_kind"], "account_mismatch", "{acct}");
    assert!(a.members(GROUP).await.is_empty());

    let run = a.forcemfa(&["bootstrap", "--config", config]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("account_mismatch"), "{}", run.stderr);

    // The right account, given as a number as an environment variable gives it.
    let run = a.forcemfa_with(
        &["reconcile", "--output", "json"],
        &[("FORCEMFA__ACCOUNT_ID", ACCOUNT_ID)],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(a.members(GROUP).await, set(&["carol"]));
}

#[tokio::test]
async fn another_organization_is_not_listed_when_the_management_account_is_not_the_one_meant() {
    let a = Account::with_group().await;
    let members = a.organization(&["member-a"]).await;
    let other = a.other(&members[0]).await;
    other.group(GROUP).await;
    other.user("member-a-user").await;
    let config = a.config(
        "account_id = \"999999999999\"\n[organization]\nrole_name = \"OrganizationAccountAccessRole\"\n",
    );
    let run = a.reconcile_json(&config);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let report = run.report();
    let error = report["error"].as_str().unwrap();
    assert!(
        error.contains("account_mismatch") && error.contains("999999999999"),
        "{error}"
    );
    assert!(
        report["accounts"].as_array().unwrap().is_empty(),
        "{report}"
    );
    assert!(report["discovery_api_calls"].get("ListAccounts").is_none());
    assert!(other.members(GROUP).await.is_empty());
}
