//! The deployment files: systemd units, the container image, the Kubernetes manifests. Checked
//! with the tools their platforms trust, since no container engine or cluster runs here;
//! `scripts/e2e-systemd` boots a real systemd for the units.

use std::path::PathBuf;
use std::process::Command;

use crate::support::files::{check, read, readme_blocks, repo};

const UNITS: [&str; 3] = [
    "forcemfa.service",
    "forcemfa-reconcile.service",
    "forcemfa-reconcile.timer",
];

#[test]
fn systemd_units_pass_systemd_analyze_verify() {
    // verify insists that ExecStart exists: point the units at the binary just built.
    let dir = tempfile::tempdir().unwrap();
    for unit in UNITS {
        let text = read(&format!("deploy/systemd/{unit}"))
            .replace("/usr/local/bin/forcemfa", env!("CARGO_BIN_EXE_forcemfa"));
        std::fs::write(dir.path().join(unit), text).unwrap();
    }
    let mut cmd = Command::new("systemd-analyze");
    cmd.arg("verify").arg("--man=no").current_dir(dir.path());
    for unit in UNITS {
        cmd.arg(format!("./{unit}"));
    }
    check(&mut cmd, "systemd-analyze verify", |_| false);
}

/// The `[Service]` lines of a unit, without comments.
fn unit_lines(unit: &str) -> Vec<String> {
    read(&format!("deploy/systemd/{unit}"))
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect()
}

#[test]
fn the_service_unit_is_a_hardened_notify_service() {
    let unit = unit_lines("forcemfa.service");
    for line in [
        "Type=notify",
        "WatchdogSec=60s",
        "ExecReload=/bin/sh -c 'kill -HUP $$MAINPID'",
        "Restart=on-failure",
        // A configuration error cannot be fixed by restarting.
        "RestartPreventExitStatus=2",
        "DynamicUser=yes",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "CapabilityBoundingSet=",
        "SystemCallFilter=@system-service",
        "EnvironmentFile=-/etc/forcemfa/forcemfa.env",
    ] {
        assert!(
            unit.iter().any(|l| l == line),
            "forcemfa.service lacks {line:?}"
        );
    }
    assert!(unit
        .iter()
        .any(|l| l.starts_with("RestrictAddressFamilies=")));
    let timer = unit_lines("forcemfa-reconcile.timer");
    assert!(timer.iter().any(|l| l == "OnCalendar=hourly"));
}

#[test]
fn both_units_run_as_one_transient_user_that_can_read_what_they_need() {
    for unit in ["forcemfa.service", "forcemfa-reconcile.service"] {
        let lines = unit_lines(unit);
        for line in [
            "DynamicUser=yes",
            "User=forcemfa",
            "Group=forcemfa",
            "StateDirectory=forcemfa",
        ] {
            assert!(lines.iter().any(|l| l == line), "{unit} lacks {line:?}");
        }
        // systemd keeps a configuration directory root's, with the mode given here: 0750 locked
        // the transient user out of its own configuration.
        assert!(
            !lines
                .iter()
                .any(|l| l.starts_with("ConfigurationDirectory")),
            "{unit}: ConfigurationDirectory"
        );
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("ExecStart=/usr/local/bin/forcemfa ")
                    && l.contains(" --config /etc/forcemfa/forcemfa.toml")),
            "{unit} reads /etc/forcemfa/forcemfa.toml"
        );
    }
}

#[test]
fn every_failed_timer_run_fails_the_unit() {
    // With SuccessExitStatus=1 3, a run that could not even get credentials counted as a
    // success and never showed in `systemctl --failed`.
    let lines = unit_lines("forcemfa-reconcile.service");
    assert!(lines.iter().any(|l| l == "Type=oneshot"));
    assert!(
        !lines.iter().any(|l| l.starts_with("SuccessExitStatus")),
        "forcemfa-reconcile.service turns failed runs into successes"
    );
    // Longer than the run's own deadline (45 minutes), so that forcemfa reports rather than dies.
    assert!(lines.iter().any(|l| l == "TimeoutStartSec=50min"));
}

#[test]
fn the_readme_installs_what_the_units_can_read() {
    let blocks = readme_blocks("### systemd", "sh");
    // scripts/e2e-systemd runs these six blocks in this order.
    assert_eq!(blocks.len(), 6, "{blocks:#?}");
    let all = blocks.concat();
    for line in [
        "install -m 0755 target/release/forcemfa /usr/local/bin/forcemfa",
        "install -m 0644 config/forcemfa.toml /etc/forcemfa/forcemfa.toml",
        "install -m 0600 deploy/systemd/forcemfa.env /etc/forcemfa/forcemfa.env",
        "systemctl enable --now forcemfa",
        "systemctl enable --now forcemfa-reconcile.timer",
    ] {
        assert!(all.lines().any(|l| l == line), "README lacks {line:?}");
    }
    // What the blocks install from the repository exists.
    for word in all.split_whitespace() {
        if word.starts_with("config/") || word.starts_with("deploy/") {
            assert!(
                repo(word).exists(),
                "README installs {word}, which is missing"
            );
        }
    }
    // systemd's own lines about a unit are not JSON: match the process's unit, not -u.
    for line in all.lines().filter(|l| l.contains("journalctl")) {
        assert!(line.contains("_SYSTEMD_UNIT="), "{line}");
        assert!(!line.contains(" -u "), "{line}");
    }
    // No home directory, so no profile: credentials come from the environment file or a role.
    assert!(!all.contains("AWS_PROFILE"));
    let env = read("deploy/systemd/forcemfa.env");
    for line in env.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
        assert!(
            line.contains('=') && !line.starts_with("AWS_PROFILE"),
            "{line}"
        );
    }
}

#[test]
fn dockerfile_passes_hadolint_and_builds_as_documented() {
    check(
        Command::new("hadolint").arg(repo("deploy/container/Dockerfile")),
        "hadolint",
        |_| false,
    );
    let dockerfile = read("deploy/container/Dockerfile");
    assert_eq!(dockerfile.matches("\nFROM ").count(), 2, "multi-stage");
    assert!(dockerfile.contains("cargo build --release --locked"));
    assert!(dockerfile.contains("USER 65532:65532"), "non-root");
    assert!(dockerfile.contains("CMD [\"/usr/local/bin/forcemfa\", \"healthcheck\"]"));
    // What the image copies exists, and its configuration is valid.
    for copied in [
        "Cargo.toml",
        "Cargo.lock",
        "src",
        "deploy/container/forcemfa.toml",
    ] {
        assert!(repo(copied).exists(), "{copied}");
    }
    forcemfa::config::Config::parse(&read("deploy/container/forcemfa.toml")).unwrap();
}

#[test]
fn kubernetes_manifests_validate_against_the_api_schemas() {
    let dir = repo("deploy/kubernetes");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 4);
    check(
        Command::new("kubernetes-validate")
            .arg("--strict")
            .args(&files),
        "kubernetes-validate",
        |l| l.starts_with("INFO ") && l.contains(" passed for resource "),
    );

    let deployment = read("deploy/kubernetes/deployment.yaml");
    for needle in [
        "path: /healthz",
        "path: /readyz",
        "readOnlyRootFilesystem: true",
        "runAsNonRoot: true",
        "allowPrivilegeEscalation: false",
        "drop: [\"ALL\"]",
        "limits:",
    ] {
        assert!(
            deployment.contains(needle),
            "deployment.yaml lacks {needle}"
        );
    }
    let account = read("deploy/kubernetes/serviceaccount.yaml");
    assert!(account.contains("eks.amazonaws.com/role-arn"));
    assert!(read("deploy/kubernetes/cronjob.yaml").contains("\"reconcile\""));
}

#[test]
fn the_configmap_holds_a_valid_configuration() {
    let text = read("deploy/kubernetes/configmap.yaml");
    let start =
        text.find("forcemfa.toml: |").expect("forcemfa.toml key") + "forcemfa.toml: |".len();
    let body: String = text[start..]
        .lines()
        .skip(1)
        .take_while(|l| l.is_empty() || l.starts_with("    "))
        .map(|l| l.get(4..).unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    let config = forcemfa::config::Config::parse(&body).unwrap();
    assert_eq!(config.admin_listen.to_string(), "0.0.0.0:9464");
}
