//! `forcemfa run`: the long-running service.
//!
//! One runner task performs reconciliations one at a time. Everything else (the cron schedule,
//! SIGUSR1, `POST /reconcile`, the start itself) only *requests* a run; requests that arrive while
//! a run is in progress are coalesced into at most one follow-up run. The main loop owns the
//! signals: SIGHUP reloads the configuration, SIGTERM/SIGINT stop the service, and the systemd
//! watchdog is pinged from it so that a stuck main loop is noticed.
//!
//! [`Service::build`] does everything that can fail at start-up and returns one error type;
//! [`Service::run_until_stopped`] then serves until a shutdown signal.

pub mod admin;
pub mod backlog;
pub mod client;
pub mod listener;
pub mod metrics;
pub mod queue;
pub mod state;
pub mod token;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sd_notify::NotifyState;
use tokio::net::TcpListener;
use tokio_cron_scheduler::{Job, JobScheduler, JobSchedulerError};
use tracing::{error, info, warn};
use uuid::Uuid;

use crate::clock::unix_now;
use crate::config::{Config, ConfigError};
use crate::notify::Notifier;
use crate::reconcile::report::exit;
use crate::reconcile::{Reconciler, RunOptions};
use crate::signals::{Signal, Signals};
use crate::telemetry::Telemetry;
use state::{Current, Shared};

/// After SIGTERM, how long a run in progress may take to finish its in-flight changes.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(8);

/// Why the service did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
    #[error("cannot listen on admin.listen {listen}: {source}")]
    Bind {
        listen: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    #[error(transparent)]
    Schedule(#[from] ScheduleError),
    #[error("cannot start the scheduler: {0}")]
    Scheduler(JobSchedulerError),
}

/// Why runs could not be put on the schedule.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error("invalid config key `schedule`: {0}")]
    Invalid(JobSchedulerError),
    #[error("cannot schedule runs: {0}")]
    Add(JobSchedulerError),
}

/// Why a new configuration was not taken: the previous one stays in force.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Schedule(#[from] ScheduleError),
}

impl StartError {
    /// Bad configuration is a usage error; the rest is the machine's.
    pub fn exit_code(&self) -> u8 {
        match self {
            StartError::Config(_) | StartError::Schedule(_) => exit::USAGE,
            StartError::Bind { .. } | StartError::Signals(_) | StartError::Scheduler(_) => {
                exit::INCOMPLETE
            }
        }
    }
}

/// Runs the service until SIGTERM/SIGINT. Returns the process exit code, or why it did not
/// start.
pub async fn run(
    config_path: Option<PathBuf>,
    config: Config,
    telemetry: &Telemetry,
) -> Result<u8, StartError> {
    let service = Service::build(config_path, config).await?;
    Ok(service.run_until_stopped(telemetry).await)
}

/// A service ready to run: bound, scheduled, its signals installed.
pub struct Service {
    listener: TcpListener,
    signals: Signals,
    control: Control,
}

/// What the main loop changes on reload.
struct Control {
    shared: Arc<Shared>,
    config_path: Option<PathBuf>,
    scheduler: JobScheduler,
    job: Uuid,
}

impl Service {
    /// Everything that can fail at start-up, before any task is spawned.
    pub async fn build(
        config_path: Option<PathBuf>,
        config: Config,
    ) -> Result<Service, StartError> {
        let token = token::load_token(&config)?;
        let listen = config.admin_listen;
        let reconciler = Arc::new(Reconciler::open(config).await?);
        let notifier = Notifier::open(reconciler.config(), reconciler.sdk(), None)
            .await?
            .map(Arc::new);
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|source| StartError::Bind { listen, source })?;
        let listen = listener.local_addr().unwrap_or(listen);
        let signals = Signals::for_service().map_err(StartError::Signals)?;
        let current = Current {
            reconciler,
            notifier,
            token,
        };
        let shared = Arc::new(Shared::new(current, listen));
        let scheduler = JobScheduler::new().await.map_err(StartError::Scheduler)?;
        let job = schedule_job(&scheduler, shared.current().reconciler.config(), &shared).await?;
        scheduler.start().await.map_err(StartError::Scheduler)?;
        Ok(Service {
            listener,
            signals,
            control: Control {
                shared,
                config_path,
                scheduler,
                job,
            },
        })
    }

    /// Serves until SIGTERM/SIGINT; returns the process exit code.
    pub async fn run_until_stopped(self, telemetry: &Telemetry) -> u8 {
        let Service {
            listener,
            mut signals,
            mut control,
        } = self;
        let shared = control.shared.clone();
        let mut server = tokio::spawn(listener::serve(
            listener,
            admin::router(shared.clone()),
            shared.stop.clone(),
        ));
        let runner_task = tokio::spawn(runner(shared.clone()));
        let queue_task = tokio::spawn(queue::poll(shared.clone()));

        let config = shared.current().reconciler.config().clone();
        info!(
            listen = %shared.listen,
            schedule = config.schedule.expression(),
            group = %config.group,
            dry_run = config.dry_run,
            events_queue = config.events.as_ref().map(|e| e.queue_url.as_str()),
            version = env!("CARGO_PKG_VERSION"),
            "forcemfa started"
        );
        notify_systemd(&[NotifyState::Ready]);
        if config.run_on_start {
            shared.request_run("start");
        }

        // Ping at half the watchdog interval, from the main loop itself.
        let watchdog = sd_notify::watchdog_enabled();
        let mut watchdog_tick =
            tokio::time::interval(watchdog.map(|d| d / 2).unwrap_or(Duration::from_secs(3600)));
        let code = loop {
            tokio::select! {
                signal = signals.recv() => match signal {
                    Signal::Shutdown(name) => {
                        info!(signal = name, "shutdown requested");
                        break exit::OK;
                    }
                    Signal::Reload => control.reload(telemetry).await,
                    Signal::Trigger => { shared.request_run("SIGUSR1"); }
                },
                _ = watchdog_tick.tick(), if watchdog.is_some() => {
                    if !runner_task.is_finished() {
                        notify_systemd(&[NotifyState::Watchdog]);
                    }
                }
                result = &mut server => {
                    // It returns only once stopped, or when its task panicked.
                    let why = match result {
                        Ok(()) => "it returned".to_string(),
                        Err(e) => e.to_string(),
                    };
                    error!(error = %why, "the admin listener stopped");
                    break exit::INCOMPLETE;
                }
            }
        };

        notify_systemd(&[NotifyState::Stopping]);
        shared.stop.cancel();
        if let Err(e) = control.scheduler.shutdown().await {
            warn!(error = %e, "scheduler shutdown");
        }
        let (runner_done, _) = tokio::join!(
            tokio::time::timeout(SHUTDOWN_GRACE, runner_task),
            tokio::time::timeout(SHUTDOWN_GRACE, queue_task),
        );
        if runner_done.is_err() {
            warn!(
                grace_seconds = SHUTDOWN_GRACE.as_secs(),
                "a run was still finishing its changes; stopping anyway"
            );
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), server).await;
        info!("forcemfa stopped");
        code
    }
}

impl Control {
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
    async fn try_reload(&mut self, telemetry: &Telemetry) -> Result<(), ReloadError> {
        let config = Config::load(self.config_path.as_deref())?;
        let token = token::load_token(&config)?;
        let old = self.shared.current();
        let old_config = old.reconciler.config();
        if config.admin_listen != old_config.admin_listen {
            warn!(
                listen = %self.shared.listen,
                "admin.listen changed; the new address takes effect on restart"
            );
        }
        let schedule_changed = config.schedule != old_config.schedule;
        let reconciler = old.reconciler.reopen(config).await?;
        let config = reconciler.config();
        let notifier = Notifier::open(config, reconciler.sdk(), old.notifier.as_deref())
            .await?
            .map(Arc::new);
        if schedule_changed {
            let job = schedule_job(&self.scheduler, config, &self.shared).await?;
            if let Err(e) = self.scheduler.remove(&self.job).await {
                warn!(error = %e, "cannot remove the previous schedule");
            }
            self.job = job;
        }
        telemetry.set_level(&config.log_level);
        info!(
            group = %config.group,
            schedule = config.schedule.expression(),
            dry_run = config.dry_run,
            "configuration reloaded"
        );
        self.shared.replace(Current {
            reconciler: Arc::new(reconciler),
            notifier,
            token,
        });
        Ok(())
    }
}

fn notify_systemd(state: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(state) {
        warn!(error = %e, "cannot notify systemd");
    }
}

/// Performs requested runs one at a time until the service stops.
async fn runner(shared: Arc<Shared>) {
    loop {
        tokio::select! {
            _ = shared.wake.notified() => {}
            _ = shared.stop.cancelled() => return,
        }
        while !shared.stop.is_cancelled() {
            let Some(number) = shared.take_request() else {
                break;
            };
            let current = shared.current();
            let reconciler = &current.reconciler;
            let started = Instant::now();
            let options = RunOptions::from_config(reconciler.config());
            let mut report = reconciler.run(options, &shared.stop).await;
            if let Some(notifier) = &current.notifier {
                notifier.after_run(&mut report, &shared.stop, None).await;
            }
            shared
                .metrics
                .record_run(&report, started.elapsed().as_secs_f64(), unix_now());
            shared.run_finished(number, report);
        }
    }
}

/// The cron job: asks for a run at every tick.
async fn schedule_job(
    scheduler: &JobScheduler,
    config: &Config,
    shared: &Arc<Shared>,
) -> Result<Uuid, ScheduleError> {
    let shared = shared.clone();
    let job = Job::new_async_tz(config.schedule.expression(), chrono::Utc, move |_, _| {
        let shared = shared.clone();
        Box::pin(async move {
            shared.request_run("schedule");
        })
    })
    .map_err(ScheduleError::Invalid)?;
    scheduler.add(job).await.map_err(ScheduleError::Add)
}
