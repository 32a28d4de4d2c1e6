//! A failed call to AWS as a value: which operation failed, what kind of failure it was (with a
//! stable label for logs and metrics), and the service's own words, or, when there were no
//! credentials to sign with, what to set.

use std::error::Error;

use aws_config::imds::client::error::ImdsError;
use aws_credential_types::provider::error::CredentialsError;
use aws_sdk_iam::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;

use super::answers::AnswerError;
use crate::text::error_chain;

/// Where the SDK's standard chain looks for credentials, as a person sets them.
const CREDENTIALS_HINT: &str = "set AWS_PROFILE to a profile in ~/.aws/config or ~/.aws/credentials, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or run with a role: an EC2 instance profile, an ECS task role, or a web identity (AWS_ROLE_ARN and AWS_WEB_IDENTITY_TOKEN_FILE)";

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
    /// No answer: connection, DNS, TLS, or no credentials to sign the call with.
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
        E: ProvideErrorMetadata + Error + 'static,
    {
        AwsError::of("iam", operation, err)
    }

    pub fn of<E>(
        service: &'static str,
        operation: &'static str,
        err: &SdkError<E, HttpResponse>,
    ) -> AwsError
    where
        E: ProvideErrorMetadata + Error + 'static,
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
    E: ProvideErrorMetadata + Error + 'static,
{
    match err {
        // A client error says the request was not carried out, whoever answered it; a server
        // error says so only in the service's own words (not a gateway's page).
        SdkError::ServiceError(e) => e.raw().status().is_client_error() || e.err().code().is_some(),
        // IAM's own error envelope, found by the answer check under an HTTP success status.
        SdkError::ResponseError(_) => causes(err).any(|e| {
            matches!(
                e.downcast_ref::<AnswerError>(),
                Some(AnswerError::ErrorEnvelope { .. })
            )
        }),
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

/// `err` and its causes, outermost first.
fn causes<'a>(err: &'a (dyn Error + 'static)) -> impl Iterator<Item = &'a (dyn Error + 'static)> {
    std::iter::successors(Some(err), |&e| e.source())
}

/// A one-line description of a failed call: the service's code and message when it answered,
/// what to set when there were no credentials to sign it with, otherwise the whole chain of
/// causes (timeouts, connection errors).
fn describe<E>(service: &str, err: &SdkError<E, HttpResponse>) -> String
where
    E: ProvideErrorMetadata + Error + 'static,
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
    unsigned(err).unwrap_or_else(|| error_chain(err))
}

/// Why a call could not be signed, when that is why it failed. The SDK resolves the credentials
/// before it sends: when it cannot, the call fails to dispatch, and the connector error holds the
/// credential provider's own error (a role's provider holds, in turn, its STS call's).
fn unsigned(err: &(dyn Error + 'static)) -> Option<String> {
    let outermost = causes(err).find_map(|e| e.downcast_ref::<CredentialsError>())?;
    let nothing_set = causes(err).any(|e| {
        matches!(
            e.downcast_ref::<CredentialsError>(),
            Some(CredentialsError::CredentialsNotLoaded(_))
        )
    });
    let said = error_chain(outermost);
    let said = said.trim_end_matches('.');
    Some(if nothing_set {
        // Every provider of the standard chain found nothing to go on.
        format!("no AWS credentials found: {CREDENTIALS_HINT}")
    } else if causes(outermost).any(<dyn Error>::is::<ImdsError>) {
        // The instance metadata service is asked last, so nothing else was set; off EC2, a
        // proxy may answer for it.
        format!("no AWS credentials found ({said}): {CREDENTIALS_HINT}")
    } else {
        // A provider was set up but failed: a role refused, a profile that does not parse.
        format!("the AWS credentials could not be loaded: {said}")
    })
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

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_sts::operation::get_caller_identity::GetCallerIdentityError;
    use aws_smithy_runtime_api::client::result::ConnectorError;

    fn unsigned_call(credentials: CredentialsError) -> AwsError {
        let err: SdkError<GetCallerIdentityError, HttpResponse> =
            SdkError::dispatch_failure(ConnectorError::other(Box::new(credentials), None));
        AwsError::of("sts", "GetCallerIdentity", &err)
    }

    #[test]
    fn without_credentials_the_detail_says_what_to_set() {
        let none = unsigned_call(CredentialsError::not_loaded("no providers in chain"));
        assert_eq!(none.kind, FailureKind::Unreachable);
        assert!(!none.answered_no);
        assert_eq!(
            none.to_string(),
            format!("sts:GetCallerIdentity failed: no AWS credentials found: {CREDENTIALS_HINT}")
        );
        // A role's provider could not sign its own STS call: the base credentials are missing.
        let base: SdkError<GetCallerIdentityError, HttpResponse> = SdkError::dispatch_failure(
            ConnectorError::other(Box::new(CredentialsError::not_loaded("none")), None),
        );
        let role = unsigned_call(CredentialsError::provider_error(base));
        assert_eq!(role.detail, none.detail);
    }

    #[test]
    fn credentials_set_up_but_failing_are_described_in_their_words() {
        let refused = unsigned_call(CredentialsError::provider_error(
            "AccessDenied: not authorized to perform sts:AssumeRole.",
        ));
        assert_eq!(
            refused.detail,
            "the AWS credentials could not be loaded: an error occurred while loading credentials: AccessDenied: not authorized to perform sts:AssumeRole"
        );
    }

    #[test]
    fn no_answer_is_its_chain_of_causes_without_a_dump() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused\nby peer");
        let err: SdkError<GetCallerIdentityError, HttpResponse> =
            SdkError::dispatch_failure(ConnectorError::io(Box::new(io)));
        let failed = AwsError::of("sts", "GetCallerIdentity", &err);
        assert_eq!(failed.detail, "dispatch failure: io error: refused by peer");
    }
}
