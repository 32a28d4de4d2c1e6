//! IAM's CloudTrail events as EventBridge delivers them to an SQS queue: which account and which
//! users an event concerns. Pure: text in, a typed event or the reason it is unusable out.
//!
//! The envelope (`source`, `detail-type`, `account`, `time`, `detail`) is EventBridge's; `detail`
//! is the CloudTrail record (`eventName`, `requestParameters`, `userIdentity`, `errorCode`, ...).

use std::fmt;

use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::arn::{is_account_id, Arn};
use crate::user_name::UserName;

/// The IAM calls whose events can change a user's place in the enforcement group: who exists
/// (and under which name and path), their exemption tags, their console password, their MFA
/// devices, and membership changed by hand. The EventBridge rule that feeds the queue matches
/// exactly these.
pub const HANDLED_EVENTS: [&str; 12] = [
    "AddUserToGroup",
    "CreateLoginProfile",
    "CreateUser",
    "DeactivateMFADevice",
    "DeleteLoginProfile",
    "DeleteUser",
    "DeleteVirtualMFADevice",
    "EnableMFADevice",
    "RemoveUserFromGroup",
    "TagUser",
    "UntagUser",
    "UpdateUser",
];

const DETAIL_TYPE: &str = "AWS API Call via CloudTrail";
const SOURCE: &str = "aws.iam";
const EVENT_SOURCE: &str = "iam.amazonaws.com";

/// An IAM call that may have changed what forcemfa decides for some users.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IamEvent {
    /// The account whose IAM was called.
    pub account_id: String,
    pub event_name: String,
    /// CloudTrail's id of the event, for logs.
    pub event_id: Option<String>,
    /// When the call was made.
    pub time: Option<OffsetDateTime>,
    /// The ARN of the principal that made the call.
    pub principal_arn: Option<String>,
    /// The users whose facts the call may have changed, as named in the request.
    pub users: Vec<UserName>,
    /// For AddUserToGroup and RemoveUserFromGroup, the group.
    pub group: Option<String>,
}

/// Why a message carries no event to act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unusable {
    /// Not JSON, or an IAM event without the fields its kind has.
    Malformed,
    /// Another kind of event: another source, detail type or IAM call.
    Unsupported,
    /// The call failed (`errorCode`): it changed nothing.
    FailedCall,
}

impl Unusable {
    pub fn as_str(self) -> &'static str {
        match self {
            Unusable::Malformed => "malformed",
            Unusable::Unsupported => "unsupported",
            Unusable::FailedCall => "failed_call",
        }
    }
}

/// An unusable message: the kind, and what exactly is wrong, for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    pub kind: Unusable,
    pub reason: String,
}

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind.as_str(), self.reason)
    }
}

fn rejected(kind: Unusable, reason: impl Into<String>) -> Rejected {
    Rejected {
        kind,
        reason: reason.into(),
    }
}

fn malformed(reason: impl Into<String>) -> Rejected {
    rejected(Unusable::Malformed, reason)
}

/// At most this many characters of a value from a message go into a log line: a message is up to
/// 1 MiB, and anyone who can send to the queue chooses its text.
const SHOWN_MAX: usize = 64;

/// `text` as a log line shows it: cut after [`SHOWN_MAX`] characters.
fn shown(text: &str) -> String {
    crate::text::clip(text, SHOWN_MAX)
}

fn text<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

/// Reads one message body.
pub fn parse(body: &str) -> Result<IamEvent, Rejected> {
    let envelope: Value =
        serde_json::from_str(body).map_err(|e| malformed(format!("not JSON: {e}")))?;
    if !envelope.is_object() {
        return Err(malformed("not a JSON object"));
    }
    let (source, detail_type) = (text(&envelope, "source"), text(&envelope, "detail-type"));
    if source != Some(SOURCE) || detail_type != Some(DETAIL_TYPE) {
        return Err(rejected(
            Unusable::Unsupported,
            format!(
                "source {:?} and detail-type {:?}, not {SOURCE:?} and {DETAIL_TYPE:?}",
                shown(source.unwrap_or_default()),
                shown(detail_type.unwrap_or_default())
            ),
        ));
    }
    let detail = envelope
        .get("detail")
        .filter(|d| d.is_object())
        .ok_or_else(|| malformed("no detail object"))?;
    if let Some(other) = text(detail, "eventSource").filter(|s| *s != EVENT_SOURCE) {
        return Err(rejected(
            Unusable::Unsupported,
            format!("eventSource {:?}", shown(other)),
        ));
    }
    let event_name = text(detail, "eventName").ok_or_else(|| malformed("no detail.eventName"))?;
    if !HANDLED_EVENTS.contains(&event_name) {
        return Err(rejected(
            Unusable::Unsupported,
            format!("{} changes nothing forcemfa decides on", shown(event_name)),
        ));
    }
    if let Some(code) = detail.get("errorCode").filter(|c| !c.is_null()) {
        return Err(rejected(
            Unusable::FailedCall,
            format!(
                "{event_name} failed ({}), so it changed nothing",
                shown(code.as_str().unwrap_or("?"))
            ),
        ));
    }
    let account_id = account(&envelope, detail)?;
    let identity = detail.get("userIdentity");
    let principal_arn = identity.and_then(|i| text(i, "arn")).map(str::to_string);
    let caller = caller_user(identity, &account_id);
    let params = detail
        .get("requestParameters")
        .filter(|p| p.is_object())
        .ok_or_else(|| malformed(format!("{event_name} without requestParameters")))?;
    let (users, group) = concerned(event_name, params, caller.as_ref())?;
    Ok(IamEvent {
        account_id,
        event_name: event_name.to_string(),
        event_id: text(detail, "eventID").map(str::to_string),
        time: event_time(&envelope, detail),
        principal_arn,
        users,
        group,
    })
}

/// The users a call concerns, each once however spelt, and for a membership change its group.
fn concerned(
    event_name: &str,
    params: &Value,
    caller: Option<&UserName>,
) -> Result<(Vec<UserName>, Option<String>), Rejected> {
    let user_param = |key: &str| -> Result<Option<UserName>, Rejected> {
        let value = match params.get(key) {
            None | Some(Value::Null) => return Ok(None),
            Some(value) => value,
        };
        match value.as_str().map(UserName::parse) {
            Some(Ok(name)) => Ok(Some(name)),
            _ => Err(malformed(format!(
                "{event_name}: requestParameters.{key} {} is not an IAM user name",
                shown(&value.to_string())
            ))),
        }
    };
    // A call on one's own user may leave out userName; the caller is then the user.
    let named_or_caller = || -> Result<UserName, Rejected> {
        user_param("userName")?
            .or_else(|| caller.cloned())
            .ok_or_else(|| malformed(format!("{event_name} names no user")))
    };
    let mut group = None;
    let users = match event_name {
        "UpdateUser" => {
            let mut users = vec![named_or_caller()?];
            users.extend(user_param("newUserName")?);
            users
        }
        "AddUserToGroup" | "RemoveUserFromGroup" => {
            let name = text(params, "groupName")
                .filter(|g| !g.is_empty())
                .ok_or_else(|| malformed(format!("{event_name} names no group")))?;
            group = Some(name.to_string());
            vec![user_param("userName")?
                .ok_or_else(|| malformed(format!("{event_name} names no user")))?]
        }
        "DeleteVirtualMFADevice" => device_users(params, caller)?,
        _ => vec![named_or_caller()?],
    };
    let mut unique: Vec<UserName> = Vec::with_capacity(users.len());
    for user in users {
        if !unique.contains(&user) {
            unique.push(user);
        }
    }
    Ok((unique, group))
}

/// The account whose IAM was called: `detail.recipientAccountId`, which the envelope's `account`
/// repeats. Were they to disagree, which one to act on could not be told.
fn account(envelope: &Value, detail: &Value) -> Result<String, Rejected> {
    let recipient = text(detail, "recipientAccountId");
    let account = text(envelope, "account");
    let id = match (recipient, account) {
        (Some(r), Some(a)) if r != a => {
            return Err(malformed(format!(
                "account {} and detail.recipientAccountId {} disagree",
                shown(a),
                shown(r)
            )))
        }
        (Some(id), _) | (None, Some(id)) => id,
        (None, None) => return Err(malformed("no account")),
    };
    if !is_account_id(id) {
        return Err(malformed(format!(
            "account {:?} is not a 12-digit account id",
            shown(id)
        )));
    }
    Ok(id.to_string())
}

/// The IAM user that made the call, when it is one of the same account.
fn caller_user(identity: Option<&Value>, account_id: &str) -> Option<UserName> {
    let identity = identity?;
    if text(identity, "type") != Some("IAMUser") {
        return None;
    }
    let arn = Arn::parse(text(identity, "arn")?)?;
    let name = UserName::parse(arn.user_name()?).ok()?;
    (arn.account == account_id).then_some(name)
}

/// DeleteVirtualMFADevice names a serial number, not a user. Candidates: the caller, when an IAM
/// user (people delete their own abandoned devices), and the device's name, which is often its
/// user's. Reconciling a candidate that is no user costs one read and changes nothing.
fn device_users(params: &Value, caller: Option<&UserName>) -> Result<Vec<UserName>, Rejected> {
    let serial = text(params, "serialNumber")
        .ok_or_else(|| malformed("DeleteVirtualMFADevice names no serialNumber"))?;
    let mut users: Vec<UserName> = caller.cloned().into_iter().collect();
    if let Some(name) = Arn::parse(serial)
        .and_then(|a| a.resource.strip_prefix("mfa/"))
        .and_then(|path| path.rsplit('/').next())
        .and_then(|n| UserName::parse(n).ok())
    {
        users.push(name);
    }
    Ok(users)
}

/// The envelope's `time`, else the record's `eventTime`.
fn event_time(envelope: &Value, detail: &Value) -> Option<OffsetDateTime> {
    [text(envelope, "time"), text(detail, "eventTime")]
        .into_iter()
        .flatten()
        .find_map(|t| OffsetDateTime::parse(t, &Rfc3339).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// An event as EventBridge delivers it (the shape of AWS's documented examples).
    fn event(name: &str, params: Value) -> Value {
        let mut event = json!({
            "version": "0",
            "id": "6f87d04b-9f74-4f04-a780-7acf4b0a9b38",
            "detail-type": "AWS API Call via CloudTrail",
            "source": "aws.iam",
            "account": "123456789012",
            "time": "2026-11-24T10:15:30Z",
            "region": "us-east-1",
            "resources": [],
            "detail": {
                "eventVersion": "1.08",
                "userIdentity": {
                    "type": "IAMUser",
                    "principalId": "AIDAEXAMPLE",
                    "arn": "arn:aws:iam::123456789012:user/admin",
                    "accountId": "123456789012",
                    "userName": "admin"
                },
                "eventTime": "2026-11-24T10:15:29Z",
                "eventSource": "iam.amazonaws.com",
                "eventName": name,
                "awsRegion": "us-east-1",
                "sourceIPAddress": "203.0.113.7",
                "userAgent": "aws-cli/2.15.0",
                "requestParameters": null,
                "responseElements": null,
                "requestID": "a1b2c3",
                "eventID": "e1",
                "readOnly": false,
                "eventType": "AwsApiCall",
                "managementEvent": true,
                "recipientAccountId": "123456789012",
                "eventCategory": "Management"
            }
        });
        event["detail"]["requestParameters"] = params;
        event
    }

    fn users(v: &Value) -> Vec<String> {
        spelt(&parse(&v.to_string()).unwrap().users)
    }

    fn spelt(users: &[UserName]) -> Vec<String> {
        users.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn each_event_names_the_users_it_concerns() {
        for name in [
            "CreateUser",
            "DeleteUser",
            "TagUser",
            "UntagUser",
            "CreateLoginProfile",
            "DeleteLoginProfile",
            "EnableMFADevice",
            "DeactivateMFADevice",
        ] {
            assert_eq!(
                users(&event(name, json!({"userName": "alice"}))),
                ["alice"],
                "{name}"
            );
        }
        assert_eq!(
            users(&event(
                "UpdateUser",
                json!({"userName": "alice", "newUserName": "alicia"})
            )),
            ["alice", "alicia"]
        );
        assert_eq!(
            users(&event(
                "UpdateUser",
                json!({"userName": "alice", "newPath": "/ops/"})
            )),
            ["alice"]
        );
        let e = parse(
            &event(
                "AddUserToGroup",
                json!({"groupName": "ForceMFA", "userName": "bob"}),
            )
            .to_string(),
        )
        .unwrap();
        assert_eq!(
            (spelt(&e.users), e.group.as_deref()),
            (vec!["bob".to_string()], Some("ForceMFA"))
        );
    }

    #[test]
    fn the_envelope_gives_account_time_and_principal() {
        let e = parse(&event("CreateUser", json!({"userName": "alice"})).to_string()).unwrap();
        assert_eq!(e.account_id, "123456789012");
        assert_eq!(e.event_id.as_deref(), Some("e1"));
        assert_eq!(e.time.unwrap().unix_timestamp(), 1_795_515_330);
        assert_eq!(
            e.principal_arn.as_deref(),
            Some("arn:aws:iam::123456789012:user/admin")
        );
    }

    #[test]
    fn a_call_on_ones_own_user_without_a_name_concerns_the_caller() {
        let e = event(
            "DeactivateMFADevice",
            json!({"serialNumber": "arn:aws:iam::123456789012:mfa/phone"}),
        );
        assert_eq!(users(&e), ["admin"]);
        // A role has no user to fall back on.
        let mut e = e;
        e["detail"]["userIdentity"] =
            json!({"type": "AssumedRole", "arn": "arn:aws:sts::123456789012:assumed-role/ops/x"});
        assert_eq!(parse(&e.to_string()).unwrap_err().kind, Unusable::Malformed);
    }

    #[test]
    fn a_deleted_device_concerns_its_deleter_and_its_namesake() {
        let e = event(
            "DeleteVirtualMFADevice",
            json!({"serialNumber": "arn:aws:iam::123456789012:mfa/carol"}),
        );
        assert_eq!(users(&e), ["admin", "carol"]);
    }

    #[test]
    fn other_events_are_unsupported_and_failed_calls_change_nothing() {
        assert_eq!(
            parse(&event("ListUsers", json!({})).to_string())
                .unwrap_err()
                .kind,
            Unusable::Unsupported
        );
        let mut e = event("CreateUser", json!({"userName": "alice"}));
        e["source"] = json!("aws.s3");
        assert_eq!(
            parse(&e.to_string()).unwrap_err().kind,
            Unusable::Unsupported
        );
        let mut e = event("CreateUser", json!({"userName": "alice"}));
        e["detail"]["errorCode"] = json!("EntityAlreadyExists");
        assert_eq!(
            parse(&e.to_string()).unwrap_err().kind,
            Unusable::FailedCall
        );
    }

    /// A reason quotes what was wrong, never a whole field of a message up to 1 MiB long.
    #[test]
    fn a_reason_quotes_at_most_a_little_of_the_message() {
        let long = "x".repeat(200_000);
        let mut unsupported = event("CreateUser", json!({"userName": "alice"}));
        unsupported["detail"]["eventName"] = json!(long);
        let mut bad_user = event("CreateUser", json!({"userName": "alice"}));
        bad_user["detail"]["requestParameters"]["userName"] = json!(long);
        let mut source = event("CreateUser", json!({"userName": "alice"}));
        source["source"] = json!(long);
        let mut code = event("CreateUser", json!({"userName": "alice"}));
        code["detail"]["errorCode"] = json!(long);
        for e in [unsupported, bad_user, source, code] {
            let reason = parse(&e.to_string()).unwrap_err().reason;
            assert!(reason.len() < 300, "{} characters", reason.len());
        }
    }

    #[test]
    fn broken_messages_are_malformed_with_the_reason() {
        let base = event("CreateUser", json!({"userName": "alice"}));
        let mut cases: Vec<(String, &str)> = vec![
            ("{not json".into(), "not JSON"),
            ("[1,2]".into(), "not a JSON object"),
        ];
        let mut no_detail = base.clone();
        no_detail.as_object_mut().unwrap().remove("detail");
        cases.push((no_detail.to_string(), "no detail"));
        let mut bad_user = base.clone();
        bad_user["detail"]["requestParameters"]["userName"] = json!("a/b");
        cases.push((bad_user.to_string(), "not an IAM user name"));
        let mut disagree = base.clone();
        disagree["account"] = json!("210987654321");
        cases.push((disagree.to_string(), "disagree"));
        let mut no_params = base.clone();
        no_params["detail"]["requestParameters"] = Value::Null;
        cases.push((no_params.to_string(), "without requestParameters"));
        let mut bad_account = base;
        bad_account["account"] = json!("12345");
        bad_account["detail"]["recipientAccountId"] = json!("12345");
        cases.push((bad_account.to_string(), "12-digit"));
        for (body, reason) in cases {
            let e = parse(&body).unwrap_err();
            assert_eq!(e.kind, Unusable::Malformed, "{body}");
            assert!(e.reason.contains(reason), "{}: {body}", e.reason);
        }
    }
}
