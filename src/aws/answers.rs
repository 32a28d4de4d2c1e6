//! Refusing incomplete answers before they become facts.
//!
//! The SDK's XML reader is lenient on purpose: an element it does not find is read as an empty
//! list, a `false`, or a default value, and a body that stops part-way is read as far as it goes.
//! For forcemfa that turns a cut connection or a broken proxy into a confident "this user has no
//! MFA device". So every successful IAM and STS answer is checked here, once, for every operation:
//! it must be one whole, well-formed XML document whose root is the operation's own answer, and
//! it must hold the elements without which its result would be a guess. A failed check makes the
//! call fail, so the callers' fail-safe paths (skip the user, stop the account, count the change as
//! failed) apply to broken answers exactly as they apply to errors.
//!
//! Pagination is checked in [`Pages`]: a truncated page must say where to go on, and a marker seen
//! before means the listing cycles.

use std::collections::HashSet;

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::AfterDeserializationInterceptorContextRef;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;

/// Why an answer was not taken as a fact.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnswerError {
    #[error("the answer is not one whole XML document ({0})")]
    Malformed(String),
    #[error("the answer is an error ({code}) although its HTTP status says success")]
    ErrorEnvelope { code: String },
    #[error("the answer is <{found}>, not <{expected}>")]
    WrongAnswer { expected: String, found: String },
    #[error("the answer lacks <{0}>")]
    Missing(String),
}

/// Elements an operation's result must hold: without them the SDK would read an empty list, an
/// `IsTruncated` of false or an empty value, and the result would be a guess.
fn required_elements(operation: &str) -> &'static [&'static str] {
    match operation {
        "ListMFADevices" => &["MFADevices", "IsTruncated"],
        "ListVirtualMFADevices" => &["VirtualMFADevices", "IsTruncated"],
        "GetAccountAuthorizationDetails" => &["UserDetailList", "GroupDetailList", "IsTruncated"],
        "GetLoginProfile" => &["LoginProfile"],
        "GetUser" => &["User"],
        "ListGroupsForUser" => &["Groups", "IsTruncated"],
        "GetAccountSummary" => &["SummaryMap"],
        "GetPolicy" => &["Policy"],
        "GetPolicyVersion" => &["PolicyVersion"],
        "GetGroup" => &["Group"],
        "GetGroupPolicy" => &["PolicyDocument"],
        "GetCallerIdentity" => &["Account", "Arn"],
        _ => &[],
    }
}

/// Checks a successful answer of the query protocol (IAM, STS) to `operation`, in one streaming
/// pass (a large account's listing is never held twice in memory).
pub fn check_answer(operation: &str, body: &[u8]) -> Result<(), AnswerError> {
    let text =
        std::str::from_utf8(body).map_err(|e| AnswerError::Malformed(format!("not UTF-8: {e}")))?;
    let expected = format!("{operation}Response");
    let result_name = format!("{operation}Result");
    let required = required_elements(operation);
    let seen = Seen::scan(text, &result_name, required)?;
    if seen.root != expected {
        if seen.root == "ErrorResponse" {
            return Err(AnswerError::ErrorEnvelope {
                code: seen.error_code.unwrap_or_else(|| "no code".to_string()),
            });
        }
        return Err(AnswerError::WrongAnswer {
            expected,
            found: seen.root.to_string(),
        });
    }
    if required.is_empty() {
        return Ok(());
    }
    if !seen.has_result {
        return Err(AnswerError::Missing(result_name));
    }
    match seen.found.iter().position(|f| !f) {
        Some(i) => Err(AnswerError::Missing(required[i].to_string())),
        None => Ok(()),
    }
}

/// What one pass over a whole, well-formed answer saw.
struct Seen<'a> {
    /// The root element's name.
    root: &'a str,
    /// The root holds the `{operation}Result` element.
    has_result: bool,
    /// For each required element, whether the result holds it.
    found: Vec<bool>,
    /// The text of the last `<Code>`, for an error envelope.
    error_code: Option<String>,
}

impl<'a> Seen<'a> {
    /// Reads `text` to its end, refusing what is not one whole XML document.
    fn scan(text: &'a str, result_name: &str, required: &[&str]) -> Result<Seen<'a>, AnswerError> {
        let mut seen = Seen {
            root: "",
            has_result: false,
            found: vec![false; required.len()],
            error_code: None,
        };
        let mut open: Vec<&str> = Vec::new();
        let mut root: Option<&str> = None;
        for token in xmlparser::Tokenizer::from(text) {
            let token = token.map_err(|e| AnswerError::Malformed(e.to_string()))?;
            match token {
                xmlparser::Token::ElementStart { local, .. } => {
                    let name = local.as_str();
                    if open.is_empty() {
                        if root.is_some() {
                            return Err(AnswerError::Malformed(
                                "more than one root element".to_string(),
                            ));
                        }
                        root = Some(name);
                    } else if open.len() == 1 && name == result_name {
                        seen.has_result = true;
                    } else if open.len() == 2 && open[1] == result_name {
                        if let Some(i) = required.iter().position(|r| *r == name) {
                            seen.found[i] = true;
                        }
                    }
                    open.push(name);
                }
                xmlparser::Token::ElementEnd { end, .. } => match end {
                    xmlparser::ElementEnd::Open => {}
                    xmlparser::ElementEnd::Empty => {
                        open.pop();
                    }
                    xmlparser::ElementEnd::Close(_, local) => {
                        if open.pop() != Some(local.as_str()) {
                            return Err(AnswerError::Malformed(format!(
                                "</{}> closes no open element",
                                local.as_str()
                            )));
                        }
                    }
                },
                xmlparser::Token::Text { text } if open.last() == Some(&"Code") => {
                    seen.error_code = Some(text.as_str().to_string());
                }
                _ => {}
            }
        }
        let Some(root) = root else {
            return Err(AnswerError::Malformed("no element".to_string()));
        };
        if let Some(unclosed) = open.last() {
            return Err(AnswerError::Malformed(format!(
                "the body ends inside <{unclosed}>"
            )));
        }
        seen.root = root;
        Ok(seen)
    }
}

/// Fails every call whose successful answer does not pass [`check_answer`].
#[derive(Debug, Clone, Copy, Default)]
pub struct AnswerCheck;

impl Intercept for AnswerCheck {
    fn name(&self) -> &'static str {
        "forcemfa::AnswerCheck"
    }

    fn read_after_deserialization(
        &self,
        context: &AfterDeserializationInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        // Errors are the SDK's to read; only answers it took as success are checked.
        if context.output_or_error().is_err() {
            return Ok(());
        }
        let response = context.response();
        let Some(body) = response.body().bytes() else {
            return Err("the answer's body was not read whole".into());
        };
        let operation = cfg
            .load::<Metadata>()
            .map(|m| m.name().to_string())
            .unwrap_or_default();
        check_answer(&operation, body).map_err(Into::into)
    }
}

/// Why a listing cannot be read whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PageError {
    #[error("a truncated page (IsTruncated) without a Marker")]
    TruncatedWithoutMarker,
    #[error("the Marker {0:?} a second time (the listing cycles)")]
    RepeatedMarker(String),
}

/// Follows one listing's `Marker`s and refuses those that would leave it partial or endless.
#[derive(Debug, Default)]
pub struct Pages {
    seen: HashSet<String>,
    next: Option<String>,
    started: bool,
}

impl Pages {
    pub fn new() -> Pages {
        Pages::default()
    }

    /// Whether another page is to be read.
    pub fn more(&self) -> bool {
        !self.started || self.next.is_some()
    }

    /// The marker to send with the next request; `None` for the first.
    pub fn marker(&self) -> Option<&str> {
        self.next.as_deref()
    }

    /// Takes in what a page said of the rest.
    pub fn advance(&mut self, is_truncated: bool, marker: Option<&str>) -> Result<(), PageError> {
        self.started = true;
        if !is_truncated {
            self.next = None;
            return Ok(());
        }
        let marker = marker
            .filter(|m| !m.is_empty())
            .ok_or(PageError::TruncatedWithoutMarker)?;
        if !self.seen.insert(marker.to_string()) {
            return Err(PageError::RepeatedMarker(marker.to_string()));
        }
        self.next = Some(marker.to_string());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NS: &str = r#"xmlns="https://iam.amazonaws.com/doc/2010-05-08/""#;

    fn list_mfa(result: &str) -> String {
        format!(
            "<ListMFADevicesResponse {NS}><ListMFADevicesResult>{result}</ListMFADevicesResult><ResponseMetadata><RequestId>r</RequestId></ResponseMetadata></ListMFADevicesResponse>"
        )
    }

    #[test]
    fn a_complete_answer_passes() {
        let body = list_mfa("<MFADevices><member><UserName>a</UserName><SerialNumber>s</SerialNumber></member></MFADevices><IsTruncated>false</IsTruncated>");
        assert_eq!(check_answer("ListMFADevices", body.as_bytes()), Ok(()));
        let empty = list_mfa("<MFADevices/><IsTruncated>false</IsTruncated>");
        assert_eq!(check_answer("ListMFADevices", empty.as_bytes()), Ok(()));
    }

    #[test]
    fn a_body_cut_short_is_malformed() {
        let cut = format!("<ListMFADevicesResponse {NS}><ListMFADevicesResult><MFADevices>");
        assert!(matches!(
            check_answer("ListMFADevices", cut.as_bytes()),
            Err(AnswerError::Malformed(_))
        ));
        assert!(matches!(
            check_answer("ListMFADevices", b""),
            Err(AnswerError::Malformed(_))
        ));
        assert!(matches!(
            check_answer("ListMFADevices", b"\xff\xfe<x/>"),
            Err(AnswerError::Malformed(_))
        ));
    }

    #[test]
    fn mismatched_or_extra_elements_are_malformed() {
        for body in [
            format!("<ListMFADevicesResponse {NS}><ListMFADevicesResult></MFADevices></ListMFADevicesResponse>"),
            format!("<ListMFADevicesResponse {NS}/><ListMFADevicesResponse {NS}/>"),
            "not xml at all".to_string(),
            "<a><b></a></b>".to_string(),
        ] {
            assert!(
                matches!(check_answer("ListMFADevices", body.as_bytes()), Err(AnswerError::Malformed(_))),
                "{body}"
            );
        }
    }

    #[test]
    fn a_result_without_its_list_or_truncation_flag_is_refused() {
        let no_list = list_mfa("<IsTruncated>false</IsTruncated>");
        assert_eq!(
            check_answer("ListMFADevices", no_list.as_bytes()),
            Err(AnswerError::Missing("MFADevices".into()))
        );
        let no_flag = list_mfa("<MFADevices/>");
        assert_eq!(
            check_answer("ListMFADevices", no_flag.as_bytes()),
            Err(AnswerError::Missing("IsTruncated".into()))
        );
        let no_result = format!("<ListMFADevicesResponse {NS}></ListMFADevicesResponse>");
        assert_eq!(
            check_answer("ListMFADevices", no_result.as_bytes()),
            Err(AnswerError::Missing("ListMFADevicesResult".into()))
        );
    }

    #[test]
    fn an_error_envelope_or_another_answer_is_not_a_success() {
        let error =
            format!("<ErrorResponse {NS}><Error><Code>Throttling</Code></Error></ErrorResponse>");
        assert_eq!(
            check_answer("AddUserToGroup", error.as_bytes()),
            Err(AnswerError::ErrorEnvelope {
                code: "Throttling".into()
            })
        );
        let other = format!("<RemoveUserFromGroupResponse {NS}/>");
        assert!(matches!(
            check_answer("AddUserToGroup", other.as_bytes()),
            Err(AnswerError::WrongAnswer { .. })
        ));
        assert!(matches!(
            check_answer("AddUserToGroup", b"<html><body>proxy</body></html>"),
            Err(AnswerError::WrongAnswer { .. })
        ));
        let ok = format!("<AddUserToGroupResponse {NS}><ResponseMetadata><RequestId>r</RequestId></ResponseMetadata></AddUserToGroupResponse>");
        assert_eq!(check_answer("AddUserToGroup", ok.as_bytes()), Ok(()));
    }

    #[test]
    fn pages_follow_markers_to_the_end() {
        let mut pages = Pages::new();
        assert!(pages.more());
        assert_eq!(pages.marker(), None);
        pages.advance(true, Some("A")).unwrap();
        assert_eq!(pages.marker(), Some("A"));
        pages.advance(true, Some("B")).unwrap();
        pages.advance(false, None).unwrap();
        assert!(!pages.more());
    }

    #[test]
    fn a_truncated_page_without_marker_is_refused() {
        let mut pages = Pages::new();
        assert_eq!(
            pages.advance(true, None),
            Err(PageError::TruncatedWithoutMarker)
        );
        assert_eq!(
            Pages::new().advance(true, Some("")),
            Err(PageError::TruncatedWithoutMarker)
        );
    }

    #[test]
    fn a_marker_seen_before_is_a_cycle() {
        let mut pages = Pages::new();
        pages.advance(true, Some("A")).unwrap();
        assert_eq!(
            pages.advance(true, Some("A")),
            Err(PageError::RepeatedMarker("A".into()))
        );
        let mut pages = Pages::new();
        pages.advance(true, Some("A")).unwrap();
        pages.advance(true, Some("B")).unwrap();
        assert_eq!(
            pages.advance(true, Some("A")),
            Err(PageError::RepeatedMarker("A".into()))
        );
    }
}
