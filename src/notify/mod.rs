//! Telling the people concerned: the admins a summary of each run that changed something or
//! found new pending or held users; each affected user an email when added, reminders before
//! their deadline, and one when taken out. Nothing here blocks or changes enforcement: it runs
//! after the changes, and a channel that fails is reported, counted and tried again at the next
//! run. A dry run sends nothing and writes nothing; it lists what it would send.

pub mod channels;
pub mod messages;
pub mod outcome;
pub mod state;

use std::time::{Duration, Instant};

use tokio::sync::Mutex;
use tracing::{info, warn};

use crate::clock::unix_now_secs;
use crate::config::{ConfigError, NotifySettings};
use crate::reconcile::report::AccountReport;

use channels::{Channel, Channels, SendError};
use messages::{known_keys, summary, summary_due, user_messages, UserMessage};
use outcome::Notification;
use state::NotifyState;

/// At most this long is spent sending emails after one run; the rest go out at the next.
const SEND_BUDGET: Duration = Duration::from_secs(60);

/// The configured channels and what was sent.
pub struct Notifier {
    settings: NotifySettings,
    channels: Channels,
    state: Mutex<NotifyState>,
}

impl Notifier {
    /// The notifier of `settings`, or none when no channel is configured. Takes over what
    /// `previous` (the notifier of the configuration replaced) sent, when it kept no file.
    pub async fn open(
        settings: &NotifySettings,
        sdk: &aws_config::SdkConfig,
        previous: Option<&Notifier>,
    ) -> Result<Option<Notifier>, ConfigError> {
        if !settings.any() {
            return Ok(None);
        }
        let state = match (&settings.state_file, previous) {
            (Some(path), _) => {
                NotifyState::check(path)?;
                let (state, problem) = NotifyState::load(path);
                if let Some(problem) = problem {
                    warn!(problem = %problem, "starting with no record of notifications sent");
                }
                state
            }
            (None, Some(previous)) => previous.state.lock().await.clone(),
            (None, None) => NotifyState::default(),
        };
        Ok(Some(Notifier {
            settings: settings.clone(),
            channels: Channels::new(settings, sdk).await?,
            state: Mutex::new(state),
        }))
    }

    /// Tells whom the reconciliations `accounts` concern; returns what went out (or, in a dry
    /// run, what would have).
    pub async fn after(
        &self,
        run_id: &str,
        dry_run: bool,
        accounts: &[AccountReport],
    ) -> Vec<Notification> {
        let now = unix_now_secs() as i64;
        let mut state = self.state.lock().await;
        let mut out = self.summaries(&mut state, run_id, dry_run, accounts).await;
        if self.channels.emails() {
            out.extend(self.emails(&mut state, dry_run, accounts, now).await);
        }
        if !dry_run {
            state.trim();
            if let Some(path) = &self.settings.state_file {
                if let Err(e) = state.save(path) {
                    warn!(error = %e, "cannot keep the record of notifications sent");
                }
            }
        }
        out
    }

    /// The admins' summary of each account with something new, on every summary channel.
    async fn summaries(
        &self,
        state: &mut NotifyState,
        run_id: &str,
        dry_run: bool,
        accounts: &[AccountReport],
    ) -> Vec<Notification> {
        let mut out = Vec::new();
        for account in accounts {
            let Some(account_id) = account.account_id.clone() else {
                continue;
            };
            let known = state.known.get(&account_id).cloned().unwrap_or_default();
            if !summary_due(account, made(account, dry_run), &known) {
                if !dry_run {
                    state.known.insert(account_id, known_keys(account));
                }
                continue;
            }
            let summary = summary(run_id, dry_run, account);
            let mut delivered = true;
            for channel in self.channels.summary_channels() {
                let result = if dry_run {
                    None
                } else {
                    Some(self.channels.send_summary(channel, &summary).await)
                };
                delivered &= !matches!(result, Some(Err(_)));
                out.push(noted(
                    channel,
                    &account_id,
                    "summary",
                    None,
                    result.as_ref(),
                ));
            }
            // Told: these users are not new at the next run. Not told: tried again then.
            if delivered && !dry_run {
                state.known.insert(account_id, known_keys(account));
            }
        }
        out
    }

    /// Each affected user's email: those not delivered before, then the new ones, paced.
    async fn emails(
        &self,
        state: &mut NotifyState,
        dry_run: bool,
        accounts: &[AccountReport],
        now: i64,
    ) -> Vec<Notification> {
        let mut queue: Vec<UserMessage> = if dry_run {
            Vec::new()
        } else {
            std::mem::take(&mut state.outbox)
        };
        for account in accounts {
            let sent = |key: &str| state.sent.contains_key(key);
            let (messages, keys) = user_messages(
                account,
                made(account, dry_run),
                &self.settings.reminders,
                now,
                &sent,
            );
            queue.extend(messages);
            if !dry_run {
                for key in keys {
                    state.sent.insert(key, now);
                }
            }
        }
        if dry_run {
            return queue
                .iter()
                .map(|m| {
                    noted(
                        Channel::Email,
                        &m.account_id,
                        m.occasion.as_str(),
                        Some(&m.user),
                        None,
                    )
                })
                .collect();
        }
        let interval = Duration::from_secs(1) / self.settings.emails_per_second.max(1);
        let started = Instant::now();
        let mut out = Vec::new();
        let mut queue = queue.into_iter();
        for message in queue.by_ref() {
            if started.elapsed() > SEND_BUDGET {
                state.outbox.push(message);
                break;
            }
            let result = self.channels.send_email(&message.email()).await;
            if result.is_err() {
                state.outbox.push(message.clone());
            }
            out.push(noted(
                Channel::Email,
                &message.account_id,
                message.occasion.as_str(),
                Some(&message.user),
                Some(&result),
            ));
            tokio::time::sleep(interval).await;
        }
        state.outbox.extend(queue);
        out
    }
}

/// Whether an account's adds and removals were made, or in a dry run would have been.
fn made(account: &AccountReport, dry_run: bool) -> bool {
    account.applied || (dry_run && account.error.is_none())
}

/// A message as the report lists it, logged as it goes.
fn noted(
    channel: Channel,
    account_id: &str,
    kind: &'static str,
    user: Option<&str>,
    result: Option<&Result<(), SendError>>,
) -> Notification {
    let (outcome, error) = match result {
        None => ("would_send", None),
        Some(Ok(())) => ("sent", None),
        Some(Err(e)) => ("failed", Some(e.to_string())),
    };
    match (result, &error) {
        (Some(Err(e)), Some(error)) => warn!(
            channel = channel.as_str(),
            account_id,
            kind,
            user,
            outcome,
            error_kind = e.metric_label(),
            error,
            "notification not delivered; tried again at the next run"
        ),
        _ => info!(
            channel = channel.as_str(),
            account_id, kind, user, outcome, "notification"
        ),
    }
    Notification {
        channel: channel.as_str(),
        account_id: account_id.to_string(),
        kind,
        user: user.map(str::to_string),
        outcome,
        error,
    }
}
