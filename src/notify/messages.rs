//! Which messages a run calls for, and what they say: pure, from the reports, the configuration
//! and what was sent before.

use std::collections::BTreeSet;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::clock::Timestamp;
use crate::reconcile::notification::MessageKind;
use crate::reconcile::report::AccountReport;
use crate::user_name::UserName;

use super::channels::{Email, Summary};
use super::keys::{Known, ReminderKey};

/// Why a user is written to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Occasion {
    /// Put into the group: why, and how to set up MFA to get access back.
    Added,
    /// A reminder before the user's deadline.
    Reminder,
    /// Taken out of the group: access is back.
    Removed,
}

impl Occasion {
    /// The message's kind, as the report and the metrics name it.
    pub fn kind(self) -> MessageKind {
        match self {
            Occasion::Added => MessageKind::Added,
            Occasion::Reminder => MessageKind::Reminder,
            Occasion::Removed => MessageKind::Removed,
        }
    }
}

/// One email to send, with what it is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserMessage {
    pub account_id: String,
    pub user: UserName,
    pub occasion: Occasion,
    pub to: String,
    pub subject: String,
    pub body: String,
    /// A reminder's deadline: past it, the reminder is dropped. Kept in seconds, as earlier
    /// versions read it.
    #[serde(default, with = "crate::clock::unix_secs")]
    pub deadline: Option<Timestamp>,
}

impl UserMessage {
    pub fn email(&self) -> Email {
        Email {
            to: self.to.clone(),
            subject: self.subject.clone(),
            body: self.body.clone(),
        }
    }
}

/// The key under which a reminder is remembered as sent: one per user, deadline and reminder.
pub fn reminder_key(
    account_id: &str,
    user: &UserName,
    deadline: Timestamp,
    before: Duration,
) -> ReminderKey {
    ReminderKey {
        account_id: account_id.to_string(),
        user: user.key().to_string(),
        deadline: deadline.unix(),
        before_secs: before.as_secs(),
    }
}

/// The emails one account's reconciliation calls for: to each user added or removed (when the
/// changes were `made`, or are a dry run's plan), and a reminder to each pending user whose
/// deadline is within a reminder's reach, unless already `sent`. Users without an address are
/// not written to. Returns the messages and the reminder keys they use up.
pub fn user_messages(
    account: &AccountReport,
    made: bool,
    reminders: &[Duration],
    now: i64,
    sent: &dyn Fn(&ReminderKey) -> bool,
) -> (Vec<UserMessage>, Vec<ReminderKey>) {
    let Some(account_id) = account.account_id.clone() else {
        return (Vec::new(), Vec::new());
    };
    let mut messages = Vec::new();
    let mut keys = Vec::new();
    let address = |user: &UserName| account.contacts.get(user).cloned();
    if made {
        for (users, occasion) in [
            (&account.added, Occasion::Added),
            (&account.removed, Occasion::Removed),
        ] {
            for user in users {
                if let Some(to) = address(user) {
                    let (subject, body) = text(occasion, &account_id, &account.group, None);
                    messages.push(UserMessage {
                        account_id: account_id.clone(),
                        user: user.clone(),
                        occasion,
                        to,
                        subject,
                        body,
                        deadline: None,
                    });
                }
            }
        }
    }
    for pending in &account.pending {
        let Some(to) = address(&pending.user) else {
            continue;
        };
        let deadline = pending.deadline;
        let secs = deadline.unix();
        // The reminders whose time has come; the nearest one is sent, the others are past.
        let due: Vec<&Duration> = reminders
            .iter()
            .filter(|r| now >= secs - i64::try_from(r.as_secs()).unwrap_or(i64::MAX) && now < secs)
            .collect();
        let unsent: Vec<ReminderKey> = due
            .iter()
            .map(|r| reminder_key(&account_id, &pending.user, deadline, **r))
            .filter(|k| !sent(k))
            .collect();
        if unsent.is_empty() {
            continue;
        }
        let (subject, body) = text(
            Occasion::Reminder,
            &account_id,
            &account.group,
            Some(deadline),
        );
        messages.push(UserMessage {
            account_id: account_id.clone(),
            user: pending.user.clone(),
            occasion: Occasion::Reminder,
            to,
            subject,
            body,
            deadline: Some(deadline),
        });
        keys.extend(unsent);
    }
    (messages, keys)
}

fn text(
    occasion: Occasion,
    account_id: &str,
    group: &str,
    deadline: Option<Timestamp>,
) -> (String, String) {
    let how = "To set up MFA: sign in to the AWS console, open your security credentials (the menu under your name), and assign an MFA device (an authenticator app, a security key or a hardware token). If you cannot, ask your administrators for an exemption.";
    match occasion {
        Occasion::Added => (
            format!("Your AWS access now needs MFA (account {account_id})"),
            format!("You have no MFA device on your IAM user in AWS account {account_id}, so you were put into the group {group}: until you set one up, every action is denied except setting up MFA and changing your password. Calls signed with your access keys are denied too.\n\n{how}\n\nOnce your MFA device is set up, sign out of the console and sign in again with it: the console works again at once. You are taken out of the group at the next check; from then on your access keys work again, as before.\n"),
        ),
        Occasion::Reminder => {
            let when = deadline.map(|d| d.to_string()).unwrap_or_default();
            (
                format!("Set up MFA before {when} (AWS account {account_id})"),
                format!("Your IAM user in AWS account {account_id} has no MFA device. From {when}, until you set one up, every action will be denied except setting up MFA and changing your password, including calls signed with your access keys.\n\n{how}\n"),
            )
        }
        Occasion::Removed => (
            format!("MFA is set up: your AWS access is back (account {account_id})"),
            format!("Your IAM user in AWS account {account_id} has an MFA device now, so it was taken out of the group {group}: your access is as before. Sign in with MFA.\n"),
        ),
    }
}

/// Whether an account's reconciliation is worth a summary: it changed something (or, `made`
/// being a dry run's plan, would), or found pending or held users not in `known` (those already
/// told about).
pub fn summary_due(account: &AccountReport, made: bool, known: &BTreeSet<Known>) -> bool {
    let changed = made && !(account.added.is_empty() && account.removed.is_empty());
    changed || !known_keys(account).is_subset(known)
}

/// The pending and held users of an account, as remembered once told about.
pub fn known_keys(account: &AccountReport) -> BTreeSet<Known> {
    let pending = account
        .pending
        .iter()
        .map(|p| Known::Pending(p.user.key().to_string()));
    let held = account
        .held
        .iter()
        .map(|h| Known::Held(h.user.key().to_string()));
    pending.chain(held).collect()
}

/// The admins' summary of one account's reconciliation.
/// The summary's lines: what was (or would be) changed, pending, held, skipped, and why not.
fn summary_lines(dry_run: bool, account: &AccountReport) -> Vec<String> {
    let account_id = account.account_id.as_deref().unwrap_or_default();
    let verb =
        |done: &'static str, planned: &'static str| if account.applied { done } else { planned };
    let mut lines = vec![format!(
        "forcemfa: account {account_id}, group {}{}",
        account.group,
        if dry_run {
            " (dry run: nothing changed)"
        } else {
            ""
        }
    )];
    let list = |label: &str, names: &[UserName]| {
        let names: Vec<&str> = names.iter().map(UserName::as_str).collect();
        (!names.is_empty()).then(|| format!("{label} ({}): {}", names.len(), names.join(", ")))
    };
    lines.extend(list(verb("added", "would add"), &account.added));
    lines.extend(
        account
            .impact
            .iter()
            .filter(|i| account.added.contains(&i.user))
            .map(|i| format!("  {}", i.summary)),
    );
    lines.extend(list(verb("removed", "would remove"), &account.removed));
    lines.extend(
        account
            .pending
            .iter()
            .map(|p| format!("pending until {}: {}", p.deadline, p.user)),
    );
    lines.extend(
        account
            .held
            .iter()
            .map(|h| format!("held, keys in use: {}", h.user)),
    );
    lines.extend(
        account
            .skipped
            .iter()
            .map(|s| format!("skipped {}: {}", s.user, s.reason)),
    );
    lines.extend(
        account
            .failed
            .iter()
            .map(|f| format!("failed to {} {}: {}", f.action, f.user, f.reason)),
    );
    if account.guard_tripped {
        lines.push("guard tripped: nothing changed".to_string());
    }
    if let Some(error) = &account.error {
        lines.push(format!("error: {error}"));
    }
    lines
}

pub fn summary(run_id: &str, dry_run: bool, account: &AccountReport) -> Summary {
    let account_id = account.account_id.clone().unwrap_or_default();
    let text = summary_lines(dry_run, account).join("\n");
    let subject = format!(
        "forcemfa: {} added, {} removed, {} pending, {} held in {account_id}",
        account.added.len(),
        account.removed.len(),
        account.pending.len(),
        account.held.len()
    );
    let json = json!({
        "event": "run",
        "run_id": run_id,
        "dry_run": dry_run,
        "account_id": account_id,
        "group": account.group,
        "applied": account.applied,
        "added": account.added,
        "impact": account.impact,
        "removed": account.removed,
        "pending": account.pending,
        "held": account.held,
        "skipped": account.skipped,
        "failed": account.failed,
        "guard_tripped": account.guard_tripped,
        "error": account.error,
        "text": text,
    });
    Summary {
        event: "run",
        account_id,
        subject,
        text,
        json,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reconcile::report::{HeldUser, PendingUser};

    const NOW: i64 = 1_800_000_000;
    const DAY: i64 = 86_400;

    fn name(user: &str) -> UserName {
        UserName::from_iam(user)
    }

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_unix(secs).unwrap()
    }

    fn account() -> AccountReport {
        AccountReport {
            account_id: Some("111111111111".into()),
            group: "ForceMFA".into(),
            applied: true,
            added: vec![name("carol"), name("nomail")],
            removed: vec![name("alice")],
            pending: vec![PendingUser {
                user: UserName::from_iam("dave"),
                deadline: at(NOW + 3 * DAY),
            }],
            contacts: ["carol", "alice", "dave"]
                .map(|u| (name(u), format!("{u}@example.com")))
                .into(),
            ..AccountReport::default()
        }
    }

    fn week_and_day() -> Vec<Duration> {
        vec![Duration::from_secs(7 * 86_400), Duration::from_secs(86_400)]
    }

    #[test]
    fn users_with_an_address_are_told_when_added_removed_and_reminded() {
        let (messages, keys) = user_messages(&account(), true, &week_and_day(), NOW, &|_| false);
        let got: Vec<(&str, Occasion, &str)> = messages
            .iter()
            .map(|m| (m.user.as_str(), m.occasion, m.to.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("carol", Occasion::Added, "carol@example.com"),
                ("alice", Occasion::Removed, "alice@example.com"),
                ("dave", Occasion::Reminder, "dave@example.com"),
            ]
        );
        // Three days before the deadline, only the week's reminder is due.
        assert_eq!(keys.len(), 1);
        assert!(messages[2].subject.contains(&at(NOW + 3 * DAY).to_string()));
    }

    #[test]
    fn a_user_just_added_is_told_their_access_keys_work_again_once_mfa_is_set_up() {
        let (messages, _) = user_messages(&account(), true, &week_and_day(), NOW, &|_| false);
        assert_eq!(messages[0].occasion, Occasion::Added);
        let body = &messages[0].body;
        assert!(body.contains("access keys work again"), "{body}");
        assert!(body.contains("sign in again with it"), "{body}");
        // Without an MFA device, there is no session with MFA to get.
        assert!(!body.contains("get-session-token"), "{body}");
    }

    #[test]
    fn a_reminder_goes_once_and_the_nearest_when_several_are_due() {
        let mut a = account();
        a.pending[0].deadline = at(NOW + DAY / 2);
        let (messages, keys) = user_messages(&a, true, &week_and_day(), NOW, &|_| false);
        assert_eq!(
            messages
                .iter()
                .filter(|m| m.occasion == Occasion::Reminder)
                .count(),
            1
        );
        assert_eq!(keys.len(), 2, "both reminders used up: {keys:?}");
        let sent: Vec<ReminderKey> = keys.clone();
        let (again, more) = user_messages(&a, true, &week_and_day(), NOW, &|k| {
            sent.iter().any(|s| s == k)
        });
        assert!(again.iter().all(|m| m.occasion != Occasion::Reminder));
        assert!(more.is_empty());
        // Past the deadline, no reminder.
        a.pending[0].deadline = at(NOW - 1);
        let (late, _) = user_messages(&a, true, &week_and_day(), NOW, &|_| false);
        assert!(late.iter().all(|m| m.occasion != Occasion::Reminder));
    }

    #[test]
    fn a_reminders_deadline_is_kept_in_seconds_as_earlier_versions_read_it() {
        let (messages, _) = user_messages(&account(), true, &week_and_day(), NOW, &|_| false);
        let reminder = messages.iter().find(|m| m.occasion == Occasion::Reminder);
        let json = serde_json::to_value(reminder.unwrap()).unwrap();
        assert_eq!(json["deadline"], NOW + 3 * DAY);
        let back: UserMessage = serde_json::from_value(json).unwrap();
        assert_eq!(back.deadline, Some(at(NOW + 3 * DAY)));
    }

    #[test]
    fn changes_not_made_are_not_announced_to_users() {
        let (messages, _) = user_messages(&account(), false, &week_and_day(), NOW, &|_| false);
        assert!(messages.iter().all(|m| m.occasion == Occasion::Reminder));
    }

    #[test]
    fn a_summary_is_due_for_changes_and_for_new_pending_or_held_users_only() {
        let mut a = account();
        assert!(summary_due(&a, true, &BTreeSet::new()));
        a.added.clear();
        a.removed.clear();
        let known = known_keys(&a);
        assert!(summary_due(&a, true, &BTreeSet::new()), "dave is new");
        assert!(!summary_due(&a, true, &known), "nothing new");
        a.held.push(HeldUser {
            user: UserName::from_iam("Erin"),
            keys: Vec::new(),
        });
        assert!(summary_due(&a, true, &known), "erin is newly held");
        let s = summary("run-1", false, &account());
        assert!(s.text.contains("added (2): carol, nomail"), "{}", s.text);
        assert_eq!(s.json["text"], s.text.as_str());
        assert_eq!(s.json["account_id"], "111111111111");
    }
}
