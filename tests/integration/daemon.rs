//! `forcemfa run`: schedule, triggers, reload, health, metrics, shutdown.

use std::time::Duration;

use crate::support::daemon::{eventually, http, Daemon};
use crate::support::proxy::{Fault, FaultProxy, Rule};
use crate::support::{set, Account};

const GROUP: &str = "ForceMFA";
/// The most frequent schedule allowed: at second 0 of every minute.
const EVERY_MINUTE: &str = "schedule = \"* * * * *\"\n";
/// A schedule that never fires during a test: only triggers run.
const NEVER: &str = "schedule = \"0 0 1 1 *\"\nrun_on_start = false\n";

async fn has_member(a: &Account, user: &str) -> bool {
    a.members(GROUP).await.contains(user)
}

#[tokio::test]
async fn scheduled_runs_converge_and_enforce_users_created_later() {
    let a = Account::with_group().await;
    a.user("alice")
        .await
        .virtual_mfa()
        .await
        .member_of(GROUP)
        .await;
    a.user("carol").await;
    let mut d = Daemon::start(&a, &a.moto.endpoint, EVERY_MINUTE);

    assert!(eventually(15, || async { a.members(GROUP).await == set(&["carol"]) }).await);
    a.user("late").await;
    // Nothing but the schedule asks for a run now; it fires within a minute.
    assert!(
        eventually(75, || has_member(&a, "late")).await,
        "{}",
        d.stderr_text()
    );
    let sources: Vec<String> = d
        .events("run requested")
        .iter()
        .map(|e| e["source"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(sources[0], "start");
    assert!(sources.iter().filter(|s| *s == "schedule").count() >= 1);
    assert_eq!(d.get("/healthz").0, 200);
    assert_eq!(d.get("/readyz").0, 200);

    let (code, took) = d.stop();
    assert_eq!(code, 0);
    assert!(took < Duration::from_secs(10), "{took:?}");
}

#[tokio::test]
async fn http_sigusr1_and_the_trigger_command_each_start_a_run() {
    let a = Account::with_group().await;
    a.user("u1").await;
    let mut d = Daemon::start(&a, &a.moto.endpoint, NEVER);
    // Ready as soon as it serves: readiness is the configuration loaded, not a run's outcome.
    assert_eq!(d.get("/readyz").0, 200, "ready before the first run");

    let (status, body) = d.post("/reconcile", None);
    assert_eq!(status, 202, "{body}");
    assert!(body.contains("started"), "{body}");
    assert!(eventually(10, || has_member(&a, "u1")).await);

    a.user("u2").await;
    d.signal("USR1");
    assert!(
        eventually(10, || has_member(&a, "u2")).await,
        "{}",
        d.stderr_text()
    );

    a.user("u3").await;
    let admin = d.admin.to_string();
    let run = a.forcemfa(&["trigger", "--admin", &admin]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        eventually(10, || has_member(&a, "u3")).await,
        "{}",
        d.stderr_text()
    );

    let sources: Vec<String> = d
        .events("run requested")
        .iter()
        .map(|e| e["source"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(sources, ["http", "SIGUSR1", "http"]);
    // The group changes before the run logs its summary.
    d.wait_runs(3, 10).await;
    assert_eq!(d.runs(), 3);
    assert_eq!(d.stop().0, 0);
}

#[tokio::test]
async fn overlapping_triggers_never_run_concurrently() {
    let a = Account::with_group().await;
    a.user("u1").await;
    // Each run takes at least a second, so that the triggers below all land during the first.
    let proxy = FaultProxy::start(&a.moto.endpoint);
    proxy.set_rules(vec![Rule::new(
        &["Action=GetCallerIdentity"],
        Fault::Delay(1000),
    )]);
    let mut d = Daemon::start(&a, &proxy.endpoint, NEVER);

    let admin = d.admin;
    let outcomes: Vec<String> = (0..8)
        .map(|_| std::thread::spawn(move || http(admin, "POST", "/reconcile", None)))
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| {
            let (status, body) = t.join().unwrap();
            assert_eq!(status, 202);
            body
        })
        .collect();
    d.signal("USR1");
    d.wait_runs(2, 15).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // Runs strictly alternate start, finish, start, finish.
    let sequence: Vec<String> = d
        .logs()
        .iter()
        .filter_map(|l| match l["message"].as_str() {
            Some(m @ ("run started" | "run finished")) => Some(m.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(
        sequence,
        ["run started", "run finished", "run started", "run finished"]
    );
    // Nine requests, two runs: the first request started one, the others were folded into a
    // single follow-up run.
    assert_eq!(
        outcomes.iter().filter(|b| b.contains("started")).count(),
        1,
        "{outcomes:?}"
    );
    let requested = d.events("run requested");
    assert_eq!(requested.len(), 9);
    let count = |o: &str| requested.iter().filter(|e| e["outcome"] == o).count();
    assert_eq!(count("started"), 1);
    assert!(count("queued") <= 1, "{}", d.stderr_text());
    assert_eq!(count("coalesced"), 8 - count("queued"));
    assert!(has_member(&a, "u1").await);
    assert_eq!(d.stop().0, 0);
}

#[tokio::test]
async fn sighup_reloads_a_good_file_and_keeps_the_old_one_on_a_bad_file() {
    let a = Account::with_group().await;
    a.user("carol").await;
    let mut d = Daemon::start(&a, &a.moto.endpoint, "run_on_start = true\n");
    assert!(eventually(10, || has_member(&a, "carol")).await);
    let admin = std::fs::read_to_string(&d.config).unwrap();
    let admin = &admin[admin.find("[admin]").unwrap()..];

    // A good file: dave becomes exempt.
    a.user("dave").await;
    std::fs::write(
        &d.config,
        format!("schedule = \"0 0 1 1 *\"\n[exempt]\nusers = [\"dave\"]\n{admin}"),
    )
    .unwrap();
    d.signal("HUP");
    assert!(
        eventually(5, || async {
            !d.events("configuration reloaded").is_empty()
        })
        .await
    );
    d.post("/reconcile", None);
    d.wait_runs(2, 10).await;
    assert!(!has_member(&a, "dave").await);

    // A bad file: rejected with the culprit named; the previous configuration stays.
    std::fs::write(&d.config, format!("[exmpt]\nusers = []\n{admin}")).unwrap();
    d.signal("HUP");
    assert!(
        eventually(5, || async {
            !d.events("configuration reload rejected; the previous configuration stays in force")
                .is_empty()
        })
        .await
    );
    let rejected =
        &d.events("configuration reload rejected; the previous configuration stays in force")[0];
    assert!(
        rejected["error"].as_str().unwrap().contains("exmpt"),
        "{rejected}"
    );
    a.user("erin").await;
    d.post("/reconcile", None);
    d.wait_runs(3, 10).await;
    assert!(has_member(&a, "erin").await);
    assert!(!has_member(&a, "dave").await, "dave is still exempt");
    let (_, metrics) = d.get("/metrics");
    assert!(
        metrics.contains("forcemfa_config_reloads_total{result=\"success\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("forcemfa_config_reloads_total{result=\"error\"} 1"),
        "{metrics}"
    );
    assert_eq!(d.stop().0, 0);
}

#[tokio::test]
async fn metrics_describe_the_last_run() {
    let a = Account::with_group().await;
    a.user("alice").await.virtual_mfa().await;
    a.user("carol").await;
    let mut d = Daemon::start(
        &a,
        &a.moto.endpoint,
        "run_on_start = true\nschedule = \"0 0 1 1 *\"\n",
    );
    d.wait_runs(1, 10).await;

    let (status, text) = d.get("/metrics");
    assert_eq!(status, 200);
    for line in [
        "forcemfa_runs_total{result=\"success\"} 1",
        "forcemfa_users{account=\"123456789012\",state=\"compliant\"} 1",
        "forcemfa_users{account=\"123456789012\",state=\"non_compliant\"} 1",
        "forcemfa_changes_total{account=\"123456789012\",action=\"add\"} 1",
        "forcemfa_api_calls_total{account=\"123456789012\",operation=\"GetAccountAuthorizationDetails\"} 1",
    ] {
        assert!(text.contains(line), "missing {line}:\n{text}");
    }
    for name in [
        "forcemfa_last_run_duration_seconds ",
        "forcemfa_last_run_timestamp_seconds ",
        "forcemfa_last_success_timestamp_seconds ",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(name)),
            "missing {name}:\n{text}"
        );
    }
    // Every sample line is `name{labels} number`.
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let value = line.rsplit(' ').next().unwrap();
        assert!(value.parse::<f64>().is_ok(), "bad sample: {line}");
        assert!(line.starts_with("forcemfa_"), "bad name: {line}");
    }
    if let Ok(out) = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(text.as_bytes())?;
            child.wait_with_output()
        })
    {
        assert!(
            out.status.success(),
            "promtool check metrics:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(d.stop().0, 0);
}

/// The keys of a JSON object, and of its first account's, sorted.
fn shape(report: &serde_json::Value) -> (Vec<String>, Vec<String>) {
    let keys = |v: &serde_json::Value| {
        let mut k: Vec<String> = v.as_object().expect("an object").keys().cloned().collect();
        k.sort();
        k
    };
    (keys(report), keys(&report["accounts"][0]))
}

#[tokio::test]
async fn get_report_serves_the_last_runs_report() {
    let a = Account::with_group().await;
    a.user("alice")
        .await
        .virtual_mfa()
        .await
        .member_of(GROUP)
        .await;
    a.user("carol").await;
    let mut d = Daemon::start(&a, &a.moto.endpoint, NEVER);

    let (status, body) = d.get("/report");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("no run has finished yet"), "{body}");

    assert_eq!(d.post("/reconcile", None).0, 202);
    d.wait_runs(1, 15).await;
    let (status, body) = d.get("/report");
    assert_eq!(status, 200, "{body}");
    let served: serde_json::Value = serde_json::from_str(&body).expect("the report is JSON");
    let account = &served["accounts"][0];
    assert_eq!(account["added"], serde_json::json!(["carol"]), "{served}");
    assert_eq!(account["removed"], serde_json::json!(["alice"]), "{served}");
    let finished = &d.events("run finished")[0];
    assert_eq!(served["run_id"], finished["span"]["run_id"], "{served}");

    // Exactly the shape `reconcile --output json` prints.
    let once = a.reconcile_json(&d.config);
    assert_eq!(once.code, 0, "{}", once.stderr);
    assert_eq!(shape(&served), shape(&once.report()));

    // A later run replaces it.
    a.user("dave").await;
    assert_eq!(d.post("/reconcile", None).0, 202);
    d.wait_runs(2, 15).await;
    let served: serde_json::Value = serde_json::from_str(&d.get("/report").1).unwrap();
    assert_eq!(
        served["accounts"][0]["added"],
        serde_json::json!(["dave"]),
        "{served}"
    );
    assert_eq!(d.stop().0, 0);
}

#[tokio::test]
async fn off_loopback_the_trigger_needs_the_token() {
    let a = Account::with_group().await;
    a.user("carol").await;
    let listen = "[admin]\nlisten = \"0.0.0.0:{port}\"\n";

    // Without a configured token, triggering is forbidden; health and metrics stay open.
    let mut d = Daemon::start(&a, &a.moto.endpoint, &format!("{NEVER}{listen}"));
    assert_eq!(d.post("/reconcile", None).0, 403);
    assert_eq!(d.post("/reconcile", Some("guess")).0, 403);
    assert_eq!(d.get("/report").0, 403);
    assert_eq!(d.get("/healthz").0, 200);
    assert_eq!(d.get("/metrics").0, 200);
    assert_eq!(d.stop().0, 0);

    // With one, only the right bearer token is accepted.
    let token_file = a.dir.path().join("token");
    std::fs::write(&token_file, "s3cret-admin-token\n").unwrap();
    let mut d = Daemon::start(
        &a,
        &a.moto.endpoint,
        &format!(
            "{NEVER}[admin]\nlisten = \"0.0.0.0:{{port}}\"\ntoken_file = \"{}\"\n",
            token_file.display()
        ),
    );
    assert_eq!(d.post("/reconcile", None).0, 401);
    assert_eq!(d.post("/reconcile", Some("s3cret-admin-token-not")).0, 401);
    assert_eq!(d.post("/reconcile", Some("s3cret-admin-token")).0, 202);
    assert!(eventually(10, || has_member(&a, "carol")).await);
    // The report names users: it takes the same token.
    assert!(
        eventually(5, || async {
            http(d.admin, "GET", "/report", Some("s3cret-admin-token")).0 == 200
        })
        .await
    );
    assert_eq!(d.get("/report").0, 401);
    assert_eq!(
        http(d.admin, "GET", "/report", Some("s3cret-admin-token-not")).0,
        401
    );
    // `forcemfa trigger` reads the token from the same file.
    let config = d.config.to_str().unwrap().to_string();
    let admin = d.admin.to_string();
    let run = a.forcemfa(&["trigger", "--config", &config, "--admin", &admin]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        !d.stderr_text().contains("s3cret"),
        "the token appears in the logs"
    );
    assert_eq!(d.stop().0, 0);
}

#[tokio::test]
async fn a_failing_account_does_not_stop_the_service() {
    let a = Account::empty();
    a.user("carol").await;
    let mut d = Daemon::start(
        &a,
        &a.moto.endpoint,
        "schedule = \"0 0 1 1 *\"\nrun_on_start = true\n",
    );
    d.wait_runs(1, 10).await;
    let finished = &d.events("run finished")[0];
    assert_eq!(finished["account_errors"], 1);
    // An account error is the metrics' business; the service stays ready, and so scraped.
    assert_eq!(d.get("/readyz").0, 200);
    assert_eq!(d.get("/healthz").0, 200);
    let metrics = d.get("/metrics").1;
    assert!(
        metrics.contains("forcemfa_account_errors_total{"),
        "{metrics}"
    );
    let last_success: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("forcemfa_last_success_timestamp_seconds "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{metrics}"));
    assert_eq!(last_success, 0.0, "no run has succeeded yet");

    a.create_group(GROUP).await;
    assert_eq!(d.post("/reconcile", None).0, 202);
    assert!(
        eventually(15, || has_member(&a, "carol")).await,
        "{}",
        d.stderr_text()
    );
    assert_eq!(d.get("/readyz").0, 200);
    assert_eq!(d.stop().0, 0);
}

#[tokio::test]
async fn sigterm_during_a_run_exits_zero_promptly() {
    let a = Account::with_group().await;
    for i in 0..20 {
        a.user(&format!("u{i:02}")).await;
    }
    let proxy = FaultProxy::start(&a.moto.endpoint);
    // Slow writes: the run is still applying changes when the signal comes.
    proxy.set_rules(vec![Rule::new(
        &["Action=AddUserToGroup"],
        Fault::Delay(1500),
    )]);
    let mut d = Daemon::start(
        &a,
        &proxy.endpoint,
        "run_on_start = true\n[aws]\nmax_concurrency = 2\n",
    );
    assert!(eventually(10, || async { !a.members(GROUP).await.is_empty() }).await);

    let (code, took) = d.stop();
    assert_eq!(code, 0, "{}", d.stderr_text());
    assert!(took < Duration::from_secs(10), "{took:?}");
    assert!(!d.events("forcemfa stopped").is_empty());
    // Changes already sent finished; no new one started after the signal.
    let members = a.members(GROUP).await.len();
    assert!(
        members < 20,
        "{members} members: the run went on after SIGTERM"
    );
}

#[tokio::test]
async fn healthcheck_command_reports_the_listener() {
    let a = Account::with_group().await;
    let mut d = Daemon::start(&a, &a.moto.endpoint, NEVER);
    let admin = d.admin.to_string();
    assert_eq!(a.forcemfa(&["healthcheck", "--admin", &admin]).code, 0);
    assert_eq!(d.stop().0, 0);
    assert_eq!(a.forcemfa(&["healthcheck", "--admin", &admin]).code, 1);
}

#[tokio::test]
async fn systemd_is_told_ready_watchdog_and_stopping() {
    use std::os::unix::net::UnixDatagram;
    let a = Account::with_group().await;
    let socket_path = a.dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut d = Daemon::start_with(
        &a,
        &a.moto.endpoint,
        NEVER,
        &[
            ("NOTIFY_SOCKET", socket_path.to_str().unwrap()),
            ("WATCHDOG_USEC", "400000"),
        ],
    );
    let mut seen = Vec::new();
    let mut buf = [0u8; 256];
    while !seen.iter().any(|m: &String| m.contains("WATCHDOG=1")) {
        let n = socket.recv(&mut buf).expect("a notification");
        seen.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    assert!(seen[0].contains("READY=1"), "{seen:?}");

    d.signal("HUP");
    assert!(
        eventually(5, || async {
            !d.events("configuration reloaded").is_empty()
        })
        .await
    );
    let (code, _) = d.stop();
    assert_eq!(code, 0);
    while let Ok(n) = socket.recv(&mut buf) {
        seen.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        if seen.last().unwrap().contains("STOPPING=1") {
            break;
        }
    }
    assert!(seen.iter().any(|m| m.contains("RELOADING=1")), "{seen:?}");
    assert!(seen.last().unwrap().contains("STOPPING=1"), "{seen:?}");
}

#[tokio::test]
async fn trigger_wait_prints_the_runs_report_and_exits_with_its_code() {
    // No group yet: the run requested fails, and the command says so with exit 1.
    let a = Account::empty();
    a.user("carol").await;
    let mut d = Daemon::start(&a, &a.moto.endpoint, NEVER);
    let admin = d.admin.to_string();
    let wait = ["trigger", "--admin", &admin, "--wait", "--output", "json"];

    let run = a.forcemfa(&wait);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(!run.account()["error"].is_null(), "{}", run.stdout);

    a.create_group(GROUP).await;
    let run = a.forcemfa(&wait);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.account()["added"], serde_json::json!(["carol"]));
    // The change is made by the time the command returns.
    assert!(has_member(&a, "carol").await);
    let finished = d.events("run finished");
    assert_eq!(run.report()["run_id"], finished[1]["span"]["run_id"]);

    // The readable summary by default.
    a.user("dave").await;
    let run = a.forcemfa(&["trigger", "--admin", &admin, "--wait"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("added (1): dave"), "{}", run.stdout);
    assert_eq!(d.runs(), 3);
    assert_eq!(d.stop().0, 0);
}

#[tokio::test]
async fn trigger_wait_waits_for_the_run_that_serves_it() {
    let a = Account::with_group().await;
    a.user("u1").await;
    // Each run takes over a second.
    let proxy = FaultProxy::start(&a.moto.endpoint);
    proxy.set_rules(vec![Rule::new(
        &["Action=GetCallerIdentity"],
        Fault::Delay(1500),
    )]);
    let mut d = Daemon::start(&a, &proxy.endpoint, NEVER);
    let admin = d.admin.to_string();

    // A request during a run is served by the next one, and waits for it.
    let (status, body) = d.post("/reconcile", None);
    assert_eq!(status, 202);
    assert!(body.contains("\"run\":1"), "{body}");
    let run = a.forcemfa(&["trigger", "--admin", &admin, "--wait", "--output", "json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let finished = d.events("run finished");
    assert_eq!(finished.len(), 2, "{}", d.stderr_text());
    assert_eq!(run.report()["run_id"], finished[1]["span"]["run_id"]);

    // A run longer than --timeout: exit 1, saying so.
    proxy.set_rules(vec![Rule::new(
        &["Action=GetCallerIdentity"],
        Fault::Delay(6000),
    )]);
    let run = a.forcemfa(&["trigger", "--admin", &admin, "--wait", "--timeout", "1"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("has not finished within 1s"),
        "{}",
        run.stderr
    );
    assert_eq!(run.stdout, "");
    assert_eq!(d.stop().0, 0);
}
