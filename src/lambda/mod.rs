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

use crate::environment;
use crate::reconcile::report::exit;
use crate::telemetry::{LogFormat, Telemetry};

pub use setup::{check_fits, SetupError};

/// The variables without which the Lambda runtime cannot start.
const RUNTIME_VARS: [&str; 4] = [
    "AWS_LAMBDA_RUNTIME_API",
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
];

/// Why the function cannot even reach the runtime API: it exits `exit::USAGE`, having touched
/// nothing.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum RuntimeEnvError {
    #[error("not in a Lambda execution environment: {0} is unset; this is the function's bootstrap, `forcemfa` is the command")]
    Unset(&'static str),
    #[error("invalid environment variable {name}={value:?}: {why}")]
    Invalid {
        name: &'static str,
        value: String,
        why: &'static str,
    },
}

/// Checks the variables the Lambda runtime reads (`var` gives each one's value), which it
/// would otherwise panic on.
pub fn check_runtime_env(var: impl Fn(&str) -> Option<String>) -> Result<(), RuntimeEnvError> {
    for name in RUNTIME_VARS {
        let value = var(name).ok_or(RuntimeEnvError::Unset(name))?;
        let why = match name {
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE" if value.parse::<i32>().is_err() => "not a number",
            "AWS_LAMBDA_RUNTIME_API"
                if value
                    .parse::<hyper::Uri>()
                    .map_or(true, |uri| uri.authority().is_none()) =>
            {
                "not an address (host:port, or a URL)"
            }
            _ => continue,
        };
        return Err(RuntimeEnvError::Invalid { name, value, why });
    }
    Ok(())
}

/// The function's entry point: serves invocations until the Lambda runtime API goes away.
pub fn main() -> ExitCode {
    let started = std::time::Instant::now();
    let telemetry = Telemetry::init(LogFormat::Json);
    if let Err(e) = environment::check() {
        error!(error = %e, "invalid environment; nothing was changed");
        return ExitCode::from(exit::USAGE);
    }
    // Every variable it checks was found UTF-8 above, so an error here is only "unset".
    if let Err(e) = check_runtime_env(|name| environment::var(name).ok().flatten()) {
        error!(error = %e, "the function cannot start");
        return ExitCode::from(exit::USAGE);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            error!(error = %e, "cannot start the async runtime");
            return ExitCode::from(exit::INCOMPLETE);
        }
    };
    let served = runtime.block_on(async {
        let function = function::Function::start(setup::load(&telemetry)).await;
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
        Ok(()) => ExitCode::from(exit::OK),
        Err(e) => {
            error!(error = %e, "the Lambda runtime API failed");
            ExitCode::from(exit::INCOMPLETE)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(runtime_api: &str, memory: &str) -> impl Fn(&str) -> Option<String> {
        let (runtime_api, memory) = (runtime_api.to_string(), memory.to_string());
        move |name: &str| match name {
            "AWS_LAMBDA_RUNTIME_API" => Some(runtime_api.clone()),
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE" => Some(memory.clone()),
            _ => Some("1".to_string()),
        }
    }

    #[test]
    fn the_runtime_api_is_lambdas_host_and_port_or_a_url() {
        for good in ["127.0.0.1:9001", "http://127.0.0.1:9000/.rt"] {
            assert_eq!(check_runtime_env(env(good, "256")), Ok(()), "{good}");
        }
        for bad in ["/x", "*", "", "not a uri"] {
            let error = check_runtime_env(env(bad, "256")).unwrap_err().to_string();
            assert!(error.contains("AWS_LAMBDA_RUNTIME_API"), "{bad}: {error}");
        }
        let error = check_runtime_env(env("127.0.0.1:9001", "lots")).unwrap_err();
        assert!(error
            .to_string()
            .contains("AWS_LAMBDA_FUNCTION_MEMORY_SIZE"));
        assert_eq!(
            check_runtime_env(|_| None),
            Err(RuntimeEnvError::Unset("AWS_LAMBDA_RUNTIME_API"))
        );
    }
}
