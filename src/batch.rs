//! A batch of messages from the events queue, handled alike by the service and the Lambda
//! function: each message read, the unusable ones consumed, the events' users reconciled, the
//! people concerned told, what became of each event logged, and the messages to deliver again
//! chosen. The callers only take messages in and act on the answer (the service deletes the
//! messages done with, the function names the others to Lambda).

use std::time::Instant;

use tokio_util::sync::CancellationToken;
use tracing::{error, warn};

use crate::cloudtrail::{self, IamEvent, Rejected, Unusable};
use crate::notify::Notifier;
use crate::reconcile::events::{BatchOutcome, EventOutcome};
use crate::reconcile::run::time_past_deadline;
use crate::reconcile::Reconciler;

/// One message of the events queue, as it arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub message_id: String,
    /// The event it carries; `None` when it has none: the message is unusable, and consumed.
    pub body: Option<String>,
    /// SQS's `ApproximateReceiveCount`, for the logs.
    pub receive_count: String,
}

/// A message taken off the events queue, with whatever its taker keeps beside it.
pub trait QueueMessage {
    fn message(&self) -> &Message;
}

impl QueueMessage for Message {
    fn message(&self) -> &Message {
        self
    }
}

/// What becomes of a message that carries no event forcemfa acts on: it is consumed, never
/// delivered again. The service deletes it; the function leaves it out of its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consumed {
    Deleted,
    LeftOut,
}

/// The messages read: those carrying an event, and those consumed with why.
pub struct Read<M> {
    pub usable: Vec<(M, IamEvent)>,
    pub unusable: Vec<(M, Unusable)>,
}

/// Reads each message's event; an unusable one is logged (`event message unusable`) with why.
pub fn read<M: QueueMessage>(messages: Vec<M>, consumed: Consumed) -> Read<M> {
    let mut read = Read {
        usable: Vec::new(),
        unusable: Vec::new(),
    };
    for message in messages {
        let parsed = match message.message().body.as_deref() {
            Some(body) => cloudtrail::parse(body),
            None => Err(Rejected {
                kind: Unusable::Malformed,
                reason: "the message has no body".to_string(),
            }),
        };
        match parsed {
            Ok(event) => read.usable.push((message, event)),
            Err(rejected) => {
                let (message_id, outcome, reason) = (
                    message.message().message_id.as_str(),
                    rejected.kind.as_str(),
                    &rejected.reason,
                );
                match consumed {
                    Consumed::Deleted => {
                        warn!(
                            message_id,
                            outcome, reason, "event message unusable; deleted"
                        );
                    }
                    Consumed::LeftOut => {
                        warn!(
                            message_id,
                            outcome, reason, "event message unusable; consumed"
                        );
                    }
                }
                read.unusable.push((message, rejected.kind));
            }
        }
    }
    read
}

/// What a batch came to: the messages done with, those to deliver again, and the batch's
/// outcome (`None` when it outlasted its bound, and every message comes back).
pub struct Handled<M> {
    pub done: Vec<M>,
    pub retry: Vec<M>,
    pub outcome: Option<BatchOutcome>,
}

/// Reconciles the users of a batch's events, tells the people concerned (sending ends by
/// `deadline`, when the caller has one), logs what became of each event and splits the messages
/// into those done with and those to deliver again. The reconciliation stops at `run_timeout`;
/// one that has not ended once the requests sent before it could have is given up, and every
/// message comes back.
pub async fn handle<M: QueueMessage>(
    reconciler: &Reconciler,
    notifier: Option<&Notifier>,
    batch: Vec<(M, IamEvent)>,
    stop: &CancellationToken,
    deadline: Option<Instant>,
) -> Handled<M> {
    let (messages, events): (Vec<M>, Vec<IamEvent>) = batch.into_iter().unzip();
    let config = reconciler.config();
    let bound = config.run_timeout + time_past_deadline(config);
    let reconciling = reconciler.reconcile_events(&events, stop);
    let Ok(mut outcome) = tokio::time::timeout(bound, reconciling).await else {
        error!(
            messages = messages.len(),
            "the batch outlasted run_timeout and the time its requests may take; its messages come back"
        );
        return Handled {
            done: Vec::new(),
            retry: messages,
            outcome: None,
        };
    };
    if let Some(notifier) = notifier {
        notifier.after_events(&mut outcome, stop, deadline).await;
    }
    let mut handled = Handled {
        done: Vec::new(),
        retry: Vec::new(),
        outcome: None,
    };
    for ((message, event), became) in messages.into_iter().zip(&events).zip(&outcome.outcomes) {
        let m = message.message();
        became.log(&m.message_id, &m.receive_count, event);
        match became {
            EventOutcome::Retry(_) => handled.retry.push(message),
            _ => handled.done.push(message),
        }
    }
    handled.outcome = Some(outcome);
    handled
}
