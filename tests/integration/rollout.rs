//! Rolling out: what each add takes away (access keys and their last use, console password),
//! deadlines before anyone is added, and users held while their keys are in use.

use aws_config::BehaviorVersion;
use aws_sdk_sts::config::{Credentials, Region};

use crate::support::proxy::{Fault, FaultProxy, Rule};
use crate::support::{audit_lines, names, set, skipped, Account};

const GROUP: &str = "ForceMFA";

/// An access key for `user`, and its id.
async fn access_key(a: &Account, user: &str) -> (String, String) {
    let out = a
        .iam
        .create_access_key()
        .user_name(user)
        .send()
        .await
        .expect("access key");
    let key = out.access_key().expect("key");
    (
        key.access_key_id().to_string(),
        key.secret_access_key().to_string(),
    )
}

/// Signs one STS call with `key`, as a script of the user's would: IAM records the key's use.
async fn use_key(a: &Account, key: &(String, String)) {
    let sts = aws_sdk_sts::Client::from_conf(
        aws_sdk_sts::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("eu-west-1"))
            .endpoint_url(&a.moto.endpoint)
            .credentials_provider(Credentials::new(&key.0, &key.1, None, None, "tests"))
            .build(),
    );
    sts.get_caller_identity()
        .send()
        .await
        .expect("a call signed with the key");
}

fn last4(id: &str) -> String {
    id[id.len() - 4..].to_string()
}

/// carol: a key in use; dave: a key never used; erin: a console password only; frank: nothing;
/// alice: MFA and a member (to be removed). Returns the key ids of carol and dave.
async fn rollout_account() -> (Account, String, String) {
    let a = Account::with_group().await;
    a.user("alice")
        .await
        .virtual_mfa()
        .await
        .member_of(GROUP)
        .await;
    a.user("carol").await;
    let carol_key = access_key(&a, "carol").await;
    use_key(&a, &carol_key).await;
    a.user("dave").await;
    let dave_key = access_key(&a, "dave").await;
    a.user("erin").await.console_password().await;
    a.user("frank").await;
    (a, carol_key.0, dave_key.0)
}

fn impact_of<'a>(acct: &'a serde_json::Value, user: &str) -> &'a serde_json::Value {
    acct["impact"]
        .as_array()
        .expect("impact array")
        .iter()
        .find(|i| i["user"] == user)
        .unwrap_or_else(|| panic!("no impact for {user}: {acct}"))
}

#[tokio::test]
async fn each_add_is_reported_with_what_it_takes_away() {
    let (a, carol_id, dave_id) = rollout_account().await;
    let (carol_key, dave_key) = (last4(&carol_id), last4(&dave_id));
    let run = a.forcemfa(&["reconcile", "--dry-run", "--output", "json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let acct = run.account();
    let carol = impact_of(&acct, "carol");
    assert_eq!(carol["verdict"], "keys_in_use", "{carol}");
    let key = &carol["active_keys"][0];
    assert_eq!(key["key"], carol_key.as_str());
    assert_eq!(key["service"], "sts", "{key}");
    assert_eq!(key["region"], "eu-west-1", "{key}");
    assert!(key["last_used"].is_string(), "{key}");
    assert!(
        carol["summary"]
            .as_str()
            .unwrap()
            .ends_with("by sts in eu-west-1: automation will stop"),
        "{carol}"
    );
    let dave = impact_of(&acct, "dave");
    assert_eq!(dave["verdict"], "keys_idle", "{dave}");
    assert_eq!(dave["active_keys"][0]["key"], dave_key.as_str());
    assert!(dave["active_keys"][0]["last_used"].is_null(), "{dave}");
    assert_eq!(impact_of(&acct, "erin")["verdict"], "console");
    assert_eq!(impact_of(&acct, "erin")["console_password"], true);
    assert_eq!(impact_of(&acct, "frank")["verdict"], "none");
    // No key id is shown whole.
    for text in [&run.stdout, &run.stderr] {
        assert!(!text.contains(&carol_id) && !text.contains(&dave_id));
    }
    // The text summary says it in a line a person reads.
    let text = a.forcemfa(&["reconcile", "--dry-run"]);
    assert!(
        text.stdout
            .contains(&format!("impact: carol — key …{carol_key} used")),
        "{}",
        text.stdout
    );
}

#[tokio::test]
async fn the_impact_goes_with_each_add_into_the_logs_and_the_audit_log() {
    let (a, carol_id, _) = rollout_account().await;
    let carol_key = last4(&carol_id);
    let audit = a.dir.path().join("audit.jsonl");
    let config = a.config(&format!("audit_log = {:?}\n", audit.to_str().unwrap()));
    let run = a.reconcile_json(&config);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        a.members(GROUP).await,
        set(&["carol", "dave", "erin", "frank"])
    );
    let lines = audit_lines(&audit);
    let carol_done = lines
        .iter()
        .find(|l| l["user"] == "carol" && l["outcome"] == "done")
        .expect("carol's add audited");
    assert!(
        carol_done["impact"]
            .as_str()
            .unwrap()
            .contains(&format!("key …{carol_key} used")),
        "{carol_done}"
    );
    let logged = run
        .log_lines()
        .into_iter()
        .find(|l| l["message"] == "membership change" && l["user"] == "carol")
        .expect("carol's change logged");
    assert_eq!(logged["impact"], "keys_in_use", "{logged}");
    // The removal carries no impact.
    let alice = lines.iter().find(|l| l["user"] == "alice").expect("alice");
    assert!(alice.get("impact").is_none(), "{alice}");
}

#[tokio::test]
async fn a_run_with_nothing_to_add_reads_no_impact() {
    let a = Account::with_group().await;
    a.user("alice")
        .await
        .virtual_mfa()
        .await
        .member_of(GROUP)
        .await;
    a.user("bob").await.member_of(GROUP).await;
    let key = access_key(&a, "bob").await;
    use_key(&a, &key).await;
    let run = a.forcemfa(&["reconcile", "--output", "json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let acct = run.account();
    assert_eq!(names(&acct["removed"]), ["alice"]);
    for op in [
        "ListAccessKeys",
        "GetAccessKeyLastUsed",
        "GetLoginProfile",
        "GetUser",
    ] {
        assert!(
            acct["api_calls"][op].is_null(),
            "{op}: {}",
            acct["api_calls"]
        );
    }
    assert_eq!(acct["impact"], serde_json::json!([]));
}

#[tokio::test]
async fn before_enforce_from_nobody_is_added_and_removals_go_on() {
    let (a, _, _) = rollout_account().await;
    let config = a.config("[rollout]\nenforce_from = \"2099-01-15T09:00:00Z\"\n");
    let run = a.reconcile_json(&config);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(a.members(GROUP).await, set(&[]));
    let acct = run.account();
    assert_eq!(names(&acct["removed"]), ["alice"]);
    assert_eq!(acct["added"], serde_json::json!([]));
    let pending: Vec<(String, String)> = acct["pending"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["user"].as_str().unwrap().to_string(),
                p["deadline"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let deadline = "2099-01-15T09:00:00Z".to_string();
    assert_eq!(
        pending,
        ["carol", "dave", "erin", "frank"]
            .iter()
            .map(|u| (u.to_string(), deadline.clone()))
            .collect::<Vec<_>>()
    );
    // Nobody is about to be added: no impact is read.
    assert!(
        acct["api_calls"]["ListAccessKeys"].is_null(),
        "{}",
        acct["api_calls"]
    );
    let text = a.forcemfa(&["reconcile", "--config", config.to_str().unwrap()]);
    assert!(
        text.stdout
            .contains("pending until 2099-01-15T09:00:00Z: carol"),
        "{}",
        text.stdout
    );
}

#[tokio::test]
async fn a_grace_period_holds_back_users_created_within_it() {
    let a = Account::with_group().await;
    a.user("newhire").await;
    let config = a.config("[rollout]\ngrace_period = \"1d\"\n");
    let run = a.reconcile_json(&config);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(a.members(GROUP).await, set(&[]));
    let acct = run.account();
    assert_eq!(acct["pending"][0]["user"], "newhire", "{acct}");
    // Its deadline is its creation plus the grace period, whoever computes it.
    let first = acct["pending"][0]["deadline"].clone();
    let again = a.reconcile_json(&config);
    assert_eq!(again.account()["pending"][0]["deadline"], first);
    let targeted = a.forcemfa(&[
        "reconcile",
        "--config",
        config.to_str().unwrap(),
        "--output",
        "json",
        "--user",
        "newhire",
    ]);
    assert_eq!(targeted.account()["pending"][0]["deadline"], first);

    // Once the grace period is over, the user is added.
    let short = a.config("[rollout]\ngrace_period = \"1s\"\n");
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let run = a.reconcile_json(&short);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(a.members(GROUP).await, set(&["newhire"]));
}

#[tokio::test]
async fn hold_keys_in_use_holds_exactly_the_users_whose_keys_are_in_use() {
    let (a, carol_id, _) = rollout_account().await;
    let carol_key = last4(&carol_id);
    // A member whose keys are in use is never removed for it, nor left out: it has no MFA.
    a.user("gina").await.member_of(GROUP).await;
    let gina_key = access_key(&a, "gina").await;
    use_key(&a, &gina_key).await;
    let config = a.config("[rollout]\nhold_keys_in_use = true\n");
    let run = a.reconcile_json(&config);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        a.members(GROUP).await,
        set(&["dave", "erin", "frank", "gina"])
    );
    let acct = run.account();
    assert_eq!(acct["held"].as_array().unwrap().len(), 1, "{acct}");
    assert_eq!(acct["held"][0]["user"], "carol");
    assert_eq!(acct["held"][0]["keys"][0]["key"], carol_key.as_str());
    assert!(names(&acct["added"]).iter().all(|u| u != "carol"));
    assert!(
        acct["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w.as_str().unwrap().contains("held out of the group")),
        "{acct}"
    );
}

#[tokio::test]
async fn a_role_that_may_not_read_console_passwords_still_adds_users_whose_keys_were_read() {
    let (a, _, _) = rollout_account().await;
    // The role lacks iam:GetLoginProfile: every such read is refused.
    let proxy = FaultProxy::start(&a.moto.endpoint);
    proxy.set_rules(vec![Rule::new(
        &["Action=GetLoginProfile"],
        Fault::AccessDenied,
    )]);
    let config = a.config("[rollout]\nhold_keys_in_use = true\n");
    let run = a.reconcile_json_via(&proxy.endpoint, &config);
    assert_eq!(run.code, 0, "{}", run.stderr);
    // Holding turns on the keys alone: carol's are in use; the others' were read, and are not.
    assert_eq!(a.members(GROUP).await, set(&["dave", "erin", "frank"]));
    let acct = run.account();
    assert_eq!(acct["held"][0]["user"], "carol", "{acct}");
    assert!(skipped(&acct).is_empty(), "{acct}");
    // The impact says which read failed.
    let frank = impact_of(&acct, "frank");
    assert!(frank["console_password"].is_null(), "{frank}");
    assert!(
        frank["error"]
            .as_str()
            .unwrap()
            .contains("iam:GetLoginProfile failed"),
        "{frank}"
    );
}

#[tokio::test]
async fn every_deadline_is_rfc3339_and_a_grace_period_past_its_bound_is_refused() {
    let a = Account::with_group().await;
    a.user("newhire").await;
    // The probe's grace period: refused, naming the key and its bound; nothing read or changed.
    let config = a.config("[rollout]\ngrace_period = \"3000000d\"\n");
    let run = a.reconcile_json(&config);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("rollout.grace_period") && run.stderr.contains("365d"),
        "{}",
        run.stderr
    );
    // The longest grace and the last enforce_from still make deadlines that are times.
    for rollout in [
        "grace_period = \"365d\"",
        "enforce_from = \"9999-12-31T23:59:59Z\"",
    ] {
        let config = a.config(&format!("[rollout]\n{rollout}\n"));
        let run = a.reconcile_json(&config);
        assert_eq!(run.code, 0, "{}", run.stderr);
        let deadline = run.account()["pending"][0]["deadline"].clone();
        let text = deadline
            .as_str()
            .unwrap_or_else(|| panic!("{rollout}: {deadline}"));
        assert!(
            time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
                .is_ok(),
            "{rollout}: {text}"
        );
    }
    assert_eq!(a.members(GROUP).await, set(&[]));
}
