//! forcemfa as an AWS Lambda function (`provided.al2023`, the executable `bootstrap`): the
//! `Reconciler` of `reconcile` and of the service, invoked by a schedule, by the events queue's
//! event source mapping, or directly; its entry point.
//!
//! There is no file audit log here: the package is read-only and `/tmp` is lost with the
//! execution environment, so a record kept there would vanish unseen. The audit trail is the
//! structured log (a `membership change` line per change) in CloudWatch Logs; the keys that name
//! files are refused.

pub mod emf;
mod function;
pub mod invocation;
pub mod setup;

use std::process::ExitCode;

use tracing::{error, info};

use crate::telemetry::{LogFormat, Telemetry};

pub use setup::{check_fits, SetupError};

/// The variables without which the Lambda runtime cannot start.
const RUNTIME_VARS: [&str; 4] = [
    "AWS_LAMBDA_RUNTIME_API",
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
];

/// The function's entry point: serves invocations until the Lambda runtime API goes away.
pub fn main() -> ExitCode {
    let started = std::time::Instant::now();
    let telemetry = Telemetry::init(LogFormat::Json);
    if let Some(name) = RUNTIME_VARS.iter().find(|v| std::env::var(v).is_err()) {
        error!(variable = name, "not in a Lambda execution environment: {name} is unset; this is the function's bootstrap, `forcemfa` is the command");
        return ExitCode::from(2);
    }
    if std::env::var("AWS_LAMBDA_FUNCTION_MEMORY_SIZE").is_ok_and(|v| v.parse::<i32>().is_err()) {
        error!("invalid environment variable AWS_LAMBDA_FUNCTION_MEMORY_SIZE: not a number");
        return ExitCode::from(2);
    }
    if let Err(e) = std::env::var("AWS_LAMBDA_RUNTIME_API")
        .unwrap_or_default()
        .parse::<hyper::Uri>()
    {
        error!(error = %e, "invalid environment variable AWS_LAMBDA_RUNTIME_API");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            error!(error = %e, "cannot start the async runtime");
            return ExitCode::from(1);
        }
    };
    let served = runtime.block_on(async {
        let function = function::Function::start(setup::load_config(&telemetry)).await;
        info!(
            init_seconds = started.elapsed().as_secs_f64(),
            "function ready"
        );
        let function = &function;
        lambda_runtime::run(lambda_runtime::service_fn(move |event| {
            function.handle(event)
        }))
        .await
    });
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!(error = %e, "the Lambda runtime API failed");
            ExitCode::from(1)
        }
    }
}
