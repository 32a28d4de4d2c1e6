//! The daemon's admin HTTP listener: liveness, readiness, metrics, a trigger for a run and the
//! last run's report.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::HttpBody;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderMap, HeaderName, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

use super::state::{QueueState, Requested, Shared};
use super::token::Token;

/// No endpoint reads a request body; a longer one is refused before a byte of it is read.
pub const MAX_BODY_BYTES: usize = 1024;

/// Who may ask for a run, given the listener's address and the token in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Allowed,
    /// No or a wrong token: 401.
    Unauthorized,
    /// A non-loopback listener without a configured token: 403.
    Forbidden,
}

/// On loopback anyone on the host may trigger (as with a local socket); elsewhere only a caller
/// presenting the configured token.
pub fn trigger_access(listen: SocketAddr, token: Option<&Token>, headers: &HeaderMap) -> Access {
    if listen.ip().is_loopback() {
        return Access::Allowed;
    }
    let Some(token) = token else {
        return Access::Forbidden;
    };
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_credentials);
    match presented {
        Some(p) if token.matches(p) => Access::Allowed,
        _ => Access::Unauthorized,
    }
}

/// The credentials of an `Authorization` header of the `Bearer` scheme, whose name is
/// case-insensitive (RFC 7235): `bearer TOKEN` is as good as `Bearer TOKEN`.
fn bearer_credentials(authorization: &str) -> Option<&str> {
    let (scheme, credentials) = authorization.trim_start().split_once(' ')?;
    let credentials = credentials.trim();
    (scheme.eq_ignore_ascii_case("Bearer") && !credentials.is_empty()).then_some(credentials)
}

pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/reconcile", post(reconcile))
        .route("/report", get(report))
        .layer(middleware::from_fn(refuse_large_bodies))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(shared)
}

/// 413 for a request that announces a body longer than [`MAX_BODY_BYTES`], before any handler
/// runs; [`DefaultBodyLimit`] stops a body without a length at the same size, should a handler
/// ever read one.
async fn refuse_large_bodies(request: Request, next: Next) -> Response {
    if request.body().size_hint().lower() > MAX_BODY_BYTES as u64 {
        return (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("no endpoint takes a request body of more than {MAX_BODY_BYTES} bytes\n"),
        )
            .into_response();
    }
    next.run(request).await
}

async fn healthz() -> &'static str {
    "ok\n"
}

/// Ready means the service runs with a valid configuration, which holds from the moment the
/// listener answers: it is bound only after the configuration loaded. Whether enforcement
/// succeeds is not readiness (an AWS outage would take the service out of its load balancer and
/// its scrapes with it, just when the metrics matter): it is the metrics
/// `forcemfa_last_success_timestamp_seconds` and `forcemfa_account_errors_total`. For the same
/// reason an events queue that cannot be read leaves the service ready (scheduled runs go on),
/// and the answer says so, as does `forcemfa_events_queue_up`.
async fn readyz(State(shared): State<Arc<Shared>>) -> String {
    match shared.queue_state() {
        QueueState::Off => "ready\n".to_string(),
        QueueState::Readable => "ready\nevents queue: readable\n".to_string(),
        QueueState::Unreadable { since, error } => format!(
            "ready\nevents queue: unreadable for {}s: {error}\n",
            since.elapsed().as_secs()
        ),
    }
}

/// OpenMetrics for scrapers that ask for it, the classic Prometheus text format otherwise.
async fn metrics(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let openmetrics = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/openmetrics-text"));
    if openmetrics {
        (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            shared.metrics.encode(),
        )
            .into_response()
    } else {
        (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            shared.metrics.encode_prometheus(),
        )
            .into_response()
    }
}

/// The number of the run a report or a request belongs to (see [`Requested::run`]).
pub const RUN_HEADER: &str = "forcemfa-run";
/// The exit code `reconcile` would have ended that run with.
pub const EXIT_CODE_HEADER: &str = "forcemfa-exit-code";

/// The last run's report, exactly as `reconcile --output json` prints it, or as its text summary
/// for a caller that accepts `text/plain` and not JSON. Its number and exit code are headers,
/// so that the report's schema stays the one-shot's. It names users and accounts, so it is
/// guarded like the trigger.
async fn report(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let text = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/plain") && !v.contains("json"));
    guarded(&shared, &headers, || match shared.last_run() {
        Some(run) => {
            let (content_type, body) = if text {
                ("text/plain; charset=utf-8", run.report.to_text())
            } else {
                ("application/json", format!("{}\n", run.report.to_json()))
            };
            (
                StatusCode::OK,
                [
                    (header::CONTENT_TYPE, content_type.to_string()),
                    (HeaderName::from_static(RUN_HEADER), run.number.to_string()),
                    (
                        HeaderName::from_static(EXIT_CODE_HEADER),
                        run.report.exit_code().to_string(),
                    ),
                ],
                body,
            )
                .into_response()
        }
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            "no run has finished yet: there is no report\n",
        )
            .into_response(),
    })
}

async fn reconcile(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    guarded(&shared, &headers, || {
        let Requested { outcome, run } = shared.request_run("http");
        (
            StatusCode::ACCEPTED,
            [(header::CONTENT_TYPE, "application/json")],
            format!("{{\"outcome\":\"{outcome}\",\"run\":{run}}}\n"),
        )
            .into_response()
    })
}

/// Serves `allowed` to a caller [`trigger_access`] lets in, and refuses the others.
fn guarded(shared: &Shared, headers: &HeaderMap, allowed: impl FnOnce() -> Response) -> Response {
    match trigger_access(shared.listen, shared.token().as_ref(), headers) {
        Access::Allowed => allowed(),
        Access::Unauthorized => (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "a valid bearer token is required\n",
        )
            .into_response(),
        Access::Forbidden => (
            StatusCode::FORBIDDEN,
            "POST /reconcile and GET /report are disabled on a non-loopback listener without admin.token_file or FORCEMFA_ADMIN_TOKEN\n",
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(auth: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(a) = auth {
            h.insert(header::AUTHORIZATION, HeaderValue::from_str(a).unwrap());
        }
        h
    }

    #[test]
    fn loopback_is_open() {
        let listen: SocketAddr = "127.0.0.1:9464".parse().unwrap();
        assert_eq!(
            trigger_access(listen, None, &headers(None)),
            Access::Allowed
        );
        let listen: SocketAddr = "[::1]:9464".parse().unwrap();
        assert_eq!(
            trigger_access(listen, None, &headers(None)),
            Access::Allowed
        );
    }

    #[test]
    fn elsewhere_a_token_is_needed() {
        let listen: SocketAddr = "0.0.0.0:9464".parse().unwrap();
        assert_eq!(
            trigger_access(listen, None, &headers(Some("Bearer x"))),
            Access::Forbidden
        );
        let token = Token::for_tests("s3cret");
        let t = Some(&token);
        assert_eq!(
            trigger_access(listen, t, &headers(None)),
            Access::Unauthorized
        );
        assert_eq!(
            trigger_access(listen, t, &headers(Some("Bearer nope"))),
            Access::Unauthorized
        );
        assert_eq!(
            trigger_access(listen, t, &headers(Some("Bearer s3cre"))),
            Access::Unauthorized
        );
        assert_eq!(
            trigger_access(listen, t, &headers(Some("Bearer s3cret!"))),
            Access::Unauthorized
        );
        assert_eq!(
            trigger_access(listen, t, &headers(Some("Basic s3cret"))),
            Access::Unauthorized
        );
        assert_eq!(
            trigger_access(listen, t, &headers(Some("Bearer s3cret"))),
            Access::Allowed
        );
    }

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        let listen: SocketAddr = "0.0.0.0:9464".parse().unwrap();
        let token = Token::for_tests("s3cret");
        for auth in [
            "bearer s3cret",
            "BEARER s3cret",
            "BeArEr s3cret",
            "Bearer   s3cret ",
        ] {
            assert_eq!(
                trigger_access(listen, Some(&token), &headers(Some(auth))),
                Access::Allowed,
                "{auth}"
            );
        }
        for auth in [
            "Bearers3cret",
            "Bearer",
            "Bearer ",
            "Bear s3cret",
            "bearer s3cret x",
        ] {
            assert_eq!(
                trigger_access(listen, Some(&token), &headers(Some(auth))),
                Access::Unauthorized,
                "{auth}"
            );
        }
    }
}
