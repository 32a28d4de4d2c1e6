//! The deployment files: systemd units, the container image, the Kubernetes manifests. Checked
//! with the tools their platforms trust, since no container engine or cluster runs here.

use std::path::PathBuf;
use std::process::Command;

use crate::support::files::{check, read, repo};

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

#[test]
fn the_service_unit_is_a_hardened_notify_service() {
    let unit = read("deploy/systemd/forcemfa.service");
    for line in [
        "Type=notify",
        "WatchdogSec=",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "Restart=on-failure",
        "DynamicUser=yes",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "CapabilityBoundingSet=\n",
        "RestrictAddressFamilies=",
        "SystemCallFilter=@system-service",
        "EnvironmentFile=",
    ] {
        assert!(unit.contains(line), "forcemfa.service lacks {line:?}");
    }
    let timer = read("deploy/systemd/forcemfa-reconcile.timer");
    assert!(timer.contains("OnCalendar=hourly"));
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
