//! The policies forcemfa depends on, `forcemfa bootstrap`, and the account checks around them:
//! the group's policy, abandoned virtual MFA devices, the root user's MFA.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use forcemfa::arn::Partition;
use forcemfa::config::GroupPolicySettings;
use serde_json::Value;

use crate::support::{names, Account, ACCOUNT_ID};

const GROUP: &str = "ForceMFA";

fn policy(a: &Account, args: &[&str]) -> Value {
    let mut all = vec!["policy"];
    all.extend_from_slice(args);
    let run = a.forcemfa(&all);
    assert_eq!(run.code, 0, "{}", run.stderr);
    serde_json::from_str(&run.stdout).expect("policy JSON")
}

async fn group_policy_document(a: &Account) -> Option<Value> {
    let out = a
        .iam
        .get_group_policy()
        .group_name(GROUP)
        .policy_name("forcemfa-require-mfa")
        .send()
        .await
        .ok()?;
    forcemfa::policy::decode_document(out.policy_document()).ok()
}

/// Parliament's findings of medium severity or worse.
fn parliament(document: &Value) -> Vec<Value> {
    let out = Command::new("parliament")
        .args(["--string", &document.to_string(), "--json"])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("parliament runs (scripts/ensure-tools installs it)");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str::<Value>(l).expect("parliament JSON"))
        .filter(|f| matches!(f["severity"].as_str(), Some("MEDIUM" | "HIGH" | "CRITICAL")))
        .collect()
}

#[tokio::test]
async fn policies_pass_parliament() {
    let a = Account::empty();
    let cleanup = a.config(
        "[cleanup]\nunassigned_mfa_devices = true\n[organization]\nrole_name = \"forcemfa\"\n[[accounts]]\nrole_arn = \"arn:aws:iam::222222222222:role/forcemfa\"\n\
         [events]\nqueue_url = \"https://sqs.us-east-1.amazonaws.com/123456789012/forcemfa-events\"\n\
         [notify]\nsns_topic_arn = \"arn:aws:sns:us-east-1:123456789012:forcemfa-admins\"\n\
         email_from = \"forcemfa@mail.example.com\"\n",
    );
    let cleanup = cleanup.to_str().unwrap();
    for partition in Partition::ALL {
        let p = partition.as_str();
        for args in [
            vec![
                "force-mfa-group",
                "--account-id",
                ACCOUNT_ID,
                "--partition",
                p,
            ],
            vec!["daemon", "--account-id", ACCOUNT_ID, "--partition", p],
            vec![
                "daemon",
                "--account-id",
                ACCOUNT_ID,
                "--partition",
                p,
                "--config",
                cleanup,
            ],
        ] {
            let doc = policy(&a, &args);
            assert_eq!(parliament(&doc), Vec::<Value>::new(), "{args:?}");
        }
    }
    // The check is real: a broken policy is flagged.
    let broken = serde_json::json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "iam:AddUserToGroup", "Resource": "arn:aws:s3:::bucket"}]});
    assert!(!parliament(&broken).is_empty());
}

#[tokio::test]
async fn without_an_account_id_the_callers_account_and_partition_are_used() {
    let a = Account::empty();
    let doc = policy(&a, &["force-mfa-group"]);
    assert!(doc
        .to_string()
        .contains(&format!("arn:aws:iam::{ACCOUNT_ID}:mfa/*")));
    let run = a.forcemfa(&["policy", "daemon", "--account-id", "12345"]);
    assert_eq!(run.code, 2);
}

/// Every ARN of both policies is in the partition asked for; without --partition, an account id
/// alone means `aws`.
#[tokio::test]
async fn policies_are_rendered_for_the_partition_asked_for() {
    let a = Account::empty();
    let config = a.config("[organization]\nrole_name = \"forcemfa\"\n");
    let config = config.to_str().unwrap();
    for (flag, partition) in [
        (None, "aws"),
        (Some("aws"), "aws"),
        (Some("aws-cn"), "aws-cn"),
        (Some("aws-us-gov"), "aws-us-gov"),
    ] {
        for which in ["force-mfa-group", "daemon"] {
            let mut args = vec![which, "--account-id", ACCOUNT_ID, "--config", config];
            if let Some(flag) = flag {
                args.extend(["--partition", flag]);
            }
            let text = policy(&a, &args).to_string();
            let arns: Vec<&str> = text.split('"').filter(|s| s.starts_with("arn:")).collect();
            assert!(!arns.is_empty(), "{text}");
            for arn in arns {
                assert!(
                    arn.starts_with(&format!("arn:{partition}:")),
                    "{args:?}: {arn}"
                );
            }
        }
    }
    // With the caller's account, --partition still decides.
    let text = policy(&a, &["force-mfa-group", "--partition", "aws-cn"]).to_string();
    assert!(
        text.contains(&format!("arn:aws-cn:iam::{ACCOUNT_ID}:mfa/*")),
        "{text}"
    );
    let run = a.forcemfa(&["policy", "force-mfa-group", "--partition", "aws-iso"]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("aws-us-gov"), "{}", run.stderr);
}

#[tokio::test]
async fn bootstrap_creates_is_idempotent_and_dry_run_changes_nothing() {
    let a = Account::empty();
    let dry = a.forcemfa(&["bootstrap", "--dry-run", "--output", "json"]);
    assert_eq!(dry.code, 0, "{}", dry.stderr);
    let report: Value = serde_json::from_str(&dry.stdout).unwrap();
    assert_eq!(report["group_created"], true);
    assert_eq!(report["policy"], "created");
    assert!(a.iam.get_group().group_name(GROUP).send().await.is_err());

    let run = a.forcemfa(&["bootstrap", "--output", "json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let expected = policy(&a, &["force-mfa-group", "--account-id", ACCOUNT_ID]);
    assert_eq!(group_policy_document(&a).await, Some(expected));

    let again = a.forcemfa(&["bootstrap", "--output", "json"]);
    let report: Value = serde_json::from_str(&again.stdout).unwrap();
    assert_eq!(report["group_created"], false);
    assert_eq!(report["policy"], "unchanged");
    assert_eq!(report["drift"], false);

    // With the policy in place, reconcile no longer warns about the group.
    let run = a.forcemfa(&["reconcile", "--output", "json"]);
    let acct = run.account();
    assert_eq!(acct["group_policy_enforces_mfa"], true);
    assert!(!acct["warnings"].to_string().contains("protects nothing"));
}

#[tokio::test]
async fn bootstrap_reports_and_repairs_drift() {
    let a = Account::with_group().await;
    let weakened = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iam:*","Resource":"*"}]}"#;
    a.iam
        .put_group_policy()
        .group_name(GROUP)
        .policy_name("forcemfa-require-mfa")
        .policy_document(weakened)
        .send()
        .await
        .unwrap();
    let before = group_policy_document(&a).await;

    let dry = a.forcemfa(&["bootstrap", "--dry-run", "--output", "json"]);
    let report: Value = serde_json::from_str(&dry.stdout).unwrap();
    assert_eq!(report["drift"], true);
    assert_eq!(report["policy"], "updated");
    assert_eq!(
        group_policy_document(&a).await,
        before,
        "dry run changed the policy"
    );
    assert!(dry.stderr.contains("group policy drift"));

    let run = a.forcemfa(&["bootstrap"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("drifted"), "{}", run.stdout);
    let expected = policy(&a, &["force-mfa-group", "--account-id", ACCOUNT_ID]);
    assert_eq!(group_policy_document(&a).await, Some(expected));
}

/// The group policy forcemfa rendered before it denied other users' MFA and enrolment with an
/// access key alone: a group that still holds it has drifted, and bootstrap replaces it.
#[tokio::test]
async fn bootstrap_replaces_the_previous_group_policy() {
    let a = Account::with_group().await;
    let own = serde_json::json!([
        format!("arn:aws:iam::{ACCOUNT_ID}:user/${{aws:username}}"),
        format!("arn:aws:iam::{ACCOUNT_ID}:user/*/${{aws:username}}"),
    ]);
    let previous = serde_json::json!({
        "Version": "2012-10-17",
        "Id": "forcemfa-ForceMFA",
        "Statement": [
            {"Sid": "AllowListingForTheConsole", "Effect": "Allow",
             "Action": ["iam:ListUsers", "iam:ListVirtualMFADevices", "iam:GetAccountPasswordPolicy"],
             "Resource": "*"},
            {"Sid": "AllowViewingOwnUserAndMfaDevices", "Effect": "Allow",
             "Action": ["iam:GetUser", "iam:ListMFADevices"], "Resource": own},
            {"Sid": "AllowCreatingVirtualMfaDevicesOfAnyName", "Effect": "Allow",
             "Action": "iam:CreateVirtualMFADevice",
             "Resource": format!("arn:aws:iam::{ACCOUNT_ID}:mfa/*")},
            {"Sid": "AllowEnablingOwnMfaDevices", "Effect": "Allow",
             "Action": ["iam:EnableMFADevice", "iam:ResyncMFADevice"], "Resource": own},
            {"Sid": "AllowChangingOwnPassword", "Effect": "Allow",
             "Action": "iam:ChangePassword", "Resource": own},
            {"Sid": "AllowDeactivatingOwnMfaOnlyWithMfa", "Effect": "Allow",
             "Action": "iam:DeactivateMFADevice", "Resource": own,
             "Condition": {"Bool": {"aws:MultiFactorAuthPresent": "true"}}},
            {"Sid": "DenyEverythingElseWithoutMfa", "Effect": "Deny",
             "NotAction": ["iam:ChangePassword", "iam:CreateVirtualMFADevice",
                "iam:EnableMFADevice", "iam:GetAccountPasswordPolicy", "iam:GetUser",
                "iam:ListMFADevices", "iam:ListUsers", "iam:ListVirtualMFADevices",
                "iam:ResyncMFADevice", "sts:GetSessionToken"],
             "Resource": "*",
             "Condition": {"BoolIfExists": {"aws:MultiFactorAuthPresent": "false"}}}
        ]
    });
    a.iam
        .put_group_policy()
        .group_name(GROUP)
        .policy_name("forcemfa-require-mfa")
        .policy_document(previous.to_string())
        .send()
        .await
        .unwrap();
    // It still denies access without MFA, so reconcile does not complain about it.
    let run = a.forcemfa(&["reconcile", "--output", "json"]);
    assert_eq!(run.account()["group_policy_enforces_mfa"], true);

    let run = a.forcemfa(&["bootstrap", "--output", "json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let report: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(report["drift"], true);
    assert_eq!(report["policy"], "updated");
    assert!(run.stderr.contains("group policy drift"), "{}", run.stderr);
    let expected = policy(&a, &["force-mfa-group", "--account-id", ACCOUNT_ID]);
    assert_eq!(group_policy_document(&a).await, Some(expected.clone()));
    assert_ne!(expected, previous);

    let again = a.forcemfa(&["bootstrap"]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(again.stdout.contains("up to date"), "{}", again.stdout);

    // The option is the configuration's, for bootstrap as for the policy command.
    let config = a.config("[group_policy]\nallow_enrolment_with_access_keys = true\n");
    let config = config.to_str().unwrap();
    let run = a.forcemfa(&["bootstrap", "--config", config, "--output", "json"]);
    let report: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(report["policy"], "updated", "{}", run.stderr);
    let allowing = policy(
        &a,
        &[
            "force-mfa-group",
            "--account-id",
            ACCOUNT_ID,
            "--config",
            config,
        ],
    );
    assert_eq!(group_policy_document(&a).await, Some(allowing.clone()));
    assert!(!allowing.to_string().contains("\"Null\""));
}

#[tokio::test]
async fn a_group_without_an_mfa_deny_is_warned_about_and_an_attached_one_counts() {
    let a = Account::with_group().await;
    a.user("carol").await;
    let run = a.forcemfa(&["reconcile", "--output", "json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let acct = run.account();
    assert_eq!(acct["group_policy_enforces_mfa"], false);
    assert!(
        acct["warnings"].to_string().contains("protects nothing"),
        "{acct}"
    );
    assert!(run.stderr.contains("protects nothing"));
    // Enforcement goes on regardless.
    assert_eq!(names(&acct["added"]), ["carol"]);

    // A customer managed policy attached to the group counts as well as an inline one.
    let document = policy(&a, &["force-mfa-group", "--account-id", ACCOUNT_ID]);
    let created = a
        .iam
        .create_policy()
        .policy_name("require-mfa")
        .policy_document(document.to_string())
        .send()
        .await
        .unwrap();
    let arn = created.policy().unwrap().arn().unwrap().to_string();
    a.iam
        .attach_group_policy()
        .group_name(GROUP)
        .policy_arn(&arn)
        .send()
        .await
        .unwrap();
    let run = a.forcemfa(&["reconcile", "--output", "json"]);
    assert_eq!(run.account()["group_policy_enforces_mfa"], true);
}

#[tokio::test]
async fn root_mfa_is_reported_as_a_warning_only() {
    let a = Account::with_group().await;
    let run = a.forcemfa(&["reconcile", "--output", "json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let acct = run.account();
    assert_eq!(acct["root_mfa_enabled"], false);
    assert!(acct["warnings"]
        .to_string()
        .contains("root user has no MFA"));
}

async fn abandoned_device(a: &Account, name: &str) -> String {
    a.iam
        .create_virtual_mfa_device()
        .virtual_mfa_device_name(name)
        .send()
        .await
        .unwrap()
        .virtual_mfa_device()
        .unwrap()
        .serial_number()
        .to_string()
}

async fn device_exists(a: &Account, serial: &str) -> bool {
    let out = a.iam.list_virtual_mfa_devices().send().await.unwrap();
    out.virtual_mfa_devices()
        .iter()
        .any(|d| d.serial_number() == serial)
}

#[tokio::test]
async fn unassigned_devices_are_reported_and_left_alone_by_default() {
    let a = Account::with_group().await;
    a.user("alice").await.virtual_mfa().await;
    let serial = abandoned_device(&a, "carol-phone").await;

    let run = a.forcemfa(&["reconcile", "--output", "json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let acct = run.account();
    assert_eq!(names(&acct["unassigned_mfa_devices"]), vec![serial.clone()]);
    assert!(names(&acct["deleted_mfa_devices"]).is_empty());
    assert!(device_exists(&a, &serial).await);
}

/// Moves the first sighting of `serial` in a state file `secs` into the past, as if that much
/// time had gone by since.
fn age_sighting(state: &Path, serial: &str, secs: u64) {
    let mut record: Value = serde_json::from_str(&std::fs::read_to_string(state).unwrap()).unwrap();
    let first_seen = record["first_seen"][serial].as_u64().expect("a sighting");
    record["first_seen"][serial] = (first_seen - secs).into();
    std::fs::write(state, record.to_string()).unwrap();
}

#[tokio::test]
async fn cleanup_deletes_only_devices_seen_unassigned_long_enough() {
    let a = Account::with_group().await;
    let old = abandoned_device(&a, "old-attempt").await;
    let state = a.dir.path().join("state.json");
    let config = a.config(&format!(
        "[cleanup]\nunassigned_mfa_devices = true\nunassigned_min_age = \"5m\"\nstate_file = \"{}\"\n",
        state.display()
    ));
    let config = config.to_str().unwrap();

    // First sighting: too young to delete.
    let run = a.forcemfa(&["reconcile", "--config", config, "--output", "json"]);
    assert!(names(&run.account()["deleted_mfa_devices"]).is_empty());
    assert!(Path::new(&state).exists());

    age_sighting(&state, &old, 5 * 60);
    let young = abandoned_device(&a, "setting-up-now").await;

    let dry = a.forcemfa(&[
        "reconcile",
        "--config",
        config,
        "--dry-run",
        "--output",
        "json",
    ]);
    assert_eq!(
        names(&dry.account()["deleted_mfa_devices"]),
        vec![old.clone()]
    );
    assert!(device_exists(&a, &old).await, "a dry run deleted a device");

    let run = a.forcemfa(&["reconcile", "--config", config, "--output", "json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let acct = run.account();
    assert_eq!(names(&acct["deleted_mfa_devices"]), vec![old.clone()]);
    assert!(!device_exists(&a, &old).await);
    assert!(
        device_exists(&a, &young).await,
        "a device being set up was deleted"
    );
}

/// Every IAM operation forcemfa calls in a full run and a run for named users, with every
/// feature on, is granted by
/// `forcemfa policy daemon`; sts:GetCallerIdentity needs no permission.
#[tokio::test]
async fn the_daemon_policy_grants_every_call_the_code_makes() {
    let a = Account::with_group().await;
    a.user("alice")
        .await
        .virtual_mfa()
        .await
        .member_of(GROUP)
        .await;
    a.user("bob").await.hardware_mfa().await;
    a.user("carol").await.console_password().await;
    a.user("dave").await;
    let abandoned = abandoned_device(&a, "abandoned").await;
    let created = a
        .iam
        .create_policy()
        .policy_name("other")
        .policy_document(r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iam:GetUser","Resource":"*"}]}"#)
        .send()
        .await
        .unwrap();
    a.iam
        .attach_group_policy()
        .group_name(GROUP)
        .policy_arn(created.policy().unwrap().arn().unwrap())
        .send()
        .await
        .unwrap();
    let state = a.dir.path().join("state.json");
    let config = a.config(&format!(
        "console_users_only = true\n[cleanup]\nunassigned_mfa_devices = true\nstate_file = \"{}\"\n",
        state.display()
    ));
    let config = config.to_str().unwrap();

    // The abandoned device was first seen unassigned an hour ago.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut first_seen = serde_json::Map::new();
    first_seen.insert(abandoned, (now - 3600).into());
    std::fs::write(
        &state,
        serde_json::json!({ "first_seen": first_seen }).to_string(),
    )
    .unwrap();

    let run = a.forcemfa(&["reconcile", "--config", config, "--output", "json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let acct = run.account();
    assert_eq!(names(&acct["deleted_mfa_devices"]).len(), 1, "{acct}");
    // And a run for named users: dave2 has no MFA and a console password to be read.
    a.user("dave2").await.console_password().await;
    a.iam
        .create_access_key()
        .user_name("dave2")
        .send()
        .await
        .unwrap();
    let named = a.forcemfa(&[
        "reconcile",
        "--config",
        config,
        "--output",
        "json",
        "--user",
        "dave2",
        "--user",
        "alice",
    ]);
    assert_eq!(named.code, 0, "{}", named.stderr);
    assert_eq!(names(&named.account()["added"]), ["dave2"]);
    let called: BTreeSet<String> = [acct, named.account()]
        .iter()
        .flat_map(|a| {
            a["api_calls"]
                .as_object()
                .unwrap()
                .keys()
                .cloned()
                .collect::<Vec<_>>()
        })
        .filter(|op| op != "GetCallerIdentity")
        .map(|op| format!("iam:{op}"))
        .collect();
    let granted = forcemfa::policy::allowed_actions(&policy(
        &a,
        &["daemon", "--account-id", ACCOUNT_ID, "--config", config],
    ));
    let missing: Vec<_> = called.difference(&granted).collect();
    assert!(missing.is_empty(), "called but not granted: {missing:?}");
    // And nothing is granted that the code never calls.
    let unused: Vec<_> = granted.difference(&called).collect();
    assert!(unused.is_empty(), "granted but never called: {unused:?}");
}

/// An independent IAM evaluator agrees: with `[notify]`, forcemfa's policy lets it publish to
/// the configured topic and send email as the sender's address or domain identity (in any
/// Region), and nothing more of SNS or SES; without `[notify]`, neither.
#[test]
fn the_daemon_policy_lets_forcemfa_notify_exactly_where_configured() {
    use crate::group_policy::{mismatches, Cell};
    let mut failures = Vec::new();
    for partition in Partition::ALL {
        let p = partition.as_str();
        let account = forcemfa::policy::Account {
            partition,
            id: ACCOUNT_ID,
        };
        let topic = format!("arn:{p}:sns:us-east-1:{ACCOUNT_ID}:forcemfa-admins");
        let config = forcemfa::config::Config::parse(&format!(
            "[notify]\nsns_topic_arn = \"{topic}\"\nemail_from = \"forcemfa@mail.example.com\"\n"
        ))
        .unwrap();
        let features = forcemfa::policy::DaemonFeatures::from_config(&config);
        let policies = serde_json::json!({
            "with-notify": forcemfa::policy::daemon(&account, GROUP, &features),
            "without": forcemfa::policy::daemon(&account, GROUP, &Default::default()),
        });
        let identity =
            |name: &str, region: &str| format!("arn:{p}:ses:{region}:{ACCOUNT_ID}:identity/{name}");
        let requests = [
            ("sns:Publish", topic.clone(), true),
            (
                "sns:Publish",
                format!("arn:{p}:sns:us-east-1:{ACCOUNT_ID}:another-topic"),
                false,
            ),
            (
                "sns:Publish",
                format!("arn:{p}:sns:us-east-1:222222222222:forcemfa-admins"),
                false,
            ),
            (
                "ses:SendEmail",
                identity("forcemfa@mail.example.com", "us-east-1"),
                true,
            ),
            (
                "ses:SendEmail",
                identity("mail.example.com", "eu-west-1"),
                true,
            ),
            (
                "ses:SendEmail",
                identity("ceo@mail.example.com", "us-east-1"),
                false,
            ),
            ("ses:SendEmail", identity("example.com", "us-east-1"), false),
            (
                "ses:SendRawEmail",
                identity("mail.example.com", "us-east-1"),
                false,
            ),
        ];
        let mut cells = Vec::new();
        for (policy, granted) in [("with-notify", true), ("without", false)] {
            for (action, resource, allowed) in &requests {
                cells.push(Cell {
                    label: format!("{p} {policy}: {action} on {resource}"),
                    request: serde_json::json!({
                        "policies": [policy],
                        "principal": format!("arn:{p}:iam::{ACCOUNT_ID}:role/forcemfa"),
                        "action": action,
                        "resource": resource,
                        "account": ACCOUNT_ID,
                        "context": {},
                    }),
                    allowed: *allowed && granted,
                    explicit: false,
                });
            }
        }
        failures.extend(mismatches(&policies, &cells));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn cloudformation_template_passes_cfn_lint_and_carries_the_rendered_policies() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/aws/forcemfa.json");
    let member =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/aws/forcemfa-events-member.json");
    let out = Command::new("cfn-lint")
        .arg(&path)
        .arg(&member)
        .output()
        .expect("cfn-lint runs (scripts/ensure-tools installs it)");
    assert!(
        out.status.success(),
        "cfn-lint:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    /// What the template's parameters resolve to in one stack.
    struct Stack {
        partition: &'static str,
        allows_enrolment_with_access_keys: bool,
        /// The ARN of the events queue the stack creates.
        queue_arn: String,
        /// NotifyTopicArn and NotifyEmailFrom.
        topic_arn: String,
        email_from: String,
    }
    // Resolve the template's Fn::Sub strings for one account and the default group name, its
    // Fn::If on the enrolment parameter (AWS::NoValue drops a list element), the events
    // queue's ARN, the notification parameters, and the domain of NotifyEmailFrom.
    fn resolve(v: &Value, stack: &Stack) -> Option<Value> {
        let sub = |text: &str| {
            text.replace("${AWS::Partition}", stack.partition)
                .replace("${AWS::AccountId}", ACCOUNT_ID)
                .replace("${GroupName}", GROUP)
                .replace("${NotifyEmailFrom}", &stack.email_from)
                .replace("${!", "${")
        };
        Some(match v {
            Value::Object(map) if map.len() == 1 && map.contains_key("Fn::GetAtt") => {
                assert_eq!(map["Fn::GetAtt"], serde_json::json!(["EventsQueue", "Arn"]));
                Value::String(stack.queue_arn.clone())
            }
            Value::Object(map) if map.len() == 1 && map.contains_key("Fn::Sub") => {
                match &map["Fn::Sub"] {
                    Value::String(text) => Value::String(sub(text)),
                    // Only the sender's domain is substituted from a variable.
                    Value::Array(args) => {
                        let split = serde_json::json!({"Fn::Select": [1,
                            {"Fn::Split": ["@", {"Ref": "NotifyEmailFrom"}]}]});
                        assert_eq!(args[1], serde_json::json!({ "Domain": split }));
                        let domain = stack.email_from.split_once('@').unwrap().1;
                        Value::String(sub(args[0].as_str().unwrap()).replace("${Domain}", domain))
                    }
                    other => panic!("Fn::Sub of {other}"),
                }
            }
            Value::Object(map) if map.get("Ref").is_some_and(|r| r == "NotifyTopicArn") => {
                Value::String(stack.topic_arn.clone())
            }
            Value::Object(map) if map.len() == 1 && map.contains_key("Fn::If") => {
                let [condition, then, otherwise] = map["Fn::If"].as_array().unwrap().as_slice()
                else {
                    panic!("Fn::If takes three arguments: {v}");
                };
                assert_eq!(condition, "AllowsEnrolmentWithAccessKeys");
                let chosen = if stack.allows_enrolment_with_access_keys {
                    then
                } else {
                    otherwise
                };
                return resolve(chosen, stack);
            }
            Value::Object(map) if map.get("Ref").is_some_and(|r| r == "AWS::NoValue") => {
                return None
            }
            Value::Object(map) => Value::Object(
                map.iter()
                    .filter_map(|(k, v)| Some((k.clone(), resolve(v, stack)?)))
                    .collect(),
            ),
            Value::Array(list) => {
                Value::Array(list.iter().filter_map(|v| resolve(v, stack)).collect())
            }
            other => other.clone(),
        })
    }
    let template: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let resources = &template["Resources"];
    for partition in Partition::ALL {
        let account = forcemfa::policy::Account {
            partition,
            id: ACCOUNT_ID,
        };
        for allows in [false, true] {
            let stack = Stack {
                partition: partition.as_str(),
                allows_enrolment_with_access_keys: allows,
                queue_arn: String::new(),
                topic_arn: String::new(),
                email_from: String::new(),
            };
            let group_policy = resolve(
                &resources["ForceMfaGroup"]["Properties"]["Policies"][0]["PolicyDocument"],
                &stack,
            );
            let settings = GroupPolicySettings {
                allow_enrolment_with_access_keys: allows,
            };
            assert_eq!(
                group_policy,
                Some(forcemfa::policy::force_mfa_group(
                    &account, GROUP, &settings
                )),
                "{partition} {allows}"
            );
        }
        let stack = Stack {
            partition: partition.as_str(),
            allows_enrolment_with_access_keys: false,
            queue_arn: String::new(),
            topic_arn: String::new(),
            email_from: String::new(),
        };
        let role_policy = resolve(
            &resources["ForceMfaRole"]["Properties"]["Policies"][0]["PolicyDocument"],
            &stack,
        );
        let plain = forcemfa::policy::daemon(&account, GROUP, &Default::default());
        assert_eq!(role_policy, Some(plain), "{partition}");
        let with_cleanup = forcemfa::policy::daemon(
            &account,
            GROUP,
            &forcemfa::policy::DaemonFeatures {
                cleanup: true,
                ..Default::default()
            },
        );
        let extra = resolve(
            &resources["CleanupPolicy"]["Properties"]["PolicyDocument"]["Statement"][0],
            &stack,
        );
        assert_eq!(
            with_cleanup["Statement"].as_array().unwrap().last(),
            extra.as_ref(),
            "{partition}"
        );

        // With NotifyTopicArn and NotifyEmailFrom, the stack grants exactly what `policy daemon`
        // renders for the same [notify], each only with its parameter set.
        let stack = Stack {
            topic_arn: format!("arn:{partition}:sns:us-east-1:{ACCOUNT_ID}:forcemfa-admins"),
            email_from: "forcemfa@mail.example.com".to_string(),
            ..stack
        };
        let config = forcemfa::config::Config::parse(&format!(
            "[notify]\nsns_topic_arn = \"{}\"\nemail_from = \"{}\"\n",
            stack.topic_arn, stack.email_from
        ))
        .unwrap();
        let with_notify = forcemfa::policy::daemon(
            &account,
            GROUP,
            &forcemfa::policy::DaemonFeatures::from_config(&config),
        );
        let rendered = with_notify["Statement"].as_array().unwrap();
        for (resource, condition, statement) in [
            (
                "NotifyTopicPolicy",
                "WithNotifyTopic",
                &rendered[rendered.len() - 2],
            ),
            (
                "NotifyEmailPolicy",
                "WithNotifyEmail",
                &rendered[rendered.len() - 1],
            ),
        ] {
            let policy = &resources[resource];
            assert_eq!(policy["Condition"], condition);
            assert_eq!(
                policy["Properties"]["RoleName"],
                serde_json::json!({"Ref": "ForceMfaRole"})
            );
            let statements = policy["Properties"]["PolicyDocument"]["Statement"]
                .as_array()
                .unwrap();
            assert_eq!(statements.len(), 1);
            assert_eq!(
                resolve(&statements[0], &stack).as_ref(),
                Some(statement),
                "{partition} {resource}"
            );
        }
        for (condition, parameter) in [
            ("WithNotifyTopic", "NotifyTopicArn"),
            ("WithNotifyEmail", "NotifyEmailFrom"),
        ] {
            assert_eq!(
                template["Conditions"][condition],
                serde_json::json!({"Fn::Not": [{"Fn::Equals": [{"Ref": parameter}, ""]}]})
            );
            assert_eq!(template["Parameters"][parameter]["Default"], "");
        }
    }

    // With EnableEvents, the queue URL the stack outputs, set as events.queue_url, makes
    // `policy daemon` render exactly the SQS statement the stack gives the role (IAM's events
    // exist only in us-east-1, so only in the aws partition).
    let queue_url = format!(
        "https://sqs.us-east-1.amazonaws.com/{ACCOUNT_ID}/forcemfa-EventsQueue-6Jd1tsM4xDIx"
    );
    let config =
        forcemfa::config::Config::parse(&format!("[events]\nqueue_url = \"{queue_url}\"\n"))
            .unwrap();
    let features = forcemfa::policy::DaemonFeatures::from_config(&config);
    let account = forcemfa::policy::Account {
        partition: Partition::Aws,
        id: ACCOUNT_ID,
    };
    let with_events = forcemfa::policy::daemon(&account, GROUP, &features);
    let stack = Stack {
        partition: "aws",
        allows_enrolment_with_access_keys: false,
        queue_arn: features.events_queue.clone().expect("a queue ARN"),
        topic_arn: String::new(),
        email_from: String::new(),
    };
    let events = &resources["EventsPolicy"];
    assert_eq!(events["Condition"], "WithEvents");
    assert_eq!(
        events["Properties"]["RoleName"],
        serde_json::json!({"Ref": "ForceMfaRole"})
    );
    let statements = events["Properties"]["PolicyDocument"]["Statement"]
        .as_array()
        .unwrap();
    assert_eq!(statements.len(), 1);
    assert_eq!(
        with_events["Statement"].as_array().unwrap().last(),
        resolve(&statements[0], &stack).as_ref()
    );
    assert_eq!(
        template["Outputs"]["EventsQueueUrl"]["Value"],
        serde_json::json!({"Ref": "EventsQueue"})
    );

    // Every rule, on the default bus, on the central bus and in member accounts, matches exactly
    // the IAM calls forcemfa handles, as CloudTrail delivers them.
    let member: Value = serde_json::from_str(&std::fs::read_to_string(&member).unwrap()).unwrap();
    let pattern = serde_json::json!({
        "source": ["aws.iam"],
        "detail-type": ["AWS API Call via CloudTrail"],
        "detail": {
            "eventSource": ["iam.amazonaws.com"],
            "eventName": forcemfa::cloudtrail::HANDLED_EVENTS,
        }
    });
    for rule in [
        &resources["IamEventsRule"],
        &resources["OrganizationIamEventsRule"],
        &member["Resources"]["ForwardIamEventsRule"],
    ] {
        assert_eq!(rule["Type"], "AWS::Events::Rule");
        assert_eq!(rule["Properties"]["EventPattern"], pattern, "{rule}");
    }
    // What the rules let through, forcemfa takes for one of its events: a message with exactly
    // these fields is never judged to be of another kind (it lacks requestParameters, so it is
    // malformed, which is as far as the pattern can tell).
    for name in forcemfa::cloudtrail::HANDLED_EVENTS {
        let message = serde_json::json!({
            "source": pattern["source"][0],
            "detail-type": pattern["detail-type"][0],
            "account": ACCOUNT_ID,
            "detail": {
                "eventSource": pattern["detail"]["eventSource"][0],
                "eventName": name,
            }
        });
        let rejected = forcemfa::cloudtrail::parse(&message.to_string()).unwrap_err();
        assert_eq!(
            rejected.kind,
            forcemfa::cloudtrail::Unusable::Malformed,
            "{name}: {rejected:?}"
        );
    }
}

/// Under moto's IAM authorization (enforced after the seeding requests), a run signed as a user
/// holding exactly the actions of `forcemfa policy daemon` succeeds, and one holding less does
/// not. moto matches IAM actions against the resource `*` only, so each statement's resources
/// are widened to `*` here; their scoping is checked by parliament and the unit tests.
#[tokio::test]
async fn a_run_succeeds_with_exactly_the_daemon_policy_under_enforcement() {
    use crate::support::Moto;
    // The seeding below makes exactly this many requests; every later one is authorized.
    const SEEDING_REQUESTS: &str = "19";
    let mut a = Account::on(Moto::start_with_env(&[(
        "INITIAL_NO_AUTH_ACTION_COUNT",
        SEEDING_REQUESTS,
    )]));
    a.create_group(GROUP).await; // 1
    a.user("alice")
        .await
        .virtual_mfa()
        .await
        .member_of(GROUP)
        .await; // 4
    a.user("bob")
        .await
        .hardware_mfa()
        .await
        .member_of(GROUP)
        .await; // 3
    a.user("carol").await; // 1
    let mut full = policy(&a, &["daemon", "--account-id", ACCOUNT_ID]);
    for statement in full["Statement"].as_array_mut().unwrap() {
        statement["Resource"] = serde_json::json!("*");
    }
    let mut narrow = full.clone();
    for statement in narrow["Statement"].as_array_mut().unwrap() {
        if statement["Sid"] == "ManageTheEnforcementGroupOnly" {
            statement["Action"] = serde_json::json!(["iam:RemoveUserFromGroup"]);
        }
    }
    for (user, document) in [("limited", &narrow), ("forcemfa", &full)] {
        a.user(user).await; // 1
        let created = a
            .iam
            .create_policy()
            .policy_name(format!("{user}-policy"))
            .policy_document(document.to_string())
            .send()
            .await
            .unwrap(); // 1
        a.iam
            .attach_user_policy()
            .user_name(user)
            .policy_arn(created.policy().unwrap().arn().unwrap())
            .send()
            .await
            .unwrap(); // 1
    }
    a.sign_as("limited").await; // 1
    let limited = a.access_key();
    a.sign_as("forcemfa").await; // 1 (19 in all)

    // Without AddUserToGroup the add is refused, and reported; what is allowed is done.
    let run = a.forcemfa_with(
        &["reconcile", "--output", "json"],
        &[
            ("AWS_ACCESS_KEY_ID", &limited.0),
            ("AWS_SECRET_ACCESS_KEY", &limited.1),
        ],
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    let acct = run.account();
    assert_eq!(names(&acct["removed"]), ["alice", "bob"]);
    let failed = acct["failed"].to_string();
    assert!(failed.contains("carol") && failed.contains("403"), "{acct}");

    // With exactly the daemon policy, everything forcemfa does is allowed.
    let run = a.forcemfa(&["reconcile", "--output", "json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let acct = run.account();
    assert_eq!(acct["own_user"], "forcemfa");
    assert_eq!(names(&acct["added"]), ["carol", "limited"]);
    assert!(acct["api_errors"].as_object().unwrap().is_empty(), "{acct}");

    // So is a run for named users, with its per-user reads.
    let run = a.forcemfa(&[
        "reconcile",
        "--output",
        "json",
        "--user",
        "carol",
        "--user",
        "alice",
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let acct = run.account();
    assert_eq!(acct["users_scanned"], 2, "{acct}");
    assert!(acct["skipped"].as_array().unwrap().is_empty(), "{acct}");
    assert!(acct["api_errors"].as_object().unwrap().is_empty(), "{acct}");

    // The Lambda function, as the same identity, needs nothing more for a scheduled run.
    if crate::support::lambda::available() {
        let mut function = crate::support::lambda::Function::start(
            &a,
            &a.moto.endpoint,
            &[
                ("FORCEMFA_FUNCTION_TIMEOUT", "900"),
                ("FORCEMFA__RUN_TIMEOUT", "12m"),
            ],
        );
        let scheduled =
            serde_json::json!({ "source": "aws.events", "detail-type": "Scheduled Event" });
        let (status, report) = function.invoke(&scheduled);
        assert_eq!(status, 200, "{report}");
        let acct = &report["accounts"][0];
        assert_eq!(acct["own_user"], "forcemfa", "{report}");
        assert!(acct["error"].is_null(), "{acct}");
        assert!(acct["api_errors"].as_object().unwrap().is_empty(), "{acct}");
        // And for a batch of events, with its per-user reads.
        let body = crate::support::queue::iam_event(
            ACCOUNT_ID,
            "CreateUser",
            &serde_json::json!({ "userName": "carol" }),
        );
        let record =
            serde_json::json!({ "messageId": "m1", "body": body, "eventSource": "aws:sqs" });
        let (status, answer) = function.invoke(&serde_json::json!({ "Records": [record] }));
        assert_eq!(status, 200, "{answer}");
        assert_eq!(
            answer["batchItemFailures"],
            serde_json::json!([]),
            "{}",
            function.stderr()
        );
        assert_eq!(function.events("event handled").len(), 1);
    }
}

/// The events part of the template: the queue hides a received message as long as forcemfa's
/// default `events.visibility_timeout`, is encrypted with SQS's own keys (SSE-SQS: EventBridge
/// can send to it with no KMS key policy), moves a message received 5 times without being
/// deleted to a dead-letter queue that keeps it 14 days, and accepts messages only from
/// EventBridge on behalf of the stack's own rules; the central bus takes events from the
/// organization only, and a member account's role may put events on that bus and do nothing else.
#[test]
fn the_events_queue_takes_only_the_stacks_rules_and_keeps_what_keeps_failing() {
    use serde_json::json;
    let read = |file: &str| -> Value {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    };
    let template = read("deploy/aws/forcemfa.json");
    let resources = &template["Resources"];
    let get_att = |name: &str| json!({"Fn::GetAtt": [name, "Arn"]});

    let config = forcemfa::config::Config::parse(
        "[events]\nqueue_url = \"https://sqs.us-east-1.amazonaws.com/123456789012/q\"\n",
    )
    .unwrap();
    let settings = config.events.expect("[events]");
    let queue = &resources["EventsQueue"]["Properties"];
    // In a Lambda stack, six times the events function's timeout, as the event source mapping
    // wants it.
    assert_eq!(
        queue["VisibilityTimeout"],
        json!({"Fn::If": ["OnLambda", 6 * 240, settings.visibility_timeout.as_secs()]})
    );
    assert_eq!(
        queue["RedrivePolicy"],
        json!({"deadLetterTargetArn": get_att("EventsDeadLetterQueue"), "maxReceiveCount": 5})
    );
    let dead_letters = &resources["EventsDeadLetterQueue"]["Properties"];
    assert_eq!(dead_letters["MessageRetentionPeriod"], 14 * 24 * 3600);
    for q in [queue, dead_letters] {
        assert_eq!(q["SqsManagedSseEnabled"], true);
        assert!(q.get("KmsMasterKeyId").is_none(), "{q}");
    }

    let policy = &resources["EventsQueuePolicy"]["Properties"];
    assert_eq!(policy["Queues"], json!([{"Ref": "EventsQueue"}]));
    assert_eq!(
        policy["PolicyDocument"]["Statement"],
        json!([{
            "Sid": "OnlyForcemfasRulesSendToTheQueue",
            "Effect": "Allow",
            "Principal": {"Service": "events.amazonaws.com"},
            "Action": "sqs:SendMessage",
            "Resource": get_att("EventsQueue"),
            "Condition": {"ArnEquals": {"aws:SourceArn": [
                get_att("IamEventsRule"),
                {"Fn::If": ["WithOrganizationEvents", get_att("OrganizationIamEventsRule"),
                    {"Ref": "AWS::NoValue"}]}
            ]}}
        }])
    );
    // The account's own rule is on its default bus; the organization's on the central bus. Both
    // deliver to the queue, and nothing else does.
    let to_queue = json!([{"Id": "forcemfa-queue", "Arn": get_att("EventsQueue")}]);
    let own = &resources["IamEventsRule"]["Properties"];
    assert!(own.get("EventBusName").is_none(), "{own}");
    assert_eq!(own["Targets"], to_queue);
    let central = &resources["OrganizationIamEventsRule"]["Properties"];
    assert_eq!(
        central["EventBusName"],
        json!({"Fn::GetAtt": ["OrganizationEventBus", "Name"]})
    );
    assert_eq!(central["Targets"], to_queue);
    for (name, resource) in resources.as_object().unwrap() {
        let targets = resource["Properties"]["Targets"].to_string();
        if name != "IamEventsRule" && name != "OrganizationIamEventsRule" {
            assert!(!targets.contains("EventsQueue"), "{name}");
        }
    }

    assert_eq!(
        resources["OrganizationEventBusPolicy"]["Properties"]["Statement"],
        json!({
            "Effect": "Allow",
            "Principal": "*",
            "Action": "events:PutEvents",
            "Resource": get_att("OrganizationEventBus"),
            "Condition": {"StringEquals": {"aws:PrincipalOrgID": {"Ref": "OrganizationId"}}}
        })
    );
    // Nothing of it exists without EnableEvents; the bus only with an organization too.
    for name in [
        "EventsQueue",
        "EventsDeadLetterQueue",
        "EventsQueuePolicy",
        "IamEventsRule",
        "EventsPolicy",
    ] {
        assert_eq!(resources[name]["Condition"], "WithEvents", "{name}");
    }
    for name in [
        "OrganizationEventBus",
        "OrganizationEventBusPolicy",
        "OrganizationIamEventsRule",
    ] {
        assert_eq!(
            resources[name]["Condition"], "WithOrganizationEvents",
            "{name}"
        );
    }
    assert_eq!(
        template["Outputs"]["CentralEventBusArn"]["Value"],
        get_att("OrganizationEventBus")
    );

    let member = read("deploy/aws/forcemfa-events-member.json");
    let forward = &member["Resources"]["ForwardIamEventsRule"]["Properties"];
    assert!(forward.get("EventBusName").is_none(), "{forward}");
    assert_eq!(
        forward["Targets"],
        json!([{
            "Id": "forcemfa-central-bus",
            "Arn": {"Ref": "CentralEventBusArn"},
            "RoleArn": get_att("ForwardingRole")
        }])
    );
    let role = &member["Resources"]["ForwardingRole"]["Properties"];
    assert_eq!(
        role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"],
        json!({"Service": "events.amazonaws.com"})
    );
    let policies = role["Policies"].as_array().unwrap();
    assert_eq!(policies.len(), 1);
    assert_eq!(
        policies[0]["PolicyDocument"]["Statement"],
        json!([{
            "Sid": "PutEventsOnTheCentralBusOnly",
            "Effect": "Allow",
            "Action": "events:PutEvents",
            "Resource": {"Ref": "CentralEventBusArn"}
        }])
    );
}
