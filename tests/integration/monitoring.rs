//! The alerting rules and the Grafana dashboard: promtool's own checks and unit tests, and a real
//! Prometheus scraping `forcemfa run` against the emulator, asked for every query they hold.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use serde_json::Value;

use crate::support::daemon::{eventually, Daemon};
use crate::support::files::{check, output, read, repo, yaml_documents};
use crate::support::proxy::{Fault, FaultProxy, Rule};
use crate::support::queue::{iam_event, Queue};
use crate::support::{audit_log_at_limit, free_port, Account, FULL};

const GROUP: &str = "ForceMFA";

#[test]
fn the_alert_rules_pass_promtool_and_their_unit_tests() {
    check(
        Command::new("promtool")
            .args(["check", "rules"])
            .arg(repo("deploy/prometheus/alerts.yml")),
        "promtool check rules",
        |l| l.is_empty() || l.starts_with("Checking ") || l.contains("SUCCESS: "),
    );
    let (ok, text) = output(
        Command::new("promtool")
            .args(["test", "rules", "alerts.test.yml"])
            .current_dir(repo("tests/prometheus")),
        "promtool test rules",
    );
    assert!(
        ok && text.contains("SUCCESS"),
        "promtool test rules:\n{text}"
    );
}

/// Every alerting rule of deploy/prometheus/alerts.yml: its name and its expression.
fn alert_rules() -> Vec<(String, String)> {
    let docs = yaml_documents(&read("deploy/prometheus/alerts.yml"));
    let mut rules = Vec::new();
    for group in docs[0]["groups"].as_array().expect("groups") {
        for rule in group["rules"].as_array().expect("rules") {
            rules.push((
                rule["alert"].as_str().expect("alert").to_string(),
                rule["expr"].as_str().expect("expr").trim().to_string(),
            ));
        }
    }
    rules
}

/// Every query of the dashboard: its panel's title and its expression.
fn dashboard_queries() -> Vec<(String, String)> {
    let dashboard: Value = serde_json::from_str(&read("deploy/grafana/forcemfa.json")).unwrap();
    let mut queries = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().into_iter().flatten() {
            queries.push((
                panel["title"].as_str().unwrap_or("?").to_string(),
                target["expr"].as_str().expect("expr").to_string(),
            ));
        }
    }
    queries
}

/// A dashboard expression with Grafana's variables as Prometheus would get them: every account,
/// and a rate window of one minute.
fn resolve_variables(expr: &str) -> String {
    let resolved = expr
        .replace("$__rate_interval", "1m")
        .replace("$account", ".*");
    assert!(
        !resolved.contains('$'),
        "a variable the test does not know: {expr}"
    );
    resolved
}

#[test]
fn the_dashboard_is_a_grafana_dashboard_over_a_chosen_prometheus() {
    let dashboard: Value = serde_json::from_str(&read("deploy/grafana/forcemfa.json")).unwrap();
    assert_eq!(dashboard["uid"], "forcemfa");
    assert!(dashboard["schemaVersion"].as_u64().unwrap() >= 36);
    let variables = dashboard["templating"]["list"].as_array().unwrap();
    let variable = |name: &str| {
        variables
            .iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no variable {name}"))
    };
    assert_eq!(variable("datasource")["type"], "datasource");
    assert_eq!(variable("datasource")["query"], "prometheus");
    assert_eq!(variable("account")["allValue"], ".*");
    let source = serde_json::json!({"type": "prometheus", "uid": "${datasource}"});
    let mut ids = std::collections::BTreeSet::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        assert!(ids.insert(panel["id"].as_u64().expect("id")), "{panel}");
        for key in ["x", "y", "w", "h"] {
            assert!(panel["gridPos"][key].is_u64(), "{panel}");
        }
        if panel["type"] == "row" {
            continue;
        }
        assert_eq!(panel["datasource"], source, "{}", panel["title"]);
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{}", panel["title"]);
        for target in targets {
            assert_eq!(target["datasource"], source, "{}", panel["title"]);
            resolve_variables(target["expr"].as_str().expect("expr"));
        }
    }
    // What operators look for first.
    let all: String = dashboard_queries().into_iter().map(|(_, e)| e).collect();
    for metric in [
        "forcemfa_users",
        "forcemfa_changes_total",
        "forcemfa_last_run_duration_seconds",
        "forcemfa_last_success_timestamp_seconds",
        "forcemfa_api_calls_total",
        "forcemfa_api_errors_total",
        "forcemfa_account_errors_total",
        "forcemfa_runs_total",
        "forcemfa_group_policy_enforces_mfa",
    ] {
        assert!(all.contains(metric), "the dashboard does not show {metric}");
    }
}

/// The series selectors of a PromQL expression that name forcemfa's metrics or `up`.
fn selectors(expr: &str) -> Vec<String> {
    let bytes = expr.as_bytes();
    let is_name = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b':';
    let mut found = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if !is_name(bytes[i]) || (i > 0 && is_name(bytes[i - 1])) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && is_name(bytes[i]) {
            i += 1;
        }
        let name = &expr[start..i];
        let has_labels = bytes.get(i) == Some(&b'{');
        if name.starts_with("forcemfa_") || (name == "up" && has_labels) {
            let mut end = i;
            if has_labels {
                end = i + expr[i..].find('}').expect("closing brace") + 1;
            }
            found.push(expr[start..end].to_string());
            i = end;
        }
    }
    found
}

#[test]
fn selectors_are_found_in_expressions() {
    assert_eq!(
        selectors(
            "increase(forcemfa_runs_total{job=\"forcemfa\", result=\"x\"}[1h]) > 0 and on (job) (up{job=\"forcemfa\"} offset 1h) or time() - forcemfa_last_success_timestamp_seconds"
        ),
        [
            "forcemfa_runs_total{job=\"forcemfa\", result=\"x\"}",
            "up{job=\"forcemfa\"}",
            "forcemfa_last_success_timestamp_seconds"
        ]
    );
}

/// A Prometheus server scraping one target as job "forcemfa" every second, with the rules of
/// deploy/prometheus/alerts.yml evaluated every second. Killed when dropped.
struct Prometheus {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(target: SocketAddr) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 rule_files:\n  - {}\n\
                 scrape_configs:\n  - job_name: forcemfa\n    static_configs:\n      - targets: ['{target}']\n",
                repo("deploy/prometheus/alerts.yml").display()
            ),
        )
        .unwrap();
        let port = free_port();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(dir.path().join("prometheus.log")).unwrap(),
            ))
            .spawn()
            .expect("prometheus runs (scripts/ensure-tools installs Debian's prometheus)");
        let prometheus = Prometheus {
            child,
            addr: ([127, 0, 0, 1], port).into(),
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while prometheus.try_get("/-/ready").is_none_or(|(s, _)| s != 200) {
            assert!(Instant::now() < deadline, "prometheus did not become ready");
            std::thread::sleep(Duration::from_millis(200));
        }
        prometheus
    }

    /// GET over HTTP/1.0 (no chunked answers): status and body, or None when it cannot connect.
    fn try_get(&self, path: &str) -> Option<(u16, String)> {
        let mut stream = TcpStream::connect_timeout(&self.addr, Duration::from_secs(2)).ok()?;
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .ok()?;
        write!(stream, "GET {path} HTTP/1.0\r\nHost: {}\r\n\r\n", self.addr).ok()?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer).ok()?;
        let status = answer.split_whitespace().nth(1)?.parse().ok()?;
        let body = answer.split_once("\r\n\r\n")?.1.to_string();
        Some((status, body))
    }

    /// An API answer's `data`; fails on any error.
    fn api(&self, path: &str) -> Value {
        let (status, body) = self.try_get(path).expect("prometheus answers");
        let v: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
        assert!(
            status == 200 && v["status"] == "success",
            "{path}: {status} {body}"
        );
        v["data"].clone()
    }

    /// An instant query's result vector (or scalar, as one element).
    fn query(&self, expr: &str) -> Vec<Value> {
        let data = self.api(&format!(
            "/api/v1/query?query={}",
            utf8_percent_encode(expr, NON_ALPHANUMERIC)
        ));
        match &data["result"] {
            Value::Array(items)
                if data["resultType"] == "vector" || data["resultType"] == "matrix" =>
            {
                items.clone()
            }
            other => vec![other.clone()],
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn every_dashboard_and_alert_query_evaluates_on_a_real_prometheus() {
    // Two accounts with one user to add each; forcemfa reaches them through a fault proxy.
    let a = Account::empty();
    for id in ["222222222222", "333333333333"] {
        let other = a.other(id).await;
        other.group(GROUP).await;
        other.user(&format!("carol-{id}")).await;
    }
    let proxy = FaultProxy::start(&a.moto.endpoint);
    // The first run is throttled twice on the way, so that API errors exist.
    proxy.set_rules(vec![
        Rule::new(&["Action=ListMFADevices"], Fault::Throttle).times(2)
    ]);
    let queue = Queue::create(&a.moto.endpoint, "forcemfa-events").await;
    let accounts = format!(
        "[[accounts]]\nrole_arn = \"arn:aws:iam::222222222222:role/forcemfa\"\n\
         [[accounts]]\nrole_arn = \"arn:aws:iam::333333333333:role/forcemfa\"\n\
         [events]\nqueue_url = \"{}\"\nwait = \"1s\"\nbatch_window = \"100ms\"\n",
        queue.url
    );
    let never = "schedule = \"0 0 1 1 *\"\n";
    let listen = "[admin]\nlisten = \"127.0.0.1:{port}\"\n";
    // Every file may grow to FULL bytes: an audit log already that large takes no record.
    let d = Daemon::start_with_file_size_limit(
        &a,
        &proxy.endpoint,
        &format!("{never}{accounts}{listen}"),
        FULL,
    );
    let config_text = |extra: &str| {
        format!(
            "{never}{extra}{accounts}[admin]\nlisten = \"{}\"\n",
            d.admin
        )
    };
    let prometheus = Prometheus::start(d.admin);
    d.wait_runs(1, 30).await;

    // A user created after the first run is added on its event: the event series exist.
    let events = a.other("222222222222").await;
    events.user("frank").await;
    queue
        .send(&iam_event(
            "222222222222",
            "CreateUser",
            &serde_json::json!({ "userName": "frank" }),
        ))
        .await;
    let handled = eventually(15, || async {
        d.get("/metrics")
            .1
            .contains("forcemfa_event_delay_seconds_count 1")
    })
    .await;
    assert!(handled, "{}", d.stderr_text());

    // A rejected reload.
    std::fs::write(&d.config, "[exmpt]\n").unwrap();
    d.signal("HUP");
    // An account whose group is gone.
    proxy.set_rules(Vec::new());
    let gone = a.other("333333333333").await;
    gone.iam
        .remove_user_from_group()
        .group_name(GROUP)
        .user_name("carol-333333333333")
        .send()
        .await
        .expect("remove from group");
    gone.iam
        .delete_group()
        .group_name(GROUP)
        .send()
        .await
        .expect("delete group");
    // An event whose change fails there is left for redelivery.
    queue
        .send(&iam_event(
            "333333333333",
            "RemoveUserFromGroup",
            &serde_json::json!({ "groupName": GROUP, "userName": "carol-333333333333" }),
        ))
        .await;
    let retried = eventually(15, || async {
        d.get("/metrics")
            .1
            .contains("forcemfa_events_total{outcome=\"retry\"} 1")
    })
    .await;
    assert!(retried, "{}", d.stderr_text());
    assert_eq!(d.post("/reconcile", None).0, 202);
    d.wait_runs(2, 30).await;
    gone.group(GROUP).await;

    // A plan larger than max_changes.
    let other = a.other("222222222222").await;
    other.user("dave").await;
    other.user("erin").await;
    std::fs::write(&d.config, config_text("max_changes = 1\n")).unwrap();
    d.signal("HUP");
    let reloaded = eventually(10, || async {
        d.get("/metrics")
            .1
            .contains("forcemfa_config_reloads_total{result=\"success\"} 1")
    })
    .await;
    assert!(reloaded, "{}", d.stderr_text());
    assert_eq!(d.post("/reconcile", None).0, 202);
    d.wait_runs(3, 30).await;

    // Changes the audit log cannot record.
    let log = a.dir.path().join("audit.jsonl");
    audit_log_at_limit(&log, FULL);
    let audit = format!("audit_log = \"{}\"\n", log.display());
    std::fs::write(&d.config, config_text(&audit)).unwrap();
    d.signal("HUP");
    let reloaded = eventually(10, || async {
        d.get("/metrics")
            .1
            .contains("forcemfa_config_reloads_total{result=\"success\"} 2")
    })
    .await;
    assert!(reloaded, "{}", d.stderr_text());
    assert_eq!(d.post("/reconcile", None).0, 202);
    d.wait_runs(4, 30).await;

    let metrics = d.get("/metrics").1;
    for series in [
        "forcemfa_runs_total{result=\"success\"} 1",
        "forcemfa_runs_total{result=\"guard_tripped\"} 1",
        "forcemfa_config_reloads_total{result=\"error\"} 1",
        "forcemfa_account_errors_total{account=\"333333333333\",kind=\"group_missing\"} 1",
        "forcemfa_audit_errors_total{account=\"222222222222\"}",
    ] {
        assert!(metrics.contains(series), "no {series} in\n{metrics}");
    }

    // Once Prometheus has scraped the last run and evaluated the rules, ask it everything.
    let scraped = eventually(30, || async {
        !prometheus.query("sum(forcemfa_runs_total) >= 4").is_empty()
            && !prometheus.query("forcemfa_audit_errors_total").is_empty()
    })
    .await;
    assert!(scraped, "prometheus never scraped the last run");
    std::thread::sleep(Duration::from_secs(3));

    let mut empty = Vec::new();
    for (panel, expr) in dashboard_queries() {
        let expr = resolve_variables(&expr);
        if prometheus.query(&expr).is_empty() {
            empty.push(format!("{panel}: {expr}"));
        }
    }
    for (alert, expr) in alert_rules() {
        // The expression evaluates (empty unless it fires); each series it reads exists.
        prometheus.query(&expr);
        let found = selectors(&expr);
        assert!(!found.is_empty(), "{alert}: no selector in {expr}");
        for selector in found {
            if prometheus.query(&selector).is_empty() {
                empty.push(format!("{alert}: {selector}"));
            }
        }
    }
    assert!(
        empty.is_empty(),
        "queries without data:\n{}",
        empty.join("\n")
    );

    // Prometheus evaluated every rule against these series without an error.
    let rules = prometheus.api("/api/v1/rules");
    let mut evaluated = 0;
    for group in rules["groups"].as_array().unwrap() {
        for rule in group["rules"].as_array().unwrap() {
            assert_eq!(rule["health"], "ok", "{rule}");
            evaluated += 1;
        }
    }
    assert_eq!(evaluated, alert_rules().len());
    // And what is true of this emulated world fires: no group policy enforces MFA here.
    let firing = prometheus.query("ALERTS{alertname=\"ForceMFAGroupPolicyDoesNotEnforceMFA\"}");
    assert_eq!(firing.len(), 2, "{firing:?}");
}
