//! A failed call to AWS as a value: which operation failed, what kind of failure it was (with a
//! stable label for logs and metrics), and the service's own words.

use aws_sdk_iam::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_types::error::display::DisplayErrorContext;

use super::answers::AnswerError;

/// What kind of failure a call met.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The service throttled the call (after the SDK's retries).
    Throttled,
    /// The entity does not exist (`NoSuchEntity`).
    NotFound,
    /// The caller may not (`AccessDenied` and the like).
    Refused,
    /// Any other error the service answered with.
    Service,
    /// The answer arrived but was not one to act on (cut short, malformed, another answer).
    BrokenAnswer,
    Timeout,
    /// No answer: connection, DNS, TLS, credentials.
    Unreachable,
}

impl FailureKind {
    pub fn metric_label(self) -> &'static str {
        match self {
            FailureKind::Throttled => "throttled",
            FailureKind::NotFound => "not_found",
            FailureKind::Refused => "refused",
            FailureKind::Service => "service",
            FailureKind::BrokenAnswer => "broken_answer",
            FailureKind::Timeout => "timeout",
            FailureKind::Unreachable => "unreachable",
        }
    }
}

/// A call that failed: `iam:AddUserToGroup failed: Throttling: Rate exceeded`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{service}:{operation} failed: {detail}")]
pub struct AwsError {
    pub service: &'static str,
    pub operation: &'static str,
    pub kind: FailureKind,
    /// The service's code and message when it answered, otherwise the chain of causes.
    pub detail: String,
    /// The last answer said the call was not carried out: a client error (refused, throttled,
    /// not found, invalid), a server error in the service's own words, or IAM's error envelope
    /// under a success status. Otherwise (no answer, an answer that could not be read, another
    /// operation's answer, a gateway's error page) a write may or may not have been made. (An
    /// earlier attempt may still have been made, its answer lost: see `apply`.)
    pub answered_no: bool,
}

impl AwsError {
    /// The failure of an IAM call.
    pub fn iam<E>(operation: &'static str, err: &SdkError<E, HttpResponse>) -> AwsError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        AwsError::of("iam", operation, err)
    }

    pub fn of<E>(
        service: &'static str,
        operation: &'static str,
        err: &SdkError<E, HttpResponse>,
    ) -> AwsError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        AwsError {
            service,
            operation,
            kind: kind_of(err),
            detail: describe(service, err),
            answered_no: answered_no(err),
        }
    }

    pub fn is_not_found(&self) -> bool {
        self.kind == FailureKind::NotFound
    }
}

/// Whether the service itself answered that the call was not carried out.
fn answered_no<E>(err: &SdkError<E, HttpResponse>) -> bool
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match err {
        // A client error says the request was not carried out, whoever answered it; a server
        // error says so only in the service's own words (not a gateway's page).
        SdkError::ServiceError(e) => e.raw().status().is_client_error() || e.err().code().is_some(),
        // IAM's own error envelope, found by the answer check under an HTTP success status.
        SdkError::ResponseError(_) => {
            let mut cause = std::error::Error::source(err);
            while let Some(e) = cause {
                if matches!(
                    e.downcast_ref::<AnswerError>(),
                    Some(AnswerError::ErrorEnvelope { .. })
                ) {
                    return true;
                }
                cause = e.source();
            }
            false
        }
        _ => false,
    }
}

fn kind_of<E>(err: &SdkError<E, HttpResponse>) -> FailureKind
where
    E: ProvideErrorMetadata,
{
    match err {
        SdkError::ServiceError(service) => match service.err().code() {
            Some("NoSuchEntity") => FailureKind::NotFound,
            Some("Throttling" | "ThrottlingException" | "TooManyRequestsException") => {
                FailureKind::Throttled
            }
            Some("AccessDenied" | "AccessDeniedException" | "UnauthorizedOperation") => {
                FailureKind::Refused
            }
            _ => FailureKind::Service,
        },
        SdkError::ResponseError(_) => FailureKind::BrokenAnswer,
        SdkError::TimeoutError(_) => FailureKind::Timeout,
        _ => FailureKind::Unreachable,
    }
}

/// A one-line description of a failed call: the service's code and message when it answered,
/// otherwise the whole chain of causes (timeouts, connection errors, credentials).
fn describe<E>(service: &str, err: &SdkError<E, HttpResponse>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    if let SdkError::ServiceError(answer) = err {
        let e = answer.err();
        return match (e.code(), e.message()) {
            (Some(code), Some(message)) => format!("{code}: {message}"),
            (Some(code), None) => code.to_string(),
            // An answer the SDK could not read as the service's error: its status says the most.
            (None, _) => format!(
                "HTTP {} with an error response that is not {}'s",
                answer.raw().status().as_u16(),
                service_name(service)
            ),
        };
    }
    DisplayErrorContext(err).to_string()
}

/// A service as people name it, from its prefix in `iam:AddUserToGroup`.
fn service_name(prefix: &str) -> &str {
    match prefix {
        "iam" => "IAM",
        "sts" => "STS",
        "sqs" => "SQS",
        "sns" => "SNS",
        "ses" => "SES",
        "organizations" => "AWS Organizations",
        other => other,
    }
}
