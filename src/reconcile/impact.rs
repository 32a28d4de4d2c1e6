//! What adding a user takes away: the group denies every call made without MFA, and a call signed
//! with an access key never carries MFA, so every script that signs with the user's keys stops
//! working the moment the user is added. Read only for the users about to be added.

use serde::Serialize;

use crate::aws::pages::ListError;
use crate::aws::AwsError;
use crate::clock::Timestamp;
use crate::reconcile::plan::ConsoleAccess;
use crate::user_name::UserName;

/// One active access key, and its last use as IAM records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyUse {
    /// The key id's last four characters, never more.
    pub key: String,
    /// When the key last signed a call, or `null` when it never has.
    pub last_used: Option<Timestamp>,
    /// The service and region of that call.
    pub service: Option<String>,
    pub region: Option<String>,
}

impl KeyUse {
    /// A key as IAM describes it; only its id's last four characters are kept.
    pub fn new(
        key_id: &str,
        last_used_secs: Option<i64>,
        service: Option<&str>,
        region: Option<&str>,
    ) -> KeyUse {
        let tail: String = key_id
            .chars()
            .rev()
            .take(4)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        // IAM answers `N/A` for a key never used.
        let known = |v: Option<&str>| {
            v.filter(|v| !v.is_empty() && *v != "N/A")
                .map(str::to_string)
        };
        KeyUse {
            key: tail,
            last_used: last_used_secs.and_then(Timestamp::from_unix),
            service: known(service),
            region: known(region),
        }
    }

    /// Whether the key signed a call within `within` seconds of `now`.
    fn in_use(&self, now: i64, within: i64) -> bool {
        self.last_used.is_some_and(|t| now - t.unix() <= within)
    }
}

/// What adding the user breaks, in a word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// An active key signed a call within `rollout.keys_in_use_within`: automation will stop.
    KeysInUse,
    /// Active keys, none used lately.
    KeysIdle,
    /// No active key; a console password, which works again once MFA is set up.
    Console,
    /// Neither: nothing signs in as this user.
    #[serde(rename = "none")]
    Nothing,
    /// The keys or the console password could not be read.
    Unknown,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::KeysInUse => "keys_in_use",
            Verdict::KeysIdle => "keys_idle",
            Verdict::Console => "console",
            Verdict::Nothing => "none",
            Verdict::Unknown => "unknown",
        }
    }
}

/// The facts read for one user about to be added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    /// The active keys, or why they could not be read.
    pub keys: Result<Vec<KeyUse>, AccessError>,
    /// Whether the user has a console password, or why not known.
    pub console: ConsoleAccess,
    /// When the console password was last used, or why not known; `Ok(None)` without one.
    pub console_last_used: Result<Option<i64>, AccessError>,
}

/// Why a user's keys or console password could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccessError {
    #[error(transparent)]
    List(#[from] ListError),
    #[error(transparent)]
    Call(#[from] AwsError),
    /// GetAccessKeyLastUsed failed; IAM's message is left out, since it may name the key whole.
    #[error("iam:GetAccessKeyLastUsed for key …{key} failed ({kind})")]
    KeyLastUsed { key: String, kind: &'static str },
}

/// The impact of adding one user, as the report, the logs and the audit log show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Impact {
    pub user: UserName,
    pub verdict: Verdict,
    pub active_keys: Vec<KeyUse>,
    /// Whether the user has a console password; `null` when it could not be read.
    pub console_password: Option<bool>,
    /// When the console password was last used; `null` when never or not known.
    pub console_last_used: Option<Timestamp>,
    /// What could not be read, when the verdict is `unknown`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// One line a person can read.
    pub summary: String,
    /// Why the access keys could not be read, naming the read: all that holding a user
    /// (`rollout.hold_keys_in_use`) depends on, whatever else failed.
    #[serde(skip)]
    pub keys_error: Option<String>,
}

impl Impact {
    /// The impact of adding `user`, judged at `now` with keys in use when used within
    /// `in_use_within` seconds.
    pub fn judge(user: &UserName, access: Access, now: i64, in_use_within: i64) -> Impact {
        let mut errors = Vec::new();
        let keys_error = access.keys.as_ref().err().map(ToString::to_string);
        let keys_unread = keys_error.is_some();
        let keys = access.keys.unwrap_or_else(|e| {
            errors.push(e.to_string());
            Vec::new()
        });
        let console_password = match access.console {
            ConsoleAccess::Present => Some(true),
            ConsoleAccess::Absent => Some(false),
            ConsoleAccess::Unknown(reason) => {
                errors.push(reason);
                None
            }
            ConsoleAccess::NotChecked => {
                errors.push("the console password was not read".to_string());
                None
            }
        };
        let console_last = access.console_last_used.unwrap_or_else(|e| {
            errors.push(e.to_string());
            None
        });
        let in_use = |k: &KeyUse| k.in_use(now, in_use_within);
        // The keys decide when they were read; the console password only when there are none.
        let verdict = if keys.iter().any(in_use) {
            Verdict::KeysInUse
        } else if keys_unread {
            Verdict::Unknown
        } else if !keys.is_empty() {
            Verdict::KeysIdle
        } else if console_password.is_none() {
            Verdict::Unknown
        } else if console_password == Some(true) {
            Verdict::Console
        } else {
            Verdict::Nothing
        };
        let error = (!errors.is_empty()).then(|| errors.join("; "));
        let summary = summary(
            user,
            verdict,
            &keys,
            console_password,
            console_last,
            now,
            error.as_deref(),
        );
        Impact {
            user: user.clone(),
            verdict,
            active_keys: keys,
            console_password,
            console_last_used: console_last.and_then(Timestamp::from_unix),
            error,
            summary,
            keys_error,
        }
    }

    /// The keys that make the verdict `keys_in_use`.
    pub fn keys_in_use(&self, now: i64, in_use_within: i64) -> Vec<KeyUse> {
        self.active_keys
            .iter()
            .filter(|k| k.in_use(now, in_use_within))
            .cloned()
            .collect()
    }
}

fn summary(
    user: &UserName,
    verdict: Verdict,
    keys: &[KeyUse],
    console: Option<bool>,
    console_last: Option<i64>,
    now: i64,
    error: Option<&str>,
) -> String {
    let key_text = |k: &KeyUse| match (k.last_used, &k.service, &k.region) {
        (Some(t), service, region) => {
            let mut s = format!("key …{} used {}", k.key, ago(now - t.unix()));
            if let Some(service) = service {
                s.push_str(&format!(" by {service}"));
            }
            if let Some(region) = region {
                s.push_str(&format!(" in {region}"));
            }
            s
        }
        (None, _, _) => format!("key …{} never used", k.key),
    };
    let keys_text = keys.iter().map(key_text).collect::<Vec<_>>().join(", ");
    let console_text = match (console, console_last) {
        (Some(true), Some(t)) => format!("console password last used {}", ago(now - t)),
        (Some(true), None) => "console password never used".to_string(),
        _ => String::new(),
    };
    let what = [keys_text.as_str(), console_text.as_str()]
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(", ");
    let consequence = match verdict {
        Verdict::KeysInUse => "automation will stop",
        Verdict::KeysIdle => "its keys are idle",
        Verdict::Console => "console access needs MFA from now on",
        Verdict::Nothing => "no access key, no console password",
        Verdict::Unknown => "impact not known",
    };
    match (what.is_empty(), error) {
        (_, Some(e)) if what.is_empty() => format!("{user} — {consequence} ({e})"),
        (true, _) => format!("{user} — {consequence}"),
        (false, Some(e)) => format!("{user} — {what}: {consequence} ({e})"),
        (false, None) => format!("{user} — {what}: {consequence}"),
    }
}

/// `2 h ago`, `3 d ago`: how long before now.
fn ago(seconds: i64) -> String {
    let s = seconds.max(0);
    match s {
        s if s < 120 => format!("{s} s ago"),
        s if s < 2 * 3600 => format!("{} min ago", s / 60),
        s if s < 2 * 86400 => format!("{} h ago", s / 3600),
        s => format!("{} d ago", s / 86400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::pages::AwsCall;

    const NOW: i64 = 1_800_000_000;
    const DAY: i64 = 86400;

    fn key(id: &str, used: Option<i64>) -> KeyUse {
        KeyUse::new(id, used, Some("s3"), Some("eu-west-1"))
    }

    #[test]
    fn a_key_used_lately_means_automation_stops() {
        let access = Access {
            keys: Ok(vec![key("AKIAEXAMPLEWXYZ", Some(NOW - 7200))]),
            console: ConsoleAccess::Absent,
            console_last_used: Ok(None),
        };
        let impact = Impact::judge(&UserName::from_iam("carol"), access, NOW, 30 * DAY);
        assert_eq!(impact.verdict, Verdict::KeysInUse);
        assert_eq!(
            impact.summary,
            "carol — key …WXYZ used 2 h ago by s3 in eu-west-1: automation will stop"
        );
        assert_eq!(impact.active_keys[0].key, "WXYZ");
    }

    #[test]
    fn idle_keys_console_and_nothing() {
        let idle = Access {
            keys: Ok(vec![
                key("AKIAOLD1", Some(NOW - 60 * DAY)),
                key("AKIANEW2", None),
            ]),
            console: ConsoleAccess::Present,
            console_last_used: Ok(Some(NOW - DAY)),
        };
        assert_eq!(
            Impact::judge(&UserName::from_iam("a"), idle, NOW, 30 * DAY).verdict,
            Verdict::KeysIdle
        );
        let console = Access {
            keys: Ok(vec![]),
            console: ConsoleAccess::Present,
            console_last_used: Ok(None),
        };
        assert_eq!(
            Impact::judge(&UserName::from_iam("b"), console, NOW, 30 * DAY).verdict,
            Verdict::Console
        );
        let none = Access {
            keys: Ok(vec![]),
            console: ConsoleAccess::Absent,
            console_last_used: Ok(None),
        };
        let impact = Impact::judge(&UserName::from_iam("c"), none, NOW, 30 * DAY);
        assert_eq!(impact.verdict, Verdict::Nothing);
        assert_eq!(impact.summary, "c — no access key, no console password");
    }

    #[test]
    fn what_cannot_be_read_is_unknown_unless_a_key_is_known_in_use() {
        let unreadable = Access {
            keys: Err(AccessError::List(ListError::nonsense(
                &AwsCall::iam("ListAccessKeys"),
                "AccessDenied",
            ))),
            console: ConsoleAccess::Absent,
            console_last_used: Ok(None),
        };
        let impact = Impact::judge(&UserName::from_iam("d"), unreadable, NOW, 30 * DAY);
        assert_eq!(impact.verdict, Verdict::Unknown);
        assert!(impact.error.as_deref().unwrap().contains("AccessDenied"));
        let partly = Access {
            keys: Ok(vec![key("AKIA1234", Some(NOW - 10))]),
            console: ConsoleAccess::Unknown("iam:GetLoginProfile failed: timeout".to_string()),
            console_last_used: Ok(None),
        };
        assert_eq!(
            Impact::judge(&UserName::from_iam("e"), partly, NOW, 30 * DAY).verdict,
            Verdict::KeysInUse
        );
    }

    #[test]
    fn a_failed_console_read_names_itself_and_leaves_the_keys_known() {
        let no_password_read = Access {
            keys: Ok(vec![]),
            console: ConsoleAccess::Unknown(
                "iam:GetLoginProfile failed: AccessDenied: not authorized".to_string(),
            ),
            console_last_used: Ok(None),
        };
        let impact = Impact::judge(&UserName::from_iam("f"), no_password_read, NOW, 30 * DAY);
        assert_eq!(impact.verdict, Verdict::Unknown);
        assert_eq!(impact.keys_error, None);
        assert!(
            impact
                .error
                .as_deref()
                .unwrap()
                .contains("iam:GetLoginProfile failed"),
            "{impact:?}"
        );
        let no_keys_read = Access {
            keys: Err(AccessError::Call(AwsError {
                service: "iam",
                operation: "ListAccessKeys",
                kind: crate::aws::error::FailureKind::Refused,
                detail: "AccessDenied".to_string(),
                answered_no: true,
            })),
            console: ConsoleAccess::Absent,
            console_last_used: Ok(None),
        };
        let impact = Impact::judge(&UserName::from_iam("g"), no_keys_read, NOW, 30 * DAY);
        assert!(
            impact
                .keys_error
                .as_deref()
                .unwrap()
                .contains("iam:ListAccessKeys failed"),
            "{impact:?}"
        );
    }

    #[test]
    fn a_time_iam_answers_outside_what_can_be_written_is_no_time() {
        // The probe's deadline of a 3,000,000-day grace period, and the extremes.
        for past_9999 in [260_996_683_585, i64::MAX, -1] {
            assert_eq!(key("AKIAX", Some(past_9999)).last_used, None);
        }
        let used = key("AKIAX", Some(1_800_000_000)).last_used.unwrap();
        assert_eq!(used.to_string(), "2027-01-15T08:00:00Z");
    }

    #[test]
    fn a_verdicts_wire_name_is_its_label() {
        for v in [
            Verdict::KeysInUse,
            Verdict::KeysIdle,
            Verdict::Console,
            Verdict::Nothing,
            Verdict::Unknown,
        ] {
            assert_eq!(serde_json::to_value(v).unwrap(), v.as_str());
        }
    }

    #[test]
    fn never_more_than_four_characters_of_a_key_id() {
        assert_eq!(key("AKIAIOSFODNN7EXAMPLE", None).key, "MPLE");
        assert_eq!(key("AB", None).key, "AB");
        assert_eq!(
            KeyUse::new("AKIAX", Some(NOW), Some("N/A"), Some("N/A")).service,
            None
        );
    }
}
