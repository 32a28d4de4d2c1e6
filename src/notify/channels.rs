//! The channels messages go out on: an SNS topic and a webhook for the admins' summaries, SES for
//! each affected user's email. Each send has a short deadline of its own: a channel that is slow
//! or down costs a few seconds and a warning, never the run.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{Region, SdkConfig};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

use crate::arn::Arn;
use crate::aws::AwsError;
use crate::config::{ConfigError, NotifySettings};
use crate::reconcile::notification::Channel;
use crate::text::{clip, error_chain, one_line};

/// How long one message may take on any channel, retries included: a notification is worth a
/// few seconds of a run, not more.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// How long one attempt of an SNS or SES call may take, and to connect; with one retry, both
/// attempts fit in [`SEND_TIMEOUT`].
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(4);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const MAX_ATTEMPTS: u32 = 2;

/// SNS takes subjects of fewer than 100 ASCII characters, without line breaks.
const SNS_SUBJECT_MAX: usize = 99;

/// SNS takes messages of up to 256 KiB, message attributes included; a summary of a first
/// rollout in a large account may run past that, and is cut short with a note instead.
const SNS_MESSAGE_MAX: usize = 250 * 1024;

/// How much of a refusing webhook's answer the error quotes (Slack answers `invalid_payload`,
/// `no_text` and the like), and how much of it is read at most.
const WEBHOOK_ANSWER_QUOTED: usize = 200;
const WEBHOOK_ANSWER_READ: usize = 64 * 1024;

/// One account's summary for the admins.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// What happened, as the SNS message attribute `event` says it (`run`).
    pub event: &'static str,
    pub account_id: String,
    /// The email subject SNS subscribers see.
    pub subject: String,
    /// The readable text: the SNS message, and the webhook's `text`.
    pub text: String,
    /// The webhook's JSON body; it holds `text` too.
    pub json: Value,
}

/// One email to one user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email {
    pub to: String,
    pub subject: String,
    pub body: String,
}

/// Why a message was not delivered. Each names the channel and the cause on one line; none holds
/// the webhook's token or its URL's path (a Slack or Teams URL is a credential itself), nor the
/// recipient's address (the caller names the user).
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// A message was sent on a channel the configuration does not set up.
    #[error("{0}: not configured")]
    NotConfigured(Channel),
    #[error("sns: Publish to {topic} failed: {}", .error.detail)]
    Sns { topic: String, error: AwsError },
    #[error("webhook: POST to {host} failed: {failure}")]
    Webhook {
        /// The URL's scheme and host only.
        host: String,
        failure: WebhookFailure,
    },
    #[error("email: SES SendEmail from {from} failed: {}", .error.detail)]
    Email { from: String, error: AwsError },
}

impl SendError {
    /// What kind of failure it was, as a fixed label for logs and metrics: AWS's kinds
    /// (`throttled`, `refused`, `service`, `timeout`, `unreachable`, ...), the webhook's
    /// (`timeout`, `refused`, `unreachable`), or `not_configured`.
    pub fn metric_label(&self) -> &'static str {
        match self {
            SendError::NotConfigured(_) => "not_configured",
            SendError::Sns { error, .. } | SendError::Email { error, .. } => {
                error.kind.metric_label()
            }
            SendError::Webhook { failure, .. } => match failure {
                WebhookFailure::Timeout => "timeout",
                WebhookFailure::Refused { .. } => "refused",
                WebhookFailure::Transport(_) => "unreachable",
            },
        }
    }
}

/// How a webhook POST failed.
#[derive(Debug, thiserror::Error)]
pub enum WebhookFailure {
    #[error("no answer within {}s", SEND_TIMEOUT.as_secs())]
    Timeout,
    /// The receiver answered, but not with a 2xx status.
    #[error("answered {status}{}", quoted(.answer))]
    Refused { status: StatusCode, answer: String },
    /// No answer: DNS, connection, TLS, or the request could not be built.
    #[error("{0}")]
    Transport(String),
}

fn quoted(answer: &str) -> String {
    if answer.is_empty() {
        String::new()
    } else {
        format!(": {answer}")
    }
}

/// The configured channels.
pub struct Channels {
    settings: NotifySettings,
    sns: Option<aws_sdk_sns::Client>,
    webhook: Option<Webhook>,
    ses: Option<aws_sdk_sesv2::Client>,
}

impl Channels {
    /// Sets up the configured channels on `sdk`'s credentials and endpoint; reads the webhook's
    /// token once, here. SNS signs for the topic's region, SES for the default region.
    pub async fn new(settings: &NotifySettings, sdk: &SdkConfig) -> Result<Channels, ConfigError> {
        let sns = settings.sns_topic_arn.as_deref().map(|arn| {
            let mut config = quick_sdk_calls(aws_sdk_sns::config::Builder::from(sdk));
            if let Some(region) = Arn::parse(arn).and_then(|arn| arn.regional()) {
                config = config.region(Region::new(region.to_string()));
            }
            aws_sdk_sns::Client::from_conf(config.build())
        });
        let webhook = match &settings.webhook_url {
            Some(url) => Some(Webhook::new(url, settings.webhook_token_file.as_deref())?),
            None => None,
        };
        let ses = settings.email_from.as_ref().map(|_| {
            let config = quick_sdk_calls(aws_sdk_sesv2::config::Builder::from(sdk));
            aws_sdk_sesv2::Client::from_conf(config.build())
        });
        Ok(Channels {
            settings: settings.clone(),
            sns,
            webhook,
            ses,
        })
    }

    /// The channels a summary goes out on.
    pub fn summary_channels(&self) -> Vec<Channel> {
        let mut channels = Vec::new();
        if self.settings.sns_topic_arn.is_some() {
            channels.push(Channel::Sns);
        }
        if self.settings.webhook_url.is_some() {
            channels.push(Channel::Webhook);
        }
        channels
    }

    /// Whether users are emailed.
    pub fn emails(&self) -> bool {
        self.settings.email_from.is_some()
    }

    /// Sends `summary` on `channel` (SNS with the message attributes `event` and `account_id`;
    /// the webhook as a JSON POST).
    pub async fn send_summary(&self, channel: Channel, summary: &Summary) -> Result<(), SendError> {
        match channel {
            Channel::Sns => self.publish(summary).await,
            Channel::Webhook => {
                let webhook = self
                    .webhook
                    .as_ref()
                    .ok_or(SendError::NotConfigured(channel))?;
                webhook.post(&summary.json).await
            }
            Channel::Email => Err(SendError::NotConfigured(channel)),
        }
    }

    /// Sends one email through SES from `notify.email_from`.
    pub async fn send_email(&self, email: &Email) -> Result<(), SendError> {
        use aws_sdk_sesv2::types::{Body, Content, Destination, EmailContent, Message};
        let (Some(ses), Some(from)) = (&self.ses, &self.settings.email_from) else {
            return Err(SendError::NotConfigured(Channel::Email));
        };
        // Content's only required field is its data, set here.
        let text = |data: &str| {
            Content::builder()
                .data(data)
                .charset("UTF-8")
                .build()
                .expect("the content's data is set")
        };
        let message = Message::builder()
            .subject(text(&one_line(&email.subject)))
            .body(Body::builder().text(text(&email.body)).build())
            .build();
        ses.send_email()
            .from_email_address(from)
            .destination(Destination::builder().to_addresses(&email.to).build())
            .content(EmailContent::builder().simple(message).build())
            .send()
            .await
            .map_err(|e| SendError::Email {
                from: from.clone(),
                error: AwsError::of("ses", "SendEmail", &e),
            })?;
        Ok(())
    }

    async fn publish(&self, summary: &Summary) -> Result<(), SendError> {
        use aws_sdk_sns::types::MessageAttributeValue;
        let (Some(sns), Some(topic)) = (&self.sns, &self.settings.sns_topic_arn) else {
            return Err(SendError::NotConfigured(Channel::Sns));
        };
        // A message attribute's only required field is its data type, set here.
        let attribute = |value: &str| {
            MessageAttributeValue::builder()
                .data_type("String")
                .string_value(value)
                .build()
                .expect("the attribute's data type is set")
        };
        let mut request = sns
            .publish()
            .topic_arn(topic)
            .message(sns_message(&summary.text))
            .message_attributes("event", attribute(summary.event))
            .message_attributes("account_id", attribute(&summary.account_id));
        if let Some(subject) = sns_subject(&summary.subject) {
            request = request.subject(subject);
        }
        request.send().await.map_err(|e| SendError::Sns {
            topic: topic.clone(),
            error: AwsError::of("sns", "Publish", &e),
        })?;
        Ok(())
    }
}

/// Any SDK client's configuration, made quick: few retries and a short deadline, whatever the
/// IAM calls are allowed.
trait QuickCalls: Sized {
    fn timeouts(self, timeouts: TimeoutConfig) -> Self;
    fn retries(self, retries: RetryConfig) -> Self;
}

impl QuickCalls for aws_sdk_sns::config::Builder {
    fn timeouts(self, timeouts: TimeoutConfig) -> Self {
        self.timeout_config(timeouts)
    }
    fn retries(self, retries: RetryConfig) -> Self {
        self.retry_config(retries)
    }
}

impl QuickCalls for aws_sdk_sesv2::config::Builder {
    fn timeouts(self, timeouts: TimeoutConfig) -> Self {
        self.timeout_config(timeouts)
    }
    fn retries(self, retries: RetryConfig) -> Self {
        self.retry_config(retries)
    }
}

fn quick_sdk_calls<B: QuickCalls>(builder: B) -> B {
    let timeouts = TimeoutConfig::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .operation_attempt_timeout(ATTEMPT_TIMEOUT)
        .operation_timeout(SEND_TIMEOUT)
        .build();
    let retries = RetryConfig::standard()
        .with_max_attempts(MAX_ATTEMPTS)
        .with_initial_backoff(Duration::from_millis(200))
        .with_max_backoff(Duration::from_secs(1));
    builder.timeouts(timeouts).retries(retries)
}

/// A subject SNS takes: printable ASCII only (common typographic marks spelled in ASCII, any
/// other character as `?`), no line breaks, starting with a letter, a digit or a punctuation
/// mark, fewer than 100 characters (cut short with `...`). None when nothing is left.
fn sns_subject(subject: &str) -> Option<String> {
    let mut ascii = String::with_capacity(subject.len());
    for c in subject.chars() {
        match c {
            ' '..='~' => ascii.push(c),
            '\u{2013}' | '\u{2014}' | '\u{2212}' => ascii.push('-'),
            '\u{2018}' | '\u{2019}' => ascii.push('\''),
            '\u{201c}' | '\u{201d}' => ascii.push('"'),
            '\u{2026}' => ascii.push_str("..."),
            c if c.is_whitespace() || c.is_control() => ascii.push(' '),
            _ => ascii.push('?'),
        }
    }
    let collapsed = ascii.split_whitespace().collect::<Vec<_>>().join(" ");
    if collapsed.is_empty() {
        return None;
    }
    if collapsed.len() <= SNS_SUBJECT_MAX {
        return Some(collapsed);
    }
    // All ASCII: byte offsets are character offsets.
    let cut = collapsed[..SNS_SUBJECT_MAX - 3].trim_end();
    Some(format!("{cut}..."))
}

/// The summary's text as an SNS message: cut short, on a character boundary, with a note, when
/// it would not fit.
fn sns_message(text: &str) -> String {
    const NOTE: &str = "\n... (cut short: the report has the rest)";
    if text.len() <= SNS_MESSAGE_MAX {
        return text.to_string();
    }
    let end = text.floor_char_boundary(SNS_MESSAGE_MAX - NOTE.len());
    format!("{}{NOTE}", &text[..end])
}

/// The webhook: a JSON POST to a URL, over HTTPS with the system's roots (or plain HTTP).
struct Webhook {
    url: Uri,
    /// The URL's scheme, host and port, for errors: its path may be a credential.
    host: String,
    authorization: Option<HeaderValue>,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl Webhook {
    fn new(url: &str, token_file: Option<&Path>) -> Result<Webhook, ConfigError> {
        let invalid = |key: &str, message: String| ConfigError::Invalid {
            key: key.to_string(),
            message,
        };
        let parsed: Uri = url
            .parse()
            .map_err(|e| invalid("notify.webhook_url", format!("not a URL: {e}")))?;
        let host = match (parsed.scheme_str(), parsed.authority()) {
            (Some(scheme), Some(authority)) => match authority.port_u16() {
                Some(port) => format!("{scheme}://{}:{port}", authority.host()),
                None => format!("{scheme}://{}", authority.host()),
            },
            _ => {
                return Err(invalid(
                    "notify.webhook_url",
                    "not an absolute http(s) URL".to_string(),
                ))
            }
        };
        let authorization = token_file.map(read_token).transpose()?;
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(CONNECT_TIMEOUT));
        http.enforce_http(false);
        let connector = HttpsConnectorBuilder::new()
            .with_tls_config(tls_config())
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new()).build(connector);
        Ok(Webhook {
            url: parsed,
            host,
            authorization,
            client,
        })
    }

    async fn post(&self, json: &Value) -> Result<(), SendError> {
        let failed = |failure: WebhookFailure| SendError::Webhook {
            host: self.host.clone(),
            failure,
        };
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(self.url.clone())
            .header(CONTENT_TYPE, "application/json");
        if let Some(authorization) = &self.authorization {
            request = request.header(AUTHORIZATION, authorization.clone());
        }
        let request = request
            .body(Full::new(Bytes::from(json.to_string())))
            .map_err(|e| failed(WebhookFailure::Transport(one_line(&e.to_string()))))?;
        let exchange = async {
            let answer = self
                .client
                .request(request)
                .await
                .map_err(|e| WebhookFailure::Transport(error_chain(&e)))?;
            let status = answer.status();
            if status.is_success() {
                return Ok(());
            }
            let body = Limited::new(answer.into_body(), WEBHOOK_ANSWER_READ)
                .collect()
                .await
                .map(http_body_util::Collected::to_bytes)
                .unwrap_or_default();
            let answer = clip(
                &one_line(&String::from_utf8_lossy(&body)),
                WEBHOOK_ANSWER_QUOTED,
            );
            Err(WebhookFailure::Refused { status, answer })
        };
        match tokio::time::timeout(SEND_TIMEOUT, exchange).await {
            Ok(result) => result.map_err(failed),
            Err(_) => Err(failed(WebhookFailure::Timeout)),
        }
    }
}

/// TLS with the system's roots, on the crypto provider the AWS SDK uses. Without usable roots,
/// HTTPS cannot be verified: that is a broken host, not a broken configuration, so it is logged,
/// and each HTTPS send fails (naming the unknown issuer) instead of the service not starting.
fn tls_config() -> rustls::ClientConfig {
    use hyper_rustls::ConfigBuilderExt;
    let builder = || {
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("aws-lc-rs supports the default TLS versions")
    };
    match builder().with_native_roots() {
        Ok(roots) => roots.with_no_client_auth(),
        Err(e) => {
            tracing::warn!(error = %e, "no system TLS roots: the webhook cannot verify HTTPS");
            builder()
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth()
        }
    }
}

/// The `Authorization` header for the token in `path` (trimmed), marked sensitive so that no
/// debug output shows it. Errors name the key and the file, never the content.
fn read_token(path: &Path) -> Result<HeaderValue, ConfigError> {
    let invalid = |message: String| ConfigError::Invalid {
        key: "notify.webhook_token_file".to_string(),
        message,
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| invalid(format!("cannot read {}: {e}", path.display())))?;
    let token = text.trim();
    if token.is_empty() {
        return Err(invalid(format!("{} is empty", path.display())));
    }
    let mut value = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
        invalid(format!(
            "{} holds characters an HTTP header cannot carry",
            path.display()
        ))
    })?;
    value.set_sensitive(true);
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sns_subjects_are_short_printable_ascii_on_one_line() {
        assert_eq!(
            sns_subject("forcemfa: 3 added in 123456789012").as_deref(),
            Some("forcemfa: 3 added in 123456789012")
        );
        assert_eq!(
            sns_subject(
                "  carol \u{2014} \u{201c}keys\u{201d}\n\tin use\u{2026} \u{e9}t\u{e9} \u{1f512}"
            )
            .as_deref(),
            Some("carol - \"keys\" in use... ?t? ?")
        );
        assert_eq!(sns_subject(" \n\r\t "), None);
        let long = sns_subject(&"word ".repeat(40)).unwrap();
        assert_eq!(long.len(), SNS_SUBJECT_MAX);
        assert!(long.ends_with("..."), "{long}");
        let long = sns_subject(&"\u{e9}".repeat(300)).unwrap();
        assert!(long.len() < 100 && long.is_ascii(), "{long}");
        for subject in ["x".repeat(99), "\u{0}abc".into(), "a\u{7f}b".into()] {
            let s = sns_subject(&subject).unwrap();
            assert!(s.len() < 100, "{s}");
            assert!(s.bytes().all(|b| (b' '..=b'~').contains(&b)), "{s:?}");
            assert!(!s.starts_with(' '), "{s:?}");
        }
    }

    #[test]
    fn an_sns_message_too_long_is_cut_on_a_character_boundary() {
        assert_eq!(sns_message("short"), "short");
        let long = "\u{e9}".repeat(SNS_MESSAGE_MAX);
        let cut = sns_message(&long);
        assert!(cut.len() <= SNS_MESSAGE_MAX, "{}", cut.len());
        assert!(cut.ends_with("(cut short: the report has the rest)"));
    }

    #[test]
    fn errors_are_one_line_and_name_the_channel() {
        assert_eq!(one_line("a\n  b\r\n\tc\u{0}d"), "a b c d");
        let refused = SendError::Webhook {
            host: "https://hooks.slack.com".into(),
            failure: WebhookFailure::Refused {
                status: StatusCode::FORBIDDEN,
                answer: "invalid_token".into(),
            },
        };
        assert_eq!(
            refused.to_string(),
            "webhook: POST to https://hooks.slack.com failed: answered 403 Forbidden: invalid_token"
        );
        assert!(matches!(refused, SendError::Webhook { .. }));
        assert_eq!(refused.metric_label(), "refused");
        assert_eq!(
            SendError::NotConfigured(Channel::Email).to_string(),
            "email: not configured"
        );
    }

    fn settings(url: &str, token_file: Option<&Path>) -> NotifySettings {
        NotifySettings {
            webhook_url: Some(url.into()),
            webhook_token_file: token_file.map(Path::to_path_buf),
            ..NotifySettings::default()
        }
    }

    async fn channels(settings: &NotifySettings) -> Result<Channels, ConfigError> {
        let sdk = SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .build();
        Channels::new(settings, &sdk).await
    }

    #[tokio::test]
    async fn the_token_file_is_read_once_trimmed_and_errors_name_key_and_file() {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "  s3cr3t-token\n").unwrap();
        let url = "https://hooks.slack.com/services/T0/B0/XXXX";
        let ready = channels(&settings(url, Some(&token))).await.unwrap();
        let webhook = ready.webhook.as_ref().unwrap();
        let header = webhook.authorization.as_ref().unwrap();
        assert_eq!(header.to_str().unwrap(), "Bearer s3cr3t-token");
        assert!(header.is_sensitive());
        assert_eq!(webhook.host, "https://hooks.slack.com");
        assert_eq!(ready.summary_channels(), [Channel::Webhook]);
        assert!(!ready.emails());

        let missing = dir.path().join("missing");
        let err = channels(&settings(url, Some(&missing)))
            .await
            .err()
            .unwrap();
        let text = err.to_string();
        assert!(text.contains("notify.webhook_token_file"), "{text}");
        assert!(text.contains(&missing.display().to_string()), "{text}");

        std::fs::write(&token, " \n").unwrap();
        let err = channels(&settings(url, Some(&token))).await.err().unwrap();
        assert!(err.to_string().contains("is empty"), "{err}");

        std::fs::write(&token, "bad\u{7}token").unwrap();
        let err = channels(&settings(url, Some(&token))).await.err().unwrap();
        assert!(!err.to_string().contains("bad"), "{err}");
    }

    #[tokio::test]
    async fn a_summary_on_a_channel_not_configured_is_refused() {
        let none = channels(&NotifySettings::default()).await.unwrap();
        let summary = Summary {
            event: "run",
            account_id: "123456789012".into(),
            subject: "s".into(),
            text: "t".into(),
            json: serde_json::json!({"text": "t"}),
        };
        for channel in [Channel::Sns, Channel::Webhook, Channel::Email] {
            let err = none.send_summary(channel, &summary).await.unwrap_err();
            assert!(
                matches!(err, SendError::NotConfigured(c) if c == channel),
                "{err}"
            );
        }
        let email = Email {
            to: "carol@example.com".into(),
            subject: "s".into(),
            body: "b".into(),
        };
        assert!(matches!(
            none.send_email(&email).await,
            Err(SendError::NotConfigured(Channel::Email))
        ));
    }

    /// A webhook that never answers costs the timeout, not more; one that refuses is a failure
    /// naming the status and the answer, but not the URL's path.
    #[tokio::test]
    async fn webhook_failures_name_the_status_and_never_the_path() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let mut buf = vec![0u8; 4096];
                let _ = socket.read(&mut buf).await;
                let _ = socket
                    .write_all(
                        b"HTTP/1.1 400 Bad Request\r\ncontent-length: 15\r\nconnection: close\r\n\r\ninvalid_payload",
                    )
                    .await;
            }
        });
        let url = format!("http://{addr}/services/T0/B0/SECRETPATH");
        let ready = channels(&settings(&url, None)).await.unwrap();
        let summary = Summary {
            event: "run",
            account_id: "123456789012".into(),
            subject: "s".into(),
            text: "t".into(),
            json: serde_json::json!({"text": "t"}),
        };
        let err = ready
            .send_summary(Channel::Webhook, &summary)
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("400") && text.contains("invalid_payload"),
            "{text}"
        );
        assert!(
            text.contains(&format!("POST to http://{addr} failed")),
            "{text}"
        );
        assert!(!text.contains("SECRETPATH"), "{text}");
    }
}
