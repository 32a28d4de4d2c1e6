//! The command line: parse, set up logging and configuration, dispatch.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use tracing::error;

use crate::aws::{load_sdk_config, AccountClients};
use crate::config::Config;
use crate::reconcile::{self, RunOptions};
use crate::report::exit;
use crate::telemetry::{LogFormat, Telemetry};

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
}

#[derive(Debug, Args)]
struct ReconcileArgs {
    /// Configuration file (TOML); without one, every key takes its default.
    #[arg(long, env = "FORCEMFA_CONFIG")]
    config: Option<PathBuf>,

    /// Plan and report, but make no change.
    #[arg(long)]
    dry_run: bool,

    /// Report format on stdout.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    output: Output,

    /// Make no change at all when the plan has more changes than this (overrides `max_changes`).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    max_changes: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    Text,
    Json,
}

/// Entry point: returns the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let telemetry = Telemetry::init(cli.log_format.unwrap_or_else(LogFormat::detect));
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            error!(error = %e, "cannot start the async runtime");
            return ExitCode::from(exit::INCOMPLETE);
        }
    };
    let code = match cli.command {
        Command::Reconcile(args) => runtime.block_on(reconcile_command(args, &telemetry)),
    };
    ExitCode::from(code)
}

/// Loads the configuration, or logs why not.
fn load_config(path: Option<&std::path::Path>, telemetry: &Telemetry) -> Option<Config> {
    match Config::load(path) {
        Ok(config) => {
            telemetry.set_level(&config.log_level);
            Some(config)
        }
        Err(e) => {
            error!(error = %e, "invalid configuration; nothing was changed");
            None
        }
    }
}

async fn reconcile_command(args: ReconcileArgs, telemetry: &Telemetry) -> u8 {
    let Some(config) = load_config(args.config.as_deref(), telemetry) else {
        return exit::USAGE;
    };
    let mut options = RunOptions::from_config(&config);
    options.dry_run |= args.dry_run;
    if args.max_changes.is_some() {
        options.max_changes = args.max_changes;
    }

    let sdk = load_sdk_config(&config.aws).await;
    let clients = AccountClients::new(&sdk);
    let report = reconcile::run(&config, &clients, options).await;
    match args.output {
        Output::Json => println!("{}", report.to_json()),
        Output::Text => print!("{}", report.to_text()),
    }
    report.exit_code()
}
