//! `[events]`: reconciling single users as IAM's CloudTrail events arrive on an SQS queue, between
//! the scheduled full runs.

use std::time::Duration;

use crate::arn::{is_account_id, Partition};

use super::defaults;
use super::duration::{humanize_ms, Bounds, DurationKey, Units};
use super::error::ConfigError;
use super::raw::RawEvents;

/// SQS holds a receive open for at most 20 s (`WaitTimeSeconds`); a longer one is refused.
pub const LONGEST_POLL: Duration = Duration::from_secs(20);

/// Where the events come from and how they are taken off the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventsSettings {
    /// As SQS gives it: `https://sqs.us-east-1.amazonaws.com/123456789012/forcemfa-events`.
    pub queue_url: String,
    pub queue: QueueRef,
    /// How long one ReceiveMessage waits for a message (SQS long polling, at most 20 s).
    pub wait: Duration,
    /// After the first message of a batch, how long to keep receiving before reconciling: events
    /// for one user that arrive within it cost one reconciliation.
    pub batch_window: Duration,
    /// How long a received message stays hidden from other receives. A message whose users
    /// could not be handled reappears after it, and moves to the dead-letter queue once the
    /// queue's redrive policy says so.
    pub visibility_timeout: Duration,
}

/// The queue a URL names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueRef {
    /// From the host name (`sqs.REGION.amazonaws.com`); `None` for another endpoint (then the
    /// SDK's region applies).
    pub region: Option<String>,
    pub account_id: String,
    pub name: String,
}

impl QueueRef {
    /// `arn:PARTITION:sqs:REGION:ACCOUNT:NAME`, for the daemon's policy; `*` stands for a region
    /// the URL does not show.
    pub fn arn(&self) -> String {
        let region = self.region.as_deref().unwrap_or("*");
        let partition = Partition::of_region(self.region.as_deref().unwrap_or_default());
        format!(
            "arn:{partition}:sqs:{region}:{}:{}",
            self.account_id, self.name
        )
    }
}

const KEY: &str = "events.queue_url";

const WAIT: DurationKey = DurationKey {
    key: "events.wait",
    units: Units::Milliseconds,
    bounds: Bounds::Within {
        min: Duration::from_secs(1),
        max: LONGEST_POLL,
    },
};

const BATCH_WINDOW: DurationKey = DurationKey {
    key: "events.batch_window",
    units: Units::Milliseconds,
    bounds: Bounds::Within {
        min: Duration::ZERO,
        max: Duration::from_secs(60),
    },
};

const VISIBILITY_TIMEOUT: DurationKey = DurationKey {
    key: "events.visibility_timeout",
    units: Units::Milliseconds,
    bounds: Bounds::Within {
        min: Duration::from_secs(5),
        max: Duration::from_secs(12 * 3600),
    },
};

/// Why a queue URL is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueueUrlError {
    #[error("`{0}` is not an SQS queue URL such as https://sqs.us-east-1.amazonaws.com/123456789012/forcemfa-events")]
    NotAUrl(String),
    #[error("`{0}` must use https (http only on a loopback endpoint)")]
    NotHttps(String),
    #[error("`{url}`: `{account_id}` is not a 12-digit account id")]
    AccountId { url: String, account_id: String },
    #[error("`{url}`: `{name}` is not a queue name (1 to 80 letters, digits, - and _)")]
    QueueName { url: String, name: String },
}

/// Reads a queue URL: `https://HOST/ACCOUNT/NAME` (http only for a loopback endpoint).
pub fn parse_queue_url(url: &str) -> Result<QueueRef, QueueUrlError> {
    let not_a_url = || QueueUrlError::NotAUrl(url.to_string());
    let (scheme, rest) = url.split_once("://").ok_or_else(not_a_url)?;
    let (host, path) = rest.split_once('/').ok_or_else(not_a_url)?;
    let host_name = host.rsplit_once(':').map_or(host, |(h, _)| h);
    match scheme {
        "https" => {}
        "http" if ["127.0.0.1", "localhost", "[::1]"].contains(&host_name) => {}
        _ => return Err(QueueUrlError::NotHttps(url.to_string())),
    }
    let parts: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    let [account_id, name] = parts.as_slice() else {
        return Err(not_a_url());
    };
    if !is_account_id(account_id) {
        return Err(QueueUrlError::AccountId {
            url: url.to_string(),
            account_id: (*account_id).to_string(),
        });
    }
    let base = name.strip_suffix(".fifo").unwrap_or(name);
    if base.is_empty()
        || name.len() > 80
        || !base
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(QueueUrlError::QueueName {
            url: url.to_string(),
            name: (*name).to_string(),
        });
    }
    Ok(QueueRef {
        region: region_of_host(host_name),
        account_id: (*account_id).to_string(),
        name: (*name).to_string(),
    })
}

/// The region in an SQS host name: `sqs.us-east-1.amazonaws.com`, `sqs.cn-north-1.amazonaws.com.cn`,
/// the legacy `us-east-1.queue.amazonaws.com`, or a FIPS `sqs-fips.us-gov-west-1.amazonaws.com`.
fn region_of_host(host: &str) -> Option<String> {
    let labels: Vec<&str> = host.split('.').collect();
    let region = match labels.as_slice() {
        ["sqs" | "sqs-fips", region, "amazonaws", "com", ..] => region,
        [region, "queue", "amazonaws", "com", ..] => region,
        _ => return None,
    };
    let plausible = region.contains('-')
        && region
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    plausible.then(|| (*region).to_string())
}

pub(super) fn validate(raw: Option<RawEvents>) -> Result<Option<EventsSettings>, ConfigError> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    let Some(queue_url) = raw.queue_url.filter(|u| !u.trim().is_empty()) else {
        return Err(ConfigError::invalid(
            KEY,
            "the [events] section needs the URL of the queue its events arrive on",
        ));
    };
    let queue = parse_queue_url(&queue_url).map_err(|m| ConfigError::invalid(KEY, m))?;
    if queue.name.ends_with(".fifo") {
        return Err(ConfigError::invalid(
            KEY,
            format!(
                "`{}` is a FIFO queue; EventBridge delivers IAM events to a standard queue",
                queue.name
            ),
        ));
    }
    let wait = WAIT.read_or(raw.wait.as_deref(), defaults::EVENTS_WAIT)?;
    let batch_window =
        BATCH_WINDOW.read_or(raw.batch_window.as_deref(), defaults::EVENTS_BATCH_WINDOW)?;
    let visibility_timeout = VISIBILITY_TIMEOUT.read_or(
        raw.visibility_timeout.as_deref(),
        defaults::EVENTS_VISIBILITY_TIMEOUT,
    )?;
    if visibility_timeout <= batch_window + batch_window {
        return Err(ConfigError::invalid(
            VISIBILITY_TIMEOUT.key,
            format!(
                "{} is not more than twice events.batch_window ({}): messages would be delivered again before their batch is handled",
                humanize_ms(visibility_timeout),
                humanize_ms(batch_window)
            ),
        ));
    }
    Ok(Some(EventsSettings {
        queue_url,
        queue,
        wait,
        batch_window,
        visibility_timeout,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aws_queue_urls_give_region_account_and_name() {
        let q = parse_queue_url("https://sqs.us-east-1.amazonaws.com/123456789012/forcemfa-events")
            .unwrap();
        assert_eq!(q.region.as_deref(), Some("us-east-1"));
        assert_eq!(
            q.arn(),
            "arn:aws:sqs:us-east-1:123456789012:forcemfa-events"
        );
        let q = parse_queue_url("https://sqs.cn-north-1.amazonaws.com.cn/123456789012/q").unwrap();
        assert_eq!(q.arn(), "arn:aws-cn:sqs:cn-north-1:123456789012:q");
        let q = parse_queue_url("https://us-west-2.queue.amazonaws.com/123456789012/q").unwrap();
        assert_eq!(q.region.as_deref(), Some("us-west-2"));
        let q = parse_queue_url("http://127.0.0.1:4566/123456789012/q").unwrap();
        assert_eq!(q.region, None);
        assert_eq!(q.arn(), "arn:aws:sqs:*:123456789012:q");
    }

    #[test]
    fn bad_queue_urls_are_refused_with_the_reason() {
        for (url, reason) in [
            (
                "sqs.us-east-1.amazonaws.com/123456789012/q",
                "not an SQS queue URL",
            ),
            (
                "http://sqs.us-east-1.amazonaws.com/123456789012/q",
                "must use https",
            ),
            ("https://sqs.us-east-1.amazonaws.com/12345/q", "12-digit"),
            (
                "https://sqs.us-east-1.amazonaws.com/123456789012/",
                "not an SQS queue URL",
            ),
            (
                "https://sqs.us-east-1.amazonaws.com/123456789012/a b",
                "not a queue name",
            ),
            (
                "https://sqs.us-east-1.amazonaws.com/123456789012/q/extra",
                "not an SQS queue URL",
            ),
            (
                "arn:aws:sqs:us-east-1:123456789012:q",
                "not an SQS queue URL",
            ),
        ] {
            let e = parse_queue_url(url).unwrap_err().to_string();
            assert!(e.contains(reason), "{url}: {e}");
        }
    }

    #[test]
    fn a_visibility_timeout_must_outlast_the_batch_window() {
        let config = |extra: &str| {
            crate::config::Config::parse(&format!(
                "[events]\nqueue_url = \"https://sqs.us-east-1.amazonaws.com/123456789012/q\"\n{extra}"
            ))
        };
        assert!(config("visibility_timeout = \"30s\"\nbatch_window = \"10s\"\n").is_ok());
        let e = config("visibility_timeout = \"30s\"\nbatch_window = \"15s\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("events.visibility_timeout") && e.contains("batch_window"),
            "{e}"
        );
        let e = config("wait = \"25s\"\n").unwrap_err().to_string();
        assert!(e.contains("events.wait"), "{e}");
        let e = config("queue_url = \"x\"\n").unwrap_err().to_string();
        assert!(e.contains("duplicate") || e.contains("queue_url"), "{e}");
    }
}
