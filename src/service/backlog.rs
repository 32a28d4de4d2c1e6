//! The events taken off the queue and not yet done with, per account, and the workers that
//! reconcile them. Each account has at most one reconciliation of its events under way: the
//! events that arrive meanwhile wait for it and are reconciled together next, in one read of
//! their users, however many they are. Accounts are reconciled side by side (up to
//! `aws.max_accounts_in_parallel`), and each batch's messages are deleted as soon as their users
//! are handled.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, Message, MessageSystemAttributeName};
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;
use tracing::{error, warn};

use super::state::Shared;
use crate::aws::AwsError;
use crate::batch::{self, Consumed, QueueMessage};
use crate::cloudtrail::IamEvent;
use crate::config::EventsSettings;
use crate::sync::lock;

/// SQS deletes at most 10 messages per request.
const DELETE_MAX: usize = 10;

/// The queue a message came from, as it was configured when it was received.
pub struct Source {
    pub sqs: aws_sdk_sqs::Client,
    pub settings: EventsSettings,
}

/// A message taken off the queue.
struct Received {
    message: batch::Message,
    receipt: Option<String>,
    source: Arc<Source>,
}

impl QueueMessage for Received {
    fn message(&self) -> &batch::Message {
        &self.message
    }
}

/// The messages held, waiting or being reconciled.
pub struct Backlog {
    inner: Mutex<Accounts>,
    /// Told whenever messages are done with.
    pub freed: Notify,
    /// One permit per account reconciled at once.
    accounts_at_once: Semaphore,
}

#[derive(Default)]
struct Accounts {
    waiting: HashMap<String, Vec<(Received, IamEvent)>>,
    /// The accounts whose worker is running.
    busy: Vec<String>,
    held: usize,
}

impl Backlog {
    pub fn new(accounts_at_once: usize) -> Backlog {
        Backlog {
            inner: Mutex::default(),
            freed: Notify::new(),
            accounts_at_once: Semaphore::new(accounts_at_once.max(1)),
        }
    }

    /// How many messages are held.
    pub fn held(&self) -> usize {
        lock(&self.inner).held
    }

    /// Puts events in their accounts' backlogs; returns the accounts that need a worker.
    fn put(&self, events: Vec<(Received, IamEvent)>) -> Vec<String> {
        let mut inner = lock(&self.inner);
        inner.held += events.len();
        let mut start = Vec::new();
        for (received, event) in events {
            let account = event.account_id.clone();
            if !inner.busy.contains(&account) {
                inner.busy.push(account.clone());
                start.push(account.clone());
            }
            inner
                .waiting
                .entry(account)
                .or_default()
                .push((received, event));
        }
        start
    }

    /// Everything waiting for `account`; `None`, and the worker done, when nothing is.
    fn take(&self, account: &str) -> Option<Vec<(Received, IamEvent)>> {
        let mut inner = lock(&self.inner);
        match inner.waiting.remove(account) {
            Some(batch) if !batch.is_empty() => Some(batch),
            _ => {
                inner.busy.retain(|a| a != account);
                None
            }
        }
    }

    fn done(&self, n: usize) {
        let mut inner = lock(&self.inner);
        inner.held = inner.held.saturating_sub(n);
        drop(inner);
        self.freed.notify_waiters();
    }
}

/// Takes in received messages: an unusable one is deleted, the others wait for their account's
/// worker, started here when it is not running.
pub fn take_in(
    shared: &Arc<Shared>,
    backlog: &Arc<Backlog>,
    workers: &mut JoinSet<()>,
    source: &Arc<Source>,
    messages: Vec<Message>,
) {
    shared.metrics.record_events_received(messages.len() as u64);
    let received = messages.into_iter().map(|m| {
        let receive_count = m
            .attributes()
            .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
            .cloned()
            .unwrap_or_default();
        Received {
            message: batch::Message {
                message_id: m.message_id.unwrap_or_default(),
                body: m.body,
                receive_count,
            },
            receipt: m.receipt_handle,
            source: source.clone(),
        }
    });
    let read = batch::read(received.collect(), Consumed::Deleted);
    let mut unusable = Vec::new();
    for (received, kind) in read.unusable {
        shared.metrics.record_event(kind.as_str());
        unusable.push(received);
    }
    let usable = read.usable;
    if !unusable.is_empty() {
        let shared = shared.clone();
        workers.spawn(async move {
            delete(&shared, &unusable.iter().collect::<Vec<_>>()).await;
        });
    }
    for account in backlog.put(usable) {
        workers.spawn(work(shared.clone(), backlog.clone(), account));
    }
}

/// One account's worker: reconciles what waits for the account, batch after batch, until
/// nothing does. A first event waits `events.batch_window` for others to come with it.
async fn work(shared: Arc<Shared>, backlog: Arc<Backlog>, account: String) {
    let window = shared
        .current()
        .reconciler
        .config()
        .events
        .as_ref()
        .map_or(Duration::ZERO, |e| e.batch_window);
    tokio::select! {
        () = tokio::time::sleep(window) => {}
        () = shared.stop.cancelled() => {}
    }
    while let Some(batch) = backlog.take(&account) {
        let n = batch.len();
        // Never closed: a permit always comes.
        let _permit = backlog.accounts_at_once.acquire().await.ok();
        if !shared.stop.is_cancelled() {
            // On a task of its own, so that a panic costs this batch only (its messages come
            // back after their visibility timeout), never the account's worker.
            let handling = tokio::spawn(handle(shared.clone(), batch));
            if let Err(e) = handling.await {
                error!(account_id = %account, messages = n, error = %e, "a batch of events was not handled; its messages come back after their visibility timeout");
            }
        }
        backlog.done(n);
    }
}

/// Reconciles one batch of an account's events, tells the people concerned, and deletes the
/// messages done with.
async fn handle(shared: Arc<Shared>, batch: Vec<(Received, IamEvent)>) {
    let shared = &*shared;
    let current = shared.current();
    let notifier = current.notifier.as_deref();
    let handled = batch::handle(&current.reconciler, notifier, batch, &shared.stop, None).await;
    if let Some(outcome) = &handled.outcome {
        for report in &outcome.reports {
            shared.metrics.record_event_reconciliation(report);
        }
        for delay in &outcome.delays {
            shared.metrics.record_event_delay(*delay);
        }
        shared.metrics.record_notifications(&outcome.notifications);
        for outcome in &outcome.outcomes {
            shared.metrics.record_event(outcome.as_str());
        }
    }
    delete(shared, &handled.done.iter().collect::<Vec<_>>()).await;
}

/// Deletes the messages done with, ten per request, each from the queue it came from. A message
/// that cannot be deleted comes back after its visibility timeout and is handled again, which
/// changes nothing; each is logged with its message id and counted, since a role without
/// sqs:DeleteMessage (or a queue that hands out messages without a receipt handle) would
/// otherwise go unnoticed. An entry SQS's answer neither confirms nor lists as failed counts as
/// not deleted.
async fn delete(shared: &Shared, done: &[&Received]) {
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
                &r.message.message_id,
                "SQS gave the message no receipt handle",
            ),
        }
    }
    let mut by_source: Vec<Vec<(&Received, DeleteMessageBatchRequestEntry)>> = Vec::new();
    for entry in entries {
        match by_source
            .iter_mut()
            .find(|s| Arc::ptr_eq(&s[0].0.source, &entry.0.source))
        {
            Some(same) => same.push(entry),
            None => by_source.push(vec![entry]),
        }
    }
    for entries in by_source {
        for chunk in entries.chunks(DELETE_MAX) {
            delete_chunk(shared, chunk).await;
        }
    }
}

async fn delete_chunk(shared: &Shared, chunk: &[(&Received, DeleteMessageBatchRequestEntry)]) {
    let source = &chunk[0].0.source;
    let batch: Vec<DeleteMessageBatchRequestEntry> = chunk.iter().map(|(_, e)| e.clone()).collect();
    match source
        .sqs
        .delete_message_batch()
        .queue_url(&source.settings.queue_url)
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
                not_deleted(shared, &r.message.message_id, &reason);
            }
        }
        Err(e) => {
            let e = AwsError::of("sqs", "DeleteMessageBatch", &e);
            for (r, _) in chunk {
                not_deleted(shared, &r.message.message_id, &e.to_string());
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
