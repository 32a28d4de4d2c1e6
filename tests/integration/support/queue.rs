//! An SQS queue in the emulator, and IAM events shaped as EventBridge delivers them.

/// A standard queue in moto_server, which serves SQS beside IAM.
pub struct Queue {
    pub sqs: aws_sdk_sqs::Client,
    pub url: String,
}

impl Queue {
    pub async fn create(endpoint: &str, name: &str) -> Queue {
        let config = aws_sdk_sqs::Config::builder()
            .behavior_version(aws_sdk_sqs::config::BehaviorVersion::latest())
            .region(aws_sdk_sqs::config::Region::new("us-east-1"))
            .endpoint_url(endpoint)
            .credentials_provider(aws_sdk_sqs::config::Credentials::new(
                "testing", "testing", None, None, "tests",
            ))
            .build();
        let sqs = aws_sdk_sqs::Client::from_conf(config);
        let url = sqs
            .create_queue()
            .queue_name(name)
            .send()
            .await
            .expect("create queue")
            .queue_url()
            .expect("queue url")
            .to_string();
        Queue { sqs, url }
    }

    pub async fn send(&self, body: &str) {
        self.sqs
            .send_message()
            .queue_url(&self.url)
            .message_body(body)
            .send()
            .await
            .expect("send message");
    }

    /// Messages still on the queue, visible or in flight.
    pub async fn len(&self) -> u64 {
        use aws_sdk_sqs::types::QueueAttributeName as A;
        let out = self
            .sqs
            .get_queue_attributes()
            .queue_url(&self.url)
            .attribute_names(A::ApproximateNumberOfMessages)
            .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .expect("queue attributes");
        let attrs = out.attributes().expect("attributes");
        [
            A::ApproximateNumberOfMessages,
            A::ApproximateNumberOfMessagesNotVisible,
        ]
        .iter()
        .map(|a| {
            attrs
                .get(a)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        })
        .sum()
    }
}

/// An IAM event as EventBridge puts it on the queue (the shape of AWS's documented examples),
/// made now by the IAM user `admin` of `account`.
pub fn iam_event(account: &str, name: &str, params: &serde_json::Value) -> String {
    iam_event_at(account, name, params, time::OffsetDateTime::now_utc())
}

/// The same event, made at `at`.
pub fn iam_event_at(
    account: &str,
    name: &str,
    params: &serde_json::Value,
    at: time::OffsetDateTime,
) -> String {
    let now = at
        .format(&time::format_description::well_known::Rfc3339)
        .expect("a formattable time");
    serde_json::json!({
        "version": "0",
        "id": uuid::Uuid::new_v4().to_string(),
        "detail-type": "AWS API Call via CloudTrail",
        "source": "aws.iam",
        "account": account,
        "time": now,
        "region": "us-east-1",
        "resources": [],
        "detail": {
            "eventVersion": "1.08",
            "userIdentity": {
                "type": "IAMUser",
                "principalId": "AIDACKCEVSQ6C2EXAMPLE",
                "arn": format!("arn:aws:iam::{account}:user/admin"),
                "accountId": account,
                "accessKeyId": "AKIAIOSFODNN7EXAMPLE",
                "userName": "admin"
            },
            "eventTime": now,
            "eventSource": "iam.amazonaws.com",
            "eventName": name,
            "awsRegion": "us-east-1",
            "sourceIPAddress": "203.0.113.7",
            "userAgent": "aws-cli/2.15.0",
            "requestParameters": params,
            "responseElements": null,
            "requestID": uuid::Uuid::new_v4().to_string(),
            "eventID": uuid::Uuid::new_v4().to_string(),
            "readOnly": false,
            "eventType": "AwsApiCall",
            "managementEvent": true,
            "recipientAccountId": account,
            "eventCategory": "Management"
        }
    })
    .to_string()
}
