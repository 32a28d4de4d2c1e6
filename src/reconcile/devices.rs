//! Abandoned virtual MFA devices: a device created but never enabled stays behind unassigned and
//! blocks the user's next attempt under the same name. IAM does not say when a device was
//! created, so forcemfa remembers when it first saw each one unassigned and deletes it only once
//! that is at least `unassigned_min_age` ago; a user setting one up right now is never disturbed.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tracing::warn;

use crate::arn::Arn;
use crate::config::CleanupSettings;
use crate::files::{self, FileError, SaveError};

/// The configuration key that names the state file, for errors.
const KEY: &str = "cleanup.state_file";

/// The account in a virtual MFA device's serial number (`arn:PARTITION:iam::ACCOUNT:mfa/NAME`).
fn serial_account(serial: &str) -> Option<&str> {
    Arn::parse(serial).map(|arn| arn.account)
}

/// When each unassigned device (by serial number) was first seen unassigned, in Unix seconds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sightings {
    first_seen: BTreeMap<String, u64>,
}

impl Sightings {
    /// Records the devices of `account` unassigned now; forgets the account's devices no longer
    /// unassigned (enabled by their user, or deleted), so that a device unassigned again later
    /// starts its wait anew. Other accounts' records are left as they are.
    pub fn observe(&mut self, account: &str, unassigned: &[String], now: u64) {
        self.first_seen.retain(|serial, _| {
            serial_account(serial) != Some(account) || unassigned.iter().any(|u| u == serial)
        });
        for serial in unassigned {
            self.first_seen.entry(serial.clone()).or_insert(now);
        }
    }

    /// The devices of `account` seen unassigned for at least `min_age`.
    pub fn due(&self, account: &str, now: u64, min_age: Duration) -> Vec<String> {
        self.first_seen
            .iter()
            .filter(|(serial, first)| {
                serial_account(serial) == Some(account)
                    && now.saturating_sub(**first) >= min_age.as_secs()
            })
            .map(|(serial, _)| serial.clone())
            .collect()
    }

    pub fn forget(&mut self, serial: &str) {
        self.first_seen.remove(serial);
    }

    /// The record kept in `cleanup.state_file`, or an empty one without it.
    pub fn restore(settings: &CleanupSettings, dry_run: bool) -> Sightings {
        let Some(path) = &settings.state_file else {
            return Sightings::default();
        };
        let (sightings, problem) = Sightings::load(path, dry_run);
        if let Some(problem) = problem {
            warn!(problem = %problem, "starting with no record of unassigned MFA devices");
        }
        sightings
    }

    /// Writes the record to `cleanup.state_file`, when it is set.
    pub fn keep(&self, settings: &CleanupSettings) {
        if let Some(path) = &settings.state_file {
            if let Err(e) = self.save(path) {
                warn!(error = %e, "cannot keep the record of unassigned MFA devices");
            }
        }
    }

    /// Reads the state file. A missing file is an empty record; so is an unreadable one (with
    /// the reason), which only delays deletions, never hastens them.
    pub fn load(path: &Path, dry_run: bool) -> (Sightings, Option<String>) {
        files::load_record(KEY, "a forcemfa state file", path, dry_run)
    }

    /// Writes the state file whole, readable by forcemfa's user only (through a temporary file,
    /// so that a crash leaves the old one).
    pub fn save(&self, path: &Path) -> Result<(), SaveError> {
        files::save_record(KEY, "the record of unassigned MFA devices", path, self)
    }

    /// Checks, opening nothing, that `path` could serve as the state file.
    pub fn check(path: &Path) -> Result<(), FileError> {
        files::check(KEY, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ACCOUNT: &str = "111111111111";

    fn serials(names: &[&str]) -> Vec<String> {
        names
            .iter()
            .map(|s| format!("arn:aws:iam::{ACCOUNT}:mfa/{s}"))
            .collect()
    }

    #[test]
    fn a_device_is_due_only_after_the_minimum_age() {
        let hour = Duration::from_secs(3600);
        let mut s = Sightings::default();
        s.observe(ACCOUNT, &serials(&["a"]), 1000);
        assert!(s.due(ACCOUNT, 1000, hour).is_empty());
        assert!(s.due(ACCOUNT, 1000 + 3599, hour).is_empty());
        s.observe(ACCOUNT, &serials(&["a", "b"]), 1000 + 3000);
        assert_eq!(s.due(ACCOUNT, 1000 + 3600, hour), serials(&["a"]));
        assert_eq!(s.due(ACCOUNT, 4000 + 3600, hour), serials(&["a", "b"]));
    }

    #[test]
    fn a_device_enabled_in_between_starts_over() {
        let hour = Duration::from_secs(3600);
        let mut s = Sightings::default();
        s.observe(ACCOUNT, &serials(&["a"]), 0);
        s.observe(ACCOUNT, &serials(&[]), 1800); // enabled by its user
        s.observe(ACCOUNT, &serials(&["a"]), 3600); // deactivated again
        assert!(s.due(ACCOUNT, 3600, hour).is_empty());
        assert_eq!(s.due(ACCOUNT, 7200, hour), serials(&["a"]));
    }

    #[test]
    fn accounts_keep_separate_records() {
        let hour = Duration::from_secs(3600);
        let other = "arn:aws:iam::222222222222:mfa/x".to_string();
        let mut s = Sightings::default();
        s.observe("222222222222", std::slice::from_ref(&other), 0);
        s.observe(ACCOUNT, &serials(&["a"]), 0);
        s.observe(ACCOUNT, &serials(&[]), 10);
        assert_eq!(s.due("222222222222", 7200, hour), vec![other]);
        assert!(s.due(ACCOUNT, 7200, hour).is_empty());
    }

    #[test]
    fn state_survives_a_file_and_tolerates_a_bad_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        assert_eq!(Sightings::load(&path, false), (Sightings::default(), None));
        let mut s = Sightings::default();
        s.observe(ACCOUNT, &serials(&["x"]), 42);
        s.save(&path).unwrap();
        assert_eq!(Sightings::load(&path, false).0, s);
        std::fs::write(&path, "garbage").unwrap();
        // A dry run leaves a damaged record where it is; a run keeps it aside, named.
        let (loaded, problem) = Sightings::load(&path, true);
        assert_eq!(loaded, Sightings::default());
        assert!(problem.unwrap().contains("a dry run leaves it"));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "garbage");
        let (_, problem) = Sightings::load(&path, false);
        let problem = problem.unwrap();
        let aside = problem
            .split('`')
            .nth(1)
            .expect("the name it was kept aside as");
        assert!(aside.contains("state.json.damaged-"), "{problem}");
        assert_eq!(std::fs::read_to_string(aside).unwrap(), "garbage");
        assert!(!path.exists());
    }
}
