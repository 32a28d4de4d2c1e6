//! Reading a whole listing: every page of it, or an error. The one loop every list call goes
//! through, so that each is followed to its end with the same checks ([`Pages`]: a truncated page
//! must say where to go on, and a marker seen before means the listing cycles).

use std::future::Future;

use aws_sdk_iam::operation::get_account_authorization_details::GetAccountAuthorizationDetailsOutput;
use aws_sdk_iam::operation::list_access_keys::ListAccessKeysOutput;
use aws_sdk_iam::operation::list_groups_for_user::ListGroupsForUserOutput;
use aws_sdk_iam::operation::list_mfa_devices::ListMfaDevicesOutput;
use aws_sdk_iam::operation::list_virtual_mfa_devices::ListVirtualMfaDevicesOutput;
use aws_sdk_organizations::operation::list_accounts::ListAccountsOutput;

use super::answers::{PageError, Pages};
use super::error::AwsError;

/// One page of a listing: whether more follow, and from where.
pub trait Page {
    fn truncated(&self) -> bool;
    fn next_marker(&self) -> Option<&str>;
}

macro_rules! iam_page {
    ($($output:ty),*) => {$(
        impl Page for $output {
            fn truncated(&self) -> bool {
                self.is_truncated()
            }
            fn next_marker(&self) -> Option<&str> {
                self.marker()
            }
        }
    )*};
}

iam_page!(
    GetAccountAuthorizationDetailsOutput,
    ListAccessKeysOutput,
    ListGroupsForUserOutput,
    ListMfaDevicesOutput,
    ListVirtualMfaDevicesOutput
);

/// AWS Organizations says there is more by giving a next token.
impl Page for ListAccountsOutput {
    fn truncated(&self) -> bool {
        self.next_token().is_some()
    }
    fn next_marker(&self) -> Option<&str> {
        self.next_token()
    }
}

/// Why a listing could not be read to its end.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ListError {
    /// A page's call failed.
    #[error(transparent)]
    Call(AwsError),
    /// The pages could not be followed (cut short, or cycling), or a page held something that
    /// cannot be a fact.
    #[error("{operation} returned {what}")]
    Nonsense {
        /// `service:Operation`, as in `iam:ListMFADevices`.
        operation: String,
        what: String,
    },
}

impl ListError {
    /// The failure of a listing whose answer held `what`.
    pub fn nonsense(call: &AwsCall, what: impl Into<String>) -> ListError {
        ListError::Nonsense {
            operation: call.to_string(),
            what: what.into(),
        }
    }

    /// A short stable label, for logs and metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            ListError::Call(e) => e.kind.metric_label(),
            ListError::Nonsense { .. } => "invalid_response",
        }
    }
}

/// A call by service and operation, as errors and logs name it: `iam:ListMFADevices`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AwsCall {
    pub service: &'static str,
    pub operation: &'static str,
}

impl AwsCall {
    pub const fn iam(operation: &'static str) -> AwsCall {
        AwsCall {
            service: "iam",
            operation,
        }
    }
}

impl std::fmt::Display for AwsCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.service, self.operation)
    }
}

/// Reads every page of the listing `call`: `fetch(marker)` sends one request (`None` for the
/// first), `take(page)` takes in what a page holds and may refuse it. Stops at the first error.
pub async fn every_page<P, F, Fut, E>(
    call: AwsCall,
    mut fetch: F,
    mut take: impl FnMut(P) -> Result<(), E>,
) -> Result<(), E>
where
    P: Page,
    F: FnMut(Option<String>) -> Fut,
    Fut: Future<Output = Result<P, AwsError>>,
    E: From<ListError>,
{
    let mut pages = Pages::new();
    while pages.more() {
        let page = fetch(pages.marker().map(str::to_string))
            .await
            .map_err(ListError::Call)?;
        let (truncated, marker) = (page.truncated(), page.next_marker().map(str::to_string));
        take(page)?;
        pages
            .advance(truncated, marker.as_deref())
            .map_err(|e: PageError| ListError::nonsense(&call, e.to_string()))?;
    }
    Ok(())
}
