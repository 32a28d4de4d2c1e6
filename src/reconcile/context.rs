//! What a run works with, shared by the steps of a reconciliation: the options and users asked
//! for, and what reconciling one account works with once its identity is known.

use std::sync::Mutex;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::aws::AccountClients;
use crate::config::Config;
use crate::user_name::UserName;

use super::audit::AuditLog;
use super::devices::Sightings;
use super::gate::Gates;
use super::plan::Rules;
use super::recorder::Recorder;
use super::stop::Stop;

/// What a single run is asked to do, after the command line has overridden the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunOptions {
    pub dry_run: bool,
    pub max_changes: Option<u64>,
    /// The run's deadline (`run_timeout`): past it no new read or change starts.
    pub timeout: Duration,
}

impl RunOptions {
    pub fn from_config(config: &Config) -> RunOptions {
        RunOptions {
            dry_run: config.dry_run,
            max_changes: config.max_changes,
            timeout: config.run_timeout,
        }
    }
}

/// Which users a run reconciles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every user of every account: the full reconciliation.
    All,
    /// Only these users (IAM finds each whatever the case it is given in), in each account.
    Users(Vec<UserName>),
}

/// What one run works with.
pub struct RunContext<'a> {
    pub config: &'a Config,
    pub options: RunOptions,
    pub scope: &'a Scope,
    /// Cancelled when forcemfa shuts down.
    pub shutdown: &'a CancellationToken,
    pub sightings: &'a Mutex<Sightings>,
    pub audit: Option<&'a AuditLog>,
    pub gates: &'a Gates,
}

/// What reconciling one account works with, once its identity is known.
pub struct Account<'a> {
    pub clients: &'a AccountClients,
    pub recorder: &'a Recorder<'a>,
    pub stop: &'a Stop<'a>,
    pub rules: &'a Rules,
}

impl Account<'_> {
    pub fn id(&self) -> &str {
        self.recorder.account_id
    }
}
