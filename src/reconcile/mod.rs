//! One reconciliation: read, plan, guard, apply (unless dry-run), report.

pub mod apply;
pub mod audit;
pub mod devices;
pub mod events;
pub mod gate;
pub mod inventory;
pub mod plan;
pub mod report;
pub mod targeted;
pub mod targets;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn, Instrument};

use crate::aws::{identity, AccountClients};
use crate::clock::unix_now_secs;
use crate::config::{Config, ConfigError};
use crate::sync::lock;
use apply::{Change, ChangeResult, Journal, Outcome, Writer};
use audit::{AuditLog, Step};
use devices::Sightings;
use gate::Gates;
use inventory::{AccountError, GroupPolicyCheck};
use plan::{Action, MfaState, Plan, Rules, UserName};
use report::{AccountReport, FailedChange, RunReport, Skipped};
use targets::{ClientPool, Target};

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
    /// Only these users (as named; IAM matches names whatever their case), in each account.
    Users(Vec<String>),
}

/// Why a run stops before its end, and the token that tells its parts to: the service is
/// shutting down, or the run's deadline has passed.
struct Halt<'a> {
    token: CancellationToken,
    shutdown: &'a CancellationToken,
    timeout: Duration,
}

impl Halt<'_> {
    fn reason(&self) -> String {
        if self.shutdown.is_cancelled() {
            "forcemfa is shutting down".to_string()
        } else {
            format!(
                "the run passed its deadline (run_timeout = {}s)",
                self.timeout.as_secs()
            )
        }
    }

    fn not_started(&self) -> String {
        format!("not made: {}", self.reason())
    }
}

fn now_rfc3339() -> String {
    OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .unwrap_or_else(|_| OffsetDateTime::now_utc().unix_timestamp().to_string())
}

/// Everything runs need, opened once from a configuration: the clients of every account, the
/// audit log, and the first sightings of abandoned MFA devices. The one-shot command opens one;
/// the service opens one at start and a new one on each reload, which takes over the clients
/// (when the accounts are the same) and the sightings of the one it replaces.
pub struct Reconciler {
    config: Arc<Config>,
    clients: Arc<ClientPool>,
    audit: Option<AuditLog>,
    sightings: Mutex<Sightings>,
    gates: Arc<Gates>,
    /// Where events are routed: the organization's accounts, forcemfa's own account.
    accounts: Mutex<events::AccountsCache>,
}

impl Reconciler {
    /// Opens the audit log, restores the sightings and builds the clients.
    pub async fn open(config: Config) -> Result<Reconciler, ConfigError> {
        let audit = open_files(&config)?;
        let clients = Arc::new(ClientPool::new(&config).await);
        let sightings = Mutex::new(Sightings::restore(&config.cleanup));
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

    /// A client for the events queue, when `[events]` is configured.
    pub fn queue_client(&self) -> Option<aws_sdk_sqs::Client> {
        let events = self.config.events.as_ref()?;
        // The receives that gather a batch may poll longer than `events.wait`.
        let longest = events
            .wait
            .max(events.batch_window)
            .min(crate::config::events::LONGEST_POLL);
        Some(self.clients.sqs(events.queue.region.as_deref(), longest))
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

    fn context<'a>(
        &'a self,
        options: RunOptions,
        scope: &'a Scope,
        stop: &'a CancellationToken,
    ) -> RunContext<'a> {
        RunContext {
            config: &self.config,
            options,
            scope,
            stop,
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

/// What one run works with.
struct RunContext<'a> {
    config: &'a Config,
    options: RunOptions,
    scope: &'a Scope,
    stop: &'a CancellationToken,
    sightings: &'a Mutex<Sightings>,
    audit: Option<&'a AuditLog>,
    gates: &'a Gates,
}

/// Reconciles every account the configuration covers, a few at a time, and reports.
async fn run(ctx: &RunContext<'_>, pool: &ClientPool) -> RunReport {
    let run_id = uuid::Uuid::new_v4().to_string();
    // Every event of the run carries its id; the span is attached to the future, not entered,
    // so that it never leaks onto other tasks sharing the thread.
    let span = match ctx.scope {
        Scope::All => tracing::info_span!("run", run_id = %run_id, dry_run = ctx.options.dry_run),
        Scope::Users(users) => tracing::info_span!(
            "run",
            run_id = %run_id,
            dry_run = ctx.options.dry_run,
            users = users.join(",")
        ),
    };
    run_in_span(ctx, pool, run_id).instrument(span).await
}

async fn run_in_span(ctx: &RunContext<'_>, pool: &ClientPool, run_id: String) -> RunReport {
    let started_at = now_rfc3339();
    let started = Instant::now();
    info!(group = %ctx.config.group, "run started");
    let halt = Halt {
        token: ctx.stop.child_token(),
        shutdown: ctx.stop,
        timeout: ctx.options.timeout,
    };

    pool.discovery_calls.take();
    // Accounts are listed here as they start and finish, so that a run abandoned at its
    // deadline still reports each one.
    let started_targets = Mutex::new(Vec::new());
    let finished = Mutex::new(Vec::new());
    let error = {
        let work = all_accounts(ctx, pool, &run_id, &halt, &started_targets, &finished);
        tokio::pin!(work);
        tokio::select! {
            error = &mut work => error,
            () = tokio::time::sleep(halt.timeout) => {
                halt.token.cancel();
                warn!(run_timeout_secs = halt.timeout.as_secs(), "run_timeout passed: no new read or change starts");
                // Changes already sent are given the time their calls may take, and the read
                // that settles one whose answer never came.
                let grace = 2 * Duration::from_secs(ctx.config.aws.operation_timeout_secs) + ABANDON_MARGIN;
                match tokio::time::timeout(grace, &mut work).await {
                    Ok(error) => error,
                    Err(_) => {
                        error!("accounts still at work after run_timeout; abandoned");
                        None
                    }
                }
            }
        }
    };
    let finished = std::mem::take(&mut *lock(&finished));
    let mut accounts: Vec<AccountReport> = Vec::new();
    for target in std::mem::take(&mut *lock(&started_targets)) {
        match finished.iter().find(|(t, _)| *t == target) {
            Some((_, report)) => accounts.push(report.clone()),
            None => accounts.push(abandoned(ctx, &target, &halt)),
        }
    }
    accounts.sort_by(|a, b| a.account_id.cmp(&b.account_id));

    let report = RunReport {
        run_id,
        dry_run: ctx.options.dry_run,
        started_at,
        finished_at: now_rfc3339(),
        accounts,
        error,
        discovery_api_calls: pool.discovery_calls.take().calls,
        users: match ctx.scope {
            Scope::All => None,
            Scope::Users(users) => Some(users.clone()),
        },
    };
    let sum = |f: fn(&AccountReport) -> usize| report.accounts.iter().map(f).sum::<usize>();
    info!(
        accounts = report.accounts.len(),
        users = report.accounts.iter().map(|a| a.users_scanned).sum::<u64>(),
        added = sum(|a| a.added.len()),
        removed = sum(|a| a.removed.len()),
        exempt = sum(|a| a.exempt.len()),
        skipped = sum(|a| a.skipped.len()),
        failed = sum(|a| a.failed.len()),
        account_errors = sum(|a| usize::from(a.error.is_some())),
        duration_ms = started.elapsed().as_millis() as u64,
        result = report.result().as_str(),
        exit_code = report.exit_code(),
        "run finished"
    );
    report
}

/// After the deadline, beyond the calls' own timeout, how long accounts may take to finish.
const ABANDON_MARGIN: Duration = Duration::from_secs(5);

/// Discovers the targets and reconciles each, a few at a time, into `finished`; returns the
/// discovery error, if any.
async fn all_accounts(
    ctx: &RunContext<'_>,
    pool: &ClientPool,
    run_id: &str,
    halt: &Halt<'_>,
    started: &Mutex<Vec<Target>>,
    finished: &Mutex<Vec<(Target, AccountReport)>>,
) -> Option<String> {
    let targets = match halt
        .token
        .run_until_cancelled(pool.targets(ctx.config))
        .await
    {
        Some(Ok(targets)) => targets,
        Some(Err(e)) => {
            warn!(error = %e, "cannot list the organization's accounts; no account reconciled");
            return Some(e);
        }
        None => return Some(format!("no account reconciled: {}", halt.reason())),
    };
    stream::iter(targets)
        .for_each_concurrent(
            ctx.config.aws.max_accounts_in_parallel,
            |target| async move {
                lock(started).push(target.clone());
                let clients = pool.clients(&target).await;
                let span = tracing::info_span!(
                    "account",
                    account_id = target.account_id().unwrap_or("own"),
                );
                let report = reconcile_account(ctx, run_id, &clients, &target, None, halt)
                    .instrument(span)
                    .await;
                lock(finished).push((target, report));
            },
        )
        .await;
    None
}

/// The report of an account still at work when the run was abandoned.
fn abandoned(ctx: &RunContext<'_>, target: &Target, halt: &Halt<'_>) -> AccountReport {
    let error = format!(
        "not finished: {}; abandoned with its calls still under way (see the audit log for changes sent)",
        halt.reason()
    );
    warn!(account_id = target.account_id().unwrap_or("own"), error = %error, "account not reconciled");
    AccountReport {
        account_id: target.account_id().map(str::to_string),
        name: target.name().map(str::to_string),
        group: ctx.config.group.clone(),
        max_changes: ctx.options.max_changes,
        error: Some(error),
        error_kind: Some("stopped"),
        ..AccountReport::default()
    }
}

/// Reconciles the account of `target`; `expected` is the account it must be (see
/// [`reconcile_into`]), by default the one the target names.
async fn reconcile_account(
    ctx: &RunContext<'_>,
    run_id: &str,
    clients: &AccountClients,
    target: &Target,
    expected: Option<&str>,
    halt: &Halt<'_>,
) -> AccountReport {
    let started = Instant::now();
    let expected = expected
        .or(target.account_id())
        .or(ctx.config.account_id.as_deref());
    let mut report = AccountReport {
        account_id: expected.map(str::to_string),
        name: target.name().map(str::to_string),
        group: ctx.config.group.clone(),
        max_changes: ctx.options.max_changes,
        ..AccountReport::default()
    };
    if let Err(e) = reconcile_into(ctx, run_id, clients, target, expected, &mut report, halt).await
    {
        warn!(
            account_id = report.account_id.as_deref().unwrap_or(""),
            error_kind = e.metric_label(),
            error = %e,
            "account not reconciled"
        );
        report.fail(e.metric_label(), e.to_string());
    }
    let counts = clients.calls.take();
    report.api_calls = counts.calls;
    report.api_errors = counts.errors;
    report.iam_requests_per_second = clients.pacer.rate();
    report.duration_seconds = started.elapsed().as_secs_f64();
    report
}

/// `expected` is the account the clients must act in, when it is known: a role's, the one the
/// configuration names for forcemfa's own credentials, the one an event came from.
async fn reconcile_into(
    ctx: &RunContext<'_>,
    run_id: &str,
    clients: &AccountClients,
    target: &Target,
    expected: Option<&str>,
    report: &mut AccountReport,
    halt: &Halt<'_>,
) -> Result<(), AccountError> {
    let config = ctx.config;
    let stop = &halt.token;
    let identity = stop
        .run_until_cancelled(identity::caller_identity(clients))
        .await
        .ok_or_else(|| AccountError::Stopped(halt.reason()))?
        .map_err(AccountError::Identity)?;
    if let Some(expected) = expected.filter(|e| **e != identity.account_id) {
        return Err(AccountError::AccountMismatch {
            expected: expected.to_string(),
            actual: identity.account_id,
            credentials: match target {
                Target::Role(role) => format!("of role {}", role.role_arn),
                Target::Own => "forcemfa runs with".to_string(),
            },
        });
    }
    let account_id = identity.account_id.clone();
    report.account_id = Some(account_id.clone());
    report.own_user = identity.user.clone();

    let rules = Rules {
        exempt: config.exempt.clone(),
        console_users_only: config.console_users_only,
        own_user: identity.user.clone().map(UserName),
    };
    let recorder = Recorder {
        audit: ctx.audit,
        run_id,
        account_id: &account_id,
        group: &config.group,
        audit_errors: Mutex::new(Vec::new()),
    };
    let account = Account {
        clients,
        recorder: &recorder,
        halt,
        rules: &rules,
    };
    match ctx.scope {
        Scope::All => reconcile_all_users(ctx, &account, report).await?,
        Scope::Users(names) => targeted::reconcile_users(ctx, &account, report, names).await?,
    }
    report
        .audit_errors
        .extend(std::mem::take(&mut *lock(&recorder.audit_errors)));
    Ok(())
}

/// What reconciling one account works with, once its identity is known.
struct Account<'a> {
    clients: &'a AccountClients,
    recorder: &'a Recorder<'a>,
    halt: &'a Halt<'a>,
    rules: &'a Rules,
}

impl Account<'_> {
    fn id(&self) -> &str {
        self.recorder.account_id
    }
}

/// The full reconciliation of an account: every user read in bulk, then planned and applied.
async fn reconcile_all_users(
    ctx: &RunContext<'_>,
    account: &Account<'_>,
    report: &mut AccountReport,
) -> Result<(), AccountError> {
    let (config, halt, account_id) = (ctx.config, account.halt, account.id());
    let read_started = Instant::now();
    // Reads change nothing: on shutdown they are abandoned at once.
    let facts = halt
        .token
        .run_until_cancelled(inventory::read_account(
            account.clients,
            account_id,
            &config.group,
            account.rules,
            config.aws.page_size,
            config.aws.max_concurrency,
        ))
        .await
        .ok_or_else(|| AccountError::Stopped(halt.reason()))??;

    record_account_checks(report, &facts, &config.group, account_id);
    lock(ctx.sightings).observe(account_id, &facts.unassigned_devices, unix_now_secs());
    for name in plan::unmatched_exempt_users(&config.exempt, &facts.users) {
        let w = format!("exempt.users lists `{name}`, which matches no user of this account");
        warn!(account_id = %account_id, user = name, "{w}");
        report.warnings.push(w);
    }
    settle(ctx, account, report, &facts.users, Some(read_started)).await;
    if config.cleanup.unassigned_mfa_devices {
        clean_up_devices(ctx, account.clients, report, account.recorder, halt).await;
    }
    Ok(())
}

/// Plans the users read and applies the plan (or, in a dry run or past the guard, reports it).
/// `read_started` is when a full run began reading: it then waits for the account's gate and
/// leaves out users an event-driven reconciliation has decided on since. Without it the caller
/// holds the gate.
async fn settle(
    ctx: &RunContext<'_>,
    account: &Account<'_>,
    report: &mut AccountReport,
    users: &[plan::UserFacts],
    read_started: Option<Instant>,
) -> Plan {
    let (config, options, halt, account_id) = (ctx.config, ctx.options, account.halt, account.id());
    let plan = Plan::build(users, account.rules);
    report.users_scanned = users.len() as u64;
    report.users_with_mfa = count_mfa(users, &MfaState::Present);
    report.users_without_mfa = count_mfa(users, &MfaState::Absent);
    report.exempt = names(plan.exempt());
    report.out_of_scope = names(plan.out_of_scope());
    report.skipped = plan
        .skipped()
        .map(|(user, reason)| {
            warn!(account_id = %account_id, user = %user, reason, "user skipped");
            Skipped {
                user: user.0.clone(),
                reason: reason.to_string(),
            }
        })
        .collect();
    report.planned_changes = plan.change_count();

    let mut changes = plan.changes();
    if plan.exceeds(options.max_changes) {
        let max = options.max_changes.unwrap_or_default();
        let message = format!(
            "the plan has {} changes, more than max_changes = {max}: no change made (raise max_changes or pass --max-changes to proceed)",
            plan.change_count()
        );
        warn!(account_id = %account_id, planned = plan.change_count(), max_changes = max, "guard tripped: {message}");
        report.trip_guard(message);
        record_planned(report, &changes, account_id, options.dry_run, "blocked");
        return plan;
    }
    if options.dry_run {
        record_planned(report, &changes, account_id, true, "planned");
        return plan;
    }
    let gate = ctx.gates.of(account_id);
    let _writing = match read_started {
        None => None,
        Some(read_started) => {
            let Some(guard) = halt.token.run_until_cancelled(gate.enter()).await else {
                report.fail("stopped", format!("no change made: {}", halt.reason()));
                return plan;
            };
            let newer = gate.reconciled_since(read_started);
            changes.retain(|(user, action)| {
                let keep = !newer.contains(&user.0.to_ascii_lowercase());
                if !keep {
                    info!(account_id, user = %user, action = action.as_str(), "membership change left out: an event-driven reconciliation decided on this user after this run read it");
                }
                keep
            });
            Some(guard)
        }
    };
    let changes = changes
        .into_iter()
        .map(|(user, action)| Change::Membership(user, action))
        .collect();
    let outcomes = apply::apply(
        Writer::new(account.clients, config),
        changes,
        config.aws.max_concurrency,
        &halt.token,
        &halt.not_started(),
        account.recorder,
    )
    .await;
    let unfinished = outcomes
        .iter()
        .filter(|o| matches!(o.result, ChangeResult::Stopped(_)))
        .count();
    record_outcomes(report, outcomes);
    report.applied = true;
    if unfinished > 0 {
        report.fail(
            "stopped",
            format!("{unfinished} changes not made: {}", halt.reason()),
        );
    }
    plan
}

/// Logs each change and writes it to the audit log (if there is one) as it happens: the intent
/// before the request, the outcome as soon as IAM has answered.
struct Recorder<'a> {
    audit: Option<&'a AuditLog>,
    run_id: &'a str,
    account_id: &'a str,
    group: &'a str,
    /// Audit lines that could not be written, for the report.
    audit_errors: Mutex<Vec<String>>,
}

impl Recorder<'_> {
    fn write(&self, change: &Change, step: Step, error: Option<&str>) -> Result<(), String> {
        let Some(audit) = self.audit else {
            return Ok(());
        };
        let (user, action) = (change.subject(), change.action_name());
        let entry = audit::Entry {
            time: now_rfc3339(),
            run_id: self.run_id,
            account_id: self.account_id,
            group: self.group,
            user,
            action,
            outcome: step,
            reason: change_reason(change),
            error,
        };
        audit.record(&entry).inspect_err(|e| {
            error!(account_id = self.account_id, user, action, error = %e, "audit record lost");
            lock(&self.audit_errors).push(format!("{action} {user}: {e}"));
        })
    }
}

impl Journal for Recorder<'_> {
    fn before(&self, change: &Change) -> Result<(), String> {
        // No change is made that the audit log could not show.
        self.write(change, Step::Intent, None)
            .map_err(|e| format!("not made: its audit record could not be written ({e})"))
    }

    fn after(&self, outcome: &Outcome) {
        let account_id = self.account_id;
        let change = &outcome.change;
        let result = outcome.result.as_str();
        match (&outcome.result, change) {
            (ChangeResult::Done, Change::Membership(user, action)) => {
                info!(account_id, user = %user, action = action.as_str(), dry_run = false, outcome = result, "membership change");
            }
            (ChangeResult::Done, Change::DeleteDevice(serial)) => {
                info!(account_id, serial = %serial, dry_run = false, outcome = result, "MFA device deletion");
            }
            (other, Change::Membership(user, action)) => {
                let reason = other.reason().unwrap_or_default();
                warn!(account_id, user = %user, action = action.as_str(), dry_run = false, outcome = result, reason, "membership change");
            }
            (other, Change::DeleteDevice(serial)) => {
                let reason = other.reason().unwrap_or_default();
                warn!(account_id, serial = %serial, dry_run = false, outcome = result, reason, "MFA device deletion");
            }
        }
        if outcome.result.sent() {
            let step = match &outcome.result {
                ChangeResult::Done => Step::Done,
                ChangeResult::Unknown(_) => Step::Unknown,
                _ => Step::Failed,
            };
            let _ = self.write(change, step, outcome.result.reason());
        }
    }
}

/// Why a change is made, as the audit log says it.
fn change_reason(change: &Change) -> &'static str {
    match change {
        Change::Membership(_, Action::Add) => "no MFA device",
        Change::Membership(_, Action::Remove) => "has an MFA device",
        Change::DeleteDevice(_) => "unassigned for at least cleanup.unassigned_min_age",
    }
}

/// Records what the account's checks found: the group's policy, the root user's MFA, abandoned
/// devices. None of them stops the run; each is a warning an operator should act on.
fn record_account_checks(
    report: &mut AccountReport,
    facts: &inventory::AccountFacts,
    group: &str,
    account_id: &str,
) {
    report.group_policy_enforces_mfa = match &facts.group_policy {
        GroupPolicyCheck::Enforces => Some(true),
        GroupPolicyCheck::DoesNotEnforce => {
            let w = format!(
                "group {group} has no policy that denies access without MFA: putting users into it protects nothing (see `forcemfa bootstrap`)"
            );
            warn!(account_id, group, "{w}");
            report.warnings.push(w);
            Some(false)
        }
        GroupPolicyCheck::Unknown(reason) => {
            let w =
                format!("cannot tell whether group {group} denies access without MFA: {reason}");
            warn!(account_id, group, "{w}");
            report.warnings.push(w);
            None
        }
    };
    report.root_mfa_enabled = match &facts.root_mfa {
        Ok(enabled) => {
            if !enabled {
                let w = "the account's root user has no MFA device".to_string();
                warn!(account_id, "{w}");
                report.warnings.push(w);
            }
            Some(*enabled)
        }
        Err(reason) => {
            let w = format!("cannot tell whether the root user has MFA: {reason}");
            warn!(account_id, "{w}");
            report.warnings.push(w);
            None
        }
    };
    report.unassigned_mfa_devices = facts.unassigned_devices.clone();
    if !facts.unassigned_devices.is_empty() {
        info!(
            account_id,
            count = facts.unassigned_devices.len(),
            "unassigned virtual MFA devices"
        );
    }
}

/// Deletes the abandoned devices seen unassigned for long enough (or, in a dry run, lists them).
async fn clean_up_devices(
    ctx: &RunContext<'_>,
    clients: &AccountClients,
    report: &mut AccountReport,
    recorder: &Recorder<'_>,
    halt: &Halt<'_>,
) {
    let account_id = recorder.account_id;
    let min_age = ctx.config.cleanup.unassigned_min_age;
    let due = lock(ctx.sightings).due(account_id, unix_now_secs(), min_age);
    if ctx.options.dry_run {
        for serial in &due {
            info!(account_id, serial = %serial, dry_run = true, outcome = "planned", "MFA device deletion");
        }
        report.deleted_mfa_devices = due;
        return;
    }
    let changes = due.into_iter().map(Change::DeleteDevice).collect();
    let outcomes = apply::apply(
        Writer::new(clients, ctx.config),
        changes,
        ctx.config.aws.max_concurrency,
        &halt.token,
        &halt.not_started(),
        recorder,
    )
    .await;
    for outcome in outcomes {
        let Change::DeleteDevice(serial) = outcome.change else {
            continue;
        };
        match outcome.result {
            ChangeResult::Done => {
                lock(ctx.sightings).forget(&serial);
                report.deleted_mfa_devices.push(serial);
            }
            ChangeResult::Unknown(reason) => report.unknown.push(FailedChange {
                user: serial,
                action: "delete_mfa_device",
                reason,
            }),
            other => report.warnings.push(format!(
                "cannot delete MFA device {serial}: {}",
                other.reason().unwrap_or_default()
            )),
        }
    }
    report.deleted_mfa_devices.sort();
}

fn count_mfa(users: &[crate::reconcile::plan::UserFacts], state: &MfaState) -> u64 {
    users.iter().filter(|u| u.mfa == *state).count() as u64
}

fn names<'a>(users: impl Iterator<Item = &'a crate::reconcile::plan::UserName>) -> Vec<String> {
    users.map(|u| u.0.clone()).collect()
}

/// Lists a change under `added` or `removed`.
fn push_change(report: &mut AccountReport, action: Action, user: String) {
    match action {
        Action::Add => report.added.push(user),
        Action::Remove => report.removed.push(user),
    }
}

/// Records changes that were not carried out (dry run, or the guard).
fn record_planned(
    report: &mut AccountReport,
    changes: &[(crate::reconcile::plan::UserName, Action)],
    account_id: &str,
    dry_run: bool,
    outcome: &str,
) {
    for (user, action) in changes {
        info!(account_id, user = %user, action = action.as_str(), dry_run, outcome, "membership change");
        push_change(report, *action, user.0.clone());
    }
}

/// Lists each change made under `added` or `removed`, each failed one under `failed`, and each
/// whose outcome is not known under `unknown`; the journal has already logged and audited them.
fn record_outcomes(report: &mut AccountReport, outcomes: Vec<Outcome>) {
    for outcome in outcomes {
        let Change::Membership(user, action) = outcome.change else {
            continue;
        };
        let listed = |reason: &str| FailedChange {
            user: user.0.clone(),
            action: action.as_str(),
            reason: reason.to_string(),
        };
        match &outcome.result {
            ChangeResult::Done => push_change(report, action, user.0),
            ChangeResult::Unknown(reason) => report.unknown.push(listed(reason)),
            other => report
                .failed
                .push(listed(other.reason().unwrap_or_default())),
        }
    }
    report.added.sort();
    report.removed.sort();
    report.failed.sort_by(|a, b| a.user.cmp(&b.user));
    report.unknown.sort_by(|a, b| a.user.cmp(&b.user));
}
