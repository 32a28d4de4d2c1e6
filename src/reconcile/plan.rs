//! The pure core: from what is known about each user to what should happen to them.
//!
//! No I/O, no clock, no SDK types. The inventory asks this module which facts it still needs
//! ([`needs_mfa_lookup`], [`needs_console_lookup`]) so that it reads no more than the decision uses.

use std::collections::BTreeMap;
use std::fmt;

use crate::clock::Timestamp;
use crate::config::ExemptRules;
use crate::user_name::UserName;

/// Whether a user has at least one MFA device of any kind (virtual, hardware TOTP, FIDO).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MfaState {
    Present,
    Absent,
    /// Not looked up, because the decision does not depend on it (an exempt user).
    NotChecked,
    /// The lookup failed; the reason says which call and why.
    Unknown(String),
}

/// Whether a user has a console password (a login profile).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsoleAccess {
    Present,
    Absent,
    NotChecked,
    Unknown(String),
}

/// Everything the decision about one user depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserFacts {
    pub name: UserName,
    pub path: String,
    pub tags: BTreeMap<String, String>,
    /// Currently a member of the enforcement group.
    pub member: bool,
    pub mfa: MfaState,
    pub console: ConsoleAccess,
    /// When IAM created the user (Unix seconds), when known.
    pub created: Option<i64>,
}

/// When users without MFA may be added (`[rollout]`), with the time of the decision: the plan
/// reads no clock of its own.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Deadlines {
    /// Unix seconds now.
    pub now: i64,
    /// `rollout.enforce_from`.
    pub enforce_from: Option<Timestamp>,
    /// `rollout.grace_period`, in seconds.
    pub grace_period: Option<u64>,
}

impl Deadlines {
    /// The time a user may be added from: the later of `enforce_from` and its creation plus the
    /// grace period. `Err` when the grace period applies and the creation time is not known, or
    /// makes a deadline past the latest time that can be written (a creation time IAM cannot
    /// have meant).
    pub fn of(&self, user: &UserFacts) -> Result<Option<Timestamp>, &'static str> {
        let grace = match (self.grace_period, user.created) {
            (None, _) => None,
            (Some(grace), Some(created)) => Some(
                Timestamp::from_unix(created)
                    .and_then(|c| c.plus_secs(grace))
                    .ok_or("its creation time plus rollout.grace_period is past 9999")?,
            ),
            (Some(_), None) => {
                return Err("its creation time was not read (rollout.grace_period needs it)")
            }
        };
        Ok(self.enforce_from.max(grace))
    }
}

/// The rules a decision applies, besides the user's own facts.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    pub exempt: ExemptRules,
    pub console_users_only: bool,
    /// The IAM user forcemfa signs as, if it is one: never put into the group, lest it lock
    /// itself out of the calls it needs.
    pub own_user: Option<UserName>,
    pub deadlines: Deadlines,
}

/// Why a user is exempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exemption {
    Listed,
    Path(String),
    Tag(String, String),
}

impl fmt::Display for Exemption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Exemption::Listed => write!(f, "listed in exempt.users"),
            Exemption::Path(prefix) => write!(f, "path under exempt.path_prefixes {prefix}"),
            Exemption::Tag(k, v) => write!(f, "tag {k}={v} in exempt.tags"),
        }
    }
}

/// What happens to one user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// No MFA, in scope, not a member: put into the group.
    Add,
    /// Has MFA and is a member: take out of the group.
    Remove,
    /// Already where the rules want it.
    Keep,
    /// Never touched, whatever its state.
    Exempt(Exemption),
    /// Would be added, but is forcemfa's own identity.
    OwnIdentity,
    /// Would be added, but has no console password and only console users are enforced.
    OutOfScope,
    /// A fact the decision needs could not be read: left as it is.
    Skip(String),
    /// Would be added, but not before `deadline` (Unix seconds): `rollout.enforce_from` or its
    /// grace period.
    Pending { deadline: Timestamp },
    /// Would be added, but its access keys are in use and `rollout.hold_keys_in_use` holds it
    /// out until they go idle, it enrols MFA or it is exempted.
    Held,
}

/// A change to one user's group membership.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Add,
    Remove,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Add => "add",
            Action::Remove => "remove",
        }
    }
}

/// Which exemption, if any, applies to a user. The first matching rule is named.
pub fn exemption(user: &UserFacts, rules: &ExemptRules) -> Option<Exemption> {
    if rules.users.contains(&user.name) {
        return Some(Exemption::Listed);
    }
    if let Some(prefix) = rules
        .path_prefixes
        .iter()
        .find(|p| user.path.starts_with(p.as_str()))
    {
        return Some(Exemption::Path(prefix.clone()));
    }
    rules
        .tags
        .iter()
        .find(|(k, v)| user.tags.get(*k) == Some(*v))
        .map(|(k, v)| Exemption::Tag(k.clone(), v.clone()))
}

/// The names in `exempt.users` that match no user of the account, in the order listed: most
/// likely a typo, which leaves the user meant to be exempt enforced.
pub fn unmatched_exempt_users<'a>(
    rules: &'a ExemptRules,
    users: &[UserFacts],
) -> Vec<&'a UserName> {
    rules
        .users
        .iter()
        .filter(|listed| !users.iter().any(|u| u.name == **listed))
        .collect()
}

/// The decision for one user, given every fact the inventory gathered.
pub fn decide(user: &UserFacts, rules: &Rules) -> Decision {
    match decide_with(user, rules, &user.console) {
        Decision::Add => match rules.deadlines.of(user) {
            Ok(Some(deadline)) if deadline.unix() > rules.deadlines.now => {
                Decision::Pending { deadline }
            }
            Ok(_) => Decision::Add,
            Err(why) => Decision::Skip(why.to_string()),
        },
        other => other,
    }
}

fn decide_with(user: &UserFacts, rules: &Rules, console: &ConsoleAccess) -> Decision {
    if let Some(e) = exemption(user, &rules.exempt) {
        return Decision::Exempt(e);
    }
    match &user.mfa {
        MfaState::Unknown(reason) => Decision::Skip(reason.clone()),
        MfaState::NotChecked => Decision::Skip("MFA devices were not read".to_string()),
        MfaState::Present if user.member => Decision::Remove,
        MfaState::Present => Decision::Keep,
        MfaState::Absent if user.member => Decision::Keep,
        MfaState::Absent if rules.own_user.as_ref() == Some(&user.name) => Decision::OwnIdentity,
        MfaState::Absent if !rules.console_users_only => Decision::Add,
        MfaState::Absent => match console {
            ConsoleAccess::Present => Decision::Add,
            ConsoleAccess::Absent => Decision::OutOfScope,
            ConsoleAccess::Unknown(reason) => Decision::Skip(reason.clone()),
            ConsoleAccess::NotChecked => {
                Decision::Skip("console password was not read".to_string())
            }
        },
    }
}

/// The user's MFA devices must be listed: not exempt, and not already known to hold one.
pub fn needs_mfa_lookup(user: &UserFacts, rules: &Rules) -> bool {
    user.mfa == MfaState::NotChecked && exemption(user, &rules.exempt).is_none()
}

/// The user's login profile must be read: only console users are enforced, and the user would be
/// added if it had a console password.
pub fn needs_console_lookup(user: &UserFacts, rules: &Rules) -> bool {
    rules.console_users_only
        && user.console == ConsoleAccess::NotChecked
        && decide_with(user, rules, &ConsoleAccess::Present) == Decision::Add
}

/// The decisions for every user of one account, in user-name order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub decisions: Vec<(UserName, Decision)>,
}

impl Plan {
    pub fn build(users: &[UserFacts], rules: &Rules) -> Plan {
        let mut decisions: Vec<(UserName, Decision)> = users
            .iter()
            .map(|u| (u.name.clone(), decide(u, rules)))
            .collect();
        decisions.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
        Plan { decisions }
    }

    fn with<'a>(
        &'a self,
        pred: impl Fn(&Decision) -> bool + 'a,
    ) -> impl Iterator<Item = &'a UserName> {
        self.decisions
            .iter()
            .filter(move |(_, d)| pred(d))
            .map(|(u, _)| u)
    }

    pub fn adds(&self) -> impl Iterator<Item = &UserName> {
        self.with(|d| *d == Decision::Add)
    }

    pub fn removes(&self) -> impl Iterator<Item = &UserName> {
        self.with(|d| *d == Decision::Remove)
    }

    pub fn exempt(&self) -> impl Iterator<Item = &UserName> {
        self.with(|d| matches!(d, Decision::Exempt(_)))
    }

    pub fn out_of_scope(&self) -> impl Iterator<Item = &UserName> {
        self.with(|d| *d == Decision::OutOfScope)
    }

    /// The users pending a deadline, with it.
    pub fn pending(&self) -> impl Iterator<Item = (&UserName, Timestamp)> {
        self.decisions.iter().filter_map(|(u, d)| match d {
            Decision::Pending { deadline } => Some((u, *deadline)),
            _ => None,
        })
    }

    /// Holds `users` out of the group instead of adding them (`rollout.hold_keys_in_use`).
    pub fn hold(&mut self, users: &std::collections::HashSet<UserName>) {
        for (user, decision) in &mut self.decisions {
            if *decision == Decision::Add && users.contains(user) {
                *decision = Decision::Held;
            }
        }
    }

    /// Leaves each user of `reasons` as it is instead of adding it, for its reason.
    pub fn skip(&mut self, reasons: &std::collections::HashMap<UserName, String>) {
        for (user, decision) in &mut self.decisions {
            if *decision == Decision::Add {
                if let Some(reason) = reasons.get(user) {
                    *decision = Decision::Skip(reason.clone());
                }
            }
        }
    }

    pub fn skipped(&self) -> impl Iterator<Item = (&UserName, &str)> {
        self.decisions.iter().filter_map(|(u, d)| match d {
            Decision::Skip(reason) => Some((u, reason.as_str())),
            _ => None,
        })
    }

    /// The membership changes, adds first.
    pub fn changes(&self) -> Vec<(UserName, Action)> {
        self.adds()
            .map(|u| (u.clone(), Action::Add))
            .chain(self.removes().map(|u| (u.clone(), Action::Remove)))
            .collect()
    }

    /// Number of group memberships the plan changes.
    pub fn change_count(&self) -> u64 {
        self.decisions
            .iter()
            .filter(|(_, d)| matches!(d, Decision::Add | Decision::Remove))
            .count() as u64
    }

    /// The guard against a plan far larger than expected (a wrong group, a broken read): with
    /// more changes than `max_changes`, nothing at all is changed.
    pub fn exceeds(&self, max_changes: Option<u64>) -> bool {
        max_changes.is_some_and(|max| self.change_count() > max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str, member: bool, mfa: MfaState) -> UserFacts {
        UserFacts {
            name: UserName::from_iam(name),
            path: "/".to_string(),
            tags: BTreeMap::new(),
            member,
            mfa,
            console: ConsoleAccess::NotChecked,
            created: None,
        }
    }

    #[test]
    fn the_four_basic_cases() {
        let r = Rules::default();
        assert_eq!(
            decide(&user("a", false, MfaState::Absent), &r),
            Decision::Add
        );
        assert_eq!(
            decide(&user("a", true, MfaState::Absent), &r),
            Decision::Keep
        );
        assert_eq!(
            decide(&user("a", true, MfaState::Present), &r),
            Decision::Remove
        );
        assert_eq!(
            decide(&user("a", false, MfaState::Present), &r),
            Decision::Keep
        );
    }

    #[test]
    fn unknown_state_is_never_guessed() {
        let r = Rules::default();
        for member in [true, false] {
            let d = decide(&user("a", member, MfaState::Unknown("boom".into())), &r);
            assert_eq!(d, Decision::Skip("boom".into()));
            let d = decide(&user("a", member, MfaState::NotChecked), &r);
            assert!(matches!(d, Decision::Skip(_)));
        }
    }

    #[test]
    fn exemptions_win_over_every_state() {
        let mut r = Rules::default();
        r.exempt.users = vec![UserName::from_iam("breakglass")];
        r.exempt.path_prefixes = vec!["/automation/".into()];
        r.exempt.tags.insert("forcemfa".into(), "exempt".into());

        let listed = user("breakglass", true, MfaState::Present);
        assert_eq!(decide(&listed, &r), Decision::Exempt(Exemption::Listed));

        let mut by_path = user("ci", false, MfaState::Absent);
        by_path.path = "/automation/ci/".into();
        assert_eq!(
            decide(&by_path, &r),
            Decision::Exempt(Exemption::Path("/automation/".into()))
        );

        let mut by_tag = user("svc", false, MfaState::Unknown("x".into()));
        by_tag.tags.insert("forcemfa".into(), "exempt".into());
        assert_eq!(
            decide(&by_tag, &r),
            Decision::Exempt(Exemption::Tag("forcemfa".into(), "exempt".into()))
        );
    }

    #[test]
    fn exempt_names_match_regardless_of_case_as_in_iam() {
        let mut r = Rules::default();
        r.exempt.users = vec![UserName::from_iam("breakglass")];
        for name in ["breakglass", "BreakGlass", "BREAKGLASS"] {
            assert_eq!(
                decide(&user(name, false, MfaState::Absent), &r),
                Decision::Exempt(Exemption::Listed),
                "{name}"
            );
        }
        assert_eq!(
            decide(&user("breakglass2", false, MfaState::Absent), &r),
            Decision::Add
        );
    }

    #[test]
    fn exempt_names_that_match_no_user_are_listed() {
        let mut r = Rules::default();
        r.exempt.users = vec![
            UserName::from_iam("ghost"),
            UserName::from_iam("BreakGlass"),
            UserName::from_iam("other-ghost"),
        ];
        let users = vec![
            user("breakglass", false, MfaState::NotChecked),
            user("carol", false, MfaState::Absent),
        ];
        assert_eq!(
            unmatched_exempt_users(&r.exempt, &users),
            vec!["ghost", "other-ghost"]
        );
        assert!(unmatched_exempt_users(&ExemptRules::default(), &users).is_empty());
    }

    #[test]
    fn tag_exemption_needs_key_and_value() {
        let mut r = Rules::default();
        r.exempt.tags.insert("forcemfa".into(), "exempt".into());
        let mut u = user("svc", false, MfaState::Absent);
        u.tags.insert("forcemfa".into(), "enforce".into());
        u.tags.insert("other".into(), "exempt".into());
        assert_eq!(decide(&u, &r), Decision::Add);
    }

    #[test]
    fn path_prefix_is_a_prefix_not_a_substring() {
        let mut r = Rules::default();
        r.exempt.path_prefixes = vec!["/automation/".into()];
        let mut u = user("svc", false, MfaState::Absent);
        u.path = "/staff/automation/".into();
        assert_eq!(decide(&u, &r), Decision::Add);
    }

    #[test]
    fn own_identity_is_never_added_but_may_leave() {
        let r = Rules {
            own_user: Some(UserName::from_iam("bot")),
            ..Rules::default()
        };
        assert_eq!(
            decide(&user("bot", false, MfaState::Absent), &r),
            Decision::OwnIdentity
        );
        assert_eq!(
            decide(&user("bot", true, MfaState::Present), &r),
            Decision::Remove
        );
    }

    #[test]
    fn console_users_only_limits_adds_not_removes() {
        let r = Rules {
            console_users_only: true,
            ..Rules::default()
        };
        let mut u = user("api", false, MfaState::Absent);
        assert!(needs_console_lookup(&u, &r));
        u.console = ConsoleAccess::Absent;
        assert_eq!(decide(&u, &r), Decision::OutOfScope);
        u.console = ConsoleAccess::Present;
        assert_eq!(decide(&u, &r), Decision::Add);
        u.console = ConsoleAccess::Unknown("GetLoginProfile failed".into());
        assert!(matches!(decide(&u, &r), Decision::Skip(_)));

        let member = user("m", true, MfaState::Present);
        assert!(!needs_console_lookup(&member, &r));
        assert_eq!(decide(&member, &r), Decision::Remove);
    }

    #[test]
    fn lookups_are_asked_only_where_they_matter() {
        let mut r = Rules::default();
        r.exempt.users = vec![UserName::from_iam("x")];
        assert!(needs_mfa_lookup(
            &user("a", false, MfaState::NotChecked),
            &r
        ));
        assert!(!needs_mfa_lookup(&user("a", false, MfaState::Present), &r));
        assert!(!needs_mfa_lookup(
            &user("x", false, MfaState::NotChecked),
            &r
        ));
        assert!(!needs_console_lookup(
            &user("a", false, MfaState::Absent),
            &r
        ));
    }

    #[test]
    fn plan_lists_and_guard() {
        let r = Rules::default();
        let users = vec![
            user("c", false, MfaState::Absent),
            user("a", false, MfaState::Absent),
            user("b", true, MfaState::Present),
            user("d", true, MfaState::Absent),
            user("e", false, MfaState::Unknown("no".into())),
        ];
        let plan = Plan::build(&users, &r);
        let adds: Vec<_> = plan.adds().map(UserName::as_str).collect();
        assert_eq!(adds, vec!["a", "c"]);
        let removes: Vec<_> = plan.removes().map(UserName::as_str).collect();
        assert_eq!(removes, vec!["b"]);
        assert_eq!(plan.skipped().count(), 1);
        assert_eq!(plan.change_count(), 3);
        assert!(!plan.exceeds(None));
        assert!(!plan.exceeds(Some(3)));
        assert!(plan.exceeds(Some(2)));
    }

    #[test]
    fn decisions_are_listed_by_the_names_as_spelt() {
        let users = vec![
            user("bob", false, MfaState::Absent),
            user("Zed", false, MfaState::Absent),
            user("alice", false, MfaState::Absent),
        ];
        let plan = Plan::build(&users, &Rules::default());
        let adds: Vec<_> = plan.adds().map(UserName::as_str).collect();
        assert_eq!(adds, vec!["Zed", "alice", "bob"]);
    }

    #[test]
    fn users_without_mfa_wait_for_the_later_of_their_deadlines() {
        let mut r = Rules {
            deadlines: Deadlines {
                now: 1_000,
                enforce_from: Timestamp::from_unix(2_000),
                grace_period: None,
            },
            ..Rules::default()
        };
        let mut u = user("a", false, MfaState::Absent);
        let at = |secs| Timestamp::from_unix(secs).unwrap();
        assert_eq!(
            decide(&u, &r),
            Decision::Pending {
                deadline: at(2_000)
            }
        );
        // Enrolled users still leave; members stay.
        assert_eq!(
            decide(&user("b", true, MfaState::Present), &r),
            Decision::Remove
        );
        assert_eq!(
            decide(&user("c", true, MfaState::Absent), &r),
            Decision::Keep
        );
        // The grace period counts from the user's creation; the later deadline wins.
        r.deadlines.grace_period = Some(5_000);
        u.created = Some(0);
        assert_eq!(
            decide(&u, &r),
            Decision::Pending {
                deadline: at(5_000)
            }
        );
        r.deadlines.now = 6_000;
        assert_eq!(decide(&u, &r), Decision::Add);
        // Without its creation time, a grace period cannot be judged: left as it is.
        u.created = None;
        assert!(matches!(decide(&u, &r), Decision::Skip(_)));
        // Nor with one whose deadline could not be written.
        u.created = Some(crate::clock::LATEST_TIME - 10);
        assert!(matches!(decide(&u, &r), Decision::Skip(why) if why.contains("past 9999")));
        u.created = Some(i64::MAX);
        assert!(matches!(decide(&u, &r), Decision::Skip(_)));
    }
}
