//! The [`Reconciler`]: everything runs need, opened once from a configuration.

use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::config::{Config, ConfigError};
use crate::sync::lock;

use super::audit::AuditLog;
use super::context::{RunContext, RunOptions, Scope};
use super::devices::Sightings;
use super::gate::Gates;
use super::report::RunReport;
use super::run::run;
use super::targets::{AccountsCache, ClientPool};

/// Everything runs need, opened once from a configuration: the clients of every account, the
/// audit log, and the first sightings of abandoned MFA devices. The one-shot command opens one;
/// the service opens one at start and a new one on each reload, which takes over the clients
/// (when the accounts are the same) and the sightings of the one it replaces.
pub struct Reconciler {
    pub(super) config: Arc<Config>,
    pub(super) clients: Arc<ClientPool>,
    audit: Option<AuditLog>,
    sightings: Mutex<Sightings>,
    gates: Arc<Gates>,
    /// Where events are routed: the organization's accounts, forcemfa's own account.
    pub(super) accounts: Mutex<AccountsCache>,
}

impl Reconciler {
    /// Opens the audit log, restores the sightings and builds the clients.
    pub async fn open(config: Config) -> Result<Reconciler, ConfigError> {
        let audit = open_files(&config)?;
        let clients = Arc::new(ClientPool::new(&config).await);
        let sightings = Mutex::new(Sightings::restore(&config.cleanup, config.dry_run));
        Ok(Reconciler {
            config: Arc::new(config),
            clients,
            audit,
            sightings,
            gates: Arc::default(),
            accounts: Mutex::default(),
        })
    }

    /// The reconciler for `config` that follows this one.
    pub async fn reopen(&self, config: Config) -> Result<Reconciler, ConfigError> {
        let audit = open_files(&config)?;
        let old = &self.config;
        let same_accounts = config.aws == old.aws
            && config.accounts == old.accounts
            && config.organization == old.organization;
        let clients = if same_accounts {
            self.clients.clone()
        } else {
            Arc::new(ClientPool::new(&config).await)
        };
        let sightings = Mutex::new(lock(&self.sightings).clone());
        Ok(Reconciler {
            config: Arc::new(config),
            clients,
            audit,
            sightings,
            // Runs of the old configuration may still be applying.
            gates: self.gates.clone(),
            accounts: Mutex::default(),
        })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The SDK's configuration the clients were made from, for the callers' own clients (the
    /// notifier's).
    pub fn sdk(&self) -> &aws_config::SdkConfig {
        self.clients.sdk()
    }

    /// A client for the events queue, when `[events]` is configured.
    pub fn queue_client(&self) -> Option<aws_sdk_sqs::Client> {
        let events = self.config.events.as_ref()?;
        Some(
            self.clients
                .sqs(events.queue.region.as_deref(), events.wait),
        )
    }

    /// One reconciliation of every account. Once `stop` is cancelled no new read or change
    /// starts; changes already sent are let finish.
    pub async fn run(&self, options: RunOptions, stop: &CancellationToken) -> RunReport {
        self.run_scoped(options, &Scope::All, stop).await
    }

    /// One reconciliation of `scope` in every account.
    pub async fn run_scoped(
        &self,
        options: RunOptions,
        scope: &Scope,
        stop: &CancellationToken,
    ) -> RunReport {
        let ctx = self.context(options, scope, stop);
        let report = run(&ctx, &self.clients).await;
        // What a dry run saw is not kept: it writes nothing.
        if *scope == Scope::All && !options.dry_run {
            lock(&self.sightings).keep(&self.config.cleanup);
        }
        report
    }

    pub(super) fn context<'a>(
        &'a self,
        options: RunOptions,
        scope: &'a Scope,
        stop: &'a CancellationToken,
    ) -> RunContext<'a> {
        RunContext {
            config: &self.config,
            options,
            scope,
            shutdown: stop,
            sightings: &self.sightings,
            audit: self.audit.as_ref(),
            gates: &self.gates,
        }
    }
}

/// Checks the files the configuration names, and opens the audit log, unless this is a dry
/// run: a dry run writes nothing anywhere, so it only checks that the path could serve.
fn open_files(config: &Config) -> Result<Option<AuditLog>, ConfigError> {
    if let Some(path) = &config.cleanup.state_file {
        Sightings::check(path)?;
    }
    let Some(path) = config.audit_log.as_deref() else {
        return Ok(None);
    };
    if config.dry_run {
        AuditLog::check(path)?;
        info!(audit_log = %path.display(), "dry run: the audit log is usable and is left as it is");
        return Ok(None);
    }
    Ok(Some(AuditLog::open(path)?))
}
