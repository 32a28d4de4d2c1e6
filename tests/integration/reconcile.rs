//! `forcemfa reconcile` against a seeded account: what lands in the group, what the report and the
//! logs say.

use crate::support::{names, run, set, with_file_size_limit, Account, ACCOUNT_ID};

const GROUP: &str = "ForceMFA";

/// Mutating calls in a report's `api_calls`.
fn writes(account: &serde_json::Value) -> u64 {
    ["AddUserToGroup", "RemoveUserFromGroup"]
        .iter()
        .map(|op| account["api_calls"][op].as_u64().unwrap_or(0))
        .sum()
}

/// alice: virtual MFA, member (remove); bob: hardware MFA, member (remove); carol: no MFA (add);
/// dave: no MFA, member (stays); erin: virtual MFA, not a member (stays out).
async fn mixed_account() -> Account {
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
    a.user("dave").await.member_of(GROUP).await;
    a.user("erin").await.virtual_mfa().await;
    a
}

#[tokio::test]
async fn every_kind_of_mfa_counts_and_the_group_converges() {
    let a = mixed_account().await;

    let run = a.forcemfa(&["reconcile", "--output", "json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(a.members(GROUP).await, set(&["carol", "dave"]));

    let acct = run.account();
    assert_eq!(acct["account_id"], ACCOUNT_ID);
    assert_eq!(acct["group"], GROUP);
    assert_eq!(acct["users_scanned"], 5);
    assert_eq!(names(&acct["added"]), ["carol"]);
    assert_eq!(names(&acct["removed"]), ["alice", "bob"]);
    assert_eq!(acct["skipped"].as_array().unwrap().len(), 0);
    assert!(acct["error"].is_null());
    assert_eq!(acct["applied"], true);
    assert_eq!(acct["users_with_mfa"], 3);
    assert_eq!(acct["users_without_mfa"], 2);
    assert_eq!(writes(&acct), 3);
    let report = run.report();
    assert_eq!(report["dry_run"], false);
    for key in ["run_id", "started_at", "finished_at"] {
        assert!(report[key].as_str().is_some_and(|s| !s.is_empty()), "{key}");
    }
}

#[tokio::test]
async fn second_run_has_nothing_to_do() {
    let a = mixed_account().await;
    assert_eq!(a.forcemfa(&["reconcile"]).code, 0);

    let run = a.forcemfa(&["reconcile", "--output", "json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let acct = run.account();
    assert!(names(&acct["added"]).is_empty());
    assert!(names(&acct["removed"]).is_empty());
    assert_eq!(writes(&acct), 0);
    assert_eq!(a.members(GROUP).await, set(&["carol", "dave"]));

    let text = a.forcemfa(&["reconcile"]);
    assert!(text.stdout.contains("nothing to change"), "{}", text.stdout);
}

#[tokio::test]
async fn dry_run_plans_the_same_and_changes_nothing() {
    let a = mixed_account().await;
    let before = a.members(GROUP).await;

    let run = a.forcemfa(&["reconcile", "--dry-run", "--output", "json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(a.members(GROUP).await, before);
    let acct = run.account();
    assert_eq!(run.report()["dry_run"], true);
    assert_eq!(acct["applied"], false);
    assert_eq!(names(&acct["added"]), ["carol"]);
    assert_eq!(names(&acct["removed"]), ["alice", "bob"]);
    assert_eq!(writes(&acct), 0, "{}", acct["api_calls"]);

    // The same from the file.
    let config = a.config("dry_run = true\n");
    let run = a.forcemfa(&["reconcile", "--config", config.to_str().unwrap()]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("dry run"), "{}", run.stdout);
    assert!(
        run.stdout.contains("would add (1): carol"),
        "{}",
        run.stdout
    );
    assert_eq!(a.members(GROUP).await, before);
}

#[tokio::test]
async fn exempt_users_are_never_touched() {
    let a = Account::with_group().await;
    a.user("breakglass").await; // listed, no MFA, not a member
    a.user("listed-member")
        .await
        .virtual_mfa()
        .await
        .member_of(GROUP)
        .await;
    a.user_at("ci-deployer", "/automation/ci/", &[]).await; // path
    a.user_at("svc-backup", "/", &[("forcemfa", "exempt")])
        .await
        .member_of(GROUP)
        .await;
    a.user_at("svc-other", "/", &[("forcemfa", "enforce")])
        .await; // wrong value: enforced
    a.user_at("staffer", "/staff/automation/", &[]).await; // prefix, not substring
    let config = a.config(
        r#"
        [exempt]
        users = ["breakglass", "listed-member"]
        path_prefixes = ["/automation/"]
        tags = { "forcemfa" = "exempt" }
        "#,
    );

    let run = a.reconcile_json(&config);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        a.members(GROUP).await,
        set(&["listed-member", "staffer", "svc-backup", "svc-other"])
    );
    let acct = run.account();
    assert_eq!(
        names(&acct["exempt"]),
        ["breakglass", "ci-deployer", "listed-member", "svc-backup"]
    );
    assert_eq!(names(&acct["added"]), ["staffer", "svc-other"]);
    assert!(names(&acct["removed"]).is_empty());
}

#[tokio::test]
async fn exempt_names_match_as_iam_does_and_unmatched_ones_are_warned_about() {
    let a = Account::with_group().await;
    a.user("BreakGlass").await; // no MFA, not a member
    a.user("carol").await;
    let config = a.config("[exempt]\nusers = [\"breakglass\", \"ghost\"]\n");

    let run = a.reconcile_json(&config);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(a.members(GROUP).await, set(&["carol"]));
    let acct = run.account();
    assert_eq!(names(&acct["exempt"]), ["BreakGlass"]);
    let warnings = names(&acct["warnings"]);
    assert!(
        warnings.iter().any(|w| w.contains("`ghost`")),
        "{warnings:?}"
    );
    assert!(
        !warnings.iter().any(|w| w.contains("breakglass")),
        "{warnings:?}"
    );
    assert!(
        run.log_lines().iter().any(|l| l["level"] == "WARN"
            && l["message"].as_str().is_some_and(|m| m.contains("`ghost`"))),
        "{}",
        run.stderr
    );
}

#[tokio::test]
async fn console_users_only_leaves_api_only_users_out() {
    let a = Account::with_group().await;
    a.user("person").await.console_password().await;
    a.user("api-only").await;
    a.user("api-member").await.member_of(GROUP).await;
    a.user("fixed")
        .await
        .hardware_mfa()
        .await
        .member_of(GROUP)
        .await;
    let config = a.config("console_users_only = true\n");

    let run = a.reconcile_json(&config);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(a.members(GROUP).await, set(&["api-member", "person"]));
    let acct = run.account();
    assert_eq!(names(&acct["added"]), ["person"]);
    assert_eq!(names(&acct["removed"]), ["fixed"]);
    assert_eq!(names(&acct["out_of_scope"]), ["api-only"]);
    // Login profiles are read only for users that would be added.
    assert_eq!(
        acct["api_calls"]["GetLoginProfile"], 2,
        "{}",
        acct["api_calls"]
    );
}

#[tokio::test]
async fn own_identity_is_never_added() {
    let mut a = Account::with_group().await;
    a.user("forcemfa-bot").await;
    a.user("carol").await;
    a.sign_as("forcemfa-bot").await;

    let run = a.forcemfa(&["reconcile", "--output", "json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(a.members(GROUP).await, set(&["carol"]));
    let acct = run.account();
    assert_eq!(acct["own_user"], "forcemfa-bot");
    assert_eq!(names(&acct["added"]), ["carol"]);
}

#[tokio::test]
async fn every_page_is_read() {
    let a = Account::with_group().await;
    let mut expected = Vec::new();
    for i in 0..23 {
        let u = a.user(&format!("phone{i:02}")).await.virtual_mfa().await;
        if i % 2 == 0 {
            u.member_of(GROUP).await;
        }
    }
    for i in 0..12 {
        let name = format!("nomfa{i:02}");
        let u = a.user(&name).await;
        if i % 3 == 0 {
            u.member_of(GROUP).await;
        }
        expected.push(name);
    }
    let config = a.config("[aws]\npage_size = 5\n");

    let run = a.reconcile_json(&config);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let expected: Vec<&str> = expected.iter().map(String::as_str).collect();
    assert_eq!(a.members(GROUP).await, set(&expected));
    let acct = run.account();
    assert_eq!(acct["users_scanned"], 35);
    assert_eq!(names(&acct["removed"]).len(), 12);
    // 23 virtual devices in pages of 5.
    assert!(
        acct["api_calls"]["ListVirtualMFADevices"].as_u64().unwrap() >= 5,
        "{}",
        acct["api_calls"]
    );
    // Only users not known from the virtual device list are asked for their devices.
    assert_eq!(
        acct["api_calls"]["ListMFADevices"], 12,
        "{}",
        acct["api_calls"]
    );
}

#[tokio::test]
async fn missing_group_is_an_error_naming_it() {
    let a = Account::empty();
    a.user("carol").await;
    let run = a.forcemfa(&["reconcile", "--output", "json"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let acct = run.account();
    let error = acct["error"].as_str().expect("an error");
    assert!(error.contains("ForceMFA"), "{error}");
    assert_eq!(writes(&acct), 0);
    assert!(run.stderr.contains("ForceMFA"), "{}", run.stderr);
}

#[tokio::test]
async fn the_guard_stops_large_plans_whole() {
    let a = Account::with_group().await;
    for name in ["u1", "u2", "u3"] {
        a.user(name).await;
    }
    let config = a.config("max_changes = 2\n");
    let path = config.to_str().unwrap();

    let run = a.forcemfa(&["reconcile", "--config", path, "--output", "json"]);
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(a.members(GROUP).await.is_empty());
    let acct = run.account();
    assert_eq!(acct["guard_tripped"], true);
    assert_eq!(acct["applied"], false);
    assert_eq!(acct["planned_changes"], 3);
    assert!(acct["error"].as_str().unwrap().contains("max_changes"));
    assert_eq!(writes(&acct), 0);
    assert!(run.stderr.contains("max_changes"));

    // The flag overrides the file, both ways.
    let run = a.forcemfa(&["reconcile", "--config", path, "--max-changes", "3"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(a.members(GROUP).await, set(&["u1", "u2", "u3"]));
}

#[tokio::test]
async fn logs_are_json_with_one_event_per_change_and_a_summary() {
    let a = mixed_account().await;
    let run = a.forcemfa(&["reconcile"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let lines = run.log_lines();

    let changes: Vec<_> = lines
        .iter()
        .filter(|l| l["message"] == "membership change")
        .collect();
    assert_eq!(changes.len(), 3, "{}", run.stderr);
    let carol = changes
        .iter()
        .find(|l| l["user"] == "carol")
        .expect("an event for carol");
    assert_eq!(carol["action"], "add");
    assert_eq!(carol["account_id"], ACCOUNT_ID);
    assert_eq!(carol["dry_run"], false);
    assert_eq!(carol["outcome"], "done");

    let summary: Vec<_> = lines
        .iter()
        .filter(|l| l["message"] == "run finished")
        .collect();
    assert_eq!(summary.len(), 1, "{}", run.stderr);
    assert_eq!(summary[0]["added"], 1);
    assert_eq!(summary[0]["removed"], 2);
    assert!(summary[0]["duration_ms"].is_u64());
}

#[tokio::test]
async fn unreachable_endpoint_fails_quickly_and_clearly() {
    let a = Account::with_group().await;
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let config = a.config("[aws]\nmax_attempts = 2\nconnect_timeout_secs = 2\n");
    let started = std::time::Instant::now();
    let run = a.forcemfa_with(
        &[
            "reconcile",
            "--config",
            config.to_str().unwrap(),
            "--output",
            "json",
        ],
        &[("AWS_ENDPOINT_URL", &format!("http://127.0.0.1:{closed}"))],
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(started.elapsed().as_secs() < 30);
    let error = run.account()["error"].as_str().unwrap().to_string();
    assert!(error.contains("GetCallerIdentity"), "{error}");
}

/// The files in `dir`, by name.
fn files_in(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read the directory")
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn metrics_file_holds_the_runs_metrics_for_the_textfile_collector() {
    let a = mixed_account().await;
    let dir = a.dir.path().join("textfile");
    std::fs::create_dir(&dir).unwrap();
    let path = dir.join("forcemfa.prom");
    let file = path.to_str().unwrap();

    let run = a.forcemfa(&["reconcile", "--metrics-file", file]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let text = std::fs::read_to_string(&path).expect("the metrics file");
    for line in [
        "# TYPE forcemfa_runs_total counter",
        "forcemfa_runs_total{result=\"success\"} 1",
        &format!("forcemfa_users{{account=\"{ACCOUNT_ID}\",state=\"compliant\"}} 3"),
        &format!("forcemfa_changes_total{{account=\"{ACCOUNT_ID}\",action=\"remove\"}} 2"),
    ] {
        assert!(text.lines().any(|l| l == line), "no `{line}` in:\n{text}");
    }
    assert!(
        text.contains("forcemfa_last_success_timestamp_seconds "),
        "{text}"
    );
    assert!(
        !text.contains("# EOF"),
        "Prometheus text, not OpenMetrics:\n{text}"
    );
    // Only the file itself: the temporary one was renamed over it.
    assert_eq!(files_in(&dir), ["forcemfa.prom"]);

    // The next run replaces it whole.
    let run = a.forcemfa(&["reconcile", "--metrics-file", file]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        text.lines()
            .any(|l| l.starts_with("forcemfa_changes_total") && l.ends_with(" 0")),
        "{text}"
    );
    assert!(!text.contains("action=\"remove\"} 2"), "{text}");
    assert_eq!(files_in(&dir), ["forcemfa.prom"]);
}

/// A report-only first step of a rollout is watched through the textfile collector: a dry run
/// writes its metrics file, and nothing else.
#[tokio::test]
async fn a_dry_run_writes_its_metrics_file_and_nothing_else() {
    let a = mixed_account().await;
    let before = a.members(GROUP).await;
    let dir = a.dir.path().join("textfile");
    std::fs::create_dir(&dir).unwrap();
    let path = dir.join("forcemfa.prom");
    let audit = a.dir.path().join("audit.jsonl");
    let config = a.config(&format!("audit_log = {:?}\n", audit.to_str().unwrap()));
    let run = a.forcemfa(&[
        "reconcile",
        "--dry-run",
        "--config",
        config.to_str().unwrap(),
        "--metrics-file",
        path.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let text = std::fs::read_to_string(&path).expect("the dry run's metrics file");
    for line in [
        "forcemfa_runs_total{result=\"success\"} 1",
        &format!("forcemfa_users{{account=\"{ACCOUNT_ID}\",state=\"compliant\"}} 3"),
    ] {
        assert!(text.lines().any(|l| l == line), "no `{line}` in:\n{text}");
    }
    // Nothing was changed, so no change is counted, and the file says it was a dry run.
    assert!(!text.contains("action=\"remove\"} 2"), "{text}");
    assert!(text.lines().any(|l| l == "forcemfa_dry_run 1"), "{text}");
    assert_eq!(files_in(&dir), ["forcemfa.prom"]);
    assert_eq!(a.members(GROUP).await, before);
    assert!(!audit.exists(), "a dry run writes no audit line");
}

#[tokio::test]
async fn a_metrics_file_that_cannot_be_written_is_an_error_naming_it() {
    let a = mixed_account().await;
    let dir = a.dir.path().join("textfile");
    std::fs::create_dir(&dir).unwrap();

    // A directory cannot be replaced by the file, nor can a file be made in a missing directory:
    // both are refused before the run, which changes nothing.
    let taken = dir.join("forcemfa.prom");
    std::fs::create_dir(&taken).unwrap();
    let missing = a.dir.path().join("missing").join("forcemfa.prom");
    let members = a.members(GROUP).await;
    for path in [&taken, &missing] {
        let file = path.to_str().unwrap();
        let run = a.forcemfa(&["reconcile", "--output", "json", "--metrics-file", file]);
        assert_eq!(run.code, 2, "{}", run.stderr);
        assert!(
            run.stderr.contains(&format!("--metrics-file `{file}`")),
            "{}",
            run.stderr
        );
        assert!(run.stdout.is_empty(), "{}", run.stdout);
        assert_eq!(a.members(GROUP).await, members);
    }
    assert!(taken.is_dir());
    assert!(!missing.exists());

    // A write that fails (a full disk) fails the command after the run, which went ahead.
    std::fs::remove_dir(&taken).unwrap();
    let file = taken.to_str().unwrap();
    let mut cmd = a.command(
        &a.moto.endpoint,
        &["reconcile", "--output", "json", "--metrics-file", file],
    );
    let run = run(with_file_size_limit(&mut cmd, 10));
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains(file), "{}", run.stderr);
    assert!(
        run.stderr.contains("metrics file not written"),
        "{}",
        run.stderr
    );
    assert!(run.account()["error"].is_null(), "{}", run.stdout);
    // Neither the file nor a temporary one is left behind.
    assert!(files_in(&dir).is_empty(), "{:?}", files_in(&dir));
}
