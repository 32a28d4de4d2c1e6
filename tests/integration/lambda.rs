//! forcemfa as a Lambda function: the `forcemfa-lambda` binary served by `cargo lambda watch
//! --only-lambda-apis`, with moto as IAM and SQS.

use serde_json::{json, Value};

use crate::support::lambda::{self, Function};
use crate::support::notify::WebhookReceiver;
use crate::support::proxy::{Fault, FaultProxy, Rule};
use crate::support::queue::{iam_event, Queue};
use crate::support::{skipped, Account, ACCOUNT_ID};

const GROUP: &str = "ForceMFA";
/// The stack's settings: a 15-minute function, a run that ends well before it.
const FUNCTION_ENV: [(&str, &str); 2] = [
    ("FORCEMFA_FUNCTION_TIMEOUT", "900"),
    ("FORCEMFA__RUN_TIMEOUT", "12m"),
];

/// The event an EventBridge rule sends on its schedule.
fn scheduled_event() -> Value {
    json!({
        "version": "0",
        "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": ACCOUNT_ID,
        "time": "2026-12-03T12:00:00Z",
        "region": "us-east-1",
        "resources": [format!("arn:aws:events:us-east-1:{ACCOUNT_ID}:rule/forcemfa-schedule")],
        "detail": {}
    })
}

/// alice has an MFA device and is in the group; carol has none and is not.
async fn account_to_converge() -> Account {
    let a = Account::with_group().await;
    a.user("alice")
        .await
        .virtual_mfa()
        .await
        .member_of(GROUP)
        .await;
    a.user("carol").await;
    a
}

#[tokio::test]
async fn a_scheduled_invocation_converges_the_group_and_writes_its_metrics() {
    if !lambda::available() {
        return;
    }
    let a = account_to_converge().await;
    let mut function = Function::start(&a, &a.moto.endpoint, &FUNCTION_ENV);
    let (status, report) = function.invoke(&scheduled_event());
    assert_eq!(status, 200, "{report}\n{}", function.stderr());
    assert_eq!(a.members(GROUP).await, ["carol".to_string()].into());
    let account = &report["accounts"][0];
    assert_eq!(account["added"], json!(["carol"]), "{report}");
    assert_eq!(account["removed"], json!(["alice"]), "{report}");

    // The audit trail: one `membership change` line per change, with its outcome.
    let changes = function.events("membership change");
    let done: Vec<(&str, &str)> = changes
        .iter()
        .filter(|c| c["outcome"] == "done")
        .map(|c| (c["user"].as_str().unwrap(), c["action"].as_str().unwrap()))
        .collect();
    assert_eq!(done.len(), 2, "{changes:?}");
    // Each written ahead: a process killed mid-request leaves its change in the log.
    let logs = function.logs();
    let line_of = |message: &str, user: &str| {
        logs.iter()
            .position(|l| l["message"] == message && l["user"] == user)
            .unwrap_or_else(|| panic!("no {message} of {user}"))
    };
    for (user, _) in &done {
        assert!(
            line_of("membership change intent", user) < line_of("membership change", user),
            "{user}: the intent comes first"
        );
    }

    // One EMF line: a run, successful, two changes, one user without MFA.
    let metrics = function.metrics();
    assert_eq!(metrics.len(), 1, "{metrics:?}");
    let m = &metrics[0];
    assert_eq!(m["_aws"]["CloudWatchMetrics"][0]["Namespace"], "forcemfa");
    assert_eq!(m["FunctionName"], "_");
    assert_eq!(
        (
            &m["Runs"],
            &m["SuccessfulRuns"],
            &m["Changes"],
            &m["Errors"]
        ),
        (&json!(1), &json!(1), &json!(2), &json!(0))
    );
    assert_eq!(m["UsersWithoutMfa"], 1);

    // A warm invocation of the same process finds nothing to change.
    let (status, report) = function.invoke(&scheduled_event());
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["accounts"][0]["added"], json!([]), "{report}");
    assert_eq!(function.events("run finished").len(), 2);
    assert_eq!(function.metrics()[1]["Changes"], 0);
}

#[tokio::test]
async fn an_sqs_batch_sends_back_exactly_the_event_whose_user_cannot_be_read() {
    if !lambda::available() {
        return;
    }
    let a = Account::with_group().await;
    a.user("carol").await;
    a.user("dave").await;
    // Messages as the event source mapping takes them off moto's queue.
    let queue = Queue::create(&a.moto.endpoint, "forcemfa-events").await;
    for body in [
        iam_event(ACCOUNT_ID, "CreateUser", &json!({ "userName": "carol" })),
        "not an event".to_string(),
        iam_event(ACCOUNT_ID, "CreateUser", &json!({ "userName": "dave" })),
    ] {
        queue.send(&body).await;
    }
    let received = queue
        .sqs
        .receive_message()
        .queue_url(&queue.url)
        .max_number_of_messages(10)
        .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
        .send()
        .await
        .unwrap();
    let records: Vec<Value> = received
        .messages()
        .iter()
        .map(|m| {
            json!({
                "messageId": m.message_id(),
                "receiptHandle": m.receipt_handle(),
                "body": m.body(),
                "attributes": { "ApproximateReceiveCount": "1" },
                "messageAttributes": {},
                "eventSource": "aws:sqs",
                "eventSourceARN": format!("arn:aws:sqs:us-east-1:{ACCOUNT_ID}:forcemfa-events"),
                "awsRegion": "us-east-1",
            })
        })
        .collect();
    assert_eq!(records.len(), 3);
    let id_of = |needle: &str| {
        records
            .iter()
            .find(|r| r["body"].as_str().unwrap().contains(needle))
            .map(|r| r["messageId"].as_str().unwrap().to_string())
            .unwrap()
    };
    let (carol, unusable, dave) = (id_of("carol"), id_of("not an event"), id_of("dave"));

    // dave cannot be read: IAM fails every request naming him.
    let proxy = FaultProxy::start(&a.moto.endpoint);
    proxy.set_rules(vec![Rule::new(&["UserName=dave"], Fault::ServerError)]);
    let mut env = FUNCTION_ENV.to_vec();
    env.extend([
        ("FORCEMFA__AWS__MAX_ATTEMPTS", "2"),
        ("FORCEMFA__AWS__MAX_BACKOFF_SECS", "1"),
    ]);
    let mut function = Function::start(&a, &proxy.endpoint, &env);
    let (status, answer) = function.invoke(&json!({ "Records": records }));
    assert_eq!(status, 200, "{answer}\n{}", function.stderr());
    assert_eq!(
        answer,
        json!({ "batchItemFailures": [{ "itemIdentifier": dave }] }),
        "{}",
        function.stderr()
    );
    assert_eq!(a.members(GROUP).await, ["carol".to_string()].into());

    let handled = function.events("event handled");
    assert_eq!(handled.len(), 1, "{handled:?}");
    assert_eq!(handled[0]["message_id"], carol.as_str());
    let consumed = function.events("event message unusable; consumed");
    assert_eq!(consumed.len(), 1);
    assert_eq!(consumed[0]["message_id"], unusable.as_str());
    let retried = function.events("event not handled; left on the queue for redelivery");
    assert_eq!(retried.len(), 1);
    assert_eq!(retried[0]["message_id"], dave.as_str());
    let metrics = function.metrics();
    assert_eq!(metrics.len(), 1, "{metrics:?}");
    assert_eq!(
        (&metrics[0]["Changes"], &metrics[0]["Errors"]),
        (&json!(1), &json!(1))
    );
}

#[tokio::test]
async fn a_direct_invocation_returns_its_report_and_a_dry_run_changes_nothing() {
    if !lambda::available() {
        return;
    }
    let a = account_to_converge().await;
    let mut function = Function::start(&a, &a.moto.endpoint, &FUNCTION_ENV);
    let before = a.members(GROUP).await;

    let (status, report) = function.invoke(&json!({ "dry_run": true }));
    assert_eq!(status, 200, "{report}\n{}", function.stderr());
    assert_eq!(report["dry_run"], true);
    assert_eq!(report["accounts"][0]["added"], json!(["carol"]), "{report}");
    assert_eq!(a.members(GROUP).await, before);
    assert!(function.metrics().is_empty(), "a dry run writes no metrics");

    // A typo is refused by name, and nothing is run.
    let (_, error) = function.invoke(&json!({ "dryrun": true }));
    assert_eq!(error["errorType"], "forcemfa.InvalidInvocation", "{error}");
    assert!(
        error["errorMessage"].as_str().unwrap().contains("dryrun"),
        "{error}"
    );
    assert_eq!(a.members(GROUP).await, before);

    // Named users: only they are reconciled.
    let (status, report) = function.invoke(&json!({ "users": ["carol"] }));
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["users"], json!(["carol"]), "{report}");
    assert_eq!(report["accounts"][0]["users_scanned"], 1, "{report}");
    assert_eq!(
        a.members(GROUP).await,
        ["alice".to_string(), "carol".to_string()].into()
    );
    assert_eq!(function.events("run finished").len(), 2);
}

#[tokio::test]
async fn a_payload_with_a_key_its_shape_does_not_take_or_too_many_users_is_refused() {
    if !lambda::available() {
        return;
    }
    let a = account_to_converge().await;
    let mut function = Function::start(&a, &a.moto.endpoint, &FUNCTION_ENV);
    let before = a.members(GROUP).await;

    // A schedule does not take a dry run: refused, rather than enforced and reported as one.
    let mut scheduled = scheduled_event();
    scheduled["dry_run"] = json!(true);
    let (_, error) = function.invoke(&scheduled);
    assert_eq!(error["errorType"], "forcemfa.InvalidInvocation", "{error}");
    let message = error["errorMessage"].as_str().unwrap();
    assert!(
        message.contains("scheduled event") && message.contains("\"dry_run\""),
        "{error}"
    );

    // Past the limit of named users, the limit and the count are named.
    let users: Vec<String> = (0..1001).map(|i| format!("user{i}")).collect();
    let (_, error) = function.invoke(&json!({ "users": users }));
    assert_eq!(error["errorType"], "forcemfa.InvalidInvocation", "{error}");
    let message = error["errorMessage"].as_str().unwrap();
    assert!(
        message.contains("1001 users") && message.contains("1000"),
        "{error}"
    );

    assert!(function.events("run started").is_empty());
    assert_eq!(a.members(GROUP).await, before);
}

#[tokio::test]
async fn names_the_lists_lack_cost_no_more_lookups_than_the_lists_and_the_rest_are_skipped() {
    if !lambda::available() {
        return;
    }
    let a = account_to_converge().await;
    let mut function = Function::start(&a, &a.moto.endpoint, &FUNCTION_ENV);
    let mut users: Vec<String> = (0..250).map(|i| format!("ghost{i}")).collect();
    users.push("carol".to_string());
    let (status, report) = function.invoke(&json!({ "users": users }));
    assert_eq!(status, 200, "{report}\n{}", function.stderr());
    let acct = &report["accounts"][0];
    assert_eq!(acct["added"], json!(["carol"]), "{acct}");
    // The lists took two pages: 200 names they lack (a batch's most) are looked up, one GetUser
    // each, and found missing; the other fifty are not guessed missing but skipped, so their
    // events come back.
    assert_eq!(acct["api_calls"]["GetUser"], 200, "{}", acct["api_calls"]);
    assert_eq!(acct["users_not_found"].as_array().unwrap().len(), 200);
    let skipped = skipped(acct);
    assert_eq!(skipped.len(), 50, "{acct}");
    assert!(
        skipped.iter().all(|(_, why)| why.contains("not looked up")),
        "{skipped:?}"
    );
    // The run's log lines count the names and show ten.
    let started = function.events("run started");
    assert_eq!(started[0]["span"]["user_count"], 251, "{:?}", started[0]);
    let shown = started[0]["span"]["users"].as_str().unwrap();
    assert!(
        shown.starts_with("ghost0,ghost1,") && shown.ends_with("…and 241 more"),
        "{shown}"
    );
}

#[tokio::test]
async fn a_run_timeout_the_function_cannot_hold_is_a_configuration_error() {
    if !lambda::available() {
        return;
    }
    let a = account_to_converge().await;
    let before = a.members(GROUP).await;
    let audit_log = a.dir.path().join("audit.jsonl").display().to_string();
    for (env, words) in [
        (
            vec![
                ("FORCEMFA_FUNCTION_TIMEOUT", "300"),
                ("FORCEMFA__RUN_TIMEOUT", "5m"),
            ],
            vec![
                "run_timeout (300 s) + 125 s",
                "FORCEMFA_FUNCTION_TIMEOUT (300 s)",
            ],
        ),
        (
            // The default run_timeout, 45 minutes, outlasts any function.
            vec![("FORCEMFA_FUNCTION_TIMEOUT", "900")],
            vec!["run_timeout (2700 s)"],
        ),
        (
            vec![
                ("FORCEMFA_FUNCTION_TIMEOUT", "900"),
                ("FORCEMFA__RUN_TIMEOUT", "10m"),
                ("FORCEMFA__AUDIT_LOG", audit_log.as_str()),
            ],
            vec!["`audit_log`", "CloudWatch Logs"],
        ),
        (
            vec![("FORCEMFA_FUNCTION_TIMEOUT", "15m")],
            vec!["FORCEMFA_FUNCTION_TIMEOUT=\"15m\""],
        ),
    ] {
        let mut function = Function::start(&a, &a.moto.endpoint, &env);
        let (_, error) = function.invoke(&scheduled_event());
        assert_eq!(error["errorType"], "forcemfa.ConfigurationError", "{error}");
        let message = error["errorMessage"].as_str().unwrap();
        for word in words {
            assert!(message.contains(word), "{word}: {message}");
        }
        assert!(function.events("run started").is_empty());
        assert!(!function
            .events("forcemfa cannot reconcile; every invocation fails and nothing is changed")
            .is_empty());
        assert_eq!(a.members(GROUP).await, before);
    }
    assert!(!std::path::Path::new(&audit_log).exists());
}

/// The Lambda part of deploy/aws/forcemfa.json (TrustedPrincipal=lambda): both functions run as
/// forcemfa's role, whose own policy is the daemon policy (checked with the rest of the
/// template); the stack adds to it only writing the functions' log group and reading the events
/// queue's attributes for the event source mapping. Full runs never overlap, each function's run
/// ends before its timeout, a batch answers with the events to retry, and the alarms read the
/// metrics the function writes.
#[test]
fn the_stack_runs_the_functions_as_forcemfas_role_with_runs_that_fit() {
    use forcemfa::lambda::{check_fits, emf};
    let template: Value =
        serde_json::from_str(&crate::support::files::read("deploy/aws/forcemfa.json")).unwrap();
    let resources = template["Resources"].as_object().unwrap();
    let lambda_conditions = ["OnLambda", "OnLambdaWithEvents"];

    // The role trusts Lambda, for this account only.
    fn branch<'a>(v: &'a Value, condition: &str) -> Option<&'a Value> {
        match v {
            Value::Object(map) => match map.get("Fn::If") {
                Some(args) if args[0] == condition => Some(&args[1]),
                _ => map.values().find_map(|v| branch(v, condition)),
            },
            Value::Array(list) => list.iter().find_map(|v| branch(v, condition)),
            _ => None,
        }
    }
    let trust = &resources["ForceMfaRole"]["Properties"]["AssumeRolePolicyDocument"];
    assert_eq!(
        branch(trust, "OnLambda"),
        Some(&json!({ "Version": "2012-10-17", "Statement": [{
            "Effect": "Allow",
            "Principal": { "Service": "lambda.amazonaws.com" },
            "Action": "sts:AssumeRole",
            "Condition": { "StringEquals": { "aws:SourceAccount": { "Ref": "AWS::AccountId" } } },
        }] }))
    );

    // What the Lambda resources grant the role: exactly these statements.
    let mut granted = Vec::new();
    for resource in resources.values() {
        let on_lambda = resource["Condition"]
            .as_str()
            .is_some_and(|c| lambda_conditions.contains(&c));
        if resource["Type"] == "AWS::IAM::RolePolicy" && on_lambda {
            assert_eq!(
                resource["Properties"]["RoleName"],
                json!({ "Ref": "ForceMfaRole" })
            );
            for statement in resource["Properties"]["PolicyDocument"]["Statement"]
                .as_array()
                .unwrap()
            {
                let mut statement = statement.clone();
                statement.as_object_mut().unwrap().remove("Sid");
                granted.push(statement);
            }
        }
    }
    granted.sort_by_key(ToString::to_string);
    assert_eq!(
        granted,
        [
            json!({ "Effect": "Allow", "Action": "sqs:GetQueueAttributes",
                    "Resource": { "Fn::GetAtt": ["EventsQueue", "Arn"] } }),
            json!({ "Effect": "Allow", "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                    "Resource": { "Fn::GetAtt": ["FunctionLogGroup", "Arn"] } }),
        ]
    );

    let queue = &resources["EventsQueue"]["Properties"];
    for (name, condition) in [
        ("RunFunction", "OnLambda"),
        ("EventsFunction", "OnLambdaWithEvents"),
    ] {
        let function = &resources[name];
        assert_eq!(function["Condition"], condition);
        let p = &function["Properties"];
        assert_eq!(
            p["Role"],
            json!({ "Fn::GetAtt": ["ForceMfaRole", "Arn"] }),
            "{name}"
        );
        assert_eq!(p["Runtime"], "provided.al2023");
        assert_eq!(p["Handler"], "bootstrap");
        assert_eq!(
            p["LoggingConfig"]["LogGroup"],
            json!({ "Ref": "FunctionLogGroup" })
        );
        // The function's settings make a configuration whose run ends before its timeout.
        let timeout = p["Timeout"].as_u64().unwrap();
        let env = p["Environment"]["Variables"].as_object().unwrap();
        assert_eq!(
            env["FORCEMFA_FUNCTION_TIMEOUT"],
            timeout.to_string(),
            "{name}"
        );
        let vars = [(
            "FORCEMFA__RUN_TIMEOUT".to_string(),
            env["FORCEMFA__RUN_TIMEOUT"].as_str().unwrap().to_string(),
        )];
        let config = forcemfa::config::Config::parse_layered("", name, vars).unwrap();
        check_fits(&config, std::time::Duration::from_secs(timeout), name).unwrap();
        // Each takes its own kind: a full run never starts in the events function.
        let takes = if name == "RunFunction" {
            "runs"
        } else {
            "events"
        };
        assert_eq!(env["FORCEMFA_FUNCTION_TAKES"], takes, "{name}");
        // The queue hides a message six times the events function's timeout, as the event
        // source mapping wants it.
        if name == "EventsFunction" {
            let visibility = &queue["VisibilityTimeout"]["Fn::If"];
            assert_eq!(visibility[0], "OnLambda");
            assert!(6 * timeout <= visibility[1].as_u64().unwrap());
        }
    }
    // Full runs one at a time; a scheduled run not started within ten minutes is dropped, not
    // retried after the next one.
    assert_eq!(
        resources["RunFunction"]["Properties"]["ReservedConcurrentExecutions"],
        1
    );
    let invoke = &resources["RunFunctionInvokeConfig"]["Properties"];
    assert_eq!(
        (
            &invoke["MaximumRetryAttempts"],
            &invoke["MaximumEventAgeInSeconds"]
        ),
        (&json!(0), &json!(600))
    );
    let schedule = &resources["ScheduleRule"]["Properties"];
    assert_eq!(
        schedule["Targets"][0]["Arn"],
        json!({ "Fn::GetAtt": ["RunFunction", "Arn"] })
    );

    // The events queue (with its dead-letter queue) feeds the events function in batches whose
    // answer names the messages to retry.
    let mapping = &resources["EventsMapping"]["Properties"];
    assert_eq!(
        mapping["EventSourceArn"],
        json!({ "Fn::GetAtt": ["EventsQueue", "Arn"] })
    );
    assert_eq!(mapping["FunctionName"], json!({ "Ref": "EventsFunction" }));
    assert_eq!(
        mapping["FunctionResponseTypes"],
        json!(["ReportBatchItemFailures"])
    );
    assert!(queue["RedrivePolicy"]["deadLetterTargetArn"].is_object());
    let dead_letters = &resources["DeadLetterAlarm"]["Properties"];
    assert_eq!(
        dead_letters["Dimensions"][0]["Value"],
        json!({ "Fn::GetAtt": ["EventsDeadLetterQueue", "QueueName"] })
    );

    // The log, the audit trail, is kept as long as the parameter says.
    assert_eq!(
        resources["FunctionLogGroup"]["Properties"]["RetentionInDays"],
        json!({ "Ref": "LambdaLogRetentionDays" })
    );

    // The alarms read the function's own metrics: no successful run in two intervals, and errors.
    let silent = &resources["NoSuccessfulRunAlarm"]["Properties"];
    assert_eq!(
        (&silent["Namespace"], &silent["MetricName"]),
        (&json!(emf::NAMESPACE), &json!("SuccessfulRuns"))
    );
    assert_eq!(silent["Dimensions"][0]["Name"], emf::DIMENSION);
    assert_eq!(
        (&silent["EvaluationPeriods"], &silent["TreatMissingData"]),
        (&json!(2), &json!("breaching"))
    );
    let minutes = template["Parameters"]["LambdaScheduleMinutes"]["AllowedValues"]
        .as_array()
        .unwrap();
    for m in minutes {
        let m = m.as_str().unwrap();
        let seconds = &template["Mappings"]["ScheduleSeconds"][m]["Seconds"];
        assert_eq!(
            seconds.as_u64(),
            Some(m.parse::<u64>().unwrap() * 60),
            "{m}"
        );
        // CloudWatch evaluates at most a day.
        assert!(seconds.as_u64().unwrap() * 2 <= 86_400);
    }
    for (alarm, function) in [
        ("RunErrorsAlarm", "RunFunction"),
        ("EventsErrorsAlarm", "EventsFunction"),
    ] {
        let metrics = resources[alarm]["Properties"]["Metrics"]
            .as_array()
            .unwrap();
        let read: Vec<(&Value, &Value)> = metrics
            .iter()
            .filter_map(|m| m.get("MetricStat"))
            .map(|m| {
                let dimension = json!([{ "Name": emf::DIMENSION, "Value": { "Ref": function } }]);
                assert_eq!(m["Metric"]["Dimensions"], dimension, "{alarm}");
                (&m["Metric"]["Namespace"], &m["Metric"]["MetricName"])
            })
            .collect();
        assert_eq!(
            read,
            [
                (&json!("AWS/Lambda"), &json!("Errors")),
                (&json!(emf::NAMESPACE), &json!("Errors"))
            ],
            "{alarm}"
        );
    }
}

/// A scheduled full run and a batch of events in two execution environments at once: the full
/// run reads alice without MFA and is held before its changes; meanwhile alice enrols and the
/// events function handles her event. When the full run applies, a read of alice just before her
/// add shows the device: the add is left out, and she stays out of the group.
#[tokio::test]
async fn a_full_run_and_a_batch_in_two_environments_do_not_undo_each_other() {
    if !lambda::available() {
        return;
    }
    let a = Account::with_group().await;
    a.user("alice").await;
    let proxy = FaultProxy::start(&a.moto.endpoint);
    proxy.set_rules(vec![Rule::new(
        &["Action=ListAccessKeys", "UserName=alice"],
        Fault::Delay(4000),
    )]);
    let mut full = Function::start(&a, &proxy.endpoint, &FUNCTION_ENV);
    let mut events = Function::start(&a, &a.moto.endpoint, &FUNCTION_ENV);
    let full_run = std::thread::spawn(move || {
        let answer = full.invoke(&scheduled_event());
        (full, answer)
    });
    let held = crate::support::daemon::eventually(30, || async {
        proxy.requests_with(&["Action=ListAccessKeys", "UserName=alice"]) > 0
    })
    .await;
    assert!(held, "the full run never read alice's keys");

    let _ = a.existing("alice").virtual_mfa().await;
    let record = json!({
        "messageId": "m-alice",
        "receiptHandle": "r",
        "body": iam_event(ACCOUNT_ID, "EnableMFADevice", &json!({ "userName": "alice", "serialNumber": format!("arn:aws:iam::{ACCOUNT_ID}:mfa/alice") })),
        "attributes": { "ApproximateReceiveCount": "1" },
        "eventSource": "aws:sqs",
    });
    let (status, answer) = events.invoke(&json!({ "Records": [record] }));
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer,
        json!({ "batchItemFailures": [] }),
        "{}",
        events.stderr()
    );
    assert_eq!(events.events("event handled").len(), 1);

    let (full, (status, report)) = full_run.join().unwrap();
    assert_eq!(status, 200, "{report}\n{}", full.stderr());
    assert!(
        a.members(GROUP).await.is_empty(),
        "a stale add was made:\n{}",
        full.stderr()
    );
    let account = &report["accounts"][0];
    assert_eq!(account["added"], json!([]), "{report}");
    assert_eq!(account["superseded"][0]["user"], "alice", "{report}");
    assert!(full.events("membership change intent").is_empty());
}

/// A batch whose reads outlast `run_timeout` stops there: no change starts after it, its events
/// come back for redelivery, and the answer comes long before the function's timeout.
#[tokio::test]
async fn a_batch_stops_at_run_timeout_and_sends_its_events_back() {
    if !lambda::available() {
        return;
    }
    let a = Account::with_group().await;
    let names: Vec<String> = (1..=6).map(|i| format!("new{i}")).collect();
    for name in &names {
        a.user(name).await;
    }
    // Every IAM request (not STS's) answers after 3 s, past the 2-second run_timeout.
    let proxy = FaultProxy::start(&a.moto.endpoint);
    proxy.set_rules(vec![Rule::new(&["Version=2010-05-08"], Fault::Delay(3000))]);
    let env = [
        ("FORCEMFA_FUNCTION_TIMEOUT", "30"),
        ("FORCEMFA__RUN_TIMEOUT", "2s"),
        ("FORCEMFA__AWS__OPERATION_TIMEOUT_SECS", "5"),
    ];
    let mut function = Function::start(&a, &proxy.endpoint, &env);
    let records: Vec<Value> = names
        .iter()
        .map(|name| {
            json!({
                "messageId": format!("m-{name}"),
                "body": iam_event(ACCOUNT_ID, "CreateUser", &json!({ "userName": name })),
                "eventSource": "aws:sqs",
            })
        })
        .collect();
    let started = std::time::Instant::now();
    let (status, answer) = function.invoke(&json!({ "Records": records }));
    let took = started.elapsed();
    assert_eq!(status, 200, "{answer}\n{}", function.stderr());
    assert!(took < std::time::Duration::from_secs(27), "{took:?}");
    let retried: Vec<&str> = answer["batchItemFailures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["itemIdentifier"].as_str().unwrap())
        .collect();
    let expected: Vec<String> = names.iter().map(|n| format!("m-{n}")).collect();
    assert_eq!(retried, expected, "{}", function.stderr());
    for line in function.events("event not handled; left on the queue for redelivery") {
        let reason = line["reason"].as_str().unwrap();
        assert!(reason.contains("run_timeout"), "{reason}");
    }
    assert!(a.members(GROUP).await.is_empty());
    assert!(function.events("membership change intent").is_empty());
}

/// The stack gives full runs and the events queue a function each; neither takes the other's.
#[tokio::test]
async fn each_function_takes_only_its_kind_of_invocation() {
    if !lambda::available() {
        return;
    }
    let a = account_to_converge().await;
    let before = a.members(GROUP).await;
    let mut env = FUNCTION_ENV.to_vec();
    env.push(("FORCEMFA_FUNCTION_TAKES", "events"));
    let mut events = Function::start(&a, &a.moto.endpoint, &env);
    for payload in [scheduled_event(), json!({}), json!({ "dry_run": true })] {
        let (_, error) = events.invoke(&payload);
        assert_eq!(error["errorType"], "forcemfa.InvalidInvocation", "{error}");
        let message = error["errorMessage"].as_str().unwrap();
        assert!(
            message.contains("FORCEMFA_FUNCTION_TAKES=events"),
            "{message}"
        );
    }
    assert!(events.events("run started").is_empty());
    assert_eq!(a.members(GROUP).await, before);

    env.pop();
    env.push(("FORCEMFA_FUNCTION_TAKES", "runs"));
    let mut runs = Function::start(&a, &a.moto.endpoint, &env);
    let record = json!({ "messageId": "m1", "body": "{}", "eventSource": "aws:sqs" });
    let (_, error) = runs.invoke(&json!({ "Records": [record] }));
    assert!(
        error["errorMessage"]
            .as_str()
            .unwrap()
            .contains("FORCEMFA_FUNCTION_TAKES=runs"),
        "{error}"
    );
}

/// A webhook and an email service that never answer: the invocation still answers before the
/// function's timeout. Each message may take 10 s; the notifier starts none that could not end
/// 10 s (the report's time) before the deadline, and keeps the rest for the next invocation.
#[tokio::test]
async fn an_invocation_answers_before_its_deadline_when_no_channel_answers() {
    if !lambda::available() {
        return;
    }
    let a = Account::with_group().await;
    for user in ["carol", "dave", "erin", "frank"] {
        a.user_at(user, "/", &[("email", &format!("{user}@example.com"))])
            .await;
    }
    let silent = WebhookReceiver::start();
    silent.set_delay(std::time::Duration::from_secs(3600));
    let url = silent.url();
    let silent_host = url.replace("/hooks/forcemfa", "");
    // 5 s run + 15 s for its requests (twice 5 s, and 5 s) + 10 s for a notification + 10 s for
    // the report = 40 s, under 45 s.
    let env = [
        ("FORCEMFA_FUNCTION_TIMEOUT", "45"),
        ("FORCEMFA__RUN_TIMEOUT", "5s"),
        ("FORCEMFA__AWS__OPERATION_TIMEOUT_SECS", "5"),
        ("FORCEMFA__NOTIFY__WEBHOOK_URL", url.as_str()),
        ("FORCEMFA__NOTIFY__EMAIL_FROM", "forcemfa@example.com"),
        ("FORCEMFA__NOTIFY__EMAILS_PER_SECOND", "100"),
        ("AWS_ENDPOINT_URL_SESV2", silent_host.as_str()),
    ];
    let mut function = Function::start(&a, &a.moto.endpoint, &env);
    let started = std::time::Instant::now();
    let (status, report) = function.invoke(&scheduled_event());
    let took = started.elapsed();
    assert_eq!(status, 200, "{report}\n{}", function.stderr());
    // Five messages of 10 s each would take 50 s; the function has 45.
    assert!(
        took < std::time::Duration::from_secs(45),
        "answered after {took:?}"
    );
    assert_eq!(
        a.members(GROUP).await,
        ["carol", "dave", "erin", "frank"].map(String::from).into()
    );
    let tried = report["notifications"].as_array().unwrap();
    assert!(
        !tried.is_empty() && tried.len() < 5,
        "some messages tried, not all: {report}"
    );
    assert!(tried.iter().all(|n| n["outcome"] == "failed"), "{report}");
    let kept = function.events("notifications kept for the next run");
    assert_eq!(kept.len(), 1, "{}", function.stderr());
    // Those refused and those not tried wait for the next invocation.
    assert_eq!(kept[0]["messages"], 5);

    // A function whose timeout leaves no room for a notification is refused, naming it.
    let short = [("FORCEMFA_FUNCTION_TIMEOUT", "39")];
    let env: Vec<(&str, &str)> = env[1..].iter().chain(&short).copied().collect();
    let mut function = Function::start(&a, &a.moto.endpoint, &env);
    let (_, error) = function.invoke(&scheduled_event());
    assert_eq!(error["errorType"], "forcemfa.ConfigurationError", "{error}");
    let message = error["errorMessage"].as_str().unwrap();
    for words in ["+ 10 s for a notification", "= 40 s", "(39 s)"] {
        assert!(message.contains(words), "{words}: {message}");
    }
}
