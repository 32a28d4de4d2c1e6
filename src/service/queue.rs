//! The events queue: long-polls SQS for IAM's events (`[events]`) without pause, and hands each
//! message to its account's backlog (see `backlog`), which has the users it names reconciled and
//! deletes it once it is handled or judged unusable. Receiving goes on while earlier events are
//! reconciled, up to [`MOST_HELD`] messages held. A message whose users could not be handled
//! stays on the queue, to be delivered again after its visibility timeout (and, after the
//! queue's redrive policy, moved to its dead-letter queue).
//!
//! The queue runs beside the schedule, never instead of it: when it cannot be read, the failure
//! is logged, counted and shown by `/readyz`, and scheduled runs go on.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::{Message, MessageSystemAttributeName};
use tokio::task::JoinSet;
use tracing::{info, warn};

use super::backlog::{self, Backlog, Source};
use super::state::{QueueState, Shared};
use crate::aws::AwsError;
use crate::config::EventsSettings;
use crate::reconcile::Reconciler;

/// SQS hands out at most 10 messages per receive.
const RECEIVE_MAX: i32 = 10;
/// The most messages held at once, waiting or being reconciled: past it, receiving pauses until
/// some are done with. A batch is then at most this many messages, handled within seconds (well
/// within a visibility timeout), and those handled are deleted before many more are taken.
pub const MOST_HELD: usize = 200;
/// After a failed receive, the first wait before the next; doubled on each failure.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// How often a configuration without `[events]` is looked at again (after a reload).
const IDLE_CHECK: Duration = Duration::from_secs(5);

/// Polls until the service stops; then waits for the reconciliations under way.
pub async fn poll(shared: Arc<Shared>) {
    let accounts_at_once = shared
        .current()
        .reconciler
        .config()
        .aws
        .max_accounts_in_parallel;
    let backlog = Arc::new(Backlog::new(accounts_at_once));
    let mut workers = JoinSet::new();
    let mut source: Option<(Arc<Reconciler>, Arc<Source>)> = None;
    let mut backoff = FIRST_BACKOFF;
    while !shared.stop.is_cancelled() {
        while workers.try_join_next().is_some() {}
        let reconciler = shared.current().reconciler.clone();
        let Some(settings) = reconciler.config().events.clone() else {
            shared.set_queue_state(QueueState::Off);
            shared.metrics.record_queue_off();
            source = None;
            pause(&shared, IDLE_CHECK).await;
            continue;
        };
        // A reload brings new clients (and perhaps a new queue).
        let from = match &source {
            Some((r, s)) if Arc::ptr_eq(r, &reconciler) => s.clone(),
            _ => {
                let Some(sqs) = reconciler.queue_client() else {
                    continue;
                };
                let s = Arc::new(Source { sqs, settings });
                source = Some((reconciler.clone(), s.clone()));
                s
            }
        };
        if backlog.held() >= MOST_HELD {
            let freed = backlog.freed.notified();
            if backlog.held() >= MOST_HELD {
                tokio::select! {
                    () = freed => {}
                    () = shared.stop.cancelled() => {}
                }
            }
            continue;
        }
        let received = tokio::select! {
            r = receive(&from.sqs, &from.settings) => r,
            () = shared.stop.cancelled() => break,
        };
        match received {
            Err(e) => {
                let settings = &from.settings;
                shared
                    .metrics
                    .record_queue_read(&settings.queue.name, Some(e.kind.metric_label()));
                warn!(queue_url = %settings.queue_url, error_kind = e.kind.metric_label(), error = %e, retry_in_secs = backoff.as_secs(), "cannot read the events queue; scheduled runs go on");
                shared.set_queue_state(QueueState::Unreadable {
                    since: Instant::now(),
                    error: e.to_string(),
                });
                pause(&shared, backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            Ok(messages) => {
                shared
                    .metrics
                    .record_queue_read(&from.settings.queue.name, None);
                if let QueueState::Unreadable { .. } = shared.set_queue_state(QueueState::Readable)
                {
                    info!(queue_url = %from.settings.queue_url, "the events queue can be read again");
                }
                backoff = FIRST_BACKOFF;
                if !messages.is_empty() {
                    backlog::take_in(&shared, &backlog, &mut workers, &from, messages);
                }
            }
        }
    }
    // Each reconciliation under way sees the stop and lets the changes it sent finish.
    while workers.join_next().await.is_some() {}
}

async fn pause(shared: &Shared, duration: Duration) {
    tokio::select! {
        () = tokio::time::sleep(duration) => {}
        () = shared.stop.cancelled() => {}
    }
}

/// One receive: up to 10 messages, waiting up to `events.wait` for the first.
async fn receive(
    sqs: &aws_sdk_sqs::Client,
    settings: &EventsSettings,
) -> Result<Vec<Message>, AwsError> {
    let visibility = i32::try_from(settings.visibility_timeout.as_secs()).unwrap_or(i32::MAX);
    let out = sqs
        .receive_message()
        .queue_url(&settings.queue_url)
        .max_number_of_messages(RECEIVE_MAX)
        .wait_time_seconds(i32::try_from(settings.wait.as_secs()).unwrap_or(20))
        .visibility_timeout(visibility)
        .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
        .send()
        .await
        .map_err(|e| AwsError::of("sqs", "ReceiveMessage", &e))?;
    Ok(out.messages.unwrap_or_default())
}
