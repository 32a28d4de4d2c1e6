//! What a Lambda invocation asks for, read from its payload, and the answer to a batch from the
//! events queue (pure).

use std::collections::HashSet;

use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::reconcile::targeted::check_named;
use crate::user_name::UserName;

/// The sources of the events EventBridge sends on a schedule: a rule's and the Scheduler's.
const SCHEDULE_SOURCES: [&str; 2] = ["aws.events", "aws.scheduler"];
const SCHEDULED_EVENT: &str = "Scheduled Event";

/// The keys of an EventBridge event, a schedule's included: any other is a payload written by
/// hand, whose intent (a `dry_run`) a full run would ignore.
const EVENT_KEYS: [&str; 9] = [
    "version",
    "id",
    "detail-type",
    "source",
    "account",
    "time",
    "region",
    "resources",
    "detail",
];

/// The one key of an SQS batch from an event source mapping.
const BATCH_KEYS: [&str; 1] = ["Records"];

/// The keys of one SQS message of a batch.
const MESSAGE_KEYS: [&str; 10] = [
    "messageId",
    "receiptHandle",
    "body",
    "attributes",
    "messageAttributes",
    "md5OfBody",
    "md5OfMessageAttributes",
    "eventSource",
    "eventSourceARN",
    "awsRegion",
];

/// Which invocations a function takes (`FORCEMFA_FUNCTION_TAKES`): the stack gives full runs
/// and the events queue a function each, so that a full run never starts beside another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Takes {
    /// Unset: every kind.
    Everything,
    /// `runs`: schedules and direct invocations.
    Runs,
    /// `events`: the events queue's batches.
    Events,
}

impl Takes {
    /// The value of `FORCEMFA_FUNCTION_TAKES`; `None` for one it does not know.
    pub fn parse(value: Option<&str>) -> Option<Takes> {
        match value {
            None | Some("") => Some(Takes::Everything),
            Some("runs") => Some(Takes::Runs),
            Some("events") => Some(Takes::Events),
            Some(_) => None,
        }
    }

    /// Refuses an invocation of a kind this function does not take.
    pub fn admit(self, invocation: &Invocation) -> Result<(), InvalidInvocation> {
        let queue = matches!(invocation, Invocation::Queue(_));
        match self {
            Takes::Runs if queue => Err(InvalidInvocation::NotTaken {
                takes: "runs",
                other: "an events batch goes to the events function",
            }),
            Takes::Events if !queue => Err(InvalidInvocation::NotTaken {
                takes: "events",
                other: "a schedule or a direct run goes to the full-run function",
            }),
            _ => Ok(()),
        }
    }
}

/// One invocation's work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invocation {
    /// An EventBridge schedule (rule or Scheduler): a full reconciliation.
    Scheduled,
    /// A batch from the events queue's event source mapping.
    Queue(Vec<QueueMessage>),
    /// A direct invocation: the run it names; its report is the answer.
    Direct(DirectRun),
}

/// One message of an SQS batch.
pub use crate::batch::Message as QueueMessage;

/// What a direct invocation asks for: `{}` is a full run, as a schedule's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DirectRun {
    pub dry_run: bool,
    /// Only these users (empty: every user).
    pub users: Vec<UserName>,
    pub max_changes: Option<u64>,
}

/// The payload of a direct invocation as serde reads it; any other key is refused.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDirect {
    #[serde(default)]
    dry_run: bool,
    #[serde(default)]
    users: Vec<String>,
    #[serde(default)]
    max_changes: Option<u64>,
}

/// A payload forcemfa does not take; nothing is read or changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidInvocation {
    #[error("the payload is not a JSON object: {found}")]
    NotAnObject { found: String },
    #[error("an EventBridge event of source {event_source:?} and detail-type {detail_type:?} is not a schedule; IAM's events go to the events queue, whose event source mapping invokes the function")]
    NotASchedule {
        event_source: String,
        detail_type: String,
    },
    #[error("{shape} has the key {key:?}, which it does not take (only {})", takes.join(", "))]
    UnknownKey {
        shape: &'static str,
        key: String,
        takes: &'static [&'static str],
    },
    #[error("Records is not a list")]
    NotABatch,
    #[error("record {index} of the batch: {reason}")]
    Record { index: usize, reason: String },
    #[error("a direct invocation takes {{\"dry_run\": bool, \"users\": [names], \"max_changes\": n}}: {reason}")]
    Direct { reason: String },
    #[error("this function takes only {takes} (FORCEMFA_FUNCTION_TAKES={takes}): {other}")]
    NotTaken {
        takes: &'static str,
        other: &'static str,
    },
}

/// Reads an invocation's payload.
pub fn parse(payload: &Value) -> Result<Invocation, InvalidInvocation> {
    let Some(object) = payload.as_object() else {
        return Err(InvalidInvocation::NotAnObject {
            found: shown(&payload.to_string()),
        });
    };
    if let Some(records) = object.get("Records") {
        only_keys(object, "an SQS batch", &BATCH_KEYS)?;
        return records_of(records).map(Invocation::Queue);
    }
    if object.contains_key("source") || object.contains_key("detail-type") {
        let text = |key: &str| object.get(key).and_then(Value::as_str).unwrap_or_default();
        let (source, detail_type) = (text("source"), text("detail-type"));
        if SCHEDULE_SOURCES.contains(&source) && detail_type == SCHEDULED_EVENT {
            only_keys(object, "a scheduled event", &EVENT_KEYS)?;
            return Ok(Invocation::Scheduled);
        }
        return Err(InvalidInvocation::NotASchedule {
            event_source: shown(source),
            detail_type: shown(detail_type),
        });
    }
    direct(payload).map(Invocation::Direct)
}

/// Refuses a key of `object` that its shape does not take.
fn only_keys(
    object: &Map<String, Value>,
    shape: &'static str,
    takes: &'static [&'static str],
) -> Result<(), InvalidInvocation> {
    match object.keys().find(|key| !takes.contains(&key.as_str())) {
        Some(key) => Err(InvalidInvocation::UnknownKey {
            shape,
            key: shown(key),
            takes,
        }),
        None => Ok(()),
    }
}

fn direct(payload: &Value) -> Result<DirectRun, InvalidInvocation> {
    let invalid = |reason: String| InvalidInvocation::Direct { reason };
    let raw = RawDirect::deserialize(payload).map_err(|e| invalid(e.to_string()))?;
    if raw.max_changes == Some(0) {
        return Err(invalid("max_changes must be at least 1".to_string()));
    }
    check_named(raw.users.len()).map_err(|e| invalid(e.to_string()))?;
    let users = raw
        .users
        .iter()
        .map(|name| {
            UserName::parse(name).map_err(|e| invalid(format!("users: {:?}: {e}", shown(name))))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(DirectRun {
        dry_run: raw.dry_run,
        users,
        max_changes: raw.max_changes,
    })
}

/// The messages of an SQS batch, each once. A record that is not an SQS message with an id
/// refuses the whole batch, since it could not be named in the answer; a message given twice is
/// taken once.
fn records_of(records: &Value) -> Result<Vec<QueueMessage>, InvalidInvocation> {
    let Some(records) = records.as_array() else {
        return Err(InvalidInvocation::NotABatch);
    };
    let mut messages = Vec::with_capacity(records.len());
    let mut seen: HashSet<&str> = HashSet::with_capacity(records.len());
    for (index, record) in records.iter().enumerate() {
        let invalid = |reason: &str| InvalidInvocation::Record {
            index,
            reason: reason.to_string(),
        };
        let text = |key: &str| record.get(key).and_then(Value::as_str);
        if text("eventSource") != Some("aws:sqs") {
            return Err(invalid("not an SQS message (eventSource is not aws:sqs)"));
        }
        if let Some(object) = record.as_object() {
            only_keys(object, "an SQS message", &MESSAGE_KEYS)
                .map_err(|e| invalid(&e.to_string()))?;
        }
        let message_id = text("messageId")
            .filter(|id| !id.is_empty())
            .ok_or_else(|| invalid("no messageId"))?;
        if !seen.insert(message_id) {
            continue;
        }
        let body = text("body").map(str::to_string);
        let receive_count = record
            .pointer("/attributes/ApproximateReceiveCount")
            .and_then(Value::as_str)
            .unwrap_or_default();
        messages.push(QueueMessage {
            message_id: message_id.to_string(),
            body,
            receive_count: receive_count.to_string(),
        });
    }
    Ok(messages)
}

/// The answer to a batch under `ReportBatchItemFailures`: the messages to deliver again; the
/// others are deleted by the event source mapping.
pub fn batch_response<'a>(retry: impl IntoIterator<Item = &'a str>) -> Value {
    let failures: Vec<Value> = retry
        .into_iter()
        .map(|id| json!({ "itemIdentifier": id }))
        .collect();
    json!({ "batchItemFailures": failures })
}

/// A value quoted in an error, cut short.
fn shown(text: &str) -> String {
    crate::text::clip(text, 120)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reconcile::targeted::MAX_NAMED_USERS;

    fn record(id: &str, body: &str) -> Value {
        json!({
            "messageId": id,
            "receiptHandle": "handle",
            "body": body,
            "attributes": { "ApproximateReceiveCount": "2" },
            "messageAttributes": {},
            "md5OfBody": "d41d8cd98f00b204e9800998ecf8427e",
            "eventSource": "aws:sqs",
            "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:forcemfa-events",
            "awsRegion": "us-east-1",
        })
    }

    fn schedule() -> Value {
        json!({
            "version": "0", "id": "x", "detail-type": "Scheduled Event",
            "source": "aws.events", "account": "123456789012",
            "time": "2026-12-07T23:00:00Z", "region": "us-east-1",
            "resources": ["arn:aws:events:us-east-1:123456789012:rule/forcemfa"], "detail": {},
        })
    }

    #[test]
    fn a_schedule_or_a_batch_with_a_key_it_does_not_take_is_refused_naming_it() {
        assert_eq!(parse(&schedule()), Ok(Invocation::Scheduled));
        let mut dry = schedule();
        dry["dry_run"] = json!(true);
        let error = parse(&dry).unwrap_err();
        assert!(
            matches!(&error, InvalidInvocation::UnknownKey { key, .. } if key == "dry_run"),
            "{error:?}"
        );
        let error = error.to_string();
        assert!(
            error.contains("scheduled event") && error.contains("\"dry_run\""),
            "{error}"
        );

        let batch = json!({ "Records": [record("m1", "{}")], "dry_run": true });
        let error = parse(&batch).unwrap_err().to_string();
        assert!(
            error.contains("SQS batch") && error.contains("\"dry_run\""),
            "{error}"
        );
        let mut odd = record("m2", "{}");
        odd["dryRun"] = json!(true);
        let batch = json!({ "Records": [record("m1", "{}"), odd] });
        let error = parse(&batch).unwrap_err().to_string();
        assert!(
            error.contains("record 1") && error.contains("\"dryRun\""),
            "{error}"
        );
    }

    #[test]
    fn a_direct_run_names_at_most_its_limit_of_users() {
        let names = |n: usize| -> Vec<String> { (0..n).map(|i| format!("u{i}")).collect() };
        let most = parse(&json!({ "users": names(MAX_NAMED_USERS) }));
        assert!(matches!(most, Ok(Invocation::Direct(run)) if run.users.len() == MAX_NAMED_USERS));
        let error = parse(&json!({ "users": names(200_000) }))
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("200000 users") && error.contains(&MAX_NAMED_USERS.to_string()),
            "{error}"
        );
    }

    #[test]
    fn schedules_of_a_rule_and_of_the_scheduler_are_full_runs() {
        for source in SCHEDULE_SOURCES {
            let event = json!({
                "version": "0", "id": "x", "detail-type": "Scheduled Event",
                "source": source, "account": "123456789012", "detail": {},
            });
            assert_eq!(parse(&event), Ok(Invocation::Scheduled));
        }
        // The Scheduler's default input, and a direct `{}`, are a full run too.
        assert_eq!(
            parse(&json!({})),
            Ok(Invocation::Direct(DirectRun::default()))
        );
    }

    #[test]
    fn another_eventbridge_event_is_refused_naming_it() {
        let event = json!({ "source": "aws.iam", "detail-type": "AWS API Call via CloudTrail" });
        let error = parse(&event).unwrap_err().to_string();
        assert!(
            error.contains("aws.iam") && error.contains("events queue"),
            "{error}"
        );
    }

    #[test]
    fn a_batch_keeps_each_message_id_body_and_receive_count() {
        let mut no_body = record("m3", "");
        no_body.as_object_mut().unwrap().remove("body");
        let batch = json!({ "Records": [record("m1", "{}"), record("m2", "not json"), no_body, record("m1", "{}")] });
        let Ok(Invocation::Queue(messages)) = parse(&batch) else {
            panic!("a batch");
        };
        // m1 given twice is taken once; m3 without a body is kept, to be consumed as unusable.
        let ids: Vec<&str> = messages.iter().map(|m| m.message_id.as_str()).collect();
        assert_eq!(ids, ["m1", "m2", "m3"]);
        assert_eq!(messages[1].body.as_deref(), Some("not json"));
        assert_eq!(messages[2].body, None);
        assert_eq!(messages[0].receive_count, "2");
    }

    #[test]
    fn a_batch_with_a_record_that_cannot_be_answered_for_is_refused_whole() {
        let mut no_id = record("", "{}");
        no_id["messageId"] = Value::Null;
        let mut not_sqs = record("m2", "{}");
        not_sqs["eventSource"] = json!("aws:kinesis");
        for (bad, words) in [(no_id, "no messageId"), (not_sqs, "not an SQS message")] {
            let batch = json!({ "Records": [record("m1", "{}"), bad] });
            let error = parse(&batch).unwrap_err().to_string();
            assert!(
                error.contains("record 1") && error.contains(words),
                "{error}"
            );
        }
        assert_eq!(
            parse(&json!({ "Records": {} })),
            Err(InvalidInvocation::NotABatch)
        );
    }

    #[test]
    fn a_direct_invocation_names_its_run_and_refuses_typos() {
        let run = parse(&json!({ "dry_run": true, "users": ["Alice", "bob"], "max_changes": 3 }));
        let Ok(Invocation::Direct(run)) = run else {
            panic!("a direct run");
        };
        assert!(run.dry_run);
        assert_eq!(
            run.users,
            [
                UserName::parse("alice").unwrap(),
                UserName::parse("bob").unwrap()
            ]
        );
        assert_eq!(run.max_changes, Some(3));
        for (payload, words) in [
            (json!({ "dryrun": true }), "dryrun"),
            (json!({ "dry_run": "yes" }), "invalid type"),
            (json!({ "users": ["no/slash"] }), "no/slash"),
            (json!({ "users": "alice" }), "invalid type"),
            (json!({ "max_changes": 0 }), "at least 1"),
        ] {
            let error = parse(&payload).unwrap_err().to_string();
            assert!(error.contains(words), "{payload}: {error}");
        }
        let error = parse(&json!([1, 2])).unwrap_err().to_string();
        assert!(error.contains("not a JSON object"), "{error}");
    }

    #[test]
    fn each_function_takes_only_its_kind_of_invocation() {
        let batch = Invocation::Queue(Vec::new());
        let run = Invocation::Direct(DirectRun::default());
        assert_eq!(Takes::parse(None), Some(Takes::Everything));
        assert_eq!(Takes::parse(Some("run")), None);
        for takes in [Takes::Everything, Takes::Runs] {
            assert!(takes.admit(&run).is_ok() && takes.admit(&Invocation::Scheduled).is_ok());
        }
        assert!(Takes::Everything.admit(&batch).is_ok());
        assert!(Takes::Events.admit(&batch).is_ok());
        let error = Takes::Events.admit(&run).unwrap_err().to_string();
        assert!(error.contains("FORCEMFA_FUNCTION_TAKES=events"), "{error}");
        assert!(Takes::Runs.admit(&batch).is_err());
    }

    #[test]
    fn the_batch_answer_lists_exactly_the_messages_to_retry() {
        assert_eq!(
            batch_response(["m2", "m5"]),
            json!({ "batchItemFailures": [{ "itemIdentifier": "m2" }, { "itemIdentifier": "m5" }] })
        );
        assert_eq!(batch_response([]), json!({ "batchItemFailures": [] }));
    }
}
