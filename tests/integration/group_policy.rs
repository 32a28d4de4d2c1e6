//! The ForceMFA group's policy, judged by an independent IAM policy evaluator
//! (@cloud-copilot/iam-simulate, driven by tests/policy-eval/evaluate.mjs; scripts/ensure-tools
//! installs it). A member is evaluated with the group's policy beside `Allow *` (whatever their
//! other policies may grant) and with the group's policy alone (a new user with nothing else), in
//! the three kinds of session a member can have, with and without an IAM path, in every
//! partition.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use crate::support::{self, ACCOUNT_ID};

const GROUP: &str = "ForceMFA";
const PARTITIONS: [&str; 3] = ["aws", "aws-cn", "aws-us-gov"];

/// How the request is signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Session {
    /// Signed in to the console with a password and no MFA: `aws:MultiFactorAuthPresent` is
    /// `false`.
    ConsoleWithoutMfa,
    /// Signed with the user's long-term access key: the key is absent.
    AccessKey,
    /// Signed in with MFA, or with a session token got with MFA.
    Mfa,
}

const SESSIONS: [Session; 3] = [Session::ConsoleWithoutMfa, Session::AccessKey, Session::Mfa];

impl Session {
    fn context(self, user: &str) -> Value {
        match self {
            Session::ConsoleWithoutMfa => {
                json!({"aws:username": user, "aws:MultiFactorAuthPresent": "false"})
            }
            Session::AccessKey => json!({"aws:username": user}),
            Session::Mfa => json!({"aws:username": user, "aws:MultiFactorAuthPresent": "true"}),
        }
    }
}

/// What a request acts on, relative to the caller.
#[derive(Debug, Clone, Copy)]
enum Target {
    Everything,
    OwnUser,
    /// Another user, at the caller's path.
    OtherUser,
    /// Another user whose path holds the caller's name (`user/alice/bob`).
    OtherUserUnderCallersName,
    /// A virtual MFA device of any name.
    MfaDevice,
    TheGroup,
    Instance,
    Role,
}

/// The caller: `alice`, at the root path or at `/staff/`.
struct Caller {
    partition: &'static str,
    path: &'static str,
}

impl Caller {
    fn arn(&self, resource: &str) -> String {
        format!("arn:{}:iam::{ACCOUNT_ID}:{resource}", self.partition)
    }

    fn principal(&self) -> String {
        self.arn(&format!("user{}alice", self.path))
    }

    fn resource(&self, target: Target) -> String {
        match target {
            Target::Everything => "*".to_string(),
            Target::OwnUser => self.principal(),
            Target::OtherUser => self.arn(&format!("user{}bob", self.path)),
            Target::OtherUserUnderCallersName => self.arn("user/alice/bob"),
            Target::MfaDevice => self.arn("mfa/alice-phone-2"),
            Target::TheGroup => self.arn(&format!("group/{GROUP}")),
            Target::Role => self.arn("role/admin"),
            Target::Instance => format!(
                "arn:{}:ec2:us-east-1:{ACCOUNT_ID}:instance/i-0123456789abcdef0",
                self.partition
            ),
        }
    }
}

const A: bool = true;
const D: bool = false;

/// One row of the matrix: an action on a target, whether it is allowed beside `Allow *` in a
/// console session without MFA, with the access key alone, and with MFA, and whether the
/// group's policy grants it itself (so that a member with no other policy can do it).
struct Case {
    action: &'static str,
    target: Target,
    beside_allow_all: [bool; 3],
    granted_by_group: bool,
}

const fn case(
    action: &'static str,
    target: Target,
    beside_allow_all: [bool; 3],
    granted_by_group: bool,
) -> Case {
    Case {
        action,
        target,
        beside_allow_all,
        granted_by_group,
    }
}

/// The expected matrix. Columns: console without MFA, access key alone, with MFA.
#[rustfmt::skip]
const MATRIX: &[Case] = &[
    // Enrolment: from a console session, on oneself only; never with the access key alone.
    case("iam:CreateVirtualMFADevice", Target::MfaDevice,                 [A, D, A], true),
    case("iam:EnableMFADevice",        Target::OwnUser,                   [A, D, A], true),
    case("iam:EnableMFADevice",        Target::OtherUser,                 [D, D, A], false),
    case("iam:EnableMFADevice",        Target::OtherUserUnderCallersName, [D, D, A], false),
    case("iam:ResyncMFADevice",        Target::OwnUser,                   [A, D, A], true),
    case("iam:ResyncMFADevice",        Target::OtherUser,                 [D, D, A], false),
    case("iam:DeactivateMFADevice",    Target::OwnUser,                   [D, D, A], true),
    case("iam:DeactivateMFADevice",    Target::OtherUser,                 [D, D, A], false),
    // Seeing oneself; others only with MFA.
    case("iam:ListMFADevices",         Target::OwnUser,                   [A, A, A], true),
    case("iam:ListMFADevices",         Target::OtherUser,                 [D, D, A], false),
    case("iam:ListMFADevices",         Target::OtherUserUnderCallersName, [D, D, A], false),
    case("iam:GetMFADevice",           Target::OwnUser,                   [D, D, A], true),
    case("iam:GetUser",                Target::OwnUser,                   [A, A, A], true),
    case("iam:GetUser",                Target::OtherUser,                 [D, D, A], false),
    case("iam:ListVirtualMFADevices",  Target::Everything,                [A, A, A], true),
    case("iam:GetAccountPasswordPolicy", Target::Everything,              [A, A, A], true),
    case("iam:ListUsers",              Target::Everything,                [D, D, A], false),
    // A first password change, from the console.
    case("iam:ChangePassword",         Target::OwnUser,                   [A, D, A], true),
    // Getting an MFA session for the CLI: an authentication, which no policy can grant or deny.
    case("sts:GetSessionToken",        Target::Everything,                [A, A, A], false),
    // Everything else needs MFA.
    case("iam:CreateAccessKey",        Target::OwnUser,                   [D, D, A], false),
    case("iam:CreateLoginProfile",     Target::OwnUser,                   [D, D, A], false),
    case("iam:AttachUserPolicy",       Target::OwnUser,                   [D, D, A], false),
    case("iam:DeleteVirtualMFADevice", Target::MfaDevice,                 [D, D, A], false),
    case("iam:TagMFADevice",           Target::MfaDevice,                 [D, D, A], false),
    case("iam:RemoveUserFromGroup",    Target::TheGroup,                  [D, D, A], false),
    case("sts:AssumeRole",             Target::Role,                      [D, D, A], false),
    case("s3:ListAllMyBuckets",        Target::Everything,                [D, D, A], false),
    case("ec2:RunInstances",           Target::Instance,                  [D, D, A], false),
];

/// With `allow_enrolment_with_access_keys`, these are also allowed with the access key alone.
const OPENED_BY_THE_OPTION: [&str; 4] = [
    "iam:ChangePassword",
    "iam:CreateVirtualMFADevice",
    "iam:EnableMFADevice",
    "iam:ResyncMFADevice",
];

/// The group's policy as `forcemfa policy force-mfa-group` prints it for `partition`.
fn rendered(partition: &str, allow_enrolment_with_access_keys: bool) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("forcemfa.toml");
    std::fs::write(
        &config,
        format!("[group_policy]\nallow_enrolment_with_access_keys = {allow_enrolment_with_access_keys}\n"),
    )
    .unwrap();
    let args = [
        "policy",
        "force-mfa-group",
        "--account-id",
        ACCOUNT_ID,
        "--partition",
        partition,
        "--config",
        config.to_str().unwrap(),
    ];
    // No AWS call is made: the account and the partition are given.
    let run = support::forcemfa(
        "http://127.0.0.1:9",
        &Default::default(),
        dir.path(),
        &args,
        &[],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    serde_json::from_str(&run.stdout).expect("policy JSON")
}

/// One request for the evaluator, and what it must answer.
pub(crate) struct Cell {
    pub(crate) label: String,
    pub(crate) request: Value,
    pub(crate) allowed: bool,
    /// Beside `Allow *` a refusal can only be an explicit deny.
    pub(crate) explicit: bool,
}

/// Runs the evaluator on every cell; returns the cells whose answer differs, with the answer.
pub(crate) fn mismatches(policies: &Value, cells: &[Cell]) -> Vec<String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/policy-eval/evaluate.mjs");
    let input = json!({
        "policies": policies,
        "requests": cells.iter().map(|c| &c.request).collect::<Vec<_>>(),
    });
    let mut child = Command::new("node")
        .arg(&script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node runs (scripts/ensure-tools installs the evaluator)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the evaluator failed (scripts/ensure-tools installs it):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answers: Vec<Value> = serde_json::from_slice(&out.stdout).expect("the evaluator's JSON");
    assert_eq!(answers.len(), cells.len());
    cells
        .iter()
        .zip(answers)
        .filter_map(|(cell, answer)| {
            let expected = match (cell.allowed, cell.explicit) {
                (true, _) => "Allowed",
                (false, true) => "ExplicitlyDenied",
                (false, false) => "denied",
            };
            let ok = match answer.as_str() {
                Some("Allowed") => cell.allowed,
                Some("ExplicitlyDenied") => !cell.allowed,
                Some("ImplicitlyDenied") => !cell.allowed && !cell.explicit,
                _ => false,
            };
            (!ok).then(|| format!("{}: expected {expected}, got {answer}", cell.label))
        })
        .collect()
}

/// Every cell of the matrix for one rendering of the policy.
fn cells(partition: &'static str, allow_enrolment_with_access_keys: bool) -> Vec<Cell> {
    let mut cells = Vec::new();
    for path in ["/", "/staff/"] {
        let caller = Caller { partition, path };
        for case in MATRIX {
            for (column, session) in SESSIONS.into_iter().enumerate() {
                let mut beside_allow_all = case.beside_allow_all[column];
                if allow_enrolment_with_access_keys
                    && session == Session::AccessKey
                    && OPENED_BY_THE_OPTION.contains(&case.action)
                    && case.granted_by_group
                {
                    beside_allow_all = true;
                }
                for alone in [false, true] {
                    let policies: &[&str] = if alone {
                        &["group"]
                    } else {
                        &["group", "allow-all"]
                    };
                    cells.push(Cell {
                        label: format!(
                            "{partition} user{path}alice {session:?} {} on {:?}{}",
                            case.action,
                            case.target,
                            if alone { " (group policy alone)" } else { "" }
                        ),
                        request: json!({
                            "policies": policies,
                            "principal": caller.principal(),
                            "action": case.action,
                            "resource": caller.resource(case.target),
                            "account": ACCOUNT_ID,
                            "context": session.context("alice"),
                        }),
                        allowed: beside_allow_all && (!alone || case.granted_by_group),
                        explicit: !alone,
                    });
                }
            }
        }
    }
    cells
}

fn check(allow_enrolment_with_access_keys: bool) {
    let mut failures = Vec::new();
    for partition in PARTITIONS {
        let policies = json!({
            "group": rendered(partition, allow_enrolment_with_access_keys),
            "allow-all": {"Version": "2012-10-17", "Statement": [
                {"Effect": "Allow", "Action": "*", "Resource": "*"}]},
        });
        failures.extend(mismatches(
            &policies,
            &cells(partition, allow_enrolment_with_access_keys),
        ));
    }
    assert!(
        failures.is_empty(),
        "{} cells differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn the_group_policy_holds_against_other_grants_leaked_keys_and_in_every_partition() {
    check(false);
}

#[test]
fn with_enrolment_from_access_keys_allowed_only_enrolment_opens_to_the_key() {
    check(true);
}

/// The evaluator is not lenient: a policy that allows everything fails the matrix.
#[test]
fn the_evaluator_catches_a_policy_that_denies_nothing() {
    let policies = json!({
        "group": {"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": "*", "Resource": "*"}]},
        "allow-all": {"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": "*", "Resource": "*"}]},
    });
    let failures = mismatches(&policies, &cells("aws", false));
    assert!(failures
        .iter()
        .any(|f| f.contains("AccessKey iam:EnableMFADevice on OwnUser")));
    assert!(failures
        .iter()
        .any(|f| f.contains("ConsoleWithoutMfa s3:ListAllMyBuckets")));
}
