//! Telling the people concerned: the admins a summary of each run that changed something or
//! found new pending or held users; each affected user an email when added, reminders before
//! their deadline, and one when taken out. Nothing here blocks or changes enforcement: the
//! callers of a run (the `reconcile` command, the service, the Lambda function) hand its report
//! here once the run is over, and a channel that fails is reported, counted and tried again at
//! the next run. A dry run sends nothing and writes nothing; it lists what it would send.

pub mod channels;
pub mod keys;
pub mod messages;
pub mod state;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn, Instrument};

use crate::clock::unix_now_secs;
use crate::config::{Config, ConfigError, NotifySettings};
use crate::reconcile::events::BatchOutcome;
use crate::reconcile::notification::{Delivery, Notification};
use crate::reconcile::report::{AccountReport, RunReport};
use crate::user_name::UserName;

use channels::{Channels, SendError};
use keys::ReminderKey;
use messages::{known_keys, summary, summary_due, user_messages};
use state::{NotifyState, Outgoing, Queued};

pub use channels::SEND_TIMEOUT;

/// At most this long is spent sending after one run; the rest go out at the next.
const SEND_BUDGET: Duration = Duration::from_secs(60);
/// A message a channel refused this many times is given up (and logged).
const MAX_ATTEMPTS: u32 = 5;
/// Chat webhooks take about one message a second.
const SUMMARY_INTERVAL: Duration = Duration::from_secs(1);

/// The configured channels and what was sent.
pub struct Notifier {
    settings: NotifySettings,
    channels: Channels,
    /// Shared with the notifier of the configuration replaced, when both keep the same record:
    /// a batch still under way on the old one then writes the one record, not a copy of it.
    state: Arc<Mutex<NotifyState>>,
}

impl Notifier {
    /// The notifier of `config`'s `[notify]`, or none when no channel is configured. Takes over
    /// what `previous` (the notifier of the configuration replaced) knows when both keep the same
    /// record, or no file at all: both then hold that one record.
    pub async fn open(
        config: &Config,
        sdk: &aws_config::SdkConfig,
        previous: Option<&Notifier>,
    ) -> Result<Option<Notifier>, ConfigError> {
        let settings = &config.notify;
        if !settings.any() {
            return Ok(None);
        }
        let same_record = previous.filter(|p| p.settings.state_file == settings.state_file);
        let state = match (&settings.state_file, same_record) {
            (Some(path), None) => {
                NotifyState::check(path)?;
                let (state, problem) = NotifyState::load(path, config.dry_run);
                if let Some(problem) = problem {
                    warn!(problem = %problem, "starting with no record of notifications sent");
                }
                Arc::new(Mutex::new(state))
            }
            (_, Some(previous)) => previous.state.clone(),
            (None, None) => Arc::default(),
        };
        Ok(Some(Notifier {
            settings: settings.clone(),
            channels: Channels::new(settings, sdk).await?,
            state,
        }))
    }

    /// Tells whom a run concerns, once it is over, and lists what went out (or, in a dry run,
    /// would have) in its report; a message not delivered is a warning of its account too. No
    /// message is started that could not end by `deadline` (at most [`SEND_BUDGET`] and one
    /// send from now); those left go out at the next run.
    pub async fn after_run(
        &self,
        report: &mut RunReport,
        stop: &CancellationToken,
        deadline: Option<Instant>,
    ) {
        let full = report.users.is_none();
        let (run_id, dry_run) = (report.run_id.clone(), report.dry_run);
        report.notifications = self
            .tell(&run_id, dry_run, full, &mut report.accounts, stop, deadline)
            .await;
    }

    /// Tells whom a batch of events concerns, as [`Notifier::after_run`] does a run's.
    pub async fn after_events(
        &self,
        batch: &mut BatchOutcome,
        stop: &CancellationToken,
        deadline: Option<Instant>,
    ) {
        let (run_id, dry_run) = (batch.run_id.clone(), batch.dry_run);
        batch.notifications = self
            .tell(&run_id, dry_run, false, &mut batch.reports, stop, deadline)
            .await;
    }

    async fn tell(
        &self,
        run_id: &str,
        dry_run: bool,
        full: bool,
        accounts: &mut [AccountReport],
        stop: &CancellationToken,
        deadline: Option<Instant>,
    ) -> Vec<Notification> {
        let span = tracing::info_span!("notify", run_id);
        let notifications = self
            .after(run_id, dry_run, full, accounts, stop, deadline)
            .instrument(span)
            .await;
        for n in &notifications {
            let Some(error) = &n.error else { continue };
            if let Some(a) = accounts
                .iter_mut()
                .find(|a| a.account_id.as_deref() == Some(n.account_id.as_str()))
            {
                a.warnings.push(format!(
                    "{} {} not delivered (tried again at the next run): {error}",
                    n.channel, n.kind
                ));
            }
        }
        notifications
    }

    /// Records the messages the reconciliations `accounts` call for (`full`: every user of each
    /// account was read) and sends what it can by `until`. Every message is recorded before it
    /// is sent and struck off once delivered, so that a stop or a crash loses none; once `stop`
    /// is cancelled no more is sent.
    async fn after(
        &self,
        run_id: &str,
        dry_run: bool,
        full: bool,
        accounts: &[AccountReport],
        stop: &CancellationToken,
        deadline: Option<Instant>,
    ) -> Vec<Notification> {
        let now = unix_now_secs() as i64;
        let mut state = self.state.lock().await;
        // The budget counts from here: another run's sending may have held the record.
        let until = send_until(deadline);
        let new = self.new_messages(&mut state, run_id, dry_run, full, accounts, now);
        if dry_run {
            return new.iter().map(|m| noted(m, None)).collect();
        }
        state.outbox.extend(new.into_iter().map(|message| Queued {
            message,
            attempts: 0,
        }));
        state.outbox.retain(|q| !q.message.stale(now));
        state.trim();
        self.save(&state);
        let sent = self.deliver(&mut state, stop, until).await;
        if !state.outbox.is_empty() {
            // In memory, the service's or the function's next run sends them; the reconcile
            // command's process ends with them.
            let kept_in = match self.settings.state_file {
                Some(_) => "notify.state_file",
                None => "memory",
            };
            info!(
                messages = state.outbox.len(),
                kept_in, "notifications kept for the next run"
            );
        }
        sent
    }

    /// The messages the reconciliations call for, and what the record must remember of them.
    fn new_messages(
        &self,
        state: &mut NotifyState,
        run_id: &str,
        dry_run: bool,
        full: bool,
        accounts: &[AccountReport],
        now: i64,
    ) -> Vec<Outgoing> {
        let mut new = Vec::new();
        for account in accounts {
            let Some(account_id) = account.account_id.clone() else {
                continue;
            };
            let known = state.known.entry(account_id.clone()).or_default();
            if summary_due(account, made(account, dry_run), known) {
                let summary = summary(run_id, dry_run, account);
                for channel in self.channels.summary_channels() {
                    new.push(Outgoing::summary(channel, &summary));
                }
            }
            if !dry_run {
                // A full read says who is pending or held now; a partial one only adds.
                if full && account.error.is_none() {
                    *known = known_keys(account);
                } else {
                    known.extend(known_keys(account));
                }
            }
            if self.channels.emails() {
                let sent = |key: &ReminderKey| state.sent.contains_key(key);
                let (messages, keys) = user_messages(
                    account,
                    made(account, dry_run),
                    &self.settings.reminders,
                    now,
                    &sent,
                );
                new.extend(messages.into_iter().map(Outgoing::Email));
                if !dry_run {
                    state.sent.extend(keys.into_iter().map(|k| (k, now)));
                }
            }
        }
        new
    }

    /// Sends the outbox in order, paced, each message only when it can end by `until`, keeping
    /// the record as it goes.
    async fn deliver(
        &self,
        state: &mut NotifyState,
        stop: &CancellationToken,
        until: Instant,
    ) -> Vec<Notification> {
        let email_interval = Duration::from_secs(1) / self.settings.emails_per_second.max(1);
        let mut out = Vec::new();
        let mut at = 0;
        while at < state.outbox.len() {
            if stop.is_cancelled() || Instant::now() + SEND_TIMEOUT > until {
                break;
            }
            let message = state.outbox[at].message.clone();
            let result = match &message {
                Outgoing::Email(m) => self.channels.send_email(&m.email()).await,
                Outgoing::Summary(s) => self.channels.send_summary(s.channel, &s.summary()).await,
            };
            out.push(noted(&message, Some(&result)));
            if result.is_ok() {
                state.outbox.remove(at);
            } else {
                let queued = &mut state.outbox[at];
                queued.attempts += 1;
                if queued.attempts >= MAX_ATTEMPTS {
                    warn!(
                        account_id = message.account_id(),
                        kind = message.kind().as_str(),
                        attempts = MAX_ATTEMPTS,
                        "notification given up"
                    );
                    state.outbox.remove(at);
                } else {
                    at += 1;
                }
            }
            self.save(state);
            let pause = match message {
                Outgoing::Email(_) => email_interval,
                Outgoing::Summary(_) => SUMMARY_INTERVAL,
            };
            if at < state.outbox.len() {
                tokio::select! {
                    () = tokio::time::sleep(pause) => {}
                    () = tokio::time::sleep_until(until.into()) => {}
                    () = stop.cancelled() => {}
                }
            }
        }
        out
    }

    fn save(&self, state: &NotifyState) {
        if let Some(path) = &self.settings.state_file {
            if let Err(e) = state.save(path) {
                warn!(error = %e, "cannot keep the record of notifications sent");
            }
        }
    }
}

/// Whether an account's adds and removals were made, or in a dry run would have been.
fn made(account: &AccountReport, dry_run: bool) -> bool {
    account.applied || (dry_run && account.error.is_none())
}

/// The instant by which sending must end: `deadline`, or sooner when [`SEND_BUDGET`] and one
/// send end sooner.
fn send_until(deadline: Option<Instant>) -> Instant {
    let budget = Instant::now() + SEND_BUDGET + SEND_TIMEOUT;
    deadline.map_or(budget, |d| d.min(budget))
}

/// A message as the report lists it, logged as it goes (`result` is `None` in a dry run).
fn noted(message: &Outgoing, result: Option<&Result<(), SendError>>) -> Notification {
    let (channel, account_id, kind, user) = (
        message.channel(),
        message.account_id(),
        message.kind(),
        message.user(),
    );
    let (outcome, error) = match result {
        None => (Delivery::WouldSend, None),
        Some(Ok(())) => (Delivery::Sent, None),
        Some(Err(e)) => (Delivery::Failed, Some(e.to_string())),
    };
    match (result, &error) {
        (Some(Err(e)), Some(error)) => warn!(
            channel = channel.as_str(),
            account_id,
            kind = kind.as_str(),
            user = user.map(UserName::as_str),
            outcome = outcome.as_str(),
            error_kind = e.metric_label(),
            error,
            "notification not delivered; tried again at the next run"
        ),
        _ => info!(
            channel = channel.as_str(),
            account_id,
            kind = kind.as_str(),
            user = user.map(UserName::as_str),
            outcome = outcome.as_str(),
            "notification"
        ),
    }
    Notification {
        channel,
        account_id: account_id.to_string(),
        kind,
        user: user.cloned(),
        outcome,
        error,
    }
}
