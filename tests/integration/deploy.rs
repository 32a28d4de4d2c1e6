//! The deployment files: systemd units, the container image, the Kubernetes manifests, the
//! CloudFormation template. Checked with the tools their platforms trust, since no container
//! engine or cluster runs here; `scripts/e2e-systemd` boots a real systemd for the units.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::support::files::{check, output, read, readme_blocks, repo, yaml_documents};

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
        "LimitNOFILE=65536",
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
    forcemfa::config::Config::parse(&read("deploy/container/forcemfa.toml")).unwrap();
}

/// The sources of the Dockerfile's `COPY` instructions that come from the build context.
fn copied_from_context(dockerfile: &str) -> Vec<String> {
    let mut sources = Vec::new();
    for line in dockerfile.lines() {
        let Some(rest) = line.strip_prefix("COPY ") else {
            continue;
        };
        if rest.contains("--from=") {
            continue;
        }
        let words: Vec<&str> = rest.split_whitespace().collect();
        sources.extend(
            words[..words.len() - 1]
                .iter()
                .map(std::string::ToString::to_string),
        );
    }
    sources
}

#[test]
fn the_build_context_holds_what_the_dockerfile_copies_and_nothing_big() {
    // The context as Docker computes it from .dockerignore (docker-py's implementation).
    let script = "import json, os\n\
        from docker.utils.build import exclude_paths\n\
        lines = open('.dockerignore').readlines() if os.path.exists('.dockerignore') else []\n\
        patterns = [l.strip() for l in lines if l.strip() and not l.startswith('#')]\n\
        print(json.dumps(sorted(exclude_paths('.', patterns, dockerfile='deploy/container/Dockerfile'))))";
    let (ok, text) = output(
        Command::new("python3")
            .args(["-c", script])
            .current_dir(repo(".")),
        "docker-py",
    );
    assert!(ok, "{text}");
    let context: Vec<String> = serde_json::from_str(&text).expect("JSON list");
    for source in copied_from_context(&read("deploy/container/Dockerfile")) {
        let source = source.trim_end_matches('/');
        assert!(
            context.iter().any(|p| p == source),
            "the Dockerfile copies {source}, which the context lacks"
        );
    }
    assert!(context.iter().any(|p| p == "src/main.rs"));
    for left_out in ["target", ".git", "tests", "README.md"] {
        assert!(
            !context
                .iter()
                .any(|p| p == left_out || p.starts_with(&format!("{left_out}/"))),
            "{left_out} is sent as build context"
        );
    }
    let bytes: u64 = context
        .iter()
        .filter_map(|p| std::fs::metadata(repo(p)).ok())
        .filter(std::fs::Metadata::is_file)
        .map(|m| m.len())
        .sum();
    assert!(bytes < 4 << 20, "the build context is {bytes} bytes");
}

#[test]
fn the_image_carries_oci_labels_and_no_one_elses_registry() {
    let dockerfile = read("deploy/container/Dockerfile");
    for label in [
        "org.opencontainers.image.title=",
        "org.opencontainers.image.description=",
        "org.opencontainers.image.version=",
        "org.opencontainers.image.revision=",
        "org.opencontainers.image.licenses=\"Apache-2.0\"",
    ] {
        assert!(dockerfile.contains(label), "no label {label}");
    }
    let version = read("Cargo.toml")
        .lines()
        .find_map(|l| l.strip_prefix("version = "))
        .map(|v| v.trim_matches('"').to_string())
        .expect("version");
    assert!(
        dockerfile.contains(&format!("ARG VERSION={version}\n")),
        "the image's version label is not Cargo.toml's {version}"
    );
    // Nothing publishes an image: the README and the manifests name none, and an overlay sets it.
    let mut texts = vec![("README.md".to_string(), read("README.md"))];
    for file in files_under(&repo("deploy/kubernetes")) {
        let text = std::fs::read_to_string(&file).unwrap();
        texts.push((file.display().to_string(), text));
    }
    for (name, text) in texts {
        for registry in ["ghcr.io", "docker.io", "quay.io", "public.ecr.aws"] {
            assert!(!text.contains(registry), "{name} names {registry}");
        }
    }
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(files_under(&path));
        } else {
            files.push(path);
        }
    }
    files.sort();
    files
}

/// `kubectl kustomize DIR`: the manifests it renders, as text and as JSON documents.
fn kustomize(dir: &Path) -> (String, Vec<Value>) {
    let (ok, text) = output(
        Command::new("kubectl").arg("kustomize").arg(dir),
        "kubectl kustomize",
    );
    assert!(ok, "kubectl kustomize {}:\n{text}", dir.display());
    let docs = yaml_documents(&text);
    (text, docs)
}

fn kinds(docs: &[Value]) -> Vec<String> {
    docs.iter()
        .map(|d| d["kind"].as_str().unwrap_or("?").to_string())
        .collect()
}

/// Validates rendered manifests against the Kubernetes API schemas; kinds of the Prometheus
/// Operator have none there, and are let through.
fn validate(text: &str) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("manifests.yaml");
    std::fs::write(&file, text).unwrap();
    check(
        Command::new("kubernetes-validate")
            .arg("--strict")
            .arg(&file),
        "kubernetes-validate",
        |l| {
            (l.starts_with("INFO ") && l.contains(" passed for resource "))
                || (l.starts_with("WARN ")
                    && l.contains("Couldn't find schema for kind PodMonitor with api version monitoring.coreos.com/v1"))
        },
    );
}

fn the(docs: &[Value], kind: &str) -> Value {
    let found: Vec<&Value> = docs.iter().filter(|d| d["kind"] == kind).collect();
    assert_eq!(found.len(), 1, "one {kind} in {:?}", kinds(docs));
    found[0].clone()
}

/// The pod spec of a Deployment or a CronJob.
fn pod_spec(workload: &Value) -> Value {
    match workload["kind"].as_str() {
        Some("CronJob") => workload["spec"]["jobTemplate"]["spec"]["template"]["spec"].clone(),
        _ => workload["spec"]["template"]["spec"].clone(),
    }
}

#[test]
fn each_kubernetes_variant_starts_one_reconciler_and_its_namespace_first() {
    // `kubectl apply -f deploy/kubernetes/` applied both variants, the namespace last.
    let top: Vec<PathBuf> = std::fs::read_dir(repo("deploy/kubernetes"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    assert!(top.is_empty(), "manifests beside the variants: {top:?}");

    for (variant, workload) in [("service", "Deployment"), ("cronjob", "CronJob")] {
        let (text, docs) = kustomize(&repo(&format!("deploy/kubernetes/{variant}")));
        validate(&text);
        let kinds = kinds(&docs);
        assert_eq!(kinds[0], "Namespace", "{variant}: {kinds:?}");
        let reconcilers = kinds
            .iter()
            .filter(|k| *k == "Deployment" || *k == "CronJob")
            .count();
        assert_eq!(reconcilers, 1, "{variant}: {kinds:?}");
        let workload = the(&docs, workload);
        for doc in docs.iter().filter(|d| d["kind"] != "Namespace") {
            assert_eq!(doc["metadata"]["namespace"], "forcemfa", "{doc}");
        }

        // The configuration the pod mounts is the generated ConfigMap, and is valid.
        let config_map = the(&docs, "ConfigMap");
        let spec = pod_spec(&workload);
        assert_eq!(
            spec["volumes"][0]["configMap"]["name"],
            config_map["metadata"]["name"]
        );
        let toml = config_map["data"]["forcemfa.toml"].as_str().expect("data");
        let config = forcemfa::config::Config::parse(toml).unwrap();
        assert_eq!(config.admin_listen.to_string(), "0.0.0.0:9464");

        let container = &spec["containers"][0];
        assert_eq!(container["image"], "forcemfa", "set by an overlay");
        assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
        assert_eq!(
            container["securityContext"]["allowPrivilegeEscalation"],
            false
        );
        assert_eq!(
            container["securityContext"]["capabilities"]["drop"],
            serde_json::json!(["ALL"])
        );
        assert!(container["resources"]["limits"].is_object());
        assert_eq!(spec["securityContext"]["runAsNonRoot"], true);
        let account = the(&docs, "ServiceAccount");
        assert!(account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].is_string());
    }
}

#[test]
fn the_service_variant_is_scraped_whatever_its_readiness() {
    let (_, docs) = kustomize(&repo("deploy/kubernetes/service"));
    let deployment = the(&docs, "Deployment");
    let container = &pod_spec(&deployment)["containers"][0];
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(container["args"][0], "run");
    let annotations = &deployment["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(annotations["prometheus.io/scrape"], "true");
    assert_eq!(annotations["prometheus.io/port"], "9464");
    assert_eq!(annotations["prometheus.io/path"], "/metrics");
    let service = the(&docs, "Service");
    assert_eq!(service["spec"]["publishNotReadyAddresses"], true);

    let (_, docs) = kustomize(&repo("deploy/kubernetes/cronjob"));
    let cronjob = the(&docs, "CronJob");
    assert_eq!(pod_spec(&cronjob)["containers"][0]["args"][0], "reconcile");
    assert_eq!(cronjob["spec"]["concurrencyPolicy"], "Forbid");
}

#[test]
fn the_readme_overlay_builds_with_the_pod_monitor() {
    // The README's overlay, beside a checkout named forcemfa, exactly as written there.
    let blocks = readme_blocks("### Kubernetes", "yaml");
    assert_eq!(blocks.len(), 1, "{blocks:#?}");
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(repo("."), dir.path().join("forcemfa")).unwrap();
    let overlay = dir.path().join("my-forcemfa");
    std::fs::create_dir(&overlay).unwrap();
    std::fs::write(overlay.join("kustomization.yaml"), &blocks[0]).unwrap();
    std::fs::copy(
        repo("deploy/kubernetes/base/forcemfa.toml"),
        overlay.join("forcemfa.toml"),
    )
    .unwrap();

    let (text, docs) = kustomize(&overlay);
    validate(&text);
    assert_eq!(kinds(&docs)[0], "Namespace");
    let deployment = the(&docs, "Deployment");
    let image = pod_spec(&deployment)["containers"][0]["image"].clone();
    assert_eq!(image, "registry.example.com/security/forcemfa:0.1.0");
    let account = the(&docs, "ServiceAccount");
    assert_eq!(
        account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"],
        "arn:aws:iam::123456789012:role/forcemfa"
    );
    let monitor = the(&docs, "PodMonitor");
    assert_eq!(monitor["spec"]["jobLabel"], "app.kubernetes.io/name");
    assert_eq!(monitor["spec"]["podMetricsEndpoints"][0]["port"], "admin");
    // The pod monitor finds the pod by its labels, on its named port, as job "forcemfa".
    let labels = &deployment["spec"]["template"]["metadata"]["labels"];
    for (k, v) in monitor["spec"]["selector"]["matchLabels"]
        .as_object()
        .unwrap()
    {
        assert_eq!(&labels[k], v);
    }
    assert_eq!(labels["app.kubernetes.io/name"], "forcemfa");
    assert_eq!(
        pod_spec(&deployment)["containers"][0]["ports"][0]["name"],
        "admin"
    );
}

/// Evaluates a CloudFormation rule condition or assertion for the given parameter values.
fn cfn_eval(expr: &Value, params: &BTreeMap<String, String>) -> Value {
    let object = expr.as_object();
    let Some((function, args)) = object.and_then(|o| o.iter().next()) else {
        return expr.clone();
    };
    let list = || args.as_array().expect("a list of arguments");
    match function.as_str() {
        "Ref" => Value::String(params[args.as_str().expect("a parameter")].clone()),
        "Fn::Equals" => Value::Bool(cfn_eval(&list()[0], params) == cfn_eval(&list()[1], params)),
        "Fn::Not" => Value::Bool(cfn_eval(&list()[0], params) == Value::Bool(false)),
        "Fn::And" => Value::Bool(list().iter().all(|a| cfn_eval(a, params) == true)),
        "Fn::Or" => Value::Bool(list().iter().any(|a| cfn_eval(a, params) == true)),
        other => panic!("rule function {other} is not evaluated here"),
    }
}

/// The template's rules that fail for these parameters (the others at their defaults), in a stack
/// in us-east-1 unless `AWS::Region` is set.
fn failing_rules(template: &Value, set: &[(&str, &str)]) -> Vec<String> {
    let mut params: BTreeMap<String, String> = template["Parameters"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v["Default"].as_str().unwrap_or("").to_string()))
        .collect();
    params.insert("AWS::Region".to_string(), "us-east-1".to_string());
    for (k, v) in set {
        assert!(params.contains_key(*k), "no parameter {k}");
        params.insert(k.to_string(), v.to_string());
    }
    let mut failing = Vec::new();
    for (name, rule) in template["Rules"].as_object().expect("Rules") {
        let applies = rule
            .get("RuleCondition")
            .is_none_or(|c| cfn_eval(c, &params) == true);
        if applies
            && rule["Assertions"]
                .as_array()
                .unwrap()
                .iter()
                .any(|a| cfn_eval(&a["Assert"], &params) != true)
        {
            failing.push(name.clone());
        }
    }
    failing
}

#[test]
fn the_template_names_its_role_and_refuses_what_cannot_work() {
    let template: Value = serde_json::from_str(&read("deploy/aws/forcemfa.json")).unwrap();
    // A generated name never matches organization.role_name, nor the central grant on
    // role/${MemberRoleName}.
    let role = &template["Resources"]["ForceMfaRole"]["Properties"];
    assert_eq!(role["RoleName"], serde_json::json!({"Ref": "RoleName"}));
    assert_eq!(template["Parameters"]["RoleName"]["Default"], "forcemfa");
    let central = serde_json::to_string(&template["Resources"]["CentralPolicy"]).unwrap();
    assert!(central.contains(":role/${MemberRoleName}"));

    let ok: &[&[(&str, &str)]] = &[
        &[],
        &[("TrustedPrincipal", "ecs-tasks")],
        &[("MemberRoleName", "forcemfa")],
        &[
            ("TrustedPrincipal", "account"),
            ("CentralRoleArn", "arn:aws:iam::111111111111:role/forcemfa"),
        ],
        &[
            ("TrustedPrincipal", "account"),
            ("CentralRoleArn", "arn:aws:iam::111111111111:role/forcemfa"),
            ("ExternalId", "forcemfa-org"),
        ],
        &[
            ("TrustedPrincipal", "eks"),
            (
                "EksOidcProviderHost",
                "oidc.eks.us-east-1.amazonaws.com/id/EXAMPLE",
            ),
            ("MemberRoleName", "forcemfa"),
        ],
        &[("AWS::Region", "eu-west-1")],
        &[("EnableEvents", "true")],
        &[
            ("EnableEvents", "true"),
            ("OrganizationId", "o-a1b2c3d4e5"),
            ("MemberRoleName", "forcemfa"),
        ],
        &[
            (
                "NotifyTopicArn",
                "arn:aws:sns:eu-west-1:123456789012:forcemfa-admins",
            ),
            ("NotifyEmailFrom", "forcemfa@example.com"),
            ("MemberRoleName", "forcemfa"),
        ],
        &[
            ("TrustedPrincipal", "lambda"),
            ("LambdaArtifactBucket", "forcemfa-artifacts"),
            ("LambdaArtifactKey", "forcemfa/arm64/bootstrap.zip"),
            ("EnableEvents", "true"),
            (
                "LambdaAlarmTopicArn",
                "arn:aws:sns:us-east-1:123456789012:oncall",
            ),
        ],
    ];
    for set in ok {
        assert_eq!(
            failing_rules(&template, set),
            Vec::<String>::new(),
            "{set:?}"
        );
    }
    let refused: &[(&[(&str, &str)], &str)] = &[
        (
            &[("TrustedPrincipal", "account")],
            "AccountTrustNamesTheCentralRole",
        ),
        (
            &[
                ("TrustedPrincipal", "account"),
                ("CentralRoleArn", "arn:aws:iam::111111111111:role/forcemfa"),
                ("MemberRoleName", "forcemfa"),
            ],
            "AccountTrustIsNotTheCentralAccount",
        ),
        (
            &[("TrustedPrincipal", "eks")],
            "EksTrustNamesTheClusterIssuer",
        ),
        (
            &[("CentralRoleArn", "arn:aws:iam::111111111111:role/forcemfa")],
            "CentralRoleAndExternalIdOnlyWithAccountTrust",
        ),
        (
            &[("ExternalId", "forcemfa-org")],
            "CentralRoleAndExternalIdOnlyWithAccountTrust",
        ),
        (
            &[("EnableEvents", "true"), ("AWS::Region", "eu-west-1")],
            "EventsAreDeliveredInUsEast1",
        ),
        (
            &[
                ("TrustedPrincipal", "account"),
                ("CentralRoleArn", "arn:aws:iam::111111111111:role/forcemfa"),
                ("EnableEvents", "true"),
            ],
            "EventsAreNotForMemberAccountStacks",
        ),
        (
            &[("OrganizationId", "o-a1b2c3d4e5")],
            "OrganizationIdOnlyWithEvents",
        ),
        (
            &[
                ("TrustedPrincipal", "account"),
                ("CentralRoleArn", "arn:aws:iam::111111111111:role/forcemfa"),
                ("NotifyEmailFrom", "forcemfa@example.com"),
            ],
            "NotificationsAreSentFromTheCentralAccount",
        ),
        (
            &[
                ("TrustedPrincipal", "lambda"),
                ("LambdaArtifactKey", "forcemfa/arm64/bootstrap.zip"),
            ],
            "LambdaNeedsItsArtifact",
        ),
        (
            &[("LambdaArtifactBucket", "forcemfa-artifacts")],
            "LambdaArtifactOnlyWithLambda",
        ),
        (
            &[
                ("TrustedPrincipal", "lambda"),
                ("LambdaArtifactBucket", "forcemfa-artifacts"),
                ("LambdaArtifactKey", "forcemfa/arm64/bootstrap.zip"),
                ("CleanupUnassignedMfaDevices", "true"),
            ],
            "LambdaKeepsNoCleanupRecord",
        ),
    ];
    for (set, rule) in refused {
        assert_eq!(failing_rules(&template, set), [rule.to_string()], "{set:?}");
    }

    // A member account's forwarding rule, like the queue's, only fires in us-east-1.
    let member: Value =
        serde_json::from_str(&read("deploy/aws/forcemfa-events-member.json")).unwrap();
    let bus = (
        "CentralEventBusArn",
        "arn:aws:events:us-east-1:111111111111:event-bus/forcemfa-iam-events",
    );
    assert_eq!(failing_rules(&member, &[bus]), Vec::<String>::new());
    assert_eq!(
        failing_rules(&member, &[bus, ("AWS::Region", "us-west-2")]),
        ["EventsAreDeliveredInUsEast1"]
    );
}

#[test]
fn the_logrotate_snippet_rotates_the_audit_log_and_reloads_the_service() {
    let snippet = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/logrotate/forcemfa"
    ))
    .unwrap();
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let path = "/var/lib/forcemfa/audit.jsonl";
    assert!(snippet.contains(&format!("{path} {{")), "{snippet}");
    assert!(readme.contains(&format!("audit_log = \"{path}\"")));
    assert!(
        snippet.contains("systemctl reload forcemfa.service"),
        "{snippet}"
    );
    // Renaming and reopening, never copying and truncating: a truncation could cut a record.
    assert!(!snippet.contains("copytruncate"), "{snippet}");
    if let Ok(out) = std::process::Command::new("logrotate")
        .args(["--debug", "--state", "/dev/null"])
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/deploy/logrotate/forcemfa"
        ))
        .output()
    {
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("error"), "logrotate --debug: {stderr}");
    }
}
