//! Acting on a batch of IAM events: which account each concerns, whether it needs work, and a
//! reconciliation of just the users named, one per account however many events name them.

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt};
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::inventory::AccountError;
use super::report::AccountReport;
use super::targets::{listed_targets, Target};
use super::{reconcile_account, Halt, Reconciler, RunOptions, Scope};
use crate::aws::identity::{self, Identity};
use crate::cloudtrail::IamEvent;
use crate::sync::lock;

/// How long the organization's account list serves to route events before it is read again.
const ACCOUNTS_FRESH_FOR: Duration = Duration::from_secs(600);
/// An event for an account not in the list reads it again, at most this often.
const ACCOUNTS_REREAD_AFTER: Duration = Duration::from_secs(60);

/// The IAM calls forcemfa itself makes: membership of its group, and the clean-up of abandoned
/// virtual MFA devices.
const OWN_CALLS: [&str; 3] = [
    "AddUserToGroup",
    "RemoveUserFromGroup",
    "DeleteVirtualMFADevice",
];

/// What became of one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
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

impl Verdict {
    /// The label of the outcome in logs and metrics.
    pub fn as_str(&self) -> &'static str {
        match self {
            Verdict::Handled => "handled",
            Verdict::ForeignAccount => "foreign_account",
            Verdict::OwnChange => "own_change",
            Verdict::OtherGroup => "other_group",
            Verdict::Retry(_) => "retry",
        }
    }
}

/// What a batch of events came to.
#[derive(Debug, Default)]
pub struct BatchOutcome {
    /// One per event, in the order given.
    pub verdicts: Vec<Verdict>,
    /// The reconciliation of each account that had users to reconcile.
    pub reports: Vec<AccountReport>,
    /// For each change made, the seconds from the earliest event naming its user to now.
    pub delays: Vec<f64>,
}

/// The organization's accounts, as last listed.
#[derive(Debug, Default)]
pub(super) struct AccountsCache {
    listed: Option<(Instant, Vec<Target>)>,
    /// The account of forcemfa's own credentials, once asked.
    own: Option<String>,
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
        let outcome = Mutex::new(BatchOutcome {
            verdicts: vec![Verdict::Handled; events.len()],
            ..BatchOutcome::default()
        });
        stream::iter(by_account)
            .for_each_concurrent(
                self.config.aws.max_accounts_in_parallel,
                |(account_id, indexes)| {
                    let outcome = &outcome;
                    async move {
                        let mine: Vec<&IamEvent> = indexes.iter().map(|i| &events[*i]).collect();
                        let (verdicts, report, delays) =
                            self.account_events(account_id, &mine, stop, run_id).await;
                        let mut outcome = lock(outcome);
                        for (i, verdict) in indexes.into_iter().zip(verdicts) {
                            outcome.verdicts[i] = verdict;
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
    ) -> (Vec<Verdict>, Option<AccountReport>, Vec<f64>) {
        let all = |v: Verdict| (vec![v; events.len()], None, Vec::new());
        let target = match self.target_of(account_id).await {
            Ok(Some(target)) => target,
            Ok(None) => return all(Verdict::ForeignAccount),
            Err(e) => return all(Verdict::Retry(e)),
        };
        let clients = self.clients.clients(&target).await;
        let identity = match identity::caller_identity(&clients).await {
            Ok(identity) => identity,
            Err(e) => return all(Verdict::Retry(AccountError::Identity(e).to_string())),
        };
        let mut verdicts: Vec<Option<Verdict>> = events
            .iter()
            .map(|e| self.needs_no_work(e, &identity))
            .collect();
        let mut users: Vec<String> = Vec::new();
        for (e, _) in events.iter().zip(&verdicts).filter(|(_, v)| v.is_none()) {
            for user in &e.users {
                if !users.iter().any(|u| u.eq_ignore_ascii_case(user)) {
                    users.push(user.clone());
                }
            }
        }
        if users.is_empty() {
            return (
                verdicts
                    .into_iter()
                    .map(|v| v.unwrap_or(Verdict::Handled))
                    .collect(),
                None,
                Vec::new(),
            );
        }
        let scope = Scope::Users(users);
        let ctx = self.context(RunOptions::from_config(&self.config), &scope, stop);
        let halt = Halt {
            token: stop.child_token(),
            shutdown: stop,
            timeout: self.config.run_timeout,
        };
        let span = tracing::info_span!("account", account_id);
        // The event's account is the one to act in, whatever the credentials turn out to be.
        let report = reconcile_account(&ctx, run_id, &clients, &target, Some(account_id), &halt)
            .instrument(span)
            .await;

        let unhandled = unhandled_users(&report);
        for (e, verdict) in events.iter().zip(verdicts.iter_mut()) {
            if verdict.is_some() {
                continue;
            }
            *verdict = Some(match &unhandled {
                Unhandled::All(reason) => Verdict::Retry(reason.clone()),
                Unhandled::Some(users) => match e
                    .users
                    .iter()
                    .find(|u| users.contains(&u.to_ascii_lowercase()))
                {
                    Some(user) => Verdict::Retry(format!("{user} was not reconciled")),
                    None => Verdict::Handled,
                },
            });
        }
        let delays = change_delays(&report, events, OffsetDateTime::now_utc());
        let verdicts = verdicts
            .into_iter()
            .map(|v| v.unwrap_or(Verdict::Handled))
            .collect();
        (verdicts, Some(report), delays)
    }

    /// Whether an event needs no reconciliation, and why.
    fn needs_no_work(&self, event: &IamEvent, identity: &Identity) -> Option<Verdict> {
        // Only a call forcemfa makes can be its own change. Any other call by its principal was
        // made by someone or something else holding it (shared automation, its credentials
        // misused) and is reconciled like any other.
        if OWN_CALLS.contains(&event.event_name.as_str())
            && event.principal_arn.as_deref() == Some(identity.arn.as_str())
        {
            return Some(Verdict::OwnChange);
        }
        match &event.group {
            Some(group) if !group.eq_ignore_ascii_case(&self.config.group) => {
                Some(Verdict::OtherGroup)
            }
            _ => None,
        }
    }

    /// The target that reconciles `account_id`, if forcemfa reconciles that account.
    async fn target_of(&self, account_id: &str) -> Result<Option<Target>, String> {
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

    async fn own_account(&self) -> Result<String, String> {
        if let Some(own) = lock(&self.accounts).own.clone() {
            return Ok(own);
        }
        let clients = self.clients.clients(&Target::Own).await;
        let identity = identity::caller_identity(&clients)
            .await
            .map_err(|e| AccountError::Identity(e).to_string())?;
        lock(&self.accounts).own = Some(identity.account_id.clone());
        Ok(identity.account_id)
    }
}

/// Which users of a reconciliation were not handled.
enum Unhandled {
    /// The account could not be reconciled at all.
    All(String),
    /// Users (lower-case) skipped, or whose change failed or has an unknown outcome.
    Some(HashSet<String>),
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
    Unhandled::Some(
        report
            .skipped
            .iter()
            .map(|s| s.user.to_ascii_lowercase())
            .chain(report.failed.iter().map(|f| f.user.to_ascii_lowercase()))
            .chain(report.unknown.iter().map(|u| u.user.to_ascii_lowercase()))
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
                .filter(|e| e.users.iter().any(|u| u.eq_ignore_ascii_case(user)))
                .filter_map(|e| e.time)
                .min()
                .map(|t| (now - t).as_seconds_f64().max(0.0))
        })
        .collect()
}
