//! Where notifications land in the tests, checked against the emulator itself: a message
//! published to the topic reaches the subscribed queue with its subject and attributes, an email
//! from a verified sender is kept by moto's SES (and one from another sender is refused), and the
//! webhook receiver records what it is sent and answers as told. forcemfa's own sends are
//! tested on these.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::daemon::http_raw;
use crate::support::notify::{
    received, sent_emails, ses_client, sns_client, sns_topic_to_queue, verified_sender,
    WebhookReceiver,
};
use crate::support::Moto;

#[tokio::test]
async fn a_message_published_to_the_topic_reaches_the_queue_with_its_attributes() {
    let moto = Moto::start();
    let (topic, queue) = sns_topic_to_queue(&moto.endpoint).await;
    assert!(topic.starts_with("arn:aws:sns:us-east-1:"), "{topic}");
    assert!(received(&moto.endpoint, &queue).await.is_empty());

    let attribute = |v: &str| {
        aws_sdk_sns::types::MessageAttributeValue::builder()
            .data_type("String")
            .string_value(v)
            .build()
            .unwrap()
    };
    sns_client(&moto.endpoint)
        .publish()
        .topic_arn(&topic)
        .subject("forcemfa: carol added")
        .message("carol was added to ForceMFA")
        .message_attributes("event", attribute("run"))
        .message_attributes("account_id", attribute("123456789012"))
        .send()
        .await
        .unwrap();

    let envelopes = received(&moto.endpoint, &queue).await;
    assert_eq!(envelopes.len(), 1, "{envelopes:?}");
    let e = &envelopes[0];
    assert_eq!(e["TopicArn"], topic.as_str());
    assert_eq!(e["Subject"], "forcemfa: carol added");
    assert_eq!(e["Message"], "carol was added to ForceMFA");
    assert_eq!(
        e["MessageAttributes"]["event"],
        json!({"Type": "String", "Value": "run"})
    );
    assert_eq!(
        e["MessageAttributes"]["account_id"]["Value"],
        "123456789012"
    );
    // Taken off the queue: the next look sees only what came since.
    assert!(received(&moto.endpoint, &queue).await.is_empty());
}

#[tokio::test]
async fn an_email_from_a_verified_sender_is_kept_and_one_from_another_is_refused() {
    let moto = Moto::start();
    assert!(sent_emails(&moto.endpoint).is_empty());
    let ses = ses_client(&moto.endpoint);
    let send = |from: &str| {
        use aws_sdk_sesv2::types::{Body, Content, Destination, EmailContent, Message};
        let text = |d: &str| Content::builder().data(d).build().unwrap();
        ses.send_email()
            .from_email_address(from)
            .destination(
                Destination::builder()
                    .to_addresses("carol@example.com")
                    .build(),
            )
            .content(
                EmailContent::builder()
                    .simple(
                        Message::builder()
                            .subject(text("Set up MFA"))
                            .body(Body::builder().text(text("Hello carol")).build())
                            .build(),
                    )
                    .build(),
            )
            .send()
    };
    let refused = send("forcemfa@example.com").await.unwrap_err();
    assert_eq!(
        aws_sdk_sesv2::error::ProvideErrorMetadata::code(&refused),
        Some("MessageRejected"),
        "{refused:?}"
    );

    verified_sender(&moto.endpoint, "forcemfa@example.com").await;
    send("forcemfa@example.com").await.unwrap();
    let emails = sent_emails(&moto.endpoint);
    assert_eq!(emails.len(), 1, "{emails:?}");
    let m = &emails[0];
    assert_eq!(m["source"], "forcemfa@example.com");
    assert_eq!(
        m["destinations"]["ToAddresses"],
        json!(["carol@example.com"])
    );
    assert_eq!(m["subject"], "Set up MFA");
    assert_eq!(m["body"], "Hello carol");
}

fn post(url: &str, body: &str) -> (u16, Duration) {
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_once('/').unwrap();
    let request = format!(
        "POST /{path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
         Authorization: Bearer t0ken\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let started = Instant::now();
    let (status, _) = http_raw(host.parse().unwrap(), &request, Duration::from_secs(10)).unwrap();
    (status, started.elapsed())
}

#[test]
fn the_webhook_receiver_records_each_request_and_answers_as_told() {
    let hook = WebhookReceiver::start();
    assert!(hook.requests().is_empty());
    let (status, _) = post(&hook.url(), r#"{"text":"carol added"}"#);
    assert_eq!(status, 200);

    hook.set_status(500);
    hook.set_delay(Duration::from_millis(300));
    let (status, took) = post(&hook.url(), "not json");
    assert_eq!(status, 500);
    assert!(took >= Duration::from_millis(300), "{took:?}");

    let requests = hook.requests();
    assert_eq!(requests.len(), 2);
    let first = &requests[0];
    assert_eq!(first.method, "POST");
    assert_eq!(first.path, "/hooks/forcemfa");
    assert_eq!(first.headers["content-type"], "application/json");
    assert_eq!(first.headers["authorization"], "Bearer t0ken");
    assert_eq!(first.body, json!({"text": "carol added"}));
    assert_eq!(requests[1].body, json!("not json"));
}
