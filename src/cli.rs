//! The command line: parse, set up logging and configuration, dispatch.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use hyper::{Method, StatusCode};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::arn::{self, Partition};
use crate::aws::identity;
use crate::aws::{load_sdk_config, AccountClients};
use crate::config::Config;
use crate::environment;
use crate::files;
use crate::notify::Notifier;
use crate::policy;
use crate::policy::bootstrap;
use crate::reconcile::report::exit;
use crate::reconcile::targeted::check_named;
use crate::reconcile::{Reconciler, RunOptions, Scope};
use crate::service;
use crate::service::client;
use crate::service::metrics;
use crate::service::token;
use crate::signals;
use crate::telemetry::{LogFormat, Telemetry};
use crate::user_name::UserName;

#[derive(Debug, Parser)]
#[command(
    name = "forcemfa",
    version,
    about = "Keeps every IAM user without MFA in the ForceMFA group, and every user with MFA out of it."
)]
pub struct Cli {
    /// Log format on stderr; JSON unless stderr is a terminal.
    #[arg(long, global = true, value_enum, env = "FORCEMFA_LOG_FORMAT")]
    log_format: Option<LogFormat>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Reconcile the group once and exit: 0 all good, 1 some user or account not handled,
    /// 2 bad usage or configuration, 3 guard tripped.
    Reconcile(ReconcileArgs),
    /// Run as a service: reconcile on the schedule and on request, serve health and metrics.
    Run(ConfigArg),
    /// Ask a running service for a run now (POST /reconcile on its admin listener); with --wait,
    /// print that run's report and exit with its exit code.
    Trigger(TriggerArgs),
    /// Exit 0 when the service's admin listener answers /healthz, 1 otherwise.
    Healthcheck(ClientArgs),
    /// Create the enforcement group when missing and put forcemfa's policy on it (or repair a
    /// drifted one). Idempotent.
    Bootstrap(BootstrapArgs),
    /// Print an IAM policy (JSON) that forcemfa depends on.
    #[command(subcommand)]
    Policy(PolicyCommand),
}

#[derive(Debug, Args)]
struct BootstrapArgs {
    #[command(flatten)]
    config: ConfigArg,

    /// Report what would be done, change nothing.
    #[arg(long)]
    dry_run: bool,

    /// Report format on stdout.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    output: Output,
}

#[derive(Debug, Subcommand)]
enum PolicyCommand {
    /// The enforcement group's policy: without MFA, only setting up one's own MFA device and
    /// changing one's own password are allowed.
    ForceMfaGroup {
        #[command(flatten)]
        account: AccountArg,
        /// The group (default: `group` from the configuration).
        #[arg(long)]
        group: Option<String>,
    },
    /// forcemfa's own least-privilege policy, for the configured group and features.
    Daemon {
        #[command(flatten)]
        account: AccountArg,
    },
}

#[derive(Debug, Args)]
struct AccountArg {
    /// The 12-digit AWS account id (default: the account of the current credentials).
    #[arg(long, value_parser = parse_account_id)]
    account_id: Option<String>,

    /// The account's partition: aws, aws-cn or aws-us-gov (default: the current credentials'
    /// partition, or aws with --account-id).
    #[arg(long, value_name = "PARTITION", value_parser = parse_partition)]
    partition: Option<Partition>,

    #[command(flatten)]
    config: ConfigArg,
}

fn parse_account_id(text: &str) -> Result<String, String> {
    if arn::is_account_id(text) {
        Ok(text.to_string())
    } else {
        Err(format!("`{text}` is not a 12-digit AWS account id"))
    }
}

fn parse_partition(text: &str) -> Result<Partition, arn::PartitionError> {
    text.parse()
}

#[derive(Debug, Args)]
struct ConfigArg {
    /// Configuration file (TOML); without one, every key takes its default.
    #[arg(long, env = "FORCEMFA_CONFIG")]
    config: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct ReconcileArgs {
    #[command(flatten)]
    config: ConfigArg,

    /// Plan and report, but make no change.
    #[arg(long)]
    dry_run: bool,

    /// Report format on stdout.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    output: Output,

    /// Make no change at all when the plan has more changes than this (overrides `max_changes`).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    max_changes: Option<u64>,

    /// Also write the run's metrics to this file (Prometheus text format, replaced atomically),
    /// for node_exporter's textfile collector.
    #[arg(long, value_name = "PATH")]
    metrics_file: Option<PathBuf>,

    /// Reconcile only this IAM user, in every account, by the same rules as a full run (repeat
    /// for more users, at most 1,000).
    #[arg(long = "user", value_name = "NAME", value_parser = UserName::parse)]
    users: Vec<UserName>,
}

#[derive(Debug, Args)]
struct ClientArgs {
    #[command(flatten)]
    config: ConfigArg,

    /// The service's admin address, instead of `admin.listen` from the configuration.
    #[arg(long, value_name = "HOST:PORT")]
    admin: Option<std::net::SocketAddr>,
}

#[derive(Debug, Args)]
struct TriggerArgs {
    #[command(flatten)]
    client: ClientArgs,

    /// Wait for the run requested, print its report and exit with its exit code (0, 1 or 3).
    #[arg(long)]
    wait: bool,

    /// With --wait: the report's format on stdout.
    #[arg(long, value_enum, default_value_t = Output::Text, requires = "wait")]
    output: Output,

    /// With --wait: give up (exit 1) when the run's report is not there after this many seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 300, requires = "wait",
          value_parser = clap::value_parser!(u64).range(1..))]
    timeout: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    Text,
    Json,
}

/// Why a command could not do its work: one log line (`what`, with the error) and the exit
/// code, both given in [`main`] only.
#[derive(Debug)]
struct Failure {
    code: u8,
    what: String,
    error: String,
}

impl Failure {
    /// Bad usage or configuration: nothing was touched.
    fn usage(what: impl Into<String>, error: impl std::fmt::Display) -> Failure {
        Failure {
            code: exit::USAGE,
            what: what.into(),
            error: error.to_string(),
        }
    }

    /// The command could not finish its work.
    fn incomplete(what: impl Into<String>, error: impl std::fmt::Display) -> Failure {
        Failure {
            code: exit::INCOMPLETE,
            what: what.into(),
            error: error.to_string(),
        }
    }
}

/// A command's exit code, or why it could not do its work.
type Outcome = Result<u8, Failure>;

/// Entry point: returns the process exit code.
pub fn main() -> ExitCode {
    // Before the command line is parsed, since FORCEMFA_LOG_FORMAT may be the culprit.
    // The telemetry is kept until the last line is logged.
    let (_telemetry, outcome) = match environment::check() {
        Err(e) => (
            Telemetry::init(LogFormat::detect()),
            Err(Failure::usage(
                "invalid environment; nothing was changed",
                e,
            )),
        ),
        Ok(()) => {
            let cli = Cli::parse();
            let telemetry = Telemetry::init(cli.log_format.unwrap_or_else(LogFormat::detect));
            let outcome = run_command(cli.command, &telemetry);
            (telemetry, outcome)
        }
    };
    let code = match outcome {
        Ok(code) => code,
        Err(failure) => {
            error!(error = %failure.error, "{}", failure.what);
            failure.code
        }
    };
    ExitCode::from(code)
}

/// Runs one command on a fresh runtime.
fn run_command(command: Command, telemetry: &Telemetry) -> Outcome {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::incomplete("cannot start the async runtime", e))?;
    let outcome = runtime.block_on(async {
        match command {
            Command::Reconcile(args) => reconcile_command(args, telemetry).await,
            Command::Run(args) => service_command(args, telemetry).await,
            Command::Trigger(args) => trigger_command(args, telemetry).await,
            Command::Healthcheck(args) => healthcheck_command(args, telemetry).await,
            Command::Policy(which) => policy_command(which, telemetry).await,
            Command::Bootstrap(args) => bootstrap_command(args, telemetry).await,
        }
    });
    // The runtime may hold tasks blocked on I/O (the scheduler's); do not wait for them.
    runtime.shutdown_background();
    outcome
}

/// Loads the configuration and sets the log level it names.
fn load_config(path: Option<&Path>, telemetry: &Telemetry) -> Result<Config, Failure> {
    let config = Config::load(path)
        .map_err(|e| Failure::usage("invalid configuration; nothing was changed", e))?;
    telemetry.set_level(&config.log_level);
    Ok(config)
}

async fn reconcile_command(args: ReconcileArgs, telemetry: &Telemetry) -> Outcome {
    check_named(args.users.len())
        .map_err(|e| Failure::usage("invalid command line; nothing was read or changed", e))?;
    let mut config = load_config(args.config.config.as_deref(), telemetry)?;
    // Decided once, here: the reconciler then neither opens the audit log nor keeps its state.
    config.dry_run |= args.dry_run;
    let mut options = RunOptions::from_config(&config);
    if args.max_changes.is_some() {
        options.max_changes = args.max_changes;
    }
    if let Some(path) = &args.metrics_file {
        // Refused before anything is read or changed, rather than after the run.
        files::check(metrics::METRICS_FILE, path)
            .map_err(|e| Failure::usage("invalid command line; nothing was changed", e))?;
    }
    if config.notify.any() && config.notify.state_file.is_none() && !config.dry_run {
        warn!("[notify] without notify.state_file: this run does not know what earlier runs sent, so its reminders and summaries may repeat theirs");
    }
    let reconciler = Reconciler::open(config)
        .await
        .map_err(|e| Failure::usage("invalid configuration; nothing was changed", e))?;
    let notifier = Notifier::open(reconciler.config(), reconciler.sdk(), None)
        .await
        .map_err(|e| Failure::usage("invalid configuration; nothing was changed", e))?;
    // Ctrl-C or SIGTERM during a run: start no new change, let those sent finish.
    let stop = CancellationToken::new();
    tokio::spawn(signals::cancel_on_shutdown_signal(stop.clone()));
    let started = std::time::Instant::now();
    let scope = if args.users.is_empty() {
        Scope::All
    } else {
        Scope::Users(args.users)
    };
    let mut report = reconciler.run_scoped(options, &scope, &stop).await;
    if let Some(notifier) = &notifier {
        notifier.after_run(&mut report, &stop, None).await;
    }
    let duration = started.elapsed().as_secs_f64();
    match args.output {
        Output::Json => println!("{}", report.to_json()),
        Output::Text => print!("{}", report.to_text()),
    }
    let code = report.exit_code();
    let Some(path) = &args.metrics_file else {
        return Ok(code);
    };
    // A dry run writes its metrics too: a report-only first step of a rollout is watched
    // through this file. It writes nothing else (no audit line, state or notification record).
    match metrics::write_textfile(path, &report, duration) {
        Ok(()) => Ok(code),
        Err(e) => {
            // The run's own outcome stands; a run that succeeded is incomplete without its metrics.
            error!(error = %e, path = %path.display(), "metrics file not written");
            Ok(code.max(exit::INCOMPLETE))
        }
    }
}

async fn service_command(args: ConfigArg, telemetry: &Telemetry) -> Outcome {
    let config = load_config(args.config.as_deref(), telemetry)?;
    service::run(args.config, config, telemetry)
        .await
        .map_err(|e| Failure {
            code: e.exit_code(),
            what: "forcemfa not started".to_string(),
            error: e.to_string(),
        })
}

/// The admin address and token a client command uses.
fn client_target(
    args: &ClientArgs,
    telemetry: &Telemetry,
) -> Result<(std::net::SocketAddr, Option<token::Token>), Failure> {
    let config = load_config(args.config.config.as_deref(), telemetry)?;
    let token =
        token::load_token(&config).map_err(|e| Failure::usage("invalid configuration", e))?;
    Ok((
        client::reachable(args.admin.unwrap_or(config.admin_listen)),
        token,
    ))
}

async fn trigger_command(args: TriggerArgs, telemetry: &Telemetry) -> Outcome {
    let (addr, token) = client_target(&args.client, telemetry)?;
    let answer = client::call(Method::POST, addr, "/reconcile", token.as_ref(), None).await;
    let body = expect(answer, StatusCode::ACCEPTED)
        .map_err(|e| Failure::incomplete(format!("run request refused by {addr}"), e))?;
    info!(admin = %addr, answer = %body, "run requested");
    if !args.wait {
        return Ok(exit::OK);
    }
    let run = client::requested_run(&body).ok_or_else(|| {
        Failure::incomplete(
            format!("the service at {addr} did not say which run serves the request"),
            body.as_str(),
        )
    })?;
    let accept = match args.output {
        Output::Json => "application/json",
        Output::Text => "text/plain",
    };
    let timeout = std::time::Duration::from_secs(args.timeout);
    let (code, report) = client::wait_for_report(addr, token.as_ref(), run, accept, timeout)
        .await
        .map_err(|e| Failure::incomplete(format!("no report of run {run} from {addr}"), e))?;
    println!("{report}");
    Ok(code)
}

async fn healthcheck_command(args: ClientArgs, telemetry: &Telemetry) -> Outcome {
    let (addr, _) = client_target(&args, telemetry)?;
    let answer = client::call(Method::GET, addr, "/healthz", None, None).await;
    expect(answer, StatusCode::OK)
        .map_err(|e| Failure::incomplete(format!("unhealthy: {addr}"), e))?;
    Ok(exit::OK)
}

/// The body of an answer with the `wanted` status; otherwise what went wrong.
fn expect(
    answer: Result<client::Answer, client::CallError>,
    wanted: StatusCode,
) -> Result<String, String> {
    match answer {
        Ok(answer) if answer.status == wanted => Ok(answer.body),
        Ok(answer) => Err(format!("HTTP {}: {}", answer.status.as_u16(), answer.body)),
        Err(e) => Err(format!("cannot reach forcemfa's admin listener: {e}")),
    }
}

/// The account (and its partition) a policy is rendered for: as given, or the credentials'.
async fn policy_account(
    account: &AccountArg,
    config: &Config,
) -> Result<(Partition, String), Failure> {
    if let Some(id) = &account.account_id {
        return Ok((account.partition.unwrap_or_default(), id.clone()));
    }
    let clients = AccountClients::new(&load_sdk_config(&config.aws).await, "own", &config.aws);
    let identity = identity::caller_identity(&clients).await.map_err(|e| {
        Failure::incomplete("cannot determine the account id; pass --account-id", e)
    })?;
    let partition = match account.partition {
        Some(p) => p,
        None => arn::partition_of(&identity.arn).map_err(|e| {
            Failure::incomplete("cannot determine the partition; pass --partition", e)
        })?,
    };
    Ok((partition, identity.account_id))
}

async fn policy_command(which: PolicyCommand, telemetry: &Telemetry) -> Outcome {
    let account = match &which {
        PolicyCommand::ForceMfaGroup { account, .. } | PolicyCommand::Daemon { account } => account,
    };
    let config = load_config(account.config.config.as_deref(), telemetry)?;
    let (partition, account_id) = policy_account(account, &config).await?;
    let target = policy::Account {
        partition,
        id: &account_id,
    };
    let document = match which {
        PolicyCommand::ForceMfaGroup { group, .. } => {
            let group = group.as_deref().unwrap_or(&config.group);
            policy::force_mfa_group(&target, group, &config.group_policy)
        }
        PolicyCommand::Daemon { .. } => policy::daemon(
            &target,
            &config.group,
            &policy::DaemonFeatures::from_config(&config),
        ),
    };
    let text = serde_json::to_string_pretty(&document)
        .map_err(|e| Failure::incomplete("cannot print the policy", e))?;
    println!("{text}");
    Ok(exit::OK)
}

async fn bootstrap_command(args: BootstrapArgs, telemetry: &Telemetry) -> Outcome {
    let config = load_config(args.config.config.as_deref(), telemetry)?;
    let clients = AccountClients::new(&load_sdk_config(&config.aws).await, "own", &config.aws);
    let dry_run = args.dry_run || config.dry_run;
    let expected = config.account_id.as_deref();
    let report = bootstrap::bootstrap(
        &clients,
        &config.group,
        &config.group_policy,
        expected,
        dry_run,
    )
    .await
    .map_err(|e| Failure::incomplete(format!("bootstrap of group {} failed", config.group), e))?;
    match args.output {
        Output::Json => {
            let text = serde_json::to_string_pretty(&report)
                .map_err(|e| Failure::incomplete("cannot print the report", e))?;
            println!("{text}");
        }
        Output::Text => print!("{}", report.to_text()),
    }
    Ok(exit::OK)
}
