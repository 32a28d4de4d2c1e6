//! The files forcemfa writes, on a host where someone else may plant links in its directories:
//! no link is ever followed, a dry run writes nothing, and modes are exact whatever the umask.

use std::collections::BTreeSet;
use std::os::unix::fs::{symlink, MetadataExt};
use std::path::Path;

use crate::support::{run, with_umask, Account, Run};

const GROUP: &str = "ForceMFA";
/// What a planted link points to: a file of someone else's, without a final line break.
const VICTIM_TEXT: &str = "root:x:0:0:root:/root:/bin/sh\nlast:x:1:1::/:/bin/false";

fn victim(a: &Account) -> std::path::PathBuf {
    let path = a.dir.path().join("passwd");
    std::fs::write(&path, VICTIM_TEXT).unwrap();
    path
}

fn listing(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

/// Runs `forcemfa ARGS` as a dry run, then enforcing, and hands each run to `check`.
fn in_both_modes(a: &Account, args: &[&str], mut check: impl FnMut(bool, Run)) {
    for dry_run in [true, false] {
        let mut args = args.to_vec();
        if dry_run {
            args.push("--dry-run");
        }
        check(dry_run, a.forcemfa(&args));
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path).unwrap().mode() & 0o777
}

#[tokio::test]
async fn an_audit_log_that_is_a_link_is_refused_and_its_target_untouched() {
    let a = Account::with_group().await;
    a.user("carol").await;
    let victim = victim(&a);
    let log = a.dir.path().join("audit.jsonl");
    symlink(&victim, &log).unwrap();
    let config = a.config(&format!("audit_log = \"{}\"\n", log.display()));
    let config = config.to_str().unwrap();
    in_both_modes(&a, &["reconcile", "--config", config], |dry_run, run| {
        assert_eq!(run.code, 2, "dry run {dry_run}: {}", run.stderr);
        assert!(
            run.stderr
                .contains(&format!("audit_log `{}`", log.display()))
                && run.stderr.contains("symbolic link"),
            "{}",
            run.stderr
        );
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), VICTIM_TEXT);
    });
    assert!(a.members(GROUP).await.is_empty(), "a change was made");
}

#[tokio::test]
async fn a_dry_run_writes_nothing_not_even_a_repair() {
    let a = Account::with_group().await;
    a.user("carol").await;
    let log = a.dir.path().join("audit.jsonl");
    // A partial last line, as a crash of the machine mid-write leaves: an enforcing run cuts it
    // off before its first record; a dry run leaves the file as it is.
    let partial = "{\"earlier\":\"record\"}\n{\"cut\":";
    std::fs::write(&log, partial).unwrap();
    let state = a.dir.path().join("state.json");
    let config = a.config(&format!(
        "audit_log = \"{}\"\n[cleanup]\nunassigned_mfa_devices = true\nstate_file = \"{}\"\n",
        log.display(),
        state.display()
    ));
    let before = listing(a.dir.path());

    let dry = a.forcemfa(&[
        "reconcile",
        "--config",
        config.to_str().unwrap(),
        "--dry-run",
    ]);
    assert_eq!(dry.code, 0, "{}", dry.stderr);
    assert_eq!(std::fs::read_to_string(&log).unwrap(), partial);
    assert_eq!(listing(a.dir.path()), before, "a dry run created a file");
    assert!(
        dry.stderr
            .contains("the audit log is usable and is left as it is"),
        "{}",
        dry.stderr
    );

    // The same with the audit log absent: it is not created.
    std::fs::remove_file(&log).unwrap();
    let dry = a.forcemfa(&[
        "reconcile",
        "--config",
        config.to_str().unwrap(),
        "--dry-run",
    ]);
    assert_eq!(dry.code, 0, "{}", dry.stderr);
    assert!(!log.exists() && !state.exists());
    assert!(a.members(GROUP).await.is_empty());
}

#[tokio::test]
async fn links_planted_where_the_state_file_is_rewritten_are_never_followed() {
    let a = Account::with_group().await;
    a.user("carol").await;
    let victim = victim(&a);
    let state = a.dir.path().join("state.json");
    // Every name a predictable temporary file could have.
    for name in ["state.tmp", ".state.json.tmp", "state.json.tmp"] {
        symlink(&victim, a.dir.path().join(name)).unwrap();
    }
    let config = a.config(&format!(
        "[cleanup]\nunassigned_mfa_devices = true\nstate_file = \"{}\"\n",
        state.display()
    ));
    let config = config.to_str().unwrap();
    in_both_modes(&a, &["reconcile", "--config", config], |dry_run, run| {
        assert_eq!(run.code, 0, "{}", run.stderr);
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), VICTIM_TEXT);
        assert_eq!(state.exists(), !dry_run, "dry run {dry_run}");
    });
    assert!(std::fs::symlink_metadata(&state).unwrap().is_file());

    // The state file itself replaced by a link: refused before anything is read or changed.
    std::fs::remove_file(&state).unwrap();
    symlink(&victim, &state).unwrap();
    a.user("dave").await;
    let run = a.forcemfa(&["reconcile", "--config", config]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("cleanup.state_file") && run.stderr.contains("symbolic link"),
        "{}",
        run.stderr
    );
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), VICTIM_TEXT);
    assert_eq!(a.members(GROUP).await, crate::support::set(&["carol"]));
}

#[tokio::test]
async fn a_metrics_file_that_is_a_link_is_refused_before_the_run() {
    let a = Account::with_group().await;
    a.user("carol").await;
    let victim = victim(&a);
    let prom = a.dir.path().join("forcemfa.prom");
    symlink(&victim, &prom).unwrap();
    let file = prom.to_str().unwrap();
    in_both_modes(&a, &["reconcile", "--metrics-file", file], |_, run| {
        assert_eq!(run.code, 2, "{}", run.stderr);
        assert!(
            run.stderr.contains(&format!("--metrics-file `{file}`"))
                && run.stderr.contains("symbolic link"),
            "{}",
            run.stderr
        );
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), VICTIM_TEXT);
        assert!(std::fs::symlink_metadata(&prom)
            .unwrap()
            .file_type()
            .is_symlink());
    });
    assert!(a.members(GROUP).await.is_empty(), "a change was made");
}

#[tokio::test]
async fn modes_are_exact_whatever_the_umask() {
    let a = Account::with_group().await;
    a.user("carol").await;
    let dir = a.dir.path();
    let (log, state, prom) = (
        dir.join("audit.jsonl"),
        dir.join("state.json"),
        dir.join("forcemfa.prom"),
    );
    let config = a.config(&format!(
        "audit_log = \"{}\"\n[cleanup]\nunassigned_mfa_devices = true\nstate_file = \"{}\"\n",
        log.display(),
        state.display()
    ));
    let before = listing(dir);
    // Every bit allowed (umask 0): only forcemfa's own modes keep the records private.
    let mut cmd = a.command(
        &a.moto.endpoint,
        &[
            "reconcile",
            "--config",
            config.to_str().unwrap(),
            "--metrics-file",
            prom.to_str().unwrap(),
        ],
    );
    let run = run(with_umask(&mut cmd, 0));
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(mode(&log), 0o600);
    assert_eq!(mode(&state), 0o600);
    assert_eq!(mode(&prom), 0o644);
    // No temporary file is left behind.
    let mut expected = before;
    expected.extend(["audit.jsonl", "state.json", "forcemfa.prom"].map(String::from));
    assert_eq!(listing(dir), expected);
}
