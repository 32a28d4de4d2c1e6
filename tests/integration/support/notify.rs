//! Where notifications land in the test world: an SNS topic in moto with an SQS queue subscribed
//! to it, a verified SES sender whose mail moto keeps, and a webhook receiver on a free loopback
//! port that records every request.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use super::daemon::http_raw;

/// An SNS client of the emulator in us-east-1, to publish as forcemfa would.
pub fn sns_client(endpoint: &str) -> aws_sdk_sns::Client {
    aws_sdk_sns::Client::from_conf(
        aws_sdk_sns::Config::builder()
            .behavior_version(aws_sdk_sns::config::BehaviorVersion::latest())
            .region(aws_sdk_sns::config::Region::new("us-east-1"))
            .endpoint_url(endpoint)
            .credentials_provider(aws_sdk_sns::config::Credentials::new(
                "testing", "testing", None, None, "tests",
            ))
            .build(),
    )
}

fn sqs_client(endpoint: &str) -> aws_sdk_sqs::Client {
    aws_sdk_sqs::Client::from_conf(
        aws_sdk_sqs::Config::builder()
            .behavior_version(aws_sdk_sqs::config::BehaviorVersion::latest())
            .region(aws_sdk_sqs::config::Region::new("us-east-1"))
            .endpoint_url(endpoint)
            .credentials_provider(aws_sdk_sqs::config::Credentials::new(
                "testing", "testing", None, None, "tests",
            ))
            .build(),
    )
}

/// An SES v2 client of the emulator, in us-east-1 (where forcemfa's SES client signs in the
/// tests: the default region).
pub fn ses_client(endpoint: &str) -> aws_sdk_sesv2::Client {
    aws_sdk_sesv2::Client::from_conf(
        aws_sdk_sesv2::Config::builder()
            .behavior_version(aws_sdk_sesv2::config::BehaviorVersion::latest())
            .region(aws_sdk_sesv2::config::Region::new("us-east-1"))
            .endpoint_url(endpoint)
            .credentials_provider(aws_sdk_sesv2::config::Credentials::new(
                "testing", "testing", None, None, "tests",
            ))
            .build(),
    )
}

/// A new SNS topic `forcemfa-admins` in us-east-1 with a new SQS queue subscribed to it (SNS's
/// JSON envelope around each message, not raw delivery): the topic's ARN and the queue's URL.
pub async fn sns_topic_to_queue(endpoint: &str) -> (String, String) {
    let topic_arn = sns_client(endpoint)
        .create_topic()
        .name("forcemfa-admins")
        .send()
        .await
        .expect("create topic")
        .topic_arn()
        .expect("topic ARN")
        .to_string();
    let sqs = sqs_client(endpoint);
    let queue_url = sqs
        .create_queue()
        .queue_name("forcemfa-admins-inbox")
        .send()
        .await
        .expect("create queue")
        .queue_url()
        .expect("queue url")
        .to_string();
    let attributes = sqs
        .get_queue_attributes()
        .queue_url(&queue_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .expect("queue attributes");
    let queue_arn = attributes
        .attributes()
        .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn))
        .expect("queue ARN")
        .clone();
    sns_client(endpoint)
        .subscribe()
        .topic_arn(&topic_arn)
        .protocol("sqs")
        .endpoint(queue_arn)
        .send()
        .await
        .expect("subscribe the queue");
    (topic_arn, queue_url)
}

/// The SNS envelopes delivered to the queue since the last call, in order, taken off the queue:
/// each has `Message`, `Subject` (when one was given), `TopicArn` and `MessageAttributes`
/// (`{"event": {"Type": "String", "Value": "run"}, ...}`).
pub async fn received(endpoint: &str, queue_url: &str) -> Vec<Value> {
    let sqs = sqs_client(endpoint);
    let mut envelopes = Vec::new();
    loop {
        let out = sqs
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .send()
            .await
            .expect("receive messages");
        let messages = out.messages();
        if messages.is_empty() {
            return envelopes;
        }
        for m in messages {
            let body = m.body().expect("a message body");
            envelopes.push(
                serde_json::from_str(body)
                    .unwrap_or_else(|e| panic!("not an SNS envelope ({e}): {body}")),
            );
            sqs.delete_message()
                .queue_url(queue_url)
                .receipt_handle(m.receipt_handle().expect("receipt handle"))
                .send()
                .await
                .expect("delete message");
        }
    }
}

/// Makes `address` a verified SES identity (moto answers `MessageRejected` to a sender that is
/// not one).
pub async fn verified_sender(endpoint: &str, address: &str) {
    ses_client(endpoint)
        .create_email_identity()
        .email_identity(address)
        .send()
        .await
        .expect("create email identity");
}

/// Every email moto's SES took so far, from its `/moto-api/data.json`: each has `source`,
/// `destinations.ToAddresses`, `subject` and `body`.
pub fn sent_emails(endpoint: &str) -> Vec<Value> {
    let addr: SocketAddr = endpoint
        .trim_start_matches("http://")
        .parse()
        .expect("a loopback endpoint");
    let request =
        format!("GET /moto-api/data.json HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    let (status, body) =
        http_raw(addr, &request, Duration::from_secs(10)).expect("moto's data.json");
    assert_eq!(status, 200, "{body}");
    let data: Value = serde_json::from_str(&body).expect("moto's data.json is JSON");
    match &data["ses"]["Message"] {
        Value::Array(list) => list.clone(),
        Value::Null => Vec::new(),
        other => panic!("unexpected ses.Message in moto's data: {other}"),
    }
}

/// One request a [`WebhookReceiver`] took.
#[derive(Debug, Clone)]
pub struct WebhookRequest {
    pub method: String,
    pub path: String,
    /// Header names in lower case.
    pub headers: BTreeMap<String, String>,
    /// The body as JSON, or as a JSON string when it is not JSON.
    pub body: Value,
}

/// What the receiver shares with its thread.
#[derive(Default)]
struct Shared {
    requests: Mutex<Vec<WebhookRequest>>,
    status: AtomicU16,
    /// Milliseconds to wait before answering.
    delay_ms: AtomicU64,
    stop: AtomicBool,
}

/// A webhook endpoint on 127.0.0.1 and a free port that records every request and answers
/// 200 (or the status set); it runs on threads of its own, so it answers while a test waits on
/// a blocking `forcemfa` run. Stopped when dropped.
pub struct WebhookReceiver {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

impl WebhookReceiver {
    pub fn start() -> WebhookReceiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the webhook receiver");
        let addr = listener.local_addr().expect("its address");
        let shared = Arc::new(Shared::default());
        shared.status.store(200, Ordering::SeqCst);
        let accepting = Arc::clone(&shared);
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if accepting.stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(conn) = conn else { continue };
                let shared = Arc::clone(&accepting);
                std::thread::spawn(move || serve(conn, &shared));
            }
        });
        WebhookReceiver { addr, shared }
    }

    /// The URL to configure as `notify.webhook_url`.
    pub fn url(&self) -> String {
        format!("http://{}/hooks/forcemfa", self.addr)
    }

    /// Every request so far, in the order they arrived.
    pub fn requests(&self) -> Vec<WebhookRequest> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// Answers every later request with `status`.
    pub fn set_status(&self, status: u16) {
        self.shared.status.store(status, Ordering::SeqCst);
    }

    /// Waits `delay` before answering each later request (past forcemfa's deadline, a slow
    /// channel).
    pub fn set_delay(&self, delay: Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.shared.delay_ms.store(ms, Ordering::SeqCst);
    }
}

impl Drop for WebhookReceiver {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so that it sees the flag.
        let _ = TcpStream::connect(self.addr);
    }
}

/// Reads one request, records it, answers it, and closes the connection.
fn serve(conn: TcpStream, shared: &Shared) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    let mut reader = BufReader::new(conn);
    let mut start = String::new();
    if reader.read_line(&mut start).unwrap_or(0) == 0 {
        return;
    }
    let mut parts = start.split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let path = parts.next().unwrap_or_default().to_string();
    let mut headers = BTreeMap::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_string());
        }
    }
    let length = headers
        .get("content-length")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let text = String::from_utf8_lossy(&body).into_owned();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    shared.requests.lock().unwrap().push(WebhookRequest {
        method,
        path,
        headers,
        body,
    });
    let delay = shared.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        std::thread::sleep(Duration::from_millis(delay));
    }
    let status = shared.status.load(Ordering::SeqCst);
    let answer = if (200..300).contains(&status) {
        "ok"
    } else {
        "refused"
    };
    let mut conn = reader.into_inner();
    let _ = write!(
        conn,
        "HTTP/1.1 {status} Status\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
        answer.len()
    );
    let _ = conn.flush();
}
