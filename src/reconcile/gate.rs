//! Keeps a full run and an event-driven reconciliation of the same account from undoing each
//! other, and remembers what a bulk read of the account costs.
//!
//! A full run reads every user, then applies its plan minutes later; a user may enrol a device in
//! between, and an event-driven reconciliation may already have taken them out of the group. Were
//! the full run to apply its older plan afterwards, it would put them back. So each account has
//! one gate: a full run holds it while it applies, an event-driven reconciliation while it reads
//! and applies, and a full run drops the changes for users reconciled after its read began: their
//! newer decision stands.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::sync::lock;
use crate::user_name::UserName;

/// The gates of every account, for the life of the process (kept across reloads).
#[derive(Debug, Default)]
pub struct Gates {
    accounts: Mutex<HashMap<String, Arc<Gate>>>,
}

impl Gates {
    pub fn of(&self, account_id: &str) -> Arc<Gate> {
        lock(&self.accounts)
            .entry(account_id.to_string())
            .or_default()
            .clone()
    }
}

/// One account's gate.
#[derive(Debug, Default)]
pub struct Gate {
    writes: tokio::sync::Mutex<()>,
    /// When each user was last read by an event-driven reconciliation.
    reconciled: Mutex<HashMap<UserName, Instant>>,
    /// The pages of users and virtual MFA devices the last bulk read of the account took.
    list_calls: Mutex<Option<u32>>,
}

impl Gate {
    /// Waits until no one else is writing this account.
    pub async fn enter(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.writes.lock().await
    }

    /// Records that `user` was read at `at` by an event-driven reconciliation; forgets records
    /// older than `keep` (no full run lasts longer).
    pub fn mark(&self, user: &UserName, at: Instant, keep: Duration) {
        let mut reconciled = lock(&self.reconciled);
        reconciled.retain(|_, seen| at.saturating_duration_since(*seen) <= keep);
        reconciled.insert(user.clone(), at);
    }

    /// Notes what the account's last bulk read cost in list pages.
    pub fn note_list_calls(&self, calls: u32) {
        *lock(&self.list_calls) = Some(calls);
    }

    /// The pages of the last bulk read of the account, if there was one.
    pub fn list_calls(&self) -> Option<u32> {
        *lock(&self.list_calls)
    }

    /// The users read by an event-driven reconciliation after `since`.
    pub fn reconciled_since(&self, since: Instant) -> HashSet<UserName> {
        lock(&self.reconciled)
            .iter()
            .filter(|(_, at)| **at > since)
            .map(|(user, _)| user.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_users_read_after_the_full_runs_read_are_newer() {
        let user = |name: &str| UserName::from_iam(name);
        let gate = Gate::default();
        let t0 = Instant::now();
        let keep = Duration::from_secs(3600);
        gate.mark(&user("Alice"), t0, keep);
        let full_read = t0 + Duration::from_secs(1);
        gate.mark(&user("bob"), t0 + Duration::from_secs(2), keep);
        assert_eq!(
            gate.reconciled_since(full_read),
            HashSet::from([user("bob")])
        );
        // Old records are forgotten once no run can still be applying an older read.
        gate.mark(&user("carol"), t0 + Duration::from_secs(7200), keep);
        assert_eq!(gate.reconciled_since(t0), HashSet::from([user("carol")]));
    }

    #[test]
    fn one_gate_per_account() {
        let gates = Gates::default();
        assert!(Arc::ptr_eq(
            &gates.of("111111111111"),
            &gates.of("111111111111")
        ));
        assert!(!Arc::ptr_eq(
            &gates.of("111111111111"),
            &gates.of("222222222222")
        ));
    }
}
