//! The pacing fitted into the SDK: an HTTP client that makes every request wait for its turn, an
//! interceptor that tells the pacer how IAM answered, and the mark that says whether a request
//! given up had left the process.

use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use aws_smithy_runtime::client::retries::classifiers::run_classifiers_on_ctx;
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::interceptors::context::FinalizerInterceptorContextRef;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::client::retries::classifiers::{RetryAction, RetryReason};
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::config_bag::{ConfigBag, Storable, StoreReplace};
use aws_smithy_types::retry::ErrorKind;
use hyper::body::{Body, Bytes, Frame, SizeHint};

use super::pace::{answer_of, Attempt, IAM_REQUEST_ID};
use super::pacer::{Pacer, Sent};

/// An HTTP client whose every request waits for its turn with a [`Pacer`] before it is sent.
#[derive(Debug)]
pub struct PacedHttpClient {
    inner: SharedHttpClient,
    pacer: Pacer,
}

impl PacedHttpClient {
    pub fn new(inner: SharedHttpClient, pacer: Pacer) -> PacedHttpClient {
        PacedHttpClient { inner, pacer }
    }
}

impl HttpClient for PacedHttpClient {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(PacedConnector {
            inner: self.inner.http_connector(settings, components),
            pacer: self.pacer.clone(),
        })
    }
}

#[derive(Debug)]
struct PacedConnector {
    inner: SharedHttpConnector,
    pacer: Pacer,
}

/// Whether an attempt's request went out, for the call count: tagged on the request before it is
/// sent, and marked by the pacing while the request waits for its turn, when it is handed to the
/// HTTP client, and when the HTTP client starts writing its body onto a connection. An attempt
/// given up before that (waiting for its turn, waiting for a connection, or handed on in the
/// very instant its time ran out) never reached AWS. A request of a client without pacing is
/// never marked, and always counts.
#[derive(Debug, Clone, Default)]
pub struct Dispatch(Arc<AtomicU8>);

const WAITING: u8 = 1;
const HANDED_ON: u8 = 2;
const WRITTEN: u8 = 3;

impl Dispatch {
    /// False only for a request that had not started on its way when it was given up.
    pub fn went_out(&self) -> bool {
        matches!(self.0.load(Ordering::Relaxed), 0 | WRITTEN)
    }

    fn set(&self, state: u8) {
        self.0.store(state, Ordering::Relaxed);
    }

    /// Hands `request` on: marked written as soon as the HTTP client reads its body to write it
    /// (at once when it has none).
    fn hand_on(request: &mut HttpRequest) {
        let Some(dispatch) = request.extension::<Dispatch>().cloned() else {
            return;
        };
        if request.body().content_length() == Some(0) {
            dispatch.set(WRITTEN);
            return;
        }
        dispatch.set(HANDED_ON);
        let body = request.take_body();
        *request.body_mut() = SdkBody::from_body_1_x(MarkedBody {
            inner: body,
            dispatch,
        });
    }
}

/// A request body that marks its [`Dispatch`] written when the HTTP client first reads it;
/// otherwise the body it wraps, length and end included.
struct MarkedBody {
    inner: SdkBody,
    dispatch: Dispatch,
}

impl Body for MarkedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.dispatch.set(WRITTEN);
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        Body::size_hint(&self.inner)
    }
}

impl Storable for Dispatch {
    type Storer = StoreReplace<Self>;
}

impl HttpConnector for PacedConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let (inner, pacer) = (self.inner.clone(), self.pacer.clone());
        HttpConnectorFuture::new(async move {
            let mut request = request;
            if let Some(d) = request.extension::<Dispatch>() {
                d.set(WAITING);
            }
            let sent = pacer.turn().await;
            Dispatch::hand_on(&mut request);
            // A call that fails on the way drops its [`Sent`], which frees its place.
            let mut response = inner.call(request).await?;
            // The answer carries its stamp to [`PaceFeedback`], which classifies it.
            response.add_extension(sent);
            Ok(response)
        })
    }
}

/// Tells the pacer how IAM answered each attempt, as the SDK's retry classifiers read it.
#[derive(Debug, Clone)]
pub struct PaceFeedback {
    pacer: Pacer,
}

impl PaceFeedback {
    pub fn new(pacer: Pacer) -> PaceFeedback {
        PaceFeedback { pacer }
    }
}

impl Intercept for PaceFeedback {
    fn name(&self) -> &'static str {
        "forcemfa::PaceFeedback"
    }

    fn read_after_attempt(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        // Only attempts that came back with an HTTP answer carry a stamp; a timeout before it or
        // a broken connection says nothing of IAM's bucket, and [`answer_of`] says which answers
        // do.
        let Some(sent) = context.response().and_then(|r| r.extension::<Sent>()) else {
            return Ok(());
        };
        let throttled = matches!(
            run_classifiers_on_ctx(runtime_components.retry_classifiers(), context.inner()),
            RetryAction::RetryIndicated(RetryReason::RetryableError {
                kind: ErrorKind::ThrottlingError,
                ..
            })
        );
        let attempt = Attempt {
            throttled,
            from_iam: context
                .response()
                .is_some_and(|r| r.headers().contains_key(IAM_REQUEST_ID)),
        };
        self.pacer.answered(sent, answer_of(attempt));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_paced_request_counts_as_gone_only_once_its_body_is_read() {
        use http_body_util::BodyExt;

        let dispatch = Dispatch::default();
        // A client without pacing never marks its requests: they always count.
        assert!(dispatch.went_out());
        let mut request = HttpRequest::new(SdkBody::from("Action=AddUserToGroup&UserName=carol"));
        request.add_extension(dispatch.clone());
        dispatch.set(WAITING);
        assert!(!dispatch.went_out(), "waiting for its turn");
        Dispatch::hand_on(&mut request);
        assert!(!dispatch.went_out(), "handed on, not yet written");
        assert_eq!(request.body().content_length(), Some(36));
        let body = futures::executor::block_on(request.take_body().collect())
            .unwrap()
            .to_bytes();
        assert_eq!(&body[..], b"Action=AddUserToGroup&UserName=carol");
        assert!(dispatch.went_out(), "written");

        // Nothing to write: gone as soon as it is handed on.
        let empty = Dispatch::default();
        let mut request = HttpRequest::new(SdkBody::empty());
        request.add_extension(empty.clone());
        empty.set(WAITING);
        Dispatch::hand_on(&mut request);
        assert!(empty.went_out());
    }
}
