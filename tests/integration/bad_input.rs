//! Bad configuration and flags: exit 2, a message naming the culprit, nothing touched. No
//! credentials: a sentence saying what to set.

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::net::TcpListener;

use crate::support::{self, free_port, set, Account, Run};

/// Runs reconcile with `config_text` against an account holding one user to add, and checks that
/// it is refused with exit 2, the message names `culprit`, and the group is unchanged.
async fn refused(config_text: &str, culprit: &str) {
    let a = Account::with_group().await;
    a.user("carol").await;
    let config = a.config(config_text);
    let run = a.forcemfa(&["reconcile", "--config", config.to_str().unwrap()]);
    assert_eq!(run.code, 2, "{config_text}: {}", run.stderr);
    assert!(
        run.stderr.contains(culprit),
        "{config_text}: {}",
        run.stderr
    );
    assert!(run.stdout.is_empty(), "{}", run.stdout);
    assert_eq!(a.members("ForceMFA").await, set(&[]));
    run.log_lines();
}

#[tokio::test]
async fn unknown_key_is_named() {
    refused("[exmpt]\nusers = [\"x\"]\n", "exmpt").await;
}

#[tokio::test]
async fn invalid_values_are_named() {
    refused("group = \"\"\n", "group").await;
    refused("max_changes = -5\n", "max_changes").await;
    refused("schedule = \"61 * * * *\"\n", "schedule").await;
    refused("dry_run = \"no\"\n", "dry_run").await;
    refused("[admin]\nlisten = \"everywhere\"\n", "admin.listen").await;
    refused("not toml at all [\n", "forcemfa.toml").await;
    refused(
        "[[accounts]]\nrole_arn = \"nope\"\n",
        "accounts[0].role_arn",
    )
    .await;
    refused("[aws]\nmax_concurrency = 0\n", "aws.max_concurrency").await;
    refused(
        "[cleanup]\nunassigned_min_age = \"soon\"\n",
        "cleanup.unassigned_min_age",
    )
    .await;
    refused(
        "[organization]\nrole_name = \"\"\n",
        "organization.role_name",
    )
    .await;
}

#[tokio::test]
async fn an_exempt_user_name_iam_would_refuse_is_named() {
    // The trailing space would exempt nobody, and lock the break-glass user into the group.
    refused("[exempt]\nusers = [\"breakglass \"]\n", "exempt.users").await;
    refused("[exempt]\nusers = [\"breakglass \"]\n", "`breakglass `").await;
    refused("[exempt]\nusers = [\"ops/admin\"]\n", "exempt.users").await;
    refused(
        &format!("[exempt]\nusers = [\"{}\"]\n", "a".repeat(65)),
        "exempt.users",
    )
    .await;

    let a = Account::with_group().await;
    a.user("breakglass").await;
    let run = a.forcemfa_with(
        &["reconcile"],
        &[("FORCEMFA__EXEMPT__USERS", "[\"breakglass \"]")],
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("exempt.users") && run.stderr.contains("FORCEMFA__EXEMPT__USERS"),
        "{}",
        run.stderr
    );
    assert_eq!(a.members("ForceMFA").await, set(&[]));
}

#[tokio::test]
async fn a_cleanup_age_short_enough_to_catch_a_device_being_set_up_is_refused() {
    for age in ["0s", "90s", "4m", "299s"] {
        refused(
            &format!("[cleanup]\nunassigned_mfa_devices = true\nunassigned_min_age = \"{age}\"\n"),
            "cleanup.unassigned_min_age",
        )
        .await;
    }
}

#[tokio::test]
async fn the_audit_log_and_the_state_file_cannot_be_one_file() {
    let a = Account::with_group().await;
    a.user("carol").await;
    let dir = a.dir.path();
    std::fs::create_dir(dir.join("sub")).unwrap();
    std::fs::write(dir.join("real.jsonl"), "").unwrap();
    std::os::unix::fs::symlink(dir.join("real.jsonl"), dir.join("link.jsonl")).unwrap();
    std::fs::hard_link(dir.join("real.jsonl"), dir.join("hard.jsonl")).unwrap();
    let absolute = dir.join("a.jsonl");
    for (audit, state) in [
        ("a.jsonl", "a.jsonl"),
        ("./a.jsonl", "a.jsonl"),
        ("sub/../a.jsonl", "a.jsonl"),
        ("missing/../a.jsonl", "./sub/../a.jsonl"),
        (absolute.to_str().unwrap(), "a.jsonl"),
        ("link.jsonl", "real.jsonl"),
        ("hard.jsonl", "real.jsonl"),
    ] {
        let config = a.config(&format!(
            "audit_log = \"{audit}\"\n[cleanup]\nstate_file = \"{state}\"\n"
        ));
        let out = a
            .command(
                &a.moto.endpoint,
                &["reconcile", "--config", config.to_str().unwrap()],
            )
            .current_dir(dir)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{audit} and {state}: {stderr}");
        assert!(
            stderr.contains("audit_log") && stderr.contains("cleanup.state_file"),
            "{audit} and {state}: {stderr}"
        );
    }
    assert_eq!(a.members("ForceMFA").await, set(&[]));
}

#[tokio::test]
async fn a_schedule_firing_more_than_once_a_minute_is_refused() {
    for schedule in [
        "*/10 * * * * *",
        "* * * * * *",
        "0,30 * * * * *",
        "0,59 * * * * *",
    ] {
        refused(&format!("schedule = \"{schedule}\"\n"), "schedule").await;
    }
    let a = Account::with_group().await;
    let run = a.forcemfa_with(&["reconcile"], &[("FORCEMFA__SCHEDULE", "*/10 * * * * *")]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("FORCEMFA__SCHEDULE"), "{}", run.stderr);
}

#[tokio::test]
async fn run_timeout_is_read_and_must_end_a_run_before_the_next_is_due() {
    let a = Account::with_group().await;
    a.user("carol").await;
    let config = a.config("run_timeout = \"30m\"\n");
    let run = a.forcemfa(&["reconcile", "--config", config.to_str().unwrap()]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(a.members("ForceMFA").await, set(&["carol"]));

    let named = "invalid config key `run_timeout`";
    // The default schedule is hourly.
    refused("run_timeout = \"1h\"\n", named).await;
    refused("run_timeout = \"2d\"\n", named).await;
    refused("schedule = \"*/5 * * * *\"\nrun_timeout = \"5m\"\n", named).await;
    refused("run_timeout = \"0s\"\n", named).await;
    refused("run_timeout = \"soon\"\n", named).await;
    let run = a.forcemfa_with(&["reconcile"], &[("FORCEMFA__RUN_TIMEOUT", "2h")]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains(named) && run.stderr.contains("FORCEMFA__RUN_TIMEOUT"),
        "{}",
        run.stderr
    );
}

#[tokio::test]
async fn missing_config_file_is_named() {
    let a = Account::empty();
    let run = a.forcemfa(&["reconcile", "--config", "/nonexistent/forcemfa.toml"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("/nonexistent/forcemfa.toml"),
        "{}",
        run.stderr
    );
}

#[tokio::test]
async fn an_unreadable_config_file_is_named() {
    let a = Account::empty();
    let dir = a.dir.path().join("a-directory.toml");
    std::fs::create_dir(&dir).unwrap();
    let run = a.forcemfa(&["reconcile", "--config", dir.to_str().unwrap()]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("a-directory.toml"), "{}", run.stderr);
}

#[tokio::test]
async fn bad_flags_are_usage_errors() {
    let a = Account::empty();
    for args in [
        &["reconcile", "--max-changes", "0"][..],
        &["reconcile", "--max-changes", "-3"][..],
        &["reconcile", "--output", "yaml"][..],
        &["reconcile", "--no-such-flag"][..],
        &["enforce"][..],
    ] {
        let run = a.forcemfa(args);
        assert_eq!(run.code, 2, "{args:?}: {}", run.stderr);
        assert!(run.stderr.starts_with("error:"), "{args:?}: {}", run.stderr);
    }
}

#[tokio::test]
async fn environment_overrides_apply_and_bad_ones_are_named() {
    let a = Account::empty();
    a.create_group("Enforced").await;
    a.user("carol").await;

    let run = a.forcemfa_with(
        &["reconcile", "--output", "json"],
        &[
            ("FORCEMFA__GROUP", "Enforced"),
            ("FORCEMFA__DRY_RUN", "true"),
        ],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let report = run.report();
    assert_eq!(report["dry_run"], true);
    assert_eq!(report["accounts"][0]["group"], "Enforced");
    assert_eq!(a.members("Enforced").await, set(&[]));

    let run = a.forcemfa_with(&["reconcile"], &[("FORCEMFA__GRUOP", "Enforced")]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("FORCEMFA__GRUOP"), "{}", run.stderr);
    assert_eq!(a.members("Enforced").await, set(&[]));
}

/// Runs `forcemfa ARGS` with one more environment variable, given as raw bytes.
fn with_raw_variable(a: &Account, args: &[&str], name: &[u8], value: &[u8]) -> Run {
    use std::os::unix::ffi::OsStrExt;
    let out = a
        .command(&a.moto.endpoint, args)
        .env(OsStr::from_bytes(name), OsStr::from_bytes(value))
        .output()
        .expect("run forcemfa");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[tokio::test]
async fn a_variable_that_is_not_utf8_is_ignored_unless_read_and_then_named() {
    let a = Account::empty();
    let args = ["policy", "daemon", "--account-id", "123456789012"];
    for (name, value) in [
        (&b"X"[..], &b"\xff"[..]),
        (&b"\xff"[..], &b"1"[..]),
        (&b"LANG"[..], &b"C.\xff"[..]),
    ] {
        let run = with_raw_variable(&a, &args, name, value);
        assert_eq!(run.code, 0, "{name:?}: {}", run.stderr);
        assert!(run.stdout.contains("iam:AddUserToGroup"), "{}", run.stdout);
    }
    for name in [
        "FORCEMFA__DRY_RUN",
        "FORCEMFA_ADMIN_TOKEN",
        "FORCEMFA_LOG_FORMAT",
        "RUST_LOG",
        "AWS_PROFILE",
    ] {
        let run = with_raw_variable(&a, &args, name.as_bytes(), b"\xff");
        assert_eq!(run.code, 2, "{name}: {}", run.stderr);
        assert!(run.stderr.contains(name), "{name}: {}", run.stderr);
        assert!(run.stdout.is_empty(), "{}", run.stdout);
        run.log_lines();
    }
}

#[tokio::test]
async fn a_bad_value_from_the_environment_names_its_key_and_variable() {
    let a = Account::with_group().await;
    a.user("carol").await;
    for (name, value, key) in [
        ("FORCEMFA__MAX_CHANGES", "-5", "max_changes"),
        ("FORCEMFA__AWS__MAX_CONCURRENCY", "0", "aws.max_concurrency"),
        ("FORCEMFA__ADMIN__LISTEN", "everywhere", "admin.listen"),
    ] {
        let run = a.forcemfa_with(&["reconcile"], &[(name, value)]);
        assert_eq!(run.code, 2, "{name}: {}", run.stderr);
        assert!(
            run.stderr.contains(key) && run.stderr.contains(name),
            "{name}: {}",
            run.stderr
        );
    }
    assert_eq!(a.members("ForceMFA").await, set(&[]));
}

/// The markers of the SDK's `Debug` rendering of an error: kilobytes of request internals, which
/// no message for people holds.
const DUMP_MARKERS: [&str; 3] = ["DispatchFailure", "SdkBody", "Extensions {"];

/// Runs `forcemfa ARGS` where no credentials can be found: no AWS_* variable but the endpoint's
/// and those in `env`, a home without `~/.aws`, the instance metadata service off unless `env`
/// turns it on.
fn without_credentials(a: &Account, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd = a.command(&a.moto.endpoint, args);
    cmd.env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY");
    for (name, value) in env {
        cmd.env(name, value);
    }
    support::run(&mut cmd)
}

/// Checks that a run without credentials failed saying, on one line, what to set, and showed no
/// dump of an error.
fn says_what_to_set(run: &Run, what: &str) {
    assert_ne!(run.code, 0, "{what}: {}", run.stderr);
    let all = format!("{}{}", run.stdout, run.stderr);
    for name in [
        "AWS_PROFILE",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
    ] {
        assert!(all.contains(name), "{what}: no {name} in\n{all}");
    }
    for marker in DUMP_MARKERS {
        assert!(!all.contains(marker), "{what}: {marker} in\n{all}");
    }
    let said = run
        .log_lines()
        .into_iter()
        .filter_map(|line| line["error"].as_str().map(str::to_string))
        .filter(|error| error.contains("AWS_PROFILE"))
        .collect::<Vec<_>>();
    assert!(
        !said.is_empty(),
        "{what}: no log line says it: {}",
        run.stderr
    );
    for error in said {
        assert!(!error.contains('\n'), "{what}: not one line: {error}");
    }
}

#[tokio::test]
async fn without_credentials_the_error_says_what_to_set() {
    let a = Account::with_group().await;
    a.user("carol").await;
    let run = without_credentials(&a, &["reconcile", "--dry-run"], &[]);
    says_what_to_set(&run, "reconcile --dry-run");
    assert!(
        run.stdout.contains("AWS_PROFILE"),
        "the report says it too: {}",
        run.stdout
    );
    let run = without_credentials(&a, &["policy", "force-mfa-group"], &[]);
    says_what_to_set(&run, "policy force-mfa-group");
    assert!(run.stdout.is_empty(), "{}", run.stdout);
    // Given the account, the policy needs no credentials at all.
    let run = without_credentials(
        &a,
        &["policy", "force-mfa-group", "--account-id", "123456789012"],
        &[],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(a.members("ForceMFA").await, set(&[]));
}

/// An instance metadata service that refuses every request (403), as a proxy between a host and
/// an address it may not reach does.
fn refusing_metadata_service() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
    let addr = listener.local_addr().expect("its address");
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            let _ = stream.write_all(
                b"HTTP/1.1 403 Forbidden\r\ncontent-type: text/plain\r\ncontent-length: 6\r\nconnection: close\r\n\r\ndenied",
            );
        }
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn without_credentials_the_metadata_services_failure_buries_nothing() {
    let a = Account::with_group().await;
    let unreachable = format!("http://127.0.0.1:{}", free_port());
    let refusing = refusing_metadata_service();
    for (what, endpoint) in [("unreachable", &unreachable), ("refusing", &refusing)] {
        let env = [
            ("AWS_EC2_METADATA_DISABLED", "false"),
            ("AWS_EC2_METADATA_SERVICE_ENDPOINT", endpoint.as_str()),
        ];
        for args in [
            &["reconcile", "--dry-run"][..],
            &["policy", "force-mfa-group"],
        ] {
            let run = without_credentials(&a, args, &env);
            says_what_to_set(&run, &format!("{args:?}, metadata service {what}"));
        }
    }
}
