//! `forcemfa run`: the long-running service.
//!
//! One runner task performs reconciliations one at a time. Everything else (the cron schedule,
//! SIGUSR1, `POST /reconcile`, the start itself) only *requests* a run; requests that arrive while
//! a run is in progress are coalesced into at most one follow-up run. The main loop owns the
//! signals: SIGHUP reloads the configuration, SIGTERM/SIGINT stop the service, and the systemd
//! watchdog is pinged from it so that a stuck main loop is noticed.

pub mod admin;
pub mod client;
pub mod listener;
pub mod metrics;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sd_notify::NotifyState;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::Notify;
use tokio_cron_scheduler::{Job, JobScheduler};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};
use uuid::Uuid;

use crate::reconcile::targets::ClientPool;
use admin::{Token};
use crate::reconcile::audit::AuditLog;
use crate::reconcile::devices::Sightings;
use crate::config::{Config, ConfigError};
use metrics::Metrics;
use crate::reconcile::{self, RunContext, RunOptions};
use crate::reconcile::report::exit;
use crate::sync;
use crate::telemetry::Telemetry;

/// After SIGTERM, how long a run in progress may take to finish its in-flight changes.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(8);

/// What a run uses; replaced as a whole on reload, so that a run sees one consistent version.
struct Current {
    config: Arc<Config>,
    clients: Arc<ClientPool>,
    token: Option<Token>,
    audit: Option<Arc<AuditLog>>,
}

/// State shared by the runner, the main loop and the admin listener.
pub struct Shared {
    current: RwLock<Arc<Current>>,
    pub metrics: Metrics,
    /// The address the admin listener is bound to (fixed for the life of the process).
    pub listen: SocketAddr,
    ready: AtomicBool,
    pending: AtomicBool,
    running: AtomicBool,
    wake: Notify,
    stop: CancellationToken,
}

impl Shared {
    fn current(&self) -> Arc<Current> {
        sync::read(&self.current).clone()
    }

    fn replace(&self, next: Current) {
        *sync::write(&self.current) = Arc::new(next);
    }

    pub fn token(&self) -> Option<Token> {
        self.current().token.clone()
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    /// Asks for a run. Returns what became of the request: `started` (the runner was idle),
    /// `queued` (it runs after the current run) or `coalesced` (a follow-up run was already queued).
    pub fn request_run(&self, source: &str) -> &'static str {
        let already_pending = self.pending.swap(true, Ordering::SeqCst);
        let outcome = if already_pending {
            "coalesced"
        } else if self.running.load(Ordering::SeqCst) {
            "queued"
        } else {
            "started"
        };
        self.wake.notify_one();
        self.metrics.record_request(outcome);
        info!(source, outcome, "run requested");
        outcome
    }
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

fn notify_systemd(state: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(state) {
        warn!(error = %e, "cannot notify systemd");
    }
}

/// Performs requested runs one at a time until `stop`.
async fn runner(shared: Arc<Shared>) {
    let sightings = std::sync::Mutex::new(Sightings::restore(&shared.current().config.cleanup));
    loop {
        tokio::select! {
            _ = shared.wake.notified() => {}
            _ = shared.stop.cancelled() => return,
        }
        while !shared.stop.is_cancelled() && shared.pending.swap(false, Ordering::SeqCst) {
            shared.running.store(true, Ordering::SeqCst);
            let current = shared.current();
            let started = Instant::now();
            let ctx = RunContext {
                config: &current.config,
                options: RunOptions::from_config(&current.config),
                stop: &shared.stop,
                sightings: &sightings,
                audit: current.audit.as_deref(),
            };
            let report = reconcile::run(&ctx, &current.clients).await;
            sync::lock(&sightings).keep(&current.config.cleanup);
            shared
                .metrics
                .record_run(&report, started.elapsed().as_secs_f64(), unix_now());
            shared.ready.store(report.accounts_ok(), Ordering::SeqCst);
            shared.running.store(false, Ordering::SeqCst);
        }
    }
}

/// The cron job: asks for a run at every tick.
async fn schedule_job(
    scheduler: &JobScheduler,
    config: &Config,
    shared: &Arc<Shared>,
) -> Result<Uuid, String> {
    let shared = shared.clone();
    let job = Job::new_async_tz(config.schedule.expression(), chrono::Utc, move |_, _| {
        let shared = shared.clone();
        Box::pin(async move {
            shared.request_run("schedule");
        })
    })
    .map_err(|e| format!("invalid config key `schedule`: {e}"))?;
    scheduler
        .add(job)
        .await
        .map_err(|e| format!("cannot schedule runs: {e}"))
}

/// What the configuration file points to: the admin token and the audit log.
struct Loaded {
    token: Option<Token>,
    audit: Option<Arc<AuditLog>>,
}

fn load_referenced(config: &Config) -> Result<Loaded, ConfigError> {
    let token = admin::load_token(config)?;
    let audit = match &config.audit_log {
        None => None,
        Some(path) => Some(Arc::new(AuditLog::open(path).map_err(|message| {
            ConfigError::Invalid {
                key: "audit_log".to_string(),
                message,
            }
        })?)),
    };
    Ok(Loaded { token, audit })
}

/// Loads the configuration file and what it points to.
fn load(path: Option<&std::path::Path>) -> Result<(Config, Loaded), ConfigError> {
    let config = Config::load(path)?;
    let loaded = load_referenced(&config)?;
    Ok((config, loaded))
}

/// The service's own state besides what `Shared` holds for the listener and runner.
struct Service {
    shared: Arc<Shared>,
    config_path: Option<PathBuf>,
    scheduler: JobScheduler,
    job: Uuid,
}

impl Service {
    /// SIGHUP: a valid new file replaces the old one as a whole; an invalid one changes nothing.
    async fn reload(&mut self, telemetry: &Telemetry) {
        notify_systemd(&[
            NotifyState::Reloading,
            NotifyState::monotonic_usec_now().unwrap_or(NotifyState::Status("reloading")),
        ]);
        match self.try_reload(telemetry).await {
            Ok(()) => self.shared.metrics.record_reload(true),
            Err(e) => {
                self.shared.metrics.record_reload(false);
                error!(error = %e, "configuration reload rejected; the previous configuration stays in force");
            }
        }
        notify_systemd(&[NotifyState::Ready]);
    }

    /// Everything that can fail comes before anything is replaced.
    async fn try_reload(&mut self, telemetry: &Telemetry) -> Result<(), String> {
        let (config, loaded) = load(self.config_path.as_deref()).map_err(|e| e.to_string())?;
        let old = self.shared.current();
        if config.admin_listen != old.config.admin_listen {
            warn!(
                listen = %self.shared.listen,
                "admin.listen changed; the new address takes effect on restart"
            );
        }
        if config.schedule != old.config.schedule {
            let job = schedule_job(&self.scheduler, &config, &self.shared).await?;
            if let Err(e) = self.scheduler.remove(&self.job).await {
                warn!(error = %e, "cannot remove the previous schedule");
            }
            self.job = job;
        }
        let same_accounts = config.aws == old.config.aws
            && config.accounts == old.config.accounts
            && config.organization == old.config.organization;
        let clients = if same_accounts {
            old.clients.clone()
        } else {
            Arc::new(ClientPool::new(&config).await)
        };
        telemetry.set_level(&config.log_level);
        info!(
            group = %config.group,
            schedule = config.schedule.expression(),
            dry_run = config.dry_run,
            "configuration reloaded"
        );
        self.shared.replace(Current {
            config: Arc::new(config),
            clients,
            token: loaded.token,
            audit: loaded.audit,
        });
        Ok(())
    }
}

/// Runs the service until SIGTERM/SIGINT. Returns the process exit code.
pub async fn run(config_path: Option<PathBuf>, config: Config, telemetry: &Telemetry) -> u8 {
    let loaded = match load_referenced(&config) {
        Ok(l) => l,
        Err(e) => {
            error!(error = %e, "invalid configuration; not started");
            return exit::USAGE;
        }
    };
    let listener = match tokio::net::TcpListener::bind(config.admin_listen).await {
        Ok(l) => l,
        Err(e) => {
            error!(listen = %config.admin_listen, error = %e, "cannot listen on admin.listen");
            return exit::INCOMPLETE;
        }
    };
    let listen = listener.local_addr().unwrap_or(config.admin_listen);
    let (Ok(mut term), Ok(mut int), Ok(mut hup), Ok(mut usr1)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
        signal(SignalKind::user_defined1()),
    ) else {
        error!("cannot install signal handlers");
        return exit::INCOMPLETE;
    };

    let clients = Arc::new(ClientPool::new(&config).await);
    let run_on_start = config.run_on_start;
    let shared = Arc::new(Shared {
        current: RwLock::new(Arc::new(Current {
            config: Arc::new(config.clone()),
            clients,
            token: loaded.token,
            audit: loaded.audit,
        })),
        metrics: Metrics::new(),
        listen,
        ready: AtomicBool::new(false),
        pending: AtomicBool::new(false),
        running: AtomicBool::new(false),
        wake: Notify::new(),
        stop: CancellationToken::new(),
    });

    let server = {
        let stop = shared.stop.clone();
        let app = admin::router(shared.clone());
        tokio::spawn(listener::serve(listener, app, stop))
    };
    let runner_task = tokio::spawn(runner(shared.clone()));

    let scheduler = match JobScheduler::new().await {
        Ok(s) => s,
        Err(e) => {
            error!(error = %e, "cannot create the scheduler");
            shared.stop.cancel();
            return exit::INCOMPLETE;
        }
    };
    let job = match schedule_job(&scheduler, &config, &shared).await {
        Ok(job) => job,
        Err(e) => {
            error!(error = %e, "cannot schedule runs");
            shared.stop.cancel();
            return exit::USAGE;
        }
    };
    if let Err(e) = scheduler.start().await {
        error!(error = %e, "cannot start the scheduler");
        shared.stop.cancel();
        return exit::INCOMPLETE;
    }
    let mut service = Service {
        shared: shared.clone(),
        config_path,
        scheduler,
        job,
    };

    info!(
        listen = %listen,
        schedule = config.schedule.expression(),
        group = %config.group,
        dry_run = config.dry_run,
        version = env!("CARGO_PKG_VERSION"),
        "forcemfa started"
    );
    notify_systemd(&[NotifyState::Ready]);
    if run_on_start {
        shared.request_run("start");
    }

    // Ping at half the watchdog interval, from the main loop itself.
    let watchdog = sd_notify::watchdog_enabled();
    let mut watchdog_tick =
        tokio::time::interval(watchdog.map(|d| d / 2).unwrap_or(Duration::from_secs(3600)));
    let mut server = server;
    let code = loop {
        tokio::select! {
            _ = term.recv() => { info!(signal = "SIGTERM", "shutdown requested"); break exit::OK; }
            _ = int.recv() => { info!(signal = "SIGINT", "shutdown requested"); break exit::OK; }
            _ = hup.recv() => service.reload(telemetry).await,
            _ = usr1.recv() => { shared.request_run("SIGUSR1"); }
            _ = watchdog_tick.tick(), if watchdog.is_some() => {
                if !runner_task.is_finished() {
                    notify_systemd(&[NotifyState::Watchdog]);
                }
            }
            result = &mut server => {
                error!(result = ?result, "the admin listener stopped");
                break exit::INCOMPLETE;
            }
        }
    };

    notify_systemd(&[NotifyState::Stopping]);
    shared.stop.cancel();
    if let Err(e) = service.scheduler.shutdown().await {
        warn!(error = %e, "scheduler shutdown");
    }
    if tokio::time::timeout(SHUTDOWN_GRACE, runner_task)
        .await
        .is_err()
    {
        warn!(
            grace_seconds = SHUTDOWN_GRACE.as_secs(),
            "a run was still finishing its changes; stopping anyway"
        );
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), server).await;
    info!("forcemfa stopped");
    code
}
