//! The rollout step between the plan and its changes: what each add takes away (read only for
//! the users about to be added), which users wait for their deadline, and which are held because
//! their access keys are in use.

use std::collections::{HashMap, HashSet};

use futures::stream::{self, StreamExt};
use tracing::warn;

use crate::user_name::UserName;

use super::context::{Account, RunContext};
use super::failure::AccountError;
use super::impact::{Impact, Verdict};
use super::inventory::access::read_access;
use super::plan::{ConsoleAccess, Plan, UserFacts};
use super::report::{AccountReport, HeldUser, PendingUser};

/// Reads the impact of every add of `plan`, holds the users `rollout.hold_keys_in_use` holds,
/// and lists pending and held users in the report.
pub async fn assess(
    ctx: &RunContext<'_>,
    account: &Account<'_>,
    plan: &mut Plan,
    users: &[UserFacts],
    report: &mut AccountReport,
) -> Result<(), AccountError> {
    let rollout = &ctx.config.rollout;
    let now = account.rules.deadlines.now;
    let within = i64::try_from(rollout.keys_in_use_within.as_secs()).unwrap_or(i64::MAX);
    let adds: Vec<UserName> = plan.adds().cloned().collect();
    let impacts = if adds.is_empty() {
        // A run with nothing to add makes no impact read.
        Vec::new()
    } else {
        // The console passwords the run read already (`console_users_only`).
        let known: HashMap<&UserName, &ConsoleAccess> = users
            .iter()
            .filter(|u| u.console != ConsoleAccess::NotChecked)
            .map(|u| (&u.name, &u.console))
            .collect();
        let known = &known;
        let reads = stream::iter(adds)
            .map(|user| async move {
                let console = known
                    .get(&user)
                    .map_or(ConsoleAccess::NotChecked, |c| (*c).clone());
                let access =
                    read_access(account.clients, &user, ctx.config.aws.page_size, console).await;
                Impact::judge(&user, access, now, within)
            })
            .buffered(ctx.config.aws.max_concurrency)
            .collect::<Vec<_>>();
        account
            .stop
            .token
            .run_until_cancelled(reads)
            .await
            .ok_or_else(|| AccountError::StoppedBeforeChanges(account.stop.reason()))?
    };
    if rollout.hold_keys_in_use {
        hold(plan, report, &impacts, now, within, account.id());
    }
    record_pending(plan, report);
    account.recorder.note_impacts(&impacts);
    report.impact = impacts;
    Ok(())
}

/// Lists the users pending a deadline (also when the guard trips: no read is needed for them).
pub fn record_pending(plan: &Plan, report: &mut AccountReport) {
    report.pending = plan
        .pending()
        .map(|(user, deadline)| PendingUser {
            user: user.clone(),
            deadline,
        })
        .collect();
}

/// Holds out the users whose keys are in use, and leaves as they are those whose keys could not
/// be read: they might be. Nothing else of the impact (the console password) bears on holding.
fn hold(
    plan: &mut Plan,
    report: &mut AccountReport,
    impacts: &[Impact],
    now: i64,
    within: i64,
    account_id: &str,
) {
    let of = |verdict: Verdict| -> HashSet<UserName> {
        impacts
            .iter()
            .filter(|i| i.verdict == verdict)
            .map(|i| i.user.clone())
            .collect()
    };
    plan.hold(&of(Verdict::KeysInUse));
    let unread: HashMap<UserName, String> = impacts
        .iter()
        .filter_map(|i| {
            let error = i.keys_error.as_deref()?;
            let reason = format!(
                "rollout.hold_keys_in_use: cannot tell whether its access keys are in use: {error}"
            );
            Some((i.user.clone(), reason))
        })
        .collect();
    plan.skip(&unread);
    for impact in impacts.iter().filter(|i| i.verdict == Verdict::KeysInUse) {
        let w = format!(
            "held out of the group, its access keys are in use: {}",
            impact.summary
        );
        warn!(account_id, user = %impact.user, "{w}");
        report.warnings.push(w);
        report.held.push(HeldUser {
            user: impact.user.clone(),
            keys: impact.keys_in_use(now, within),
        });
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::aws::error::FailureKind;
    use crate::aws::AwsError;
    use crate::clock::Timestamp;
    use crate::reconcile::impact::{Access, AccessError};
    use crate::reconcile::plan::{Decision, MfaState, Rules};

    const NOW: i64 = 1_800_000_000;

    fn without_mfa(name: &str) -> UserFacts {
        UserFacts {
            name: UserName::from_iam(name),
            path: "/".to_string(),
            tags: BTreeMap::new(),
            member: false,
            mfa: MfaState::Absent,
            console: ConsoleAccess::NotChecked,
            created: None,
        }
    }

    fn refused(operation: &'static str) -> AwsError {
        AwsError {
            service: "iam",
            operation,
            kind: FailureKind::Refused,
            detail: "AccessDenied: not authorized".to_string(),
            answered_no: true,
        }
    }

    #[test]
    fn a_pending_deadline_is_reported_as_rfc3339_even_the_last_one() {
        let plan = Plan {
            decisions: vec![
                (
                    UserName::from_iam("soon"),
                    Decision::Pending {
                        deadline: Timestamp::from_unix(1_800_000_000).unwrap(),
                    },
                ),
                (
                    UserName::from_iam("last"),
                    Decision::Pending {
                        deadline: Timestamp::from_unix(crate::clock::LATEST_TIME).unwrap(),
                    },
                ),
            ],
        };
        let mut report = AccountReport::default();
        record_pending(&plan, &mut report);
        let json = serde_json::to_value(&report.pending).unwrap();
        let deadlines: Vec<&str> = json
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["deadline"].as_str().unwrap())
            .collect();
        assert_eq!(deadlines, ["2027-01-15T08:00:00Z", "9999-12-31T23:59:59Z"]);
    }

    #[test]
    fn holding_turns_on_the_keys_alone_and_a_skip_names_the_read_that_failed() {
        let users = [without_mfa("nokeys"), without_mfa("unread")];
        let mut plan = Plan::build(&users, &Rules::default());
        // nokeys: its keys were read (none); its console password was not.
        let console_failed = Access {
            keys: Ok(Vec::new()),
            console: ConsoleAccess::Unknown(refused("GetLoginProfile").to_string()),
            console_last_used: Ok(None),
        };
        // unread: its keys could not be read.
        let keys_failed = Access {
            keys: Err(AccessError::Call(refused("ListAccessKeys"))),
            console: ConsoleAccess::Absent,
            console_last_used: Ok(None),
        };
        let impacts = [
            Impact::judge(&UserName::from_iam("nokeys"), console_failed, NOW, 86_400),
            Impact::judge(&UserName::from_iam("unread"), keys_failed, NOW, 86_400),
        ];
        let mut report = AccountReport::default();
        hold(
            &mut plan,
            &mut report,
            &impacts,
            NOW,
            86_400,
            "123456789012",
        );
        let adds: Vec<&str> = plan.adds().map(UserName::as_str).collect();
        assert_eq!(adds, ["nokeys"]);
        let skipped: Vec<(&str, &str)> = plan.skipped().map(|(u, r)| (u.as_str(), r)).collect();
        assert_eq!(skipped.len(), 1, "{skipped:?}");
        assert_eq!(skipped[0].0, "unread");
        assert!(
            skipped[0]
                .1
                .contains("iam:ListAccessKeys failed: AccessDenied"),
            "{skipped:?}"
        );
        assert!(report.held.is_empty());
        assert!(matches!(plan.decisions[0].1, Decision::Add));
    }
}
