//! Acting on a batch of IAM events: which account each concerns, whether it needs work, and a
//! reconciliation of just the users named, one per account however many events name them.

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;
use std::time::Instant;

use futures::stream::{self, StreamExt};
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::aws::identity::{self, Identity};
use crate::cloudtrail::IamEvent;
use crate::sync::lock;
use crate::user_name::{same_name, UserName};

use super::account::reconcile_account;
use super::context::{RunOptions, Scope};
use super::failure::AccountError;
use super::notification::Notification;
use super::reconciler::Reconciler;
use super::report::AccountReport;
use super::stop::Stop;
use super::targets::{
    listed_targets, DiscoveryError, Target, ACCOUNTS_FRESH_FOR, ACCOUNTS_REREAD_AFTER,
};

/// The IAM calls forcemfa itself makes: membership of its group, and the clean-up of abandoned
/// virtual MFA devices.
const OWN_CALLS: [&str; 3] = [
    "AddUserToGroup",
    "RemoveUserFromGroup",
    "DeleteVirtualMFADevice",
];

/// What became of one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventOutcome {
    /// Its users were reconciled (or found gone, or exempt): done.
    Handled,
    /// forcemfa does not reconcile the account the event is from.
    ForeignAccount,
    /// forcemfa's own change: nothing to do.
    OwnChange,
    /// A membership change of another group than the enforcement group.
    OtherGroup,
    /// Not handled for now (the reason says why): to be delivered again.
    Retry(String),
}

impl EventOutcome {
    /// The label of the outcome in logs and metrics.
    pub fn as_str(&self) -> &'static str {
        match self {
            EventOutcome::Handled => "handled",
            EventOutcome::ForeignAccount => "foreign_account",
            EventOutcome::OwnChange => "own_change",
            EventOutcome::OtherGroup => "other_group",
            EventOutcome::Retry(_) => "retry",
        }
    }

    /// Logs what became of the event a queue message carried: `event handled`, or, for one to
    /// be delivered again, `event not handled` with the reason.
    pub fn log(&self, message_id: &str, receive_count: &str, event: &IamEvent) {
        let users = event
            .users
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let (account_id, event_name) = (&event.account_id, &event.event_name);
        let event_id = event.event_id.as_deref().unwrap_or_default();
        match self {
            EventOutcome::Retry(reason) => {
                tracing::warn!(
                    message_id,
                    event_id,
                    account_id,
                    event_name,
                    users,
                    receive_count,
                    outcome = self.as_str(),
                    reason,
                    "event not handled; left on the queue for redelivery"
                );
            }
            _ => {
                tracing::info!(
                    message_id,
                    event_id,
                    account_id,
                    event_name,
                    users,
                    outcome = self.as_str(),
                    "event handled"
                );
            }
        }
    }
}

/// What a batch of events came to.
#[derive(Debug, Default)]
pub struct BatchOutcome {
    /// The id of the batch's reconciliation, in its log lines.
    pub run_id: String,
    pub dry_run: bool,
    /// One per event, in the order given.
    pub outcomes: Vec<EventOutcome>,
    /// The reconciliation of each account that had users to reconcile.
    pub reports: Vec<AccountReport>,
    /// For each change made, the seconds from the earliest event naming its user to now.
    pub delays: Vec<f64>,
    /// The messages `[notify]` sent about these reconciliations, once the caller has handed
    /// them to the notifier.
    pub notifications: Vec<Notification>,
}

impl Reconciler {
    /// Reconciles the users the events name, per account, and says what became of each event.
    pub async fn reconcile_events(
        &self,
        events: &[IamEvent],
        stop: &CancellationToken,
    ) -> BatchOutcome {
        let run_id = uuid::Uuid::new_v4().to_string();
        let span = tracing::info_span!("events", run_id = %run_id, dry_run = self.config.dry_run);
        self.reconcile_events_in_span(events, stop, &run_id)
            .instrument(span)
            .await
    }

    async fn reconcile_events_in_span(
        &self,
        events: &[IamEvent],
        stop: &CancellationToken,
        run_id: &str,
    ) -> BatchOutcome {
        let mut by_account: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (i, e) in events.iter().enumerate() {
            by_account.entry(e.account_id.as_str()).or_default().push(i);
        }
        // The batch's deadline counts from here, whenever each account's reconciliation starts.
        let started = Instant::now();
        let outcome = Mutex::new(BatchOutcome {
            run_id: run_id.to_string(),
            dry_run: self.config.dry_run,
            outcomes: vec![EventOutcome::Handled; events.len()],
            ..BatchOutcome::default()
        });
        stream::iter(by_account)
            .for_each_concurrent(
                self.config.aws.max_accounts_in_parallel,
                |(account_id, indexes)| {
                    let outcome = &outcome;
                    async move {
                        let mine: Vec<&IamEvent> = indexes.iter().map(|i| &events[*i]).collect();
                        let (outcomes, report, delays) = self
                            .account_events(account_id, &mine, stop, run_id, started)
                            .await;
                        let mut outcome = lock(outcome);
                        for (i, became) in indexes.into_iter().zip(outcomes) {
                            outcome.outcomes[i] = became;
                        }
                        outcome.reports.extend(report);
                        outcome.delays.extend(delays);
                    }
                },
            )
            .await;
        outcome
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The events of one account.
    async fn account_events(
        &self,
        account_id: &str,
        events: &[&IamEvent],
        stop: &CancellationToken,
        run_id: &str,
        started: Instant,
    ) -> (Vec<EventOutcome>, Option<AccountReport>, Vec<f64>) {
        let all = |v: EventOutcome| (vec![v; events.len()], None, Vec::new());
        let target = match self.target_of(account_id).await {
            Ok(Some(target)) => target,
            Ok(None) => return all(EventOutcome::ForeignAccount),
            Err(e) => return all(EventOutcome::Retry(e.to_string())),
        };
        let clients = self.clients.clients(&target).await;
        let identity = match identity::caller_identity(&clients).await {
            Ok(identity) => identity,
            Err(e) => return all(EventOutcome::Retry(AccountError::Identity(e).to_string())),
        };
        let mut outcomes: Vec<Option<EventOutcome>> = events
            .iter()
            .map(|e| self.needs_no_work(e, &identity))
            .collect();
        let users = users_to_reconcile(events, &outcomes);
        if users.is_empty() {
            return (finish(outcomes), None, Vec::new());
        }
        let scope = Scope::Users(users);
        let ctx = self.context(RunOptions::from_config(&self.config), &scope, stop);
        let run_stop = Stop::since(stop, self.config.run_timeout, started);
        let span = tracing::info_span!("account", account_id);
        // The event's account is the one to act in, whatever the credentials turn out to be.
        let reconciling =
            reconcile_account(&ctx, run_id, &clients, &target, Some(account_id), &run_stop)
                .instrument(span);
        let report = run_stop.at_deadline(reconciling).await;

        let unhandled = unhandled_users(&report);
        for (e, outcome) in events.iter().zip(outcomes.iter_mut()) {
            if outcome.is_none() {
                *outcome = Some(unhandled.outcome(e));
            }
        }
        let delays = change_delays(&report, events, OffsetDateTime::now_utc());
        (finish(outcomes), Some(report), delays)
    }

    /// Whether an event needs no reconciliation, and why.
    fn needs_no_work(&self, event: &IamEvent, identity: &Identity) -> Option<EventOutcome> {
        // Only a call forcemfa makes can be its own change. Any other call by its principal was
        // made by someone or something else holding it (shared automation, its credentials
        // misused) and is reconciled like any other.
        if OWN_CALLS.contains(&event.event_name.as_str())
            && event.principal_arn.as_deref() == Some(identity.arn.as_str())
        {
            return Some(EventOutcome::OwnChange);
        }
        match &event.group {
            Some(group) if !same_name(group, &self.config.group) => Some(EventOutcome::OtherGroup),
            _ => None,
        }
    }

    /// The target that reconciles `account_id`, if forcemfa reconciles that account.
    async fn target_of(&self, account_id: &str) -> Result<Option<Target>, DiscoveryError> {
        let config = &self.config;
        let listed = listed_targets(config);
        if let Some(t) = listed.iter().find(|t| t.account_id() == Some(account_id)) {
            return Ok(Some(t.clone()));
        }
        if listed == [Target::Own] {
            // The account meant, when the configuration names it; else whichever the credentials
            // are (checked again before anything is read).
            let own = match &config.account_id {
                Some(meant) => meant.clone(),
                None => self.own_account().await?,
            };
            return Ok((own == account_id).then_some(Target::Own));
        }
        if config.organization.is_none() {
            return Ok(None);
        }
        let cached = {
            let cache = lock(&self.accounts);
            cache.listed.as_ref().map(|(at, targets)| {
                let found = targets
                    .iter()
                    .find(|t| t.account_id() == Some(account_id))
                    .cloned();
                (at.elapsed(), found)
            })
        };
        match cached {
            Some((age, Some(found))) if age < ACCOUNTS_FRESH_FOR => return Ok(Some(found)),
            Some((age, None)) if age < ACCOUNTS_REREAD_AFTER => return Ok(None),
            _ => {}
        }
        let targets = self.clients.targets(config).await?;
        let found = targets
            .iter()
            .find(|t| t.account_id() == Some(account_id))
            .cloned();
        lock(&self.accounts).listed = Some((Instant::now(), targets));
        Ok(found)
    }

    async fn own_account(&self) -> Result<String, DiscoveryError> {
        if let Some(own) = lock(&self.accounts).own.clone() {
            return Ok(own);
        }
        let clients = self.clients.clients(&Target::Own).await;
        let identity = identity::caller_identity(&clients)
            .await
            .map_err(DiscoveryError::Identity)?;
        lock(&self.accounts).own = Some(identity.account_id.clone());
        Ok(identity.account_id)
    }
}

/// The users the events that need work name, each once however spelt.
fn users_to_reconcile(events: &[&IamEvent], outcomes: &[Option<EventOutcome>]) -> Vec<UserName> {
    // A set alongside the list keeps this linear in the batch's names, in their first order.
    let mut seen: HashSet<&UserName> = HashSet::new();
    let mut users: Vec<UserName> = Vec::new();
    for (e, _) in events.iter().zip(outcomes).filter(|(_, v)| v.is_none()) {
        for user in &e.users {
            if seen.insert(user) {
                users.push(user.clone());
            }
        }
    }
    users
}

/// Every event without an outcome yet was handled.
fn finish(outcomes: Vec<Option<EventOutcome>>) -> Vec<EventOutcome> {
    outcomes
        .into_iter()
        .map(|v| v.unwrap_or(EventOutcome::Handled))
        .collect()
}

/// Which users of a reconciliation were not handled.
#[derive(Debug, PartialEq, Eq)]
enum Unhandled {
    /// The account could not be reconciled at all.
    All(String),
    /// Users skipped, or whose change failed or has an unknown outcome.
    Some(HashSet<UserName>),
}

impl Unhandled {
    /// What became of an event that needed work: handled unless a user it names was not.
    fn outcome(&self, event: &IamEvent) -> EventOutcome {
        match self {
            Unhandled::All(reason) => EventOutcome::Retry(reason.clone()),
            Unhandled::Some(users) => match event.users.iter().find(|u| users.contains(*u)) {
                Some(user) => EventOutcome::Retry(format!("{user} was not reconciled")),
                None => EventOutcome::Handled,
            },
        }
    }
}

fn unhandled_users(report: &AccountReport) -> Unhandled {
    match &report.error {
        // Not read, or stopped before its changes: nothing of it was handled. (Stopped partway,
        // the changes not made are listed as failed; a tripped guard is a decision.)
        Some(error) if !report.guard_tripped && !report.applied => {
            return Unhandled::All(error.clone())
        }
        _ => {}
    }
    let changes = report.failed.iter().chain(&report.unknown);
    Unhandled::Some(
        report
            .skipped
            .iter()
            .map(|s| s.user.clone())
            .chain(changes.map(|c| UserName::from_iam(&c.user)))
            .collect(),
    )
}

/// Seconds from the earliest event naming each changed user to `now`.
fn change_delays(report: &AccountReport, events: &[&IamEvent], now: OffsetDateTime) -> Vec<f64> {
    if !report.applied {
        return Vec::new();
    }
    report
        .added
        .iter()
        .chain(&report.removed)
        .filter_map(|user| {
            events
                .iter()
                .filter(|e| e.users.contains(user))
                .filter_map(|e| e.time)
                .min()
                .map(|t| (now - t).as_seconds_f64().max(0.0))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reconcile::report::{FailedChange, Skipped};

    fn event(users: &[&str], minutes_ago: i64, now: OffsetDateTime) -> IamEvent {
        IamEvent {
            account_id: "111111111111".into(),
            event_name: "CreateUser".into(),
            event_id: None,
            time: Some(now - time::Duration::minutes(minutes_ago)),
            principal_arn: None,
            users: users.iter().map(|u| UserName::parse(u).unwrap()).collect(),
            group: None,
        }
    }

    #[test]
    fn an_event_is_retried_when_a_user_it_names_was_not_handled_however_spelt() {
        let now = OffsetDateTime::now_utc();
        let report = AccountReport {
            applied: true,
            skipped: vec![Skipped {
                user: UserName::from_iam("Alice"),
                reason: "x".into(),
            }],
            unknown: vec![FailedChange {
                user: "carol".into(),
                action: "add",
                reason: "timeout".into(),
            }],
            ..AccountReport::default()
        };
        let unhandled = unhandled_users(&report);
        assert_eq!(
            unhandled.outcome(&event(&["ALICE"], 1, now)),
            EventOutcome::Retry("ALICE was not reconciled".into())
        );
        assert_eq!(
            unhandled.outcome(&event(&["bob", "Carol"], 1, now)),
            EventOutcome::Retry("Carol was not reconciled".into())
        );
        assert_eq!(
            unhandled.outcome(&event(&["bob"], 1, now)),
            EventOutcome::Handled
        );
    }

    #[test]
    fn an_account_not_reconciled_retries_every_event_but_a_tripped_guard_does_not() {
        let now = OffsetDateTime::now_utc();
        let failed = AccountReport {
            error: Some("throttled".into()),
            ..AccountReport::default()
        };
        assert_eq!(
            unhandled_users(&failed).outcome(&event(&["bob"], 1, now)),
            EventOutcome::Retry("throttled".into())
        );
        let guarded = AccountReport {
            error: Some("guard".into()),
            guard_tripped: true,
            ..AccountReport::default()
        };
        assert_eq!(
            unhandled_users(&guarded).outcome(&event(&["bob"], 1, now)),
            EventOutcome::Handled
        );
    }

    #[test]
    fn a_change_is_timed_from_the_earliest_event_naming_its_user() {
        let now = OffsetDateTime::now_utc();
        let events = [event(&["alice"], 3, now), event(&["Alice", "bob"], 1, now)];
        let events: Vec<&IamEvent> = events.iter().collect();
        let mut report = AccountReport {
            added: vec![UserName::from_iam("ALICE")],
            ..AccountReport::default()
        };
        // Nothing was applied (a dry run): nothing to time.
        assert!(change_delays(&report, &events, now).is_empty());
        report.applied = true;
        let delays = change_delays(&report, &events, now);
        assert_eq!(delays.len(), 1);
        assert!((delays[0] - 180.0).abs() < 1e-6, "{delays:?}");
    }

    #[test]
    fn each_user_is_reconciled_once_and_only_for_events_that_need_work() {
        let now = OffsetDateTime::now_utc();
        let events = [
            event(&["alice", "bob"], 1, now),
            event(&["Bob"], 1, now),
            event(&["carol"], 1, now),
        ];
        let events: Vec<&IamEvent> = events.iter().collect();
        let outcomes = [None, None, Some(EventOutcome::OwnChange)];
        let users: Vec<String> = users_to_reconcile(&events, &outcomes)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(users, ["alice", "bob"]);
    }
}
