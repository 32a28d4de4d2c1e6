//! The IAM policies forcemfa depends on, rendered as JSON documents: the enforcement group's
//! policy, and forcemfa's own least-privilege policy. Pure: partition, account id and names in,
//! JSON out.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use crate::arn::Partition;
use crate::config::GroupPolicySettings;

/// The name of the inline policy `forcemfa bootstrap` puts on the group.
pub const GROUP_POLICY_NAME: &str = "forcemfa-require-mfa";

/// What a user in the group, signed in without MFA, may still do. Everything else is denied.
pub const ALLOWED_WITHOUT_MFA: [&str; 9] = [
    "iam:ChangePassword",
    "iam:CreateVirtualMFADevice",
    "iam:EnableMFADevice",
    "iam:GetAccountPasswordPolicy",
    "iam:GetUser",
    "iam:ListMFADevices",
    "iam:ListVirtualMFADevices",
    "iam:ResyncMFADevice",
    "sts:GetSessionToken",
];

/// Those of [`ALLOWED_WITHOUT_MFA`] that act on a user: without MFA, only on the caller's own,
/// whatever other policies of the user grant.
pub const OWN_USER_ONLY_WITHOUT_MFA: [&str; 5] = [
    "iam:ChangePassword",
    "iam:EnableMFADevice",
    "iam:GetUser",
    "iam:ListMFADevices",
    "iam:ResyncMFADevice",
];

/// Enrolment and password changes: denied to requests signed with a long-term access key alone
/// unless `[group_policy] allow_enrolment_with_access_keys` is set.
pub const NOT_WITH_ACCESS_KEYS_ALONE: [&str; 4] = [
    "iam:ChangePassword",
    "iam:CreateVirtualMFADevice",
    "iam:EnableMFADevice",
    "iam:ResyncMFADevice",
];

/// The account a policy is written for. Its ARNs carry the partition: a policy that names
/// `arn:aws:` resources matches nothing in `aws-cn` or `aws-us-gov`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Account<'a> {
    pub partition: Partition,
    pub id: &'a str,
}

impl Account<'_> {
    /// `arn:PARTITION:iam::ACCOUNT:RESOURCE`.
    fn iam(&self, resource: &str) -> String {
        format!("arn:{}:iam::{}:{resource}", self.partition, self.id)
    }

    /// The caller's own user, at the root path and at any other path.
    fn own_user(&self) -> Value {
        json!([
            self.iam("user/${aws:username}"),
            self.iam("user/*/${aws:username}"),
        ])
    }
}

/// The enforcement group's policy: without MFA, a user can set up their own MFA device and change
/// their own password, and nothing else, whatever their other policies grant.
pub fn force_mfa_group(account: &Account, group: &str, settings: &GroupPolicySettings) -> Value {
    let own_user = account.own_user();
    let mut statements = vec![
        json!({
            "Sid": "AllowListingForTheConsole",
            "Effect": "Allow",
            "Action": ["iam:ListVirtualMFADevices", "iam:GetAccountPasswordPolicy"],
            "Resource": "*"
        }),
        json!({
            "Sid": "AllowViewingOwnUserAndMfaDevices",
            "Effect": "Allow",
            "Action": ["iam:GetUser", "iam:ListMFADevices", "iam:GetMFADevice"],
            "Resource": own_user
        }),
        json!({
            "Sid": "AllowCreatingVirtualMfaDevicesOfAnyName",
            "Effect": "Allow",
            "Action": "iam:CreateVirtualMFADevice",
            "Resource": account.iam("mfa/*")
        }),
        json!({
            "Sid": "AllowEnablingOwnMfaDevices",
            "Effect": "Allow",
            "Action": ["iam:EnableMFADevice", "iam:ResyncMFADevice"],
            "Resource": own_user
        }),
        json!({
            "Sid": "AllowChangingOwnPassword",
            "Effect": "Allow",
            "Action": "iam:ChangePassword",
            "Resource": own_user
        }),
        json!({
            "Sid": "AllowDeactivatingOwnMfaOnlyWithMfa",
            "Effect": "Allow",
            "Action": "iam:DeactivateMFADevice",
            "Resource": own_user,
            "Condition": { "Bool": { "aws:MultiFactorAuthPresent": "true" } }
        }),
        // The allows above are limited to the caller's own user, but another policy of the
        // user (IAMFullAccess, a help desk's) may grant the same actions on every user, and the
        // last deny exempts them by action only.
        json!({
            "Sid": "DenyOtherUsersWithoutMfa",
            "Effect": "Deny",
            "Action": OWN_USER_ONLY_WITHOUT_MFA,
            "NotResource": own_user,
            "Condition": { "BoolIfExists": { "aws:MultiFactorAuthPresent": "false" } }
        }),
    ];
    if !settings.allow_enrolment_with_access_keys {
        // A request signed with a long-term access key carries no aws:MultiFactorAuthPresent;
        // a console session carries it as false. With the key alone, enrolling a device whose
        // seed the signer holds would give the key its full permissions back.
        statements.push(json!({
            "Sid": "DenyEnrolmentAndPasswordChangeWithAccessKeys",
            "Effect": "Deny",
            "Action": NOT_WITH_ACCESS_KEYS_ALONE,
            "Resource": "*",
            "Condition": { "Null": { "aws:MultiFactorAuthPresent": "true" } }
        }));
    }
    statements.push(json!({
        "Sid": "DenyEverythingElseWithoutMfa",
        "Effect": "Deny",
        "NotAction": ALLOWED_WITHOUT_MFA,
        "Resource": "*",
        "Condition": { "BoolIfExists": { "aws:MultiFactorAuthPresent": "false" } }
    }));
    json!({
        "Version": "2012-10-17",
        "Id": format!("forcemfa-{group}"),
        "Statement": statements
    })
}

/// Which optional features the daemon policy grants for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DaemonFeatures {
    /// `[cleanup] unassigned_mfa_devices`: delete abandoned virtual MFA devices.
    pub cleanup: bool,
    /// Roles forcemfa assumes in the listed accounts (`[[accounts]]`), as configured.
    pub assume_roles: Vec<String>,
    /// `[organization] role_name`: list the organization's accounts and assume this role in
    /// each (`arn:PARTITION:iam::*:role/NAME`).
    pub organization_role: Option<String>,
    /// `[events] queue_url`: the ARN of the queue IAM's events arrive on, which forcemfa
    /// receives from and deletes handled messages from.
    pub events_queue: Option<String>,
    /// `[notify] sns_topic_arn`: the topic the admins' summaries are published to.
    pub notify_topic: Option<String>,
    /// `[notify] email_from`: the SES identities users' emails are sent as, the address and its
    /// domain (SES authorizes a send on the identity it is verified under, either of them).
    pub email_identities: Vec<String>,
}

impl DaemonFeatures {
    pub fn from_config(config: &crate::config::Config) -> DaemonFeatures {
        DaemonFeatures {
            cleanup: config.cleanup.unassigned_mfa_devices,
            assume_roles: config.accounts.iter().map(|a| a.role_arn.clone()).collect(),
            organization_role: config.organization.as_ref().map(|o| o.role_name.clone()),
            events_queue: config.events.as_ref().map(|e| e.queue.arn()),
            notify_topic: config.notify.sns_topic_arn.clone(),
            email_identities: config
                .notify
                .email_from
                .as_deref()
                .map(email_identities)
                .unwrap_or_default(),
        }
    }
}

/// The SES identities an email from `from` may be sent as: the address (without a display name)
/// and its domain.
fn email_identities(from: &str) -> Vec<String> {
    let address = match from.rsplit_once('<') {
        Some((_, quoted)) => quoted.trim_end().trim_end_matches('>'),
        None => from,
    }
    .trim();
    let mut identities = vec![address.to_string()];
    if let Some((_, domain)) = address.rsplit_once('@') {
        if !domain.is_empty() {
            identities.push(domain.to_string());
        }
    }
    identities
}

/// forcemfa's own policy: exactly the read calls it makes, and membership changes on the
/// enforcement group only. sts:GetCallerIdentity needs no permission.
pub fn daemon(account: &Account, group: &str, features: &DaemonFeatures) -> Value {
    let mut statements = every_run(account, group);
    if features.cleanup {
        statements.push(json!({
            "Sid": "DeleteAbandonedVirtualMfaDevices",
            "Effect": "Allow",
            "Action": "iam:DeleteVirtualMFADevice",
            "Resource": account.iam("mfa/*")
        }));
    }
    let mut assume_roles = features.assume_roles.clone();
    if let Some(role) = &features.organization_role {
        assume_roles.push(format!("arn:{}:iam::*:role/{role}", account.partition));
    }
    if !assume_roles.is_empty() {
        statements.push(json!({
            "Sid": "AssumeTheRolesOfTheReconciledAccounts",
            "Effect": "Allow",
            "Action": "sts:AssumeRole",
            "Resource": assume_roles
        }));
    }
    if features.organization_role.is_some() {
        statements.push(json!({
            "Sid": "ListTheOrganizationsAccounts",
            "Effect": "Allow",
            "Action": "organizations:ListAccounts",
            "Resource": "*"
        }));
    }
    if let Some(queue) = &features.events_queue {
        // DeleteMessageBatch is authorized as sqs:DeleteMessage.
        statements.push(json!({
            "Sid": "ReceiveAndDeleteIamEventsFromTheQueue",
            "Effect": "Allow",
            "Action": ["sqs:ReceiveMessage", "sqs:DeleteMessage"],
            "Resource": queue
        }));
    }
    statements.extend(notify(account, features));
    json!({ "Version": "2012-10-17", "Statement": statements })
}

/// What the configured notification channels need: publishing to the topic, and sending email as
/// the sender's SES identities (in any Region: SES signs in forcemfa's default one). The webhook
/// needs no AWS permission.
fn notify(account: &Account, features: &DaemonFeatures) -> Vec<Value> {
    let mut statements = Vec::new();
    if let Some(topic) = &features.notify_topic {
        statements.push(json!({
            "Sid": "PublishRunSummariesToTheTopic",
            "Effect": "Allow",
            "Action": "sns:Publish",
            "Resource": topic
        }));
    }
    if !features.email_identities.is_empty() {
        let identities: Vec<String> = features
            .email_identities
            .iter()
            .map(|i| {
                format!(
                    "arn:{}:ses:*:{}:identity/{i}",
                    account.partition, account.id
                )
            })
            .collect();
        statements.push(json!({
            "Sid": "EmailUsersFromTheSendersIdentity",
            "Effect": "Allow",
            "Action": "ses:SendEmail",
            "Resource": identities
        }));
    }
    statements
}

/// What every run needs, whatever the features: the reads of users, groups and MFA devices,
/// and the membership changes on the enforcement group.
fn every_run(account: &Account, group: &str) -> Vec<Value> {
    let group_arns = json!([
        account.iam(&format!("group/{group}")),
        account.iam(&format!("group/*/{group}")),
    ]);
    vec![
        json!({
            "Sid": "ReadUsersGroupsAndMfaDevicesInBulk",
            "Effect": "Allow",
            "Action": [
                "iam:GetAccountAuthorizationDetails",
                "iam:GetAccountSummary",
                "iam:ListVirtualMFADevices"
            ],
            "Resource": "*"
        }),
        json!({
            "Sid": "ReadMfaDevicesAndConsoleAccessPerUser",
            "Effect": "Allow",
            "Action": ["iam:GetLoginProfile", "iam:ListMFADevices"],
            "Resource": account.iam("user/*")
        }),
        // What adding a user takes away, read for the users about to be added only.
        json!({
            "Sid": "ReadAccessKeysOfUsersAboutToBeAdded",
            "Effect": "Allow",
            "Action": ["iam:ListAccessKeys", "iam:GetAccessKeyLastUsed"],
            "Resource": account.iam("user/*")
        }),
        // A targeted reconciliation (`reconcile --user`, an event) reads one user's path, tags
        // and groups instead of the whole account's.
        json!({
            "Sid": "ReadOneUserForTargetedReconciliation",
            "Effect": "Allow",
            "Action": ["iam:GetUser", "iam:ListGroupsForUser"],
            "Resource": account.iam("user/*")
        }),
        json!({
            "Sid": "ReadPoliciesAttachedToTheGroup",
            "Effect": "Allow",
            "Action": ["iam:GetPolicy", "iam:GetPolicyVersion"],
            "Resource": account.iam("policy/*")
        }),
        json!({
            "Sid": "ManageTheEnforcementGroupOnly",
            "Effect": "Allow",
            "Action": ["iam:AddUserToGroup", "iam:RemoveUserFromGroup"],
            "Resource": group_arns
        }),
    ]
}

/// Every action a policy allows by name (`Allow` statements' `Action`).
pub fn allowed_actions(document: &Value) -> BTreeSet<String> {
    statements(document)
        .filter(|s| s["Effect"] == "Allow")
        .flat_map(|s| strings(&s["Action"]))
        .collect()
}

fn statements(document: &Value) -> impl Iterator<Item = &Value> {
    match &document["Statement"] {
        Value::Array(list) => list.iter().collect::<Vec<_>>(),
        single @ Value::Object(_) => vec![single],
        _ => Vec::new(),
    }
    .into_iter()
}

fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        Value::Array(list) => list
            .iter()
            .filter_map(|x| x.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    }
}

/// True when the document denies (nearly) everything to a caller without MFA: a `Deny` on all
/// actions (`*`, or a `NotAction` list) conditioned on `aws:MultiFactorAuthPresent` being false.
/// A group without such a statement protects nothing, whatever forcemfa puts into it.
pub fn denies_without_mfa(document: &Value) -> bool {
    statements(document).any(|s| {
        let denies_broadly = s["Effect"] == "Deny"
            && (s.get("NotAction").is_some() || strings(&s["Action"]).iter().any(|a| a == "*"));
        let condition_on_mfa = s["Condition"].as_object().is_some_and(|ops| {
            ops.iter().any(|(op, keys)| {
                let op = op.to_ascii_lowercase();
                (op == "bool" || op == "boolifexists")
                    && keys.as_object().is_some_and(|keys| {
                        keys.iter().any(|(k, v)| {
                            k.eq_ignore_ascii_case("aws:MultiFactorAuthPresent")
                                && strings(v).iter().any(|x| x.eq_ignore_ascii_case("false"))
                        })
                    })
            })
        });
        denies_broadly && condition_on_mfa
    })
}

/// Why a policy document IAM returned cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum DocumentError {
    #[error("policy document is not UTF-8: {0}")]
    NotUtf8(#[from] std::str::Utf8Error),
    #[error("policy document is not JSON: {0}")]
    NotJson(#[from] serde_json::Error),
}

/// Parses a policy document as IAM returns it: URL-encoded JSON (plain JSON is accepted too).
pub fn decode_document(text: &str) -> Result<Value, DocumentError> {
    let decoded = if text.trim_start().starts_with('{') {
        text.to_string()
    } else {
        percent_encoding::percent_decode_str(text)
            .decode_utf8()?
            .into_owned()
    };
    Ok(serde_json::from_str(&decoded)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ACCOUNT: Account = Account {
        partition: Partition::Aws,
        id: "123456789012",
    };

    const QUEUE_ARN: &str = "arn:aws:sqs:us-east-1:123456789012:forcemfa-events";

    const TOPIC_ARN: &str = "arn:aws:sns:eu-west-1:123456789012:forcemfa-admins";

    fn statement<'a>(doc: &'a Value, sid: &str) -> &'a Value {
        statements(doc)
            .find(|s| s["Sid"] == sid)
            .unwrap_or_else(|| panic!("no statement {sid}"))
    }

    #[test]
    fn group_policy_lets_users_set_up_mfa_of_any_name() {
        let doc = force_mfa_group(&ACCOUNT, "ForceMFA", &GroupPolicySettings::default());
        let create = statement(&doc, "AllowCreatingVirtualMfaDevicesOfAnyName");
        assert_eq!(create["Resource"], "arn:aws:iam::123456789012:mfa/*");
        let enable = statement(&doc, "AllowEnablingOwnMfaDevices");
        assert_eq!(
            enable["Resource"][0],
            "arn:aws:iam::123456789012:user/${aws:username}"
        );
        assert!(strings(&enable["Action"]).contains(&"iam:EnableMFADevice".to_string()));
    }

    #[test]
    fn deactivation_needs_mfa_and_is_only_on_oneself() {
        let doc = force_mfa_group(&ACCOUNT, "ForceMFA", &GroupPolicySettings::default());
        for s in statements(&doc).filter(|s| s["Effect"] == "Allow") {
            if strings(&s["Action"])
                .iter()
                .any(|a| a == "iam:DeactivateMFADevice")
            {
                assert_eq!(s["Condition"]["Bool"]["aws:MultiFactorAuthPresent"], "true");
                for r in strings(&s["Resource"]) {
                    assert!(r.ends_with("${aws:username}"), "{r}");
                }
            }
        }
        let deny = statement(&doc, "DenyEverythingElseWithoutMfa");
        assert!(!strings(&deny["NotAction"]).contains(&"iam:DeactivateMFADevice".to_string()));
    }

    #[test]
    fn everything_else_is_denied_without_mfa() {
        let doc = force_mfa_group(&ACCOUNT, "ForceMFA", &GroupPolicySettings::default());
        assert!(denies_without_mfa(&doc));
        let deny = statement(&doc, "DenyEverythingElseWithoutMfa");
        assert_eq!(
            deny["Condition"]["BoolIfExists"]["aws:MultiFactorAuthPresent"],
            "false"
        );
        // Whatever is allowed is exempt from the deny, but deactivation and GetMFADevice (which
        // need MFA), and nothing more.
        let mut allowed = allowed_actions(&doc);
        allowed.remove("iam:DeactivateMFADevice");
        allowed.remove("iam:GetMFADevice");
        let exempt: BTreeSet<String> = strings(&deny["NotAction"]).into_iter().collect();
        let mut expected = allowed.clone();
        expected.insert("sts:GetSessionToken".to_string());
        assert_eq!(exempt, expected);
        assert!(allowed.contains("iam:ChangePassword"));
        assert!(allowed.contains("iam:GetAccountPasswordPolicy"));
        assert!(!allowed.contains("iam:ListUsers"));
    }

    #[test]
    fn without_mfa_whatever_names_a_user_is_denied_on_every_other_user() {
        let doc = force_mfa_group(&ACCOUNT, "ForceMFA", &GroupPolicySettings::default());
        let deny = statement(&doc, "DenyOtherUsersWithoutMfa");
        assert_eq!(deny["Effect"], "Deny");
        assert_eq!(
            deny["Condition"]["BoolIfExists"]["aws:MultiFactorAuthPresent"],
            "false"
        );
        assert_eq!(
            strings(&deny["NotResource"]),
            [
                "arn:aws:iam::123456789012:user/${aws:username}",
                "arn:aws:iam::123456789012:user/*/${aws:username}"
            ]
        );
        // Every action exempt from the MFA requirement that an Allow limits to the own user.
        let own = statements(&doc)
            .filter(|s| s["Effect"] == "Allow" && s["Resource"] == deny["NotResource"])
            .flat_map(|s| strings(&s["Action"]))
            .filter(|a| ALLOWED_WITHOUT_MFA.contains(&a.as_str()));
        let denied: BTreeSet<String> = strings(&deny["Action"]).into_iter().collect();
        assert_eq!(own.collect::<BTreeSet<_>>(), denied);
    }

    #[test]
    fn enrolment_with_an_access_key_alone_is_denied_unless_allowed() {
        let doc = force_mfa_group(&ACCOUNT, "ForceMFA", &GroupPolicySettings::default());
        let deny = statement(&doc, "DenyEnrolmentAndPasswordChangeWithAccessKeys");
        assert_eq!(
            deny["Condition"]["Null"]["aws:MultiFactorAuthPresent"],
            "true"
        );
        assert_eq!(strings(&deny["Action"]), NOT_WITH_ACCESS_KEYS_ALONE);
        let allowing = GroupPolicySettings {
            allow_enrolment_with_access_keys: true,
        };
        let doc = force_mfa_group(&ACCOUNT, "ForceMFA", &allowing);
        assert!(statements(&doc).all(|s| s["Condition"].get("Null").is_none()));
        assert!(denies_without_mfa(&doc));
    }

    #[test]
    fn daemon_policy_has_no_wildcard_actions_and_writes_only_the_group() {
        let features = DaemonFeatures {
            cleanup: true,
            assume_roles: vec!["arn:aws:iam::222222222222:role/forcemfa".into()],
            organization_role: Some("forcemfa".into()),
            events_queue: Some(QUEUE_ARN.into()),
            notify_topic: Some(TOPIC_ARN.into()),
            email_identities: vec!["forcemfa@example.com".into()],
        };
        let doc = daemon(&ACCOUNT, "ForceMFA", &features);
        for action in allowed_actions(&doc) {
            assert!(!action.contains('*'), "{action}");
        }
        for s in statements(&doc) {
            let actions = strings(&s["Action"]);
            if actions.iter().any(|a| a == "iam:AddUserToGroup") {
                assert_eq!(
                    strings(&s["Resource"]),
                    [
                        "arn:aws:iam::123456789012:group/ForceMFA",
                        "arn:aws:iam::123456789012:group/*/ForceMFA"
                    ]
                );
            }
        }
        let without = daemon(&ACCOUNT, "ForceMFA", &DaemonFeatures::default());
        for action in [
            "iam:DeleteVirtualMFADevice",
            "sts:AssumeRole",
            "organizations:ListAccounts",
            "sqs:ReceiveMessage",
            "sqs:DeleteMessage",
            "sns:Publish",
            "ses:SendEmail",
        ] {
            assert!(!allowed_actions(&without).contains(action));
            assert!(allowed_actions(&doc).contains(action));
        }
    }

    #[test]
    fn one_users_path_tags_and_groups_are_readable_with_or_without_events() {
        for features in [
            DaemonFeatures::default(),
            DaemonFeatures {
                events_queue: Some(QUEUE_ARN.into()),
                ..Default::default()
            },
        ] {
            let doc = daemon(&ACCOUNT, "ForceMFA", &features);
            let reads = statement(&doc, "ReadOneUserForTargetedReconciliation");
            assert_eq!(reads["Effect"], "Allow");
            assert_eq!(
                strings(&reads["Action"]),
                ["iam:GetUser", "iam:ListGroupsForUser"]
            );
            assert_eq!(reads["Resource"], "arn:aws:iam::123456789012:user/*");
        }
    }

    #[test]
    fn the_queue_is_received_from_and_deleted_from_only_when_configured() {
        let config = crate::config::Config::parse(
            "[events]\nqueue_url = \"https://sqs.us-east-1.amazonaws.com/123456789012/forcemfa-events\"\n",
        )
        .unwrap();
        let features = DaemonFeatures::from_config(&config);
        assert_eq!(features.events_queue.as_deref(), Some(QUEUE_ARN));
        let doc = daemon(&ACCOUNT, "ForceMFA", &features);
        let queue = statement(&doc, "ReceiveAndDeleteIamEventsFromTheQueue");
        assert_eq!(queue["Effect"], "Allow");
        assert_eq!(
            strings(&queue["Action"]),
            ["sqs:ReceiveMessage", "sqs:DeleteMessage"]
        );
        assert_eq!(queue["Resource"], QUEUE_ARN);
        // No other statement names SQS, and the queue is the only resource outside IAM.
        let sqs_actions: Vec<String> = allowed_actions(&doc)
            .into_iter()
            .filter(|a| a.starts_with("sqs:"))
            .collect();
        assert_eq!(sqs_actions, ["sqs:DeleteMessage", "sqs:ReceiveMessage"]);
        for s in statements(&doc).filter(|s| s["Sid"] != queue["Sid"]) {
            for r in strings(&s["Resource"]) {
                assert!(r == "*" || r.starts_with("arn:aws:iam::"), "{r}");
            }
        }

        let without = DaemonFeatures::from_config(&crate::config::Config::parse("").unwrap());
        assert_eq!(without.events_queue, None);
        let doc = daemon(&ACCOUNT, "ForceMFA", &without);
        assert!(!doc.to_string().contains("sqs:"), "{doc}");
    }

    #[test]
    fn the_topic_and_the_sender_are_granted_only_when_configured() {
        let config = crate::config::Config::parse(&format!(
            "[notify]\nsns_topic_arn = \"{TOPIC_ARN}\"\nemail_from = \"ForceMFA <forcemfa@mail.example.com>\"\n\
             webhook_url = \"https://hooks.example.com/x\"\n"
        ))
        .unwrap();
        let features = DaemonFeatures::from_config(&config);
        assert_eq!(features.notify_topic.as_deref(), Some(TOPIC_ARN));
        assert_eq!(
            features.email_identities,
            ["forcemfa@mail.example.com", "mail.example.com"]
        );
        let doc = daemon(&ACCOUNT, "ForceMFA", &features);
        let publish = statement(&doc, "PublishRunSummariesToTheTopic");
        assert_eq!(publish["Effect"], "Allow");
        assert_eq!(strings(&publish["Action"]), ["sns:Publish"]);
        assert_eq!(publish["Resource"], TOPIC_ARN);
        let email = statement(&doc, "EmailUsersFromTheSendersIdentity");
        assert_eq!(email["Effect"], "Allow");
        assert_eq!(strings(&email["Action"]), ["ses:SendEmail"]);
        assert_eq!(
            strings(&email["Resource"]),
            [
                "arn:aws:ses:*:123456789012:identity/forcemfa@mail.example.com",
                "arn:aws:ses:*:123456789012:identity/mail.example.com"
            ]
        );
        // Nothing else names SNS or SES, and the webhook needs no permission.
        let outside_iam: Vec<String> = allowed_actions(&doc)
            .into_iter()
            .filter(|a| !a.starts_with("iam:"))
            .collect();
        assert_eq!(outside_iam, ["ses:SendEmail", "sns:Publish"]);

        // Each channel alone grants its own statement only; none grants neither.
        let topic_only =
            crate::config::Config::parse(&format!("[notify]\nsns_topic_arn = \"{TOPIC_ARN}\"\n"))
                .unwrap();
        let doc = daemon(
            &ACCOUNT,
            "ForceMFA",
            &DaemonFeatures::from_config(&topic_only),
        );
        assert!(doc.to_string().contains("sns:Publish"), "{doc}");
        assert!(!doc.to_string().contains("ses:"), "{doc}");
        let webhook_only = crate::config::Config::parse(
            "[notify]\nwebhook_url = \"https://hooks.example.com/x\"\n",
        )
        .unwrap();
        let without = DaemonFeatures::from_config(&webhook_only);
        assert_eq!(without, DaemonFeatures::default());
        let doc = daemon(&ACCOUNT, "ForceMFA", &without);
        assert!(!doc.to_string().contains("sns:") && !doc.to_string().contains("ses:"));
    }

    #[test]
    fn every_arn_is_in_the_accounts_partition() {
        let features = DaemonFeatures {
            cleanup: true,
            organization_role: Some("forcemfa".into()),
            email_identities: vec!["forcemfa@example.com".into(), "example.com".into()],
            ..Default::default()
        };
        for partition in Partition::ALL {
            let account = Account {
                partition,
                id: "123456789012",
            };
            for doc in [
                force_mfa_group(&account, "ForceMFA", &GroupPolicySettings::default()),
                daemon(&account, "ForceMFA", &features),
            ] {
                let resources: Vec<String> = statements(&doc)
                    .flat_map(|s| strings(&s["Resource"]))
                    .filter(|r| r != "*")
                    .collect();
                assert!(!resources.is_empty());
                for r in resources {
                    let iam = r.starts_with(&format!("arn:{partition}:iam::"));
                    let ses = r.starts_with(&format!("arn:{partition}:ses:*:123456789012:"));
                    assert!(iam || ses, "{r}");
                }
            }
        }
    }

    #[test]
    fn mfa_deny_detection() {
        assert!(!denies_without_mfa(&daemon(
            &ACCOUNT,
            "G",
            &DaemonFeatures::default()
        )));
        let plain_deny = json!({"Statement": {"Effect": "Deny", "Action": "*", "Resource": "*"}});
        assert!(!denies_without_mfa(&plain_deny));
        let classic = json!({"Statement": [{"Effect": "Deny", "Action": "*", "Resource": "*",
            "Condition": {"Bool": {"aws:MultiFactorAuthPresent": ["false"]}}}]});
        assert!(denies_without_mfa(&classic));
    }

    #[test]
    fn documents_decode_as_iam_returns_them() {
        let encoded = "%7B%22Version%22%3A%222012-10-17%22%7D";
        assert_eq!(decode_document(encoded).unwrap()["Version"], "2012-10-17");
        assert_eq!(decode_document("{\"a\":1}").unwrap()["a"], 1);
        assert!(decode_document("%7Bnot json").is_err());
    }
}
