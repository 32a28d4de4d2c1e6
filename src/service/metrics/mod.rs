//! Prometheus metrics, all named `forcemfa_*`, fed from each run's report.

use std::path::Path;

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::clock::unix_now;
use crate::files::{self, FileError, Mode};
use crate::reconcile::notification::{Delivery, Notification};
use crate::reconcile::report::{AccountReport, RunReport};

mod accounts;
mod labels;

use accounts::{AccountMetrics, ApiMetrics, RunMetrics};
use labels::{KindLabel, OutcomeLabel, QueueLabel, ResultLabel, VersionLabel};

/// Every metric forcemfa exports, in three groups: the runs, each account's state, and the
/// requests to AWS; plus the service's own reloads and run requests.
pub struct Metrics {
    registry: Registry,
    run: RunMetrics,
    account: AccountMetrics,
    api: ApiMetrics,
    service: ServiceMetrics,
    events: EventMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("forcemfa");
        let build_info: Family<VersionLabel, Gauge> = Family::default();
        build_info
            .get_or_create(&VersionLabel {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        registry.register("build_info", "forcemfa's version (always 1)", build_info);
        let (run, account, api, service) = Default::default();
        let events = EventMetrics::default();
        RunMetrics::register(&run, &mut registry);
        AccountMetrics::register(&account, &mut registry);
        ApiMetrics::register(&api, &mut registry);
        ServiceMetrics::register(&service, &mut registry);
        events.register(&mut registry);
        Metrics {
            registry,
            run,
            account,
            api,
            service,
            events,
        }
    }

    /// Records the reconciliation of the users a batch of events named: its changes, errors and
    /// calls count like a full run's; the account's user counts stay those of the last full run.
    pub fn record_event_reconciliation(&self, a: &AccountReport) {
        let account = a
            .account_id
            .clone()
            .unwrap_or_else(|| "unknown".to_string());
        self.account.record_changes(&account, a);
        self.api.record(&account, a);
    }

    /// Messages taken off the events queue.
    pub fn record_events_received(&self, n: u64) {
        self.events.received.inc_by(n);
    }

    /// What became of one event: handled, retry, or why it needed no work.
    pub fn record_event(&self, outcome: &'static str) {
        self.events
            .outcomes
            .get_or_create(&OutcomeLabel { outcome })
            .inc();
    }

    /// No events queue is configured: no series says whether one can be read, so that an
    /// alert on `forcemfa_events_queue_up == 0` never fires for a service without a queue.
    pub fn record_queue_off(&self) {
        self.events.queue_up.clear();
    }

    /// Messages done with that could not be deleted.
    pub fn record_event_delete_errors(&self, n: u64) {
        self.events.delete_errors.inc_by(n);
    }

    /// Seconds from an event to the change it caused.
    pub fn record_event_delay(&self, seconds: f64) {
        self.events.delay.observe(seconds);
    }

    /// Whether the last receive from the events queue `queue` (its name) succeeded; `kind`
    /// labels a failure. Only the queue read now has a series: a reload may have named another.
    pub fn record_queue_read(&self, queue: &str, failure: Option<&'static str>) {
        let label = QueueLabel {
            queue: queue.to_string(),
        };
        if self.events.queue_up.get(&label).is_none() {
            self.events.queue_up.clear();
        }
        self.events
            .queue_up
            .get_or_create(&label)
            .set(i64::from(failure.is_none()));
        if let Some(kind) = failure {
            self.events
                .queue_errors
                .get_or_create(&KindLabel { kind })
                .inc();
        }
    }

    /// Records one finished run.
    pub fn record_run(&self, report: &RunReport, duration_secs: f64, finished_unix: f64) {
        self.run.record(report, duration_secs, finished_unix);
        for a in &report.accounts {
            let account = a
                .account_id
                .clone()
                .unwrap_or_else(|| "unknown".to_string());
            self.account.record(&account, a);
            self.api.record(&account, a);
        }
        self.record_notifications(&report.notifications);
    }

    /// The messages sent or not; a dry run's are not counted.
    pub fn record_notifications(&self, notifications: &[Notification]) {
        for n in notifications
            .iter()
            .filter(|n| n.outcome != Delivery::WouldSend)
        {
            self.service
                .notifications
                .get_or_create(&NotificationLabels {
                    channel: n.channel.as_str(),
                    outcome: n.outcome.as_str(),
                })
                .inc();
        }
    }

    pub fn record_reload(&self, ok: bool) {
        let result = if ok { "success" } else { "error" };
        self.service
            .config_reloads
            .get_or_create(&ResultLabel { result })
            .inc();
    }

    /// `outcome`: started, queued or coalesced.
    pub fn record_request(&self, outcome: &'static str) {
        self.service
            .run_requests
            .get_or_create(&ResultLabel { result: outcome })
            .inc();
    }

    /// The Prometheus text format (0.0.4), for scrapers that do not ask for OpenMetrics and
    /// for `promtool check metrics`: counters' HELP and TYPE name the `_total` series, no `# EOF`.
    pub fn encode_prometheus(&self) -> String {
        to_prometheus_text(&self.encode())
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// Writes one run's metrics to `path` in the Prometheus text format, for node_exporter's textfile
/// collector (`reconcile --metrics-file`), so that timer and CronJob runs are observable too.
/// The text goes to a temporary file beside `path` (a name the collector ignores), is synced,
/// then renamed over `path`: a scrape never reads half a file, and a failed write leaves nothing
/// at `path` (the previous file stays whole). The file is readable by everyone (the collector
/// runs as another user); a link or anything but a regular file at `path` is refused.
pub fn write_textfile(
    path: &Path,
    report: &RunReport,
    duration_secs: f64,
) -> Result<(), FileError> {
    let metrics = Metrics::new();
    metrics.record_run(report, duration_secs, unix_now());
    files::replace(
        METRICS_FILE,
        path,
        metrics.encode_prometheus().as_bytes(),
        Mode::Shared,
    )
}

/// The command-line option that names the metrics file, for errors.
pub const METRICS_FILE: &str = "--metrics-file";

/// Rewrites OpenMetrics text as Prometheus text format 0.0.4.
fn to_prometheus_text(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(name)
                .then(|| format!("{prefix}{name}_total {tail}"))
        });
        out.push_str(renamed.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

/// The service's own events: reloads, requests for a run, notifications.
#[derive(Default)]
struct ServiceMetrics {
    config_reloads: Family<ResultLabel, Counter>,
    run_requests: Family<ResultLabel, Counter>,
    notifications: Family<NotificationLabels, Counter>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NotificationLabels {
    channel: &'static str,
    outcome: &'static str,
}

impl ServiceMetrics {
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "config_reloads",
            "Configuration reloads by result (success, error)",
            self.config_reloads.clone(),
        );
        registry.register(
            "run_requests",
            "Requests for a run by outcome: started, queued (after the current run), coalesced (one already queued)",
            self.run_requests.clone(),
        );
        registry.register(
            "notifications",
            "Messages of [notify] by channel (sns, webhook, email) and outcome (sent, failed: tried again at the next run)",
            self.notifications.clone(),
        );
    }
}

/// Event-driven reconciliation: messages taken off the queue, what became of them, how long
/// after the event its change was made, and whether the queue can be read.
struct EventMetrics {
    received: Counter,
    outcomes: Family<OutcomeLabel, Counter>,
    delay: Histogram,
    queue_up: Family<QueueLabel, Gauge>,
    queue_errors: Family<KindLabel, Counter>,
    delete_errors: Counter,
}

impl Default for EventMetrics {
    fn default() -> Self {
        EventMetrics {
            received: Counter::default(),
            outcomes: Family::default(),
            delay: Histogram::new([0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0]),
            queue_up: Family::default(),
            queue_errors: Family::default(),
            delete_errors: Counter::default(),
        }
    }
}

impl EventMetrics {
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "events_received",
            "Messages taken off the events queue (a message delivered again counts again)",
            self.received.clone(),
        );
        registry.register(
            "events",
            "Events by outcome: handled, retry (left for redelivery), malformed, unsupported, failed_call, foreign_account, own_change, other_group",
            self.outcomes.clone(),
        );
        registry.register(
            "event_delay_seconds",
            "Seconds from an IAM event to the membership change it caused",
            self.delay.clone(),
        );
        registry.register(
            "events_queue_up",
            "1 when the last receive from the events queue (by name) succeeded, 0 when it failed; absent without [events]",
            self.queue_up.clone(),
        );
        registry.register(
            "events_delete_errors",
            "Messages done with that could not be deleted from the events queue (they are handled again)",
            self.delete_errors.clone(),
        );
        registry.register(
            "events_queue_errors",
            "Failed receives from the events queue, by kind of failure",
            self.queue_errors.clone(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Timestamp;
    use crate::reconcile::report::Skipped;

    #[test]
    fn a_run_shows_up_under_forcemfa_names() {
        let m = Metrics::new();
        let report = RunReport {
            run_id: "r".into(),
            dry_run: false,
            started_at: Timestamp::now(),
            finished_at: Timestamp::now(),
            error: None,
            discovery_api_calls: Default::default(),
            users: None,
            notifications: Vec::new(),
            accounts: vec![AccountReport {
                account_id: Some("123456789012".into()),
                applied: true,
                added: ["a", "b"].map(crate::user_name::UserName::from_iam).into(),
                users_with_mfa: 5,
                skipped: vec![Skipped {
                    user: crate::user_name::UserName::from_iam("x"),
                    reason: "y".into(),
                }],
                api_calls: [("ListMFADevices".to_string(), 3)].into(),
                ..AccountReport::default()
            }],
        };
        m.record_run(&report, 1.5, 1_700_000_000.0);
        let text = m.encode();
        for line in [
            "forcemfa_runs_total{result=\"incomplete\"} 1",
            "forcemfa_changes_total{account=\"123456789012\",action=\"add\"} 2",
            "forcemfa_users{account=\"123456789012\",state=\"compliant\"} 5",
            "forcemfa_users{account=\"123456789012\",state=\"skipped\"} 1",
            "forcemfa_api_calls_total{account=\"123456789012\",operation=\"ListMFADevices\"} 3",
            "forcemfa_last_run_duration_seconds 1.5",
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
        assert!(text.ends_with("# EOF\n"));

        let classic = m.encode_prometheus();
        assert!(
            classic.contains("# TYPE forcemfa_runs_total counter\n"),
            "{classic}"
        );
        assert!(classic.contains("# HELP forcemfa_runs_total "), "{classic}");
        assert!(
            classic.contains("# TYPE forcemfa_users gauge\n"),
            "{classic}"
        );
        assert!(!classic.contains("# EOF"));
    }
}
