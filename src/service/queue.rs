//! The events queue: long-polls SQS for IAM's events (`[events]`), has the users they name
//! reconciled, and deletes each message once it is handled or judged unusable. A message whose
//! users could not be handled stays on the queue, to be delivered again after its visibility
//! timeout (and, after the queue's redrive policy, moved to its dead-letter queue).
//!
//! The queue runs beside the schedule, never instead of it: when it cannot be read, the failure
//! is logged, counted and shown by `/readyz`, and scheduled runs go on.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, Message, MessageSystemAttributeName};
use tracing::{info, warn};

use super::state::{QueueState, Shared};
use crate::aws::AwsError;
use crate::cloudtrail::{self, IamEvent};
use crate::config::events::LONGEST_POLL;
use crate::config::EventsSettings;
use crate::reconcile::events::Verdict;
use crate::reconcile::Reconciler;

/// SQS hands out at most 10 messages per receive.
const RECEIVE_MAX: i32 = 10;
/// A batch stops growing at this many messages, so that a flood is worked through in steps.
const BATCH_MAX: usize = 100;
/// After a failed receive, the first wait before the next; doubled on each failure.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// How often a configuration without `[events]` is looked at again (after a reload).
const IDLE_CHECK: Duration = Duration::from_secs(5);

/// Polls until the service stops.
pub async fn poll(shared: Arc<Shared>) {
    let mut client: Option<(Arc<Reconciler>, aws_sdk_sqs::Client)> = None;
    let mut backoff = FIRST_BACKOFF;
    while !shared.stop.is_cancelled() {
        let reconciler = shared.current().reconciler.clone();
        let Some(settings) = reconciler.config().events.clone() else {
            shared.set_queue_state(QueueState::Off);
            shared.metrics.record_queue_off();
            client = None;
            pause(&shared, IDLE_CHECK).await;
            continue;
        };
        // A reload brings new clients (and perhaps a new queue).
        let sqs = match &client {
            Some((r, c)) if Arc::ptr_eq(r, &reconciler) => c.clone(),
            _ => {
                let Some(c) = reconciler.queue_client() else {
                    continue;
                };
                client = Some((reconciler.clone(), c.clone()));
                c
            }
        };
        let received = tokio::select! {
            r = receive_batch(&sqs, &settings) => r,
            () = shared.stop.cancelled() => return,
        };
        match received {
            Err(e) => {
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
                shared.metrics.record_queue_read(&settings.queue.name, None);
                if let QueueState::Unreadable { .. } = shared.set_queue_state(QueueState::Readable)
                {
                    info!(queue_url = %settings.queue_url, "the events queue can be read again");
                }
                backoff = FIRST_BACKOFF;
                if !messages.is_empty() {
                    handle(&shared, &reconciler, &sqs, &settings, messages).await;
                }
            }
        }
    }
}

async fn pause(shared: &Shared, duration: Duration) {
    tokio::select! {
        () = tokio::time::sleep(duration) => {}
        () = shared.stop.cancelled() => {}
    }
}

/// One receive: up to 10 messages, waiting up to `wait` for the first.
async fn receive(
    sqs: &aws_sdk_sqs::Client,
    settings: &EventsSettings,
    wait: Duration,
) -> Result<Vec<Message>, AwsError> {
    let visibility = i32::try_from(settings.visibility_timeout.as_secs()).unwrap_or(i32::MAX);
    let out = sqs
        .receive_message()
        .queue_url(&settings.queue_url)
        .max_number_of_messages(RECEIVE_MAX)
        .wait_time_seconds(i32::try_from(wait.as_secs()).unwrap_or(20))
        .visibility_timeout(visibility)
        .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
        .send()
        .await
        .map_err(|e| AwsError::of("sqs", "ReceiveMessage", &e))?;
    Ok(out.messages.unwrap_or_default())
}

/// Waits for a first message, then keeps receiving for `batch_window`, so that events arriving
/// together are reconciled together.
async fn receive_batch(
    sqs: &aws_sdk_sqs::Client,
    settings: &EventsSettings,
) -> Result<Vec<Message>, AwsError> {
    let mut batch = receive(sqs, settings, settings.wait).await?;
    if batch.is_empty() {
        return Ok(batch);
    }
    let deadline = Instant::now() + settings.batch_window;
    while batch.len() < BATCH_MAX {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        // Whole seconds only, and no more than SQS allows (a window may be longer: it takes
        // several receives); a receive returns as soon as a message is there.
        let wait = Duration::from_secs(left.as_millis().div_ceil(1000) as u64).min(LONGEST_POLL);
        match receive(sqs, settings, wait).await {
            Ok(more) if more.is_empty() => break,
            Ok(more) => batch.extend(more),
            // What was received is handled; the failure shows on the next receive.
            Err(_) => break,
        }
    }
    Ok(batch)
}

/// A message taken off the queue.
struct Received {
    message_id: String,
    receipt: Option<String>,
    receive_count: String,
}

/// Parses, reconciles and deletes what can be deleted.
async fn handle(
    shared: &Shared,
    reconciler: &Reconciler,
    sqs: &aws_sdk_sqs::Client,
    settings: &EventsSettings,
    messages: Vec<Message>,
) {
    shared.metrics.record_events_received(messages.len() as u64);
    let mut done: Vec<&Received> = Vec::new();
    let received: Vec<(Received, Result<IamEvent, cloudtrail::Rejected>)> = messages
        .into_iter()
        .map(|m| {
            let parsed = cloudtrail::parse(m.body().unwrap_or_default());
            let receive_count = m
                .attributes()
                .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                .cloned()
                .unwrap_or_default();
            let r = Received {
                message_id: m.message_id.unwrap_or_default(),
                receipt: m.receipt_handle,
                receive_count,
            };
            (r, parsed)
        })
        .collect();

    let mut usable: Vec<(&Received, &IamEvent)> = Vec::new();
    for (r, parsed) in &received {
        match parsed {
            Ok(event) => usable.push((r, event)),
            Err(rejected) => {
                warn!(message_id = %r.message_id, outcome = rejected.kind.as_str(), reason = %rejected.reason, "event message unusable; deleted");
                shared.metrics.record_event(rejected.kind.as_str());
                done.push(r);
            }
        }
    }
    let events: Vec<IamEvent> = usable.iter().map(|(_, e)| (*e).clone()).collect();
    let outcome = reconciler.reconcile_events(&events, &shared.stop).await;
    for report in &outcome.reports {
        shared.metrics.record_event_reconciliation(report);
    }
    for delay in &outcome.delays {
        shared.metrics.record_event_delay(*delay);
    }
    shared.metrics.record_notifications(&outcome.notifications);
    for ((r, event), verdict) in usable.iter().zip(&outcome.verdicts) {
        shared.metrics.record_event(verdict.as_str());
        let (message_id, users) = (
            &r.message_id,
            event
                .users
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(","),
        );
        let (account_id, event_name) = (&event.account_id, &event.event_name);
        let event_id = event.event_id.as_deref().unwrap_or_default();
        match verdict {
            Verdict::Retry(reason) => {
                warn!(message_id, event_id, account_id, event_name, users, receive_count = %r.receive_count, outcome = verdict.as_str(), reason, "event not handled; left on the queue for redelivery");
            }
            _ => {
                info!(
                    message_id,
                    event_id,
                    account_id,
                    event_name,
                    users,
                    outcome = verdict.as_str(),
                    "event handled"
                );
                done.push(r);
            }
        }
    }
    delete(shared, sqs, settings, &done).await;
}

/// Deletes the messages done with, ten per request. A message that cannot be deleted comes back
/// after its visibility timeout and is handled again, which changes nothing; each is logged with
/// its message id and counted, since a role without sqs:DeleteMessage (or a queue that hands out
/// messages without a receipt handle) would otherwise go unnoticed. An entry SQS's answer neither
/// confirms nor lists as failed counts as not deleted.
async fn delete(
    shared: &Shared,
    sqs: &aws_sdk_sqs::Client,
    settings: &EventsSettings,
    done: &[&Received],
) {
    let mut entries: Vec<(&Received, DeleteMessageBatchRequestEntry)> = Vec::new();
    for r in done {
        let entry = r.receipt.as_ref().and_then(|receipt| {
            DeleteMessageBatchRequestEntry::builder()
                .id(entries.len().to_string())
                .receipt_handle(receipt)
                .build()
                .ok()
        });
        match entry {
            Some(entry) => entries.push((r, entry)),
            None => not_deleted(
                shared,
                &r.message_id,
                "SQS gave the message no receipt handle",
            ),
        }
    }
    for chunk in entries.chunks(RECEIVE_MAX as usize) {
        let batch: Vec<DeleteMessageBatchRequestEntry> =
            chunk.iter().map(|(_, e)| e.clone()).collect();
        match sqs
            .delete_message_batch()
            .queue_url(&settings.queue_url)
            .set_entries(Some(batch))
            .send()
            .await
        {
            Ok(out) => {
                for (r, entry) in chunk {
                    let id = entry.id();
                    if out.successful().iter().any(|ok| ok.id() == id) {
                        continue;
                    }
                    let reason = match out.failed().iter().find(|f| f.id() == id) {
                        Some(f) => format!(
                            "sqs:DeleteMessageBatch failed for it: {}: {}",
                            f.code(),
                            f.message().unwrap_or_default()
                        ),
                        None => "sqs:DeleteMessageBatch answered without a word on it".to_string(),
                    };
                    not_deleted(shared, &r.message_id, &reason);
                }
            }
            Err(e) => {
                let e = AwsError::of("sqs", "DeleteMessageBatch", &e);
                for (r, _) in chunk {
                    not_deleted(shared, &r.message_id, &e.to_string());
                }
            }
        }
    }
}

/// Logs and counts a message done with that stays on the queue.
fn not_deleted(shared: &Shared, message_id: &str, reason: &str) {
    shared.metrics.record_event_delete_errors(1);
    warn!(
        message_id,
        reason, "event message not deleted; it will be handled again"
    );
}
